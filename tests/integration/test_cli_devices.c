/* keyline preregister and keyline devices end to end on the built binary,
 * in a home made by `keyline ca init` (SoftHSM): CSV and JSON imports, all
 * or nothing with FILE:LINE errors, list and show as tables and as JSON that
 * is parsed back, a device's certificates as PEM byte for byte the ones
 * `keyline ca issue` wrote, usage errors, and an audit log that verifies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "floor.h"
#include "kl_error.h"
#include "registry.h"
#include "store.h"

#include "cli_test.h"

/* stdout parsed as one JSON value. */
static json_object *out_json(struct env *e)
{
	char *text = slurp(e->out);
	json_object *o = json_tokener_parse(text);

	if (!o)
		fail_msg("stdout is not JSON:\n%s", text);
	free(text);
	return o;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no key '%s' in %s", key, json_object_to_json_string(o));
	return v ? json_object_get_string(v) : NULL;
}

static json_object *jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no key '%s' in %s", key, json_object_to_json_string(o));
	return v;
}

static const char *write_file(struct env *e, const char *name, const char *text, char *path,
                              size_t size)
{
	FILE *f;

	snprintf(path, size, "%s/%s", e->dir, name);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_int_equal(kl_floor_new(&e->floor), 0);
	env_paths(e, e->floor);
	if (keyline(e, "ca", "init", "--org", "Test Org", NULL) != 0)
		fail_msg("ca init failed: %s", slurp(e->err));
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	kl_floor_free(e->floor);
	free(e);
	return 0;
}

static void test_help_and_usage(void **state)
{
	struct env *e = *state;
	char p[PATH_MAX];

	assert_int_equal(keyline(e, "--help", NULL), 0);
	assert_in(e->out, "preregister FILE --tenant T");
	assert_in(e->out, "devices list|show");
	assert_int_equal(keyline(e, "preregister", "--help", NULL), 0);
	assert_in(e->out, "usage: keyline [--home DIR] preregister FILE --tenant T");
	assert_int_equal(keyline(e, "devices", "--help", NULL), 0);
	assert_in(e->out, "show SERIAL [--json]");
	assert_int_equal(keyline(e, "devices", "list", "--help", NULL), 0);
	assert_in(e->out, "--json-lines");

	assert_int_equal(keyline(e, "devices", NULL), 2);
	assert_int_equal(keyline(e, "devices", "frob", NULL), 2);
	assert_in(e->err, "unknown command 'frob'");
	assert_int_equal(keyline(e, "preregister", NULL), 2);
	assert_in(e->err, "no FILE given");
	write_file(e, "one.csv", "SN-1\n", p, sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, NULL), 2);
	assert_in(e->err, "--tenant is required");
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "acme", "--quota", "-1", NULL),
	                 2);
	assert_int_equal(keyline(e, "preregister", p, p, "--tenant", "acme", NULL), 2);
	assert_int_equal(keyline(e, "devices", "list", "--limit", "x", NULL), 2);
	assert_int_equal(keyline(e, "devices", "list", "--state", "bogus", NULL), 2);
	assert_in(e->err, "unknown device state 'bogus'");
	assert_int_equal(keyline(e, "devices", "list", "extra", NULL), 2);
	assert_int_equal(keyline(e, "devices", "show", NULL), 2);
	assert_int_equal(keyline(e, "devices", "show", "A", "B", NULL), 2);
	/* Nothing was registered by any of that. */
	assert_int_equal(keyline(e, "devices", "list", NULL), 0);
	assert_in(e->out, "(no devices)");
}

