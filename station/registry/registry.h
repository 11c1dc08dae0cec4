/* The station's device registry: tenants, work orders, pre-registration
 * lists, devices and their state machine, the EK deny list and per-device
 * evidence. It keeps its tables in the CA's database (ca/store.h) so that a
 * device, its certificates and the audit entries commit in one transaction.
 *
 * Device states (docs/registry.md):
 *
 *   preregistered -> provisioning -> provisioned -> revoked
 *                                                -> decommissioned
 *                                                -> lost
 *                                                -> repurposed
 *
 * and the few moves back that the lifecycle needs (an aborted provisioning
 * returns to preregistered, a repurposed device starts a new life). The
 * allowed moves are one table (kl_registry_transition_allowed); anything else
 * is -KL_E_STATE naming both states.
 *
 * EK hashes are SHA-256 over the EK public key as a DER SubjectPublicKeyInfo
 * (kl_registry_ek_hash): stable across EK certificate re-issue, and what a
 * device maker can put in a pre-registration list. In files and in the
 * database they are 64 lowercase hex digits.
 *
 * Every write runs in a kl_store transaction (nested in the caller's when one
 * is open) and writes a kl_store_audit entry with its actor in the same
 * transaction. Functions return 0 (or a count) or a negative kl_err with the
 * detail recorded; outputs are written only on success. */
#ifndef KL_STATION_REGISTRY_H
#define KL_STATION_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "store.h"

typedef struct kl_registry kl_registry;

#define KL_REGISTRY_NAME_MAX 64 /* serials, tenant and work-order names */

typedef enum kl_device_state {
	KL_DEVICE_PREREGISTERED = 0,
	KL_DEVICE_PROVISIONING,
	KL_DEVICE_PROVISIONED,
	KL_DEVICE_REVOKED,
	KL_DEVICE_DECOMMISSIONED,
	KL_DEVICE_LOST,
	KL_DEVICE_REPURPOSED,
	KL_DEVICE__MAX
} kl_device_state;

/* "preregistered", "provisioning", ...; "unknown" out of range. */
const char *kl_registry_state_name(kl_device_state s);
/* The state of that name, or -KL_E_INVALID listing the valid names. */
int kl_registry_state_from_name(const char *name) KL_MUST_CHECK;
/* Whether the state machine allows from -> to. */
bool kl_registry_transition_allowed(kl_device_state from, kl_device_state to);

/* SHA-256 of the DER SubjectPublicKeyInfo of ek. */
int kl_registry_ek_hash(EVP_PKEY *ek, unsigned char out[32]) KL_MUST_CHECK;
/* 64 hex digits (any case) to bytes; -KL_E_INVALID otherwise. */
int kl_registry_ek_from_hex(const char *hex, unsigned char out[32]) KL_MUST_CHECK;
void kl_registry_ek_to_hex(const unsigned char ek[32], char out[65]);

/* Checks a serial, tenant or work-order name: 1..64 printable ASCII
 * characters, no space, no comma. what names it in the error. */
int kl_registry_check_name(const char *what, const char *s) KL_MUST_CHECK;

/* Opens the registry over an open store, bringing its schema ("registry"
 * migrations) up to date. The store stays the caller's and must outlive the
 * registry. */
int kl_registry_open(kl_store *store, kl_registry **ret) KL_MUST_CHECK;
void kl_registry_free(kl_registry *r);
kl_store *kl_registry_store(kl_registry *r);

/* Tenants. Names are unique: adding one twice is -KL_E_EXISTS. */
typedef struct kl_registry_tenant {
	int64_t id;
	char name[KL_REGISTRY_NAME_MAX + 1];
	int64_t created; /* unix time */
} kl_registry_tenant;

int kl_registry_tenant_add(kl_registry *r, const char *name, const char *actor) KL_MUST_CHECK;
int kl_registry_tenant_get(kl_registry *r, const char *name, kl_registry_tenant *ret) KL_MUST_CHECK;

/* Work orders belong to a tenant; names are unique per tenant. quota is the
 * most devices the order may provision (every device of the order that got
 * past preregistered counts), or negative for no limit. */
typedef struct kl_registry_work_order {
	int64_t id;
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char name[KL_REGISTRY_NAME_MAX + 1];
	int64_t quota;         /* -1: no limit */
	int64_t used;          /* devices counted against the quota */
	int64_t preregistered; /* pre-registration entries */
	int64_t created;
} kl_registry_work_order;

