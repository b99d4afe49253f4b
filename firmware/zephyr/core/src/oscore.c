/*
 * OSCORE (RFC 8613) on the core's HMAC-SHA256 and the platform's AES-128 block cipher. Written
 * from RFC 8613 (sections 3.2, 5, 6, 8), RFC 5869 (HKDF) and RFC 3610 (CCM: M = 8, L = 2, so
 * a 13-byte nonce and messages below 64 KiB). Checked byte for byte against RFC 8613 Appendix
 * C and proto/vectors/oscore.json (tests/test_oscore.c, host and Cortex-M4).
 */
#include <string.h>

#include "edgerm/oscore.h"
#include "edgerm/sha256.h"

#define ID_CTX_MAX 16 /* the longest ID Context derive() takes (RFC's C.3 has 8 bytes) */

static uint8_t *put(uint8_t *p, const uint8_t *src, size_t n)
{
	if (n) {
		memcpy(p, src, n);
	}
	return p + n;
}

void edgerm_hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
			const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
	static const uint8_t one = 1;
	edgerm_hmac_t h;
	uint8_t prk[EDGERM_SHA256_LEN];

	/* Extract (an empty salt is HashLen zero bytes: the same HMAC key after padding). */
	edgerm_hmac_init(&h, salt, salt_len);
	edgerm_hmac_update(&h, ikm, ikm_len);
	edgerm_hmac_final(&h, prk);
	/* Expand, one block: T(1) = HMAC(PRK, info || 0x01). */
	edgerm_hmac_init(&h, prk, sizeof(prk));
	edgerm_hmac_update(&h, info, info_len);
	edgerm_hmac_update(&h, &one, 1);
	edgerm_hmac_final(&h, prk);
	memcpy(out, prk, out_len <= sizeof(prk) ? out_len : sizeof(prk));
	memset(prk, 0, sizeof(prk));
}

int edgerm_oscore_derive(const uint8_t *secret, size_t secret_len, const uint8_t *salt,
			 size_t salt_len, const uint8_t *id_ctx, size_t id_ctx_len, const uint8_t *id,
			 size_t id_len, bool iv, uint8_t *out)
{
	/* info = [id, id_context or nil, alg_aead 10, "Key" / "IV", L] in CBOR. */
	uint8_t info[1 + 1 + EDGERM_OSCORE_ID_MAX + 1 + ID_CTX_MAX + 1 + 4 + 1];
	uint8_t *p = info;
	size_t l = iv ? EDGERM_OSCORE_NONCE_LEN : EDGERM_OSCORE_KEY_LEN;

	if (id_len > EDGERM_OSCORE_ID_MAX || (id_ctx && id_ctx_len > ID_CTX_MAX)) {
		return EDGERM_OSCORE_E_ARG;
	}
	*p++ = 0x85;
	*p++ = (uint8_t)(0x40 | id_len);
	p = put(p, id, id_len);
	if (id_ctx) {
		*p++ = (uint8_t)(0x40 | id_ctx_len);
		p = put(p, id_ctx, id_ctx_len);
	} else {
		*p++ = 0xf6;
	}
	*p++ = 10;
	p = put(p, (const uint8_t *)(iv ? "\x62IV" : "\x63Key"), iv ? 3 : 4);
	*p++ = (uint8_t)l;
	edgerm_hkdf_sha256(salt, salt_len, secret, secret_len, info, (size_t)(p - info), out, l);
	return 0;
}

