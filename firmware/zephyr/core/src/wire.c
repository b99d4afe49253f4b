/*
 * The agent-link codec, table-driven: every message is a `const` table of its fields (number,
 * kind, offset in the C struct, where its count / has-flag / oneof selector lives, nested
 * message), and one generic decoder and one generic encoder walk those tables on zcbor's runtime
 * primitives, as nanopb's and zcbor's generated descriptors do. The tables sit in flash; adding
 * a field is one line, not a decoder and an encoder.
 *
 * Decoding: edgerm_wire_check_untrusted has already proven the buffer well-formed and
 * deterministic, so a zcbor failure here means "not this message" (a wrong type, an integer out
 * of its field's range) and is reported as EDGERM_WIRE_E_SCHEMA. Each message is a map walked
 * key by key; unknown keys are skipped (forward compatibility); a second member of a oneof is
 * refused; a repeated field with more elements than its array is EDGERM_WIRE_E_TOO_LARGE. The
 * output struct is zeroed once, at the top; a sub-message kept encoded (a command in a reply, a
 * spec in a launch) is decoded with no output at all, only to validate it, so it costs no
 * scratch struct. Encoding: zcbor is built with ZCBOR_CANONICAL (definite lengths, shortest
 * heads); fields at their default are left out and written in ascending key order (each table
 * is sorted), so the output is the deterministic encoding of edgerm.wire, byte for byte.
 */
#include <stddef.h>
#include <string.h>

#include <zcbor_common.h>
#include <zcbor_decode.h>
#include <zcbor_encode.h>

#include "edgerm/wire.h"

#ifndef ZCBOR_CANONICAL
#error "zcbor must be built with ZCBOR_CANONICAL: the wire format is deterministic CBOR"
#endif

/* Our deepest legal message nests 11 containers; zcbor keeps one backup state per level. */
#define N_STATES 14

#define OK 0
#define BAD EDGERM_WIRE_E_SCHEMA
#define TRY(expr)                                                                                  \
	do {                                                                                       \
		int r_ = (expr);                                                                   \
		if (r_ < 0) {                                                                      \
			return r_;                                                                 \
		}                                                                                  \
	} while (0)
#define NEED(cond)                                                                                 \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			return BAD;                                                                \
		}                                                                                  \
	} while (0)
#define PUT(expr)                                                                                  \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			return EDGERM_WIRE_E_NOSPACE;                                              \
		}                                                                                  \
	} while (0)

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

typedef zcbor_state_t st_t;

/* ------------------------------------------------------------------------------------------ */
/* The descriptors */

/* What a field holds. */
enum {
	K_U32,  /* uint32_t */
	K_I32,  /* int32_t (proto int32 and enums) */
	K_U64,  /* uint64_t */
	K_BOOL, /* bool */
	K_F64,  /* double, written in its shortest exact float form */
	K_BSTR, /* edgerm_slice_t of a byte string */
	K_TSTR, /* edgerm_slice_t of a UTF-8 text string (checked) */
	K_ENC,  /* edgerm_slice_t of message `sub`, kept encoded (validated when decoded) */
	K_MSG,  /* a struct of message `sub` */
	K_SKIP, /* nothing: device builds check a member the agent never reads to be an item of
		 * CBOR major type `sub`, and skip it */
};

/* When a field is on the wire. */
enum {
	P_PLAIN = 0 << 4, /* unless at its default (0, false, +0.0, empty) */
	P_HAS = 1 << 4,   /* when the bool at `aux` is set (decoding sets it) */
	P_ONEOF = 2 << 4, /* when the uint8_t selector at `aux` equals the key; one per message */
	P_LIST = 3 << 4,  /* repeated: `max` elements at most, their uint8_t count at `aux` */
};
#define KIND(f) ((f)->how & 0x0f)
#define PRES(f) ((f)->how & 0x30)

typedef struct {
	uint8_t key;  /* field number */
	uint8_t how;  /* K_* | P_* */
	uint8_t sub;  /* K_MSG/K_ENC: message id; K_SKIP: CBOR major type */
	uint8_t max;  /* P_LIST: array length */
	uint16_t off; /* the value (or the first element) in the struct */
	uint16_t aux; /* P_HAS flag, P_ONEOF selector or P_LIST count in the struct */
} field_t;

