/*
 * edgerm-wasm-run: WASM tasks through the POSIX port's executor (wasm3 or WAMR, the one this
 * binary was built with) and its simulated devices, without a master. The ABI conformance suite
 * (tests/firmware/test_wasm_conformance.py) runs the same .wasm files through it and through
 * the Linux agent's executor and compares what they report.
 *
 *   edgerm-wasm-run [--sensor NAME=VALUE]... [--actuator NAME[=MIN:MAX]]... \
 *       --task MODULE.wasm [--entry E] [--arg A]... [--env K=V]... [--device NAME]... \
 *       [--mem-mb X] [--timeout-s N] [--kill-after-ms N]  [--task ...]...
 *
 * Every --task starts at once (concurrent slots); tasks of the same module share one buffer, as
 * in the agent's module cache. Output, JSON lines on stdout, in the order
 * things happen: {"event": "publish", "task": i, "data": HEX}, {"event": "actuator", ...} (the
 * port's record), {"event": "exit", "task": i, "state": S, "reason": R, "exit_code": C,
 * "message": M} with the proto/edgerm.proto enum values (a start refused by the executor is
 * ERROR with the reason the agent core would give). Exit status 0 once every task ended, 3 on
 * the overall 60 s limit, 2 on bad usage.
 *
 * The agent core is not linked: this file stands in for edgerm_agent_publish and
 * edgerm_agent_task_exited, the two calls an executor makes into it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgerm/abi.h"
#include "posix.h"

#define MAX_RUN_TASKS 8
#define RUN_LIMIT_MS 60000

typedef struct {
	edgerm_task_spec_t spec;
	uint8_t *module;
	size_t module_len;
	const char *path;
	uint64_t kill_at; /* 0: never */
	int ended;
	int shared; /* its module buffer is an earlier task's */
} run_task_t;

static run_task_t tasks[MAX_RUN_TASKS];
static int ntasks;
static edgerm_agent_t agent; /* only its address: the core is not linked */
static posix_port_t port = {
	.sock = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.actuator_lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = {-1, -1},
};

static void json_string(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			printf("\\%c", c);
		} else if (c < 0x20 || c >= 0x7f) {
			printf("\\u%04x", c); /* bytes as code points: enough for tests */
		} else {
			putchar(c);
		}
	}
	putchar('"');
}

static run_task_t *task_of(uint32_t id)
{
	return id >= 1 && id <= (uint32_t)ntasks ? &tasks[id - 1] : NULL;
}

/* ---- the two agent calls an executor makes ----------------------------------------------- */

int edgerm_agent_publish(edgerm_agent_t *a, uint32_t task, const uint8_t *data, size_t len,
			 uint64_t now_ms)
{
	(void)a, (void)now_ms;
	printf("{\"event\": \"publish\", \"task\": %lu, \"data\": \"", (unsigned long)task);
	for (size_t i = 0; i < len; i++) {
		printf("%02x", data[i]);
	}
	printf("\"}\n");
	fflush(stdout);
	return 0;
}

static void print_exit(uint32_t task, uint8_t state, uint8_t reason, int32_t code,
		       const char *msg, size_t len)
{
	run_task_t *t = task_of(task);

	if (!t || t->ended) {
		return;
	}
	t->ended = 1;
	printf("{\"event\": \"exit\", \"task\": %lu, \"state\": %u, \"reason\": %u, "
	       "\"exit_code\": %ld, \"message\": ",
	       (unsigned long)task, state, reason, (long)code);
	json_string(msg, len);
	printf("}\n");
	fflush(stdout);
}

void edgerm_agent_task_exited(edgerm_agent_t *a, uint32_t task, uint8_t state, uint8_t reason,
			      int32_t exit_code, const char *msg, size_t msg_len, uint64_t now_ms)
{
	(void)a, (void)now_ms;
	print_exit(task, state, reason, exit_code, msg, msg_len);
}

