/*
 * The Zephyr port of the EdgeRM agent: what its files share. agent_thread.c owns the agent, its
 * lock, the wake-up, the clock and the thread (declared in agent_thread.h); net.c runs the
 * thread's loop over the master socket; settings.c the persistent state; sensors.c the
 * devicetree sensors; wamr_os.c the WASM executor (port/wamr/wamr_exec.c on Zephyr threads);
 * shell.c the `edgerm` shell command.
 */
#ifndef EDGERM_ZEPHYR_H
#define EDGERM_ZEPHYR_H

#include <stdbool.h>
#include <stdint.h>

#include "edgerm/agent.h"
#include "masters.h"
#include "wamr_exec.h"

/* What `edgerm provision` sets, kept in settings (NVS) - never compiled in. */
struct edgerm_provision {
	/* IPv6 (or IPv4) addresses and ports, at most CONFIG_EDGERM_MAX_MASTERS; one leads
	 * (docs/ha.md). .current, the one in use, is not stored: a boot starts at the first. */
	edgerm_masters_t masters;
	char token[64]; /* the cluster's agent token */
	char name[32];
	bool valid;
};

/* settings.c */
int edgerm_settings_load(struct edgerm_provision *prov, edgerm_persist_t *state, bool *have_state);
int edgerm_settings_save_provision(const struct edgerm_provision *prov);
int edgerm_settings_save_state(const edgerm_persist_t *state);
/* The core's update-queue record (edgerm_port_queue_save/load): length read, 0 when none. */
int edgerm_settings_load_queue(uint8_t *rec, size_t cap);
int edgerm_settings_save_queue(const uint8_t *rec, size_t len);

/* actuators.c: the devicetree GPIO and PWM outputs announced at registration (exclusive; the
 * first call configures them). edgerm_port_actuator_set (edgerm_port.h) drives them. */
uint8_t edgerm_actuators_devices(edgerm_device_t *out, uint8_t max);

/* sensors.c: the devices announced at registration. */
uint8_t edgerm_sensors_devices(edgerm_device_t *out, uint8_t max);

/* wamr_os.c: the portable WAMR executor (port/wamr/wamr_exec.h: edgerm_wamr_poll,
 * edgerm_wamr_next_deadline_ms) on Zephyr threads; started once from main. */
int edgerm_zephyr_wamr_init(void);

/* net.c: start the agent thread (it waits for the provisioning). */
int edgerm_net_start(void);
/* The shell changed the provisioning: reconnect (and, for other masters, register afresh). */
void edgerm_net_reprovision(const struct edgerm_provision *prov);
/* The provisioning in use (masters with the current one): false when there is none yet. */
bool edgerm_net_provision_get(struct edgerm_provision *out);
/* Whether every master's host is an IP address this build can reach (no DNS on the device). */
bool edgerm_net_addresses_ok(const edgerm_masters_t *m);
void edgerm_net_forget_identity(void);

#endif /* EDGERM_ZEPHYR_H */
