/* The provisioning engine end to end on swtpm DUTs, a SoftHSM CA and a real
 * registry, judged from the outside with tpm2-tools and openssl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kl_cleanup.h"
#include "evidence_test.h"
#include "ca.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "mitm.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#include "pki_fixture.h"

#ifndef KL_PROFILES_DIR
#error "KL_PROFILES_DIR must be defined by the build"
#endif

enum { N_GOOD = 9, N_KILL = KL_STEP__MAX };

static struct {
	kl_floor *floor;
	kl_vendor *acme, *rogue;
	kl_dut **good, **forged, **kill;
	struct test_pki pki;
	char dir[PATH_MAX];
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
} g;

static int open_all(void)
{
	if (test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		return -1;
	return 0;
}

static void close_all(void)
{
	test_pki_close(&g.store, &g.ca, &g.reg);
}

static int setup(void **state)
{
	char serial[16];
	kl_registry_item items[12];

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_vendor(g.floor, "Rogue TPM", &g.rogue) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "acme", N_GOOD, &g.good) < 0 ||
	    kl_floor_manufacture(g.floor, g.rogue, "rogue", 1, &g.forged) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "kill", N_KILL, &g.kill) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "%s", kl_floor_dir(g.floor));
	/* The CA (issuing key in SoftHSM) and a trust bundle of Acme only. */
	if (test_pki_make(g.floor, g.acme, &g.pki) < 0)
		return -1;
	if (open_all() < 0)
		return -1;
	/* Serials SN-0 .. SN-9 pre-registered for tenant acme. */
	static char names[12][16];
	for (int i = 0; i < 10; i++) {
		snprintf(names[i], sizeof(names[i]), "SN-%d", i);
		items[i] = (kl_registry_item){ .serial = names[i], .line = (unsigned)i + 1 };
	}
	(void)serial;
	static char knames[N_KILL][16];
	kl_registry_item kitems[N_KILL];
	for (int i = 0; i < N_KILL; i++) {
		snprintf(knames[i], sizeof(knames[i]), "K-%d", i);
		kitems[i] = (kl_registry_item){ .serial = knames[i], .line = (unsigned)i + 1 };
	}
	kl_registry_item qitems[2] = { { .serial = "Q-1", .line = 1 },
		                       { .serial = "Q-2", .line = 2 } };
	if (kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", items, 10, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", kitems, N_KILL, "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-Q", 1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-Q", qitems, 2, "test") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < N_GOOD; i++)
		if (kl_dut_start(g.floor, g.good[i]) < 0)
			return -1;
	for (int i = 0; i < N_KILL; i++)
		if (kl_dut_start(g.floor, g.kill[i]) < 0)
			return -1;
	return kl_dut_start(g.floor, g.forged[0]) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	close_all();
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

static void run_job(const char *tcti, const char *serial, kl_ek_type type, kl_job_result *res)
{
	kl_job job = { .serial = serial, .link = tcti, .ek_type = type, .actor = "operator:test" };

	assert_int_equal(kl_engine_provision(&g.cfg, &job, res), 0);
}

static int64_t issued(void)
{
	int64_t n = -1;

	assert_int_equal(kl_store_cert_count(g.store, kl_ca_issuer_id(g.ca), "issued", &n), 0);
	return n;
}

static void assert_out(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char buf[8192];
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if (!strstr(buf, needle))
		fail_msg("'%s' not in %s:\n%s", needle, path, buf);
}

/* From the outside: the certificates in the DUT's NV chain to the CA, and
 * the persisted IDevID signs a challenge that its certificate verifies. */
static void check_dut(kl_dut *d, const char *serial)
{
	char der[PATH_MAX], pem[PATH_MAX], pub[PATH_MAX], msg[PATH_MAX], sig[PATH_MAX],
	    out[PATH_MAX];
	const char *idx[2] = { "0x01c90000", "0x01c90010" };

	snprintf(out, sizeof(out), "%s/out.txt", g.dir);
	for (int i = 0; i < 2; i++) {
		snprintf(der, sizeof(der), "%s/%s-%d.der", g.dir, serial, i);
		snprintf(pem, sizeof(pem), "%s/%s-%d.pem", g.dir, serial, i);
		const char *nvread[] = { "tpm2_nvread", idx[i], "-C", "o", "-o", der, NULL };
		assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", nvread), 0);
		const char *conv[] = { "openssl", "x509", "-inform", "DER", "-in",
			               der,       "-out", pem,       NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, conv), 0);
		const char *verify[] = { "openssl",
			                 "verify",
			                 "-x509_strict",
			                 "-CAfile",
			                 g.pki.root_pem,
			                 "-untrusted",
			                 g.pki.issuing_pem,
			                 pem,
			                 NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, verify), 0);
		const char *subj[] = { "openssl", "x509", "-in", pem, "-noout", "-subject", NULL };
		assert_int_equal(kl_floor_run(g.floor, out, NULL, subj), 0);
		assert_out(out, serial);
	}
	const char *handles[] = { "tpm2_getcap", "handles-persistent", NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, out, handles), 0);
	assert_out(out, "0x81020000");
	assert_out(out, "0x81020001");
	const char *nvpub[] = { "tpm2_nvreadpublic", "0x01c90000", NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, out, nvpub), 0);
	assert_out(out, "writelocked");

	/* The IDevID (0x81020000) signs; its certificate (NV 0x01c90000) verifies. */
	snprintf(msg, sizeof(msg), "%s/challenge.bin", g.dir);
	snprintf(sig, sizeof(sig), "%s/challenge.sig", g.dir);
	snprintf(pub, sizeof(pub), "%s/idevid-pub.pem", g.dir);
	FILE *f = fopen(msg, "w");
	fprintf(f, "challenge for %s from the outside", serial);
	fclose(f);
	const char *sign[] = { "tpm2_sign", "-c",    "0x81020000", "-g", "sha256", "-s", "ecdsa",
		               "-f",        "plain", "-o",         sig,  msg,      NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, NULL, sign), 0);
	snprintf(pem, sizeof(pem), "%s/%s-0.pem", g.dir, serial);
	const char *getpub[] = { "openssl", "x509", "-in", pem, "-noout",
		                 "-pubkey", "-out", pub,   NULL };
	assert_int_equal(kl_floor_run(g.floor, NULL, NULL, getpub), 0);
	const char *check[] = { "openssl",    "dgst", "-sha256", "-verify", pub,
		                "-signature", sig,    msg,       NULL };
	assert_int_equal(kl_floor_run(g.floor, NULL, NULL, check), 0);
}

