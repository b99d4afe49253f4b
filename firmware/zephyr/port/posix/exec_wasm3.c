/*
 * WASM executor of the POSIX port: wasm3 (from the pywasm3 sdist), one child process per task.
 *
 * The parent parses, loads, links and compiles the module, so a bad module or a missing import
 * is an ERROR LAUNCH_FAILED before anything runs; then it forks. The child inherits the ready
 * runtime, calls the entry point and reports over a SOCK_SEQPACKET socketpair:
 *   'L' + text     a log line (the parent keeps the last POSIX_LOG_TAIL bytes)
 *   'P' + data     a publish; the parent answers with the int32 return code
 *   'A' + f64 + name   set an actuator the task claimed; the parent sets it (the port records
 *                  it) and answers with the int32 return code
 *   'X' + state, reason, exit_code (i32), message   the end
 * A kill or a timeout is SIGKILL on the child: a runaway loop cannot outlive it. A child that
 * dies without its 'X' (a crash of the runtime) is FAILED EXECUTOR_ERROR.
 *
 * Host functions check every task pointer with the core's edgerm_abi_* helpers; a bad one traps.
 * Results follow proto/wasm_abi.md as every executor does: an initial memory over mem_mb is
 * ERROR MEMORY_LIMIT, a non-zero exit with memory at a mem_mb cap below the module's own
 * maximum is FAILED MEMORY_LIMIT (memory.grow was refused).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "edgerm/abi.h"
#include "m3_env.h"
#include "posix.h"
#include "wasm3.h"

#define WASM_STACK_BYTES (64 * 1024)

/* ---- the child's side: host functions ---------------------------------------------------- */

const char posix_exec_name[] = "wasm3";

static int child_fd = -1;
static edgerm_abi_task_t child_task;
static posix_port_t *child_port;
static uint32_t child_cap_pages; /* mem_mb in pages, when below the module's maximum; else 0 */

static int child_sensor(void *ctx, const char *name, size_t len, double *v)
{
	(void)ctx;
	return edgerm_port_sensor_read(child_port, name, len, v);
}

#define ABI_TRAP_IF_BAD(rc)                                                                        \
	do {                                                                                       \
		if ((rc) == EDGERM_ABI_TRAP) {                                                     \
			m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);                              \
		}                                                                                  \
	} while (0)

static m3ApiRawFunction(h_log)
{
	m3ApiGetArg(uint32_t, ptr);
	m3ApiGetArg(uint32_t, len);
	uint8_t msg[1 + POSIX_LOG_TAIL];

	if (!edgerm_abi_in_bounds(m3_GetMemorySize(runtime), ptr, len)) {
		m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);
	}
	if (len > POSIX_LOG_TAIL) { /* only the tail is ever kept */
		ptr += len - POSIX_LOG_TAIL;
		len = POSIX_LOG_TAIL;
	}
	msg[0] = 'L';
	memcpy(msg + 1, (uint8_t *)_mem + ptr, len);
	(void)send(child_fd, msg, 1 + len, 0);
	m3ApiSuccess();
}

static m3ApiRawFunction(h_now_ms)
{
	m3ApiReturnType(uint64_t);
	m3ApiReturn(edgerm_port_now_ms());
}

static m3ApiRawFunction(h_sleep_ms)
{
	m3ApiGetArg(uint32_t, ms);
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
	m3ApiSuccess();
}

static m3ApiRawFunction(h_read_sensor)
{
	m3ApiReturnType(int32_t);
	m3ApiGetArg(uint32_t, name);
	m3ApiGetArg(uint32_t, name_len);
	m3ApiGetArg(uint32_t, out);
	int32_t rc = edgerm_abi_read_sensor(&child_task, _mem, m3_GetMemorySize(runtime), name,
					    name_len, out, child_sensor, NULL);

	ABI_TRAP_IF_BAD(rc);
	m3ApiReturn(rc);
}

