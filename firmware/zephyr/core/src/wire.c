/*
 * Hand-written encoders and decoders of the agent-link messages on zcbor's runtime primitives.
 *
 * Decoding: edgerm_wire_check_untrusted has already proven the buffer well-formed and
 * deterministic, so a zcbor failure here means "not this message" (a wrong type, an integer out
 * of its field's range) and is reported as EDGERM_WIRE_E_SCHEMA. Each message is a map walked
 * key by key; unknown keys are skipped (forward compatibility); a second member of a oneof is
 * refused. Encoding: zcbor is built with ZCBOR_CANONICAL (definite lengths, shortest heads);
 * fields at their default are left out and keys are written in ascending order, so the output
 * is the deterministic encoding of edgerm.wire, byte for byte.
 */
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

typedef zcbor_state_t st_t;

/* ------------------------------------------------------------------------------------------ */
/* Decoding primitives */

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

static int d_u32(st_t *s, uint32_t *v)
{
	return zcbor_uint32_decode(s, v) ? OK : BAD;
}

static int d_i32(st_t *s, int32_t *v)
{
	return zcbor_int32_decode(s, v) ? OK : BAD;
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int d_u64(st_t *s, uint64_t *v)
{
	return zcbor_uint64_decode(s, v) ? OK : BAD;
}

static int d_bool(st_t *s, bool *v)
{
	return zcbor_bool_decode(s, v) ? OK : BAD;
}
#endif

static int d_f64(st_t *s, double *v)
{
	return zcbor_float_decode(s, v) ? OK : BAD;
}

static int d_bstr(st_t *s, edgerm_slice_t *v)
{
	struct zcbor_string z;

	NEED(zcbor_bstr_decode(s, &z));
	v->ptr = z.value;
	v->len = z.len;
	return OK;
}

static int d_tstr(st_t *s, edgerm_slice_t *v)
{
	struct zcbor_string z;

	NEED(zcbor_tstr_decode(s, &z));
	NEED(utf8_valid(z.value, z.len));
	v->ptr = z.value;
	v->len = z.len;
	return OK;
}

/* One field of a message: returns OK, an error, or SKIP for a key it does not know. */
#define SKIP 1
typedef int (*field_fn)(st_t *s, uint32_t key, void *out);

static int d_map(st_t *s, field_fn fn, void *out)
{
	NEED(zcbor_map_start_decode(s));
	while (!zcbor_array_at_end(s)) {
		uint64_t key;
		int r;

		NEED(zcbor_uint64_decode(s, &key));
		r = key <= UINT32_MAX ? fn(s, (uint32_t)key, out) : SKIP;
		if (r == SKIP) {
			NEED(zcbor_any_skip(s, NULL));
		} else if (r < 0) {
			return r;
		}
	}
	NEED(zcbor_map_end_decode(s));
	return OK;
}

#if !CONFIG_EDGERM_WIRE_FULL_SCHEMA
/* Device builds: a member the agent never looks at (a Docker or MicroPython spec, custom
 * resources, port ranges) must be a well-formed item of the right major type, and is skipped. */
static int skip_typed(st_t *s, uint8_t major)
{
	NEED(s->payload < s->payload_end && (*s->payload >> 5) == major);
	NEED(zcbor_any_skip(s, NULL));
	return OK;
}
#endif

/* Decode a repeated field into items[0..max) with `one` per element. */
typedef int (*elem_fn)(st_t *s, void *item);

static int d_list(st_t *s, elem_fn one, void *items, size_t item_size, size_t max, uint8_t *count)
{
	NEED(zcbor_list_start_decode(s));
	*count = 0;
	while (!zcbor_array_at_end(s)) {
		if (*count >= max) {
			return EDGERM_WIRE_E_TOO_LARGE;
		}
		TRY(one(s, (uint8_t *)items + item_size * *count));
		(*count)++;
	}
	NEED(zcbor_list_end_decode(s));
	return OK;
}

static int e_tstr_item(st_t *s, void *item)
{
	return d_tstr(s, item);
}

static int e_i32_item(st_t *s, void *item)
{
	return d_i32(s, item);
}

/* A oneof member: refuse a second one. */
#define ONEOF(which, n)                                                                            \
	do {                                                                                       \
		if ((which) != 0) {                                                                \
			return BAD;                                                                \
		}                                                                                  \
		(which) = (n);                                                                     \
	} while (0)

/* ------------------------------------------------------------------------------------------ */
/* Decoders, one per message */

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int f_range(st_t *s, uint32_t k, void *o)
{
	edgerm_range_t *m = o;

	switch (k) {
	case 1: return d_u64(s, &m->begin);
	case 2: return d_u64(s, &m->end);
	default: return SKIP;
	}
}

static int d_range(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_range_t));
	return d_map(s, f_range, o);
}

#endif /* CONFIG_EDGERM_WIRE_FULL_SCHEMA */

static int f_set(st_t *s, uint32_t k, void *o)
{
	edgerm_set_t *m = o;

	if (k == 1) {
		return d_list(s, e_tstr_item, m->items, sizeof(m->items[0]), EDGERM_MAX_REP,
			      &m->count);
	}
	return SKIP;
}

