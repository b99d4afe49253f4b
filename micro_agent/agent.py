"""The EdgeRM agent's state machine over CoAP, as docs/protocol.md says it must behave.

register (signed with the token's key, carrying a nonce; the secret derived from it and the
master's nonce) -> keep agent_id + secret in the state file -> heartbeat every heartbeat_ms
(+ jitter), carrying command_ack when it moved -> apply commands in id order (launch and kill
idempotent by task number) -> send status updates and publishes oldest first, one per call,
until update_ack covers them. After a reboot, or when the master asks (ReRegister, or
UNAUTHENTICATED on a call), re-register; an unknown agent_id sends it back to a fresh
registration. The first registration carries seq and an 8-byte HMAC-SHA256 mac keyed by the
token's key (neither the token nor the secret ever crosses the link), and its reply a mac keyed
by the derived secret. Every call after it is OSCORE-protected by coap.py (RFC 8613; oscore.py:
the secret as Master Secret, the agent_id as kid, seq as the Partial IV, one more per request,
module blocks included), with no agent_id, seq or mac inside; replies that do not verify are
dropped, and only an unprotected 4.01 or NOT_LEADER is believed without protection. A call
that gets no answer is retried as a new exchange after 1 s, 2 s, 4 s ... up to 60 s, forever: the
master takes a new exchange as a sign of life (a retransmission it answers from its cache is
not), so on a lossy link the agent must not sit out a heartbeat interval before trying again
(docs/agent.md, "Liveness on a lossy link").

With `observe` on, each heartbeat is a FETCH of `c` with Observe 0, so it also (re)registers
the observation through which the master pushes commands (AgentReply, protected with the
master's own Partial IV) at once; an observation the master lost lapses for at most one
heartbeat interval. An update the master refuses for good (BAD_REQUEST, FORBIDDEN, NOT_FOUND,
TOO_LARGE in a protected reply) is dropped and the ones after it renumbered; other errors and
silence are retried. An unprotected 4.01 (anyone can forge one) makes the agent re-register at
most once per _REG_GAP_MIN..._REG_GAP_MAX ms, backing off while they keep coming.

Several masters (config "master" a list, docs/ha.md): a standby's NOT_LEADER refusal names the
leader ("coap://host:port"); the agent moves there if that is one of its masters, else to the
next one, as it does after a call without an answer; it re-registers there with its identity
and tasks (nothing relaunched).

Messages are dicts keyed by field number (cbor.py); the numbers are the schema's, named by
the `_X = const(n)` lines below with their "pb: Message.field" comments, which a test checks against the
descriptors of edgerm.wire.pb.
"""

import asyncio
import gc
import json
import os
import sys
from micropython import const
from time import ticks_ms, ticks_diff, ticks_add

import cbor
import coap
import oscore
import sensors

try:
    import executor
except ImportError:  # left off the device: launches end in ERROR UNSUPPORTED_EXECUTOR
    executor = None

