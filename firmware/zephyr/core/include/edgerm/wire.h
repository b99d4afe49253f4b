/*
 * EdgeRM wire codec for the agent link: the messages of proto/edgerm.proto that an agent sends
 * or receives, as C structs, to and from deterministic CBOR (RFC 8949 section 4.2.1), on top of
 * zcbor's runtime primitives.
 *
 * Decoded strings and byte strings are slices of the input buffer (zero copy, like zcbor's
 * zcbor_string): they stay valid only as long as that buffer. Repeated fields are fixed arrays
 * plus a count (CONFIG_EDGERM_WIRE_MAX_REPEATED); a message with more elements is refused.
 * Sub-messages and oneof members carry a `has_`/`which` flag because a present but empty one is
 * written on the wire (`heartbeat{}` is `05 a0`).
 *
 * Decoding distrusts its input: `edgerm_wire_check_untrusted` first walks the whole buffer with
 * an iterative, depth-bounded scanner, so zcbor then only ever sees well-formed CBOR. The agent
 * accepts only deterministic encodings - shortest heads, definite lengths, unsigned map keys in
 * ascending order - because the master sends nothing else and because the reply MAC is checked
 * over the received bytes. Every decoder returns 0 or a negative EDGERM_WIRE_E_* code and
 * leaves nothing half-applied outside the output struct.
 */
#ifndef EDGERM_WIRE_H
#define EDGERM_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgerm/config.h"

#define EDGERM_MAX_REP CONFIG_EDGERM_WIRE_MAX_REPEATED

/* Decode errors: whose fault is always the peer's. */
#define EDGERM_WIRE_E_MALFORMED (-1) /* not well-formed or not deterministic CBOR */
#define EDGERM_WIRE_E_SCHEMA (-2)    /* well-formed, but not the message (type, range, oneof) */
#define EDGERM_WIRE_E_TOO_LARGE (-3) /* more elements than this agent keeps */
#define EDGERM_WIRE_E_NOSPACE (-4)   /* encoding: the output buffer is too small */

/* Enum values of proto/edgerm.proto that the agent uses. */
enum edgerm_task_state {
	EDGERM_TASK_STATE_UNSPECIFIED = 0,
	EDGERM_STAGING = 1,
	EDGERM_STARTING = 2,
	EDGERM_RUNNING = 3,
	EDGERM_KILLING = 4,
	EDGERM_FINISHED = 5,
	EDGERM_FAILED = 6,
	EDGERM_KILLED = 7,
	EDGERM_ERROR = 8,
	EDGERM_LOST = 9,
	EDGERM_UNREACHABLE = 10,
	EDGERM_DROPPED = 11,
};

enum edgerm_reason {
	EDGERM_REASON_UNSPECIFIED = 0,
	EDGERM_EXITED_NONZERO = 1,
	EDGERM_MEMORY_LIMIT = 2,
	EDGERM_KILL_REQUESTED = 3,
	EDGERM_AGENT_RESTARTED = 6,
	EDGERM_LAUNCH_FAILED = 7,
	EDGERM_MODULE_UNAVAILABLE = 8,
	EDGERM_MODULE_HASH_MISMATCH = 9,
	EDGERM_TIMEOUT = 10,
	EDGERM_TRAPPED = 11,
	EDGERM_INVALID_TASK = 12,
	EDGERM_UNSUPPORTED_EXECUTOR = 13,
	EDGERM_KILLED_BEFORE_LAUNCH = 14,
	EDGERM_RESOURCES_UNAVAILABLE = 18,
	EDGERM_EXECUTOR_ERROR = 19,
};

enum edgerm_executor { EDGERM_EXECUTOR_DOCKER = 1, EDGERM_EXECUTOR_WASM = 2 };
enum edgerm_device_kind { EDGERM_DEVICE_SENSOR = 1, EDGERM_DEVICE_ACTUATOR = 2 };
enum edgerm_error_code {
	EDGERM_ERR_UNAUTHENTICATED = 2,
	EDGERM_ERR_NOT_FOUND = 4,
	EDGERM_ERR_NOT_LEADER = 11,
};

/* A slice of a buffer; same layout as zcbor's struct zcbor_string. */
typedef struct {
	const uint8_t *ptr;
	size_t len;
} edgerm_slice_t;

typedef struct {
	uint64_t begin, end;
} edgerm_range_t;

