/* newer_abi: imports a call no agent has (as a task for a future ABI would): the launch must
 * fail with ERROR, LAUNCH_FAILED, naming edgerm.teleport, before anything runs. */
#include "edgerm_task.h"

EDGERM_IMPORT("teleport") int32_t edgerm_teleport(uint32_t where);

EDGERM_EXPORT("run") int32_t run(void) {
    edgerm_log("ran", 3);
    return edgerm_teleport(1);
}
