/*
 * The agent state machine driven by hand, with a hand-held clock and a fake port: a test
 * "master" decodes what the agent sent and answers with signed AgentReply datagrams built by
 * the same codec (the real master is exercised by tests/firmware/test_posix_agent.py). A first
 * registration is answered as the master does: its own nonce, signed with the secret derived
 * from the token and both nonces.
 */
#include <errno.h>

#include "edgerm/agent.h"
#include "edgerm/coap.h"
#include "edgerm/oscore.h"
#include "edgerm/sha256.h"
#include "edgerm/wire.h"
#include "unit.h"
#include "vectors.h"

/* ---- fake port ---------------------------------------------------------------------------- */

static uint8_t sent[16][CONFIG_EDGERM_TX_BUF_SIZE];
static size_t sent_len[16];
static int n_sent;
#define SENT(i) sent[(i) % 16]
#define SENT_LEN(i) sent_len[(i) % 16]
static edgerm_persist_t stored;
static int n_persist;
static int persist_result; /* what edgerm_port_persist returns; non-zero: nothing is stored */
static uint32_t started[8], killed[8];
static int n_started, n_killed;
static int start_result;
static int n_switches, switch_result;
static uint8_t switch_leader[64];
static size_t switch_len;
/* Randomness: a new nonce per call (or rand_fixed's bytes), or rand_result when non-zero. */
static int rand_result, n_random;
static const uint8_t *rand_fixed;

uint64_t edgerm_port_now_ms(void)
{
	return 0;
}

int edgerm_port_random(void *ctx, uint8_t *buf, size_t len)
{
	(void)ctx;
	n_random++;
	if (rand_result != 0) {
		return rand_result;
	}
	for (size_t i = 0; i < len; i++) {
		buf[i] = rand_fixed ? rand_fixed[i] : (uint8_t)(n_random * 31 + (int)i);
	}
	return 0;
}

int edgerm_port_send(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	/* A ring of the last 16 datagrams: SENT(i) is the i-th one sent. */
	if (len <= sizeof(sent[0])) {
		memcpy(sent[n_sent % 16], buf, len);
		sent_len[n_sent % 16] = len;
		n_sent++;
	}
	return 0;
}

int edgerm_port_persist(void *ctx, const edgerm_persist_t *p)
{
	(void)ctx;
	n_persist++;
	if (persist_result != 0) {
		return persist_result;
	}
	stored = *p;
	return 0;
}

/* The fake flash of the update queue: survives init_agent (a reboot), not register_fresh. */
static uint8_t queue_flash[EDGERM_QUEUE_REC_HDR_SIZE + CONFIG_EDGERM_UPDATE_QUEUE_SIZE];
static size_t queue_flash_len;
static int n_queue_saves;

int edgerm_port_queue_save(void *ctx, const uint8_t *rec, size_t len)
{
	(void)ctx;
	CHECK(len >= EDGERM_QUEUE_REC_HDR_SIZE && len <= sizeof(queue_flash));
	memcpy(queue_flash, rec, len);
	queue_flash_len = len;
	n_queue_saves++;
	return 0;
}

int edgerm_port_queue_load(void *ctx, uint8_t *rec, size_t cap)
{
	(void)ctx;
	if (queue_flash_len > cap) {
		return -1;
	}
	memcpy(rec, queue_flash, queue_flash_len);
	return (int)queue_flash_len;
}

int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *s, char *msg, size_t cap)
{
	(void)ctx;
	if (start_result != 0) {
		snprintf(msg, cap, "missing import edgerm.foo");
		return start_result;
	}
	/* The module handed over is the one the agent verified. */
	CHECK_EQ_INT(s->module_len, 300);
	CHECK(s->spec->which == 4);
	if (n_started < 8) {
		started[n_started++] = s->task;
	}
	return 0;
}

int edgerm_port_task_kill(void *ctx, uint32_t task)
{
	(void)ctx;
	if (n_killed < 8) {
		killed[n_killed++] = task;
	}
	return 0;
}

int edgerm_port_sensor_read(void *ctx, const char *name, size_t len, double *v)
{
	(void)ctx, (void)name, (void)len;
	if (v) {
		*v = 21.5;
	}
	return 0;
}

int edgerm_port_switch_master(void *ctx, const uint8_t *leader, size_t len)
{
	(void)ctx;
	n_switches++;
	switch_len = len;
	if (len && len <= sizeof(switch_leader)) {
		memcpy(switch_leader, leader, len);
	}
	return switch_result;
}

static void reset_port(void)
{
	n_sent = n_persist = n_started = n_killed = n_queue_saves = n_switches = 0;
	start_result = rand_result = persist_result = switch_result = 0;
	rand_fixed = NULL;
}

/* ---- test master -------------------------------------------------------------------------- */

static const char TOKEN[] = "tok";
static const uint8_t MASTER_NONCE[EDGERM_NONCE_LEN] = {0xb0, 1, 2, 3, 4, 5, 6, 0xb7};
static uint8_t SECRET[EDGERM_SECRET_LEN]; /* derived at the last register_fresh */
static uint8_t module[300];
static uint8_t module_sha[32];
static uint8_t module_mem[2 * 512];
static edgerm_agent_t agent;
static edgerm_agent_call_t call;
static edgerm_coap_msg_t last;

static const edgerm_device_t devices[1] = {
	{{(const uint8_t *)"temp", 4}, {(const uint8_t *)"Cel", 3}, {(const uint8_t *)"", 0}, 1, 0}};

static void init_agent_token(const edgerm_persist_t *persisted, const char *token)
{
	edgerm_agent_config_t cfg = {
		.name = "permamote-test",
		.token = token,
		.cpus = 1.0,
		.mem_mb = 0.0625,
		.devices = devices,
		.devices_count = 1,
		.os = "zephyr",
		.rng_seed = 42,
		.module_mem = module_mem,
		.module_slot_size = 512,
		.module_slots = 2,
	};

	reset_port();
	edgerm_agent_init(&agent, &cfg, persisted, 0);
}

static void init_agent(const edgerm_persist_t *persisted)
{
	init_agent_token(persisted, TOKEN);
}

/* ---- the test master's OSCORE (RFC 8613, server side, as edgerm/oscore/ in Python) ------- */

static edgerm_oscore_ctx_t mctx;  /* master context: sender "", recipient = the request's kid */
static bool last_sealed;          /* the last request was OSCORE */
static const uint8_t *last_secret; /* the secret it verified under (NULL: none) */
static uint8_t last_kid[8], last_piv[5];
static size_t last_kid_len, last_piv_len;
static uint8_t last_pt[CONFIG_EDGERM_TX_BUF_SIZE]; /* its plaintext */
/* How the next answer is protected: bound to another request's Partial IV (a replayed
 * answer), and/or with the master's own Partial IV (0: the request's nonce). */
static int answer_piv_delta;
static uint32_t answer_master_piv;

static void master_ctx(const uint8_t *secret)
{
	CHECK_EQ_INT(edgerm_oscore_init(&mctx, secret, EDGERM_SECRET_LEN, NULL, 0, NULL, 0, NULL, 0,
					last_kid, last_kid_len),
		     0);
}

/* Verify and decrypt the protected request in `m` with `secret`; on success m holds the inner
 * message (code, options, payload in last_pt). */
