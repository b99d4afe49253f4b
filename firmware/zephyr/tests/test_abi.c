/* The host ABI helpers: bounds checks trap, copies are bounded, sensors and actuators need the
 * resource (a device the agent has but the task did not claim is denied, an unknown one is not
 * found). */
#include "edgerm/abi.h"
#include "unit.h"

static int fake_sensor(void *ctx, const char *name, size_t len, double *v)
{
	(void)ctx;
	if (len == 4 && memcmp(name, "temp", 4) == 0) {
		if (v) {
			*v = 21.5;
		}
		return 0;
	}
	if (len == 4 && memcmp(name, "humi", 4) == 0) {
		return 0;
	}
	return len == 5 && memcmp(name, "press", 5) == 0 ? EDGERM_ABI_E_IO : EDGERM_ABI_E_NOTFOUND;
}

static double relay_set_to = -1;
static int fake_actuator(void *ctx, const char *name, size_t len, double v);

/* What an executor's glue does: the core's checks, then the port. */
static int32_t set_actuator(const edgerm_abi_task_t *t, uint8_t *mem, uint32_t name,
			    uint32_t len, double v)
{
	int32_t rc = edgerm_abi_actuator_check(t, mem, 256, name, len);

	return rc ? rc : fake_actuator(NULL, (const char *)mem + name, len, v);
}
static int set_calls;

/* "relay" takes 0..1, "press" (a sensor) is no actuator. */
static int fake_actuator(void *ctx, const char *name, size_t len, double v)
{
	(void)ctx;
	set_calls++;
	if (len != 5 || memcmp(name, "relay", 5) != 0) {
		return EDGERM_ABI_E_NOTFOUND;
	}
	if (!(v >= 0 && v <= 1)) {
		return EDGERM_ABI_E_RANGE;
	}
	relay_set_to = v;
	return 0;
}

