"""Resource arithmetic shared by the master and the agents: the `Res` value type.

A `Res` is what an agent has (its inventory), what an offer holds and what a task takes:
cpus, memory and disk (scalars), host ports (inclusive ranges), devices (sensors, actuators,
host devices; counted in *units*) and custom resources by name (scalars, ranges, sets).

Design notes:

* **Values, not objects.** A `Res` is never changed after construction; `+` and `-` return new
  ones. Its dicts are shared between results (cheap copies), so never mutate them.
* **Fixed point, like Mesos.** Every scalar is rounded to 1e-6 after each operation, so
  ``0.1 + 0.2 - 0.3`` is exactly 0 and no dust of resources is ever left to offer.
* **Devices are units.** In an agent's inventory (`Res.from_pb`) a `Device` with ``shares=0``
  is exclusive: one unit, one task at a time; ``shares=n`` is a shared device of capacity n.
  An actuator is always exclusive, whatever its shares say: two tasks must not drive one relay
  (proto/wasm_abi.md, "Actuators"), so an agent cannot offer it to two at once.
  In a claim (`Res.claim_from_pb`: a task's resources or an accepted offer) ``shares=0`` means
  the whole device: every unit the inventory has of it; ``shares=n`` means n units.
* **Subtraction is checked.** ``a - b`` raises `ResourceError` (a `ValueError`) naming what is
  missing unless ``a.contains(b)``; no result ever holds a negative amount.
* **Ranges and sets add as unions** (Mesos semantics), so ``(a + b) - b == a`` holds when they
  do not overlap, which is always so for parts split from one agent's resources.
* **Quantities for fairness.** `Res.quantities()` flattens a `Res` into ``{kind: amount}``
  (ports and ranges as counts, sets as sizes) so that shares can be summed across agents, where
  a port range means a different port on each host. `dominant_share` works on either form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from edgerm.wire import pb

__all__ = [
    "Res",
    "ResourceError",
    "DeviceInfo",
    "Ranges",
    "dominant_share",
    "normalize_ranges",
    "ranges_contain",
    "ranges_subtract",
    "ranges_count",
    "QUANTUM",
]

# Scalars are fixed point with this resolution (Mesos uses 1e-3; sensors' fractional shares and
# tiny MCU budgets want finer).
QUANTUM = 1e-6
_DIGITS = 6
# b is "more than" a only if it exceeds it by at least half a quantum: both are rounded already.
_TOL = QUANTUM / 2
# Range ends are uint64 on the wire.
_MAX_PORT = 2**64 - 1

Ranges = tuple[tuple[int, int], ...]



def _checked_devices(msg: pb.Resources) -> Iterator[pb.Device]:
    """The devices of `msg`, each with a name and none named twice (else `ResourceError`)."""
    seen: set[str] = set()
    for d in msg.devices:
        if not d.name:
            raise ResourceError("device without a name")
        if d.name in seen:
            raise ResourceError(f"device {d.name!r} listed twice")
        seen.add(d.name)
        yield d

class ResourceError(ValueError):
    """Resources that are malformed, or an operation that would go below zero."""


class DeviceInfo(NamedTuple):
    """What a device is, kept beside its units so that it survives arithmetic and `to_pb`."""

    kind: int = 0  # pb.DeviceKind
    unit: str = ""  # SenML unit, informational
    exclusive: bool = False  # inventory shares 0: one task at a time


_EMPTY_DICT: dict = {}


def _round(x: float) -> float:
    # `+ 0.0` turns a -0.0 into 0.0 so that equality and printing stay boring.
    return round(x, _DIGITS) + 0.0


def _scalar_untrusted(name: str, x: float) -> float:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise ResourceError(f"{name} must be a number, not {type(x).__name__}")
    if math.isnan(x) or math.isinf(x):
        raise ResourceError(f"{name} must be finite, got {x}")
    if x < 0:
        raise ResourceError(f"{name} must not be negative, got {x}")
    return _round(float(x))


# --------------------------------------------------------------------------------------------
# Ranges: sorted, disjoint, non-adjacent tuples of inclusive (begin, end).


def normalize_ranges(ranges: Iterable[tuple[int, int]], what: str = "ranges") -> Ranges:
    """Sort and merge overlapping or adjacent inclusive ranges; reject malformed ones."""
    items = []
    for r in ranges:
        try:
            b, e = r
        except (TypeError, ValueError):
            raise ResourceError(f"{what}: {r!r} is not a (begin, end) pair") from None
        if not isinstance(b, int) or not isinstance(e, int) or isinstance(b, bool) \
                or isinstance(e, bool):
            raise ResourceError(f"{what}: range {r!r} must hold integers")
        if b < 0 or e > _MAX_PORT:
            raise ResourceError(f"{what}: range {b}-{e} outside 0..2^64-1")
        if b > e:
            raise ResourceError(f"{what}: range begin {b} is after its end {e}")
        items.append((b, e))
    if len(items) <= 1:
        return tuple(items)
    items.sort()
    out = [items[0]]
    for b, e in items[1:]:
        pb_, pe = out[-1]
        if b <= pe + 1:
            if e > pe:
                out[-1] = (pb_, e)
        else:
            out.append((b, e))
    return tuple(out)


def _ranges_add(a: Ranges, b: Ranges) -> Ranges:
    if not b:
        return a
    if not a:
        return b
    if a == b:
        return a
    return normalize_ranges(a + b)


def ranges_contain(a: Ranges, b: Ranges) -> bool:
    """Whether every value in normalized `b` is in normalized `a`."""
    i = 0
    n = len(a)
    for b0, b1 in b:
        while i < n and a[i][1] < b0:
            i += 1
        if i == n or a[i][0] > b0 or a[i][1] < b1:
            return False
    return True


def ranges_subtract(a: Ranges, b: Ranges) -> Ranges:
    """Normalized `a` minus normalized `b`, which must be contained in `a`."""
    if not b:
        return a
    if a == b:
        return ()
    out: list[tuple[int, int]] = []
    j = 0
    m = len(b)
    for a0, a1 in a:
        cur = a0
        while j < m and b[j][1] < cur:
            j += 1
        while j < m and b[j][0] <= a1:
            b0, b1 = b[j]
            if b0 > cur:
                out.append((cur, b0 - 1))
            cur = max(cur, b1 + 1)
            if b1 > a1:
                break
            j += 1
        if cur <= a1:
            out.append((cur, a1))
    return tuple(out)


def ranges_count(r: Ranges) -> int:
    """How many values the ranges hold."""
    return sum(e - b + 1 for b, e in r)


def _fmt_ranges(r: Ranges) -> str:
    return ",".join(f"{b}" if b == e else f"{b}-{e}" for b, e in r)


# --------------------------------------------------------------------------------------------


class Res:
    """An immutable bundle of resources. See the module docstring for the semantics.

    Args:
        cpus, mem_mb, disk_mb: non-negative finite scalars.
        ports: inclusive (begin, end) ranges, normalized (sorted, merged) on construction.
        devices: name -> units (positive ints; zero entries are dropped).
        scalars / ranges / sets: custom resources by name.
        device_info: name -> `DeviceInfo` (kind, unit, exclusive); not part of equality.

    Error handling: malformed values raise `ResourceError`.
    """

    __slots__ = ("cpus", "mem_mb", "disk_mb", "ports", "devices", "scalars", "ranges", "sets",
                 "device_info")

    cpus: float
    mem_mb: float
    disk_mb: float
    ports: Ranges
    devices: Mapping[str, int]
    scalars: Mapping[str, float]
    ranges: Mapping[str, Ranges]
    sets: Mapping[str, frozenset[str]]
    device_info: Mapping[str, DeviceInfo]

    EMPTY: Res  # set below the class

    def __init__(
        self,
        cpus: float = 0.0,
        mem_mb: float = 0.0,
        disk_mb: float = 0.0,
        ports: Iterable[tuple[int, int]] = (),
        devices: Mapping[str, int] | None = None,
        scalars: Mapping[str, float] | None = None,
        ranges: Mapping[str, Iterable[tuple[int, int]]] | None = None,
        sets: Mapping[str, Iterable[str]] | None = None,
        device_info: Mapping[str, DeviceInfo] | None = None,
    ) -> None:
        self.cpus = _scalar_untrusted("cpus", cpus)
        self.mem_mb = _scalar_untrusted("mem_mb", mem_mb)
        self.disk_mb = _scalar_untrusted("disk_mb", disk_mb)
        self.ports = normalize_ranges(ports, "ports")
        devs: dict[str, int] = {}
        for name, units in (devices or {}).items():
            if not isinstance(name, str) or not name:
                raise ResourceError(f"device name must be a non-empty string, got {name!r}")
            if not isinstance(units, int) or isinstance(units, bool) or units < 0:
                raise ResourceError(f"device {name!r}: units must be an int >= 0, got {units!r}")
            if units:
                devs[name] = units
        self.devices = devs or _EMPTY_DICT
        sc: dict[str, float] = {}
        for name, x in (scalars or {}).items():
            v = _scalar_untrusted(f"custom scalar {name!r}", x)
            if v:
                sc[name] = v
        self.scalars = sc or _EMPTY_DICT
        rg: dict[str, Ranges] = {}
        for name, r in (ranges or {}).items():
            nr = normalize_ranges(r, f"custom range {name!r}")
            if nr:
                rg[name] = nr
        self.ranges = rg or _EMPTY_DICT
        st: dict[str, frozenset[str]] = {}
        for name, items in (sets or {}).items():
            if isinstance(items, str):
                raise ResourceError(f"custom set {name!r} must be a collection of strings")
            fs = frozenset(items)
            if any(not isinstance(i, str) for i in fs):
                raise ResourceError(f"custom set {name!r} must hold strings")
            if fs:
                st[name] = fs
        self.sets = st or _EMPTY_DICT
        kinds = [set(self.scalars), set(self.ranges), set(self.sets)]
        for i in range(3):
            for j in range(i + 1, 3):
                clash = kinds[i] & kinds[j]
                if clash:
                    raise ResourceError(f"custom resource {sorted(clash)[0]!r} has two types")
        self.device_info = dict(device_info) if device_info else _EMPTY_DICT

    @classmethod
    def _make(cls, cpus: float, mem_mb: float, disk_mb: float, ports: Ranges,
              devices: Mapping[str, int], scalars: Mapping[str, float],
              ranges: Mapping[str, Ranges], sets: Mapping[str, frozenset[str]],
              device_info: Mapping[str, DeviceInfo]) -> Res:
        # Trusted constructor for already-normalized parts: no validation, no copies.
        r = object.__new__(cls)
        r.cpus = cpus
        r.mem_mb = mem_mb
        r.disk_mb = disk_mb
        r.ports = ports
        r.devices = devices
        r.scalars = scalars
        r.ranges = ranges
        r.sets = sets
        r.device_info = device_info
        return r

    # ---------------------------------------------------------------- protobuf

    @classmethod
    def from_pb(cls, msg: pb.Resources) -> Res:
        """An agent's inventory (or an offer, as a framework sees it).

        A device with ``shares=0`` is exclusive (one unit), ``shares=n`` is shared by up to n;
        an actuator is exclusive whatever its shares. Duplicate device names and malformed
        values raise `ResourceError`.
        """
        devices: dict[str, int] = {}
        info: dict[str, DeviceInfo] = {}
        for d in _checked_devices(msg):
            exclusive = d.shares == 0 or d.kind == pb.ACTUATOR
            devices[d.name] = 1 if exclusive else d.shares
            info[d.name] = DeviceInfo(int(d.kind), d.unit, exclusive)
        return cls._from_pb_common(msg, devices, info)

    @classmethod
    def claim_from_pb(cls, msg: pb.Resources, inventory: Res) -> Res:
        """What a task or an accepted offer takes from `inventory` (normally the agent's total).

        A device with ``shares=0`` takes every unit of that device in the inventory (the whole
        device), ``shares=n`` takes n units. A device the inventory lacks raises `ResourceError`.
        Whether the claim fits is for the caller to check with `contains`.
        """
        devices: dict[str, int] = {}
        info: dict[str, DeviceInfo] = {}
        for d in _checked_devices(msg):
            have = inventory.devices.get(d.name, 0)
            if not have:
                raise ResourceError(f"device {d.name!r} is not on this agent")
            devices[d.name] = d.shares if d.shares else have
            known = inventory.device_info.get(d.name)
            info[d.name] = known if known is not None else DeviceInfo(int(d.kind), d.unit, False)
        return cls._from_pb_common(msg, devices, info)

    @classmethod
    def _from_pb_common(cls, msg: pb.Resources, devices: dict[str, int],
                        info: dict[str, DeviceInfo]) -> Res:
        scalars: dict[str, float] = {}
        ranges: dict[str, list[tuple[int, int]]] = {}
        sets: dict[str, set[str]] = {}
        for c in msg.custom:
            if not c.name:
                raise ResourceError("custom resource without a name")
            which = c.WhichOneof("value")
            if which == "scalar":
                scalars[c.name] = scalars.get(c.name, 0.0) + _scalar_untrusted(
                    f"custom scalar {c.name!r}", c.scalar)
            elif which == "range":
                ranges.setdefault(c.name, []).append((c.range.begin, c.range.end))
            elif which == "set":
                sets.setdefault(c.name, set()).update(c.set.items)
            else:
                raise ResourceError(f"custom resource {c.name!r} has no value")
        return cls(
            cpus=msg.cpus, mem_mb=msg.mem_mb, disk_mb=msg.disk_mb,
            ports=[(r.begin, r.end) for r in msg.ports],
            devices=devices, scalars=scalars, ranges=ranges, sets=sets, device_info=info,
        )

    def to_pb(self) -> pb.Resources:
        """The wire form. Exclusive devices go out as ``shares=0``, shared ones as their units.

        Device paths are never kept, so this is safe to send to frameworks.
        """
        msg = pb.Resources(cpus=self.cpus, mem_mb=self.mem_mb, disk_mb=self.disk_mb)
        for b, e in self.ports:
            msg.ports.add(begin=b, end=e)
        for name in sorted(self.devices):
            units = self.devices[name]
            info = self.device_info.get(name, DeviceInfo())
            shares = 0 if info.exclusive and units == 1 else units
            msg.devices.add(name=name, kind=info.kind, shares=shares, unit=info.unit)  # type: ignore[arg-type]
        for name in sorted(self.scalars):
            msg.custom.add(name=name, scalar=self.scalars[name])
        for name in sorted(self.ranges):
            for b, e in self.ranges[name]:
                msg.custom.add(name=name, range=pb.Range(begin=b, end=e))
        for name in sorted(self.sets):
            msg.custom.add(name=name, set=pb.Set(items=sorted(self.sets[name])))
        return msg

    # ---------------------------------------------------------------- arithmetic

    def is_empty(self) -> bool:
        return not (self.cpus or self.mem_mb or self.disk_mb or self.ports or self.devices
                    or self.scalars or self.ranges or self.sets)

    def __bool__(self) -> bool:
        return not self.is_empty()

    def __add__(self, other: Res) -> Res:
        if not isinstance(other, Res):
            return NotImplemented
        if other.is_empty():
            return self
        if self.is_empty():
            return other
        return Res._make(
            _round(self.cpus + other.cpus),
            _round(self.mem_mb + other.mem_mb),
            _round(self.disk_mb + other.disk_mb),
            _ranges_add(self.ports, other.ports),
            _merge_add(self.devices, other.devices, int.__add__),
            _merge_add(self.scalars, other.scalars, _add_scalar),
            _merge_add(self.ranges, other.ranges, _ranges_add),
            _merge_add(self.sets, other.sets, frozenset.__or__),
            _merge_info(self.device_info, other.device_info),
        )

    def missing(self, other: Res) -> list[str]:
        """What of `other` is not in `self`, as readable phrases; empty iff contains(other)."""
        out: list[str] = []
        for name, mine, theirs in (("cpus", self.cpus, other.cpus),
                                   ("mem_mb", self.mem_mb, other.mem_mb),
                                   ("disk_mb", self.disk_mb, other.disk_mb)):
            if theirs - mine > _TOL:
                out.append(f"{name} {theirs:g} > {mine:g} available")
        if other.ports and not ranges_contain(self.ports, other.ports):
            out.append(f"ports {_fmt_ranges(other.ports)} not within "
                       f"[{_fmt_ranges(self.ports)}]")
        for name, units in other.devices.items():
            have = self.devices.get(name, 0)
            if units > have:
                out.append(f"device {name!r} {units} units > {have} available")
        for name, x in other.scalars.items():
            have_x = self.scalars.get(name, 0.0)
            if x - have_x > _TOL:
                out.append(f"{name} {x:g} > {have_x:g} available")
        for name, r in other.ranges.items():
            if not ranges_contain(self.ranges.get(name, ()), r):
                out.append(f"{name} {_fmt_ranges(r)} not available")
        for name, s in other.sets.items():
            lack = s - self.sets.get(name, frozenset())
            if lack:
                out.append(f"{name} items {sorted(lack)} not available")
        return out

    def contains(self, other: Res) -> bool:
        """Whether `other` fits in `self` (so that ``self - other`` succeeds)."""
        if other.cpus - self.cpus > _TOL or other.mem_mb - self.mem_mb > _TOL \
                or other.disk_mb - self.disk_mb > _TOL:
            return False
        if other.ports and not ranges_contain(self.ports, other.ports):
            return False
        if other.devices or other.scalars or other.ranges or other.sets:
            return not self.missing(other)
        return True

    def __sub__(self, other: Res) -> Res:
        if not isinstance(other, Res):
            return NotImplemented
        if other.is_empty():
            return self
        if not self.contains(other):
            raise ResourceError("cannot subtract: " + "; ".join(self.missing(other)))
        return Res._make(
            _sub_scalar(self.cpus, other.cpus),
            _sub_scalar(self.mem_mb, other.mem_mb),
            _sub_scalar(self.disk_mb, other.disk_mb),
            ranges_subtract(self.ports, other.ports),
            _merge_sub(self.devices, other.devices, int.__sub__),
            _merge_sub(self.scalars, other.scalars, _sub_scalar),
            _merge_sub(self.ranges, other.ranges, ranges_subtract),
            _merge_sub(self.sets, other.sets, frozenset.__sub__),
            self.device_info,
        )

    def quantities(self) -> dict[str, float]:
        """``{kind: amount}`` of the non-zero kinds, summable across agents.

        Kinds: ``cpus``, ``mem_mb``, ``disk_mb``, ``ports`` (count), ``device:NAME`` (units),
        ``scalar:NAME``, ``range:NAME`` (count), ``set:NAME`` (size).
        """
        q: dict[str, float] = {}
        if self.cpus:
            q["cpus"] = self.cpus
        if self.mem_mb:
            q["mem_mb"] = self.mem_mb
        if self.disk_mb:
            q["disk_mb"] = self.disk_mb
        if self.ports:
            q["ports"] = float(ranges_count(self.ports))
        for name, units in self.devices.items():
            q["device:" + name] = float(units)
        for name, x in self.scalars.items():
            q["scalar:" + name] = x
        for name, r in self.ranges.items():
            q["range:" + name] = float(ranges_count(r))
        for name, s in self.sets.items():
            q["set:" + name] = float(len(s))
        return q

    # ---------------------------------------------------------------- value protocol

    def _key(self) -> tuple:
        return (self.cpus, self.mem_mb, self.disk_mb, self.ports,
                frozenset(self.devices.items()), frozenset(self.scalars.items()),
                frozenset(self.ranges.items()), frozenset(self.sets.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Res):
            return NotImplemented
        return (self.cpus == other.cpus and self.mem_mb == other.mem_mb
                and self.disk_mb == other.disk_mb and self.ports == other.ports
                and self.devices == other.devices and self.scalars == other.scalars
                and self.ranges == other.ranges and self.sets == other.sets)

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = []
        for name in ("cpus", "mem_mb", "disk_mb"):
            v = getattr(self, name)
            if v:
                parts.append(f"{name}={v:g}")
        if self.ports:
            parts.append(f"ports={list(self.ports)}")
        for name in ("devices", "scalars", "ranges", "sets"):
            v = getattr(self, name)
            if v:
                parts.append(f"{name}={dict(v)}")
        return "Res(" + ", ".join(parts) + ")"

    def __reduce__(self) -> tuple:
        return (Res, (self.cpus, self.mem_mb, self.disk_mb, self.ports, dict(self.devices),
                      dict(self.scalars), dict(self.ranges), dict(self.sets),
                      dict(self.device_info)))


def _add_scalar(a: float, b: float) -> float:
    return _round(a + b)


def _sub_scalar(a: float, b: float) -> float:
    r = _round(a - b)
    # Only within tolerance can this dip below zero (contains() was checked).
    return r if r > 0 else 0.0


def _merge_add(a: Mapping, b: Mapping, op) -> Mapping:  # type: ignore[no-untyped-def]
    if not b:
        return a
    if not a:
        return b
    out = dict(a)
    for k, v in b.items():
        mine = out.get(k)
        out[k] = v if mine is None else op(mine, v)
    return out


def _merge_sub(a: Mapping, b: Mapping, op) -> Mapping:  # type: ignore[no-untyped-def]
    # Zero results (0, 0.0, empty ranges or sets) drop out so that equality stays structural.
    if not b:
        return a
    out = dict(a)
    for k, v in b.items():
        r = op(out[k], v)
        if not r:
            del out[k]
        else:
            out[k] = r
    return out or _EMPTY_DICT


def _merge_info(a: Mapping[str, DeviceInfo], b: Mapping[str, DeviceInfo]
                ) -> Mapping[str, DeviceInfo]:
    if not b or a is b:
        return a
    if not a:
        return b
    if all(k in a for k in b):
        return a
    out = dict(b)
    out.update(a)
    return out


Res.EMPTY = Res()


def dominant_share(used: Res | Mapping[str, float], total: Res | Mapping[str, float]) -> float:
    """DRF's dominant share: the largest ``used/total`` over the kinds (see `Res.quantities`).

    Kinds the total lacks (zero) are ignored: nothing of them can be shared out.
    """
    u = used.quantities() if isinstance(used, Res) else used
    t = total.quantities() if isinstance(total, Res) else total
    share = 0.0
    for kind, amount in u.items():
        of = t.get(kind, 0.0)
        if of > 0:
            s = amount / of
            if s > share:
                share = s
    return share