/* The set goes to the parent, which owns the devices (and their record). */
static int child_actuator(void *ctx, const char *name, size_t len, double v)
{
	uint8_t msg[1 + 8 + 64];
	int32_t rc = EDGERM_ABI_E_IO;

	(void)ctx;
	if (len > 64) {
		return EDGERM_ABI_E_NOTFOUND; /* no actuator has so long a name */
	}
	msg[0] = 'A';
	memcpy(msg + 1, &v, 8);
	memcpy(msg + 9, name, len);
	if (send(child_fd, msg, 9 + len, 0) < 0 || recv(child_fd, &rc, sizeof(rc), 0) != sizeof(rc)) {
		rc = EDGERM_ABI_E_IO;
	}
	return rc;
}

static m3ApiRawFunction(h_set_actuator)
{
	m3ApiReturnType(int32_t);
	m3ApiGetArg(uint32_t, name);
	m3ApiGetArg(uint32_t, name_len);
	m3ApiGetArg(double, value);
	int32_t rc = edgerm_abi_actuator_check(&child_task, _mem, m3_GetMemorySize(runtime), name,
					       name_len);

	ABI_TRAP_IF_BAD(rc);
	if (rc == 0) {
		rc = child_actuator(NULL, (const char *)_mem + name, name_len, value);
	}
	m3ApiReturn(rc);
}

static m3ApiRawFunction(h_publish)
{
	m3ApiReturnType(int32_t);
	m3ApiGetArg(uint32_t, ptr);
	m3ApiGetArg(uint32_t, len);
	static uint8_t msg[1 + 1024];
	int32_t rc = EDGERM_ABI_E_IO;

	if (!edgerm_abi_in_bounds(m3_GetMemorySize(runtime), ptr, len)) {
		m3ApiTrap(m3Err_trapOutOfBoundsMemoryAccess);
	}
	if (len > 1024) {
		m3ApiReturn(EDGERM_ABI_E_TOOBIG);
	}
	msg[0] = 'P';
	memcpy(msg + 1, (uint8_t *)_mem + ptr, len);
	if (send(child_fd, msg, 1 + len, 0) < 0 || recv(child_fd, &rc, sizeof(rc), 0) != sizeof(rc)) {
		rc = EDGERM_ABI_E_IO;
	}
	m3ApiReturn(rc);
}

static m3ApiRawFunction(h_arg_count)
{
	m3ApiReturnType(int32_t);
	m3ApiReturn(edgerm_abi_arg_count(&child_task));
}

static m3ApiRawFunction(h_arg_get)
{
	m3ApiReturnType(int32_t);
	m3ApiGetArg(uint32_t, i);
	m3ApiGetArg(uint32_t, buf);
	m3ApiGetArg(uint32_t, cap);
	int32_t rc = edgerm_abi_arg_get(&child_task, _mem, m3_GetMemorySize(runtime), i, buf, cap);

	ABI_TRAP_IF_BAD(rc);
	m3ApiReturn(rc);
}

static m3ApiRawFunction(h_env_get)
{
	m3ApiReturnType(int32_t);
	m3ApiGetArg(uint32_t, name);
	m3ApiGetArg(uint32_t, name_len);
	m3ApiGetArg(uint32_t, buf);
	m3ApiGetArg(uint32_t, cap);
	int32_t rc = edgerm_abi_env_get(&child_task, _mem, m3_GetMemorySize(runtime), name,
					name_len, buf, cap);

	ABI_TRAP_IF_BAD(rc);
	m3ApiReturn(rc);
}

static const struct {
	const char *name, *sig;
	M3RawCall fn;
} host_functions[] = {
	{"log", "v(ii)", h_log},
	{"now_ms", "I()", h_now_ms},
	{"sleep_ms", "v(i)", h_sleep_ms},
	{"read_sensor", "i(iii)", h_read_sensor},
	{"set_actuator", "i(iiF)", h_set_actuator},
	{"publish", "i(ii)", h_publish},
	{"arg_count", "i()", h_arg_count},
	{"arg_get", "i(iii)", h_arg_get},
	{"env_get", "i(iiii)", h_env_get},
};

/* ---- the child: run, report, exit -------------------------------------------------------- */