static int d_set(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_set_t));
	return d_map(s, f_set, o);
}

static int f_device(st_t *s, uint32_t k, void *o)
{
	edgerm_device_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: return d_i32(s, &m->kind);
	case 3: return d_u32(s, &m->shares);
	case 4: return d_tstr(s, &m->unit);
	case 5: return d_tstr(s, &m->path);
	default: return SKIP;
	}
}

static int d_device(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_device_t));
	return d_map(s, f_device, o);
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int f_custom(st_t *s, uint32_t k, void *o)
{
	edgerm_custom_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: ONEOF(m->which, 2); return d_f64(s, &m->v.scalar);
	case 3: ONEOF(m->which, 3); return d_range(s, &m->v.range);
	case 4: ONEOF(m->which, 4); return d_set(s, &m->v.set);
	default: return SKIP;
	}
}

static int d_custom(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_custom_t));
	return d_map(s, f_custom, o);
}
#endif /* CONFIG_EDGERM_WIRE_FULL_SCHEMA */

static int f_resources(st_t *s, uint32_t k, void *o)
{
	edgerm_resources_t *m = o;

	switch (k) {
	case 1: return d_f64(s, &m->cpus);
	case 2: return d_f64(s, &m->mem_mb);
	case 3: return d_f64(s, &m->disk_mb);
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
	case 4: return d_list(s, d_range, m->ports, sizeof(m->ports[0]), EDGERM_MAX_REP,
			      &m->ports_count);
	case 6: return d_list(s, d_custom, m->custom, sizeof(m->custom[0]), EDGERM_MAX_REP,
			      &m->custom_count);
#else
	case 4:
	case 6: return skip_typed(s, 4);
#endif
	case 5: return d_list(s, d_device, m->devices, sizeof(m->devices[0]), EDGERM_MAX_REP,
			      &m->devices_count);
	default: return SKIP;
	}
}

static int d_resources(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_resources_t));
	return d_map(s, f_resources, o);
}

static int f_attribute(st_t *s, uint32_t k, void *o)
{
	edgerm_attribute_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: ONEOF(m->which, 2); return d_tstr(s, &m->v.text);
	case 3: ONEOF(m->which, 3); return d_f64(s, &m->v.scalar);
	case 4: ONEOF(m->which, 4); return d_set(s, &m->v.set);
	default: return SKIP;
	}
}

static int d_attribute(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_attribute_t));
	return d_map(s, f_attribute, o);
}

static int f_env(st_t *s, uint32_t k, void *o)
{
	edgerm_env_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: return d_tstr(s, &m->value);
	default: return SKIP;
	}
}

static int d_env(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_env_t));
	return d_map(s, f_env, o);
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int f_port_mapping(st_t *s, uint32_t k, void *o)
{
	edgerm_port_mapping_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->container_port);
	case 2: return d_u32(s, &m->host_port);
	case 3: return d_bool(s, &m->udp);
	default: return SKIP;
	}
}

static int d_port_mapping(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_port_mapping_t));
	return d_map(s, f_port_mapping, o);
}

static int f_docker(st_t *s, uint32_t k, void *o)
{
	edgerm_docker_task_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->image);
	case 2: return d_list(s, e_tstr_item, m->command, sizeof(m->command[0]), EDGERM_MAX_REP,
			      &m->command_count);
	case 3: return d_list(s, d_env, m->env, sizeof(m->env[0]), EDGERM_MAX_REP, &m->env_count);
	case 4: return d_list(s, d_port_mapping, m->ports, sizeof(m->ports[0]), EDGERM_MAX_REP,
			      &m->ports_count);
	case 5: return d_i32(s, &m->network);
	default: return SKIP;
	}
}

static int d_docker(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_docker_task_t));
	return d_map(s, f_docker, o);
}
#endif /* CONFIG_EDGERM_WIRE_FULL_SCHEMA */

/* WasmTask and MicroPythonTask differ only in field 3: entry (text) vs mpy (bool). */
static int f_wasm_common(st_t *s, uint32_t k, edgerm_wasm_task_t *m)
{
	switch (k) {
	case 1: return d_bstr(s, &m->sha256);
	case 2: return d_u32(s, &m->size);
	case 4: return d_list(s, e_tstr_item, m->args, sizeof(m->args[0]), EDGERM_MAX_REP,
			      &m->args_count);
	case 5: return d_list(s, d_env, m->env, sizeof(m->env[0]), EDGERM_MAX_REP, &m->env_count);
	case 6: return d_u32(s, &m->timeout_s);
	default: return SKIP;
	}
}

static int f_wasm(st_t *s, uint32_t k, void *o)
{
	edgerm_wasm_task_t *m = o;

	return k == 3 ? d_tstr(s, &m->entry) : f_wasm_common(s, k, m);
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int f_mpy(st_t *s, uint32_t k, void *o)
{
	edgerm_wasm_task_t *m = o;

	return k == 3 ? d_bool(s, &m->mpy) : f_wasm_common(s, k, m);
}
#endif

static int d_wasm(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_wasm_task_t));
	return d_map(s, f_wasm, o);
}

