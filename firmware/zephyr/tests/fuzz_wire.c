/*
 * libFuzzer target for everything that parses bytes from the network: the CBOR scan, every
 * message decoder, the CoAP parser and the agent's datagram path (with a fake port; an agent
 * re-registering and one registering for the first time), plus the update queue a reboot
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
	*v = 0;
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

	queue_in = data, queue_in_len = len;
	edgerm_agent_init(&agent, &cfg, &p, 0);
	edgerm_agent_on_timer(&agent, 0);
	(void)edgerm_agent_on_datagram(&agent, data, len, 1);
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));

	/* And a first registration in flight (the Registered reply's nonce, the derived key). */
	edgerm_agent_init(&agent, &cfg, NULL, 0);
	edgerm_agent_on_timer(&agent, 0);
	(void)edgerm_agent_on_datagram(&agent, data, len, 1);
	return 0;
}
