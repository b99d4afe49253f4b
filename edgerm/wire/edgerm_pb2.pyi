from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    STAGING: _ClassVar[TaskState]
    STARTING: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    KILLING: _ClassVar[TaskState]
    FINISHED: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    KILLED: _ClassVar[TaskState]
    ERROR: _ClassVar[TaskState]
    LOST: _ClassVar[TaskState]
    UNREACHABLE: _ClassVar[TaskState]
    DROPPED: _ClassVar[TaskState]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    EXITED_NONZERO: _ClassVar[Reason]
    MEMORY_LIMIT: _ClassVar[Reason]
    KILL_REQUESTED: _ClassVar[Reason]
    AGENT_UNREACHABLE: _ClassVar[Reason]
    AGENT_LOST: _ClassVar[Reason]
    AGENT_RESTARTED: _ClassVar[Reason]
    LAUNCH_FAILED: _ClassVar[Reason]
    MODULE_UNAVAILABLE: _ClassVar[Reason]
    MODULE_HASH_MISMATCH: _ClassVar[Reason]
    TIMEOUT: _ClassVar[Reason]
    TRAPPED: _ClassVar[Reason]
    INVALID_TASK: _ClassVar[Reason]
    UNSUPPORTED_EXECUTOR: _ClassVar[Reason]
    KILLED_BEFORE_LAUNCH: _ClassVar[Reason]
    TASK_UNKNOWN: _ClassVar[Reason]
    RECONCILIATION: _ClassVar[Reason]
    FRAMEWORK_REMOVED: _ClassVar[Reason]
    RESOURCES_UNAVAILABLE: _ClassVar[Reason]
    EXECUTOR_ERROR: _ClassVar[Reason]

class Executor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTOR_UNSPECIFIED: _ClassVar[Executor]
    DOCKER: _ClassVar[Executor]
    WASM: _ClassVar[Executor]
    MICROPYTHON: _ClassVar[Executor]

class DeviceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_KIND_UNSPECIFIED: _ClassVar[DeviceKind]
    SENSOR: _ClassVar[DeviceKind]
    ACTUATOR: _ClassVar[DeviceKind]
    OTHER: _ClassVar[DeviceKind]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    BAD_REQUEST: _ClassVar[ErrorCode]
    UNAUTHENTICATED: _ClassVar[ErrorCode]
    FORBIDDEN: _ClassVar[ErrorCode]
    NOT_FOUND: _ClassVar[ErrorCode]
    CONFLICT: _ClassVar[ErrorCode]
    TOO_LARGE: _ClassVar[ErrorCode]
    INVALID_OFFER: _ClassVar[ErrorCode]
    UNSUPPORTED: _ClassVar[ErrorCode]
    UNAVAILABLE: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    NOT_LEADER: _ClassVar[ErrorCode]

class ModuleFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODULE_FORMAT_UNSPECIFIED: _ClassVar[ModuleFormat]
    WASM_MODULE: _ClassVar[ModuleFormat]
    MICROPYTHON_SOURCE: _ClassVar[ModuleFormat]
    MICROPYTHON_MPY: _ClassVar[ModuleFormat]

class NetworkMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_MODE_UNSPECIFIED: _ClassVar[NetworkMode]
    NONE: _ClassVar[NetworkMode]
    HOST: _ClassVar[NetworkMode]
    BRIDGE: _ClassVar[NetworkMode]
