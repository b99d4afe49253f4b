"""What an eavesdropper records of a whole run (registration, a task launched with a secret
argument, a sensor with a secret value published three times, modules with a secret byte
pattern fetched block by block, an agent restart and re-registration) shows none of those
secrets in clear; the same recording opened with the agent's secret shows every one of them,
so the search looks where they travel; and the agent's protected requests carry no inner
Content-Format."""

from __future__ import annotations

from edgerm.coap.codes import ACK
from edgerm.testing_onpath import Datagram

from .agents import SECRET_ARG
from .conftest import Scene


def module_chunks(module: bytes, size: int = 16) -> list[bytes]:
    """16-byte windows of a module that could not occur in a datagram by chance (varied)."""
    return [c for i in range(0, len(module) - size + 1, size)
            if len(set(c := module[i:i + size])) >= 8]


def plaintexts(scene: Scene) -> list[bytes]:
    """Every protected datagram of the recording, opened with the agent's secret (the inner
    payloads; answers are matched to their request by Message ID or token)."""
    peek = scene.peek()
    out = []
    ups = [d for d in scene.relay.recorded if d.direction == "up"]
    for d in scene.relay.recorded:
        m = d.message
        if m is None:
            continue
        if d.direction == "up":
            opened = peek.request(d.data)
        else:
            req: Datagram | None = next(
                (u for u in reversed(ups) if u.index < d.index and (um := u.message)
                 and ((m.mtype == ACK and um.mid == m.mid)
                      or (m.mtype != ACK and m.token and um.token == m.token))), None)
            opened = peek.response(d.data, req.data) if req else None
        if opened is not None:
            out.append(opened.inner.payload)
    return out


async def test_a_recorded_run_shows_no_secret_in_clear(scene: Scene) -> None:
    await scene.workload()
    wire = [d.data for d in scene.relay.recorded]
    pattern = scene.kind.pattern
    needles = {
        "task argument": [SECRET_ARG.encode()],
        "sensor reading": [scene.kind.reading],
        "module pattern": [pattern[i:i + 16] for i in range(len(pattern) - 16)],
        "module bytes": [c for name in ("hello", "sampler", "spin")
                         for c in module_chunks(scene.kind.modules[name])],
    }
    found = {what: sum(1 for n in ns for w in wire if n in w) for what, ns in needles.items()}
    assert not any(found.values()), f"in clear on the wire: {found}"

    inner = plaintexts(scene)
    seen = {what: any(n in p for n in ns for p in inner) for what, ns in needles.items()}
    assert all(seen.values()), f"not even inside the protected messages: {seen}"

    # Every protected request of this agent carries no inner Content-Format (the resource
    # implies a CBOR AgentCall: 2 bytes less per call); only the plain first registration has
    # one on the wire.
    peek = scene.peek()
    opened = [o for d in scene.relay.recorded if d.direction == "up"
              and (o := peek.request(d.data)) is not None]
    assert opened and all(o.inner.opt(12) is None for o in opened), \
        [(o.inner.code, o.inner.options) for o in opened if o.inner.opt(12) is not None][:3]
