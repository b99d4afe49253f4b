/* Stand-in for Zephyr v4.2's include/zephyr/random/random.h (see ../kernel.h). */
#ifndef ZEPHYR_API_STANDIN_RANDOM_H
#define ZEPHYR_API_STANDIN_RANDOM_H

#include <stddef.h>
#include <stdint.h>

uint32_t sys_rand32_get(void);
int sys_csrand_get(void *dst, size_t len);

#endif
