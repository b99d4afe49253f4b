/*
 * The host side of the WASM task ABI (proto/wasm_abi.md), written once for every executor:
 * bounds checks of task pointers and the copy-out of args, env and sensor readings. The WAMR
 * glue (Zephyr) and the wasm3 glue (POSIX) only translate calls into these.
 *
 * A task's launch data (args, env, allowed devices) is copied at start into one bounded
 * edgerm_abi_task_t, so nothing points into a datagram buffer afterwards.
 */
#ifndef EDGERM_ABI_H
#define EDGERM_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "edgerm/wire.h"

#define EDGERM_ABI_OK 0
#define EDGERM_ABI_E_NOTFOUND (-1)
#define EDGERM_ABI_E_DENIED (-2)
#define EDGERM_ABI_E_IO (-3)
#define EDGERM_ABI_E_TOOBIG (-4)
#define EDGERM_ABI_E_AGAIN (-5)
#define EDGERM_ABI_E_RANGE (-6) /* set_actuator: value outside the actuator's range */
/* Not an ABI return code: the pointer/length left the task's memory; the glue traps the task. */
#define EDGERM_ABI_TRAP (-1000)

#ifndef CONFIG_EDGERM_ABI_TASK_DATA_SIZE
#define CONFIG_EDGERM_ABI_TASK_DATA_SIZE 160
#endif

typedef struct {
	uint16_t off, len;
} edgerm_abi_str_t;

typedef struct {
	uint8_t data[CONFIG_EDGERM_ABI_TASK_DATA_SIZE];
	uint16_t used;
	edgerm_abi_str_t args[EDGERM_MAX_REP];
	edgerm_abi_str_t env_name[EDGERM_MAX_REP], env_value[EDGERM_MAX_REP];
	edgerm_abi_str_t devices[EDGERM_MAX_REP];
	edgerm_abi_str_t entry;
	uint8_t args_count, env_count, devices_count;
	uint32_t timeout_s;
	double mem_mb;
} edgerm_abi_task_t;

/* Copy what the task needs from its spec. 0, or EDGERM_ABI_E_TOOBIG when it does not fit. */
int edgerm_abi_task_init(edgerm_abi_task_t *t, const edgerm_task_spec_t *spec);

/* 1 when [ptr, ptr + len) lies inside a memory of mem_size bytes. */
int edgerm_abi_in_bounds(uint64_t mem_size, uint32_t ptr, uint32_t len);

/* The ABI calls on a task memory `mem` of `mem_size` bytes (the current linear memory). */
int32_t edgerm_abi_arg_count(const edgerm_abi_task_t *t);
int32_t edgerm_abi_arg_get(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			   uint32_t i, uint32_t buf, uint32_t cap);
int32_t edgerm_abi_env_get(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			   uint32_t name, uint32_t name_len, uint32_t buf, uint32_t cap);
/* read_sensor: checks the name is among the task's devices, then calls `read`. A device the
 * task did not claim is EDGERM_ABI_E_DENIED when the agent has it, else EDGERM_ABI_E_NOTFOUND:
 * `read` is then called with value NULL, which only asks whether the device exists. */
typedef int (*edgerm_abi_sensor_fn)(void *ctx, const char *name, size_t len, double *value);
int32_t edgerm_abi_read_sensor(const edgerm_abi_task_t *t, uint8_t *mem, uint64_t mem_size,
			       uint32_t name, uint32_t name_len, uint32_t out,
			       edgerm_abi_sensor_fn read, void *ctx);
/* set_actuator (ABI v2), the checks in the order proto/wasm_abi.md gives, before the device:
 * EDGERM_ABI_TRAP for a name outside memory, EDGERM_ABI_E_DENIED for a device the task did not
 * claim (whatever the agent has); 0 when the glue may go on to edgerm_port_actuator_set, which
 * answers 0, EDGERM_ABI_E_NOTFOUND (not an actuator of this agent), _E_RANGE or _E_IO. */
int32_t edgerm_abi_actuator_check(const edgerm_abi_task_t *t, const uint8_t *mem,
				  uint64_t mem_size, uint32_t name, uint32_t name_len);

/* The bytes of the entry point name (empty: "run", "_start", "main" in that order). */
static inline const uint8_t *edgerm_abi_str(const edgerm_abi_task_t *t, edgerm_abi_str_t s)
{
	return t->data + s.off;
}

#endif /* EDGERM_ABI_H */
