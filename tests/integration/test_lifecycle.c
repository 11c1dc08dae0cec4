/* The device lifecycle end to end on swtpm DUTs, a SoftHSM CA and a real
 * registry: renewal, decommission with cryptographic erase and a signed
 * sanitization record, repurpose, lost and revoked devices, refusals, and
 * runs killed part-way. Judged from the outside with tpm2-tools and
 * openssl as well as through the registry. */
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
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "evidence_test.h"
#include "ca.h"
#include "devid.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "lifecycle.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#include "pki_fixture.h"

#ifndef KL_PROFILES_DIR
#error "KL_PROFILES_DIR must be defined by the build"
#endif

/* DUTs: 0 renew+decommission, 1 repurpose, 2 lost, 3 and 4 the wrong-DUT
 * refusals (4 is then revoked and decommissioned), 5 renewals killed
 * part-way, 6 a decommission killed part-way. */
enum { N_DUT = 7 };
static const char *const serials[N_DUT] = { "SN-L0", "SN-L1", "SN-L2", "SN-L3",
	                                    "SN-L4", "SN-L5", "SN-L6" };

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **dut;
	struct test_pki pki;
	EVP_PKEY *record_key;
	X509 *record_cert;
	char dir[PATH_MAX];
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	kl_life_config life;
	int lock_depth, locks;
	char steps[512];
} g;

/* The backend lock hooks: counted, so that a test sees them balanced. */
static void test_lock(void *ctx)
{
	(void)ctx;
	if (g.lock_depth != 0)
		fprintf(stderr, "lock taken twice\n");
	g.lock_depth++;
	g.locks++;
}

static void test_unlock(void *ctx)
{
	(void)ctx;
	g.lock_depth--;
}

static void progress(void *ctx, const char *step, bool done, double ms)
{
	(void)ctx;
	(void)ms;
	if (done && strlen(g.steps) + strlen(step) + 2 < sizeof(g.steps)) {
		strcat(g.steps, step);
		strcat(g.steps, " ");
	}
}

