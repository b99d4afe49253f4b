# A MicroPython task for EdgeRM, the twin of examples/wasm/thermostat.c: a closed loop on the
# board. args: SENSOR ACTUATOR [SETPOINT [COUNT [PERIOD_MS [HYSTERESIS]]]] (defaults 25, 10,
# 1000, 0; COUNT 0: until killed). Sets ACTUATOR to 1 when the reading is above SETPOINT and to
# 0 at or below SETPOINT - HYSTERESIS, then publishes "reading value" as text on topic
# "thermostat". Launch it with both devices in the task's resources.
# set_actuator returns 0, or -2 not held, -1 not an actuator, -6 out of range, -3 I/O error.


async def main():
    sensor, actuator = args[0], args[1]
    a = [float(x) for x in args[2:]] + [25, 10, 1000, 0][len(args) - 2:]
    setpoint, count, period, hyst = a[0], int(a[1]), int(a[2]), a[3]
    on = 0
    i = 0
    while count == 0 or i < count:
        r = read_sensor(sensor)
        if r > setpoint:
            on = 1
        elif r <= setpoint - hyst:
            on = 0
        rc = set_actuator(actuator, on)
        if rc:
            log("set_actuator failed %d" % rc)
            return 1
        while publish("%s %d" % (r, on), "thermostat") == -5:
            await sleep_ms(10)
        i += 1
        if period and i != count:
            await sleep_ms(period)
