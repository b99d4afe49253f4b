/*
 * EdgeRM agent for Zephyr: start WAMR, then the agent thread (port/zephyr/net.c). Everything
 * the agent does happens on that thread and on the task threads; main returns.
 */
#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>

#include "edgerm_zephyr.h"

LOG_MODULE_REGISTER(edgerm, CONFIG_EDGERM_LOG_LEVEL);

int main(void)
{
	int r = edgerm_zephyr_wamr_init();

	if (r < 0) {
		LOG_ERR("WASM executor unavailable: %d", r);
		return r;
	}
	r = edgerm_net_start();
	if (r < 0) {
		LOG_ERR("agent not started: %d", r);
	}
	return r;
}
