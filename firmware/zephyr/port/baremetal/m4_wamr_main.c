/*
 * WAMR on Cortex-M4 in QEMU (mps2-an386, semihosting): the portable executor
 * (port/wamr/wamr_exec.c) on the bare-metal threading layer runs examples/wasm's hello.wasm and
 * sampler.wasm (and trap.wasm, and hello built to let WAMR trim its memory) through the EdgeRM
 * ABI, and checks what they publish, log and end with. main's return value is QEMU's exit code
 * (0: every check passed).
 *
 * This file stands in for the agent core's two executor calls (edgerm_agent_publish,
 * edgerm_agent_task_exited) and for the port (clock, sensor, actuator); the modules are
 * linked in as byte arrays (modules.h, generated at build time).
 */
#include <stdio.h>
#include <string.h>

#include "edgerm/abi.h"
#include "modules.h"
#include "wamr_exec.h"
#include "wasm_export.h"

static edgerm_agent_t agent; /* only its address: the core's state machine is not under test */
static uint64_t clock_ms;
static int failures;
/* WAMR pool bytes free before a task, and the least seen while it ran (at each publish): what
 * one running task takes from the pool (its module copy, instance, stacks, linear memory). */
static uint32_t pool_free_before, pool_free_running;
static bool trimmed;

static uint32_t pool_free(void)
{
	mem_alloc_info_t info;

	return wasm_runtime_get_mem_alloc_info(&info) ? info.total_free_size : 0;
}

static struct {
	uint32_t task;
	uint8_t state, reason;
	int32_t code;
	char msg[80];
	int publishes;
	uint8_t last[16];
	size_t last_len;
} seen;

uint64_t edgerm_port_now_ms(void)
{
	return clock_ms;
}

void edgerm_baremetal_sleep(uint32_t ms)
{
	clock_ms += ms;
}

int edgerm_port_sensor_read(void *ctx, const char *name, size_t len, double *value)
{
	(void)ctx;
	if (len == 4 && memcmp(name, "temp", 4) == 0) {
		if (value) {
			*value = 21.5;
		}
		return 0;
	}
	return EDGERM_ABI_E_NOTFOUND;
}

int edgerm_port_actuator_set(void *ctx, const char *name, size_t len, double value)
{
	(void)ctx, (void)name, (void)len, (void)value;
	return EDGERM_ABI_E_NOTFOUND;
}

int edgerm_agent_publish(edgerm_agent_t *a, uint32_t task, const uint8_t *data, size_t len,
			 uint64_t now)
{
	(void)a, (void)now;
	uint32_t free_now = pool_free();

	if (free_now < pool_free_running) {
		pool_free_running = free_now;
	}
	if (task == seen.task) {
		seen.publishes++;
		seen.last_len = len < sizeof(seen.last) ? len : sizeof(seen.last);
		memcpy(seen.last, data, seen.last_len);
	}
	return 0;
}

void edgerm_agent_task_exited(edgerm_agent_t *a, uint32_t task, uint8_t state, uint8_t reason,
			      int32_t code, const char *msg, size_t len, uint64_t now)
{
	(void)a, (void)now;
	if (task == seen.task) {
		seen.state = state;
		seen.reason = reason;
		seen.code = code;
		len = len < sizeof(seen.msg) - 1 ? len : sizeof(seen.msg) - 1;
		memcpy(seen.msg, msg, len);
		seen.msg[len] = 0;
	}
}

static bool try_lock(void)
{
	return true;
}

static void nothing(void)
{
}

static edgerm_slice_t s(const char *text)
{
	edgerm_slice_t r = {(const uint8_t *)text, strlen(text)};

	return r;
}

#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* Start a task and poll it to its end (it has run inside the start: one thread). */
static void run(uint32_t task, const uint8_t *module, size_t len, edgerm_task_spec_t *spec)
{
	edgerm_task_start_t start = {task, module, len, spec};
	char msg[96];

	memset(&seen, 0, sizeof(seen));
	seen.task = task;
	pool_free_before = pool_free_running = pool_free();
	int r = edgerm_wamr_start(&start, msg, sizeof(msg));

	EXPECT(r == 0);
	if (r != 0) {
		printf("start failed: %s\n", msg);
		return;
	}
	edgerm_wamr_poll(&agent, clock_ms);
	EXPECT(edgerm_wamr_busy_slots() == 0);
	printf("task %lu: state %u reason %u exit %ld, %d publishes, message \"%s\"\n",
	       (unsigned long)task, seen.state, seen.reason, (long)seen.code, seen.publishes,
	       seen.msg);
	/* Everything a task took from the pool is back once it ended. */
	EXPECT(pool_free() == pool_free_before);
	if (seen.publishes) {
		printf("slot ram%s: pool %lu static %lu\n", trimmed ? " (trimmed memory)" : "",
		       (unsigned long)(pool_free_before - pool_free_running),
		       (unsigned long)edgerm_wamr_slot_static_bytes());
	}
}