static bool master_open(edgerm_coap_msg_t *m, const uint8_t *secret)
{
	edgerm_oscore_opt_t o;
	uint8_t nonce[13], aad[EDGERM_OSCORE_AAD_MAX];

	if (edgerm_oscore_option_parse_untrusted(m->oscore, m->oscore_len, &o) < 0 || !o.has_kid ||
	    o.piv_len == 0 || m->payload_len > sizeof(last_pt)) {
		return false;
	}
	memcpy(last_kid, o.kid, o.kid_len), last_kid_len = o.kid_len;
	memcpy(last_piv, o.piv, o.piv_len), last_piv_len = o.piv_len;
	master_ctx(secret);
	edgerm_oscore_nonce(mctx.common_iv, last_kid, last_kid_len, last_piv, last_piv_len, nonce);
	int al = edgerm_oscore_aad(aad, last_kid, last_kid_len, last_piv, last_piv_len);

	memcpy(last_pt, m->payload, m->payload_len);
	int n = edgerm_ccm_open(&mctx.recipient_key, nonce, aad, (size_t)al, last_pt,
				m->payload_len);

	if (n < 1) {
		return false;
	}
	edgerm_coap_msg_t in;

	memset(&in, 0, sizeof(in));
	if (edgerm_coap_parse_options_untrusted(last_pt, (size_t)n, 1, &in) < 0) {
		return false;
	}
	m->code = last_pt[0];
	m->has_cf = in.has_cf, m->cf = in.cf;
	m->has_block2 = in.has_block2, m->block2 = in.block2;
	m->payload = in.payload, m->payload_len = in.payload_len;
	return true;
}

static uint32_t be_value(const uint8_t *v, size_t n)
{
	uint32_t x = 0;

	for (size_t i = 0; i < n; i++) {
		x = x << 8 | v[i];
	}
	return x;
}

/* Parse the most recent datagram the agent sent into `last`, opening it when protected (with
 * SECRET, or the auth vectors' secret). */
static void parse_last(void)
{
	CHECK_EQ_INT(edgerm_coap_parse_untrusted(SENT(n_sent - 1), SENT_LEN(n_sent - 1), &last), 0);
	CHECK_EQ_INT(last.type, EDGERM_COAP_CON);
	last_sealed = last.has_oscore;
	last_secret = NULL;
	if (last_sealed) {
		/* RFC 8613 4.2: the outer code of a request is POST; nothing but OSCORE outside. */
		CHECK_EQ_INT(last.code, EDGERM_COAP_POST);
		CHECK(!last.has_cf && !last.has_block2);
		edgerm_coap_msg_t outer = last;

		if (master_open(&last, SECRET)) {
			last_secret = SECRET;
		} else if ((last = outer, master_open(&last, auth_secret))) {
			last_secret = auth_secret;
		}
		CHECK(last_secret != NULL);
	}
}

/* Decode the most recent datagram the agent sent as a POST "a" carrying an AgentCall. Inside
 * OSCORE the call has no agent_id, seq or mac: they are taken from kid and Partial IV, as the
 * master does. */
static int last_call(void)
{
	CHECK(n_sent > 0);
	if (n_sent == 0) {
		return -1;
	}
	parse_last();
	if (last.code != EDGERM_COAP_POST) {
		return -1;
	}
	int r = edgerm_wire_decode_agent_call_untrusted(last.payload, last.payload_len, &call);

	if (r == 0 && last_sealed) {
		CHECK(call.agent_id == 0 && call.seq == 0 && call.mac.len == 0);
		call.agent_id = be_value(last_kid, last_kid_len);
		call.seq = be_value(last_piv, last_piv_len);
	}
	return r;
}

/* The protected answer to the last request: inner plaintext pt (code, options, payload),
 * sealed with the context of `secret`, in a datagram of `type`/`mid` with outer code 2.04. */
static int seal_answer(uint8_t *dgram, size_t cap, uint8_t type, uint16_t mid, uint8_t *pt,
		       size_t pt_len, const uint8_t *secret)
{
	uint8_t piv[5], mpiv[5], nonce[13], aad[EDGERM_OSCORE_AAD_MAX], opt[6];
	size_t pl = last_piv_len, ol = 0;
	edgerm_coap_builder_t b;

	memcpy(piv, last_piv, pl);
	if (answer_piv_delta) {
		pl = edgerm_oscore_piv(be_value(last_piv, last_piv_len) + (uint32_t)answer_piv_delta,
				       piv);
	}
	master_ctx(secret);
	int al = edgerm_oscore_aad(aad, last_kid, last_kid_len, piv, pl);

	if (answer_master_piv) {
		size_t ml = edgerm_oscore_piv(answer_master_piv, mpiv);

		opt[0] = (uint8_t)ml, memcpy(opt + 1, mpiv, ml), ol = 1 + ml;
		edgerm_oscore_nonce(mctx.common_iv, NULL, 0, mpiv, ml, nonce);
	} else {
		edgerm_oscore_nonce(mctx.common_iv, last_kid, last_kid_len, piv, pl, nonce);
	}
	CHECK_EQ_INT(edgerm_ccm_seal(&mctx.sender_key, nonce, aad, (size_t)al, pt, pt_len), 0);
	edgerm_coap_begin(&b, dgram, cap, type, EDGERM_COAP_CHANGED, mid, last.token, last.tkl);
	edgerm_coap_option(&b, EDGERM_COAP_OPT_OSCORE, opt, ol);
	edgerm_coap_payload(&b, pt, pt_len + 8);
	return edgerm_coap_end(&b);
}

/* Plaintext of an answer: inner code, Content-Format 60 and the body. */
static size_t reply_pt(uint8_t *pt, uint8_t code, const uint8_t *body, size_t n)
{
	pt[0] = code, pt[1] = 0xc1, pt[2] = EDGERM_COAP_CF_CBOR, pt[3] = 0xff;
	memcpy(pt + 4, body, n);
	return 4 + n;
}

struct hsink {
	edgerm_hmac_t h;
};

static void hs(void *c, const uint8_t *d, size_t n)
{
	edgerm_hmac_update(&((struct hsink *)c)->h, d, n);
}

/* The agent's mac over its call is right for `key` (key_len bytes). */
static bool call_mac_ok_len(const uint8_t *key, size_t key_len)
{
	struct hsink s;
	uint8_t full[32];

	if (call.mac.len != 8) {
		return false;
	}
	edgerm_hmac_init(&s.h, key, key_len);
	if (edgerm_wire_unsigned_view(last.payload, last.payload_len, 3, hs, &s) < 0) {
		return false;
	}
	edgerm_hmac_final(&s.h, full);
	return memcmp(full, call.mac.ptr, 8) == 0;
}

/* The call is authenticated with `secret`: protected with its OSCORE context, or (a plain
 * call) signed with it. */
static bool call_mac_ok(const uint8_t *secret)
{
	if (last_sealed) {
		return last_secret == secret;
	}
	return call_mac_ok_len(secret, EDGERM_SECRET_LEN);
}

/* The call is signed with token_key(token), as a first registration is. */
static bool call_token_mac_ok(const char *token)
{
	uint8_t key[EDGERM_SHA256_LEN];

	edgerm_auth_token_key(token, key);
	return call_mac_ok_len(key, sizeof(key));
}

/* The secret the master derives for the last first registration and its own nonce. */
static void derive(const char *token, const uint8_t master_nonce[EDGERM_NONCE_LEN],
		   uint8_t out[EDGERM_SECRET_LEN])
{
	uint8_t key[EDGERM_SHA256_LEN];

	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	edgerm_auth_token_key(token, key);
	edgerm_auth_secret(key, call.call.reg.nonce.ptr, master_nonce, out);
}

/* `needle` occurs in the last datagram sent. */
static bool sent_contains(const void *needle, size_t n)
{
	const uint8_t *d = SENT(n_sent - 1);
	size_t len = SENT_LEN(n_sent - 1);

	for (size_t i = 0; n <= len && i <= len - n; i++) {
		if (memcmp(d + i, needle, n) == 0) {
			return true;
		}
	}
	return false;
}

/* Sign `r` with key (key_len bytes; NULL: unsigned) and answer the last request (piggybacked
 * ACK, code). */
