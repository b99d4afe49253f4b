"""The task table: every legal row is accepted, every other pair refused and nothing changes."""

from __future__ import annotations

import pytest

from edgerm.wire import pb
from edgerm_master.task_states import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    check_transition,
    is_terminal,
)

ALL = [v for v in pb.TaskState.values()]
LEGAL = [(a, b) for a, bs in TRANSITIONS.items() for b in sorted(bs)]
ILLEGAL = [(a, b) for a in ALL for b in ALL if b not in TRANSITIONS.get(a, frozenset())]


@pytest.mark.parametrize("old,new", LEGAL)
def test_legal_row(old: int, new: int) -> None:
    check_transition(old, new)


@pytest.mark.parametrize("old,new", ILLEGAL)
def test_illegal_pair(old: int, new: int) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(old, new)
    assert pb.TaskState.Name(new) in str(info.value) or "TaskState" in str(info.value)


def test_table_covers_every_real_state() -> None:
    real = set(ALL) - {pb.TASK_STATE_UNSPECIFIED}
    assert set(TRANSITIONS) == real
    assert pb.TASK_STATE_UNSPECIFIED not in {b for bs in TRANSITIONS.values() for b in bs}


def test_terminal_states_have_no_way_out() -> None:
    for s in TERMINAL:
        assert is_terminal(s)
        assert TRANSITIONS[s] == frozenset()
    assert not is_terminal(pb.UNREACHABLE)
    # UNREACHABLE may return to RUNNING (rule 3) and may become LOST.
    assert {pb.RUNNING, pb.LOST} <= TRANSITIONS[pb.UNREACHABLE]


def test_both_lists_partition_all_pairs() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(ALL) ** 2


def test_docs_table_is_current() -> None:
    import pathlib

    from edgerm_master.task_states import markdown_table

    doc = pathlib.Path(__file__).parents[2] / "docs" / "master.md"
    assert markdown_table() in doc.read_text(), "regenerate the table in docs/master.md"
