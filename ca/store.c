/* SQLite storage for the CA. See store.h. */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <unistd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "kl_error.h"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_ISSUER_ADD,
	ST_ISSUER_SET_CERT,
	ST_ISSUER_GET,
	ST_ISSUER_CRL_BUMP,
	ST_ISSUER_CRL_GET,
	ST_CERT_RESERVE,
	ST_CERT_ISSUED,
	ST_CERT_REJECTED,
	ST_CERT_GET,
	ST_CERT_ABANDON,
	ST_CERT_PENDING,
	ST_CERT_COUNT,
	ST_CERT_COUNT_STATE,
	ST_CERT_REVOKE,
	ST_REVOKED_COUNT,
	ST_REVOKED_EACH,
	ST_AUDIT_HEAD,
	ST_AUDIT_ADD,
	ST_AUDIT_SET_HEAD,
	ST_AUDIT_EACH,
	ST_AUDIT_GET_HEAD,
	ST__MAX
};

static const char *const stmt_sql[ST__MAX] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_ISSUER_ADD] =
	    "INSERT INTO ca_issuer(name, key_uri, cert, created) VALUES(?1, ?2, ?3, ?4)",
	[ST_ISSUER_SET_CERT] = "UPDATE ca_issuer SET cert = ?2 WHERE id = ?1",
	[ST_ISSUER_GET] =
	    "SELECT id, name, key_uri, cert, crl_number FROM ca_issuer WHERE name = ?1",
	[ST_ISSUER_CRL_BUMP] = "UPDATE ca_issuer SET crl_number = crl_number + 1 WHERE id = ?1",
	[ST_ISSUER_CRL_GET] = "SELECT crl_number FROM ca_issuer WHERE id = ?1",
	[ST_CERT_RESERVE] = "INSERT INTO ca_cert(issuer_id, serial, state, profile, subject, "
	                    "device_serial, tbs, not_after, created, owner) "
	                    "VALUES(?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_CERT_ISSUED] = "UPDATE ca_cert SET state = 'issued', cert = ?3, issued = ?4 "
	                   "WHERE issuer_id = ?1 AND serial = ?2 AND state = 'pending'",
	[ST_CERT_REJECTED] = "UPDATE ca_cert SET state = 'rejected', note = ?3 "
	                     "WHERE issuer_id = ?1 AND serial = ?2 AND state = 'pending'",
	[ST_CERT_GET] =
	    "SELECT serial, state, profile, subject, device_serial, cert, tbs, "
	    "not_after, revoked, reason FROM ca_cert WHERE issuer_id = ?1 AND serial = ?2",
	[ST_CERT_ABANDON] = "UPDATE ca_cert SET state = 'abandoned', revoked = ?2, reason = 0, "
	                    "note = 'pending at start-up, its process gone: possibly issued' "
	                    "WHERE issuer_id = ?1 AND serial = ?3 AND state = 'pending'",
	[ST_CERT_PENDING] = "SELECT serial, owner, created FROM ca_cert "
	                    "WHERE issuer_id = ?1 AND state = 'pending'",
	[ST_CERT_COUNT] = "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1",
	[ST_CERT_COUNT_STATE] = "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1 AND state = ?2",
	[ST_CERT_REVOKE] = "UPDATE ca_cert SET revoked = ?3, reason = ?4 "
	                   "WHERE issuer_id = ?1 AND serial = ?2 AND revoked IS NULL "
	                   "AND state IN ('issued', 'abandoned')",
	[ST_REVOKED_COUNT] =
	    "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1 AND revoked IS NOT NULL",
	[ST_REVOKED_EACH] = "SELECT serial, revoked, reason FROM ca_cert "
	                    "WHERE issuer_id = ?1 AND revoked IS NOT NULL AND not_after >= ?2",
	[ST_AUDIT_HEAD] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
	[ST_AUDIT_ADD] = "INSERT INTO audit(seq, time, actor, action, detail, prev, hash) "
	                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_AUDIT_SET_HEAD] = "INSERT OR REPLACE INTO audit_head(id, seq, hash) VALUES(1, ?1, ?2)",
	[ST_AUDIT_EACH] =
	    "SELECT seq, time, actor, action, detail, prev, hash FROM audit ORDER BY seq",
	[ST_AUDIT_GET_HEAD] = "SELECT seq, hash FROM audit_head WHERE id = 1",
};

