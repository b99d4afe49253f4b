/* Stand-in for Zephyr v4.2's shell API (include/zephyr/shell/shell.h), what
 * port/zephyr/shell.c uses, with its types (see ../kernel.h): the command tables are built from
 * typed entries, so a handler with the wrong signature or a wrong argument count fails. */
#ifndef ZEPHYR_API_STANDIN_SHELL_H
#define ZEPHYR_API_STANDIN_SHELL_H

#include <stddef.h>
#include <stdint.h>

struct shell {
	int opaque;
};

typedef int (*shell_cmd_handler)(const struct shell *sh, size_t argc, char **argv);

struct shell_static_args {
	uint8_t mandatory;
	uint8_t optional;
};

struct shell_static_entry {
	const char *syntax;
	const char *help;
	const union shell_cmd_entry *subcmd;
	shell_cmd_handler handler;
	struct shell_static_args args;
};

union shell_cmd_entry {
	const struct shell_static_entry *entry;
};

void shell_fprintf_normal(const struct shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void shell_fprintf_error(const struct shell *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define shell_print(_sh, _ft, ...) shell_fprintf_normal(_sh, _ft "\n", ##__VA_ARGS__)
#define shell_error(_sh, _ft, ...) shell_fprintf_error(_sh, _ft "\n", ##__VA_ARGS__)

#define SHELL_CMD_ARG(_syntax, _subcmd, _help, _handler, _mand, _opt)                      \
	{#_syntax, _help, _subcmd, _handler, {_mand, _opt}}
#define SHELL_CMD(_syntax, _subcmd, _help, _handler) SHELL_CMD_ARG(_syntax, _subcmd, _help, _handler, 0, 0)
#define SHELL_SUBCMD_SET_END {NULL, NULL, NULL, NULL, {0, 0}}
#define SHELL_STATIC_SUBCMD_SET_CREATE(name, ...)                                          \
	static const struct shell_static_entry shell_##name[] = {__VA_ARGS__};             \
	static const union shell_cmd_entry name = {.entry = shell_##name}
#define SHELL_CMD_REGISTER(syntax, subcmd, help, handler)                                  \
	const struct shell_static_entry shell_cmd_##syntax = {#syntax, help, subcmd, handler, {0, 0}}

#endif