/* Message ids: indexes into MSGS. */
enum {
	M_SET,
	M_DEVICE,
	M_RESOURCES,
	M_ATTRIBUTE,
	M_ENV,
	M_WASM,
	M_TASK_SPEC,
	M_TASK_REPORT,
	M_REGISTER,
	M_HEARTBEAT,
	M_STATUS,
	M_PUBLISH,
	M_MODULE_REQUEST,
	M_AGENT_CALL,
	M_LAUNCH,
	M_KILL,
	M_FETCH,
	M_EMPTY,
	M_COMMAND,
	M_REGISTERED,
	M_ERROR,
	M_MODULE_CHUNK,
	M_AGENT_REPLY,
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
	M_RANGE,
	M_CUSTOM,
	M_PORT_MAPPING,
	M_DOCKER,
	M_MPY,
#endif
};

#define LEN(type, m) (sizeof(((type *)0)->m) / sizeof(((type *)0)->m[0]))
/* Field builders; T is the struct being described. */
#define F(k, kind, m) {k, kind, 0, 0, offsetof(T, m), 0}
#define HAS(k, msg, m, flag) {k, K_MSG | P_HAS, msg, 0, offsetof(T, m), offsetof(T, flag)}
#define ONEOF(k, kind, sub, m) {k, (kind) | P_ONEOF, sub, 0, offsetof(T, m), offsetof(T, which)}
/* A oneof member whose fields live in the message's own struct (a Command's kinds). */
#define SAME(k, msg) {k, K_MSG | P_ONEOF, msg, 0, 0, offsetof(T, which)}
#define LIST(k, kind, sub, m, count)                                                               \
	{k, (kind) | P_LIST, sub, LEN(T, m), offsetof(T, m), offsetof(T, count)}

/* Every message's fields, in ascending key order, one array member per message so that a
 * message is found by its first index (an offsetof) and its count (a sizeof). */
struct fields {
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
	field_t range[2], custom[4], port_mapping[3], docker[6], mpy[6];
#endif
	field_t set[1], device[5], resources[6], attribute[4], env[2], wasm[6], task_spec[5],
		task_report[2], reg[9], heartbeat[3], status[6], publish[4], module_request[3],
		agent_call[8], launch[2], kill[1], fetch[2], command[5], registered[5], error[3],
		module_chunk[4], agent_reply[7];
};

