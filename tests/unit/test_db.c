/* kl_db, the database layer, on real SQLite files in a temp directory:
 * statements, binds and columns, the statement cache, nested transactions
 * (seen from a second connection), migrations and their versions, and the
 * errors a caller gets for bad SQL, bad binds and constraint violations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kl_db.h"
#include "kl_error.h"

struct env {
	char dir[256];
	char path[300];
	kl_db *db;
};

static void detail_has(const char *needle)
{
	if (!strstr(kl_error_detail(), needle))
		fail_msg("'%s' not in the error detail: %s", needle, kl_error_detail());
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *tmp = getenv("TMPDIR");

	assert_non_null(e);
	snprintf(e->dir, sizeof(e->dir), "%s/kl-test-db.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->path, sizeof(e->path), "%s/t.db", e->dir);
	if (kl_db_open(e->path, &e->db) < 0)
		fail_msg("open: %s", kl_error_detail());
	assert_int_equal(kl_db_exec(e->db,
	                            "CREATE TABLE t(id INTEGER PRIMARY KEY,"
	                            " name TEXT NOT NULL UNIQUE, n INTEGER CHECK(n >= 0),"
	                            " data BLOB);"
	                            "CREATE TABLE u(t_id INTEGER NOT NULL REFERENCES t(id));"),
	                 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[320];

	kl_db_free(e->db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
	return 0;
}

/* A single number from SQL on db. */
static int64_t q1(kl_db *db, const char *sql)
{
	kl_db_stmt *st = NULL;
	int64_t v;

	if (kl_db_prepare(db, sql, &st) < 0)
		fail_msg("prepare %s: %s", sql, kl_error_detail());
	if (kl_db_step_row(st) < 0)
		fail_msg("step %s: %s", sql, kl_error_detail());
	v = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	return v;
}

static void insert(kl_db *db, const char *name, int64_t n)
{
	kl_db_stmt *st = NULL;

	assert_int_equal(kl_db_prepare(db, "INSERT INTO t(name, n) VALUES(?1, ?2)", &st), 0);
	kl_db_bind_text(st, 1, name);
	kl_db_bind_int64(st, 2, n);
	if (kl_db_step_done(st) != 1)
		fail_msg("insert %s: %s", name, kl_error_detail());
	kl_db_stmt_free(st);
}

