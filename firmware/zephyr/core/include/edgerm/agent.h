/*
 * The EdgeRM agent as a sans-IO state machine (docs/protocol.md, "agent" side), in C99 for
 * the Zephyr agent and its POSIX twin.
 *
 * Three drivers, as aioquic's QuicConnection: datagrams (edgerm_agent_on_datagram), one timer
 * (edgerm_agent_next_deadline_ms / edgerm_agent_on_timer) and the executor (task_exited,
 * publish). The core sends through edgerm_port_send and never reads a clock or blocks.
 *
 * Lifecycle (one table, see agent.c): REGISTERING (no identity: Register with a fresh nonce,
 * signed with the token's key; the secret is derived from both nonces) -> ACTIVE;
 * REREGISTERING (identity kept: Register protected with OSCORE, the secret as its master
 * secret and agent_id as its kid) -> ACTIVE;
 * ACTIVE -> REREGISTERING on a ReRegister command or an UNAUTHENTICATED answer;
 * REREGISTERING -> REGISTERING when the master does not know the identity.
 *
 * Resource handling: the agent struct holds every buffer (no allocation); module storage is
 * given by the shell in the config. Not thread-safe: a shell with several threads serialises
 * every edgerm_agent_* call (the Zephyr glue holds one mutex).
 */
#ifndef EDGERM_AGENT_H
#define EDGERM_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "edgerm/config.h"
#include "edgerm/oscore.h"
#include "edgerm/sha256.h"
#include "edgerm/wire.h"
#include "edgerm_port.h"

#define EDGERM_NO_DEADLINE UINT64_MAX
/* The saved update queue's header: the identity it was numbered under (agent_id, 4 bytes of the
 * secret), its first update id. */
#define EDGERM_QUEUE_REC_HDR_SIZE 12

/* Authentication of the agent link (docs/protocol.md, edgerm/wire/mac.py): the token never
 * crosses the link. A first registration carries EDGERM_NONCE_LEN random bytes and is signed
 * with token_key = SHA-256(token); the master answers with its own nonce, signed with the
 * secret = first EDGERM_SECRET_LEN bytes of HMAC-SHA256(token_key, "edgerm secret" ||
 * agent nonce || master nonce), which both sides compute. */
#define EDGERM_NONCE_LEN 8
#define EDGERM_SECRET_LEN 16
#define EDGERM_MAC_LEN 8

enum edgerm_agent_state {
	EDGERM_AGENT_REGISTERING = 0,
	EDGERM_AGENT_REREGISTERING = 1,
	EDGERM_AGENT_ACTIVE = 2,
};

typedef struct {
	const char *name;   /* Register.name */
	const char *token;  /* the cluster's agent token (provisioned at run time; never sent) */
	double cpus, mem_mb;
	const edgerm_device_t *devices; /* sensors announced; names are what tasks read */
	uint8_t devices_count;
	const char *os, *arch; /* attributes "os", "arch" */
	uint32_t rng_seed;  /* seeds message ids, tokens and jitter */
	void *port;         /* passed to every edgerm_port_* call */
	uint8_t *module_mem; /* module_slots x module_slot_size bytes */
	size_t module_slot_size;
	uint8_t module_slots; /* <= CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS */
} edgerm_agent_config_t;

/* Counters for the shell's log and the tests. */
typedef struct {
	uint32_t datagrams_bad, replies_bad, replies_bad_mac, exchanges_failed;
	/* replies_bad_mac counts every answer refused as not from the master: a bad MAC on the
	 * first registration's Registered, an OSCORE answer that does not verify, and an
	 * unprotected success answer to a protected request. */
	uint32_t commands_applied, updates_dropped, retransmissions;
} edgerm_agent_stats_t;

typedef struct {
	uint32_t task;
	uint8_t state, reason;
	uint8_t module_slot; /* 0xff: none */
	bool waiting;        /* STARTING, its module is downloading */
	int32_t exit_code;
	uint16_t spec_len;
	uint8_t spec[CONFIG_EDGERM_TASK_SPEC_SIZE];
} edgerm_task_slot_t;

typedef struct {
	uint8_t sha256[EDGERM_SHA256_LEN];
	uint32_t size, have;
	uint8_t state; /* 0 empty, 1 fetching, 2 ready */
	uint8_t refs;  /* running tasks using it */
	uint32_t used;  /* LRU stamp */
} edgerm_module_slot_t;