/* The evidence of a provisioned device (docs/provisioning.md), member by
 * member and in the order the engine writes them. */
static void check_evidence(const char *serial, kl_ek_type type, const kl_job_result *res,
                           const kl_registry_device *dev)
{
	static const char *const order[] = {
		"serial",       "tpm",          "ek",         "entropy_bytes",
		"activation",   "iak_creation", "certify",    "proof_of_possession",
		"certificates", "handles",      "timings_ms", "station",
		"operator",     "trust_bundle", "link"
	};
	json_object *ev = NULL, *o, *v;
	unsigned char der[4096];
	const unsigned char *q = der;
	size_t i = 0, n;
	X509 *x;

	assert_true(kl_registry_device_evidence(g.reg, serial, newest_evidence, &ev) >= 1);
	assert_non_null(ev);
	json_object_object_foreach(ev, key, val)
	{
		(void)val;
		assert_true(i < sizeof(order) / sizeof(order[0]));
		assert_string_equal(key, order[i]);
		i++;
	}
	assert_int_equal(i, sizeof(order) / sizeof(order[0]));
	assert_string_equal(ev_str(ev, "serial"), serial);

	o = ev_obj(ev, "tpm");
	assert_string_equal(ev_str(o, "manufacturer"), "IBM");
	assert_true(strlen(ev_str(o, "vendor")) > 0);
	assert_int_equal(strlen(ev_str(o, "firmware")), 17);
	assert_int_equal(ev_str(o, "firmware")[8], '.');

	o = ev_obj(ev, "ek");
	assert_string_equal(ev_str(o, "type"), kl_ek_type_name(type));
	assert_string_equal(ev_str(o, "sha256"), dev->ek_sha256);
	assert_true(strlen(ev_str(o, "issuer")) > 0);
	assert_true(strcasecmp(ev_str(o, "manufacturer"), "id:49424D00") == 0);
	n = ev_hex(o, "certificate", 0, der);
	x = d2i_X509(NULL, &q, (long)n);
	assert_non_null(x);
	assert_true(q == der + n);
	X509_free(x);

	assert_true(json_object_object_get_ex(ev, "entropy_bytes", &v));
	assert_int_equal(json_object_get_int(v), 64);
	assert_string_equal(ev_str(ev, "activation"), "ok");
	/* the station's attestation key certified the IAK's creation, and the
	 * IAK the IDevID's: TPMS_ATTEST of type TPM_ST_ATTEST_CREATION, over
	 * the creation data of an endorsement primary */
	for (int k = 0; k < 2; k++) {
		static const unsigned char primary_cd[] = {
			0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xe3, 0xb0, 0xc4, 0x42, 0x98,
			0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
			0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99,
			0x1b, 0x78, 0x52, 0xb8, 0x55, 0x01, 0x00, 0x10, 0x00, 0x04, 0x40,
			0x00, 0x00, 0x0b, 0x00, 0x04, 0x40, 0x00, 0x00, 0x0b, 0x00, 0x00,
		};
		unsigned char buf[1024];

		o = ev_obj(ev, k == 0 ? "iak_creation" : "certify");
		ev_hex(o, "nonce", 32, NULL);
		n = ev_hex(o, "attest", 0, buf);
		assert_true(n > 6);
		assert_int_equal(buf[4], 0x80);
		assert_int_equal(buf[5], 0x1a);
		ev_hex(o, "signature", 0, NULL);
		n = ev_hex(o, "creation_data", 0, buf);
		assert_int_equal(n, sizeof(primary_cd));
		assert_memory_equal(buf, primary_cd, n);
		if (k == 0) {
			/* the attestation key's public area: restricted signing */
			n = ev_hex(o, "ak_public", 0, buf);
			assert_true(n > 10);
		}
	}
	o = ev_obj(ev, "proof_of_possession");
	ev_hex(o, "nonce", 32, NULL);
	ev_hex(o, "signature", 0, NULL);
	o = ev_obj(ev, "certificates");
	assert_string_equal(ev_str(o, "iak"), res->iak_serial);
	assert_string_equal(ev_str(o, "idevid"), res->idevid_serial);
	o = ev_obj(ev, "handles");
	assert_string_equal(ev_str(o, "iak"), "0x81020001");
	assert_string_equal(ev_str(o, "idevid"), "0x81020000");
	assert_string_equal(ev_str(o, "iak_cert_nv"), "0x01c90010");
	assert_string_equal(ev_str(o, "idevid_cert_nv"), "0x01c90000");
	o = ev_obj(ev, "timings_ms");
	assert_int_equal(json_object_object_length(o), KL_STEP_COMMIT);
	for (int s = 0; s < KL_STEP_COMMIT; s++) {
		assert_true(json_object_object_get_ex(o, kl_step_name((kl_step)s), &v));
		assert_true(json_object_is_type(v, json_type_double));
		assert_true(json_object_get_double(v) >= 0);
	}
	assert_string_equal(ev_str(ev, "station"), g.cfg.station_id);
	assert_string_equal(ev_str(ev, "operator"), "operator:test");
	assert_string_equal(ev_str(ev, "trust_bundle"), kl_trust_version(g.cfg.trust));
	json_object_put(ev);
}

