/* Stand-in for Zephyr v4.2's settings API (include/zephyr/settings/settings.h), the calls
 * port/zephyr/settings.c makes, with their signatures (see ../kernel.h). */
#ifndef ZEPHYR_API_STANDIN_SETTINGS_H
#define ZEPHYR_API_STANDIN_SETTINGS_H

#include <stddef.h>
#include <sys/types.h>

typedef ssize_t (*settings_read_cb)(void *cb_arg, void *data, size_t len);

struct settings_handler_static {
	const char *name;
	int (*h_get)(const char *key, char *val, int val_len_max);
	int (*h_set)(const char *key, size_t len, settings_read_cb read_cb, void *cb_arg);
	int (*h_commit)(void);
	int (*h_export)(int (*export_func)(const char *name, const void *val, size_t val_len));
};

/* Zephyr places it in an iterable section; a plain constant checks the handler types. */
#define SETTINGS_STATIC_HANDLER_DEFINE(_hname, _tree, _get, _set, _commit, _export)         \
	const struct settings_handler_static settings_handler_##_hname = {                 \
		.name = _tree,                                                             \
		.h_get = _get,                                                             \
		.h_set = _set,                                                             \
		.h_commit = _commit,                                                       \
		.h_export = _export,                                                       \
	}

typedef int (*settings_load_direct_cb)(const char *key, size_t len, settings_read_cb read_cb,
				       void *cb_arg, void *param);

int settings_subsys_init(void);
int settings_load_subtree(const char *subtree);
int settings_load_subtree_direct(const char *subtree, settings_load_direct_cb cb, void *param);
int settings_save_one(const char *name, const void *value, size_t val_len);
int settings_delete(const char *name);
int settings_name_steq(const char *name, const char *key, const char **next);

#endif
