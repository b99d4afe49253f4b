/*
 * proto/vectors/oscore.json (compiled into oscore_vectors.h at build time), byte for byte: RFC
 * 8613 Appendix C (contexts, requests, responses both ways), the EdgeRM link (context of agent 5,
 * kid_of, every call's plaintext, option and ciphertext, the heartbeats as whole datagrams the
 * agent itself sends, every reply accepted by the agent), and every must-refuse case: those for
 * the agent fed to it, those for the master run through the same primitives with the master's
 * rules (option, kid, Partial IV above the highest, tag).
 */
#include "edgerm/agent.h"
#include "edgerm/coap.h"
#include "edgerm/oscore.h"
#include "oscore_vectors.h"
#include "unit.h"

static size_t hx(const char *h, uint8_t *out)
{
	size_t n = 0;

	for (; h && h[0] && h[1]; h += 2) {
		unsigned v;

		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

static void same(const uint8_t *got, size_t len, const char *want, const char *what)
{
	uint8_t w[300];
	size_t n = hx(want, w);

	unit_checks++;
	if (n != len || memcmp(got, w, n) != 0) {
		unit_failures++;
		printf("FAIL oscore vector %s\n", what);
	}
}

static const struct ov_ctx *ctx_named(const char *name)
{
	for (const struct ov_ctx *c = ov_rfc_contexts; c->name; c++) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	CHECK(0);
	return ov_rfc_contexts;
}

/* The context of vector c, or its peer's (sender and recipient swapped). */
static void init_ctx(edgerm_oscore_ctx_t *o, const struct ov_ctx *c, bool peer)
{
	uint8_t secret[32], salt[16], idc[16], sid[8], rid[8];
	size_t sl = hx(c->secret, secret), al = hx(c->salt, salt), il = hx(c->id_ctx, idc);
	size_t a = hx(c->sid, sid), b = hx(c->rid, rid);

	CHECK_EQ_INT(edgerm_oscore_init(o, secret, sl, salt, al, c->id_ctx ? idc : NULL, il,
					peer ? rid : sid, peer ? b : a, peer ? sid : rid,
					peer ? a : b),
		     0);
}

static void rfc_contexts(void)
{
	for (const struct ov_ctx *c = ov_rfc_contexts; c->name; c++) {
		uint8_t secret[32], salt[16], idc[16], id[8], out[16];
		size_t sl = hx(c->secret, secret), al = hx(c->salt, salt), il = hx(c->id_ctx, idc);
		const uint8_t *ic = c->id_ctx ? idc : NULL;

		edgerm_oscore_derive(secret, sl, salt, al, ic, il, id, hx(c->sid, id), false, out);
		same(out, 16, c->skey, c->name);
		edgerm_oscore_derive(secret, sl, salt, al, ic, il, id, hx(c->rid, id), false, out);
		same(out, 16, c->rkey, c->name);
		edgerm_oscore_derive(secret, sl, salt, al, ic, il, NULL, 0, true, out);
		same(out, 13, c->civ, c->name);
	}
}

static void rfc_requests(void)
{
	for (const struct ov_req *q = ov_rfc_requests; q->name; q++) {
		edgerm_oscore_ctx_t o;
		uint8_t buf[64], opt[EDGERM_OSCORE_OPT_MAX], piv[5], aad[EDGERM_OSCORE_AAD_MAX];
		uint8_t nonce[13];
		size_t n = hx(q->plaintext, buf), pl = edgerm_oscore_piv((uint32_t)q->seq, piv);

		init_ctx(&o, ctx_named(q->ctx), false);
		int al = edgerm_oscore_aad(aad, o.sid, o.sid_len, piv, pl);

		same(aad, (size_t)al, q->aad, q->name);
		edgerm_oscore_nonce(o.common_iv, o.sid, o.sid_len, piv, pl, nonce);
		same(nonce, 13, q->nonce, q->name);
		int ol = edgerm_oscore_protect_request(&o, (uint32_t)q->seq, buf, n, opt);

		same(buf, n + 8, q->ciphertext, q->name);
		if (!q->kid_ctx) {
			/* (a kid context is not ours to send: C.6 checks the ciphertext only) */
			same(opt, (size_t)ol, q->option, q->name);
		}
	}
}

static void rfc_responses(void)
{
	for (const struct ov_resp *q = ov_rfc_responses; q->name; q++) {
		const struct ov_ctx *server = ctx_named(q->ctx);
		edgerm_oscore_ctx_t srv, cli;
		uint8_t buf[64], opt[8], piv[5], rpiv[5], aad[EDGERM_OSCORE_AAD_MAX], nonce[13];
		uint8_t kid[8];
		size_t kl = hx(q->request_kid, kid);
		size_t pl = edgerm_oscore_piv((uint32_t)q->request_piv, piv);
		size_t ol = hx(q->option, opt);

		init_ctx(&srv, server, false);
		init_ctx(&cli, server, true);
		int al = edgerm_oscore_aad(aad, kid, kl, piv, pl);

		same(aad, (size_t)al, q->aad, q->name);
		if (q->own_piv >= 0) {
			size_t rl = edgerm_oscore_piv((uint32_t)q->own_piv, rpiv);

			edgerm_oscore_nonce(srv.common_iv, srv.sid, srv.sid_len, rpiv, rl, nonce);
		} else {
			edgerm_oscore_nonce(srv.common_iv, kid, kl, piv, pl, nonce);
		}
		same(nonce, 13, q->nonce, q->name);
		/* The server seals ... */
		size_t n = hx(q->plaintext, buf);

		CHECK_EQ_INT(edgerm_ccm_seal(&srv.sender_key, nonce, aad, (size_t)al, buf, n), 0);
		same(buf, n + 8, q->ciphertext, q->name);
		/* ... and the client opens it as the response to its request. */
		n = hx(q->ciphertext, buf);
		int got = edgerm_oscore_unprotect_response(&cli, (uint32_t)q->request_piv, opt, ol,
							   buf, n);

		CHECK(got > 0);
		same(buf, got > 0 ? (size_t)got : 0, q->plaintext, q->name);
	}
}

static void edgerm_context(edgerm_oscore_ctx_t *agent_ctx, edgerm_oscore_ctx_t *master_ctx)
{
	uint8_t secret[16], kid[8], out[16];
	size_t kl = hx(ov_kid, kid);

	hx(ov_secret, secret);
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, kid, kl, false, out);
	same(out, 16, ov_sender_key, "edgerm sender key");
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, NULL, 0, false, out);
	same(out, 16, ov_recipient_key, "edgerm recipient key");
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, NULL, 0, true, out);
	same(out, 13, ov_common_iv, "edgerm common iv");
	edgerm_oscore_init(agent_ctx, secret, 16, NULL, 0, NULL, 0, kid, kl, NULL, 0);
	edgerm_oscore_init(master_ctx, secret, 16, NULL, 0, NULL, 0, NULL, 0, kid, kl);
	for (size_t i = 0; ov_kid_of[i].kid; i++) {
		uint8_t k[5];

		same(k, edgerm_oscore_piv(ov_kid_of[i].id, k), ov_kid_of[i].kid, "kid_of");
	}
}

