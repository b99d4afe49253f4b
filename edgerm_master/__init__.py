"""EdgeRM master: collects agents' resources and offers them to frameworks (Mesos two-level
scheduling for the edge).

Modules, one job each (docs/master.md, "Layout"). The sans-IO core: `core` (the `Master`
facade), `state` (the tables it shares), `events` (its outputs), `agents`, `commands`,
`frameworks`, `tasks`, `offers`, `uploads`, `recovery`, `view` (one job each, functions over the
state), `agent_states` and `task_states` (the lifecycle tables), `validation` (every check of a
call), `logs`; beside it `allocator` (DRF), `store` (SQLite registrar), `records` (what the store
persists), `config` (every default, TOML + flags), `modules` (the module store's file side),
`fastpath` and `replies` (heartbeats and replies as bytes); `service` (the Trio shell);
`testing`, `testing_io`, `testing_scripted_master` (helpers for everyone's tests).
"""
