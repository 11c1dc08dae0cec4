/* The device registry on a real SQLite file in a temporary directory:
 * pre-registration (API, CSV, JSON) all or nothing, every provisioning gate,
 * begin/commit/resume, a commit inside an outer transaction, the state
 * machine, the deny list, reuse-life of a repurposed EK, paging, the CA's
 * certificates of a device, and an audit entry for every change with a chain
 * that verifies. Results are checked in the database's rows, not only
 * through the registry's own API. */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "registry.h"
#include "store.h"
#include "kl_db.h"

#define ACTOR "test:registry"

struct env {
	char dir[PATH_MAX];
	char db[PATH_MAX];
	kl_store *store;
	kl_registry *reg;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void open_db(struct env *e)
{
	assert_int_equal(kl_store_open(e->db, &e->store), 0);
	assert_int_equal(kl_registry_open(e->store, &e->reg), 0);
}

static void close_db(struct env *e)
{
	kl_registry_free(e->reg);
	kl_store_free(e->store);
	e->reg = NULL;
	e->store = NULL;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *tmp = getenv("TMPDIR");

	snprintf(e->dir, sizeof(e->dir), "%s/kl-registry-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(e->dir));
	snprintf(e->db, sizeof(e->db), "%s/registry.db", e->dir);
	open_db(e);
	*state = e;
	return 0;
}

/* Every test ends with an audit chain that verifies. */
static int teardown(void **state)
{
	struct env *e = *state;
	kl_audit_report rep = { 0 };
	int r = e->store ? kl_store_audit_verify(e->store, &rep) : 0;

	close_db(e);
	nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(e);
	if (r != 0)
		fail_msg("audit log does not verify: %s", rep.problem);
	return 0;
}

/* A single number from SQL, with an optional text parameter ?1. */
static int64_t q1(struct env *e, const char *sql, const char *arg)
{
	kl_db_stmt *st = NULL;
	int64_t v = -1;

	if (kl_db_prepare(kl_store_db(e->store), sql, &st) < 0)
		fail_msg("prepare %s: %s", sql, kl_error_detail());
	if (arg)
		kl_db_bind_text(st, 1, arg);
	if (kl_db_step(st) == 1)
		v = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	return v;
}

static int64_t audits(struct env *e, const char *action)
{
	return q1(e, "SELECT count(*) FROM audit WHERE action = ?1", action);
}

static int64_t devices(struct env *e)
{
	return q1(e, "SELECT count(*) FROM reg_device", NULL);
}

static const char *state_of(struct env *e, const char *serial)
{
	static kl_registry_device d;

	if (kl_registry_device_get(e->reg, serial, &d) < 0)
		return "(none)";
	return kl_registry_state_name(d.state);
}

static void detail_has(const char *needle)
{
	if (!strstr(kl_error_detail(), needle))
		fail_msg("'%s' not in the error detail: %s", needle, kl_error_detail());
}

static void ek(unsigned char out[32], int n)
{
	for (int i = 0; i < 32; i++)
		out[i] = (unsigned char)(n * 17 + i);
}

/* Hex of ek(n); four rotating buffers. */
static const char *ekhex(int n)
{
	static char buf[4][65];
	static int k;
	unsigned char b[32];

	k = (k + 1) % 4;
	ek(b, n);
	kl_registry_ek_to_hex(b, buf[k]);
	return buf[k];
}

static const char *write_file(struct env *e, const char *name, const char *text)
{
	static char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", e->dir, name);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* acme with work order WO-1 (quota), globex with G-1. */
static void tenants(struct env *e, int64_t quota)
{
	assert_int_equal(kl_registry_tenant_add(e->reg, "acme", ACTOR), 0);
	assert_int_equal(kl_registry_tenant_add(e->reg, "globex", ACTOR), 0);
	assert_int_equal(kl_registry_work_order_add(e->reg, "acme", "WO-1", quota, ACTOR), 0);
	assert_int_equal(kl_registry_work_order_add(e->reg, "globex", "G-1", -1, ACTOR), 0);
}

static void prereg1(struct env *e, const char *tenant, const char *wo, const char *serial, int ekn)
{
	kl_registry_item it = { .serial = serial, .ek_sha256 = ekn ? ekhex(ekn) : NULL };

	if (kl_registry_preregister(e->reg, tenant, wo, &it, 1, ACTOR) < 0)
		fail_msg("preregister %s: %s", serial, kl_error_detail());
}

static void begin(struct env *e, const char *serial, const char *tenant, int ekn)
{
	unsigned char b[32];
	int r;

	ek(b, ekn);
	r = kl_registry_device_begin(e->reg, serial, tenant, b, ACTOR);
	if (r != 0)
		fail_msg("begin %s: %d %s", serial, r, kl_error_detail());
}

static void commit(struct env *e, const char *serial)
{
	if (kl_registry_device_commit(e->reg, serial, "{\"station\":\"test\",\"steps\":[1,2]}",
	                              ACTOR) != 0)
		fail_msg("commit %s: %s", serial, kl_error_detail());
}

static kl_gate_verdict gate(struct env *e, const char *serial, const char *tenant, int ekn,
                            bool require, kl_gate_result *res)
{
	unsigned char b[32];

	ek(b, ekn);
	if (kl_registry_gate(e->reg, serial, tenant, b, require, res) != 0)
		fail_msg("gate %s: %s", serial, kl_error_detail());
	assert_string_equal(res->reason, kl_registry_verdict_name(res->verdict));
	return res->verdict;
}

static void test_schema_and_names(void **state)
{
	struct env *e = *state;
	unsigned char b[32], b2[32];
	char hex[65];
	EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");

	assert_int_equal(
	    q1(e, "SELECT version FROM schema_version WHERE module = 'registry'", NULL), 1);
	/* Opening again migrates nothing and keeps the data. */
	tenants(e, -1);
	close_db(e);
	open_db(e);
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_tenant", NULL), 2);
	/* A database from a newer Keyline is refused, not damaged. */
	assert_int_equal(
	    kl_db_exec(kl_store_db(e->store),
	               "UPDATE schema_version SET version = 99 WHERE module = 'registry'"),
	    0);
	kl_registry *r2 = NULL;
	assert_int_equal(kl_registry_open(e->store, &r2), -KL_E_DB);
	detail_has("newer than this program knows");
	assert_int_equal(
	    kl_db_exec(kl_store_db(e->store),
	               "UPDATE schema_version SET version = 1 WHERE module = 'registry'"),
	    0);

	/* Names and EK hashes. */
	assert_int_equal(kl_registry_check_name("serial", "SN-0001/a_b.c:9"), 0);
	assert_int_equal(kl_registry_check_name("serial", ""), -KL_E_INVALID);
	assert_int_equal(kl_registry_check_name("serial", "SN 1"), -KL_E_INVALID);
	detail_has("contains a space");
	assert_int_equal(kl_registry_check_name("serial", "SN,1"), -KL_E_INVALID);
	detail_has("contains a comma");
	assert_int_equal(kl_registry_check_name("serial", "SN\xc3\xa9"), -KL_E_INVALID);
	assert_int_equal(
	    kl_registry_check_name(
	        "serial", "0123456789012345678901234567890123456789012345678901234567890123"),
	    0);
	assert_int_equal(
	    kl_registry_check_name(
	        "serial", "01234567890123456789012345678901234567890123456789012345678901234"),
	    -KL_E_INVALID);
	ek(b, 7);
	kl_registry_ek_to_hex(b, hex);
	for (char *p = hex; *p; p++)
		*p = (char)(*p >= 'a' ? *p - 32 : *p); /* upper case is accepted */
	assert_int_equal(kl_registry_ek_from_hex(hex, b2), 0);
	assert_memory_equal(b, b2, 32);
	assert_int_equal(kl_registry_ek_from_hex("abcd", b2), -KL_E_INVALID);
	hex[10] = 'g';
	assert_int_equal(kl_registry_ek_from_hex(hex, b2), -KL_E_INVALID);
	assert_non_null(k1);
	assert_int_equal(kl_registry_ek_hash(k1, b), 0);
	assert_int_equal(kl_registry_ek_hash(k1, b2), 0);
	assert_memory_equal(b, b2, 32);
	assert_int_equal(kl_registry_ek_hash(k2, b2), 0);
	assert_memory_not_equal(b, b2, 32);
	/* The same hash as openssl makes of the public key (docs/registry.md). */
	char pem[PATH_MAX], cmd[PATH_MAX * 2], line[128] = { 0 };
	snprintf(pem, sizeof(pem), "%s/k1.pem", e->dir);
	FILE *f = fopen(pem, "we");
	assert_non_null(f);
	assert_true(PEM_write_PUBKEY(f, k1));
	fclose(f);
	snprintf(cmd, sizeof(cmd),
	         "openssl pkey -pubin -in '%s' -outform DER | openssl dgst -sha256 -r", pem);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	assert_int_equal(pclose(f), 0);
	kl_registry_ek_to_hex(b, hex);
	assert_memory_equal(line, hex, 64);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

static void test_tenants_and_work_orders(void **state)
{
	struct env *e = *state;
	kl_registry_tenant t;
	kl_registry_work_order w;

	tenants(e, 5);
	assert_int_equal(kl_registry_tenant_add(e->reg, "acme", ACTOR), -KL_E_EXISTS);
	detail_has("tenant 'acme' exists already");
	assert_int_equal(kl_registry_tenant_add(e->reg, "bad name", ACTOR), -KL_E_INVALID);
	assert_int_equal(kl_registry_tenant_add(e->reg, "initech", NULL), -KL_E_INVALID);
	assert_int_equal(kl_registry_tenant_get(e->reg, "acme", &t), 0);
	assert_string_equal(t.name, "acme");
	assert_true(t.created > 0);
	assert_int_equal(kl_registry_tenant_get(e->reg, "nobody", &t), -KL_E_NOTFOUND);

	assert_int_equal(kl_registry_work_order_add(e->reg, "acme", "WO-1", 3, ACTOR),
	                 -KL_E_EXISTS);
	assert_int_equal(kl_registry_work_order_add(e->reg, "nobody", "WO-1", 3, ACTOR),
	                 -KL_E_NOTFOUND);
	/* The same name under another tenant is another work order. */
	assert_int_equal(kl_registry_work_order_add(e->reg, "globex", "WO-1", -1, ACTOR), 0);
	assert_int_equal(kl_registry_work_order_get(e->reg, "acme", "WO-1", &w), 0);
	assert_int_equal(w.quota, 5);
	assert_int_equal(w.used, 0);
	assert_int_equal(kl_registry_work_order_get(e->reg, "globex", "WO-1", &w), 0);
	assert_int_equal(w.quota, -1);
	assert_int_equal(kl_registry_work_order_set_quota(e->reg, "globex", "WO-1", 10, ACTOR), 0);
	assert_int_equal(kl_registry_work_order_get(e->reg, "globex", "WO-1", &w), 0);
	assert_int_equal(w.quota, 10);
	assert_int_equal(kl_registry_work_order_get(e->reg, "acme", "nope", &w), -KL_E_NOTFOUND);

	assert_int_equal(audits(e, "registry.tenant.add"), 2);
	assert_int_equal(audits(e, "registry.work_order.add"), 3);
	assert_int_equal(audits(e, "registry.work_order.quota"), 1);
	assert_int_equal(q1(e, "SELECT count(*) FROM audit WHERE actor != ?1", ACTOR), 0);
}

static void test_preregister_all_or_nothing(void **state)
{
	struct env *e = *state;
	kl_registry_device d;
	kl_registry_item good[] = {
		{ .serial = "SN-1", .ek_sha256 = ekhex(1) },
		{ .serial = "SN-2" },
		{ .serial = "SN-3", .ek_sha256 = "" },
	};
	kl_registry_item bad_ek[] = {
		{ .serial = "SN-4" },
		{ .serial = "SN-5" },
		{ .serial = "SN-6", .ek_sha256 = "123" },
	};
	kl_registry_item dup[] = {
		{ .serial = "SN-7", .line = 10 },
		{ .serial = "SN-8", .line = 11 },
		{ .serial = "SN-7", .line = 12 },
	};
	kl_registry_item other[] = {
		{ .serial = "SN-9" },
		{ .serial = "SN-1" },
	};

	tenants(e, -1);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", bad_ek, 3, ACTOR),
	                 -KL_E_INVALID);
	detail_has("line 3: serial SN-6");
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", dup, 3, ACTOR),
	                 -KL_E_EXISTS);
	detail_has("line 12: serial SN-7 appears twice (first on line 10)");
	assert_int_equal(devices(e), 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_prereg", NULL), 0);
	assert_int_equal(audits(e, "registry.preregister"), 0);

	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", good, 3, ACTOR), 3);
	assert_int_equal(devices(e), 3);
	assert_int_equal(
	    q1(e, "SELECT count(*) FROM reg_device WHERE state = 'preregistered'", NULL), 3);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM reg_device_history WHERE to_state = "
	                    "'preregistered' AND from_state IS NULL",
	                    NULL),
	                 3);
	assert_int_equal(kl_registry_device_get(e->reg, "SN-1", &d), 0);
	assert_string_equal(d.expected_ek, ekhex(1));
	assert_string_equal(d.ek_sha256, "");
	assert_string_equal(d.work_order, "WO-1");
	assert_int_equal(audits(e, "registry.preregister"), 1);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.preregister' AND "
	                    "detail LIKE '%\"serial\":\"SN-3\"%'",
	                    NULL),
	                 1);

	/* The same list again changes nothing. */
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", good, 3, ACTOR), 0);
	assert_int_equal(devices(e), 3);

	/* SN-1 belongs to acme: globex cannot have it, and SN-9 of the same
	 * batch is not kept either. */
	assert_int_equal(kl_registry_preregister(e->reg, "globex", "G-1", other, 2, ACTOR),
	                 -KL_E_EXISTS);
	detail_has("line 2: serial SN-1 is already registered to tenant acme");
	assert_int_equal(kl_registry_device_get(e->reg, "SN-9", &d), -KL_E_NOTFOUND);

	/* The same tenant may correct an entry not yet provisioned. */
	good[1].ek_sha256 = ekhex(2);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", good, 3, ACTOR), 1);
	assert_int_equal(kl_registry_device_get(e->reg, "SN-2", &d), 0);
	assert_string_equal(d.expected_ek, ekhex(2));

	/* ...but not one that is being provisioned. */
	begin(e, "SN-1", "acme", 1);
	good[0].ek_sha256 = ekhex(3);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", good, 3, ACTOR),
	                 -KL_E_STATE);
	detail_has("line 1: serial SN-1 is provisioning already");

	/* Inside an outer transaction that rolls back, nothing stays. */
	kl_registry_item more[] = { { .serial = "SN-10" }, { .serial = "SN-11" } };
	assert_int_equal(kl_store_begin(e->store), 0);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", more, 2, ACTOR), 2);
	kl_store_rollback(e->store);
	assert_int_equal(devices(e), 3);
	assert_int_equal(kl_registry_preregister(e->reg, "nobody", "WO-1", more, 2, ACTOR),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-9", more, 2, ACTOR),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", more, 2, NULL),
	                 -KL_E_INVALID);
	assert_int_equal(devices(e), 3);
}

