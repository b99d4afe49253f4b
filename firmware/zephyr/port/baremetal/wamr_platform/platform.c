/*
 * WAMR's vmcore platform API (platform_api_vmcore.h) for a bare-metal Cortex-M: what its
 * interpreter needs with one thread and no OS. Time comes from the port's clock
 * (edgerm_port_now_ms), output from newlib's printf (semihosting in QEMU), memory from WAMR's
 * own pool (BH_MALLOC is wasm_runtime_malloc).
 */
#include "platform_api_vmcore.h"
#include "platform_api_extension.h"

uint64_t edgerm_port_now_ms(void);

int bh_platform_init(void)
{
	return 0;
}

void bh_platform_destroy(void)
{
}

/* Never called with a pool allocator; present because the API names it. */
void *os_malloc(unsigned size)
{
	(void)size;
	return NULL;
}

void *os_realloc(void *ptr, unsigned size)
{
	(void)ptr, (void)size;
	return NULL;
}

void os_free(void *ptr)
{
	(void)ptr;
}

int os_printf(const char *format, ...)
{
	va_list ap;
	int n;

	va_start(ap, format);
	n = vprintf(format, ap);
	va_end(ap);
	return n;
}

int os_vprintf(const char *format, va_list ap)
{
	return vprintf(format, ap);
}

uint64 os_time_get_boot_us(void)
{
	return edgerm_port_now_ms() * 1000u;
}

uint64 os_time_thread_cputime_us(void)
{
	return os_time_get_boot_us();
}

static int the_thread;

korp_tid os_self_thread(void)
{
	return &the_thread;
}

/* No native stack check: WAMR's own operand and frame stack (per task, from the pool) bounds
 * what a task can nest. */
uint8 *os_thread_get_stack_boundary(void)
{
	return NULL;
}

void os_thread_jit_write_protect_np(bool enabled)
{
	(void)enabled;
}

int os_mutex_init(korp_mutex *mutex)
{
	*mutex = 0;
	return BHT_OK;
}

int os_mutex_destroy(korp_mutex *mutex)
{
	(void)mutex;
	return BHT_OK;
}

int os_mutex_lock(korp_mutex *mutex)
{
	(void)mutex;
	return BHT_OK;
}

int os_mutex_unlock(korp_mutex *mutex)
{
	(void)mutex;
	return BHT_OK;
}

/* Linear memories: from WAMR's pool, as on Zephyr. */
void *os_mmap(void *hint, size_t size, int prot, int flags, os_file_handle file)
{
	(void)hint, (void)prot, (void)flags, (void)file;
	if ((uint64)size >= UINT32_MAX) {
		return NULL;
	}
	return BH_MALLOC((uint32)size);
}

void *os_mremap(void *old_addr, size_t old_size, size_t new_size)
{
	void *p = os_mmap(NULL, new_size, 0, 0, 0);

	if (p && old_addr) {
		memcpy(p, old_addr, old_size < new_size ? old_size : new_size);
		BH_FREE(old_addr);
	}
	return p;
}

void os_munmap(void *addr, size_t size)
{
	(void)size;
	if (addr) {
		BH_FREE(addr);
	}
}

int os_mprotect(void *addr, size_t size, int prot)
{
	(void)addr, (void)size, (void)prot;
	return 0;
}

void os_dcache_flush(void)
{
}

void os_icache_flush(void *start, size_t len)
{
	(void)start, (void)len;
}
