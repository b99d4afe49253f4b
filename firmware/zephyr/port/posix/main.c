/*
 * edgerm-agent-posix: the Zephyr agent's C core as a Linux program, talking to a real master
 * over UDP. The shell owns the socket, the clock and the child processes; the core decides.
 *
 *   edgerm-agent-posix --master 127.0.0.1:5683 --token T --state agent.state \
 *       --name bench-1 --sensor temp=21.5:Cel --sensor humidity=40:%RH
 *
 * Several masters (one leads, docs/ha.md): repeat --master or give a comma list. The core asks
 * to move (edgerm_port_switch_master) when a standby refuses with NOT_LEADER or a call goes
 * unanswered; this port moves to the named leader only if it is one of these, else to the next.
 *
 * The token stays in this process: the first registration is signed with SHA-256(token) and
 * carries a random nonce (port.c: getrandom), and the secret is derived on both sides.
 *
 * Every flag has an environment twin: EDGERM_MASTER, EDGERM_AGENT_TOKEN, EDGERM_STATE,
 * EDGERM_NAME, EDGERM_SENSORS (comma-separated NAME=VALUE[:UNIT]). Events go to stdout as JSON
 * lines for tests and operators: ready, state (registering/reregistering/active), task.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "edgerm/agent.h"
#include "posix.h"

/* Module cache: two slots of 256 KiB (examples are ~1 KiB; grow.wasm and friends are small). */
#define MODULE_SLOT_SIZE (256 * 1024)
static uint8_t module_mem[CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS * MODULE_SLOT_SIZE];
static edgerm_agent_t agent;
static posix_port_t port;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int add_sensor(const char *spec)
{
	char buf[96];
	char *eq, *colon;

	if (port.devices_count >= POSIX_MAX_SENSORS || strlen(spec) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, spec);
	eq = strchr(buf, '=');
	if (!eq || eq == buf || (size_t)(eq - buf) >= sizeof(port.names[0])) {
		return -1;
	}
	*eq = 0;
	colon = strchr(eq + 1, ':');
	if (colon) {
		*colon = 0;
	}
	uint8_t i = port.devices_count++;

	strcpy(port.names[i], buf);
	port.values[i] = strtod(eq + 1, NULL);
	static char units[POSIX_MAX_SENSORS][16];

	snprintf(units[i], sizeof(units[i]), "%s", colon ? colon + 1 : "");
	port.devices[i].name.ptr = (const uint8_t *)port.names[i];
	port.devices[i].name.len = strlen(port.names[i]);
	port.devices[i].unit.ptr = (const uint8_t *)units[i];
	port.devices[i].unit.len = strlen(units[i]);
	port.devices[i].path.ptr = (const uint8_t *)"";
	port.devices[i].kind = EDGERM_DEVICE_SENSOR;
	port.devices[i].shares = CONFIG_EDGERM_MAX_TASKS;
	return 0;
}

static int open_socket(const char *master)
{
	char host[256];
	const char *colon = strrchr(master, ':');
	struct addrinfo hints, *res = NULL;

	if (!colon || (size_t)(colon - master) >= sizeof(host)) {
		return -1;
	}
	memcpy(host, master, (size_t)(colon - master));
	host[colon - master] = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || !res) {
		return -1;
	}
	int s = socket(res->ai_family, SOCK_DGRAM, 0);

	/* connect(): the kernel then only hands us datagrams from the master. */
	if (s < 0 || connect(s, res->ai_addr, res->ai_addrlen) < 0) {
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return s;
}

/* --master values (each maybe a comma list) into port.masters; -1 when too many. */
static int add_masters(const char *list)
{
	char *copy = strdup(list);

	for (char *m = strtok(copy, ","); m; m = strtok(NULL, ",")) {
		if (port.masters_count >= POSIX_MAX_MASTERS) {
			return -1;
		}
		port.masters[port.masters_count++] = m; /* lives as long as the process */
	}
	return 0;
}

