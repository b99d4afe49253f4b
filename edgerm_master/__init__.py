"""EdgeRM master: collects agents' resources and offers them to frameworks (Mesos two-level
scheduling for the edge).

Modules, one job each: `core` (the sans-IO state machine), `task_states` (the task lifecycle
table), `allocator` (DRF), `store` (SQLite registrar), `records` (what the store persists),
`validation` (checks of calls), `defaults` (every default), `config` (TOML + flags),
`modules` (the module store's file side), `service` (the Trio shell), `testing` (a scripted
agent, a scripted framework and `MasterProcess` for everyone's tests).
"""
