/*
 * libFuzzer target for everything that parses bytes from the network: the CBOR scan, every
 * message decoder, the CoAP parser and the agent's datagram path (with a fake port; an agent
 * re-registering, the same agent given the input as a verified OSCORE answer's plaintext, and
 * one registering for the first time), plus the update queue a reboot
 * reads back from flash.
 *
 * Properties beyond "no crash, no sanitizer report": a message that decodes re-encodes, the
 * re-encoding decodes again, and encoding is then stable (decode . encode is idempotent).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edgerm/agent.h"
#include "edgerm/coap.h"
#include "edgerm/oscore.h"
#include "edgerm/wire.h"

uint64_t edgerm_port_now_ms(void)
{
	return 0;
}
int edgerm_port_random(void *ctx, uint8_t *buf, size_t len)
{
	(void)ctx;
	memset(buf, 0x5a, len);
	return 0;
}
int edgerm_port_send(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx, (void)buf, (void)len;
	return 0;
}
int edgerm_port_persist(void *ctx, const edgerm_persist_t *p)
{
	(void)ctx, (void)p;
	return 0;
}
/* The saved update queue a reboot reads back is untrusted too: it is the fuzz input. */
static const uint8_t *queue_in;
static size_t queue_in_len;

int edgerm_port_queue_save(void *ctx, const uint8_t *rec, size_t len)
{
	(void)ctx, (void)rec, (void)len;
	return 0;
}
int edgerm_port_queue_load(void *ctx, uint8_t *rec, size_t cap)
{
	(void)ctx;
	if (queue_in_len > cap) {
		return -1;
	}
	memcpy(rec, queue_in, queue_in_len);
	return (int)queue_in_len;
}
int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *s, char *msg, size_t cap)
{
	(void)ctx, (void)s, (void)msg, (void)cap;
	return 0;
}
int edgerm_port_task_kill(void *ctx, uint32_t task)
{
	(void)ctx, (void)task;
	return 0;
}
int edgerm_port_switch_master(void *ctx, const uint8_t *leader, size_t len)
{
	(void)ctx, (void)leader, (void)len;
	return 0;
}
int edgerm_port_sensor_read(void *ctx, const char *n, size_t l, double *v)
{
	(void)ctx, (void)n, (void)l;
	if (v) {
		*v = 0;
	}
	return 0;
}
int edgerm_port_actuator_set(void *ctx, const char *n, size_t l, double v)
{
	(void)ctx, (void)n, (void)l, (void)v;
	return 0;
}

static edgerm_wire_any_t a, b;
static uint8_t enc1[4096], enc2[4096];
static edgerm_agent_t agent;
static uint8_t modules[2 * 512];

static void roundtrip(const edgerm_wire_type_t *t, const uint8_t *data, size_t len)
{
	if (t->decode(data, len, &a) < 0) {
		return;
	}
	int n1 = t->encode(&a, enc1, sizeof(enc1));

	if (n1 < 0) {
		abort(); /* what decoded must encode */
	}
	if (t->decode(enc1, (size_t)n1, &b) < 0) {
		abort();
	}
	int n2 = t->encode(&b, enc2, sizeof(enc2));

	if (n2 != n1 || memcmp(enc1, enc2, (size_t)n1) != 0) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	(void)edgerm_wire_check_untrusted(data, len);
	for (const edgerm_wire_type_t *t = edgerm_wire_types; t->name; t++) {
		roundtrip(t, data, len);
	}
	edgerm_coap_msg_t m;

	(void)edgerm_coap_parse_untrusted(data, len, &m);

	/* The agent, mid-exchange, fed the input as a datagram. */
	static const edgerm_persist_t p = {7, {1, 2, 3}, 100, 0};
	edgerm_agent_config_t cfg = {.name = "f", .token = "t", .cpus = 1, .module_mem = modules,
				     .module_slot_size = 512, .module_slots = 2};

	/* The agent decrypts in place: it gets a copy. */
	static uint8_t dg[2048];

	if (len > sizeof(dg) - 32) {
		return 0;
	}
	queue_in = data, queue_in_len = len;
	edgerm_agent_init(&agent, &cfg, &p, 0);
	edgerm_agent_on_timer(&agent, 0);
	memcpy(dg, data, len);
	(void)edgerm_agent_on_datagram(&agent, dg, len, 1);
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));

	/* The input as the plaintext of a verified OSCORE answer to the re-registration in flight
	 * (inner code, options, payload): the inner parser and everything behind it. */
	edgerm_agent_init(&agent, &cfg, &p, 0);
	edgerm_agent_on_timer(&agent, 0);
	if (len > 0) {
		edgerm_oscore_ctx_t m;
		uint8_t kid = 7, piv[5], nonce[13], aad[EDGERM_OSCORE_AAD_MAX];
		size_t pl = edgerm_oscore_piv(agent.x_seq, piv);
		int al = edgerm_oscore_aad(aad, &kid, 1, piv, pl);

		(void)edgerm_oscore_init(&m, p.secret, 16, NULL, 0, NULL, 0, NULL, 0, &kid, 1);
		(void)edgerm_oscore_nonce(m.common_iv, &kid, 1, piv, pl, nonce);
		/* ACK 2.04, the agent's token and message id, an empty OSCORE option. */
		dg[0] = 0x61, dg[1] = 0x44, dg[2] = (uint8_t)(agent.x_mid >> 8);
		dg[3] = (uint8_t)agent.x_mid, dg[4] = agent.x_token, dg[5] = 0x90, dg[6] = 0xff;
		memcpy(dg + 7, data, len);
		(void)edgerm_ccm_seal(&m.sender_key, nonce, aad, (size_t)al, dg + 7, len);
		(void)edgerm_agent_on_datagram(&agent, dg, 7 + len + 8, 1);
	}

	/* And a first registration in flight (the Registered reply's nonce, the derived key). */
	edgerm_agent_init(&agent, &cfg, NULL, 0);
	edgerm_agent_on_timer(&agent, 0);
	memcpy(dg, data, len);
	(void)edgerm_agent_on_datagram(&agent, dg, len, 1);
	return 0;
}
