"""A minimal CoAP client (RFC 7252) for one master: CON requests with retransmission, token
matching, piggybacked and separate responses, Block2 downloads (RFC 7959), and one Observe
(RFC 7641) whose notifications are kept for the agent to read.

Economy: one preallocated send buffer, `TX`. A caller builds a request in place (`begin` writes
header and options, the caller writes its payload after it), `request` sends it and returns where
the response's payload lies in `RX`, the bytes of the last datagram read (what `recv` returned,
kept rather than copied into a second preallocated buffer: 640 B of heap less at rest; `give()`
and `poll()` drop it). One request is in flight at a time (NSTART = 1): whoever builds a request
holds the buffers (`await take()` ... `give()`) from `begin` until it has read the response, so the agent loop and a task's module
download take turns with it. `busy` tells the agent loop, without awaiting, that nothing is in
flight, so it may read the socket itself (`poll`).

OSCORE (RFC 8613, `oscore.py`): once the agent has a security context (`_c[_C_KEYS]`, set
after its first registration), `begin` writes a protected request: outer code POST (FETCH for
an Observe registration), outer Observe, the OSCORE option (flags | Partial IV | kid, the
Partial IV a fresh sender sequence number from the agent's `_c[_C_SEQ]()`), then the
plaintext: the real code, the inner options (Observe, Uri-Path, Block2: no Content-Format,
the resource implies CBOR) and the caller's payload; `request` encrypts it in place and
appends the tag. A response must be protected with the request's nonce (empty OSCORE option)
or the master's own Partial IV; it is verified before a byte of it is written, then decrypted
into TX, so `request` hands back the inner code and the plaintext payload's place in TX. A
response without the OSCORE option comes back with its code | 0x100 (only an unprotected 4.01
or NOT_LEADER means anything to the agent); one that fails verification is dropped as if never
received.

Notifications of the observation with token `_c[_C_OBS_TOK]` can arrive at any time: while a request
waits for its response, or while nothing is in flight (`poll`). A CON one is ACKed; the latest
is kept (the datagram) and `poll` verifies it (the master's Partial IV, higher than any before;
the AAD of the FETCH that registered the observation) and decrypts it into TX: `pushed` is then
its payload, a view of TX for the agent to decode at once.

Datagrams are read from any source: the token and message id select a response, and OSCORE (the
MAC on a first registration's reply) decides whether to believe it. Anything unparsable is
dropped.
"""

import asyncio
import select
from micropython import const
from time import ticks_ms, ticks_diff

import oscore

try:
    from random import getrandbits
except ImportError:  # a port without random: ticks are good enough for spreading timers
    def getrandbits(n):
        return ticks_ms() & ((1 << n) - 1)

_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_OPT_OBSERVE = const(6)
_OPT_OSCORE = const(9)
_OPT_URI_PATH = const(11)
_OPT_CONTENT_FORMAT = const(12)
_OPT_BLOCK2 = const(23)
_CF_CBOR = const(60)
_POLL_MS = const(5)
_TX_SIZE = const(576)
_BLOCK_TRIES = const(8)  # exchanges per Block2 block before a download gives up
_RX_SIZE = const(640)

_GET = const(1)
_POST = const(2)
_FETCH = const(5)
_PLAIN = const(0x100)  # or-ed into the code of a response without the OSCORE option
_CONTENT = const(0x45)
_UNAVAILABLE = const(0xA3)  # 5.03

