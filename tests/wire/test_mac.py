"""The agent-link MAC: HMAC-SHA256 over the message without its mac, truncated to 8 bytes."""

import hashlib
import hmac

from edgerm.wire import MAC_LEN, decode, encode, pb, sign, verify

SECRET = bytes(range(16))


def test_sign_matches_hmac_over_unsigned_encoding() -> None:
    call = pb.AgentCall(agent_id=4, seq=10, heartbeat=pb.Heartbeat())
    unsigned = encode(call)
    raw = sign(call, SECRET)
    assert call.mac == hmac.new(SECRET, unsigned, hashlib.sha256).digest()[:MAC_LEN]
    assert decode(pb.AgentCall, raw) == call
    assert verify(decode(pb.AgentCall, raw), SECRET)


def test_verify_rejects_tampering_wrong_key_and_missing_mac() -> None:
    call = pb.AgentCall(agent_id=4, seq=10, heartbeat=pb.Heartbeat())
    sign(call, SECRET)
    assert not verify(call, bytes(16))
    tampered = pb.AgentCall()
    tampered.CopyFrom(call)
    tampered.seq = 11
    assert not verify(tampered, SECRET)
    unsigned = pb.AgentCall(agent_id=4, seq=10, heartbeat=pb.Heartbeat())
    assert not verify(unsigned, SECRET)
    assert verify(call, SECRET)  # verify left the message intact