static void test_provision_each_ek_type(void **state)
{
	kl_job_result res;
	kl_registry_device dev;
	char serial[16];

	(void)state;
	for (int i = 0; i < 3; i++) {
		snprintf(serial, sizeof(serial), "SN-%d", i);
		run_job(g.good[i]->tcti, serial, (kl_ek_type)i, &res);
		if (res.rc != 0)
			fail_msg("%s: %s [%s] %s", serial, kl_step_name(res.failed_step),
			         res.reason, res.message);
		assert_false(res.already_provisioned);
		assert_true(strlen(res.idevid_serial) >= 16);
		for (int s = 0; s < KL_STEP__MAX; s++)
			assert_true(res.step_ms[s] >= 0);
		assert_int_equal(kl_registry_device_get(g.reg, serial, &dev), 0);
		assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
		assert_int_equal(strlen(dev.ek_sha256), 64);
		check_evidence(serial, (kl_ek_type)i, &res, &dev);
		check_dut(g.good[i], serial);
	}
	kl_audit_report rep;
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

/* The DER SubjectPublicKeyInfo of a PEM public key or certificate. */
static unsigned char *spki_der(const char *pem, bool cert, size_t *len)
{
	char der[PATH_MAX];

	snprintf(der, sizeof(der), "%s.spki", pem);
	const char *from_cert[] = { "openssl",  "x509", "-in",  pem, "-noout", "-pubkey",
		                    "-outform", "PEM",  "-out", der, NULL };
	const char *from_key[] = { "openssl",  "pkey", "-pubin", "-in", pem,
		                   "-outform", "DER",  "-out",   der,   NULL };
	if (cert) {
		char tmp[PATH_MAX];

		snprintf(tmp, sizeof(tmp), "%s.pub.pem", pem);
		from_cert[9] = tmp;
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, from_cert), 0);
		from_key[4] = tmp;
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, from_key), 0);
	} else {
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, from_key), 0);
	}
	unsigned char *p = kl_floor_read_file(der, len);
	assert_non_null(p);
	return p;
}