static int answer_len(edgerm_agent_reply_t *r, const uint8_t *key, size_t key_len, uint8_t code,
		      uint64_t now)
{
	static uint8_t body[600], dgram[700];
	uint8_t full[32];
	edgerm_hmac_t h;
	edgerm_coap_builder_t b;

	r->mac.len = 0;
	r->mac.ptr = full;
	if (last_sealed && key) {
		/* Inside OSCORE an AgentReply has no seq or mac. */
		r->seq = 0;
	}
	int n = edgerm_wire_encode_agent_reply(r, body, sizeof(body));

	CHECK(n > 0);
	if (n <= 0) {
		return -99;
	}
	if (last_sealed && key) {
		static uint8_t pt[620];
		size_t pl = reply_pt(pt, code, body, (size_t)n);
		int len = seal_answer(dgram, sizeof(dgram), EDGERM_COAP_ACK, last.mid, pt, pl, key);

		CHECK(len > 0);
		return edgerm_agent_on_datagram(&agent, dgram, (size_t)len, now);
	}
	if (key) {
		edgerm_hmac_init(&h, key, key_len);
		edgerm_hmac_update(&h, body, (size_t)n);
		edgerm_hmac_final(&h, full);
		r->mac.len = 8;
		n = edgerm_wire_encode_agent_reply(r, body, sizeof(body));
	}
	edgerm_coap_begin(&b, dgram, sizeof(dgram), EDGERM_COAP_ACK, code, last.mid, last.token,
			  last.tkl);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_CONTENT_FORMAT, EDGERM_COAP_CF_CBOR);
	edgerm_coap_payload(&b, body, (size_t)n);
	int len = edgerm_coap_end(&b);

	CHECK(len > 0);
	return edgerm_agent_on_datagram(&agent, dgram, (size_t)len, now);
}

static int answer(edgerm_agent_reply_t *r, const uint8_t *key, uint8_t code, uint64_t now)
{
	return answer_len(r, key, EDGERM_SECRET_LEN, code, now);
}

/* Answer the last call, a first registration, with Registered{agent_id, master_nonce} signed
 * with key (key_len bytes). */
static int answer_registered(const uint8_t *master_nonce, size_t nonce_len, const uint8_t *key,
			     size_t key_len, uint64_t now)
{
	edgerm_agent_reply_t r;

	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.has_registered = true;
	r.registered.agent_id = 7;
	r.registered.nonce.ptr = master_nonce;
	r.registered.nonce.len = nonce_len;
	r.registered.heartbeat_ms = 5000;
	return answer_len(&r, key, key_len, EDGERM_COAP_CHANGED, now);
}

/* Encoded commands for replies. */
static uint8_t cmd_buf[4][256];

static edgerm_slice_t launch_cmd(int slot, uint32_t id, uint32_t task, bool wasm)
{
	/* Command{id, launch{task, spec{name, resources{devices[temp]}, wasm{sha, size, args}}}} */
	uint8_t *p = cmd_buf[slot];
	size_t k = 0;

	p[k++] = 0xa2, p[k++] = 0x01, p[k++] = (uint8_t)id;
	p[k++] = 0x02, p[k++] = 0xa2, p[k++] = 0x01, p[k++] = (uint8_t)task;
	p[k++] = 0x02, p[k++] = 0xa3;
	p[k++] = 0x01, p[k++] = 0x61, p[k++] = 't';
	p[k++] = 0x02, p[k++] = 0xa1, p[k++] = 0x05, p[k++] = 0x81, p[k++] = 0xa1, p[k++] = 0x01,
	p[k++] = 0x64, memcpy(p + k, "temp", 4), k += 4;
	if (wasm) {
		p[k++] = 0x04, p[k++] = 0xa3, p[k++] = 0x01, p[k++] = 0x58, p[k++] = 32;
		memcpy(p + k, module_sha, 32), k += 32;
		p[k++] = 0x02, p[k++] = 0x19, p[k++] = 0x01, p[k++] = 0x2c; /* 300 */
		p[k++] = 0x04, p[k++] = 0x81, p[k++] = 0x62, p[k++] = '1', p[k++] = '0';
	} else {
		p[k++] = 0x03, p[k++] = 0xa1, p[k++] = 0x01, p[k++] = 0x61, p[k++] = 'x';
	}
	edgerm_slice_t s = {p, k};

	return s;
}

static edgerm_slice_t kill_cmd(int slot, uint32_t id, uint32_t task)
{
	uint8_t *p = cmd_buf[slot];
	size_t k = 0;

	p[k++] = 0xa2, p[k++] = 0x01, p[k++] = (uint8_t)id;
	p[k++] = 0x03, p[k++] = 0xa1, p[k++] = 0x01, p[k++] = (uint8_t)task;
	edgerm_slice_t s = {p, k};

	return s;
}

/* Answer the last call with an empty signed reply (update_ack as given). */
static void ok_reply(uint32_t update_ack, uint64_t now)
{
	edgerm_agent_reply_t r;

	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.update_ack = update_ack;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, now), 0);
}

static void register_fresh(void)
{
	queue_flash_len = 0; /* a fresh board */
	init_agent(NULL);
	int n_random_before = n_random;

	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 0);
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.agent_id, 0);
	/* A fresh nonce from the port, signed with token_key; the token itself is not sent. */
	CHECK_EQ_INT(n_random, n_random_before + 1);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK_MEM(call.call.reg.nonce.ptr, agent.nonce, EDGERM_NONCE_LEN);
	CHECK(call_token_mac_ok(TOKEN));
	CHECK(!sent_contains(TOKEN, 3));
	CHECK_EQ_INT(call.call.reg.executors_count, 1);
	CHECK_EQ_INT(call.call.reg.executors[0], EDGERM_EXECUTOR_WASM);
	CHECK_EQ_INT(call.call.reg.protocol_version, 1);
	CHECK_EQ_INT(call.call.reg.resources.devices_count, 1);

	derive(TOKEN, MASTER_NONCE, SECRET);
	CHECK_EQ_INT(answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, SECRET, EDGERM_SECRET_LEN,
				       10), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
	CHECK_EQ_INT(stored.agent_id, 7);
	CHECK_MEM(stored.secret, SECRET, 16);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 5010);
}

static void test_registration_and_heartbeat(void)
{
	register_fresh();
	int before = n_sent;

	edgerm_agent_on_timer(&agent, 5009);
	CHECK_EQ_INT(n_sent, before); /* not yet due */
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(n_sent, before + 1);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 5);
	CHECK_EQ_INT(call.agent_id, 7);
	CHECK(call_mac_ok(SECRET));
	/* docs/protocol.md: a steady heartbeat is at most 32 bytes on the wire. */
	CHECK(SENT_LEN(n_sent - 1) <= 32);
	ok_reply(0, 5020);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 10020);
}

static void test_retransmission(void)
{
	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	int first = n_sent;
	uint64_t d = edgerm_agent_next_deadline_ms(&agent);

	/* ACK_TIMEOUT x [1, 1.5]. */
	CHECK(d >= 5010 + CONFIG_EDGERM_COAP_ACK_TIMEOUT_MS &&
	      d <= 5010 + CONFIG_EDGERM_COAP_ACK_TIMEOUT_MS * 3 / 2);
	uint64_t prev = 5010;

	for (int i = 0; i < CONFIG_EDGERM_COAP_MAX_RETRANSMIT; i++) {
		uint64_t now = edgerm_agent_next_deadline_ms(&agent);
		uint64_t gap = now - prev;

		edgerm_agent_on_timer(&agent, now);
		CHECK_EQ_INT(n_sent, first + i + 1);
		/* The same datagram again, and the timeout doubles. */
		CHECK(SENT_LEN(n_sent - 1) == SENT_LEN(first - 1) &&
		      memcmp(SENT(n_sent - 1), SENT(first - 1), SENT_LEN(first - 1)) == 0);
		CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent) - now, gap * 2);
		prev = now;
	}
	uint64_t now = edgerm_agent_next_deadline_ms(&agent);

	edgerm_agent_on_timer(&agent, now);
	CHECK_EQ_INT(agent.stats.exchanges_failed, 1);
	/* Back-off, then a new heartbeat (a new seq). */
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), now + CONFIG_EDGERM_RETRY_MIN_MS);
	uint32_t old_seq = call.seq;

	edgerm_agent_on_timer(&agent, now + CONFIG_EDGERM_RETRY_MIN_MS);
	CHECK_EQ_INT(last_call(), 0);
	CHECK(call.seq > old_seq);
}

