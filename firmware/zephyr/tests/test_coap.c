/* CoAP framing: exact bytes of what the agent builds, and the parser on hand-annotated PDUs. */
#include "edgerm/coap.h"
#include "unit.h"

static void test_build_heartbeat_frame(void)
{
	uint8_t buf[64];
	uint8_t tok = 0x2a;
	edgerm_coap_builder_t b;
	static const uint8_t payload[] = {0xa0};

	edgerm_coap_begin(&b, buf, sizeof(buf), EDGERM_COAP_CON, EDGERM_COAP_POST, 0x1234, &tok, 1);
	edgerm_coap_option(&b, EDGERM_COAP_OPT_URI_PATH, (const uint8_t *)"a", 1);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_CONTENT_FORMAT, 60);
	edgerm_coap_payload(&b, payload, 1);
	/* 41: ver 1, CON, TKL 1 | 02 POST | 12 34 mid | 2a token | b1 'a' (delta 11, len 1) |
	 * 11 3c (delta 1 = Content-Format, len 1, 60) | ff | a0 */
	static const uint8_t want[] = {0x41, 0x02, 0x12, 0x34, 0x2a, 0xb1, 'a',
				       0x11, 0x3c, 0xff, 0xa0};
	CHECK_EQ_INT(edgerm_coap_end(&b), sizeof(want));
	CHECK_MEM(buf, want, sizeof(want));
}

static void test_build_block2_get(void)
{
	uint8_t buf[128], hex[64];
	edgerm_coap_builder_t b;

	memset(hex, 'f', sizeof(hex));
	edgerm_coap_begin(&b, buf, sizeof(buf), EDGERM_COAP_CON, EDGERM_COAP_GET, 1, NULL, 0);
	edgerm_coap_option(&b, EDGERM_COAP_OPT_URI_PATH, (const uint8_t *)"m", 1);
	edgerm_coap_option(&b, EDGERM_COAP_OPT_URI_PATH, hex, 64);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_BLOCK2, 3u << 4 | 4);
	int n = edgerm_coap_end(&b);
	/* 64-byte value: length nibble 13, extension 64 - 13 = 51. Block2: delta 12, 1 byte 0x34 */
	CHECK_EQ_INT(n, 4 + 2 + 2 + 64 + 2);
	CHECK_EQ_INT(buf[6], 0x0d);
	CHECK_EQ_INT(buf[7], 51);
	CHECK_EQ_INT(buf[8 + 64], 0xc1);
	CHECK_EQ_INT(buf[9 + 64], 0x34);

	edgerm_coap_msg_t m;

	CHECK_EQ_INT(edgerm_coap_parse_untrusted(buf, (size_t)n, &m), 0);
	CHECK(m.has_block2 && m.block2 == 0x34);
	/* Out of order options and too small buffers are refused by the builder. */
	edgerm_coap_begin(&b, buf, sizeof(buf), EDGERM_COAP_CON, EDGERM_COAP_GET, 1, NULL, 0);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_BLOCK2, 1);
	edgerm_coap_option_uint(&b, EDGERM_COAP_OPT_CONTENT_FORMAT, 1);
	CHECK(edgerm_coap_end(&b) < 0);
	edgerm_coap_begin(&b, buf, 6, EDGERM_COAP_CON, EDGERM_COAP_GET, 1, NULL, 0);
	edgerm_coap_payload(&b, hex, 8);
	CHECK(edgerm_coap_end(&b) < 0);
}

static void test_parse(void)
{
	edgerm_coap_msg_t m;
	/* ACK 2.04, mid 0x0102, token 07, Content-Format 60, Block2 (num 2, more, szx 6), payload */
	static const uint8_t ok[] = {0x61, 0x44, 0x01, 0x02, 0x07, 0xc1, 0x3c,
				     0xb1, 0x2e, 0xff, 0xa1, 0x01, 0x01};

	CHECK_EQ_INT(edgerm_coap_parse_untrusted(ok, sizeof(ok), &m), 0);
	CHECK_EQ_INT(m.type, EDGERM_COAP_ACK);
	CHECK_EQ_INT(m.code, EDGERM_COAP_CHANGED);
	CHECK_EQ_INT(m.mid, 0x0102);
	CHECK(m.tkl == 1 && m.token[0] == 7);
	CHECK(m.has_cf && m.cf == 60);
	CHECK(m.has_block2 && m.block2 == 0x2e);
	CHECK_EQ_INT(m.payload_len, 3);

	/* Malformed: each must be refused without reading past the end. */
	static const uint8_t v2[] = {0x81, 0x44, 0, 0, 7};
	static const uint8_t tkl9[] = {0x49, 0x44, 0, 0};
	static const uint8_t short_token[] = {0x42, 0x44, 0, 0, 1};
	static const uint8_t marker_only[] = {0x40, 0x44, 0, 0, 0xff};
	static const uint8_t opt_past_end[] = {0x40, 0x44, 0, 0, 0x13, 0x3c};
	static const uint8_t delta15[] = {0x40, 0x44, 0, 0, 0xf1, 0};
	static const uint8_t ext_trunc[] = {0x40, 0x44, 0, 0, 0xe1, 0};
	static const uint8_t empty_with_token[] = {0x41, 0x00, 0, 0, 9};

	CHECK(edgerm_coap_parse_untrusted(v2, sizeof(v2), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(tkl9, sizeof(tkl9), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(short_token, sizeof(short_token), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(marker_only, sizeof(marker_only), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(opt_past_end, sizeof(opt_past_end), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(delta15, sizeof(delta15), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(ext_trunc, sizeof(ext_trunc), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(empty_with_token, sizeof(empty_with_token), &m) < 0);
	CHECK(edgerm_coap_parse_untrusted(ok, 3, &m) < 0);

	/* An unknown critical option (Uri-Host, 3) is flagged, an unknown elective one skipped. */
	static const uint8_t critical[] = {0x60, 0x44, 0, 0, 0x31, 'x'};
	static const uint8_t elective[] = {0x60, 0x44, 0, 0, 0xd1, 0x0f, 'x'}; /* 28: Size2 */

	CHECK_EQ_INT(edgerm_coap_parse_untrusted(critical, sizeof(critical), &m), 0);
	CHECK(m.bad_critical);
	CHECK_EQ_INT(edgerm_coap_parse_untrusted(elective, sizeof(elective), &m), 0);
	CHECK(!m.bad_critical);
}

void suite_coap(void)
{
	test_build_heartbeat_frame();
	test_build_block2_get();
	test_parse();
}
