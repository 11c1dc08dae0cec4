/* The database layer over a backend: statements and their cache, checked
 * binds, nested transactions and migrations. See kl_db.h; the SQLite
 * backend is kl_db_sqlite.c. */
#include "kl_db.h"
#include "kl_db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_error.h"

struct kl_db_stmt {
	kl_db *db;
	kl_db_bstmt *bs;
	bool cached;
	/* The first bind that failed since the last reset: the next step
	 * reports it. */
	int bind_rc;
	char bind_error[256];
};

struct cache_entry {
	const char *key; /* the caller's pointer: the fast comparison */
	char *sql;       /* our copy: the one that decides */
	kl_db_stmt *st;
};

struct kl_db {
	const kl_db_backend *be;
	kl_db_conn *conn;
	int depth;   /* transaction nesting */
	bool failed; /* an inner step rolled back: the outer commit must not */
	struct cache_entry *cache;
	size_t n_cache, cap_cache;
	char name[4096];
};

/* The backend for what is to be opened. One today; a PostgreSQL backend
 * would take "postgresql://" URIs here. */
static const kl_db_backend *backend_for(const char *path)
{
	(void)path;
	return &kl_db_sqlite;
}

int kl_db_open(const char *path, kl_db **ret)
{
	kl_db *db;
	int r;

	if (!path || !*path)
		return kl_error_set(KL_E_INVALID, "database: no path");
	db = calloc(1, sizeof(*db));
	if (!db)
		return kl_error_set(KL_E_NOMEM, "database: out of memory");
	snprintf(db->name, sizeof(db->name), "%s", path);
	db->be = backend_for(path);
	r = db->be->open(path, &db->conn);
	if (r < 0) {
		free(db);
		return r;
	}
	*ret = db;
	return 0;
}

static void stmt_destroy(kl_db_stmt *st)
{
	st->db->be->finalize(st->bs);
	free(st);
}

void kl_db_free(kl_db *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->n_cache; i++) {
		stmt_destroy(db->cache[i].st);
		free(db->cache[i].sql);
	}
	free(db->cache);
	if (db->depth > 0)
		db->be->rollback(db->conn);
	db->be->close(db->conn);
	free(db);
}

const char *kl_db_name(const kl_db *db)
{
	return db->name;
}

int kl_db_exec(kl_db *db, const char *sql)
{
	return db->be->exec(db->conn, sql);
}

static int stmt_new(kl_db *db, const char *sql, bool cached, kl_db_stmt **ret)
{
	kl_db_stmt *st = calloc(1, sizeof(*st));
	size_t n = strlen(sql);
	int r;

	if (!st)
		return kl_error_set(KL_E_NOMEM, "database: out of memory");
	r = db->be->prepare(db->conn, sql, cached, &st->bs);
	if (r < 0) {
		free(st);
		/* Say which statement: the backend's message alone ("no such
		 * column: x") does not. */
		return kl_error_wrap("prepare \"%.60s%s\"", sql, n > 60 ? "..." : "");
	}
	st->db = db;
	st->cached = cached;
	*ret = st;
	return 0;
}

int kl_db_prepare(kl_db *db, const char *sql, kl_db_stmt **ret)
{
	return stmt_new(db, sql, false, ret);
}

