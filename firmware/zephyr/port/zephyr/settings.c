/*
 * Persistence through Zephyr's settings subsystem (NVS backend): the provisioning (the list of
 * masters, agent token, name), the agent's record (agent id, secret, seq reservation,
 * command_ack) and the saved update queue (one value, written by the core only when a task
 * ends, so NVS sees one write per task rather than one per publish). Keys live under "edgerm/".
 * Nothing here is compiled in: a fresh board has no master and waits for `edgerm provision`.
 *
 * The masters are one value, "edgerm/masters": the list as text ("[fd00::1]:5683,..."),
 * port/common/masters.h. A board provisioned before there were lists holds "edgerm/master" (one
 * address) and "edgerm/port" instead: read as a list of one, replaced by "edgerm/masters" at
 * the next `edgerm provision` or `edgerm masters`.
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
/* The stored text, parsed once every key is read (they come in any order). */
static char load_masters[EDGERM_MASTERS_TEXT_SIZE];
static char load_old_master[EDGERM_MASTER_HOST_SIZE]; /* the single-master record */
static uint16_t load_old_port;

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
	if (settings_name_steq(key, "masters", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_masters, sizeof(load_masters), true);
	} else if (settings_name_steq(key, "master", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, load_old_master, sizeof(load_old_master), true);
	} else if (settings_name_steq(key, "port", &next) && !next) {
		r = read_value(len, read_cb, cb_arg, &load_old_port, sizeof(load_old_port), false);
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
		/* A failed read may have left part of a value: none of it is used. */
		if (settings_name_steq(key, "masters", &next) && !next) {
			load_masters[0] = '\0';
		} else if (settings_name_steq(key, "master", &next) && !next) {
			load_old_master[0] = '\0';
		}
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
	load_masters[0] = '\0';
	load_old_master[0] = '\0';
	load_old_port = 0;
	load_prov = prov;
	load_state = state;
	load_have_state = have_state;
	r = settings_load_subtree("edgerm");
	load_prov = NULL;
	if (r < 0) {
		LOG_ERR("settings load: %d", r);
		return r;
	}
	if (load_masters[0] != '\0') {
		r = edgerm_masters_parse(&prov->masters, load_masters, sizeof(load_masters),
					 CONFIG_EDGERM_MASTER_PORT_DEFAULT);
	} else if (load_old_master[0] != '\0') {
		/* The single-master record: one address, its port apart (0: the default). */
		r = edgerm_masters_parse(&prov->masters, load_old_master, sizeof(load_old_master),
					 load_old_port ? load_old_port
						       : CONFIG_EDGERM_MASTER_PORT_DEFAULT);
	} else {
		r = 0;
	}
	if (r < 0) {
		LOG_WRN("ignoring the stored masters (%d): run `edgerm masters <list>`", r);
		prov->masters.count = 0;
	}
	prov->valid = prov->masters.count > 0 && prov->token[0] != '\0';
	return 0;
}

int edgerm_settings_save_provision(const struct edgerm_provision *prov)
{
	static char text[EDGERM_MASTERS_TEXT_SIZE]; /* called from the shell thread only */
	int r = edgerm_masters_format(&prov->masters, text, sizeof(text));

	if (r <= 0) {
		LOG_ERR("no masters to save: %d", r);
		return r < 0 ? r : -EINVAL;
	}
	r = settings_save_one("edgerm/masters", text, (size_t)r);
	r = r ? r : settings_save_one("edgerm/token", prov->token, strlen(prov->token));
	r = r ? r : settings_save_one("edgerm/name", prov->name, strlen(prov->name));
	if (r < 0) {
		LOG_ERR("saving provisioning: %d", r);
		return r;
	}
	/* The single-master record, now replaced by edgerm/masters (which wins if these stay). */
	if (settings_delete("edgerm/master") < 0 || settings_delete("edgerm/port") < 0) {
		LOG_WRN("could not delete the old single-master record (edgerm/masters wins)");
	}
	return 0;
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
