/*
 * The little of CoAP (RFC 7252, RFC 7959 Block2) an EdgeRM agent needs, as a sans-IO codec in
 * caller buffers: build a request, parse a datagram. No allocation; the parser distrusts its
 * input and only ever reads inside [buf, buf + len).
 */
#ifndef EDGERM_COAP_H
#define EDGERM_COAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EDGERM_COAP_CON 0
#define EDGERM_COAP_NON 1
#define EDGERM_COAP_ACK 2
#define EDGERM_COAP_RST 3

#define EDGERM_COAP_GET 0x01
#define EDGERM_COAP_POST 0x02
#define EDGERM_COAP_FETCH 0x05
#define EDGERM_COAP_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))
#define EDGERM_COAP_CONTENT EDGERM_COAP_CODE(2, 5)
#define EDGERM_COAP_CHANGED EDGERM_COAP_CODE(2, 4)

#define EDGERM_COAP_OPT_OBSERVE 6
#define EDGERM_COAP_OPT_OSCORE 9
#define EDGERM_COAP_OPT_URI_PATH 11
#define EDGERM_COAP_OPT_CONTENT_FORMAT 12
#define EDGERM_COAP_OPT_BLOCK2 23
#define EDGERM_COAP_CF_CBOR 60

#define EDGERM_COAP_E_MALFORMED (-10)
#define EDGERM_COAP_E_NOSPACE (-11)

typedef struct {
	uint8_t type, code, tkl;
	uint16_t mid;
	uint8_t token[8];
	bool has_cf, has_block2, has_oscore, bad_critical;
	uint16_t cf;
	uint16_t oscore_len; /* the OSCORE option's value (RFC 8613 6.1), when has_oscore */
	const uint8_t *oscore;
	uint32_t block2; /* NUM << 4 | M << 3 | SZX */
	const uint8_t *payload;
	size_t payload_len;
} edgerm_coap_msg_t;

/* Parse one datagram. Unknown elective options are skipped; an unknown critical option sets
 * bad_critical (RFC 7252 section 5.4.1: the caller rejects the message), as does a second OSCORE
 * option. */
int edgerm_coap_parse_untrusted(const uint8_t *buf, size_t len, edgerm_coap_msg_t *out);

/* Options and payload from buf[pos..len) into m (the part of a datagram after its token, and the
 * plaintext of an OSCORE message after its inner code). Always core/src/coap.c, also where
 * Zephyr's library frames the datagrams: OSCORE's inner messages are not datagrams. */
int edgerm_coap_parse_options_untrusted(const uint8_t *buf, size_t len, size_t pos,
					edgerm_coap_msg_t *m);

/* Room an implementation of this header may keep in the builder (the Zephyr port keeps its
 * struct coap_packet there, see port/zephyr/coap_zephyr.c). */
#ifndef CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE
#ifdef CONFIG_EDGERM_COAP_ZEPHYR
#define CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE 48
#else
#define CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE 1
#endif
#endif

/* Request builder: header, then options in ascending number order, then the payload. */
typedef struct {
	uint8_t *buf;
	size_t cap, len;
	uint16_t last_opt;
	bool err;
	union {
		void *align_ptr;
		uint64_t align_u64;
		uint8_t bytes[CONFIG_EDGERM_COAP_BUILDER_IMPL_SIZE];
	} impl;
} edgerm_coap_builder_t;

void edgerm_coap_begin(edgerm_coap_builder_t *b, uint8_t *buf, size_t cap, uint8_t type,
		       uint8_t code, uint16_t mid, const uint8_t *token, uint8_t tkl);
void edgerm_coap_option(edgerm_coap_builder_t *b, uint16_t number, const uint8_t *value,
			size_t len);
void edgerm_coap_option_uint(edgerm_coap_builder_t *b, uint16_t number, uint32_t value);
void edgerm_coap_payload(edgerm_coap_builder_t *b, const uint8_t *data, size_t len);
/* The datagram's length, or EDGERM_COAP_E_NOSPACE. */
int edgerm_coap_end(edgerm_coap_builder_t *b);

/* An empty ACK or RST for message id `mid`: always 4 bytes. */
size_t edgerm_coap_empty(uint8_t out[4], uint8_t type, uint16_t mid);

#endif /* EDGERM_COAP_H */
