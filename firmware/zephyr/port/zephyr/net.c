/*
 * The agent thread's loop: one UDP socket connected to the master, the wake-up socket pair of
 * agent_thread.c (task threads and the shell end its poll early), and the core driven by
 * datagrams and one deadline - the Zephyr twin of port/posix/main.c. Every edgerm_agent_* call
 * is made with the agent lock held (agent_thread.h); task threads take it only with K_NO_WAIT
 * (see wamr_exec.c), so a kill that waits for a task thread while holding it cannot deadlock.
 *
 * Also edgerm_port.h's randomness (the CSPRNG), send and persistence (record and update queue)
 * for Zephyr; its clock is in agent_thread.c.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/net/socket.h>
#include <zephyr/random/random.h>

#include "agent_thread.h"
#include "edgerm/agent.h"
#include "edgerm_zephyr.h"
#include "wasm_export.h"

LOG_MODULE_REGISTER(edgerm_net, CONFIG_EDGERM_LOG_LEVEL);

/* The nonce of a first registration must be unpredictable: sys_csrand_get, never sys_rand_get.
 * It needs an entropy driver (prj.conf: CONFIG_ENTROPY_GENERATOR; the nRF52840's RNG). */
#if !defined(CONFIG_CSPRNG_ENABLED)
#error "EdgeRM needs a cryptographically secure RNG (an entropy driver) for registration nonces"
#endif

static K_SEM_DEFINE(provisioned, 0, 1);
static uint8_t module_mem[CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS * CONFIG_EDGERM_MODULE_SLOT_SIZE];
static uint8_t rx[CONFIG_EDGERM_RX_BUF_SIZE];
static edgerm_device_t devices[CONFIG_EDGERM_MAX_DEVICES];

static struct edgerm_provision prov;
static struct edgerm_provision next_prov;
static atomic_t reprovision;
static atomic_t forget;
static int sock = -1;

/* ---- edgerm_port.h ----------------------------------------------------------------------- */

int edgerm_port_random(void *ctx, uint8_t *buf, size_t len)
{
	ARG_UNUSED(ctx);
	int r = sys_csrand_get(buf, len);

	if (r < 0) {
		LOG_WRN("no random bytes for the registration nonce: %d", r);
	}
	return r < 0 ? r : 0;
}

int edgerm_port_send(void *ctx, const uint8_t *buf, size_t len)
{
	ARG_UNUSED(ctx);
	if (sock < 0) {
		return -ENOTCONN;
	}
	return zsock_send(sock, buf, len, 0) < 0 ? -errno : 0;
}

/* The device is provisioned with one master (`edgerm provision`): nowhere else to go. A list
 * of masters in the provisioning record is future work (docs/ha.md); port/posix has one. */
int edgerm_port_switch_master(void *ctx, const uint8_t *leader, size_t len)
{
	ARG_UNUSED(ctx);
	ARG_UNUSED(leader);
	ARG_UNUSED(len);
	return 0;
}

int edgerm_port_persist(void *ctx, const edgerm_persist_t *p)
{
	ARG_UNUSED(ctx);
	return edgerm_settings_save_state(p);
}

int edgerm_port_queue_save(void *ctx, const uint8_t *rec, size_t len)
{
	ARG_UNUSED(ctx);
	return edgerm_settings_save_queue(rec, len);
}

int edgerm_port_queue_load(void *ctx, uint8_t *rec, size_t cap)
{
	ARG_UNUSED(ctx);
	return edgerm_settings_load_queue(rec, cap);
}

/* ---- the socket ------------------------------------------------------------------------- */

static int open_master_socket(const struct edgerm_provision *p)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	memset(&ss, 0, sizeof(ss));
	if (zsock_inet_pton(AF_INET6, p->master, &net_sin6((struct sockaddr *)&ss)->sin6_addr) == 1) {
		net_sin6((struct sockaddr *)&ss)->sin6_family = AF_INET6;
		net_sin6((struct sockaddr *)&ss)->sin6_port = htons(p->port);
		sl = sizeof(struct sockaddr_in6);
	} else if (IS_ENABLED(CONFIG_NET_IPV4) &&
		   zsock_inet_pton(AF_INET, p->master, &net_sin((struct sockaddr *)&ss)->sin_addr) == 1) {
		net_sin((struct sockaddr *)&ss)->sin_family = AF_INET;
		net_sin((struct sockaddr *)&ss)->sin_port = htons(p->port);
		sl = sizeof(struct sockaddr_in);
	} else {
		LOG_ERR("master address %s: not an IP address", p->master);
		return -EINVAL;
	}
	fd = zsock_socket(ss.ss_family, SOCK_DGRAM, IPPROTO_UDP);
	if (fd < 0) {
		LOG_ERR("socket: %d", errno);
		return -errno;
	}
	/* connect(): the stack then delivers datagrams from the master only. */
	if (zsock_connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		int e = errno;

		LOG_ERR("connect %s: %d", p->master, e);
		zsock_close(fd);
		return -e;
	}
	return fd;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void start_agent(uint64_t now)
{
	static edgerm_persist_t stored;
	struct edgerm_provision unused;
	bool have_state = false;

	(void)edgerm_settings_load(&unused, &stored, &have_state);
	edgerm_agent_config_t cfg = {
		.name = prov.name[0] ? prov.name : CONFIG_BOARD,
		.token = prov.token,
		.cpus = 1.0,
		/* One 64 KiB page per task slot is what a task may hold. */
		.mem_mb = 0.0625 * CONFIG_EDGERM_WASM_MAX_SLOTS,
		.devices = devices,
		.devices_count = edgerm_sensors_devices(devices, ARRAY_SIZE(devices)),
		.os = "zephyr",
		.arch = CONFIG_ARCH,
		.rng_seed = sys_rand32_get(),
		.port = NULL,
		.module_mem = module_mem,
		.module_slot_size = CONFIG_EDGERM_MODULE_SLOT_SIZE,
		.module_slots = CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS,
	};

	edgerm_agent_init(edgerm_agent(), &cfg, have_state ? &stored : NULL, now);
	LOG_INF("agent %s: %s, %u sensor(s), master [%s]:%u", cfg.name,
		have_state && stored.agent_id ? "re-registering" : "registering",
		cfg.devices_count, prov.master, prov.port);
}

