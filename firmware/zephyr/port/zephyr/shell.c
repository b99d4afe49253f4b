/*
 * The operator's `edgerm` shell command (provisioning is a run-time act, never a build one):
 *
 *   edgerm provision <master-ip> <token> [port] [name]   store and (re)connect
 *   edgerm status                                          state, identity, tasks, counters
 *   edgerm forget                                          drop the identity, register afresh
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zephyr/shell/shell.h>
#include <zephyr/sys/util.h>

#include "agent_thread.h"
#include "edgerm_zephyr.h"

static const char *const state_names[] = {"registering", "reregistering", "active"};

static int cmd_provision(const struct shell *sh, size_t argc, char **argv)
{
	struct edgerm_provision p;

	memset(&p, 0, sizeof(p));
	if (strlen(argv[1]) >= sizeof(p.master) || strlen(argv[2]) >= sizeof(p.token) ||
	    (argc > 4 && strlen(argv[4]) >= sizeof(p.name))) {
		shell_error(sh, "value too long");
		return -EINVAL;
	}
	strcpy(p.master, argv[1]);
	strcpy(p.token, argv[2]);
	p.port = CONFIG_EDGERM_MASTER_PORT_DEFAULT;
	if (argc > 3) {
		char *end;
		unsigned long port = strtoul(argv[3], &end, 10);

		if (*end != '\0' || port == 0 || port > 65535) {
			shell_error(sh, "bad port %s", argv[3]);
			return -EINVAL;
		}
		p.port = (uint16_t)port;
	}
	if (argc > 4) {
		strcpy(p.name, argv[4]);
	}
	p.valid = true;
	if (edgerm_settings_save_provision(&p) < 0) {
		shell_error(sh, "could not store the provisioning");
		return -EIO;
	}
	edgerm_net_reprovision(&p);
	shell_print(sh, "provisioned: master [%s]:%u", p.master, p.port);
	return 0;
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
	SHELL_CMD_ARG(provision, NULL, "<master-ip> <token> [port] [name]", cmd_provision, 3, 2),
	SHELL_CMD(status, NULL, "Agent state, identity, tasks and counters", cmd_status),
	SHELL_CMD(forget, NULL, "Drop the identity and register afresh", cmd_forget),
	SHELL_SUBCMD_SET_END);

SHELL_CMD_REGISTER(edgerm, &edgerm_cmds, "EdgeRM agent", NULL);
