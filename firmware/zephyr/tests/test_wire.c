/*
 * The codec against proto/vectors/vectors.json (compiled into vectors.h at build time):
 * every positive vector of a type the codec handles decodes and re-encodes to the same bytes;
 * every negative vector of such a type is refused; every non-canonical one is either refused
 * (the agent accepts deterministic CBOR only) or re-encodes to its canonical form. Plus the
 * MAC view and hand-made edge cases.
 */
#include "edgerm/sha256.h"
#include "edgerm/wire.h"
#include "unit.h"
#include "vectors.h"

/* edgerm_utf8_char, which the text check and the agent's log sanitizer share: the length of
 * a valid character, 0 for anything else. */
static void utf8_chars(void)
{
	static const struct {
		const char *s;
		size_t n, want;
	} c[] = {
		{"a", 1, 1}, {"\x7f", 1, 1}, {"\xc3\xa9", 2, 2}, {"\xe2\x82\xac", 3, 3},
		{"\xef\xbf\xbf", 3, 3}, {"\xf0\x9f\x98\x80", 4, 4}, {"\xf4\x8f\xbf\xbf", 4, 4},
		{"\xc3\xa9x", 3, 2}, /* only the first character */
		{"\x80", 1, 0}, {"\xbf", 1, 0},               /* a continuation byte alone */
		{"\xc0\x80", 2, 0}, {"\xc1\xbf", 2, 0},     /* overlong, 2 bytes */
		{"\xe0\x9f\xbf", 3, 0},                      /* overlong, 3 bytes */
		{"\xf0\x8f\xbf\xbf", 4, 0},                 /* overlong, 4 bytes */
		{"\xed\xa0\x80", 3, 0}, {"\xed\xbf\xbf", 3, 0}, /* surrogates */
		{"\xed\x9f\xbf", 3, 3},                      /* U+D7FF, just below them */
		{"\xf4\x90\x80\x80", 4, 0},                 /* above U+10FFFF */
		{"\xf8\x88\x80\x80\x80", 5, 0}, {"\xff", 1, 0}, /* no such lead byte */
		{"\xe2\x82\xac", 2, 0}, {"\xf0\x9f\x98", 3, 0}, /* cut short by n */
		{"\xc3x", 2, 0}, {"\xe2\x82x", 3, 0},       /* a non-continuation inside */
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		size_t got = edgerm_utf8_char((const uint8_t *)c[i].s, c[i].n);

		if (got != c[i].want) {
			printf("FAIL edgerm_utf8_char case %u: %u\n", (unsigned)i, (unsigned)got);
		}
		CHECK_EQ_INT(got, c[i].want);
	}
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA

static const edgerm_wire_type_t *find_type(const char *name)
{
	for (const edgerm_wire_type_t *t = edgerm_wire_types; t->name; t++) {
		if (strcmp(t->name, name) == 0) {
			return t;
		}
	}
	return NULL;
}

static edgerm_wire_any_t any;
static uint8_t out[2048];

static void positives(void)
{
	int used = 0, skipped = 0;

	for (const struct vec *v = positive; v->type; v++) {
		const edgerm_wire_type_t *t = find_type(v->type);

		if (!t) {
			skipped++;
			continue;
		}
		used++;
		int r = t->decode(v->bytes, v->len, &any);

		if (r != 0) {
			printf("FAIL positive %s (%s): decode %d\n", v->name, v->type, r);
		}
		CHECK_EQ_INT(r, 0);
		if (r != 0) {
			continue;
		}
		int n = t->encode(&any, out, sizeof(out));

		if (n != (int)v->len || memcmp(out, v->bytes, v->len) != 0) {
			printf("FAIL positive %s (%s): re-encoded %d bytes\n", v->name, v->type, n);
		}
		CHECK_EQ_INT(n, v->len);
		CHECK(n == (int)v->len && memcmp(out, v->bytes, v->len) == 0);
	}
	printf("wire vectors: %d positive vectors checked, %d of framework/operator types\n",
	       used, skipped);
	CHECK(used >= 40);
}

static void negatives(void)
{
	int used = 0;

	for (const struct vec *v = negative; v->type; v++) {
		const edgerm_wire_type_t *t = find_type(v->type);

		if (!t) {
			continue;
		}
		used++;
		int r = t->decode(v->bytes, v->len, &any);

		if (r >= 0) {
			printf("FAIL negative %s (%s) was accepted\n", v->name, v->type);
		}
		CHECK(r < 0);
	}
	printf("wire vectors: %d negative vectors refused\n", used);
	CHECK(used >= 25);

	int refused = 0, canonicalised = 0;

	for (const struct vec *v = noncanon; v->type; v++) {
		const edgerm_wire_type_t *t = find_type(v->type);

		if (!t) {
			continue;
		}
		if (t->decode(v->bytes, v->len, &any) < 0) {
			refused++;
			continue;
		}
		int n = t->encode(&any, out, sizeof(out));

		CHECK(n == (int)v->canonical_len && memcmp(out, v->canonical, n) == 0);
		canonicalised++;
	}
	printf("wire vectors: non-canonical: %d refused, %d re-encoded canonically\n", refused,
	       canonicalised);
}

/* The MAC of a vector computed through the unsigned view equals the one it carries. */
struct hmac_sink {
	edgerm_hmac_t h;
};

static void sink(void *ctx, const uint8_t *d, size_t n)
{
	edgerm_hmac_update(&((struct hmac_sink *)ctx)->h, d, n);
}

static void mac_of_vectors(void)
{
	/* vectors.json: launch_wasm/... are signed with secret 00 01 .. 0f; the first registration
	 * with token_key and its reply with the derived secret (the `auth` section). */
	static const uint8_t secret[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	int checked = 0;

	for (const struct vec *v = positive; v->type; v++) {
		bool call = strcmp(v->type, "AgentCall") == 0;
		bool reply = strcmp(v->type, "AgentReply") == 0;
		edgerm_slice_t mac;

		if (!call && !reply) {
			continue;
		}
		if (call) {
			CHECK_EQ_INT(edgerm_wire_decode_agent_call_untrusted(v->bytes, v->len, &any.call), 0);
			mac = any.call.mac;
		} else {
			CHECK_EQ_INT(edgerm_wire_decode_agent_reply_untrusted(v->bytes, v->len, &any.reply), 0);
			mac = any.reply.mac;
		}
		if (mac.len != 8 || strncmp(v->name, "all_fields", 10) == 0) {
			continue;
		}
		struct hmac_sink s;
		uint8_t full[32];

		if (strcmp(v->name, auth_register_vector) == 0) {
			edgerm_hmac_init(&s.h, auth_token_key, sizeof(auth_token_key));
		} else if (strcmp(v->name, auth_registered_vector) == 0) {
			edgerm_hmac_init(&s.h, auth_secret, sizeof(auth_secret));
		} else {
			edgerm_hmac_init(&s.h, secret, sizeof(secret));
		}
		CHECK_EQ_INT(edgerm_wire_unsigned_view(v->bytes, v->len, call ? 3 : 2, sink, &s), 0);
		edgerm_hmac_final(&s.h, full);
		if (memcmp(full, mac.ptr, 8) != 0) {
			printf("FAIL mac of %s\n", v->name);
		}
		CHECK_MEM(full, mac.ptr, 8);
		checked++;
	}
	printf("wire vectors: %d MACs recomputed\n", checked);
	CHECK(checked >= 5);
}

static void edge_cases(void)
{
	/* A float that needs 64 bits, one that needs 32, subnormal halves, infinity. */
	edgerm_resources_t r;
	const edgerm_wire_type_t *res = find_type("Resources");
	int n;

	memset(&r, 0, sizeof(r));
	r.cpus = 0.1;
	r.mem_mb = 100000.0;
	r.disk_mb = 5.960464477539063e-08; /* the smallest half subnormal */
	n = res->encode(&r, out, sizeof(out));
	static const uint8_t want[] = {0xa3, 0x01, 0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99,
				       0x99, 0x9a, 0x02, 0xfa, 0x47, 0xc3, 0x50, 0x00, 0x03,
				       0xf9, 0x00, 0x01};
	CHECK_EQ_INT(n, sizeof(want));
	CHECK_MEM(out, want, sizeof(want));

	/* Too many elements for this build's fixed arrays: refused as too large. */
	uint8_t many[64];
	size_t k = 0;

	many[k++] = 0xa1;
	many[k++] = 0x01;
	many[k++] = (uint8_t)(0x80 | (EDGERM_MAX_REP + 1));
	for (int i = 0; i < EDGERM_MAX_REP + 1; i++) {
		many[k++] = 0x61;
		many[k++] = 'x';
	}
	CHECK_EQ_INT(find_type("Set")->decode(many, k, &any), EDGERM_WIRE_E_TOO_LARGE);

	/* Encoding into a buffer one byte short fails cleanly. */
	CHECK_EQ_INT(res->encode(&r, out, sizeof(want) - 1), EDGERM_WIRE_E_NOSPACE);

	/* Non-shortest head and keys out of order. */
	static const uint8_t long_head[] = {0xa1, 0x01, 0x18, 0x05};
	static const uint8_t unordered[] = {0xa2, 0x02, 0x01, 0x01, 0x01};

	CHECK(edgerm_wire_check_untrusted(long_head, sizeof(long_head)) < 0);
	CHECK(edgerm_wire_check_untrusted(unordered, sizeof(unordered)) < 0);
}

void suite_wire(void)
{
	positives();
	negatives();
	mac_of_vectors();
	edge_cases();
	utf8_chars();
}

#else /* the device configuration: members the agent never reads are skipped, not decoded */

static edgerm_agent_reply_t reply;
static edgerm_agent_call_t call;
static edgerm_command_t cmd;
static edgerm_task_spec_t spec;

/* Every agent-link vector is accepted by the device decoders, every command and spec in a
 * reply decodes, and a spec's kind is known even when its body was skipped. */
static void device_positives(void)
{
	int replies = 0, specs = 0;

	for (const struct vec *v = positive; v->type; v++) {
		if (strcmp(v->type, "AgentReply") == 0) {
			int r = edgerm_wire_decode_agent_reply_untrusted(v->bytes, v->len, &reply);

			if (r != 0) {
				printf("FAIL device decode of %s: %d\n", v->name, r);
			}
			CHECK_EQ_INT(r, 0);
			for (uint8_t i = 0; r == 0 && i < reply.commands_count; i++) {
				CHECK_EQ_INT(edgerm_wire_decode_command(reply.commands[i], &cmd), 0);
				if (cmd.which == 2 && cmd.has_spec) {
					CHECK_EQ_INT(edgerm_wire_decode_task_spec(cmd.spec.ptr, cmd.spec.len,
										  &spec), 0);
					CHECK(spec.which == 0 || (spec.which >= 3 && spec.which <= 5));
				}
			}
			replies++;
		} else if (strcmp(v->type, "AgentCall") == 0) {
			CHECK_EQ_INT(edgerm_wire_decode_agent_call_untrusted(v->bytes, v->len, &call), 0);
		} else if (strcmp(v->type, "TaskSpec") == 0) {
			CHECK_EQ_INT(edgerm_wire_decode_task_spec(v->bytes, v->len, &spec), 0);
			specs++;
		}
	}
	printf("wire vectors (device build): %d replies and %d specs decoded\n", replies, specs);
	CHECK(replies >= 5 && specs >= 3);
}

/* Every CBOR-level negative vector is refused whatever message it is read as. */
static void device_negatives(void)
{
	int n = 0;

	for (const struct vec *v = negative; v->type; v++) {
		if (strcmp(v->level, "cbor") != 0) {
			continue;
		}
		CHECK(edgerm_wire_decode_agent_reply_untrusted(v->bytes, v->len, &reply) < 0);
		CHECK(edgerm_wire_decode_agent_call_untrusted(v->bytes, v->len, &call) < 0);
		n++;
	}
	printf("wire vectors (device build): %d CBOR-level negative vectors refused\n", n);
	CHECK(n >= 15);
}

void suite_wire(void)
{
	device_positives();
	device_negatives();
	utf8_chars();
}

#endif /* CONFIG_EDGERM_WIRE_FULL_SCHEMA */