int edgerm_oscore_init(edgerm_oscore_ctx_t *c, const uint8_t *secret, size_t secret_len,
		       const uint8_t *salt, size_t salt_len, const uint8_t *id_ctx, size_t id_ctx_len,
		       const uint8_t *sid, size_t sid_len, const uint8_t *rid, size_t rid_len)
{
	uint8_t k[EDGERM_OSCORE_KEY_LEN];
	int r = 0;

	if (sid_len > EDGERM_OSCORE_ID_MAX || rid_len > EDGERM_OSCORE_ID_MAX) {
		return EDGERM_OSCORE_E_ARG;
	}
	/* Sender Key, Recipient Key, Common IV. */
	for (int i = 0; i < 3; i++) {
		r |= edgerm_oscore_derive(secret, secret_len, salt, salt_len, id_ctx, id_ctx_len,
					  i ? rid : sid, i == 2 ? 0 : i ? rid_len : sid_len, i == 2,
					  i == 2 ? c->common_iv : k);
		if (i < 2) {
			r |= edgerm_aes128_setkey(i ? &c->recipient_key : &c->sender_key, k);
		}
	}
	c->sid_len = (uint8_t)sid_len;
	c->rid_len = (uint8_t)rid_len;
	(void)put(c->sid, sid, sid_len);
	(void)put(c->rid, rid, rid_len);
	memset(k, 0, sizeof(k));
	return r ? EDGERM_OSCORE_E_CIPHER : 0;
}

size_t edgerm_oscore_piv(uint32_t seq, uint8_t piv[EDGERM_OSCORE_PIV_MAX])
{
	size_t n = 1;

	while (n < 4 && (seq >> (8 * n)) != 0) {
		n++;
	}
	for (size_t i = 0; i < n; i++) {
		piv[i] = (uint8_t)(seq >> (8 * (n - 1 - i)));
	}
	return n;
}

int edgerm_oscore_nonce(const uint8_t common_iv[EDGERM_OSCORE_NONCE_LEN], const uint8_t *id,
			size_t id_len, const uint8_t *piv, size_t piv_len,
			uint8_t nonce[EDGERM_OSCORE_NONCE_LEN])
{
	/* size of ID_PIV | ID_PIV left-padded to 7 | PIV left-padded to 5, XOR Common IV. */
	if (id_len > EDGERM_OSCORE_ID_MAX || piv_len > EDGERM_OSCORE_PIV_MAX) {
		return EDGERM_OSCORE_E_ARG;
	}
	memset(nonce, 0, EDGERM_OSCORE_NONCE_LEN);
	nonce[0] = (uint8_t)id_len;
	(void)put(nonce + 1 + EDGERM_OSCORE_ID_MAX - id_len, id, id_len);
	(void)put(nonce + EDGERM_OSCORE_NONCE_LEN - piv_len, piv, piv_len);
	for (size_t i = 0; i < EDGERM_OSCORE_NONCE_LEN; i++) {
		nonce[i] ^= common_iv[i];
	}
	return 0;
}

int edgerm_oscore_aad(uint8_t out[EDGERM_OSCORE_AAD_MAX], const uint8_t *kid, size_t kid_len,
		      const uint8_t *piv, size_t piv_len)
{
	/* ["Encrypt0", h'', bstr .cbor [1, [10], kid, piv, h'']]: every length here is < 24, so
	 * each CBOR head is one byte. */
	static const uint8_t head[] = {0x83, 0x68, 'E', 'n', 'c', 'r', 'y', 'p', 't', '0', 0x40};
	uint8_t *p = out;

	if (kid_len > EDGERM_OSCORE_ID_MAX || piv_len > EDGERM_OSCORE_PIV_MAX) {
		return EDGERM_OSCORE_E_ARG;
	}
	p = put(p, head, sizeof(head));
	*p++ = (uint8_t)(0x40 | (7 + kid_len + piv_len));
	*p++ = 0x85, *p++ = 0x01, *p++ = 0x81, *p++ = 10;
	*p++ = (uint8_t)(0x40 | kid_len);
	p = put(p, kid, kid_len);
	*p++ = (uint8_t)(0x40 | piv_len);
	p = put(p, piv, piv_len);
	*p++ = 0x40;
	return (int)(p - out);
}

/* CBC-MAC state of CCM, fed byte by byte (messages here are small; the code is smaller). */
typedef struct {
	const edgerm_aes128_t *k;
	uint8_t x[16];
	uint8_t n;
	int err;
} cbc_t;

static void mac_byte(cbc_t *c, uint8_t v)
{
	c->x[c->n++] ^= v;
	if (c->n == 16) {
		c->err |= edgerm_aes128_encrypt_block(c->k, c->x, c->x);
		c->n = 0;
	}
}

