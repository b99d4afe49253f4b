"""MasterState: the shared tables and the primitives every part of the core emits through."""

from __future__ import annotations

from edgerm.wire import pb
from edgerm_master import records as rec
from edgerm_master.config import MasterConfig
from edgerm_master.events import ToFramework
from edgerm_master.state import (
    ALLOC_MIN_GAP_S,
    T_AGENT_CHECK,
    T_OFFER,
    Framework,
    MasterState,
    executor_mask,
)


def test_record_keeps_order_and_counts() -> None:
    st = MasterState(MasterConfig())
    st.record(rec.AckCommands(1, 2))
    st.record(rec.DropCommand(1, 3))
    assert st.records == [rec.AckCommands(1, 2), rec.DropCommand(1, 3)]
    st.records.clear()  # (what take_records does)
    st.record(rec.MarkAgentLost(1))
    assert st.records_emitted == 3  # counts every record ever emitted, not the pending ones


def test_send_reaches_only_a_connected_framework() -> None:
    st = MasterState(MasterConfig())
    fw = Framework("fw-1", "n", "*", 1.0, 60.0, b"")
    event = pb.FrameworkEvent(rescind=pb.Rescind(offer_id="1-1"))
    st.send(fw, event)
    assert st.outbox == []  # disconnected: what matters is kept elsewhere and re-sent
    fw.conn = 7
    st.send(fw, event)
    assert st.outbox == [ToFramework(7, event)]


def test_timers_pop_in_deadline_order() -> None:
    st = MasterState(MasterConfig())
    st.timer(30.0, T_OFFER, "1-1")
    st.timer(10.0, T_AGENT_CHECK, 4)
    st.timer(20.0, T_AGENT_CHECK, 2)
    assert [t[0] for t in sorted(st.timers)] == [10.0, 20.0, 30.0]
    assert st.timers[0] == (10.0, T_AGENT_CHECK, 4)  # a heap: the earliest first


def test_alloc_soon_only_brings_the_round_forward_and_keeps_a_gap() -> None:
    st = MasterState(MasterConfig())
    st.alloc_due = 100.0
    st.last_alloc = 50.0
    st.alloc_soon(50.0)
    assert st.alloc_due == 50.0 + ALLOC_MIN_GAP_S  # not right after the last round
    st.alloc_soon(80.0)
    assert st.alloc_due == 50.0 + ALLOC_MIN_GAP_S  # never later than already due


def test_inventory_shares_one_res_per_distinct_inventory() -> None:
    st = MasterState(MasterConfig())
    a = st.inventory(pb.Resources(cpus=2, mem_mb=512))
    b = st.inventory(pb.Resources(cpus=2, mem_mb=512))
    c = st.inventory(pb.Resources(cpus=1, mem_mb=512))
    assert a is b and a != c


def test_derived_settings() -> None:
    cfg = MasterConfig(agent_tokens=["a", "", "b"], role_weights={"prod": 3.0})
    st = MasterState(cfg)
    assert [t for t, _ in st.token_keys] == ["a", "b"]  # an empty token signs nothing
    assert st.weight("prod") == 3.0 and st.weight("other") == 1.0
    assert st.agent_limits.max_input == cfg.agent_message_max
    assert executor_mask([pb.DOCKER, pb.WASM, 0, 40]) == (1 << pb.DOCKER) | (1 << pb.WASM)
