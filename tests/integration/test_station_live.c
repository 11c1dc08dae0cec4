/* The station stays live while it does heavy work: `keyline station` on a
 * home made by `keyline ca init`, whose registry holds a quarter of a
 * million revoked certificates and as many audit entries (written straight
 * into its SQLite file before the start), so that crl.publish and a full
 * audit.verify take seconds. While they run, the same connection and
 * another one are answered: the order of the answers shows it, never a
 * clock. A client that goes away while its call runs hurts nothing.
 *
 * One slot on a link nobody serves (no DUT is needed; probing is off).
 * Idle connections are closed after a second: one waiting for a long
 * answer is not idle. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "kl_error.h"
#include "store.h"

#define REVOKED 250000
#define AUDITED 250000
/* Bounds against hanging, never timing checks. */
#define LONG_WAIT_MS (600 * 1000)

static struct {
	struct env e;
	kl_vendor *acme;
	char sock[PATH_MAX];
	char db[PATH_MAX];
	char crl[PATH_MAX];
	char log[PATH_MAX];
	pid_t daemon;
} g;

static void append(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void copy(const char *from, const char *to)
{
	const char *v[] = { "cp", from, to, NULL };

	assert_int_equal(kl_floor_run(g.e.floor, NULL, NULL, v), 0);
}

/* REVOKED revoked, unexpired certificates of the issuing CA, as rows of
 * ca_cert: what the CRL lists. */
static void fill_revoked(void)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t issuer, now = (int64_t)time(NULL);

	assert_int_equal(sqlite3_open(g.db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM ca_issuer WHERE name = 'issuing'",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	issuer = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db,
	                       "INSERT INTO ca_cert(issuer_id, serial, state, profile, "
	                       "subject, tbs, not_after, created, issued, revoked, "
	                       "reason) VALUES(?1, ?2, 'issued', 'idevid', 'CN=bulk', "
	                       "x'00', ?3, ?4, ?4, ?4, 1)",
	                       -1, &st, NULL),
	    SQLITE_OK);
	for (int64_t i = 0; i < REVOKED; i++) {
		char serial[32];

		snprintf(serial, sizeof(serial), "7e%014llx", (unsigned long long)i);
		sqlite3_bind_int64(st, 1, issuer);
		sqlite3_bind_text(st, 2, serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, now + 10 * 365 * 86400LL);
		sqlite3_bind_int64(st, 4, now);
		if (sqlite3_step(st) != SQLITE_DONE)
			fail_msg("insert revoked row: %s", sqlite3_errmsg(db));
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* AUDITED more entries of the hash-chained log, through the store (the
 * chain must verify to be walked to its end). */
static void fill_audit(void)
{
	kl_store *s;

	assert_int_equal(kl_store_open(g.db, &s), 0);
	assert_int_equal(kl_store_begin(s), 0);
	for (int i = 0; i < AUDITED; i++)
		if (kl_store_audit(s, "test", "test.bulk", "{\"n\":1}") < 0)
			fail_msg("audit entry %d: %s", i, kl_error_detail());
	assert_int_equal(kl_store_commit(s), 0);
	kl_store_free(s);
}

static void daemon_start(void)
{
	g.daemon = station_spawn(g.e.home, g.log);
	station_wait_serving(g.daemon, g.sock, g.log);
}

/* SIGTERM; the exit status (-1: it had to be killed). */
static int daemon_stop(void)
{
	int r = station_stop(g.daemon, LONG_WAIT_MS);

	g.daemon = 0;
	return r;
}

static int group_setup(void **state)
{
	char p[PATH_MAX], conf[PATH_MAX + 256];

	(void)state;
	if (kl_floor_new(&g.e.floor) < 0 || kl_floor_vendor(g.e.floor, "Acme TPM", &g.acme) < 0)
		return -1;
	env_paths(&g.e, g.e.floor);
	snprintf(g.log, sizeof(g.log), "%s/station.log", g.e.dir);
	snprintf(g.sock, sizeof(g.sock), "%s/station.sock", g.e.dir);
	snprintf(g.db, sizeof(g.db), "%s/registry.db", g.e.home);
	snprintf(g.crl, sizeof(g.crl), "%s/crl/issuing.crl", g.e.home);
	if (keyline(&g.e, "ca", "init", NULL) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/trust", g.e.home);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/trust/acme.pem", g.e.home);
	copy(g.acme->root_pem, p);
	snprintf(p, sizeof(p), "%s/trust/acme-issuing.pem", g.e.home);
	copy(g.acme->intermediate_pem, p);
	snprintf(p, sizeof(p), "%s/keyline.conf", g.e.home);
	snprintf(conf, sizeof(conf),
	         "\n[station]\nsocket = %s\nlink_probe_s = 0\nidle_close_s = 1\n\n[slots]\n"
	         "A = swtpm:host=127.0.0.1,port=9\n",
	         g.sock);
	append(p, conf);
	fill_revoked();
	fill_audit();
	daemon_start();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (g.daemon > 0) {
		char *log = slurp(g.log);

		daemon_stop();
		fprintf(stderr, "station log:\n%s\n", log);
		free(log);
	}
	kl_floor_free(g.e.floor);
	return 0;
}

static kl_client *connect_root(void)
{
	kl_client *c = NULL;

	if (kl_client_connect(g.sock, &c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
	return c;
}

static void send_line(kl_client *c, const char *line)
{
	assert_int_equal(kl_client_send_raw(c, line, strlen(line)), 0);
}

/* The next answer on c (events skipped), waiting at most LONG_WAIT_MS. */
static json_object *next_answer(kl_client *c)
{
	for (;;) {
		json_object *m = NULL;

		if (kl_client_read(c, LONG_WAIT_MS, &m) < 0)
			fail_msg("no answer from the station: %s", kl_error_detail());
		if (!jget(m, "method"))
			return m;
		json_object_put(m);
	}
}

/* While crl.publish (250,000 entries) and a full audit.verify run, the
 * loop answers: a ping sent behind them on the same connection comes back
 * first, station.status on another connection is answered while neither
 * has answered yet; then both answer, correctly. */
static void test_answers_during_heavy_work(void **state)
{
	kl_client *a = connect_root(), *b = connect_root();
	json_object *m, *res = NULL, *crl_answer = NULL, *verify_answer = NULL;
	X509_CRL *crl;
	FILE *f;

	(void)state;
	send_line(a, "{\"jsonrpc\":\"2.0\",\"method\":\"crl.publish\",\"id\":1}\n"
	             "{\"jsonrpc\":\"2.0\",\"method\":\"audit.verify\",\"params\":{\"full\":true},"
	             "\"id\":2}\n"
	             "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":3}\n");
	/* The ping was read after the two: it is answered before them. */
	m = next_answer(a);
	if (jint(m, "id") != 3)
		fail_msg("the ping waited for the long calls: first answer %s", dump(m));
	json_object_put(m);

	for (int i = 0; i < 5; i++) {
		assert_int_equal(kl_client_call_timeout(b, "station.status", NULL, &res, 60000), 0);
		assert_true(json_object_get_boolean(jget(res, "running")));
		json_object_put(res);
		res = NULL;
	}
	/* ... and all that while the long calls were still running. */
	assert_int_equal(kl_client_read(a, 0, &m), -KL_E_TIMEOUT);

	for (int i = 0; i < 2; i++) {
		m = next_answer(a);
		if (jint(m, "id") == 1)
			crl_answer = m;
		else if (jint(m, "id") == 2)
			verify_answer = m;
		else
			fail_msg("unexpected answer %s", dump(m));
	}
	/* In the order they were asked: one worker, one call at a time. */
	assert_non_null(crl_answer);
	assert_non_null(verify_answer);
	res = jget(crl_answer, "result");
	if (!res)
		fail_msg("crl.publish: %s", dump(crl_answer));
	assert_string_equal(json_object_get_string(jget(res, "path")), g.crl);
	assert_true(jint(res, "crl_number") >= 1);
	res = jget(verify_answer, "result");
	if (!res || !json_object_get_boolean(jget(res, "ok")))
		fail_msg("audit.verify: %s", dump(verify_answer));
	assert_true(jint(res, "entries") >= AUDITED);
	json_object_put(crl_answer);
	json_object_put(verify_answer);

	/* The CRL lists every revoked row. */
	f = fopen(g.crl, "rb");
	assert_non_null(f);
	crl = d2i_X509_CRL_fp(f, NULL);
	fclose(f);
	assert_non_null(crl);
	assert_true(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) >= REVOKED);
	X509_CRL_free(crl);

	kl_client_free(a);
	kl_client_free(b);
}

/* The commit of a large pre-registration batch runs on the backend worker
 * too: a ping sent behind it on the same connection is answered first, and
 * then the commit registers every entry. */
static void test_answers_during_prereg_commit(void **state)
{
	enum { PIECES = 20, PER_PIECE = 3000 };
	kl_client *a = connect_root();
	json_object *p, *res = NULL, *m;
	char id[64], line[256];

	(void)state;
	p = json_object_new_object();
	json_object_object_add(p, "tenant", json_object_new_string("liveco"));
	json_object_object_add(p, "work_order", json_object_new_string("WO-LIVE"));
	json_object_object_add(p, "entries", json_object_new_int(PIECES * PER_PIECE));
	assert_int_equal(kl_client_call_timeout(a, "devices.preregister_begin", p, &res, 60000), 0);
	snprintf(id, sizeof(id), "%s", json_object_get_string(jget(res, "batch")));
	json_object_put(res);
	for (int piece = 0; piece < PIECES; piece++) {
		json_object *items = json_object_new_array();

		for (int i = 0; i < PER_PIECE; i++) {
			char serial[32];

			snprintf(serial, sizeof(serial), "LIVE-%06d", piece * PER_PIECE + i);
			json_object_array_add(items, json_object_new_string(serial));
		}
		p = json_object_new_object();
		json_object_object_add(p, "batch", json_object_new_string(id));
		json_object_object_add(p, "offset", json_object_new_int(piece * PER_PIECE));
		json_object_object_add(p, "items", items);
		assert_int_equal(
		    kl_client_call_timeout(a, "devices.preregister_add", p, &res, 60000), 0);
		json_object_put(res);
	}
	snprintf(line, sizeof(line),
	         "{\"jsonrpc\":\"2.0\",\"method\":\"devices.preregister_commit\","
	         "\"params\":{\"batch\":\"%s\"},\"id\":1}\n"
	         "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":2}\n",
	         id);
	send_line(a, line);
	m = next_answer(a);
	if (jint(m, "id") != 2)
		fail_msg("the ping waited for the commit: first answer %s", dump(m));
	json_object_put(m);
	m = next_answer(a);
	res = jget(m, "result");
	if (jint(m, "id") != 1 || !res)
		fail_msg("devices.preregister_commit: %s", dump(m));
	assert_int_equal(jint(res, "entries"), PIECES * PER_PIECE);
	assert_int_equal(jint(res, "changed"), PIECES * PER_PIECE);
	json_object_put(m);
	kl_client_free(a);
}

/* Clients that leave while their calls run (or wait in the queue): the
 * answers are dropped, the station goes on serving and still stops
 * cleanly (under the sanitizers, without a leak). */
static void test_client_leaves_mid_call(void **state)
{
	kl_client *b = connect_root();
	json_object *res = NULL;

	(void)state;
	for (int i = 0; i < 3; i++) {
		kl_client *a = connect_root();

		send_line(a, "{\"jsonrpc\":\"2.0\",\"method\":\"crl.publish\",\"id\":1}\n"
		             "{\"jsonrpc\":\"2.0\",\"method\":\"audit.verify\",\"id\":2}\n");
		kl_client_free(a);
	}
	assert_int_equal(kl_client_call_timeout(b, "station.status", NULL, &res, 60000), 0);
	json_object_put(res);
	/* The worker goes through them all, then answers this one. */
	assert_int_equal(kl_client_call_timeout(b, "audit.verify", NULL, &res, LONG_WAIT_MS), 0);
	assert_true(json_object_get_boolean(jget(res, "ok")));
	json_object_put(res);
	kl_client_free(b);
	assert_int_equal(waitpid(g.daemon, NULL, WNOHANG), 0);
}

/* SIGTERM while a long call runs: it ends, and the daemon exits 0. */
static void test_stop_during_call(void **state)
{
	kl_client *a = connect_root();
	json_object *m;

	(void)state;
	send_line(a, "{\"jsonrpc\":\"2.0\",\"method\":\"crl.publish\",\"id\":1}\n"
	             "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":2}\n");
	m = next_answer(a);
	assert_int_equal(jint(m, "id"), 2);
	json_object_put(m);
	assert_int_equal(daemon_stop(), 0);
	kl_client_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_during_heavy_work),
		cmocka_unit_test(test_answers_during_prereg_commit),
		cmocka_unit_test(test_client_leaves_mid_call),
		cmocka_unit_test(test_stop_during_call),
	};

	return cmocka_run_group_tests_name("station_live", tests, group_setup, group_teardown);
}
