"""Tests for edgerm.resources: Res arithmetic, ranges, devices, protobuf round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerm.resources import (
    DeviceInfo,
    Res,
    ResourceError,
    dominant_share,
    normalize_ranges,
    ranges_contain,
    ranges_count,
    ranges_subtract,
)
from edgerm.wire import pb

# ------------------------------------------------------------------ strategies

scalars = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: round(x, 6))
small_ranges = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 30)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=4,
)
names = st.sampled_from(["temp", "cam", "gpio"])


@st.composite
def res(draw: st.DrawFn) -> Res:
    return Res(
        cpus=draw(scalars),
        mem_mb=draw(scalars),
        disk_mb=draw(scalars),
        ports=draw(small_ranges),
        devices=draw(st.dictionaries(names, st.integers(0, 5), max_size=3)),
        scalars=draw(st.dictionaries(st.sampled_from(["gpus", "bw"]), scalars, max_size=2)),
        ranges=draw(st.dictionaries(st.just("vlans"), small_ranges, max_size=1)),
        sets=draw(st.dictionaries(st.just("zones"),
                                  st.frozensets(st.sampled_from("abcd")), max_size=1)),
    )


def values(r: Res) -> list[float]:
    return [r.cpus, r.mem_mb, r.disk_mb, *r.devices.values(), *r.scalars.values()]


# ------------------------------------------------------------------ properties


def disjoint_from(a: Res, b: Res) -> Res:
    """`b` with its ranges and set items moved away from `a`'s: ranges and sets add as unions,
    and resources split from one agent never overlap, so that is the case that must round-trip."""
    return Res(
        cpus=b.cpus, mem_mb=b.mem_mb, disk_mb=b.disk_mb,
        ports=[(lo + 1000, hi + 1000) for lo, hi in b.ports],
        devices=b.devices, scalars=b.scalars,
        ranges={k: [(lo + 1000, hi + 1000) for lo, hi in r] for k, r in b.ranges.items()},
        sets={k: {i.upper() for i in v} for k, v in b.sets.items()},
    )


@settings(max_examples=200, deadline=None)
@given(res(), res())
def test_add_then_subtract_gives_back_the_original(a: Res, b: Res) -> None:
    b = disjoint_from(a, b)
    s = a + b
    assert s.contains(a) and s.contains(b)
    assert s - b == a
    assert s - a == b
    assert all(v >= 0 for v in values(s - b))


@settings(max_examples=200, deadline=None)
@given(res(), res())
def test_taking_part_out_and_back(s: Res, pick: Res) -> None:
    """Split what an agent has into a claim and the rest: never negative, adds back exactly."""
    claim = Res(
        cpus=min(s.cpus, pick.cpus), mem_mb=min(s.mem_mb, pick.mem_mb),
        ports=s.ports[:1],
        devices={k: min(v, pick.devices.get(k, 0)) for k, v in s.devices.items()},
        sets={k: set(sorted(v)[:1]) for k, v in s.sets.items()},
    )
    assert s.contains(claim)
    rest = s - claim
    assert all(v >= 0 for v in values(rest))
    assert rest + claim == s
    assert (rest + claim) - claim == rest


@settings(max_examples=150, deadline=None)
@given(res(), res())
def test_contains_agrees_with_subtract(a: Res, b: Res) -> None:
    if a.contains(b):
        d = a - b
        assert all(v >= 0 for v in values(d))
        assert d + b == a
        assert a.missing(b) == []
    else:
        assert a.missing(b)
        with pytest.raises(ResourceError, match="cannot subtract"):
            a - b


@settings(max_examples=300, deadline=None)
@given(small_ranges, small_ranges)
def test_ranges_merge_and_split_like_sets_of_integers(xs: list, ys: list) -> None:
    a, b = normalize_ranges(xs), normalize_ranges(ys)
    union = Res(ports=xs) + Res(ports=ys)  # ranges add as unions
    assert union.ports == normalize_ranges(xs + ys)
    set_a = {p for lo, hi in xs for p in range(lo, hi + 1)}
    set_b = {p for lo, hi in ys for p in range(lo, hi + 1)}
    assert {p for lo, hi in a for p in range(lo, hi + 1)} == set_a
    assert ranges_count(a) == len(set_a)
    # normalized: sorted, disjoint and not even adjacent
    assert all(a[i][1] + 1 < a[i + 1][0] for i in range(len(a) - 1))
    assert ranges_contain(a, b) == (set_b <= set_a)
    if set_b <= set_a:
        d = ranges_subtract(a, b)
        assert {p for lo, hi in d for p in range(lo, hi + 1)} == set_a - set_b
        assert d == normalize_ranges(d)


@settings(max_examples=200, deadline=None)
@given(res())
def test_pb_round_trip(a: Res) -> None:
    """Devices without DeviceInfo go out as shared (shares = units) and come back equal."""
    back = Res.from_pb(a.to_pb())
    assert back == a


# ------------------------------------------------------------------ examples


def test_fixed_point_leaves_no_dust() -> None:
    r = Res(cpus=0.1) + Res(cpus=0.2)
    assert (r - Res(cpus=0.3)).is_empty()
    total = Res(cpus=1.0)
    for _ in range(10):
        total = total - Res(cpus=0.1)
    assert total == Res.EMPTY


def test_subtract_names_what_is_missing() -> None:
    have = Res(cpus=1, ports=[(8000, 8010)], devices={"temp": 1})
    with pytest.raises(ResourceError) as e:
        have - Res(cpus=2, ports=[(8080, 8080)], devices={"cam": 1})
    msg = str(e.value)
    assert "cpus 2 > 1 available" in msg
    assert "ports 8080" in msg
    assert "device 'cam'" in msg


@pytest.mark.parametrize("kwargs", [
    {"cpus": -1}, {"mem_mb": float("nan")}, {"disk_mb": float("inf")},
    {"ports": [(10, 5)]}, {"ports": [(-1, 5)]}, {"ports": [(0, 2**64)]},
    {"devices": {"": 1}}, {"devices": {"temp": -1}}, {"devices": {"temp": 1.5}},
    {"scalars": {"gpus": -0.5}}, {"sets": {"zones": "abc"}},
    {"scalars": {"x": 1}, "sets": {"x": ["a"]}},
])
def test_malformed_values_are_refused(kwargs: dict) -> None:
    with pytest.raises(ResourceError):
        Res(**kwargs)


def test_ports_ranges_split_by_launches() -> None:
    free = Res(ports=[(31000, 31009)])
    free = free - Res(ports=[(31003, 31004)])
    assert free.ports == ((31000, 31002), (31005, 31009))
    free = free - Res(ports=[(31000, 31000), (31009, 31009)])
    assert free.ports == ((31001, 31002), (31005, 31008))
    with pytest.raises(ResourceError):
        free - Res(ports=[(31003, 31003)])
    # giving them back merges the ranges again
    free = free + Res(ports=[(31000, 31000), (31003, 31004), (31009, 31009)])
    assert free.ports == ((31000, 31009),)


def _inventory() -> pb.Resources:
    return pb.Resources(cpus=2, mem_mb=512, devices=[
        pb.Device(name="cam", kind=pb.OTHER, shares=0, path="/dev/video0"),
        pb.Device(name="temp", kind=pb.SENSOR, shares=4, unit="Cel"),
    ])


def test_exclusive_and_shared_devices_from_an_inventory() -> None:
    inv = Res.from_pb(_inventory())
    assert inv.devices == {"cam": 1, "temp": 4}
    assert inv.device_info["cam"] == DeviceInfo(pb.OTHER, "", True)
    # shares 0 claims the whole device: the exclusive camera, or every unit of the sensor
    whole_cam = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="cam")]), inv)
    whole_temp = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="temp")]), inv)
    one_temp = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="temp", shares=1)]), inv)
    assert whole_cam.devices == {"cam": 1}
    assert whole_temp.devices == {"temp": 4}
    free = inv - whole_cam
    assert not free.contains(whole_cam)  # one task at a time
    free = free - one_temp - one_temp - one_temp
    assert free.devices == {"temp": 1}
    assert not free.contains(whole_temp)  # the whole sensor is no longer available
    assert free.contains(one_temp)
    free = free - one_temp
    assert not free.contains(one_temp)  # capacity 4 reached
    assert "temp" not in free.devices


def test_an_actuator_is_exclusive_whatever_its_shares() -> None:
    """Two tasks must never drive one relay: an actuator is one unit even if an agent (a
    MicroPython board's config, say) announces shares for it."""
    inv = Res.from_pb(pb.Resources(devices=[
        pb.Device(name="relay", kind=pb.ACTUATOR, shares=3),
        pb.Device(name="fan", kind=pb.ACTUATOR)]))
    assert inv.devices == {"relay": 1, "fan": 1}
    assert inv.device_info["relay"] == DeviceInfo(pb.ACTUATOR, "", True)
    whole = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="relay")]), inv)
    one = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="relay", shares=1)]), inv)
    two = Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="relay", shares=2)]), inv)
    assert whole == one and not inv.contains(two)
    left = inv - one
    assert not left.contains(whole) and not left.contains(one)
    assert [(d.name, d.shares) for d in left.to_pb().devices] == [("fan", 0)]