static int open_all(void)
{
	if (test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		return -1;
	g.life = (kl_life_config){ .store = g.store,
		                   .reg = g.reg,
		                   .ca = g.ca,
		                   .station_id = "test-station",
		                   .record_key = g.record_key,
		                   .record_cert = g.record_cert,
		                   .lock = test_lock,
		                   .unlock = test_unlock };
	return 0;
}

static void close_all(void)
{
	test_pki_close(&g.store, &g.ca, &g.reg);
}

static int setup(void **state)
{
	kl_hsm_key *rk = NULL;
	kl_registry_item items[N_DUT + 3];

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "life", N_DUT, &g.dut) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "%s", kl_floor_dir(g.floor));
	/* The CA (issuing key in SoftHSM), a trust bundle of Acme only, and
	 * the record-signing key in the same token. */
	if (test_pki_make(g.floor, g.acme, &g.pki) < 0 ||
	    kl_hsm_key_generate(g.pki.hsm, KL_HSM_KEY_EC_P256, "records", &rk) < 0 ||
	    kl_hsm_key_private(g.pki.hsm, rk, &g.record_key) < 0)
		return -1;
	kl_hsm_key_free(rk);
	if (open_all() < 0)
		return -1;
	/* The station's record-signing certificate, from the "records" profile,
	 * for the public half of the HSM key (as a plain OpenSSL key). */
	unsigned char *spki = NULL;
	int spki_len = i2d_PUBKEY(g.record_key, &spki);
	const unsigned char *sp = spki;
	EVP_PKEY *record_pub = spki_len > 0 ? d2i_PUBKEY(NULL, &sp, spki_len) : NULL;
	OPENSSL_free(spki);
	kl_cert_request rr = { .profile = "records",
		               .pubkey = record_pub,
		               .cn = "test-station sanitization records",
		               .o = "Keyline",
		               .actor = "officer:test" };
	if (!record_pub || kl_ca_issue(g.ca, &rr, &g.record_cert, NULL) < 0) {
		fprintf(stderr, "record certificate: %s\n", kl_error_detail());
		return -1;
	}
	EVP_PKEY_free(record_pub);
	g.life.record_cert = g.record_cert;
	for (int i = 0; i < N_DUT; i++)
		items[i] = (kl_registry_item){ .serial = serials[i], .line = (unsigned)i + 1 };
	items[N_DUT] = (kl_registry_item){ .serial = "SN-NEW-0", .line = N_DUT + 1 };
	items[N_DUT + 1] = (kl_registry_item){ .serial = "SN-NEW-2", .line = N_DUT + 2 };
	items[N_DUT + 2] = (kl_registry_item){ .serial = "SN-IDLE", .line = N_DUT + 3 };
	if (kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", items, N_DUT + 3, "test") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < N_DUT; i++) {
		kl_job_result res;
		kl_job job = { .serial = serials[i],
			       .ek_type = i % 2 ? KL_EK_RSA2048 : KL_EK_P256,
			       .actor = "operator:test" };

		if (kl_dut_start(g.floor, g.dut[i]) < 0)
			return -1;
		job.link = g.dut[i]->tcti;
		if (kl_engine_provision(&g.cfg, &job, &res) < 0 || res.rc != 0) {
			fprintf(stderr, "provision %s: [%s] %s\n", serials[i], res.reason,
			        res.message);
			return -1;
		}
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close_all();
	EVP_PKEY_free(g.record_key);
	X509_free(g.record_cert);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

static kl_life_job job_for(const char *serial, const kl_dut *d)
{
	g.steps[0] = '\0';
	return (kl_life_job){
		.serial = serial, .link = d->tcti, .actor = "service:test", .progress = progress
	};
}

static void renew(const char *serial, const kl_dut *d, kl_life_result *res)
{
	kl_life_job job = job_for(serial, d);

	assert_int_equal(kl_life_renew(&g.life, &job, res), 0);
	assert_int_equal(g.lock_depth, 0);
	if (res->rc != 0)
		fail_msg("renew %s: %s [%s] %s", serial, res->step, res->reason, res->message);
}

static void decommission(const char *serial, const kl_dut *d, bool repurpose, kl_life_result *res)
{
	kl_life_job job = job_for(serial, d);

	assert_int_equal(kl_life_decommission(&g.life, &job, repurpose, res), 0);
	assert_int_equal(g.lock_depth, 0);
	if (res->rc != 0)
		fail_msg("decommission %s: %s [%s] %s", serial, res->step, res->reason,
		         res->message);
}

static void assert_out(const char *path, const char *needle, bool want)
{
	FILE *f = fopen(path, "r");
	char buf[16384];
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if ((strstr(buf, needle) != NULL) != want)
		fail_msg("'%s' %s in %s:\n%s", needle, want ? "not" : "unexpectedly", path, buf);
}

/* The IDevID certificate in the DUT's NV, read with tpm2_nvread; it must
 * verify against the CA chain with openssl verify. */
static X509 *nv_idevid_cert(kl_dut *d, const char *tag)
{
	char der[PATH_MAX], pem[PATH_MAX];
	X509 *x;
	FILE *f;

	snprintf(der, sizeof(der), "%s/%s.der", g.dir, tag);
	snprintf(pem, sizeof(pem), "%s/%s.pem", g.dir, tag);
	const char *nvread[] = { "tpm2_nvread", "0x01c90000", "-C", "o", "-o", der, NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", nvread), 0);
	const char *conv[] = { "openssl", "x509", "-inform", "DER", "-in", der, "-out", pem, NULL };
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
	f = fopen(pem, "r");
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

/* From the outside: the persisted IDevID (0x81020000) signs a challenge
 * with tpm2_sign, and the certificate in NV verifies it with openssl. */
static void check_idevid_signs(kl_dut *d, const char *tag)
{
	char msg[PATH_MAX], sig[PATH_MAX], pub[PATH_MAX], pem[PATH_MAX];
	X509 *x = nv_idevid_cert(d, tag);
	FILE *f;

	X509_free(x);
	snprintf(msg, sizeof(msg), "%s/%s-challenge.bin", g.dir, tag);
	snprintf(sig, sizeof(sig), "%s/%s-challenge.sig", g.dir, tag);
	snprintf(pub, sizeof(pub), "%s/%s-pub.pem", g.dir, tag);
	snprintf(pem, sizeof(pem), "%s/%s.pem", g.dir, tag);
	f = fopen(msg, "w");
	fprintf(f, "lifecycle challenge %s", tag);
	fclose(f);
	const char *sign[] = { "tpm2_sign", "-c",    "0x81020000", "-g", "sha256", "-s", "ecdsa",
		               "-f",        "plain", "-o",         sig,  msg,      NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, NULL, sign), 0);
	const char *getpub[] = { "openssl", "x509", "-in", pem, "-noout",
		                 "-pubkey", "-out", pub,   NULL };
	assert_int_equal(kl_floor_run(g.floor, NULL, NULL, getpub), 0);
	const char *check[] = { "openssl",    "dgst", "-sha256", "-verify", pub,
		                "-signature", sig,    msg,       NULL };
	assert_int_equal(kl_floor_run(g.floor, NULL, NULL, check), 0);
}

struct count {
	int valid, revoked;
	int reason_seen[11];
};

static int count_cert(void *ctx, const kl_registry_cert *cert)
{
	struct count *c = ctx;

	if (strcmp(cert->state, "issued") != 0)
		return 0;
	if (!cert->revoked) {
		c->valid++;
	} else {
		c->revoked++;
		if (cert->reason >= 0 && cert->reason <= 10)
			c->reason_seen[cert->reason]++;
	}
	return 0;
}

static struct count certs_of(const char *serial)
{
	struct count c;

	memset(&c, 0, sizeof(c));
	assert_true(kl_registry_device_certs(g.reg, serial, count_cert, &c) >= 0);
	return c;
}

/* The reason of a serial on a fresh CRL from kl_ca_crl, -1 when it is not
 * there. The CRL is also written out and read by openssl crl (signature
 * checked with the issuing CA), whose text must name reason_text. */
static int crl_reason(const char *serial_hex, const char *reason_text)
{
	unsigned char *der = NULL;
	size_t len = 0;
	char path[PATH_MAX], out[PATH_MAX];
	BIGNUM *bn = NULL;
	int found = -1;
	FILE *f;

	assert_int_equal(kl_ca_crl(g.ca, 3600, "officer:test", &der, &len), 0);
	snprintf(path, sizeof(path), "%s/issuing.crl", g.dir);
	snprintf(out, sizeof(out), "%s/crl.txt", g.dir);
	f = fopen(path, "w");
	fwrite(der, 1, len, f);
	fclose(f);
	const char *text[] = { "openssl", "crl",     "-inform",         "DER",
		               "-in",     path,      "-noout",          "-text",
		               "-verify", "-CAfile", g.pki.issuing_pem, NULL };
	assert_int_equal(kl_floor_run(g.floor, out, NULL, text), 0);
	if (reason_text)
		assert_out(out, reason_text, true);
	const unsigned char *p = der;
	X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
	assert_non_null(crl);
	assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(g.pki.issuing)), 1);
	assert_true(BN_hex2bn(&bn, serial_hex) > 0);
	ASN1_INTEGER *want = BN_to_ASN1_INTEGER(bn, NULL);
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
	for (int i = 0; i < sk_X509_REVOKED_num(revs); i++) {
		X509_REVOKED *rev = sk_X509_REVOKED_value(revs, i);

		if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rev), want) != 0)
			continue;
		ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
		found = reason ? (int)ASN1_ENUMERATED_get(reason) : 0;
		ASN1_ENUMERATED_free(reason);
	}
	ASN1_INTEGER_free(want);
	BN_free(bn);
	X509_CRL_free(crl);
	free(der);
	return found;
}