#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
static int d_mpy(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_wasm_task_t));
	return d_map(s, f_mpy, o);
}
#endif

static int f_task_spec(st_t *s, uint32_t k, void *o)
{
	edgerm_task_spec_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: m->has_resources = true; return d_resources(s, &m->resources);
#if CONFIG_EDGERM_WIRE_FULL_SCHEMA
	case 3: ONEOF(m->which, 3); return d_docker(s, &m->kind.docker);
	case 5: ONEOF(m->which, 5); return d_mpy(s, &m->kind.wasm);
#else
	case 3: ONEOF(m->which, 3); return skip_typed(s, 5);
	case 5: ONEOF(m->which, 5); return skip_typed(s, 5);
#endif
	case 4: ONEOF(m->which, 4); return d_wasm(s, &m->kind.wasm);
	default: return SKIP;
	}
}

static int d_task_spec(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_task_spec_t));
	return d_map(s, f_task_spec, o);
}

static int f_task_report(st_t *s, uint32_t k, void *o)
{
	edgerm_task_report_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->task);
	case 2: return d_i32(s, &m->state);
	default: return SKIP;
	}
}

static int d_task_report(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_task_report_t));
	return d_map(s, f_task_report, o);
}

#define TASKS_MAX (sizeof(((edgerm_register_t *)0)->tasks) / sizeof(edgerm_task_report_t))

static int f_register(st_t *s, uint32_t k, void *o)
{
	edgerm_register_t *m = o;

	switch (k) {
	case 1: return d_tstr(s, &m->name);
	case 2: m->has_resources = true; return d_resources(s, &m->resources);
	case 3: return d_list(s, d_attribute, m->attributes, sizeof(m->attributes[0]),
			      EDGERM_MAX_REP, &m->attributes_count);
	case 4: return d_list(s, e_i32_item, m->executors, sizeof(m->executors[0]), EDGERM_MAX_REP,
			      &m->executors_count);
	case 5: return d_u32(s, &m->protocol_version);
	case 6: return d_tstr(s, &m->token);
	case 7: return d_list(s, d_task_report, m->tasks, sizeof(m->tasks[0]), TASKS_MAX,
			      &m->tasks_count);
	case 8: return d_u32(s, &m->max_payload);
	case 9: return d_u32(s, &m->update_next);
	default: return SKIP;
	}
}

static int d_register(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_register_t));
	return d_map(s, f_register, o);
}

static int f_heartbeat(st_t *s, uint32_t k, void *o)
{
	edgerm_heartbeat_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->command_ack);
	case 2: m->has_resources = true; return d_resources(s, &m->resources);
	case 3: return d_list(s, d_attribute, m->attributes, sizeof(m->attributes[0]),
			      EDGERM_MAX_REP, &m->attributes_count);
	default: return SKIP;
	}
}

static int d_heartbeat(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_heartbeat_t));
	return d_map(s, f_heartbeat, o);
}

static int f_status(st_t *s, uint32_t k, void *o)
{
	edgerm_status_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->update_id);
	case 2: return d_u32(s, &m->task);
	case 3: return d_i32(s, &m->state);
	case 4: return d_i32(s, &m->reason);
	case 5: return d_tstr(s, &m->message);
	case 6: return d_i32(s, &m->exit_code);
	default: return SKIP;
	}
}

static int d_status(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_status_t));
	return d_map(s, f_status, o);
}

static int f_publish(st_t *s, uint32_t k, void *o)
{
	edgerm_publish_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->update_id);
	case 2: return d_u32(s, &m->task);
	case 3: return d_bstr(s, &m->data);
	case 4: return d_tstr(s, &m->topic);
	default: return SKIP;
	}
}

static int d_publish(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_publish_t));
	return d_map(s, f_publish, o);
}

static int f_module_request(st_t *s, uint32_t k, void *o)
{
	edgerm_module_request_t *m = o;

	switch (k) {
	case 1: return d_bstr(s, &m->sha256);
	case 2: return d_u32(s, &m->offset);
	case 3: return d_u32(s, &m->length);
	default: return SKIP;
	}
}

static int d_module_request(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_module_request_t));
	return d_map(s, f_module_request, o);
}

static int f_agent_call(st_t *s, uint32_t k, void *o)
{
	edgerm_agent_call_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->agent_id);
	case 2: return d_u32(s, &m->seq);
	case 3: return d_bstr(s, &m->mac);
	case 4: ONEOF(m->which, 4); return d_register(s, &m->call.reg);
	case 5: ONEOF(m->which, 5); return d_heartbeat(s, &m->call.heartbeat);
	case 6: ONEOF(m->which, 6); return d_status(s, &m->call.status);
	case 7: ONEOF(m->which, 7); return d_publish(s, &m->call.publish);
	case 8: ONEOF(m->which, 8); return d_module_request(s, &m->call.module);
	default: return SKIP;
	}
}

