"""What a framework launches: modules, task builders, and the constraints an offer must meet.

Pure helpers with no state and no I/O, used by the SDK (`edgerm.framework`), the `edgerm` CLI and
framework authors: `Module` (a content-addressed module reference), `Constraints` (does an offer
fit, and which resources a task on it takes) and the builders `wasm_task`, `docker_task`,
`micropython_task` and `task_info`. `edgerm.framework` re-exports every name here.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgerm.wire import pb

__all__ = ["WASM", "DOCKER", "MICROPYTHON", "Module", "Constraints", "AttributeValue",
           "wasm_task", "docker_task", "micropython_task", "task_info"]

WASM = pb.WASM
DOCKER = pb.DOCKER
MICROPYTHON = pb.MICROPYTHON

# Scalars travel as doubles: 0.1 + 0.2 offered must still fit a 0.3 request.
_EPSILON = 1e-9



@dataclass(frozen=True)
class Module:
    """A module stored at the master, content-addressed: what a WASM or MicroPython task names."""

    sha256: bytes
    size: int
    format: int = pb.WASM_MODULE

    @property
    def hex(self) -> str:
        return self.sha256.hex()

    @classmethod
    def of(cls, data: bytes, format: int = pb.WASM_MODULE) -> Module:
        """The reference a module's bytes will have once uploaded (computed locally)."""
        return cls(hashlib.sha256(data).digest(), len(data), format)


def parse_sha256_hex(segment: str) -> bytes | None:
    """The sha256 a `m/<64 hex>` path segment names (where a master or a gateway serves a
    module's bytes), or None when it is not 64 hex digits."""
    if len(segment) != 64:
        return None
    try:
        return bytes.fromhex(segment)
    except ValueError:
        return None


AttributeValue = str | float | int | Sequence[str]


@dataclass(frozen=True)
class Constraints:
    """What a task needs from an agent; `match(offer)` says whether an offer has it.

    Args:
      cpus, mem_mb, disk_mb: scalar amounts the task takes.
      ports: how many host ports it takes (from the offer's port ranges).
      devices: names of sensors/actuators/host devices it needs ("temp").
      executors: it runs on any of these (e.g. `[WASM]`); empty: any executor.
      attributes: each must be present on the agent: a text attribute equal to the string, a
        scalar equal to the number, a set attribute containing the string (or all strings of a
        list).
      agent_name: the agent's name, exactly or as a shell pattern ("pi-*").
    """

    cpus: float = 0.0
    mem_mb: float = 0.0
    disk_mb: float = 0.0
    ports: int = 0
    devices: Sequence[str] = ()
    executors: Sequence[int] = ()
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    agent_name: str | None = None

    def match(self, offer: pb.Offer) -> bool:
        return self.mismatch(offer) is None

    def mismatch(self, offer: pb.Offer) -> str | None:
        """Why `offer` does not fit, in words, or None when it does."""
        r = offer.resources
        for what, need, have in (("cpus", self.cpus, r.cpus), ("mem_mb", self.mem_mb, r.mem_mb),
                                 ("disk_mb", self.disk_mb, r.disk_mb)):
            if need > have + _EPSILON:
                return f"{what}: needs {need:g}, offered {have:g}"
        if self.ports and _count_ports(r.ports) < self.ports:
            return f"ports: needs {self.ports}, offered {_count_ports(r.ports)}"
        offered = {d.name for d in r.devices}
        for name in self.devices:
            if name not in offered:
                return f"device {name!r} not offered"
        if self.executors and not set(self.executors) & set(offer.executors):
            wanted = ", ".join(pb.Executor.Name(e) for e in self.executors)
            return f"executor: needs one of {wanted}"
        if self.agent_name is not None and not fnmatch.fnmatchcase(offer.agent_name,
                                                                   self.agent_name):
            return f"agent name {offer.agent_name!r} is not {self.agent_name!r}"
        attrs = {a.name: a for a in offer.attributes}
        for name, want in self.attributes.items():
            attr = attrs.get(name)
            if attr is None:
                return f"attribute {name!r} missing"
            if not _attribute_matches(attr, want):
                return f"attribute {name!r} is not {want!r}"
        return None

    def resources(self, offer: pb.Offer) -> pb.Resources:
        """The resources a task with these constraints takes from `offer` (which must match):
        the scalars, the first free ports, and each device (an exclusive one whole, a shared
        one a single share)."""
        res = pb.Resources(cpus=self.cpus, mem_mb=self.mem_mb, disk_mb=self.disk_mb)
        wanted = self.ports
        for rng in offer.resources.ports:
            if wanted <= 0:
                break
            take = min(wanted, rng.end - rng.begin + 1)
            res.ports.add(begin=rng.begin, end=rng.begin + take - 1)
            wanted -= take
        by_name = {d.name: d for d in offer.resources.devices}
        for name in self.devices:
            dev = by_name.get(name)
            # In an offer shares is what is left; 0 means an exclusive device, taken whole.
            shares = 0 if dev is None or dev.shares == 0 else 1
            kind = dev.kind if dev is not None else pb.DEVICE_KIND_UNSPECIFIED
            res.devices.add(name=name, kind=kind, shares=shares)
        return res