typedef struct {
	edgerm_slice_t items[EDGERM_MAX_REP];
	uint8_t count;
} edgerm_set_t;

typedef struct {
	edgerm_slice_t name, unit, path;
	int32_t kind;
	uint32_t shares;
} edgerm_device_t;

/* oneof members are numbered by their field number; 0 means none. */
typedef struct {
	edgerm_slice_t name;
	uint8_t which; /* 2 scalar, 3 range, 4 set */
	union {
		double scalar;
		edgerm_range_t range;
		edgerm_set_t set;
	} v;
} edgerm_custom_t;

typedef struct {
	double cpus, mem_mb, disk_mb;
	edgerm_range_t ports[EDGERM_MAX_REP];
	edgerm_device_t devices[EDGERM_MAX_REP];
	edgerm_custom_t custom[EDGERM_MAX_REP];
	uint8_t ports_count, devices_count, custom_count;
} edgerm_resources_t;

typedef struct {
	edgerm_slice_t name;
	uint8_t which; /* 2 text, 3 scalar, 4 set */
	union {
		edgerm_slice_t text;
		double scalar;
		edgerm_set_t set;
	} v;
} edgerm_attribute_t;

typedef struct {
	edgerm_slice_t name, value;
} edgerm_env_t;

typedef struct {
	uint32_t container_port, host_port;
	bool udp;
} edgerm_port_mapping_t;

typedef struct {
	edgerm_slice_t image;
	edgerm_slice_t command[EDGERM_MAX_REP];
	edgerm_env_t env[EDGERM_MAX_REP];
	edgerm_port_mapping_t ports[EDGERM_MAX_REP];
	uint8_t command_count, env_count, ports_count;
	int32_t network;
	uint32_t timeout_s;
} edgerm_docker_task_t;

/* WasmTask (field 4 of TaskSpec) and MicroPythonTask (field 5) share this layout; `entry` is
 * WasmTask-only, `mpy` MicroPythonTask-only. */
typedef struct {
	edgerm_slice_t sha256;
	uint32_t size;
	edgerm_slice_t entry;
	bool mpy;
	edgerm_slice_t args[EDGERM_MAX_REP];
	edgerm_env_t env[EDGERM_MAX_REP];
	uint8_t args_count, env_count;
	uint32_t timeout_s;
} edgerm_wasm_task_t;

typedef struct {
	edgerm_slice_t name;
	bool has_resources;
	edgerm_resources_t resources;
	uint8_t which; /* 3 docker, 4 wasm, 5 micropython */
	union {
		edgerm_docker_task_t docker;
		edgerm_wasm_task_t wasm; /* also micropython */
	} kind;
} edgerm_task_spec_t;

typedef struct {
	uint32_t task;
	int32_t state;
} edgerm_task_report_t;

typedef struct {
	edgerm_slice_t name;
	bool has_resources;
	edgerm_resources_t resources;
	edgerm_attribute_t attributes[EDGERM_MAX_REP];
	int32_t executors[EDGERM_MAX_REP];
	edgerm_task_report_t tasks[CONFIG_EDGERM_MAX_TASKS > EDGERM_MAX_REP ? CONFIG_EDGERM_MAX_TASKS
									      : EDGERM_MAX_REP];
	uint8_t attributes_count, executors_count, tasks_count;
	uint32_t protocol_version;
	edgerm_slice_t nonce; /* first registration only: the agent's 8 random bytes */
	uint32_t max_payload;
	uint32_t update_next;
} edgerm_register_t;

typedef struct {
	uint32_t command_ack;
	bool has_resources;
	edgerm_resources_t resources;
	edgerm_attribute_t attributes[EDGERM_MAX_REP];
	uint8_t attributes_count;
} edgerm_heartbeat_t;

typedef struct {
	uint32_t update_id, task;
	int32_t state, reason;
	edgerm_slice_t message;
	int32_t exit_code;
} edgerm_status_t;

typedef struct {
	uint32_t update_id, task;
	edgerm_slice_t data, topic;
} edgerm_publish_t;

typedef struct {
	edgerm_slice_t sha256;
	uint32_t offset, length;
} edgerm_module_request_t;