static int d_agent_call(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_agent_call_t));
	return d_map(s, f_agent_call, o);
}

/* Command sub-messages decode into the flat edgerm_command_t. */
static int f_launch(st_t *s, uint32_t k, void *o)
{
	edgerm_command_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->task);
	case 2: {
		/* Validate the spec now, keep it encoded: the agent decodes it when it starts the
		 * task. A scratch spec on the stack is the price of a small reply struct. */
		edgerm_task_spec_t scratch;
		const uint8_t *start = s->payload;

		TRY(d_task_spec(s, &scratch));
		m->has_spec = true;
		m->spec.ptr = start;
		m->spec.len = (size_t)(s->payload - start);
		return OK;
	}
	default: return SKIP;
	}
}

static int f_kill(st_t *s, uint32_t k, void *o)
{
	return k == 1 ? d_u32(s, &((edgerm_command_t *)o)->task) : SKIP;
}

static int f_fetch(st_t *s, uint32_t k, void *o)
{
	edgerm_command_t *m = o;

	switch (k) {
	case 1: return d_bstr(s, &m->sha256);
	case 2: return d_u32(s, &m->size);
	default: return SKIP;
	}
}

static int f_none(st_t *s, uint32_t k, void *o)
{
	(void)s, (void)k, (void)o;
	return SKIP;
}

static int f_command(st_t *s, uint32_t k, void *o)
{
	edgerm_command_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->id);
	case 2: ONEOF(m->which, 2); return d_map(s, f_launch, m);
	case 3: ONEOF(m->which, 3); return d_map(s, f_kill, m);
	case 4: ONEOF(m->which, 4); return d_map(s, f_fetch, m);
	case 5: ONEOF(m->which, 5); return d_map(s, f_none, m);
	default: return SKIP;
	}
}

static int d_command(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_command_t));
	return d_map(s, f_command, o);
}

static int d_command_slice(st_t *s, void *item)
{
	edgerm_slice_t *out = item;
	edgerm_command_t scratch;
	const uint8_t *start = s->payload;

	TRY(d_command(s, &scratch));
	out->ptr = start;
	out->len = (size_t)(s->payload - start);
	return OK;
}

static int f_registered(st_t *s, uint32_t k, void *o)
{
	edgerm_registered_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->agent_id);
	case 2: return d_bstr(s, &m->secret);
	case 3: return d_u32(s, &m->heartbeat_ms);
	case 4: return d_u32(s, &m->jitter_ms);
	case 5: return d_u32(s, &m->update_ack);
	default: return SKIP;
	}
}

static int d_registered(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_registered_t));
	return d_map(s, f_registered, o);
}

static int f_error(st_t *s, uint32_t k, void *o)
{
	edgerm_error_t *m = o;

	switch (k) {
	case 1: return d_i32(s, &m->code);
	case 2: return d_tstr(s, &m->message);
	default: return SKIP;
	}
}

static int d_error(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_error_t));
	return d_map(s, f_error, o);
}

static int f_module_chunk(st_t *s, uint32_t k, void *o)
{
	edgerm_module_chunk_t *m = o;

	switch (k) {
	case 1: return d_bstr(s, &m->sha256);
	case 2: return d_u32(s, &m->offset);
	case 3: return d_u32(s, &m->total);
	case 4: return d_bstr(s, &m->data);
	default: return SKIP;
	}
}

static int d_module_chunk(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_module_chunk_t));
	return d_map(s, f_module_chunk, o);
}

static int f_agent_reply(st_t *s, uint32_t k, void *o)
{
	edgerm_agent_reply_t *m = o;

	switch (k) {
	case 1: return d_u32(s, &m->seq);
	case 2: return d_bstr(s, &m->mac);
	case 3: return d_u32(s, &m->update_ack);
	case 4: return d_list(s, d_command_slice, m->commands, sizeof(m->commands[0]),
			      CONFIG_EDGERM_WIRE_MAX_COMMANDS, &m->commands_count);
	case 5: m->has_registered = true; return d_registered(s, &m->registered);
	case 6: m->has_error = true; return d_error(s, &m->error);
	case 7: m->has_module = true; return d_module_chunk(s, &m->module);
	default: return SKIP;
	}
}

static int d_agent_reply(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_agent_reply_t));
	return d_map(s, f_agent_reply, o);
}

/* Run one decoder over a whole buffer. `checked`: the buffer already passed the scan. */
static int run_decoder(int (*dec)(st_t *, void *), const uint8_t *buf, size_t len, void *out,
		       bool checked)
{
	st_t states[N_STATES];

	if (!checked) {
		TRY(edgerm_wire_check_untrusted(buf, len));
	}
	zcbor_new_decode_state(states, N_STATES, buf, len, 1, NULL, 0);
	TRY(dec(states, out));
	/* The scan proved there is exactly one item; this is belt and braces. */
	return states[0].payload == buf + len ? OK : EDGERM_WIRE_E_MALFORMED;
}

