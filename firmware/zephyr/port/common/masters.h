/*
 * The list of masters a port sends to (docs/ha.md: one leads, the others are standbys), shared
 * by the POSIX and Zephyr ports: parse a provisioned list, print it back, and pick where to go
 * when the core asks to move (edgerm_port_switch_master). Pure C99: no allocation, no I/O, no
 * port calls; the host unit tests run it under ASan/UBSan. It belongs to the ports, not to the
 * core (whose flash budget it would cost on every device).
 *
 * A list: entries separated by commas or spaces, each "HOST", "HOST:PORT", "[IPV6]",
 * "[IPV6]:PORT" or one of these after "coap://"; a bare IPv6 address without brackets (more
 * than one ':') is a host with the default port - the form the single-master record stored.
 */
#ifndef EDGERM_MASTERS_H
#define EDGERM_MASTERS_H

#include <stddef.h>
#include <stdint.h>

#ifndef CONFIG_EDGERM_MAX_MASTERS
#define CONFIG_EDGERM_MAX_MASTERS 3
#endif

/* An IPv6 address in text (at most 45 characters) and its NUL. */
#define EDGERM_MASTER_HOST_SIZE 48
/* The longest entry edgerm_masters_format writes: "[" HOST "]:" PORT ",". */
#define EDGERM_MASTER_TEXT_SIZE (EDGERM_MASTER_HOST_SIZE + 9)
/* A buffer that holds any formatted list, with its NUL. */
#define EDGERM_MASTERS_TEXT_SIZE (CONFIG_EDGERM_MAX_MASTERS * EDGERM_MASTER_TEXT_SIZE + 1)

typedef struct {
	char host[EDGERM_MASTER_HOST_SIZE]; /* an address or a name, without brackets */
	uint16_t port;
} edgerm_master_addr_t;

typedef struct {
	edgerm_master_addr_t addr[CONFIG_EDGERM_MAX_MASTERS];
	uint8_t count;
	uint8_t current; /* the index of the master in use */
} edgerm_masters_t;

/* One entry (`len` bytes, no separators) into *out. 0, or -EINVAL (out unchanged). */
int edgerm_master_parse(edgerm_master_addr_t *out, const char *s, size_t len,
			uint16_t default_port);

/* A whole list of `len` bytes (a NUL ends it early) into *out, current 0. The number of
 * masters, or -EINVAL (an entry is malformed, listed twice, or there is none) or -E2BIG (more
 * than CONFIG_EDGERM_MAX_MASTERS); *out is unchanged on error. */
int edgerm_masters_parse(edgerm_masters_t *out, const char *list, size_t len,
			 uint16_t default_port);

/* "HOST:PORT" ("[IPV6]:PORT") of one master, NUL-terminated: its length, or -ENOSPC. */
int edgerm_master_format(const edgerm_master_addr_t *a, char *out, size_t cap);

/* The whole list, comma-separated, in a form edgerm_masters_parse reads back: its length, or
 * -ENOSPC (EDGERM_MASTERS_TEXT_SIZE always suffices). */
int edgerm_masters_format(const edgerm_masters_t *m, char *out, size_t cap);

/* Where to go from m->current: the master the refusal named (`leader`, `len` bytes,
 * "coap://HOST:PORT", len 0 when none) when it is on the list and is not the current one,
 * else the next one round the list. -1 with fewer than two masters: nowhere to go. The caller
 * sets m->current once it has moved. */
int edgerm_masters_pick(const edgerm_masters_t *m, const uint8_t *leader, size_t len);

/* Whether two entries name the same master (host without case, and port). */
int edgerm_master_same(const edgerm_master_addr_t *a, const edgerm_master_addr_t *b);

/* A new list replaces `old` (re-provisioning): keep using old's current master when the new
 * list holds it (next->current is set to it, else 0). Returns how many masters the lists
 * share: 0 means another cluster, which does not know the agent's identity. */
int edgerm_masters_carry_over(edgerm_masters_t *next, const edgerm_masters_t *old);

#endif /* EDGERM_MASTERS_H */
