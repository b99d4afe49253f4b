/* fail: logs why and returns exit code 3 (FAILED, EXITED_NONZERO). */
#include "edgerm_task.h"

EDGERM_EXPORT("run") int32_t run(void) {
    static const char msg[] = "failing on purpose";
    edgerm_log(msg, sizeof msg - 1);
    return 3;
}
