/* The keyline CLI as a client of a running station: a demo line left
 * running (`keyline demo --keep-running`, real SoftHSM CA, swtpm DUTs, a
 * station with a slot per DUT) and every client command against it, judged
 * by exit status, the tables people read and the JSON scripts read. Also
 * run under ASan by CI, so the client's own paths are leak-checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "json_test.h"
#include "cli_test.h"

static struct env e;
static pid_t demo;

static json_object *out_json(void)
{
	char *text = slurp(e.out);
	json_object *o = json_tokener_parse(text);

	if (!o)
		fail_msg("not JSON:\n%s", text);
	free(text);
	return o;
}

static int setup(void **state)
{
	(void)state;
	if (kl_floor_new(&e.floor) < 0)
		return -1;
	env_paths(&e, e.floor);
	/* slot-01, 02: provisioned DEMO-0001, 0002; slot-03: the forged DUT;
	 * slot-04..06: factory-new DUTs for DEMO-0004..0006. */
	demo = demo_line_start(&e, 2, 3, NULL);
	return 0;
}

static int teardown(void **state)
{
	char tmp[PATH_MAX];

	(void)state;
	snprintf(tmp, sizeof(tmp), "%s/tmp", e.dir);
	if (demo > 0)
		demo_line_stop(&e, demo);
	/* Nothing of the line is left running. */
	if (kl_procs_mentioning(tmp, true) != 0 || kl_procs_mentioning(e.home, true) != 0) {
		kl_floor_free(e.floor);
		return -1;
	}
	kl_floor_free(e.floor);
	return 0;
}

static void test_status(void **state)
{
	json_object *o;

	(void)state;
	assert_int_equal(keyline(&e, "status", NULL), 0);
	assert_in(e.out, "slots: 6,");
	assert_in(e.out, "SLOT");
	assert_in(e.out, "slot-04    idle");
	assert_int_equal(keyline(&e, "status", "--json", NULL), 0);
	o = out_json();
	assert_int_equal(json_object_get_int(jget(jget(o, "slots"), "total")), 6);
	assert_true(json_object_get_boolean(jget(o, "hsm_logged_in")));
	assert_int_equal(json_object_array_length(jget(o, "slot_list")), 6);
	json_object_put(o);
}

static void test_provision(void **state)
{
	json_object *o;
	char id[32];

	(void)state;
	assert_int_equal(
	    keyline(&e, "provision", "--serial", "DEMO-0004", "--slot", "slot-04", NULL), 0);
	assert_in(e.out, "provision DEMO-0004 on slot slot-04: passed");
	assert_in(e.out, "IDevID ");
	assert_int_equal(keyline(&e, "provision", "--serial", "DEMO-0005", "--slot", "slot-05",
	                         "--ek", "p384", "--json", NULL),
	                 0);
	o = out_json();
	assert_string_equal(jstr(o, "state"), "passed");
	assert_string_equal(jstr(jget(o, "result"), "ek_type"), "p384");
	json_object_put(o);
	/* Not pre-registered: refused at the gates, exit status 1. */
	assert_int_equal(keyline(&e, "provision", "--serial", "NOPE-1", "--slot", "slot-06", NULL),
	                 1);
	assert_in(e.out, "failed at gates [not_preregistered]");
	/* --no-wait: queued, then followed with jobs show. */
	assert_int_equal(keyline(&e, "provision", "--serial", "DEMO-0006", "--slot", "slot-06",
	                         "--no-wait", "--json", NULL),
	                 0);
	o = out_json();
	snprintf(id, sizeof(id), "%lld", (long long)json_object_get_int64(jget(o, "job")));
	json_object_put(o);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(keyline(&e, "jobs", "show", "--id", id, "--json", NULL), 0);
		o = out_json();
		bool done = strcmp(jstr(o, "state"), "passed") == 0;
		json_object_put(o);
		if (done)
			break;
		usleep(100 * 1000);
	}
	assert_int_equal(keyline(&e, "jobs", "show", "--id", id, NULL), 0);
	assert_in(e.out, "provision DEMO-0006 on slot slot-06: passed");
	/* Finished jobs cannot be aborted; unknown ones do not exist. */
	assert_int_equal(keyline(&e, "jobs", "abort", "--id", id, NULL), 1);
	assert_in(e.err, "has already passed");
	assert_int_equal(keyline(&e, "jobs", "show", "--id", "99999", NULL), 1);
	assert_in(e.err, "no job 99999");
	assert_int_equal(keyline(&e, "jobs", NULL), 0);
	assert_in(e.out, "DEMO-0004");
	assert_in(e.out, "DEMO-0006");
	/* Usage errors. */
	assert_int_equal(keyline(&e, "provision", "--slot", "slot-06", NULL), 2);
	assert_in(e.err, "--serial is required");
	assert_int_equal(keyline(&e, "provision", "--serial", "X", "--slot", "slot-99", NULL), 1);
	assert_in(e.err, "no slot named 'slot-99'");
}