/* Every issued certificate of a device is on the CRL with its reason. */
static int all_in_crl(void *ctx, const kl_registry_cert *cert)
{
	(void)ctx;
	if (strcmp(cert->state, "issued") == 0) {
		assert_true(cert->revoked != 0);
		assert_int_equal(crl_reason(cert->serial, NULL), cert->reason);
	}
	return 0;
}

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

static void expect_ek_denied(kl_dut *d, const char *serial)
{
	kl_job_result res;
	kl_job job = {
		.serial = serial, .link = d->tcti, .ek_type = KL_EK__MAX, .actor = "operator:test"
	};

	assert_int_equal(kl_engine_provision(&g.cfg, &job, &res), 0);
	if (res.rc == 0 || strcmp(res.reason, "ek_denied") != 0)
		fail_msg("%s: want ek_denied, got [%s] %s", serial, res.reason, res.message);
}

static void serial_of(X509 *x, char out[48])
{
	assert_int_equal(kl_serial_hex(X509_get0_serialNumber(x), out, 48), 0);
}

/* The renewal's evidence record (docs/lifecycle.md). */
static void check_renew_evidence(const char *serial, const kl_life_result *res)
{
	static const char *const top[] = { "kind",           "serial",  "superseded",
		                           "identity_proof", "certify", "proof_of_possession",
		                           "certificate",    "profile", "handles",
		                           "station",        "operator" };
	static const char *const certify[] = { "unique",    "nonce",         "attest",
		                               "signature", "creation_data", "iak_certificate" };
	static const char *const handles[] = { "idevid", "idevid_cert_nv" };
	json_object *ev = NULL, *o;

	assert_true(kl_registry_device_evidence(g.reg, serial, newest_evidence, &ev) >= 2);
	assert_non_null(ev);
	ev_keys(ev, top, sizeof(top) / sizeof(top[0]));
	assert_string_equal(ev_str(ev, "kind"), "renewal");
	assert_string_equal(ev_str(ev, "serial"), serial);
	o = ev_obj(ev, "identity_proof");
	assert_string_equal(ev_str(o, "method"), "idevid-signature");
	ev_hex(o, "nonce", 32, NULL);
	ev_hex(o, "signature", 0, NULL);
	o = ev_obj(ev, "certify");
	ev_keys(o, certify, sizeof(certify) / sizeof(certify[0]));
	ev_hex(o, "unique", 0, NULL);
	ev_hex(o, "nonce", 32, NULL);
	ev_hex(o, "attest", 0, NULL);
	ev_hex(o, "signature", 0, NULL);
	ev_hex(o, "creation_data", 0, NULL);
	o = ev_obj(ev, "proof_of_possession");
	ev_hex(o, "nonce", 32, NULL);
	ev_hex(o, "signature", 0, NULL);
	assert_string_equal(ev_str(ev, "certificate"), res->new_serial);
	o = ev_obj(ev, "handles");
	ev_keys(o, handles, sizeof(handles) / sizeof(handles[0]));
	assert_string_equal(ev_str(o, "idevid"), "0x81020000");
	assert_string_equal(ev_str(o, "idevid_cert_nv"), "0x01c90000");
	assert_string_equal(ev_str(ev, "station"), "test-station");
	assert_string_equal(ev_str(ev, "operator"), "service:test");
	json_object_put(ev);
}

