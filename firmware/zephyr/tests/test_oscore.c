/* OSCORE (core/src/oscore.c) and the AES-128 block cipher under it (port/common/aes128.c):
 * FIPS-197, RFC 3610, RFC 5869 and RFC 8613 Appendix C byte for byte, then what must be
 * refused. The shared vectors (proto/vectors/oscore.json) run in test_oscore_vectors.c. */
#include "edgerm/oscore.h"
#include "unit.h"

static const uint8_t secret[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t salt[8] = {0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40};
static const uint8_t idctx[8] = {0x37, 0xcb, 0xf3, 0x21, 0x00, 0x17, 0xa2, 0xd3};
static const uint8_t id01[1] = {1}, id00[1] = {0};

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = 0;

	for (; h[0] && h[1]; h += 2) {
		unsigned v;

		sscanf(h, "%2x", &v);
		out[n++] = (uint8_t)v;
	}
	return n;
}

static void check_hex(const uint8_t *got, size_t len, const char *want)
{
	uint8_t w[160];
	size_t n = unhex(want, w);

	CHECK_EQ_INT(len, n);
	CHECK_MEM(got, w, n < len ? n : len);
}

static void aes_fips197(void)
{
	edgerm_aes128_t k;
	uint8_t key[16], in[16], out[16];

	/* FIPS-197 Appendix C.1 */
	unhex("000102030405060708090a0b0c0d0e0f", key);
	unhex("00112233445566778899aabbccddeeff", in);
	CHECK_EQ_INT(edgerm_aes128_setkey(&k, key), 0);
	CHECK_EQ_INT(edgerm_aes128_encrypt_block(&k, in, out), 0);
	check_hex(out, 16, "69c4e0d86a7b0430d8cdb78070b4c55a");
	/* Appendix B, in place; the last round key of A.1's expansion */
	unhex("2b7e151628aed2a6abf7158809cf4f3c", key);
	unhex("3243f6a8885a308d313198a2e0370734", in);
	edgerm_aes128_setkey(&k, key);
	edgerm_aes128_encrypt_block(&k, in, in);
	check_hex(in, 16, "3925841d02dc09fbdc118597196a0b32");
	check_hex((const uint8_t *)k.w + 160, 16, "d014f9a8c9ee2589e13f0cc8b6630ca6");
}

/* CCM with M = 8, L = 2 beyond OSCORE's AAD: RFC 3610 packet vector #1 (8-byte header, 23-byte
 * payload), and 40 bytes of AAD with 100 of payload (several blocks of each, partial last
 * blocks) as Python's cryptography AESCCM computes them. */
static void ccm_vectors(void)
{
	static const struct {
		const char *key, *nonce, *aad, *pt, *ct;
	} v[] = {
		{"c0c1c2c3c4c5c6c7c8c9cacbcccdcecf", "00000003020100a0a1a2a3a4a5", "0001020304050607",
		 "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
		 "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0"},
		{"8254c329a92850f6d539dd376f4816ee", "1b16b1df538ba12dc3f97edbb8",
		 "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb7878787878787878",
		 "148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940148de9c5a7a44d19e5"
		 "6cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940148de9c5a7a44d19e56cd9ae1a554bf67847"
		 "afb0c58f6e12fa29ac7ddfca9940148de9c5",
		 "bfe704bddb32a6ef0eae7a8b5bacb8ee7f7b153d14d1c67828588c3728fcc471bd6cee509316370533"
		 "29ceacb8b9478826e5f0574aa5ca6c30916c55d52234b49089d4718e60456632f28365b6a77e69dbb4"
		 "745fd0af63d661cbff9c11f81b0106dc58af2cca94c598f9e669"},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		edgerm_aes128_t k;
		uint8_t key[16], nonce[13], aad[64], buf[160];
		size_t al = unhex(v[i].aad, aad), n = unhex(v[i].pt, buf);

		unhex(v[i].key, key);
		unhex(v[i].nonce, nonce);
		edgerm_aes128_setkey(&k, key);
		CHECK_EQ_INT(edgerm_ccm_seal(&k, nonce, aad, al, buf, n), 0);
		check_hex(buf, n + 8, v[i].ct);
		CHECK_EQ_INT(edgerm_ccm_open(&k, nonce, aad, al, buf, n + 8), n);
		aad[al - 1] ^= 1; /* the AAD is authenticated too */
		n = unhex(v[i].ct, buf);
		CHECK_EQ_INT(edgerm_ccm_open(&k, nonce, aad, al, buf, n), EDGERM_OSCORE_E_AUTH);
	}
}

