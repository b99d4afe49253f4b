/*
 * The WASM executor on WAMR's interpreter, written once for every platform: the Zephyr
 * application, the POSIX agent and the bare-metal Cortex-M4 image build the same wamr_exec.c.
 * It talks only to WAMR (wasm_export.h), the core (edgerm/abi.h, edgerm/agent.h) and the thin
 * threading layer below, which each platform implements in a few dozen lines (Zephyr threads:
 * port/zephyr/wamr_os.c; pthreads: port/posix/wamr_os.c; one thread, no OS:
 * port/baremetal/wamr_os.c).
 *
 * Slots: CONFIG_EDGERM_WASM_MAX_SLOTS tasks run at once; WAMR is initialised once with one
 * pool of CONFIG_EDGERM_WAMR_POOL_SIZE bytes for every slot's module copy, instance, stacks and
 * linear memory (Kconfig's help says what a slot costs; the defaults are in edgerm/config.h).
 * On Linux WAMR maps linear memories itself, outside the pool.
 */
#ifndef EDGERM_WAMR_EXEC_H
#define EDGERM_WAMR_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgerm/agent.h"
#include "edgerm_port.h"

/* What the executor needs from the program around it. Task threads call only `trylock` (never
 * a waiting lock: the agent thread may join them while holding the agent lock), `unlock` and
 * `wake`; `port` is passed to edgerm_port_sensor_read / edgerm_port_actuator_set. */
typedef struct {
	void *port;
	edgerm_agent_t *agent;
	bool (*trylock)(void);
	void (*unlock)(void);
	void (*wake)(void); /* a task ended or published: run edgerm_wamr_poll / send soon */
} edgerm_wamr_host_t;

/* Once, before any task: WAMR's runtime with its pool and the `edgerm` natives. 0 or -1. */
int edgerm_wamr_init(const edgerm_wamr_host_t *host);

/* edgerm_port_task_start / edgerm_port_task_kill, with the agent lock held. */
int edgerm_wamr_start(const edgerm_task_start_t *start, char *msg, size_t cap);
int edgerm_wamr_kill(uint32_t task);

/* With the agent lock held: report ended tasks, stop timed-out ones. */
void edgerm_wamr_poll(edgerm_agent_t *a, uint64_t now_ms);

/* Earliest task timeout, or EDGERM_NO_DEADLINE. */
uint64_t edgerm_wamr_next_deadline_ms(void);

/* Tasks running now (slots not free). */
int edgerm_wamr_busy_slots(void);

/* Static RAM of one slot's bookkeeping (its launch data, log tail, status message), for the
 * RAM-per-slot figure of bench/firmware_size; the pool and the thread stack come on top. */
size_t edgerm_wamr_slot_static_bytes(void);

/* ---- the threading layer, one per platform (wamr_os.h's functions) ------------------------ */

typedef struct edgerm_wamr_os edgerm_wamr_os_t;

/* The OS objects of slot i (a static array of the platform file). */
edgerm_wamr_os_t *edgerm_wamr_os_slot(int i);
int edgerm_wamr_os_init(edgerm_wamr_os_t *o);
/* Run fn(arg) on the slot's thread (the bare-metal layer runs it before returning). 0 or < 0. */
int edgerm_wamr_os_spawn(edgerm_wamr_os_t *o, void (*fn)(void *), void *arg);
/* Wait up to timeout_ms for the thread to end: 0 when it has, < 0 when not yet. */
int edgerm_wamr_os_join(edgerm_wamr_os_t *o, uint32_t timeout_ms);
/* The thread did not stop: abort it if the OS can, else leave it (the slot is retired). */
void edgerm_wamr_os_abandon(edgerm_wamr_os_t *o);
/* The slot's lock around its WAMR instance pointer (kill vs. the thread freeing it). */
void edgerm_wamr_os_lock(edgerm_wamr_os_t *o);
void edgerm_wamr_os_unlock(edgerm_wamr_os_t *o);
/* Sleep up to ms; edgerm_wamr_os_wake ends it early (a kill). */
void edgerm_wamr_os_sleep(edgerm_wamr_os_t *o, uint32_t ms);
void edgerm_wamr_os_wake(edgerm_wamr_os_t *o);
void edgerm_wamr_os_wake_reset(edgerm_wamr_os_t *o);

#endif /* EDGERM_WAMR_EXEC_H */
