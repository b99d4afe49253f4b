/*
 * The POSIX port of the EdgeRM Zephyr agent: the same C core as on the device, with a UDP
 * socket, a state file, simulated sensors and actuators, and a WASM executor chosen at build
 * time: wasm3 in one child process per task (exec_wasm3.c) or WAMR on one pthread per task
 * slot (exec_wamr.c, the portable port/wamr/wamr_exec.c the device runs).
 */
#ifndef EDGERM_POSIX_H
#define EDGERM_POSIX_H

#include <poll.h>
#include <pthread.h>
#include <stdint.h>

#include "edgerm/agent.h"
#include "masters.h"

#define POSIX_MAX_SENSORS 4
#define POSIX_MAX_ACTUATORS 4
#define POSIX_MAX_DEVICES (POSIX_MAX_SENSORS + POSIX_MAX_ACTUATORS)
#define POSIX_LOG_TAIL 200

typedef struct {
	int pid;     /* 0: free */
	int fd;      /* our end of the socketpair to the child */
	uint32_t task;
	uint64_t deadline_ms; /* timeout_s, or UINT64_MAX */
	char tail[POSIX_LOG_TAIL];
	size_t tail_len;
} posix_task_t;

/* A simulated actuator: takes values in [min, max] and remembers the last one it was set to. */
typedef struct {
	char name[32];
	double min, max, value;
	uint32_t sets; /* how many times it was set */
} posix_actuator_t;

typedef struct {
	int sock; /* UDP, connected to the master in use */
	edgerm_masters_t masters; /* one leads (docs/ha.md); .current is the one in use */
	const char *state_path;
	edgerm_agent_t *agent;
	/* Held by the main loop around every edgerm_agent_* call (all but its poll); WAMR's task
	 * threads only try it. */
	pthread_mutex_t lock;
	edgerm_device_t devices[POSIX_MAX_DEVICES];
	uint8_t devices_count;
	double values[POSIX_MAX_SENSORS];
	char names[POSIX_MAX_SENSORS][32];
	uint8_t sensors_count;
	posix_actuator_t actuators[POSIX_MAX_ACTUATORS];
	uint8_t actuators_count;
	pthread_mutex_t actuator_lock;
	posix_task_t tasks[CONFIG_EDGERM_MAX_TASKS]; /* wasm3's child processes */
	int wake[2];                                  /* WAMR's task threads -> the main loop */
} posix_port_t;

/* State file: 0 when loaded, -1 when absent or unreadable (a first boot). */
int posix_state_load(const char *path, edgerm_persist_t *p);

/* Simulated devices from the command line: NAME=VALUE[:UNIT] and NAME[=MIN:MAX] (0:1 by
 * default). 0, or -1 for a bad or one-too-many spec. */
int posix_add_sensor(posix_port_t *p, const char *spec);
int posix_add_actuator(posix_port_t *p, const char *spec);

/* The executor (exec_wasm3.c or exec_wamr.c, one of them linked). */
extern const char posix_exec_name[];
int posix_exec_init(posix_port_t *port);
int posix_exec_start(posix_port_t *port, const edgerm_task_start_t *s, char *msg, size_t cap);
int posix_exec_kill(posix_port_t *port, uint32_t task);
/* The descriptors the main loop polls for the executor (at most cap); how many. */
size_t posix_exec_pollfds(posix_port_t *port, struct pollfd *fds, size_t cap);
/* After the poll, with the lock held: handle those descriptors and report ended tasks. */
void posix_exec_after_poll(posix_port_t *port, const struct pollfd *fds, size_t n, uint64_t now);
/* Stop tasks past their timeout (reporting them); the next timeout deadline. */
uint64_t posix_exec_check_timeouts(posix_port_t *port, uint64_t now);
/* Tasks running. */
int posix_exec_running(posix_port_t *port);

#endif