TASK_STATE_UNSPECIFIED: TaskState
STAGING: TaskState
STARTING: TaskState
RUNNING: TaskState
KILLING: TaskState
FINISHED: TaskState
FAILED: TaskState
KILLED: TaskState
ERROR: TaskState
LOST: TaskState
UNREACHABLE: TaskState
DROPPED: TaskState
REASON_UNSPECIFIED: Reason
EXITED_NONZERO: Reason
MEMORY_LIMIT: Reason
KILL_REQUESTED: Reason
AGENT_UNREACHABLE: Reason
AGENT_LOST: Reason
AGENT_RESTARTED: Reason
LAUNCH_FAILED: Reason
MODULE_UNAVAILABLE: Reason
MODULE_HASH_MISMATCH: Reason
TIMEOUT: Reason
TRAPPED: Reason
INVALID_TASK: Reason
UNSUPPORTED_EXECUTOR: Reason
KILLED_BEFORE_LAUNCH: Reason
TASK_UNKNOWN: Reason
RECONCILIATION: Reason
FRAMEWORK_REMOVED: Reason
RESOURCES_UNAVAILABLE: Reason
EXECUTOR_ERROR: Reason
EXECUTOR_UNSPECIFIED: Executor
DOCKER: Executor
WASM: Executor
MICROPYTHON: Executor
DEVICE_KIND_UNSPECIFIED: DeviceKind
SENSOR: DeviceKind
ACTUATOR: DeviceKind
OTHER: DeviceKind
ERROR_CODE_UNSPECIFIED: ErrorCode
BAD_REQUEST: ErrorCode
UNAUTHENTICATED: ErrorCode
FORBIDDEN: ErrorCode
NOT_FOUND: ErrorCode
CONFLICT: ErrorCode
TOO_LARGE: ErrorCode
INVALID_OFFER: ErrorCode
UNSUPPORTED: ErrorCode
UNAVAILABLE: ErrorCode
INTERNAL: ErrorCode
NOT_LEADER: ErrorCode
MODULE_FORMAT_UNSPECIFIED: ModuleFormat
WASM_MODULE: ModuleFormat
MICROPYTHON_SOURCE: ModuleFormat
MICROPYTHON_MPY: ModuleFormat
NETWORK_MODE_UNSPECIFIED: NetworkMode
NONE: NetworkMode
HOST: NetworkMode
BRIDGE: NetworkMode