/* Recreates an identity key on a provisioned DUT with tpm2-tools alone,
 * from the DevID spec's template (TCG "TPM 2.0 Keys for Device Identity and
 * Attestation" §7.3.1 unique string, §7.3.4 Tables 3 and 4 attributes and
 * ECC P-256 parameters, §7.3.6.6 Table 19 policy, written out here on their
 * own rather than taken from the station), and returns its DER public key. */
static unsigned char *recreate(kl_dut *d, const char *unique, const char *attrs,
                               const char *policy_hex, const char *name, size_t *len)
{
	char pol[PATH_MAX], ctx[PATH_MAX], pem[PATH_MAX], cmd[2048];
	unsigned char bin[32];
	FILE *f;

	snprintf(pol, sizeof(pol), "%s/%s.policy", g.dir, name);
	snprintf(ctx, sizeof(ctx), "%s/%s.ctx", g.dir, name);
	snprintf(pem, sizeof(pem), "%s/%s.pem", g.dir, name);
	for (size_t i = 0; i < sizeof(bin); i++)
		assert_int_equal(sscanf(policy_hex + 2 * i, "%2hhx", &bin[i]), 1);
	f = fopen(pol, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(bin, 1, sizeof(bin), f), sizeof(bin));
	assert_int_equal(fclose(f), 0);
	/* ECC: tpm2_createprimary splits the unique it reads on stdin into the
	 * two coordinates, so the string goes in twice. swtpm has no resource
	 * manager: the transient is flushed right away. */
	snprintf(cmd, sizeof(cmd),
	         "printf '%s%s' | tpm2_createprimary -C e -g sha256 -G ecc256:ecdsa-sha256:null "
	         "-a '%s' -L '%s' -u - -c '%s' -f pem -o '%s' >/dev/null && "
	         "tpm2_flushcontext -t",
	         unique, unique, attrs, pol, ctx, pem);
	const char *argv[] = { "sh", "-c", cmd, NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, NULL, argv), 0);
	return spki_der(pem, false, len);
}

#define IAK_POLICY    "5437182326e414fca797d5f174615a1641f61255797c3a2b22c21d120b2d1e07"
#define IDEVID_POLICY "ad6b3a2284fd698a0710bf5cc1b9bdf15e2532e3f601fa4b93a6a8fa8de579ea"
#define IAK_ATTRS                                                                     \
	"fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|sign|" \
	"restricted"
#define IDEVID_ATTRS "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|sign"

/* Another verifier (a Keylime agent, say) recreates the IAK and the IDevID
 * of a provisioned DUT from the spec's templates with tpm2-tools alone and
 * gets the keys whose certificates Keyline engraved; with the template one
 * bit or one letter off it gets other keys, so the comparison can fail. */
