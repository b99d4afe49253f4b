/* sampler: reads sensor argv[0] argv[1] times (default 3), argv[2] ms apart (default 0), and
 * publishes each reading as 8 bytes (an f64, little-endian). Exit 0; 1 when the sensor read
 * fails (its return code is logged). */
#include "edgerm_task.h"

static char name[64];
static char num[16];

static uint32_t parse_u32(const char *s, int32_t len, uint32_t dflt) {
    if (len <= 0) return dflt;
    uint32_t v = 0;
    for (int32_t i = 0; i < len && i < (int32_t)sizeof num; i++) {
        if (s[i] < '0' || s[i] > '9') return dflt;
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    return v;
}

EDGERM_EXPORT("run") int32_t run(void) {
    int32_t name_len = edgerm_arg_get(0, name, sizeof name);
    if (name_len <= 0 || (uint32_t)name_len > sizeof name) {
        static const char usage[] = "usage: sampler SENSOR [COUNT [PERIOD_MS]]";
        edgerm_log(usage, sizeof usage - 1);
        return 64;
    }
    uint32_t count = parse_u32(num, edgerm_arg_get(1, num, sizeof num), 3);
    uint32_t period = parse_u32(num, edgerm_arg_get(2, num, sizeof num), 0);
    for (uint32_t i = 0; i < count; i++) {
        double value;
        int32_t rc = edgerm_read_sensor(name, (uint32_t)name_len, &value);
        if (rc != EDGERM_OK) {
            static char msg[] = "read_sensor failed: -0";
            msg[sizeof msg - 2] = (char)('0' - rc);
            edgerm_log(msg, sizeof msg - 1);
            return 1;
        }
        while (edgerm_publish(&value, sizeof value) == EDGERM_E_AGAIN) edgerm_sleep_ms(10);
        if (period && i + 1 < count) edgerm_sleep_ms(period);
    }
    return 0;
}
