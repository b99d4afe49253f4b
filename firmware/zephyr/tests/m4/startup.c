/*
 * Minimal Cortex-M4 start-up for the unit tests in QEMU: a two-entry vector table (stack top,
 * reset handler). The handler copies .data from flash, clears .bss, opens the semihosting
 * streams and exits through semihosting with main's return value, which QEMU returns as its
 * own exit code. (newlib's crt0 _start is not used: it moves the stack to where QEMU's
 * SYS_HEAPINFO says, outside this board's RAM.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start__, __bss_end__, __stack_top;
extern void initialise_monitor_handles(void);
extern int main(void);

void reset_handler(void)
{
	memcpy(&__data_start, &__data_load,
	       (size_t)((uintptr_t)&__data_end - (uintptr_t)&__data_start));
	memset(&__bss_start__, 0, (size_t)((uintptr_t)&__bss_end__ - (uintptr_t)&__bss_start__));
	initialise_monitor_handles();
	exit(main());
}

__attribute__((section(".vectors"), used)) static const uintptr_t vectors[2] = {
	(uintptr_t)&__stack_top,
	(uintptr_t)reset_handler,
};
