/* Stand-in for Zephyr's include/zephyr/sys/util.h: ../kernel.h holds what the port uses. */
#include <zephyr/kernel.h>