int edgerm_wire_decode_agent_reply_untrusted(const uint8_t *buf, size_t len,
					     edgerm_agent_reply_t *out)
{
	return run_decoder(d_agent_reply, buf, len, out, false);
}

int edgerm_wire_decode_agent_call_untrusted(const uint8_t *buf, size_t len,
					    edgerm_agent_call_t *out)
{
	return run_decoder(d_agent_call, buf, len, out, false);
}

int edgerm_wire_decode_command(edgerm_slice_t enc, edgerm_command_t *out)
{
	return run_decoder(d_command, enc.ptr, enc.len, out, true);
}

int edgerm_wire_decode_task_spec(const uint8_t *buf, size_t len, edgerm_task_spec_t *out)
{
	/* Specs come back from the agent's own store; scan them again anyway: it is cheap. */
	return run_decoder(d_task_spec, buf, len, out, false);
}

/* ------------------------------------------------------------------------------------------ */
/* Encoding primitives: each writes "key value" only when the value is not the default. */

#define PUT(expr)                                                                                  \
	do {                                                                                       \
		if (!(expr)) {                                                                     \
			return EDGERM_WIRE_E_NOSPACE;                                              \
		}                                                                                  \
	} while (0)

static int p_u32(st_t *s, uint32_t k, uint32_t v)
{
	if (v != 0) {
		PUT(zcbor_uint32_put(s, k) && zcbor_uint32_put(s, v));
	}
	return OK;
}

static int p_u64(st_t *s, uint32_t k, uint64_t v)
{
	if (v != 0) {
		PUT(zcbor_uint32_put(s, k) && zcbor_uint64_put(s, v));
	}
	return OK;
}

static int p_i32(st_t *s, uint32_t k, int32_t v)
{
	if (v != 0) {
		PUT(zcbor_uint32_put(s, k) && zcbor_int32_put(s, v));
	}
	return OK;
}

static int p_bool(st_t *s, uint32_t k, bool v)
{
	if (v) {
		PUT(zcbor_uint32_put(s, k) && zcbor_bool_put(s, true));
	}
	return OK;
}

static int p_bstr(st_t *s, uint32_t k, edgerm_slice_t v)
{
	if (v.len != 0) {
		PUT(zcbor_uint32_put(s, k) && zcbor_bstr_encode_ptr(s, (const char *)v.ptr, v.len));
	}
	return OK;
}

static int p_tstr(st_t *s, uint32_t k, edgerm_slice_t v)
{
	if (v.len != 0) {
		PUT(zcbor_uint32_put(s, k) && zcbor_tstr_encode_ptr(s, (const char *)v.ptr, v.len));
	}
	return OK;
}

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

static int p_f64(st_t *s, uint32_t k, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	if (bits != 0) { /* proto3 leaves out +0.0 only */
		PUT(zcbor_uint32_put(s, k) && put_float(s, v));
	}
	return OK;
}

/* Field `k` holding a sub-message written by `enc`. */
typedef int (*enc_fn)(st_t *s, const void *m);

static int p_msg(st_t *s, uint32_t k, enc_fn enc, const void *m)
{
	PUT(zcbor_uint32_put(s, k));
	return enc(s, m);
}

/* A repeated field: skipped when empty. */
static int p_list(st_t *s, uint32_t k, enc_fn enc, const void *items, size_t item_size, size_t n)
{
	if (n == 0) {
		return OK;
	}
	PUT(zcbor_uint32_put(s, k) && zcbor_list_start_encode(s, n));
	for (size_t i = 0; i < n; i++) {
		TRY(enc(s, (const uint8_t *)items + i * item_size));
	}
	PUT(zcbor_list_end_encode(s, n));
	return OK;
}

static int e_tstr_elem(st_t *s, const void *m)
{
	const edgerm_slice_t *v = m;

	PUT(zcbor_tstr_encode_ptr(s, (const char *)v->ptr, v->len));
	return OK;
}

static int e_i32_elem(st_t *s, const void *m)
{
	PUT(zcbor_int32_put(s, *(const int32_t *)m));
	return OK;
}

/* Every message map is opened for at most MAX_FIELDS entries (one-byte header). */
#define MAX_FIELDS 23
#define OPEN() PUT(zcbor_map_start_encode(s, MAX_FIELDS))
#define CLOSE() PUT(zcbor_map_end_encode(s, MAX_FIELDS))

/* ------------------------------------------------------------------------------------------ */
/* Encoders, one per message */

static int e_range(st_t *s, const void *o)
{
	const edgerm_range_t *m = o;

	OPEN();
	TRY(p_u64(s, 1, m->begin));
	TRY(p_u64(s, 2, m->end));
	CLOSE();
	return OK;
}

static int e_set(st_t *s, const void *o)
{
	const edgerm_set_t *m = o;

	OPEN();
	TRY(p_list(s, 1, e_tstr_elem, m->items, sizeof(m->items[0]), m->count));
	CLOSE();
	return OK;
}