static void mac_pad(cbc_t *c)
{
	if (c->n) {
		c->err |= edgerm_aes128_encrypt_block(c->k, c->x, c->x);
		c->n = 0;
	}
}

/* CCM (RFC 3610) of buf in place: CBC-MAC over the plaintext, CTR with A_i, tag into t[0..8). */
static int ccm(const edgerm_aes128_t *k, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
	       uint8_t *buf, size_t len, bool seal, uint8_t t[EDGERM_OSCORE_TAG_LEN])
{
	cbc_t c;
	uint8_t a[16], s[16];

	if (len > 0xffff || aad_len >= 0xff00) {
		return EDGERM_OSCORE_E_ARG;
	}
	c.k = k, c.n = 0, c.err = 0;
	/* B_0: flags Adata | M' = (8 - 2) / 2 | L' = 1, nonce, l(m) in 2 bytes. */
	c.x[0] = (uint8_t)((aad_len ? 0x40 : 0) | 3 << 3 | 1);
	memcpy(c.x + 1, nonce, EDGERM_OSCORE_NONCE_LEN);
	c.x[14] = (uint8_t)(len >> 8), c.x[15] = (uint8_t)len;
	c.err |= edgerm_aes128_encrypt_block(k, c.x, c.x);
	if (aad_len) {
		mac_byte(&c, (uint8_t)(aad_len >> 8));
		mac_byte(&c, (uint8_t)aad_len);
		for (size_t i = 0; i < aad_len; i++) {
			mac_byte(&c, aad[i]);
		}
		mac_pad(&c);
	}
	a[0] = 1; /* L' */
	memcpy(a + 1, nonce, EDGERM_OSCORE_NONCE_LEN);
	for (size_t i = 0; i < len; i++) {
		if ((i & 15) == 0) {
			size_t ctr = i / 16 + 1;

			a[14] = (uint8_t)(ctr >> 8), a[15] = (uint8_t)ctr;
			c.err |= edgerm_aes128_encrypt_block(k, a, s);
		}
		if (seal) {
			mac_byte(&c, buf[i]);
		}
		buf[i] ^= s[i & 15];
		if (!seal) {
			mac_byte(&c, buf[i]);
		}
	}
	mac_pad(&c);
	a[14] = a[15] = 0;
	c.err |= edgerm_aes128_encrypt_block(k, a, s);
	for (size_t i = 0; i < EDGERM_OSCORE_TAG_LEN; i++) {
		t[i] = c.x[i] ^ s[i];
	}
	return c.err ? EDGERM_OSCORE_E_CIPHER : 0;
}