TX = memoryview(bytearray(_TX_SIZE))
RX = b""  # the last datagram read, while its reader holds the buffers
busy = False  # someone holds TX/RX (see take/give)
pushed = None  # the payload of the latest notification, until the agent takes it
# The module's private state, in one list indexed by the _C_* consts rather than a dozen
# globals (each global name is a qstr and a module dict slot on the heap; a const is folded).
# Turns at the buffer, first come first served, so a module download and the agent loop
# alternate: take() draws a ticket and waits until the one served reaches it. (asyncio.Lock
# would do, but importing asyncio's lock module and one lock cost ~1 KB of heap.)
_C_TICKET = const(0)
_C_SERVING = const(1)
_C_GONE = const(2)  # tickets of takers cancelled before their turn: skipped
_C_SOCK = const(3)
_C_POLL = const(4)  # select.poll on the socket: recv only when a datagram waits
_C_ADDR = const(5)
_C_MID = const(6)
_C_TOK = const(7)
_C_ACK_MS = const(8)
_C_RETRIES = const(9)
_C_SENT = const(10)  # datagrams sent, received, dropped as malformed or unmatched
_C_RECEIVED = const(11)
_C_DROPPED = const(12)
_C_KEYS = const(13)  # the OSCORE security context (oscore.setup), b"": requests go unprotected
_C_SEQ = const(14)  # the agent's function that returns the next sender sequence number
_C_PIV = const(15)  # the Partial IV (sender sequence number) of the request in TX
_C_PLAIN = const(16)  # where the plaintext of the request in TX begins, 0: not protected
_C_OBS = const(17)  # the request in TX registers the observation (FETCH c, Observe 0)
_C_OBS_PIV = const(18)  # the Partial IV of the request that registered the observation
_C_NOTE_PIV = const(19)  # the master's highest Partial IV accepted (notifications, answers)
_C_OPT = const(20)  # where the last parsed options' OSCORE option value lies, -1: none
_C_OPT_LEN = const(21)
_C_OBS_TOK = const(22)  # the token of our observation, -1 for none
_C_OBSERVED = const(23)  # the last parsed datagram carried an Observe option
_c = [0, 0, [], None, None, None, getrandbits(16), getrandbits(16), 1000, 2, 0, 0, 0, b"", None,
      0, 0, False, 0, -1, -1, 0, -1, False]


def setup(sock, dest, timeout, count):
    p = select.poll()
    p.register(sock, select.POLLIN)
    _c[_C_SOCK:_C_MID] = [sock, p, dest]
    _c[_C_ACK_MS:_C_SENT] = [timeout, count]


async def take():
    """Wait for the buffer and hold it; `give()` hands it back."""
    global busy
    t = _c[_C_TICKET]
    _c[_C_TICKET] = (t + 1) & 0xFFFF
    try:
        while t != _c[_C_SERVING]:
            await asyncio.sleep_ms(_POLL_MS)
    except BaseException:  # cancelled (a task killed while it waits): give up the turn
        if t == _c[_C_SERVING]:
            _turn()
        else:
            _c[_C_GONE].append(t)
        raise
    busy = True


def give():
    global busy, RX
    busy = False
    RX = b""  # nothing reads it any more: let the datagram go
    _turn()


def _turn():
    while True:
        _c[_C_SERVING] = (_c[_C_SERVING] + 1) & 0xFFFF
        if _c[_C_SERVING] not in _c[_C_GONE]:
            return
        _c[_C_GONE].remove(_c[_C_SERVING])


def _opt(pos, start, n, val):
    # One option after option number `start`; val is bytes, str or a non-negative int (in
    # the fewest bytes: none for 0).
    if type(val) is int:
        val = val.to_bytes(0 if val == 0 else 1 if val < 0x100 else 2 if val < 0x10000 else 3,
                           "big")
    elif type(val) is str:
        val = val.encode()
    ln = len(val)
    d = n - start
    hd = d if d < 13 else 13
    hn = ln if ln < 13 else 13
    TX[pos] = (hd << 4) | hn
    pos += 1
    if hd == 13:
        TX[pos] = d - 13
        pos += 1
    if hn == 13:
        TX[pos] = ln - 13
        pos += 1
    TX[pos:pos + ln] = val
    return pos + ln