static void test_preregister_and_list(void **state)
{
	struct env *e = *state;
	char p[PATH_MAX], csv[512], want[16];
	const char *ek = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
	json_object *o, *arr;
	char *text, *line, *save = NULL;
	int n;

	snprintf(csv, sizeof(csv),
	         "serial,ek_sha256\n# line 2 of WO-1\nSN-0001,%s\nSN-0002\n\nSN-0003,\n", ek);
	write_file(e, "wo1.csv", csv, p, sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "acme", "--work-order", "WO-1",
	                         "--quota", "2", NULL),
	                 0);
	assert_in(e->out, "registered 3 serials");
	assert_in(e->out, "quota 2, 0 used");

	/* A bad line: nothing of the file, and no new tenant either. */
	write_file(e, "bad.csv", "SN-0100\nSN-0101\nSN-0102,not-a-hash\n", p, sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "initech", NULL), 1);
	assert_in(e->err, "bad.csv:3: serial SN-0102: EK SHA-256 must be 64 hex digits");
	assert_int_equal(keyline(e, "devices", "list", "--tenant", "initech", NULL), 1);
	assert_in(e->err, "no tenant named 'initech'");
	/* Another tenant cannot take acme's serial. */
	write_file(e, "steal.json",
	           "[\n  {\"serial\": \"SN-0009\"},\n  {\"serial\": \"SN-0002\"}\n]\n", p,
	           sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "globex", NULL), 1);
	assert_in(e->err, "steal.json:3: serial SN-0002 is already registered to tenant acme");

	write_file(
	    e, "globex.json",
	    "[\n  {\"serial\": \"GX-1\", \"ek_sha256\": null},\n  {\"serial\": \"GX-2\"}\n]\n", p,
	    sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "globex", "--json", NULL), 0);
	o = out_json(e);
	assert_string_equal(jstr(o, "tenant"), "globex");
	assert_string_equal(jstr(o, "work_order"), "default");
	assert_int_equal(json_object_get_int(jget(o, "entries")), 2);
	assert_null(jget(o, "quota"));
	json_object_put(o);

	/* The whole registry as a JSON array, in serial order. */
	assert_int_equal(keyline(e, "devices", "list", "--json", NULL), 0);
	arr = out_json(e);
	assert_true(json_object_is_type(arr, json_type_array));
	assert_int_equal(json_object_array_length(arr), 5);
	static const char *const order[] = { "GX-1", "GX-2", "SN-0001", "SN-0002", "SN-0003" };
	for (int i = 0; i < 5; i++) {
		o = json_object_array_get_idx(arr, (size_t)i);
		assert_string_equal(jstr(o, "serial"), order[i]);
		assert_string_equal(jstr(o, "state"), "preregistered");
		assert_null(jget(o, "ek_sha256"));
	}
	o = json_object_array_get_idx(arr, 2);
	assert_string_equal(jstr(o, "tenant"), "acme");
	assert_string_equal(jstr(o, "work_order"), "WO-1");
	assert_string_equal(jstr(o, "expected_ek_sha256"),
	                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
	json_object_put(arr);

	assert_int_equal(keyline(e, "devices", "list", "--json", "--tenant", "globex", NULL), 0);
	arr = out_json(e);
	assert_int_equal(json_object_array_length(arr), 2);
	json_object_put(arr);
	assert_int_equal(keyline(e, "devices", "list", "--json", "--state", "provisioned", NULL),
	                 0);
	arr = out_json(e);
	assert_int_equal(json_object_array_length(arr), 0);
	json_object_put(arr);

	/* JSON lines, a page of two from the second. */
	assert_int_equal(
	    keyline(e, "devices", "list", "--json-lines", "--limit", "2", "--offset", "1", NULL),
	    0);
	text = slurp(e->out);
	n = 0;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		o = json_tokener_parse(line);
		assert_non_null(o);
		assert_string_equal(jstr(o, "serial"), order[1 + n]);
		json_object_put(o);
		n++;
	}
	free(text);
	assert_int_equal(n, 2);
	assert_in(e->err, "2 of 5 devices from offset 1; --limit 0 for all");

	/* The table for people. */
	assert_int_equal(keyline(e, "devices", "list", "--limit", "2", NULL), 0);
	assert_in(e->out, "SERIAL");
	assert_in(e->out, "WORK ORDER");
	assert_in(e->out, "(1-2 of 5; --offset 2 for more)");
	snprintf(want, sizeof(want), "GX-2");
	assert_in(e->out, want);

	/* Re-running an import is harmless. */
	snprintf(p, sizeof(p), "%s/wo1.csv", e->dir);
	assert_int_equal(
	    keyline(e, "preregister", p, "--tenant", "acme", "--work-order", "WO-1", NULL), 0);
	assert_int_equal(keyline(e, "audit", "verify", NULL), 0);
}