static void test_bad_replies(void)
{
	edgerm_agent_reply_t r;

	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	/* Wrong key: dropped. */
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	static const uint8_t other[16] = {1};

	answer(&r, other, EDGERM_COAP_CHANGED, 5020);
	CHECK_EQ_INT(agent.stats.replies_bad_mac, 1);
	/* Wrong seq (a replayed reply): dropped. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	answer_piv_delta = -1; /* protected for the previous request */
	answer(&r, SECRET, EDGERM_COAP_CHANGED, 7000);
	answer_piv_delta = 0;
	CHECK_EQ_INT(agent.stats.replies_bad_mac, 2);
	/* Garbage of every length: counted, nothing changes. */
	uint8_t junk[64];

	for (size_t n = 0; n < sizeof(junk); n++) {
		junk[n] = (uint8_t)(n * 37 + 11);
		CHECK(edgerm_agent_on_datagram(&agent, junk, n, 7001) <= 0);
	}
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
}

/* Serve the module download the agent is asking for, block by block. */
/* Answer the GET just sent with its block of `module`; false when the last datagram sent is
 * not a GET. */
static bool serve_block(uint64_t now, bool corrupt)
{
	uint8_t dgram[600], pt[600];

	parse_last();
	edgerm_coap_msg_t m = last;

	if (m.code != EDGERM_COAP_GET) {
		return false;
	}
	CHECK(last_sealed && m.has_block2);
	uint32_t szx = m.block2 & 7, num = m.block2 >> 4, size = 16u << szx;
	uint32_t off = num * size;
	uint32_t n = sizeof(module) - off < size ? (uint32_t)sizeof(module) - off : size;
	bool more = off + n < sizeof(module);
	uint8_t block[1024];

	memcpy(block, module + off, n);
	if (corrupt && !more) {
		block[0] ^= 1;
	}
	/* Inner 2.05 with Block2 (NUM << 4 | M << 3 | SZX, at most 2 bytes here) and the block. */
	uint32_t b2 = num << 4 | (more ? 8u : 0u) | szx;
	size_t k = 0;

	pt[k++] = EDGERM_COAP_CONTENT;
	if (b2 > 0xff) {
		pt[k++] = 0xd2, pt[k++] = 23 - 13, pt[k++] = (uint8_t)(b2 >> 8), pt[k++] = (uint8_t)b2;
	} else {
		pt[k++] = 0xd1, pt[k++] = 23 - 13, pt[k++] = (uint8_t)b2;
	}
	pt[k++] = 0xff;
	memcpy(pt + k, block, n);
	int len = seal_answer(dgram, sizeof(dgram), EDGERM_COAP_ACK, m.mid, pt, k + n, SECRET);

	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, dgram, (size_t)len, now), 0);
	return true;
}

static void serve_module(uint64_t now, bool corrupt)
{
	for (int guard = 0; guard < 16 && serve_block(now, corrupt); guard++) {
	}
}

/* The exchange in flight gets no answer: every retransmission and the last wait pass. Then
 * the pause after it; returns the time the next exchange went out. */
static uint64_t lose_exchange(void)
{
	uint32_t failed = agent.stats.exchanges_failed;
	uint64_t now = 0;

	for (int guard = 0; guard < 16 && agent.stats.exchanges_failed == failed; guard++) {
		now = edgerm_agent_next_deadline_ms(&agent);
		edgerm_agent_on_timer(&agent, now);
	}
	CHECK_EQ_INT(agent.stats.exchanges_failed, failed + 1);
	now = edgerm_agent_next_deadline_ms(&agent);
	edgerm_agent_on_timer(&agent, now);
	return now;
}

static void test_launch_kill_publish(void)
{
	edgerm_agent_reply_t r;

	for (size_t i = 0; i < sizeof(module); i++) {
		module[i] = (uint8_t)(i * 7);
	}
	edgerm_sha256_t h;

	edgerm_sha256_init(&h);
	edgerm_sha256_update(&h, module, sizeof(module));
	edgerm_sha256_final(&h, module_sha);

	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.commands[0] = launch_cmd(0, 1, 4, true);
	r.commands[1] = launch_cmd(1, 2, 5, false); /* docker: not here */
	r.commands_count = 2;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5020), 0);
	CHECK_EQ_INT(agent.persist.command_ack, 2);
	CHECK_EQ_INT(stored.command_ack, 2);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_STARTING);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 5), EDGERM_ERROR);

	/* Updates go first, oldest first, one per call: STARTING(4) is update 1. */
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 6);
	CHECK_EQ_INT(call.call.status.update_id, 1);
	CHECK_EQ_INT(call.call.status.task, 4);
	CHECK_EQ_INT(call.call.status.state, EDGERM_STARTING);
	ok_reply(1, 5030);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.update_id, 2);
	CHECK_EQ_INT(call.call.status.task, 5);
	CHECK_EQ_INT(call.call.status.state, EDGERM_ERROR);
	CHECK_EQ_INT(call.call.status.reason, EDGERM_UNSUPPORTED_EXECUTOR);
	ok_reply(2, 5040);

	/* Then the module, by Block2, verified, and the task starts. */
	serve_module(5050, false);
	CHECK_EQ_INT(n_started, 1);
	CHECK_EQ_INT(started[0], 4);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_RUNNING);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.update_id, 3);
	CHECK_EQ_INT(call.call.status.state, EDGERM_RUNNING);
	ok_reply(3, 5060);
	/* command_ack moved: a heartbeat says so at once. */
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 5);
	CHECK_EQ_INT(call.call.heartbeat.command_ack, 2);

	/* The master re-sends the launch (its reply crossed our ack): nothing happens. */
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.update_ack = 3;
	r.commands[0] = launch_cmd(0, 1, 4, true);
	r.commands_count = 1;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5070), 0);
	CHECK_EQ_INT(n_started, 1);
	CHECK_EQ_INT(agent.q_count, 0);

	/* Publish: queued with the next update id. */
	CHECK_EQ_INT(edgerm_agent_publish(&agent, 4, (const uint8_t *)"21.5", 4, 6000), 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 7);
	CHECK_EQ_INT(call.call.publish.update_id, 4);
	CHECK(call.call.publish.data.len == 4 && memcmp(call.call.publish.data.ptr, "21.5", 4) == 0);
	CHECK_EQ_INT(edgerm_agent_publish(&agent, 4, module, CONFIG_EDGERM_PUBLISH_MAX_SIZE + 1, 6000),
		     -4);
	CHECK_EQ_INT(edgerm_agent_publish(&agent, 99, module, 1, 6000), -1);
	/* Fill the queue: publishes stop short of the reserve kept for status updates. */
	int again = 0;

	for (int i = 0; i < 64 && !again; i++) {
		again = edgerm_agent_publish(&agent, 4, module, 100, 6000) == -5;
	}
	CHECK(again);
	CHECK(CONFIG_EDGERM_UPDATE_QUEUE_SIZE - agent.q_len >=
	      CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE - 114);
	ok_reply(4, 6010);
	for (int guard = 0; agent.q_count > 0 && guard < 64; guard++) {
		CHECK_EQ_INT(last_call(), 0);
		CHECK_EQ_INT(call.which, 7);
		ok_reply(call.call.publish.update_id, 6020);
	}
	CHECK_EQ_INT(agent.q_count, 0);

	/* Kill: the port stops it, KILLED KILL_REQUESTED; a second kill re-reports; an unknown
	 * task is KILLED_BEFORE_LAUNCH. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.commands[0] = kill_cmd(0, 3, 4);
	r.commands[1] = kill_cmd(1, 4, 4);
	r.commands[2] = kill_cmd(2, 5, 20);
	r.commands_count = 3;
	uint32_t next_id = agent.q_first_id;

	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 20000), 0);
	CHECK_EQ_INT(n_killed, 1);
	CHECK_EQ_INT(killed[0], 4);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_KILLED);
	CHECK_EQ_INT(agent.q_count, 3);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.update_id, next_id);
	CHECK_EQ_INT(call.call.status.reason, EDGERM_KILL_REQUESTED);
	ok_reply(next_id, 20010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.state, EDGERM_KILLED);
	ok_reply(next_id + 1, 20020);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.task, 20);
	CHECK_EQ_INT(call.call.status.reason, EDGERM_KILLED_BEFORE_LAUNCH);
	ok_reply(next_id + 2, 20030);

	/* The task ending by itself after the kill is not reported twice. */
	edgerm_agent_task_exited(&agent, 4, EDGERM_FINISHED, 0, 0, NULL, 0, 20040);
	CHECK_EQ_INT(agent.q_count, 0);

	/* A second launch of the same module is served from the cache: no download. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.commands[0] = launch_cmd(0, 6, 8, true);
	r.commands_count = 1;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 30000), 0);
	CHECK_EQ_INT(n_started, 2);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 8), EDGERM_RUNNING);
	/* It ends with a trap: FAILED TRAPPED with the (tail of the) message. */
	edgerm_agent_task_exited(&agent, 8, EDGERM_FAILED, EDGERM_TRAPPED, 0, "unreachable", 11,
				 30001);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 8), EDGERM_FAILED);
}

