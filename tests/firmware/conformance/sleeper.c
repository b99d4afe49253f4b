/* sleeper: logs, then sleeps 60 s in one host call; only a kill or a timeout ends it early. */
#include "edgerm_task.h"

EDGERM_EXPORT("run") int32_t run(void) {
    edgerm_log("sleeping", 8);
    edgerm_sleep_ms(60000);
    edgerm_log("woke up", 7);
    return 0;
}