/* Versioned migrations for the CA's tables. A migration runs once, in a
 * transaction with the version bump. Never edit a released one: add more. */
static const char *const ca_migrations[] = {
	/* 1 */
	"CREATE TABLE ca_issuer("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  key_uri TEXT NOT NULL,"
	"  cert BLOB NOT NULL,"
	"  crl_number INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE ca_cert("
	"  issuer_id INTEGER NOT NULL REFERENCES ca_issuer(id),"
	"  serial TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK(state IN ('pending','issued','rejected','abandoned')),"
	"  profile TEXT NOT NULL,"
	"  subject TEXT NOT NULL,"
	"  device_serial TEXT,"
	"  tbs BLOB NOT NULL,"
	"  cert BLOB,"
	"  not_after INTEGER NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  issued INTEGER,"
	"  revoked INTEGER,"
	"  reason INTEGER,"
	"  note TEXT,"
	"  UNIQUE(issuer_id, serial));"
	"CREATE INDEX ca_cert_revoked ON ca_cert(issuer_id, revoked) WHERE revoked IS NOT NULL;"
	"CREATE INDEX ca_cert_device ON ca_cert(device_serial);"
	"CREATE TABLE audit("
	"  seq INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  actor TEXT NOT NULL,"
	"  action TEXT NOT NULL,"
	"  detail TEXT NOT NULL,"
	"  prev BLOB NOT NULL,"
	"  hash BLOB NOT NULL);"
	"CREATE TABLE audit_head(id INTEGER PRIMARY KEY CHECK(id = 1), seq INTEGER NOT NULL,"
	"  hash BLOB NOT NULL);",
	/* 2: which process reserved a pending row ("host:pid"), so that a
	 * start-up abandons only the rows of processes that are gone. */
	"ALTER TABLE ca_cert ADD COLUMN owner TEXT;",
};

struct kl_store {
	sqlite3 *db;
	sqlite3_stmt *st[ST__MAX];
	int depth;   /* transaction nesting */
	bool failed; /* an inner step rolled back: the outer commit must not */
	char path[4096];
};

static int db_error(kl_store *s, const char *what)
{
	int code = sqlite3_extended_errcode(s->db);

	return kl_error_set(code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE
	                        ? KL_E_EXISTS
	                        : KL_E_DB,
	                    "%s: %s (sqlite %d)", what, sqlite3_errmsg(s->db), code);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Returns the cached statement, reset and with bindings cleared. */
static sqlite3_stmt *stmt(kl_store *s, enum stmt_id id)
{
	sqlite3_stmt *st = s->st[id];

	if (!st) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st,
		                       NULL) != SQLITE_OK) {
			db_error(s, "prepare");
			return NULL;
		}
		s->st[id] = st;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

/* Runs a statement that returns no rows; returns the number of changed rows
 * or a negative error. */
static int step_done(kl_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(s, what);
	return sqlite3_changes(s->db);
}

sqlite3 *kl_store_sqlite(kl_store *s)
{
	return s->db;
}