def begin(code, path, name=None, cbor=False, block2=-1, observe=-1):
    """Write a CON request's header and options into TX; returns the index after them. A
    caller with a payload writes 0xFF at that index and the payload after it. With a security
    context, the request is protected (the options from Uri-Path on, and the payload, are the
    plaintext that `request` encrypts)."""
    _c[_C_MID] = (_c[_C_MID] + 1) & 0xFFFF
    # One token byte (the wire budget's; with one request in flight and the observation
    # re-registered every heartbeat, 256 values never meet a live one again).
    _c[_C_TOK] = (_c[_C_TOK] + 1) & 0xFF
    TX[0] = 0x41  # version 1, CON, token length 1
    TX[1] = code
    TX[2] = _c[_C_MID] >> 8
    TX[3] = _c[_C_MID] & 0xFF
    TX[4] = _c[_C_TOK]
    i = 5
    prev = 0
    key = _c[_C_KEYS]
    _c[_C_PLAIN] = 0
    _c[_C_OBS] = observe >= 0
    if observe >= 0:
        i = _opt(i, prev, _OPT_OBSERVE, observe)
        prev = _OPT_OBSERVE
    if key:
        # RFC 8613 4.2: outer code POST, FETCH for an Observe registration; the outer Observe
        # above; the OSCORE option (flags: k bit | len(PIV); the Partial IV; kid); no other outer
        # option. The plaintext: the real code, then the inner options (Observe again).
        v = _c[_C_SEQ]()
        _c[_C_PIV] = v
        v = oscore._b(v)
        TX[1] = _FETCH if observe >= 0 else _POST
        i = _opt(i, prev, _OPT_OSCORE, bytes((8 | len(v),)) + v + key[46:46 + key[45]])
        TX[i] = 0xFF
        TX[i + 1] = code
        i += 2
        _c[_C_PLAIN] = i - 1
        prev = 0
        if observe >= 0:
            i = _opt(i, prev, _OPT_OBSERVE, observe)
            prev = _OPT_OBSERVE
    i = _opt(i, prev, _OPT_URI_PATH, path)
    if name is not None:
        i = _opt(i, _OPT_URI_PATH, _OPT_URI_PATH, name)
    prev = _OPT_URI_PATH
    if cbor and not key:
        # (Only plain, i.e. a first registration: a protected request's resource implies a
        # CBOR AgentCall, so its inner Content-Format would be 2 bytes wasted every time.)
        i = _opt(i, prev, _OPT_CONTENT_FORMAT, _CF_CBOR)
        prev = _OPT_CONTENT_FORMAT
    if block2 >= 0:
        i = _opt(i, prev, _OPT_BLOCK2, block2)
    return i


def parse(n, buf=None):
    """(type, code, mid, token or -1, payload start, block2 or -1) of the datagram RX[:n];
    with `buf`, (payload start, block2 or -1) of the plaintext buf[:n] (a code byte, then
    options). Raises ValueError when it is not a well-formed CoAP message."""
    if buf is None:
        _c[_C_OBSERVED] = False
        buf = RX
        if n < 4 or buf[0] >> 6 != 1:
            raise ValueError
        tkl = buf[0] & 15
        if tkl > 8 or 4 + tkl > n:
            raise ValueError
        i = 4 + tkl
    else:
        tkl = -1
        i = 1
    num = 0
    blk = -1
    _c[_C_OPT] = -1
    while i < n and buf[i] != 0xFF:
        b = buf[i]
        i += 1
        for k in range(4, -1, -4):  # the delta nibble, then the length nibble (one code for both)
            d = b >> k & 15
            if d == 13:
                d = 13 + buf[i]
                i += 1
            elif d == 14:
                d = 269 + (buf[i] << 8 | buf[i + 1])
                i += 2
            elif d == 15:
                raise ValueError
            if k:
                num += d
        ln = d
        if i + ln > n:
            raise ValueError
        if num == _OPT_OBSERVE:
            _c[_C_OBSERVED] = True
        elif num == _OPT_OSCORE:
            _c[_C_OPT] = i
            _c[_C_OPT_LEN] = ln
        elif num == _OPT_BLOCK2:
            blk = int.from_bytes(buf[i:i + ln], "big")
        i += ln
    if i < n:
        i += 1  # the payload marker
        if i == n:
            raise ValueError  # a marker with no payload is a format error
    if tkl < 0:
        return i, blk
    return buf[0] >> 4 & 3, buf[1], buf[2] << 8 | buf[3], buf[4] if tkl == 1 else -1, i, blk


