/*
 * Sensors through devicetree: the aliases edgerm-temp, edgerm-humidity and edgerm-press name
 * the devices (the overlays under boards/ and overlays/). A task reads them by these names,
 * only when it holds them in its resources (checked by the core's ABI helpers).
 * One mutex serialises fetch+get: two tasks must not interleave on one driver.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/drivers/sensor.h>
#include <zephyr/kernel.h>

#include "edgerm/abi.h"
#include "edgerm_zephyr.h"

struct sensor_entry {
	const char *name, *unit;
	const struct device *dev;
	enum sensor_channel chan;
	double scale; /* to the announced unit */
};

#define SENSOR_IF(alias, nm, un, ch, sc)                                                           \
	COND_CODE_1(DT_NODE_HAS_STATUS(DT_ALIAS(alias), okay),                                    \
		    ({nm, un, DEVICE_DT_GET(DT_ALIAS(alias)), ch, sc},), ())

static const struct sensor_entry sensors[] = {
	SENSOR_IF(edgerm_temp, "temp", "Cel", SENSOR_CHAN_AMBIENT_TEMP, 1.0)
	SENSOR_IF(edgerm_humidity, "humidity", "%RH", SENSOR_CHAN_HUMIDITY, 1.0)
	/* Zephyr reports pressure in kPa; SenML and the prototype's tasks use hPa. */
	SENSOR_IF(edgerm_press, "press", "hPa", SENSOR_CHAN_PRESS, 10.0)
	{NULL, NULL, NULL, SENSOR_CHAN_ALL, 0.0}, /* end (a board may have no sensor at all) */
};

static K_MUTEX_DEFINE(sensor_lock);

uint8_t edgerm_sensors_devices(edgerm_device_t *out, uint8_t max)
{
	uint8_t n = 0;

	for (size_t i = 0; sensors[i].name && n < max; i++) {
		if (!device_is_ready(sensors[i].dev)) {
			continue; /* a sensor that did not probe is not offered */
		}
		memset(&out[n], 0, sizeof(out[n]));
		out[n].name.ptr = (const uint8_t *)sensors[i].name;
		out[n].name.len = strlen(sensors[i].name);
		out[n].unit.ptr = (const uint8_t *)sensors[i].unit;
		out[n].unit.len = strlen(sensors[i].unit);
		out[n].path.ptr = (const uint8_t *)"";
		out[n].kind = EDGERM_DEVICE_SENSOR;
		out[n].shares = CONFIG_EDGERM_WASM_MAX_SLOTS;
		n++;
	}
	return n;
}

int edgerm_port_sensor_read(void *ctx, const char *name, size_t len, double *value)
{
	ARG_UNUSED(ctx);
	for (size_t i = 0; sensors[i].name; i++) {
		const struct sensor_entry *s = &sensors[i];
		struct sensor_value v;
		int r;

		if (strlen(s->name) != len || memcmp(s->name, name, len) != 0) {
			continue;
		}
		if (!value) {
			return 0; /* only asked whether it exists (a task that did not claim it) */
		}
		k_mutex_lock(&sensor_lock, K_FOREVER);
		r = sensor_sample_fetch_chan(s->dev, s->chan);
		if (r == -ENOTSUP) {
			r = sensor_sample_fetch(s->dev);
		}
		r = r ? r : sensor_channel_get(s->dev, s->chan, &v);
		k_mutex_unlock(&sensor_lock);
		if (r < 0) {
			return EDGERM_ABI_E_IO;
		}
		*value = sensor_value_to_double(&v) * s->scale;
		return 0;
	}
	return EDGERM_ABI_E_NOTFOUND;
}
