/* grow: grows its linear memory one 64 KiB page at a time, touching each page, until
 * memory.grow fails (returns 3) -- or the host ends it for exceeding its mem_mb. */
#include "edgerm_task.h"

EDGERM_EXPORT("run") int32_t run(void) {
    static const char msg[] = "growing";
    edgerm_log(msg, sizeof msg - 1);
    for (;;) {
        int32_t page = (int32_t)__builtin_wasm_memory_grow(0, 1);
        if (page < 0) {
            static const char refused[] = "memory.grow refused";
            edgerm_log(refused, sizeof refused - 1);
            return 3;
        }
        volatile uint8_t *p = (volatile uint8_t *)((uintptr_t)page * 65536u);
        for (uint32_t i = 0; i < 65536u; i += 4096u) p[i] = 1;
    }
}