static int e_device(st_t *s, const void *o)
{
	const edgerm_device_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	TRY(p_i32(s, 2, m->kind));
	TRY(p_u32(s, 3, m->shares));
	TRY(p_tstr(s, 4, m->unit));
	TRY(p_tstr(s, 5, m->path));
	CLOSE();
	return OK;
}

static int e_custom(st_t *s, const void *o)
{
	const edgerm_custom_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	switch (m->which) {
	case 2: PUT(zcbor_uint32_put(s, 2) && put_float(s, m->v.scalar)); break;
	case 3: TRY(p_msg(s, 3, e_range, &m->v.range)); break;
	case 4: TRY(p_msg(s, 4, e_set, &m->v.set)); break;
	default: break;
	}
	CLOSE();
	return OK;
}

static int e_resources(st_t *s, const void *o)
{
	const edgerm_resources_t *m = o;

	OPEN();
	TRY(p_f64(s, 1, m->cpus));
	TRY(p_f64(s, 2, m->mem_mb));
	TRY(p_f64(s, 3, m->disk_mb));
	TRY(p_list(s, 4, e_range, m->ports, sizeof(m->ports[0]), m->ports_count));
	TRY(p_list(s, 5, e_device, m->devices, sizeof(m->devices[0]), m->devices_count));
	TRY(p_list(s, 6, e_custom, m->custom, sizeof(m->custom[0]), m->custom_count));
	CLOSE();
	return OK;
}

static int e_attribute(st_t *s, const void *o)
{
	const edgerm_attribute_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	switch (m->which) {
	case 2:
		PUT(zcbor_uint32_put(s, 2) &&
		    zcbor_tstr_encode_ptr(s, (const char *)m->v.text.ptr, m->v.text.len));
		break;
	case 3: PUT(zcbor_uint32_put(s, 3) && put_float(s, m->v.scalar)); break;
	case 4: TRY(p_msg(s, 4, e_set, &m->v.set)); break;
	default: break;
	}
	CLOSE();
	return OK;
}

static int e_env(st_t *s, const void *o)
{
	const edgerm_env_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	TRY(p_tstr(s, 2, m->value));
	CLOSE();
	return OK;
}

static int e_port_mapping(st_t *s, const void *o)
{
	const edgerm_port_mapping_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->container_port));
	TRY(p_u32(s, 2, m->host_port));
	TRY(p_bool(s, 3, m->udp));
	CLOSE();
	return OK;
}

static int e_docker(st_t *s, const void *o)
{
	const edgerm_docker_task_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->image));
	TRY(p_list(s, 2, e_tstr_elem, m->command, sizeof(m->command[0]), m->command_count));
	TRY(p_list(s, 3, e_env, m->env, sizeof(m->env[0]), m->env_count));
	TRY(p_list(s, 4, e_port_mapping, m->ports, sizeof(m->ports[0]), m->ports_count));
	TRY(p_i32(s, 5, m->network));
	CLOSE();
	return OK;
}

static int e_wasm_like(st_t *s, const edgerm_wasm_task_t *m, bool mpy)
{
	OPEN();
	TRY(p_bstr(s, 1, m->sha256));
	TRY(p_u32(s, 2, m->size));
	if (mpy) {
		TRY(p_bool(s, 3, m->mpy));
	} else {
		TRY(p_tstr(s, 3, m->entry));
	}
	TRY(p_list(s, 4, e_tstr_elem, m->args, sizeof(m->args[0]), m->args_count));
	TRY(p_list(s, 5, e_env, m->env, sizeof(m->env[0]), m->env_count));
	TRY(p_u32(s, 6, m->timeout_s));
	CLOSE();
	return OK;
}

static int e_wasm(st_t *s, const void *o)
{
	return e_wasm_like(s, o, false);
}

static int e_mpy(st_t *s, const void *o)
{
	return e_wasm_like(s, o, true);
}

static int e_task_spec(st_t *s, const void *o)
{
	const edgerm_task_spec_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	if (m->has_resources) {
		TRY(p_msg(s, 2, e_resources, &m->resources));
	}
	switch (m->which) {
	case 3: TRY(p_msg(s, 3, e_docker, &m->kind.docker)); break;
	case 4: TRY(p_msg(s, 4, e_wasm, &m->kind.wasm)); break;
	case 5: TRY(p_msg(s, 5, e_mpy, &m->kind.wasm)); break;
	default: break;
	}
	CLOSE();
	return OK;
}

static int e_task_report(st_t *s, const void *o)
{
	const edgerm_task_report_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->task));
	TRY(p_i32(s, 2, m->state));
	CLOSE();
	return OK;
}

static int e_register(st_t *s, const void *o)
{
	const edgerm_register_t *m = o;

	OPEN();
	TRY(p_tstr(s, 1, m->name));
	if (m->has_resources) {
		TRY(p_msg(s, 2, e_resources, &m->resources));
	}
	TRY(p_list(s, 3, e_attribute, m->attributes, sizeof(m->attributes[0]),
		   m->attributes_count));
	TRY(p_list(s, 4, e_i32_elem, m->executors, sizeof(m->executors[0]), m->executors_count));
	TRY(p_u32(s, 5, m->protocol_version));
	TRY(p_tstr(s, 6, m->token));
	TRY(p_list(s, 7, e_task_report, m->tasks, sizeof(m->tasks[0]), m->tasks_count));
	TRY(p_u32(s, 8, m->max_payload));
	TRY(p_u32(s, 9, m->update_next));
	CLOSE();
	return OK;
}