static void child_report(uint8_t state, uint8_t reason, int32_t code, const char *msg)
{
	uint8_t buf[8 + POSIX_LOG_TAIL];
	size_t n = msg ? strlen(msg) : 0;

	if (n > POSIX_LOG_TAIL) {
		msg += n - POSIX_LOG_TAIL;
		n = POSIX_LOG_TAIL;
	}
	buf[0] = 'X', buf[1] = state, buf[2] = reason, buf[3] = 0;
	memcpy(buf + 4, &code, 4);
	if (n) {
		memcpy(buf + 8, msg, n);
	}
	(void)send(child_fd, buf, 8 + n, 0);
}

static void child_run(IM3Runtime rt, IM3Function entry)
{
	M3Result r = m3_CallV(entry);

	if (r != m3Err_none) {
		char text[160];
		M3ErrorInfo info;

		m3_GetErrorInfo(rt, &info);
		snprintf(text, sizeof(text), "trap: %s%s%s", r, info.message ? ": " : "",
			 info.message ? info.message : "");
		child_report(EDGERM_FAILED, EDGERM_TRAPPED, 0, text);
		return;
	}
	int32_t code = 0;

	if (m3_GetRetCount(entry) == 1) {
		(void)m3_GetResultsV(entry, &code);
	}
	if (code == 0) {
		child_report(EDGERM_FINISHED, 0, 0, NULL);
	} else if (child_cap_pages && rt->memory.numPages >= child_cap_pages) {
		child_report(EDGERM_FAILED, EDGERM_MEMORY_LIMIT, code, NULL);
	} else {
		child_report(EDGERM_FAILED, EDGERM_EXITED_NONZERO, code, NULL);
	}
}

/* ---- the parent ------------------------------------------------------------------------- */

static posix_task_t *slot_of(posix_port_t *p, uint32_t task)
{
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		if (p->tasks[i].pid != 0 && p->tasks[i].task == task) {
			return &p->tasks[i];
		}
	}
	return NULL;
}

/* Load, link and compile; the entry function on success, NULL with msg and *rc set on
 * failure. */
static IM3Function prepare(IM3Environment env, IM3Runtime rt, const edgerm_task_start_t *s,
			   const edgerm_abi_task_t *t, char *msg, size_t cap, int *rc)
{
	IM3Module mod = NULL;
	M3Result r = m3_ParseModule(env, &mod, s->module, (uint32_t)s->module_len);

	*rc = EDGERM_PORT_E_LAUNCH;
	if (r) {
		snprintf(msg, cap, "bad module: %s", r);
		return NULL;
	}
	/* mem_mb bounds linear memory (64 KiB pages, at least one, as WAMR and the Linux agent
	 * count): refuse a bigger initial size, make memory.grow fail past it. */
	uint32_t limit_pages = t->mem_mb > 0 ? (uint32_t)(t->mem_mb * 1048576.0) / 65536u : 1;
	uint32_t declared_max = mod->memoryInfo.maxPages ? mod->memoryInfo.maxPages : 65536;

	limit_pages = limit_pages ? limit_pages : 1;
	child_cap_pages = declared_max > limit_pages ? limit_pages : 0;
	if (mod->memoryInfo.initPages > limit_pages) {
		snprintf(msg, cap, "memory limit: initial memory %u KiB exceeds the task's %u KiB",
			 mod->memoryInfo.initPages * 64, limit_pages * 64);
		m3_FreeModule(mod);
		*rc = EDGERM_PORT_E_MEMORY;
		return NULL;
	}
	r = m3_LoadModule(rt, mod);
	if (r) {
		snprintf(msg, cap, "load: %s", r);
		m3_FreeModule(mod);
		return NULL;
	}
	if (limit_pages && rt->memory.maxPages > limit_pages) {
		rt->memory.maxPages = limit_pages;
	}
	for (size_t i = 0; i < sizeof(host_functions) / sizeof(host_functions[0]); i++) {
		r = m3_LinkRawFunction(mod, "edgerm", host_functions[i].name, host_functions[i].sig,
				       host_functions[i].fn);
		if (r && r != m3Err_functionLookupFailed) {
			snprintf(msg, cap, "import edgerm.%s: %s", host_functions[i].name, r);
			return NULL;
		}
	}
	/* An import the host does not provide is an instantiation error that names it. */
	for (u32 i = 0; i < mod->numFunctions; i++) {
		IM3Function f = &mod->functions[i];

		if (f->import.moduleUtf8 && !f->compiled) {
			snprintf(msg, cap, "missing import: %s.%s (this agent implements EdgeRM "
				 "WASM ABI v2)", f->import.moduleUtf8,
				 f->import.fieldUtf8 ? f->import.fieldUtf8 : "?");
			return NULL;
		}
	}
	r = m3_CompileModule(mod);
	if (r) {
		snprintf(msg, cap, "compile: %s", r);
		return NULL;
	}
	IM3Function entry = NULL;
	char name[64];

	if (t->entry.len > 0 && t->entry.len < sizeof(name)) {
		memcpy(name, edgerm_abi_str(t, t->entry), t->entry.len);
		name[t->entry.len] = 0;
		r = m3_FindFunction(&entry, rt, name);
	} else {
		static const char *const defaults[] = {"run", "_start", "main"};

		r = m3Err_functionLookupFailed;
		for (size_t i = 0; i < 3 && r; i++) {
			r = m3_FindFunction(&entry, rt, defaults[i]);
		}
	}
	if (r || !entry || m3_GetArgCount(entry) != 0 || m3_GetRetCount(entry) > 1) {
		snprintf(msg, cap, "no entry point () -> i32 or () -> ()");
		return NULL;
	}
	return entry;
}