/* provision -> renew -> renew -> decommission on one DUT. */
static void test_renew_then_decommission(void **state)
{
	kl_life_result res;
	kl_registry_device dev;
	X509 *old, *cur, *third;
	char old_serial[48], cur_serial[48], last_serial[48], out[PATH_MAX];

	(void)state;
	old = nv_idevid_cert(g.dut[0], "l0-before");
	serial_of(old, old_serial);

	g.locks = 0;
	renew("SN-L0", g.dut[0], &res);
	assert_string_equal(g.steps, "prove certify issue engrave revoke record ");
	check_renew_evidence("SN-L0", &res);
	assert_true(g.locks > 0);
	assert_int_equal(res.revoked, 1);
	assert_true(strlen(res.new_serial) >= 16);
	assert_string_not_equal(res.new_serial, old_serial);
	/* The TPM's NV holds the new certificate, which chains to the CA and
	 * is of another key; the persisted key signs for it. */
	cur = nv_idevid_cert(g.dut[0], "l0-after");
	serial_of(cur, cur_serial);
	assert_string_equal(cur_serial, res.new_serial);
	assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(old), X509_get0_pubkey(cur)), 1);
	check_idevid_signs(g.dut[0], "l0-after");
	/* It names the same TPM (hardwareModuleName, permanentIdentifier from
	 * the EK certificate, TCG device identity §8), in the TCG form. */
	kl_devid_tpm_ids ids_old, ids_cur;
	assert_int_equal(kl_devid_tpm_ids_from_cert(old, &ids_old), 0);
	assert_int_equal(kl_devid_tpm_ids_from_cert(cur, &ids_cur), 0);
	assert_string_equal(ids_cur.hw_serial, ids_old.hw_serial);
	assert_string_equal(ids_cur.permanent_id, ids_old.permanent_id);
	assert_true(kl_devid_hw_serial_ok((const unsigned char *)ids_cur.hw_serial,
	                                  strlen(ids_cur.hw_serial)));
	assert_int_equal(strlen(ids_cur.permanent_id), 64);
	/* The old one is revoked as superseded, on the CRL with that reason. */
	assert_int_equal(crl_reason(old_serial, "Superseded"), 4);
	assert_int_equal(crl_reason(res.new_serial, NULL), -1);
	struct count c = certs_of("SN-L0");
	assert_int_equal(c.valid, 2); /* the IAK's and the new IDevID's */
	assert_int_equal(c.reason_seen[4], 1);
	assert_true(audits("station.renew") >= 1);

	/* A second renewal makes yet another key. */
	renew("SN-L0", g.dut[0], &res);
	snprintf(last_serial, sizeof(last_serial), "%s", res.new_serial);
	third = nv_idevid_cert(g.dut[0], "l0-third");
	assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(third), X509_get0_pubkey(cur)), 1);
	assert_int_not_equal(EVP_PKEY_eq(X509_get0_pubkey(third), X509_get0_pubkey(old)), 1);
	X509_free(third);
	X509_free(cur);
	X509_free(old);
	assert_int_equal(certs_of("SN-L0").valid, 2);
	assert_int_equal(crl_reason(cur_serial, NULL), 4);

	/* Decommission. */
	int before = audits("station.decommission");
	decommission("SN-L0", g.dut[0], false, &res);
	assert_string_equal(g.steps, "prove revoke erase verify record ");
	assert_int_equal(res.revoked, 2);
	assert_true(res.tpm_cleared);
	assert_true(res.record_id > 0);
	assert_int_equal(audits("station.decommission"), before + 1);
	c = certs_of("SN-L0");
	assert_int_equal(c.valid, 0);
	assert_int_equal(c.reason_seen[5], 2);
	assert_int_equal(c.reason_seen[4], 2);
	assert_true(kl_registry_device_certs(g.reg, "SN-L0", all_in_crl, NULL) >= 4);
	assert_int_equal(crl_reason(last_serial, "Cessation Of Operation"), 5);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L0", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_DECOMMISSIONED);

	/* From the outside: no keys, no certificate indices. */
	snprintf(out, sizeof(out), "%s/l0-handles.txt", g.dir);
	const char *handles[] = { "tpm2_getcap", "handles-persistent", NULL };
	assert_int_equal(kl_dut_tool(g.floor, g.dut[0], out, handles), 0);
	assert_out(out, "0x81020000", false);
	assert_out(out, "0x81020001", false);
	const char *nvpub[] = { "tpm2_nvreadpublic", "0x01c90000", NULL };
	assert_int_not_equal(kl_dut_tool(g.floor, g.dut[0], out, nvpub), 0);
	const char *nvpub2[] = { "tpm2_nvreadpublic", "0x01c90010", NULL };
	assert_int_not_equal(kl_dut_tool(g.floor, g.dut[0], out, nvpub2), 0);
	/* The EK certificates are the vendor's and stay. */
	const char *ekpub[] = { "tpm2_nvreadpublic", "0x01c0000a", NULL };
	assert_int_equal(kl_dut_tool(g.floor, g.dut[0], out, ekpub), 0);

	/* The record: exported, verifies against the CA, says what it must. */
	char *json = NULL;
	assert_int_equal(kl_life_record_get(g.reg, "SN-L0", 0, &json), 0);
	assert_int_equal(kl_life_record_verify(json, g.pki.issuing), 0);
	assert_int_equal(kl_life_record_verify(json, NULL), 0);
	assert_non_null(strstr(json, "Purge: cryptographic erase"));
	assert_non_null(strstr(json, "endorsement primary seed"));
	assert_non_null(strstr(json, "\"result\": \"pass\""));
	assert_non_null(strstr(json, dev.ek_sha256));
	assert_non_null(strstr(json, old_serial));
	assert_non_null(strstr(json, last_serial));
	assert_non_null(strstr(json, "service:test"));
	assert_non_null(strstr(json, "test-station"));
	/* Against another issuer: refused. */
	assert_int_equal(kl_life_record_verify(json, g.pki.root), -KL_E_CRYPTO);
	/* Tampered: one fact changed. */
	char *t = strdup(json), *at = strstr(t, "\"result\": \"pass\"");
	assert_non_null(at);
	memcpy(at + strlen("\"result\": \""), "fail", 4);
	assert_int_equal(kl_life_record_verify(t, g.pki.issuing), -KL_E_CRYPTO);
	free(t);
	t = strdup(json);
	at = strstr(t, "SN-L0");
	at[4] = '9';
	assert_int_equal(kl_life_record_verify(t, NULL), -KL_E_CRYPTO);
	free(t);
	assert_int_equal(kl_life_record_verify("{\"record\": {}}", NULL), -KL_E_CRYPTO);
	free(json);
	assert_int_equal(kl_life_record_get(g.reg, "SN-L0", res.record_id + 1000, &json),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_life_record_get(g.reg, "SN-L3", 0, &json), -KL_E_NOTFOUND);

	/* The EK is deny-listed: the TPM is refused at the next provisioning. */
	expect_ek_denied(g.dut[0], "SN-NEW-0");
	/* And a decommissioned device is not decommissioned twice. */
	kl_life_job job = job_for("SN-L0", g.dut[0]);
	assert_int_equal(kl_life_decommission(&g.life, &job, false, &res), 0);
	assert_string_equal(res.reason, "device_state");

	kl_audit_report rep;
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

