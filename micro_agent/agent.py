"""The EdgeRM agent's state machine over CoAP, as docs/protocol.md says it must behave.

register (token) -> keep agent_id + secret in the state file -> heartbeat every heartbeat_ms
(+ jitter), carrying command_ack when it moved -> apply commands in id order (launch and kill
idempotent by task number) -> send status updates and publishes oldest first, one per call,
until update_ack covers them. After a reboot, or when the master asks (ReRegister, or
UNAUTHENTICATED on a call), re-register with agent_id, seq and mac; an unknown agent_id sends it
back to a fresh registration with the token. Every call after the first registration carries
seq (one more per call) and an 8-byte HMAC-SHA256 mac; replies with a wrong mac or seq are
dropped. A call that gets no answer is retried with exponential back-off up to 60 s, forever.

With `observe` on, each heartbeat is a FETCH of `c` with Observe 0, so it also (re)registers
the observation through which the master pushes commands (AgentReply, seq 0, signed) at once;
an observation the master lost lapses for at most one heartbeat interval. An update the master
refuses for good (BAD_REQUEST, FORBIDDEN, NOT_FOUND, TOO_LARGE in a signed reply) is dropped and
the ones after it renumbered; other errors and silence are retried. An unsigned 4.01 (anyone
can forge one) makes the agent re-register at most once per _REG_GAP_MIN..._REG_GAP_MAX ms,
backing off while they keep coming.

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
import mac
import sensors

try:
    import executor
except ImportError:  # left off the device: launches end in ERROR UNSUPPORTED_EXECUTOR
    executor = None

try:
    from random import getrandbits
except ImportError:
    def getrandbits(n):
        return ticks_ms() & ((1 << n) - 1)

_CALL_AGENT_ID = const(1)  # pb: AgentCall.agent_id
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
_REG_TOKEN = const(6)  # pb: Register.token
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
_RGD_SECRET = const(2)  # pb: Registered.secret
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

_PROTOCOL_VERSION = const(1)
_POST = const(2)  # CoAP method codes
_FETCH = const(5)
_MAX_PAYLOAD = const(512)  # what fits coap.RX after the header and options
_MAX_QUEUE = const(12)  # unacknowledged updates kept; publish() answers -5 beyond it
# data + topic of one publish: what always fits the 576-byte send buffer next to the CoAP header
# (11 B) and the signed AgentCall envelope with 32-bit ids (45 B). A bigger one could never be
# sent and would block every update queued behind it, so publish() refuses it (-4).
_MAX_PUBLISH = const(512)
_MAX_TASKS = const(16)  # task numbers remembered (terminal ones are forgotten oldest first)
_BACKOFF_MAX_MS = const(60000)
_IDLE_MS = const(20)
_REG_GAP_MIN = const(1000)
_REG_GAP_MAX = const(64000)

# Persistent state (the state file): agent id, secret, next update id, last applied command,
# unacknowledged updates [[call field, update dict]], and terminal tasks {task: state}.
_id = 0
_secret = b""
_next = 1
_cmd = 0
_queue = []
_tasks = {}  # task number -> state; running ones live only in RAM

# From the configuration (the parsed config dict itself is dropped after start-up: ~1.7 KB).
_state = "state.cbor"
_reg = None  # [name, token, cpus, mem_mb, attributes]
_observe = True
_seq = 0
_registered = False
_hb_ms = 5000
_jitter_ms = 0
_due = 0  # ticks_ms of the next heartbeat
_cmd_acked = 0  # command_ack the master has acknowledged receiving
_fails = 0
_inventory = []
_log_level = 1
_reg_ok = 0  # ticks_ms before which an unsigned 4.01 does not trigger a re-registration
_reg_gap = _REG_GAP_MIN
_refusals = 0  # re-registrations refused in a row


def _log(level, *a):
    if level <= _log_level:
        print("edgerm:", *a)


# ---------------------------------------------------------------------------------------------
# The state file


def _save():
    st = {1: _id, 2: _secret, 3: _next, 4: _cmd, 5: _queue, 6: [[t, s] for t, s in _tasks.items() if s >= _FINISHED]}
    b = bytearray(256)
    while True:
        try:
            n = cbor.enc(b, 0, st)
            break
        except IndexError:
            b = bytearray(2 * len(b))
    path = _state
    with open(path + ".new", "wb") as f:
        f.write(memoryview(b)[:n])
    os.rename(path + ".new", path)


# ---------------------------------------------------------------------------------------------
# Calls


def _put(d, k, v):
    if v:  # the wire leaves defaults out; so must we, or the MAC covers other bytes
        d[k] = v
    return d


async def _call(field, body):
    """Send AgentCall{field: body}; return the decoded, authenticated AgentReply or None."""
    global _seq, _fails, _observe
    await coap.take()
    try:
        _seq += 1
        seq = _seq
        msg = {_CALL_SEQ: seq, field: body}
        if _id:
            msg[_CALL_AGENT_ID] = _id
        obs = _observe and field == _CALL_HEARTBEAT
        if obs:
            i = coap.begin(_FETCH, "c", cbor=True, observe=0)
        else:
            i = coap.begin(_POST, "a", cbor=True)
        coap.TX[i] = 0xFF
        j = cbor.enc(coap.TX, i + 1, msg)
        if _secret:
            msg[_CALL_MAC] = mac.hmac8(_secret, coap.TX[i + 1:j])
            j = cbor.enc(coap.TX, i + 1, msg)
        msg = body = None  # no stale pointer to them while we wait
        r = await coap.request(j)
        rep = None
        if r is None:
            pass
        elif obs and (r[0] == 0x84 or r[0] == 0x85):
            _observe = False  # a master without `c`: heartbeats go to `a`
            _log(0, "no observable c; observe off")
        else:
            code, a, b, _ = r
            if obs:
                coap.obs_tok = (coap.TX[4] << 8 | coap.TX[5]) if coap.observed else -1
            try:
                rep = cbor.decode(coap.RX[a:b])
            except ValueError:
                _log(1, "malformed reply dropped")
    finally:
        coap.give()
    if rep is None:
        _fails += 1
        return None
    err = rep.get(_REPLY_ERROR)
    key = _secret
    reg = rep.get(_REPLY_REGISTERED)
    if field == _CALL_REGISTER and type(reg) is dict:
        key = reg.get(_RGD_SECRET, b"")
    if not _authentic(rep, key):
        if type(err) is dict and err.get(_ERR_CODE) == _UNAUTHENTICATED and code == 0x81:
            return rep  # an unsigned refusal: the master does not (or no longer) know us
        _log(1, "reply with a wrong mac dropped")
    elif rep.get(_REPLY_SEQ, 0) != seq:
        _log(1, "reply for another seq dropped")
    else:
        _fails = 0
        return rep
    _fails += 1
    return None


def _authentic(rep, key):
    given = rep.pop(_REPLY_MAC, None)
    if type(given) is not bytes or not key:
        return False
    try:
        n = cbor.enc(coap.TX, 0, rep)
    except (IndexError, TypeError):
        return False
    return mac.equal(given, mac.hmac8(key, coap.TX[:n]))


async def _register():
    global _id, _secret, _registered, _hb_ms, _jitter_ms, _next, _cmd, _queue, _cmd_acked, \
        _fails, _reg_ok, _reg_gap, _refusals
    name, token, cpus, mem, more = _reg
    res = _put({}, _RES_CPUS, cpus)
    _put(res, _RES_MEM_MB, mem)
    _put(res, _RES_DEVICES, _inventory)
    attrs = [{_ATTR_NAME: "os", _ATTR_TEXT: "micropython"},
             {_ATTR_NAME: "arch", _ATTR_TEXT: sys.platform}]
    for k, v in more.items():
        attrs.append({_ATTR_NAME: k, (_ATTR_TEXT if type(v) is str else _ATTR_SCALAR): v})
    m = {_REG_NAME: name, _REG_RESOURCES: res, _REG_ATTRIBUTES: attrs,
         _REG_VERSION: _PROTOCOL_VERSION, _REG_MAX_PAYLOAD: _MAX_PAYLOAD}
    if executor is not None:
        m[_REG_EXECUTORS] = [_MICROPYTHON]
    if _id:
        _put(m, _REG_TASKS, [{_REPORT_TASK: t, _REPORT_STATE: s} for t, s in _tasks.items()])
        m[_REG_UPDATE_NEXT] = _next
        _reg_ok = ticks_add(ticks_ms(), _reg_gap)
        _reg_gap = min(2 * _reg_gap, _REG_GAP_MAX)
    else:
        m[_REG_TOKEN] = token
    rep = await _call(_CALL_REGISTER, m)
    if rep is None:
        return False
    reg = rep.get(_REPLY_REGISTERED)
    if type(reg) is not dict:
        err = rep.get(_REPLY_ERROR) or {}
        _log(1, "registration refused:", err.get(_ERR_CODE), err.get(_ERR_MESSAGE))
        if _id and err.get(_ERR_CODE) == _UNAUTHENTICATED:
            _refusals += 1
            if _refusals >= 3:  # three times in a row, backing off: not one forged datagram
                # The master does not know us (any more): drop the identity and everything
                # numbered under it (a new agent_id starts update and command ids from 1; the
                # old identity's tasks are no one's) and register with the token.
                for t in list(_tasks):
                    if executor is not None:
                        executor.kill(t, True)
                _tasks.clear()
                _id = 0
                _secret = b""
                _next = 1
                _cmd = 0
                _queue = []
        _fails += 1
        return False
    _refusals = 0
    _id = reg.get(_RGD_AGENT_ID, 0)
    _secret = reg.get(_RGD_SECRET, b"")
    _hb_ms = reg.get(_RGD_HEARTBEAT_MS) or _hb_ms
    _jitter_ms = reg.get(_RGD_JITTER_MS, 0)
    ack = reg.get(_RGD_UPDATE_ACK, 0)
    _acked(ack)
    if _next <= ack:
        _next = ack + 1
    _cmd_acked = -1  # tell the master our command_ack in the next heartbeat
    _registered = True
    _save()
    _log(0, "registered", _id)
    return True


def _acked(ack):
    n = 0
    while n < len(_queue) and _queue[n][1].get(_SU_UPDATE_ID, 0) <= ack:  # Publish too
        n += 1
    if n:
        del _queue[:n]
        return True
    return False


def _on_reply(rep):
    global _registered, _reg_gap
    changed = _acked(rep.get(_REPLY_UPDATE_ACK, 0))
    err = rep.get(_REPLY_ERROR)
    if type(err) is dict:
        _log(1, "error", err.get(_ERR_CODE), err.get(_ERR_MESSAGE))
        if err.get(_ERR_CODE) == _UNAUTHENTICATED:
            # Re-register, but not more than once per _reg_gap: the 4.01 may be forged.
            late = ticks_diff(ticks_ms(), _reg_ok)
            if late < 0:
                _log(1, "4.01 ignored: re-registered", _reg_gap + late, "ms ago")
            else:
                if late > _reg_gap:
                    _reg_gap = _REG_GAP_MIN  # quiet for a while: back off afresh
                _registered = False
    for c in rep.get(_REPLY_COMMANDS, ()):
        if type(c) is dict and c.get(_CMD_ID) == _cmd + 1:
            _apply(c)
            changed = True
    if changed:
        _save()


# ---------------------------------------------------------------------------------------------
# Commands and task reports


def _apply(c):
    global _cmd, _registered
    _cmd = c[_CMD_ID]
    try:
        if _CMD_LAUNCH in c:
            ln = c[_CMD_LAUNCH]
            task = ln.get(_LAUNCH_TASK, 0)
            if not task or task in _tasks:
                return  # idempotent: the master already has (or will get) this task's reports
            spec = ln.get(_LAUNCH_SPEC, {})
            mp = spec.get(_SPEC_MICROPYTHON)
            if executor is None or _SPEC_DOCKER in spec or _SPEC_WASM in spec:
                return report(task, _ERROR, _UNSUPPORTED_EXECUTOR, "this agent runs micropython tasks only")
            if type(mp) is not dict:
                return report(task, _ERROR, _INVALID_TASK, "no task kind in the spec")
            devs = [d.get(_DEVICE_NAME, "") for d in spec.get(_SPEC_RESOURCES, {}).get(_RES_DEVICES, ())]
            for d in devs:
                if d not in [x[_DEVICE_NAME] for x in _inventory]:
                    return report(task, _ERROR, _RESOURCES_UNAVAILABLE, "no device " + d)
            report(task, _STARTING)
            executor.launch(task, mp, devs)
        elif _CMD_KILL in c:
            task = c[_CMD_KILL].get(_KILL_TASK, 0)
            s = _tasks.get(task)
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
            _registered = False
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        _log(1, "bad command", _cmd, e)  # acknowledged all the same: resending cannot fix it


def report(task, state, reason=0, message="", exit_code=0):
    """Queue StatusUpdate{task, state, ...} for the master (the executor calls this too)."""
    global _next
    _tasks[task] = state
    if len(_tasks) > _MAX_TASKS:
        for t in list(_tasks):
            if _tasks[t] >= _FINISHED and len(_tasks) > _MAX_TASKS:
                del _tasks[t]
    u = {_SU_UPDATE_ID: _next, _SU_TASK: task, _SU_STATE: state}
    _put(u, _SU_REASON, reason)
    _put(u, _SU_MESSAGE, message)
    _put(u, _SU_EXIT_CODE, exit_code)
    _queue.append([_CALL_STATUS, u])
    _next += 1
    _save()
    _log(2, "task", task, "state", state, reason, message)


def publish(task, data, topic=""):
    """Queue Publish{task, data, topic}: 0, or -4 too big, -5 queue full (the ABI's codes)."""
    global _next
    if len(data) + len(topic.encode()) > _MAX_PUBLISH:
        return -4
    if len(_queue) >= _MAX_QUEUE:
        return -5
    u = {_PUB_UPDATE_ID: _next, _PUB_TASK: task}
    _put(u, _PUB_DATA, bytes(data))
    _put(u, _PUB_TOPIC, topic)
    _queue.append([_CALL_PUBLISH, u])
    _next += 1
    _save()
    return 0


# ---------------------------------------------------------------------------------------------
# The loop


async def _step():
    """One round: register, flush one update, or heartbeat when due; else idle a moment."""
    global _cmd_acked, _fails, _due, _next
    now = ticks_ms()
    if not coap.busy:  # nothing in flight (and no await below until done): read pushes
        coap.poll()
        p = coap.pushed
        if p is not None and _registered:
            # The latest notification of the observation: an AgentReply, seq 0, our mac.
            coap.pushed = None
            try:
                rep = cbor.decode(p)
            except ValueError:
                rep = None
            if rep is None or not _authentic(rep, _secret) or rep.get(_REPLY_SEQ, 0) != 0:
                _log(1, "notification dropped")
            else:
                _log(2, "pushed", len(rep.get(_REPLY_COMMANDS, ())), "commands")
                _on_reply(rep)
            p = rep = None
    if _fails and ticks_diff(_due, now) > 0:
        await asyncio.sleep_ms(_IDLE_MS)  # backing off after a silent master
        return
    if not _registered:
        ok = await _register()
    elif _queue:
        head = _queue[0]
        ok = await _call(head[0], head[1])
        if ok is not None:
            _on_reply(ok)
            err = ok.get(_REPLY_ERROR)
            if _queue and _queue[0] is head:
                if type(err) is dict and err.get(_ERR_CODE) in (_BAD_REQUEST, _FORBIDDEN,
                                                                _NOT_FOUND, _TOO_LARGE):
                    # Refused for good: forget it and renumber the rest (the master applies
                    # update ids without gaps and has not applied this one).
                    _log(0, "update", head[1].get(_SU_UPDATE_ID), "refused for good; dropped")
                    del _queue[0]
                    for c in _queue:
                        c[1][_SU_UPDATE_ID] -= 1  # Publish.update_id has the same number
                    _next -= 1
                    _save()
                else:
                    _fails += 1  # answered but not acknowledged: do not hammer the master
                    _log(1, "update", head[1].get(_SU_UPDATE_ID), "not acknowledged")
    elif _cmd != _cmd_acked or ticks_diff(now, _due) >= 0:
        ack = _cmd
        ok = await _call(_CALL_HEARTBEAT, _put({}, _HB_COMMAND_ACK, ack))
        if ok is not None:
            _cmd_acked = ack
            _on_reply(ok)
    else:
        await asyncio.sleep_ms(_IDLE_MS)
        return
    if _fails:
        back = _hb_ms << min(_fails - 1, 7)
        _due = ticks_add(ticks_ms(), back if back < _BACKOFF_MAX_MS else _BACKOFF_MAX_MS)
    elif ok:
        jit = getrandbits(16) % (_jitter_ms + 1) if _jitter_ms else 0
        _due = ticks_add(ticks_ms(), _hb_ms + jit)


def _setup(path):
    # Read the configuration (JSON, see README.md) and open the socket. Not a coroutine: its
    # frame, and with it any pointer to the parsed dict (~1.7 KB), is gone when it returns
    # (a coroutine's frame lives on, and stale slots in it keep what they point to alive).
    global _state, _reg, _observe, _hb_ms, _log_level, _inventory, _id, _secret, _next, _cmd, \
        _queue
    import socket
    with open(path) as f:
        cfg = json.load(f)
    _state = cfg.get("state", "state.cbor")
    _reg = [cfg.get("name", "micro"), cfg.get("token", ""), float(cfg.get("cpus", 1.0)),
            float(cfg.get("mem_mb", 0)), cfg.get("attributes", {})]
    _observe = cfg.get("observe", True)
    _log_level = cfg.get("log_level", 1)
    _hb_ms = cfg.get("heartbeat_ms", 5000)
    host, port = cfg.get("master", "127.0.0.1:5683").rsplit(":", 1)
    addr = socket.getaddrinfo(host, int(port), 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(socket.getaddrinfo("0.0.0.0", cfg.get("port", 0))[0][-1])
    s.setblocking(False)
    coap.setup(s, addr, cfg.get("ack_timeout_ms", 2000), cfg.get("max_retransmit", 4))
    try:
        with open(_state, "rb") as f:
            st = cbor.decode(f.read())
        _id = st.get(1, 0)
        _secret = st.get(2, b"")
        _next = st.get(3, 1)
        _cmd = st.get(4, 0)
        _queue = st.get(5, [])
        for t, v in st.get(6, []):
            _tasks[t] = v
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # no state, or a corrupt one: start afresh with the token
    _inventory = sensors.setup(cfg.get("sensors", ()))
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
        except MemoryError:
            gc.collect()  # a task ate the heap; what it held is garbage now
            _log(0, "out of memory in the agent loop; going on")
            await asyncio.sleep_ms(100)
        except Exception as e:
            _log(0, "agent loop error:", type(e).__name__, e)
            await asyncio.sleep_ms(1000)


def main(path="config.json"):
    asyncio.run(run(path))