static void test_import_csv(void **state)
{
	struct env *e = *state;
	kl_registry_device d;
	char csv[1024], upper[65];
	const char *path;
	size_t n = 0;

	tenants(e, -1);
	snprintf(upper, sizeof(upper), "%s", ekhex(1));
	for (char *p = upper; *p; p++)
		*p = (char)(*p >= 'a' ? *p - 32 : *p);
	/* BOM, header, comments, blank lines, CRLF, quotes, spaces. */
	snprintf(csv, sizeof(csv),
	         "\xef\xbb\xbfserial,ek_sha256\r\n# from the contract manufacturer\r\n\r\n"
	         "CSV-1,%s\r\n  \"CSV-2\" , \r\nCSV-3\r\n   # indented comment\n",
	         upper);
	path = write_file(e, "good.csv", csv);
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n), 3);
	assert_int_equal(n, 3);
	assert_int_equal(kl_registry_device_get(e->reg, "CSV-1", &d), 0);
	assert_string_equal(d.expected_ek, ekhex(1));
	assert_int_equal(kl_registry_device_get(e->reg, "CSV-2", &d), 0);
	assert_string_equal(d.expected_ek, "");
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.preregister' "
	                    "AND detail LIKE '%good.csv%'",
	                    NULL),
	                 1);

	/* Each bad file names itself and the line; nothing of it is kept. */
	path = write_file(e, "bad-ek.csv", "serial\nCSV-4\nCSV-5,zz\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_INVALID);
	detail_has("bad-ek.csv:3: serial CSV-5: EK SHA-256 must be 64 hex digits");
	path = write_file(e, "fields.csv", "CSV-6\nCSV-7,,x\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_INVALID);
	detail_has("fields.csv:2: expected serial[,ek_sha256]");
	path = write_file(e, "space.csv", "# list\nCSV-8\n\nCSV 9\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_INVALID);
	detail_has("space.csv:4: serial 'CSV 9' contains a space");
	path = write_file(e, "long.csv",
	                  "CSV-10\n"
	                  "S234567890123456789012345678901234567890123456789012345678901234567\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_INVALID);
	detail_has("long.csv:2:");
	path = write_file(e, "dup.csv", "CSV-11\nCSV-12\nCSV-11\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_EXISTS);
	detail_has("dup.csv:3: serial CSV-11 appears twice (first on line 1)");
	path = write_file(e, "empty.csv", "serial,ek_sha256\n# nothing yet\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
	                 -KL_E_INVALID);
	detail_has("empty.csv: no entries");
	path = write_file(e, "other.csv", "CSV-13\nCSV-1\n");
	assert_int_equal(kl_registry_import_file(e->reg, "globex", "G-1", path, ACTOR, &n),
	                 -KL_E_EXISTS);
	detail_has("other.csv:2: serial CSV-1 is already registered to tenant acme");
	assert_int_equal(
	    kl_registry_import_file(e->reg, "acme", "WO-1", "/nonexistent/x.csv", ACTOR, &n),
	    -KL_E_NOTFOUND);
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", e->dir, ACTOR, &n),
	                 -KL_E_INVALID);
	assert_int_equal(devices(e), 3);
	assert_int_equal(audits(e, "registry.preregister"), 1);
}

static void test_import_json(void **state)
{
	struct env *e = *state;
	kl_registry_device d;
	char json[1024];
	const char *path;
	size_t n = 0;

	tenants(e, -1);
	snprintf(json, sizeof(json),
	         "[\n  {\"serial\": \"J-1\", \"ek_sha256\": \"%s\"},\n"
	         "  {\"serial\": \"J-2\", \"ek_sha256\": null},\n  {\"serial\": \"J-3\"}\n]\n",
	         ekhex(2));
	path = write_file(e, "good.json", json);
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n), 3);
	assert_int_equal(n, 3);
	assert_int_equal(kl_registry_device_get(e->reg, "J-1", &d), 0);
	assert_string_equal(d.expected_ek, ekhex(2));
	/* No extension: JSON by content, else CSV. */
	path = write_file(e, "list-a", "  [{\"serial\": \"J-4\"}]");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n), 1);
	path = write_file(e, "list-b", "J-5\nJ-6\n");
	assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n), 2);
	assert_int_equal(devices(e), 6);

	static const struct {
		const char *text, *needle;
		int rc;
	} bad[] = {
		{ "[\n {\"serial\":\"K-1\"},\n 42\n]", "bad.json:3: expected an object",
		  KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n {\"ek_sha256\":null}\n]",
		  "bad.json:3: the object has no", KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n {\"serial\":\"K-2\",\"ek\":\"x\"}\n]",
		  "bad.json:3: unknown key \"ek\"", KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n\n {\"serial\": 7}\n]",
		  "bad.json:4: \"serial\" must be", KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n {\"serial\":\"K-2\" \"x\"}\n]",
		  "bad.json:3:", KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n {\"serial\":\"K-1\"}\n]",
		  "bad.json:3: serial K-1 appears twice (first on line 2)", KL_E_EXISTS },
		{ "[\n {\"serial\":\"K-1\"}\n", "bad.json:3: the array is not closed",
		  KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"", "bad.json:2: the file ends inside an entry",
		  KL_E_INVALID },
		{ "[{\"serial\":\"K-1\"}]\nx", "bad.json:2: unexpected text after the array",
		  KL_E_INVALID },
		{ "{\"serial\":\"K-1\"}", "bad.json:1: expected a JSON array", KL_E_INVALID },
		{ "[\n {\"serial\":\"K 1\"}\n]", "bad.json:2: serial 'K 1' contains a space",
		  KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\", \"ek_sha256\": \"abc\"}\n]",
		  "bad.json:2: serial K-1: EK SHA-256 must be 64", KL_E_INVALID },
		{ "[]", "bad.json: no entries", KL_E_INVALID },
		{ "[\n {\"serial\":\"K-1\"},\n]", "bad.json:3:", KL_E_INVALID },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = write_file(e, "bad.json", bad[i].text);
		assert_int_equal(kl_registry_import_file(e->reg, "acme", "WO-1", path, ACTOR, &n),
		                 -bad[i].rc);
		detail_has(bad[i].needle);
	}
	assert_int_equal(devices(e), 6);
	assert_int_equal(kl_registry_device_get(e->reg, "K-1", &d), -KL_E_NOTFOUND);
}

static void test_gate_verdicts(void **state)
{
	struct env *e = *state;
	kl_gate_result g;
	unsigned char b[32];

	tenants(e, 2);
	prereg1(e, "acme", "WO-1", "SN-1", 1);
	prereg1(e, "acme", "WO-1", "SN-2", 0);
	prereg1(e, "acme", "WO-1", "SN-3", 0);

	/* Not pre-registered: refused when the line requires it. */
	assert_int_equal(gate(e, "SN-X", "acme", 5, true, &g), KL_GATE_NOT_PREREGISTERED);
	assert_string_equal(g.reason, "not_preregistered");
	assert_non_null(strstr(g.message, "SN-X is not pre-registered"));
	assert_int_equal(gate(e, "SN-X", "acme", 5, false, &g), KL_GATE_OK);
	assert_false(g.resume);
	assert_string_equal(g.work_order, "");
	ek(b, 5);
	/* No tenant given and none known, and a tenant that does not exist:
	 * refusals with their own names, not database errors. */
	assert_int_equal(gate(e, "SN-X", NULL, 5, false, &g), KL_GATE_NOT_PREREGISTERED);
	assert_non_null(strstr(g.message, "no tenant given"));
	assert_int_equal(kl_registry_gate(e->reg, "SN X", "acme", b, false, &g), -KL_E_INVALID);
	assert_int_equal(gate(e, "SN-X", "nobody", 5, false, &g), KL_GATE_UNKNOWN_TENANT);
	assert_string_equal(g.reason, "unknown_tenant");
	assert_non_null(strstr(g.message, "no tenant 'nobody'"));

	/* A line that builds one work order. */
	assert_int_equal(kl_registry_work_order_add(e->reg, "acme", "WO-2", -1, ACTOR), 0);
	prereg1(e, "acme", "WO-2", "W-1", 0);
	assert_int_equal(kl_registry_gate_order(e->reg, "W-1", "acme", "WO-2", b, true, &g), 0);
	assert_int_equal(g.verdict, KL_GATE_OK);
	assert_string_equal(g.work_order, "WO-2");
	assert_int_equal(kl_registry_gate_order(e->reg, "W-1", NULL, "WO-9", b, true, &g), 0);
	assert_string_equal(g.reason, "unknown_work_order");
	assert_non_null(strstr(g.message, "no work order 'WO-9'"));
	assert_int_equal(kl_registry_gate_order(e->reg, "W-1", "acme", "WO-1", b, true, &g), 0);
	assert_string_equal(g.reason, "work_order_mismatch");
	assert_non_null(strstr(g.message, "in work order WO-2, not WO-1"));
	assert_int_equal(kl_registry_gate_order(e->reg, "SN-X", "acme", "WO-1", b, false, &g), 0);
	assert_string_equal(g.reason, "not_preregistered");
	assert_int_equal(kl_registry_gate_order(e->reg, "W-1", "acme", "WO 1", b, true, &g),
	                 -KL_E_INVALID);

	/* The expected EK. */
	assert_int_equal(gate(e, "SN-1", "acme", 2, true, &g), KL_GATE_EK_MISMATCH);
	assert_string_equal(g.reason, "ek_not_expected");
	assert_non_null(strstr(g.message, "SN-1 was pre-registered with EK"));
	assert_int_equal(gate(e, "SN-1", "acme", 1, true, &g), KL_GATE_OK);
	assert_string_equal(g.tenant, "acme");
	assert_string_equal(g.work_order, "WO-1");
	assert_int_equal(gate(e, "SN-1", NULL, 1, true, &g), KL_GATE_OK);
	assert_string_equal(g.tenant, "acme");
	assert_int_equal(gate(e, "SN-1", "globex", 1, true, &g), KL_GATE_TENANT_MISMATCH);
	assert_non_null(strstr(g.message, "SN-1 belongs to tenant acme, not globex"));

	/* The deny list. */
	ek(b, 9);
	assert_int_equal(kl_registry_deny_add(e->reg, b, "stolen batch", ACTOR), 0);
	assert_int_equal(gate(e, "SN-2", "acme", 9, true, &g), KL_GATE_EK_DENIED);
	assert_string_equal(g.reason, "ek_denied");
	assert_non_null(strstr(g.message, "stolen batch"));

	/* An EK bound to another serial. */
	begin(e, "SN-1", "acme", 1);
	assert_int_equal(gate(e, "SN-2", "acme", 1, true, &g), KL_GATE_EK_BOUND);
	assert_string_equal(g.message, "EK already bound to device SN-1 (tenant acme)");
	assert_string_equal(g.other_serial, "SN-1");
	assert_int_equal(gate(e, "SN-1", "acme", 1, true, &g), KL_GATE_OK);
	assert_true(g.resume);

	/* Already provisioned, and a provisioned serial with another EK. */
	commit(e, "SN-1");
	assert_int_equal(gate(e, "SN-1", "acme", 1, true, &g), KL_GATE_ALREADY_PROVISIONED);
	assert_string_equal(g.reason, "already_provisioned");
	assert_int_equal(gate(e, "SN-1", "acme", 3, true, &g), KL_GATE_SERIAL_BOUND);
	assert_string_equal(g.reason, "serial_bound");
	ek(b, 1);
	assert_int_equal(kl_registry_device_begin(e->reg, "SN-1", "acme", b, ACTOR), -KL_E_STATE);
	detail_has("already_provisioned");

	/* The quota: SN-1 and SN-2 use both places of WO-1. */
	begin(e, "SN-2", "acme", 2);
	assert_int_equal(gate(e, "SN-3", "acme", 4, true, &g), KL_GATE_QUOTA_EXHAUSTED);
	assert_non_null(
	    strstr(g.message, "work order WO-1 of tenant acme has used its quota (2 of 2"));
	assert_int_equal(gate(e, "SN-2", "acme", 2, true, &g), KL_GATE_OK); /* resumes */
	assert_true(g.resume);
	ek(b, 4);
	assert_int_equal(kl_registry_device_begin(e->reg, "SN-3", "acme", b, ACTOR), -KL_E_PERM);
	detail_has("quota_exhausted");
	assert_string_equal(state_of(e, "SN-3"), "preregistered");
	assert_int_equal(kl_registry_work_order_set_quota(e->reg, "acme", "WO-1", 3, ACTOR), 0);
	assert_int_equal(gate(e, "SN-3", "acme", 4, true, &g), KL_GATE_OK);

	/* A revoked device cannot be provisioned again. */
	commit(e, "SN-2");
	assert_int_equal(kl_registry_device_set_state(e->reg, "SN-2", KL_DEVICE_REVOKED,
	                                              "key compromise", ACTOR),
	                 0);
	assert_int_equal(gate(e, "SN-2", "acme", 2, true, &g), KL_GATE_DEVICE_STATE);
	assert_non_null(strstr(g.message, "SN-2 is revoked"));
	/* Gates only read. */
	assert_int_equal(audits(e, "registry.device.begin"), 2);
	assert_int_equal(audits(e, "registry.device.commit"), 2);
}

static void test_begin_commit_resume(void **state)
{
	struct env *e = *state;
	kl_registry_device d;
	unsigned char b[32];

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "R-1", 1);
	begin(e, "R-1", "acme", 1);
	assert_int_equal(kl_registry_device_get(e->reg, "R-1", &d), 0);
	assert_int_equal(d.state, KL_DEVICE_PROVISIONING);
	assert_string_equal(d.ek_sha256, ekhex(1));
	assert_true(d.at[KL_DEVICE_PROVISIONING] > 0);
	/* Again with the same EK: resume, nothing changes but the audit. */
	ek(b, 1);
	assert_int_equal(kl_registry_device_begin(e->reg, "R-1", "acme", b, ACTOR), 1);
	assert_int_equal(kl_registry_device_begin(e->reg, "R-1", NULL, b, ACTOR), 1);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM reg_device_history h JOIN reg_device d ON "
	                    "d.id = h.device_id WHERE d.serial = ?1",
	                    "R-1"),
	                 2);
	assert_int_equal(audits(e, "registry.device.begin"), 1);
	assert_int_equal(audits(e, "registry.device.resume"), 2);
	/* Another TPM claiming the serial mid-way is refused. */
	ek(b, 2);
	assert_int_equal(kl_registry_device_begin(e->reg, "R-1", "acme", b, ACTOR), -KL_E_EXISTS);
	detail_has("serial_bound");

	/* Evidence must be a JSON object. */
	assert_int_equal(kl_registry_device_commit(e->reg, "R-1", "not json", ACTOR),
	                 -KL_E_INVALID);
	assert_int_equal(kl_registry_device_commit(e->reg, "R-1", "[1,2]", ACTOR), -KL_E_INVALID);
	assert_int_equal(kl_registry_device_commit(e->reg, "R-1", NULL, ACTOR), -KL_E_INVALID);
	assert_string_equal(state_of(e, "R-1"), "provisioning");
	commit(e, "R-1");
	assert_int_equal(kl_registry_device_get(e->reg, "R-1", &d), 0);
	assert_int_equal(d.state, KL_DEVICE_PROVISIONED);
	assert_true(d.at[KL_DEVICE_PROVISIONED] > 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_evidence", NULL), 1);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM reg_evidence WHERE evidence LIKE "
	                    "'%\"station\":\"test\"%'",
	                    NULL),
	                 1);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.device.commit' "
	                    "AND detail LIKE '%evidence_sha256%'",
	                    NULL),
	                 1);
	/* A second commit is refused and writes nothing. */
	assert_int_equal(kl_registry_device_commit(e->reg, "R-1", "{}", ACTOR), -KL_E_STATE);
	detail_has("cannot go from provisioned to provisioned");
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_evidence", NULL), 1);
	assert_int_equal(kl_registry_device_commit(e->reg, "R-9", "{}", ACTOR), -KL_E_NOTFOUND);

	/* Without pre-registration (a line that does not require it). */
	begin(e, "N-1", "acme", 3);
	assert_int_equal(kl_registry_device_get(e->reg, "N-1", &d), 0);
	assert_string_equal(d.work_order, "");
	assert_string_equal(d.tenant, "acme");
	ek(b, 4);
	assert_int_equal(kl_registry_device_begin(e->reg, "N-2", NULL, b, ACTOR), -KL_E_INVALID);
	assert_int_equal(kl_registry_device_begin(e->reg, "N-2", "nobody", b, ACTOR),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_registry_device_begin(e->reg, "N-2", "acme", b, NULL), -KL_E_INVALID);
	/* An aborted provisioning releases the EK. */
	ek(b, 3);
	assert_int_equal(kl_registry_device_begin(e->reg, "N-4", "acme", b, ACTOR), -KL_E_EXISTS);
	assert_int_equal(kl_registry_device_set_state(e->reg, "N-1", KL_DEVICE_PREREGISTERED,
	                                              "credential activation failed", ACTOR),
	                 0);
	assert_int_equal(kl_registry_device_get(e->reg, "N-1", &d), 0);
	assert_string_equal(d.ek_sha256, "");
	begin(e, "N-4", "acme", 3);
	assert_int_equal(devices(e), 3);
}

