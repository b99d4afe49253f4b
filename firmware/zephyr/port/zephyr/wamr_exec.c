/*
 * WASM executor on WAMR (interpreter): the runtime is initialised once with one memory pool
 * sized for CONFIG_EDGERM_WASM_MAX_SLOTS tasks; each task is a module instance with a bounded
 * operand stack, app heap and linear memory (max_memory_pages from the task's mem_mb), on its
 * own Zephyr thread whose WAMR thread environment is initialised there.
 *
 * The host ABI of proto/wasm_abi.md is registered as native symbols of module "edgerm"; every
 * pointer is checked by the core's edgerm_abi_* helpers against the instance's current memory.
 *
 * Lifecycle of a slot: FREE -> (agent thread: load, check imports, instantiate, spawn) RUNNING
 * -> (task thread: call, record the result, free WAMR objects) DONE -> (agent thread: join,
 * report unless killed) FREE. A kill sets `killed`, calls wasm_runtime_terminate (with the
 * thread manager the interpreter stops at its next branch), wakes a sleeping task and joins the
 * thread; only if it does not stop within CONFIG_EDGERM_KILL_TIMEOUT_MS is it aborted.
 *
 * Locks: task threads never wait for the agent lock (publish uses a try-lock and answers
 * EDGERM_E_AGAIN), so the agent thread may join them while holding it. `inst_lock` guards the
 * instance pointer between a kill and the task thread freeing it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>

#include "agent_thread.h"
#include "edgerm/abi.h"
#include "edgerm/agent.h"
#include "edgerm_zephyr.h"
#include "wasm_export.h"

LOG_MODULE_REGISTER(edgerm_wamr, CONFIG_EDGERM_LOG_LEVEL);

#define NSLOTS CONFIG_EDGERM_WASM_MAX_SLOTS

enum slot_state { SLOT_FREE, SLOT_RUNNING, SLOT_DONE, SLOT_DEAD };

struct slot {
	atomic_t state;
	atomic_t killed;
	uint32_t task;
	uint64_t deadline_ms;
	struct k_thread thread;
	struct k_sem wake; /* ends a sleep_ms early on kill */
	struct k_mutex inst_lock;
	wasm_module_t module;
	wasm_module_inst_t inst;
	wasm_exec_env_t env;
	wasm_function_inst_t entry;
	edgerm_abi_task_t abi;
	/* Written by the task thread only; read by the agent thread once the slot is DONE. */
	uint8_t exit_state, exit_reason;
	int32_t exit_code;
	char tail[CONFIG_EDGERM_LOG_TAIL_SIZE];
	size_t tail_len;
	char msg[CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE + 1];
};

static struct slot slots[NSLOTS];
K_THREAD_STACK_ARRAY_DEFINE(task_stacks, NSLOTS, CONFIG_EDGERM_TASK_THREAD_STACK_SIZE);
static uint8_t __aligned(8) wamr_pool[CONFIG_EDGERM_WAMR_POOL_SIZE];

/* ---- host functions ---------------------------------------------------------------------- */

static struct slot *slot_of(wasm_exec_env_t env)
{
	return wasm_runtime_get_custom_data(wasm_runtime_get_module_inst(env));
}

/* The instance's linear memory now (memory.grow may have moved it). */
static uint8_t *memory(wasm_exec_env_t env, uint64_t *size)
{
	wasm_memory_inst_t m = wasm_runtime_get_default_memory(wasm_runtime_get_module_inst(env));

	if (!m) {
		*size = 0;
		return NULL;
	}
	*size = wasm_memory_get_cur_page_count(m) * wasm_memory_get_bytes_per_page(m);
	return wasm_memory_get_base_address(m);
}

static int32_t trap_if_bad(wasm_exec_env_t env, int32_t rc)
{
	if (rc == EDGERM_ABI_TRAP) {
		wasm_runtime_set_exception(wasm_runtime_get_module_inst(env),
					   "out of bounds memory access (host call)");
		return 0;
	}
	return rc;
}

static void n_log(wasm_exec_env_t env, uint32_t ptr, uint32_t len)
{
	struct slot *s = slot_of(env);
	uint64_t size;
	uint8_t *mem = memory(env, &size);

	if (!edgerm_abi_in_bounds(size, ptr, len)) {
		trap_if_bad(env, EDGERM_ABI_TRAP);
		return;
	}
	/* Keep the tail: newline-separated lines, the newest last. */
	for (uint32_t i = (len > sizeof(s->tail) ? len - sizeof(s->tail) : 0); i <= len; i++) {
		char c = i == len ? '\n' : (char)mem[ptr + i];

		if (s->tail_len == sizeof(s->tail)) {
			memmove(s->tail, s->tail + 1, sizeof(s->tail) - 1);
			s->tail_len--;
		}
		s->tail[s->tail_len++] = c;
	}
}