_CALL_SEQ = const(2)  # pb: AgentCall.seq
_CALL_MAC = const(3)  # pb: AgentCall.mac
_CALL_REGISTER = const(4)  # pb: AgentCall.register
_CALL_HEARTBEAT = const(5)  # pb: AgentCall.heartbeat
_CALL_STATUS = const(6)  # pb: AgentCall.status
_CALL_PUBLISH = const(7)  # pb: AgentCall.publish
_REPLY_SEQ = const(1)  # pb: AgentReply.seq
_REPLY_MAC = const(2)  # pb: AgentReply.mac
_REPLY_UPDATE_ACK = const(3)  # pb: AgentReply.update_ack
_REPLY_COMMANDS = const(4)  # pb: AgentReply.commands
_REPLY_REGISTERED = const(5)  # pb: AgentReply.registered
_REPLY_ERROR = const(6)  # pb: AgentReply.error
_REG_NAME = const(1)  # pb: Register.name
_REG_RESOURCES = const(2)  # pb: Register.resources
_REG_ATTRIBUTES = const(3)  # pb: Register.attributes
_REG_EXECUTORS = const(4)  # pb: Register.executors
_REG_VERSION = const(5)  # pb: Register.protocol_version
_REG_NONCE = const(6)  # pb: Register.nonce
_REG_TASKS = const(7)  # pb: Register.tasks
_REG_MAX_PAYLOAD = const(8)  # pb: Register.max_payload
_REG_UPDATE_NEXT = const(9)  # pb: Register.update_next
_REPORT_TASK = const(1)  # pb: TaskReport.task
_REPORT_STATE = const(2)  # pb: TaskReport.state
_RES_CPUS = const(1)  # pb: Resources.cpus
_RES_MEM_MB = const(2)  # pb: Resources.mem_mb
_RES_DEVICES = const(5)  # pb: Resources.devices
_DEVICE_NAME = const(1)  # pb: Device.name
_ATTR_NAME = const(1)  # pb: Attribute.name
_ATTR_TEXT = const(2)  # pb: Attribute.text
_ATTR_SCALAR = const(3)  # pb: Attribute.scalar
_RGD_AGENT_ID = const(1)  # pb: Registered.agent_id
_RGD_NONCE = const(2)  # pb: Registered.nonce
_RGD_HEARTBEAT_MS = const(3)  # pb: Registered.heartbeat_ms
_RGD_JITTER_MS = const(4)  # pb: Registered.jitter_ms
_RGD_UPDATE_ACK = const(5)  # pb: Registered.update_ack
_HB_COMMAND_ACK = const(1)  # pb: Heartbeat.command_ack
_SU_UPDATE_ID = const(1)  # pb: StatusUpdate.update_id
_SU_TASK = const(2)  # pb: StatusUpdate.task
_SU_STATE = const(3)  # pb: StatusUpdate.state
_SU_REASON = const(4)  # pb: StatusUpdate.reason
_SU_MESSAGE = const(5)  # pb: StatusUpdate.message
_SU_EXIT_CODE = const(6)  # pb: StatusUpdate.exit_code
_PUB_UPDATE_ID = const(1)  # pb: Publish.update_id
_PUB_TASK = const(2)  # pb: Publish.task
_PUB_DATA = const(3)  # pb: Publish.data
_PUB_TOPIC = const(4)  # pb: Publish.topic
_CMD_ID = const(1)  # pb: Command.id
_CMD_LAUNCH = const(2)  # pb: Command.launch
_CMD_KILL = const(3)  # pb: Command.kill
_CMD_FETCH = const(4)  # pb: Command.fetch
_CMD_REREGISTER = const(5)  # pb: Command.reregister
_LAUNCH_TASK = const(1)  # pb: Launch.task
_LAUNCH_SPEC = const(2)  # pb: Launch.spec
_KILL_TASK = const(1)  # pb: Kill.task
_FETCH_SHA256 = const(1)  # pb: FetchModule.sha256
_FETCH_SIZE = const(2)  # pb: FetchModule.size
_SPEC_RESOURCES = const(2)  # pb: TaskSpec.resources
_SPEC_DOCKER = const(3)  # pb: TaskSpec.docker
_SPEC_WASM = const(4)  # pb: TaskSpec.wasm
_SPEC_MICROPYTHON = const(5)  # pb: TaskSpec.micropython
_ERR_CODE = const(1)  # pb: Error.code
_ERR_MESSAGE = const(2)  # pb: Error.message
_ERR_LEADER = const(3)  # pb: Error.leader

_STARTING = const(2)  # pb: TaskState.STARTING
_RUNNING = const(3)  # pb: TaskState.RUNNING
_FINISHED = const(5)  # pb: TaskState.FINISHED
_KILLED = const(7)  # pb: TaskState.KILLED
_ERROR = const(8)  # pb: TaskState.ERROR
_KILL_REQUESTED = const(3)  # pb: Reason.KILL_REQUESTED
_KILLED_BEFORE_LAUNCH = const(14)  # pb: Reason.KILLED_BEFORE_LAUNCH
_INVALID_TASK = const(12)  # pb: Reason.INVALID_TASK
_UNSUPPORTED_EXECUTOR = const(13)  # pb: Reason.UNSUPPORTED_EXECUTOR
_RESOURCES_UNAVAILABLE = const(18)  # pb: Reason.RESOURCES_UNAVAILABLE
_MICROPYTHON = const(3)  # pb: Executor.MICROPYTHON
_BAD_REQUEST = const(1)  # pb: ErrorCode.BAD_REQUEST
_UNAUTHENTICATED = const(2)  # pb: ErrorCode.UNAUTHENTICATED
_FORBIDDEN = const(3)  # pb: ErrorCode.FORBIDDEN
_NOT_FOUND = const(4)  # pb: ErrorCode.NOT_FOUND
_TOO_LARGE = const(6)  # pb: ErrorCode.TOO_LARGE
_NOT_LEADER = const(11)  # pb: ErrorCode.NOT_LEADER