int posix_exec_start(posix_port_t *p, const edgerm_task_start_t *s, char *msg, size_t cap)
{
	posix_task_t *slot = NULL;
	edgerm_abi_task_t t;
	int fds[2];

	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS && !slot; i++) {
		if (p->tasks[i].pid == 0) {
			slot = &p->tasks[i];
		}
	}
	if (!slot) {
		snprintf(msg, cap, "no free executor slot");
		return EDGERM_PORT_E_RESOURCES;
	}
	if (edgerm_abi_task_init(&t, s->spec) < 0) {
		snprintf(msg, cap, "args/env too large");
		return EDGERM_PORT_E_LAUNCH;
	}
	IM3Environment env = m3_NewEnvironment();
	IM3Runtime rt = env ? m3_NewRuntime(env, WASM_STACK_BYTES, NULL) : NULL;

	if (!rt) {
		snprintf(msg, cap, "out of memory");
		if (env) {
			m3_FreeEnvironment(env);
		}
		return EDGERM_PORT_E_RESOURCES;
	}
	int rc;
	IM3Function entry = prepare(env, rt, s, &t, msg, cap, &rc);

	if (!entry) {
		m3_FreeRuntime(rt);
		m3_FreeEnvironment(env);
		return rc;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) < 0) {
		snprintf(msg, cap, "socketpair: %s", strerror(errno));
		m3_FreeRuntime(rt);
		m3_FreeEnvironment(env);
		return EDGERM_PORT_E_RESOURCES;
	}
	pid_t pid = fork();

	if (pid == 0) {
		/* The child keeps only its end of the pair. */
		close(p->sock);
		for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
			if (p->tasks[i].pid != 0) {
				close(p->tasks[i].fd);
			}
		}
		close(fds[0]);
		child_fd = fds[1];
		child_task = t;
		child_port = p;
		child_run(rt, entry);
		_exit(0);
	}
	close(fds[1]);
	m3_FreeRuntime(rt);
	m3_FreeEnvironment(env);
	if (pid < 0) {
		close(fds[0]);
		snprintf(msg, cap, "fork: %s", strerror(errno));
		return EDGERM_PORT_E_RESOURCES;
	}
	memset(slot, 0, sizeof(*slot));
	slot->pid = pid;
	slot->fd = fds[0];
	slot->task = s->task;
	slot->deadline_ms = t.timeout_s ? edgerm_port_now_ms() + (uint64_t)t.timeout_s * 1000u
					: UINT64_MAX;
	return 0;
}

static void reap(posix_task_t *t)
{
	int status;

	close(t->fd);
	while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR) {
	}
	t->pid = 0;
}

int posix_exec_kill(posix_port_t *p, uint32_t task)
{
	posix_task_t *t = slot_of(p, task);

	if (!t) {
		return -ESRCH;
	}
	kill(t->pid, SIGKILL);
	reap(t);
	return 0;
}

