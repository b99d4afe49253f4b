/*
 * edgerm_port.h - everything the EdgeRM agent core needs from its platform, and nothing else.
 *
 * Like WAMR's platform_api_vmcore.h, this is a short list of functions each port implements:
 * port/zephyr (sockets, NVS settings, sensor API, WAMR threads, the CSPRNG) and port/posix (UDP,
 * a state file, simulated sensors, wasm3 in child processes, getrandom). The core never reads a
 * clock: time is an argument of every edgerm_agent_* call; edgerm_port_now_ms is for the shells
 * and the ABI.
 *
 * Rules for ports: a port never calls back into the agent from inside one of these functions
 * (the core is not reentrant), and every pointer handed to a port is valid only during the call.
 * `ctx` is edgerm_agent_config_t.port, passed through untouched.
 */
#ifndef EDGERM_PORT_H
#define EDGERM_PORT_H

#include <stddef.h>
#include <stdint.h>

#include "edgerm/wire.h"

/* What the agent keeps across reboots (a file, NVS): written when it changes. */
typedef struct {
	uint32_t agent_id;     /* 0: never registered */
	uint8_t secret[16];
	uint32_t seq_reserved; /* every seq below this may have been used: start here */
	uint32_t command_ack;  /* highest command id applied */
} edgerm_persist_t;

/* A task to start: the module stays valid until the task has ended (the cache pins it); the
 * spec (args, env, devices) only during the call - copy what you keep. */
typedef struct {
	uint32_t task;
	const uint8_t *module;
	size_t module_len;
	const edgerm_task_spec_t *spec;
} edgerm_task_start_t;

/* Task start failures the core tells apart. */
#define EDGERM_PORT_E_RESOURCES (-100) /* no free slot or memory: ERROR RESOURCES_UNAVAILABLE */
#define EDGERM_PORT_E_LAUNCH (-101)    /* module refused (bad module, missing import): ERROR
					* LAUNCH_FAILED with the message */
#define EDGERM_PORT_E_MEMORY (-102)    /* the module's initial memory exceeds mem_mb: ERROR
					* MEMORY_LIMIT */

/* AES-128 encryption of one block (FIPS 197): the block cipher under OSCORE's AES-CCM
 * (core/src/oscore.c). The platform provides it: Zephyr's PSA Crypto API on the device
 * (port/zephyr/aes_psa.c), a small table implementation elsewhere (port/common/aes128.c).
 * edgerm_aes128_t is the port's key handle, EDGERM_AES128_CTX_WORDS words (the expanded key
 * schedule by default; a PSA key id on Zephyr). setkey replaces any key held before (the Zephyr
 * port destroys it). encrypt_block allows in == out. Both return 0 or a negative errno. */
#ifndef EDGERM_AES128_CTX_WORDS
#define EDGERM_AES128_CTX_WORDS 44
#endif
typedef struct {
	uint32_t w[EDGERM_AES128_CTX_WORDS];
} edgerm_aes128_t;
int edgerm_aes128_setkey(edgerm_aes128_t *ctx, const uint8_t key[16]);
int edgerm_aes128_encrypt_block(const edgerm_aes128_t *ctx, const uint8_t in[16], uint8_t out[16]);

/* Monotonic milliseconds since boot. */
uint64_t edgerm_port_now_ms(void);

/* Fill buf with len bytes from a cryptographically secure random source (the nonce of a first
 * registration, docs/protocol.md "Authentication"). 0, or a negative errno: the core then does
 * not register and tries again after a back-off (it never falls back to a weaker source). */
int edgerm_port_random(void *ctx, uint8_t *buf, size_t len);

/* Send one datagram to the master. 0, or a negative errno (the core treats it as a loss). */
int edgerm_port_send(void *ctx, const uint8_t *buf, size_t len);

/* Several masters, one leading (docs/ha.md): the core asks to move when a standby refused a
 * call with NOT_LEADER (`leader`, `len`: the URL it named, "coap://HOST:PORT", len 0 when none)
 * and when an exchange got no answer at all (len 0). The port keeps the list of masters: it
 * moves to the named one only if it is on its list, else to the next (never anywhere else), and
 * sends from then on to it. Return > 0 when it moved (the core then re-registers there with
 * its identity and tasks), else 0 (one master only). */
int edgerm_port_switch_master(void *ctx, const uint8_t *leader, size_t len);

/* Store the persistent record. 0 or a negative errno. */
int edgerm_port_persist(void *ctx, const edgerm_persist_t *p);

/* Unacknowledged status updates and publishes, kept across a reboot so that a FINISHED reported
 * just before one is not lost. The core saves when a task reaches a terminal state (never per
 * publish: flash wears) as one opaque record of `len` bytes; store it whole or not at all (a
 * torn write must leave the previous record). 0 or a negative errno. */
int edgerm_port_queue_save(void *ctx, const uint8_t *rec, size_t len);

/* At start-up (from edgerm_agent_init, when it has an identity): copy the last saved record into
 * rec and return its length; 0 when there is none, a negative errno when it cannot be read or is
 * longer than cap. The core checks every byte of it before using any. */
int edgerm_port_queue_load(void *ctx, uint8_t *rec, size_t cap);

/* Start a WASM task; it runs until it ends (the port then calls edgerm_agent_task_exited) or is
 * killed. 0: running. On failure write a short reason into msg (NUL-terminated). */
int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *start, char *msg, size_t msg_cap);

/* Stop a running task now. When it returns the task runs no more and will not be reported by
 * the port as exited. */
int edgerm_port_task_kill(void *ctx, uint32_t task);

/* Read a sensor by its device name. 0, or EDGERM_ABI_E_* of edgerm/abi.h. With value NULL only
 * say whether the sensor exists (0 or EDGERM_ABI_E_NOTFOUND), without touching the device. */
int edgerm_port_sensor_read(void *ctx, const char *name, size_t name_len, double *value);

/* Set an actuator by its device name (ABI v2 set_actuator; the task's claim is checked before).
 * 0, EDGERM_ABI_E_NOTFOUND (not an actuator of this agent), EDGERM_ABI_E_RANGE (value outside
 * what the device takes, NaN included: nothing is set) or EDGERM_ABI_E_IO (the driver failed).
 * Called from task threads: implementations must not wait for the agent lock. */
int edgerm_port_actuator_set(void *ctx, const char *name, size_t name_len, double value);

#endif /* EDGERM_PORT_H */