def _open(value, code, start, end, mode=False):
    # The response in RX[start:end] (code: its outer code) to a request with Partial IV value
    # (mode: a notification of the observation that request registered), as
    # (code, payload start, payload end, block2 or -1) in TX: verified and decrypted when it
    # carries the OSCORE option; else (code | _PLAIN) and its payload copied. None: drop it (a
    # wrong tag, a malformed option, a notification not newer than the last one, too big).
    o = _c[_C_OPT]
    if o < 0:
        if end - start > _TX_SIZE:
            return None
        TX[:end - start] = memoryview(RX)[start:end]
        return code | _PLAIN, 0, end - start, -1
    v = -1
    if _c[_C_OPT_LEN]:
        # flags | Partial IV: the master's own nonce (an Observe notification, or an answer
        # whose freshness it could not check). No kid, no kid context in a response.
        n = RX[o] & 7
        if RX[o] & 0xF8 or not 0 < n < 6 or _c[_C_OPT_LEN] != n + 1:
            return None
        v = int.from_bytes(RX[o + 1:o + 1 + n], "big")
    if (mode or v >= 0) and v <= _c[_C_NOTE_PIV]:
        # A notification must carry the master's Partial IV, and any answer with one must
        # carry a newer one than the last: the master's counter never repeats (it is one for
        # all agents, kept bound-ahead in its store), so an older one is a replay.
        return None
    n = oscore.ccm(_c[_C_KEYS], 1, value, v, RX, start, end, TX, 0)
    if n <= 0:
        return None
    if v >= 0:
        _c[_C_NOTE_PIV] = v
    try:
        start, b = parse(n, TX)
    except (ValueError, IndexError):
        return None
    return TX[0], start, n, b


def _recv(token):
    global RX, pushed
    # The next datagram that is not a notification of our observation (unless it answers
    # the request with `token`: an argument's name is a qstr, and "token" is one already),
    # parsed as (type, code, mid, token, payload start, block2), its bytes in RX; None when
    # none waits. A CON one is ACKed (an empty ACK built when sent: not kept in TX, where
    # a request may still be retransmitted, nor in a buffer of its own, 64 B of heap for
    # good). A notification is kept in `pushed` (the datagram itself, recv's bytes, not a
    # copy: RX moves on, it stays) for poll() to verify and decrypt when TX is free; an error
    # one ends the observation (RFC 7641 3.2). Malformed ones are dropped.
    # Exactly one datagram per recv: MicroPython sockets have no recv_into, and readinto reads
    # on until its buffer is full, so two datagrams queued together (a reply and a
    # notification) would come out glued. recv is asked only when poll says one waits (on an
    # empty socket it raises, and the unix port leaks its buffer then). When a task has eaten
    # the heap, recv cannot allocate and the datagram stays queued until it can (the task
    # fails and its memory comes back). RX is dropped by give() or the end of poll().
    while True:
        for _ in _c[_C_POLL].ipoll(0):
            break
        else:
            return None
        try:
            RX = _c[_C_SOCK].recv(_RX_SIZE + 1)
        except (OSError, MemoryError):
            return None
        _c[_C_RECEIVED] += 1
        try:
            if not 0 < len(RX) <= _RX_SIZE:  # empty, or longer than any answer we can take
                raise ValueError
            r = parse(len(RX))
        except (ValueError, IndexError):
            _c[_C_DROPPED] += 1
            continue
        if r[0] == _CON:
            _c[_C_SOCK].sendto(bytes((0x60, 0, r[2] >> 8, r[2] & 0xFF)), _c[_C_ADDR])
        if r[3] == token or r[3] != _c[_C_OBS_TOK] or r[3] < 0 or r[0] > _NON:
            return r
        if r[1] >> 5 != 2:
            _c[_C_OBS_TOK] = -1
        elif r[4] < len(RX):
            pushed = RX


def poll():
    """Read what arrived while no request was in flight (the caller holds the buffer): ACK
    CON messages, keep notifications, drop the rest. Then the latest notification is verified
    and decrypted: `pushed` is its payload (a view of TX, valid until TX is written again) or
    None."""
    global RX, pushed
    while _recv(-1) is not None:
        _c[_C_DROPPED] += 1
    RX = pushed
    pushed = None
    if type(RX) is bytes:
        try:
            r = _open(_c[_C_OBS_PIV], 0, parse(len(RX))[4], len(RX), True)
            if r is not None and r[0] >> 5 == 2:
                pushed = memoryview(TX)[r[1]:r[2]]
        except (ValueError, IndexError):
            pass
    RX = b""  # read and handled: let the datagram go


