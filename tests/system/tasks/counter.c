/* counter (system tests): publishes 0, 1, 2, ... as decimal text, argv[0] ms apart (default
 * 200), forever. A relaunch would start again at 0 and a lost or repeated delivery would show as
 * a gap or a repeat, so the outputs prove one execution delivered exactly once. */
#include "edgerm_task.h"

static char buf[16];

static uint32_t parse_u32(const char *s, int32_t len, uint32_t dflt) {
    if (len <= 0 || len > (int32_t)sizeof buf) return dflt;
    uint32_t v = 0;
    for (int32_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return dflt;
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    return v;
}

static uint32_t format_u32(uint32_t v, char *out) {
    char tmp[10];
    uint32_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    for (uint32_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

EDGERM_EXPORT("run") int32_t run(void) {
    uint32_t period = parse_u32(buf, edgerm_arg_get(0, buf, sizeof buf), 200);
    for (uint32_t i = 0;; i++) {
        uint32_t len = format_u32(i, buf);
        while (edgerm_publish(buf, len) == EDGERM_E_AGAIN) edgerm_sleep_ms(20);
        edgerm_sleep_ms(period);
    }
}
