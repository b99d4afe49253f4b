/*
 * WASM executor of the POSIX port on WAMR: the device's portable executor (port/wamr/wamr_exec.c)
 * on pthreads (wamr_os.c), in the agent's own process. Task threads publish under the port's
 * lock (only tried, never waited for) and wake the main loop through a pipe; the main loop polls
 * the pipe's read end and, with the lock held, collects ended tasks (edgerm_wamr_poll).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "posix.h"
#include "wamr_exec.h"

const char posix_exec_name[] = "wamr";

static posix_port_t *port;

static bool try_lock(void)
{
	return pthread_mutex_trylock(&port->lock) == 0;
}

static void unlock(void)
{
	pthread_mutex_unlock(&port->lock);
}

static void wake(void)
{
	char c = 1;

	(void)!write(port->wake[1], &c, 1); /* a full pipe already means "wake up" */
}

int posix_exec_init(posix_port_t *p)
{
	port = p;
	if (pipe(p->wake) < 0) {
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		fcntl(p->wake[i], F_SETFL, fcntl(p->wake[i], F_GETFL) | O_NONBLOCK);
		fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
	}
	edgerm_wamr_host_t host = {
		.port = p,
		.agent = p->agent,
		.trylock = try_lock,
		.unlock = unlock,
		.wake = wake,
	};

	if (edgerm_wamr_init(&host) < 0) {
		fprintf(stderr, "WAMR init failed (pool %u bytes)\n", CONFIG_EDGERM_WAMR_POOL_SIZE);
		return -1;
	}
	return 0;
}

int posix_exec_start(posix_port_t *p, const edgerm_task_start_t *s, char *msg, size_t cap)
{
	(void)p;
	return edgerm_wamr_start(s, msg, cap);
}

int posix_exec_kill(posix_port_t *p, uint32_t task)
{
	(void)p;
	return edgerm_wamr_kill(task) == 0 ? 0 : -ESRCH;
}

size_t posix_exec_pollfds(posix_port_t *p, struct pollfd *fds, size_t cap)
{
	if (cap == 0) {
		return 0;
	}
	fds[0].fd = p->wake[0];
	fds[0].events = POLLIN;
	fds[0].revents = 0;
	return 1;
}

void posix_exec_after_poll(posix_port_t *p, const struct pollfd *fds, size_t n, uint64_t now)
{
	char buf[64];

	if (n && fds[0].revents) {
		while (read(p->wake[0], buf, sizeof(buf)) > 0) {
		}
	}
	edgerm_wamr_poll(p->agent, now);
}

uint64_t posix_exec_check_timeouts(posix_port_t *p, uint64_t now)
{
	edgerm_wamr_poll(p->agent, now);
	return edgerm_wamr_next_deadline_ms();
}

int posix_exec_running(posix_port_t *p)
{
	(void)p;
	return edgerm_wamr_busy_slots();
}