static int e_heartbeat(st_t *s, const void *o)
{
	const edgerm_heartbeat_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->command_ack));
	if (m->has_resources) {
		TRY(p_msg(s, 2, e_resources, &m->resources));
	}
	TRY(p_list(s, 3, e_attribute, m->attributes, sizeof(m->attributes[0]),
		   m->attributes_count));
	CLOSE();
	return OK;
}

static int e_status(st_t *s, const void *o)
{
	const edgerm_status_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->update_id));
	TRY(p_u32(s, 2, m->task));
	TRY(p_i32(s, 3, m->state));
	TRY(p_i32(s, 4, m->reason));
	TRY(p_tstr(s, 5, m->message));
	TRY(p_i32(s, 6, m->exit_code));
	CLOSE();
	return OK;
}

static int e_publish(st_t *s, const void *o)
{
	const edgerm_publish_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->update_id));
	TRY(p_u32(s, 2, m->task));
	TRY(p_bstr(s, 3, m->data));
	TRY(p_tstr(s, 4, m->topic));
	CLOSE();
	return OK;
}

static int e_module_request(st_t *s, const void *o)
{
	const edgerm_module_request_t *m = o;

	OPEN();
	TRY(p_bstr(s, 1, m->sha256));
	TRY(p_u32(s, 2, m->offset));
	TRY(p_u32(s, 3, m->length));
	CLOSE();
	return OK;
}

static int e_agent_call(st_t *s, const void *o)
{
	const edgerm_agent_call_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->agent_id));
	TRY(p_u32(s, 2, m->seq));
	TRY(p_bstr(s, 3, m->mac));
	switch (m->which) {
	case 4: TRY(p_msg(s, 4, e_register, &m->call.reg)); break;
	case 5: TRY(p_msg(s, 5, e_heartbeat, &m->call.heartbeat)); break;
	case 6: TRY(p_msg(s, 6, e_status, &m->call.status)); break;
	case 7: TRY(p_msg(s, 7, e_publish, &m->call.publish)); break;
	case 8: TRY(p_msg(s, 8, e_module_request, &m->call.module)); break;
	default: break;
	}
	CLOSE();
	return OK;
}

static int run_encoder(enc_fn enc, const void *in, uint8_t *buf, size_t cap)
{
	st_t states[N_STATES];

	zcbor_new_encode_state(states, N_STATES, buf, cap, 1);
	TRY(enc(states, in));
	return (int)(states[0].payload - buf);
}

int edgerm_wire_encode_agent_call(const edgerm_agent_call_t *in, uint8_t *buf, size_t cap)
{
	return run_encoder(e_agent_call, in, buf, cap);
}

/* ------------------------------------------------------------------------------------------ */
/* The master's messages: the agent only decodes them; their encoders serve the vector tests
 * (the linker drops them from the firmware). A command re-encodes its spec from the decoded
 * struct, never by copying the received bytes. */

static int e_launch_spec(st_t *s, edgerm_slice_t spec)
{
	edgerm_task_spec_t m;

	if (run_decoder(d_task_spec, spec.ptr, spec.len, &m, true) < 0) {
		return EDGERM_WIRE_E_SCHEMA;
	}
	return p_msg(s, 2, e_task_spec, &m);
}

static int e_command_body(st_t *s, const edgerm_command_t *m, uint8_t which)
{
	OPEN();
	switch (which) {
	case 2:
		TRY(p_u32(s, 1, m->task));
		if (m->has_spec) {
			TRY(e_launch_spec(s, m->spec));
		}
		break;
	case 3: TRY(p_u32(s, 1, m->task)); break;
	case 4:
		TRY(p_bstr(s, 1, m->sha256));
		TRY(p_u32(s, 2, m->size));
		break;
	default: break;
	}
	CLOSE();
	return OK;
}

static int e_command(st_t *s, const void *o)
{
	const edgerm_command_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->id));
	if (m->which >= 2 && m->which <= 5) {
		PUT(zcbor_uint32_put(s, m->which));
		TRY(e_command_body(s, m, m->which));
	}
	CLOSE();
	return OK;
}

static int e_command_slice(st_t *s, const void *o)
{
	edgerm_command_t m;

	if (run_decoder(d_command, ((const edgerm_slice_t *)o)->ptr,
			((const edgerm_slice_t *)o)->len, &m, true) < 0) {
		return EDGERM_WIRE_E_SCHEMA;
	}
	return e_command(s, &m);
}

static int e_registered(st_t *s, const void *o)
{
	const edgerm_registered_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->agent_id));
	TRY(p_bstr(s, 2, m->secret));
	TRY(p_u32(s, 3, m->heartbeat_ms));
	TRY(p_u32(s, 4, m->jitter_ms));
	TRY(p_u32(s, 5, m->update_ack));
	CLOSE();
	return OK;
}