static void test_lifecycle(void **state)
{
	json_object *o;

	(void)state;
	assert_int_equal(keyline(&e, "renew", "--slot", "slot-04", "--serial", "DEMO-0004", NULL),
	                 0);
	assert_in(e.out, "renew DEMO-0004 on slot slot-04: passed");
	assert_in(e.out, "new IDevID certificate");
	assert_int_equal(
	    keyline(&e, "decommission", "--slot", "slot-05", "--serial", "DEMO-0005", NULL), 0);
	assert_in(e.out, "decommission DEMO-0005 on slot slot-05: passed");
	assert_in(e.out, "sanitization record");
	assert_int_equal(keyline(&e, "record", "--serial", "DEMO-0005", NULL), 0);
	o = out_json();
	assert_string_equal(jstr(jget(o, "record"), "format"), "keyline-sanitization-record-v1");
	assert_non_null(jget(o, "signature"));
	json_object_put(o);
	/* A device the station cannot prove on that slot: refused, exit 1. */
	assert_int_equal(keyline(&e, "renew", "--slot", "slot-06", "--serial", "DEMO-0004", NULL),
	                 1);
	assert_in(e.out, "failed at");
	assert_int_equal(keyline(&e, "lost", "--serial", "DEMO-0001", NULL), 0);
	assert_in(e.out, "2 certificate(s) revoked; CRL ");
	assert_int_equal(
	    keyline(&e, "revoke", "--serial", "DEMO-0002", "--reason", "affiliationChanged", NULL),
	    0);
	assert_in(e.out, "2 certificate(s) revoked");
	assert_int_equal(
	    keyline(&e, "revoke", "--serial", "DEMO-0002", "--reason", "boredom", NULL), 1);
	assert_in(e.err, "not an RFC 5280 reason");
	assert_int_equal(keyline(&e, "lost", "--serial", "NOPE-2", NULL), 1);
	assert_in(e.err, "NOPE-2");
	assert_int_equal(keyline(&e, "crl", "--json", NULL), 0);
	o = out_json();
	assert_true(json_object_get_int64(jget(o, "crl_number")) >= 3);
	json_object_put(o);
}