def test_claim_of_an_unknown_device_is_refused() -> None:
    inv = Res.from_pb(_inventory())
    with pytest.raises(ResourceError, match="'gpio' is not on this agent"):
        Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="gpio")]), inv)


def test_to_pb_keeps_kind_and_unit_and_never_the_path() -> None:
    inv = Res.from_pb(_inventory())
    msg = inv.to_pb()
    devs = {d.name: d for d in msg.devices}
    assert devs["cam"].shares == 0 and devs["cam"].kind == pb.OTHER and devs["cam"].path == ""
    assert devs["temp"].shares == 4 and devs["temp"].unit == "Cel"
    assert devs["temp"].kind == pb.SENSOR
    # what is left of a shared sensor goes out as its remaining units
    left = inv - Res.claim_from_pb(pb.Resources(devices=[pb.Device(name="temp", shares=3)]), inv)
    assert {d.name: d.shares for d in left.to_pb().devices} == {"cam": 0, "temp": 1}
    assert Res.from_pb(msg) == inv


def test_from_pb_refuses_bad_input() -> None:
    for msg in [
        pb.Resources(cpus=-1),
        pb.Resources(ports=[pb.Range(begin=9, end=3)]),
        pb.Resources(devices=[pb.Device(name="")]),
        pb.Resources(devices=[pb.Device(name="a"), pb.Device(name="a")]),
        pb.Resources(custom=[pb.CustomResource(name="x")]),
        pb.Resources(custom=[pb.CustomResource(name="x", scalar=1),
                             pb.CustomResource(name="x", set=pb.Set(items=["a"]))]),
    ]:
        with pytest.raises(ResourceError):
            Res.from_pb(msg)


