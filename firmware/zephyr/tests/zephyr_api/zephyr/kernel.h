/*
 * A stand-in for the part of Zephyr v4.2's kernel API that port/zephyr/wamr_os.c, net.c,
 * settings.c, shell.c and agent_thread.h use, with Zephyr's signatures (include/zephyr/kernel.h,
 * sys/util.h, sys/atomic.h), so that `make zephyr-api-check` can compile those files where
 * Zephyr is not available. It checks that they match the portable executor's interface
 * (port/wamr/wamr_exec.h) and call the kernel with the right types; it is not a Zephyr build
 * (twister is, with west).
 */
#ifndef ZEPHYR_API_STANDIN_KERNEL_H
#define ZEPHYR_API_STANDIN_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h> /* ssize_t, as Zephyr's libc gives it */

#define ARG_UNUSED(x) (void)(x)
#define ARRAY_SIZE(array) (sizeof(array) / sizeof((array)[0]))
#define BUILD_ASSERT(cond, msg) _Static_assert(cond, msg)
/* sys/util_macro.h: 1 when the option is defined to 1, else 0. */
#define Z_IS_ENABLED_PROBE_1 0,
#define Z_IS_ENABLED_SECOND(ignored, val, ...) val
#define Z_IS_ENABLED_3(junk_or_comma) Z_IS_ENABLED_SECOND(junk_or_comma 1, 0, 0)
#define Z_IS_ENABLED_2(x) Z_IS_ENABLED_3(Z_IS_ENABLED_PROBE_##x)
#define IS_ENABLED(config_macro) Z_IS_ENABLED_2(config_macro)
#define __weak __attribute__((__weak__))
#define __aligned(x) __attribute__((__aligned__(x)))

typedef struct {
	int64_t ticks;
} k_timeout_t;
#define K_NO_WAIT ((k_timeout_t){0})
#define K_FOREVER ((k_timeout_t){-1})
#define K_MSEC(ms) ((k_timeout_t){(ms)})

typedef struct z_thread_stack_element {
	char data;
} k_thread_stack_t;
#define K_THREAD_STACK_ARRAY_DEFINE(sym, nmemb, size)                                              \
	struct z_thread_stack_element sym[nmemb][size]
#define K_THREAD_STACK_DEFINE(sym, size) struct z_thread_stack_element sym[size]
#define K_THREAD_STACK_SIZEOF(sym) sizeof(sym)

struct k_thread {
	int opaque;
};
typedef struct k_thread *k_tid_t;
typedef void (*k_thread_entry_t)(void *p1, void *p2, void *p3);

k_tid_t k_thread_create(struct k_thread *new_thread, k_thread_stack_t *stack, size_t stack_size,
			k_thread_entry_t entry, void *p1, void *p2, void *p3, int prio,
			uint32_t options, k_timeout_t delay);
int k_thread_name_set(k_tid_t thread, const char *str);
int k_thread_join(struct k_thread *thread, k_timeout_t timeout);
void k_thread_abort(k_tid_t thread);

struct k_mutex {
	int opaque;
};
int k_mutex_init(struct k_mutex *mutex);
int k_mutex_lock(struct k_mutex *mutex, k_timeout_t timeout);
int k_mutex_unlock(struct k_mutex *mutex);

struct k_sem {
	int opaque;
};
int k_sem_init(struct k_sem *sem, unsigned int initial_count, unsigned int limit);
int k_sem_take(struct k_sem *sem, k_timeout_t timeout);
void k_sem_give(struct k_sem *sem);
void k_sem_reset(struct k_sem *sem);
unsigned int k_sem_count_get(struct k_sem *sem);
#define K_SEM_DEFINE(name, initial_count, count_limit) struct k_sem name = {0}
#define K_MUTEX_DEFINE(name) struct k_mutex name = {0}

int32_t k_sleep(k_timeout_t timeout);
int64_t k_uptime_get(void);

/* sys/atomic.h */
typedef long atomic_t;
typedef atomic_t atomic_val_t;
bool atomic_cas(atomic_t *target, atomic_val_t old_value, atomic_val_t new_value);
atomic_val_t atomic_set(atomic_t *target, atomic_val_t value);
atomic_val_t atomic_get(const atomic_t *target);

#endif