typedef struct {
	edgerm_agent_config_t cfg;
	edgerm_persist_t persist;
	uint8_t state;
	uint32_t seq;
	uint32_t heartbeat_ms, jitter_ms;
	uint32_t hb_command_ack; /* command_ack the master last got in a heartbeat */
	uint32_t rng;
	uint32_t lru;
	uint8_t nonce[EDGERM_NONCE_LEN]; /* of the first registration in flight */
	/* OSCORE (RFC 8613) with the master, derived from the identity: sender id = agent_id in
	 * minimal bytes, recipient id empty, master secret = the secret. */
	edgerm_oscore_ctx_t osc;

	/* The one exchange in flight (NSTART = 1). */
	uint8_t x_state, x_kind, x_token, x_retries;
	bool x_osc; /* the request is OSCORE-protected, its Partial IV is x_seq */
	uint16_t x_mid, last_sep_mid;
	uint32_t x_seq, x_timeout_ms, x_hb_ack;
	uint64_t x_deadline;
	uint16_t tx_len;
	uint8_t tx[CONFIG_EDGERM_TX_BUF_SIZE];

	uint64_t hb_due, retry_at;
	uint32_t backoff_ms;

	/* Unacknowledged updates, oldest first; the first has id q_first_id. They sit in q_rec
	 * behind an EDGERM_QUEUE_REC_HDR_SIZE-byte header (identity, q_first_id; filled when saved)
	 * so that the record edgerm_port_queue_save stores is one contiguous buffer. */
	uint32_t q_first_id;
	uint16_t q_len, q_count;
	uint8_t q_rec[EDGERM_QUEUE_REC_HDR_SIZE + CONFIG_EDGERM_UPDATE_QUEUE_SIZE];

	edgerm_task_slot_t tasks[CONFIG_EDGERM_MAX_TASKS];
	edgerm_module_slot_t modules[CONFIG_EDGERM_MODULE_CACHE_MAX_SLOTS];
	int8_t fetch_slot; /* -1: no download */
	uint8_t fetch_szx, fetch_failures;

	edgerm_agent_stats_t stats;
} edgerm_agent_t;

/* `persisted` is what the port stored last time, or NULL on a first boot. */
void edgerm_agent_init(edgerm_agent_t *a, const edgerm_agent_config_t *cfg,
		       const edgerm_persist_t *persisted, uint64_t now_ms);

/* A datagram from the master. 0, or a negative code when it was dropped (counted). The core
 * decrypts an OSCORE answer in place: buf is overwritten. */
int edgerm_agent_on_datagram(edgerm_agent_t *a, uint8_t *buf, size_t len, uint64_t now_ms);

/* When edgerm_agent_on_timer wants to run next (absolute ms), or EDGERM_NO_DEADLINE. */
uint64_t edgerm_agent_next_deadline_ms(const edgerm_agent_t *a);
void edgerm_agent_on_timer(edgerm_agent_t *a, uint64_t now_ms);

/* The executor reports that a task ended by itself: FINISHED, FAILED (reason EXITED_NONZERO,
 * TRAPPED, TIMEOUT, MEMORY_LIMIT) or ERROR. */
void edgerm_agent_task_exited(edgerm_agent_t *a, uint32_t task, uint8_t state, uint8_t reason,
			      int32_t exit_code, const char *msg, size_t msg_len, uint64_t now_ms);

/* A running task publishes data: 0, EDGERM_ABI_E_TOOBIG, EDGERM_ABI_E_AGAIN (queue full) or
 * EDGERM_ABI_E_NOTFOUND (no such running task). */
int edgerm_agent_publish(edgerm_agent_t *a, uint32_t task, const uint8_t *data, size_t len,
			 uint64_t now_ms);

/* Forget the identity (operator: `edgerm provision` of a new master) and register afresh. */
void edgerm_agent_reset_identity(edgerm_agent_t *a, uint64_t now_ms);

/* token_key = SHA-256(the token's UTF-8 bytes; NULL is ""): the key of a first registration. */
void edgerm_auth_token_key(const char *token, uint8_t key[EDGERM_SHA256_LEN]);

/* The agent secret after a first registration: the first EDGERM_SECRET_LEN bytes of
 * HMAC-SHA256(token_key, "edgerm secret" || agent_nonce || master_nonce). `secret` may be
 * `token_key` itself (it is read in full before secret is written). */
void edgerm_auth_secret(const uint8_t token_key[EDGERM_SHA256_LEN],
			const uint8_t agent_nonce[EDGERM_NONCE_LEN],
			const uint8_t master_nonce[EDGERM_NONCE_LEN], uint8_t secret[EDGERM_SECRET_LEN]);

/* The state of a task, or 0 when the agent does not know it. */
uint8_t edgerm_agent_task_state(const edgerm_agent_t *a, uint32_t task);

#endif /* EDGERM_AGENT_H */