/* ---- command line ------------------------------------------------------------------------ */

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f) {
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static edgerm_slice_t slice(const char *s, size_t n)
{
	edgerm_slice_t r = {(const uint8_t *)s, n};

	return r;
}

static int usage(const char *why)
{
	fprintf(stderr, "edgerm-wasm-run: %s\n"
			"usage: edgerm-wasm-run [--sensor NAME=VALUE]... [--actuator NAME[=MIN:MAX]]... "
			"--task MODULE [--entry E] [--arg A]... [--env K=V]... [--device NAME]... "
			"[--mem-mb X] [--timeout-s N] [--kill-after-ms N] [--task ...]\n",
		why);
	return 2;
}

static int parse(int argc, char **argv, uint64_t now)
{
	run_task_t *t = NULL;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v) {
			return usage("an option without its value");
		}
		i++;
		if (strcmp(o, "--sensor") == 0 || strcmp(o, "--actuator") == 0) {
			if ((o[2] == 's' ? posix_add_sensor : posix_add_actuator)(&port, v) < 0) {
				return usage("bad or too many --sensor/--actuator");
			}
			continue;
		}
		if (strcmp(o, "--task") == 0) {
			if (ntasks == MAX_RUN_TASKS) {
				return usage("too many --task");
			}
			t = &tasks[ntasks++];
			t->spec.which = 4;
			t->spec.has_resources = true;
			t->path = v;
			/* One buffer per module, shared by its tasks, as the agent's module cache does
			 * (an executor must not change it). */
			for (int k = 0; k < ntasks - 1; k++) {
				if (strcmp(tasks[k].path, v) == 0) {
					t->module = tasks[k].module;
					t->module_len = tasks[k].module_len;
					t->shared = 1;
				}
			}
			if (!t->module) {
				t->module = read_file(v, &t->module_len);
			}
			if (!t->module) {
				fprintf(stderr, "cannot read %s: %s\n", v, strerror(errno));
				return 2;
			}
			continue;
		}
		if (!t) {
			return usage("task options come after --task");
		}
		edgerm_wasm_task_t *w = &t->spec.kind.wasm;
		edgerm_resources_t *r = &t->spec.resources;

		if (strcmp(o, "--entry") == 0) {
			w->entry = slice(v, strlen(v));
		} else if (strcmp(o, "--arg") == 0 && w->args_count < EDGERM_MAX_REP) {
			w->args[w->args_count++] = slice(v, strlen(v));
		} else if (strcmp(o, "--env") == 0 && w->env_count < EDGERM_MAX_REP && strchr(v, '=')) {
			const char *eq = strchr(v, '=');

			w->env[w->env_count].name = slice(v, (size_t)(eq - v));
			w->env[w->env_count++].value = slice(eq + 1, strlen(eq + 1));
		} else if (strcmp(o, "--device") == 0 && r->devices_count < EDGERM_MAX_REP) {
			r->devices[r->devices_count].name = slice(v, strlen(v));
			r->devices[r->devices_count++].shares = 1;
		} else if (strcmp(o, "--mem-mb") == 0) {
			r->mem_mb = strtod(v, NULL);
		} else if (strcmp(o, "--timeout-s") == 0) {
			w->timeout_s = (uint32_t)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--kill-after-ms") == 0) {
			t->kill_at = now + strtoull(v, NULL, 10);
		} else {
			return usage(o);
		}
	}
	return ntasks ? 0 : usage("no --task");
}

int main(int argc, char **argv)
{
	uint64_t start = edgerm_port_now_ms();
	int r = parse(argc, argv, start);

	if (r) {
		return r;
	}
	port.agent = &agent;
	if (posix_exec_init(&port) < 0) {
		return 1;
	}
	pthread_mutex_lock(&port.lock);
	for (int i = 0; i < ntasks; i++) {
		edgerm_task_start_t s = {(uint32_t)i + 1, tasks[i].module, tasks[i].module_len,
					 &tasks[i].spec};
		char msg[200] = "";

		r = posix_exec_start(&port, &s, msg, sizeof(msg));
		if (r < 0) { /* as the agent core reports it */
			uint8_t reason = r == EDGERM_PORT_E_RESOURCES ? EDGERM_RESOURCES_UNAVAILABLE
					 : r == EDGERM_PORT_E_MEMORY  ? EDGERM_MEMORY_LIMIT
								      : EDGERM_LAUNCH_FAILED;

			print_exit(s.task, EDGERM_ERROR, reason, 0, msg, strlen(msg));
		}
	}
	for (;;) {
		uint64_t now = edgerm_port_now_ms();
		uint64_t next = posix_exec_check_timeouts(&port, now);
		int open = 0;

		for (int i = 0; i < ntasks; i++) {
			run_task_t *t = &tasks[i];

			if (!t->ended && t->kill_at && now >= t->kill_at) {
				/* As the core does: stop it, then report KILLED itself. */
				(void)posix_exec_kill(&port, (uint32_t)i + 1);
				print_exit((uint32_t)i + 1, EDGERM_KILLED, EDGERM_KILL_REQUESTED, 0, "", 0);
			}
			if (!t->ended) {
				open++;
				if (t->kill_at && t->kill_at < next) {
					next = t->kill_at;
				}
			}
		}
		if (!open) {
			break;
		}
		if (now - start > RUN_LIMIT_MS) {
			fprintf(stderr, "edgerm-wasm-run: tasks still running after %d ms\n",
				RUN_LIMIT_MS);
			return 3;
		}
		struct pollfd fds[CONFIG_EDGERM_MAX_TASKS];
		size_t n = posix_exec_pollfds(&port, fds, CONFIG_EDGERM_MAX_TASKS);
		int timeout = next <= now ? 0 : next - now > 100 ? 100 : (int)(next - now);

		pthread_mutex_unlock(&port.lock);
		(void)poll(fds, n, timeout);
		pthread_mutex_lock(&port.lock);
		posix_exec_after_poll(&port, fds, n, edgerm_port_now_ms());
	}
	pthread_mutex_unlock(&port.lock);
	for (int i = 0; i < ntasks; i++) {
		if (!tasks[i].shared) {
			free(tasks[i].module);
		}
	}
	return 0;
}
