/*
 * edgerm/coap.h on Zephyr's CoAP library (subsys/net/lib/coap): the agent core builds and
 * parses its datagrams with coap_packet_init/coap_packet_parse instead of core/src/coap.c.
 * Selected by CONFIG_EDGERM_COAP_ZEPHYR. The semantics are those of the portable codec, which
 * the host tests pin down: an unknown critical option sets bad_critical, an empty message must be
 * exactly 4 bytes, a payload marker needs a payload.
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

static bool known_option(uint16_t n)
{
	return n == COAP_OPTION_OBSERVE || n == COAP_OPTION_CONTENT_FORMAT ||
	       n == COAP_OPTION_BLOCK2 || n == COAP_OPTION_URI_PATH;
}

int edgerm_coap_parse_untrusted(const uint8_t *buf, size_t len, edgerm_coap_msg_t *m)
{
	struct coap_packet cpkt;
	struct coap_option opts[8];
	uint16_t plen = 0;

	memset(m, 0, sizeof(*m));
	if (len < 4 || len > UINT16_MAX) {
		return EDGERM_COAP_E_MALFORMED;
	}
	/* coap_packet_parse does not write to the data; its signature is not const. */
	int r = coap_packet_parse(&cpkt, (uint8_t *)buf, (uint16_t)len, opts, ARRAY_SIZE(opts));

	if (r < 0 || coap_header_get_version(&cpkt) != COAP_VERSION_1) {
		return EDGERM_COAP_E_MALFORMED;
	}
	m->type = coap_header_get_type(&cpkt);
	m->code = coap_header_get_code(&cpkt);
	m->mid = coap_header_get_id(&cpkt);
	m->tkl = coap_header_get_token(&cpkt, m->token);
	if (m->code == 0 && len != 4) {
		return EDGERM_COAP_E_MALFORMED;
	}
	/* opts[] holds the first options in order (unused entries stay zeroed: option number 0
	 * is reserved, so delta 0 marks the end). An unknown critical one makes the message
	 * unusable for us (RFC 7252 section 5.4.1). */
	for (size_t i = 0; i < ARRAY_SIZE(opts) && opts[i].delta != 0; i++) {
		if ((opts[i].delta & 1) && !known_option(opts[i].delta)) {
			m->bad_critical = true;
		}
	}
	/* The two options we read, wherever they are. */
	struct coap_option o;

	if (coap_find_options(&cpkt, COAP_OPTION_BLOCK2, &o, 1) == 1 && o.len <= 3) {
		m->has_block2 = true;
		m->block2 = (uint32_t)coap_option_value_to_int(&o);
	}
	if (coap_find_options(&cpkt, COAP_OPTION_CONTENT_FORMAT, &o, 1) == 1 && o.len <= 2) {
		m->has_cf = true;
		m->cf = (uint16_t)coap_option_value_to_int(&o);
	}
	m->payload = coap_packet_get_payload(&cpkt, &plen);
	m->payload_len = m->payload ? plen : 0;
	if (m->payload_len == 0) {
		m->payload = NULL;
	}
	return 0;
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
