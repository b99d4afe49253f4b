/* Stand-in for Zephyr's logging macros (see ../kernel.h): they take a printf format. */
#ifndef ZEPHYR_API_STANDIN_LOG_H
#define ZEPHYR_API_STANDIN_LOG_H

void z_log_standin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define LOG_MODULE_REGISTER(name, level) extern int z_log_module_##name
#define LOG_ERR(...) z_log_standin(__VA_ARGS__)
#define LOG_WRN(...) z_log_standin(__VA_ARGS__)
#define LOG_INF(...) z_log_standin(__VA_ARGS__)

#endif
