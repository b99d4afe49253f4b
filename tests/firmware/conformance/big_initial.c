/* big_initial: a module whose initial memory is four pages (256 KiB): a task with a smaller
 * mem_mb is refused before it runs (ERROR, MEMORY_LIMIT). */
#include "edgerm_task.h"

EDGERM_EXPORT("run") int32_t run(void) {
    edgerm_log("ran", 3);
    return 0;
}
