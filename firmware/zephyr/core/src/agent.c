/*
 * The EdgeRM agent state machine (docs/protocol.md). Theory of operation:
 *
 * - One CoAP exchange at a time (NSTART = 1): a CON request, retransmitted with RFC 7252
 *   back-off until an ACK; the response comes piggybacked or separately. `pump` starts the next
 *   exchange when none is in flight, by priority: (re-)registration, the oldest unacknowledged
 *   update, the next block of a module download, a heartbeat (when due, or at once when
 *   command_ack moved so the master stops re-sending applied commands).
 * - A first registration has no agent_id: it carries a fresh seq and random nonce and is
 *   signed with token_key = SHA-256(token); its reply must echo the seq, carry the master's
 *   nonce and be signed with the secret derived from both (edgerm_auth_secret), which the
 *   agent then keeps. The token and the secret never cross the link.
 * - Every later request (re-registration, heartbeat, update, module block) is OSCORE (RFC 8613,
 *   oscore.c): the secret is the master secret, agent_id the kid, the seq the Partial IV; the
 *   AgentCall inside has no agent_id, seq or mac, the AgentReply no seq or mac. An answer that
 *   does not verify against this request (or a success answer without OSCORE) is dropped
 *   (counted) and the call retried after a back-off. Plain errors (4.01 from a master that does
 *   not know us or refused the Partial IV, 4.02, NOT_LEADER) need no protection: they can only
 *   make us register again or move to another configured master.
 * - Commands apply in id order, exactly once (command_ack, persisted). Launch and Kill are
 *   idempotent by task number as well.
 * - Status updates and publishes share one queue and one update_id sequence; each is re-sent
 *   until update_ack covers it.
 * - A failed exchange backs off 1 s, 2 s, ... up to CONFIG_EDGERM_RETRY_MAX_MS: the agent never
 *   stops trying.
 *
 * Rule: everything that changes `state` lives in `set_state` and the table above it.
 */
#include <string.h>

#include "edgerm/agent.h"
#include "edgerm/abi.h"
#include "edgerm/coap.h"

#define X_IDLE 0
#define X_WAIT_ACK 1      /* CON sent, retransmitting */
#define X_WAIT_RESPONSE 2 /* empty ACK received, waiting for the separate response */

#define K_REGISTER 1
#define K_HEARTBEAT 2
#define K_UPDATE 3 /* status or publish */
#define K_FETCH 4

#define MOD_EMPTY 0
#define MOD_FETCHING 1
#define MOD_READY 2
#define NO_SLOT 0xff
#define FETCH_MAX_FAILURES 3 /* exchanges in a row that brought no block */

#define Q_HDR 12 /* kind, state, reason, pad, task u32, exit_code i32 ... then u16 len */
#define Q_ENTRY_HDR (Q_HDR + 2)
#define Q_STATUS 6  /* entry kinds: the AgentCall field they are sent as */
#define Q_PUBLISH 7
#define Q(a) ((a)->q_rec + EDGERM_QUEUE_REC_HDR_SIZE)
#define Q_CAP ((size_t)CONFIG_EDGERM_UPDATE_QUEUE_SIZE)

#if CONFIG_EDGERM_PUBLISH_MAX_SIZE + Q_ENTRY_HDR + CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE >     \
	CONFIG_EDGERM_UPDATE_QUEUE_SIZE
#error "the update queue cannot hold one largest publish besides the status reserve"
#endif
#if CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE + Q_ENTRY_HDR > CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE
#error "the status reserve cannot hold one status update"
#endif

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static uint32_t rnd(edgerm_agent_t *a)
{
	/* xorshift32: enough for message ids and jitter; seeded by the shell. */
	uint32_t x = a->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	a->rng = x;
	return x;
}

