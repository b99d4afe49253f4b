/*
 * Actuators through devicetree, the twin of sensors.c: the aliases edgerm-relay and edgerm-led
 * name GPIO outputs (a task sets them to 0 or 1; the pin's active level comes from its flags),
 * edgerm-fan names a PWM output (a duty cycle from 0 to 1 of the period the devicetree gives;
 * inverted polarity comes from its flags). The overlays under boards/ and overlays/ set them.
 *
 * A task sets an actuator (ABI v2 set_actuator) only when it holds it: the core's ABI helper
 * checks the claim before calling edgerm_port_actuator_set, and the master gives each actuator
 * to one task at a time (they are announced with shares 0 and the master treats an actuator as
 * exclusive whatever its shares). So no two task threads drive one output, and no lock is
 * needed here; nor is the agent lock taken (edgerm_port.h: called from task threads).
 * An output keeps its last value when its task ends; at start-up GPIO outputs are inactive.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/drivers/gpio.h>
#include <zephyr/drivers/pwm.h>
#include <zephyr/kernel.h>

#include "edgerm/abi.h"
#include "edgerm_port.h"
#include "edgerm_zephyr.h"

#ifndef EDGERM_ABI_E_RANGE
#define EDGERM_ABI_E_RANGE (-6) /* ABI v2; edgerm/abi.h defines it with set_actuator */
#endif

#define ACTUATOR_OKAY(alias) DT_NODE_HAS_STATUS(DT_ALIAS(alias), okay)

#if IS_ENABLED(CONFIG_GPIO)
struct gpio_actuator {
	const char *name;
	struct gpio_dt_spec spec;
};

#define GPIO_ACTUATOR_IF(alias, nm)                                                                \
	COND_CODE_1(ACTUATOR_OKAY(alias), ({nm, GPIO_DT_SPEC_GET(DT_ALIAS(alias), gpios)},), ())

static const struct gpio_actuator gpio_actuators[] = {
	GPIO_ACTUATOR_IF(edgerm_relay, "relay")
	GPIO_ACTUATOR_IF(edgerm_led, "led")
	{NULL}, /* end (a board may have no actuator at all) */
};
#endif

#if IS_ENABLED(CONFIG_PWM)
struct pwm_actuator {
	const char *name;
	struct pwm_dt_spec spec;
};

#define PWM_ACTUATOR_IF(alias, nm)                                                                 \
	COND_CODE_1(ACTUATOR_OKAY(alias), ({nm, PWM_DT_SPEC_GET(DT_ALIAS(alias))},), ())

static const struct pwm_actuator pwm_actuators[] = {
	PWM_ACTUATOR_IF(edgerm_fan, "fan")
	{NULL},
};
#endif

static bool same(const char *a, const char *name, size_t len)
{
	return strlen(a) == len && memcmp(a, name, len) == 0;
}

static uint8_t announce(edgerm_device_t *out, const char *name)
{
	memset(out, 0, sizeof(*out));
	out->name.ptr = (const uint8_t *)name;
	out->name.len = strlen(name);
	out->unit.ptr = (const uint8_t *)"";
	out->path.ptr = (const uint8_t *)"";
	out->kind = EDGERM_DEVICE_ACTUATOR;
	out->shares = 0; /* exclusive: one task drives it */
	return 1;
}

uint8_t edgerm_actuators_devices(edgerm_device_t *out, uint8_t max)
{
	/* Configured once: a re-registration must not reset what a task has set. */
	static bool configured;
	uint8_t n = 0;

#if IS_ENABLED(CONFIG_GPIO)
	for (size_t i = 0; gpio_actuators[i].name && n < max; i++) {
		const struct gpio_dt_spec *g = &gpio_actuators[i].spec;

		if (!gpio_is_ready_dt(g)) {
			continue; /* an output that did not probe is not offered */
		}
		if (!configured && gpio_pin_configure_dt(g, GPIO_OUTPUT_INACTIVE) < 0) {
			continue;
		}
		n += announce(&out[n], gpio_actuators[i].name);
	}
#endif
#if IS_ENABLED(CONFIG_PWM)
	for (size_t i = 0; pwm_actuators[i].name && n < max; i++) {
		if (pwm_is_ready_dt(&pwm_actuators[i].spec)) {
			n += announce(&out[n], pwm_actuators[i].name);
		}
	}
#endif
	configured = true;
	return n;
}

int edgerm_port_actuator_set(void *ctx, const char *name, size_t len, double value)
{
	ARG_UNUSED(ctx);
	ARG_UNUSED(value);
#if IS_ENABLED(CONFIG_GPIO)
	for (size_t i = 0; gpio_actuators[i].name; i++) {
		if (!same(gpio_actuators[i].name, name, len)) {
			continue;
		}
		if (value != 0.0 && value != 1.0) {
			return EDGERM_ABI_E_RANGE; /* NaN included */
		}
		return gpio_pin_set_dt(&gpio_actuators[i].spec, value == 1.0) < 0 ? EDGERM_ABI_E_IO
										   : EDGERM_ABI_OK;
	}
#endif
#if IS_ENABLED(CONFIG_PWM)
	for (size_t i = 0; pwm_actuators[i].name; i++) {
		const struct pwm_dt_spec *p = &pwm_actuators[i].spec;

		if (!same(pwm_actuators[i].name, name, len)) {
			continue;
		}
		if (!(value >= 0.0 && value <= 1.0)) {
			return EDGERM_ABI_E_RANGE;
		}
		/* The pulse in nanoseconds, as the period the devicetree gives (value <= 1: fits). */
		uint32_t pulse = (uint32_t)((double)p->period * value + 0.5);

		return pwm_set_pulse_dt(p, MIN(pulse, p->period)) < 0 ? EDGERM_ABI_E_IO
									: EDGERM_ABI_OK;
	}
#endif
	return EDGERM_ABI_E_NOTFOUND;
}