static void test_reads(void **state)
{
	json_object *o;
	char csv[PATH_MAX];
	FILE *f;

	(void)state;
	assert_int_equal(keyline(&e, "devices", "list", NULL), 0);
	assert_in(e.out, "DEMO-0005            decommissioned");
	assert_in(e.out, "DEMO-0001            lost");
	/* The same outer shapes as on a stopped home: an array, or lines. */
	assert_int_equal(keyline(&e, "devices", "list", "--state", "lost", "--json", NULL), 0);
	o = out_json();
	assert_true(json_object_is_type(o, json_type_array));
	assert_int_equal(json_object_array_length(o), 1);
	assert_string_equal(jstr(json_object_array_get_idx(o, 0), "serial"), "DEMO-0001");
	json_object_put(o);
	assert_int_equal(keyline(&e, "devices", "list", "--json-lines", "--limit", "0", NULL), 0);
	assert_in(e.out, "{\"serial\":\"DEMO-0006\"");
	assert_in(e.err, "6 of 6 devices from offset 0");
	assert_int_equal(keyline(&e, "devices", "show", "DEMO-0004", NULL), 0);
	assert_in(e.out, "state        provisioned");
	assert_in(e.out, "superseded");
	assert_int_equal(keyline(&e, "audit", "list", "--limit", "5", NULL), 0);
	assert_in(e.out, "crl");
	assert_int_equal(
	    keyline(&e, "audit", "list", "--action", "station.decommission", "--json", NULL), 0);
	o = out_json();
	assert_true(json_object_array_length(jget(o, "entries")) >= 1);
	json_object_put(o);
	assert_int_equal(keyline(&e, "audit", "verify", NULL), 0);
	assert_in(e.out, "chain intact");
	/* Pre-registration goes through the station too. */
	snprintf(csv, sizeof(csv), "%s/more.csv", e.dir);
	f = fopen(csv, "w");
	assert_non_null(f);
	fputs("serial\nMORE-1\nMORE-2\n", f);
	fclose(f);
	assert_int_equal(
	    keyline(&e, "preregister", csv, "--tenant", "initech", "--work-order", "wo-9", NULL),
	    0);
	assert_in(e.out, "through the station");
	assert_int_equal(keyline(&e, "devices", "list", "--tenant", "initech", "--json", NULL), 0);
	o = out_json();
	assert_int_equal(json_object_array_length(o), 2);
	json_object_put(o);
	/* An idle slot shows what it did last. */
	assert_int_equal(keyline(&e, "status", "--json", NULL), 0);
	o = out_json();
	json_object *last = jget(json_object_array_get_idx(jget(o, "slot_list"), 3), "last_job");
	assert_string_equal(jstr(last, "kind"), "renew");
	assert_string_equal(jstr(last, "serial"), "DEMO-0004");
	assert_string_equal(jstr(last, "state"), "passed");
	json_object_put(o);
}

/* A number from the home's registry file, read with the sqlite3 program:
 * from the outside, not through our code. */
static long long registry_count(const char *sql)
{
	char db[PATH_MAX], *text;
	const char *argv[] = { "sqlite3", db, sql, NULL };
	long long n;

	snprintf(db, sizeof(db), "%s/registry.db", e.home);
	if (kl_floor_run(e.floor, e.out, NULL, argv) != 0)
		fail_msg("sqlite3 %s: %s", sql, slurp(e.out));
	text = slurp(e.out);
	n = atoll(text);
	free(text);
	return n;
}

/* A list of 100,000 serials, line 50,002 (after the header) replaced by
 * middle when it is not NULL. */
static void write_list(const char *path, const char *prefix, const char *middle)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("serial\n", f);
	for (int i = 0; i < 100000; i++)
		if (middle && i == 50000)
			fprintf(f, "%s\n", middle);
		else
			fprintf(f, "%s-%06d\n", prefix, i);
	assert_int_equal(fclose(f), 0);
}

/* 100,000 serials through the running station: more than one request may
 * hold, so they go as one batch of pieces; every one registered, and a
 * file with one bad line in the middle registers nothing and names it. */
