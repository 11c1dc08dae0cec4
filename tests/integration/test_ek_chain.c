/* The provisioning engine on DUTs whose EK chain is not all in the trust
 * bundle, and on stock swtpm_setup DUTs (issue #13), with a SoftHSM CA and
 * a real SQLite registry.
 *
 * One TPM vendor ("Chain TPM"); the bundles of tests 1 and 2 hold its root
 * only, never its issuing CA; those of 3 and 4 both, and quirk tables.
 *   1. chain-0 holds the issuing CA in its EK chain index 0x01c00100: it is
 *      refused before that index is written and provisions after, with the
 *      index and the chain in the evidence; openssl verifies the same chain
 *      from the outside.
 *   2. chain-1's EK chain indices hold a forged issuing CA (its name, another
 *      key), a self-issued one, bytes that are no certificate, five indices
 *      of 2048 bytes, nine indices, and a pair of CAs issuing each other
 *      (with an EK certificate from one of them): each refused with its
 *      reason, at step ek_cert, nothing issued.
 *   3. stock-0 comes from a stock swtpm_setup (manufacturer id:00001014, the
 *      TPM says IBM): refused as ek_cert_vendor_mismatch without a quirk
 *      and with a quirk for another root; provisions with the bundle's
 *      quirk, which the evidence names.
 *   4. stock-1 through the registry gates: unknown tenant, unknown work
 *      order, another work order, names that are not names, each a named
 *      refusal; then it provisions for its own work order. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/x509.h>

#include "evidence_test.h"
#include "ca.h"
#include "engine.h"
#include "floor.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "registry.h"
#include "store.h"
#include "trust.h"

#include "pki_fixture.h"

static struct {
	kl_floor *floor;
	kl_vendor *vendor;
	kl_dut **chain; /* 2: chain-0 genuine NV chain, chain-1 hostile ones */
	kl_dut **stock; /* 2: stock swtpm_setup */
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	kl_trust *root_only;                /* the vendor's root */
	kl_trust *full;                     /* its root and issuing CA */
	kl_trust *with_quirk, *other_quirk; /* full, and a quirk for it or another root */
	char dir[PATH_MAX], mat[PATH_MAX];
} g;

static int run(const char *what, const char *const argv[])
{
	int r = kl_floor_run(g.floor, "/dev/null", NULL, argv);

	if (r != 0)
		fprintf(stderr, "%s: %d %s\n", what, r, kl_error_detail());
	return r;
}

/* A bundle directory name holding the vendor's root, its issuing CA when
 * issuing, and, when quirk_root is not NULL, a quirk table whose one entry
 * names that root. */
static kl_trust *bundle(const char *name, bool issuing, const char *quirk_root)
{
	char dir[PATH_MAX], p[PATH_MAX + 32];
	kl_trust *t = NULL;

	snprintf(dir, sizeof(dir), "%s/%s", g.dir, name);
	mkdir(dir, 0755);
	snprintf(p, sizeof(p), "%s/chain-root.pem", dir);
	if (test_pki_copy(g.floor, g.vendor->root_pem, p) != 0)
		return NULL;
	snprintf(p, sizeof(p), "%s/chain-issuing.pem", dir);
	if (issuing && test_pki_copy(g.floor, g.vendor->intermediate_pem, p) != 0)
		return NULL;
	if (quirk_root) {
		json_object *doc = json_object_new_object(), *list = json_object_new_array(),
		            *q = json_object_new_object();

		json_object_object_add(q, "id",
		                       json_object_new_string("swtpm-localca-manufacturer"));
		json_object_object_add(q, "kind", json_object_new_string("manufacturer"));
		json_object_object_add(q, "root_sha256", json_object_new_string(quirk_root));
		json_object_object_add(q, "cert_manufacturer",
		                       json_object_new_string("id:00001014"));
		json_object_object_add(q, "tpm_manufacturer",
		                       json_object_new_string("id:49424D00"));
		json_object_object_add(q, "meaning",
		                       json_object_new_string("swtpm_setup names IBM by its PCI "
		                                              "vendor id 0x1014"));
		json_object_object_add(q, "source",
		                       json_object_new_string("https://github.com/stefanberger/"
		                                              "libtpms/blob/master/src/"
		                                              "tpm_tpm2_interface.c"));
		json_object_array_add(list, q);
		json_object_object_add(doc, "version", json_object_new_int(1));
		json_object_object_add(doc, "quirks", list);
		snprintf(p, sizeof(p), "%s/quirks.json", dir);
		json_object_to_file_ext(p, doc, JSON_C_TO_STRING_PRETTY);
		json_object_put(doc);
	}
	if (kl_trust_load(dir, &t) < 0) {
		fprintf(stderr, "bundle %s: %s\n", name, kl_error_detail());
		return NULL;
	}
	return t;
}

