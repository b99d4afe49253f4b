/* spin: a runaway loop that never returns; only a timeout or a kill ends it. */
#include "edgerm_task.h"

static volatile uint32_t counter;

EDGERM_EXPORT("run") int32_t run(void) {
    static const char msg[] = "spinning";
    edgerm_log(msg, sizeof msg - 1);
    for (;;) counter++;
}