static void test_tcg_templates_recreate(void **state)
{
	const struct {
		const char *cert_nv, *unique, *attrs, *policy, *name;
	} keys[2] = {
		{ "0x01c90010", "IAK", IAK_ATTRS, IAK_POLICY, "iak-recreated" },
		{ "0x01c90000", "IDEVID", IDEVID_ATTRS, IDEVID_POLICY, "idevid-recreated" },
	};
	size_t n_cert = 0, n_key = 0;

	(void)state;
	for (int i = 0; i < 2; i++) {
		char der[PATH_MAX], pem[PATH_MAX];

		snprintf(der, sizeof(der), "%s/recreate-cert-%d.der", g.dir, i);
		snprintf(pem, sizeof(pem), "%s/recreate-cert-%d.pem", g.dir, i);
		const char *nvread[] = {
			"tpm2_nvread", keys[i].cert_nv, "-C", "o", "-o", der, NULL
		};
		assert_int_equal(kl_dut_tool(g.floor, g.good[0], "/dev/null", nvread), 0);
		const char *conv[] = { "openssl", "x509", "-inform", "DER", "-in",
			               der,       "-out", pem,       NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, conv), 0);
		_cleanup_(freep) unsigned char *cert_key = spki_der(pem, true, &n_cert);
		_cleanup_(freep) unsigned char *key = recreate(
		    g.good[0], keys[i].unique, keys[i].attrs, keys[i].policy, keys[i].name, &n_key);
		if (n_key != n_cert || memcmp(key, cert_key, n_key) != 0)
			fail_msg("%s: the key recreated from the DevID template is not the one "
			         "certified",
			         keys[i].name);
	}
	/* the controls: the old unique spelling, and no policy */
	{
		_cleanup_(freep) unsigned char *a = recreate(g.good[0], "IDevID", IDEVID_ATTRS,
		                                             IDEVID_POLICY, "ctl-unique", &n_key);
		_cleanup_(freep) unsigned char *b =
		    recreate(g.good[0], "IDEVID", IDEVID_ATTRS, IAK_POLICY, "ctl-policy", &n_cert);
		_cleanup_(freep) unsigned char *c =
		    recreate(g.good[0], "IDEVID", IDEVID_ATTRS, IDEVID_POLICY, "ctl-same", &n_cert);
		assert_false(n_key == n_cert && memcmp(a, c, n_key) == 0);
		assert_false(memcmp(b, c, n_cert) == 0);
	}
}

static void test_again_is_idempotent(void **state)
{
	kl_job_result res;
	int64_t before = issued();

	(void)state;
	run_job(g.good[0]->tcti, "SN-0", KL_EK_RSA2048, &res);
	assert_int_equal(res.rc, 0);
	assert_true(res.already_provisioned);
	assert_int_equal(issued(), before);
}

static int audits(const char *action);

/* "Already provisioned" is believed only when the DUT shows it: with its
 * IDevID certificate index removed from the outside, the run is refused,
 * nothing is issued and the device stays provisioned. */
static void test_already_provisioned_is_checked(void **state)
{
	kl_job_result res;
	kl_registry_device dev;
	int64_t before = issued();
	int refusals;

	(void)state;
	run_job(g.good[2]->tcti, "SN-2", KL_EK_P384, &res);
	assert_int_equal(res.rc, 0);
	assert_true(res.already_provisioned);
	refusals = audits("station.provision.refused");
	const char *undef[] = { "tpm2_nvundefine", "0x01c90000", NULL };
	assert_int_equal(kl_dut_tool(g.floor, g.good[2], NULL, undef), 0);
	run_job(g.good[2]->tcti, "SN-2", KL_EK_P384, &res);
	if (res.rc == 0 || strcmp(res.reason, "engraved_mismatch") != 0)
		fail_msg("want engraved_mismatch, got rc %d [%s] %s", res.rc, res.reason,
		         res.message);
	assert_false(res.already_provisioned);
	assert_non_null(strstr(res.message, "IDevID certificate (NV 0x01c90000)"));
	assert_int_equal(issued(), before);
	assert_int_equal(audits("station.provision.refused"), refusals + 1);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-2", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
}

/* Audit entries of an action, counted from the outside with sqlite3. */
static int audits(const char *action)
{
	char out[PATH_MAX], sql[160];
	FILE *f;
	int n = -1;

	snprintf(out, sizeof(out), "%s/audit-count.txt", g.dir);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit WHERE action = '%s'", action);
	const char *argv[] = { "sqlite3", g.pki.db, sql, NULL };
	assert_int_equal(kl_floor_run(g.floor, out, NULL, argv), 0);
	f = fopen(out, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &n), 1);
	fclose(f);
	return n;
}