static int setup(void **state)
{
	char root_fp[65], other_fp[65];
	X509 *root = NULL;
	FILE *f;

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Chain TPM", &g.vendor) < 0 ||
	    kl_floor_manufacture(g.floor, g.vendor, "chain", 2, &g.chain) < 0 ||
	    kl_floor_manufacture_stock(g.floor, g.vendor, "stock", 2, &g.stock) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "%s", kl_floor_dir(g.floor));
	snprintf(g.mat, sizeof(g.mat), "%s/chain-material", g.dir);
	char script[PATH_MAX];
	snprintf(script, sizeof(script), "%s/ek-chain.sh", kl_fixtures_dir());
	const char *certs[] = { "bash", script, "certs", g.vendor->dir, g.mat, NULL };
	if (run("ek-chain.sh certs", certs) != 0)
		return -1;
	/* The CA and registry; the PKI's own bundle (root and issuing CA) is
	 * not used: every bundle here lacks the issuing CA. */
	if (test_pki_make(g.floor, g.vendor, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		return -1;
	f = fopen(g.vendor->root_pem, "r");
	root = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	if (!root || kl_x509_fingerprint(root, root_fp) < 0 ||
	    kl_x509_fingerprint(g.pki.root, other_fp) < 0)
		return -1;
	X509_free(root);
	g.root_only = bundle("trust-root-only", false, NULL);
	g.full = bundle("trust-full", true, NULL);
	g.with_quirk = bundle("trust-quirk", true, root_fp);
	g.other_quirk = bundle("trust-other-quirk", true, other_fp);
	if (!g.root_only || !g.full || !g.with_quirk || !g.other_quirk)
		return -1;

	kl_registry_item wo1[] = { { .serial = "C-0", .line = 1 },
		                   { .serial = "C-1", .line = 2 },
		                   { .serial = "S-0", .line = 3 },
		                   { .serial = "G-1", .line = 4 } };
	kl_registry_item wo2[] = { { .serial = "W-1", .line = 1 } };
	if (kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-2", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", wo1, 4, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-2", wo2, 1, "test") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < 2; i++)
		if (kl_dut_start(g.floor, g.chain[i]) < 0 || kl_dut_start(g.floor, g.stock[i]) < 0)
			return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kl_trust_free(g.root_only);
	kl_trust_free(g.full);
	kl_trust_free(g.with_quirk);
	kl_trust_free(g.other_quirk);
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

static int64_t issued(void)
{
	int64_t n = -1;

	assert_int_equal(kl_store_cert_count(g.store, kl_ca_issuer_id(g.ca), "issued", &n), 0);
	return n;
}

static void run_job(const kl_job *job, const kl_trust *trust, kl_job_result *res)
{
	kl_engine_config cfg = g.cfg;

	cfg.trust = trust;
	assert_int_equal(kl_engine_provision(&cfg, job, res), 0);
}

static void provision(const kl_dut *d, const char *serial, kl_ek_type type, const kl_trust *trust)
{
	kl_job job = { .serial = serial, .link = d->tcti, .ek_type = type, .actor = "test" };
	kl_job_result res;

	run_job(&job, trust, &res);
	if (res.rc != 0)
		fail_msg("%s: %s [%s] %s", serial, kl_step_name(res.failed_step), res.reason,
		         res.message);
	assert_false(res.already_provisioned);
}

/* The job is refused at step with reason, and nothing is issued. */
static void refused(const kl_job *job, const kl_trust *trust, kl_step step, const char *reason,
                    const char *needle)
{
	kl_job_result res;
	int64_t before = issued();

	run_job(job, trust, &res);
	if (res.rc == 0 || strcmp(res.reason, reason) != 0 || res.failed_step != step)
		fail_msg("%s: want %s at %s, got rc %d [%s] at %s: %s", job->serial, reason,
		         kl_step_name(step), res.rc, res.reason, kl_step_name(res.failed_step),
		         res.message);
	if (needle && !strstr(res.message, needle))
		fail_msg("'%s' not in: %s", needle, res.message);
	assert_int_equal(issued(), before);
}

static void refused_ek(const kl_dut *d, const char *serial, kl_ek_type type, const kl_trust *trust,
                       const char *reason, const char *needle)
{
	kl_job job = { .serial = serial, .link = d->tcti, .ek_type = type, .actor = "test" };

	refused(&job, trust, KL_STEP_EK_CERT, reason, needle);
}

static json_object *evidence(const char *serial)
{
	json_object *ev = NULL;

	assert_true(kl_registry_device_evidence(g.reg, serial, newest_evidence, &ev) >= 1);
	assert_non_null(ev);
	return ev;
}

static json_object *ev_array(json_object *o, const char *key, size_t n)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_array) ||
	    json_object_array_length(v) != n)
		fail_msg("evidence: no array \"%s\" of %zu in %s", key, n,
		         json_object_to_json_string(o));
	return v;
}