_PROTOCOL_VERSION = const(1)
_POST = const(2)  # CoAP method codes
_FETCH = const(5)
_MAX_PAYLOAD = const(512)  # what fits a datagram coap takes (640 B) after the header and options
_MAX_QUEUE = const(12)  # unacknowledged updates kept; publish() answers -5 beyond it
# data + topic of one publish: what always fits the 576-byte send buffer next to the CoAP header
# and OSCORE option (21 B with a 7-byte kid and a 5-byte Partial IV), the inner code and options
# (6 B), the AgentCall envelope with 32-bit ids (≤ 22 B) and the tag (8 B). A bigger one could
# never be sent and would block every update queued behind it, so publish() refuses it (-4).
_MAX_PUBLISH = const(512)
_MAX_TASKS = const(16)  # task numbers remembered (terminal ones are forgotten oldest first)
_BACKOFF_MIN_MS = const(1000)  # the first pause after a failed call (the Linux agent's too)
_BACKOFF_MAX_MS = const(60000)
_IDLE_MS = const(20)
_REG_GAP_MIN = const(1000)
_REG_GAP_MAX = const(64000)
_SEQ_RESERVE = const(64)  # calls per state-file write of the seq bound

# The agent's state, in one list indexed by the _S_* consts below rather than ~20 module
# globals: a const index is folded at compile time, while each global name would be a qstr and
# a slot in the module dict (on the heap, ~2 KB together counting the qstr pool chunk).
# Persistent (the state file): agent id, secret, next update id, last applied command,
# unacknowledged updates, terminal tasks {task: state}, seq bound. A queued update is kept
# encoded, the CBOR of {call field: update dict}: one bytes object of ~20 B (64 B of heap) where
# the list and dicts it decodes to take ~220 B, and a running task queues several.
_S_ID = const(0)
_S_SECRET = const(1)
_S_NEXT = const(2)
_S_CMD = const(3)
_S_QUEUE = const(4)
_S_TASKS = const(5)  # task number -> state; running ones live only in RAM
# From the configuration (the parsed config dict itself is dropped after start-up: ~1.7 KB).
_S_STATE = const(6)  # the state file's path
_S_REG = const(7)  # [name, the token's key (the token itself is not kept), cpus, mem_mb, attributes]
_S_OBSERVE = const(8)
_S_SEQ = const(9)
_S_REGISTERED = const(10)
_S_HB_MS = const(11)
_S_JITTER_MS = const(12)
_S_DUE = const(13)  # ticks_ms of the next heartbeat
_S_CMD_ACKED = const(14)  # command_ack the master has acknowledged receiving
_S_FAILS = const(15)
_S_INVENTORY = const(16)
_S_LOG_LEVEL = const(17)
_S_REG_OK = const(18)  # ticks_ms before which an unprotected 4.01 does not re-register
_S_REG_GAP = const(19)
_S_REFUSALS = const(20)  # re-registrations refused in a row
_S_SEQ_BOUND = const(21)  # every seq below it may have been sent: the state file holds it
# The configured masters when several, as one "host:port host:port" string split when the
# agent moves (rare): a list of strings would be 64 B of heap per master for good. (A space,
# not a comma: " " is one of the firmware's qstrs, "," would be a new one.)
_S_MASTERS = const(22)
_S_MI = const(23)  # the index of the one in use
_s = [0, b"", 1, 0, [], {}, "state.cbor", None, True, 0, False, 5000, 0, 0, 0, 0, [], 1, 0,
      _REG_GAP_MIN, 0, 0, "", 0]


def _log(n, *a):
    if n <= _s[_S_LOG_LEVEL]:
        print("edgerm:", *a)


# ---------------------------------------------------------------------------------------------
# The state file


def _save():
    st = {1: _s[_S_ID], 2: _s[_S_SECRET], 3: _s[_S_NEXT], 4: _s[_S_CMD], 5: _s[_S_QUEUE], 6: [[t, s] for t, s in _s[_S_TASKS].items() if s >= _FINISHED], 7: _s[_S_SEQ_BOUND]}
    path = _s[_S_STATE]
    with open(path + ".new", "wb") as f:
        f.write(cbor.enc(None, 0, st))
    os.rename(path + ".new", path)


# ---------------------------------------------------------------------------------------------
# Calls