async def request(n):
    """Send the CON request TX[:n] (protected first when `begin` made it so); return (code,
    payload start, payload end, block2) of its response, the payload in TX (decrypted, or
    copied from an unprotected answer, whose code then has _PLAIN set), or None when the peer
    did not answer within the retransmission budget. The caller holds the buffer."""
    if True:
        mid = TX[2] << 8 | TX[3]
        tok = TX[4]
        p = _c[_C_PLAIN]
        if p:
            n = oscore.ccm(_c[_C_KEYS], 0, _c[_C_PIV], -1, TX, p, n, TX, p)
        timeout = _c[_C_ACK_MS] + getrandbits(8) * _c[_C_ACK_MS] // 512  # ACK_TIMEOUT * [1, 1.5)
        tries = 0
        acked = False
        _c[_C_SOCK].sendto(TX[:n], _c[_C_ADDR])
        _c[_C_SENT] += 1
        t0 = ticks_ms()
        while True:
            r = _recv(tok)
            if r is None:
                if ticks_diff(ticks_ms(), t0) >= timeout:
                    if acked or tries >= _c[_C_RETRIES]:
                        return None
                    tries += 1
                    timeout *= 2
                    t0 = ticks_ms()
                    _c[_C_SOCK].sendto(TX[:n], _c[_C_ADDR])
                    _c[_C_SENT] += 1
                await asyncio.sleep_ms(_POLL_MS)
                continue
            mtype, code, rmid, rtok, a, blk = r
            if mtype == _RST and rmid == mid:
                return None
            if code == 0:
                if mtype == _ACK and rmid == mid and not acked:
                    acked = True  # the response will follow separately
                    timeout = _c[_C_ACK_MS] * (1 << _c[_C_RETRIES])
                    t0 = ticks_ms()
                continue
            if rtok != tok or (mtype == _ACK and rmid != mid) or mtype == _RST:
                _c[_C_DROPPED] += 1
                continue
            if not p:
                _c[_C_OPT] = -1  # an unprotected request's answer is taken as it is
            r = _open(_c[_C_PIV], code, a, len(RX))
            if r is None:  # a wrong tag or option: not the answer (maybe forged); wait on
                _c[_C_DROPPED] += 1
                continue
            if _c[_C_OBS]:
                # the observation is now this request's
                _c[_C_OBS_TOK] = tok if _c[_C_OBSERVED] else -1
                _c[_C_OBS_PIV] = _c[_C_PIV]
            return r


async def get_blocks(path, name, n, cb):
    """GET a resource block by block, handing each block's payload (a memoryview) to `cb`.
    A block whose exchange gets no answer or a 5.03 is asked for again after a pause, up to
    _BLOCK_TRIES exchanges in a row (the download goes on from that block, never from the
    start): on a lossy link one exchange of a long module's many is likely to fail, and a
    gateway answers 5.03 until a retry of its uplink gets through, which on such a link can
    take half a minute (the pauses add up to 39 s). Returns the final response code, or 0 when
    the peer stayed silent that long or sent a block of the wrong size."""
    num = 0
    tries = 0
    while True:
        if tries:  # a pause before asking again: 1, 2, 4, then 8 s (a gateway's retry to come)
            await asyncio.sleep_ms(500 << min(tries, 4))
        await take()
        try:
            r = await request(begin(_GET, path, name, block2=num << 4 | n))
            # 5.03, plain or not, is a gateway's or master's "try again": as no answer
            if r is None or r[0] & 0xFF == _UNAVAILABLE:
                tries += 1
                if tries < _BLOCK_TRIES:
                    continue  # the same block again (the buffer is given back meanwhile)
                return 0 if r is None else r[0]
            tries = 0
            code, a, b, blk = r
            if code != _CONTENT:
                return code
            size = 16 << (blk & 7)
            if blk >= 0 and (b - a > size or (blk & 8 and b - a != size)):
                return 0  # a block of the wrong size: asking again would get it again
            cb(memoryview(TX)[a:b])
        finally:
            give()
        if blk < 0 or not blk & 8:
            return code
        n = blk & 7
        num = (blk >> 4) + 1