static void hkdf_rfc5869(void)
{
	uint8_t ikm[22], s[13], info[10], out[32];

	memset(ikm, 0x0b, sizeof(ikm));
	unhex("000102030405060708090a0b0c", s);
	unhex("f0f1f2f3f4f5f6f7f8f9", info);
	/* Test case 1, the first 32 bytes of OKM (one Expand block). */
	edgerm_hkdf_sha256(s, sizeof(s), ikm, sizeof(ikm), info, sizeof(info), out, 32);
	check_hex(out, 32, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");
}

static void derive_c1_c3(void)
{
	uint8_t out[16];

	/* C.1.1 (client: sender "", recipient 01) */
	CHECK_EQ_INT(edgerm_oscore_derive(secret, 16, salt, 8, NULL, 0, NULL, 0, false, out), 0);
	check_hex(out, 16, "f0910ed7295e6ad4b54fc793154302ff");
	edgerm_oscore_derive(secret, 16, salt, 8, NULL, 0, id01, 1, false, out);
	check_hex(out, 16, "ffb14e093c94c9cac9471648b4f98710");
	edgerm_oscore_derive(secret, 16, salt, 8, NULL, 0, NULL, 0, true, out);
	check_hex(out, 13, "4622d4dd6d944168eefb54987c");
	/* C.2.1 (no salt: sender 00, recipient 01) */
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, id00, 1, false, out);
	check_hex(out, 16, "321b26943253c7ffb6003b0b64d74041");
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, id01, 1, false, out);
	check_hex(out, 16, "e57b5635815177cd679ab4bcec9d7dda");
	edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, NULL, 0, true, out);
	check_hex(out, 13, "be35ae297d2dace910c52e99f9");
	/* C.3.1 (ID Context 37cbf3210017a2d3) */
	edgerm_oscore_derive(secret, 16, salt, 8, idctx, 8, NULL, 0, false, out);
	check_hex(out, 16, "af2a1300a5e95788b356336eeecd2b92");
	edgerm_oscore_derive(secret, 16, salt, 8, idctx, 8, id01, 1, false, out);
	check_hex(out, 16, "e39a0c7c77b43f03b4b39ab9a268699f");
	edgerm_oscore_derive(secret, 16, salt, 8, idctx, 8, NULL, 0, true, out);
	check_hex(out, 13, "2ca58fb85ff1b81c0b7181b85e");
	/* An id longer than a nonce allows */
	CHECK_EQ_INT(edgerm_oscore_derive(secret, 16, NULL, 0, NULL, 0, secret, 8, false, out),
		     EDGERM_OSCORE_E_ARG);
}

/* GET /tv1 as plaintext: code 01, Uri-Path "tv1". */
static const uint8_t get_tv1[] = {0x01, 0xb3, 0x74, 0x76, 0x31};

static void requests_c4_c6(void)
{
	edgerm_oscore_ctx_t c;
	uint8_t buf[32], opt[EDGERM_OSCORE_OPT_MAX], nonce[13], piv[5];

	/* C.4: salt, sender "", seq 20 */
	CHECK_EQ_INT(edgerm_oscore_init(&c, secret, 16, salt, 8, NULL, 0, NULL, 0, id01, 1), 0);
	CHECK_EQ_INT(edgerm_oscore_piv(20, piv), 1);
	edgerm_oscore_nonce(c.common_iv, NULL, 0, piv, 1, nonce);
	check_hex(nonce, 13, "4622d4dd6d944168eefb549868");
	memcpy(buf, get_tv1, sizeof(get_tv1));
	CHECK_EQ_INT(edgerm_oscore_protect_request(&c, 20, buf, sizeof(get_tv1), opt), 2);
	check_hex(opt, 2, "0914");
	check_hex(buf, sizeof(get_tv1) + 8, "612f1092f1776f1c1668b3825e");
	/* C.5: no salt, sender 00 */
	edgerm_oscore_init(&c, secret, 16, NULL, 0, NULL, 0, id00, 1, id01, 1);
	memcpy(buf, get_tv1, sizeof(get_tv1));
	CHECK_EQ_INT(edgerm_oscore_protect_request(&c, 20, buf, sizeof(get_tv1), opt), 3);
	check_hex(opt, 3, "091400");
	check_hex(buf, sizeof(get_tv1) + 8, "4ed339a5a379b0b8bc731fffb0");
	/* C.6: ID Context (the kid context is only in the option: 19 14 08 37cbf3210017a2d3) */
	edgerm_oscore_init(&c, secret, 16, salt, 8, idctx, 8, NULL, 0, id01, 1);
	memcpy(buf, get_tv1, sizeof(get_tv1));
	edgerm_oscore_protect_request(&c, 20, buf, sizeof(get_tv1), opt);
	check_hex(buf, sizeof(get_tv1) + 8, "72cd7273fd331ac45cffbe55c3");
}