def _put(dest, key, v):
    if v:  # the wire leaves defaults out; so must we, or the MAC covers other bytes
        dest[key] = v
    return dest


def _seq():
    # The next sender sequence number: a first registration's seq, else the OSCORE Partial IV
    # (coap.begin asks for it through coap._c[14] for every protected request, module blocks
    # too). It never goes back, across reboots too, or recorded calls would be valid again:
    # the state file holds a bound ahead of it, written before the seq reaches it (RFC 8613
    # 7.5.1), and a reboot goes on from there. Without an identity no seq matters yet:
    # _register writes the bound with the identity.
    _s[_S_SEQ] += 1
    if _s[_S_SEQ] >= _s[_S_SEQ_BOUND]:
        _s[_S_SEQ_BOUND] = _s[_S_SEQ] + _SEQ_RESERVE
        if _s[_S_ID]:
            _save()
    return _s[_S_SEQ]


async def _call(key, value):
    """Send AgentCall{key: value} (key: the call's field number; 0: value is a queued update,
    {field: update} encoded); return the decoded, authenticated AgentReply or None. Once the
    agent has an identity, the call is OSCORE-protected by coap (no agent_id, seq or mac in
    it: the master takes them from the kid and the Partial IV) and only a verified reply, or
    an unprotected refusal (4.01, NOT_LEADER), is taken. A first registration goes in clear
    with seq and a mac keyed by the token's key."""
    await coap.take()
    try:
        if key:
            msg = {key: value}
        else:  # decoded only while the call is built: the queue keeps the bytes
            msg = cbor.decode(value)
        nonce = value.get(_REG_NONCE) if key == _CALL_REGISTER else None
        k = None
        if nonce:  # a first registration: seq, no agent_id, signed with the token's key
            seq = _seq()
            msg[_CALL_SEQ] = seq
            k = _s[_S_REG][1]
        obs = _s[_S_OBSERVE] and key == _CALL_HEARTBEAT
        if obs:
            i = coap.begin(_FETCH, "c", cbor=True, observe=0)
        else:
            i = coap.begin(_POST, "a", cbor=True)
        coap.TX[i] = 0xFF
        j = cbor.enc(coap.TX, i + 1, msg)
        if k:
            msg[_CALL_MAC] = oscore.hmac(k, coap.TX[i + 1:j])
            j = cbor.enc(coap.TX, i + 1, msg)
        # Sent: nothing reads the message again. Emptied, not just dropped, as the caller's
        # message is: stale slots of this coroutine's stack (and the caller's) still point to
        # them while we wait, and would keep what they hold (a decoded update, a registration)
        # alive.
        msg.clear()
        if key:
            value.clear()
        msg = value = None
        r = await coap.request(j)
        rep = None
        if r is None:
            _switch(None)
        elif obs and r[0] & 0xFE == 0x84:  # 4.04 or 4.05 (and not a tuple constant)
            _s[_S_OBSERVE] = False  # a master without `c`: heartbeats go to `a`
            _log(0, "no observable c; observe off")
        else:
            code = r[0]  # r: (code, payload start, end, block2) in TX; few locals, a slot each
            try:
                rep = cbor.decode(memoryview(coap.TX)[r[1]:r[2]])
            except ValueError:
                _log(1, "malformed reply dropped")
    finally:
        coap.give()
    if rep is not None:
        err = rep.get(_REPLY_ERROR)
        if nonce:
            # Signed with the secret both sides derive from the token's key and the two
            # nonces: a reply from someone without the token fails here.
            r = rep.get(_REPLY_REGISTERED)
            r = r.get(_RGD_NONCE) if type(r) is dict else None  # the master's nonce
            # the secret: the first 16 bytes of HMAC-SHA256(the token's key, "edgerm secret"
            # || agent nonce || master nonce)
            k = oscore.hmac(k, b"edgerm secret" + nonce + r, 16) if type(r) is bytes else b""
            r = None
            if _authentic(rep, k) and rep.get(_REPLY_SEQ, 0) == seq:
                _s[_S_FAILS] = 0
                _s[_S_SECRET] = k  # a Registered it is: _register keeps it with the agent_id
                return rep
        elif not code & 0x100:  # coap's _PLAIN unset: OSCORE verified it answers this call
            _s[_S_FAILS] = 0
            return rep
        c = err.get(_ERR_CODE) if type(err) is dict else 0
        if c == _UNAUTHENTICATED and code & 0xFF == 0x81:
            return rep  # an unprotected refusal: the master does not (or no longer) know us
        if c == _NOT_LEADER:
            _switch(err.get(_ERR_LEADER))  # a standby: unprotected as well
        else:
            _log(1, "unauthenticated reply dropped")
    _s[_S_FAILS] += 1
    return None