static uint64_t n_now_ms(wasm_exec_env_t env)
{
	ARG_UNUSED(env);
	return (uint64_t)k_uptime_get();
}

static void n_sleep_ms(wasm_exec_env_t env, uint32_t ms)
{
	struct slot *s = slot_of(env);

	if (!atomic_get(&s->killed)) {
		(void)k_sem_take(&s->wake, K_MSEC(ms)); /* given by a kill */
	}
}

static int sensor_read(void *ctx, const char *name, size_t len, double *v)
{
	return edgerm_port_sensor_read(ctx, name, len, v);
}

static int32_t n_read_sensor(wasm_exec_env_t env, uint32_t name, uint32_t name_len, uint32_t out)
{
	struct slot *s = slot_of(env);
	uint64_t size;
	uint8_t *mem = memory(env, &size);

	return trap_if_bad(env, edgerm_abi_read_sensor(&s->abi, mem, size, name, name_len, out,
						       sensor_read, NULL));
}

static int32_t n_publish(wasm_exec_env_t env, uint32_t ptr, uint32_t len)
{
	struct slot *s = slot_of(env);
	uint64_t size;
	uint8_t *mem = memory(env, &size);
	int32_t rc;

	if (!edgerm_abi_in_bounds(size, ptr, len)) {
		return trap_if_bad(env, EDGERM_ABI_TRAP);
	}
	if (len > 1024) {
		return EDGERM_ABI_E_TOOBIG;
	}
	/* Never wait for the agent lock (see the file comment): busy means "try again". */
	if (atomic_get(&s->killed) || !edgerm_agent_trylock()) {
		return EDGERM_ABI_E_AGAIN;
	}
	rc = edgerm_agent_publish(edgerm_agent(), s->task, mem + ptr, len, edgerm_port_now_ms());
	edgerm_agent_unlock();
	edgerm_agent_wake();
	return rc;
}

static int32_t n_arg_count(wasm_exec_env_t env)
{
	return edgerm_abi_arg_count(&slot_of(env)->abi);
}

static int32_t n_arg_get(wasm_exec_env_t env, uint32_t i, uint32_t buf, uint32_t cap)
{
	uint64_t size;
	uint8_t *mem = memory(env, &size);

	return trap_if_bad(env, edgerm_abi_arg_get(&slot_of(env)->abi, mem, size, i, buf, cap));
}

static int32_t n_env_get(wasm_exec_env_t env, uint32_t name, uint32_t name_len, uint32_t buf,
			 uint32_t cap)
{
	uint64_t size;
	uint8_t *mem = memory(env, &size);

	return trap_if_bad(env, edgerm_abi_env_get(&slot_of(env)->abi, mem, size, name, name_len,
						   buf, cap));
}

/* WAMR signatures: i = i32, I = i64, (args)result. Pointers are plain i32 offsets here: the
 * ABI helpers check them against the current memory size. */
static NativeSymbol natives[] = {
	{"log", n_log, "(ii)", NULL},
	{"now_ms", n_now_ms, "()I", NULL},
	{"sleep_ms", n_sleep_ms, "(i)", NULL},
	{"read_sensor", n_read_sensor, "(iii)i", NULL},
	{"publish", n_publish, "(ii)i", NULL},
	{"arg_count", n_arg_count, "()i", NULL},
	{"arg_get", n_arg_get, "(iii)i", NULL},
	{"env_get", n_env_get, "(iiii)i", NULL},
};

/* ---- the task thread -------------------------------------------------------------------- */

static void task_main(void *p1, void *p2, void *p3)
{
	struct slot *s = p1;
	uint32_t argv[2] = {0, 0};
	const char *exc;

	ARG_UNUSED(p2), ARG_UNUSED(p3);
	if (!wasm_runtime_init_thread_env()) {
		s->exit_state = EDGERM_FAILED;
		s->exit_reason = EDGERM_EXECUTOR_ERROR;
		snprintf(s->msg, sizeof(s->msg), "WAMR thread env");
	} else if (wasm_runtime_call_wasm(s->env, s->entry, 0, argv)) {
		int32_t code = wasm_func_get_result_count(s->entry, s->inst) ? (int32_t)argv[0] : 0;

		s->exit_state = code == 0 ? EDGERM_FINISHED : EDGERM_FAILED;
		s->exit_reason = code == 0 ? 0 : EDGERM_EXITED_NONZERO;
		s->exit_code = code;
	} else {
		exc = wasm_runtime_get_exception(s->inst);
		s->exit_state = EDGERM_FAILED;
		s->exit_reason = EDGERM_TRAPPED;
		snprintf(s->msg, sizeof(s->msg), "%s", exc ? exc : "trap");
	}
	k_mutex_lock(&s->inst_lock, K_FOREVER);
	wasm_runtime_destroy_exec_env(s->env);
	wasm_runtime_deinstantiate(s->inst);
	wasm_runtime_unload(s->module);
	s->env = NULL;
	s->inst = NULL;
	s->module = NULL;
	k_mutex_unlock(&s->inst_lock);
	wasm_runtime_destroy_thread_env();
	atomic_set(&s->state, SLOT_DONE);
	edgerm_agent_wake();
}