int kl_store_migrate(kl_store *s, const char *module, const char *const *migrations, size_t n)
{
	sqlite3_stmt *st = NULL;
	int64_t version = 0;
	int r;

	if (sqlite3_exec(s->db,
	                 "CREATE TABLE IF NOT EXISTS schema_version(module TEXT PRIMARY KEY,"
	                 " version INTEGER NOT NULL)",
	                 NULL, NULL, NULL) != SQLITE_OK)
		return db_error(s, "create schema_version");
	if (sqlite3_prepare_v2(s->db, "SELECT version FROM schema_version WHERE module = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return db_error(s, "schema_version");
	sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (version > (int64_t)n)
		return kl_error_set(KL_E_DB,
		                    "%s: database schema '%s' is version %lld, newer than this "
		                    "program knows (%zu); upgrade Keyline",
		                    s->path, module, (long long)version, n);
	for (size_t v = (size_t)version; v < n; v++) {
		char bump[160];

		r = kl_store_begin(s);
		if (r < 0)
			return r;
		snprintf(bump, sizeof(bump),
		         "INSERT OR REPLACE INTO schema_version(module, version) VALUES('%s', %zu)",
		         module, v + 1);
		if (sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(s->db, bump, NULL, NULL, NULL) != SQLITE_OK) {
			r = db_error(s, "migrate");
			kl_store_rollback(s);
			return kl_error_wrap("schema '%s' to version %zu", module, v + 1);
		}
		r = kl_store_commit(s);
		if (r < 0)
			return r;
	}
	return 0;
}

int kl_store_open(const char *path, kl_store **ret)
{
	kl_store *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return kl_error_set(KL_E_NOMEM, "store: out of memory");
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (sqlite3_open_v2(path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK) {
		r = kl_error_set(KL_E_DB, "open %s: %s", path,
		                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		sqlite3_close(s->db);
		free(s);
		return r;
	}
	sqlite3_busy_timeout(s->db, 10000);
	sqlite3_extended_result_codes(s->db, 1);
	/* WAL: readers never block the writer. synchronous=FULL: a commit is on
	 * disk when it returns, so an ISSUED row survives a power cut. */
	if (sqlite3_exec(
	        s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
	        NULL, NULL, NULL) != SQLITE_OK) {
		r = db_error(s, path);
		kl_store_free(s);
		return r;
	}
	r = kl_store_migrate(s, "ca", ca_migrations,
	                     sizeof(ca_migrations) / sizeof(ca_migrations[0]));
	if (r < 0) {
		kl_store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void kl_store_free(kl_store *s)
{
	if (!s)
		return;
	for (int i = 0; i < ST__MAX; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

int kl_store_begin(kl_store *s)
{
	sqlite3_stmt *st;
	int r;

	if (s->depth++ > 0)
		return 0;
	s->failed = false;
	st = stmt(s, ST_BEGIN);
	if (!st || (r = step_done(s, st, "begin")) < 0) {
		s->depth = 0;
		return st ? r : -KL_E_DB;
	}
	return 0;
}

int kl_store_commit(kl_store *s)
{
	sqlite3_stmt *st;
	int r;

	if (s->depth <= 0)
		return kl_error_set(KL_E_STATE, "commit without begin");
	if (--s->depth > 0)
		return 0;
	if (s->failed) {
		/* An inner step failed: the outer commit becomes the rollback,
		 * so the connection is free for the next transaction. */
		s->failed = false;
		if (sqlite3_get_autocommit(s->db) == 0)
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return kl_error_set(KL_E_DB, "transaction was rolled back by an inner step");
	}
	st = stmt(s, ST_COMMIT);
	if (!st)
		return -KL_E_DB;
	r = step_done(s, st, "commit");
	if (r < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	return 0;
}

void kl_store_rollback(kl_store *s)
{
	if (s->depth <= 0)
		return;
	if (--s->depth > 0) {
		s->failed = true;
		return;
	}
	if (sqlite3_get_autocommit(s->db) == 0)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->failed = false;
}

/* Runs one write in its own transaction unless the caller has one open. */
#define IN_TXN(s, expr)                                  \
	({                                               \
		int _r = kl_store_begin(s);              \
		if (_r == 0) {                           \
			_r = (expr);                     \
			if (_r < 0)                      \
				kl_store_rollback(s);    \
			else                             \
				_r = kl_store_commit(s); \
		}                                        \
		_r;                                      \
	})

static int issuer_add(kl_store *s, const char *name, const char *key_uri,
                      const unsigned char *cert_der, size_t cert_len, int64_t *ret_id)
{
	sqlite3_stmt *st = stmt(s, ST_ISSUER_ADD);
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key_uri, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, cert_der, (int)cert_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s());
	r = step_done(s, st, "add issuer");
	if (r < 0)
		return r == -KL_E_EXISTS
		           ? kl_error_set(KL_E_EXISTS, "issuer '%s' exists already", name)
		           : r;
	if (ret_id)
		*ret_id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int kl_store_issuer_add(kl_store *s, const char *name, const char *key_uri,
                        const unsigned char *cert_der, size_t cert_len, int64_t *ret_id)
{
	return IN_TXN(s, issuer_add(s, name, key_uri, cert_der, cert_len, ret_id));
}

int kl_store_issuer_set_cert(kl_store *s, int64_t id, const unsigned char *cert_der,
                             size_t cert_len)
{
	sqlite3_stmt *st = stmt(s, ST_ISSUER_SET_CERT);
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_blob(st, 2, cert_der, (int)cert_len, SQLITE_STATIC);
	r = IN_TXN(s, step_done(s, st, "set issuer certificate"));
	return r < 0 ? r : 0;
}

static unsigned char *dup_blob(sqlite3_stmt *st, int col, size_t *len)
{
	const void *p = sqlite3_column_blob(st, col);
	int n = sqlite3_column_bytes(st, col);
	unsigned char *copy;

	*len = 0;
	if (!p || n <= 0)
		return NULL;
	copy = malloc((size_t)n);
	if (copy) {
		memcpy(copy, p, (size_t)n);
		*len = (size_t)n;
	}
	return copy;
}

static void copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(dst, size, "%s", t ? (const char *)t : "");
}

int kl_store_issuer_get(kl_store *s, const char *name, kl_issuer_row *ret)
{
	sqlite3_stmt *st = stmt(s, ST_ISSUER_GET);
	kl_issuer_row row = { 0 };
	int rc;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return kl_error_set(KL_E_NOTFOUND, "no issuer named '%s' (run 'keyline ca init')",
		                    name);
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(s, "get issuer");
	}
	row.id = sqlite3_column_int64(st, 0);
	copy_text(row.name, sizeof(row.name), st, 1);
	copy_text(row.key_uri, sizeof(row.key_uri), st, 2);
	row.cert_der = dup_blob(st, 3, &row.cert_len);
	row.crl_number = sqlite3_column_int64(st, 4);
	sqlite3_reset(st);
	if (!row.cert_der)
		return kl_error_set(KL_E_NOMEM, "get issuer: out of memory");
	*ret = row;
	return 0;
}

void kl_issuer_row_clear(kl_issuer_row *row)
{
	free(row->cert_der);
	memset(row, 0, sizeof(*row));
}

int kl_store_issuer_next_crl_number(kl_store *s, int64_t id, int64_t *ret)
{
	sqlite3_stmt *st;
	int r;

	r = kl_store_begin(s);
	if (r < 0)
		return r;
	st = stmt(s, ST_ISSUER_CRL_BUMP);
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, id);
	if ((r = step_done(s, st, "bump CRL number")) < 0)
		goto fail;
	st = stmt(s, ST_ISSUER_CRL_GET);
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		r = kl_error_set(KL_E_NOTFOUND, "issuer %lld not found", (long long)id);
		goto fail;
	}
	*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return kl_store_commit(s);
fail:
	kl_store_rollback(s);
	return r < 0 ? r : -KL_E_DB;
}

static const char *owner_id(void);

static int cert_reserve(kl_store *s, const kl_cert_pending *p)
{
	sqlite3_stmt *st = stmt(s, ST_CERT_RESERVE);
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, p->issuer_id);
	sqlite3_bind_text(st, 2, p->serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, p->profile, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, p->subject, -1, SQLITE_STATIC);
	if (p->device_serial)
		sqlite3_bind_text(st, 5, p->device_serial, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 6, p->tbs, (int)p->tbs_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, p->not_after);
	sqlite3_bind_int64(st, 8, now_s());
	sqlite3_bind_text(st, 9, owner_id(), -1, SQLITE_STATIC);
	r = step_done(s, st, "reserve serial");
	return r < 0 ? r : 0;
}

int kl_store_cert_reserve(kl_store *s, const kl_cert_pending *p)
{
	return IN_TXN(s, cert_reserve(s, p));
}

int kl_store_cert_reserve_many(kl_store *s, const kl_cert_pending *p, size_t n, size_t *collided)
{
	int r = kl_store_begin(s);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		r = cert_reserve(s, &p[i]);
		if (r < 0) {
			if (collided)
				*collided = i;
			kl_store_rollback(s);
			return r;
		}
	}
	return kl_store_commit(s);
}

int kl_store_cert_issued(kl_store *s, int64_t issuer_id, const char *serial,
                         const unsigned char *der, size_t len)
{
	sqlite3_stmt *st = stmt(s, ST_CERT_ISSUED);
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, der, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_s());
	r = step_done(s, st, "mark issued");
	if (r == 0)
		return kl_error_set(KL_E_STATE, "serial %s is not pending", serial);
	return r < 0 ? r : 0;
}

int kl_store_cert_rejected(kl_store *s, int64_t issuer_id, const char *serial, const char *why)
{
	sqlite3_stmt *st = stmt(s, ST_CERT_REJECTED);
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, why, -1, SQLITE_STATIC);
	r = step_done(s, st, "mark rejected");
	return r < 0 ? r : 0;
}

int kl_store_cert_get(kl_store *s, int64_t issuer_id, const char *serial, kl_cert_row *ret)
{
	sqlite3_stmt *st = stmt(s, ST_CERT_GET);
	kl_cert_row row = { 0 };
	int rc;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return kl_error_set(KL_E_NOTFOUND, "no certificate with serial %s", serial);
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(s, "get certificate");
	}
	copy_text(row.serial, sizeof(row.serial), st, 0);
	copy_text(row.state, sizeof(row.state), st, 1);
	copy_text(row.profile, sizeof(row.profile), st, 2);
	copy_text(row.subject, sizeof(row.subject), st, 3);
	copy_text(row.device_serial, sizeof(row.device_serial), st, 4);
	row.der = dup_blob(st, 5, &row.der_len);
	row.tbs = dup_blob(st, 6, &row.tbs_len);
	row.not_after = sqlite3_column_int64(st, 7);
	row.revoked = sqlite3_column_int64(st, 8);
	row.reason = sqlite3_column_int(st, 9);
	sqlite3_reset(st);
	*ret = row;
	return 0;
}