/* A self-signed certificate's DER, as a stand-in for an issued one. */
static unsigned char *make_cert(const char *cn, int *len)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	unsigned char *der = NULL;

	assert_non_null(k);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 0x0a1b);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	*len = i2d_X509(x, &der);
	assert_true(*len > 0);
	X509_free(x);
	EVP_PKEY_free(k);
	return der;
}

struct certs_seen {
	int n;
	const unsigned char *want;
	int want_len;
};

static int on_cert(void *ctx, const kl_registry_cert *c)
{
	struct certs_seen *s = ctx;

	s->n++;
	assert_string_equal(c->serial, "a1b");
	assert_string_equal(c->profile, "idevid");
	assert_string_equal(c->state, "issued");
	assert_string_equal(c->issuer, "issuing");
	assert_int_equal(c->der_len, s->want_len);
	assert_memory_equal(c->der, s->want, c->der_len);
	return 0;
}

static void issue_in_txn(struct env *e, int64_t issuer, const unsigned char *der, int len)
{
	kl_cert_pending p = { .issuer_id = issuer,
		              .serial = "a1b",
		              .profile = "idevid",
		              .subject = "CN=T-1",
		              .device_serial = "T-1",
		              .tbs = der,
		              .tbs_len = (size_t)len,
		              .not_after = 4102444800 };

	assert_int_equal(kl_store_cert_reserve(e->store, &p), 0);
	assert_int_equal(kl_store_cert_issued(e->store, issuer, "a1b", der, (size_t)len), 0);
	commit(e, "T-1");
}