/* A fresh agent's first heartbeat is answered with the launch of WASM task 4 (command 1). */
static void launch_task_4_fresh(void)
{
	edgerm_agent_reply_t r;

	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.commands[0] = launch_cmd(0, 1, 4, true);
	r.commands_count = 1;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5020), 0);
}

/* A task's log may hold any bytes: each byte that is not part of a valid UTF-8 character
 * (stray, overlong, surrogate, above U+10FFFF, cut short) goes out as '?', valid characters of
 * every length as they are, so the master takes the update. */
static void test_task_message_sanitized(void)
{
	static const char bad[] = "a\xff\xc3\xa9\xed\xa0\x80\xc0\x80\xf4\x90\x80\x80"
				  "\xf0\x9f\x98\x80z\xe2\x82";
	static const char want[] = "a?\xc3\xa9?????????\xf0\x9f\x98\x80z??";

	launch_task_4_fresh();
	ok_reply(1, 5030); /* STARTING */
	serve_module(5040, false);
	ok_reply(2, 5050); /* RUNNING; the heartbeat saying command_ack moved goes out */
	edgerm_agent_task_exited(&agent, 4, EDGERM_FAILED, EDGERM_TRAPPED, 0, bad, sizeof(bad) - 1,
				 6000);
	ok_reply(2, 6010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 6);
	CHECK_EQ_INT(call.call.status.update_id, 3);
	CHECK_EQ_INT(call.call.status.message.len, sizeof(want) - 1);
	CHECK(call.call.status.message.len == sizeof(want) - 1 &&
	      memcmp(call.call.status.message.ptr, want, sizeof(want) - 1) == 0);
	ok_reply(3, 6020);
	CHECK_EQ_INT(agent.q_count, 0);
}

static void test_hash_mismatch_and_launch_failure(void)
{
	edgerm_agent_reply_t r;

	launch_task_4_fresh();
	ok_reply(1, 5030); /* STARTING acknowledged */
	serve_module(5040, true);
	CHECK_EQ_INT(n_started, 0);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_ERROR);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.reason, EDGERM_MODULE_HASH_MISMATCH);
	ok_reply(2, 5050);

	/* The executor refuses the module: ERROR LAUNCH_FAILED with its message. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.commands[0] = launch_cmd(0, 2, 6, true);
	r.commands_count = 1;
	start_result = EDGERM_PORT_E_LAUNCH;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 9000), 0);
	ok_reply(3, 9010);
	serve_module(9020, false);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 6), EDGERM_ERROR);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.status.reason, EDGERM_LAUNCH_FAILED);
	CHECK(call.call.status.message.len > 0);
}

static void test_module_blocks_retried_on_a_lossy_link(void)
{
	edgerm_agent_reply_t r;

	launch_task_4_fresh();
	ok_reply(1, 5030); /* STARTING acknowledged */
	/* Two exchanges of each of the module's two blocks go unanswered: four failed exchanges
	 * in all, but never FETCH_MAX_FAILURES (3) in a row, so the download goes on. */
	uint32_t failed = agent.stats.exchanges_failed;
	uint64_t now = 0;

	for (int block = 0; block < 2; block++) {
		now = lose_exchange();
		now = lose_exchange();
		CHECK(serve_block(now, false));
	}
	CHECK_EQ_INT(agent.stats.exchanges_failed, failed + 4);
	CHECK_EQ_INT(n_started, 1);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_RUNNING);

	/* Three in a row on one block: the download is given up, ERROR MODULE_UNAVAILABLE. */
	ok_reply(2, now + 10); /* RUNNING; the moved command_ack goes out at once */
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 5);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	module_sha[0] ^= 1; /* a module not in the cache */
	r.commands[0] = launch_cmd(1, 2, 6, true);
	module_sha[0] ^= 1;
	r.commands_count = 1;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, now + 20), 0);
	ok_reply(3, now + 30); /* STARTING */
	lose_exchange();
	lose_exchange();
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 6), EDGERM_STARTING);
	lose_exchange();
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 6), EDGERM_ERROR);
}

static void test_reboot_and_unauthenticated(void)
{
	edgerm_agent_reply_t r;
	edgerm_persist_t p;

	register_fresh();
	p = stored;
	uint32_t reserved = p.seq_reserved;

	/* Reboot: the same identity, a re-registration signed with the secret, a seq never used. */
	init_agent(&p);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.agent_id, 7);
	CHECK_EQ_INT(call.call.reg.nonce.len, 0); /* no nonce: the secret stays */
	CHECK(call.seq >= reserved);
	CHECK(call_mac_ok(SECRET));
	int randoms = n_random;

	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.has_registered = true;
	r.registered.agent_id = 7;
	r.registered.update_ack = 41;
	/* A nonce in a re-registration's reply changes nothing: the agent keeps its secret. */
	r.registered.nonce.ptr = MASTER_NONCE;
	r.registered.nonce.len = 4;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 10), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
	CHECK_EQ_INT(agent.q_first_id, 42); /* numbering continues where the master is */
	CHECK_MEM(stored.secret, SECRET, EDGERM_SECRET_LEN);
	CHECK_MEM(agent.persist.secret, SECRET, EDGERM_SECRET_LEN);
	CHECK_EQ_INT(n_random, randoms); /* re-registration draws no nonce */

	/* UNAUTHENTICATED (stale seq, unknown agent): re-register; refused again: afresh. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.has_error = true;
	r.error.code = 2;
	answer(&r, NULL, EDGERM_COAP_CODE(4, 1), 30000);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.agent_id, 7);
	answer(&r, NULL, EDGERM_COAP_CODE(4, 1), 30010);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);
	CHECK_EQ_INT(stored.agent_id, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.agent_id, 0);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK(call_token_mac_ok(TOKEN));
	CHECK(!call_mac_ok(SECRET));
	/* The master refuses that one too (not its token): the agent waits long before again. */
	answer(&r, NULL, EDGERM_COAP_CODE(4, 1), 30020);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 30020 + CONFIG_EDGERM_RETRY_MAX_MS);
}

/* Several masters (docs/ha.md): a standby's NOT_LEADER, and silence, make the core ask the port
 * to move; when it moved, the agent re-registers there with the same identity. */
static void test_not_leader_and_silence_switch_master(void)
{
	static const char leader[] = "coap://10.0.0.2:5683";
	edgerm_agent_reply_t r;

	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.has_error = true;
	r.error.code = EDGERM_ERR_NOT_LEADER;
	r.error.leader.ptr = (const uint8_t *)leader;
	r.error.leader.len = sizeof(leader) - 1;
	switch_result = 1;
	answer(&r, NULL, EDGERM_COAP_CODE(5, 3), 5020);
	CHECK_EQ_INT(n_switches, 1);
	CHECK_EQ_INT(switch_len, sizeof(leader) - 1);
	CHECK_MEM(switch_leader, leader, sizeof(leader) - 1);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	CHECK_EQ_INT(stored.agent_id, 7);
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.agent_id, 7);
	CHECK_EQ_INT(call.call.reg.nonce.len, 0); /* the same identity and secret */
	CHECK(call_mac_ok(SECRET));
	/* No answer within the retransmission budget: asked to move on, no leader named. A port
	 * with one master answers 0 and nothing else changes. */
	switch_result = 0;
	for (int i = 0; i <= CONFIG_EDGERM_COAP_MAX_RETRANSMIT; i++) {
		edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	}
	CHECK_EQ_INT(n_switches, 2);
	CHECK_EQ_INT(switch_len, 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	CHECK_EQ_INT(agent.stats.exchanges_failed, 2);
}

