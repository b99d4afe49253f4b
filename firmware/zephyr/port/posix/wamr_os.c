/*
 * The threading layer of the portable WAMR executor (port/wamr/wamr_exec.h) on pthreads: one
 * thread per running task, a mutex around its instance pointer, and a condition variable for
 * sleep_ms that a kill signals. A thread that does not stop is left detached (POSIX cannot
 * abort one thread): its slot is retired, as on Zephyr.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "wamr_exec.h"

struct edgerm_wamr_os {
	pthread_t thread;
	bool started;
	bool ended; /* under lock: the thread function returned */
	bool woken; /* under lock: a kill asked a sleep to end */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* ended or woken changed */
	void (*fn)(void *);
	void *arg;
};

static struct edgerm_wamr_os slots[CONFIG_EDGERM_WASM_MAX_SLOTS];

edgerm_wamr_os_t *edgerm_wamr_os_slot(int i)
{
	return &slots[i];
}

int edgerm_wamr_os_init(edgerm_wamr_os_t *o)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_mutex_init(&o->lock, NULL) != 0 || pthread_cond_init(&o->cond, &attr) != 0) {
		return -1;
	}
	pthread_condattr_destroy(&attr);
	return 0;
}

static void *trampoline(void *arg)
{
	edgerm_wamr_os_t *o = arg;

	o->fn(o->arg);
	pthread_mutex_lock(&o->lock);
	o->ended = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

int edgerm_wamr_os_spawn(edgerm_wamr_os_t *o, void (*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	int r;

	o->fn = fn;
	o->arg = arg;
	o->ended = false;
	pthread_attr_init(&attr);
	/* The interpreter's native stack: WAMR's own default for a thread is 128 KiB. */
	pthread_attr_setstacksize(&attr, 256 * 1024);
	r = pthread_create(&o->thread, &attr, trampoline, o);
	pthread_attr_destroy(&attr);
	o->started = r == 0;
	return r == 0 ? 0 : -1;
}

static void deadline_in(struct timespec *ts, uint32_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int edgerm_wamr_os_join(edgerm_wamr_os_t *o, uint32_t timeout_ms)
{
	struct timespec ts;

	if (!o->started) {
		return 0;
	}
	deadline_in(&ts, timeout_ms == 0xffffffffu ? 3600000u : timeout_ms);
	pthread_mutex_lock(&o->lock);
	while (!o->ended) {
		if (pthread_cond_timedwait(&o->cond, &o->lock, &ts) == ETIMEDOUT) {
			break;
		}
	}
	bool ended = o->ended;

	pthread_mutex_unlock(&o->lock);
	if (!ended) {
		return -1;
	}
	pthread_join(o->thread, NULL);
	o->started = false;
	return 0;
}

void edgerm_wamr_os_abandon(edgerm_wamr_os_t *o)
{
	pthread_detach(o->thread);
	o->started = false;
}

void edgerm_wamr_os_lock(edgerm_wamr_os_t *o)
{
	pthread_mutex_lock(&o->lock);
}

void edgerm_wamr_os_unlock(edgerm_wamr_os_t *o)
{
	pthread_mutex_unlock(&o->lock);
}

void edgerm_wamr_os_sleep(edgerm_wamr_os_t *o, uint32_t ms)
{
	struct timespec ts;

	deadline_in(&ts, ms);
	pthread_mutex_lock(&o->lock);
	while (!o->woken) {
		if (pthread_cond_timedwait(&o->cond, &o->lock, &ts) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&o->lock);
}

void edgerm_wamr_os_wake(edgerm_wamr_os_t *o)
{
	pthread_mutex_lock(&o->lock);
	o->woken = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

void edgerm_wamr_os_wake_reset(edgerm_wamr_os_t *o)
{
	pthread_mutex_lock(&o->lock);
	o->woken = false;
	pthread_mutex_unlock(&o->lock);
}
