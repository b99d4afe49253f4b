/*
 * WASM executor on WAMR (classic interpreter), the same file for Zephyr, POSIX and bare metal:
 * the runtime is initialised once with one memory pool sized for CONFIG_EDGERM_WASM_MAX_SLOTS
 * tasks; each task is a module instance with a bounded operand stack, app heap and linear
 * memory (max_memory_pages from the task's mem_mb), on the slot's thread of the platform's
 * threading layer (wamr_exec.h), where its WAMR thread env and exec env are created.
 *
 * The host ABI of proto/wasm_abi.md (v2) is registered as native symbols of module "edgerm";
 * every pointer is checked by the core's edgerm_abi_* helpers against the instance's current
 * memory (memory.grow may have moved or grown it) before a byte is touched.
 *
 * Lifecycle of a slot: FREE -> (agent thread: load, check imports and memory, instantiate,
 * spawn) RUNNING -> (task thread: call, record the result, free WAMR objects) DONE -> (agent
 * thread: join, report unless killed) FREE. A kill sets `killed`, calls wasm_runtime_terminate
 * (with WAMR's thread manager the interpreter stops at its next branch) and wakes a sleeping
 * task, repeating both until the thread ends (a kill that lands between the exec env's creation
 * and the call is repeated, not lost); only if it does not stop within
 * CONFIG_EDGERM_KILL_TIMEOUT_MS is it abandoned and the slot retired (SLOT_DEAD).
 *
 * Results, as every EdgeRM executor reports them (proto/wasm_abi.md): exit 0 FINISHED; another
 * FAILED EXITED_NONZERO, or MEMORY_LIMIT when the task's memory sits at its mem_mb cap below
 * what the module declared (memory.grow was refused); a trap FAILED TRAPPED with WAMR's
 * exception text; timeout FAILED TIMEOUT; the message is the log tail otherwise.
 *
 * Locks: task threads never wait for the agent lock (publish tries it and answers
 * EDGERM_E_AGAIN), so the agent thread may join them while holding it. The slot lock guards
 * the instance pointer between a kill and the task thread freeing it.
 */
#include <stdio.h>
#include <string.h>

#include "edgerm/abi.h"
#include "edgerm/agent.h"
#include "wamr_exec.h"
#include "wasm_export.h"

#define NSLOTS CONFIG_EDGERM_WASM_MAX_SLOTS
#define PAGE_BYTES 65536u
#define PUBLISH_MAX 1024u

enum slot_state { SLOT_FREE, SLOT_RUNNING, SLOT_DONE, SLOT_DEAD };

struct slot {
	int state;  /* enum slot_state, atomic */
	int killed; /* atomic */
	uint32_t task;
	uint64_t deadline_ms;
	edgerm_wamr_os_t *os;
	uint8_t *code; /* this task's copy of the module (from the pool) */
	wasm_module_t module;
	wasm_module_inst_t inst;
	wasm_exec_env_t env;
	wasm_function_inst_t entry;
	uint32_t cap_pages; /* mem_mb in pages */
	uint8_t capped;     /* the module declared more than cap_pages */
	edgerm_abi_task_t abi;
	/* Written by the task thread only; read by the agent thread once the slot is DONE. */
	uint8_t exit_state, exit_reason;
	int32_t exit_code;
	char tail[CONFIG_EDGERM_LOG_TAIL_SIZE];
	size_t tail_len;
	char msg[CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE + 1];
};

static struct slot slots[NSLOTS];
static edgerm_wamr_host_t host;
/* Aligned for WAMR's allocator (ems). */
static uint8_t wamr_pool[CONFIG_EDGERM_WAMR_POOL_SIZE] __attribute__((aligned(8)));

static int get(const int *v)
{
	return __atomic_load_n(v, __ATOMIC_SEQ_CST);
}

static void put(int *v, int x)
{
	__atomic_store_n(v, x, __ATOMIC_SEQ_CST);
}

/* ---- host functions (module "edgerm") ----------------------------------------------------- */

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