/* Reboot the agent from what the port stored, and let it re-register (update_ack as given). */
static void reboot_and_reregister(uint32_t update_ack, uint64_t now)
{
	edgerm_agent_reply_t r;
	edgerm_persist_t p = stored;

	init_agent(&p);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	r.has_registered = true;
	r.registered.agent_id = 7;
	r.registered.heartbeat_ms = 5000;
	r.registered.update_ack = update_ack;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, now), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
}

/* A task's end reported just before a reboot is not lost: the queue is saved when a task ends
 * (not per publish), restored after the reboot, the task re-registered with its end state (so
 * the master does not fail it as AGENT_RESTARTED), and the updates re-sent with their ids. A
 * torn or foreign record is dropped whole. */
static void test_reboot_keeps_unacknowledged_updates(void)
{
	launch_task_4_fresh();
	ok_reply(1, 5030); /* STARTING */
	serve_module(5040, false);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_RUNNING);
	ok_reply(2, 5050); /* RUNNING */
	CHECK_EQ_INT(n_queue_saves, 0); /* nothing ended yet: flash untouched */

	/* A publish (update 3) and the end (update 4), queued behind the heartbeat in flight (it
	 * says command_ack moved); the master acknowledges none of them. */
	CHECK_EQ_INT(edgerm_agent_publish(&agent, 4, (const uint8_t *)"21.5", 4, 6000), 0);
	CHECK_EQ_INT(n_queue_saves, 0);
	edgerm_agent_task_exited(&agent, 4, EDGERM_FINISHED, 0, 0, "done", 4, 6001);
	CHECK_EQ_INT(n_queue_saves, 1);
	CHECK_EQ_INT(agent.q_count, 2);
	CHECK_EQ_INT(agent.q_first_id, 3);

	/* Power cut. After the reboot both updates are back, and the task with its end. */
	size_t saved_len = queue_flash_len;

	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 2);
	CHECK_EQ_INT(agent.q_first_id, 3);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), EDGERM_FINISHED);
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.call.reg.update_next, 3);
	CHECK_EQ_INT(call.call.reg.tasks_count, 1);
	CHECK_EQ_INT(call.call.reg.tasks[0].task, 4);
	CHECK_EQ_INT(call.call.reg.tasks[0].state, EDGERM_FINISHED);

	/* The master has update 2: the agent sends 3 then 4, with the ids they had. */
	reboot_and_reregister(2, 10);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 7);
	CHECK_EQ_INT(call.call.publish.update_id, 3);
	CHECK(call.call.publish.data.len == 4 && memcmp(call.call.publish.data.ptr, "21.5", 4) == 0);
	ok_reply(3, 20);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 6);
	CHECK_EQ_INT(call.call.status.update_id, 4);
	CHECK_EQ_INT(call.call.status.task, 4);
	CHECK_EQ_INT(call.call.status.state, EDGERM_FINISHED);
	CHECK(call.call.status.message.len == 4 &&
	      memcmp(call.call.status.message.ptr, "done", 4) == 0);
	ok_reply(4, 30);
	CHECK_EQ_INT(agent.q_count, 0);

	/* The same record again, but the master already holds both (the flash copy is stale, it
	 * is never rewritten on an ack): nothing is sent twice, numbering continues. */
	reboot_and_reregister(4, 10);
	CHECK_EQ_INT(agent.q_count, 0);
	CHECK_EQ_INT(agent.q_first_id, 5);

	/* Torn: one byte short. Dropped whole, nothing restored. */
	queue_flash_len = saved_len - 1;
	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 0);
	CHECK_EQ_INT(agent.q_first_id, 1);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), 0);

	/* An entry length pointing past the record, an unknown entry kind, a header only. */
	queue_flash_len = saved_len;
	queue_flash[EDGERM_QUEUE_REC_HDR_SIZE + 12] = 0xff;
	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 0);
	queue_flash[EDGERM_QUEUE_REC_HDR_SIZE + 12] = 4; /* "21.5" */
	queue_flash[EDGERM_QUEUE_REC_HDR_SIZE] = 9;
	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 0);
	queue_flash[EDGERM_QUEUE_REC_HDR_SIZE] = 7;
	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 2); /* repaired: accepted again */
	queue_flash_len = EDGERM_QUEUE_REC_HDR_SIZE;
	init_agent(&stored);
	CHECK_EQ_INT(agent.q_count, 0);
	CHECK_EQ_INT(agent.q_first_id, 3);

	/* Another identity's record (the board was re-provisioned): ignored. */
	queue_flash_len = saved_len;
	edgerm_persist_t mine = stored, other = stored; /* (init_agent stores what it is given) */

	other.agent_id = 8;
	init_agent(&other);
	CHECK_EQ_INT(agent.q_count, 0);
	CHECK_EQ_INT(edgerm_agent_task_state(&agent, 4), 0);
	/* ... or the same agent_id from another master (another secret). */
	other = mine;
	other.secret[0] ^= 1;
	init_agent(&other);
	CHECK_EQ_INT(agent.q_count, 0);
	init_agent(&mine);
	CHECK_EQ_INT(agent.q_count, 2); /* the right identity still gets it */
	/* A first boot never loads one. */
	init_agent(NULL);
	CHECK_EQ_INT(agent.q_count, 0);
}

static void test_separate_response(void)
{
	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	/* Empty ACK: no more retransmissions; the response comes as its own CON. */
	uint8_t ack[4];

	edgerm_coap_empty(ack, EDGERM_COAP_ACK, last.mid);
	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, ack, 4, 5011), 0);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 5011 + CONFIG_EDGERM_COAP_RESPONSE_TIMEOUT_MS);
	edgerm_agent_reply_t r;
	uint8_t body[128], dgram[160], copy[160], pt[160];

	memset(&r, 0, sizeof(r));
	int n = edgerm_wire_encode_agent_reply(&r, body, sizeof(body));
	int len = seal_answer(dgram, sizeof(dgram), EDGERM_COAP_CON, 0x1234, pt,
			      reply_pt(pt, EDGERM_COAP_CHANGED, body, (size_t)n), SECRET);
	int before = n_sent;

	/* The agent decrypts in place: keep the datagram for its retransmission. */
	memcpy(copy, dgram, (size_t)len);
	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, dgram, (size_t)len, 5100), 0);
	/* It was acknowledged with its own message id. */
	CHECK_EQ_INT(n_sent, before + 1);
	CHECK(SENT_LEN(before) == 4 && SENT(before)[0] == 0x60 && SENT(before)[2] == 0x12 &&
	      SENT(before)[3] == 0x34);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 5100 + 5000);
	/* Its retransmission (our ACK was lost) is acknowledged again, and changes nothing. */
	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, copy, (size_t)len, 5200), 0);
	CHECK_EQ_INT(n_sent, before + 2);
	CHECK_EQ_INT(SENT(before + 1)[0], 0x60);
}

/* The vectors' first registration (vectors.json `auth`), run by the agent: with the vector's
 * token and agent nonce it sends a Register carrying that nonce and signed with token_key, and
 * the vector's Registered reply (the master's nonce, signed with the derived secret), fed to it
 * verbatim, makes it ACTIVE with the vector's secret. */
