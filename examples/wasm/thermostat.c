/* thermostat: a closed loop on the device. Reads sensor argv[0] every argv[4] ms (default
 * 1000), argv[3] times (default 10; 0: until killed), and sets actuator argv[1] to 1 when the
 * reading is above the setpoint argv[2] ("24", "21.5"; default 25) and to 0 when it is at or
 * below setpoint - hysteresis argv[5] (default 0); in between it keeps its state. After each
 * step it publishes 16 bytes: the reading and the value set (two f64, little-endian).
 *
 * Launch it with both devices in the task's resources (the actuator is then this task's alone).
 * Exit 0; 1 when a call fails (the call and its code are logged): -2 the task does not hold
 * the device, -1 it is not a sensor / not an actuator, -3 the device failed. ABI version 2. */
#include "edgerm_task.h"

static char sensor[32], actuator[32], arg[16];

/* "21.5" -> 21.5; `dflt` for a missing or malformed argument. */
static double parse_num(int32_t len, double dflt) {
    if (len <= 0 || len > (int32_t)sizeof arg) return dflt;
    double v = 0, scale = 0;
    int32_t i = 0, neg = arg[0] == '-';
    for (i = neg; i < len; i++) {
        char c = arg[i];
        if (c == '.' && scale == 0) {
            scale = 1;
        } else if (c >= '0' && c <= '9') {
            v = v * 10 + (c - '0');
            if (scale) scale *= 10;
        } else {
            return dflt;
        }
    }
    if (scale) v /= scale;
    return neg ? -v : v;
}

static int32_t failed(const char *call, uint32_t call_len, int32_t rc) {
    static char msg[48];
    uint32_t n = 0;
    for (uint32_t i = 0; i < call_len && n < sizeof msg - 8; i++) msg[n++] = call[i];
    msg[n++] = ' ';
    msg[n++] = 'f';
    msg[n++] = 'a';
    msg[n++] = 'i';
    msg[n++] = 'l';
    msg[n++] = 'e';
    msg[n++] = 'd';
    msg[n++] = ' ';
    msg[n++] = '-';
    msg[n++] = (char)('0' - rc);
    edgerm_log(msg, n);
    return 1;
}

EDGERM_EXPORT("run") int32_t run(void) {
    int32_t sensor_len = edgerm_arg_get(0, sensor, sizeof sensor);
    int32_t actuator_len = edgerm_arg_get(1, actuator, sizeof actuator);
    if (sensor_len <= 0 || sensor_len > (int32_t)sizeof sensor || actuator_len <= 0 ||
        actuator_len > (int32_t)sizeof actuator) {
        static const char usage[] =
            "usage: thermostat SENSOR ACTUATOR [SETPOINT [COUNT [PERIOD_MS [HYSTERESIS]]]]";
        edgerm_log(usage, sizeof usage - 1);
        return 64;
    }
    double setpoint = parse_num(edgerm_arg_get(2, arg, sizeof arg), 25);
    uint32_t count = (uint32_t)parse_num(edgerm_arg_get(3, arg, sizeof arg), 10);
    uint32_t period = (uint32_t)parse_num(edgerm_arg_get(4, arg, sizeof arg), 1000);
    double hysteresis = parse_num(edgerm_arg_get(5, arg, sizeof arg), 0);
    double on = 0;
    for (uint32_t i = 0; count == 0 || i < count; i++) {
        double step[2];
        int32_t rc = edgerm_read_sensor(sensor, (uint32_t)sensor_len, &step[0]);
        if (rc != EDGERM_OK) return failed("read_sensor", 11, rc);
        if (step[0] > setpoint) {
            on = 1;
        } else if (step[0] <= setpoint - hysteresis) {
            on = 0;
        }
        rc = edgerm_set_actuator(actuator, (uint32_t)actuator_len, on);
        if (rc != EDGERM_OK) return failed("set_actuator", 12, rc);
        step[1] = on;
        while (edgerm_publish(step, sizeof step) == EDGERM_E_AGAIN) edgerm_sleep_ms(10);
        if (period && i + 1 != count) edgerm_sleep_ms(period);
    }
    return 0;
}
