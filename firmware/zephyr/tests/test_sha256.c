/* SHA-256 and HMAC-SHA256 against FIPS 180-4 and RFC 4231 vectors. */
#include "edgerm/sha256.h"
#include "unit.h"

static void hexify(const uint8_t *d, size_t n, char *out)
{
	static const char h[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = h[d[i] >> 4];
		out[2 * i + 1] = h[d[i] & 15];
	}
	out[2 * n] = 0;
}

static void sha(const char *msg, size_t len, const char *want)
{
	edgerm_sha256_t c;
	uint8_t out[32];
	char hex[65];

	edgerm_sha256_init(&c);
	/* Feed in odd pieces to exercise the block boundary handling. */
	for (size_t i = 0; i < len;) {
		size_t n = (len - i) < 7 ? (len - i) : 7;

		edgerm_sha256_update(&c, (const uint8_t *)msg + i, n);
		i += n;
	}
	edgerm_sha256_final(&c, out);
	hexify(out, 32, hex);
	CHECK(strcmp(hex, want) == 0);
}

static void hmac(const uint8_t *key, size_t klen, const char *msg, const char *want)
{
	edgerm_hmac_t c;
	uint8_t out[32];
	char hex[65];

	edgerm_hmac_init(&c, key, klen);
	edgerm_hmac_update(&c, (const uint8_t *)msg, strlen(msg));
	edgerm_hmac_final(&c, out);
	hexify(out, 32, hex);
	CHECK(strcmp(hex, want) == 0);
}

void suite_sha256(void)
{
	static char million[1000];
	uint8_t key20[20], key131[131];

	sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* 1000 x 'a' (a length that crosses many blocks and the 56-byte padding edge). */
	memset(million, 'a', sizeof(million));
	sha(million, sizeof(million),
	    "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");

	/* RFC 4231 test cases 1, 2 and 6 (key longer than a block). */
	memset(key20, 0x0b, sizeof(key20));
	hmac(key20, 20, "Hi There",
	     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	hmac((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memset(key131, 0xaa, sizeof(key131));
	hmac(key131, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
	     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

	uint8_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};

	CHECK(edgerm_ct_equal(a, a, 4));
	CHECK(!edgerm_ct_equal(a, b, 4));
}