static void test_repurpose(void **state)
{
	kl_life_result res;
	kl_registry_device dev;
	kl_job_result jr;
	char *json = NULL;

	(void)state;
	decommission("SN-L1", g.dut[1], true, &res);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_REPURPOSED);
	assert_int_equal(certs_of("SN-L1").valid, 0);
	assert_int_equal(kl_life_record_get(g.reg, "SN-L1", res.record_id, &json), 0);
	assert_int_equal(kl_life_record_verify(json, g.pki.issuing), 0);
	assert_non_null(strstr(json, "repurposed"));
	free(json);

	/* Its next life, for another tenant. */
	kl_registry_item it = { .serial = "SN-L1", .line = 1 };
	assert_int_equal(kl_registry_tenant_add(g.reg, "globex", "officer:test"), 0);
	assert_int_equal(kl_registry_work_order_add(g.reg, "globex", "WO-G", -1, "officer:test"),
	                 0);
	assert_int_equal(kl_registry_preregister(g.reg, "globex", "WO-G", &it, 1, "officer:test"),
	                 1);
	kl_job job = { .serial = "SN-L1",
		       .link = g.dut[1]->tcti,
		       .ek_type = KL_EK__MAX,
		       .actor = "operator:test" };
	assert_int_equal(kl_engine_provision(&g.cfg, &job, &jr), 0);
	if (jr.rc != 0)
		fail_msg("reprovision: [%s] %s", jr.reason, jr.message);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
	assert_string_equal(dev.tenant, "globex");
	assert_int_equal(certs_of("SN-L1").valid, 2);
	check_idevid_signs(g.dut[1], "l1-globex");
	/* The old life's record is still there. */
	assert_int_equal(kl_life_record_get(g.reg, "SN-L1", 0, &json), 0);
	free(json);
}