def _switch(to):
    # Move to master `to` (the "coap://host:port" a standby named) if it is one of ours, else
    # to the next one; then re-register there.
    m = _s[_S_MASTERS].split()
    if len(m) < 2:
        return
    i = _s[_S_MI]
    j = m.index(to[7:]) if type(to) is str and to[7:] in m else i
    if j == i:  # none named, not one of ours, or the refusing master itself: the next one
        j = (i + 1) % len(m)
    _s[_S_MI] = j
    _log(0, "master", m[j])
    coap._c[5] = _addr(m[j])  # coap's _C_ADDR: where requests go
    coap._c[22] = -1  # coap's _C_OBS_TOK: the observation was the old master's
    _s[_S_REGISTERED] = False


def _addr(hp):
    import socket
    host, port = hp.rsplit(":", 1)
    return socket.getaddrinfo(host, int(port), 0, socket.SOCK_DGRAM)[0][-1]


def _authentic(r, key):
    given = r.pop(_REPLY_MAC, None)
    if type(given) is not bytes or len(given) != 8 or not key:  # oscore.hmac's 8 bytes
        return False
    try:
        n = cbor.enc(coap.TX, 0, r)
    except (IndexError, TypeError):
        return False
    n = oscore.hmac(key, coap.TX[:n])
    r = 0
    for i in range(8):  # no early exit: a forger learns nothing from the time it takes
        r |= given[i] ^ n[i]
    return r == 0


async def _register():
    name, _, cpus, mem, more = _s[_S_REG]
    res = _put({}, _RES_CPUS, cpus)
    _put(res, _RES_MEM_MB, mem)
    _put(res, _RES_DEVICES, _s[_S_INVENTORY])
    attrs = [{_ATTR_NAME: "os", _ATTR_TEXT: "micropython"},
             {_ATTR_NAME: "arch", _ATTR_TEXT: sys.platform}]
    for k, v in more.items():
        attrs.append({_ATTR_NAME: k, (_ATTR_TEXT if type(v) is str else _ATTR_SCALAR): v})
    m = {_REG_NAME: name, _REG_RESOURCES: res, _REG_ATTRIBUTES: attrs,
         _REG_VERSION: _PROTOCOL_VERSION, _REG_MAX_PAYLOAD: _MAX_PAYLOAD}
    if executor is not None:
        m[_REG_EXECUTORS] = [_MICROPYTHON]
    if _s[_S_ID]:
        _put(m, _REG_TASKS, [{_REPORT_TASK: t, _REPORT_STATE: s} for t, s in _s[_S_TASKS].items()])
        m[_REG_UPDATE_NEXT] = _s[_S_NEXT]
        _s[_S_REG_OK] = ticks_add(ticks_ms(), _s[_S_REG_GAP])
        _s[_S_REG_GAP] = min(2 * _s[_S_REG_GAP], _REG_GAP_MAX)
    else:
        m[_REG_NONCE] = oscore.urandom(8)  # fresh each attempt: the master refuses one it has seen
    rep = await _call(_CALL_REGISTER, m)
    if rep is None:
        return False
    reg = rep.get(_REPLY_REGISTERED)
    if type(reg) is not dict:
        err = rep.get(_REPLY_ERROR) or {}
        _log(1, "registration refused:", err.get(_ERR_CODE), err.get(_ERR_MESSAGE))
        if _s[_S_ID] and err.get(_ERR_CODE) == _UNAUTHENTICATED:
            _s[_S_REFUSALS] += 1
            if _s[_S_REFUSALS] >= 3:  # three times in a row, backing off: not one forged datagram
                # The master does not know us (any more): drop the identity and everything
                # numbered under it (a new agent_id starts update and command ids from 1; the
                # old identity's tasks are no one's) and register afresh.
                if executor is not None:
                    for t in _s[_S_TASKS]:  # (kill only cancels: the dict stays as it is)
                        executor.kill(t, True)
                _s[_S_TASKS].clear()
                _s[:5] = [0, b"", 1, 0, []]  # _S_ID, _S_SECRET, _S_NEXT, _S_CMD, _S_QUEUE
                coap._c[13] = b""  # coap's _C_KEYS: the next registration goes in clear
        _s[_S_FAILS] += 1
        return False
    _s[_S_REFUSALS] = 0
    _s[_S_ID] = reg.get(_RGD_AGENT_ID, 0)
    _s[_S_HB_MS] = reg.get(_RGD_HEARTBEAT_MS) or _s[_S_HB_MS]
    _s[_S_JITTER_MS] = reg.get(_RGD_JITTER_MS, 0)
    ack = reg.get(_RGD_UPDATE_ACK, 0)
    _acked(ack)
    _s[_S_NEXT] = max(_s[_S_NEXT], ack + 1)
    _s[_S_CMD_ACKED] = -1  # tell the master our command_ack in the next heartbeat
    _s[_S_REGISTERED] = True
    # The OSCORE security context from the secret and agent_id (the kid), into coap's
    # _C_KEYS: from now on every call is protected.
    coap._c[13] = oscore.setup(_s[_S_SECRET], _s[_S_ID])
    coap._c[19] = -1  # coap's _C_NOTE_PIV: a new context, the master's Partial IVs afresh
    _save()
    _log(0, "registered %d" % _s[_S_ID])
    return True