static edgerm_slice_t cstr(const char *s)
{
	edgerm_slice_t v = {(const uint8_t *)(s ? s : ""), s ? strlen(s) : 0};

	return v;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void save(edgerm_agent_t *a)
{
	(void)edgerm_port_persist(a->cfg.port, &a->persist);
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle table: which state may follow which. */

static const uint8_t allowed[3] = {
	/* REGISTERING   -> */ 1u << EDGERM_AGENT_ACTIVE,
	/* REREGISTERING -> */ 1u << EDGERM_AGENT_ACTIVE | 1u << EDGERM_AGENT_REGISTERING,
	/* ACTIVE        -> */ 1u << EDGERM_AGENT_REREGISTERING | 1u << EDGERM_AGENT_REGISTERING,
};

static void set_state(edgerm_agent_t *a, uint8_t to)
{
	if (to == a->state || !(allowed[a->state] & (1u << to))) {
		return;
	}
	if (to == EDGERM_AGENT_REGISTERING) {
		/* The master does not know us: a new identity, nothing acknowledged. */
		a->persist.agent_id = 0;
		memset(a->persist.secret, 0, sizeof(a->persist.secret));
		a->persist.command_ack = 0;
		save(a);
	}
	a->state = to;
}

/* ------------------------------------------------------------------------------------------ */
/* Update queue: entries [hdr][u16 len][bytes], oldest first. */

static size_t q_entry_size(const uint8_t *e)
{
	uint16_t n;

	memcpy(&n, e + Q_HDR, 2);
	return Q_ENTRY_HDR + n;
}

static int q_push(edgerm_agent_t *a, uint8_t kind, uint32_t task, uint8_t state, uint8_t reason,
		  int32_t exit_code, const uint8_t *data, size_t len, size_t reserve)
{
	size_t need = Q_ENTRY_HDR + len;

	if (need + reserve > Q_CAP - a->q_len) {
		return -1;
	}
	uint8_t *e = Q(a) + a->q_len;
	uint16_t n = (uint16_t)len;

	e[0] = kind, e[1] = state, e[2] = reason, e[3] = 0;
	put_u32(e + 4, task);
	put_u32(e + 8, (uint32_t)exit_code);
	memcpy(e + Q_HDR, &n, 2);
	if (len) {
		memcpy(e + Q_ENTRY_HDR, data, len);
	}
	a->q_len = (uint16_t)(a->q_len + need);
	a->q_count++;
	return 0;
}

static void q_drop_first(edgerm_agent_t *a, size_t n)
{
	size_t off = 0;

	for (size_t i = 0; i < n && a->q_count > 0; i++) {
		off += q_entry_size(Q(a) + off);
		a->q_count--;
	}
	memmove(Q(a), Q(a) + off, a->q_len - off);
	a->q_len = (uint16_t)(a->q_len - off);
}

/* Where the last `keep` bytes of msg start, moved forward to a UTF-8 character boundary. */
static size_t utf8_tail_start(const char *msg, size_t len, size_t keep)
{
	size_t start = len - keep;

	while (start < len && ((uint8_t)msg[start] & 0xc0) == 0x80) {
		start++;
	}
	return start;
}

/* Replace every byte that is not part of a valid UTF-8 sequence by '?': a task's log may hold
 * anything, and the master would refuse the whole update for one bad byte. */
static void utf8_sanitize(uint8_t *s, size_t n)
{
	while (n > 0) {
		size_t k = edgerm_utf8_char(s, n);

		if (k == 0) {
			*s = '?', k = 1;
		}
		s += k, n -= k;
	}
}

static bool terminal(uint8_t s)
{
	return s == EDGERM_FINISHED || s == EDGERM_FAILED || s == EDGERM_KILLED ||
	       s == EDGERM_ERROR;
}

/* The queue as one record for the port: whose it is (agent_id and the first bytes of the
 * secret, since another master may hand out the same agent_id), the first update id, the
 * entries. */
static void q_save(edgerm_agent_t *a)
{
	put_u32(a->q_rec, a->persist.agent_id);
	memcpy(a->q_rec + 4, a->persist.secret, 4);
	put_u32(a->q_rec + 8, a->q_first_id);
	(void)edgerm_port_queue_save(a->cfg.port, a->q_rec, EDGERM_QUEUE_REC_HDR_SIZE + a->q_len);
}

static void status(edgerm_agent_t *a, uint32_t task, uint8_t state, uint8_t reason,
		   int32_t exit_code, const char *msg, size_t msg_len)
{
	if (msg_len > CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE) {
		/* Keep the tail: the end of a log or trap text says the most. */
		size_t start = utf8_tail_start(msg, msg_len, CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE);

		msg += start;
		msg_len -= start;
	}
	/* Status updates may use the reserve that publishes leave free. If even that is gone the
	 * oldest publish would have to go; the reserve is sized so this does not happen. */
	if (q_push(a, Q_STATUS, task, state, reason, exit_code, (const uint8_t *)msg, msg_len, 0) <
	    0) {
		a->stats.updates_dropped++;
		return;
	}
	utf8_sanitize(Q(a) + a->q_len - msg_len, msg_len);
	/* A task's end must survive a reboot; its earlier updates and publishes ride along. */
	if (terminal(state)) {
		q_save(a);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Sending */

static void schedule_heartbeat(edgerm_agent_t *a, uint64_t now)
{
	a->hb_due = now + a->heartbeat_ms + (a->jitter_ms ? rnd(a) % (a->jitter_ms + 1) : 0);
}

/* seq never goes back, across reboots too (the master refuses a re-registration that does not
 * move it forward, so no recorded call becomes valid again): the stored reservation stays ahead
 * of every seq sent (RFC 8613 7.5.1). It moves half a reservation before the seq reaches it,
 * and a failed write is tried again with the next call, while the stored one still holds. */
static uint32_t next_seq(edgerm_agent_t *a)
{
	uint32_t s = a->seq++;
	uint32_t held = a->persist.seq_reserved;

	if (a->seq + CONFIG_EDGERM_SEQ_RESERVE_MAX / 2 >= held) {
		a->persist.seq_reserved = a->seq + CONFIG_EDGERM_SEQ_RESERVE_MAX;
		if (edgerm_port_persist(a->cfg.port, &a->persist) != 0) {
			a->persist.seq_reserved = held;
		}
	}
	return s;
}

static void transmit(edgerm_agent_t *a)
{
	/* A local send error is a lost datagram: the retransmission timer covers it. */
	(void)edgerm_port_send(a->cfg.port, a->tx, a->tx_len);
}

static void start_exchange(edgerm_agent_t *a, uint8_t kind, uint64_t now)
{
	uint32_t span = CONFIG_EDGERM_COAP_ACK_RANDOM_PERCENT - 100;

	a->x_kind = kind;
	a->x_state = X_WAIT_ACK;
	a->x_retries = 0;
	/* ACK_TIMEOUT x [1, ACK_RANDOM_FACTOR], in integer percent. */
	/* 32-bit arithmetic (no 64-bit division on the device): the Kconfig ranges keep the
	 * products below 2^32. */
	a->x_timeout_ms = (uint32_t)CONFIG_EDGERM_COAP_ACK_TIMEOUT_MS *
			  (100u + (span ? rnd(a) % (span + 1) : 0u)) / 100u;
	a->x_deadline = now + a->x_timeout_ms;
	transmit(a);
}

/* CoAP header for a new request; returns the builder positioned after the options. */
static void begin_request(edgerm_agent_t *a, edgerm_coap_builder_t *b, uint8_t code)
{
	a->x_mid++;
	a->x_token++;
	edgerm_coap_begin(b, a->tx, sizeof(a->tx), EDGERM_COAP_CON, code, a->x_mid, &a->x_token, 1);
}

struct hmac_ctx {
	edgerm_hmac_t h;
};

void edgerm_auth_token_key(const char *token, uint8_t key[EDGERM_SHA256_LEN])
{
	edgerm_sha256_t h;
	edgerm_slice_t t = cstr(token);

	edgerm_sha256_init(&h);
	edgerm_sha256_update(&h, t.ptr, t.len);
	edgerm_sha256_final(&h, key);
}

void edgerm_auth_secret(const uint8_t token_key[EDGERM_SHA256_LEN],
			const uint8_t agent_nonce[EDGERM_NONCE_LEN],
			const uint8_t master_nonce[EDGERM_NONCE_LEN], uint8_t secret[EDGERM_SECRET_LEN])
{
	static const char label[] = "edgerm secret"; /* 13 bytes, no NUL */
	edgerm_hmac_t h;
	uint8_t full[EDGERM_SHA256_LEN];

	edgerm_hmac_init(&h, token_key, EDGERM_SHA256_LEN);
	edgerm_hmac_update(&h, (const uint8_t *)label, sizeof(label) - 1);
	edgerm_hmac_update(&h, agent_nonce, EDGERM_NONCE_LEN);
	edgerm_hmac_update(&h, master_nonce, EDGERM_NONCE_LEN);
	edgerm_hmac_final(&h, full);
	memcpy(secret, full, EDGERM_SECRET_LEN);
}

static void hmac_sink(void *ctx, const uint8_t *d, size_t n)
{
	edgerm_hmac_update(&((struct hmac_ctx *)ctx)->h, d, n);
}

/* OSCORE requests: the plaintext (inner code, options, payload) is built at a->tx + OUTER_MAX,
 * sealed in place, then moved behind the outer header: CoAP header, 1-byte token, the OSCORE
 * option (one header byte: its value, flags | PIV (<= 4) | kid (<= 4), is below 13 bytes) and
 * the payload marker. Written by hand (with either CoAP builder the same bytes). */
#define OUTER_MAX 24
#define PT_CAP (sizeof(((edgerm_agent_t *)0)->tx) - OUTER_MAX - EDGERM_OSCORE_TAG_LEN)
#if CONFIG_EDGERM_TX_BUF_SIZE < OUTER_MAX + 80 + EDGERM_OSCORE_TAG_LEN
#error "CONFIG_EDGERM_TX_BUF_SIZE cannot hold a protected module request"
#endif

/* Seal the plaintext at a->tx + OUTER_MAX under the next seq and send it as a CON POST. */
static int send_protected(edgerm_agent_t *a, size_t pt_len, uint8_t kind, uint64_t now)
{
	uint8_t *o = a->tx;
	uint32_t seq = next_seq(a);
	int ol = edgerm_oscore_protect_request(&a->osc, seq, a->tx + OUTER_MAX, pt_len, o + 6);

	if (ol < 0) {
		return ol;
	}
	a->x_mid++;
	a->x_token++;
	o[0] = 0x40 | EDGERM_COAP_CON << 4 | 1;
	o[1] = EDGERM_COAP_POST;
	o[2] = (uint8_t)(a->x_mid >> 8);
	o[3] = (uint8_t)a->x_mid;
	o[4] = a->x_token;
	o[5] = (uint8_t)(EDGERM_COAP_OPT_OSCORE << 4 | ol);
	o[6 + ol] = 0xff;
	memmove(o + 7 + ol, a->tx + OUTER_MAX, pt_len + EDGERM_OSCORE_TAG_LEN);
	a->tx_len = (uint16_t)(7u + (size_t)ol + pt_len + EDGERM_OSCORE_TAG_LEN);
	a->x_seq = seq;
	a->x_osc = true;
	start_exchange(a, kind, now);
	return 0;
}

/* Send `call` to "a": protected with OSCORE once we have an identity, else (a first
 * registration) as a plain CON POST signed with token_key. */
static int send_call(edgerm_agent_t *a, edgerm_agent_call_t *call, uint8_t kind, uint64_t now)
{
	static const uint8_t path[] = "a";

	if (a->persist.agent_id != 0) {
		/* Inner POST, Uri-Path "a", payload marker: no Content-Format (the resource
		 * implies a CBOR AgentCall; 2 bytes less in every protected call). */
		static const uint8_t inner[] = {EDGERM_COAP_POST, 0xb1, 'a', 0xff};
		uint8_t *p = a->tx + OUTER_MAX;

		memcpy(p, inner, sizeof(inner));
		int n = edgerm_wire_encode_agent_call(call, p + sizeof(inner),
						      PT_CAP - sizeof(inner));

		return n < 0 ? n : send_protected(a, sizeof(inner) + (size_t)n, kind, now);
	}
	edgerm_coap_builder_t b;

	begin_request(a, &b, EDGERM_COAP_POST);
	edgerm_coap_option(&b, EDGERM_COAP_OPT_URI_PATH, path, 1);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_CONTENT_FORMAT, EDGERM_COAP_CF_CBOR);
	int hdr = edgerm_coap_end(&b);

	if (hdr < 0 || (size_t)hdr + 1 >= sizeof(a->tx)) {
		return -1;
	}
	a->tx[hdr] = 0xff;
	uint8_t *body = a->tx + hdr + 1;
	size_t cap = sizeof(a->tx) - (size_t)hdr - 1;

	edgerm_hmac_t h;
	/* token_key, then the mac: the mac slice points here until the second encode. */
	uint8_t full[EDGERM_SHA256_LEN];

	call->seq = next_seq(a);
	a->x_seq = call->seq;
	call->mac.ptr = full;
	call->mac.len = 0;
	int n = edgerm_wire_encode_agent_call(call, body, cap);

	if (n < 0) {
		return n;
	}
	edgerm_auth_token_key(a->cfg.token, full);
	edgerm_hmac_init(&h, full, EDGERM_SHA256_LEN);
	edgerm_hmac_update(&h, body, (size_t)n);
	edgerm_hmac_final(&h, full);
	call->mac.len = EDGERM_MAC_LEN;
	n = edgerm_wire_encode_agent_call(call, body, cap);

	if (n < 0) {
		return n;
	}
	a->tx_len = (uint16_t)(hdr + 1 + n);
	a->x_osc = false;
	start_exchange(a, kind, now);
	return 0;
}

static void exchange_failed(edgerm_agent_t *a, uint64_t now);

static void send_register(edgerm_agent_t *a, uint64_t now)
{
	edgerm_agent_call_t call;
	edgerm_register_t *r = &call.call.reg;
	edgerm_attribute_t *at;
	bool ok = true;

	memset(&call, 0, sizeof(call));
	call.which = 4;
	r->name = cstr(a->cfg.name);
	r->has_resources = true;
	r->resources.cpus = a->cfg.cpus;
	r->resources.mem_mb = a->cfg.mem_mb;
	for (uint8_t i = 0; i < a->cfg.devices_count && i < EDGERM_MAX_REP; i++) {
		r->resources.devices[r->resources.devices_count++] = a->cfg.devices[i];
	}
	for (uint8_t i = 0; i < 2; i++) {
		/* The text attributes "os" and "arch", when configured. */
		const char *v = i ? a->cfg.arch : a->cfg.os;

		if (v && r->attributes_count < EDGERM_MAX_REP) {
			at = &r->attributes[r->attributes_count++];
			at->name = cstr(i ? "arch" : "os");
			at->which = 2;
			at->v.text = cstr(v);
		}
	}
	r->executors[r->executors_count++] = EDGERM_EXECUTOR_WASM;
	r->protocol_version = 1;
	r->max_payload = CONFIG_EDGERM_MAX_PAYLOAD_SIZE;
	if (a->state == EDGERM_AGENT_REGISTERING) {
		/* A fresh nonce per attempt (retransmissions of one datagram keep it): the master
		 * refuses one it has seen. No randomness, no registration. */
		ok = edgerm_port_random(a->cfg.port, a->nonce, sizeof(a->nonce)) == 0;
		r->nonce.ptr = a->nonce;
		r->nonce.len = sizeof(a->nonce);
	} else {
		/* Re-registration: every task we still know, and where our updates continue. */
		for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
			if (a->tasks[i].task != 0 && r->tasks_count < sizeof(r->tasks) / sizeof(r->tasks[0])) {
				r->tasks[r->tasks_count].task = a->tasks[i].task;
				r->tasks[r->tasks_count].state = a->tasks[i].state;
				r->tasks_count++;
			}
		}
		r->update_next = a->q_first_id;
	}
	if (ok && send_call(a, &call, K_REGISTER, now) == 0) {
		return;
	}
	/* Nothing was sent: back off as after a lost exchange. */
	a->x_kind = K_REGISTER;
	exchange_failed(a, now);
}

static void send_update(edgerm_agent_t *a, uint64_t now)
{
	edgerm_agent_call_t call;
	const uint8_t *e = Q(a);
	uint16_t n;

	memcpy(&n, e + Q_HDR, 2);
	memset(&call, 0, sizeof(call));
	if (e[0] == Q_STATUS) {
		edgerm_status_t *s = &call.call.status;

		call.which = 6;
		s->update_id = a->q_first_id;
		s->task = get_u32(e + 4);
		s->state = e[1];
		s->reason = e[2];
		s->exit_code = (int32_t)get_u32(e + 8);
		s->message.ptr = e + Q_ENTRY_HDR;
		s->message.len = n;
	} else {
		edgerm_publish_t *p = &call.call.publish;

		call.which = 7;
		p->update_id = a->q_first_id;
		p->task = get_u32(e + 4);
		p->data.ptr = e + Q_ENTRY_HDR;
		p->data.len = n;
	}
	if (send_call(a, &call, K_UPDATE, now) < 0) {
		/* Cannot be encoded into our datagram: it never will be. Drop it; the next update
		 * takes its id, so the master sees no gap. */
		a->stats.updates_dropped++;
		q_drop_first(a, 1);
	}
}

static void send_heartbeat(edgerm_agent_t *a, uint64_t now)
{
	edgerm_agent_call_t call;

	memset(&call, 0, sizeof(call));
	call.which = 5;
	call.call.heartbeat.command_ack =
		a->persist.command_ack != a->hb_command_ack ? a->persist.command_ack : 0;
	a->x_hb_ack = a->persist.command_ack;
	(void)send_call(a, &call, K_HEARTBEAT, now);
}

static const char hexdig[] = "0123456789abcdef";

/* GET m/<hash> with Block2, protected: the master sees which module only inside OSCORE. */
static void send_fetch(edgerm_agent_t *a, uint64_t now)
{
	edgerm_module_slot_t *m = &a->modules[a->fetch_slot];
	/* Inner GET, Uri-Path "m", Uri-Path of 64 bytes (13 + 51): the hash in hex. */
	static const uint8_t inner[] = {EDGERM_COAP_GET, 0xb1, 'm', 0x0d, 64 - 13};
	uint8_t *pt = a->tx + OUTER_MAX, *p = pt + sizeof(inner);

	memcpy(pt, inner, sizeof(inner));
	for (int i = 0; i < 32; i++) {
		*p++ = (uint8_t)hexdig[m->sha256[i] >> 4];
		*p++ = (uint8_t)hexdig[m->sha256[i] & 15];
	}
	/* Block2 (23 = 11 + 12): NUM << 4 | SZX in its shortest form, empty for 0. */
	uint32_t b2 = (m->have >> (4 + a->fetch_szx)) << 4 | a->fetch_szx;
	size_t n = b2 ? edgerm_oscore_piv(b2, p + 1) : 0;

	*p = (uint8_t)(12 << 4 | n);
	p += 1 + n;
	if (send_protected(a, (size_t)(p - pt), K_FETCH, now) < 0) {
		/* Nothing was sent: back off as after a lost exchange. */
		a->x_kind = K_FETCH;
		exchange_failed(a, now);
	}
}

static void pump(edgerm_agent_t *a, uint64_t now)
{
	if (a->x_state != X_IDLE || now < a->retry_at) {
		return;
	}
	if (a->state != EDGERM_AGENT_ACTIVE) {
		send_register(a, now);
	} else if (a->q_count > 0) {
		send_update(a, now);
	} else if (a->fetch_slot >= 0) {
		send_fetch(a, now);
	} else if (now >= a->hb_due || a->persist.command_ack != a->hb_command_ack) {
		send_heartbeat(a, now);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Tasks and modules */

static edgerm_task_slot_t *task_find(edgerm_agent_t *a, uint32_t task)
{
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		if (a->tasks[i].task == task && task != 0) {
			return &a->tasks[i];
		}
	}
	return NULL;
}

/* A free slot, or the one of a task that ended longest ago (its status is queued already). */
static edgerm_task_slot_t *task_alloc(edgerm_agent_t *a, uint32_t task)
{
	edgerm_task_slot_t *t = NULL;

	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS && !t; i++) {
		if (a->tasks[i].task == 0) {
			t = &a->tasks[i];
		}
	}
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS && !t; i++) {
		if (terminal(a->tasks[i].state)) {
			t = &a->tasks[i];
		}
	}
	if (t) {
		memset(t, 0, sizeof(*t));
		t->task = task;
		t->module_slot = NO_SLOT;
	}
	return t;
}

static void task_end(edgerm_agent_t *a, edgerm_task_slot_t *t, uint8_t state, uint8_t reason,
		     int32_t exit_code, const char *msg, size_t msg_len)
{
	if (!t->waiting && t->module_slot != NO_SLOT && a->modules[t->module_slot].refs > 0) {
		a->modules[t->module_slot].refs--;
	}
	t->module_slot = NO_SLOT;
	t->waiting = false;
	t->state = state;
	t->reason = reason;
	t->exit_code = exit_code;
	status(a, t->task, state, reason, exit_code, msg, msg_len);
}

static void task_run(edgerm_agent_t *a, edgerm_task_slot_t *t, int slot)
{
	edgerm_task_spec_t spec;
	edgerm_task_start_t start;
	char msg[CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE + 1];
	edgerm_module_slot_t *m = &a->modules[slot];

	msg[0] = 0;
	t->waiting = false;
	if (edgerm_wire_decode_task_spec(t->spec, t->spec_len, &spec) < 0) {
		task_end(a, t, EDGERM_ERROR, EDGERM_INVALID_TASK, 0, "bad spec", 8);
		return;
	}
	start.task = t->task;
	start.module = a->cfg.module_mem + (size_t)slot * a->cfg.module_slot_size;
	start.module_len = m->size;
	start.spec = &spec;
	int r = edgerm_port_task_start(a->cfg.port, &start, msg, sizeof(msg));

	msg[sizeof(msg) - 1] = 0;
	if (r == 0) {
		m->refs++;
		m->used = ++a->lru;
		t->module_slot = (uint8_t)slot;
		t->state = EDGERM_RUNNING;
		status(a, t->task, EDGERM_RUNNING, 0, 0, NULL, 0);
	} else {
		task_end(a, t, EDGERM_ERROR,
			 r == EDGERM_PORT_E_RESOURCES ? EDGERM_RESOURCES_UNAVAILABLE
			 : r == EDGERM_PORT_E_MEMORY  ? EDGERM_MEMORY_LIMIT
						      : EDGERM_LAUNCH_FAILED,
			 0, msg, strlen(msg));
	}
}

static int module_find(edgerm_agent_t *a, const uint8_t *sha, uint8_t state)
{
	for (int i = 0; i < a->cfg.module_slots; i++) {
		if (a->modules[i].state == state && memcmp(a->modules[i].sha256, sha, 32) == 0) {
			return i;
		}
	}
	return -1;
}

#define FETCH_BUSY (-1)    /* another module is downloading: wait for it */
#define FETCH_NO_ROOM (-2) /* every slot holds a module a running task uses, or too big */

/* Start downloading a module, or join the download under way. */
static int module_fetch(edgerm_agent_t *a, const uint8_t *sha, uint32_t size)
{
	int i = module_find(a, sha, MOD_FETCHING);

	if (i >= 0) {
		return i;
	}
	if (size == 0 || size > a->cfg.module_slot_size) {
		return FETCH_NO_ROOM;
	}
	if (a->fetch_slot >= 0) {
		return FETCH_BUSY; /* one download at a time */
	}
	int best = -1;

	for (int k = 0; k < a->cfg.module_slots; k++) {
		edgerm_module_slot_t *m = &a->modules[k];

		if (m->state == MOD_EMPTY) {
			best = k;
			break;
		}
		if (m->state == MOD_READY && m->refs == 0 &&
		    (best < 0 || m->used < a->modules[best].used)) {
			best = k;
		}
	}
	if (best < 0) {
		return FETCH_NO_ROOM;
	}
	edgerm_module_slot_t *m = &a->modules[best];

	memcpy(m->sha256, sha, 32);
	m->size = size;
	m->have = 0;
	m->state = MOD_FETCHING;
	m->refs = 0;
	a->fetch_slot = (int8_t)best;
	a->fetch_failures = 0;
	{
		/* Block size: 16 << SZX, the largest not above CONFIG_EDGERM_BLOCK_SIZE. */
		uint8_t szx = 0;

		while (szx < 6 && (16u << (szx + 1)) <= CONFIG_EDGERM_BLOCK_SIZE) {
			szx++;
		}
		a->fetch_szx = szx;
	}
	return best;
}

/* Give a waiting task its module: run it from the cache, join or start a download, or wait
 * (module_slot stays NO_SLOT) while another module downloads. */
static void module_for(edgerm_agent_t *a, edgerm_task_slot_t *t)
{
	edgerm_task_spec_t spec;

	if (edgerm_wire_decode_task_spec(t->spec, t->spec_len, &spec) < 0) {
		task_end(a, t, EDGERM_ERROR, EDGERM_INVALID_TASK, 0, "bad spec", 8);
		return;
	}
	const uint8_t *sha = spec.kind.wasm.sha256.ptr;
	int slot = module_find(a, sha, MOD_READY);

	if (slot >= 0) {
		task_run(a, t, slot);
		return;
	}
	slot = module_fetch(a, sha, spec.kind.wasm.size);
	t->waiting = true;
	if (slot >= 0) {
		t->module_slot = (uint8_t)slot;
	} else if (slot == FETCH_NO_ROOM) {
		task_end(a, t, EDGERM_ERROR, EDGERM_RESOURCES_UNAVAILABLE, 0, "module cache full",
			 17);
	}
}

static void fetch_next(edgerm_agent_t *a)
{
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		edgerm_task_slot_t *t = &a->tasks[i];

		if (t->task != 0 && t->waiting && t->module_slot == NO_SLOT) {
			module_for(a, t);
		}
	}
}

