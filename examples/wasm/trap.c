/* trap: logs, then executes `unreachable` (FAILED, TRAPPED). */
#include "edgerm_task.h"

EDGERM_EXPORT("run") int32_t run(void) {
    static const char msg[] = "about to trap";
    edgerm_log(msg, sizeof msg - 1);
    __builtin_trap();
}