def _acked(n):
    # Drop the queued updates that update_ack n covers.
    q = _s[_S_QUEUE]
    k = 0
    while k < len(q) and cbor.decode(q[k]).popitem()[1].get(_SU_UPDATE_ID, 0) <= n:  # Publish too
        k += 1
    del q[:k]
    return k > 0


def _on_reply(r, head):
    # An authenticated AgentReply; head: the queued update it answers, else None. (Not in
    # _step: a coroutine's frame holds a slot for every local and stack entry it ever uses.)
    changed = _acked(r.get(_REPLY_UPDATE_ACK, 0))
    err = r.get(_REPLY_ERROR)
    ec = 0  # its error code
    if type(err) is dict:
        ec = err.get(_ERR_CODE)
        _log(1, "error %s %s" % (ec, err.get(_ERR_MESSAGE)))
        if ec == _UNAUTHENTICATED:
            # Re-register, but not more than once per re-registration gap: the 4.01 may be forged.
            late = ticks_diff(ticks_ms(), _s[_S_REG_OK])
            if late < 0:
                _log(1, "4.01 ignored: re-registered %d ms ago" % (_s[_S_REG_GAP] + late))
            else:
                if late > _s[_S_REG_GAP]:
                    _s[_S_REG_GAP] = _REG_GAP_MIN  # quiet for a while: back off afresh
                _s[_S_REGISTERED] = False
    for c in r.get(_REPLY_COMMANDS, ()):
        if type(c) is dict and c.get(_CMD_ID) == _s[_S_CMD] + 1:
            _apply(c)
            changed = True
    q = _s[_S_QUEUE]
    if head is not None and q and q[0] is head:  # answered, but not acknowledged
        c, u = cbor.decode(head).popitem()
        if ec in (_BAD_REQUEST, _FORBIDDEN, _NOT_FOUND, _TOO_LARGE):
            # Refused for good: forget it and renumber the rest (the master applies update
            # ids without gaps and has not applied this one).
            _log(0, "update", u.get(_SU_UPDATE_ID), "refused for good; dropped")
            del q[0]
            for i in range(len(q)):
                c, u = cbor.decode(q[i]).popitem()
                u[_SU_UPDATE_ID] -= 1  # Publish.update_id has the same number
                q[i] = cbor.enc(None, 0, {c: u})
            _s[_S_NEXT] -= 1
            changed = True
        else:
            _s[_S_FAILS] += 1  # do not hammer the master
            _log(1, "update", u.get(_SU_UPDATE_ID), "not acknowledged")
    if changed:
        _save()


# ---------------------------------------------------------------------------------------------
# Commands and task reports