static void test_statements_and_columns(void **state)
{
	struct env *e = *state;
	const unsigned char blob[] = { 0x00, 0x01, 0xfe, 0xff };
	kl_db_stmt *st = NULL;
	const unsigned char *got;
	char copy[4];
	size_t len = 99;
	int64_t id;

	assert_string_equal(kl_db_name(e->db), e->path);
	/* Durable and in WAL mode, as kl_db_open promises. */
	assert_int_equal(kl_db_prepare(e->db, "PRAGMA journal_mode", &st), 0);
	assert_int_equal(kl_db_step(st), 1);
	assert_string_equal(kl_db_column_text(st, 0), "wal");
	kl_db_stmt_free(st);
	assert_int_equal(q1(e->db, "PRAGMA synchronous"), 2); /* FULL */
	assert_int_equal(q1(e->db, "PRAGMA foreign_keys"), 1);

	assert_int_equal(
	    kl_db_prepare(e->db, "INSERT INTO t(name, n, data) VALUES(?1, ?2, ?3)", &st), 0);
	kl_db_bind_text(st, 1, "alpha");
	kl_db_bind_int64(st, 2, INT64_C(5000000000));
	kl_db_bind_blob(st, 3, blob, sizeof(blob));
	assert_int_equal(kl_db_step_done(st), 1);
	id = kl_db_last_id(e->db);
	assert_true(id > 0);
	/* step_done reset the statement and unbound it: ready to go again,
	 * here with NULLs. */
	kl_db_bind_text(st, 1, "beta");
	kl_db_bind_null(st, 2);
	kl_db_bind_blob(st, 3, NULL, 0);
	assert_int_equal(kl_db_step_done(st), 1);
	assert_int_equal(kl_db_last_id(e->db), id + 1);
	kl_db_stmt_free(st);

	assert_int_equal(kl_db_prepare(e->db, "SELECT id, name, n, data FROM t ORDER BY id", &st),
	                 0);
	assert_int_equal(kl_db_step(st), 1);
	assert_int_equal(kl_db_column_int64(st, 0), id);
	assert_string_equal(kl_db_column_text(st, 1), "alpha");
	assert_true(kl_db_column_int64(st, 2) == INT64_C(5000000000));
	got = kl_db_column_blob(st, 3, &len);
	assert_int_equal(len, sizeof(blob));
	assert_memory_equal(got, blob, sizeof(blob));
	kl_db_column_copy(st, 1, copy, sizeof(copy));
	assert_string_equal(copy, "alp"); /* truncated, terminated */
	assert_false(kl_db_column_null(st, 2));
	assert_int_equal(kl_db_step(st), 1);
	assert_true(kl_db_column_null(st, 2));
	assert_int_equal(kl_db_column_int(st, 2), 0);
	assert_null(kl_db_column_blob(st, 3, &len));
	assert_int_equal(len, 0);
	assert_int_equal(kl_db_step(st), 0);
	kl_db_stmt_free(st);

	/* A text NULL reads as NULL, and copies as "". */
	assert_int_equal(kl_db_prepare(e->db, "SELECT NULL", &st), 0);
	assert_int_equal(kl_db_step(st), 1);
	assert_null(kl_db_column_text(st, 0));
	kl_db_column_copy(st, 0, copy, sizeof(copy));
	assert_string_equal(copy, "");
	kl_db_stmt_free(st);

	/* Changes count what an UPDATE touched; none is 0, not an error. */
	assert_int_equal(kl_db_prepare(e->db, "UPDATE t SET n = 1 WHERE name = ?1", &st), 0);
	kl_db_bind_text(st, 1, "nobody");
	assert_int_equal(kl_db_step_done(st), 0);
	kl_db_bind_text(st, 1, "beta");
	assert_int_equal(kl_db_step_done(st), 1);
	kl_db_stmt_free(st);

	/* step_row: a row or -KL_E_NOTFOUND. */
	assert_int_equal(kl_db_prepare(e->db, "SELECT id FROM t WHERE name = 'nobody'", &st), 0);
	assert_int_equal(kl_db_step_row(st), -KL_E_NOTFOUND);
	kl_db_stmt_free(st);
	kl_db_stmt_free(NULL);
}

static void test_statement_cache(void **state)
{
	struct env *e = *state;
	static const char sql[] = "SELECT count(*) FROM t WHERE n >= ?1";
	kl_db_stmt *a = NULL, *b = NULL;
	char buf[64];

	insert(e->db, "one", 1);
	insert(e->db, "two", 2);
	assert_int_equal(kl_db_prepare_cached(e->db, sql, &a), 0);
	kl_db_bind_int64(a, 1, 2);
	assert_int_equal(kl_db_step_row(a), 0);
	assert_int_equal(kl_db_column_int64(a, 0), 1);
	kl_db_stmt_free(a); /* back to the cache, not finalized */
	/* Fetched again: the same statement, reset, its parameter unbound
	 * (NULL: n >= NULL matches nothing). */
	assert_int_equal(kl_db_prepare_cached(e->db, sql, &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(kl_db_step_row(b), 0);
	assert_int_equal(kl_db_column_int64(b, 0), 0);
	kl_db_stmt_free(b);

	/* One buffer holding two statements in turn: each gets its own. */
	snprintf(buf, sizeof(buf), "SELECT 1");
	assert_int_equal(kl_db_prepare_cached(e->db, buf, &a), 0);
	assert_int_equal(kl_db_step_row(a), 0);
	assert_int_equal(kl_db_column_int64(a, 0), 1);
	kl_db_stmt_free(a);
	snprintf(buf, sizeof(buf), "SELECT 2");
	assert_int_equal(kl_db_prepare_cached(e->db, buf, &b), 0);
	assert_int_equal(kl_db_step_row(b), 0);
	assert_int_equal(kl_db_column_int64(b, 0), 2);
	kl_db_stmt_free(b);

	/* A failed prepare leaves nothing in the cache. */
	assert_int_equal(kl_db_prepare_cached(e->db, "SELECT nope FROM t", &a), -KL_E_DB);
	assert_int_equal(kl_db_prepare_cached(e->db, "SELECT nope FROM t", &a), -KL_E_DB);
	detail_has("no such column: nope");
}

static void test_nested_commit(void **state)
{
	struct env *e = *state;
	kl_db *other = NULL;

	/* A second connection sees only what the outermost commit wrote. */
	assert_int_equal(kl_db_open(e->path, &other), 0);
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "outer", 1);
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "inner", 2);
	assert_int_equal(kl_db_commit(e->db), 0);
	assert_int_equal(q1(other, "SELECT count(*) FROM t"), 0);
	assert_int_equal(kl_db_commit(e->db), 0);
	assert_int_equal(q1(other, "SELECT count(*) FROM t"), 2);
	kl_db_free(other);

	assert_int_equal(kl_db_commit(e->db), -KL_E_STATE);
	detail_has("commit without begin");
}