static void test_commit_in_outer_transaction(void **state)
{
	struct env *e = *state;
	struct certs_seen seen = { 0 };
	int64_t issuer, audit_before;
	int len;
	unsigned char *der = make_cert("T-1", &len);

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "T-1", 1);
	begin(e, "T-1", "acme", 1);
	assert_int_equal(kl_store_issuer_add(e->store, "issuing", "pkcs11:token=test", der,
	                                     (size_t)len, &issuer),
	                 0);
	audit_before = q1(e, "SELECT count(*) FROM audit", NULL);

	/* The engine's commit: certificates and device in one transaction. It
	 * rolls back: nothing of it stays. */
	assert_int_equal(kl_store_begin(e->store), 0);
	issue_in_txn(e, issuer, der, len);
	assert_string_equal(state_of(e, "T-1"), "provisioned"); /* seen inside */
	kl_store_rollback(e->store);
	assert_string_equal(state_of(e, "T-1"), "provisioning");
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_evidence", NULL), 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM ca_cert WHERE device_serial = ?1", "T-1"), 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM audit", NULL), audit_before);
	assert_int_equal(kl_registry_device_certs(e->reg, "T-1", on_cert, &seen), 0);

	/* An inner step that fails poisons the outer transaction. */
	assert_int_equal(kl_store_begin(e->store), 0);
	assert_int_equal(kl_registry_device_commit(e->reg, "T-9", "{}", ACTOR), -KL_E_NOTFOUND);
	kl_store_rollback(e->store);
	assert_string_equal(state_of(e, "T-1"), "provisioning");

	/* This time it commits. */
	assert_int_equal(kl_store_begin(e->store), 0);
	issue_in_txn(e, issuer, der, len);
	assert_int_equal(kl_store_commit(e->store), 0);
	assert_string_equal(state_of(e, "T-1"), "provisioned");
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_evidence", NULL), 1);
	assert_int_equal(audits(e, "registry.device.commit"), 1);
	seen.want = der;
	seen.want_len = len;
	assert_int_equal(kl_registry_device_certs(e->reg, "T-1", on_cert, &seen), 1);
	assert_int_equal(seen.n, 1);
	assert_int_equal(kl_registry_device_certs(e->reg, "T-2", on_cert, &seen), 0);
	OPENSSL_free(der);
}