void kl_cert_row_clear(kl_cert_row *row)
{
	free(row->der);
	free(row->tbs);
	memset(row, 0, sizeof(*row));
}

/* "host:pid" of this process, for the owner column of pending rows. */
static const char *owner_id(void)
{
	static char id[300];
	static pid_t for_pid;

	/* Recomputed after a fork: the child is another owner. */
	if (for_pid != getpid()) {
		for_pid = getpid();
		char host[256] = "";

		gethostname(host, sizeof(host) - 1);
		snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
	}
	return id;
}

/* Whether the process that reserved a pending row may still be working on
 * it. On this host: its pid is alive (a reused pid errs on the safe side:
 * the row waits). Another host's process cannot be asked: its rows count as
 * gone after an hour. */
static bool owner_alive(const char *owner, int64_t created)
{
	char host[256] = "";
	const char *colon;
	long pid;

	if (!owner || !(colon = strrchr(owner, ':')))
		return false;
	gethostname(host, sizeof(host) - 1);
	if ((size_t)(colon - owner) != strlen(host) || strncmp(owner, host, strlen(host)) != 0)
		return now_s() - created < 3600;
	pid = strtol(colon + 1, NULL, 10);
	if (pid <= 0)
		return false;
	if (pid == (long)getpid())
		return true;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

int kl_store_reconcile(kl_store *s, int64_t issuer_id, const char *actor)
{
	char(*gone)[48] = NULL;
	sqlite3_stmt *st;
	char detail[128];
	size_t n_gone = 0, cap = 0;
	int n = 0, r, rc;

	r = kl_store_begin(s);
	if (r < 0)
		return r;
	st = stmt(s, ST_CERT_PENDING);
	if (!st) {
		kl_store_rollback(s);
		return -KL_E_DB;
	}
	sqlite3_bind_int64(st, 1, issuer_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *serial = (const char *)sqlite3_column_text(st, 0);

		if (owner_alive((const char *)sqlite3_column_text(st, 1),
		                sqlite3_column_int64(st, 2)))
			continue;
		if (n_gone == cap) {
			void *grown = realloc(gone, (cap = cap ? 2 * cap : 16) * sizeof(*gone));

			if (!grown) {
				rc = SQLITE_NOMEM;
				break;
			}
			gone = grown;
		}
		snprintf(gone[n_gone++], sizeof(gone[0]), "%s", serial ? serial : "");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		free(gone);
		kl_store_rollback(s);
		return db_error(s, "list pending");
	}
	for (size_t i = 0; i < n_gone && n >= 0; i++) {
		st = stmt(s, ST_CERT_ABANDON);
		if (!st) {
			n = -KL_E_DB;
			break;
		}
		sqlite3_bind_int64(st, 1, issuer_id);
		sqlite3_bind_int64(st, 2, now_s());
		sqlite3_bind_text(st, 3, gone[i], -1, SQLITE_STATIC);
		r = step_done(s, st, "reconcile pending");
		n = r < 0 ? r : n + r;
	}
	free(gone);
	if (n > 0) {
		snprintf(detail, sizeof(detail), "{\"issuer\":%lld,\"abandoned\":%d}",
		         (long long)issuer_id, n);
		r = kl_store_audit(s, actor, "ca.reconcile", detail);
		if (r < 0)
			n = r;
	}
	if (n < 0) {
		kl_store_rollback(s);
		return n;
	}
	r = kl_store_commit(s);
	return r < 0 ? r : n;
}

int kl_store_cert_count(kl_store *s, int64_t issuer_id, const char *state, int64_t *ret)
{
	sqlite3_stmt *st = stmt(s, state ? ST_CERT_COUNT_STATE : ST_CERT_COUNT);

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	if (state)
		sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(s, "count");
	}
	*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

int kl_store_revoked_count(kl_store *s, int64_t issuer_id, int64_t *ret)
{
	sqlite3_stmt *st = stmt(s, ST_REVOKED_COUNT);

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return db_error(s, "count revoked");
	}
	*ret = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return 0;
}

