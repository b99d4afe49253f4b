"""The hand-assembled reply is byte for byte what the codec and `sign` produce."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgerm.wire import decode, encode, pb, sign, verify
from edgerm_master.replies import build_reply

commands = st.lists(st.one_of(
    st.builds(lambda i, t: pb.Command(id=i, kill=pb.Kill(task=t)),
              st.integers(1, 2**32 - 1), st.integers(0, 70000)),
    st.builds(lambda i, t, img: pb.Command(id=i, launch=pb.Launch(task=t, spec=pb.TaskSpec(
        name="x", resources=pb.Resources(cpus=0.5), docker=pb.DockerTask(image=img)))),
        st.integers(1, 1000), st.integers(1, 1000), st.text(max_size=30)),
    st.builds(lambda i: pb.Command(id=i, reregister=pb.ReRegister()), st.integers(1, 300)),
), max_size=5)


@given(seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1), cmds=commands,
       registered=st.booleans(), error=st.booleans(), signed=st.booleans())
def test_build_reply_matches_sign(seq: int, ack: int, cmds: list[pb.Command],
                                  registered: bool, error: bool, signed: bool) -> None:
    secret = b"k" * 16
    msg = pb.AgentReply(seq=seq, update_ack=ack, commands=cmds)
    reg = pb.Registered(agent_id=3, nonce=b"n" * 8, heartbeat_ms=5000) if registered else None
    err = pb.Error(code=pb.BAD_REQUEST, message="no") if error else None
    if reg is not None:
        msg.registered.CopyFrom(reg)
    if err is not None:
        msg.error.CopyFrom(err)
    got = build_reply(secret if signed else None, seq, ack, [encode(c) for c in cmds],
                      encode(reg) if reg is not None else None,
                      encode(err) if err is not None else None)
    want = sign(msg, secret) if signed else encode(msg)
    assert got == want
    if signed:
        assert verify(decode(pb.AgentReply, got), secret)


# --- the steady-heartbeat fast path agrees with the codec


@given(aid=st.integers(1, 2**32 - 1), seq=st.integers(1, 2**32 - 1),
       ack=st.integers(0, 2**32 - 1))
def test_fast_path_reads_what_the_codec_writes(aid: int, seq: int, ack: int) -> None:
    from edgerm_master.fastpath import parse_steady_heartbeat_untrusted

    secret = b"s" * 16
    call = pb.AgentCall(agent_id=aid, seq=seq, heartbeat=pb.Heartbeat(command_ack=ack))
    data = sign(call, secret)
    got = parse_steady_heartbeat_untrusted(data)
    assert got is not None
    g_aid, g_seq, mac, unsigned, g_ack = got
    call.ClearField("mac")
    assert (g_aid, g_seq, g_ack, unsigned) == (aid, seq, ack, encode(call))


@given(st.binary(max_size=40))
def test_fast_path_never_raises(data: bytes) -> None:
    from edgerm_master.fastpath import parse_steady_heartbeat_untrusted

    parse_steady_heartbeat_untrusted(data)


def test_fast_path_declines_other_calls() -> None:
    from edgerm_master.fastpath import parse_steady_heartbeat_untrusted

    secret = b"s" * 16
    for call in (pb.AgentCall(agent_id=1, seq=2, status=pb.StatusUpdate(update_id=1)),
                 pb.AgentCall(agent_id=1, seq=2, heartbeat=pb.Heartbeat(
                     resources=pb.Resources(cpus=1)))):
        assert parse_steady_heartbeat_untrusted(sign(call, secret)) is None


@given(cid=st.integers(1, 2**32 - 1), number=st.integers(1, 2**32 - 1),
       image=st.text(max_size=20), cpus=st.floats(0, 64, allow_nan=False))
def test_launch_command_matches_the_codec(cid: int, number: int, image: str,
                                          cpus: float) -> None:
    from edgerm_master.replies import launch_command

    spec = pb.TaskSpec(name="n", resources=pb.Resources(cpus=cpus),
                       docker=pb.DockerTask(image=image))
    want = encode(pb.Command(id=cid, launch=pb.Launch(task=number, spec=spec)))
    assert launch_command(cid, number, encode(spec)) == want