def _apply(c):
    _s[_S_CMD] = c[_CMD_ID]
    try:
        if _CMD_LAUNCH in c:
            ln = c[_CMD_LAUNCH]
            task = ln.get(_LAUNCH_TASK, 0)
            if not task or task in _s[_S_TASKS]:
                return  # idempotent: the master already has (or will get) this task's reports
            spec = ln.get(_LAUNCH_SPEC, {})
            mp = spec.get(_SPEC_MICROPYTHON)
            if executor is None or _SPEC_DOCKER in spec or _SPEC_WASM in spec:
                return report(task, _ERROR, _UNSUPPORTED_EXECUTOR, "this agent runs micropython tasks only")
            if type(mp) is not dict:
                return report(task, _ERROR, _INVALID_TASK, "no task kind in the spec")
            devs = [d.get(_DEVICE_NAME, "") for d in spec.get(_SPEC_RESOURCES, {}).get(_RES_DEVICES, ())]
            for d in devs:
                if d not in sensors._dev:  # the devices that opened: the inventory's names
                    return report(task, _ERROR, _RESOURCES_UNAVAILABLE, "no device %s" % d)
            report(task, _STARTING)
            executor.launch(task, mp, devs)
        elif _CMD_KILL in c:
            task = c[_CMD_KILL].get(_KILL_TASK, 0)
            s = _s[_S_TASKS].get(task)
            if s is None:
                report(task, _KILLED, _KILLED_BEFORE_LAUNCH)
            elif s >= _FINISHED:
                report(task, s, 0, "already ended")
            elif executor is None or not executor.kill(task):
                report(task, _KILLED, _KILL_REQUESTED)
        elif _CMD_FETCH in c and executor is not None:
            f = c[_CMD_FETCH]
            executor.prefetch(f.get(_FETCH_SHA256, b""), f.get(_FETCH_SIZE, 0))
        elif _CMD_REREGISTER in c:
            _s[_S_REGISTERED] = False
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        _log(1, "bad command", _s[_S_CMD], e)  # acknowledged all the same: resending cannot fix it


def report(task, state, reason=0, message="", code=0):
    """Queue StatusUpdate{task, state, ...} for the master (the executor calls this too)."""
    ts = _s[_S_TASKS]
    ts[task] = state
    if len(ts) > _MAX_TASKS:
        for t in list(ts):
            if ts[t] >= _FINISHED and len(ts) > _MAX_TASKS:
                del ts[t]
    u = {_SU_UPDATE_ID: _s[_S_NEXT], _SU_TASK: task, _SU_STATE: state}
    _put(u, _SU_REASON, reason)
    _put(u, _SU_MESSAGE, message)
    _put(u, _SU_EXIT_CODE, code)
    _s[_S_QUEUE].append(cbor.enc(None, 0, {_CALL_STATUS: u}))
    _s[_S_NEXT] += 1
    _save()
    _log(2, "task", task, "state", state, reason, message)


def publish(task, data, topic=""):
    """Queue Publish{task, data, topic}: 0, or -4 too big, -5 queue full (the ABI's codes)."""
    if len(data) + len(topic.encode()) > _MAX_PUBLISH:
        return -4
    if len(_s[_S_QUEUE]) >= _MAX_QUEUE:
        return -5
    u = {_PUB_UPDATE_ID: _s[_S_NEXT], _PUB_TASK: task}
    _put(u, _PUB_DATA, bytes(data))
    _put(u, _PUB_TOPIC, topic)
    _s[_S_QUEUE].append(cbor.enc(None, 0, {_CALL_PUBLISH: u}))
    _s[_S_NEXT] += 1
    _save()
    return 0


# ---------------------------------------------------------------------------------------------
# The loop


async def _step():
    """One round: register, flush one update, or heartbeat when due; else idle a moment."""
    now = ticks_ms()
    if not coap.busy:  # nothing in flight (and no await below until done): read pushes
        coap.poll()
        p = coap.pushed  # a view of coap.TX, decoded before anything writes there
        coap.pushed = None
        if p is not None and _s[_S_REGISTERED]:
            # The latest notification of the observation, verified by coap (OSCORE): an
            # AgentReply.
            try:
                rep = cbor.decode(p)
            except ValueError:
                rep = None
                _log(1, "notification dropped")
            if rep is not None:
                _log(2, "pushed %d commands" % len(rep.get(_REPLY_COMMANDS, ())))
                _on_reply(rep, None)
            p = rep = None
    if _s[_S_FAILS] and ticks_diff(_s[_S_DUE], now) > 0:
        await asyncio.sleep_ms(_IDLE_MS)  # backing off after a silent master
        return
    if not _s[_S_REGISTERED]:
        ok = await _register()
    elif _s[_S_QUEUE]:
        head = _s[_S_QUEUE][0]
        ok = await _call(0, head)
        if ok is not None:
            _on_reply(ok, head)
    elif _s[_S_CMD] != _s[_S_CMD_ACKED] or ticks_diff(now, _s[_S_DUE]) >= 0:
        ack = _s[_S_CMD]
        ok = await _call(_CALL_HEARTBEAT, _put({}, _HB_COMMAND_ACK, ack))
        if ok is not None:
            _s[_S_CMD_ACKED] = ack
            _on_reply(ok, None)
    else:
        await asyncio.sleep_ms(_IDLE_MS)
        return
    if _s[_S_FAILS]:
        back = _BACKOFF_MIN_MS << min(_s[_S_FAILS] - 1, 6)
        _s[_S_DUE] = ticks_add(ticks_ms(), min(back, _BACKOFF_MAX_MS))
    elif ok is not None:  # a reply may be {} (an AgentReply with nothing in it)
        # coap's getrandbits: random's, or ticks on a port without it
        # (a jitter of 0: % 1, no jitter)
        jit = coap.getrandbits(16) % (_s[_S_JITTER_MS] + 1)
        _s[_S_DUE] = ticks_add(ticks_ms(), _s[_S_HB_MS] + jit)


