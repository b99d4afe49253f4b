/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), small and portable: module hashes and the
 * agent-link MAC. Streaming, no allocation; ~250 bytes of context.
 */
#ifndef EDGERM_SHA256_H
#define EDGERM_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define EDGERM_SHA256_LEN 32

typedef struct {
	uint32_t h[8];
	uint64_t bytes;
	uint8_t block[64];
	uint8_t fill;
} edgerm_sha256_t;

void edgerm_sha256_init(edgerm_sha256_t *c);
void edgerm_sha256_update(edgerm_sha256_t *c, const uint8_t *data, size_t len);
void edgerm_sha256_final(edgerm_sha256_t *c, uint8_t out[EDGERM_SHA256_LEN]);

typedef struct {
	edgerm_sha256_t inner;
	uint8_t okey[64];
} edgerm_hmac_t;

void edgerm_hmac_init(edgerm_hmac_t *c, const uint8_t *key, size_t key_len);
void edgerm_hmac_update(edgerm_hmac_t *c, const uint8_t *data, size_t len);
void edgerm_hmac_final(edgerm_hmac_t *c, uint8_t out[EDGERM_SHA256_LEN]);

/* Compare in time independent of where the first difference is. 1 when equal. */
int edgerm_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif /* EDGERM_SHA256_H */