static const union {
	struct fields m;
	field_t all[sizeof(struct fields) / sizeof(field_t)];
} FIELDS = {{
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
#define T edgerm_range_t
	.range = {F(1, K_U64, begin), F(2, K_U64, end)},
#undef T
#define T edgerm_custom_t
	.custom = {F(1, K_TSTR, name), ONEOF(2, K_F64, 0, v.scalar),
		   ONEOF(3, K_MSG, M_RANGE, v.range), ONEOF(4, K_MSG, M_SET, v.set)},
#undef T
#define T edgerm_port_mapping_t
	.port_mapping = {F(1, K_U32, container_port), F(2, K_U32, host_port), F(3, K_BOOL, udp)},
#undef T
#define T edgerm_docker_task_t
	.docker = {F(1, K_TSTR, image), LIST(2, K_TSTR, 0, command, command_count),
		   LIST(3, K_MSG, M_ENV, env, env_count),
		   LIST(4, K_MSG, M_PORT_MAPPING, ports, ports_count), F(5, K_I32, network),
		   F(6, K_U32, timeout_s)},
#undef T
#define T edgerm_wasm_task_t
	.mpy = {F(1, K_BSTR, sha256), F(2, K_U32, size), F(3, K_BOOL, mpy),
		LIST(4, K_TSTR, 0, args, args_count), LIST(5, K_MSG, M_ENV, env, env_count),
		F(6, K_U32, timeout_s)},
#undef T
#endif
#define T edgerm_set_t
	.set = {LIST(1, K_TSTR, 0, items, count)},
#undef T
#define T edgerm_device_t
	.device = {F(1, K_TSTR, name), F(2, K_I32, kind), F(3, K_U32, shares), F(4, K_TSTR, unit),
		   F(5, K_TSTR, path)},
#undef T
#define T edgerm_resources_t
	.resources = {F(1, K_F64, cpus), F(2, K_F64, mem_mb), F(3, K_F64, disk_mb),
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
		      LIST(4, K_MSG, M_RANGE, ports, ports_count),
		      LIST(5, K_MSG, M_DEVICE, devices, devices_count),
		      LIST(6, K_MSG, M_CUSTOM, custom, custom_count)},
#else
		      {4, K_SKIP, 4, 0, 0, 0}, LIST(5, K_MSG, M_DEVICE, devices, devices_count),
		      {6, K_SKIP, 4, 0, 0, 0}},
#endif
#undef T
#define T edgerm_attribute_t
	.attribute = {F(1, K_TSTR, name), ONEOF(2, K_TSTR, 0, v.text), ONEOF(3, K_F64, 0, v.scalar),
		      ONEOF(4, K_MSG, M_SET, v.set)},
#undef T
#define T edgerm_env_t
	.env = {F(1, K_TSTR, name), F(2, K_TSTR, value)},
#undef T
#define T edgerm_wasm_task_t
	.wasm = {F(1, K_BSTR, sha256), F(2, K_U32, size), F(3, K_TSTR, entry),
		 LIST(4, K_TSTR, 0, args, args_count), LIST(5, K_MSG, M_ENV, env, env_count),
		 F(6, K_U32, timeout_s)},
#undef T
#define T edgerm_task_spec_t
	.task_spec = {F(1, K_TSTR, name), HAS(2, M_RESOURCES, resources, has_resources),
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
		      ONEOF(3, K_MSG, M_DOCKER, kind.docker), ONEOF(4, K_MSG, M_WASM, kind.wasm),
		      ONEOF(5, K_MSG, M_MPY, kind.wasm)},
#else
		      ONEOF(3, K_SKIP, 5, kind), ONEOF(4, K_MSG, M_WASM, kind.wasm),
		      ONEOF(5, K_SKIP, 5, kind)},
#endif
#undef T
#define T edgerm_task_report_t
	.task_report = {F(1, K_U32, task), F(2, K_I32, state)},
#undef T
#define T edgerm_register_t
	.reg = {F(1, K_TSTR, name), HAS(2, M_RESOURCES, resources, has_resources),
		LIST(3, K_MSG, M_ATTRIBUTE, attributes, attributes_count),
		LIST(4, K_I32, 0, executors, executors_count), F(5, K_U32, protocol_version),
		F(6, K_BSTR, nonce), LIST(7, K_MSG, M_TASK_REPORT, tasks, tasks_count),
		F(8, K_U32, max_payload), F(9, K_U32, update_next)},
#undef T
#define T edgerm_heartbeat_t
	.heartbeat = {F(1, K_U32, command_ack), HAS(2, M_RESOURCES, resources, has_resources),
		      LIST(3, K_MSG, M_ATTRIBUTE, attributes, attributes_count)},
#undef T
#define T edgerm_status_t
	.status = {F(1, K_U32, update_id), F(2, K_U32, task), F(3, K_I32, state),
		   F(4, K_I32, reason), F(5, K_TSTR, message), F(6, K_I32, exit_code)},
#undef T
#define T edgerm_publish_t
	.publish = {F(1, K_U32, update_id), F(2, K_U32, task), F(3, K_BSTR, data),
		    F(4, K_TSTR, topic)},
#undef T
#define T edgerm_module_request_t
	.module_request = {F(1, K_BSTR, sha256), F(2, K_U32, offset), F(3, K_U32, length)},
#undef T
#define T edgerm_agent_call_t
	.agent_call = {F(1, K_U32, agent_id), F(2, K_U32, seq), F(3, K_BSTR, mac),
		       ONEOF(4, K_MSG, M_REGISTER, call.reg),
		       ONEOF(5, K_MSG, M_HEARTBEAT, call.heartbeat),
		       ONEOF(6, K_MSG, M_STATUS, call.status), ONEOF(7, K_MSG, M_PUBLISH, call.publish),
		       ONEOF(8, K_MSG, M_MODULE_REQUEST, call.module)},