typedef struct {
	uint32_t agent_id, seq;
	edgerm_slice_t mac;
	uint8_t which; /* 4 register, 5 heartbeat, 6 status, 7 publish, 8 module */
	union {
		edgerm_register_t reg;
		edgerm_heartbeat_t heartbeat;
		edgerm_status_t status;
		edgerm_publish_t publish;
		edgerm_module_request_t module;
	} call;
} edgerm_agent_call_t;

typedef struct {
	uint32_t id;
	uint8_t which; /* 2 launch, 3 kill, 4 fetch, 5 reregister */
	uint32_t task;          /* launch, kill */
	bool has_spec;          /* launch */
	edgerm_slice_t spec;    /* launch: the encoded TaskSpec, decode with edgerm_wire_decode_task_spec */
	edgerm_slice_t sha256;  /* fetch */
	uint32_t size;          /* fetch */
} edgerm_command_t;

typedef struct {
	uint32_t agent_id;
	edgerm_slice_t nonce; /* first registration only: the master's 8 random bytes */
	uint32_t heartbeat_ms, jitter_ms, update_ack;
} edgerm_registered_t;

typedef struct {
	int32_t code;
	edgerm_slice_t message;
	edgerm_slice_t leader; /* NOT_LEADER: the leading master's URL for this transport, or empty */
} edgerm_error_t;

typedef struct {
	edgerm_slice_t sha256;
	uint32_t offset, total;
	edgerm_slice_t data;
} edgerm_module_chunk_t;

/* Commands are kept encoded (one slice each, already validated) so a reply costs little RAM;
 * decode them one at a time with edgerm_wire_decode_command. */
typedef struct {
	uint32_t seq;
	edgerm_slice_t mac;
	uint32_t update_ack;
	edgerm_slice_t commands[CONFIG_EDGERM_WIRE_MAX_COMMANDS];
	uint8_t commands_count;
	bool has_registered, has_error, has_module;
	edgerm_registered_t registered;
	edgerm_error_t error;
	edgerm_module_chunk_t module;
} edgerm_agent_reply_t;

/* Walk one untrusted buffer: 0 when it is exactly one well-formed, deterministic CBOR item no
 * deeper than CONFIG_EDGERM_WIRE_MAX_DEPTH. */
int edgerm_wire_check_untrusted(const uint8_t *buf, size_t len);

int edgerm_wire_decode_agent_reply_untrusted(const uint8_t *buf, size_t len,
					     edgerm_agent_reply_t *out);
int edgerm_wire_decode_agent_call_untrusted(const uint8_t *buf, size_t len,
					    edgerm_agent_call_t *out);
/* A command or spec slice that came out of a decoded reply (already checked). */
int edgerm_wire_decode_command(edgerm_slice_t enc, edgerm_command_t *out);
int edgerm_wire_decode_task_spec(const uint8_t *buf, size_t len, edgerm_task_spec_t *out);

/* Encoders return the encoded length or EDGERM_WIRE_E_NOSPACE. */
int edgerm_wire_encode_agent_call(const edgerm_agent_call_t *in, uint8_t *buf, size_t cap);
int edgerm_wire_encode_agent_reply(const edgerm_agent_reply_t *in, uint8_t *buf, size_t cap);

/* Feed `fn` the bytes that the MAC of an encoded AgentCall/AgentReply covers: the message with
 * its `mac` entry (key `mac_key`: 3 in AgentCall, 2 in AgentReply) left out. `buf` must have
 * passed edgerm_wire_check_untrusted. Returns 0, or EDGERM_WIRE_E_MALFORMED. */
typedef void (*edgerm_wire_sink_t)(void *ctx, const uint8_t *data, size_t len);
int edgerm_wire_unsigned_view(const uint8_t *buf, size_t len, uint32_t mac_key,
			      edgerm_wire_sink_t fn, void *ctx);

/* Table of every message type the codec handles, for the vector and fuzz tests. */
typedef struct {
	const char *name;
	int (*decode)(const uint8_t *buf, size_t len, void *out);
	int (*encode)(const void *in, uint8_t *buf, size_t cap);
} edgerm_wire_type_t;
extern const edgerm_wire_type_t edgerm_wire_types[];
/* Big enough for any struct in edgerm_wire_types. */
typedef union {
	edgerm_agent_call_t call;
	edgerm_agent_reply_t reply;
	edgerm_task_spec_t spec;
	edgerm_command_t command;
} edgerm_wire_any_t;

#endif /* EDGERM_WIRE_H */
