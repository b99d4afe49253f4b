/*
 * EdgeRM WASM task ABI, version 2: what a task imports from its host.
 * Version 2 adds set_actuator; proto/wasm_abi.md says how versions work.
 *
 * The same .wasm runs unchanged on the Linux agent (wasm3) and the Zephyr agent (WAMR).
 * proto/wasm_abi.md is the specification; this header is its C binding for task authors.
 *
 * Build (Debian clang + lld):
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export=run \
 *         -Wl,--allow-undefined -Wl,-z,stack-size=4096 -Wl,--initial-memory=65536 \
 *         -Wl,--max-memory=65536 -I proto -o task.wasm task.c
 *
 * All pointers are offsets into the task's own linear memory; the host checks every
 * pointer/length pair and traps the task on one that leaves its memory.
 */
#ifndef EDGERM_TASK_H
#define EDGERM_TASK_H

#include <stdint.h>

#define EDGERM_IMPORT(name) __attribute__((import_module("edgerm"), import_name(name)))
#define EDGERM_EXPORT(name) __attribute__((export_name(name)))

/* The ABI version this header describes. A task that calls an import newer than the agent's
 * ABI fails at instantiation (ERROR, LAUNCH_FAILED, the missing import named), never at run time. */
#define EDGERM_ABI_VERSION 2

/* Return codes of the calls below. */
#define EDGERM_OK 0
#define EDGERM_E_NOTFOUND (-1)   /* no such sensor, actuator, argument or variable */
#define EDGERM_E_DENIED (-2)     /* the device is not among the task's resources */
#define EDGERM_E_IO (-3)         /* the sensor did not answer / the actuator could not be set */
#define EDGERM_E_TOOBIG (-4)     /* publish: over 1024 bytes */
#define EDGERM_E_AGAIN (-5)      /* publish: the agent's queue is full; try later */
#define EDGERM_E_RANGE (-6)      /* set_actuator: value outside the actuator's range (v2) */

/* Write one line to the task's output tail (visible in its status and in `edgerm run`). */
EDGERM_IMPORT("log") void edgerm_log(const char *msg, uint32_t len);

/* Monotonic milliseconds since the agent started. */
EDGERM_IMPORT("now_ms") uint64_t edgerm_now_ms(void);

/* Sleep; a killed task does not wake up. */
EDGERM_IMPORT("sleep_ms") void edgerm_sleep_ms(uint32_t ms);

/* Read sensor `name` (a device the task holds in its resources) into *value. */
EDGERM_IMPORT("read_sensor")
int32_t edgerm_read_sensor(const char *name, uint32_t name_len, double *value);

/* Set actuator `name` (a device of kind ACTUATOR the task holds in its resources; the claim is
 * exclusive) to `value`, which must lie in the actuator's declared range: 0 or 1 for a GPIO
 * pin or relay, a duty cycle 0..1 for PWM. ABI version 2. */
EDGERM_IMPORT("set_actuator")
int32_t edgerm_set_actuator(const char *name, uint32_t name_len, double value);

/* Publish a reading or result to the task's framework (in order, at most 1024 bytes). */
EDGERM_IMPORT("publish") int32_t edgerm_publish(const void *data, uint32_t len);

/* Number of launch arguments. */
EDGERM_IMPORT("arg_count") int32_t edgerm_arg_count(void);

/* Copy argument i into buf (at most cap bytes, no NUL); returns its full length or
 * EDGERM_E_NOTFOUND. A return value > cap means the copy was truncated. */
EDGERM_IMPORT("arg_get") int32_t edgerm_arg_get(uint32_t i, char *buf, uint32_t cap);

/* Copy environment variable `name` into buf, as arg_get. */
EDGERM_IMPORT("env_get")
int32_t edgerm_env_get(const char *name, uint32_t name_len, char *buf, uint32_t cap);

#endif /* EDGERM_TASK_H */