static void test_state_machine(void **state)
{
	struct env *e = *state;
	/* The documented table (registry.h, docs/registry.md), row by row. */
	static const char *const expect[KL_DEVICE__MAX] = {
		[KL_DEVICE_PREREGISTERED] = "provisioning decommissioned lost",
		[KL_DEVICE_PROVISIONING] = "preregistered provisioned decommissioned lost",
		[KL_DEVICE_PROVISIONED] = "revoked decommissioned lost repurposed",
		[KL_DEVICE_REVOKED] = "decommissioned lost repurposed",
		[KL_DEVICE_DECOMMISSIONED] = "",
		[KL_DEVICE_LOST] = "decommissioned",
		[KL_DEVICE_REPURPOSED] = "preregistered provisioning decommissioned",
	};
	kl_registry_deny deny;
	unsigned char b[32];

	for (int f = 0; f < KL_DEVICE__MAX; f++)
		for (int t = 0; t < KL_DEVICE__MAX; t++) {
			char word[32];
			bool listed;

			snprintf(word, sizeof(word), " %s ",
			         kl_registry_state_name((kl_device_state)t));
			char row[128];
			snprintf(row, sizeof(row), " %s ", expect[f]);
			listed = strstr(row, word) != NULL;
			if (listed != kl_registry_transition_allowed(f, t))
				fail_msg("%s -> %s: expected %s", kl_registry_state_name(f),
				         kl_registry_state_name(t), listed ? "allowed" : "refused");
		}
	assert_int_equal(kl_registry_state_from_name("lost"), KL_DEVICE_LOST);
	assert_int_equal(kl_registry_state_from_name("gone"), -KL_E_INVALID);

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "S-1", 0);
	assert_int_equal(
	    kl_registry_device_set_state(e->reg, "S-1", KL_DEVICE_REVOKED, "test", ACTOR),
	    -KL_E_STATE);
	detail_has("device S-1 cannot go from preregistered to revoked");
	assert_int_equal(
	    kl_registry_device_set_state(e->reg, "S-1", KL_DEVICE_PROVISIONED, "x", ACTOR),
	    -KL_E_INVALID);
	assert_int_equal(kl_registry_device_set_state(e->reg, "S-1", KL_DEVICE_LOST, "", ACTOR),
	                 -KL_E_INVALID);
	assert_int_equal(kl_registry_device_set_state(e->reg, "S-9", KL_DEVICE_LOST, "x", ACTOR),
	                 -KL_E_NOTFOUND);
	assert_int_equal(
	    kl_registry_device_set_state(e->reg, "S-1", (kl_device_state)42, "x", ACTOR),
	    -KL_E_INVALID);

	/* provisioned -> lost: the EK goes on the deny list. */
	begin(e, "S-1", "acme", 1);
	commit(e, "S-1");
	assert_int_equal(kl_registry_device_set_state(e->reg, "S-1", KL_DEVICE_LOST,
	                                              "not returned from the field", ACTOR),
	                 0);
	ek(b, 1);
	assert_int_equal(kl_registry_deny_check(e->reg, b, &deny), 1);
	assert_non_null(strstr(deny.reason, "device S-1 lost: not returned from the field"));
	assert_string_equal(deny.actor, ACTOR);
	/* lost -> decommissioned -> nothing. */
	assert_int_equal(kl_registry_device_set_state(e->reg, "S-1", KL_DEVICE_DECOMMISSIONED,
	                                              "found and shredded", ACTOR),
	                 0);
	for (int t = 0; t < KL_DEVICE__MAX; t++) {
		if (t == KL_DEVICE_PROVISIONING || t == KL_DEVICE_PROVISIONED)
			continue;
		assert_int_equal(kl_registry_device_set_state(e->reg, "S-1", t, "again", ACTOR),
		                 -KL_E_STATE);
		detail_has("cannot go from decommissioned to");
	}
	assert_int_equal(kl_registry_device_commit(e->reg, "S-1", "{}", ACTOR), -KL_E_STATE);
	kl_db_stmt *st = NULL;
	assert_int_equal(kl_db_prepare(kl_store_db(e->store),
	                               "SELECT coalesce(h.from_state, '-') || '>' || "
	                               "h.to_state || ':' || coalesce(h.reason, '') FROM "
	                               "reg_device_history h JOIN reg_device d ON d.id = "
	                               "h.device_id WHERE d.serial = 'S-1' ORDER BY h.id",
	                               &st),
	                 0);
	static const char *const hist[] = {
		"->preregistered:",
		"preregistered>provisioning:",
		"provisioning>provisioned:",
		"provisioned>lost:not returned from the field",
		"lost>decommissioned:found and shredded",
	};
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(kl_db_step(st), 1);
		const char *row = kl_db_column_text(st, 0);
		assert_string_equal(row, hist[i]);
	}
	assert_int_equal(kl_db_step(st), 0);
	kl_db_stmt_free(st);
	assert_int_equal(audits(e, "registry.device.state"), 2);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.device.state' "
	                    "AND detail LIKE '%\"from\":\"provisioned\",\"to\":\"lost\"%' AND "
	                    "detail LIKE '%\"ek_denied\":true%'",
	                    NULL),
	                 1);
	/* The deny-listing had its own entry (the lost one; decommission found
	 * the EK listed already). */
	assert_int_equal(audits(e, "registry.deny.add"), 1);
}

