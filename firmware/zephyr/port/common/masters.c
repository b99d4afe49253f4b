/* The list of masters of a port (masters.h): parse, print, pick the next. */
#include "masters.h"

#include <errno.h>
#include <string.h>

#define SCHEME "coap://"
#define SCHEME_LEN 7u

static int is_sep(char c)
{
	return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Characters a host name or an IPv4/IPv6 address (with a %zone) may hold. */
static int is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_' || c == ':' || c == '%';
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* A decimal port 1..65535 of exactly `len` digits. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
	uint32_t v = 0;

	if (len == 0 || len > 5) {
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return -EINVAL;
		}
		v = v * 10u + (uint32_t)(s[i] - '0');
	}
	if (v == 0 || v > 65535u) {
		return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

int edgerm_master_parse(edgerm_master_addr_t *out, const char *s, size_t len,
			uint16_t default_port)
{
	const char *host;
	size_t host_len, colons = 0;
	uint16_t port = default_port;

	if (len >= SCHEME_LEN && memcmp(s, SCHEME, SCHEME_LEN) == 0) {
		s += SCHEME_LEN;
		len -= SCHEME_LEN;
	}
	if (len == 0) {
		return -EINVAL;
	}
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (!close) {
			return -EINVAL;
		}
		host = s + 1;
		host_len = (size_t)(close - host);
		size_t rest = len - (size_t)(close - s) - 1u;

		if (rest > 0 && (close[1] != ':' || parse_port(close + 2, rest - 1u, &port) < 0)) {
			return -EINVAL;
		}
		for (size_t i = 0; i < host_len; i++) {
			colons += host[i] == ':';
		}
		if (colons < 2) {
			return -EINVAL; /* brackets hold an IPv6 address only */
		}
	} else {
		const char *last = NULL;

		for (size_t i = 0; i < len; i++) {
			if (s[i] == ':') {
				colons++;
				last = s + i;
			}
		}
		host = s;
		host_len = len;
		/* One ':' separates the port; more make a bare IPv6 address (default port). */
		if (colons == 1) {
			host_len = (size_t)(last - s);
			if (parse_port(last + 1, len - host_len - 1u, &port) < 0) {
				return -EINVAL;
			}
		}
	}
	if (host_len == 0 || host_len >= sizeof(out->host) || port == 0) {
		return -EINVAL;
	}
	for (size_t i = 0; i < host_len; i++) {
		if (!is_host_char(host[i])) {
			return -EINVAL;
		}
	}
	memcpy(out->host, host, host_len);
	out->host[host_len] = '\0';
	out->port = port;
	return 0;
}

int edgerm_master_same(const edgerm_master_addr_t *a, const edgerm_master_addr_t *b)
{
	size_t i;

	if (a->port != b->port) {
		return 0;
	}
	/* Host names and IPv6 hex digits compare without case. */
	for (i = 0; a->host[i] && lower(a->host[i]) == lower(b->host[i]); i++) {
	}
	return a->host[i] == '\0' && b->host[i] == '\0';
}

int edgerm_masters_parse(edgerm_masters_t *out, const char *list, size_t len,
			 uint16_t default_port)
{
	edgerm_masters_t m;
	size_t i = 0;

	memset(&m, 0, sizeof(m));
	while (i < len && list[i] != '\0') {
		size_t start;

		if (is_sep(list[i])) {
			i++;
			continue;
		}
		start = i;
		while (i < len && list[i] != '\0' && !is_sep(list[i])) {
			i++;
		}
		if (m.count >= CONFIG_EDGERM_MAX_MASTERS) {
			return -E2BIG;
		}
		if (edgerm_master_parse(&m.addr[m.count], list + start, i - start, default_port) <
		    0) {
			return -EINVAL;
		}
		for (size_t k = 0; k < m.count; k++) {
			if (edgerm_master_same(&m.addr[k], &m.addr[m.count])) {
				return -EINVAL; /* listed twice */
			}
		}
		m.count++;
	}
	if (m.count == 0) {
		return -EINVAL;
	}
	*out = m;
	return m.count;
}

int edgerm_master_format(const edgerm_master_addr_t *a, char *out, size_t cap)
{
	size_t hl = 0, pl = 0, n = 0;
	char port[6];

	while (hl < sizeof(a->host) && a->host[hl] != '\0') {
		hl++;
	}
	int v6 = memchr(a->host, ':', hl) != NULL;

	for (uint32_t p = a->port, d = 10000; d; d /= 10) {
		if (p / d || pl || d == 1) {
			port[pl++] = (char)('0' + p / d % 10);
		}
	}
	if (hl == sizeof(a->host) || cap < hl + pl + (v6 ? 2u : 0u) + 2u) {
		return -ENOSPC;
	}
	if (v6) {
		out[n++] = '[';
	}
	memcpy(out + n, a->host, hl);
	n += hl;
	if (v6) {
		out[n++] = ']';
	}
	out[n++] = ':';
	memcpy(out + n, port, pl);
	n += pl;
	out[n] = '\0';
	return (int)n;
}

int edgerm_masters_format(const edgerm_masters_t *m, char *out, size_t cap)
{
	size_t n = 0;

	if (cap == 0) {
		return -ENOSPC;
	}
	out[0] = '\0';
	for (size_t i = 0; i < m->count && i < CONFIG_EDGERM_MAX_MASTERS; i++) {
		if (i > 0) {
			if (cap - n < 2) {
				return -ENOSPC;
			}
			out[n++] = ',';
		}
		int r = edgerm_master_format(&m->addr[i], out + n, cap - n);

		if (r < 0) {
			out[n > 0 ? n - 1 : 0] = '\0';
			return r;
		}
		n += (size_t)r;
	}
	return (int)n;
}

int edgerm_masters_pick(const edgerm_masters_t *m, const uint8_t *leader, size_t len)
{
	edgerm_master_addr_t named;

	if (m->count < 2 || m->count > CONFIG_EDGERM_MAX_MASTERS) {
		return -1;
	}
	/* Only a "coap://" URL is a leader's address; anything else is no hint. */
	if (leader && len > SCHEME_LEN && memcmp(leader, SCHEME, SCHEME_LEN) == 0 &&
	    edgerm_master_parse(&named, (const char *)leader, len, 0) == 0) {
		for (size_t i = 0; i < m->count; i++) {
			if (i != m->current && edgerm_master_same(&m->addr[i], &named)) {
				return (int)i;
			}
		}
	}
	return (int)((m->current + 1u) % m->count);
}

int edgerm_masters_carry_over(edgerm_masters_t *next, const edgerm_masters_t *old)
{
	int shared = 0;

	next->current = 0;
	for (size_t i = 0; i < next->count && i < CONFIG_EDGERM_MAX_MASTERS; i++) {
		for (size_t k = 0; k < old->count && k < CONFIG_EDGERM_MAX_MASTERS; k++) {
			if (edgerm_master_same(&next->addr[i], &old->addr[k])) {
				shared++;
				if (k == old->current) {
					next->current = (uint8_t)i;
				}
			}
		}
	}
	return shared;
}