/* The master's rules for a request (edgerm_master): OSCORE option with kid and Partial IV (else
 * 4.02), the kid of agent 5 (else unknown), the Partial IV above the highest accepted (else a
 * replay), the tag. True when it would be accepted. */
static bool master_accepts(const edgerm_oscore_ctx_t *mc, const char *datagram, long highest)
{
	uint8_t dg[300], nonce[13], aad[EDGERM_OSCORE_AAD_MAX];
	size_t len = hx(datagram, dg);
	edgerm_coap_msg_t m;
	edgerm_oscore_opt_t o;

	if (edgerm_coap_parse_untrusted(dg, len, &m) < 0 || !m.has_oscore || m.bad_critical ||
	    edgerm_oscore_option_parse_untrusted(m.oscore, m.oscore_len, &o) < 0 || !o.has_kid ||
	    o.piv_len == 0 || o.kid_len != mc->rid_len || memcmp(o.kid, mc->rid, o.kid_len) != 0) {
		return false;
	}
	uint32_t piv = 0;

	for (size_t i = 0; i < o.piv_len; i++) {
		piv = piv << 8 | o.piv[i];
	}
	if ((long)piv <= highest || m.payload_len == 0) {
		return false;
	}
	edgerm_oscore_nonce(mc->common_iv, o.kid, o.kid_len, o.piv, o.piv_len, nonce);
	int al = edgerm_oscore_aad(aad, o.kid, o.kid_len, o.piv, o.piv_len);

	return edgerm_ccm_open(&mc->recipient_key, nonce, aad, (size_t)al,
			       dg + (m.payload - dg), m.payload_len) >= 0;
}

/* The agent, ACTIVE with identity 5, sends its heartbeat at `seq` (MID and token of the
 * vectors); the datagram it sent. */
