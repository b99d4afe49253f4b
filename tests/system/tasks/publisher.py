# ruff: noqa: F821
# mypy: ignore-errors
# (args, publish, sleep_ms are the host API the MicroPython agent gives a task module.)
# publisher (system tests): publishes each launch argument in turn, then ends (FINISHED).


async def main():
    for a in args:
        while publish(a) == -5:  # the agent's queue is full: wait for acknowledgements
            await sleep_ms(20)
        await sleep_ms(1)
