/* The CA's durable storage: one SQLite database (WAL) holding issuers,
 * certificates by serial, revocations and the hash-chained audit log.
 *
 * Only store*.c speak SQL (through kl_db); the rest of the CA sees these
 * verbs. The station's registry keeps its tables in the same database and
 * shares its transactions (kl_store_db), so that a device and its
 * certificates commit together.
 *
 * Certificate states:
 *   pending    the intended TBSCertificate is stored; the certificate may or
 *              may not have been signed (a crash between signing and the
 *              ISSUED commit leaves this state)
 *   issued     signed, verified, stored
 *   rejected   refused by the linter: never signed
 *   abandoned  a pending row found at start-up; counted as possibly issued,
 *              so it is put on the CRL
 * A serial, once reserved, is never used again, whatever its state. */
#ifndef KL_CA_STORE_H
#define KL_CA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl_db.h"
#include "kl_error.h"

typedef struct kl_store kl_store;

/* Opens (creating if needed) the database at path and brings its schema up
 * to date. */
int kl_store_open(const char *path, kl_store **ret) KL_MUST_CHECK;
void kl_store_free(kl_store *s);

/* The store's database connection, for modules that keep their own tables
 * in it (the registry): they migrate them with kl_db_migrate and write
 * inside the store's transactions. */
kl_db *kl_store_db(kl_store *s);

/* Transactions nest by counting: only the outermost commit writes. A failed
 * inner step must call kl_store_rollback, which undoes the whole outer
 * transaction. */
int kl_store_begin(kl_store *s) KL_MUST_CHECK;
int kl_store_commit(kl_store *s) KL_MUST_CHECK;
void kl_store_rollback(kl_store *s);

/* Issuers. */
typedef struct kl_issuer_row {
	int64_t id;
	char name[64];
	char key_uri[512];
	unsigned char *cert_der; /* owned by the row */
	size_t cert_len;
	int64_t crl_number; /* the last CRL number used, 0 if none */
} kl_issuer_row;

int kl_store_issuer_add(kl_store *s, const char *name, const char *key_uri,
                        const unsigned char *cert_der, size_t cert_len,
                        int64_t *ret_id) KL_MUST_CHECK;
/* Replaces the certificate of an issuer (external root: CSR out, cert in). */
int kl_store_issuer_set_cert(kl_store *s, int64_t id, const unsigned char *cert_der,
                             size_t cert_len) KL_MUST_CHECK;
int kl_store_issuer_get(kl_store *s, const char *name, kl_issuer_row *ret) KL_MUST_CHECK;
void kl_issuer_row_clear(kl_issuer_row *row);
/* Reserves the next CRL number for an issuer (in the caller's transaction). */
int kl_store_issuer_next_crl_number(kl_store *s, int64_t id, int64_t *ret) KL_MUST_CHECK;

/* Certificates. serial is lowercase hex without leading zeros. */
typedef struct kl_cert_pending {
	int64_t issuer_id;
	const char *serial;
	const char *profile;
	const char *subject;       /* one-line RFC 2253 text, for people */
	const char *device_serial; /* may be NULL */
	const unsigned char *tbs;
	size_t tbs_len;
	int64_t not_after; /* unix time */
} kl_cert_pending;

/* Inserts a pending row and commits it (unless inside a transaction).
 * -KL_E_EXISTS when the serial was ever used by this issuer. */
int kl_store_cert_reserve(kl_store *s, const kl_cert_pending *p) KL_MUST_CHECK;
/* Reserves n serials in one transaction. On a serial that was used before,
 * nothing is kept, *collided is its index and -KL_E_EXISTS is returned. */
int kl_store_cert_reserve_many(kl_store *s, const kl_cert_pending *p, size_t n,
                               size_t *collided) KL_MUST_CHECK;
int kl_store_cert_issued(kl_store *s, int64_t issuer_id, const char *serial,
                         const unsigned char *der, size_t len) KL_MUST_CHECK;
int kl_store_cert_rejected(kl_store *s, int64_t issuer_id, const char *serial,
                           const char *why) KL_MUST_CHECK;

typedef struct kl_cert_row {
	char serial[48];
	char state[16];
	char profile[64];
	char subject[512];
	char device_serial[128];
	unsigned char *der; /* issued certificate or NULL; owned by the row */
	size_t der_len;
	unsigned char *tbs; /* owned by the row */
	size_t tbs_len;
	int64_t not_after;
	int64_t revoked; /* unix time, 0 when not revoked */
	int reason;      /* RFC 5280 CRLReason when revoked */
} kl_cert_row;