int kl_store_cert_revoke(kl_store *s, int64_t issuer_id, const char *serial, int reason,
                         int64_t when)
{
	sqlite3_stmt *st = stmt(s, ST_CERT_REVOKE);
	kl_cert_row row;
	int r;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, when);
	sqlite3_bind_int(st, 4, reason);
	r = step_done(s, st, "revoke");
	if (r < 0)
		return r;
	if (r == 1)
		return 0;
	/* Nothing changed: say why. */
	r = kl_store_cert_get(s, issuer_id, serial, &row);
	if (r < 0)
		return r;
	if (row.revoked)
		r = kl_error_set(KL_E_STATE, "certificate %s is already revoked", serial);
	else
		r = kl_error_set(KL_E_STATE, "certificate %s was never issued (state %s)", serial,
		                 row.state);
	kl_cert_row_clear(&row);
	return r;
}

int kl_store_revoked_each(kl_store *s, int64_t issuer_id, int64_t after, kl_revoked_fn fn,
                          void *ctx)
{
	sqlite3_stmt *st = stmt(s, ST_REVOKED_EACH);
	int rc, r = 0;

	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, issuer_id);
	sqlite3_bind_int64(st, 2, after);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
		       sqlite3_column_int(st, 2));
		if (r < 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(s, "list revoked");
	sqlite3_reset(st);
	return r;
}

