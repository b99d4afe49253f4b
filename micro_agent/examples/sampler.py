# A MicroPython task for EdgeRM: read the sensor "temp" N times (args[0], default 5), publish
# each reading as text on topic "temp", every `env["PERIOD_MS"]` ms (default 10). Launch it with
# the device in the task's resources: resources.devices = [{name: "temp"}].
# The agent gives the module read_sensor, publish, sleep_ms, log, now_ms, args and env.
# publish() is -5 while the agent's queue is full (link slow or down): keep the reading, retry.


async def main():
    n = int(args[0]) if args else 5
    period = int(env.get("PERIOD_MS", "10"))
    for _ in range(n):
        r = str(read_sensor("temp"))
        while publish(r, "temp") == -5:
            await sleep_ms(period)
        await sleep_ms(period)
    log("sampled %d" % n)
