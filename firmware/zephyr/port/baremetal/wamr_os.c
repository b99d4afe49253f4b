/*
 * The threading layer of the portable WAMR executor (port/wamr/wamr_exec.h) without an OS: one
 * thread of execution. A task runs to its end inside edgerm_wamr_os_spawn (the executor has
 * marked the slot RUNNING before, so the agent sees it start, then end at its next poll);
 * sleep_ms advances the port's clock (edgerm_baremetal_sleep). Nothing can kill a running task
 * here (no second thread to ask): a bare-metal image runs tasks that end, as the QEMU tests do.
 */
#include "wamr_exec.h"

void edgerm_baremetal_sleep(uint32_t ms);

struct edgerm_wamr_os {
	int unused;
};

static struct edgerm_wamr_os slots[CONFIG_EDGERM_WASM_MAX_SLOTS];

edgerm_wamr_os_t *edgerm_wamr_os_slot(int i)
{
	return &slots[i];
}

int edgerm_wamr_os_init(edgerm_wamr_os_t *o)
{
	(void)o;
	return 0;
}

int edgerm_wamr_os_spawn(edgerm_wamr_os_t *o, void (*fn)(void *), void *arg)
{
	(void)o;
	fn(arg);
	return 0;
}

int edgerm_wamr_os_join(edgerm_wamr_os_t *o, uint32_t timeout_ms)
{
	(void)o, (void)timeout_ms;
	return 0;
}

void edgerm_wamr_os_abandon(edgerm_wamr_os_t *o)
{
	(void)o;
}

void edgerm_wamr_os_lock(edgerm_wamr_os_t *o)
{
	(void)o;
}

void edgerm_wamr_os_unlock(edgerm_wamr_os_t *o)
{
	(void)o;
}

void edgerm_wamr_os_sleep(edgerm_wamr_os_t *o, uint32_t ms)
{
	(void)o;
	edgerm_baremetal_sleep(ms);
}

void edgerm_wamr_os_wake(edgerm_wamr_os_t *o)
{
	(void)o;
}

void edgerm_wamr_os_wake_reset(edgerm_wamr_os_t *o)
{
	(void)o;
}