/* The download in fetch_slot ended: ok, or every waiting task fails with `reason`. */
static void fetch_done(edgerm_agent_t *a, bool ok, uint8_t reason)
{
	int slot = a->fetch_slot;
	edgerm_module_slot_t *m = &a->modules[slot];

	a->fetch_slot = -1;
	m->state = ok ? MOD_READY : MOD_EMPTY;
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		edgerm_task_slot_t *t = &a->tasks[i];

		if (t->task == 0 || !t->waiting || t->module_slot != slot) {
			continue;
		}
		t->module_slot = NO_SLOT;
		if (ok) {
			task_run(a, t, slot);
		} else {
			const char *why = reason == EDGERM_MODULE_HASH_MISMATCH ? "sha256 mismatch"
										: "module unavailable";
			task_end(a, t, EDGERM_ERROR, reason, 0, why, strlen(why));
		}
	}
	fetch_next(a);
}

static void apply_launch(edgerm_agent_t *a, const edgerm_command_t *c)
{
	edgerm_task_spec_t spec;
	edgerm_task_slot_t *t;
	const char *why = NULL;
	uint8_t reason = 0;

	if (c->task == 0 || task_find(a, c->task)) {
		return; /* idempotent: a launch of a task we know changes nothing */
	}
	t = task_alloc(a, c->task);
	if (!t) {
		status(a, c->task, EDGERM_ERROR, EDGERM_RESOURCES_UNAVAILABLE, 0, "no task slot", 12);
		return;
	}
	if (!c->has_spec || edgerm_wire_decode_task_spec(c->spec.ptr, c->spec.len, &spec) < 0) {
		why = "no spec", reason = EDGERM_INVALID_TASK;
	} else if (spec.which != 4) {
		why = "executor: WASM only", reason = EDGERM_UNSUPPORTED_EXECUTOR;
	} else if (spec.kind.wasm.sha256.len != EDGERM_SHA256_LEN) {
		why = "sha256 must be 32 bytes", reason = EDGERM_INVALID_TASK;
	} else if (spec.kind.wasm.size > a->cfg.module_slot_size || a->cfg.module_slots == 0) {
		why = "module too large", reason = EDGERM_RESOURCES_UNAVAILABLE;
	} else if (c->spec.len > sizeof(t->spec)) {
		why = "spec too large", reason = EDGERM_RESOURCES_UNAVAILABLE;
	}
	if (why) {
		task_end(a, t, EDGERM_ERROR, reason, 0, why, strlen(why));
		return;
	}
	memcpy(t->spec, c->spec.ptr, c->spec.len);
	t->spec_len = (uint16_t)c->spec.len;
	t->state = EDGERM_STARTING;
	status(a, t->task, EDGERM_STARTING, 0, 0, NULL, 0);

	module_for(a, t);
}