static void test_nested_rollback(void **state)
{
	struct env *e = *state;

	insert(e->db, "before", 0);
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "outer", 1);
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "inner", 2);
	/* The inner step fails: everything since the outer begin goes. */
	kl_db_rollback(e->db);
	insert(e->db, "after inner", 3);
	assert_int_equal(kl_db_commit(e->db), -KL_E_DB);
	detail_has("rolled back by an inner step");
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t"), 1);
	/* The connection is free again. */
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "next", 4);
	assert_int_equal(kl_db_commit(e->db), 0);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t"), 2);

	/* Closing with a transaction open rolls it back. */
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "unfinished", 6);
	kl_db_free(e->db);
	assert_int_equal(kl_db_open(e->path, &e->db), 0);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t WHERE name = 'unfinished'"), 0);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t"), 2);

	/* An outermost rollback undoes at once; a spare one does nothing. */
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "gone", 5);
	kl_db_rollback(e->db);
	kl_db_rollback(e->db);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t WHERE name = 'gone'"), 0);
}

static const char *const v1[] = {
	"CREATE TABLE m_a(x INTEGER);",
	"CREATE TABLE m_b(y INTEGER); INSERT INTO m_a VALUES(2);",
};

static int64_t version(kl_db *db, const char *module)
{
	kl_db_stmt *st = NULL;
	int64_t v = -1;

	assert_int_equal(
	    kl_db_prepare(db, "SELECT version FROM schema_version WHERE module = ?1", &st), 0);
	kl_db_bind_text(st, 1, module);
	if (kl_db_step(st) == 1)
		v = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	return v;
}

static void test_migrations(void **state)
{
	struct env *e = *state;
	const char *bad[] = { v1[0], v1[1], "CREATE TABLE m_c(z); INSERT INTO m_nope VALUES(1);" };

	/* One step, then the next: each script runs once (run again, the
	 * CREATE TABLE of the first would fail). */
	assert_int_equal(kl_db_migrate(e->db, "m", v1, 1), 0);
	assert_int_equal(version(e->db, "m"), 1);
	assert_int_equal(kl_db_migrate(e->db, "m", v1, 2), 0);
	assert_int_equal(version(e->db, "m"), 2);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM m_a"), 1);
	/* Modules have their own versions. */
	assert_int_equal(kl_db_migrate(e->db, "other", v1, 0), 0);
	assert_int_equal(version(e->db, "other"), -1);

	/* After a reopen: nothing to do. */
	kl_db_free(e->db);
	assert_int_equal(kl_db_open(e->path, &e->db), 0);
	assert_int_equal(kl_db_migrate(e->db, "m", v1, 2), 0);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM m_a"), 1);

	/* A database newer than the program: refused, untouched. */
	assert_int_equal(kl_db_migrate(e->db, "m", v1, 1), -KL_E_DB);
	detail_has("schema 'm' is version 2, newer than this program knows (1)");
	detail_has(e->path);
	assert_int_equal(version(e->db, "m"), 2);

	/* A migration that fails is undone whole, and says where. */
	assert_int_equal(kl_db_migrate(e->db, "m", bad, 3), -KL_E_DB);
	detail_has("schema 'm' to version 3");
	detail_has("no such table: m_nope");
	assert_int_equal(version(e->db, "m"), 2);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM sqlite_master WHERE name = 'm_c'"), 0);
	/* And the connection is usable after it. */
	insert(e->db, "still", 1);
}