static void expect_refusal_ek(const char *tcti, const char *serial, kl_ek_type type,
                              const char *reason)
{
	kl_job_result res;
	int64_t before = issued();
	int refusals = audits("station.provision.refused");

	run_job(tcti, serial, type, &res);
	if (res.rc == 0 || strcmp(res.reason, reason) != 0)
		fail_msg("%s: want %s, got rc %d [%s] %s", serial, reason, res.rc, res.reason,
		         res.message);
	assert_true(strlen(res.message) > 10);
	assert_int_equal(issued(), before);
	assert_int_equal(audits("station.provision.refused"), refusals + 1);
}

static void expect_refusal(const char *tcti, const char *serial, const char *reason)
{
	expect_refusal_ek(tcti, serial, KL_EK_P256, reason);
}

static void test_refusals(void **state)
{
	(void)state;
	/* Forged TPM: the EK certificate does not chain to a trusted vendor. */
	expect_refusal(g.forged[0]->tcti, "SN-5", "ek_cert_untrusted");
	/* Not pre-registered when the policy requires it. */
	expect_refusal(g.good[3]->tcti, "SN-UNKNOWN", "not_preregistered");
	/* An EK already bound to another serial (acme-0 is SN-0). */
	expect_refusal_ek(g.good[0]->tcti, "SN-6", KL_EK_RSA2048, "ek_bound");
	/* The same TPM through another of its EKs: not factory-new. */
	expect_refusal(g.good[0]->tcti, "SN-6", "not_factory_new");

	/* An EK on the deny list. */
	kl_tpm *t = NULL;
	EVP_PKEY *ek = NULL;
	unsigned char h[32];
	assert_int_equal(kl_tpm_open(g.good[4]->tcti, &t), 0);
	assert_int_equal(kl_tpm_ek_public(t, KL_EK_P256, &ek), 0);
	kl_tpm_free(t);
	assert_int_equal(kl_registry_ek_hash(ek, h), 0);
	EVP_PKEY_free(ek);
	assert_int_equal(kl_registry_deny_add(g.reg, h, "reported stolen", "officer"), 0);
	expect_refusal(g.good[4]->tcti, "SN-4", "ek_denied");

	/* A work order with a quota of one: the second device is refused. */
	kl_job_result res;
	run_job(g.good[3]->tcti, "Q-1", KL_EK_P256, &res);
	if (res.rc != 0)
		fail_msg("Q-1: [%s] %s", res.reason, res.message);
	expect_refusal(g.good[7]->tcti, "Q-2", "quota_exhausted");

	/* An EK certificate swapped in from another TPM of the same vendor:
	 * it chains, but it is not this TPM's EK. */
	assert_int_equal(kl_dut_copy_ek_cert(g.floor, g.good[0], g.good[7], KL_NV_EK_P256), 0);
	expect_refusal(g.good[7]->tcti, "SN-9", "ek_mismatch");
}

struct count {
	int valid, superseded;
};

static int count_cert(void *ctx, const kl_registry_cert *cert)
{
	struct count *cc = ctx;

	if (!cert->revoked && strcmp(cert->state, "issued") == 0)
		cc->valid++;
	else if (cert->revoked && cert->reason == 4)
		cc->superseded++;
	return 0;
}

static const char *broken_idevid_profile(void *ctx, const char *tenant, const char *kind)
{
	(void)ctx;
	(void)tenant;
	return strcmp(kind, "idevid") == 0 ? "no-such-profile" : NULL;
}

/* Refused after the IAK certificate was issued (the IDevID's profile does
 * not exist): the issued certificate is revoked, the DUT cleaned, the serial
 * given back; the next run provisions it with one valid set. */
static void test_refused_after_issue(void **state)
{
	struct count c = { 0, 0 };
	kl_registry_device dev;
	kl_job_result res;

	(void)state;
	g.cfg.profile_for = broken_idevid_profile;
	run_job(g.good[7]->tcti, "SN-9", KL_EK_RSA2048, &res);
	g.cfg.profile_for = NULL;
	assert_int_not_equal(res.rc, 0);
	assert_int_equal(res.failed_step, KL_STEP_ISSUE);
	assert_true(kl_registry_device_certs(g.reg, "SN-9", count_cert, &c) >= 1);
	assert_int_equal(c.valid, 0);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-9", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PREREGISTERED);

	run_job(g.good[7]->tcti, "SN-9", KL_EK_RSA2048, &res);
	if (res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(res.failed_step), res.reason, res.message);
	c = (struct count){ 0, 0 };
	assert_true(kl_registry_device_certs(g.reg, "SN-9", count_cert, &c) >= 3);
	assert_int_equal(c.valid, 2);
	check_dut(g.good[7], "SN-9");
}

