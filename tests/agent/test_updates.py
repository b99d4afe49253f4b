"""The agent's update queue (`edgerm_agent.updates`): numbering, acknowledgement, renumbering
and its checkpoint form."""

from __future__ import annotations

import json

from edgerm.wire import pb
from edgerm_agent.updates import UpdateQueue


def queue_of_three() -> UpdateQueue:
    q = UpdateQueue()
    assert q.add_status(7, pb.STARTING, 0, "", 0) == 1
    assert q.add_publish(7, b"21.5", "temp") == 2
    assert q.add_status(7, pb.FINISHED, 0, "done", 3) == 3
    return q


def ids(q: UpdateQueue) -> list[int]:
    out = []
    while (head := q.head()) is not None:
        out.append(head.update_id)
        q.drop_acked(head.update_id)
    return out


def test_updates_are_numbered_from_one_counter_and_sent_oldest_first() -> None:
    q = queue_of_three()
    assert len(q) == 3 and q.next_id == 4 and q.publishes() == 1
    head = q.head()
    assert head is not None
    call = head.call()
    assert call.WhichOneof("call") == "status"
    assert (call.status.update_id, call.status.state) == (1, pb.STARTING)
    assert not call.seq and not call.agent_id  # the core numbers and signs it


def test_an_acknowledgement_drops_every_update_it_covers_and_nothing_else() -> None:
    q = queue_of_three()
    assert not q.drop_acked(0)
    assert q.drop_acked(2)
    assert len(q) == 1 and q.first_unacked() == 3 and q.publishes() == 0
    assert q.drop_acked(9)
    assert len(q) == 0
    assert q.first_unacked() == 4  # the next new one: everything below is delivered
    assert q.add_status(7, pb.RUNNING, 0, "", 0) == 4  # numbering goes on


def test_only_the_head_can_be_refused() -> None:
    q = queue_of_three()
    assert not q.drop_refused(2)
    assert len(q) == 3
    assert q.drop_refused(1)
    assert q.first_unacked() == 2


def test_renumber_keeps_the_order_and_numbering_goes_on_after_it() -> None:
    q = queue_of_three()
    q.drop_acked(1)
    statuses = q.renumber(10)
    assert [s.update_id for s in statuses] == [11]  # the publish is 10, not returned
    head = q.head()
    assert head is not None and head.publish is not None and head.publish.update_id == 10
    assert q.next_id == 12
    assert q.add_status(7, pb.KILLED, 0, "", 0) == 12
    assert ids(q) == [10, 11, 12]


def test_reset_forgets_everything_and_numbers_from_one() -> None:
    q = queue_of_three()
    q.reset()
    assert len(q) == 0 and q.head() is None and q.next_id == 1
    assert q.add_publish(1, b"x", "") == 1


def test_checkpoint_form_round_trips_through_json() -> None:
    q = queue_of_three()
    q.drop_acked(1)
    saved = json.loads(json.dumps(q.to_json()))
    back = UpdateQueue()
    back.load(saved, q.next_id)
    assert back.next_id == 4 and back.publishes() == 1
    assert [u.call() for u in (back.head(),)] == [u.call() for u in (q.head(),)]
    assert ids(back) == [2, 3]
    again = UpdateQueue()
    again.load(saved, 4)
    again.drop_acked(2)
    last = again.head()
    assert last is not None and last.status is not None
    assert (last.status.state, last.status.message, last.status.exit_code) == (
        pb.FINISHED, "done", 3)