static void test_bad_sql(void **state)
{
	struct env *e = *state;
	kl_db_stmt *st = NULL;

	assert_int_equal(kl_db_prepare(e->db, "SELEC id FROM t", &st), -KL_E_DB);
	assert_null(st);
	detail_has("prepare \"SELEC id FROM t\"");
	detail_has("syntax error");
	assert_int_equal(kl_db_prepare(e->db, "SELECT id FROM nosuch", &st), -KL_E_DB);
	detail_has("no such table: nosuch");
	assert_int_equal(kl_db_exec(e->db, "CREATE TABLE t(x)"), -KL_E_DB);
	detail_has("table t already exists");
	/* A long statement is quoted by its start. */
	assert_int_equal(kl_db_prepare(e->db,
	                               "SELECT id, name, n, data, id, name, n, data, id, name, n "
	                               "FROM t WHERE missing_column = 1",
	                               &st),
	                 -KL_E_DB);
	detail_has("...\"");
	detail_has("no such column: missing_column");

	/* A bind to a parameter that is not there: reported by the step. */
	assert_int_equal(kl_db_prepare(e->db, "SELECT id FROM t WHERE name = ?1", &st), 0);
	kl_db_bind_text(st, 1, "x");
	kl_db_bind_int64(st, 5, 1);
	assert_int_equal(kl_db_step(st), -KL_E_DB);
	detail_has("bind ?5");
	detail_has("column index out of range");
	/* A reset forgets it. */
	kl_db_reset(st);
	kl_db_bind_text(st, 1, "x");
	assert_int_equal(kl_db_step(st), 0);
	kl_db_stmt_free(st);
}

static void test_constraints(void **state)
{
	struct env *e = *state;
	kl_db_stmt *st = NULL;

	insert(e->db, "dup", 1);
	/* UNIQUE and PRIMARY KEY: "exists", naming the column. */
	assert_int_equal(kl_db_prepare(e->db, "INSERT INTO t(name, n) VALUES(?1, ?2)", &st), 0);
	kl_db_bind_text(st, 1, "dup");
	kl_db_bind_int64(st, 2, 1);
	assert_int_equal(kl_db_step_done(st), -KL_E_EXISTS);
	detail_has("UNIQUE constraint failed: t.name");
	detail_has("(sqlite 2067)");
	/* CHECK, NOT NULL: a database error that says which. */
	kl_db_bind_text(st, 1, "negative");
	kl_db_bind_int64(st, 2, -1);
	assert_int_equal(kl_db_step_done(st), -KL_E_DB);
	detail_has("CHECK constraint failed");
	kl_db_bind_int64(st, 2, 1);
	assert_int_equal(kl_db_step_done(st), -KL_E_DB);
	detail_has("NOT NULL constraint failed: t.name");
	kl_db_stmt_free(st);
	assert_int_equal(kl_db_exec(e->db, "INSERT INTO t(id, name) VALUES(1000, 'a');"
	                                   "INSERT INTO t(id, name) VALUES(1000, 'b')"),
	                 -KL_E_EXISTS);
	detail_has("UNIQUE constraint failed: t.id");
	/* Foreign keys are on. */
	assert_int_equal(kl_db_exec(e->db, "INSERT INTO u VALUES(424242)"), -KL_E_DB);
	detail_has("FOREIGN KEY constraint failed");

	/* A violation inside a transaction, rolled back by its caller. */
	assert_int_equal(kl_db_begin(e->db), 0);
	insert(e->db, "in txn", 1);
	assert_int_equal(kl_db_exec(e->db, "INSERT INTO t(name) VALUES('dup')"), -KL_E_EXISTS);
	kl_db_rollback(e->db);
	assert_int_equal(q1(e->db, "SELECT count(*) FROM t WHERE name = 'in txn'"), 0);
}

static void test_open_errors(void **state)
{
	struct env *e = *state;
	char path[400];
	kl_db *db = NULL;

	assert_int_equal(kl_db_open("", &db), -KL_E_INVALID);
	snprintf(path, sizeof(path), "%s/no/such/dir/x.db", e->dir);
	assert_int_equal(kl_db_open(path, &db), -KL_E_DB);
	assert_null(db);
	detail_has(path);
	kl_db_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_statements_and_columns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_statement_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_sql, setup, teardown),
		cmocka_unit_test_setup_teardown(test_constraints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