static void test_repurposed_ek_bound_again(void **state)
{
	struct env *e = *state;
	kl_registry_device d;
	kl_gate_result g;
	unsigned char b[32];

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "P-1", 1);
	begin(e, "P-1", "acme", 1);
	commit(e, "P-1");
	assert_int_equal(gate(e, "P-2", "globex", 1, false, &g), KL_GATE_EK_BOUND);

	/* Repurposed: the EK is free for another tenant, and not denied. */
	assert_int_equal(kl_registry_device_set_state(e->reg, "P-1", KL_DEVICE_REPURPOSED,
	                                              "returned, refurbished for resale", ACTOR),
	                 0);
	ek(b, 1);
	assert_int_equal(kl_registry_deny_check(e->reg, b, NULL), 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_prereg WHERE serial = ?1", "P-1"), 0);
	prereg1(e, "globex", "G-1", "P-2", 1);
	assert_int_equal(gate(e, "P-2", "globex", 1, true, &g), KL_GATE_OK);
	begin(e, "P-2", "globex", 1);
	commit(e, "P-2");
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_device WHERE ek_sha256 = ?1", ekhex(1)),
	                 2);
	/* The database itself holds the line: a second live binding of the
	 * same EK violates the partial unique index. */
	assert_int_equal(kl_db_exec(kl_store_db(e->store),
	                            "UPDATE reg_device SET state = 'provisioned' "
	                            "WHERE serial = 'P-1'"),
	                 -KL_E_EXISTS);
	assert_string_equal(state_of(e, "P-1"), "repurposed");
	/* P-1's old EK is now P-2's: P-1 cannot take it back. */
	assert_int_equal(gate(e, "P-1", "globex", 1, false, &g), KL_GATE_EK_BOUND);
	assert_string_equal(g.other_serial, "P-2");

	/* The same serial's next life: pre-registered for globex. */
	assert_int_equal(kl_registry_device_set_state(e->reg, "P-2", KL_DEVICE_REPURPOSED,
	                                              "moved to the spares pool", ACTOR),
	                 0);
	prereg1(e, "globex", "G-1", "P-1", 1);
	assert_int_equal(kl_registry_device_get(e->reg, "P-1", &d), 0);
	assert_int_equal(d.state, KL_DEVICE_PREREGISTERED);
	assert_string_equal(d.tenant, "globex");
	assert_string_equal(d.work_order, "G-1");
	assert_string_equal(d.ek_sha256, "");
	begin(e, "P-1", "globex", 1);
	commit(e, "P-1");
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM reg_device_history h JOIN reg_device d ON "
	                    "d.id = h.device_id JOIN reg_tenant t ON t.id = h.tenant_id "
	                    "WHERE d.serial = ?1 AND t.name = 'acme'",
	                    "P-1"),
	                 4); /* its first life stays in the history */
}

