/*
 * Every size and timing of the EdgeRM agent core, with the defaults used when the core is built
 * outside Zephyr. On Zephyr each one is a Kconfig option of the same name (firmware/zephyr/Kconfig,
 * with its range); the POSIX port and the host tests may override them with -D.
 *
 * Units are in the names: _MS milliseconds, _SIZE bytes, _PERCENT integer percent, _MAX_ a count.
 * The defaults here equal the Kconfig defaults (tests/firmware/test_core.py checks it), so the
 * host tests and bench/firmware_size see the device's configuration.
 */
#ifndef EDGERM_CONFIG_H
#define EDGERM_CONFIG_H

/* --- wire codec --------------------------------------------------------------------------- */

/* Elements kept per repeated field of a decoded message (ports, devices, args, env, ...). A
 * message with more is refused as too large. */
#ifndef CONFIG_EDGERM_WIRE_MAX_REPEATED
#define CONFIG_EDGERM_WIRE_MAX_REPEATED 4
#endif

/* Commands kept per AgentReply; the master sends what fits in max_payload, the rest later. */
#ifndef CONFIG_EDGERM_WIRE_MAX_COMMANDS
#define CONFIG_EDGERM_WIRE_MAX_COMMANDS 4
#endif

/* 1: decode every field of every agent-link message (host builds, the vector tests). 0 (the
 * device default): members the agent never reads - Docker and MicroPython specs, custom
 * resources, port ranges - are checked to be well-formed and skipped, saving flash. */
#ifndef CONFIG_EDGERM_WIRE_FULL_SCHEMA
#define CONFIG_EDGERM_WIRE_FULL_SCHEMA 0
#endif

/* Deepest CBOR nesting accepted (the same bound as edgerm.wire.Limits.max_depth). */
#ifndef CONFIG_EDGERM_WIRE_MAX_DEPTH
#define CONFIG_EDGERM_WIRE_MAX_DEPTH 16
#endif

/* --- CoAP message layer (RFC 7252 section 4.8, integer percents as in Zephyr's net/coap) --- */

/* ACK_TIMEOUT 1 s and MAX_RETRANSMIT 2: an exchange gives up after 7 x 1..1.5 s and the next
 * call is a new exchange, which the master counts as a sign of life (a retransmission it
 * answers from its cache does not). With the master's default 60 s UNREACHABLE window this
 * keeps a false UNREACHABLE at 20 % loss per datagram below 1e-5 per agent-day; the RFC's
 * 2 s / 4 could stay silent 93 s on one exchange (docs/agent.md, "Liveness on a lossy link"). */
#ifndef CONFIG_EDGERM_COAP_ACK_TIMEOUT_MS
#define CONFIG_EDGERM_COAP_ACK_TIMEOUT_MS 1000
#endif
#ifndef CONFIG_EDGERM_COAP_ACK_RANDOM_PERCENT
#define CONFIG_EDGERM_COAP_ACK_RANDOM_PERCENT 150
#endif
#ifndef CONFIG_EDGERM_COAP_BACKOFF_PERCENT
#define CONFIG_EDGERM_COAP_BACKOFF_PERCENT 200
#endif
#ifndef CONFIG_EDGERM_COAP_MAX_RETRANSMIT
#define CONFIG_EDGERM_COAP_MAX_RETRANSMIT 2
#endif
/* How long to wait for a separate response after the empty ACK. */
#ifndef CONFIG_EDGERM_COAP_RESPONSE_TIMEOUT_MS
#define CONFIG_EDGERM_COAP_RESPONSE_TIMEOUT_MS 10000
#endif

/* --- agent -------------------------------------------------------------------------------- */

/* Largest datagram the agent builds (a registration is the biggest, ~130 bytes). */
#ifndef CONFIG_EDGERM_TX_BUF_SIZE
#define CONFIG_EDGERM_TX_BUF_SIZE 256
#endif
/* Largest payload the agent accepts, announced as Register.max_payload. The shell's receive
 * buffer must hold this plus the CoAP header and options (CONFIG_EDGERM_RX_BUF_SIZE). */
