# ruff: noqa: F821
# mypy: ignore-errors
# (args, publish, sleep_ms are the host API the MicroPython agent gives a task module.)
# counter (system tests): publishes "0", "1", "2", ... args[0] ms apart (default 200), forever.
# A relaunch would start again at "0"; a lost or repeated delivery shows as a gap or a repeat.


async def main():
    period = int(args[0]) if args else 200
    i = 0
    while True:
        while publish(str(i)) == -5:
            await sleep_ms(20)
        i += 1
        await sleep_ms(period)