/* ---- edgerm_port.h ---------------------------------------------------------------------- */

static int fail(char *msg, size_t cap, int rc, const char *what, const char *detail)
{
	snprintf(msg, cap, "%s%s%s", what, detail && detail[0] ? ": " : "", detail ? detail : "");
	return rc;
}

int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *start, char *msg, size_t cap)
{
	struct slot *s = NULL;
	char err[96] = "";
	int i;

	ARG_UNUSED(ctx);
	for (i = 0; i < NSLOTS && !s; i++) {
		if (atomic_get(&slots[i].state) == SLOT_FREE) {
			s = &slots[i];
		}
	}
	if (!s) {
		return fail(msg, cap, EDGERM_PORT_E_RESOURCES, "no free task slot", NULL);
	}
	if (edgerm_abi_task_init(&s->abi, start->spec) < 0) {
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "args/env too large", NULL);
	}
	/* The module stays in the core's cache, pinned, until this task has ended; WAMR's
	 * interpreter reads it in place (its API takes a non-const buffer; the interpreter does
	 * not write to it - only AOT relocation would, and AOT is off). */
	s->module = wasm_runtime_load((uint8_t *)start->module, (uint32_t)start->module_len, err,
				      sizeof(err));
	if (!s->module) {
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "load", err);
	}
	/* An import the host does not provide fails the launch and names it (WAMR itself would
	 * only trap when it is called). */
	int32_t n = wasm_runtime_get_import_count(s->module);

	for (int32_t k = 0; k < n; k++) {
		wasm_import_t imp;

		wasm_runtime_get_import_type(s->module, k, &imp);
		if (imp.kind == WASM_IMPORT_EXPORT_KIND_FUNC && !imp.linked) {
			snprintf(err, sizeof(err), "%s.%s", imp.module_name, imp.name);
			wasm_runtime_unload(s->module);
			return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "missing import", err);
		}
	}
	InstantiationArgs args = {
		.default_stack_size = CONFIG_EDGERM_WASM_STACK_SIZE,
		.host_managed_heap_size = CONFIG_EDGERM_WASM_HEAP_SIZE,
		/* mem_mb bounds linear memory: 64 KiB pages, at least one. */
		.max_memory_pages = s->abi.mem_mb > 0 ? MAX(1U, (uint32_t)(s->abi.mem_mb * 16.0)) : 1U,
	};

	s->inst = wasm_runtime_instantiate_ex(s->module, &args, err, sizeof(err));
	if (!s->inst) {
		wasm_runtime_unload(s->module);
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "instantiate", err);
	}
	if (s->abi.entry.len > 0 && s->abi.entry.len < 64) {
		char name[64];

		memcpy(name, edgerm_abi_str(&s->abi, s->abi.entry), s->abi.entry.len);
		name[s->abi.entry.len] = '\0';
		s->entry = wasm_runtime_lookup_function(s->inst, name);
	} else {
		s->entry = wasm_runtime_lookup_function(s->inst, "run");
		s->entry = s->entry ? s->entry : wasm_runtime_lookup_function(s->inst, "_start");
		s->entry = s->entry ? s->entry : wasm_runtime_lookup_function(s->inst, "main");
	}
	if (!s->entry || wasm_func_get_param_count(s->entry, s->inst) != 0 ||
	    wasm_func_get_result_count(s->entry, s->inst) > 1) {
		wasm_runtime_deinstantiate(s->inst);
		wasm_runtime_unload(s->module);
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "no entry point () -> i32 or () -> ()",
			    NULL);
	}
	s->env = wasm_runtime_create_exec_env(s->inst, CONFIG_EDGERM_WASM_STACK_SIZE);
	if (!s->env) {
		wasm_runtime_deinstantiate(s->inst);
		wasm_runtime_unload(s->module);
		return fail(msg, cap, EDGERM_PORT_E_RESOURCES, "exec env", NULL);
	}
	wasm_runtime_set_custom_data(s->inst, s);
	s->task = start->task;
	s->tail_len = 0;
	s->msg[0] = '\0';
	s->exit_code = 0;
	s->deadline_ms = s->abi.timeout_s
				 ? edgerm_port_now_ms() + (uint64_t)s->abi.timeout_s * 1000U
				 : EDGERM_NO_DEADLINE;
	atomic_set(&s->killed, 0);
	k_sem_reset(&s->wake);
	atomic_set(&s->state, SLOT_RUNNING);
	k_thread_create(&s->thread, task_stacks[s - slots], K_THREAD_STACK_SIZEOF(task_stacks[0]),
			task_main, s, NULL, NULL, CONFIG_EDGERM_TASK_THREAD_PRIORITY, 0, K_NO_WAIT);
	k_thread_name_set(&s->thread, "edgerm_task");
	return 0;
}

