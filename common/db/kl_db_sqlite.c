/* The SQLite backend of kl_db: the only file that includes sqlite3.h. */
#include "kl_db_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>

#include "kl_error.h"

struct kl_db_conn {
	sqlite3 *h;
	/* Taken on every transaction: prepared once. */
	sqlite3_stmt *begin, *commit;
};

/* Our handles are SQLite's own, under another name. */
static sqlite3_stmt *S(kl_db_bstmt *s)
{
	return (sqlite3_stmt *)s;
}

/* Records the connection's last error: -KL_E_EXISTS for a UNIQUE or
 * PRIMARY KEY violation, -KL_E_DB for the rest, with SQLite's message and
 * extended code. */
static int fail(sqlite3 *h)
{
	int code = sqlite3_extended_errcode(h);

	return kl_error_set(code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE
	                        ? KL_E_EXISTS
	                        : KL_E_DB,
	                    "%s (sqlite %d)", sqlite3_errmsg(h), code);
}

static void sq_close(kl_db_conn *c)
{
	if (!c)
		return;
	sqlite3_finalize(c->begin);
	sqlite3_finalize(c->commit);
	sqlite3_close(c->h);
	free(c);
}

static int sq_open(const char *path, kl_db_conn **ret)
{
	kl_db_conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return kl_error_set(KL_E_NOMEM, "open %s: out of memory", path);
	if (sqlite3_open_v2(path, &c->h,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK) {
		r = kl_error_set(KL_E_DB, "open %s: %s", path,
		                 c->h ? sqlite3_errmsg(c->h) : "out of memory");
		sq_close(c);
		return r;
	}
	/* Another process writing: wait for it rather than fail. */
	sqlite3_busy_timeout(c->h, 10000);
	sqlite3_extended_result_codes(c->h, 1);
	/* WAL: readers never block the writer. synchronous=FULL: a commit is on
	 * disk when it returns, so an ISSUED row survives a power cut. */
	if (sqlite3_exec(
	        c->h, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
	        NULL, NULL, NULL) != SQLITE_OK) {
		r = fail(c->h);
		kl_error_wrap("%s", path);
		sq_close(c);
		return r;
	}
	/* IMMEDIATE: the write lock is taken at BEGIN, so two writers queue
	 * there (busy timeout) instead of one failing at its first write. */
	if (sqlite3_prepare_v3(c->h, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &c->begin,
	                       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v3(c->h, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &c->commit, NULL) !=
	        SQLITE_OK) {
		r = fail(c->h);
		kl_error_wrap("%s: prepare", path);
		sq_close(c);
		return r;
	}
	*ret = c;
	return 0;
}

static int sq_exec(kl_db_conn *c, const char *sql)
{
	return sqlite3_exec(c->h, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : fail(c->h);
}

static int sq_prepare(kl_db_conn *c, const char *sql, bool persistent, kl_db_bstmt **ret)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v3(c->h, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &st,
	                       NULL) != SQLITE_OK)
		return fail(c->h);
	if (!st)
		return kl_error_set(KL_E_DB, "no statement in the text (sqlite %d)", SQLITE_MISUSE);
	*ret = (kl_db_bstmt *)st;
	return 0;
}

static void sq_finalize(kl_db_bstmt *s)
{
	sqlite3_finalize(S(s));
}

static void sq_reset(kl_db_bstmt *s)
{
	/* reset returns the last step's error again: that was reported then. */
	sqlite3_reset(S(s));
	sqlite3_clear_bindings(S(s));
}

static int bind_fail(kl_db_bstmt *s, int i, int rc)
{
	return kl_error_set(KL_E_DB, "bind ?%d: %s (sqlite %d)", i, sqlite3_errstr(rc), rc);
}

static int sq_bind_null(kl_db_bstmt *s, int i)
{
	int rc = sqlite3_bind_null(S(s), i);

	return rc == SQLITE_OK ? 0 : bind_fail(s, i, rc);
}

static int sq_bind_int64(kl_db_bstmt *s, int i, int64_t v)
{
	int rc = sqlite3_bind_int64(S(s), i, v);

	return rc == SQLITE_OK ? 0 : bind_fail(s, i, rc);
}

static int sq_bind_text(kl_db_bstmt *s, int i, const char *v)
{
	/* SQLITE_STATIC: no copy, the caller keeps v alive (kl_db.h). */
	int rc = v ? sqlite3_bind_text(S(s), i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(S(s), i);

	return rc == SQLITE_OK ? 0 : bind_fail(s, i, rc);
}

static int sq_bind_blob(kl_db_bstmt *s, int i, const void *p, size_t n)
{
	int rc = p ? sqlite3_bind_blob64(S(s), i, p, (sqlite3_uint64)n, SQLITE_STATIC)
	           : sqlite3_bind_null(S(s), i);

	return rc == SQLITE_OK ? 0 : bind_fail(s, i, rc);
}

static int sq_step(kl_db_bstmt *s)
{
	int rc = sqlite3_step(S(s));

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return fail(sqlite3_db_handle(S(s)));
}

static bool sq_column_null(kl_db_bstmt *s, int col)
{
	return sqlite3_column_type(S(s), col) == SQLITE_NULL;
}

static int64_t sq_column_int64(kl_db_bstmt *s, int col)
{
	return sqlite3_column_int64(S(s), col);
}

static const char *sq_column_text(kl_db_bstmt *s, int col)
{
	return (const char *)sqlite3_column_text(S(s), col);
}

static const void *sq_column_blob(kl_db_bstmt *s, int col, size_t *len)
{
	/* In this order: _bytes after _blob gives the size of what _blob
	 * returned. */
	const void *p = sqlite3_column_blob(S(s), col);
	int n = sqlite3_column_bytes(S(s), col);

	*len = p && n > 0 ? (size_t)n : 0;
	return p;
}

static int64_t sq_changes(kl_db_conn *c)
{
	return sqlite3_changes(c->h);
}

static int64_t sq_last_id(kl_db_conn *c)
{
	return sqlite3_last_insert_rowid(c->h);
}

/* Runs one of the connection's transaction statements. */
static int txn_step(kl_db_conn *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int r = rc == SQLITE_DONE ? 0 : fail(c->h);

	sqlite3_reset(st);
	return r;
}

static int sq_begin(kl_db_conn *c)
{
	return txn_step(c, c->begin);
}

static void sq_rollback(kl_db_conn *c)
{
	if (sqlite3_get_autocommit(c->h) == 0)
		sqlite3_exec(c->h, "ROLLBACK", NULL, NULL, NULL);
}

static int sq_commit(kl_db_conn *c)
{
	int r = txn_step(c, c->commit);

	if (r < 0)
		sq_rollback(c);
	return r;
}

const kl_db_backend kl_db_sqlite = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.exec = sq_exec,
	.prepare = sq_prepare,
	.finalize = sq_finalize,
	.reset = sq_reset,
	.bind_null = sq_bind_null,
	.bind_int64 = sq_bind_int64,
	.bind_text = sq_bind_text,
	.bind_blob = sq_bind_blob,
	.step = sq_step,
	.column_null = sq_column_null,
	.column_int64 = sq_column_int64,
	.column_text = sq_column_text,
	.column_blob = sq_column_blob,
	.changes = sq_changes,
	.last_id = sq_last_id,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
};
