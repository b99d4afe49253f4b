"""The two-slot checkpoint: alternate slots, the newest valid one wins, a torn slot (crash or
power cut mid-write) falls back to the other, real damage is reported, an old agent.json is
taken over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerm_agent.checkpoint import LEGACY_NAME, SLOT_NAMES, Checkpoint, CheckpointError


def snap(n: int) -> dict[str, object]:
    return {"version": 1, "seq": n, "tasks": [], "pad": "x" * (n % 7) * 100}


def test_saves_alternate_and_the_newest_is_loaded(tmp_path: Path) -> None:
    c = Checkpoint(tmp_path)
    assert c.load() is None
    for n in range(1, 6):
        c.save(snap(n))
        assert Checkpoint(tmp_path).load() == snap(n)
    c.close()
    # Carries on from the generation it found.
    c2 = Checkpoint(tmp_path)
    assert c2.load() == snap(5)
    c2.save(snap(6))
    c2.close()
    assert Checkpoint(tmp_path).load() == snap(6)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.99])
def test_a_torn_newest_slot_falls_back_to_the_previous_save(tmp_path: Path, cut: float) -> None:
    c = Checkpoint(tmp_path)
    c.load()
    for n in range(1, 4):
        c.save(snap(n))
    c.close()
    newest = tmp_path / SLOT_NAMES[3 % 2]
    data = newest.read_bytes()
    newest.write_bytes(data[: int(len(data) * cut)])
    assert Checkpoint(tmp_path).load() == snap(2)
    # A flipped byte in the body: the checksum catches it.
    newest.write_bytes(data[:-3] + bytes([data[-3] ^ 0x20]) + data[-2:])
    assert Checkpoint(tmp_path).load() == snap(2)


def test_the_first_save_torn_is_no_checkpoint(tmp_path: Path) -> None:
    c = Checkpoint(tmp_path)
    c.save(snap(1))
    c.close()
    slot = tmp_path / SLOT_NAMES[1]
    slot.write_bytes(slot.read_bytes()[:30])
    assert Checkpoint(tmp_path).load() is None


def test_both_slots_damaged_is_a_clear_error(tmp_path: Path) -> None:
    c = Checkpoint(tmp_path)
    for n in range(1, 3):
        c.save(snap(n))
    c.close()
    for name in SLOT_NAMES:
        (tmp_path / name).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"agent\.ckpt\.\* is corrupt \(agent\.ckpt\.0: "
                                              r"not an agent checkpoint slot.*move it away"):
        Checkpoint(tmp_path).load()


def test_an_old_agent_json_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LEGACY_NAME).write_text(json.dumps(snap(9)))
    c = Checkpoint(tmp_path)
    assert c.load() == snap(9)
    c.save(snap(10))
    assert (tmp_path / LEGACY_NAME).exists()  # until both slots hold a snapshot
    assert Checkpoint(tmp_path).load() == snap(10)
    c.save(snap(11))
    assert not (tmp_path / LEGACY_NAME).exists()
    c.close()
    assert Checkpoint(tmp_path).load() == snap(11)
