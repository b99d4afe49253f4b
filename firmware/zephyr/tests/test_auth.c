/*
 * Authentication of the agent link against proto/vectors/vectors.json's `auth` section
 * (docs/protocol.md, "Authentication"; edgerm/wire/mac.py is the reference): the core computes
 * token_key and the derived secret byte for byte, signing the first-registration vector
 * without its mac with token_key gives the vector back, and the Registered vector verifies with
 * the derived secret (and with nothing else). Runs in both configurations (full schema and
 * device); the agent's own use of these keys is in test_agent.c.
 */
#include "edgerm/agent.h"
#include "edgerm/sha256.h"
#include "edgerm/wire.h"
#include "unit.h"
#include "vectors.h"

static const struct vec *named(const char *name)
{
	for (const struct vec *v = positive; v->type; v++) {
		if (strcmp(v->name, name) == 0) {
			return v;
		}
	}
	return NULL;
}

struct sink_ctx {
	edgerm_hmac_t h;
};

static void sink(void *ctx, const uint8_t *d, size_t n)
{
	edgerm_hmac_update(&((struct sink_ctx *)ctx)->h, d, n);
}

/* The first EDGERM_MAC_LEN bytes of HMAC-SHA256(key) over the message without its mac. */
static int mac_over(const struct vec *v, uint32_t mac_key, const uint8_t *key, size_t key_len,
		    uint8_t out[EDGERM_SHA256_LEN])
{
	struct sink_ctx s;

	edgerm_hmac_init(&s.h, key, key_len);
	int r = edgerm_wire_unsigned_view(v->bytes, v->len, mac_key, sink, &s);

	edgerm_hmac_final(&s.h, out);
	return r;
}

static void keys(void)
{
	uint8_t key[EDGERM_SHA256_LEN], secret[EDGERM_SECRET_LEN];

	edgerm_auth_token_key(auth_token, key);
	CHECK_MEM(key, auth_token_key, sizeof(key));
	edgerm_auth_secret(key, auth_agent_nonce, auth_master_nonce, secret);
	CHECK_MEM(secret, auth_secret, sizeof(secret));
	/* In place, as the agent does it: the token_key buffer receives the secret. */
	edgerm_auth_secret(key, auth_agent_nonce, auth_master_nonce, key);
	CHECK_MEM(key, auth_secret, sizeof(auth_secret));
	/* Either nonce swapped or changed gives another secret. */
	edgerm_auth_secret(auth_token_key, auth_master_nonce, auth_agent_nonce, secret);
	CHECK(memcmp(secret, auth_secret, sizeof(secret)) != 0);
	/* NULL is the empty token: SHA-256 of nothing. */
	static const uint8_t empty[4] = {0xe3, 0xb0, 0xc4, 0x42};

	edgerm_auth_token_key(NULL, key);
	CHECK_MEM(key, empty, sizeof(empty));
}

/* register_first: decoded, its mac dropped, re-encoded and signed with token_key, it is the
 * vector again, byte for byte. */
static void register_vector(void)
{
	static edgerm_agent_call_t call;
	static uint8_t out[512];
	const struct vec *v = named(auth_register_vector);
	uint8_t full[EDGERM_SHA256_LEN];
	edgerm_hmac_t h;

	CHECK(v != NULL);
	if (!v) {
		return;
	}
	CHECK_EQ_INT(edgerm_wire_decode_agent_call_untrusted(v->bytes, v->len, &call), 0);
	CHECK_EQ_INT(call.agent_id, 0);
	CHECK_EQ_INT(call.which, 4);
	CHECK_EQ_INT(call.call.reg.nonce.len, EDGERM_NONCE_LEN);
	CHECK_MEM(call.call.reg.nonce.ptr, auth_agent_nonce, EDGERM_NONCE_LEN);
	CHECK_EQ_INT(call.mac.len, EDGERM_MAC_LEN);

	call.mac.len = 0;
	int n = edgerm_wire_encode_agent_call(&call, out, sizeof(out));

	CHECK(n > 0 && (size_t)n < v->len);
	if (n <= 0) {
		return;
	}
	edgerm_hmac_init(&h, auth_token_key, sizeof(auth_token_key));
	edgerm_hmac_update(&h, out, (size_t)n);
	edgerm_hmac_final(&h, full);
	call.mac.ptr = full;
	call.mac.len = EDGERM_MAC_LEN;
	n = edgerm_wire_encode_agent_call(&call, out, sizeof(out));
	CHECK_EQ_INT(n, v->len);
	CHECK(n == (int)v->len && memcmp(out, v->bytes, v->len) == 0);

	/* The same through the MAC view of the received bytes. */
	CHECK_EQ_INT(mac_over(v, 3, auth_token_key, sizeof(auth_token_key), full), 0);
	CHECK_EQ_INT(edgerm_wire_decode_agent_call_untrusted(v->bytes, v->len, &call), 0);
	CHECK_MEM(full, call.mac.ptr, EDGERM_MAC_LEN);
}

/* registered: the master's nonce, and a mac that verifies with the derived secret only. */
static void registered_vector(void)
{
	static edgerm_agent_reply_t reply;
	const struct vec *v = named(auth_registered_vector);
	uint8_t full[EDGERM_SHA256_LEN], secret[EDGERM_SECRET_LEN];

	CHECK(v != NULL);
	if (!v) {
		return;
	}
	CHECK_EQ_INT(edgerm_wire_decode_agent_reply_untrusted(v->bytes, v->len, &reply), 0);
	CHECK(reply.has_registered);
	CHECK_EQ_INT(reply.registered.nonce.len, EDGERM_NONCE_LEN);
	CHECK_MEM(reply.registered.nonce.ptr, auth_master_nonce, EDGERM_NONCE_LEN);
	CHECK_EQ_INT(reply.mac.len, EDGERM_MAC_LEN);

	edgerm_auth_token_key(auth_token, full);
	edgerm_auth_secret(full, auth_agent_nonce, reply.registered.nonce.ptr, secret);
	CHECK_EQ_INT(mac_over(v, 2, secret, sizeof(secret), full), 0);
	CHECK(edgerm_ct_equal(full, reply.mac.ptr, EDGERM_MAC_LEN));
	/* Not with token_key, not with another token's secret. */
	CHECK_EQ_INT(mac_over(v, 2, auth_token_key, sizeof(auth_token_key), full), 0);
	CHECK(!edgerm_ct_equal(full, reply.mac.ptr, EDGERM_MAC_LEN));
	edgerm_auth_token_key("another token", full);
	edgerm_auth_secret(full, auth_agent_nonce, auth_master_nonce, secret);
	CHECK_EQ_INT(mac_over(v, 2, secret, sizeof(secret), full), 0);
	CHECK(!edgerm_ct_equal(full, reply.mac.ptr, EDGERM_MAC_LEN));
}

void suite_auth(void)
{
	int before = unit_failures;

	keys();
	register_vector();
	registered_vector();
	printf("auth vectors: token_key, secret, %s and %s %s\n", auth_register_vector,
	       auth_registered_vector, unit_failures == before ? "match" : "DIFFER");
}