static void test_preregister_large(void **state)
{
	char big[PATH_MAX], bad[PATH_MAX], steal[PATH_MAX], msg[PATH_MAX + 128];
	json_object *o, *a;

	(void)state;
	snprintf(big, sizeof(big), "%s/bulk.csv", e.dir);
	write_list(big, "BULK", NULL);
	assert_int_equal(keyline(&e, "preregister", big, "--tenant", "bulk", "--work-order",
	                         "wo-big", "--progress", NULL),
	                 0);
	assert_in(e.out, "registered 100000 serial(s)");
	assert_in(e.out, "through the station");
	assert_in(e.err, "sent 100000 of 100000 entries (100%)");
	assert_int_equal(registry_count("SELECT count(*) FROM reg_device d JOIN reg_tenant t "
	                                "ON t.id = d.tenant_id WHERE t.name = 'bulk' AND "
	                                "d.state = 'preregistered'"),
	                 100000);
	assert_int_equal(registry_count("SELECT count(*) FROM reg_prereg p JOIN reg_work_order "
	                                "w ON w.id = p.work_order_id WHERE w.name = 'wo-big'"),
	                 100000);
	assert_int_equal(registry_count("SELECT count(DISTINCT d.serial) FROM reg_device d "
	                                "WHERE d.serial LIKE 'BULK-%'"),
	                 100000);
	/* A device of the batch shows the audit entry that registered it. */
	assert_int_equal(keyline(&e, "devices", "show", "BULK-099999", "--json", NULL), 0);
	o = out_json();
	a = jget(o, "audit");
	assert_int_equal(json_object_array_length(a), 1);
	assert_string_equal(jstr(json_object_array_get_idx(a, 0), "action"),
	                    "registry.preregister");
	assert_string_equal(jstr(jget(json_object_array_get_idx(a, 0), "detail"), "source"), big);
	json_object_put(o);

	/* A malformed line in the middle: named before anything is sent. */
	snprintf(bad, sizeof(bad), "%s/bad.csv", e.dir);
	write_list(bad, "BAD", "BAD LINE");
	assert_int_equal(keyline(&e, "preregister", bad, "--tenant", "badco", NULL), 1);
	snprintf(msg, sizeof(msg), "%s:50002: serial 'BAD LINE' contains a space", bad);
	assert_in(e.err, msg);
	/* A serial of another tenant in the middle: found by the station at
	 * the commit, and still the whole file is refused. */
	snprintf(steal, sizeof(steal), "%s/steal.csv", e.dir);
	write_list(steal, "STEAL", "BULK-000007");
	assert_int_equal(keyline(&e, "preregister", steal, "--tenant", "thief", NULL), 1);
	snprintf(msg, sizeof(msg),
	         "%s:50002: serial BULK-000007 is already registered to tenant bulk", steal);
	assert_in(e.err, msg);
	assert_int_equal(registry_count("SELECT count(*) FROM reg_device WHERE serial LIKE "
	                                "'BAD-%' OR serial LIKE 'STEAL-%'"),
	                 0);
	assert_int_equal(registry_count("SELECT count(*) FROM reg_tenant WHERE name IN "
	                                "('badco', 'thief')"),
	                 0);
	assert_int_equal(registry_count("SELECT count(*) FROM reg_device d JOIN reg_tenant t "
	                                "ON t.id = d.tenant_id WHERE t.name = 'bulk'"),
	                 100000);
	assert_int_equal(keyline(&e, "audit", "verify", NULL), 0);
}

/* keyline events streams what happens: here a CRL published meanwhile. */
static void test_events(void **state)
{
	char log[PATH_MAX];
	pid_t ev;

	(void)state;
	snprintf(log, sizeof(log), "%s/events.log", e.dir);
	ev = fork();
	assert_true(ev >= 0);
	if (ev == 0) {
		if (!freopen(log, "w", stdout))
			_exit(126);
		execl(KEYLINE_BIN, "keyline", "--home", e.home, "events", "--json", (char *)NULL);
		_exit(127);
	}
	/* Subscribed once the station counts one more client. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(keyline(&e, "status", "--json", NULL), 0);
		json_object *o = out_json();
		int clients = json_object_get_int(jget(o, "clients"));

		json_object_put(o);
		if (clients >= 2)
			break;
		usleep(100 * 1000);
	}
	usleep(200 * 1000);
	assert_int_equal(keyline(&e, "crl", NULL), 0);
	for (int i = 0; i < 50; i++) {
		char *text = slurp(log);
		bool seen = strstr(text, "\"type\":\"crl.published\"") != NULL;

		free(text);
		if (seen)
			break;
		usleep(100 * 1000);
	}
	kill(ev, SIGTERM);
	waitpid(ev, NULL, 0);
	assert_in(log, "\"type\":\"crl.published\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_provision),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_reads),
		cmocka_unit_test(test_preregister_large),
		cmocka_unit_test(test_events),
	};

	return cmocka_run_group_tests_name("cli_station", tests, setup, teardown);
}