static void apply_kill(edgerm_agent_t *a, uint32_t task)
{
	edgerm_task_slot_t *t = task_find(a, task);

	if (!t) {
		t = task_alloc(a, task);
		if (t) {
			t->state = EDGERM_KILLED;
			t->reason = EDGERM_KILLED_BEFORE_LAUNCH;
		}
		status(a, task, EDGERM_KILLED, EDGERM_KILLED_BEFORE_LAUNCH, 0, NULL, 0);
		return;
	}
	if (terminal(t->state)) {
		status(a, task, t->state, t->reason, t->exit_code, NULL, 0);
		return;
	}
	if (t->state == EDGERM_RUNNING) {
		(void)edgerm_port_task_kill(a->cfg.port, task);
	}
	task_end(a, t, EDGERM_KILLED, EDGERM_KILL_REQUESTED, 0, NULL, 0);
}

static void apply(edgerm_agent_t *a, const edgerm_command_t *c)
{
	switch (c->which) {
	case 2:
		apply_launch(a, c);
		break;
	case 3:
		apply_kill(a, c->task);
		break;
	case 4:
		if (c->sha256.len == EDGERM_SHA256_LEN && module_find(a, c->sha256.ptr, MOD_READY) < 0) {
			(void)module_fetch(a, c->sha256.ptr, c->size);
		}
		break;
	case 5:
		set_state(a, EDGERM_AGENT_REREGISTERING);
		break;
	default:
		break; /* a command this agent does not know: acknowledged, ignored */
	}
	a->stats.commands_applied++;
}