def _count_ports(ranges: Iterable[pb.Range]) -> int:
    return sum(max(0, r.end - r.begin + 1) for r in ranges)


def _attribute_matches(attr: pb.Attribute, want: AttributeValue) -> bool:
    kind = attr.WhichOneof("value")
    if isinstance(want, str):
        if kind == "text":
            return attr.text == want
        if kind == "set":
            return want in attr.set.items
        return False
    if isinstance(want, int | float):
        return kind == "scalar" and abs(attr.scalar - float(want)) <= _EPSILON
    wanted = set(want)
    if kind == "set":
        return wanted <= set(attr.set.items)
    return kind == "text" and wanted == {attr.text}


def _env(env: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[pb.EnvVar]:
    items = env.items() if isinstance(env, Mapping) else (env or ())
    return [pb.EnvVar(name=k, value=v) for k, v in items]


def wasm_task(module: Module, *, name: str = "", resources: pb.Resources | None = None,
              args: Sequence[str] = (), env: Mapping[str, str] | None = None,
              entry: str = "", timeout_s: int = 0) -> pb.TaskSpec:
    """A WASM task running an uploaded module (see proto/wasm_abi.md)."""
    spec = pb.TaskSpec(name=name, wasm=pb.WasmTask(
        sha256=module.sha256, size=module.size, entry=entry, args=list(args), env=_env(env),
        timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def docker_task(image: str, command: Sequence[str] = (), *, name: str = "",
                resources: pb.Resources | None = None, env: Mapping[str, str] | None = None,
                ports: Iterable[tuple[int, int]] = (),
                network: pb.NetworkMode = pb.NETWORK_MODE_UNSPECIFIED,
                timeout_s: int = 0) -> pb.TaskSpec:
    """A Docker task. `ports` maps (container port, host port); host ports come from the
    task's ports resource. A container still running `timeout_s` after it started is killed
    (FAILED TIMEOUT); 0: no limit."""
    spec = pb.TaskSpec(name=name, docker=pb.DockerTask(
        image=image, command=list(command), env=_env(env), network=network,
        ports=[pb.PortMapping(container_port=c, host_port=h) for c, h in ports],
        timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def micropython_task(module: Module, *, name: str = "", resources: pb.Resources | None = None,
                     args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                     timeout_s: int = 0) -> pb.TaskSpec:
    """A MicroPython task running uploaded source (or .mpy bytecode)."""
    spec = pb.TaskSpec(name=name, micropython=pb.MicroPythonTask(
        sha256=module.sha256, size=module.size, mpy=module.format == pb.MICROPYTHON_MPY,
        args=list(args), env=_env(env), timeout_s=timeout_s))
    if resources is not None:
        spec.resources.CopyFrom(resources)
    return spec


def task_info(task_id: str, spec: pb.TaskSpec) -> pb.TaskInfo:
    return pb.TaskInfo(task_id=task_id, spec=spec)
