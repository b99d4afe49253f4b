/* The ports' list of masters (port/common/masters.c): parsing, printing, picking the next. */
#include <errno.h>

#include "masters.h"
#include "unit.h"

static int parse(edgerm_masters_t *m, const char *s)
{
	return edgerm_masters_parse(m, s, strlen(s), 5683);
}

static int pick(const edgerm_masters_t *m, const char *leader)
{
	return edgerm_masters_pick(m, (const uint8_t *)leader, leader ? strlen(leader) : 0);
}

static void test_parse_forms(void)
{
	edgerm_masters_t m;

	CHECK_EQ_INT(parse(&m, "10.0.0.1:5684, coap://[fd00::2]:6000\tfd00::3"), 3);
	CHECK(strcmp(m.addr[0].host, "10.0.0.1") == 0 && m.addr[0].port == 5684);
	CHECK(strcmp(m.addr[1].host, "fd00::2") == 0 && m.addr[1].port == 6000);
	/* A bare IPv6 address (the old single-master record): the default port. */
	CHECK(strcmp(m.addr[2].host, "fd00::3") == 0 && m.addr[2].port == 5683);
	CHECK_EQ_INT(parse(&m, ",,host-4, coap://Host_5:7 ,"), 2);
	CHECK(strcmp(m.addr[0].host, "host-4") == 0 && m.addr[0].port == 5683);
	CHECK(strcmp(m.addr[1].host, "Host_5") == 0 && m.addr[1].port == 7);
	CHECK_EQ_INT(m.current, 0);
	CHECK_EQ_INT(parse(&m, "[::1]"), 1);
	CHECK(strcmp(m.addr[0].host, "::1") == 0 && m.addr[0].port == 5683);
	/* A NUL ends the list before len. */
	CHECK_EQ_INT(edgerm_masters_parse(&m, "a:1\0b:2", 7, 5683), 1);
	/* len ends it before the NUL. */
	CHECK_EQ_INT(edgerm_masters_parse(&m, "a:1,b:2", 3, 5683), 1);
	CHECK_EQ_INT(m.addr[0].port, 1);
}

static void test_parse_refusals(void)
{
	static const char *const bad[] = {
		"", " , ", "a:0", "a:65536", "a:123456", "a:", ":5683", "a:x1", "[fd00::1",
		"[fd00::1]5683", "[fd00::1]:", "[1.2.3.4]:5683", "[]:1", "coap://", "a b:1 a",
		"a/b", "a;b", "a:1,A:1",
		"0123456789012345678901234567890123456789012345678", /* 49: too long a host */
	};
	edgerm_masters_t m, before;

	CHECK_EQ_INT(parse(&m, "x:1,y:2"), 2);
	m.current = 1;
	before = m;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(&m, bad[i]);

		CHECK_EQ_INT(r, -EINVAL);
		if (r != -EINVAL) {
			printf("  accepted %s\n", bad[i]);
		}
		/* A refused list changes nothing. */
		CHECK_MEM(&m, &before, sizeof(m));
	}
	/* One more than the build holds. */
	char many[16 * 8] = "";
	for (int i = 0; i <= CONFIG_EDGERM_MAX_MASTERS && i < 16; i++) {
		char one[] = "h?:1,";

		one[1] = (char)('a' + i);
		strcat(many, one);
	}
	CHECK_EQ_INT(parse(&m, many), -E2BIG);
	CHECK_MEM(&m, &before, sizeof(m));
	/* The longest host that fits. */
	CHECK_EQ_INT(parse(&m, "012345678901234567890123456789012345678901234567:9"), -EINVAL);
	CHECK_EQ_INT(parse(&m, "01234567890123456789012345678901234567890123456:9"), 1);
}

