/*
 * OSCORE (RFC 8613) for the agent link, client side: the security context (HKDF-SHA256 on
 * the core's HMAC), AES-CCM-16-64-128 (RFC 3610, COSE alg 10) on the platform's AES-128 block
 * cipher (edgerm_aes128_* in edgerm_port.h), nonce, external AAD, the OSCORE option, and the
 * protection of a request / verification of its response. docs/protocol.md, "OSCORE", and
 * /proto/vectors/oscore.json pin the bytes; the Python and MicroPython agents make the same.
 *
 * No allocation; every length is checked; the tag compare is constant-time; a message that
 * fails verification is wiped before the error returns.
 */
#ifndef EDGERM_OSCORE_H
#define EDGERM_OSCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgerm_port.h"

#define EDGERM_OSCORE_KEY_LEN 16
#define EDGERM_OSCORE_NONCE_LEN 13
#define EDGERM_OSCORE_TAG_LEN 8
#define EDGERM_OSCORE_ID_MAX 7  /* nonce length - 6 (RFC 8613 section 3.3) */
#define EDGERM_OSCORE_PIV_MAX 5
/* flags | Partial IV | kid: the largest OSCORE option value a request of ours carries. */
#define EDGERM_OSCORE_OPT_MAX (1 + EDGERM_OSCORE_PIV_MAX + EDGERM_OSCORE_ID_MAX)

#define EDGERM_OSCORE_E_ARG (-40)       /* an id, a length or a buffer out of range */
#define EDGERM_OSCORE_E_MALFORMED (-41) /* the OSCORE option value breaks RFC 8613 6.1 */
#define EDGERM_OSCORE_E_AUTH (-42)      /* the tag does not verify */
#define EDGERM_OSCORE_E_CIPHER (-43)    /* the platform's block cipher failed */

/* One side's security context (RFC 8613 3.2): keys as the platform's key schedules. */
typedef struct {
	edgerm_aes128_t sender_key, recipient_key;
	uint8_t common_iv[EDGERM_OSCORE_NONCE_LEN];
	uint8_t sid_len, rid_len;
	uint8_t sid[EDGERM_OSCORE_ID_MAX], rid[EDGERM_OSCORE_ID_MAX];
} edgerm_oscore_ctx_t;

/* A parsed OSCORE option value (pointers into it). */
typedef struct {
	const uint8_t *piv, *kid;
	uint8_t piv_len, kid_len;
	bool has_kid;
} edgerm_oscore_opt_t;

/* HKDF-SHA256 (RFC 5869) with out_len <= 32 (one Expand block). */
void edgerm_hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
			const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);

/* One derived value of RFC 8613 3.2.1: the key of `id` (iv false, 16 bytes) or the Common IV
 * (iv true, id empty, 13 bytes). id_ctx NULL: ID Context absent. 0 or EDGERM_OSCORE_E_ARG. */
int edgerm_oscore_derive(const uint8_t *secret, size_t secret_len, const uint8_t *salt,
			 size_t salt_len, const uint8_t *id_ctx, size_t id_ctx_len, const uint8_t *id,
			 size_t id_len, bool iv, uint8_t *out);

/* The whole context: sender and recipient keys (set into the platform cipher) and Common IV. */
int edgerm_oscore_init(edgerm_oscore_ctx_t *c, const uint8_t *secret, size_t secret_len,
		       const uint8_t *salt, size_t salt_len, const uint8_t *id_ctx, size_t id_ctx_len,
		       const uint8_t *sid, size_t sid_len, const uint8_t *rid, size_t rid_len);

/* A sequence number as a Partial IV (minimal big-endian bytes, 0 is one byte 0x00). */
size_t edgerm_oscore_piv(uint32_t seq, uint8_t piv[EDGERM_OSCORE_PIV_MAX]);

/* AEAD nonce (RFC 8613 5.2) from the id of whoever made the Partial IV. 0 or E_ARG. */
int edgerm_oscore_nonce(const uint8_t common_iv[EDGERM_OSCORE_NONCE_LEN], const uint8_t *id,
			size_t id_len, const uint8_t *piv, size_t piv_len,
			uint8_t nonce[EDGERM_OSCORE_NONCE_LEN]);

/* The AEAD's additional data: Enc_structure ["Encrypt0", h'', external_aad] with external_aad
 * [1, [10], request_kid, request_piv, h''] (RFC 8613 5.4). Its length (<= 32), or E_ARG. */
#define EDGERM_OSCORE_AAD_MAX 32
int edgerm_oscore_aad(uint8_t out[EDGERM_OSCORE_AAD_MAX], const uint8_t *kid, size_t kid_len,
		      const uint8_t *piv, size_t piv_len);

/* AES-CCM-16-64-128 in place: seal encrypts buf[0..len) and appends the 8-byte tag (the
 * caller leaves room); open checks the tag at buf[len - 8] in constant time and decrypts,
 * returning the plaintext length, or E_AUTH (buf then zeroed). len < 65536. */
int edgerm_ccm_seal(const edgerm_aes128_t *key, const uint8_t nonce[EDGERM_OSCORE_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, uint8_t *buf, size_t len);
int edgerm_ccm_open(const edgerm_aes128_t *key, const uint8_t nonce[EDGERM_OSCORE_NONCE_LEN],
		    const uint8_t *aad, size_t aad_len, uint8_t *buf, size_t len);

/* Parse an OSCORE option value strictly (RFC 8613 6.1): reserved bits and n 6, 7 refused, a
 * non-empty value whose flags are all zero refused, a non-minimal Partial IV refused, every
 * length inside the value; a kid context (h) refused too: no context of the agent link has an
 * ID Context. 0 or EDGERM_OSCORE_E_MALFORMED. */
int edgerm_oscore_option_parse_untrusted(const uint8_t *v, size_t len, edgerm_oscore_opt_t *o);

/* Protect a request (RFC 8613 8.1): pt[0..pt_len) = inner code, class E options, 0xFF and
 * payload; it becomes the ciphertext with its tag (pt needs pt_len + 8 bytes). Writes the
 * option value flags|PIV|kid into opt. Returns the option value's length, or a negative code. */
int edgerm_oscore_protect_request(const edgerm_oscore_ctx_t *c, uint32_t seq, uint8_t *pt,
				  size_t pt_len, uint8_t opt[EDGERM_OSCORE_OPT_MAX]);

/* Verify and decrypt, in place, the response to our request with sequence number `seq`
 * (RFC 8613 8.4): `opt` is the response's OSCORE option value (empty: the request's nonce;
 * flags|PIV: the peer's own Partial IV, from its sender id = our recipient id). Returns the
 * plaintext's length (inner code, options, payload), or a negative code. */
int edgerm_oscore_unprotect_response(const edgerm_oscore_ctx_t *c, uint32_t seq,
				     const uint8_t *opt, size_t opt_len, uint8_t *buf, size_t len);

#endif /* EDGERM_OSCORE_H */