static size_t agent_heartbeat(long seq, const uint8_t **sent)
{
	edgerm_persist_t p;

	memset(&p, 0, sizeof(p));
	p.agent_id = ov_agent_id;
	hx(ov_secret, p.secret);
	p.seq_reserved = (uint32_t)seq + 1000;
	edgerm_agent_t *a = test_agent_active(&p);

	a->seq = (uint32_t)seq;
	a->x_mid = (uint16_t)(ov_mid - 1);
	a->x_token = (uint8_t)(ov_token - 1);
	edgerm_agent_on_timer(a, 1);
	return test_agent_sent(sent);
}

static const struct ov_call *call_named(const char *name)
{
	for (const struct ov_call *c = ov_calls; c->name; c++) {
		if (strcmp(c->name, name) == 0) {
			return c;
		}
	}
	return NULL;
}

static void edgerm_calls_and_replies(void)
{
	edgerm_oscore_ctx_t ac, mc;

	edgerm_context(&ac, &mc);
	for (const struct ov_call *c = ov_calls; c->name; c++) {
		uint8_t buf[300], opt[EDGERM_OSCORE_OPT_MAX];
		size_t n = hx(c->plaintext, buf);
		int ol = edgerm_oscore_protect_request(&ac, (uint32_t)c->seq, buf, n, opt);

		same(opt, (size_t)ol, c->option, c->name);
		same(buf, n + 8, c->ciphertext, c->name);
		CHECK(master_accepts(&mc, c->datagram, 0));
		if (strcmp(c->payload, "a105a0") == 0) {
			/* A steady heartbeat: the agent's own datagram, byte for byte. */
			const uint8_t *d;
			size_t len = agent_heartbeat(c->seq, &d);

			same(d, len, c->datagram, c->name);
		}
	}
	/* Every reply, to the agent that sent its request: accepted, nothing counted as bad. */
	for (const struct ov_reply *r = ov_replies; r->name; r++) {
		const struct ov_call *c = call_named(r->request);
		const uint8_t *d;
		uint8_t dg[300];

		CHECK(c != NULL);
		if (!c || strcmp(c->payload, "a105a0") != 0) {
			continue; /* (only heartbeats are driven through the agent) */
		}
		agent_heartbeat(c->seq, &d);
		size_t len = hx(r->datagram, dg);
		edgerm_agent_t *ag = test_agent_current();
		uint32_t acks = ag->persist.command_ack;

		CHECK_EQ_INT(edgerm_agent_on_datagram(ag, dg, len, 2), 0);
		CHECK_EQ_INT(ag->stats.replies_bad_mac + ag->stats.replies_bad, 0);
		if (r->own_piv >= 0) {
			/* heartbeat_seq70000_reregister_master_piv1: its ReRegister applied */
			CHECK_EQ_INT(ag->persist.command_ack, acks + 1);
			CHECK_EQ_INT(ag->state, EDGERM_AGENT_REREGISTERING);
		}
	}
}

/* Observe on c and a module block (oscore.json's extra lists, when present): every request
 * sealed byte for byte and accepted by the master's rules, every answer (the master's own
 * Partial IVs included) opened by the agent's context; the module block GET is the agent's own
 * datagram, and its answer lands in the module cache. */
