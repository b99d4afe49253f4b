"""Every default and limit of the master in one place (Mesos's constants.hpp + flags.hpp).

`MasterConfig` is what the core and the shell read; `edgerm_master.config` fills it from a TOML
file and command-line flags. Times are seconds (float) unless the name ends in `_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MasterConfig", "AGENT_SILENT_CALL_S"]

# The longest an agent with its default settings goes without starting a new call when the
# one in flight gets no answer (docs/agent.md, "Liveness on a lossy link"): the Linux agent
# gives a call up after `timing.call_timeout_s` (10 s), the MicroPython and C agents after
# their CoAP exchange's retransmissions, ACK_TIMEOUT 1 s x 1.5 x (2^(MAX_RETRANSMIT 2 + 1) - 1)
# = 10.5 s; then each waits 1 s before the next call. The master counts only a new call as a
# sign of life: a retransmission is answered from the CoAP layer's cache without reaching it.
AGENT_SILENT_CALL_S = 10.5 + 1.0


@dataclass
class MasterConfig:
    # --- network (shell only)
    host: str = "127.0.0.1"
    coap_port: int = 5683
    ws_port: int = 5690
    data_dir: str = "./edgerm-data"
    log_level: str = "info"
    # WebSocket connections: the first message (Subscribe, Register, ...) must come this soon
    # after connecting (on /agent one heartbeat interval with jitter later still), or the
    # connection is closed; at most this many open in all and from one address (0: no limit).
    ws_first_message_s: float = 10.0
    ws_max_connections: int = 1000
    ws_max_connections_per_source: int = 200

    # --- authentication: constant-time compared; empty lists refuse everyone
    agent_tokens: list[str] = field(default_factory=list)
    framework_tokens: list[str] = field(default_factory=list)
    operator_tokens: list[str] = field(default_factory=list)

    # --- agents
    heartbeat_ms: int = 5000
    # Heartbeats are spread by up to this fraction of the interval so that a fleet that booted
    # together does not heartbeat in lock step.
    jitter_fraction: float = 0.1
    # Silence of this many heartbeat intervals makes an agent UNREACHABLE (Mesos: 5 pings of
    # 15 s). The window (60 s by default) must exceed an agent's interval plus what it may
    # spend on calls that get no answer, several times over on a lossy link: docs/agent.md,
    # "Liveness on a lossy link", has the arithmetic; `config.liveness_problem` checks it.
    unreachable_after_missed: int = 12
    # An UNREACHABLE agent that stays away this long is LOST and so are its tasks.
    lost_after_s: float = 600.0
    # An unacknowledged command goes out again in a reply only this long after it last did,
    # so the replies to a burst of status updates do not each repeat every launch.
    command_resend_s: float = 1.0
    # Payload budget for commands in one reply when the agent did not say (CoAP without Block2).
    default_max_payload: int = 1024

    # --- frameworks and offers
    offer_timeout_s: float = 30.0
    refuse_default_s: float = 5.0
    # How long an idle cluster waits between allocation rounds; changes trigger one sooner.
    allocation_interval_s: float = 1.0
    failover_default_s: float = 60.0
    failover_max_s: float = 7 * 24 * 3600.0
    framework_heartbeat_s: float = 15.0
    # An unacknowledged status update is re-sent this often.
    status_retry_s: float = 10.0
    # Per-role weights for DRF; roles not listed weigh 1.
    role_weights: dict[str, float] = field(default_factory=dict)
    # Terminal, acknowledged tasks the master remembers per framework (for views and reconcile).
    completed_tasks_kept: int = 1000
    # Undelivered TaskOutput kept per task; older ones are dropped and counted.
    outputs_kept: int = 256

    # --- modules (issue 5.3)
    module_max_bytes: int = 1024 * 1024
    modules_total_bytes: int = 64 * 1024 * 1024
    # An uploaded module no task refers to is kept this long before it is removed.
    module_grace_s: float = 3600.0

    # --- message size limits (bytes of one decoded message)
    agent_message_max: int = 64 * 1024
    framework_message_max: int = 2 * 1024 * 1024 + 4096
    max_tasks_per_accept: int = 1000
    max_message_text: int = 4096

    # --- store
    # "FULL": every commit survives a power cut; "NORMAL": survives a process crash (kill -9).
    sqlite_synchronous: str = "FULL"

    @property
    def heartbeat_s(self) -> float:
        return self.heartbeat_ms / 1000.0

    @property
    def unreachable_after_s(self) -> float:
        return self.heartbeat_s * self.unreachable_after_missed

    @property
    def jitter_ms(self) -> int:
        return int(self.heartbeat_ms * self.jitter_fraction)
