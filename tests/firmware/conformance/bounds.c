/* bounds: one host call with a pointer/length outside linear memory, chosen by argument 0
 * (a letter); every one must trap the task (FAILED, TRAPPED), never read or write outside. */
#include "edgerm_task.h"

#define END 65536u
static char arg[4];

EDGERM_EXPORT("run") int32_t run(void) {
    double *far = (double *)(END - 4);          /* its 8 bytes cross the end */
    char *past = (char *)END;
    if (edgerm_arg_get(0, arg, sizeof arg) != 1) return 64;
    edgerm_log("before", 6);
    switch (arg[0]) {
    case 'a': edgerm_log(past - 10, 100); break;
    case 'b': edgerm_arg_get(0, past - 2, 16); break;
    case 'c': edgerm_env_get(past - 1, 8, arg, sizeof arg); break;
    case 'd': edgerm_env_get("K", 1, past - 1, 8); break;
    case 'e': edgerm_read_sensor(past - 2, 4, (double *)arg); break;
    case 'f': edgerm_read_sensor("temp", 4, far); break;
    case 'g': edgerm_publish(past - 100, 200); break;
    case 'h': edgerm_set_actuator(past - 2, 5, 1.0); break;
    case 'i': edgerm_log((const char *)0xfffffff0u, 0x20); break; /* ptr + len wraps */
    case 'j': edgerm_publish(past - 10, 5000); break; /* too big AND outside: the trap wins */
    default: return 65;
    }
    edgerm_log("after", 5);
    return 0;
}
