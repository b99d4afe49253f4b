/*
 * CoAP message codec (RFC 7252 section 3, Block2 of RFC 7959): header, token, options as
 * delta/length nibbles with their 13/14 extensions, payload after 0xFF. With
 * CONFIG_EDGERM_COAP_ZEPHYR the builder is Zephyr's library (port/zephyr/coap_zephyr.c) and
 * only the parser is compiled here (it also reads OSCORE's decrypted inner messages).
 */
#include <string.h>

#include "edgerm/coap.h"

/* Options this agent understands in a response; other critical (odd) ones make it unusable. */
static bool known_option(uint32_t n)
{
	return n == EDGERM_COAP_OPT_OBSERVE || n == EDGERM_COAP_OPT_CONTENT_FORMAT ||
	       n == EDGERM_COAP_OPT_BLOCK2 || n == EDGERM_COAP_OPT_URI_PATH ||
	       n == EDGERM_COAP_OPT_OSCORE;
}

/* Extended delta or length (RFC 7252 section 3.1). */
static int ext_untrusted(const uint8_t *buf, size_t len, size_t *pos, uint32_t nibble,
			 uint32_t *out)
{
	if (nibble < 13) {
		*out = nibble;
	} else if (nibble == 13) {
		if (*pos >= len) {
			return EDGERM_COAP_E_MALFORMED;
		}
		*out = 13u + buf[(*pos)++];
	} else if (nibble == 14) {
		if (len - *pos < 2) {
			return EDGERM_COAP_E_MALFORMED;
		}
		*out = 269u + ((uint32_t)buf[*pos] << 8 | buf[*pos + 1]);
		*pos += 2;
	} else {
		return EDGERM_COAP_E_MALFORMED;
	}
	return 0;
}

static uint32_t uint_value(const uint8_t *v, size_t n)
{
	uint32_t x = 0;

	for (size_t i = 0; i < n; i++) {
		x = x << 8 | v[i];
	}
	return x;
}

int edgerm_coap_parse_untrusted(const uint8_t *buf, size_t len, edgerm_coap_msg_t *m)
{
	size_t pos = 4;

	memset(m, 0, sizeof(*m));
	if (len < 4 || (buf[0] >> 6) != 1) {
		return EDGERM_COAP_E_MALFORMED;
	}
	m->type = (buf[0] >> 4) & 3;
	m->tkl = buf[0] & 0x0f;
	m->code = buf[1];
	m->mid = (uint16_t)(buf[2] << 8 | buf[3]);
	if (m->tkl > 8 || len - pos < m->tkl) {
		return EDGERM_COAP_E_MALFORMED;
	}
	memcpy(m->token, buf + pos, m->tkl);
	pos += m->tkl;
	if (m->code == 0 && (len > pos || m->tkl != 0)) {
		return EDGERM_COAP_E_MALFORMED; /* an empty message is exactly 4 bytes */
	}
	return edgerm_coap_parse_options_untrusted(buf, len, pos, m);
}

int edgerm_coap_parse_options_untrusted(const uint8_t *buf, size_t len, size_t pos,
					edgerm_coap_msg_t *m)
{
	uint32_t number = 0;

	while (pos < len) {
		uint8_t b = buf[pos++];
		uint32_t delta, olen;

		if (b == 0xff) {
			if (pos == len) {
				return EDGERM_COAP_E_MALFORMED; /* marker without payload */
			}
			m->payload = buf + pos;
			m->payload_len = len - pos;
			return 0;
		}
		if (ext_untrusted(buf, len, &pos, b >> 4, &delta) < 0 ||
		    ext_untrusted(buf, len, &pos, b & 0x0f, &olen) < 0 || olen > len - pos) {
			return EDGERM_COAP_E_MALFORMED;
		}
		number += delta;
		if (number > 0xffff) {
			return EDGERM_COAP_E_MALFORMED;
		}
		const uint8_t *v = buf + pos;

		pos += olen;
		if (number == EDGERM_COAP_OPT_CONTENT_FORMAT && olen <= 2) {
			m->has_cf = true;
			m->cf = (uint16_t)uint_value(v, olen);
		} else if (number == EDGERM_COAP_OPT_BLOCK2 && olen <= 3) {
			m->has_block2 = true;
			m->block2 = uint_value(v, olen);
		} else if (number == EDGERM_COAP_OPT_OSCORE) {
			/* Not repeatable (RFC 8613 2): a second one makes the message unusable. */
			m->bad_critical |= m->has_oscore;
			m->has_oscore = true;
			m->oscore = v;
			m->oscore_len = (uint16_t)olen;
		} else if ((number & 1) && !known_option(number)) {
			m->bad_critical = true;
		}
	}
	return 0;
}