static void test_deny_list(void **state)
{
	struct env *e = *state;
	kl_registry_deny deny;
	unsigned char b[32];

	ek(b, 6);
	assert_int_equal(kl_registry_deny_check(e->reg, b, &deny), 0);
	assert_int_equal(kl_registry_deny_add(e->reg, b, "vendor recall 2024-17", ACTOR), 0);
	assert_int_equal(kl_registry_deny_add(e->reg, b, "again", ACTOR), -KL_E_EXISTS);
	assert_int_equal(kl_registry_deny_add(e->reg, b, "", ACTOR), -KL_E_INVALID);
	assert_int_equal(kl_registry_deny_check(e->reg, b, &deny), 1);
	assert_string_equal(deny.reason, "vendor recall 2024-17");
	assert_string_equal(deny.actor, ACTOR);
	assert_string_equal(deny.ek_sha256, ekhex(6));
	assert_true(deny.time > 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM reg_deny WHERE ek_sha256 = ?1", ekhex(6)), 1);
	assert_int_equal(kl_registry_deny_remove(e->reg, b, "recall withdrawn", ACTOR), 0);
	assert_int_equal(kl_registry_deny_remove(e->reg, b, "recall withdrawn", ACTOR),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_registry_deny_check(e->reg, b, NULL), 0);
	assert_int_equal(audits(e, "registry.deny.add"), 1);
	assert_int_equal(audits(e, "registry.deny.remove"), 1);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.deny.remove' AND "
	                    "detail LIKE '%vendor recall 2024-17%'",
	                    NULL),
	                 1);
}

struct page {
	char serials[64][16];
	int n;
	int stop_at;
};

static int on_device(void *ctx, const kl_registry_device *d)
{
	struct page *p = ctx;

	if (p->stop_at && p->n == p->stop_at)
		return -KL_E_TIMEOUT;
	snprintf(p->serials[p->n++], 16, "%s", d->serial);
	return 0;
}

static void test_list_paging(void **state)
{
	struct env *e = *state;
	kl_registry_item items[25];
	char names[25][16];
	struct page p;
	int64_t total;

	tenants(e, -1);
	/* Registered out of order; listed in serial order. */
	for (int i = 0; i < 25; i++) {
		int k = (i * 7) % 25;

		snprintf(names[i], sizeof(names[i]), "D-%02d", k);
		items[i] = (kl_registry_item){ .serial = names[i] };
	}
	for (int i = 0; i < 25; i++) {
		/* D-00..D-14 for acme, D-15..D-24 for globex. */
		int k = (i * 7) % 25;

		prereg1(e, k < 15 ? "acme" : "globex", k < 15 ? "WO-1" : "G-1", items[i].serial, 0);
	}
	for (int k = 0; k < 5; k++) {
		char s[16];

		snprintf(s, sizeof(s), "D-%02d", k);
		begin(e, s, "acme", 20 + k);
	}
	kl_registry_filter f = { .state = -1, .limit = 10 };
	for (int page = 0; page < 3; page++) {
		memset(&p, 0, sizeof(p));
		f.offset = page * 10;
		assert_int_equal(kl_registry_device_list(e->reg, &f, on_device, &p),
		                 page < 2 ? 10 : 5);
		for (int i = 0; i < p.n; i++) {
			char want[16];

			snprintf(want, sizeof(want), "D-%02d", page * 10 + i);
			assert_string_equal(p.serials[i], want);
		}
	}
	assert_int_equal(kl_registry_device_count(e->reg, &f, &total), 0);
	assert_int_equal(total, 25);
	f = (kl_registry_filter){ .state = KL_DEVICE_PROVISIONING };
	memset(&p, 0, sizeof(p));
	assert_int_equal(kl_registry_device_list(e->reg, &f, on_device, &p), 5);
	assert_string_equal(p.serials[4], "D-04");
	f = (kl_registry_filter){ .state = -1, .tenant = "globex" };
	memset(&p, 0, sizeof(p));
	assert_int_equal(kl_registry_device_list(e->reg, &f, on_device, &p), 10);
	assert_string_equal(p.serials[0], "D-15");
	assert_int_equal(kl_registry_device_count(e->reg, &f, &total), 0);
	assert_int_equal(total, 10);
	f.state = KL_DEVICE_PROVISIONING;
	assert_int_equal(kl_registry_device_count(e->reg, &f, &total), 0);
	assert_int_equal(total, 0);
	f.tenant = "nobody";
	assert_int_equal(kl_registry_device_list(e->reg, &f, on_device, &p), -KL_E_NOTFOUND);
	/* NULL filter: everything; a callback's error stops the walk. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(kl_registry_device_list(e->reg, NULL, on_device, &p), 25);
	memset(&p, 0, sizeof(p));
	p.stop_at = 3;
	assert_int_equal(kl_registry_device_list(e->reg, NULL, on_device, &p), -KL_E_TIMEOUT);
	assert_int_equal(p.n, 3);
}

/* Every write the registry made is in the audit log with its actor, and
 * the chain verifies (teardown checks that for every test). */
static void test_every_change_audited(void **state)
{
	struct env *e = *state;
	unsigned char b[32];
	int64_t states;

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "A-1", 1);
	prereg1(e, "acme", "WO-1", "A-2", 0);
	begin(e, "A-1", "acme", 1);
	commit(e, "A-1");
	begin(e, "A-2", "acme", 2);
	assert_int_equal(
	    kl_registry_device_set_state(e->reg, "A-2", KL_DEVICE_PREREGISTERED, "retry", ACTOR),
	    0);
	assert_int_equal(
	    kl_registry_device_set_state(e->reg, "A-1", KL_DEVICE_REVOKED, "superseded", ACTOR), 0);
	assert_int_equal(kl_registry_device_set_state(e->reg, "A-1", KL_DEVICE_DECOMMISSIONED,
	                                              "end of life", ACTOR),
	                 0);
	ek(b, 8);
	assert_int_equal(kl_registry_deny_add(e->reg, b, "test", ACTOR), 0);

	/* Each state change in the history has an audit entry. */
	states = q1(e, "SELECT count(*) FROM reg_device_history", NULL);
	assert_int_equal(states, 2 /* preregistered */ + 2 /* begin */ + 1 /* commit */ +
	                             3 /* set_state */);
	assert_int_equal(audits(e, "registry.preregister") + audits(e, "registry.device.begin") +
	                     audits(e, "registry.device.commit") +
	                     audits(e, "registry.device.state"),
	                 2 + 2 + 1 + 3);
	assert_int_equal(audits(e, "registry.deny.add"), 2); /* decommission + explicit */
	assert_int_equal(q1(e, "SELECT count(*) FROM audit WHERE actor != ?1", ACTOR), 0);
	assert_int_equal(q1(e, "SELECT count(*) FROM audit WHERE json_valid(detail) = 0", NULL), 0);

	/* And the chain catches an edit of a registry entry. */
	kl_audit_report rep;
	assert_int_equal(kl_store_audit_verify(e->store, &rep), 0);
	assert_int_equal(rep.entries, q1(e, "SELECT count(*) FROM audit", NULL));
	assert_int_equal(
	    kl_db_exec(
	        kl_store_db(e->store),
	        "UPDATE audit SET actor = 'mallory' WHERE action = 'registry.device.commit'"),
	    0);
	assert_int_equal(kl_store_audit_verify(e->store, &rep), -KL_E_CRYPTO);
	assert_non_null(strstr(rep.problem, "altered"));
	/* Put it back so that teardown's check stands for the others. */
	assert_int_equal(kl_db_exec(kl_store_db(e->store),
	                            "UPDATE audit SET actor = '" ACTOR
	                            "' WHERE action = 'registry.device.commit'"),
	                 0);
}

/* The actions of the entries about serial, newest first, joined by ' '. */
struct actions {
	char text[4096];
	int n;
};