int kl_registry_work_order_add(kl_registry *r, const char *tenant, const char *name, int64_t quota,
                               const char *actor) KL_MUST_CHECK;
int kl_registry_work_order_get(kl_registry *r, const char *tenant, const char *name,
                               kl_registry_work_order *ret) KL_MUST_CHECK;
int kl_registry_work_order_set_quota(kl_registry *r, const char *tenant, const char *name,
                                     int64_t quota, const char *actor) KL_MUST_CHECK;

/* The tenant and its work order, each added when missing. quota (-1: none)
 * is the new work order's; with update_quota an existing order's quota is
 * set to it too. Not a transaction of its own: run it in the caller's. */
int kl_registry_ensure_work_order(kl_registry *r, const char *tenant, const char *name,
                                  int64_t quota, bool update_quota,
                                  const char *actor) KL_MUST_CHECK;

/* Pre-registration. One entry per serial: the serial, and optionally the EK
 * hash the device maker expects (64 hex digits, NULL or "" when unknown).
 * line names the entry in errors (0: its position in the batch, from 1). */
typedef struct kl_registry_item {
	const char *serial;
	const char *ek_sha256;
	unsigned line;
} kl_registry_item;

/* Pre-registers a batch for a tenant's work order (both must exist), all or
 * nothing in one transaction. Each serial gets a pre-registration entry and
 * a device in state preregistered. An entry the registry already holds for
 * the same tenant is updated (moved to this work order, new expected EK)
 * while its device is still preregistered, and left alone when identical; a
 * repurposed device starts a new life for this tenant. Refused, naming the
 * serial and line: a malformed entry, a serial twice in the batch, a serial
 * registered to another tenant, a change to a device already past
 * preregistered. Returns how many entries were added or changed. */
int kl_registry_preregister(kl_registry *r, const char *tenant, const char *work_order,
                            const kl_registry_item *items, size_t n,
                            const char *actor) KL_MUST_CHECK;
/* The same, with the entries' messages naming SOURCE:LINE (source: the file
 * they came from, or NULL or "" for "line LINE"); source is also recorded
 * in the audit entries. */
int kl_registry_preregister_from(kl_registry *r, const char *tenant, const char *work_order,
                                 const kl_registry_item *items, size_t n, const char *actor,
                                 const char *source) KL_MUST_CHECK;
/* The checks of kl_registry_preregister that need no registry: each entry
 * well-formed, no serial twice. Errors name SOURCE:LINE as above. For a
 * client that checks a file before sending it, and for the parts of a
 * batch that arrives in pieces (each piece checked as it comes). */
int kl_registry_check_items(const kl_registry_item *items, size_t n,
                            const char *source) KL_MUST_CHECK;

/* Reads a pre-registration file and pre-registers it as above; errors name
 * FILE:LINE. Formats, chosen by extension (.csv, .json), else by content (a
 * file whose first non-blank character is '[' is JSON):
 *   CSV   serial[,ek_sha256] per line; an optional header line whose first
 *         field is "serial"; blank lines and lines starting with # skipped;
 *         fields may be double-quoted; CRLF and a UTF-8 BOM are accepted
 *   JSON  an array of {"serial": "...", "ek_sha256": "..." or null}
 * *count receives the number of entries in the file; the return value is
 * how many were added or changed, as for kl_registry_preregister. */
int kl_registry_import_file(kl_registry *r, const char *tenant, const char *work_order,
                            const char *path, const char *actor, size_t *count) KL_MUST_CHECK;

/* Reads a pre-registration file as above without touching a registry: fn
 * gets the entries (valid during the call) and its result is returned. */
typedef int (*kl_registry_items_fn)(void *ctx, const kl_registry_item *items, size_t n);
int kl_registry_read_file(const char *path, kl_registry_items_fn fn, void *ctx) KL_MUST_CHECK;