static void test_format_round_trip(void)
{
	edgerm_masters_t m, back;
	char text[EDGERM_MASTERS_TEXT_SIZE];
	char tiny[8];

	CHECK_EQ_INT(parse(&m, "coap://[FD00::2]:6000, 10.0.0.1"), 2);
	CHECK_EQ_INT(edgerm_masters_format(&m, text, sizeof(text)), 28);
	CHECK(strcmp(text, "[FD00::2]:6000,10.0.0.1:5683") == 0 || printf("  got %s\n", text) < 0);
	CHECK_EQ_INT(edgerm_masters_parse(&back, text, sizeof(text), 1), 2);
	CHECK_MEM(&back, &m, sizeof(m));
	/* Too small: -ENOSPC and a NUL-terminated prefix, never an overrun (ASan). */
	CHECK_EQ_INT(edgerm_masters_format(&m, tiny, sizeof(tiny)), -ENOSPC);
	CHECK(memchr(tiny, '\0', sizeof(tiny)) != NULL);
	CHECK_EQ_INT(edgerm_masters_format(&m, text, 0), -ENOSPC);
	CHECK_EQ_INT(edgerm_master_format(&m.addr[1], tiny, sizeof(tiny)), -ENOSPC);
	/* The largest list fits EDGERM_MASTERS_TEXT_SIZE. */
	edgerm_masters_t big;

	memset(&big, 0, sizeof(big));
	big.count = CONFIG_EDGERM_MAX_MASTERS;
	for (size_t i = 0; i < big.count; i++) {
		memset(big.addr[i].host, ':', sizeof(big.addr[i].host) - 1);
		big.addr[i].host[0] = (char)('a' + i);
		big.addr[i].port = 65535;
	}
	CHECK(edgerm_masters_format(&big, text, sizeof(text)) > 0);
}

static void test_pick(void)
{
	edgerm_masters_t m;

	CHECK_EQ_INT(parse(&m, "10.0.0.1:1,10.0.0.2:2,[fd00::3]:3"), 3);
	/* No hint (an unanswered exchange): the next one, round the list. */
	CHECK_EQ_INT(pick(&m, NULL), 1);
	m.current = 2;
	CHECK_EQ_INT(pick(&m, ""), 0);
	/* A named leader on the list: straight there. */
	m.current = 0;
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.2:2"), 1);
	CHECK_EQ_INT(pick(&m, "coap://[FD00::3]:3"), 2);
	/* A leader not on the list (or another port, or not a coap URL): the next one. */
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.9:2"), 1);
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.2:3"), 1);
	CHECK_EQ_INT(pick(&m, "10.0.0.3:3"), 1);
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.2"), 1);
	CHECK_EQ_INT(pick(&m, "coap://[fd00::3]:3/x"), 1);
	/* The current one named as leader (a confused standby): move on anyway. */
	m.current = 1;
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.2:2"), 2);
	/* A hint is read within its length only (not NUL-terminated). */
	const uint8_t url[] = {'c', 'o', 'a', 'p', ':', '/', '/', '1', '0', '.', '0', '.', '0',
			       '.', '1', ':', '1'};
	CHECK_EQ_INT(edgerm_masters_pick(&m, url, sizeof(url)), 0);
	/* One master: nowhere to go. */
	CHECK_EQ_INT(parse(&m, "10.0.0.1"), 1);
	CHECK_EQ_INT(pick(&m, "coap://10.0.0.1:5683"), -1);
	CHECK_EQ_INT(pick(&m, NULL), -1);
}

static void test_carry_over(void)
{
	edgerm_masters_t old, next;

	CHECK_EQ_INT(parse(&old, "10.0.0.1,10.0.0.2,10.0.0.3"), 3);
	old.current = 1;
	/* The master in use is still listed (elsewhere): keep using it. */
	CHECK_EQ_INT(parse(&next, "10.0.0.9,10.0.0.2:5683"), 2);
	CHECK_EQ_INT(edgerm_masters_carry_over(&next, &old), 1);
	CHECK_EQ_INT(next.current, 1);
	/* Shares one, but not the one in use: start at the first, same cluster. */
	CHECK_EQ_INT(parse(&next, "10.0.0.9,10.0.0.3"), 2);
	next.current = 1;
	CHECK_EQ_INT(edgerm_masters_carry_over(&next, &old), 1);
	CHECK_EQ_INT(next.current, 0);
	/* Shares none (another port is another master): another cluster. */
	CHECK_EQ_INT(parse(&next, "10.0.0.2:5684,10.0.0.8"), 2);
	CHECK_EQ_INT(edgerm_masters_carry_over(&next, &old), 0);
	CHECK_EQ_INT(next.current, 0);
	/* The same list: all shared, the current one kept. */
	next = old;
	next.current = 0;
	CHECK_EQ_INT(edgerm_masters_carry_over(&next, &old), 3);
	CHECK_EQ_INT(next.current, 1);
}

void suite_masters(void)
{
	test_carry_over();
	test_parse_forms();
	test_parse_refusals();
	test_format_round_trip();
	test_pick();
}
