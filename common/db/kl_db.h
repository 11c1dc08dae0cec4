/* The database layer: one connection, prepared statements, nested
 * transactions and per-module schema migrations, for the CA store and the
 * registry that shares its database.
 *
 * No vendor type crosses this header: a kl_db is a connection to some
 * backend (SQLite today, see kl_db_sqlite.c; a PostgreSQL backend would be
 * one more file behind kl_db_internal.h), a kl_db_stmt a statement prepared
 * on it. Callers write SQL with numbered parameters (?1, ?2, ...) and read
 * columns by index (from 0).
 *
 * Errors are kl_error codes with the backend's message and raw code in the
 * detail ("UNIQUE constraint failed: reg_tenant.name (sqlite 2067)"). A
 * UNIQUE or PRIMARY KEY violation is -KL_E_EXISTS, every other failure
 * -KL_E_DB.
 *
 * A connection and its statements are for one thread at a time: callers
 * that share one serialise their use of it (the station holds a lock around
 * its store, and gives its API reader a connection of its own). */
#ifndef KL_DB_H
#define KL_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"

typedef struct kl_db kl_db;
typedef struct kl_db_stmt kl_db_stmt;

/* Opens (creating if needed) the database at path: a file name, for
 * SQLite. Commits are durable when they return (a power cut keeps them),
 * and foreign keys are enforced. */
int kl_db_open(const char *path, kl_db **ret) KL_MUST_CHECK;
/* Closes the connection and every cached statement. Accepts NULL. A
 * transaction still open is rolled back. */
void kl_db_free(kl_db *db);
/* What was opened (the path), for messages. */
const char *kl_db_name(const kl_db *db);

/* Runs SQL text that takes no parameters and returns no rows: one or more
 * statements separated by ';' (a migration script, say). */
int kl_db_exec(kl_db *db, const char *sql) KL_MUST_CHECK;

/* Prepares one statement; the caller frees it with kl_db_stmt_free. A bad
 * statement is -KL_E_DB with a detail that quotes its start and says what
 * is wrong ("no such column: x"). */
int kl_db_prepare(kl_db *db, const char *sql, kl_db_stmt **ret) KL_MUST_CHECK;
/* The same, kept by the connection for the next call with the same sql:
 * for statements run often. *ret comes back reset with no parameters
 * bound; kl_db_stmt_free gives it back to the cache (resetting it, which
 * ends its read). Use one cached statement at a time: fetching it again
 * resets it under the first user. The cache is keyed by the pointer, so sql
 * must be a string literal: a buffer reused for other text would replace the
 * entry under a caller still holding it. Build SQL at run time with
 * kl_db_prepare. */
int kl_db_prepare_cached(kl_db *db, const char *sql, kl_db_stmt **ret) KL_MUST_CHECK;
/* Finalizes a statement from kl_db_prepare, or resets one from
 * kl_db_prepare_cached and leaves it in the cache. Accepts NULL. */
void kl_db_stmt_free(kl_db_stmt *st);
static inline void kl_db_stmt_freep(kl_db_stmt **p)
{
	kl_db_stmt_free(*p);
}

/* Parameters, numbered from 1. Text and blobs are not copied: they must
 * stay valid until the statement is stepped to its end, reset or freed. A
 * NULL text or blob binds SQL NULL, and so does an unbound parameter.
 * A bind that fails (no such parameter, too big) is remembered, and the
 * next kl_db_step or kl_db_step_done fails with it: binds are checked
 * there, once. */
void kl_db_bind_null(kl_db_stmt *st, int i);
void kl_db_bind_int64(kl_db_stmt *st, int i, int64_t v);
void kl_db_bind_text(kl_db_stmt *st, int i, const char *s);
void kl_db_bind_blob(kl_db_stmt *st, int i, const void *p, size_t n);

/* Runs the statement to its next row: 1 with a row to read, 0 when there
 * are no more, negative on error. */
int kl_db_step(kl_db_stmt *st) KL_MUST_CHECK;
/* Steps a statement that must return a row: 0 with the row,
 * -KL_E_NOTFOUND when it returned none, negative on error. */
int kl_db_step_row(kl_db_stmt *st) KL_MUST_CHECK;
/* Runs a statement that returns no rows (INSERT, UPDATE, DELETE), then
 * resets it; returns how many rows it changed, or a negative error. */
int kl_db_step_done(kl_db_stmt *st) KL_MUST_CHECK;
/* Resets a statement for another run and unbinds its parameters. */
void kl_db_reset(kl_db_stmt *st);

/* Columns of the current row, numbered from 0. A NULL column reads as 0,
 * as a NULL text and as a NULL blob of length 0. Text and blobs stay valid
 * until the next step, reset or free of the statement. */
bool kl_db_column_null(kl_db_stmt *st, int col);
int64_t kl_db_column_int64(kl_db_stmt *st, int col);
int kl_db_column_int(kl_db_stmt *st, int col) KL_MUST_CHECK;
const char *kl_db_column_text(kl_db_stmt *st, int col);
const void *kl_db_column_blob(kl_db_stmt *st, int col, size_t *len);
/* Copies a text column into dst (size bytes, truncating, always
 * NUL-terminated); a NULL column copies as "". */
void kl_db_column_copy(kl_db_stmt *st, int col, char *dst, size_t size);

/* The rows changed by the connection's last INSERT, UPDATE or DELETE, and
 * the id (INTEGER PRIMARY KEY) of the row its last INSERT added. */
int64_t kl_db_changes(kl_db *db);
int64_t kl_db_last_id(kl_db *db);

/* Transactions nest by counting: only the outermost begin starts one (a
 * write transaction, taken at once, so two processes sharing the database
 * queue here rather than fail later) and only the outermost commit writes.
 * A failed inner step must call kl_db_rollback, which dooms the whole outer
 * transaction: its commit rolls back and returns -KL_E_DB. */
int kl_db_begin(kl_db *db) KL_MUST_CHECK;
int kl_db_commit(kl_db *db) KL_MUST_CHECK;
void kl_db_rollback(kl_db *db);

/* Brings a module's tables up to date: migrations[i] is a SQL script that
 * takes the module's schema from version i to i + 1. Each runs in a
 * transaction with its version bump, recorded in the schema_version table;
 * a database newer than n is refused (-KL_E_DB), not touched. A released
 * migration is never edited: add another. */
int kl_db_migrate(kl_db *db, const char *module, const char *const *migrations,
                  size_t n) KL_MUST_CHECK;

#endif
