/* traps: a trap of the task's own code chosen by argument 0: 'u' unreachable, 'd' integer
 * division by zero, 'm' a load outside linear memory, 's' unbounded recursion (stack
 * exhausted), 'c' an integer conversion of NaN. All are FAILED, TRAPPED. */
#include "edgerm_task.h"

static char arg[4];
static volatile int32_t zero;
static volatile uint32_t addr = 0x7fffffffu;
static volatile double nan_value;

static volatile int32_t depth_limit = 0x7fffffff;

/* No locals in linear memory: it exhausts the interpreter's call stack, not the C stack. */
__attribute__((noinline)) static int32_t deep(int32_t n) {
    if (n >= depth_limit) return n;
    return deep(n + 1) * 3 + deep(n ^ depth_limit);
}

EDGERM_EXPORT("run") int32_t run(void) {
    if (edgerm_arg_get(0, arg, sizeof arg) != 1) return 64;
    nan_value = __builtin_nan("");
    switch (arg[0]) {
    case 'u': __builtin_trap();
    case 'd': return 100 / zero;
    case 'm': return *(volatile int32_t *)addr;
    case 's': return deep(0);
    case 'c': return (int32_t)__builtin_wasm_trunc_s_i32_f64(nan_value);
    default: return 65;
    }
}