#undef T
/* Launch, Kill, FetchModule and ReRegister decode into the flat edgerm_command_t. */
#define T edgerm_command_t
	.launch = {F(1, K_U32, task),
		   {2, K_ENC | P_HAS, M_TASK_SPEC, 0, offsetof(T, spec), offsetof(T, has_spec)}},
	.kill = {F(1, K_U32, task)},
	.fetch = {F(1, K_BSTR, sha256), F(2, K_U32, size)},
	.command = {F(1, K_U32, id), SAME(2, M_LAUNCH), SAME(3, M_KILL), SAME(4, M_FETCH),
		    SAME(5, M_EMPTY)},
#undef T
#define T edgerm_registered_t
	.registered = {F(1, K_U32, agent_id), F(2, K_BSTR, nonce), F(3, K_U32, heartbeat_ms),
		       F(4, K_U32, jitter_ms), F(5, K_U32, update_ack)},
#undef T
#define T edgerm_error_t
	.error = {F(1, K_I32, code), F(2, K_TSTR, message), F(3, K_TSTR, leader)},
#undef T
#define T edgerm_module_chunk_t
	.module_chunk = {F(1, K_BSTR, sha256), F(2, K_U32, offset), F(3, K_U32, total),
			 F(4, K_BSTR, data)},
#undef T
#define T edgerm_agent_reply_t
	.agent_reply = {F(1, K_U32, seq), F(2, K_BSTR, mac), F(3, K_U32, update_ack),
			LIST(4, K_ENC, M_COMMAND, commands, commands_count),
			HAS(5, M_REGISTERED, registered, has_registered),
			HAS(6, M_ERROR, error, has_error), HAS(7, M_MODULE_CHUNK, module, has_module)},
#undef T
}};

/* A message: its fields FIELDS.all[first .. first + n) and the size of its struct. */
typedef struct {
	uint8_t first, n;
	uint16_t size;
} msg_t;

#define MSG(member, type)                                                                          \
	{offsetof(struct fields, member) / sizeof(field_t),                                        \
	 sizeof(((struct fields *)0)->member) / sizeof(field_t), sizeof(type)}

static const msg_t MSGS[] = {
	[M_SET] = MSG(set, edgerm_set_t),
	[M_DEVICE] = MSG(device, edgerm_device_t),
	[M_RESOURCES] = MSG(resources, edgerm_resources_t),
	[M_ATTRIBUTE] = MSG(attribute, edgerm_attribute_t),
	[M_ENV] = MSG(env, edgerm_env_t),
	[M_WASM] = MSG(wasm, edgerm_wasm_task_t),
	[M_TASK_SPEC] = MSG(task_spec, edgerm_task_spec_t),
	[M_TASK_REPORT] = MSG(task_report, edgerm_task_report_t),
	[M_REGISTER] = MSG(reg, edgerm_register_t),
	[M_HEARTBEAT] = MSG(heartbeat, edgerm_heartbeat_t),
	[M_STATUS] = MSG(status, edgerm_status_t),
	[M_PUBLISH] = MSG(publish, edgerm_publish_t),
	[M_MODULE_REQUEST] = MSG(module_request, edgerm_module_request_t),
	[M_AGENT_CALL] = MSG(agent_call, edgerm_agent_call_t),
	[M_LAUNCH] = MSG(launch, edgerm_command_t),
	[M_KILL] = MSG(kill, edgerm_command_t),
	[M_FETCH] = MSG(fetch, edgerm_command_t),
	[M_EMPTY] = {0, 0, sizeof(edgerm_command_t)},
	[M_COMMAND] = MSG(command, edgerm_command_t),
	[M_REGISTERED] = MSG(registered, edgerm_registered_t),
	[M_ERROR] = MSG(error, edgerm_error_t),
	[M_MODULE_CHUNK] = MSG(module_chunk, edgerm_module_chunk_t),
	[M_AGENT_REPLY] = MSG(agent_reply, edgerm_agent_reply_t),
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
	[M_RANGE] = MSG(range, edgerm_range_t),
	[M_CUSTOM] = MSG(custom, edgerm_custom_t),
	[M_PORT_MAPPING] = MSG(port_mapping, edgerm_port_mapping_t),
	[M_DOCKER] = MSG(docker, edgerm_docker_task_t),
	[M_MPY] = MSG(mpy, edgerm_wasm_task_t),
#endif
};

