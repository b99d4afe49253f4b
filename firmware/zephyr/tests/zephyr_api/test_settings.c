/*
 * port/zephyr/settings.c on the host, under ASan/UBSan: the real file, compiled against the
 * stand-in headers of this directory, over an in-memory settings store with Zephyr's semantics
 * (settings_name_steq as in subsys/settings/src/settings.c; a deleted key is gone). Checks the
 * provisioning record: a list of masters saved and loaded back, a board provisioned before
 * there were lists (edgerm/master + edgerm/port) read as a list of one and its old keys deleted
 * at the next save, a stored list that does not parse ignored, and values of the wrong size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <zephyr/settings/settings.h>

#include "edgerm_zephyr.h"

#define MAX_KEYS 8
static struct {
	char name[32];
	unsigned char value[512];
	size_t len;
	int used;
} store[MAX_KEYS];
static int failures, checks;

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(c)) {                                                                        \
			failures++;                                                                \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);                        \
		}                                                                                  \
	} while (0)

void z_log_standin(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("  log: ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

extern const struct settings_handler_static settings_handler_edgerm;

int settings_name_steq(const char *name, const char *key, const char **next)
{
	if (next) {
		*next = NULL;
	}
	while (*key != '\0' && *key == *name && *name != '\0' && *name != '=') {
		key++;
		name++;
	}
	if (*key != '\0') {
		return 0;
	}
	if (*name == '/') {
		if (next) {
			*next = name + 1;
		}
		return 1;
	}
	return *name == '=' || *name == '\0';
}

struct reader {
	int i;
};

static ssize_t read_cb(void *cb_arg, void *data, size_t len)
{
	struct reader *r = cb_arg;

	len = len < store[r->i].len ? len : store[r->i].len;
	memcpy(data, store[r->i].value, len);
	return (ssize_t)len;
}

int settings_subsys_init(void)
{
	return 0;
}

int settings_load_subtree(const char *subtree)
{
	size_t n = strlen(subtree);

	for (int i = 0; i < MAX_KEYS; i++) {
		struct reader r = {i};

		if (store[i].used && strncmp(store[i].name, subtree, n) == 0 &&
		    store[i].name[n] == '/') {
			settings_handler_edgerm.h_set(store[i].name + n + 1, store[i].len, read_cb,
						      &r);
		}
	}
	return 0;
}

int settings_load_subtree_direct(const char *subtree, settings_load_direct_cb cb, void *param)
{
	for (int i = 0; i < MAX_KEYS; i++) {
		struct reader r = {i};

		if (store[i].used && strcmp(store[i].name, subtree) == 0) {
			cb("", store[i].len, read_cb, &r, param);
		}
	}
	return 0;
}

static int find(const char *name)
{
	for (int i = 0; i < MAX_KEYS; i++) {
		if (store[i].used && strcmp(store[i].name, name) == 0) {
			return i;
		}
	}
	return -1;
}

int settings_save_one(const char *name, const void *value, size_t len)
{
	int i = find(name);

	for (int k = 0; i < 0 && k < MAX_KEYS; k++) {
		i = store[k].used ? -1 : k;
	}
	if (i < 0 || len > sizeof(store[i].value) || strlen(name) >= sizeof(store[i].name)) {
		return -ENOMEM;
	}
	snprintf(store[i].name, sizeof(store[i].name), "%s", name);
	memcpy(store[i].value, value, len);
	store[i].len = len;
	store[i].used = 1;
	return 0;
}

int settings_delete(const char *name)
{
	int i = find(name);

	if (i >= 0) {
		store[i].used = 0;
	}
	return 0;
}

static void put(const char *name, const void *value, size_t len)
{
	CHECK(settings_save_one(name, value, len) == 0);
}

static void load(struct edgerm_provision *p)
{
	static edgerm_persist_t state;
	bool have_state;

	CHECK(edgerm_settings_load(p, &state, &have_state) == 0);
}

int main(void)
{
	struct edgerm_provision p, back;
	uint16_t port = 5684;

	setvbuf(stdout, NULL, _IONBF, 0);
	/* A fresh board: nothing, not provisioned. */
	load(&p);
	CHECK(!p.valid && p.masters.count == 0);

	/* A board provisioned before lists: one IPv6 address and its port apart. */
	put("edgerm/master", "fd00::1", 7);
	put("edgerm/port", &port, sizeof(port));
	put("edgerm/token", "tok", 3);
	load(&p);
	CHECK(p.valid && p.masters.count == 1 && p.masters.current == 0);
	CHECK(strcmp(p.masters.addr[0].host, "fd00::1") == 0 && p.masters.addr[0].port == 5684);
	CHECK(strcmp(p.token, "tok") == 0);
	/* Without edgerm/port: the default. An IPv4 address likewise. */
	settings_delete("edgerm/port");
	put("edgerm/master", "192.0.2.7", 9);
	load(&p);
	CHECK(p.valid && p.masters.count == 1 && p.masters.addr[0].port == 5683);
	CHECK(strcmp(p.masters.addr[0].host, "192.0.2.7") == 0);

	/* Saving writes the list and deletes the old keys; it loads back the same. */
	CHECK(edgerm_masters_parse(&p.masters, "fd00::1,[fd00::2]:5684,192.0.2.9", 32, 5683) == 3);
	CHECK(edgerm_settings_save_provision(&p) == 0);
	CHECK(find("edgerm/master") < 0 && find("edgerm/port") < 0 && find("edgerm/masters") >= 0);
	load(&back);
	CHECK(back.valid && back.masters.count == 3);
	CHECK(memcmp(&back.masters, &p.masters, sizeof(p.masters)) == 0);

	/* The list wins over an old record left behind (a delete that failed). */
	put("edgerm/master", "fd00::9", 7);
	load(&back);
	CHECK(back.masters.count == 3 && strcmp(back.masters.addr[0].host, "fd00::1") == 0);
	settings_delete("edgerm/master");

	/* A stored list that does not parse, or is too long for the buffer: ignored, not
	 * provisioned (the shell says how to fix it), never read past. */
	put("edgerm/masters", "fd00::1,,x:0", 12);
	load(&back);
	CHECK(!back.valid && back.masters.count == 0);
	static char longer[EDGERM_MASTERS_TEXT_SIZE + 10];
	memset(longer, 'a', sizeof(longer));
	put("edgerm/masters", longer, sizeof(longer));
	load(&back);
	CHECK(!back.valid && back.masters.count == 0);
	/* More masters than this build holds: ignored as well. */
	put("edgerm/masters", "a1,a2,a3,a4", 11);
	load(&back);
	CHECK(!back.valid && back.masters.count == 0);
	/* An old port of the wrong size: ignored, the default port. */
	settings_delete("edgerm/masters");
	put("edgerm/master", "fd00::1", 7);
	put("edgerm/port", "x", 1);
	load(&back);
	CHECK(back.valid && back.masters.addr[0].port == 5683);

	/* Nothing to save: refused, nothing written. */
	memset(&p.masters, 0, sizeof(p.masters));
	CHECK(edgerm_settings_save_provision(&p) < 0);
	CHECK(find("edgerm/masters") < 0);

	printf("zephyr settings tests: %d checks, %d failures\n", checks, failures);
	return failures != 0;
}