def test_custom_resources_from_pb_accumulate() -> None:
    msg = pb.Resources(custom=[
        pb.CustomResource(name="vlans", range=pb.Range(begin=1, end=3)),
        pb.CustomResource(name="vlans", range=pb.Range(begin=4, end=9)),
        pb.CustomResource(name="zones", set=pb.Set(items=["a", "b"])),
        pb.CustomResource(name="gpus", scalar=0.5),
    ])
    r = Res.from_pb(msg)
    assert r.ranges == {"vlans": ((1, 9),)}
    assert r.sets == {"zones": frozenset({"a", "b"})}
    assert r.scalars == {"gpus": 0.5}


def test_dominant_share() -> None:
    total = Res(cpus=10, mem_mb=1000, ports=[(1, 100)], devices={"temp": 4})
    assert dominant_share(Res(cpus=1, mem_mb=300), total) == pytest.approx(0.3)
    assert dominant_share(Res(ports=[(1, 50)]), total) == pytest.approx(0.5)
    assert dominant_share(Res(devices={"temp": 3}), total) == pytest.approx(0.75)
    # a kind the total lacks is ignored
    assert dominant_share(Res(scalars={"gpus": 1}), total) == 0
    assert dominant_share(Res.EMPTY, total) == 0
    assert dominant_share({"cpus": 5.0}, total.quantities()) == pytest.approx(0.5)


def test_equality_ignores_device_info_and_hash_matches() -> None:
    a = Res(devices={"temp": 1}, device_info={"temp": DeviceInfo(1, "Cel", True)})
    b = Res(devices={"temp": 1})
    assert a == b and hash(a) == hash(b)
    assert Res(cpus=1) != Res(cpus=2)
    assert Res.EMPTY.is_empty() and not Res.EMPTY


def test_devices_must_be_named_and_named_once_in_inventories_and_claims() -> None:
    inventory = Res.from_pb(pb.Resources(devices=[pb.Device(name="temp", shares=2)]))
    unnamed = pb.Resources(devices=[pb.Device(shares=1)])
    twice = pb.Resources(devices=[pb.Device(name="temp"), pb.Device(name="temp")])
    for parse in (Res.from_pb, lambda m: Res.claim_from_pb(m, inventory)):
        with pytest.raises(ResourceError, match="device without a name"):
            parse(unnamed)
        with pytest.raises(ResourceError, match="device 'temp' listed twice"):
            parse(twice)
