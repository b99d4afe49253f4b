# A MicroPython task for EdgeRM: read the sensor "temp" N times (args[0], default 5), publish
# each reading as text on topic "temp", every `env["PERIOD_MS"]` ms (default 10). Launch it with
# the device in the task's resources: resources.devices = [{name: "temp"}].
# The agent gives the module read_sensor, publish, sleep_ms, log, now_ms, args and env.


async def main():
    n = int(args[0]) if args else 5
    period = int(env.get("PERIOD_MS", "10"))
    for _ in range(n):
        publish(str(read_sensor("temp")), "temp")
        await sleep_ms(period)
    log("sampled %d" % n)