static void test_first_registration_vectors(void)
{
	const struct vec *reply = NULL;

	for (const struct vec *v = positive; v->type; v++) {
		if (strcmp(v->name, auth_registered_vector) == 0) {
			reply = v;
		}
	}
	CHECK(reply != NULL);
	if (!reply) {
		return;
	}
	queue_flash_len = 0;
	init_agent_token(NULL, auth_token);
	rand_fixed = auth_agent_nonce;
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.seq, 1); /* the vector answers seq 1 */
	CHECK_EQ_INT(call.agent_id, 0);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK_MEM(call.call.reg.nonce.ptr, auth_agent_nonce, EDGERM_NONCE_LEN);
	CHECK(call_mac_ok_len(auth_token_key, sizeof(auth_token_key)));
	CHECK(!sent_contains(auth_token, sizeof(auth_token) - 1));

	uint8_t dgram[128];
	edgerm_coap_builder_t b;

	edgerm_coap_begin(&b, dgram, sizeof(dgram), EDGERM_COAP_ACK, EDGERM_COAP_CHANGED, last.mid,
			  last.token, last.tkl);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_CONTENT_FORMAT, EDGERM_COAP_CF_CBOR);
	edgerm_coap_payload(&b, reply->bytes, reply->len);
	int n = edgerm_coap_end(&b);

	CHECK(n > 0);
	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, dgram, (size_t)n, 10), 0);
	CHECK_EQ_INT(agent.stats.replies_bad_mac, 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
	CHECK_EQ_INT(stored.agent_id, 1);
	CHECK_MEM(stored.secret, auth_secret, EDGERM_SECRET_LEN);
	CHECK_EQ_INT(agent.heartbeat_ms, 20000);
	CHECK_EQ_INT(agent.jitter_ms, 2000);
	/* The next call is signed with that secret. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 5);
	CHECK_EQ_INT(call.agent_id, 1);
	CHECK(call_mac_ok(auth_secret));
}

/* The agent sent a first registration and waits: expect it dropped (bad mac or bad reply), the
 * agent still without identity, and the next attempt (after the back-off) with a new nonce. */
static void expect_dropped(uint32_t bad_mac, uint32_t bad, uint64_t *now)
{
	uint8_t nonce[EDGERM_NONCE_LEN];
	uint32_t seq = call.seq;

	memcpy(nonce, call.call.reg.nonce.ptr, sizeof(nonce));
	CHECK_EQ_INT(agent.stats.replies_bad_mac, bad_mac);
	CHECK_EQ_INT(agent.stats.replies_bad, bad);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);
	CHECK_EQ_INT(agent.persist.agent_id, 0);
	CHECK_EQ_INT(stored.agent_id, 0);
	*now = edgerm_agent_next_deadline_ms(&agent);
	edgerm_agent_on_timer(&agent, *now);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK(call.seq > seq);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK(memcmp(call.call.reg.nonce.ptr, nonce, sizeof(nonce)) != 0);
	CHECK(call_token_mac_ok(TOKEN));
}

/* A Registered reply signed with anything but the secret derived from the token and both
 * nonces is dropped, and so is one without the master's nonce: an attacker without the token
 * cannot hand the agent an identity, and none is learnt from the wire. */
static void test_registered_signed_otherwise_dropped(void)
{
	uint8_t key[EDGERM_SHA256_LEN], secret[EDGERM_SECRET_LEN];
	static const uint8_t other_nonce[EDGERM_NONCE_LEN] = {9, 9, 9, 9, 9, 9, 9, 9};
	uint64_t now = 0;
	uint32_t bad_mac = 0, bad = 0;

	queue_flash_len = 0;
	init_agent(NULL);
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);

	/* token_key itself (what signed the call). */
	edgerm_auth_token_key(TOKEN, key);
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, key, sizeof(key), now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* Its first 16 bytes, as an agent secret. */
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, key, EDGERM_SECRET_LEN, now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* The secret of another token (a master of another cluster). */
	derive("another token", MASTER_NONCE, secret);
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, secret, sizeof(secret), now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* The right token, but derived from another master nonce than the reply carries. */
	derive(TOKEN, other_nonce, secret);
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, secret, sizeof(secret), now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* Unsigned. */
	uint8_t old_nonce[EDGERM_NONCE_LEN];

	memcpy(old_nonce, call.call.reg.nonce.ptr, sizeof(old_nonce));
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, NULL, 0, now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* The right secret, but for the previous attempt's agent nonce (a recorded exchange). */
	edgerm_auth_token_key(TOKEN, key);
	edgerm_auth_secret(key, old_nonce, MASTER_NONCE, secret);
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, secret, sizeof(secret), now + 1);
	expect_dropped(++bad_mac, bad, &now);
	/* No master nonce, or one of the wrong length (the old protocol's 16-byte secret):
	 * malformed, whatever the signature. */
	derive(TOKEN, MASTER_NONCE, secret);
	answer_registered(NULL, 0, secret, sizeof(secret), now + 1);
	expect_dropped(bad_mac, ++bad, &now);
	derive(TOKEN, MASTER_NONCE, secret);
	answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN - 1, secret, sizeof(secret), now + 1);
	expect_dropped(bad_mac, ++bad, &now);
	static const uint8_t sixteen[16] = {0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

	answer_registered(sixteen, sizeof(sixteen), sixteen, sizeof(sixteen), now + 1);
	expect_dropped(bad_mac, ++bad, &now);
	CHECK_EQ_INT(n_persist > 0 && stored.agent_id == 0, 1);

	/* Then the master holding the token answers: accepted, the derived secret kept. */
	derive(TOKEN, MASTER_NONCE, secret);
	CHECK_EQ_INT(answer_registered(MASTER_NONCE, EDGERM_NONCE_LEN, secret, sizeof(secret),
				       now + 1), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
	CHECK_EQ_INT(stored.agent_id, 7);
	CHECK_MEM(stored.secret, secret, EDGERM_SECRET_LEN);
	CHECK_EQ_INT(agent.stats.replies_bad_mac, bad_mac);
}

/* No randomness, no registration: nothing is sent, the agent backs off and tries again. */
static void test_no_randomness(void)
{
	queue_flash_len = 0;
	init_agent(NULL);
	rand_result = -EIO;
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(n_sent, 0);
	CHECK_EQ_INT(agent.stats.exchanges_failed, 1);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), CONFIG_EDGERM_RETRY_MIN_MS);
	edgerm_agent_on_timer(&agent, CONFIG_EDGERM_RETRY_MIN_MS);
	CHECK_EQ_INT(n_sent, 0);
	CHECK_EQ_INT(edgerm_agent_next_deadline_ms(&agent), 3 * CONFIG_EDGERM_RETRY_MIN_MS);
	rand_result = 0;
	edgerm_agent_on_timer(&agent, 3 * CONFIG_EDGERM_RETRY_MIN_MS);
	CHECK_EQ_INT(n_sent, 1);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK(call_token_mac_ok(TOKEN));
}

/* seq never goes back, across reboots too (issue 10): what is stored stays ahead of every seq
 * sent, though heartbeats store nothing else; a failed write is tried again with the next call;
 * a reboot goes on past every seq sent. */
static void test_seq_never_goes_back(void)
{
	uint64_t now = 0;
	uint32_t highest = 0;
	int writes = 0;

	register_fresh();
	CHECK(stored.seq_reserved > call.seq);
	for (int i = 0; i < 3 * CONFIG_EDGERM_SEQ_RESERVE_MAX; i++) {
		/* A stretch of failed writes (a full flash, say), shorter than half a reservation
		 * and over a point where the reservation must move on. */
		persist_result = (i >= 2 * CONFIG_EDGERM_SEQ_RESERVE_MAX - 20 &&
				  i < 2 * CONFIG_EDGERM_SEQ_RESERVE_MAX + 4) ? -28 : 0;
		uint32_t before = stored.seq_reserved;

		now = edgerm_agent_next_deadline_ms(&agent);
		edgerm_agent_on_timer(&agent, now);
		CHECK_EQ_INT(last_call(), 0);
		CHECK(call.seq > highest);
		highest = call.seq;
		CHECK(call.seq < stored.seq_reserved);
		writes += stored.seq_reserved != before;
		ok_reply(0, now + 10);
		CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);
	}
	/* Not once per call: about once per half reservation. */
	CHECK(writes <= 8 && writes >= 4);
	persist_result = 0;
	edgerm_persist_t p = stored;

	init_agent(&p); /* a power cut: only what was stored survives */
	edgerm_agent_on_timer(&agent, 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK(call.seq > highest);
	CHECK(call.seq < stored.seq_reserved);
}