int edgerm_ccm_seal(const edgerm_aes128_t *key, const uint8_t nonce[EDGERM_OSCORE_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, uint8_t *buf, size_t len)
{
	return ccm(key, nonce, aad, aad_len, buf, len, true, buf + len);
}

int edgerm_ccm_open(const edgerm_aes128_t *key, const uint8_t nonce[EDGERM_OSCORE_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, uint8_t *buf, size_t len)
{
	uint8_t t[EDGERM_OSCORE_TAG_LEN];

	if (len < EDGERM_OSCORE_TAG_LEN) {
		return EDGERM_OSCORE_E_AUTH;
	}
	len -= EDGERM_OSCORE_TAG_LEN;
	if (ccm(key, nonce, aad, aad_len, buf, len, false, t) != 0 ||
	    !edgerm_ct_equal(t, buf + len, EDGERM_OSCORE_TAG_LEN)) {
		/* Nothing of an unverified plaintext may be used: wipe it. */
		memset(buf, 0, len + EDGERM_OSCORE_TAG_LEN);
		return EDGERM_OSCORE_E_AUTH;
	}
	return (int)len;
}

int edgerm_oscore_option_parse_untrusted(const uint8_t *v, size_t len, edgerm_oscore_opt_t *o)
{
	size_t pos = 1, n;

	memset(o, 0, sizeof(*o));
	if (len == 0) {
		return 0;
	}
	n = v[0] & 7;
	/* Reserved bits 5-7, n 6 and 7, the all-zero flags byte (must be an empty value), a
	 * Partial IV longer than the value or not minimal; and h, a kid context, which no context
	 * of the agent link has (an ID Context is absent, docs/protocol.md). */
	if ((v[0] & 0xf0) || v[0] == 0 || n > EDGERM_OSCORE_PIV_MAX || len - 1 < n ||
	    (n > 1 && v[1] == 0)) {
		return EDGERM_OSCORE_E_MALFORMED;
	}
	o->piv = v + 1;
	o->piv_len = (uint8_t)n;
	pos += n;
	if (v[0] & 0x08) {
		if (len - pos > EDGERM_OSCORE_ID_MAX) {
			return EDGERM_OSCORE_E_MALFORMED; /* no context can have such a kid */
		}
		o->has_kid = true;
		o->kid = v + pos;
		o->kid_len = (uint8_t)(len - pos);
	} else if (pos != len) {
		return EDGERM_OSCORE_E_MALFORMED;
	}
	return 0;
}

/* Partial IV of our request `seq` and the AAD over it (request_kid = our sender id): the same
 * for a request and for its response (RFC 8613 5.4). The AAD's length. */
static int request_aad(const edgerm_oscore_ctx_t *c, uint32_t seq, uint8_t *piv, size_t *pl,
		       uint8_t aad[EDGERM_OSCORE_AAD_MAX])
{
	*pl = edgerm_oscore_piv(seq, piv);
	return edgerm_oscore_aad(aad, c->sid, c->sid_len, piv, *pl);
}

int edgerm_oscore_protect_request(const edgerm_oscore_ctx_t *c, uint32_t seq, uint8_t *pt,
				  size_t pt_len, uint8_t opt[EDGERM_OSCORE_OPT_MAX])
{
	uint8_t piv[EDGERM_OSCORE_PIV_MAX], nonce[EDGERM_OSCORE_NONCE_LEN];
	uint8_t aad[EDGERM_OSCORE_AAD_MAX];
	size_t pl;
	int al = request_aad(c, seq, piv, &pl, aad);
	int r = al < 0 ? al : edgerm_oscore_nonce(c->common_iv, c->sid, c->sid_len, piv, pl, nonce);

	if (r < 0 || (r = edgerm_ccm_seal(&c->sender_key, nonce, aad, (size_t)al, pt, pt_len)) < 0) {
		return r;
	}
	opt[0] = (uint8_t)(0x08 | pl); /* k: kid present; no kid context */
	(void)put(put(opt + 1, piv, pl), c->sid, c->sid_len);
	return (int)(1 + pl + c->sid_len);
}

int edgerm_oscore_unprotect_response(const edgerm_oscore_ctx_t *c, uint32_t seq,
				     const uint8_t *opt, size_t opt_len, uint8_t *buf, size_t len)
{
	uint8_t piv[EDGERM_OSCORE_PIV_MAX], nonce[EDGERM_OSCORE_NONCE_LEN];
	uint8_t aad[EDGERM_OSCORE_AAD_MAX];
	edgerm_oscore_opt_t o;
	size_t pl;
	int al = request_aad(c, seq, piv, &pl, aad);

	/* A response names no kid (the request fixed the context). */
	if (edgerm_oscore_option_parse_untrusted(opt, opt_len, &o) < 0 || o.has_kid) {
		return EDGERM_OSCORE_E_MALFORMED;
	}
	/* Its own Partial IV: the nonce of the peer's (our recipient's) id; else our request's. */
	if (o.piv_len) {
		al |= edgerm_oscore_nonce(c->common_iv, c->rid, c->rid_len, o.piv, o.piv_len, nonce);
	} else {
		al |= edgerm_oscore_nonce(c->common_iv, c->sid, c->sid_len, piv, pl, nonce);
	}
	return al < 0 ? EDGERM_OSCORE_E_ARG
		      : edgerm_ccm_open(&c->recipient_key, nonce, aad, (size_t)al, buf, len);
}