/* A bad pointer traps the task (proto/wasm_abi.md): the call returns, WAMR then unwinds. */
static int32_t trap_if_bad(wasm_exec_env_t env, int32_t rc)
{
	if (rc == EDGERM_ABI_TRAP) {
		wasm_runtime_set_exception(wasm_runtime_get_module_inst(env),
					   "out of bounds memory access (pointer given to the host)");
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
	(void)env;
	return edgerm_port_now_ms();
}

static void n_sleep_ms(wasm_exec_env_t env, uint32_t ms)
{
	struct slot *s = slot_of(env);

	if (!get(&s->killed)) {
		edgerm_wamr_os_sleep(s->os, ms); /* a kill wakes it */
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
						       sensor_read, host.port));
}

static int32_t n_set_actuator(wasm_exec_env_t env, uint32_t name, uint32_t name_len,
			      double value)
{
	struct slot *s = slot_of(env);
	uint64_t size;
	uint8_t *mem = memory(env, &size);

	int32_t rc = edgerm_abi_actuator_check(&s->abi, mem, size, name, name_len);

	if (rc == 0) {
		rc = edgerm_port_actuator_set(host.port, (const char *)mem + name, name_len, value);
	}
	return trap_if_bad(env, rc);
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
	if (len > PUBLISH_MAX) {
		return EDGERM_ABI_E_TOOBIG;
	}
	/* Never wait for the agent lock (see the file comment): busy means "try again". */
	if (get(&s->killed) || !host.trylock()) {
		return EDGERM_ABI_E_AGAIN;
	}
	rc = edgerm_agent_publish(host.agent, s->task, mem + ptr, len, edgerm_port_now_ms());
	host.unlock();
	host.wake();
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

/* WAMR signatures: i = i32, I = i64, F = f64, (args)result. Pointers are plain i32 offsets
 * here (not `*`): the ABI helpers check them against the current memory size themselves. */
static NativeSymbol natives[] = {
	{"log", (void *)n_log, "(ii)", NULL},
	{"now_ms", (void *)n_now_ms, "()I", NULL},
	{"sleep_ms", (void *)n_sleep_ms, "(i)", NULL},
	{"read_sensor", (void *)n_read_sensor, "(iii)i", NULL},
	{"set_actuator", (void *)n_set_actuator, "(iiF)i", NULL},
	{"publish", (void *)n_publish, "(ii)i", NULL},
	{"arg_count", (void *)n_arg_count, "()i", NULL},
	{"arg_get", (void *)n_arg_get, "(iii)i", NULL},
	{"env_get", (void *)n_env_get, "(iiii)i", NULL},
};

/* ---- the task thread ------------------------------------------------------------------------ */

static void set_msg(struct slot *s, const char *text)
{
	snprintf(s->msg, sizeof(s->msg), "%s", text);
}

/* Pages of the default memory now (0 without one). */
static uint64_t cur_pages(wasm_module_inst_t inst)
{
	wasm_memory_inst_t m = wasm_runtime_get_default_memory(inst);

	return m ? wasm_memory_get_cur_page_count(m) : 0;
}

static void record_result(struct slot *s, bool ok, const uint32_t *argv)
{
	if (!ok) {
		const char *exc = wasm_runtime_get_exception(s->inst);

		s->exit_state = EDGERM_FAILED;
		s->exit_reason = EDGERM_TRAPPED;
		/* WAMR prefixes "Exception: "; "trap: " as the other executors say it. */
		if (exc && strncmp(exc, "Exception: ", 11) == 0) {
			exc += 11;
		}
		snprintf(s->msg, sizeof(s->msg), "trap: %s", exc ? exc : "?");
		return;
	}
	int32_t code = wasm_func_get_result_count(s->entry, s->inst) ? (int32_t)argv[0] : 0;

	s->exit_code = code;
	s->exit_state = code == 0 ? EDGERM_FINISHED : EDGERM_FAILED;
	s->exit_reason = code == 0 ? 0 : EDGERM_EXITED_NONZERO;
	if (code != 0 && s->capped && cur_pages(s->inst) >= s->cap_pages) {
		s->exit_reason = EDGERM_MEMORY_LIMIT; /* memory.grow was refused at mem_mb */
	}
}

static void release_code(struct slot *s)
{
	if (s->code) {
		wasm_runtime_free(s->code);
		s->code = NULL;
	}
}

static void task_main(void *arg)
{
	struct slot *s = arg;
	uint32_t argv[2] = {0, 0};
	bool thread_env = wasm_runtime_init_thread_env();

	/* The exec env belongs to this thread (WAMR records its native stack bounds). */
	edgerm_wamr_os_lock(s->os);
	s->env = thread_env ? wasm_runtime_create_exec_env(s->inst, CONFIG_EDGERM_WASM_STACK_SIZE)
			    : NULL;
	edgerm_wamr_os_unlock(s->os);
	if (!s->env) {
		s->exit_state = EDGERM_FAILED;
		s->exit_reason = EDGERM_EXECUTOR_ERROR;
		set_msg(s, thread_env ? "WAMR exec env: out of pool memory" : "WAMR thread env");
	} else if (!get(&s->killed)) {
		record_result(s, wasm_runtime_call_wasm(s->env, s->entry, 0, argv), argv);
	}
	edgerm_wamr_os_lock(s->os);
	if (s->env) {
		wasm_runtime_destroy_exec_env(s->env);
	}
	wasm_runtime_deinstantiate(s->inst);
	wasm_runtime_unload(s->module);
	release_code(s);
	s->env = NULL;
	s->inst = NULL;
	s->module = NULL;
	edgerm_wamr_os_unlock(s->os);
	if (thread_env) {
		wasm_runtime_destroy_thread_env();
	}
	put(&s->state, SLOT_DONE);
	host.wake();
}

/* ---- start, kill, poll -------------------------------------------------------------------- */

static int fail(char *msg, size_t cap, int rc, const char *what, const char *detail)
{
	snprintf(msg, cap, "%s%s%s", what, detail && detail[0] ? ": " : "", detail ? detail : "");
	return rc;
}

/* The module's exported memory "memory": its initial and maximum pages. 0 when it has none. */
static int exported_memory(wasm_module_t module, uint32_t *init, uint32_t *max)
{
	int32_t n = wasm_runtime_get_export_count(module);

	for (int32_t k = 0; k < n; k++) {
		wasm_export_t e;

		wasm_runtime_get_export_type(module, k, &e);
		if (e.kind == WASM_IMPORT_EXPORT_KIND_MEMORY && strcmp(e.name, "memory") == 0) {
			*init = wasm_memory_type_get_init_page_count(e.u.memory_type);
			*max = wasm_memory_type_get_max_page_count(e.u.memory_type);
			return 1;
		}
	}
	return 0;
}

/* Everything up to a ready instance; on failure the slot holds no WAMR object. */
static int prepare(struct slot *s, const edgerm_task_start_t *start, char *msg, size_t cap)
{
	char err[128] = "";
	uint32_t init = 0, max = 0;
	int rc;

	/* WAMR's loader rewrites the code in place (the classic interpreter then runs it from
	 * that buffer, until unload): each task gets its own copy from the pool, so the core's
	 * cached module stays pristine for the next launch and for tasks running it now. */
	s->code = wasm_runtime_malloc((uint32_t)start->module_len);
	if (!s->code) {
		return fail(msg, cap, EDGERM_PORT_E_RESOURCES, "module copy: WAMR pool full", NULL);
	}
	memcpy(s->code, start->module, start->module_len);
	s->module = wasm_runtime_load(s->code, (uint32_t)start->module_len, err, sizeof(err));
	if (!s->module) {
		release_code(s);
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "bad module", err);
	}
	/* An import the host does not provide fails the launch and names it (WAMR itself would
	 * only trap when it is called). */
	int32_t n = wasm_runtime_get_import_count(s->module);

	for (int32_t k = 0; k < n; k++) {
		wasm_import_t imp;

		wasm_runtime_get_import_type(s->module, k, &imp);
		if (imp.kind != WASM_IMPORT_EXPORT_KIND_FUNC || !imp.linked) {
			snprintf(err, sizeof(err), "%s.%s (this agent implements EdgeRM WASM ABI v2)",
				 imp.module_name, imp.name);
			rc = fail(msg, cap, EDGERM_PORT_E_LAUNCH, "missing import", err);
			goto unload;
		}
	}
	if (!exported_memory(s->module, &init, &max)) {
		rc = fail(msg, cap, EDGERM_PORT_E_LAUNCH,
		     "the module must define and export its memory as 'memory'", NULL);
		goto unload;
	}
	/* mem_mb bounds linear memory: 64 KiB pages, at least one. A bigger initial memory is
	 * refused before anything runs. */
	s->cap_pages = s->abi.mem_mb > 0 ? (uint32_t)(s->abi.mem_mb * 1048576.0) / PAGE_BYTES : 1;
	s->cap_pages = s->cap_pages ? s->cap_pages : 1;
	s->capped = max > s->cap_pages;
	if (init > s->cap_pages) {
		snprintf(err, sizeof(err), "initial memory %lu KiB exceeds the task's %lu KiB",
			 (unsigned long)init * 64, (unsigned long)s->cap_pages * 64);
		rc = fail(msg, cap, EDGERM_PORT_E_MEMORY, "memory limit", err);
		goto unload;
	}
	InstantiationArgs args;

	memset(&args, 0, sizeof(args));
	args.default_stack_size = CONFIG_EDGERM_WASM_STACK_SIZE;
	args.host_managed_heap_size = CONFIG_EDGERM_WASM_HEAP_SIZE;
	args.max_memory_pages = max && max < s->cap_pages ? max : s->cap_pages;
	s->inst = wasm_runtime_instantiate_ex(s->module, &args, err, sizeof(err));
	if (!s->inst) {
		rc = fail(msg, cap, EDGERM_PORT_E_RESOURCES, "instantiate", err);
		goto unload;
	}
	/* WAMR folds the memory of a module that never grows it into one page of the whole
	 * initial size: count bytes, not pages. */
	wasm_memory_inst_t m = wasm_runtime_get_default_memory(s->inst);
	uint64_t bytes = m ? wasm_memory_get_cur_page_count(m) *
				     (uint64_t)wasm_memory_get_bytes_per_page(m)
			   : 0;

	if (bytes > (uint64_t)s->cap_pages * PAGE_BYTES) {
		snprintf(err, sizeof(err), "initial memory %lu KiB exceeds the task's %lu KiB",
			 (unsigned long)(bytes / 1024), (unsigned long)s->cap_pages * 64);
		wasm_runtime_deinstantiate(s->inst);
		s->inst = NULL;
		rc = fail(msg, cap, EDGERM_PORT_E_MEMORY, "memory limit", err);
		goto unload;
	}
	char name[64] = "";
	static const char *const defaults[] = {"run", "_start", "main"};

	s->entry = NULL;
	if (s->abi.entry.len > 0 && s->abi.entry.len < sizeof(name)) {
		memcpy(name, edgerm_abi_str(&s->abi, s->abi.entry), s->abi.entry.len);
		name[s->abi.entry.len] = '\0';
		s->entry = wasm_runtime_lookup_function(s->inst, name);
	}
	for (int k = 0; k < 3 && !s->entry && s->abi.entry.len == 0; k++) {
		s->entry = wasm_runtime_lookup_function(s->inst, defaults[k]);
	}
	if (!s->entry || wasm_func_get_param_count(s->entry, s->inst) != 0 ||
	    wasm_func_get_result_count(s->entry, s->inst) > 1) {
		wasm_runtime_deinstantiate(s->inst);
		s->inst = NULL;
		rc = fail(msg, cap, EDGERM_PORT_E_LAUNCH, "no entry function () -> i32 or () -> ()",
		     name[0] ? name : "run/_start/main");
		goto unload;
	}
	wasm_runtime_set_custom_data(s->inst, s);
	return 0;

unload:
	wasm_runtime_unload(s->module);
	s->module = NULL;
	release_code(s);
	return rc;
}

