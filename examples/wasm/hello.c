/* hello: logs a greeting, then publishes each launch argument as one message. Exit 0. */
#include "edgerm_task.h"

static char buf[256];

static uint32_t cstrlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

EDGERM_EXPORT("run") int32_t run(void) {
    static const char greeting[] = "hello from wasm";
    edgerm_log(greeting, cstrlen(greeting));
    int32_t n = edgerm_arg_count();
    for (int32_t i = 0; i < n; i++) {
        int32_t len = edgerm_arg_get((uint32_t)i, buf, sizeof buf);
        if (len < 0) return 2;
        if ((uint32_t)len > sizeof buf) len = sizeof buf; /* truncated copy */
        while (edgerm_publish(buf, (uint32_t)len) == EDGERM_E_AGAIN) edgerm_sleep_ms(10);
    }
    /* GREETING from env, when set, is logged too. */
    static const char name[] = "GREETING";
    int32_t len = edgerm_env_get(name, sizeof name - 1, buf, sizeof buf);
    if (len > 0) edgerm_log(buf, (uint32_t)len > sizeof buf ? sizeof buf : (uint32_t)len);
    return 0;
}