#ifndef CONFIG_EDGERM_COAP_ZEPHYR
void edgerm_coap_begin(edgerm_coap_builder_t *b, uint8_t *buf, size_t cap, uint8_t type,
		       uint8_t code, uint16_t mid, const uint8_t *token, uint8_t tkl)
{
	b->buf = buf;
	b->cap = cap;
	b->len = 0;
	b->last_opt = 0;
	b->err = cap < 4u + tkl || tkl > 8;
	if (b->err) {
		return;
	}
	buf[0] = (uint8_t)(0x40 | type << 4 | tkl);
	buf[1] = code;
	buf[2] = (uint8_t)(mid >> 8);
	buf[3] = (uint8_t)mid;
	if (tkl) {
		memcpy(buf + 4, token, tkl);
	}
	b->len = 4u + tkl;
}

static void put_nibble_ext(uint8_t *ext, size_t *n, uint32_t v, uint8_t *nibble)
{
	if (v < 13) {
		*nibble = (uint8_t)v;
	} else if (v < 269) {
		*nibble = 13;
		ext[(*n)++] = (uint8_t)(v - 13);
	} else {
		*nibble = 14;
		ext[(*n)++] = (uint8_t)((v - 269) >> 8);
		ext[(*n)++] = (uint8_t)(v - 269);
	}
}

void edgerm_coap_option(edgerm_coap_builder_t *b, uint16_t number, const uint8_t *value,
			size_t len)
{
	uint8_t hdr[5];
	size_t n = 1;
	uint8_t dn, ln;

	if (b->err || number < b->last_opt || len > 1034) {
		b->err = true;
		return;
	}
	put_nibble_ext(hdr, &n, (uint32_t)(number - b->last_opt), &dn);
	put_nibble_ext(hdr, &n, (uint32_t)len, &ln);
	hdr[0] = (uint8_t)(dn << 4 | ln);
	if (b->cap - b->len < n + len) {
		b->err = true;
		return;
	}
	memcpy(b->buf + b->len, hdr, n);
	if (len) {
		memcpy(b->buf + b->len + n, value, len);
	}
	b->len += n + len;
	b->last_opt = number;
}

void edgerm_coap_option_uint(edgerm_coap_builder_t *b, uint16_t number, uint32_t value)
{
	uint8_t v[4];
	size_t n = 0;

	/* Shortest form: zero is the empty option. */
	for (int shift = 24; shift >= 0; shift -= 8) {
		if (n > 0 || (value >> shift) != 0) {
			v[n++] = (uint8_t)(value >> shift);
		}
	}
	edgerm_coap_option(b, number, v, n);
}

void edgerm_coap_payload(edgerm_coap_builder_t *b, const uint8_t *data, size_t len)
{
	if (b->err || len == 0) {
		return;
	}
	if (b->cap - b->len < len + 1) {
		b->err = true;
		return;
	}
	b->buf[b->len++] = 0xff;
	memcpy(b->buf + b->len, data, len);
	b->len += len;
}

int edgerm_coap_end(edgerm_coap_builder_t *b)
{
	return b->err ? EDGERM_COAP_E_NOSPACE : (int)b->len;
}

size_t edgerm_coap_empty(uint8_t out[4], uint8_t type, uint16_t mid)
{
	out[0] = (uint8_t)(0x40 | type << 4);
	out[1] = 0;
	out[2] = (uint8_t)(mid >> 8);
	out[3] = (uint8_t)mid;
	return 4;
}
#endif /* !CONFIG_EDGERM_COAP_ZEPHYR */
