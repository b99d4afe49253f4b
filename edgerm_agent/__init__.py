"""The EdgeRM Linux agent: offers this host's resources to an EdgeRM master and runs Docker and
WASM tasks for it.

`core` is the sans-IO protocol state machine, `shell` drives it with Trio, `links` carries its
calls over WebSocket or CoAP, `executors/` run tasks, `checkpoint` makes it survive SIGKILL.
Kept free of imports so that the WASM child process (`executors.wasm_child`) starts fast.
"""