/* OSCORE on the link (RFC 8613, docs/protocol.md "OSCORE"): nothing but the OSCORE option in
 * clear; an answer carrying the master's own Partial IV verifies; an unprotected success answer,
 * an OSCORE answer to a plain first registration, a bit flipped anywhere are dropped; a plain
 * 4.02 (bad option) changes nothing but the back-off. */
static void test_oscore_link(void)
{
	edgerm_agent_reply_t r;
	uint8_t dgram[200];
	edgerm_coap_builder_t b;

	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK(last_sealed && call.which == 5);
	/* Outer: header, 1-byte token, OSCORE {flags 0x09, PIV, kid 0x07}, 0xFF, ciphertext. */
	const uint8_t *d = SENT(n_sent - 1);

	CHECK_EQ_INT(d[0], 0x41);
	CHECK_EQ_INT(d[1], EDGERM_COAP_POST);
	CHECK_EQ_INT(d[5] >> 4, EDGERM_COAP_OPT_OSCORE);
	CHECK_EQ_INT(d[6], 0x08 | last_piv_len);
	CHECK_EQ_INT(d[7 + last_piv_len], 7);
	CHECK_EQ_INT(d[8 + last_piv_len], 0xff);

	/* An unprotected 2.04 (even one signed with the secret) is not the master's answer. */
	last_sealed = false;
	memset(&r, 0, sizeof(r));
	r.seq = call.seq;
	CHECK(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5020) < 0);
	CHECK_EQ_INT(agent.stats.replies_bad_mac, 1);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);

	/* The next one is answered with the master's own Partial IV (after a failover, say): a
	 * ReRegister command in it is applied. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	static const uint8_t rereg[] = {0xa2, 0x01, 0x01, 0x05, 0xa0}; /* Command{1, reregister} */

	memset(&r, 0, sizeof(r));
	r.commands[0].ptr = rereg;
	r.commands[0].len = sizeof(rereg);
	r.commands_count = 1;
	answer_master_piv = 70000;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 7000), 0);
	answer_master_piv = 0;
	CHECK_EQ_INT(agent.stats.replies_bad_mac, 1);
	CHECK_EQ_INT(agent.persist.command_ack, 1);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	/* The protected re-registration; its answer with one bit flipped is dropped. */
	CHECK_EQ_INT(last_call(), 0);
	CHECK(last_sealed && call.which == 4 && call.agent_id == 7);
	memset(&r, 0, sizeof(r));
	r.has_registered = true;
	r.registered.agent_id = 7;
	{
		uint8_t body[64], pt[80];
		int n = edgerm_wire_encode_agent_reply(&r, body, sizeof(body));
		int len = seal_answer(dgram, sizeof(dgram), EDGERM_COAP_ACK, last.mid, pt,
				      reply_pt(pt, EDGERM_COAP_CHANGED, body, (size_t)n), SECRET);

		dgram[len - 3] ^= 0x10;
		CHECK(edgerm_agent_on_datagram(&agent, dgram, (size_t)len, 7010) < 0);
		CHECK_EQ_INT(agent.stats.replies_bad_mac, 2);
		CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	}
	/* A plain 4.02 Bad Option (the master could not parse our option): back off only. */
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	CHECK_EQ_INT(last_call(), 0);
	edgerm_coap_begin(&b, dgram, sizeof(dgram), EDGERM_COAP_ACK, EDGERM_COAP_CODE(4, 2),
			  last.mid, last.token, last.tkl);
	uint64_t now = 9000;

	CHECK_EQ_INT(edgerm_agent_on_datagram(&agent, dgram, (size_t)edgerm_coap_end(&b), now), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REREGISTERING);
	now = edgerm_agent_next_deadline_ms(&agent);
	edgerm_agent_on_timer(&agent, now);
	CHECK_EQ_INT(last_call(), 0);
	r.registered.update_ack = 0;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, now), 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_ACTIVE);

	/* The identity forgotten (edgerm forget) while a protected heartbeat is in flight: its
	 * answer, valid under the old context, is dropped; the agent registers afresh. */
	register_fresh();
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK(last_sealed);
	edgerm_agent_reset_identity(&agent, 5011);
	memset(&r, 0, sizeof(r));
	r.commands[0].ptr = rereg;
	r.commands[0].len = sizeof(rereg);
	r.commands_count = 1;
	CHECK(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5020) < 0);
	CHECK_EQ_INT(agent.persist.command_ack, 0);
	CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);

	/* A first registration is plain: an OSCORE answer to it is dropped. */
	register_fresh();
	edgerm_agent_reset_identity(&agent, 5010);
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK(!last_sealed && call.which == 4 && call.agent_id == 0);
	{
		uint8_t pt[16] = {EDGERM_COAP_CHANGED};

		last_kid[0] = 7, last_kid_len = 1, last_piv[0] = 1, last_piv_len = 1;
		int len = seal_answer(dgram, sizeof(dgram), EDGERM_COAP_ACK, last.mid, pt, 1, SECRET);

		CHECK(edgerm_agent_on_datagram(&agent, dgram, (size_t)len, 5020) < 0);
		CHECK_EQ_INT(agent.state, EDGERM_AGENT_REGISTERING);
	}
}

/* docs/protocol.md budgets: a steady heartbeat <= 32 bytes and a status update <= 40 bytes on
 * the wire, for any seq below 2^32 (a 4-byte Partial IV). */
static void test_oscore_sizes(void)
{
	register_fresh();
	agent.seq = 0xfffffff0u;
	agent.persist.seq_reserved = 0xfffffff0u;
	edgerm_agent_on_timer(&agent, 5010);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(last_piv_len, 4);
	CHECK(SENT_LEN(n_sent - 1) <= 32);
	printf("oscore: steady heartbeat %d bytes at a 4-byte Partial IV\n", (int)SENT_LEN(n_sent - 1));
	/* A launch: its STARTING status update goes out at once. */
	edgerm_agent_reply_t r;

	memset(&r, 0, sizeof(r));
	r.commands[0] = launch_cmd(0, 1, 4, true);
	r.commands_count = 1;
	CHECK_EQ_INT(answer(&r, SECRET, EDGERM_COAP_CHANGED, 5020), 0);
	CHECK_EQ_INT(last_call(), 0);
	CHECK_EQ_INT(call.which, 6);
	CHECK_EQ_INT(call.call.status.state, EDGERM_STARTING);
	CHECK(SENT_LEN(n_sent - 1) <= 40);
	printf("oscore: status update %d bytes\n", (int)SENT_LEN(n_sent - 1));
}

edgerm_agent_t *test_agent_active(const edgerm_persist_t *p)
{
	init_agent(p);
	agent.state = EDGERM_AGENT_ACTIVE;
	return &agent;
}

edgerm_agent_t *test_agent_current(void)
{
	return &agent;
}

size_t test_agent_sent(const uint8_t **d)
{
	*d = SENT(n_sent - 1);
	return n_sent ? SENT_LEN(n_sent - 1) : 0;
}

void suite_agent(void)
{
	test_oscore_link();
	test_oscore_sizes();
	test_registration_and_heartbeat();
	test_retransmission();
	test_bad_replies();
	test_launch_kill_publish();
	test_hash_mismatch_and_launch_failure();
	test_task_message_sanitized();
	test_module_blocks_retried_on_a_lossy_link();
	test_reboot_and_unauthenticated();
	test_seq_never_goes_back();
	test_reboot_keeps_unacknowledged_updates();
	test_separate_response();
	test_first_registration_vectors();
	test_registered_signed_otherwise_dropped();
	test_no_randomness();
	test_not_leader_and_silence_switch_master();
}