int kl_db_prepare_cached(kl_db *db, const char *sql, kl_db_stmt **ret)
{
	struct cache_entry *e = NULL;
	kl_db_stmt *st;
	char *copy;
	int r;

	/* Callers pass their SQL as a literal, so the pointer finds the entry;
	 * the text confirms it, in case the pointer is a buffer reused for
	 * another statement. */
	for (size_t i = 0; i < db->n_cache; i++) {
		if (db->cache[i].key == sql) {
			e = &db->cache[i];
			break;
		}
	}
	if (e && strcmp(e->sql, sql) == 0) {
		kl_db_reset(e->st);
		*ret = e->st;
		return 0;
	}
	if (!e && db->n_cache == db->cap_cache) {
		size_t cap = db->cap_cache ? 2 * db->cap_cache : 32;
		struct cache_entry *grown = realloc(db->cache, cap * sizeof(*grown));

		if (!grown)
			return kl_error_set(KL_E_NOMEM, "database: out of memory");
		db->cache = grown;
		db->cap_cache = cap;
	}
	copy = strdup(sql);
	if (!copy)
		return kl_error_set(KL_E_NOMEM, "database: out of memory");
	r = stmt_new(db, sql, true, &st);
	if (r < 0) {
		free(copy);
		return r;
	}
	if (e) {
		/* The same pointer now holds another statement. */
		stmt_destroy(e->st);
		free(e->sql);
	} else {
		e = &db->cache[db->n_cache++];
	}
	*e = (struct cache_entry){ .key = sql, .sql = copy, .st = st };
	*ret = st;
	return 0;
}

void kl_db_stmt_free(kl_db_stmt *st)
{
	if (!st)
		return;
	if (st->cached)
		kl_db_reset(st);
	else
		stmt_destroy(st);
}

void kl_db_reset(kl_db_stmt *st)
{
	st->db->be->reset(st->bs);
	st->bind_rc = 0;
	st->bind_error[0] = '\0';
}

/* Keeps the first bind failure for the step to report. */
static void bind_result(kl_db_stmt *st, int rc)
{
	if (rc < 0 && st->bind_rc == 0) {
		st->bind_rc = rc;
		snprintf(st->bind_error, sizeof(st->bind_error), "%s", kl_error_detail());
	}
}

void kl_db_bind_null(kl_db_stmt *st, int i)
{
	bind_result(st, st->db->be->bind_null(st->bs, i));
}

void kl_db_bind_int64(kl_db_stmt *st, int i, int64_t v)
{
	bind_result(st, st->db->be->bind_int64(st->bs, i, v));
}

void kl_db_bind_text(kl_db_stmt *st, int i, const char *s)
{
	bind_result(st, st->db->be->bind_text(st->bs, i, s));
}

void kl_db_bind_blob(kl_db_stmt *st, int i, const void *p, size_t n)
{
	bind_result(st, st->db->be->bind_blob(st->bs, i, p, n));
}

int kl_db_step(kl_db_stmt *st)
{
	if (st->bind_rc < 0)
		return kl_error_set((kl_err)-st->bind_rc, "%s", st->bind_error);
	return st->db->be->step(st->bs);
}

int kl_db_step_row(kl_db_stmt *st)
{
	int r = kl_db_step(st);

	if (r == 0)
		return kl_error_set(KL_E_NOTFOUND, "the statement returned no row");
	return r < 0 ? r : 0;
}

int kl_db_step_done(kl_db_stmt *st)
{
	int r = kl_db_step(st);

	kl_db_reset(st);
	if (r > 0)
		return kl_error_set(KL_E_DB,
		                    "the statement returned a row where none was expected");
	return r < 0 ? r : (int)kl_db_changes(st->db);
}

bool kl_db_column_null(kl_db_stmt *st, int col)
{
	return st->db->be->column_null(st->bs, col);
}

int64_t kl_db_column_int64(kl_db_stmt *st, int col)
{
	return st->db->be->column_int64(st->bs, col);
}

int kl_db_column_int(kl_db_stmt *st, int col)
{
	return (int)st->db->be->column_int64(st->bs, col);
}

const char *kl_db_column_text(kl_db_stmt *st, int col)
{
	return st->db->be->column_text(st->bs, col);
}

const void *kl_db_column_blob(kl_db_stmt *st, int col, size_t *len)
{
	return st->db->be->column_blob(st->bs, col, len);
}

void kl_db_column_copy(kl_db_stmt *st, int col, char *dst, size_t size)
{
	const char *t = kl_db_column_text(st, col);

	snprintf(dst, size, "%s", t ? t : "");
}

