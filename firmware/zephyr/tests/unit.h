/*
 * A very small unit-test harness that runs the same way on the host (under ASan/UBSan) and on
 * Cortex-M4 in QEMU (printf over semihosting). main() returns the number of failures, which
 * QEMU hands back as its exit code.
 */
#ifndef EDGERM_UNIT_H
#define EDGERM_UNIT_H

#include <stdio.h>
#include <string.h>

extern int unit_failures;
extern int unit_checks;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		unit_checks++;                                                                     \
		if (!(cond)) {                                                                     \
			unit_failures++;                                                           \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
		}                                                                                  \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		unit_checks++;                                                                     \
		if (a_ != b_) {                                                                    \
			unit_failures++;                                                           \
			printf("FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a,    \
			       #b, a_, b_);                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* Suites, one per core module. */
void suite_sha256(void);
void suite_wire(void);
void suite_auth(void);
void suite_coap(void);
void suite_agent(void);
void suite_abi(void);
/* The ports' list of masters (port/common/masters.c). */
void suite_masters(void);
/* OSCORE and the AES-128 block cipher under it; proto/vectors/oscore.json. */
void suite_oscore(void);
void suite_oscore_vectors(void);

/* test_agent.c's agent and fake port, for the vector tests: the agent booted with identity p
 * and made ACTIVE (as after its registration), the agent, the last datagram it sent. */
#include "edgerm/agent.h"
edgerm_agent_t *test_agent_active(const edgerm_persist_t *p);
edgerm_agent_t *test_agent_current(void);
size_t test_agent_sent(const uint8_t **d);

#endif
