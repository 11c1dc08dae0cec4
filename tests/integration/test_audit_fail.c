/* When the audit log cannot be written (docs/station.md): a real SQLite
 * store whose audit table refuses inserts (a trigger raising an error, as a
 * full disk or a broken file would) makes
 *   - kl_store_audit return the error, count it and name the action;
 *   - kl_store_audit_noted count it and return nothing;
 *   - an issuance, whose entry is in its transaction, fail and keep nothing;
 *   - `keyline station` refuse to serve, naming the audit log;
 * and once the store takes writes again the chain still verifies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "cli_test.h"
#include "kl_error.h"
#include "store.h"

static struct {
	struct env e;
	kl_vendor *acme;
	char db[PATH_MAX];
} g;

/* The audit table refuses (1) or takes (0) new entries. */
static void audit_refuses(const char *db_path, int on)
{
	sqlite3 *db = NULL;
	char *err = NULL;
	const char *sql = on ? "CREATE TRIGGER test_audit_full BEFORE INSERT ON audit "
	                       "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
	                     : "DROP TRIGGER IF EXISTS test_audit_full;";

	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(db);
}

static int64_t audit_rows(const char *db_path)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM audit", -1, &st, NULL),
	                 SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_store_counts_and_reports(void **state)
{
	char path[PATH_MAX];
	kl_store *s = NULL;
	kl_audit_report rep;
	int64_t before;

	(void)state;
	snprintf(path, sizeof(path), "%s/store.db", g.e.dir);
	assert_int_equal(kl_store_open(path, &s), 0);
	assert_int_equal(kl_store_audit(s, "test", "test.first", "{}"), 0);
	assert_int_equal(kl_store_audit_failures(s), 0);
	before = audit_rows(path);

	audit_refuses(path, 1);
	assert_true(kl_store_audit(s, "test", "test.lost", "{\"n\":1}") < 0);
	assert_int_equal(kl_error_code(), KL_E_DB);
	assert_non_null(strstr(kl_error_detail(), "database or disk is full"));
	assert_int_equal(kl_store_audit_failures(s), 1);
	kl_store_audit_noted(s, "test", "test.noted", "{}");
	assert_int_equal(kl_store_audit_failures(s), 2);
	assert_int_equal(audit_rows(path), before); /* nothing half-written */

	audit_refuses(path, 0);
	assert_int_equal(kl_store_audit(s, "test", "test.again", "{}"), 0);
	assert_int_equal(kl_store_audit_failures(s), 2);
	assert_int_equal(kl_store_audit_verify(s, &rep), 0);
	assert_int_equal(rep.first_bad, 0);
	assert_int_equal(audit_rows(path), before + 1);
	kl_store_free(s);
}

static void test_issue_fails_with_its_entry(void **state)
{
	char csr[PATH_MAX], key[PATH_MAX], cert[PATH_MAX];
	const char *req[] = { "openssl",
		              "req",
		              "-new",
		              "-newkey",
		              "ec",
		              "-pkeyopt",
		              "ec_paramgen_curve:P-256",
		              "-nodes",
		              "-keyout",
		              key,
		              "-subj",
		              "/CN=audit-test",
		              "-out",
		              csr,
		              NULL };
	int64_t before;
	char *err;

	(void)state;
	snprintf(csr, sizeof(csr), "%s/t.csr", g.e.dir);
	snprintf(key, sizeof(key), "%s/t.key", g.e.dir);
	snprintf(cert, sizeof(cert), "%s/t.pem", g.e.dir);
	assert_int_equal(kl_floor_run(g.e.floor, NULL, NULL, req), 0);
	before = audit_rows(g.db);

	audit_refuses(g.db, 1);
	assert_int_not_equal(
	    keyline(&g.e, "ca", "issue", "--csr", csr, "--profile", "tls", "--out", cert, NULL), 0);
	err = slurp(g.e.err);
	assert_non_null(strstr(err, "database or disk is full"));
	free(err);
	assert_int_equal(audit_rows(g.db), before);
	/* No certificate came out without its entry. */
	struct stat st;
	assert_true(stat(cert, &st) != 0 || st.st_size == 0);

	audit_refuses(g.db, 0);
	assert_int_equal(
	    keyline(&g.e, "ca", "issue", "--csr", csr, "--profile", "tls", "--out", cert, NULL), 0);
	assert_true(audit_rows(g.db) > before);
	assert_int_equal(keyline(&g.e, "audit", "verify", NULL), 0);
}

static void test_station_will_not_serve(void **state)
{
	char conf[PATH_MAX], *base, *text;
	size_t n;
	int64_t before;
	char *err;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/keyline.conf", g.e.home);
	base = slurp(conf);
	n = strlen(base) + 1024;
	text = malloc(n);
	assert_non_null(text);
	/* A slot whose link is down: the station serves with it, so the start
	 * entry is the only thing that can stop it here. */
	snprintf(text, n,
	         "%s\nsocket = %s/st.sock\n\n[slots]\nslot-01 = swtpm:host=127.0.0.1,port=1\n",
	         base, g.e.dir);
	FILE *f = fopen(conf, "we");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	free(text);
	free(base);
	assert_int_equal(keyline(&g.e, "station", "--check", NULL), 0);

	before = audit_rows(g.db);
	audit_refuses(g.db, 1);
	assert_int_equal(keyline(&g.e, "station", NULL), 1);
	err = slurp(g.e.err);
	if (!strstr(err, "will not serve without its audit log"))
		fail_msg("keyline station said: %s", err);
	assert_non_null(strstr(err, "database or disk is full"));
	free(err);
	audit_refuses(g.db, 0);
	assert_int_equal(audit_rows(g.db), before);
}

static int group_setup(void **state)
{
	char p[PATH_MAX], root[PATH_MAX], inter[PATH_MAX];
	const char *cp1[4] = { "cp", NULL, root, NULL }, *cp2[4] = { "cp", NULL, inter, NULL };

	(void)state;
	if (kl_floor_new(&g.e.floor) < 0 || kl_floor_vendor(g.e.floor, "Acme TPM", &g.acme) < 0)
		return -1;
	env_paths(&g.e, g.e.floor);
	snprintf(g.db, sizeof(g.db), "%s/registry.db", g.e.home);
	if (keyline(&g.e, "ca", "init", NULL) != 0) {
		char *err = slurp(g.e.err);

		fprintf(stderr, "ca init failed: %s\n", err);
		free(err);
		return -1;
	}
	snprintf(p, sizeof(p), "%s/trust", g.e.home);
	if (mkdir(p, 0755) < 0 && errno != EEXIST) /* ca init may have made it */
		return -1;
	snprintf(root, sizeof(root), "%s/trust/acme.pem", g.e.home);
	snprintf(inter, sizeof(inter), "%s/trust/acme-issuing.pem", g.e.home);
	cp1[1] = g.acme->root_pem;
	cp2[1] = g.acme->intermediate_pem;
	if (kl_floor_run(g.e.floor, NULL, NULL, cp1) != 0 ||
	    kl_floor_run(g.e.floor, NULL, NULL, cp2) != 0)
		return -1;
	if (audit_rows(g.db) <= 0) {
		fprintf(stderr, "no audit entries in %s after ca init\n", g.db);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	kl_floor_free(g.e.floor);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_counts_and_reports),
		cmocka_unit_test(test_issue_fails_with_its_entry),
		cmocka_unit_test(test_station_will_not_serve),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
