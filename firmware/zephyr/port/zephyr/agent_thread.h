/*
 * What the agent thread shares with the threads around it: the agent object, the lock every
 * edgerm_agent_* call is made under, the wake-up that ends the thread's poll early, the clock
 * (edgerm_port_now_ms) and the thread itself (its stack, priority and name).
 *
 * net.c runs the thread's loop (socket, deadlines); the WAMR executor's task threads
 * (wamr_os.c) publish under the lock and wake the loop when a task ends; shell.c reads the
 * agent under the lock. This file
 * calls into none of them, so none of them depends on another through it.
 */
#ifndef EDGERM_AGENT_THREAD_H
#define EDGERM_AGENT_THREAD_H

#include <stdbool.h>

#include <zephyr/kernel.h>

#include "edgerm/agent.h"

edgerm_agent_t *edgerm_agent(void);

/* The agent lock: every edgerm_agent_* call happens with it held. Task threads only try it
 * (edgerm_agent_trylock, K_NO_WAIT), so the agent thread may join them while holding it. */
void edgerm_agent_lock(void);
bool edgerm_agent_trylock(void);
void edgerm_agent_unlock(void);

/* The wake-up: a socket pair, so that the agent thread can poll it with its master socket.
 * Opened on the agent thread before its loop (0 or -errno); until then a wake is a no-op. */
int edgerm_agent_wake_open(void);
/* The end the agent thread polls; -1 until opened. */
int edgerm_agent_wake_fd(void);
/* Read every pending wake-up (after poll said the wake end is readable). */
void edgerm_agent_wake_drain(void);
/* Wake the agent thread (a task ended, a publish was queued, the shell asked for something). */
void edgerm_agent_wake(void);

/* Create the agent thread running `entry` (called once, by edgerm_net_start). */
void edgerm_agent_thread_start(k_thread_entry_t entry);

#endif /* EDGERM_AGENT_THREAD_H */