static void tail_append(posix_task_t *t, const uint8_t *d, size_t n)
{
	/* One line per log call, newline-separated; only the last POSIX_LOG_TAIL bytes stay. */
	uint8_t all[2 * POSIX_LOG_TAIL + 1];
	size_t k = t->tail_len;

	memcpy(all, t->tail, k);
	if (k) {
		all[k++] = '\n';
	}
	if (n > POSIX_LOG_TAIL) {
		d += n - POSIX_LOG_TAIL;
		n = POSIX_LOG_TAIL;
	}
	memcpy(all + k, d, n);
	k += n;
	size_t start = k > POSIX_LOG_TAIL ? k - POSIX_LOG_TAIL : 0;

	memcpy(t->tail, all + start, k - start);
	t->tail_len = k - start;
}

static void on_readable(posix_port_t *p, posix_task_t *t, uint64_t now)
{
	uint8_t buf[1 + 1024 + 8];
	ssize_t n = recv(t->fd, buf, sizeof(buf), 0);

	if (n < 0 && errno == EINTR) {
		return;
	}
	if (n > 0 && buf[0] == 'L') {
		tail_append(t, buf + 1, (size_t)n - 1);
		return;
	}
	if (n > 9 && buf[0] == 'A') {
		double v;

		memcpy(&v, buf + 1, 8);
		int32_t rc = edgerm_port_actuator_set(p, (const char *)buf + 9, (size_t)n - 9, v);

		(void)send(t->fd, &rc, sizeof(rc), 0);
		return;
	}
	if (n > 0 && buf[0] == 'P') {
		int32_t rc = edgerm_agent_publish(p->agent, t->task, buf + 1, (size_t)n - 1, now);

		(void)send(t->fd, &rc, sizeof(rc), 0);
		return;
	}
	uint32_t task = t->task;
	char msg[POSIX_LOG_TAIL + 1];

	if (n >= 8 && buf[0] == 'X') {
		int32_t code;
		size_t mlen = (size_t)n - 8;

		memcpy(&code, buf + 4, 4);
		if (mlen == 0) { /* no trap text: the log tail tells what happened */
			memcpy(msg, t->tail, t->tail_len);
			mlen = t->tail_len;
		} else {
			memcpy(msg, buf + 8, mlen);
		}
		reap(t);
		edgerm_agent_task_exited(p->agent, task, buf[1], buf[2], code, msg, mlen, now);
		return;
	}
	/* EOF without a report: the runtime itself died. */
	snprintf(msg, sizeof(msg), "executor process died");
	reap(t);
	edgerm_agent_task_exited(p->agent, task, EDGERM_FAILED, EDGERM_EXECUTOR_ERROR, 0, msg,
				 strlen(msg), now);
}

uint64_t posix_exec_check_timeouts(posix_port_t *p, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		posix_task_t *t = &p->tasks[i];

		if (t->pid == 0) {
			continue;
		}
		if (now >= t->deadline_ms) {
			uint32_t task = t->task;

			kill(t->pid, SIGKILL);
			reap(t);
			edgerm_agent_task_exited(p->agent, task, EDGERM_FAILED, EDGERM_TIMEOUT, 0,
						 "timeout", 7, now);
		} else if (t->deadline_ms < next) {
			next = t->deadline_ms;
		}
	}
	return next;
}

int posix_exec_init(posix_port_t *p)
{
	(void)p;
	return 0;
}

size_t posix_exec_pollfds(posix_port_t *p, struct pollfd *fds, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS && n < cap; i++) {
		if (p->tasks[i].pid != 0) {
			fds[n].fd = p->tasks[i].fd;
			fds[n].events = POLLIN;
			fds[n++].revents = 0;
		}
	}
	return n;
}

void posix_exec_after_poll(posix_port_t *p, const struct pollfd *fds, size_t n, uint64_t now)
{
	for (size_t k = 0; k < n; k++) {
		for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS && fds[k].revents; i++) {
			if (p->tasks[i].pid != 0 && p->tasks[i].fd == fds[k].fd) {
				on_readable(p, &p->tasks[i], now);
				break;
			}
		}
	}
}

int posix_exec_running(posix_port_t *p)
{
	int n = 0;

	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		n += p->tasks[i].pid != 0;
	}
	return n;
}