class Range(_message.Message):
    __slots__ = ("begin", "end")
    BEGIN_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    begin: int
    end: int
    def __init__(self, begin: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Set(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[str]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "kind", "shares", "unit", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: DeviceKind
    shares: int
    unit: str
    path: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[DeviceKind, str]] = ..., shares: _Optional[int] = ..., unit: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class CustomResource(_message.Message):
    __slots__ = ("name", "scalar", "range", "set")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    name: str
    scalar: float
    range: Range
    set: Set
    def __init__(self, name: _Optional[str] = ..., scalar: _Optional[float] = ..., range: _Optional[_Union[Range, _Mapping]] = ..., set: _Optional[_Union[Set, _Mapping]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpus", "mem_mb", "disk_mb", "ports", "devices", "custom")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEM_MB_FIELD_NUMBER: _ClassVar[int]
    DISK_MB_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    cpus: float
    mem_mb: float
    disk_mb: float
    ports: _containers.RepeatedCompositeFieldContainer[Range]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    custom: _containers.RepeatedCompositeFieldContainer[CustomResource]
    def __init__(self, cpus: _Optional[float] = ..., mem_mb: _Optional[float] = ..., disk_mb: _Optional[float] = ..., ports: _Optional[_Iterable[_Union[Range, _Mapping]]] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., custom: _Optional[_Iterable[_Union[CustomResource, _Mapping]]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("name", "text", "scalar", "set")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    name: str
    text: str
    scalar: float
    set: Set
    def __init__(self, name: _Optional[str] = ..., text: _Optional[str] = ..., scalar: _Optional[float] = ..., set: _Optional[_Union[Set, _Mapping]] = ...) -> None: ...

class EnvVar(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("container_port", "host_port", "udp")
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    UDP_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    host_port: int
    udp: bool
    def __init__(self, container_port: _Optional[int] = ..., host_port: _Optional[int] = ..., udp: _Optional[bool] = ...) -> None: ...

class DockerTask(_message.Message):
    __slots__ = ("image", "command", "env", "ports", "network", "timeout_s")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedCompositeFieldContainer[EnvVar]
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    network: NetworkMode
    timeout_s: int
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., network: _Optional[_Union[NetworkMode, str]] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class WasmTask(_message.Message):
    __slots__ = ("sha256", "size", "entry", "args", "env", "timeout_s")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    size: int
    entry: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedCompositeFieldContainer[EnvVar]
    timeout_s: int
    def __init__(self, sha256: _Optional[bytes] = ..., size: _Optional[int] = ..., entry: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class MicroPythonTask(_message.Message):
    __slots__ = ("sha256", "size", "mpy", "args", "env", "timeout_s")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MPY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    size: int
    mpy: bool
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedCompositeFieldContainer[EnvVar]
    timeout_s: int
    def __init__(self, sha256: _Optional[bytes] = ..., size: _Optional[int] = ..., mpy: _Optional[bool] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("name", "resources", "docker", "wasm", "micropython")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    WASM_FIELD_NUMBER: _ClassVar[int]
    MICROPYTHON_FIELD_NUMBER: _ClassVar[int]
    name: str
    resources: Resources
    docker: DockerTask
    wasm: WasmTask
    micropython: MicroPythonTask
    def __init__(self, name: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., docker: _Optional[_Union[DockerTask, _Mapping]] = ..., wasm: _Optional[_Union[WasmTask, _Mapping]] = ..., micropython: _Optional[_Union[MicroPythonTask, _Mapping]] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("task_id", "spec")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    spec: TaskSpec
    def __init__(self, task_id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ...) -> None: ...

class AgentCall(_message.Message):
    __slots__ = ("agent_id", "seq", "mac", "register", "heartbeat", "status", "publish", "module")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    agent_id: int
    seq: int
    mac: bytes
    register: Register
    heartbeat: Heartbeat
    status: StatusUpdate
    publish: Publish
    module: ModuleRequest
    def __init__(self, agent_id: _Optional[int] = ..., seq: _Optional[int] = ..., mac: _Optional[bytes] = ..., register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., status: _Optional[_Union[StatusUpdate, _Mapping]] = ..., publish: _Optional[_Union[Publish, _Mapping]] = ..., module: _Optional[_Union[ModuleRequest, _Mapping]] = ...) -> None: ...

class AgentReply(_message.Message):
    __slots__ = ("seq", "mac", "update_ack", "commands", "registered", "error", "module")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ACK_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    mac: bytes
    update_ack: int
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    registered: Registered
    error: Error
    module: ModuleChunk
    def __init__(self, seq: _Optional[int] = ..., mac: _Optional[bytes] = ..., update_ack: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ..., registered: _Optional[_Union[Registered, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., module: _Optional[_Union[ModuleChunk, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("name", "resources", "attributes", "executors", "protocol_version", "nonce", "tasks", "max_payload", "update_next")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    UPDATE_NEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    resources: Resources
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    executors: _containers.RepeatedScalarFieldContainer[Executor]
    protocol_version: int
    nonce: bytes
    tasks: _containers.RepeatedCompositeFieldContainer[TaskReport]
    max_payload: int
    update_next: int
    def __init__(self, name: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., executors: _Optional[_Iterable[_Union[Executor, str]]] = ..., protocol_version: _Optional[int] = ..., nonce: _Optional[bytes] = ..., tasks: _Optional[_Iterable[_Union[TaskReport, _Mapping]]] = ..., max_payload: _Optional[int] = ..., update_next: _Optional[int] = ...) -> None: ...

class TaskReport(_message.Message):
    __slots__ = ("task", "state")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    task: int
    state: TaskState
    def __init__(self, task: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("agent_id", "nonce", "heartbeat_ms", "jitter_ms", "update_ack")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    JITTER_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ACK_FIELD_NUMBER: _ClassVar[int]
    agent_id: int
    nonce: bytes
    heartbeat_ms: int
    jitter_ms: int
    update_ack: int
    def __init__(self, agent_id: _Optional[int] = ..., nonce: _Optional[bytes] = ..., heartbeat_ms: _Optional[int] = ..., jitter_ms: _Optional[int] = ..., update_ack: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("command_ack", "resources", "attributes")
    COMMAND_ACK_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    command_ack: int
    resources: Resources
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    def __init__(self, command_ack: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ...) -> None: ...

class StatusUpdate(_message.Message):
    __slots__ = ("update_id", "task", "state", "reason", "message", "exit_code")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    update_id: int
    task: int
    state: TaskState
    reason: Reason
    message: str
    exit_code: int
    def __init__(self, update_id: _Optional[int] = ..., task: _Optional[int] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., exit_code: _Optional[int] = ...) -> None: ...

class Publish(_message.Message):
    __slots__ = ("update_id", "task", "data", "topic")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    update_id: int
    task: int
    data: bytes
    topic: str
    def __init__(self, update_id: _Optional[int] = ..., task: _Optional[int] = ..., data: _Optional[bytes] = ..., topic: _Optional[str] = ...) -> None: ...

class ModuleRequest(_message.Message):
    __slots__ = ("sha256", "offset", "length")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    offset: int
    length: int
    def __init__(self, sha256: _Optional[bytes] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ModuleChunk(_message.Message):
    __slots__ = ("sha256", "offset", "total", "data")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    offset: int
    total: int
    data: bytes
    def __init__(self, sha256: _Optional[bytes] = ..., offset: _Optional[int] = ..., total: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("id", "launch", "kill", "fetch", "reregister")
    ID_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    id: int
    launch: Launch
    kill: Kill
    fetch: FetchModule
    reregister: ReRegister
    def __init__(self, id: _Optional[int] = ..., launch: _Optional[_Union[Launch, _Mapping]] = ..., kill: _Optional[_Union[Kill, _Mapping]] = ..., fetch: _Optional[_Union[FetchModule, _Mapping]] = ..., reregister: _Optional[_Union[ReRegister, _Mapping]] = ...) -> None: ...

class Launch(_message.Message):
    __slots__ = ("task", "spec")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    task: int
    spec: TaskSpec
    def __init__(self, task: _Optional[int] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ...) -> None: ...

class Kill(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: int
    def __init__(self, task: _Optional[int] = ...) -> None: ...

class FetchModule(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    size: int
    def __init__(self, sha256: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class ReRegister(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayBatch(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, calls: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GatewayReplies(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, replies: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FrameworkCall(_message.Message):
    __slots__ = ("framework_id", "call_id", "subscribe", "accept", "decline", "kill", "reconcile", "acknowledge", "teardown", "upload", "revive", "suppress")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    DECLINE_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    RECONCILE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    TEARDOWN_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    REVIVE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    call_id: int
    subscribe: Subscribe
    accept: Accept
    decline: Decline
    kill: KillTask
    reconcile: Reconcile
    acknowledge: Acknowledge
    teardown: Teardown
    upload: UploadModule
    revive: Revive
    suppress: Suppress
    def __init__(self, framework_id: _Optional[str] = ..., call_id: _Optional[int] = ..., subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., accept: _Optional[_Union[Accept, _Mapping]] = ..., decline: _Optional[_Union[Decline, _Mapping]] = ..., kill: _Optional[_Union[KillTask, _Mapping]] = ..., reconcile: _Optional[_Union[Reconcile, _Mapping]] = ..., acknowledge: _Optional[_Union[Acknowledge, _Mapping]] = ..., teardown: _Optional[_Union[Teardown, _Mapping]] = ..., upload: _Optional[_Union[UploadModule, _Mapping]] = ..., revive: _Optional[_Union[Revive, _Mapping]] = ..., suppress: _Optional[_Union[Suppress, _Mapping]] = ...) -> None: ...

class FrameworkEvent(_message.Message):
    __slots__ = ("call_id", "subscribed", "offers", "rescind", "update", "error", "output", "module_stored", "accepted", "ping")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    RESCIND_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MODULE_STORED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    subscribed: Subscribed
    offers: Offers
    rescind: Rescind
    update: TaskStatus
    error: Error
    output: TaskOutput
    module_stored: ModuleStored
    accepted: Accepted
    ping: Ping
    def __init__(self, call_id: _Optional[int] = ..., subscribed: _Optional[_Union[Subscribed, _Mapping]] = ..., offers: _Optional[_Union[Offers, _Mapping]] = ..., rescind: _Optional[_Union[Rescind, _Mapping]] = ..., update: _Optional[_Union[TaskStatus, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., output: _Optional[_Union[TaskOutput, _Mapping]] = ..., module_stored: _Optional[_Union[ModuleStored, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("name", "token", "failover_timeout_s", "role", "framework_secret")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_SECRET_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    failover_timeout_s: float
    role: str
    framework_secret: bytes
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ..., failover_timeout_s: _Optional[float] = ..., role: _Optional[str] = ..., framework_secret: _Optional[bytes] = ...) -> None: ...

class Subscribed(_message.Message):
    __slots__ = ("framework_id", "heartbeat_interval_s", "weight", "framework_secret")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_SECRET_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    heartbeat_interval_s: float
    weight: float
    framework_secret: bytes
    def __init__(self, framework_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., weight: _Optional[float] = ..., framework_secret: _Optional[bytes] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "agent_id", "agent_name", "resources", "attributes", "executors", "expires_in_s")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    agent_id: int
    agent_name: str
    resources: Resources
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    executors: _containers.RepeatedScalarFieldContainer[Executor]
    expires_in_s: float
    def __init__(self, offer_id: _Optional[str] = ..., agent_id: _Optional[int] = ..., agent_name: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., executors: _Optional[_Iterable[_Union[Executor, str]]] = ..., expires_in_s: _Optional[float] = ...) -> None: ...

class Offers(_message.Message):
    __slots__ = ("offers",)
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    def __init__(self, offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ...) -> None: ...

class Rescind(_message.Message):
    __slots__ = ("offer_id",)
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    def __init__(self, offer_id: _Optional[str] = ...) -> None: ...

class Accept(_message.Message):
    __slots__ = ("offer_ids", "launch", "refuse_seconds")
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    REFUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    launch: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    refuse_seconds: float
    def __init__(self, offer_ids: _Optional[_Iterable[str]] = ..., launch: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ..., refuse_seconds: _Optional[float] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Decline(_message.Message):
    __slots__ = ("offer_ids", "refuse_seconds")
    OFFER_IDS_FIELD_NUMBER: _ClassVar[int]
    REFUSE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    offer_ids: _containers.RepeatedScalarFieldContainer[str]
    refuse_seconds: float
    def __init__(self, offer_ids: _Optional[_Iterable[str]] = ..., refuse_seconds: _Optional[float] = ...) -> None: ...

class KillTask(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class Reconcile(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Acknowledge(_message.Message):
    __slots__ = ("task_id", "uuid")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    uuid: bytes
    def __init__(self, task_id: _Optional[str] = ..., uuid: _Optional[bytes] = ...) -> None: ...

class Teardown(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Revive(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Suppress(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UploadModule(_message.Message):
    __slots__ = ("format", "data", "name")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    format: ModuleFormat
    data: bytes
    name: str
    def __init__(self, format: _Optional[_Union[ModuleFormat, str]] = ..., data: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class ModuleStored(_message.Message):
    __slots__ = ("sha256", "size", "format")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    size: int
    format: ModuleFormat
    def __init__(self, sha256: _Optional[bytes] = ..., size: _Optional[int] = ..., format: _Optional[_Union[ModuleFormat, str]] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "state", "reason", "message", "agent_id", "uuid", "timestamp", "exit_code")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    reason: Reason
    message: str
    agent_id: int
    uuid: bytes
    timestamp: float
    exit_code: int
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., agent_id: _Optional[int] = ..., uuid: _Optional[bytes] = ..., timestamp: _Optional[float] = ..., exit_code: _Optional[int] = ...) -> None: ...

class TaskOutput(_message.Message):
    __slots__ = ("task_id", "seq", "data", "topic")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    seq: int
    data: bytes
    topic: str
    def __init__(self, task_id: _Optional[str] = ..., seq: _Optional[int] = ..., data: _Optional[bytes] = ..., topic: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "leader")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    leader: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., leader: _Optional[str] = ...) -> None: ...

class AgentView(_message.Message):
    __slots__ = ("agent_id", "name", "state", "total", "used", "attributes", "executors", "last_seen", "transport")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    agent_id: int
    name: str
    state: str
    total: Resources
    used: Resources
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    executors: _containers.RepeatedScalarFieldContainer[Executor]
    last_seen: float
    transport: str
    def __init__(self, agent_id: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., total: _Optional[_Union[Resources, _Mapping]] = ..., used: _Optional[_Union[Resources, _Mapping]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., executors: _Optional[_Iterable[_Union[Executor, str]]] = ..., last_seen: _Optional[float] = ..., transport: _Optional[str] = ...) -> None: ...

class FrameworkView(_message.Message):
    __slots__ = ("framework_id", "name", "role", "weight", "connected", "tasks", "dominant_share", "principal")
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    DOMINANT_SHARE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    framework_id: str
    name: str
    role: str
    weight: float
    connected: bool
    tasks: int
    dominant_share: float
    principal: str
    def __init__(self, framework_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., weight: _Optional[float] = ..., connected: _Optional[bool] = ..., tasks: _Optional[int] = ..., dominant_share: _Optional[float] = ..., principal: _Optional[str] = ...) -> None: ...

class TaskView(_message.Message):
    __slots__ = ("task_id", "framework_id", "agent_id", "name", "state", "reason", "message", "executor", "resources")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    framework_id: str
    agent_id: int
    name: str
    state: TaskState
    reason: Reason
    message: str
    executor: Executor
    resources: Resources
    def __init__(self, task_id: _Optional[str] = ..., framework_id: _Optional[str] = ..., agent_id: _Optional[int] = ..., name: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., executor: _Optional[_Union[Executor, str]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class ClusterState(_message.Message):
    __slots__ = ("agents", "frameworks", "tasks", "offers", "now", "version")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    FRAMEWORKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentView]
    frameworks: _containers.RepeatedCompositeFieldContainer[FrameworkView]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskView]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    now: float
    version: str
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentView, _Mapping]]] = ..., frameworks: _Optional[_Iterable[_Union[FrameworkView, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[TaskView, _Mapping]]] = ..., offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ..., now: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...

class StateRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...