static int action_one(void *ctx, const kl_audit_entry *a)
{
	struct actions *ac = ctx;
	size_t len = strlen(ac->text);

	snprintf(ac->text + len, sizeof(ac->text) - len, "%s%s", len ? " " : "", a->action);
	ac->n++;
	return 0;
}

static struct actions *device_audit(struct env *e, const char *serial)
{
	static struct actions ac;

	memset(&ac, 0, sizeof(ac));
	if (kl_store_audit_device(e->store, serial, 0, 1000, action_one, &ac) < 0)
		fail_msg("audit of %s: %s", serial, kl_error_detail());
	return &ac;
}

/* A device's audit entries are found by the index however many newer
 * entries there are, for serials with characters JSON escapes too; the
 * CA's own entries (a certificate's "serial") are not a device's. */
static void test_audit_by_device(void **state)
{
	struct env *e = *state;
	static const char *const odd[] = { "SL/0001", "Q\"1", "BS\\1" };
	struct actions *ac;

	tenants(e, -1);
	for (size_t i = 0; i < 3; i++)
		prereg1(e, "acme", "WO-1", odd[i], 0);
	prereg1(e, "acme", "WO-1", "SL/00011", 0);
	begin(e, "SL/0001", "acme", 1);
	assert_int_equal(kl_store_audit(e->store, ACTOR, "station.provision.refused",
	                                "{\"serial\":\"Q\\\"1\",\"step\":\"gates\"}"),
	                 0);
	assert_int_equal(kl_store_audit(e->store, ACTOR, "ca.issue", "{\"serial\":\"SL/0001\"}"),
	                 0);
	/* 5,001 newer entries about nothing, in one transaction. */
	assert_int_equal(kl_store_begin(e->store), 0);
	for (int i = 0; i < 5001; i++)
		assert_int_equal(kl_store_audit(e->store, ACTOR, "test.noise", "{\"n\":1}"), 0);
	assert_int_equal(kl_store_commit(e->store), 0);

	ac = device_audit(e, "SL/0001");
	assert_string_equal(ac->text, "registry.device.begin registry.preregister");
	ac = device_audit(e, "Q\"1");
	assert_string_equal(ac->text, "station.provision.refused registry.preregister");
	ac = device_audit(e, "BS\\1");
	assert_string_equal(ac->text, "registry.preregister");
	ac = device_audit(e, "SL/00011");
	assert_string_equal(ac->text, "registry.preregister");
	ac = device_audit(e, "SL/000");
	assert_int_equal(ac->n, 0);
	/* Paged like audit.list: before and limit. */
	{
		struct actions page = { 0 };
		int64_t newest = q1(e,
		                    "SELECT max(seq) FROM audit WHERE action = "
		                    "'registry.device.begin'",
		                    NULL);

		assert_int_equal(
		    kl_store_audit_device(e->store, "SL/0001", newest, 10, action_one, &page), 1);
		assert_string_equal(page.text, "registry.preregister");
	}
	assert_int_equal(kl_store_audit_device(e->store, "", 0, 10, action_one, ac), -KL_E_INVALID);
	/* The links are checked against the rows themselves. */
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit_device d JOIN audit a ON a.seq = d.seq "
	                    "WHERE a.action = 'ca.issue'",
	                    NULL),
	                 0);
}

/* A batch larger than one audit entry holds is written as several, each
 * with the batch's totals and its part of the items; every serial is
 * linked to its part. */
static void test_preregister_audit_parts(void **state)
{
	struct env *e = *state;
	enum { N = 1001 };
	static kl_registry_item items[N];
	static char serials[N][16];

	tenants(e, -1);
	for (int i = 0; i < N; i++) {
		snprintf(serials[i], sizeof(serials[i]), "P-%04d", i);
		items[i] = (kl_registry_item){ .serial = serials[i] };
	}
	assert_int_equal(
	    kl_registry_preregister_from(e->reg, "acme", "WO-1", items, N, ACTOR, "parts.csv"), N);
	assert_int_equal(audits(e, "registry.preregister"), 5);
	assert_int_equal(q1(e,
	                    "SELECT count(*) FROM audit WHERE action = 'registry.preregister' AND "
	                    "json_extract(detail, '$.parts') = 5 AND "
	                    "json_extract(detail, '$.entries') = 1001 AND "
	                    "json_extract(detail, '$.added') = 1001 AND "
	                    "json_extract(detail, '$.source') = 'parts.csv' AND "
	                    "json_array_length(detail, '$.items') <= 250",
	                    NULL),
	                 5);
	assert_int_equal(q1(e,
	                    "SELECT sum(json_array_length(detail, '$.items')) FROM audit "
	                    "WHERE action = 'registry.preregister'",
	                    NULL),
	                 N);
	assert_int_equal(q1(e, "SELECT count(DISTINCT serial) FROM audit_device", NULL), N);
	assert_int_equal(device_audit(e, "P-1000")->n, 1);
	/* The same batch again changes nothing and says so in one entry. */
	assert_int_equal(kl_registry_preregister(e->reg, "acme", "WO-1", items, N, ACTOR), 0);
	assert_int_equal(audits(e, "registry.preregister"), 6);
	/* The registry-free checks name the source and line. */
	items[500].serial = "P 500";
	items[500].line = 502;
	assert_int_equal(kl_registry_check_items(items, N, "parts.csv"), -KL_E_INVALID);
	detail_has("parts.csv:502: serial 'P 500' contains a space");
	items[500].serial = serials[7];
	assert_int_equal(kl_registry_check_items(items, N, NULL), -KL_E_EXISTS);
	detail_has("line 502: serial P-0007 appears twice (first on line 8)");
	items[500].serial = serials[500];
	items[500].line = 0;
	assert_int_equal(kl_registry_check_items(items, N, NULL), 0);
}

/* A database from before the index (schema 2) gets its old entries
 * linked by the migration, by the same rule as new entries. */
static void test_audit_index_migration(void **state)
{
	struct env *e = *state;
	int64_t links;

	tenants(e, -1);
	prereg1(e, "acme", "WO-1", "M/1", 0);
	prereg1(e, "acme", "WO-1", "M\"2", 0);
	begin(e, "M/1", "acme", 1);
	assert_int_equal(kl_store_audit(e->store, ACTOR, "ca.revoke", "{\"serial\":\"M/1\"}"), 0);
	assert_int_equal(kl_store_audit(e->store, ACTOR, "test.odd", "not json"), 0);
	assert_int_equal(
	    kl_store_audit(e->store, ACTOR, "test.items", "{\"items\":[\"M/1\",{\"serial\":7}]}"),
	    0);
	links = q1(e, "SELECT count(*) FROM audit_device", NULL);
	assert_int_equal(links, 3);
	assert_int_equal(kl_db_exec(kl_store_db(e->store),
	                            /* a store from before migration 3: 4 (the audit
	                             * checkpoint) comes after it and goes too */
	                            "DROP TABLE audit_device; DROP TABLE audit_checkpoint; "
	                            "UPDATE schema_version SET version = 2 WHERE module = 'ca'"),
	                 0);
	close_db(e);
	open_db(e);
	assert_int_equal(q1(e, "SELECT count(*) FROM audit_device", NULL), links);
	assert_string_equal(device_audit(e, "M/1")->text,
	                    "registry.device.begin registry.preregister");
	assert_string_equal(device_audit(e, "M\"2")->text, "registry.preregister");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_schema_and_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenants_and_work_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preregister_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_csv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_import_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gate_verdicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_begin_commit_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_in_outer_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_machine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repurposed_ek_bound_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deny_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_change_audited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_by_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preregister_audit_parts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_index_migration, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