int main(void)
{
	static edgerm_task_spec_t spec;
	edgerm_wamr_host_t host = {NULL, &agent, try_lock, nothing, nothing};

	if (edgerm_wamr_init(&host) != 0) {
		printf("FAIL: WAMR init (pool %u bytes)\n", (unsigned)CONFIG_EDGERM_WAMR_POOL_SIZE);
		return 1;
	}
	/* hello: logs, publishes each argument, logs GREETING. */
	memset(&spec, 0, sizeof(spec));
	spec.which = 4;
	spec.has_resources = true;
	spec.resources.mem_mb = 0.0625;
	spec.kind.wasm.args[0] = s("a");
	spec.kind.wasm.args[1] = s("bc");
	spec.kind.wasm.args_count = 2;
	spec.kind.wasm.env[0].name = s("GREETING");
	spec.kind.wasm.env[0].value = s("hi from cortex-m4");
	spec.kind.wasm.env_count = 1;
	run(1, hello_wasm, sizeof(hello_wasm), &spec);
	EXPECT(seen.state == EDGERM_FINISHED && seen.publishes == 2);
	EXPECT(seen.last_len == 2 && memcmp(seen.last, "bc", 2) == 0);
	EXPECT(strcmp(seen.msg, "hello from wasm\nhi from cortex-m4") == 0);

	/* sampler: reads the sensor it holds 3 times, 100 ms apart; publishes f64 readings. */
	memset(&spec, 0, sizeof(spec));
	spec.which = 4;
	spec.has_resources = true;
	spec.resources.mem_mb = 0.0625;
	spec.resources.devices[0].name = s("temp");
	spec.resources.devices_count = 1;
	spec.kind.wasm.args[0] = s("temp");
	spec.kind.wasm.args[1] = s("3");
	spec.kind.wasm.args[2] = s("100");
	spec.kind.wasm.args_count = 3;
	uint64_t t0 = clock_ms;

	run(2, sampler_wasm, sizeof(sampler_wasm), &spec);
	double v = 0;

	memcpy(&v, seen.last, sizeof(v)); /* little-endian on both sides */
	EXPECT(seen.state == EDGERM_FINISHED && seen.publishes == 3 && v == 21.5);
	EXPECT(clock_ms - t0 == 200); /* two sleeps of 100 ms */

	/* The same module again (the cache's buffer is reused): the sensor not held is denied. */
	spec.resources.devices_count = 0;
	run(3, sampler_wasm, sizeof(sampler_wasm), &spec);
	EXPECT(seen.state == EDGERM_FAILED && seen.reason == EDGERM_EXITED_NONZERO &&
	       seen.code == 1 && strcmp(seen.msg, "read_sensor failed: -2") == 0);

	/* A trap. */
	memset(&spec, 0, sizeof(spec));
	spec.which = 4;
	spec.has_resources = true;
	spec.resources.mem_mb = 0.0625;
	run(4, trap_wasm, sizeof(trap_wasm), &spec);
	EXPECT(seen.state == EDGERM_FAILED && seen.reason == EDGERM_TRAPPED &&
	       strcmp(seen.msg, "trap: unreachable") == 0);

	/* hello built so that WAMR trims its memory (no memory.grow; __heap_base exported): the
	 * same results, a much smaller slot. */
	memset(&spec, 0, sizeof(spec));
	spec.which = 4;
	spec.has_resources = true;
	spec.resources.mem_mb = 0.0625;
	spec.kind.wasm.args[0] = s("small");
	spec.kind.wasm.args_count = 1;
	trimmed = true;
	run(5, hello_trimmed_wasm, sizeof(hello_trimmed_wasm), &spec);
	EXPECT(seen.state == EDGERM_FINISHED && seen.publishes == 1);
	EXPECT(strcmp(seen.msg, "hello from wasm") == 0);

	printf("WAMR on Cortex-M4: %d failures\n", failures);
	return failures ? 1 : 0;
}