static void test_lost(void **state)
{
	kl_life_result res;
	kl_registry_device dev;
	unsigned char ek[32];

	(void)state;
	assert_int_equal(kl_life_lost(&g.life, "SN-L2", -1, "service:test", &res), 0);
	if (res.rc != 0)
		fail_msg("lost: [%s] %s", res.reason, res.message);
	assert_int_equal(g.lock_depth, 0);
	assert_int_equal(res.revoked, 2);
	struct count c = certs_of("SN-L2");
	assert_int_equal(c.valid, 0);
	assert_int_equal(c.reason_seen[1], 2); /* keyCompromise */
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L2", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_LOST);
	assert_int_equal(kl_registry_ek_from_hex(dev.ek_sha256, ek), 0);
	assert_int_equal(kl_registry_deny_check(g.reg, ek, NULL), 1);
	assert_int_equal(audits("station.lost"), 1);
	expect_ek_denied(g.dut[2], "SN-NEW-2");
	/* Lost twice: the state machine says no. */
	assert_int_equal(kl_life_lost(&g.life, "SN-L2", -1, "service:test", &res), 0);
	assert_string_equal(res.reason, "device_state");
	assert_int_equal(audits("station.lost.refused"), 1);
}

/* What a refused operation must not change. */
struct snap {
	int64_t issued;
	kl_device_state state;
	int valid;
};

static struct snap snap_of(const char *serial)
{
	struct snap s;
	kl_registry_device dev;

	memset(&s, 0, sizeof(s));
	assert_int_equal(kl_store_cert_count(g.store, kl_ca_issuer_id(g.ca), "issued", &s.issued),
	                 0);
	assert_int_equal(kl_registry_device_get(g.reg, serial, &dev), 0);
	s.state = dev.state;
	s.valid = certs_of(serial).valid;
	return s;
}