/* The newest "station.provision.refused" detail, parsed. */
static int newest_detail(void *ctx, const kl_audit_entry *e)
{
	json_object **o = ctx;

	if (!*o)
		*o = json_tokener_parse(e->detail);
	return 0;
}

static json_object *refusal_detail(void)
{
	json_object *d = NULL;

	assert_true(kl_store_audit_list(g.store, 0, "station.provision.refused", 1, newest_detail,
	                                &d) == 1);
	if (!d)
		fail_msg("the refusal's audit detail is not JSON");
	return d;
}

/* A refusal's audit detail is JSON whatever the serial and the message
 * hold (quotes, backslashes, control characters), with the DUT's clean-up
 * after step 5. */
static void test_refusal_detail(void **state)
{
	static const char odd[] = "SN-\"q\"\\b\n\t/";
	json_object *d, *v;
	kl_job_result res;

	(void)state;
	/* Such a serial is no registry name: refused as that at step 5. */
	run_job(g.good[8]->tcti, odd, KL_EK_P256, &res);
	assert_string_equal(res.reason, "invalid_serial");
	d = refusal_detail();
	assert_string_equal(ev_str(d, "serial"), odd);
	assert_string_equal(ev_str(d, "step"), "gates");
	assert_string_equal(ev_str(d, "reason"), "invalid_serial");
	assert_string_equal(ev_str(d, "message"), res.message);
	assert_false(json_object_object_get_ex(d, "dut_cleaned", &v));
	json_object_put(d);

	/* After step 5: whether the DUT was cleaned and certificates revoked. */
	g.cfg.profile_for = broken_idevid_profile;
	run_job(g.good[8]->tcti, "SN-3", KL_EK_RSA2048, &res);
	g.cfg.profile_for = NULL;
	assert_int_equal(res.failed_step, KL_STEP_ISSUE);
	d = refusal_detail();
	assert_string_equal(ev_str(d, "serial"), "SN-3");
	assert_string_equal(ev_str(d, "step"), "issue");
	assert_string_equal(ev_str(d, "reason"), res.reason);
	assert_string_equal(ev_str(d, "message"), res.message);
	assert_true(json_object_object_get_ex(d, "dut_cleaned", &v));
	assert_true(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(d, "certificates_revoked", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(d);
}

/* A DUT whose TPM lies on the wire. */
static void test_lying_dut(void **state)
{
	kl_mitm *m = NULL;
	kl_registry_device dev;

	(void)state;
	/* ActivateCredential (0x147) answered with a failure. */
	kl_mitm_rule fail = { .command_code = 0x00000147, .action = KL_MITM_FAIL };
	assert_int_equal(kl_mitm_start(g.good[5], &fail, 1, &m), 0);
	expect_refusal(kl_mitm_tcti(m), "SN-7", "activation_failed");
	kl_mitm_stop(m);
	/* The serial is free again, nothing issued. */
	assert_int_equal(kl_registry_device_get(g.reg, "SN-7", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PREREGISTERED);

	/* One bit of step 8's CertifyCreation response (0x14a), the station's
	 * attestation key over the IAK's creation, flipped: refused there. */
	kl_mitm_rule flip8 = { .command_code = 0x0000014a, .action = KL_MITM_FLIP, .offset = 40 };
	assert_int_equal(kl_mitm_start(g.good[5], &flip8, 1, &m), 0);
	expect_refusal(kl_mitm_tcti(m), "SN-7", "iak_creation_bad_signature");
	kl_mitm_stop(m);

	/* One bit of step 9's, the IAK over the IDevID's creation, flipped:
	 * the attestation no longer verifies. */
	kl_mitm_rule flip = {
		.command_code = 0x0000014a, .action = KL_MITM_FLIP, .offset = 40, .skip = 1
	};
	assert_int_equal(kl_mitm_start(g.good[5], &flip, 1, &m), 0);
	kl_job_result res;
	int64_t before = issued();
	run_job(kl_mitm_tcti(m), "SN-7", KL_EK_P256, &res);
	assert_int_not_equal(res.rc, 0);
	assert_int_equal(res.failed_step, KL_STEP_CERTIFY);
	assert_int_equal(strncmp(res.reason, "certify_", 8), 0);
	assert_int_equal(issued(), before);
	kl_mitm_stop(m);

	/* The honest link afterwards provisions it. */
	run_job(g.good[5]->tcti, "SN-7", KL_EK_P256, &res);
	if (res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(res.failed_step), res.reason, res.message);
}

/* Killed right after the certificates were issued, then run again: ends
 * provisioned once, with one valid set of certificates. */
static void test_killed_and_resumed(void **state)
{
	kl_job_result res;
	pid_t pid;
	int st;

	(void)state;
	close_all();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kl_job_result r;
		kl_job job = { .serial = "SN-8",
			       .link = g.good[6]->tcti,
			       .ek_type = KL_EK_P384,
			       .actor = "operator:test" };

		setenv("KEYLINE_FAILPOINT", "issue", 1);
		if (open_all() < 0)
			_exit(3);
		/* the failpoint kills the child inside: its result is never seen */
		KL_BEST_EFFORT(kl_engine_provision(&g.cfg, &job, &r));
		fprintf(stderr, "child: not killed: %s [%s] %s\n", kl_step_name(r.failed_step),
		        r.reason, r.message);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(open_all(), 0);

	run_job(g.good[6]->tcti, "SN-8", KL_EK_P384, &res);
	if (res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(res.failed_step), res.reason, res.message);
	assert_true(res.resumed);
	check_dut(g.good[6], "SN-8");

	/* The first run's two certificates are revoked as superseded; the new
	 * two are valid. */
	struct count c = { 0, 0 };
	assert_int_equal(kl_registry_device_certs(g.reg, "SN-8", count_cert, &c), 4);
	assert_int_equal(c.valid, 2);
	assert_int_equal(c.superseded, 2);
	kl_audit_report rep;
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

/* Killed after each step in turn, then run again: every time the device
 * ends provisioned once, with exactly one valid set of certificates, and
 * the audit chain verifies. */
static void test_killed_at_every_step(void **state)
{
	kl_audit_report rep;

	(void)state;
	for (int s = 0; s < KL_STEP__MAX; s++) {
		char serial[16];
		kl_job_result res;
		pid_t pid;
		int st;

		snprintf(serial, sizeof(serial), "K-%d", s);
		close_all();
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			kl_job_result r;
			kl_job job = { .serial = serial,
				       .link = g.kill[s]->tcti,
				       .ek_type = (kl_ek_type)(s % KL_EK__MAX),
				       .actor = "operator:test" };

			setenv("KEYLINE_FAILPOINT", kl_step_name((kl_step)s), 1);
			if (open_all() < 0)
				_exit(3);
			/* the failpoint kills the child inside: its result is never seen */
			KL_BEST_EFFORT(kl_engine_provision(&g.cfg, &job, &r));
			_exit(4);
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st))
			fail_msg("not killed after %s (status %d)", kl_step_name((kl_step)s), st);
		assert_int_equal(open_all(), 0);

		run_job(g.kill[s]->tcti, serial, (kl_ek_type)(s % KL_EK__MAX), &res);
		if (res.rc != 0)
			fail_msg("after %s: %s [%s] %s", kl_step_name((kl_step)s),
			         kl_step_name(res.failed_step), res.reason, res.message);
		/* Killed after the commit, the device was already provisioned. */
		assert_int_equal(res.already_provisioned, s == KL_STEP_COMMIT);

		struct count c = { 0, 0 };
		assert_true(kl_registry_device_certs(g.reg, serial, count_cert, &c) >= 2);
		assert_int_equal(c.valid, 2);
		kl_registry_device dev;
		assert_int_equal(kl_registry_device_get(g.reg, serial, &dev), 0);
		assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
		check_dut(g.kill[s], serial);
	}
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provision_each_ek_type),
		cmocka_unit_test(test_tcg_templates_recreate),
		cmocka_unit_test(test_again_is_idempotent),
		cmocka_unit_test(test_already_provisioned_is_checked),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_lying_dut),
		cmocka_unit_test(test_refused_after_issue),
		cmocka_unit_test(test_refusal_detail),
		cmocka_unit_test(test_killed_and_resumed),
		cmocka_unit_test(test_killed_at_every_step),
	};

	return cmocka_run_group_tests_name("engine", tests, setup, teardown);
}