int edgerm_wamr_start(const edgerm_task_start_t *start, char *msg, size_t cap)
{
	struct slot *s = NULL;
	int r;

	msg[0] = '\0';
	for (int i = 0; i < NSLOTS && !s; i++) {
		if (get(&slots[i].state) == SLOT_FREE) {
			s = &slots[i];
		}
	}
	if (!s) {
		return fail(msg, cap, EDGERM_PORT_E_RESOURCES, "no free task slot", NULL);
	}
	if (edgerm_abi_task_init(&s->abi, start->spec) < 0) {
		return fail(msg, cap, EDGERM_PORT_E_LAUNCH, "args/env too large", NULL);
	}
	r = prepare(s, start, msg, cap);
	if (r < 0) {
		return r;
	}
	s->task = start->task;
	s->tail_len = 0;
	s->msg[0] = '\0';
	s->exit_code = 0;
	s->exit_state = EDGERM_FAILED;
	s->exit_reason = EDGERM_EXECUTOR_ERROR;
	s->deadline_ms = s->abi.timeout_s
				 ? edgerm_port_now_ms() + (uint64_t)s->abi.timeout_s * 1000u
				 : EDGERM_NO_DEADLINE;
	put(&s->killed, 0);
	edgerm_wamr_os_wake_reset(s->os);
	put(&s->state, SLOT_RUNNING);
	if (edgerm_wamr_os_spawn(s->os, task_main, s) < 0) {
		put(&s->state, SLOT_FREE);
		wasm_runtime_deinstantiate(s->inst);
		wasm_runtime_unload(s->module);
		release_code(s);
		s->inst = NULL;
		s->module = NULL;
		return fail(msg, cap, EDGERM_PORT_E_RESOURCES, "no task thread", NULL);
	}
	return 0;
}

