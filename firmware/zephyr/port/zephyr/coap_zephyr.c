/*
 * edgerm/coap.h's builder on Zephyr's CoAP library (subsys/net/lib/coap): the agent core builds
 * its datagrams with coap_packet_init/coap_packet_append_* instead of core/src/coap.c's builder.
 * Selected by CONFIG_EDGERM_COAP_ZEPHYR. Parsing stays core/src/coap.c's (compiled in either
 * case): it also reads OSCORE's decrypted inner messages, which are not datagrams, and it hands
 * back the OSCORE option's value in place. The semantics are those of the portable builder,
 * which the host tests pin down.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/net/coap.h>
#include <zephyr/sys/util.h>

#include "edgerm/coap.h"

BUILD_ASSERT(sizeof(struct coap_packet) <= CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE,
	     "raise CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE for this Zephyr's struct coap_packet");

static struct coap_packet *pkt(edgerm_coap_builder_t *b)
{
	return (struct coap_packet *)(void *)b->impl.bytes;
}

void edgerm_coap_begin(edgerm_coap_builder_t *b, uint8_t *buf, size_t cap, uint8_t type,
		       uint8_t code, uint16_t mid, const uint8_t *token, uint8_t tkl)
{
	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->last_opt = 0;
	b->err = cap > UINT16_MAX ||
		 coap_packet_init(pkt(b), buf, (uint16_t)cap, COAP_VERSION_1, type, tkl, token, code,
				  mid) < 0;
}

void edgerm_coap_option(edgerm_coap_builder_t *b, uint16_t number, const uint8_t *value,
			size_t len)
{
	if (b->err || number < b->last_opt || len > UINT16_MAX ||
	    coap_packet_append_option(pkt(b), number, value, (uint16_t)len) < 0) {
		b->err = true;
		return;
	}
	b->last_opt = number;
}

void edgerm_coap_option_uint(edgerm_coap_builder_t *b, uint16_t number, uint32_t value)
{
	if (b->err || number < b->last_opt ||
	    coap_append_option_int(pkt(b), number, (unsigned int)value) < 0) {
		b->err = true;
		return;
	}
	b->last_opt = number;
}

void edgerm_coap_payload(edgerm_coap_builder_t *b, const uint8_t *data, size_t len)
{
	if (b->err || len == 0) {
		return;
	}
	if (len > UINT16_MAX || coap_packet_append_payload_marker(pkt(b)) < 0 ||
	    coap_packet_append_payload(pkt(b), data, (uint16_t)len) < 0) {
		b->err = true;
	}
}

int edgerm_coap_end(edgerm_coap_builder_t *b)
{
	if (b->err) {
		return EDGERM_COAP_E_NOSPACE;
	}
	b->len = pkt(b)->offset;
	return (int)b->len;
}

size_t edgerm_coap_empty(uint8_t out[4], uint8_t type, uint16_t mid)
{
	struct coap_packet cpkt;

	(void)coap_packet_init(&cpkt, out, 4, COAP_VERSION_1, type, 0, NULL, COAP_CODE_EMPTY, mid);
	return 4;
}
