"""Executors run tasks for the agent: `docker` (containers through the Docker engine) and
`wasm` (one wasm3 child process per task, `wasm_child`). `base` holds what they share with the
shell: the per-task context through which they report states and published data."""
