/*
 * edgerm_port.h for POSIX: monotonic clock, send on the connected UDP socket, the persistent
 * record in a small text file and the saved update queue beside it in STATE.queue (each written
 * to a temporary file, fsynced, renamed: a crash leaves the old or the new record, never half of
 * one), simulated sensors and actuators (an actuator records every value it is set to and
 * prints it as a JSON line, {"event": "actuator", ...}, for tests), the executor, and the
 * kernel's CSPRNG (getrandom, else /dev/urandom) for the nonce of a first registration.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "edgerm/abi.h"
#include "posix.h"

uint64_t edgerm_port_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int edgerm_port_random(void *ctx, uint8_t *buf, size_t len)
{
	size_t got = 0;

	(void)ctx;
	while (got < len) {
		ssize_t n = getrandom(buf + got, len - got, 0);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			break; /* ENOSYS (an old kernel): /dev/urandom below */
		}
		got += (size_t)n;
	}
	if (got == len) {
		return 0;
	}
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return -errno;
	}
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			close(fd);
			return -e;
		}
		got += (size_t)n;
	}
	close(fd);
	return 0;
}

int edgerm_port_send(void *ctx, const uint8_t *buf, size_t len)
{
	posix_port_t *p = ctx;

	return send(p->sock, buf, len, 0) < 0 ? -errno : 0;
}

int posix_state_load(const char *path, edgerm_persist_t *p)
{
	FILE *f = fopen(path, "r");
	char hex[40] = {0};
	unsigned long id = 0, seq = 0, ack = 0;

	memset(p, 0, sizeof(*p));
	if (!f) {
		return -1;
	}
	int n = fscanf(f, "agent_id=%lu secret=%32s seq_reserved=%lu command_ack=%lu", &id, hex,
		       &seq, &ack);

	fclose(f);
	if (n != 4 || strlen(hex) != 32) {
		return -1;
	}
	for (int i = 0; i < 16; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			return -1;
		}
		p->secret[i] = (uint8_t)v;
	}
	p->agent_id = (uint32_t)id;
	p->seq_reserved = (uint32_t)seq;
	p->command_ack = (uint32_t)ack;
	return 0;
}

int edgerm_port_persist(void *ctx, const edgerm_persist_t *r)
{
	posix_port_t *p = ctx;
	char tmp[4096];
	FILE *f;

	if (!p->state_path) {
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_path);
	f = fopen(tmp, "w");
	if (!f) {
		return -errno;
	}
	fprintf(f, "agent_id=%lu secret=", (unsigned long)r->agent_id);
	for (int i = 0; i < 16; i++) {
		fprintf(f, "%02x", r->secret[i]);
	}
	fprintf(f, " seq_reserved=%lu command_ack=%lu\n", (unsigned long)r->seq_reserved,
		(unsigned long)r->command_ack);
	fflush(f);
	fsync(fileno(f));
	fclose(f);
	return rename(tmp, p->state_path) < 0 ? -errno : 0;
}

/* Write `len` bytes to path atomically: temporary file, fsync, rename. */
static int write_atomic(const char *path, const uint8_t *buf, size_t len)
{
	char tmp[4096];
	FILE *f;
	int r = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		return -ENAMETOOLONG;
	}
	f = fopen(tmp, "wb");
	if (!f) {
		return -errno;
	}
	if (fwrite(buf, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		r = -EIO;
	}
	if (fclose(f) != 0 && r == 0) {
		r = -EIO;
	}
	if (r == 0 && rename(tmp, path) < 0) {
		r = -errno;
	}
	return r;
}

static int queue_path(const posix_port_t *p, char *out, size_t cap)
{
	return (size_t)snprintf(out, cap, "%s.queue", p->state_path) < cap ? 0 : -ENAMETOOLONG;
}

int edgerm_port_queue_save(void *ctx, const uint8_t *rec, size_t len)
{
	posix_port_t *p = ctx;
	char path[4096];

	if (!p->state_path) {
		return 0;
	}
	if (queue_path(p, path, sizeof(path)) < 0) {
		return -ENAMETOOLONG;
	}
	return write_atomic(path, rec, len);
}

int edgerm_port_queue_load(void *ctx, uint8_t *rec, size_t cap)
{
	posix_port_t *p = ctx;
	char path[4096];
	FILE *f;
	size_t n;
	int extra;

	if (!p->state_path || queue_path(p, path, sizeof(path)) < 0) {
		return 0;
	}
	f = fopen(path, "rb");
	if (!f) {
		return errno == ENOENT ? 0 : -errno;
	}
	n = fread(rec, 1, cap, f);
	extra = fgetc(f); /* a record longer than our queue (another build): not ours to read */
	fclose(f);
	return extra != EOF ? -EFBIG : (int)n;
}