/* hash = SHA-256(prev || seq || time_ms || actor || 0 || action || 0 || detail),
 * with seq and time as 8-byte big-endian. */
static int audit_hash(int64_t seq, int64_t t, const char *actor, const char *action,
                      const char *detail, const unsigned char prev[32], unsigned char out[32])
{
	unsigned char be[16];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	for (int i = 0; i < 8; i++) {
		be[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
		be[8 + i] = (unsigned char)((uint64_t)t >> (56 - 8 * i));
	}
	ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, prev, 32) &&
	     EVP_DigestUpdate(md, be, sizeof(be)) &&
	     EVP_DigestUpdate(md, actor, strlen(actor) + 1) &&
	     EVP_DigestUpdate(md, action, strlen(action) + 1) &&
	     EVP_DigestUpdate(md, detail, strlen(detail)) && EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
	return ok ? 0 : kl_error_set_ssl(KL_E_CRYPTO, "audit hash");
}

static int audit_add(kl_store *s, const char *actor, const char *action, const char *detail)
{
	unsigned char prev[32] = { 0 }, hash[32];
	sqlite3_stmt *st;
	int64_t seq = 1, t = now_ms();
	int r;

	st = stmt(s, ST_AUDIT_HEAD);
	if (!st)
		return -KL_E_DB;
	if (sqlite3_step(st) == SQLITE_ROW) {
		seq = sqlite3_column_int64(st, 0) + 1;
		if (sqlite3_column_bytes(st, 1) == 32)
			memcpy(prev, sqlite3_column_blob(st, 1), 32);
	}
	sqlite3_reset(st);
	r = audit_hash(seq, t, actor, action, detail, prev, hash);
	if (r < 0)
		return r;
	st = stmt(s, ST_AUDIT_ADD);
	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_int64(st, 2, t);
	sqlite3_bind_text(st, 3, actor, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 6, prev, 32, SQLITE_STATIC);
	sqlite3_bind_blob(st, 7, hash, 32, SQLITE_STATIC);
	r = step_done(s, st, "audit");
	if (r < 0)
		return r;
	/* The head row lets verify notice a deleted last entry. */
	st = stmt(s, ST_AUDIT_SET_HEAD);
	if (!st)
		return -KL_E_DB;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
	r = step_done(s, st, "audit head");
	return r < 0 ? r : 0;
}

