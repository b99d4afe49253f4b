/*
 * What a firmware links of the core, for bench/firmware_size: the agent's whole public API is
 * referenced so --gc-sections keeps exactly what a device image would. The agent state is a
 * static here, as in the Zephyr application, so it shows up as this file's .bss.
 */
#include "edgerm/abi.h"
#include "edgerm/agent.h"

static edgerm_agent_t agent;
static uint8_t rx[CONFIG_EDGERM_RX_BUF_SIZE];
volatile uint32_t sink;

/* Port stubs: the real ones live in port/zephyr and are not counted. */
uint64_t edgerm_port_now_ms(void) { return sink; }
int edgerm_port_send(void *c, const uint8_t *b, size_t n) { (void)c; return (int)(b[0] + n); }
int edgerm_port_random(void *c, uint8_t *b, size_t n) { (void)c; b[0] = (uint8_t)n; return 0; }
int edgerm_port_persist(void *c, const edgerm_persist_t *p) { (void)c; return (int)p->seq_reserved; }
int edgerm_port_queue_save(void *c, const uint8_t *r, size_t n) { (void)c; return (int)(r[0] + n); }
int edgerm_port_queue_load(void *c, uint8_t *r, size_t n) { (void)c; return (int)(r[0] + n); }
int edgerm_port_task_start(void *c, const edgerm_task_start_t *s, char *m, size_t n)
{
	(void)c, (void)m, (void)n;
	return (int)s->task;
}
int edgerm_port_task_kill(void *c, uint32_t t) { (void)c; return (int)t; }
int edgerm_port_switch_master(void *c, const uint8_t *l, size_t n)
{
	(void)c;
	return l ? (int)(l[0] + n) : 0;
}
int edgerm_port_sensor_read(void *c, const char *n, size_t l, double *v)
{
	(void)c, (void)n, (void)l;
	*v = 0;
	return 0;
}

static int sensor(void *c, const char *n, size_t l, double *v)
{
	return edgerm_port_sensor_read(c, n, l, v);
}

void edgerm_size_entry(void)
{
	static const edgerm_agent_config_t cfg = {.name = "n", .token = "t"};
	static edgerm_abi_task_t task;
	static edgerm_task_spec_t spec;
	uint8_t mem[16];

	edgerm_agent_init(&agent, &cfg, 0, sink);
	edgerm_agent_on_datagram(&agent, rx, sink, sink);
	edgerm_agent_on_timer(&agent, edgerm_agent_next_deadline_ms(&agent));
	edgerm_agent_task_exited(&agent, sink, 5, 0, 0, "", 0, sink);
	edgerm_agent_publish(&agent, sink, rx, sink, sink);
	edgerm_agent_reset_identity(&agent, sink);
	sink = edgerm_agent_task_state(&agent, sink);
	sink = (uint32_t)edgerm_abi_task_init(&task, &spec);
	sink = (uint32_t)edgerm_abi_arg_count(&task);
	sink = (uint32_t)edgerm_abi_arg_get(&task, mem, sizeof(mem), 0, 0, 4);
	sink = (uint32_t)edgerm_abi_env_get(&task, mem, sizeof(mem), 0, 1, 0, 4);
	sink = (uint32_t)edgerm_abi_read_sensor(&task, mem, sizeof(mem), 0, 1, 8, sensor, 0);
	for (;;) {
	}
}