int edgerm_port_switch_master(void *ctx, const uint8_t *leader, size_t len)
{
	posix_port_t *p = ctx;
	size_t next = (p->master + 1u) % (p->masters_count ? p->masters_count : 1u);

	if (p->masters_count < 2) {
		return 0;
	}
	/* "coap://HOST:PORT" a standby named: followed only when HOST:PORT is one of ours. */
	for (size_t i = 0; len > 7 && memcmp(leader, "coap://", 7) == 0 && i < p->masters_count;
	     i++) {
		if (i != p->master && strlen(p->masters[i]) == len - 7 &&
		    memcmp(p->masters[i], leader + 7, len - 7) == 0) {
			next = i;
		}
	}
	int s = open_socket(p->masters[next]);

	p->master = (uint8_t)next; /* unreachable now: the next failure moves on */
	if (s < 0) {
		return 0;
	}
	close(p->sock);
	p->sock = s;
	printf("{\"event\": \"master\", \"master\": \"%s\", \"named\": \"%.*s\"}\n",
	       p->masters[next], (int)(len < 200 ? len : 200), len ? (const char *)leader : "");
	fflush(stdout);
	return 1;
}

static const char *state_name(uint8_t s)
{
	static const char *const names[] = {"registering", "reregistering", "active"};

	return s < 3 ? names[s] : "?";
}

/* Tell the outside world what changed since the last call. */
static void report(void)
{
	static uint8_t last_state = 0xff;
	static uint32_t last_task[CONFIG_EDGERM_MAX_TASKS];
	static uint8_t last_task_state[CONFIG_EDGERM_MAX_TASKS];

	if (agent.state != last_state) {
		last_state = agent.state;
		printf("{\"event\": \"state\", \"state\": \"%s\", \"agent_id\": %lu}\n",
		       state_name(agent.state), (unsigned long)agent.persist.agent_id);
	}
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		const edgerm_task_slot_t *t = &agent.tasks[i];

		if (t->task != last_task[i] || t->state != last_task_state[i]) {
			last_task[i] = t->task;
			last_task_state[i] = t->state;
			if (t->task) {
				printf("{\"event\": \"task\", \"task\": %lu, \"state\": %u, \"reason\": %u}\n",
				       (unsigned long)t->task, t->state, t->reason);
			}
		}
	}
	fflush(stdout);
}

static const char *opt(int argc, char **argv, int *i, const char *env)
{
	if (*i + 1 < argc) {
		return argv[++*i];
	}
	return getenv(env);
}