static void material(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", g.mat, name);
}

/* 1. */
static void test_nv_chain_provisions(void **state)
{
	const kl_dut *d = g.chain[0];
	char p[PATH_MAX], ek[PATH_MAX], ekpem[PATH_MAX], ca[PATH_MAX], capem[PATH_MAX];
	json_object *ev, *o, *chain, *l;

	(void)state;
	/* Without the intermediate nothing chains: the bundle has the root
	 * only. */
	refused_ek(d, "C-0", KL_EK_P256, g.root_only, "ek_cert_untrusted",
	           "0 certificate(s) from the TPM's EK chain indices");
	material(p, sizeof(p), "nv-ca.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST, p), 0);
	provision(d, "C-0", KL_EK_P256, g.root_only);

	ev = evidence("C-0");
	o = ev_obj(ev, "ek");
	l = json_object_array_get_idx(ev_array(o, "chain_nv", 1), 0);
	assert_string_equal(ev_str(l, "index"), "0x01c00100");
	ev_hex(l, "der", 0, NULL);
	chain = ev_array(o, "chain", 3);
	assert_string_equal(ev_str(json_object_array_get_idx(chain, 0), "from"), "ek");
	l = json_object_array_get_idx(chain, 1);
	assert_string_equal(ev_str(l, "from"), "nv:0x01c00100");
	assert_non_null(strstr(ev_str(l, "subject"), "Chain TPM EK Issuing CA"));
	ev_hex(l, "sha256", 32, NULL);
	l = json_object_array_get_idx(chain, 2);
	assert_string_equal(ev_str(l, "from"), "bundle");
	assert_non_null(strstr(ev_str(l, "subject"), "Chain TPM EK Root CA"));
	ev_array(o, "quirks", 0);
	assert_string_equal(ev_str(ev, "trust_bundle"), kl_trust_version(g.root_only));
	json_object_put(ev);

	/* From the outside: the EK certificate and the NV intermediate, read
	 * with tpm2-tools, verify under openssl with the root alone. */
	snprintf(ek, sizeof(ek), "%s/c0-ek.der", g.dir);
	snprintf(ekpem, sizeof(ekpem), "%s/c0-ek.pem", g.dir);
	snprintf(ca, sizeof(ca), "%s/c0-ca.der", g.dir);
	snprintf(capem, sizeof(capem), "%s/c0-ca.pem", g.dir);
	const char *r1[] = { "tpm2_nvread", "0x01c0000a", "-C", "o", "-o", ek, NULL };
	const char *r2[] = { "tpm2_nvread", "0x01c00100", "-C", "o", "-o", ca, NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", r1), 0);
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", r2), 0);
	const char *c1[] = { "openssl", "x509", "-inform", "DER", "-in", ek, "-out", ekpem, NULL };
	const char *c2[] = { "openssl", "x509", "-inform", "DER", "-in", ca, "-out", capem, NULL };
	assert_int_equal(run("convert", c1), 0);
	assert_int_equal(run("convert", c2), 0);
	const char *verify[] = {
		"openssl",    "verify", "-x509_strict", "-CAfile", g.vendor->root_pem,
		"-untrusted", capem,    ekpem,          NULL
	};
	assert_int_equal(run("openssl verify", verify), 0);
}

/* Removes chain-1's EK chain indices from 0x01c00100 up to count. */
static void clear_chain(const kl_dut *d, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		assert_int_equal(kl_dut_nv_remove(g.floor, d, KL_EK_CHAIN_NV_FIRST + i), 0);
}

/* A file of size bytes: the DER of name, padded with 0xff. */
static void padded(const char *name, size_t size, char *out, size_t out_size)
{
	char p[PATH_MAX];
	size_t len = 0;
	unsigned char *der;
	FILE *f;

	material(p, sizeof(p), name);
	der = kl_floor_read_file(p, &len);
	assert_non_null(der);
	assert_true(len <= size);
	snprintf(out, out_size, "%s/padded-%zu-%s", g.mat, size, name);
	f = fopen(out, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(der, 1, len, f), len);
	for (size_t i = len; i < size; i++)
		fputc(0xff, f);
	assert_int_equal(fclose(f), 0);
	free(der);
}

/* 2. */
static void test_nv_chain_hostile(void **state)
{
	const kl_dut *d = g.chain[1];
	char p[PATH_MAX], q[PATH_MAX];
	kl_registry_device dev;

	(void)state;
	/* The intermediate's name with another key. */
	material(p, sizeof(p), "forged.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST, p), 0);
	refused_ek(d, "C-1", KL_EK_P256, g.root_only, "ek_cert_untrusted",
	           "1 certificate(s) from the TPM's EK chain indices");
	/* A self-issued "root" under that name: NV never holds anchors. */
	material(p, sizeof(p), "self.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST, p), 0);
	refused_ek(d, "C-1", KL_EK_RSA2048, g.root_only, "ek_cert_untrusted", NULL);
	/* Bytes that are no certificate. */
	snprintf(p, sizeof(p), "%s/junk.bin", g.mat);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	for (int i = 0; i < 200; i++)
		fputc('A', f);
	fclose(f);
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST, p), 0);
	refused_ek(d, "C-1", KL_EK_P256, g.root_only, "ek_chain_nv_malformed",
	           "NV 0x01c00100 holds bytes that are not a DER certificate");
	/* Five indices of 2048 bytes: more than the 8192 read in all. The
	 * genuine intermediate, padded: size alone is refused. */
	padded("nv-ca.der", 2048, q, sizeof(q));
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST + i, q), 0);
	refused_ek(d, "C-1", KL_EK_P256, g.root_only, "ek_chain_nv_oversized",
	           "NV 0x01c00104 holds 2048 bytes");
	/* Nine indices: more than the 8 read. */
	material(p, sizeof(p), "nv-ca.der");
	for (unsigned i = 0; i < 9; i++)
		assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST + i, p), 0);
	refused_ek(d, "C-1", KL_EK_P256, g.root_only, "ek_chain_nv_too_many",
	           "more than 8 EK chain indices");
	/* Two CAs that issue each other, and an EK certificate of the DUT's
	 * P-256 EK from one of them: the chain search ends, refused. */
	clear_chain(d, 9);
	char script[PATH_MAX];
	snprintf(script, sizeof(script), "%s/ek-chain.sh", kl_fixtures_dir());
	const char *resign[] = { "bash", script, "resign", g.vendor->dir, g.mat, d->tcti, NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", resign), 0);
	material(p, sizeof(p), "ek-loop.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_NV_EK_P256, p), 0);
	material(p, sizeof(p), "loop-a.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST, p), 0);
	material(p, sizeof(p), "loop-b.der");
	assert_int_equal(kl_dut_nv_put(g.floor, d, KL_EK_CHAIN_NV_FIRST + 1, p), 0);
	refused_ek(d, "C-1", KL_EK_P256, g.root_only, "ek_cert_untrusted", "Loop");
	/* Refused at step 3: the registry never saw the DUT. */
	assert_int_equal(kl_registry_device_get(g.reg, "C-1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PREREGISTERED);
	assert_string_equal(dev.ek_sha256, "");
}

/* 3. */
static void test_stock_swtpm_setup(void **state)
{
	const kl_dut *d = g.stock[0];
	json_object *ev, *o, *q;

	(void)state;
	/* No quirk: the manufacturer attribute decides, as before. */
	refused_ek(d, "S-0", KL_EK_P384, g.full, "ek_cert_vendor_mismatch",
	           "names TPM manufacturer 'id:00001014' but the TPM reports id:49424D00 (IBM)");
	/* A quirk for another vendor's root explains nothing here. */
	refused_ek(d, "S-0", KL_EK_RSA2048, g.other_quirk, "ek_cert_vendor_mismatch",
	           "no vendor quirk of the trust bundle explains it");
	/* The bundle's quirk for this root. */
	provision(d, "S-0", KL_EK_P384, g.with_quirk);
	ev = evidence("S-0");
	o = ev_obj(ev, "ek");
	assert_true(strcasecmp(ev_str(o, "manufacturer"), "id:00001014") == 0);
	q = ev_array(o, "quirks", 1);
	assert_string_equal(json_object_get_string(json_object_array_get_idx(q, 0)),
	                    "swtpm-localca-manufacturer");
	ev_array(o, "chain", 3);
	ev_array(o, "chain_nv", 0);
	assert_string_equal(ev_str(ev, "trust_bundle"), kl_trust_version(g.with_quirk));
	assert_string_not_equal(kl_trust_version(g.with_quirk), kl_trust_version(g.full));
	json_object_put(ev);
}

/* 4. */
static void test_gate_reasons(void **state)
{
	const kl_dut *d = g.stock[1];
	kl_job job = { .link = d->tcti, .ek_type = KL_EK_P384, .actor = "test" };
	kl_registry_device dev;

	(void)state;
	job.serial = "G-1";
	job.tenant = "nobody";
	refused(&job, g.with_quirk, KL_STEP_GATES, "unknown_tenant", "no tenant 'nobody'");
	job.tenant = NULL;
	job.work_order = "WO-9";
	refused(&job, g.with_quirk, KL_STEP_GATES, "unknown_work_order", "no work order 'WO-9'");
	job.work_order = "WO-2";
	refused(&job, g.with_quirk, KL_STEP_GATES, "work_order_mismatch",
	        "G-1 is pre-registered in work order WO-1, not WO-2");
	job.serial = "W-2";
	refused(&job, g.with_quirk, KL_STEP_GATES, "not_preregistered",
	        "W-2 is not pre-registered");
	job.serial = "G 1";
	job.work_order = NULL;
	refused(&job, g.with_quirk, KL_STEP_GATES, "invalid_serial", "contains a space");
	job.serial = "G-1";
	job.tenant = "ac,me";
	refused(&job, g.with_quirk, KL_STEP_GATES, "invalid_tenant", "comma");
	job.tenant = NULL;
	job.work_order = "WO 1";
	refused(&job, g.with_quirk, KL_STEP_GATES, "invalid_work_order", "space");
	assert_int_equal(kl_registry_device_get(g.reg, "G-1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PREREGISTERED);

	/* Its own work order. */
	kl_job_result res;
	job.work_order = "WO-1";
	run_job(&job, g.with_quirk, &res);
	if (res.rc != 0)
		fail_msg("G-1: %s [%s] %s", kl_step_name(res.failed_step), res.reason, res.message);
	assert_int_equal(kl_registry_device_get(g.reg, "G-1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
	assert_string_equal(dev.work_order, "WO-1");
	kl_audit_report rep;
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nv_chain_provisions),
		cmocka_unit_test(test_nv_chain_hostile),
		cmocka_unit_test(test_stock_swtpm_setup),
		cmocka_unit_test(test_gate_reasons),
	};

	return cmocka_run_group_tests_name("ek_chain", tests, setup, teardown);
}