/* Provisioning gates (architecture "The provisioning flow", step 5). */
typedef enum kl_gate_verdict {
	KL_GATE_OK = 0,              /* go on (see resume) */
	KL_GATE_NOT_PREREGISTERED,   /* policy requires pre-registration; none */
	KL_GATE_TENANT_MISMATCH,     /* the serial belongs to another tenant */
	KL_GATE_EK_MISMATCH,         /* the pre-registration expects another EK */
	KL_GATE_EK_DENIED,           /* the EK is on the deny list */
	KL_GATE_EK_BOUND,            /* the EK is bound to another serial */
	KL_GATE_SERIAL_BOUND,        /* the serial is bound to another EK */
	KL_GATE_QUOTA_EXHAUSTED,     /* the work order's quota is used up */
	KL_GATE_ALREADY_PROVISIONED, /* this serial with this EK is provisioned */
	KL_GATE_DEVICE_STATE,        /* revoked, lost or decommissioned */
	KL_GATE_UNKNOWN_TENANT,      /* the tenant named does not exist */
	KL_GATE_UNKNOWN_WORK_ORDER,  /* the tenant has no work order of that name */
	KL_GATE_WORK_ORDER_MISMATCH, /* the serial is pre-registered in another order */
	KL_GATE__MAX
} kl_gate_verdict;

typedef struct kl_gate_result {
	kl_gate_verdict verdict;
	const char *reason; /* stable machine-readable name: "ok", "ek_denied", ... */
	char message[320];  /* one sentence for the operator */
	bool resume;        /* OK, and the device is in provisioning with this EK */
	char tenant[KL_REGISTRY_NAME_MAX + 1];       /* the tenant the device is for */
	char work_order[KL_REGISTRY_NAME_MAX + 1];   /* "" when none */
	char other_serial[KL_REGISTRY_NAME_MAX + 1]; /* EK_BOUND: the serial holding it */
} kl_gate_result;

/* "ok", "not_preregistered", ... */
const char *kl_registry_verdict_name(kl_gate_verdict v);

/* Runs the gates for a DUT with that serial and EK hash. tenant may be NULL
 * when the serial is pre-registered (its tenant is used); with neither the
 * verdict is KL_GATE_NOT_PREREGISTERED. A tenant the registry does not know
 * is KL_GATE_UNKNOWN_TENANT. Returns 0 when the gates ran (the verdict is
 * in *ret), negative when they could not: -KL_E_INVALID for a malformed
 * serial or tenant name, -KL_E_DB for the database. */
int kl_registry_gate(kl_registry *r, const char *serial, const char *tenant,
                     const unsigned char ek_sha256[32], bool require_prereg,
                     kl_gate_result *ret) KL_MUST_CHECK;

/* The same for a line that builds one work order (work_order NULL: any):
 * the tenant must have it (else KL_GATE_UNKNOWN_WORK_ORDER) and the serial
 * must be pre-registered in it (KL_GATE_WORK_ORDER_MISMATCH when it is in
 * another; KL_GATE_NOT_PREREGISTERED when in none). A closed work order is
 * one whose quota is used up (KL_GATE_QUOTA_EXHAUSTED; set its quota to 0
 * to close it). -KL_E_INVALID for a malformed work-order name. */
int kl_registry_gate_order(kl_registry *r, const char *serial, const char *tenant,
                           const char *work_order, const unsigned char ek_sha256[32],
                           bool require_prereg, kl_gate_result *ret) KL_MUST_CHECK;

/* Binds the EK to the serial and moves the device to provisioning, after
 * running the gates again in its own write transaction (without requiring
 * pre-registration: that policy is the caller's, through kl_registry_gate).
 * A refusal is -KL_E_PERM (-KL_E_STATE for a device in the wrong state) with
 * the gate's sentence. Returns 0 when begun, 1 when the device was already
 * provisioning with this EK (resume; nothing changes but an audit entry). */
int kl_registry_device_begin(kl_registry *r, const char *serial, const char *tenant,
                             const unsigned char ek_sha256[32], const char *actor) KL_MUST_CHECK;

/* Moves a provisioning device to provisioned and stores its evidence (a JSON
 * object text). Works inside an outer kl_store transaction, so that the
 * device commits with its certificates. -KL_E_STATE when the device is not
 * provisioning (a second commit included). */
int kl_registry_device_commit(kl_registry *r, const char *serial, const char *evidence_json,
                              const char *actor) KL_MUST_CHECK;

/* Any other state change: revoked, decommissioned, lost, repurposed, and
 * preregistered (aborting a provisioning: the EK binding is released).
 * provisioning and provisioned go through begin/commit. Decommissioned and
 * lost also deny-list the device's EK (architecture "Lifecycle"). */
int kl_registry_device_set_state(kl_registry *r, const char *serial, kl_device_state state,
                                 const char *reason, const char *actor) KL_MUST_CHECK;

/* The EK deny list. add is -KL_E_EXISTS when listed already, remove
 * -KL_E_NOTFOUND when not listed; check returns 1 when listed (filling *ret
 * when not NULL) and 0 when not. */
