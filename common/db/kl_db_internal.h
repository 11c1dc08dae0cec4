/* What a database backend provides to kl_db.c: a table of functions over
 * its own connection and statement types. Private to common/db/: callers
 * see only kl_db.h. Each backend lives in one file (kl_db_sqlite.c) and
 * is picked in kl_db_open.
 *
 * Conventions: functions returning int give 0 (or a count) on success and
 * a negative kl_err with the detail set on failure, keeping the backend's
 * raw code in the detail; a UNIQUE or PRIMARY KEY violation is
 * -KL_E_EXISTS, every other failure -KL_E_DB. */
#ifndef KL_DB_INTERNAL_H
#define KL_DB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defined by each backend, opaque to kl_db.c. */
typedef struct kl_db_conn kl_db_conn;
typedef struct kl_db_bstmt kl_db_bstmt;

typedef struct kl_db_backend {
	const char *name;

	/* Opens the connection the way kl_db.h promises: durable commits,
	 * foreign keys on, waiting (not failing) while another connection
	 * writes. */
	int (*open)(const char *path, kl_db_conn **ret);
	void (*close)(kl_db_conn *c);
	/* A script of statements without parameters or rows. */
	int (*exec)(kl_db_conn *c, const char *sql);

	/* persistent: the statement will be kept and run many times. */
	int (*prepare)(kl_db_conn *c, const char *sql, bool persistent, kl_db_bstmt **ret);
	void (*finalize)(kl_db_bstmt *s);
	/* Back to before the first step, with no parameters bound. */
	void (*reset)(kl_db_bstmt *s);

	/* Parameters from 1. Text and blobs are bound without a copy; a NULL
	 * pointer binds SQL NULL. */
	int (*bind_null)(kl_db_bstmt *s, int i);
	int (*bind_int64)(kl_db_bstmt *s, int i, int64_t v);
	int (*bind_text)(kl_db_bstmt *s, int i, const char *v);
	int (*bind_blob)(kl_db_bstmt *s, int i, const void *p, size_t n);

	/* 1: a row; 0: done; negative: error. */
	int (*step)(kl_db_bstmt *s);
	/* Columns from 0, of the current row. */
	bool (*column_null)(kl_db_bstmt *s, int col);
	int64_t (*column_int64)(kl_db_bstmt *s, int col);
	const char *(*column_text)(kl_db_bstmt *s, int col);
	const void *(*column_blob)(kl_db_bstmt *s, int col, size_t *len);

	int64_t (*changes)(kl_db_conn *c);
	int64_t (*last_id)(kl_db_conn *c);

	/* A write transaction, taken at once. */
	int (*begin)(kl_db_conn *c);
	/* On failure the transaction is rolled back before returning. */
	int (*commit)(kl_db_conn *c);
	/* Rolls back the open transaction; nothing when there is none. */
	void (*rollback)(kl_db_conn *c);
} kl_db_backend;

extern const kl_db_backend kl_db_sqlite;

#endif