int main(int argc, char **argv)
{
	const char *master = NULL;
	const char *token = getenv("EDGERM_AGENT_TOKEN");
	const char *name = getenv("EDGERM_NAME");
	const char *sensors = getenv("EDGERM_SENSORS");
	uint32_t seed = (uint32_t)getpid() ^ (uint32_t)edgerm_port_now_ms();

	port.state_path = getenv("EDGERM_STATE");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--master") == 0) {
			master = opt(argc, argv, &i, "EDGERM_MASTER");
			if (master && add_masters(master) < 0) {
				fprintf(stderr, "at most %d masters\n", POSIX_MAX_MASTERS);
				return 2;
			}
		} else if (strcmp(argv[i], "--token") == 0) {
			token = opt(argc, argv, &i, "EDGERM_AGENT_TOKEN");
		} else if (strcmp(argv[i], "--state") == 0) {
			port.state_path = opt(argc, argv, &i, "EDGERM_STATE");
		} else if (strcmp(argv[i], "--name") == 0) {
			name = opt(argc, argv, &i, "EDGERM_NAME");
		} else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			seed = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else if (strcmp(argv[i], "--sensor") == 0 && i + 1 < argc) {
			if (add_sensor(argv[++i]) < 0) {
				fprintf(stderr, "bad --sensor %s (NAME=VALUE[:UNIT])\n", argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: %s --master HOST:PORT[,HOST:PORT...]... --token T "
					"[--state FILE] "
					"[--name N] [--sensor NAME=VALUE[:UNIT]]... [--seed N]\n",
				argv[0]);
			return 2;
		}
	}
	if (sensors) {
		char list[256];

		snprintf(list, sizeof(list), "%s", sensors);
		for (char *s = strtok(list, ","); s; s = strtok(NULL, ",")) {
			if (add_sensor(s) < 0) {
				fprintf(stderr, "bad sensor %s\n", s);
				return 2;
			}
		}
	}
	if (!port.masters_count && getenv("EDGERM_MASTER") &&
	    add_masters(getenv("EDGERM_MASTER")) < 0) {
		fprintf(stderr, "at most %d masters\n", POSIX_MAX_MASTERS);
		return 2;
	}
	master = port.masters_count ? port.masters[0] : NULL;
	if (!master || !token) {
		fprintf(stderr, "--master and --token are required\n");
		return 2;
	}
	port.sock = open_socket(master);
	if (port.sock < 0) {
		fprintf(stderr, "cannot reach %s: %s\n", master, strerror(errno));
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);

	edgerm_persist_t persisted;
	bool have_state = port.state_path && posix_state_load(port.state_path, &persisted) == 0;
	edgerm_agent_config_t cfg = {
		.name = name ? name : "zephyr-posix",
		.token = token,
		.cpus = 1.0,
		.mem_mb = 0.0625 * CONFIG_EDGERM_MAX_TASKS, /* one 64 KiB page per task slot */
		.devices = port.devices,
		.devices_count = port.devices_count,
		.os = "posix",
		.arch = "host",
		.rng_seed = seed ? seed : 1,
		.port = &port,
		.module_mem = module_mem,
		.module_slot_size = MODULE_SLOT_SIZE,
		.module_slots = CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS,
	};

	port.agent = &agent;
	edgerm_agent_init(&agent, &cfg, have_state ? &persisted : NULL, edgerm_port_now_ms());
	printf("{\"event\": \"ready\", \"master\": \"%s\", \"resumed\": %s}\n", master,
	       have_state ? "true" : "false");
	report();

	while (!stop) {
		struct pollfd fds[1 + CONFIG_EDGERM_MAX_TASKS];
		posix_task_t *owners[1 + CONFIG_EDGERM_MAX_TASKS];
		nfds_t n = 0;
		uint64_t now = edgerm_port_now_ms();
		uint64_t deadline = edgerm_agent_next_deadline_ms(&agent);
		uint64_t exec_deadline = posix_exec_check_timeouts(&port, now);

		if (exec_deadline < deadline) {
			deadline = exec_deadline;
		}
		/* Wake at least once a second so a signal is noticed promptly. */
		int timeout = deadline <= now ? 0 : deadline - now > 1000 ? 1000 : (int)(deadline - now);

		fds[n].fd = port.sock, fds[n].events = POLLIN, owners[n++] = NULL;
		for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
			if (port.tasks[i].pid != 0) {
				fds[n].fd = port.tasks[i].fd, fds[n].events = POLLIN;
				owners[n++] = &port.tasks[i];
			}
		}
		if (poll(fds, n, timeout) < 0 && errno != EINTR) {
			perror("poll");
			break;
		}
		now = edgerm_port_now_ms();
		if (fds[0].revents & (POLLIN | POLLERR)) {
			uint8_t buf[CONFIG_EDGERM_RX_BUF_SIZE];

			for (;;) {
				/* A datagram longer than the buffer is cut (MSG_TRUNC tells): drop it. */
				ssize_t r = recv(port.sock, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);

				if (r < 0) {
					break; /* EAGAIN, or ECONNREFUSED while the master is down */
				}
				if ((size_t)r <= sizeof(buf)) {
					(void)edgerm_agent_on_datagram(&agent, buf, (size_t)r, now);
				}
			}
		}
		for (nfds_t i = 1; i < n; i++) {
			if (fds[i].revents && owners[i]->pid != 0) {
				posix_exec_on_readable(&port, owners[i], now);
			}
		}
		if (now >= edgerm_agent_next_deadline_ms(&agent)) {
			edgerm_agent_on_timer(&agent, now);
		}
		report();
	}
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		if (port.tasks[i].pid != 0) {
			posix_exec_kill(&port, port.tasks[i].task);
		}
	}
	return 0;
}