static void responses_c7_c8(void)
{
	edgerm_oscore_ctx_t c;
	uint8_t buf[32];
	static const uint8_t want[] = {0x45, 0xff, 'H', 'e', 'l', 'l', 'o', ' ',
				       'W', 'o', 'r', 'l', 'd', '!'};
	static const uint8_t piv0[] = {0x01, 0x00};
	size_t n;

	edgerm_oscore_init(&c, secret, 16, salt, 8, NULL, 0, NULL, 0, id01, 1);
	/* C.7: the request's nonce (empty option value) */
	n = unhex("dbaad1e9a7e7b2a813d3c31524378303cdafae119106", buf);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, NULL, 0, buf, n), sizeof(want));
	CHECK_MEM(buf, want, sizeof(want));
	/* C.8: the server's own Partial IV 0 (option 0100) */
	n = unhex("4d4c13669384b67354b2b6175ff4b8658c666a6cf88e", buf);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, piv0, 2, buf, n), sizeof(want));
	CHECK_MEM(buf, want, sizeof(want));

	/* Must refuse: every single bit flipped, a truncated tag, another request's seq, the
	 * server PIV dropped or changed. The plaintext of a refused message is wiped. */
	n = unhex("dbaad1e9a7e7b2a813d3c31524378303cdafae119106", buf);
	for (size_t bit = 0; bit < n * 8; bit++) {
		uint8_t m[32];

		memcpy(m, buf, n);
		m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (edgerm_oscore_unprotect_response(&c, 20, NULL, 0, m, n) !=
		    EDGERM_OSCORE_E_AUTH) {
			CHECK(0);
		}
	}
	uint8_t m[32];

	memcpy(m, buf, n);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, NULL, 0, m, n - 1),
		     EDGERM_OSCORE_E_AUTH);
	memcpy(m, buf, n);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 21, NULL, 0, m, n), EDGERM_OSCORE_E_AUTH);
	CHECK(m[0] == 0 && m[n - 1] == 0);
	memcpy(m, buf, n);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, piv0, 2, m, n), EDGERM_OSCORE_E_AUTH);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, NULL, 0, m, 7), EDGERM_OSCORE_E_AUTH);
	/* A response may not name a kid. */
	static const uint8_t with_kid[] = {0x08};

	memcpy(m, buf, n);
	CHECK_EQ_INT(edgerm_oscore_unprotect_response(&c, 20, with_kid, 1, m, n),
		     EDGERM_OSCORE_E_MALFORMED);
}

static void option_parse(void)
{
	edgerm_oscore_opt_t o;
	uint8_t v[16];

	CHECK_EQ_INT(edgerm_oscore_option_parse_untrusted(v, 0, &o), 0);
	CHECK(!o.has_kid && o.piv_len == 0);
	CHECK_EQ_INT(edgerm_oscore_option_parse_untrusted(v, unhex("0914", v), &o), 0);
	CHECK(o.has_kid && o.kid_len == 0 && o.piv_len == 1 && o.piv[0] == 0x14);
	CHECK_EQ_INT(edgerm_oscore_option_parse_untrusted(v, unhex("0a011105", v), &o), 0);
	CHECK(o.has_kid && o.kid_len == 1 && o.kid[0] == 5 && o.piv_len == 2);
	CHECK_EQ_INT(edgerm_oscore_option_parse_untrusted(v, unhex("0100", v), &o), 0);
	/* Malformed: flags 00 in a non-empty value, reserved bits, n = 6/7, PIV beyond the value,
	 * a non-minimal PIV, bytes after a PIV without k, a kid no nonce can hold; a kid context
	 * (C.6's option), which the agent link never uses. */
	static const char *bad[] = {"00", "20", "8914", "06", "07", "0314", "020001", "0114ff",
				    "0801020304050607aa", "1914", "19140837cbf3210017a2d3"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = unhex(bad[i], v);

		CHECK_EQ_INT(edgerm_oscore_option_parse_untrusted(v, n, &o),
			     EDGERM_OSCORE_E_MALFORMED);
	}
}

static void piv_minimal(void)
{
	uint8_t p[5];

	CHECK_EQ_INT(edgerm_oscore_piv(0, p), 1);
	CHECK(p[0] == 0);
	CHECK_EQ_INT(edgerm_oscore_piv(255, p), 1);
	CHECK_EQ_INT(edgerm_oscore_piv(256, p), 2);
	CHECK(p[0] == 1 && p[1] == 0);
	CHECK_EQ_INT(edgerm_oscore_piv(70000, p), 3);
	CHECK_EQ_INT(edgerm_oscore_piv(0xffffffffu, p), 4);
}

void suite_oscore(void)
{
	aes_fips197();
	ccm_vectors();
	hkdf_rfc5869();
	derive_c1_c3();
	requests_c4_c6();
	responses_c7_c8();
	option_parse();
	piv_minimal();
}
