/*
 * The POSIX port of the EdgeRM Zephyr agent: the same C core as on the device, with a UDP
 * socket, a state file, simulated sensors and wasm3 in one child process per task.
 */
#ifndef EDGERM_POSIX_H
#define EDGERM_POSIX_H

#include <stdint.h>

#include "edgerm/agent.h"

#define POSIX_MAX_SENSORS 4
#define POSIX_MAX_MASTERS 8
#define POSIX_LOG_TAIL 200

typedef struct {
	int pid;     /* 0: free */
	int fd;      /* our end of the socketpair to the child */
	uint32_t task;
	uint64_t deadline_ms; /* timeout_s, or UINT64_MAX */
	char tail[POSIX_LOG_TAIL];
	size_t tail_len;
} posix_task_t;

typedef struct {
	int sock; /* UDP, connected to the master in use */
	const char *masters[POSIX_MAX_MASTERS]; /* HOST:PORT each; one leads (docs/ha.md) */
	uint8_t masters_count, master;          /* master: the index of the one in use */
	const char *state_path;
	edgerm_agent_t *agent;
	edgerm_device_t devices[POSIX_MAX_SENSORS];
	double values[POSIX_MAX_SENSORS];
	char names[POSIX_MAX_SENSORS][32];
	uint8_t devices_count;
	posix_task_t tasks[CONFIG_EDGERM_MAX_TASKS];
} posix_port_t;

/* State file: 0 when loaded, -1 when absent or unreadable (a first boot). */
int posix_state_load(const char *path, edgerm_persist_t *p);

/* Executor (executor.c). */
int posix_exec_start(posix_port_t *port, const edgerm_task_start_t *s, char *msg, size_t cap);
int posix_exec_kill(posix_port_t *port, uint32_t task);
/* Handle a readable child fd: log lines, publish requests, the exit report. */
void posix_exec_on_readable(posix_port_t *port, posix_task_t *t, uint64_t now);
/* Kill tasks past their timeout; returns the next timeout deadline. */
uint64_t posix_exec_check_timeouts(posix_port_t *port, uint64_t now);

#endif