int kl_store_cert_get(kl_store *s, int64_t issuer_id, const char *serial,
                      kl_cert_row *ret) KL_MUST_CHECK;
void kl_cert_row_clear(kl_cert_row *row);

/* Marks every pending row abandoned (possibly issued: revoked with reason
 * unspecified, so that it is on the next CRL). Returns how many. */
int kl_store_reconcile(kl_store *s, int64_t issuer_id, const char *actor) KL_MUST_CHECK;

/* Counts rows by state ("pending", "issued", ...; NULL for all). */
int kl_store_cert_count(kl_store *s, int64_t issuer_id, const char *state,
                        int64_t *ret) KL_MUST_CHECK;

/* Counts revoked certificates of an issuer. */
int kl_store_revoked_count(kl_store *s, int64_t issuer_id, int64_t *ret) KL_MUST_CHECK;

/* Revokes an issued (or abandoned) certificate. -KL_E_NOTFOUND for an
 * unknown serial, -KL_E_STATE when it is already revoked or never issued. */
int kl_store_cert_revoke(kl_store *s, int64_t issuer_id, const char *serial, int reason,
                         int64_t when) KL_MUST_CHECK;

/* Calls fn for every revoked certificate of an issuer whose not_after is at
 * or after `after` (expired certificates may leave the CRL, RFC 5280 §3.3).
 * fn returns 0 to go on, negative to stop with that error. */
typedef int (*kl_revoked_fn)(void *ctx, const char *serial, int64_t when, int reason);
int kl_store_revoked_each(kl_store *s, int64_t issuer_id, int64_t after, kl_revoked_fn fn,
                          void *ctx) KL_MUST_CHECK;

/* The audit log. Each entry hashes its predecessor:
 *   hash = SHA-256(prev_hash || seq || time_ms || actor || 0 || action || 0 || detail)
 * detail is a JSON object text.
 *
 * An entry is about the devices its detail names: outside the CA's own
 * actions (ca.*, where "serial" is a certificate's), the top-level
 * "serial" and the "serial" of each object in a top-level "items" array.
 * The entry is linked to each of them in an index (kl_store_audit_device)
 * in the same transaction; the links are derived from the detail, which
 * the chain covers, and are not hashed themselves.
 *
 * What a failed audit write does is decided at each call site (docs/
 * station.md, "When the audit log cannot be written"): kl_store_audit
 * returns the error for operations that must not happen unrecorded (the
 * caller fails them); kl_store_audit_noted is for entries about something
 * that has happened anyway (a refusal, a denial, a reconnect, a stop).
 * Either way a failure is counted (kl_store_audit_failures, reported by
 * station.status) and logged at error level with the action. */
int kl_store_audit(kl_store *s, const char *actor, const char *action,
                   const char *detail) KL_MUST_CHECK;
void kl_store_audit_noted(kl_store *s, const char *actor, const char *action, const char *detail);
/* Audit writes that failed since the store was opened. */
uint64_t kl_store_audit_failures(kl_store *s);

typedef struct kl_audit_report {
	int64_t entries;
	int64_t first_bad; /* seq of the first entry that does not verify, 0 if none */
	char problem[256];
} kl_audit_report;

/* Audit entries, newest first: those with seq < before (0: from the newest),
 * whose action starts with action_prefix (NULL or "": all), at most limit
 * (<= 0: 100). fn gets each; a negative return stops with that error.
 * Returns how many were passed. */
typedef struct kl_audit_entry {
	int64_t seq;
	int64_t time_ms;
	const char *actor, *action, *detail; /* valid during the call */
} kl_audit_entry;
typedef int (*kl_audit_fn)(void *ctx, const kl_audit_entry *e);
int kl_store_audit_list(kl_store *s, int64_t before, const char *action_prefix, int64_t limit,
                        kl_audit_fn fn, void *ctx) KL_MUST_CHECK;
/* The same for the entries about one device (serial, compared exactly),
 * through the index, however old they are. -KL_E_INVALID for no serial. */
int kl_store_audit_device(kl_store *s, const char *serial, int64_t before, int64_t limit,
                          kl_audit_fn fn, void *ctx) KL_MUST_CHECK;

/* Walks the chain; returns 0 when it verifies, -KL_E_CRYPTO with the report
 * filled when an entry was edited, deleted or inserted. */
int kl_store_audit_verify(kl_store *s, kl_audit_report *ret) KL_MUST_CHECK;

#endif