/* The descriptor's narrow types hold this build's structs and arrays (C99 has no static_assert). */
typedef char fields_fit_uint8_index[sizeof(struct fields) / sizeof(field_t) <= 255 ? 1 : -1];
typedef char structs_fit_uint16_offset[sizeof(edgerm_wire_any_t) <= 65535 ? 1 : -1];
typedef char arrays_fit_uint8_max[EDGERM_MAX_REP <= 255 && CONFIG_EDGERM_WIRE_MAX_COMMANDS <= 255 &&
					  CONFIG_EDGERM_MAX_TASKS <= 255 ? 1 : -1];

/* Bytes of a value of each kind in the struct (K_MSG: see elem_size). */
static const uint8_t KIND_SIZE[] = {
	[K_U32] = sizeof(uint32_t), [K_I32] = sizeof(int32_t), [K_U64] = sizeof(uint64_t),
	[K_BOOL] = sizeof(bool), [K_F64] = sizeof(double), [K_BSTR] = sizeof(edgerm_slice_t),
	[K_TSTR] = sizeof(edgerm_slice_t), [K_ENC] = sizeof(edgerm_slice_t), [K_MSG] = 0,
	[K_SKIP] = 0,
};

static size_t elem_size(const field_t *f)
{
	return KIND(f) == K_MSG ? MSGS[f->sub].size : KIND_SIZE[KIND(f)];
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding */

static bool utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t extra;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			extra = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			extra = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			extra = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= extra) {
			return false;
		}
		for (size_t k = 1; k <= extra; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				return false;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return false;
		}
		i += extra + 1;
	}
	return true;
}

static int dec_msg(st_t *s, uint8_t id, uint8_t *out);

/* One value of field f into p; p NULL: check it only. */
static int dec_value(st_t *s, const field_t *f, uint8_t *p)
{
	union {
		uint32_t u32;
		int32_t i32;
		uint64_t u64;
		bool b;
		double f64;
		edgerm_slice_t sl;
	} v;
	struct zcbor_string z;
	const uint8_t *start = s->payload;

	switch (KIND(f)) {
	case K_U32: NEED(zcbor_uint32_decode(s, &v.u32)); break;
	case K_I32: NEED(zcbor_int32_decode(s, &v.i32)); break;
	case K_U64: NEED(zcbor_uint64_decode(s, &v.u64)); break;
	case K_BOOL: NEED(zcbor_bool_decode(s, &v.b)); break;
	case K_F64: NEED(zcbor_float_decode(s, &v.f64)); break;
	case K_BSTR:
		NEED(zcbor_bstr_decode(s, &z));
		v.sl.ptr = z.value, v.sl.len = z.len;
		break;
	case K_TSTR:
		NEED(zcbor_tstr_decode(s, &z) && utf8_valid(z.value, z.len));
		v.sl.ptr = z.value, v.sl.len = z.len;
		break;
	case K_ENC:
		/* Validate now, keep it encoded: the agent decodes it when it applies it. */
		TRY(dec_msg(s, f->sub, NULL));
		v.sl.ptr = start, v.sl.len = (size_t)(s->payload - start);
		break;
	case K_MSG: return dec_msg(s, f->sub, p);
	default: /* K_SKIP */
		NEED(s->payload < s->payload_end && (*s->payload >> 5) == f->sub);
		NEED(zcbor_any_skip(s, NULL));
		return OK;
	}
	if (p) {
		memcpy(p, &v, KIND_SIZE[KIND(f)]);
	}
	return OK;
}

