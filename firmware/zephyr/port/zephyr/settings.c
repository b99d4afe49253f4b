/*
 * Persistence through Zephyr's settings subsystem (NVS backend): the provisioning (master
 * address, port, agent token, name), the agent's record (agent id, secret, seq reservation,
 * command_ack) and the saved update queue (one value, written by the core only when a task
 * ends, so NVS sees one write per task rather than one per publish). Keys live under "edgerm/".
 * Nothing here is compiled in: a fresh board has no master and waits for `edgerm provision`.
 */
#include <errno.h>
#include <string.h>

#include <zephyr/kernel.h>
#include <zephyr/logging/log.h>
#include <zephyr/settings/settings.h>

#include "edgerm_zephyr.h"

LOG_MODULE_REGISTER(edgerm_settings, CONFIG_EDGERM_LOG_LEVEL);

static struct edgerm_provision *load_prov;
static edgerm_persist_t *load_state;
static bool *load_have_state;

/* Read one value of exactly `want` bytes (or up to want - 1 for strings, NUL-terminated). */
static int read_value(size_t len, settings_read_cb read_cb, void *cb_arg, void *out, size_t want,
		      bool string)
{
	if (string ? len >= want : len != want) {
		return -EINVAL;
	}
	ssize_t n = read_cb(cb_arg, out, len);

	if (n < 0 || (size_t)n != len) {
		return -EIO;
	}
	if (string) {
		((char *)out)[len] = '\0';
	}
	return 0;
}

static int h_set(const char *key, size_t len, settings_read_cb read_cb, void *cb_arg)
{
	const char *next;
	int r = 0;

	if (!load_prov) {
		return 0;
	}
	if (settings_name_steq(key, "master", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_prov->master, sizeof(load_prov->master), true);
	} else if (settings_name_steq(key, "port", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, &load_prov->port, sizeof(load_prov->port), false);
	} else if (settings_name_steq(key, "token", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_prov->token, sizeof(load_prov->token), true);
	} else if (settings_name_steq(key, "name", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_prov->name, sizeof(load_prov->name), true);
	} else if (settings_name_steq(key, "state", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_state, sizeof(*load_state), false);
		*load_have_state = r == 0;
	}
	if (r < 0) {
		LOG_WRN("ignoring stored %s: %d", key, r);
	}
	return 0;
}

SETTINGS_STATIC_HANDLER_DEFINE(edgerm, "edgerm", NULL, h_set, NULL, NULL);

int edgerm_settings_load(struct edgerm_provision *prov, edgerm_persist_t *state, bool *have_state)
{
	int r;

	memset(prov, 0, sizeof(*prov));
	memset(state, 0, sizeof(*state));
	*have_state = false;
	r = settings_subsys_init();
	if (r < 0) {
		LOG_ERR("settings init: %d", r);
		return r;
	}
	load_prov = prov;
	load_state = state;
	load_have_state = have_state;
	r = settings_load_subtree("edgerm");
	load_prov = NULL;
	if (r < 0) {
		LOG_ERR("settings load: %d", r);
		return r;
	}
	if (prov->port == 0) {
		prov->port = CONFIG_EDGERM_MASTER_PORT_DEFAULT;
	}
	prov->valid = prov->master[0] != '\0' && prov->token[0] != '\0';
	return 0;
}

int edgerm_settings_save_provision(const struct edgerm_provision *prov)
{
	int r = settings_save_one("edgerm/master", prov->master, strlen(prov->master));

	r = r ? r : settings_save_one("edgerm/port", &prov->port, sizeof(prov->port));
	r = r ? r : settings_save_one("edgerm/token", prov->token, strlen(prov->token));
	r = r ? r : settings_save_one("edgerm/name", prov->name, strlen(prov->name));
	if (r < 0) {
		LOG_ERR("saving provisioning: %d", r);
	}
	return r;
}

int edgerm_settings_save_state(const edgerm_persist_t *state)
{
	int r = settings_save_one("edgerm/state", state, sizeof(*state));

	if (r < 0) {
		LOG_ERR("saving agent state: %d", r);
	}
	return r;
}

/* The update queue: one value "edgerm/queue", read with a direct load into the agent's own
 * buffer (no copy in RAM here). */
struct queue_load {
	uint8_t *rec;
	size_t cap;
	int len; /* bytes read, 0 when there is none, or a negative errno */
};

static int queue_direct(const char *key, size_t len, settings_read_cb read_cb, void *cb_arg,
			void *param)
{
	struct queue_load *q = param;

	if (key != NULL && key[0] != '\0') {
		return 0; /* below edgerm/queue: not ours */
	}
	if (len > q->cap) {
		q->len = -EFBIG; /* saved by a build with a larger queue */
		return 0;
	}
	ssize_t n = read_cb(cb_arg, q->rec, len);

	q->len = (n < 0 || (size_t)n != len) ? -EIO : (int)len;
	return 0;
}

int edgerm_settings_load_queue(uint8_t *rec, size_t cap)
{
	struct queue_load q = {rec, cap, 0};
	int r = settings_load_subtree_direct("edgerm/queue", queue_direct, &q);

	if (r < 0) {
		LOG_ERR("settings load of the update queue: %d", r);
		return r;
	}
	if (q.len < 0) {
		LOG_WRN("ignoring the saved update queue: %d", q.len);
	}
	return q.len;
}

int edgerm_settings_save_queue(const uint8_t *rec, size_t len)
{
	int r = settings_save_one("edgerm/queue", rec, len);

	if (r < 0) {
		LOG_ERR("saving the update queue: %d", r);
	}
	return r;
}