void suite_abi(void)
{
	edgerm_task_spec_t spec;
	edgerm_abi_task_t t;
	static uint8_t mem[256];

	memset(&spec, 0, sizeof(spec));
	spec.which = 4;
	spec.kind.wasm.args[0].ptr = (const uint8_t *)"10";
	spec.kind.wasm.args[0].len = 2;
	spec.kind.wasm.args_count = 1;
	spec.kind.wasm.env[0].name.ptr = (const uint8_t *)"UNIT";
	spec.kind.wasm.env[0].name.len = 4;
	spec.kind.wasm.env[0].value.ptr = (const uint8_t *)"C";
	spec.kind.wasm.env[0].value.len = 1;
	spec.kind.wasm.env_count = 1;
	spec.has_resources = true;
	spec.resources.devices[0].name.ptr = (const uint8_t *)"temp";
	spec.resources.devices[0].name.len = 4;
	spec.resources.devices[1].name.ptr = (const uint8_t *)"press";
	spec.resources.devices[1].name.len = 5;
	spec.resources.devices_count = 2;
	CHECK_EQ_INT(edgerm_abi_task_init(&t, &spec), 0);

	CHECK_EQ_INT(edgerm_abi_arg_count(&t), 1);
	CHECK_EQ_INT(edgerm_abi_arg_get(&t, mem, sizeof(mem), 0, 10, 8), 2);
	CHECK_MEM(mem + 10, "10", 2);
	/* Truncated copy still returns the full length; nothing written past cap. */
	mem[21] = 0x55;
	CHECK_EQ_INT(edgerm_abi_arg_get(&t, mem, sizeof(mem), 0, 20, 1), 2);
	CHECK_EQ_INT(mem[21], 0x55);
	CHECK_EQ_INT(edgerm_abi_arg_get(&t, mem, sizeof(mem), 1, 10, 8), EDGERM_ABI_E_NOTFOUND);
	CHECK_EQ_INT(edgerm_abi_arg_get(&t, mem, sizeof(mem), 0, 250, 8), EDGERM_ABI_TRAP);
	CHECK_EQ_INT(edgerm_abi_arg_get(&t, mem, sizeof(mem), 0, 0xfffffff8u, 16), EDGERM_ABI_TRAP);

	memcpy(mem + 100, "UNIT", 4);
	CHECK_EQ_INT(edgerm_abi_env_get(&t, mem, sizeof(mem), 100, 4, 120, 4), 1);
	CHECK_EQ_INT(mem[120], 'C');
	CHECK_EQ_INT(edgerm_abi_env_get(&t, mem, sizeof(mem), 100, 3, 120, 4), EDGERM_ABI_E_NOTFOUND);
	CHECK_EQ_INT(edgerm_abi_env_get(&t, mem, sizeof(mem), 254, 4, 120, 4), EDGERM_ABI_TRAP);

	memcpy(mem + 40, "temp", 4);
	CHECK_EQ_INT(edgerm_abi_read_sensor(&t, mem, sizeof(mem), 40, 4, 48, fake_sensor, NULL), 0);
	double v;
	uint64_t bits = 0;

	for (int k = 7; k >= 0; k--) {
		bits = bits << 8 | mem[48 + k]; /* little-endian on every host */
	}
	memcpy(&v, &bits, 8);
	CHECK(v == 21.5);
	memcpy(mem + 40, "humi", 4);
	CHECK_EQ_INT(edgerm_abi_read_sensor(&t, mem, sizeof(mem), 40, 4, 48, fake_sensor, NULL),
		     EDGERM_ABI_E_DENIED);
	memcpy(mem + 40, "nope", 4);
	CHECK_EQ_INT(edgerm_abi_read_sensor(&t, mem, sizeof(mem), 40, 4, 48, fake_sensor, NULL),
		     EDGERM_ABI_E_NOTFOUND);
	memcpy(mem + 40, "press", 5);
	CHECK_EQ_INT(edgerm_abi_read_sensor(&t, mem, sizeof(mem), 40, 5, 48, fake_sensor, NULL),
		     EDGERM_ABI_E_IO);
	CHECK_EQ_INT(edgerm_abi_read_sensor(&t, mem, sizeof(mem), 40, 4, 252, fake_sensor, NULL),
		     EDGERM_ABI_TRAP);

	/* set_actuator: claimed and in range; out of range; claimed but no actuator; not claimed
	 * (denied whatever the agent has, and not set); out of bounds traps. */
	memcpy(mem + 60, "relay", 5);
	spec.resources.devices[2].name.ptr = (const uint8_t *)"relay";
	spec.resources.devices[2].name.len = 5;
	spec.resources.devices_count = 3;
	CHECK_EQ_INT(edgerm_abi_task_init(&t, &spec), 0);
	CHECK_EQ_INT(set_actuator(&t, mem, 60, 5, 1.0),
		     0);
	CHECK(relay_set_to == 1.0);
	CHECK_EQ_INT(set_actuator(&t, mem, 60, 5, 2.0),
		     EDGERM_ABI_E_RANGE);
	CHECK(relay_set_to == 1.0);
	CHECK_EQ_INT(set_actuator(&t, mem, 40, 5, 0.0),
		     EDGERM_ABI_E_NOTFOUND);
	CHECK_EQ_INT(set_actuator(&t, mem, 60, 5, 0.0),
		     0);
	spec.resources.devices_count = 2;
	CHECK_EQ_INT(edgerm_abi_task_init(&t, &spec), 0);
	set_calls = 0;
	CHECK_EQ_INT(set_actuator(&t, mem, 60, 5, 1.0),
		     EDGERM_ABI_E_DENIED);
	CHECK_EQ_INT(set_calls, 0);
	CHECK(relay_set_to == 0.0);
	CHECK_EQ_INT(set_actuator(&t, mem, 254, 5, 1.0),
		     EDGERM_ABI_TRAP);

	/* Launch data beyond the bounded copy is refused, not truncated. */
	static uint8_t big[CONFIG_EDGERM_ABI_TASK_DATA_SIZE + 1];

	spec.kind.wasm.args[0].ptr = big;
	spec.kind.wasm.args[0].len = sizeof(big);
	CHECK_EQ_INT(edgerm_abi_task_init(&t, &spec), EDGERM_ABI_E_TOOBIG);
}