int64_t kl_db_changes(kl_db *db)
{
	return db->be->changes(db->conn);
}

int64_t kl_db_last_id(kl_db *db)
{
	return db->be->last_id(db->conn);
}

int kl_db_begin(kl_db *db)
{
	int r;

	if (db->depth++ > 0)
		return 0;
	db->failed = false;
	r = db->be->begin(db->conn);
	if (r < 0) {
		db->depth = 0;
		return kl_error_wrap("begin");
	}
	return 0;
}

int kl_db_commit(kl_db *db)
{
	if (db->depth <= 0)
		return kl_error_set(KL_E_STATE, "commit without begin");
	if (--db->depth > 0)
		return 0;
	if (db->failed) {
		/* An inner step failed: the outer commit becomes the rollback,
		 * so the connection is free for the next transaction. */
		db->failed = false;
		db->be->rollback(db->conn);
		return kl_error_set(KL_E_DB, "transaction was rolled back by an inner step");
	}
	if (db->be->commit(db->conn) < 0)
		return kl_error_wrap("commit");
	return 0;
}

void kl_db_rollback(kl_db *db)
{
	if (db->depth <= 0)
		return;
	if (--db->depth > 0) {
		db->failed = true;
		return;
	}
	db->be->rollback(db->conn);
	db->failed = false;
}

/* Reads a module's schema version: 0 when it has none yet. */
static int schema_version(kl_db *db, const char *module, int64_t *ret)
{
	kl_db_stmt *st = NULL;
	int r;

	r = kl_db_exec(db, "CREATE TABLE IF NOT EXISTS schema_version(module TEXT PRIMARY KEY,"
	                   " version INTEGER NOT NULL)");
	if (r < 0)
		return kl_error_wrap("create schema_version");
	r = kl_db_prepare(db, "SELECT version FROM schema_version WHERE module = ?1", &st);
	if (r < 0)
		return kl_error_wrap("schema_version");
	kl_db_bind_text(st, 1, module);
	r = kl_db_step(st);
	*ret = r == 1 ? kl_db_column_int64(st, 0) : 0;
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("schema_version") : 0;
}

/* Runs one migration script and records its version, inside the caller's
 * transaction. */
static int migrate_one(kl_db *db, const char *module, const char *script, int64_t version)
{
	kl_db_stmt *st = NULL;
	int r;

	if (kl_db_exec(db, script) < 0)
		return kl_error_wrap("migrate");
	/* An upsert, which PostgreSQL reads the same way. */
	r = kl_db_prepare(db,
	                  "INSERT INTO schema_version(module, version) VALUES(?1, ?2) "
	                  "ON CONFLICT(module) DO UPDATE SET version = excluded.version",
	                  &st);
	if (r < 0)
		return kl_error_wrap("migrate");
	kl_db_bind_text(st, 1, module);
	kl_db_bind_int64(st, 2, version);
	r = kl_db_step_done(st);
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("migrate") : 0;
}

int kl_db_migrate(kl_db *db, const char *module, const char *const *migrations, size_t n)
{
	int64_t version = 0;
	int r;

	if ((r = schema_version(db, module, &version)) < 0)
		return r;
	if (version > (int64_t)n)
		return kl_error_set(KL_E_DB,
		                    "%s: database schema '%s' is version %lld, newer than this "
		                    "program knows (%zu); upgrade Keyline",
		                    db->name, module, (long long)version, n);
	for (size_t v = (size_t)version; v < n; v++) {
		if ((r = kl_db_begin(db)) < 0)
			return r;
		if (migrate_one(db, module, migrations[v], (int64_t)v + 1) < 0) {
			kl_db_rollback(db);
			return kl_error_wrap("schema '%s' to version %zu", module, v + 1);
		}
		if ((r = kl_db_commit(db)) < 0)
			return r;
	}
	return 0;
}