typedef struct kl_registry_deny {
	char ek_sha256[65];
	char reason[256];
	char actor[128];
	int64_t time;
} kl_registry_deny;

int kl_registry_deny_add(kl_registry *r, const unsigned char ek_sha256[32], const char *reason,
                         const char *actor) KL_MUST_CHECK;
int kl_registry_deny_remove(kl_registry *r, const unsigned char ek_sha256[32], const char *reason,
                            const char *actor) KL_MUST_CHECK;
int kl_registry_deny_check(kl_registry *r, const unsigned char ek_sha256[32],
                           kl_registry_deny *ret) KL_MUST_CHECK;

/* A device as stored. Times are unix seconds, 0 when the state was never
 * reached. */
typedef struct kl_registry_device {
	int64_t id;
	char serial[KL_REGISTRY_NAME_MAX + 1];
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char work_order[KL_REGISTRY_NAME_MAX + 1]; /* "" when none */
	kl_device_state state;
	char ek_sha256[65];   /* bound EK, "" when none */
	char expected_ek[65]; /* from the pre-registration, "" when none */
	int64_t created;
	int64_t state_time;         /* last state change */
	int64_t at[KL_DEVICE__MAX]; /* when each state was last entered */
} kl_registry_device;

int kl_registry_device_get(kl_registry *r, const char *serial,
                           kl_registry_device *ret) KL_MUST_CHECK;

/* Pages through devices in serial order (stable). state < 0 and tenant NULL
 * match all; limit 0 means no limit. fn returns 0 to go on, negative to stop
 * with that error. Returns the number of devices passed to fn. */
typedef struct kl_registry_filter {
	int state; /* a kl_device_state, or -1 */
	const char *tenant;
	const char *search; /* serials containing this text (literally), or NULL */
	bool newest_first;  /* order by last state change, newest first */
	int64_t offset;
	int64_t limit;
	/* Keyset paging: only the devices after this one in the list's order,
	 * named by its serial (and, newest_first, its state_time), as the last
	 * device of the previous page gave them. Unlike offset, a page starts
	 * where the previous one ended even when devices were added or removed
	 * in between. NULL: from the start. */
	const char *after;
	int64_t after_time;
} kl_registry_filter;

typedef int (*kl_registry_device_fn)(void *ctx, const kl_registry_device *dev);
int kl_registry_device_list(kl_registry *r, const kl_registry_filter *f, kl_registry_device_fn fn,
                            void *ctx) KL_MUST_CHECK;
/* How many devices match the filter, ignoring offset, limit and after. */
int kl_registry_device_count(kl_registry *r, const kl_registry_filter *f,
                             int64_t *ret) KL_MUST_CHECK;

/* A device's state history, oldest first. from is -1 for the first entry. */
typedef struct kl_registry_event {
	int from; /* kl_device_state or -1 */
	kl_device_state to;
	const char *tenant;
	const char *ek_sha256; /* "" when none */
	const char *reason;    /* "" when none */
	const char *actor;
	int64_t time;
} kl_registry_event;

typedef int (*kl_registry_event_fn)(void *ctx, const kl_registry_event *ev);
int kl_registry_device_history(kl_registry *r, const char *serial, kl_registry_event_fn fn,
                               void *ctx) KL_MUST_CHECK;

/* A device's evidence records (JSON object texts), oldest first. */
typedef int (*kl_registry_evidence_fn)(void *ctx, const char *json, int64_t created);
int kl_registry_device_evidence(kl_registry *r, const char *serial, kl_registry_evidence_fn fn,
                                void *ctx) KL_MUST_CHECK;

/* The CA's certificates whose device_serial is the serial, oldest first.
 * Pointers are valid during the call only. */
typedef struct kl_registry_cert {
	const char *serial; /* certificate serial, lowercase hex */
	const char *profile;
	const char *state;  /* pending, issued, rejected, abandoned */
	const char *issuer; /* issuer row name */
	int64_t not_after;
	int64_t revoked;          /* unix time, 0 when not revoked */
	int reason;               /* RFC 5280 CRLReason when revoked */
	const unsigned char *der; /* NULL unless issued */
	size_t der_len;
} kl_registry_cert;

typedef int (*kl_registry_cert_fn)(void *ctx, const kl_registry_cert *cert);
int kl_registry_device_certs(kl_registry *r, const char *serial, kl_registry_cert_fn fn,
                             void *ctx) KL_MUST_CHECK;

#endif