int kl_store_audit(kl_store *s, const char *actor, const char *action, const char *detail)
{
	return IN_TXN(s, audit_add(s, actor, action, detail && *detail ? detail : "{}"));
}

int kl_store_audit_list(kl_store *s, int64_t before, const char *action_prefix, int64_t limit,
                        kl_audit_fn fn, void *ctx)
{
	sqlite3_stmt *st = NULL;
	int n = 0, rc = SQLITE_DONE, r = 0;

	if (sqlite3_prepare_v2(s->db,
	                       "SELECT seq, time, actor, action, detail FROM audit "
	                       "WHERE (?1 <= 0 OR seq < ?1) AND (?2 IS NULL OR "
	                       "substr(action, 1, length(?2)) = ?2) ORDER BY seq DESC LIMIT ?3",
	                       -1, &st, NULL) != SQLITE_OK)
		return kl_error_set(KL_E_DB, "audit list: %s", sqlite3_errmsg(s->db));
	sqlite3_bind_int64(st, 1, before);
	if (action_prefix && *action_prefix)
		sqlite3_bind_text(st, 2, action_prefix, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, limit > 0 ? limit : 100);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		kl_audit_entry e = {
			.seq = sqlite3_column_int64(st, 0),
			.time_ms = sqlite3_column_int64(st, 1),
			.actor = (const char *)sqlite3_column_text(st, 2),
			.action = (const char *)sqlite3_column_text(st, 3),
			.detail = (const char *)sqlite3_column_text(st, 4),
		};
		n++;
		r = fn(ctx, &e);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = kl_error_set(KL_E_DB, "audit list: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return r < 0 ? r : n;
}

int kl_store_audit_verify(kl_store *s, kl_audit_report *ret)
{
	unsigned char prev[32] = { 0 }, hash[32];
	kl_audit_report rep = { 0 };
	sqlite3_stmt *st;
	int64_t expect = 1;
	int rc, r = 0;

	st = stmt(s, ST_AUDIT_EACH);
	if (!st)
		return -KL_E_DB;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		const char *actor = (const char *)sqlite3_column_text(st, 2);
		const char *action = (const char *)sqlite3_column_text(st, 3);
		const char *detail = (const char *)sqlite3_column_text(st, 4);

		if (seq != expect) {
			rep.first_bad = expect;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld is missing (next is %lld)", (long long)expect,
			         (long long)seq);
			break;
		}
		if (sqlite3_column_bytes(st, 5) != 32 || sqlite3_column_bytes(st, 6) != 32 ||
		    CRYPTO_memcmp(sqlite3_column_blob(st, 5), prev, 32) != 0) {
			rep.first_bad = seq;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld does not link to its predecessor", (long long)seq);
			break;
		}
		r = audit_hash(seq, sqlite3_column_int64(st, 1), actor ? actor : "",
		               action ? action : "", detail ? detail : "", prev, hash);
		if (r < 0)
			break;
		if (CRYPTO_memcmp(sqlite3_column_blob(st, 6), hash, 32) != 0) {
			rep.first_bad = seq;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld was altered (its hash does not match its content)",
			         (long long)seq);
			break;
		}
		memcpy(prev, hash, 32);
		rep.entries++;
		expect++;
	}
	sqlite3_reset(st);
	if (r < 0)
		return r;
	if (!rep.first_bad) {
		st = stmt(s, ST_AUDIT_GET_HEAD);
		if (!st)
			return -KL_E_DB;
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			int64_t head = sqlite3_column_int64(st, 0);

			if (head != rep.entries || sqlite3_column_bytes(st, 1) != 32 ||
			    CRYPTO_memcmp(sqlite3_column_blob(st, 1), prev, 32) != 0) {
				rep.first_bad = rep.entries + 1;
				snprintf(
				    rep.problem, sizeof(rep.problem),
				    "the log ends at entry %lld but its head records entry %lld: "
				    "entries were deleted from the end",
				    (long long)rep.entries, (long long)head);
			}
		} else if (rep.entries > 0) {
			rep.first_bad = 1;
			snprintf(rep.problem, sizeof(rep.problem),
			         "the log's head record is missing");
		}
		sqlite3_reset(st);
	}
	*ret = rep;
	if (rep.first_bad)
		return kl_error_set(KL_E_CRYPTO, "audit log does not verify: %s", rep.problem);
	return 0;
}