static void make_csr(struct env *e, const char *name, const char *subj, char *csr, size_t size)
{
	char key[PATH_MAX];

	snprintf(key, sizeof(key), "%s/%s.key", e->dir, name);
	snprintf(csr, size, "%s/%s.csr", e->dir, name);
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
		              subj,
		              "-out",
		              csr,
		              NULL };
	assert_int_equal(kl_floor_run(e->floor, "/dev/null", NULL, req), 0);
}

/* Provisions a device through the library, as the engine will. */
static void provision(struct env *e, const char *serial, const unsigned char ek[32])
{
	char db[PATH_MAX];
	kl_store *store;
	kl_registry *reg;

	snprintf(db, sizeof(db), "%s/registry.db", e->home);
	assert_int_equal(kl_store_open(db, &store), 0);
	assert_int_equal(kl_registry_open(store, &reg), 0);
	if (kl_registry_device_begin(reg, serial, "acme", ek, "test:engine") != 0 ||
	    kl_registry_device_commit(reg, serial,
	                              "{\"station\":\"line-1\",\"timings_ms\":{\"ek\":12}}",
	                              "test:engine") != 0)
		fail_msg("provision %s: %s", serial, kl_error_detail());
	kl_registry_free(reg);
	kl_store_free(store);
}

static void test_show_with_certificates(void **state)
{
	struct env *e = *state;
	char p[PATH_MAX], csr[PATH_MAX], cert[PATH_MAX], serial[64] = { 0 }, ekhex[65];
	unsigned char ek[32];
	json_object *o, *a, *c;
	char *pem, *text;

	for (int i = 0; i < 32; i++)
		ek[i] = (unsigned char)(0xa0 + i);
	kl_registry_ek_to_hex(ek, ekhex);
	write_file(e, "one.csv", "SN-0001\nSN-0002\n", p, sizeof(p));
	assert_int_equal(
	    keyline(e, "preregister", p, "--tenant", "acme", "--work-order", "WO-7", NULL), 0);
	provision(e, "SN-0001", ek);
	make_csr(e, "dev1", "/serialNumber=SN-0001/CN=device 1", csr, sizeof(csr));
	snprintf(cert, sizeof(cert), "%s/dev1.pem", e->dir);
	assert_int_equal(
	    keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", "--out", cert, NULL), 0);
	text = slurp(e->err);
	assert_non_null(strstr(text, "issued serial "));
	sscanf(strstr(text, "issued serial ") + 14, "%63s", serial);
	free(text);

	assert_int_equal(keyline(e, "devices", "show", "SN-0001", "--json", NULL), 0);
	o = out_json(e);
	assert_string_equal(jstr(o, "state"), "provisioned");
	assert_string_equal(jstr(o, "tenant"), "acme");
	assert_string_equal(jstr(o, "work_order"), "WO-7");
	assert_string_equal(jstr(o, "ek_sha256"), ekhex);
	a = jget(o, "history");
	assert_int_equal(json_object_array_length(a), 3);
	assert_string_equal(jstr(json_object_array_get_idx(a, 0), "to"), "preregistered");
	assert_string_equal(jstr(json_object_array_get_idx(a, 1), "to"), "provisioning");
	assert_string_equal(jstr(json_object_array_get_idx(a, 2), "to"), "provisioned");
	assert_string_equal(jstr(json_object_array_get_idx(a, 2), "actor"), "test:engine");
	a = jget(o, "evidence");
	assert_int_equal(json_object_array_length(a), 1);
	c = jget(json_object_array_get_idx(a, 0), "evidence");
	assert_string_equal(jstr(c, "station"), "line-1");
	a = jget(o, "certificates");
	assert_int_equal(json_object_array_length(a), 1);
	c = json_object_array_get_idx(a, 0);
	assert_string_equal(jstr(c, "serial"), serial);
	assert_string_equal(jstr(c, "profile"), "ldevid");
	assert_string_equal(jstr(c, "state"), "issued");
	assert_null(jget(c, "revoked"));
	pem = slurp(cert);
	assert_string_equal(jstr(c, "pem"), pem);
	json_object_put(o);

	/* The same for people, the PEM included. */
	assert_int_equal(keyline(e, "devices", "show", "SN-0001", NULL), 0);
	assert_in(e->out, "state        provisioned");
	assert_in(e->out, ekhex);
	assert_in(e->out, "\"station\": \"line-1\"");
	text = slurp(e->out);
	assert_non_null(strstr(text, pem));
	free(text);
	free(pem);

	/* Revocation shows. */
	assert_int_equal(
	    keyline(e, "ca", "revoke", "--serial", serial, "--reason", "keyCompromise", NULL), 0);
	assert_int_equal(keyline(e, "devices", "show", "SN-0001", "--json", NULL), 0);
	o = out_json(e);
	c = json_object_array_get_idx(jget(o, "certificates"), 0);
	assert_non_null(jget(c, "revoked"));
	assert_string_equal(jstr(c, "revocation_reason"), "keyCompromise");
	json_object_put(o);
	assert_int_equal(keyline(e, "devices", "show", "SN-0001", NULL), 0);
	assert_in(e->out, "REVOKED");

	/* A device with nothing yet, and one that does not exist. */
	assert_int_equal(keyline(e, "devices", "show", "SN-0002", NULL), 0);
	assert_in(e->out, "EK SHA-256   (none bound)");
	assert_in(e->out, "certificates\n  (none)");
	assert_int_equal(keyline(e, "devices", "show", "NOPE", NULL), 1);
	assert_in(e->err, "no device with serial 'NOPE'");

	assert_int_equal(keyline(e, "devices", "list", "--state", "provisioned", "--json", NULL),
	                 0);
	a = out_json(e);
	assert_int_equal(json_object_array_length(a), 1);
	assert_string_equal(jstr(json_object_array_get_idx(a, 0), "serial"), "SN-0001");
	json_object_put(a);
	assert_int_equal(keyline(e, "audit", "verify", "--json", NULL), 0);
	assert_in(e->out, "\"ok\":true");
}

/* The registry commands need no CA: a home with only keyline.conf. */
static void test_home_without_ca(void **state)
{
	struct env *e = *state;
	char p[PATH_MAX], conf[PATH_MAX], home[PATH_MAX];

	snprintf(home, sizeof(home), "%s", e->home);
	snprintf(e->home, sizeof(e->home), "%s/bare", e->dir);
	const char *mk[] = { "mkdir", "-p", e->home, NULL };
	assert_int_equal(kl_floor_run(e->floor, "/dev/null", NULL, mk), 0);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", e->home);
	FILE *f = fopen(conf, "we");
	assert_non_null(f);
	fputs("[registry]\npath = ${home}/reg.db\n", f);
	fclose(f);
	write_file(e, "bare.csv", "B-1\nB-2\n", p, sizeof(p));
	assert_int_equal(keyline(e, "preregister", p, "--tenant", "acme", NULL), 0);
	assert_int_equal(keyline(e, "devices", "list", "--json", NULL), 0);
	json_object *a = out_json(e);
	assert_int_equal(json_object_array_length(a), 2);
	json_object_put(a);
	snprintf(p, sizeof(p), "%s/reg.db", e->home);
	assert_int_equal(access(p, R_OK), 0);
	/* And a directory that is no home says how to make one. */
	snprintf(e->home, sizeof(e->home), "%s/nohome", e->dir);
	assert_int_equal(keyline(e, "devices", "list", NULL), 1);
	assert_in(e->err, "not a Keyline home");
	snprintf(e->home, sizeof(e->home), "%s", home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_and_usage),
		cmocka_unit_test(test_preregister_and_list),
		cmocka_unit_test(test_show_with_certificates),
		cmocka_unit_test(test_home_without_ca),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