static void test_refusals(void **state)
{
	kl_life_result res;
	kl_life_job job;
	char out[PATH_MAX];

	(void)state;
	/* SN-L3's serial with SN-L4's (provisioned) DUT on the link. */
	struct snap s3 = snap_of("SN-L3"), s4 = snap_of("SN-L4");
	int renew_refused = audits("station.renew.refused");
	int decom_refused = audits("station.decommission.refused");
	job = job_for("SN-L3", g.dut[4]);
	assert_int_equal(kl_life_renew(&g.life, &job, &res), 0);
	assert_string_equal(res.reason, "identity_unproven");
	assert_string_equal(res.step, "prove");
	assert_true(strlen(res.message) > 20);
	assert_int_equal(audits("station.renew.refused"), renew_refused + 1);
	assert_int_equal(kl_life_decommission(&g.life, &job, false, &res), 0);
	assert_string_equal(res.reason, "identity_unproven");
	assert_int_equal(audits("station.decommission.refused"), decom_refused + 1);
	assert_int_equal(g.lock_depth, 0);
	struct snap a3 = snap_of("SN-L3"), a4 = snap_of("SN-L4");
	assert_memory_equal(&s3, &a3, sizeof(s3));
	assert_memory_equal(&s4, &a4, sizeof(s4));
	/* Both DUTs keep their identity. */
	snprintf(out, sizeof(out), "%s/l4-handles.txt", g.dir);
	const char *handles[] = { "tpm2_getcap", "handles-persistent", NULL };
	assert_int_equal(kl_dut_tool(g.floor, g.dut[4], out, handles), 0);
	assert_out(out, "0x81020000", true);
	assert_out(out, "0x81020001", true);
	check_idevid_signs(g.dut[3], "l3-still");
	check_idevid_signs(g.dut[4], "l4-still");

	/* Unknown serial; a device never provisioned. */
	job = job_for("SN-NOPE", g.dut[3]);
	assert_int_equal(kl_life_renew(&g.life, &job, &res), 0);
	assert_string_equal(res.reason, "unknown_serial");
	assert_non_null(strstr(res.message, "SN-NOPE"));
	job = job_for("SN-IDLE", g.dut[3]);
	assert_int_equal(kl_life_renew(&g.life, &job, &res), 0);
	assert_string_equal(res.reason, "not_provisioned");
	assert_int_equal(kl_life_decommission(&g.life, &job, false, &res), 0);
	assert_string_equal(res.reason, "not_provisioned");
	assert_int_equal(kl_life_revoke_device(&g.life, "SN-IDLE", 1, "officer:test", &res), 0);
	assert_string_equal(res.reason, "not_provisioned");
	assert_int_equal(kl_life_lost(&g.life, "SN-NOPE", -1, "service:test", &res), 0);
	assert_string_equal(res.reason, "unknown_serial");
	/* Arguments. */
	job.link = NULL;
	assert_true(kl_life_renew(&g.life, &job, &res) < 0);
	assert_true(kl_life_lost(&g.life, "SN-L3", -1, NULL, &res) < 0);
	assert_int_equal(kl_life_revoke_device(&g.life, "SN-L3", 8, "officer:test", &res), 0);
	assert_string_equal(res.reason, "bad_reason");
	/* No record key: a decommission does nothing. */
	kl_life_config nokey = g.life;
	nokey.record_key = NULL;
	job = job_for("SN-L3", g.dut[3]);
	assert_int_equal(kl_life_decommission(&nokey, &job, false, &res), 0);
	assert_string_equal(res.reason, "no_record_key");
	a3 = snap_of("SN-L3");
	assert_memory_equal(&s3, &a3, sizeof(s3));
	assert_int_equal(g.lock_depth, 0);
}

static bool always(void *ctx)
{
	(void)ctx;
	return true;
}

static void test_cancel_and_revoke_device(void **state)
{
	kl_life_result res;
	kl_life_job job = job_for("SN-L3", g.dut[3]);
	kl_registry_device dev;
	struct snap s3 = snap_of("SN-L3");

	(void)state;
	/* A cancelled renewal stops after its first step, having issued
	 * nothing. */
	job.cancelled = always;
	assert_int_equal(kl_life_renew(&g.life, &job, &res), 0);
	assert_string_equal(res.reason, "aborted");
	assert_string_equal(g.steps, "prove ");
	struct snap a3 = snap_of("SN-L3");
	assert_memory_equal(&s3, &a3, sizeof(s3));

	/* The officer revokes SN-L4: every certificate, the given reason. */
	assert_int_equal(kl_life_revoke_device(&g.life, "SN-L4", 3, "officer:test", &res), 0);
	if (res.rc != 0)
		fail_msg("revoke: [%s] %s", res.reason, res.message);
	assert_int_equal(res.revoked, 2);
	struct count c = certs_of("SN-L4");
	assert_int_equal(c.valid, 0);
	assert_int_equal(c.reason_seen[3], 2); /* affiliationChanged */
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L4", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_REVOKED);
	/* A revoked device cannot be renewed, but it can be decommissioned:
	 * it proves itself with its revoked certificate. */
	job = job_for("SN-L4", g.dut[4]);
	assert_int_equal(kl_life_renew(&g.life, &job, &res), 0);
	assert_string_equal(res.reason, "device_state");
	decommission("SN-L4", g.dut[4], false, &res);
	assert_int_equal(res.revoked, 0);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L4", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_DECOMMISSIONED);
}