def _setup(path):
    # Read the configuration (JSON, see README.md) and open the socket. Not a coroutine: its
    # frame, and with it any pointer to the parsed dict (~1.7 KB), is gone when it returns
    # (a coroutine's frame lives on, and stale slots in it keep what they point to alive).
    import socket
    with open(path) as f:
        cfg = json.load(f)
    _s[_S_STATE] = cfg.get("state", "state.cbor")
    # the token's key, which signs a first registration: SHA-256 of its UTF-8 bytes
    _s[_S_REG] = [cfg.get("name", "micro"),
                  oscore.hashlib.sha256(cfg.get("token", "").encode()).digest(),
                  float(cfg.get("cpus", 1.0)), float(cfg.get("mem_mb", 0)),
                  cfg.get("attributes", {})]
    _s[_S_OBSERVE] = cfg.get("observe", True)
    _s[_S_LOG_LEVEL] = cfg.get("log_level", 1)
    _s[_S_HB_MS] = cfg.get("heartbeat_ms", 5000)
    m = cfg.get("master", "127.0.0.1:5683")
    if type(m) is list:  # several masters: follow the leader among them
        _s[_S_MASTERS] = " ".join(m)
        m = m[0]
    addr = _addr(m)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("0.0.0.0", cfg.get("port", 0))[0][-1])
    s.setblocking(False)
    coap.setup(s, addr, cfg.get("ack_timeout_ms", 1000), cfg.get("max_retransmit", 2))
    coap._c[14] = _seq  # coap's _C_SEQ: the Partial IV of every protected request
    try:
        with open(_s[_S_STATE], "rb") as f:
            st = cbor.decode(f.read())
        for i in range(5):  # agent id, secret, next update id, last command, queue: keys 1..5
            _s[i] = st.get(i + 1, _s[i])  # (_s holds each one's default)
        q = _s[_S_QUEUE]
        for i in range(len(q)):
            if type(q[i]) is not bytes:  # from an agent that kept them as [field, update]
                q[i] = cbor.enc(None, 0, {q[i][0]: q[i][1]})
        _s[_S_TASKS].update(st.get(6, []))  # [task, state] pairs
        # A state file from before the bound: its agent started at seq 1 each boot; go past.
        b = st.get(7, 65536)
        _s[_S_SEQ] = b - 1
        _s[_S_SEQ_BOUND] = b
        if _s[_S_ID]:
            coap._c[13] = oscore.setup(_s[_S_SECRET], _s[_S_ID])  # coap's _C_KEYS
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # no state, or a corrupt one: register afresh
    _s[_S_INVENTORY] = sensors.setup(cfg.get("sensors", ()))
    if executor is not None:
        executor.setup(report, publish, cfg.get("cache", "cache"), cfg.get("block_szx", 5),
                       cfg.get("max_module", 16384))


async def run(path):
    """Run the agent with the configuration file at `path` until the process ends."""
    _setup(path)
    gc.collect()
    while True:
        try:
            await _step()
        except Exception as e:
            gc.collect()  # MemoryError: a task ate the heap; what it held is garbage now
            _log(0, "agent loop error:", type(e).__name__, e)
            await asyncio.sleep_ms(100 if type(e) is MemoryError else 1000)


def main(path="config.json"):
    asyncio.run(run(path))
