/*
 * The WASM executor on Zephyr: the portable WAMR executor (port/wamr/wamr_exec.c, shared with
 * the POSIX agent and the bare-metal image) on Zephyr threads. This file is its threading layer
 * (wamr_exec.h: one thread, stack, semaphore and mutex per slot) and the glue to the rest of
 * the port: edgerm_port_task_start/kill, and the host hooks (the agent lock, only tried by task
 * threads; the agent thread's wake-up).
 */
#include <errno.h>

#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>

#include "agent_thread.h"
#include "edgerm_zephyr.h"
#include "wamr_exec.h"

LOG_MODULE_REGISTER(edgerm_wamr, CONFIG_EDGERM_LOG_LEVEL);

#define NSLOTS CONFIG_EDGERM_WASM_MAX_SLOTS

struct edgerm_wamr_os {
	struct k_thread thread;
	struct k_sem wake; /* ends a sleep_ms early on kill */
	struct k_mutex lock;
	void (*fn)(void *);
	void *arg;
};

static struct edgerm_wamr_os slots[NSLOTS];
K_THREAD_STACK_ARRAY_DEFINE(task_stacks, NSLOTS, CONFIG_EDGERM_TASK_THREAD_STACK_SIZE);

edgerm_wamr_os_t *edgerm_wamr_os_slot(int i)
{
	return &slots[i];
}

int edgerm_wamr_os_init(edgerm_wamr_os_t *o)
{
	k_sem_init(&o->wake, 0, 1);
	k_mutex_init(&o->lock);
	return 0;
}

static void entry(void *p1, void *p2, void *p3)
{
	edgerm_wamr_os_t *o = p1;

	ARG_UNUSED(p2), ARG_UNUSED(p3);
	o->fn(o->arg);
}

int edgerm_wamr_os_spawn(edgerm_wamr_os_t *o, void (*fn)(void *), void *arg)
{
	o->fn = fn;
	o->arg = arg;
	k_thread_create(&o->thread, task_stacks[o - slots], K_THREAD_STACK_SIZEOF(task_stacks[0]),
			entry, o, NULL, NULL, CONFIG_EDGERM_TASK_THREAD_PRIORITY, 0, K_NO_WAIT);
	k_thread_name_set(&o->thread, "edgerm_task");
	return 0;
}

int edgerm_wamr_os_join(edgerm_wamr_os_t *o, uint32_t timeout_ms)
{
	return k_thread_join(&o->thread, timeout_ms == 0xffffffffu ? K_FOREVER : K_MSEC(timeout_ms))
		       == 0
		       ? 0
		       : -1;
}

void edgerm_wamr_os_abandon(edgerm_wamr_os_t *o)
{
	/* It did not reach a branch or return from a host call in time: its WAMR objects may
	 * stay in the pool, the slot is retired until reboot (wamr_exec.c). */
	LOG_ERR("a task thread did not stop: aborting it");
	k_thread_abort(&o->thread);
}

void edgerm_wamr_os_lock(edgerm_wamr_os_t *o)
{
	k_mutex_lock(&o->lock, K_FOREVER);
}

void edgerm_wamr_os_unlock(edgerm_wamr_os_t *o)
{
	k_mutex_unlock(&o->lock);
}

void edgerm_wamr_os_sleep(edgerm_wamr_os_t *o, uint32_t ms)
{
	(void)k_sem_take(&o->wake, K_MSEC(ms)); /* given by a kill */
}

void edgerm_wamr_os_wake(edgerm_wamr_os_t *o)
{
	k_sem_give(&o->wake);
}

void edgerm_wamr_os_wake_reset(edgerm_wamr_os_t *o)
{
	k_sem_reset(&o->wake);
}

/* ---- the port's task calls and the executor's start-up ------------------------------------ */

int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *start, char *msg, size_t cap)
{
	ARG_UNUSED(ctx);
	return edgerm_wamr_start(start, msg, cap);
}

int edgerm_port_task_kill(void *ctx, uint32_t task)
{
	ARG_UNUSED(ctx);
	return edgerm_wamr_kill(task) == 0 ? 0 : -ESRCH;
}

int edgerm_zephyr_wamr_init(void)
{
	static const edgerm_wamr_host_t host = {
		.port = NULL, /* sensors.c and actuators.c need no context */
		.trylock = edgerm_agent_trylock,
		.unlock = edgerm_agent_unlock,
		.wake = edgerm_agent_wake,
	};
	edgerm_wamr_host_t h = host;

	h.agent = edgerm_agent();
	if (edgerm_wamr_init(&h) < 0) {
		LOG_ERR("WAMR init failed (pool %u bytes)", (unsigned)CONFIG_EDGERM_WAMR_POOL_SIZE);
		return -ENOMEM;
	}
	return 0;
}