static int e_error(st_t *s, const void *o)
{
	const edgerm_error_t *m = o;

	OPEN();
	TRY(p_i32(s, 1, m->code));
	TRY(p_tstr(s, 2, m->message));
	CLOSE();
	return OK;
}

static int e_module_chunk(st_t *s, const void *o)
{
	const edgerm_module_chunk_t *m = o;

	OPEN();
	TRY(p_bstr(s, 1, m->sha256));
	TRY(p_u32(s, 2, m->offset));
	TRY(p_u32(s, 3, m->total));
	TRY(p_bstr(s, 4, m->data));
	CLOSE();
	return OK;
}

static int e_agent_reply(st_t *s, const void *o)
{
	const edgerm_agent_reply_t *m = o;

	OPEN();
	TRY(p_u32(s, 1, m->seq));
	TRY(p_bstr(s, 2, m->mac));
	TRY(p_u32(s, 3, m->update_ack));
	TRY(p_list(s, 4, e_command_slice, m->commands, sizeof(m->commands[0]), m->commands_count));
	if (m->has_registered) {
		TRY(p_msg(s, 5, e_registered, &m->registered));
	}
	if (m->has_error) {
		TRY(p_msg(s, 6, e_error, &m->error));
	}
	if (m->has_module) {
		TRY(p_msg(s, 7, e_module_chunk, &m->module));
	}
	CLOSE();
	return OK;
}

int edgerm_wire_encode_agent_reply(const edgerm_agent_reply_t *in, uint8_t *buf, size_t cap)
{
	return run_encoder(e_agent_reply, in, buf, cap);
}

/* ------------------------------------------------------------------------------------------ */
/* Every message type, by its proto name, for the vector and fuzz tests. */

#ifdef EDGERM_WIRE_TYPE_TABLE
#if !CONFIG_EDGERM_WIRE_FULL_SCHEMA
#error "the type table needs CONFIG_EDGERM_WIRE_FULL_SCHEMA=1"
#endif

/* Launch, Kill, FetchModule and ReRegister alone decode into edgerm_command_t as well. */
static int d_launch(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_command_t));
	return d_map(s, f_launch, o);
}
static int d_kill(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_command_t));
	return d_map(s, f_kill, o);
}
static int d_fetch(st_t *s, void *o)
{
	memset(o, 0, sizeof(edgerm_command_t));
	return d_map(s, f_fetch, o);
}
static int d_empty(st_t *s, void *o)
{
	return d_map(s, f_none, o);
}
static int e_launch(st_t *s, const void *o)
{
	return e_command_body(s, o, 2);
}
static int e_kill(st_t *s, const void *o)
{
	return e_command_body(s, o, 3);
}
static int e_fetch(st_t *s, const void *o)
{
	return e_command_body(s, o, 4);
}
static int e_empty(st_t *s, const void *o)
{
	return e_command_body(s, o, 5);
}

#define TYPE(name, dec, enc)                                                                       \
	static int name##_dec(const uint8_t *b, size_t n, void *o)                                 \
	{                                                                                          \
		return run_decoder(dec, b, n, o, false);                                           \
	}                                                                                          \
	static int name##_enc(const void *i, uint8_t *b, size_t cap)                               \
	{                                                                                          \
		return run_encoder(enc, i, b, cap);                                                \
	}
TYPE(AgentCall, d_agent_call, e_agent_call)
TYPE(AgentReply, d_agent_reply, e_agent_reply)
TYPE(Register, d_register, e_register)
TYPE(Heartbeat, d_heartbeat, e_heartbeat)
TYPE(StatusUpdate, d_status, e_status)
TYPE(Publish, d_publish, e_publish)
TYPE(ModuleRequest, d_module_request, e_module_request)
TYPE(Registered, d_registered, e_registered)
TYPE(Error, d_error, e_error)
TYPE(ModuleChunk, d_module_chunk, e_module_chunk)
TYPE(Command, d_command, e_command)
TYPE(Launch, d_launch, e_launch)
TYPE(Kill, d_kill, e_kill)
TYPE(FetchModule, d_fetch, e_fetch)
TYPE(ReRegister, d_empty, e_empty)
TYPE(TaskSpec, d_task_spec, e_task_spec)
TYPE(WasmTask, d_wasm, e_wasm)
TYPE(MicroPythonTask, d_mpy, e_mpy)
TYPE(DockerTask, d_docker, e_docker)
TYPE(Resources, d_resources, e_resources)
TYPE(Range, d_range, e_range)
TYPE(Device, d_device, e_device)
TYPE(CustomResource, d_custom, e_custom)
TYPE(Set, d_set, e_set)
TYPE(Attribute, d_attribute, e_attribute)
TYPE(EnvVar, d_env, e_env)
TYPE(PortMapping, d_port_mapping, e_port_mapping)
TYPE(TaskReport, d_task_report, e_task_report)

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