/* A renewal killed after each step (and inside the engraving: with no
 * IDevID persisted, and with no certificate index), then run again: every
 * time exactly one valid IDevID certificate remains, NV holds it, and the
 * TPM's key signs for it. */
static void test_renew_killed(void **state)
{
	static const char *const points[] = { "renew.prove",   "renew.certify",   "renew.issue",
		                              "renew.evicted", "renew.undefined", "renew.engrave",
		                              "renew.revoke",  "renew.record" };
	kl_audit_report rep;

	(void)state;
	for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
		kl_life_result res;
		char tag[64], sx[48];
		pid_t pid;
		int st;

		close_all();
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			kl_life_result r;
			kl_life_job job = { .serial = "SN-L5",
				            .link = g.dut[5]->tcti,
				            .actor = "service:test" };

			setenv("KEYLINE_FAILPOINT", points[i], 1);
			if (open_all() < 0)
				_exit(3);
			/* the failpoint kills the child inside: its result is never seen */
			KL_BEST_EFFORT(kl_life_renew(&g.life, &job, &r));
			fprintf(stderr, "child not killed: %s [%s] %s\n", r.step, r.reason,
			        r.message);
			_exit(4);
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st))
			fail_msg("not killed at %s (status %d)", points[i], st);
		assert_int_equal(open_all(), 0);
		renew("SN-L5", g.dut[5], &res);
		struct count c = certs_of("SN-L5");
		if (c.valid != 2)
			fail_msg("after %s: %d valid certificates", points[i], c.valid);
		snprintf(tag, sizeof(tag), "l5-%zu", i);
		X509 *x = nv_idevid_cert(g.dut[5], tag);
		serial_of(x, sx);
		assert_string_equal(sx, res.new_serial);
		X509_free(x);
		check_idevid_signs(g.dut[5], tag);
	}
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

/* A decommission killed after the revocation and after the erase, then run
 * again: it finishes, proving the device by its revoked IDevID certificate
 * or, its keys erased, by its EK. */
static void test_decommission_killed(void **state)
{
	static const char *const points[] = { "decommission.revoke", "decommission.erase" };
	kl_life_result res;
	kl_registry_device dev;
	char *json = NULL;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		pid_t pid;
		int st;

		close_all();
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			kl_life_result r;
			kl_life_job job = { .serial = "SN-L6",
				            .link = g.dut[6]->tcti,
				            .actor = "service:test" };

			setenv("KEYLINE_FAILPOINT", points[i], 1);
			if (open_all() < 0)
				_exit(3);
			/* the failpoint kills the child inside: its result is never seen */
			KL_BEST_EFFORT(kl_life_decommission(&g.life, &job, false, &r));
			fprintf(stderr, "child not killed: %s [%s] %s\n", r.step, r.reason,
			        r.message);
			_exit(4);
		}
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFSIGNALED(st))
			fail_msg("not killed at %s (status %d)", points[i], st);
		assert_int_equal(open_all(), 0);
		assert_int_equal(kl_registry_device_get(g.reg, "SN-L6", &dev), 0);
		assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
		assert_int_equal(certs_of("SN-L6").valid, 0);
	}
	/* Killed after the erase: the keys are gone, the EK proves it. */
	decommission("SN-L6", g.dut[6], false, &res);
	assert_int_equal(kl_registry_device_get(g.reg, "SN-L6", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_DECOMMISSIONED);
	assert_int_equal(kl_life_record_get(g.reg, "SN-L6", 0, &json), 0);
	assert_int_equal(kl_life_record_verify(json, g.pki.issuing), 0);
	assert_non_null(strstr(json, "ek-activation"));
	assert_non_null(strstr(json, "\"resumed\": true"));
	free(json);
	assert_int_equal(certs_of("SN-L6").reason_seen[5], 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_renew_then_decommission),
		cmocka_unit_test(test_repurpose),
		cmocka_unit_test(test_lost),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_cancel_and_revoke_device),
		cmocka_unit_test(test_renew_killed),
		cmocka_unit_test(test_decommission_killed),
	};

	return cmocka_run_group_tests_name("lifecycle", tests, setup, teardown);
}
