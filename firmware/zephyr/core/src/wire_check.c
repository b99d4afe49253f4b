/*
 * The untrusted side of the wire codec: one iterative, depth-bounded scan of a received buffer
 * before any field is read, and the "message without its mac" view used by the MAC check.
 *
 * Why a scan of our own before zcbor: zcbor's skip of unknown fields recurses once per nesting
 * level and accepts some encodings we refuse. After this scan zcbor only sees well-formed,
 * deterministic CBOR no deeper than CONFIG_EDGERM_WIRE_MAX_DEPTH, so its recursion is bounded.
 *
 * Accepted: shortest-form heads, definite lengths, map keys that are unsigned integers in
 * strictly ascending order (so no duplicates), simple values encoded in one byte. Anything
 * else, truncation and trailing bytes are EDGERM_WIRE_E_MALFORMED.
 */
#include <stdint.h>
#include <string.h>

#include "edgerm/wire.h"

struct frame {
	size_t left;       /* items still to read in this container */
	uint64_t last_key; /* maps: the previous key */
	uint8_t is_map;
	uint8_t have_key;
};

/* Read one head at *pos. Cannot read past len. */
static int head_untrusted(const uint8_t *buf, size_t len, size_t *pos, uint8_t *major,
			  uint8_t *info, uint64_t *arg)
{
	if (*pos >= len) {
		return EDGERM_WIRE_E_MALFORMED;
	}
	uint8_t ib = buf[(*pos)++];
	*major = ib >> 5;
	*info = ib & 0x1f;
	if (*info < 24) {
		*arg = *info;
		return 0;
	}
	if (*info > 27) {
		/* 28..30 reserved; 31 indefinite length or break: never deterministic. */
		return EDGERM_WIRE_E_MALFORMED;
	}
	size_t n = (size_t)1 << (*info - 24);
	if (len - *pos < n) {
		return EDGERM_WIRE_E_MALFORMED;
	}
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		v = (v << 8) | buf[(*pos)++];
	}
	*arg = v;
	if (*major == 7) {
		/* 25..27 are floats of any value; a one-byte simple value below 32 is invalid. */
		return (*info == 24 && v < 32) ? EDGERM_WIRE_E_MALFORMED : 0;
	}
	static const uint64_t min_for_info[4] = {24, 0x100, 0x10000, 0x100000000ull};
	return v < min_for_info[*info - 24] ? EDGERM_WIRE_E_MALFORMED : 0;
}

/* Scan the one item at `pos`; its end goes to *end. */
static int scan_item(const uint8_t *buf, size_t len, size_t pos, size_t *end)
{
	struct frame stack[CONFIG_EDGERM_WIRE_MAX_DEPTH + 1];
	size_t depth = 0; /* frames in use; the item being read is at nesting depth + 1 */

	stack[0].left = 1;
	stack[0].is_map = 0;
	stack[0].have_key = 0;
	depth = 1;
	while (depth > 0) {
		struct frame *top = &stack[depth - 1];

		if (top->left == 0) {
			depth--;
			continue;
		}
		bool is_key = top->is_map && (top->left % 2 == 0);
		top->left--;

		uint8_t major, info;
		uint64_t arg;
		int r = head_untrusted(buf, len, &pos, &major, &info, &arg);

		if (r < 0) {
			return r;
		}
		if (is_key) {
			if (major != 0 || (top->have_key && arg <= top->last_key)) {
				return EDGERM_WIRE_E_MALFORMED;
			}
			top->last_key = arg;
			top->have_key = 1;
			continue;
		}
		switch (major) {
		case 2:
		case 3:
			if (arg > len - pos) {
				return EDGERM_WIRE_E_MALFORMED;
			}
			pos += (size_t)arg;
			break;
		case 4:
		case 5:
		case 6: {
			/* Every item takes at least one byte: a count beyond what is left is truncated
			 * input, and refusing it here keeps `left` small. */
			uint64_t items = major == 6 ? 1 : arg;

			if (items > len - pos || (major == 5 && items > (len - pos) / 2)) {
				return EDGERM_WIRE_E_MALFORMED;
			}
			if (items == 0) {
				break;
			}
			/* The children sit at nesting depth + 1. */
			if (depth + 1 > CONFIG_EDGERM_WIRE_MAX_DEPTH) {
				return EDGERM_WIRE_E_MALFORMED;
			}
			struct frame *f = &stack[depth++];

			f->left = (size_t)(major == 5 ? items * 2 : items);
			f->is_map = major == 5;
			f->have_key = 0;
			f->last_key = 0;
			break;
		}
		default: /* 0, 1, 7: the head was all */
			break;
		}
	}
	*end = pos;
	return 0;
}

int edgerm_wire_check_untrusted(const uint8_t *buf, size_t len)
{
	size_t end;

	if (buf == NULL || len == 0) {
		return EDGERM_WIRE_E_MALFORMED;
	}
	int r = scan_item(buf, len, 0, &end);

	if (r < 0) {
		return r;
	}
	return end == len ? 0 : EDGERM_WIRE_E_MALFORMED;
}

int edgerm_wire_unsigned_view(const uint8_t *buf, size_t len, uint32_t mac_key,
			      edgerm_wire_sink_t fn, void *ctx)
{
	size_t pos = 0;
	uint8_t major, info;
	uint64_t count;

	if (head_untrusted(buf, len, &pos, &major, &info, &count) < 0 || major != 5 ||
	    count == 0 || count > len) {
		return EDGERM_WIRE_E_MALFORMED;
	}
	const size_t body = pos;

	for (uint64_t i = 0; i < count; i++) {
		size_t entry = pos, key_end = pos, value_end;
		uint64_t key;

		if (head_untrusted(buf, len, &key_end, &major, &info, &key) < 0 || major != 0 ||
		    scan_item(buf, len, key_end, &value_end) < 0) {
			return EDGERM_WIRE_E_MALFORMED;
		}
		if (key == mac_key) {
			/* A map header for count - 1 entries: count < 2^16 here (len is smaller). */
			uint8_t hdr[3];
			size_t hlen;
			uint64_t n = count - 1;

			if (n < 24) {
				hdr[0] = (uint8_t)(0xa0 | n);
				hlen = 1;
			} else if (n < 0x100) {
				hdr[0] = 0xb8;
				hdr[1] = (uint8_t)n;
				hlen = 2;
			} else {
				hdr[0] = 0xb9;
				hdr[1] = (uint8_t)(n >> 8);
				hdr[2] = (uint8_t)n;
				hlen = 3;
			}
			fn(ctx, hdr, hlen);
			fn(ctx, buf + body, entry - body);
			fn(ctx, buf + value_end, len - value_end);
			return 0;
		}
		pos = value_end;
	}
	return EDGERM_WIRE_E_MALFORMED; /* no mac */
}