/* Stop a slot's thread; it runs no more when this returns 0, or it was abandoned (< 0). */
static int stop(struct slot *s)
{
	uint32_t waited = 0;

	put(&s->killed, 1);
	for (;;) {
		edgerm_wamr_os_lock(s->os);
		if (s->inst) {
			wasm_runtime_terminate(s->inst);
		}
		edgerm_wamr_os_unlock(s->os);
		edgerm_wamr_os_wake(s->os);
		if (edgerm_wamr_os_join(s->os, 10) == 0) {
			put(&s->state, SLOT_FREE);
			return 0;
		}
		waited += 10;
		if (waited >= CONFIG_EDGERM_KILL_TIMEOUT_MS) {
			break;
		}
	}
	/* It did not reach a branch or return from a host call in time. Its WAMR objects may
	 * stay in the pool: the slot is retired until reboot. */
	edgerm_wamr_os_abandon(s->os);
	put(&s->state, SLOT_DEAD);
	return -1;
}

int edgerm_wamr_kill(uint32_t task)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];
		int st = get(&s->state);

		if ((st == SLOT_RUNNING || st == SLOT_DONE) && s->task == task) {
			return stop(s);
		}
	}
	return -1;
}

void edgerm_wamr_poll(edgerm_agent_t *a, uint64_t now)
{
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];
		int st = get(&s->state);

		if (st == SLOT_DONE) {
			(void)edgerm_wamr_os_join(s->os, 0xffffffffu); /* it has done its work */
			put(&s->state, SLOT_FREE);
			if (!get(&s->killed)) {
				const char *m = s->msg[0] ? s->msg : s->tail;
				size_t len = s->msg[0] ? strlen(s->msg) : s->tail_len;

				/* The tail ends with the last line's newline: not part of the text. */
				while (!s->msg[0] && len && m[len - 1] == '\n') {
					len--;
				}
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
		if (get(&slots[i].state) == SLOT_RUNNING && slots[i].deadline_ms < d) {
			d = slots[i].deadline_ms;
		}
	}
	return d;
}

