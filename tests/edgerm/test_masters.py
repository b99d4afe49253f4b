"""edgerm.masters: a client follows a named leader only inside its configured list, else
rotates; URLs compare by scheme, host and port (a configured path such as /agent is kept)."""

from __future__ import annotations

import pytest

from edgerm.masters import MasterList, origin, split_urls


def test_origin_defaults_ports_by_scheme() -> None:
    assert origin("coap://M1") == ("coap", "m1", 5683)
    assert origin("ws://m1:5690/agent") == origin("ws://m1:5690") == ("ws", "m1", 5690)
    assert origin("m1:5690") == ("ws", "m1", 5690)
    assert origin("ws://m1:notaport") == ("", "", 0)


def test_a_named_leader_in_the_list_is_followed_with_the_configured_url() -> None:
    ml = MasterList(["ws://m1:5690/agent", "ws://m2:5690/agent", "ws://m3:5690/agent"])
    assert ml.current == "ws://m1:5690/agent"
    assert ml.refused("ws://m3:5690") == "ws://m3:5690/agent"
    assert ml.refused("ws://m2:5690") == "ws://m2:5690/agent"


def test_a_leader_outside_the_list_unknown_or_itself_means_the_next_one() -> None:
    ml = MasterList(["coap://m1", "coap://m2", "coap://m3"])
    assert ml.refused("coap://evil:5683") == "coap://m2"
    assert ml.refused("ws://m3:5683") == "coap://m3"    # another transport: not this master
    assert ml.refused("") == "coap://m1"                # wraps around
    assert ml.refused("coap://m1:5683") == "coap://m2"  # names the refusing master itself
    assert ml.rotate() == "coap://m3"


def test_one_master_stays_and_none_is_an_error() -> None:
    ml = MasterList(["coap://m1"])
    assert ml.rotate() == ml.refused("coap://m9") == "coap://m1"
    with pytest.raises(ValueError, match="no master URL"):
        MasterList([])


def test_split_urls_takes_repeats_and_commas() -> None:
    assert split_urls(["ws://a:1, ws://b:2", "ws://c:3", " "]) == ["ws://a:1", "ws://b:2",
                                                                    "ws://c:3"]
