/*
 * The agent thread's shared parts (see agent_thread.h): the agent object and its lock, the
 * wake-up socket pair, the clock of edgerm_port.h, and the thread's stack.
 */
#include <errno.h>

#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/net/socket.h>

#include "agent_thread.h"
#include "edgerm_port.h"

LOG_MODULE_REGISTER(edgerm_agent_thread, CONFIG_EDGERM_LOG_LEVEL);

static edgerm_agent_t agent;
static K_MUTEX_DEFINE(agent_lock);
static int wake_fds[2] = {-1, -1};

K_THREAD_STACK_DEFINE(agent_stack, CONFIG_EDGERM_AGENT_THREAD_STACK_SIZE);
static struct k_thread agent_thread;

edgerm_agent_t *edgerm_agent(void)
{
	return &agent;
}

void edgerm_agent_lock(void)
{
	k_mutex_lock(&agent_lock, K_FOREVER);
}

bool edgerm_agent_trylock(void)
{
	return k_mutex_lock(&agent_lock, K_NO_WAIT) == 0;
}

void edgerm_agent_unlock(void)
{
	k_mutex_unlock(&agent_lock);
}

int edgerm_agent_wake_open(void)
{
	if (zsock_socketpair(AF_UNIX, SOCK_STREAM, 0, wake_fds) < 0) {
		LOG_ERR("socketpair: %d", errno);
		return -errno;
	}
	return 0;
}

int edgerm_agent_wake_fd(void)
{
	return wake_fds[0];
}

void edgerm_agent_wake_drain(void)
{
	uint8_t drain[16];

	while (zsock_recv(wake_fds[0], drain, sizeof(drain), ZSOCK_MSG_DONTWAIT) > 0) {
	}
}

void edgerm_agent_wake(void)
{
	uint8_t b = 1;

	if (wake_fds[1] >= 0) {
		(void)zsock_send(wake_fds[1], &b, 1, ZSOCK_MSG_DONTWAIT);
	}
}

void edgerm_agent_thread_start(k_thread_entry_t entry)
{
	k_thread_create(&agent_thread, agent_stack, K_THREAD_STACK_SIZEOF(agent_stack), entry,
			NULL, NULL, NULL, CONFIG_EDGERM_AGENT_THREAD_PRIORITY, 0, K_NO_WAIT);
	k_thread_name_set(&agent_thread, "edgerm_agent");
}

/* ---- edgerm_port.h: the clock ------------------------------------------------------------ */

uint64_t edgerm_port_now_ms(void)
{
	return (uint64_t)k_uptime_get();
}