static void apply_shell_requests(uint64_t now)
{
	if (atomic_cas(&reprovision, 1, 0)) {
		bool other_master = strcmp(prov.master, next_prov.master) != 0 ||
				    prov.port != next_prov.port;

		prov = next_prov;
		if (sock >= 0) {
			zsock_close(sock);
		}
		sock = open_master_socket(&prov);
		if (other_master) {
			/* Another master does not know our identity. */
			edgerm_agent_reset_identity(edgerm_agent(), now);
		}
	}
	if (atomic_cas(&forget, 1, 0)) {
		edgerm_agent_reset_identity(edgerm_agent(), now);
	}
}

static void agent_main(void *p1, void *p2, void *p3)
{
	edgerm_agent_t *agent = edgerm_agent();

	ARG_UNUSED(p1), ARG_UNUSED(p2), ARG_UNUSED(p3);

	k_sem_take(&provisioned, K_FOREVER);
	/* This thread loads and instantiates modules: WAMR wants its thread env set up. */
	if (!wasm_runtime_init_thread_env()) {
		LOG_ERR("WAMR thread env");
		return;
	}
	if (edgerm_agent_wake_open() < 0) {
		return;
	}
	edgerm_agent_lock();
	sock = open_master_socket(&prov);
	start_agent(edgerm_port_now_ms());
	edgerm_agent_unlock();
	LOG_INF("edgerm: agent started");

	for (;;) {
		/* The wake socket first: it is polled even while the master socket is down. */
		struct zsock_pollfd fds[2] = {
			{.fd = edgerm_agent_wake_fd(), .events = ZSOCK_POLLIN},
			{.fd = sock, .events = ZSOCK_POLLIN},
		};
		uint64_t now, deadline, tasks;

		edgerm_agent_lock();
		now = edgerm_port_now_ms();
		deadline = edgerm_agent_next_deadline_ms(agent);
		tasks = edgerm_wamr_next_deadline_ms();
		edgerm_agent_unlock();
		if (tasks < deadline) {
			deadline = tasks;
		}
		/* Wake at least every second: shell requests and a socket that failed to open. */
		int timeout = deadline <= now ? 0 : (deadline - now > 1000 ? 1000 : (int)(deadline - now));

		if (zsock_poll(fds, sock >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) {
			LOG_ERR("poll: %d", errno);
			k_sleep(K_MSEC(100));
		}
		edgerm_agent_lock();
		now = edgerm_port_now_ms();
		apply_shell_requests(now);
		if (sock >= 0 && (fds[1].revents & ZSOCK_POLLIN)) {
			for (;;) {
				ssize_t n = zsock_recv(sock, rx, sizeof(rx), ZSOCK_MSG_DONTWAIT);

				if (n < 0) {
					break; /* EAGAIN, or an ICMP error while the master is away */
				}
				/* A datagram longer than rx arrives cut to sizeof(rx): the core
				 * rejects it (its CBOR is truncated), counting it. */
				(void)edgerm_agent_on_datagram(agent, rx, (size_t)n, now);
			}
		}
		if (fds[0].revents & ZSOCK_POLLIN) {
			edgerm_agent_wake_drain();
		}
		edgerm_wamr_poll(agent, now);
		if (now >= edgerm_agent_next_deadline_ms(agent)) {
			edgerm_agent_on_timer(agent, now);
		}
		edgerm_agent_unlock();
	}
}

int edgerm_net_start(void)
{
	bool have_state;
	static edgerm_persist_t unused;
	int r = edgerm_settings_load(&prov, &unused, &have_state);

	if (r < 0) {
		return r;
	}
	edgerm_agent_thread_start(agent_main);
	if (prov.valid) {
		k_sem_give(&provisioned);
	} else {
		LOG_WRN("not provisioned: run `edgerm provision <master-ip> <token> [port] [name]`");
	}
	return 0;
}

void edgerm_net_reprovision(const struct edgerm_provision *p)
{
	if (k_sem_count_get(&provisioned) == 0 && sock < 0 && edgerm_agent_wake_fd() < 0) {
		/* First provisioning: the agent thread is still waiting for it. */
		prov = *p;
		k_sem_give(&provisioned);
		return;
	}
	next_prov = *p;
	atomic_set(&reprovision, 1);
	edgerm_agent_wake();
}

void edgerm_net_forget_identity(void)
{
	atomic_set(&forget, 1);
	edgerm_agent_wake();
}