/* Stop a slot's thread; it runs no more when this returns (0), or it was aborted (< 0). */
static int stop(struct slot *s)
{
	atomic_set(&s->killed, 1);
	k_mutex_lock(&s->inst_lock, K_FOREVER);
	if (s->inst) {
		wasm_runtime_terminate(s->inst);
	}
	k_mutex_unlock(&s->inst_lock);
	k_sem_give(&s->wake);
	if (k_thread_join(&s->thread, K_MSEC(CONFIG_EDGERM_KILL_TIMEOUT_MS)) == 0) {
		atomic_set(&s->state, SLOT_FREE);
		return 0;
	}
	/* It did not reach a branch or return from a host call in time. Aborting it may leave
	 * its WAMR objects in the pool: the slot is retired until reboot. */
	LOG_ERR("task %u did not stop: aborting its thread", s->task);
	k_thread_abort(&s->thread);
	atomic_set(&s->state, SLOT_DEAD);
	return -ETIMEDOUT;
}

int edgerm_port_task_kill(void *ctx, uint32_t task)
{
	ARG_UNUSED(ctx);
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];
		atomic_val_t st = atomic_get(&s->state);

		if ((st == SLOT_RUNNING || st == SLOT_DONE) && s->task == task) {
			return stop(s);
		}
	}
	return -ESRCH;
}

void edgerm_wamr_poll(edgerm_agent_t *a, uint64_t now)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];
		atomic_val_t st = atomic_get(&s->state);

		if (st == SLOT_DONE) {
			(void)k_thread_join(&s->thread, K_FOREVER); /* it has finished its work */
			atomic_set(&s->state, SLOT_FREE);
			if (!atomic_get(&s->killed)) {
				const char *m = s->msg[0] ? s->msg : s->tail;
				size_t len = s->msg[0] ? strlen(s->msg) : s->tail_len;

				edgerm_agent_task_exited(a, s->task, s->exit_state, s->exit_reason,
							 s->exit_code, m, len, now);
			}
		} else if (st == SLOT_RUNNING && now >= s->deadline_ms) {
			uint32_t task = s->task;

			(void)stop(s);
			edgerm_agent_task_exited(a, task, EDGERM_FAILED, EDGERM_TIMEOUT, 0, "timeout", 7,
						 now);
		}
	}
}

uint64_t edgerm_wamr_next_deadline_ms(void)
{
	uint64_t d = EDGERM_NO_DEADLINE;

	for (int i = 0; i < NSLOTS; i++) {
		if (atomic_get(&slots[i].state) == SLOT_RUNNING && slots[i].deadline_ms < d) {
			d = slots[i].deadline_ms;
		}
	}
	return d;
}

int edgerm_wamr_init(void)
{
	RuntimeInitArgs init;

	memset(&init, 0, sizeof(init));
	init.mem_alloc_type = Alloc_With_Pool;
	init.mem_alloc_option.pool.heap_buf = wamr_pool;
	init.mem_alloc_option.pool.heap_size = sizeof(wamr_pool);
	init.native_module_name = "edgerm";
	init.native_symbols = natives;
	init.n_native_symbols = ARRAY_SIZE(natives);
	init.max_thread_num = NSLOTS;
	if (!wasm_runtime_full_init(&init)) {
		LOG_ERR("WAMR init failed (pool %u bytes)", (unsigned)sizeof(wamr_pool));
		return -ENOMEM;
	}
	for (int i = 0; i < NSLOTS; i++) {
		k_sem_init(&slots[i].wake, 0, 1);
		k_mutex_init(&slots[i].inst_lock);
		atomic_set(&slots[i].state, SLOT_FREE);
	}
	return 0;
}