/* One message (a map) into out, which the caller zeroed; out NULL: check it only. */
static int dec_msg(st_t *s, uint8_t id, uint8_t *out)
{
	const field_t *fields = &FIELDS.all[MSGS[id].first];
	uint8_t n = MSGS[id].n;
	bool oneof_seen = false;

	NEED(zcbor_map_start_decode(s));
	while (!zcbor_array_at_end(s)) {
		uint64_t key;
		const field_t *f = NULL;

		NEED(zcbor_uint64_decode(s, &key));
		for (uint8_t i = 0; i < n; i++) {
			if (fields[i].key == key) {
				f = &fields[i];
				break;
			}
		}
		if (!f) { /* unknown: forward compatibility */
			NEED(zcbor_any_skip(s, NULL));
			continue;
		}
		uint8_t *p = out ? out + f->off : NULL;

		switch (PRES(f)) {
		case P_HAS:
			if (out) {
				out[f->aux] = true;
			}
			break;
		case P_ONEOF:
			NEED(!oneof_seen);
			oneof_seen = true;
			if (out) {
				out[f->aux] = f->key;
			}
			break;
		case P_LIST: {
			size_t size = elem_size(f);
			uint8_t count = 0;

			NEED(zcbor_list_start_decode(s));
			while (!zcbor_array_at_end(s)) {
				if (count >= f->max) {
					return EDGERM_WIRE_E_TOO_LARGE;
				}
				TRY(dec_value(s, f, p ? p + size * count : NULL));
				count++;
			}
			NEED(zcbor_list_end_decode(s));
			if (out) {
				out[f->aux] = count;
			}
			continue;
		}
		default: break;
		}
		TRY(dec_value(s, f, p));
	}
	NEED(zcbor_map_end_decode(s));
	return OK;
}

/* Decode one whole buffer as message id. `checked`: the buffer already passed the scan. */
static int run_decoder(uint8_t id, const uint8_t *buf, size_t len, void *out, bool checked)
{
	st_t states[N_STATES];

	if (!checked) {
		TRY(edgerm_wire_check_untrusted(buf, len));
	}
	memset(out, 0, MSGS[id].size);
	zcbor_new_decode_state(states, N_STATES, buf, len, 1, NULL, 0);
	TRY(dec_msg(states, id, out));
	/* The scan proved there is exactly one item; this is belt and braces. */
	return states[0].payload == buf + len ? OK : EDGERM_WIRE_E_MALFORMED;
}

int edgerm_wire_decode_agent_reply_untrusted(const uint8_t *buf, size_t len,
					     edgerm_agent_reply_t *out)
{
	return run_decoder(M_AGENT_REPLY, buf, len, out, false);
}

int edgerm_wire_decode_agent_call_untrusted(const uint8_t *buf, size_t len,
					    edgerm_agent_call_t *out)
{
	return run_decoder(M_AGENT_CALL, buf, len, out, false);
}

int edgerm_wire_decode_command(edgerm_slice_t enc, edgerm_command_t *out)
{
	return run_decoder(M_COMMAND, enc.ptr, enc.len, out, true);
}