#ifndef CONFIG_EDGERM_MAX_PAYLOAD_SIZE
#define CONFIG_EDGERM_MAX_PAYLOAD_SIZE 512
#endif
#ifndef CONFIG_EDGERM_RX_BUF_SIZE
#define CONFIG_EDGERM_RX_BUF_SIZE (CONFIG_EDGERM_MAX_PAYLOAD_SIZE + 64)
#endif
/* Block2 size asked for when downloading a module: 16 << SZX, 64..1024. */
#ifndef CONFIG_EDGERM_BLOCK_SIZE
#define CONFIG_EDGERM_BLOCK_SIZE 256
#endif
/* Tasks the agent tracks at once (running, starting, and recently ended ones). */
#ifndef CONFIG_EDGERM_MAX_TASKS
#define CONFIG_EDGERM_MAX_TASKS 4
#endif
/* Encoded TaskSpec kept per task while its module downloads. */
#ifndef CONFIG_EDGERM_TASK_SPEC_SIZE
#define CONFIG_EDGERM_TASK_SPEC_SIZE 160
#endif
/* Bytes of queued, unacknowledged status updates and publishes. */
#ifndef CONFIG_EDGERM_UPDATE_QUEUE_SIZE
#define CONFIG_EDGERM_UPDATE_QUEUE_SIZE 1024
#endif
/* Part of the queue that publishes may not use, so status updates always fit. */
#ifndef CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE
#define CONFIG_EDGERM_UPDATE_QUEUE_RESERVE_SIZE 256
#endif
/* Longest status message (trap text, log tail) sent by this agent. */
#ifndef CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE
#define CONFIG_EDGERM_STATUS_MESSAGE_MAX_SIZE 64
#endif
/* Largest publish a task may send (the ABI allows up to 1024). */
#ifndef CONFIG_EDGERM_PUBLISH_MAX_SIZE
#define CONFIG_EDGERM_PUBLISH_MAX_SIZE 128
#endif
/* Heartbeat interval used until the master's Registered says otherwise (the master's default). */
#ifndef CONFIG_EDGERM_HEARTBEAT_DEFAULT_MS
#define CONFIG_EDGERM_HEARTBEAT_DEFAULT_MS 5000
#endif
/* First pause after an exchange failed; doubles up to CONFIG_EDGERM_RETRY_MAX_MS. */
#ifndef CONFIG_EDGERM_RETRY_MIN_MS
#define CONFIG_EDGERM_RETRY_MIN_MS 1000
#endif
#ifndef CONFIG_EDGERM_RETRY_MAX_MS
#define CONFIG_EDGERM_RETRY_MAX_MS 60000
#endif
/* Sequence numbers reserved per write of the persisted seq, so flash is written once per this
 * many calls and a reboot still never reuses a seq. */
#ifndef CONFIG_EDGERM_SEQ_RESERVE_MAX
#define CONFIG_EDGERM_SEQ_RESERVE_MAX 64
#endif
/* Module cache slots (content-addressed by sha256); their memory is given by the shell. */
#ifndef CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS
#define CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS 2
#endif
/* Devices (sensors) the agent announces. */
#ifndef CONFIG_EDGERM_MAX_DEVICES
#define CONFIG_EDGERM_MAX_DEVICES 4
#endif

/* The WAMR executor (port/wamr/wamr_exec.c; not the core, but every build of it): task slots,
 * its one pool, each task's operand stack and app heap, how long a kill waits, the log tail. */
#ifndef CONFIG_EDGERM_WASM_MAX_SLOTS
#define CONFIG_EDGERM_WASM_MAX_SLOTS 2
#endif
#ifndef CONFIG_EDGERM_WAMR_POOL_SIZE
#define CONFIG_EDGERM_WAMR_POOL_SIZE 155648
#endif
#ifndef CONFIG_EDGERM_WASM_STACK_SIZE
#define CONFIG_EDGERM_WASM_STACK_SIZE 4096
#endif
#ifndef CONFIG_EDGERM_WASM_HEAP_SIZE
#define CONFIG_EDGERM_WASM_HEAP_SIZE 0
#endif
#ifndef CONFIG_EDGERM_KILL_TIMEOUT_MS
#define CONFIG_EDGERM_KILL_TIMEOUT_MS 1000
#endif
#ifndef CONFIG_EDGERM_LOG_TAIL_SIZE
#define CONFIG_EDGERM_LOG_TAIL_SIZE 64
#endif

#endif /* EDGERM_CONFIG_H */
