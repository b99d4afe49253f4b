/*
 * The executor-independent half of the WASM host ABI: every (ptr, len) from a task is checked
 * against its memory before a byte is read or written; a bad one is EDGERM_ABI_TRAP, which the
 * glue turns into a trap (FAILED, TRAPPED) as proto/wasm_abi.md requires.
 */
#include <string.h>

#include "edgerm/abi.h"

static int keep(edgerm_abi_task_t *t, edgerm_slice_t s, edgerm_abi_str_t *out)
{
	if (s.len > sizeof(t->data) - t->used) {
		return EDGERM_ABI_E_TOOBIG;
	}
	if (s.len) {
		memcpy(t->data + t->used, s.ptr, s.len);
	}
	out->off = t->used;
	out->len = (uint16_t)s.len;
	t->used = (uint16_t)(t->used + s.len);
	return 0;
}

int edgerm_abi_task_init(edgerm_abi_task_t *t, const edgerm_task_spec_t *spec)
{
	const edgerm_wasm_task_t *w = &spec->kind.wasm;
	int r = 0;

	memset(t, 0, sizeof(*t));
	r |= keep(t, w->entry, &t->entry);
	for (uint8_t i = 0; i < w->args_count; i++) {
		r |= keep(t, w->args[i], &t->args[i]);
	}
	for (uint8_t i = 0; i < w->env_count; i++) {
		r |= keep(t, w->env[i].name, &t->env_name[i]);
		r |= keep(t, w->env[i].value, &t->env_value[i]);
	}
	t->args_count = w->args_count;
	t->env_count = w->env_count;
	if (spec->has_resources) {
		for (uint8_t i = 0; i < spec->resources.devices_count; i++) {
			r |= keep(t, spec->resources.devices[i].name, &t->devices[i]);
		}
		t->devices_count = spec->resources.devices_count;
		t->mem_mb = spec->resources.mem_mb;
	}
	t->timeout_s = w->timeout_s;
	return r ? EDGERM_ABI_E_TOOBIG : 0;
}

int edgerm_abi_in_bounds(uint64_t mem_size, uint32_t ptr, uint32_t len)
{
	return (uint64_t)ptr + len <= mem_size;
}

int32_t edgerm_abi_arg_count(const edgerm_abi_task_t *t)
{
	return t->args_count;
}

/* Copy s into the task's buf (at most cap bytes); return its full length. */
static int32_t copy_out(const edgerm_abi_task_t *t, edgerm_abi_str_t s, uint8_t *mem,
			uint64_t mem_size, uint32_t buf, uint32_t cap)
{
	if (!edgerm_abi_in_bounds(mem_size, buf, cap)) {
		return EDGERM_ABI_TRAP;
	}
	memcpy(mem + buf, t->data + s.off, s.len < cap ? s.len : cap);
	return s.len;
}

int32_t edgerm_abi_arg_get(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			   uint32_t i, uint32_t buf, uint32_t cap)
{
	if (!edgerm_abi_in_bounds(mem_size, buf, cap)) {
		return EDGERM_ABI_TRAP;
	}
	if (i >= t->args_count) {
		return EDGERM_ABI_E_NOTFOUND;
	}
	return copy_out(t, t->args[i], mem, mem_size, buf, cap);
}


static int same(const edgerm_abi_task_t *t, edgerm_abi_str_t s, const uint8_t *p, uint32_t n)
{
	return s.len == n && memcmp(t->data + s.off, p, n) == 0;
}

int32_t edgerm_abi_env_get(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			   uint32_t name, uint32_t name_len, uint32_t buf, uint32_t cap)
{
	if (!edgerm_abi_in_bounds(mem_size, name, name_len) ||
	    !edgerm_abi_in_bounds(mem_size, buf, cap)) {
		return EDGERM_ABI_TRAP;
	}
	for (uint8_t i = 0; i < t->env_count; i++) {
		if (same(t, t->env_name[i], mem + name, name_len)) {
			return copy_out(t, t->env_value[i], mem, mem_size, buf, cap);
		}
	}
	return EDGERM_ABI_E_NOTFOUND;
}

/* 1 when the task claimed device `name` (its resources.devices). */
static int claimed(const edgerm_abi_task_t *t, const uint8_t *name, uint32_t len)
{
	for (uint8_t i = 0; i < t->devices_count; i++) {
		if (same(t, t->devices[i], name, len)) {
			return 1;
		}
	}
	return 0;
}

int32_t edgerm_abi_read_sensor(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			       uint32_t name, uint32_t name_len, uint32_t out,
			       edgerm_abi_sensor_fn read, void *ctx)
{
	double v;
	uint64_t bits;

	if (!edgerm_abi_in_bounds(mem_size, name, name_len) ||
	    !edgerm_abi_in_bounds(mem_size, out, 8)) {
		return EDGERM_ABI_TRAP;
	}
	int held = claimed(t, mem + name, name_len);
	int r = read(ctx, (const char *)mem + name, name_len, held ? &v : NULL);

	/* Not found wins over denied: the agent has no such sensor (what the Linux agent says). */
	if (r == EDGERM_ABI_E_NOTFOUND || !held) {
		return r == EDGERM_ABI_E_NOTFOUND ? r : EDGERM_ABI_E_DENIED;
	}
	if (r != 0) {
		return EDGERM_ABI_E_IO;
	}
	/* The ABI writes an f64, little-endian, whatever the host's byte order. */
	memcpy(&bits, &v, sizeof(bits));
	for (int k = 0; k < 8; k++) {
		mem[out + k] = (uint8_t)(bits >> (8 * k));
	}
	return EDGERM_ABI_OK;
}

int32_t edgerm_abi_actuator_check(const edgerm_abi_task_t *t, const uint8_t *mem,
				  uint64_t mem_size, uint32_t name, uint32_t name_len)
{
	if (!edgerm_abi_in_bounds(mem_size, name, name_len)) {
		return EDGERM_ABI_TRAP;
	}
	return claimed(t, mem + name, name_len) ? EDGERM_ABI_OK : EDGERM_ABI_E_DENIED;
}