/* Apply the reply's commands in id order, each exactly once. */
static void apply_commands(edgerm_agent_t *a, const edgerm_agent_reply_t *r)
{
	bool progress = true;

	while (progress) {
		progress = false;
		for (uint8_t i = 0; i < r->commands_count; i++) {
			edgerm_command_t c;

			if (edgerm_wire_decode_command(r->commands[i], &c) < 0 ||
			    c.id != a->persist.command_ack + 1) {
				continue;
			}
			apply(a, &c);
			a->persist.command_ack = c.id;
			progress = true;
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Receiving */

/* Another master (edgerm_port_switch_master): re-register there, same identity and tasks. */
static void switch_master(edgerm_agent_t *a, const uint8_t *leader, size_t len)
{
	if (edgerm_port_switch_master(a->cfg.port, leader, len) > 0) {
		set_state(a, EDGERM_AGENT_REREGISTERING);
	}
}

static void exchange_failed(edgerm_agent_t *a, uint64_t now)
{
	a->x_state = X_IDLE;
	a->stats.exchanges_failed++;
	a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : CONFIG_EDGERM_RETRY_MIN_MS;
	if (a->backoff_ms > CONFIG_EDGERM_RETRY_MAX_MS) {
		a->backoff_ms = CONFIG_EDGERM_RETRY_MAX_MS;
	}
	a->retry_at = now + a->backoff_ms;
	if (a->x_kind == K_FETCH && a->fetch_slot >= 0 && ++a->fetch_failures >= FETCH_MAX_FAILURES) {
		fetch_done(a, false, EDGERM_MODULE_UNAVAILABLE);
	}
}

static void exchange_ok(edgerm_agent_t *a, uint64_t now)
{
	a->x_state = X_IDLE;
	a->backoff_ms = 0;
	a->retry_at = 0;
	(void)now;
}

static bool mac_ok(const uint8_t *buf, size_t len, edgerm_slice_t mac, const uint8_t *key)
{
	struct hmac_ctx h;
	uint8_t full[EDGERM_SHA256_LEN];

	if (mac.len != EDGERM_MAC_LEN) {
		return false;
	}
	edgerm_hmac_init(&h.h, key, EDGERM_SECRET_LEN);
	if (edgerm_wire_unsigned_view(buf, len, 2, hmac_sink, &h) < 0) {
		return false;
	}
	edgerm_hmac_final(&h.h, full);
	return edgerm_ct_equal(full, mac.ptr, EDGERM_MAC_LEN);
}

/* The master's update_ack: drop what it holds. At registration it also sets our numbering. */
static void ack_updates(edgerm_agent_t *a, uint32_t ack, bool registration)
{
	if (ack >= a->q_first_id) {
		uint32_t n = ack - a->q_first_id + 1;

		q_drop_first(a, n > a->q_count ? a->q_count : n);
		a->q_first_id = ack + 1;
	} else if (registration) {
		a->q_first_id = ack + 1;
	}
}

/* The OSCORE context of our identity (docs/protocol.md, "OSCORE"): master secret = the secret,
 * no salt, no ID Context, sender id = agent_id in minimal big-endian bytes, recipient id empty.
 * A failure of the platform's cipher shows later as requests that cannot be sealed. */
static void oscore_setup(edgerm_agent_t *a)
{
	uint8_t kid[EDGERM_OSCORE_PIV_MAX];

	(void)edgerm_oscore_init(&a->osc, a->persist.secret, EDGERM_SECRET_LEN, NULL, 0, NULL, 0,
				 kid, edgerm_oscore_piv(a->persist.agent_id, kid), NULL, 0);
}

/* `secret`: the one derived for a first registration (a re-registration keeps ours). */
static void on_registered(edgerm_agent_t *a, const edgerm_agent_reply_t *r,
			  const uint8_t *secret, uint64_t now)
{
	const edgerm_registered_t *g = &r->registered;

	if (a->state == EDGERM_AGENT_REGISTERING) {
		a->persist.agent_id = g->agent_id;
		memcpy(a->persist.secret, secret, EDGERM_SECRET_LEN);
		a->persist.command_ack = 0;
		oscore_setup(a);
	}
	save(a);
	a->heartbeat_ms = g->heartbeat_ms ? g->heartbeat_ms : CONFIG_EDGERM_HEARTBEAT_DEFAULT_MS;
	a->jitter_ms = g->jitter_ms;
	/* The master knows nothing of our command_ack from a registration: say it once. */
	a->hb_command_ack = 0;
	ack_updates(a, g->update_ack > r->update_ack ? g->update_ack : r->update_ack, true);
	set_state(a, EDGERM_AGENT_ACTIVE);
	schedule_heartbeat(a, now);
}

/* A response to a call (register, heartbeat, update), or a plain error answer to any request.
 * `sealed`: it came inside OSCORE and verified against our request. */
static void on_call_response(edgerm_agent_t *a, const edgerm_coap_msg_t *m, bool sealed,
			     uint64_t now)
{
	edgerm_agent_reply_t r;
	uint8_t cls = m->code >> 5;
	bool registering = a->x_kind == K_REGISTER && a->state == EDGERM_AGENT_REGISTERING;

	if (m->payload_len == 0 ||
	    edgerm_wire_decode_agent_reply_untrusted(m->payload, m->payload_len, &r) < 0) {
		a->stats.replies_bad++;
		exchange_failed(a, now);
		return;
	}
	if (cls != 2) {
		/* Error answers need not be signed; they can only make us register again, or try
		 * another of the masters the port was configured with (a standby's NOT_LEADER). */
		exchange_failed(a, now);
		if (r.has_error && r.error.code == EDGERM_ERR_NOT_LEADER) {
			switch_master(a, r.error.leader.ptr, r.error.leader.len);
		} else if (m->code == EDGERM_COAP_CODE(4, 1)) {
			a->backoff_ms = 0;
			a->retry_at = 0;
			if (a->state == EDGERM_AGENT_ACTIVE) {
				set_state(a, EDGERM_AGENT_REREGISTERING);
			} else if (a->state == EDGERM_AGENT_REREGISTERING) {
				set_state(a, EDGERM_AGENT_REGISTERING);
			} else {
				/* Not signed with a token this master knows (or a nonce it has
				 * seen): wait long before the next attempt. */
				a->retry_at = now + CONFIG_EDGERM_RETRY_MAX_MS;
			}
		} else if (sealed && a->x_kind == K_UPDATE && a->q_count > 0 && cls == 4 &&
			   m->code != EDGERM_COAP_CODE(4, 29)) {
			/* The master refuses this update for good (4.00, 4.13... inside OSCORE; a
			 * plain error is about the protection, not the update): resending cannot
			 * help. Drop it; the next one takes its id. */
			a->stats.updates_dropped++;
			q_drop_first(a, 1);
		}
		return;
	}
	const uint8_t *key = a->persist.secret;
	uint8_t derived[EDGERM_SHA256_LEN];

	if (registering) {
		/* The secret both sides derive: only a master holding the token signs with it. */
		if (!r.has_registered || r.registered.nonce.len != EDGERM_NONCE_LEN) {
			a->stats.replies_bad++;
			exchange_failed(a, now);
			return;
		}
		edgerm_auth_token_key(a->cfg.token, derived);
		edgerm_auth_secret(derived, a->nonce, r.registered.nonce.ptr, derived);
		key = derived;
		if (r.seq != a->x_seq || !mac_ok(m->payload, m->payload_len, r.mac, key)) {
			a->stats.replies_bad_mac++;
			exchange_failed(a, now);
			return;
		}
	}
	/* Otherwise OSCORE verified it (edgerm_agent_on_datagram lets no unprotected success
	 * answer to a protected request through). */
	exchange_ok(a, now);
	if (a->x_kind == K_REGISTER) {
		if (!r.has_registered) {
			exchange_failed(a, now);
			return;
		}
		on_registered(a, &r, key, now);
	} else {
		if (a->x_kind == K_HEARTBEAT) {
			/* The master now holds the command_ack this heartbeat carried. */
			a->hb_command_ack = a->x_hb_ack;
		}
		ack_updates(a, r.update_ack, false);
		schedule_heartbeat(a, now);
	}
	uint32_t before = a->persist.command_ack;

	apply_commands(a, &r);
	if (a->persist.command_ack != before) {
		save(a);
	}
}

static void on_fetch_response(edgerm_agent_t *a, const edgerm_coap_msg_t *m, uint64_t now)
{
	if (a->fetch_slot < 0) {
		exchange_ok(a, now);
		return;
	}
	edgerm_module_slot_t *mod = &a->modules[a->fetch_slot];
	uint8_t *mem = a->cfg.module_mem + (size_t)a->fetch_slot * a->cfg.module_slot_size;

	if (m->code == EDGERM_COAP_CODE(4, 4)) {
		exchange_ok(a, now);
		fetch_done(a, false, EDGERM_MODULE_UNAVAILABLE);
		return;
	}
	uint32_t szx = m->block2 & 7, num = m->block2 >> 4;
	bool more = (m->block2 >> 3) & 1;
	uint32_t bsize = 16u << szx;

	if (m->code != EDGERM_COAP_CONTENT || szx == 7 ||
	    (m->has_block2 && (uint64_t)num * bsize != mod->have) ||
	    (!m->has_block2 && (mod->have != 0 || more)) ||
	    (m->has_block2 && (m->payload_len > bsize || (more && m->payload_len != bsize))) ||
	    m->payload_len > mod->size - mod->have) {
		a->stats.replies_bad++;
		exchange_failed(a, now);
		return;
	}
	exchange_ok(a, now);
	/* FETCH_MAX_FAILURES counts failures of one block in a row: on a lossy link every block
	 * of a long module may need a second exchange. */
	a->fetch_failures = 0;
	if (m->payload_len) {
		memcpy(mem + mod->have, m->payload, m->payload_len);
	}
	mod->have += (uint32_t)m->payload_len;
	if (m->has_block2 && szx < a->fetch_szx) {
		a->fetch_szx = (uint8_t)szx; /* the server may ask for smaller blocks */
	}
	if (m->has_block2 && more) {
		return; /* pump asks for the next block */
	}
	edgerm_sha256_t h;
	uint8_t digest[EDGERM_SHA256_LEN];

	edgerm_sha256_init(&h);
	edgerm_sha256_update(&h, mem, mod->have);
	edgerm_sha256_final(&h, digest);
	bool ok = mod->have == mod->size && memcmp(digest, mod->sha256, 32) == 0;

	fetch_done(a, ok, EDGERM_MODULE_HASH_MISMATCH);
}

int edgerm_agent_on_datagram(edgerm_agent_t *a, uint8_t *buf, size_t len, uint64_t now)
{
	edgerm_coap_msg_t m;
	uint8_t reply[4];

	if (edgerm_coap_parse_untrusted(buf, len, &m) < 0) {
		a->stats.datagrams_bad++;
		return -1;
	}
	bool ours = a->x_state != X_IDLE;
	bool mid_match = ours && m.mid == a->x_mid;
	bool token_match = ours && m.tkl == 1 && m.token[0] == a->x_token;

	if (m.type == EDGERM_COAP_RST) {
		if (mid_match && a->x_state == X_WAIT_ACK) {
			exchange_failed(a, now);
			pump(a, now);
		}
		return 0;
	}
	if (m.type == EDGERM_COAP_ACK && m.code == 0) {
		if (mid_match && a->x_state == X_WAIT_ACK) {
			a->x_state = X_WAIT_RESPONSE; /* the response follows separately */
			a->x_deadline = now + CONFIG_EDGERM_COAP_RESPONSE_TIMEOUT_MS;
		}
		return 0;
	}
	/* A request: the master never sends one on this link (a CON one gets an RST). */
	bool request = m.code < 0x40;
	bool piggy = m.type == EDGERM_COAP_ACK && mid_match && token_match;
	bool separate = m.type != EDGERM_COAP_ACK && token_match;

	if (m.type == EDGERM_COAP_CON) {
		/* Separate responses are CON: acknowledge, and again if our ACK was lost; RST
		 * anything else. */
		uint8_t type = EDGERM_COAP_RST;

		if (!request && (separate || m.mid == a->last_sep_mid)) {
			type = EDGERM_COAP_ACK;
			a->last_sep_mid = m.mid;
		}
		(void)edgerm_port_send(a->cfg.port, reply, edgerm_coap_empty(reply, type, m.mid));
	}
	if (request) {
		a->stats.datagrams_bad++;
		return -1;
	}
	if (!piggy && !separate) {
		return 0; /* late or duplicate response: already handled */
	}
	if (m.bad_critical) {
		a->stats.datagrams_bad++;
		exchange_failed(a, now);
		pump(a, now);
		return -1;
	}
	bool sealed = false;

	if (a->x_osc && m.has_oscore && a->persist.agent_id != 0) {
		/* Verify against our request and decrypt in place; then the inner message (real
		 * code, Content-Format, Block2, payload) stands for the whole answer. (An identity
		 * forgotten meanwhile takes its context with it: the answer is dropped below.) */
		uint8_t *ct = m.payload_len ? buf + (m.payload - buf) : buf;
		int n = edgerm_oscore_unprotect_response(&a->osc, a->x_seq, m.oscore, m.oscore_len,
							 ct, m.payload_len);

		memset(&m, 0, sizeof(m));
		if (n >= 1) {
			m.code = ct[0];
		}
		if (n < 1 || edgerm_coap_parse_options_untrusted(ct, (size_t)n, 1, &m) < 0 ||
		    m.has_oscore || m.bad_critical) {
			a->stats.replies_bad_mac++;
			exchange_failed(a, now);
			pump(a, now);
			return -1;
		}
		sealed = true;
	} else if (m.has_oscore || (a->x_osc && (m.code >> 5) == 2)) {
		/* OSCORE to a plain request, or a success answer to a protected one without it:
		 * not from the master. */
		a->stats.replies_bad_mac++;
		exchange_failed(a, now);
		pump(a, now);
		return -1;
	}
	if (a->x_kind == K_FETCH && sealed) {
		on_fetch_response(a, &m, now);
	} else {
		on_call_response(a, &m, sealed, now);
	}
	pump(a, now);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Timer and API */

uint64_t edgerm_agent_next_deadline_ms(const edgerm_agent_t *a)
{
	if (a->x_state != X_IDLE) {
		return a->x_deadline;
	}
	if (a->state != EDGERM_AGENT_ACTIVE || a->q_count > 0 || a->fetch_slot >= 0 ||
	    a->persist.command_ack != a->hb_command_ack) {
		return a->retry_at;
	}
	return a->hb_due > a->retry_at ? a->hb_due : a->retry_at;
}

void edgerm_agent_on_timer(edgerm_agent_t *a, uint64_t now)
{
	if (a->x_state == X_WAIT_ACK && now >= a->x_deadline) {
		if (a->x_retries < CONFIG_EDGERM_COAP_MAX_RETRANSMIT) {
			a->x_retries++;
			a->stats.retransmissions++;
			/* t * B / 100 without a 64-bit division: t = 100q + r. */
			a->x_timeout_ms = a->x_timeout_ms / 100u * CONFIG_EDGERM_COAP_BACKOFF_PERCENT +
					  a->x_timeout_ms % 100u * CONFIG_EDGERM_COAP_BACKOFF_PERCENT / 100u;
			a->x_deadline = now + a->x_timeout_ms;
			transmit(a);
		}
	}
	if (a->x_state != X_IDLE && now >= a->x_deadline) {
		/* No answer within the retransmission budget, or no separate response. */
		exchange_failed(a, now);
		switch_master(a, NULL, 0);
	}
	pump(a, now);
}

/* At start-up: the updates saved before a reboot, if they were numbered under our identity.
 * Every length is checked; a torn, foreign or malformed record is dropped whole. The tasks whose
 * end is among them come back as ended slots, so re-registration reports them with that state
 * (the master then waits for the update instead of failing them as AGENT_RESTARTED). */
static void q_restore(edgerm_agent_t *a)
{
	int got = edgerm_port_queue_load(a->cfg.port, a->q_rec, sizeof(a->q_rec));
	size_t len, off = 0;
	uint16_t count = 0;

	if (got < EDGERM_QUEUE_REC_HDR_SIZE || (size_t)got > sizeof(a->q_rec) ||
	    get_u32(a->q_rec) != a->persist.agent_id ||
	    memcmp(a->q_rec + 4, a->persist.secret, 4) != 0 || get_u32(a->q_rec + 8) == 0) {
		return;
	}
	len = (size_t)got - EDGERM_QUEUE_REC_HDR_SIZE;
	while (off < len) {
		const uint8_t *e = Q(a) + off;

		if (len - off < Q_ENTRY_HDR || (e[0] != Q_STATUS && e[0] != Q_PUBLISH) ||
		    q_entry_size(e) > len - off) {
			return;
		}
		off += q_entry_size(e);
		count++;
	}
	a->q_first_id = get_u32(a->q_rec + 8);
	a->q_len = (uint16_t)len;
	a->q_count = count;
	for (off = 0; off < len; off += q_entry_size(Q(a) + off)) {
		uint8_t *e = Q(a) + off;

		if (e[0] != Q_STATUS) {
			continue;
		}
		utf8_sanitize(e + Q_ENTRY_HDR, q_entry_size(e) - Q_ENTRY_HDR);
		if (terminal(e[1])) {
			uint32_t task = get_u32(e + 4);
			edgerm_task_slot_t *t = task_find(a, task);

			t = t ? t : task_alloc(a, task);
			if (t) {
				t->state = e[1];
				t->reason = e[2];
				t->exit_code = (int32_t)get_u32(e + 8);
			}
		}
	}
}

void edgerm_agent_init(edgerm_agent_t *a, const edgerm_agent_config_t *cfg,
		       const edgerm_persist_t *persisted, uint64_t now)
{
	memset(a, 0, sizeof(*a));
	a->cfg = *cfg;
	if (a->cfg.module_slots > CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS) {
		a->cfg.module_slots = CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS;
	}
	a->rng = cfg->rng_seed ? cfg->rng_seed : 0x9e3779b9u;
	a->x_mid = (uint16_t)rnd(a);
	a->x_token = (uint8_t)rnd(a);
	a->last_sep_mid = (uint16_t)(a->x_mid + 0x8000); /* matches nothing soon */
	a->fetch_slot = -1;
	a->heartbeat_ms = CONFIG_EDGERM_HEARTBEAT_DEFAULT_MS;
	a->q_first_id = 1;
	if (persisted) {
		a->persist = *persisted;
	}
	/* Every seq below seq_reserved may have been used before this boot; the first call moves
	 * the reservation on (next_seq) before it leaves. */
	a->seq = a->persist.seq_reserved ? a->persist.seq_reserved : 1;
	a->persist.seq_reserved = a->seq;
	if (a->persist.agent_id != 0) {
		q_restore(a);
		oscore_setup(a);
	}
	/* After a reboot an agent always re-registers first (docs/protocol.md). */
	a->state = a->persist.agent_id ? EDGERM_AGENT_REREGISTERING : EDGERM_AGENT_REGISTERING;
	a->hb_command_ack = a->persist.command_ack;
	a->retry_at = now;
	a->hb_due = now;
}

void edgerm_agent_task_exited(edgerm_agent_t *a, uint32_t task, uint8_t state, uint8_t reason,
			      int32_t exit_code, const char *msg, size_t msg_len, uint64_t now)
{
	edgerm_task_slot_t *t = task_find(a, task);

	if (!t || t->state != EDGERM_RUNNING || !terminal(state)) {
		return; /* killed meanwhile, or not ours: reported already */
	}
	task_end(a, t, state, reason, exit_code, msg, msg_len);
	pump(a, now);
}

int edgerm_agent_publish(edgerm_agent_t *a, uint32_t task, const uint8_t *data, size_t len,
			 uint64_t now)
{
	edgerm_task_slot_t *t = task_find(a, task);

	if (!t || t->state != EDGERM_RUNNING) {
		return EDGERM_ABI_E_NOTFOUND;
	}
	if (len > CONFIG_EDGERM_PUBLISH_MAX_SIZE) {
		return EDGERM_ABI_E_TOOBIG;
	}
	if (q_push(a, Q_PUBLISH, task, 0, 0, 0, data, len, CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE) <
	    0) {
		return EDGERM_ABI_E_AGAIN;
	}
	pump(a, now);
	return EDGERM_ABI_OK;
}

void edgerm_agent_reset_identity(edgerm_agent_t *a, uint64_t now)
{
	set_state(a, EDGERM_AGENT_REGISTERING);
	a->retry_at = now;
}

uint8_t edgerm_agent_task_state(const edgerm_agent_t *a, uint32_t task)
{
	/* task_find only reads the agent. */
	const edgerm_task_slot_t *t = task_find((edgerm_agent_t *)a, task);

	return t ? t->state : 0;
}
