/*
 * The AES-128 block cipher under OSCORE's AES-CCM (edgerm_port.h) on Zephyr's PSA Crypto API:
 * each key imported once as a volatile AES key for PSA_ALG_ECB_NO_PADDING (the nRF52840's
 * CryptoCell or Mbed TLS behind it, whichever the build's PSA provider is), one
 * psa_cipher_encrypt per block. edgerm_aes128_t holds the key id (EDGERM_AES128_CTX_WORDS is 1
 * in this build, CMakeLists.txt); a new key destroys the one it replaces. CCM itself stays the
 * core's (core/src/oscore.c): the same code the host tests and QEMU check byte for byte.
 * Selected by CONFIG_EDGERM_OSCORE_PSA, which enables the PSA bits it needs (Kconfig).
 */
#include <errno.h>
#include <string.h>

#include <psa/crypto.h>
#include <zephyr/sys/util.h>

#include "edgerm_port.h"

BUILD_ASSERT(sizeof(psa_key_id_t) <= sizeof(edgerm_aes128_t),
	     "edgerm_aes128_t must hold a psa_key_id_t (EDGERM_AES128_CTX_WORDS)");

static psa_key_id_t key_id(const edgerm_aes128_t *ctx)
{
	psa_key_id_t id;

	memcpy(&id, ctx->w, sizeof(id));
	return id;
}

/* ctx starts zeroed (the agent struct is), i.e. PSA_KEY_ID_NULL: nothing to destroy. */
int edgerm_aes128_setkey(edgerm_aes128_t *ctx, const uint8_t key[16])
{
	psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
	psa_key_id_t id = key_id(ctx);

	if (id != PSA_KEY_ID_NULL) {
		(void)psa_destroy_key(id);
		id = PSA_KEY_ID_NULL;
		memcpy(ctx->w, &id, sizeof(id));
	}
	/* psa_crypto_init is idempotent: the first key initialises the provider. */
	if (psa_crypto_init() != PSA_SUCCESS) {
		return -EIO;
	}
	psa_set_key_type(&attr, PSA_KEY_TYPE_AES);
	psa_set_key_bits(&attr, 128);
	psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_ENCRYPT);
	psa_set_key_algorithm(&attr, PSA_ALG_ECB_NO_PADDING);
	psa_set_key_lifetime(&attr, PSA_KEY_LIFETIME_VOLATILE);
	psa_status_t st = psa_import_key(&attr, key, 16, &id);

	psa_reset_key_attributes(&attr);
	if (st != PSA_SUCCESS) {
		return -EIO;
	}
	memcpy(ctx->w, &id, sizeof(id));
	return 0;
}

int edgerm_aes128_encrypt_block(const edgerm_aes128_t *ctx, const uint8_t in[16], uint8_t out[16])
{
	uint8_t block[16];
	size_t n = 0;

	/* The core encrypts in place; PSA's buffers need not overlap. */
	memcpy(block, in, sizeof(block));
	psa_status_t st = psa_cipher_encrypt(key_id(ctx), PSA_ALG_ECB_NO_PADDING, block,
					     sizeof(block), out, 16, &n);

	return st == PSA_SUCCESS && n == 16 ? 0 : -EIO;
}