int edgerm_port_sensor_read(void *ctx, const char *name, size_t len, double *value)
{
	posix_port_t *p = ctx;

	for (uint8_t i = 0; i < p->sensors_count; i++) {
		if (strlen(p->names[i]) == len && memcmp(p->names[i], name, len) == 0) {
			if (value) {
				*value = p->values[i];
			}
			return 0;
		}
	}
	return EDGERM_ABI_E_NOTFOUND;
}

int edgerm_port_actuator_set(void *ctx, const char *name, size_t len, double value)
{
	posix_port_t *p = ctx;

	for (uint8_t i = 0; i < p->actuators_count; i++) {
		posix_actuator_t *a = &p->actuators[i];

		if (strlen(a->name) != len || memcmp(a->name, name, len) != 0) {
			continue;
		}
		if (!(value >= a->min && value <= a->max)) { /* NaN too */
			return EDGERM_ABI_E_RANGE;
		}
		/* Task threads (WAMR) set actuators concurrently: one record at a time. */
		pthread_mutex_lock(&p->actuator_lock);
		a->value = value;
		a->sets++;
		printf("{\"event\": \"actuator\", \"name\": \"%s\", \"value\": %.17g, \"sets\": %lu}\n",
		       a->name, a->value, (unsigned long)a->sets);
		fflush(stdout);
		pthread_mutex_unlock(&p->actuator_lock);
		return 0;
	}
	return EDGERM_ABI_E_NOTFOUND;
}

static edgerm_device_t *add_device(posix_port_t *p, const char *name, const char *unit,
				   int32_t kind, uint32_t shares)
{
	edgerm_device_t *d = &p->devices[p->devices_count++];

	d->name.ptr = (const uint8_t *)name;
	d->name.len = strlen(name);
	d->unit.ptr = (const uint8_t *)unit;
	d->unit.len = strlen(unit);
	d->path.ptr = (const uint8_t *)"";
	d->path.len = 0;
	d->kind = kind;
	d->shares = shares;
	return d;
}

int posix_add_sensor(posix_port_t *p, const char *spec)
{
	static char units[POSIX_MAX_SENSORS][16];
	char buf[96];
	char *eq, *colon, *end;

	if (p->sensors_count >= POSIX_MAX_SENSORS || strlen(spec) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, spec);
	eq = strchr(buf, '=');
	if (!eq || eq == buf || (size_t)(eq - buf) >= sizeof(p->names[0])) {
		return -1;
	}
	*eq = 0;
	colon = strchr(eq + 1, ':');
	if (colon) {
		*colon = 0;
	}
	uint8_t i = p->sensors_count;
	double v = strtod(eq + 1, &end);

	if (end == eq + 1 || *end) {
		return -1;
	}
	p->sensors_count++;
	strcpy(p->names[i], buf);
	p->values[i] = v;
	snprintf(units[i], sizeof(units[i]), "%s", colon ? colon + 1 : "");
	/* Every task may read a sensor: as many shares as task slots. */
	add_device(p, p->names[i], units[i], EDGERM_DEVICE_SENSOR, CONFIG_EDGERM_MAX_TASKS);
	return 0;
}

int posix_add_actuator(posix_port_t *p, const char *spec)
{
	char buf[96];
	char *eq, *colon, *end;
	posix_actuator_t *a;

	if (p->actuators_count >= POSIX_MAX_ACTUATORS || strlen(spec) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, spec);
	eq = strchr(buf, '=');
	if (eq) {
		*eq = 0;
	}
	if (!buf[0] || strlen(buf) >= sizeof(a->name)) {
		return -1;
	}
	a = &p->actuators[p->actuators_count];
	memset(a, 0, sizeof(*a));
	strcpy(a->name, buf);
	a->max = 1;
	if (eq) {
		colon = strchr(eq + 1, ':');
		if (!colon) {
			return -1;
		}
		*colon = 0;
		a->min = strtod(eq + 1, &end);
		if (end == eq + 1 || *end) {
			return -1;
		}
		a->max = strtod(colon + 1, &end);
		if (end == colon + 1 || *end || !(a->min <= a->max)) {
			return -1;
		}
	}
	p->actuators_count++;
	/* One writer at a time: a task claims an actuator exclusively (one share). */
	add_device(p, a->name, "", EDGERM_DEVICE_ACTUATOR, 1);
	return 0;
}

int edgerm_port_task_start(void *ctx, const edgerm_task_start_t *s, char *msg, size_t cap)
{
	return posix_exec_start(ctx, s, msg, cap);
}

int edgerm_port_task_kill(void *ctx, uint32_t task)
{
	return posix_exec_kill(ctx, task);
}