int edgerm_wamr_busy_slots(void)
{
	int n = 0;

	for (int i = 0; i < NSLOTS; i++) {
		n += get(&slots[i].state) != SLOT_FREE;
	}
	return n;
}

size_t edgerm_wamr_slot_static_bytes(void)
{
	return sizeof(struct slot);
}

int edgerm_wamr_init(const edgerm_wamr_host_t *h)
{
	RuntimeInitArgs init;

	host = *h;
	memset(&init, 0, sizeof(init));
	init.mem_alloc_type = Alloc_With_Pool;
	init.mem_alloc_option.pool.heap_buf = wamr_pool;
	init.mem_alloc_option.pool.heap_size = sizeof(wamr_pool);
	init.native_module_name = "edgerm";
	init.native_symbols = natives;
	init.n_native_symbols = sizeof(natives) / sizeof(natives[0]);
	init.max_thread_num = NSLOTS;
	if (!wasm_runtime_full_init(&init)) {
		return -1;
	}
	/* Errors only: a task's trap is reported in its status, not on the console. */
	wasm_runtime_set_log_level(WASM_LOG_LEVEL_ERROR);
	for (int i = 0; i < NSLOTS; i++) {
		slots[i].os = edgerm_wamr_os_slot(i);
		if (edgerm_wamr_os_init(slots[i].os) < 0) {
			return -1;
		}
		put(&slots[i].state, SLOT_FREE);
	}
	return 0;
}
