/* abi_calls: every host call of ABI v2 with its return codes, published one record at a time
 * (so that executors can be compared byte for byte). Launch it with args "alpha" "b", env
 * K=value, devices temp + relay, on an agent with sensors temp and humidity and actuators relay
 * (0..1) and lamp. Exit 0. */
#include "edgerm_task.h"

static char buf[64];

static void out(const void *data, uint32_t len) {
    while (edgerm_publish(data, len) == EDGERM_E_AGAIN) edgerm_sleep_ms(5);
}

static void rc(int32_t code) { out(&code, sizeof code); }

/* The return code, then the first min(rc, cap) bytes copied. */
static void rc_and_copy(int32_t code, uint32_t cap) {
    uint32_t n = code < 0 ? 0 : (uint32_t)code < cap ? (uint32_t)code : cap;
    rc(code);
    out(buf, n);
}

#define S(lit) lit, sizeof lit - 1

EDGERM_EXPORT("run") int32_t run(void) {
    static char big[1025];
    double v = 0;

    edgerm_log(S("abi calls"));
    rc(edgerm_arg_count());
    rc_and_copy(edgerm_arg_get(0, buf, sizeof buf), sizeof buf);
    rc_and_copy(edgerm_arg_get(0, buf, 2), 2); /* truncated: full length back */
    rc_and_copy(edgerm_arg_get(1, buf, sizeof buf), sizeof buf);
    rc(edgerm_arg_get(2, buf, sizeof buf));     /* no such argument */
    rc_and_copy(edgerm_env_get(S("K"), buf, sizeof buf), sizeof buf);
    rc_and_copy(edgerm_env_get(S("K"), buf, 1), 1);
    rc(edgerm_env_get(S("MISSING"), buf, sizeof buf));

    rc(edgerm_read_sensor(S("temp"), &v));       /* claimed */
    out(&v, sizeof v);
    rc(edgerm_read_sensor(S("humidity"), &v));   /* the agent has it, not claimed: -2 */
    rc(edgerm_read_sensor(S("nosuch"), &v));     /* nobody has it: -1 */
    rc(edgerm_read_sensor(S("relay"), &v));      /* claimed, but an actuator: -1 */

    rc(edgerm_set_actuator(S("relay"), 1.0));    /* claimed, in range */
    rc(edgerm_set_actuator(S("relay"), 7.0));    /* out of range: -6, not set */
    rc(edgerm_set_actuator(S("relay"), __builtin_nan(""))); /* NaN: -6 */
    rc(edgerm_set_actuator(S("lamp"), 1.0));     /* the agent has it, not claimed: -2 */
    rc(edgerm_set_actuator(S("nosuch"), 1.0));   /* not claimed: -2 whatever */
    rc(edgerm_set_actuator(S("temp"), 1.0));     /* claimed, but a sensor: -1 */
    rc(edgerm_set_actuator(S("relay"), 0.0));

    rc(edgerm_publish(big, sizeof big));         /* over 1024 bytes: -4 */
    out(big, 1024);                              /* exactly 1024: fine */

    uint64_t t0 = edgerm_now_ms();
    edgerm_sleep_ms(30);
    uint64_t t1 = edgerm_now_ms();
    rc(t1 >= t0 + 30 ? 1 : 0);                   /* a sleep lasts at least what it asked */

    edgerm_log(S("abi done"));
    return 0;
}