int edgerm_wire_decode_task_spec(const uint8_t *buf, size_t len, edgerm_task_spec_t *out)
{
	/* Specs come back from the agent's own store; scan them again anyway: it is cheap. */
	return run_decoder(M_TASK_SPEC, buf, len, out, false);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding */

/* The half-precision bits of d when d is exactly representable as one. */
static bool f16_exact(double d, uint16_t *out)
{
	float f = (float)d;
	uint32_t b;

	if ((double)f != d) {
		return false;
	}
	memcpy(&b, &f, sizeof(b));
	uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
	int32_t exp = (int32_t)((b >> 23) & 0xff);
	uint32_t man = b & 0x7fffff;

	if (exp == 0xff) { /* infinity (NaN never gets here: NaN != NaN) */
		*out = (uint16_t)(sign | 0x7c00);
		return true;
	}
	if (exp == 0) { /* zero; single-precision subnormals are below half's range */
		*out = sign;
		return man == 0;
	}
	exp -= 127;
	if (exp > 15 || exp < -24) {
		return false;
	}
	if (exp >= -14) {
		if (man & 0x1fff) {
			return false;
		}
		*out = (uint16_t)(sign | (uint32_t)(exp + 15) << 10 | man >> 13);
		return true;
	}
	uint32_t full = 0x800000 | man;
	uint32_t shift = (uint32_t)(13 + (-14 - exp));

	if (full & ((1u << shift) - 1)) {
		return false;
	}
	*out = (uint16_t)(sign | full >> shift);
	return true;
}

/* The shortest float that keeps the value, as RFC 8949 section 4.2.2 preferred serialization. */
static bool put_float(st_t *s, double d)
{
	uint16_t h;

	if (d != d) {
		return zcbor_float16_bytes_put(s, 0x7e00);
	}
	if (f16_exact(d, &h)) {
		return zcbor_float16_bytes_put(s, h);
	}
	if ((double)(float)d == d) {
		return zcbor_float32_put(s, (float)d);
	}
	return zcbor_float64_put(s, d);
}

static int enc_msg(st_t *s, uint8_t id, const uint8_t *in);
static int reencode_command(st_t *s, edgerm_slice_t enc);
static int reencode_task_spec(st_t *s, edgerm_slice_t enc);

static int enc_value(st_t *s, const field_t *f, const uint8_t *p)
{
	edgerm_slice_t sl;

	switch (KIND(f)) {
	case K_U32: PUT(zcbor_uint32_put(s, *(const uint32_t *)(const void *)p)); break;
	case K_I32: PUT(zcbor_int32_put(s, *(const int32_t *)(const void *)p)); break;
	case K_U64: PUT(zcbor_uint64_put(s, *(const uint64_t *)(const void *)p)); break;
	case K_BOOL: PUT(zcbor_bool_put(s, *(const bool *)p)); break;
	case K_F64: PUT(put_float(s, *(const double *)(const void *)p)); break;
	case K_BSTR:
	case K_TSTR:
		memcpy(&sl, p, sizeof(sl));
		PUT(KIND(f) == K_BSTR ? zcbor_bstr_encode_ptr(s, (const char *)sl.ptr, sl.len)
				      : zcbor_tstr_encode_ptr(s, (const char *)sl.ptr, sl.len));
		break;
	case K_ENC:
		/* Re-encoded from the decoded struct, never copied from the bytes it came as. */
		memcpy(&sl, p, sizeof(sl));
		return f->sub == M_COMMAND ? reencode_command(s, sl) : reencode_task_spec(s, sl);
	case K_MSG: return enc_msg(s, f->sub, p);
	default: /* K_SKIP, only a selected oneof member gets here: its body was not kept */
		PUT(zcbor_map_start_encode(s, 0) && zcbor_map_end_encode(s, 0));
		break;
	}
	return OK;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	while (n--) {
		if (*p++ != 0) {
			return false;
		}
	}
	return true;
}

/* Every message map is opened for at most MAX_FIELDS entries (one-byte header). */
#define MAX_FIELDS 23

static int enc_msg(st_t *s, uint8_t id, const uint8_t *in)
{
	const field_t *f = &FIELDS.all[MSGS[id].first];
	const field_t *end = f + MSGS[id].n;

	PUT(zcbor_map_start_encode(s, MAX_FIELDS));
	for (; f < end; f++) {
		const uint8_t *p = in + f->off;
		uint8_t kind = KIND(f);

		switch (PRES(f)) {
		case P_HAS:
			if (!in[f->aux]) {
				continue;
			}
			break;
		case P_ONEOF:
			if (in[f->aux] != f->key) {
				continue;
			}
			break;
		case P_LIST: {
			uint8_t count = in[f->aux];
			size_t size = elem_size(f);

			if (count == 0) {
				continue;
			}
			PUT(zcbor_uint32_put(s, f->key) && zcbor_list_start_encode(s, count));
			for (uint8_t i = 0; i < count; i++) {
				TRY(enc_value(s, f, p + size * i));
			}
			PUT(zcbor_list_end_encode(s, count));
			continue;
		}
		default: /* P_PLAIN: proto3 leaves out the default (for a double: +0.0 only) */
			if (kind == K_BSTR || kind == K_TSTR
				    ? ((const edgerm_slice_t *)(const void *)p)->len == 0
				    : is_zero(p, KIND_SIZE[kind])) {
				continue;
			}
			break;
		}
		PUT(zcbor_uint32_put(s, f->key));
		TRY(enc_value(s, f, p));
	}
	PUT(zcbor_map_end_encode(s, MAX_FIELDS));
	return OK;
}

/* A message kept encoded, decoded into a scratch struct of its own type and written again.
 * Not inlined, so the scratch is on the stack only while it is in use. */
static NOINLINE int reencode_command(st_t *s, edgerm_slice_t enc)
{
	edgerm_command_t m;

	if (run_decoder(M_COMMAND, enc.ptr, enc.len, &m, false) < 0) {
		return EDGERM_WIRE_E_SCHEMA;
	}
	return enc_msg(s, M_COMMAND, (const uint8_t *)&m);
}

static NOINLINE int reencode_task_spec(st_t *s, edgerm_slice_t enc)
{
	edgerm_task_spec_t m;

	if (run_decoder(M_TASK_SPEC, enc.ptr, enc.len, &m, false) < 0) {
		return EDGERM_WIRE_E_SCHEMA;
	}
	return enc_msg(s, M_TASK_SPEC, (const uint8_t *)&m);
}

static int run_encoder(uint8_t id, const void *in, uint8_t *buf, size_t cap)
{
	st_t states[N_STATES];

	zcbor_new_encode_state(states, N_STATES, buf, cap, 1);
	TRY(enc_msg(states, id, in));
	return (int)(states[0].payload - buf);
}

int edgerm_wire_encode_agent_call(const edgerm_agent_call_t *in, uint8_t *buf, size_t cap)
{
	return run_encoder(M_AGENT_CALL, in, buf, cap);
}

/* The master's message: the agent only decodes it; the tests encode it (the linker drops this
 * from the firmware). */
int edgerm_wire_encode_agent_reply(const edgerm_agent_reply_t *in, uint8_t *buf, size_t cap)
{
	return run_encoder(M_AGENT_REPLY, in, buf, cap);
}

/* ------------------------------------------------------------------------------------------ */
/* Every message type, by its proto name, for the vector and fuzz tests. */

#ifdef EDGERM_WIRE_TYPE_TABLE
#if !CONFIG_EDGERM_WIRE_FULL_SCHEMA
#error "the type table needs CONFIG_EDGERM_WIRE_FULL_SCHEMA=1"
#endif

#define TYPE(name, id)                                                                             \
	static int name##_dec(const uint8_t *b, size_t n, void *o)                                 \
	{                                                                                          \
		return run_decoder(id, b, n, o, false);                                            \
	}                                                                                          \
	static int name##_enc(const void *i, uint8_t *b, size_t cap)                               \
	{                                                                                          \
		return run_encoder(id, i, b, cap);                                                 \
	}
TYPE(AgentCall, M_AGENT_CALL)
TYPE(AgentReply, M_AGENT_REPLY)
TYPE(Register, M_REGISTER)
TYPE(Heartbeat, M_HEARTBEAT)
TYPE(StatusUpdate, M_STATUS)
TYPE(Publish, M_PUBLISH)
TYPE(ModuleRequest, M_MODULE_REQUEST)
TYPE(Registered, M_REGISTERED)
TYPE(Error, M_ERROR)
TYPE(ModuleChunk, M_MODULE_CHUNK)
TYPE(Command, M_COMMAND)
TYPE(Launch, M_LAUNCH)
TYPE(Kill, M_KILL)
TYPE(FetchModule, M_FETCH)
TYPE(ReRegister, M_EMPTY)
TYPE(TaskSpec, M_TASK_SPEC)
TYPE(WasmTask, M_WASM)
TYPE(MicroPythonTask, M_MPY)
TYPE(DockerTask, M_DOCKER)
TYPE(Resources, M_RESOURCES)
TYPE(Range, M_RANGE)
TYPE(Device, M_DEVICE)
TYPE(CustomResource, M_CUSTOM)
TYPE(Set, M_SET)
TYPE(Attribute, M_ATTRIBUTE)
TYPE(EnvVar, M_ENV)
TYPE(PortMapping, M_PORT_MAPPING)
TYPE(TaskReport, M_TASK_REPORT)

#define ROW(name) {#name, name##_dec, name##_enc}
const edgerm_wire_type_t edgerm_wire_types[] = {
	ROW(AgentCall), ROW(AgentReply), ROW(Register), ROW(Heartbeat), ROW(StatusUpdate),
	ROW(Publish), ROW(ModuleRequest), ROW(Registered), ROW(Error), ROW(ModuleChunk),
	ROW(Command), ROW(Launch), ROW(Kill), ROW(FetchModule), ROW(ReRegister), ROW(TaskSpec),
	ROW(WasmTask), ROW(MicroPythonTask), ROW(DockerTask), ROW(Resources), ROW(Range),
	ROW(Device), ROW(CustomResource), ROW(Set), ROW(Attribute), ROW(EnvVar), ROW(PortMapping),
	ROW(TaskReport), {NULL, NULL, NULL},
};
#endif /* EDGERM_WIRE_TYPE_TABLE */