static void edgerm_extras(void)
{
	edgerm_oscore_ctx_t ac, mc;
	int n_calls = 0, n_replies = 0;

	edgerm_context(&ac, &mc);
	for (const struct ov_call *c = ov_extra_calls; c->name; c++, n_calls++) {
		uint8_t buf[300], opt[EDGERM_OSCORE_OPT_MAX];
		size_t n = hx(c->plaintext, buf);
		int ol = edgerm_oscore_protect_request(&ac, (uint32_t)c->seq, buf, n, opt);

		same(opt, (size_t)ol, c->option, c->name);
		same(buf, n + 8, c->ciphertext, c->name);
		CHECK(master_accepts(&mc, c->datagram, 0));
	}
	for (const struct ov_reply *r = ov_extra_replies; r->name; r++, n_replies++) {
		uint8_t dg[300];
		size_t len = hx(r->datagram, dg);
		edgerm_coap_msg_t m;

		CHECK_EQ_INT(edgerm_coap_parse_untrusted(dg, len, &m), 0);
		CHECK(m.has_oscore && m.payload_len > 8);
		uint8_t *ct = dg + (m.payload - dg);
		int got = edgerm_oscore_unprotect_response(&ac, (uint32_t)r->request_piv, m.oscore,
							   m.oscore_len, ct, m.payload_len);

		CHECK(got > 0);
		same(ct, got > 0 ? (size_t)got : 0, r->plaintext, r->name);
	}
	for (const struct ov_call *c = ov_extra_calls; c->name; c++) {
		if (strncmp(c->name, "module_get", 10) != 0) {
			continue;
		}
		/* The agent downloading module 00 01 .. 1f in 64-byte blocks, the first one held:
		 * it asks for block 1 (the vector's Block2 12). */
		edgerm_persist_t p;
		const uint8_t *d;

		memset(&p, 0, sizeof(p));
		p.agent_id = ov_agent_id;
		hx(ov_secret, p.secret);
		p.seq_reserved = (uint32_t)c->seq + 1000;
		edgerm_agent_t *a = test_agent_active(&p);

		for (int i = 0; i < 32; i++) {
			a->modules[0].sha256[i] = (uint8_t)i;
		}
		a->modules[0].state = 1; /* fetching */
		a->modules[0].size = 512;
		a->modules[0].have = 64;
		a->fetch_slot = 0;
		a->fetch_szx = 2;
		a->seq = (uint32_t)c->seq;
		a->x_mid = (uint16_t)(ov_mid - 1);
		a->x_token = (uint8_t)(ov_token - 1);
		edgerm_agent_on_timer(a, 1);
		size_t len = test_agent_sent(&d);

		same(d, len, c->datagram, c->name);
		for (const struct ov_reply *r = ov_extra_replies; r->name; r++) {
			uint8_t dg[300];

			if (strcmp(r->request, c->name) != 0) {
				continue;
			}
			len = hx(r->datagram, dg);
			CHECK_EQ_INT(edgerm_agent_on_datagram(a, dg, len, 2), 0);
			CHECK_EQ_INT(a->modules[0].have, 128);
			CHECK_EQ_INT(a->cfg.module_mem[64], 0x40);
			CHECK_EQ_INT(a->cfg.module_mem[127], 0x7f);
			CHECK_EQ_INT(a->stats.replies_bad_mac + a->stats.replies_bad, 0);
		}
		a->fetch_slot = -1; /* (the fake module stays out of later tests) */
		a->modules[0].state = 0;
	}
	printf("oscore vectors: %d extra requests, %d extra answers\n", n_calls, n_replies);
}

static void must_refuse(void)
{
	edgerm_oscore_ctx_t ac, mc;
	int agent_cases = 0, master_cases = 0;

	edgerm_context(&ac, &mc);
	for (const struct ov_refuse *f = ov_refuse; f->name; f++) {
		if (strcmp(f->receiver, "master") == 0) {
			master_cases++;
			if (master_accepts(&mc, f->datagram, f->highest)) {
				unit_failures++;
				printf("FAIL oscore must_refuse %s accepted\n", f->name);
			}
			unit_checks++;
			continue;
		}
		/* The agent, waiting for the answer to its request at request_piv. */
		const uint8_t *d;
		uint8_t dg[300];
		size_t len = hx(f->datagram, dg);

		agent_cases++;
		agent_heartbeat(f->request_piv, &d);
		edgerm_agent_t *a = test_agent_current();

		if (strcmp(f->error, "Replay") == 0) {
			/* The master's Partial IV seen before: here the very answer the agent already
			 * took for this request. The second copy finds no exchange and changes nothing
			 * (the agent binds each answer to its one request in flight). */
			uint8_t again[300];

			memcpy(again, dg, len);
			CHECK_EQ_INT(edgerm_agent_on_datagram(a, dg, len, 2), 0);
			edgerm_agent_t before = *a;

			(void)edgerm_agent_on_datagram(a, again, len, 3);
			CHECK_EQ_INT(a->persist.command_ack, before.persist.command_ack);
			CHECK_EQ_INT(a->state, before.state);
			CHECK_EQ_INT(a->stats.commands_applied, before.stats.commands_applied);
			continue;
		}
		uint32_t acks = a->persist.command_ack;

		CHECK(edgerm_agent_on_datagram(a, dg, len, 2) < 0);
		CHECK_EQ_INT(a->stats.replies_bad_mac, 1);
		CHECK_EQ_INT(a->persist.command_ack, acks);
		CHECK_EQ_INT(a->state, EDGERM_AGENT_ACTIVE);
	}
	CHECK(agent_cases >= 3 && master_cases >= 10);
	printf("oscore vectors: %d must-refuse cases for the master, %d for the agent refused\n",
	       master_cases, agent_cases);
}

void suite_oscore_vectors(void)
{
	rfc_contexts();
	rfc_requests();
	rfc_responses();
	edgerm_calls_and_replies();
	edgerm_extras();
	must_refuse();
	printf("oscore vectors: RFC 8613 C.1-C.8 and the EdgeRM link checked\n");
}
