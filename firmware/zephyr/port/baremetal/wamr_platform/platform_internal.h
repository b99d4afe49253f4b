/*
 * WAMR's platform types for a bare-metal Cortex-M (port/baremetal): one thread of execution, so
 * the thread and lock types are placeholders; memory comes only from WAMR's pool (os_malloc is
 * never used with Alloc_With_Pool; os_mmap, for linear memories, takes it from the pool too).
 */
#ifndef _PLATFORM_INTERNAL_H
#define _PLATFORM_INTERNAL_H

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BH_PLATFORM_EDGERM_BAREMETAL
#define BH_PLATFORM_EDGERM_BAREMETAL
#endif

#define BH_APPLET_PRESERVED_STACK_SIZE (2 * 1024)
#define BH_THREAD_DEFAULT_PRIORITY 0
#define BH_HAS_SQRT
#define BH_HAS_SQRTF

typedef int korp_thread;
typedef int *korp_tid;
typedef int korp_mutex;
typedef unsigned int korp_sem;
typedef struct {
	int dummy;
} korp_rwlock;
typedef struct {
	int dummy;
} korp_cond;

typedef int os_file_handle;
typedef void *os_dir_stream;
typedef int os_raw_file_handle;

static inline os_file_handle os_get_invalid_handle(void)
{
	return -1;
}

static inline int os_getpagesize(void)
{
	return 4096;
}

#endif /* _PLATFORM_INTERNAL_H */
