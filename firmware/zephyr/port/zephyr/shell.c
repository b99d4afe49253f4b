/*
 * The operator's `edgerm` shell command (provisioning is a run-time act, never a build one):
 *
 *   edgerm provision <masters> <token> [port] [name]   store and (re)connect
 *   edgerm masters [<masters>]                         show, or replace, the list of masters
 *   edgerm status                                      state, identity, tasks, counters
 *   edgerm forget                                      drop the identity, register afresh
 *
 * <masters>: one master or several (they share one etcd cluster, one leads: docs/ha.md),
 * separated by commas, each an IPv6 or IPv4 address with an optional port ("fd00::1",
 * "[fd00::1]:5683", "192.0.2.1:5684", "coap://[fd00::2]:5683"); [port] is the port of those
 * that name none. At most CONFIG_EDGERM_MAX_MASTERS.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zephyr/shell/shell.h>
#include <zephyr/sys/util.h>

#include "agent_thread.h"
#include "edgerm_zephyr.h"

static const char *const state_names[] = {"registering", "reregistering", "active"};

/* Parse and check a list of masters for this device; false (said on the shell) when bad. */
static bool masters_arg(const struct shell *sh, const char *arg, uint16_t port,
			edgerm_masters_t *out)
{
	int r = edgerm_masters_parse(out, arg, strlen(arg), port);

	if (r == -E2BIG) {
		shell_error(sh, "at most %d masters (CONFIG_EDGERM_MAX_MASTERS)",
			    CONFIG_EDGERM_MAX_MASTERS);
		return false;
	}
	if (r < 0) {
		shell_error(sh, "bad list of masters %s: give ADDRESS[:PORT] or [IPV6]:PORT "
				"entries, comma-separated, none twice", arg);
		return false;
	}
	if (!edgerm_net_addresses_ok(out)) {
		shell_error(sh, "%s: every master must be an IP address (the device has no DNS)",
			    arg);
		return false;
	}
	return true;
}

static int store_and_apply(const struct shell *sh, const struct edgerm_provision *p)
{
	static char text[EDGERM_MASTERS_TEXT_SIZE];

	if (edgerm_settings_save_provision(p) < 0) {
		shell_error(sh, "could not store the provisioning");
		return -EIO;
	}
	edgerm_net_reprovision(p);
	(void)edgerm_masters_format(&p->masters, text, sizeof(text));
	shell_print(sh, "provisioned: masters %s", text);
	return 0;
}

static int cmd_provision(const struct shell *sh, size_t argc, char **argv)
{
	struct edgerm_provision p;
	unsigned long port = CONFIG_EDGERM_MASTER_PORT_DEFAULT;

	memset(&p, 0, sizeof(p));
	if (strlen(argv[2]) >= sizeof(p.token) || (argc > 4 && strlen(argv[4]) >= sizeof(p.name))) {
		shell_error(sh, "value too long");
		return -EINVAL;
	}
	if (argc > 3) {
		char *end;

		port = strtoul(argv[3], &end, 10);
		if (*end != '\0' || port == 0 || port > 65535) {
			shell_error(sh, "bad port %s", argv[3]);
			return -EINVAL;
		}
	}
	if (!masters_arg(sh, argv[1], (uint16_t)port, &p.masters)) {
		return -EINVAL;
	}
	strcpy(p.token, argv[2]);
	if (argc > 4) {
		strcpy(p.name, argv[4]);
	}
	p.valid = true;
	return store_and_apply(sh, &p);
}

static int cmd_masters(const struct shell *sh, size_t argc, char **argv)
{
	static char text[EDGERM_MASTERS_TEXT_SIZE];
	struct edgerm_provision p;
	bool provisioned = edgerm_net_provision_get(&p);

	if (argc < 2) {
		if (p.masters.count == 0) {
			shell_print(sh, "no masters: run `edgerm provision <masters> <token>`");
			return 0;
		}
		char one[EDGERM_MASTER_TEXT_SIZE];

		(void)edgerm_masters_format(&p.masters, text, sizeof(text));
		(void)edgerm_master_format(&p.masters.addr[p.masters.current], one, sizeof(one));
		shell_print(sh, "masters %s; in use: %s (%u of %u)", text, one,
			    p.masters.current + 1u, p.masters.count);
		return 0;
	}
	if (!provisioned) {
		shell_error(sh, "not provisioned: run `edgerm provision <masters> <token>` first");
		return -EINVAL;
	}
	if (!masters_arg(sh, argv[1], CONFIG_EDGERM_MASTER_PORT_DEFAULT, &p.masters)) {
		return -EINVAL;
	}
	return store_and_apply(sh, &p);
}

static int cmd_status(const struct shell *sh, size_t argc, char **argv)
{
	ARG_UNUSED(argc), ARG_UNUSED(argv);
	edgerm_agent_t *a = edgerm_agent();

	edgerm_agent_lock();
	shell_print(sh, "state %s, agent_id %u, seq %u, command_ack %u, queued updates %u",
		    a->state < 3 ? state_names[a->state] : "?", a->persist.agent_id, a->seq,
		    a->persist.command_ack, a->q_count);
	for (size_t i = 0; i < CONFIG_EDGERM_MAX_TASKS; i++) {
		if (a->tasks[i].task) {
			shell_print(sh, "  task %u: state %u reason %u", a->tasks[i].task,
				    a->tasks[i].state, a->tasks[i].reason);
		}
	}
	shell_print(sh, "bad datagrams %u, bad replies %u, bad macs %u, failed exchanges %u, "
			"retransmissions %u",
		    a->stats.datagrams_bad, a->stats.replies_bad, a->stats.replies_bad_mac,
		    a->stats.exchanges_failed, a->stats.retransmissions);
	edgerm_agent_unlock();
	return 0;
}

static int cmd_forget(const struct shell *sh, size_t argc, char **argv)
{
	ARG_UNUSED(argc), ARG_UNUSED(argv);
	edgerm_net_forget_identity();
	shell_print(sh, "identity dropped: the agent registers afresh (signed with the token's key)");
	return 0;
}

SHELL_STATIC_SUBCMD_SET_CREATE(
	edgerm_cmds,
	SHELL_CMD_ARG(provision, NULL, "<master-ip>[:port][,<master-ip>[:port]...] <token> [port] [name]",
		      cmd_provision, 3, 2),
	SHELL_CMD_ARG(masters, NULL, "[<master-ip>[:port][,...]]: show or replace the masters",
		      cmd_masters, 1, 1),
	SHELL_CMD(status, NULL, "Agent state, identity, tasks and counters", cmd_status),
	SHELL_CMD(forget, NULL, "Drop the identity and register afresh", cmd_forget),
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(edgerm, &edgerm_cmds, "EdgeRM agent", NULL);
