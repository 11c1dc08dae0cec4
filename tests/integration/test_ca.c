/* The CA pipeline on a real SQLite file, with OpenSSL as the outside judge.
 *
 * Keys here are software keys so that this test covers the CA's own logic;
 * test_ca_hsm runs the same pipeline with keys inside SoftHSM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>

#include "ca.h"
#include "ceremony.h"
#include "floor.h"
#include "kl_error.h"
#include "store.h"

#ifndef KL_PROFILES_DIR
#error "KL_PROFILES_DIR must be defined by the build"
#endif

/* A TPM's identifiers as the TCG device-identity rule derives them from an
 * EK certificate (devid.h; test_cert_profile derives them from real ones):
 * the iak and idevid profiles refuse a certificate without them. */
#define TEST_HW_SERIAL "49424D00:5C3F9A0B11D4E2F0A9B8C7D6E5F40312AB6C7D8E:05A1"
#define TEST_PERM_ID   "0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0"
#define TEST_TPM_IDS   .hw_serial = TEST_HW_SERIAL, .permanent_id = TEST_PERM_ID

struct env {
	kl_floor *floor;
	char dir[PATH_MAX];
	char db[PATH_MAX];
	char root_pem[PATH_MAX];
	char issuing_pem[PATH_MAX];
	EVP_PKEY *root_key;
	EVP_PKEY *issuing_key;
	X509 *root;
	X509 *issuing;
	kl_store *store;
	kl_ca *ca;
};

static EVP_PKEY *ec_key(const char *curve)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

static void write_pem(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
}

static void write_der(const char *path, const unsigned char *p, size_t n)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static int open_ca(struct env *e)
{
	kl_ca_config cfg = {
		.issuer_name = "issuing",
		.profiles_dir = KL_PROFILES_DIR,
		.crl_url = "http://pki.example.test/issuing.crl",
		.cps_url = "http://pki.example.test/cps.html",
		.ca_issuers_url = "http://pki.example.test/issuing.der",
		.actor = "test-officer",
	};

	return kl_ca_open(e->store, &cfg, e->issuing_key, &e->ca);
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	X509_NAME *rn = NULL, *in = NULL;
	unsigned char *der = NULL;
	int len;

	assert_non_null(e);
	assert_int_equal(kl_floor_new(&e->floor), 0);
	snprintf(e->dir, sizeof(e->dir), "%s", kl_floor_dir(e->floor));
	snprintf(e->db, sizeof(e->db), "%s/registry.db", e->dir);
	snprintf(e->root_pem, sizeof(e->root_pem), "%s/root.pem", e->dir);
	snprintf(e->issuing_pem, sizeof(e->issuing_pem), "%s/issuing.pem", e->dir);
	e->root_key = ec_key("P-384");
	e->issuing_key = ec_key("P-256");
	assert_non_null(e->root_key);
	assert_non_null(e->issuing_key);
	assert_int_equal(kl_ceremony_name("Test Root CA", "Keyline Test", "DE", &rn), 0);
	assert_int_equal(kl_ceremony_name("Test Issuing CA", "Keyline Test", "DE", &in), 0);
	assert_int_equal(kl_ceremony_root(e->root_key, rn, 3650, &e->root), 0);
	assert_int_equal(
	    kl_ceremony_issuing(e->root, e->root_key, in, e->issuing_key, 1825, &e->issuing), 0);
	X509_NAME_free(rn);
	X509_NAME_free(in);
	write_pem(e->root_pem, e->root);
	write_pem(e->issuing_pem, e->issuing);

	assert_int_equal(kl_store_open(e->db, &e->store), 0);
	len = i2d_X509(e->issuing, &der);
	assert_true(len > 0);
	assert_int_equal(
	    kl_store_issuer_add(e->store, "issuing", "pkcs11:object=test", der, (size_t)len, NULL),
	    0);
	OPENSSL_free(der);
	assert_int_equal(open_ca(e), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	kl_ca_free(e->ca);
	kl_store_free(e->store);
	X509_free(e->root);
	X509_free(e->issuing);
	EVP_PKEY_free(e->root_key);
	EVP_PKEY_free(e->issuing_key);
	kl_floor_free(e->floor);
	free(e);
	return 0;
}

static int run(struct env *e, const char *const argv[])
{
	return kl_floor_run(e->floor, "/dev/null", NULL, argv);
}

/* openssl verify -x509_strict, optionally with a CRL. */
static int verify(struct env *e, X509 *x, const char *crl_pem)
{
	char path[PATH_MAX];
	static int n;

	snprintf(path, sizeof(path), "%s/leaf-%d.pem", e->dir, n++);
	write_pem(path, x);
	if (crl_pem) {
		const char *argv[] = { "openssl",    "verify",       "-x509_strict", "-crl_check",
			               "-CRLfile",   crl_pem,        "-CAfile",      e->root_pem,
			               "-untrusted", e->issuing_pem, path,           NULL };
		return run(e, argv);
	}
	const char *argv[] = { "openssl",    "verify",       "-x509_strict", "-CAfile", e->root_pem,
		               "-untrusted", e->issuing_pem, path,           NULL };
	return run(e, argv);
}

static bool has_hwmn(X509 *x, const char *serial)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char oid[64];

		if (g->type != GEN_OTHERNAME)
			continue;
		OBJ_obj2txt(oid, sizeof(oid), g->d.otherName->type_id, 1);
		if (strcmp(oid, "1.3.6.1.5.5.7.8.4") != 0 ||
		    g->d.otherName->value->type != V_ASN1_SEQUENCE)
			continue;
		/* SEQUENCE { OID 2.23.133.1.2, OCTET STRING serial } */
		const ASN1_STRING *s = g->d.otherName->value->value.sequence;
		const unsigned char *p = ASN1_STRING_get0_data(s);
		static const unsigned char tpm20[] = { 0x06, 0x05, 0x67, 0x81, 0x05, 0x01, 0x02 };
		int len = ASN1_STRING_length(s);
		size_t sl = strlen(serial);

		if (len >= (int)(2 + sizeof(tpm20) + 2 + sl) && p[0] == 0x30 &&
		    memcmp(p + 2, tpm20, sizeof(tpm20)) == 0 && p[2 + sizeof(tpm20)] == 0x04 &&
		    p[3 + sizeof(tpm20)] == sl && memcmp(p + 4 + sizeof(tpm20), serial, sl) == 0)
			found = true;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

static void test_issue_idevid(void **state)
{
	struct env *e = *state;
	EVP_PKEY *dev = ec_key("P-256");
	X509 *x = NULL;
	char serial[48], sn[64];
	kl_cert_row row;
	kl_audit_report rep;

	kl_cert_request req = {
		.profile = "idevid", TEST_TPM_IDS, .pubkey = dev, .serial_number = "KL-0001"
	};
	if (kl_ca_issue(e->ca, &req, &x, serial) < 0)
		fail_msg("issue: %s", kl_error_detail());
	assert_int_equal(verify(e, x, NULL), 0);
	/* The returned object works like a parsed one. */
	assert_non_null(X509_get0_pubkey(x));
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), dev), 1);

	/* Contents an 802.1AR / TCG verifier looks for. */
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_serialNumber, sn,
	                                      sizeof(sn)) > 0);
	assert_string_equal(sn, "KL-0001");
	assert_true(has_hwmn(x, TEST_HW_SERIAL));
	assert_int_equal(X509_get_key_usage(x), X509v3_KU_DIGITAL_SIGNATURE);
	assert_int_equal(
	    X509_EXTENSION_get_critical(X509_get_ext(x, X509_get_ext_by_NID(x, NID_key_usage, -1))),
	    1);
	assert_true(X509_get_ext_by_NID(x, NID_crl_distribution_points, -1) >= 0);
	assert_true(X509_get_ext_by_NID(x, NID_certificate_policies, -1) >= 0);
	assert_non_null(X509_get0_subject_key_id(x));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
	                                       X509_get0_subject_key_id(e->issuing)),
	                 0);
	/* 802.1AR: an IDevID may never expire. */
	assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
	assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notAfter(x)), "99991231235959Z", 15);
	/* Serial: positive, >= 64 bits, <= 20 octets. */
	assert_true(strlen(serial) >= 16 && strlen(serial) <= 40);

	/* The registry row holds exactly this certificate. */
	assert_int_equal(kl_store_cert_get(e->store, kl_ca_issuer_id(e->ca), serial, &row), 0);
	assert_string_equal(row.state, "issued");
	assert_string_equal(row.device_serial, "KL-0001");
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);
	assert_int_equal(row.der_len, (size_t)len);
	assert_memory_equal(row.der, der, (size_t)len);
	OPENSSL_free(der);
	kl_cert_row_clear(&row);
	assert_int_equal(kl_store_audit_verify(e->store, &rep), 0);
	assert_true(rep.entries >= 1);
	X509_free(x);
	EVP_PKEY_free(dev);
}

static void test_issue_iak_tls_csr(void **state)
{
	struct env *e = *state;
	EVP_PKEY *k1 = ec_key("P-384");
	EVP_PKEY *k2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
	X509 *x = NULL;
	X509_REQ *csr = X509_REQ_new();
	X509_NAME *n = NULL;
	EXTENDED_KEY_USAGE *eku;
	char oid[64];

	kl_cert_request req = {
		.profile = "iak", TEST_TPM_IDS, .pubkey = k1, .serial_number = "KL-0002"
	};
	assert_int_equal(kl_ca_issue(e->ca, &req, &x, NULL), 0);
	assert_int_equal(verify(e, x, NULL), 0);
	eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	assert_non_null(eku);
	OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, 0), 1);
	assert_string_equal(oid, "2.23.133.8.3");
	EXTENDED_KEY_USAGE_free(eku);
	X509_free(x);
	x = NULL;

	/* A TLS certificate from a CSR, RSA-3072. */
	assert_int_equal(kl_ceremony_name("station-01.line.test", "Keyline Test", "DE", &n), 0);
	assert_int_equal(X509_REQ_set_subject_name(csr, n), 1);
	assert_int_equal(X509_REQ_set_pubkey(csr, k2), 1);
	assert_true(X509_REQ_sign(csr, k2, EVP_sha256()) > 0);
	assert_int_equal(kl_ca_issue_csr(e->ca, csr, "tls", "test", &x, NULL), 0);
	assert_int_equal(verify(e, x, NULL), 0);
	assert_true(X509_check_host(x, "station-01.line.test", 0, 0, NULL) == 1);
	X509_free(x);

	/* A CSR whose signature was made by another key is refused. */
	EVP_PKEY *other = ec_key("P-256");
	assert_true(X509_REQ_sign(csr, other, EVP_sha256()) > 0);
	x = NULL;
	assert_int_equal(kl_ca_issue_csr(e->ca, csr, "tls", "test", &x, NULL), -KL_E_CRYPTO);
	assert_non_null(strstr(kl_error_detail(), "CSR signature"));
	assert_null(x);
	EVP_PKEY_free(other);
	X509_NAME_free(n);
	X509_REQ_free(csr);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

static void test_lint_refuses_nothing_signed(void **state)
{
	struct env *e = *state;
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *ok = ec_key("P-256");
	int64_t issued_before, issued_after, rejected;
	X509 *x = NULL;

	assert_int_equal(
	    kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "issued", &issued_before), 0);
	kl_cert_request req = {
		.profile = "idevid", TEST_TPM_IDS, .pubkey = weak, .serial_number = "KL-W"
	};
	assert_int_equal(kl_ca_issue(e->ca, &req, &x, NULL), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "key.type"));
	assert_non_null(strstr(kl_error_detail(), "nothing signed"));
	assert_null(x);

	/* No serialNumber for a profile that requires one. */
	kl_cert_request req2 = {
		.profile = "idevid", TEST_TPM_IDS, .pubkey = ok, .cn = "no serial"
	};
	assert_int_equal(kl_ca_issue(e->ca, &req2, &x, NULL), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "subject.required"));

	/* An unknown profile names the ones that exist. */
	kl_cert_request req3 = { .profile = "nosuch", .pubkey = ok, .serial_number = "X" };
	assert_int_equal(kl_ca_issue(e->ca, &req3, &x, NULL), -KL_E_NOTFOUND);
	assert_non_null(strstr(kl_error_detail(), "idevid"));

	assert_int_equal(
	    kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "issued", &issued_after), 0);
	assert_int_equal(issued_after, issued_before);
	assert_int_equal(
	    kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "rejected", &rejected), 0);
	assert_int_equal(rejected, 2);
	EVP_PKEY_free(weak);
	EVP_PKEY_free(ok);
}

static void test_revoke_and_crl(void **state)
{
	struct env *e = *state;
	EVP_PKEY *dev = ec_key("P-256");
	X509 *good = NULL, *bad = NULL;
	char s_bad[48], crl_path[PATH_MAX], crl_pem[PATH_MAX];
	unsigned char *crl = NULL;
	size_t crl_len = 0;

	kl_cert_request req = {
		.profile = "idevid", TEST_TPM_IDS, .pubkey = dev, .serial_number = "KL-0100"
	};
	assert_int_equal(kl_ca_issue(e->ca, &req, &good, NULL), 0);
	req.serial_number = "KL-0101";
	assert_int_equal(kl_ca_issue(e->ca, &req, &bad, s_bad), 0);

	assert_int_equal(kl_ca_revoke(e->ca, s_bad, 1, "officer"), 0);
	/* Twice is refused, and says why. */
	assert_int_equal(kl_ca_revoke(e->ca, s_bad, 1, "officer"), -KL_E_STATE);
	assert_non_null(strstr(kl_error_detail(), "already revoked"));
	assert_int_equal(kl_ca_revoke(e->ca, "0123456789abcdef", 1, "officer"), -KL_E_NOTFOUND);
	assert_int_equal(kl_ca_revoke(e->ca, "xyz", 1, "officer"), -KL_E_INVALID);
	assert_int_equal(kl_crl_reason_from_name("superseded"), 4);
	assert_true(kl_crl_reason_from_name("bogus") < 0);

	assert_int_equal(kl_ca_crl(e->ca, 7 * 86400, "officer", &crl, &crl_len), 0);
	snprintf(crl_path, sizeof(crl_path), "%s/issuing.crl", e->dir);
	snprintf(crl_pem, sizeof(crl_pem), "%s/issuing.crl.pem", e->dir);
	write_der(crl_path, crl, crl_len);

	/* OpenSSL parses it and checks its signature with the issuing CA. */
	const char *conv[] = { "openssl", "crl",   "-inform", "DER",     "-in",          crl_path,
		               "-out",    crl_pem, "-verify", "-CAfile", e->issuing_pem, NULL };
	assert_int_equal(run(e, conv), 0);
	const unsigned char *p = crl;
	X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)crl_len);
	assert_non_null(c);
	assert_int_equal(X509_CRL_verify(c, X509_get0_pubkey(e->issuing)), 1);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 1);
	X509_REVOKED *rev = sk_X509_REVOKED_value(X509_CRL_get_REVOKED(c), 0);
	assert_int_equal(
	    ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(rev), X509_get0_serialNumber(bad)), 0);
	ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
	assert_non_null(reason);
	assert_int_equal(ASN1_ENUMERATED_get(reason), 1);
	ASN1_ENUMERATED_free(reason);
	ASN1_INTEGER *num = X509_CRL_get_ext_d2i(c, NID_crl_number, NULL, NULL);
	assert_non_null(num);
	assert_int_equal(ASN1_INTEGER_get(num), 1);
	ASN1_INTEGER_free(num);
	X509_CRL_free(c);
	free(crl);

	/* With the CRL: the revoked certificate fails, the other passes. The
	 * root has no CRL of its own, so check only the leaf (-crl_check). */
	assert_int_equal(verify(e, good, crl_pem), 0);
	assert_int_not_equal(verify(e, bad, crl_pem), 0);

	/* CRL numbers only grow. */
	assert_int_equal(kl_ca_crl(e->ca, 3600, "officer", &crl, &crl_len), 0);
	p = crl;
	c = d2i_X509_CRL(NULL, &p, (long)crl_len);
	num = X509_CRL_get_ext_d2i(c, NID_crl_number, NULL, NULL);
	assert_int_equal(ASN1_INTEGER_get(num), 2);
	ASN1_INTEGER_free(num);
	X509_CRL_free(c);
	free(crl);
	X509_free(good);
	X509_free(bad);
	EVP_PKEY_free(dev);
}

/* A real process is killed with SIGKILL right after its PENDING commit; the
 * next start finds the row, counts it as possibly issued and puts it on the
 * CRL. */
static void test_killed_between_pending_and_issued(void **state)
{
	struct env *e = *state;
	int64_t pending = -1, abandoned = -1;
	pid_t pid;
	int st;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kl_store *s = NULL;
		kl_ca *ca = NULL;
		EVP_PKEY *dev = ec_key("P-256");
		kl_ca_config cfg = { .issuer_name = "issuing", .profiles_dir = KL_PROFILES_DIR };
		X509 *x = NULL;

		setenv("KEYLINE_FAILPOINT", "ca.after_pending", 1);
		if (kl_store_open(e->db, &s) < 0 || kl_ca_open(s, &cfg, e->issuing_key, &ca) < 0)
			_exit(3);
		kl_cert_request req = {
			.profile = "idevid", TEST_TPM_IDS, .pubkey = dev, .serial_number = "KL-K"
		};
		/* the failpoint kills the child inside: its result is never seen */
		KL_BEST_EFFORT(kl_ca_issue(ca, &req, &x, NULL));
		_exit(4); /* not reached: the failpoint kills us */
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGKILL);

	assert_int_equal(kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "pending", &pending),
	                 0);
	assert_int_equal(pending, 1);

	/* Restart: reconcile. */
	kl_ca_free(e->ca);
	e->ca = NULL;
	assert_int_equal(open_ca(e), 0);
	assert_int_equal(kl_ca_reconciled(e->ca), 1);
	assert_int_equal(kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "pending", &pending),
	                 0);
	assert_int_equal(pending, 0);
	assert_int_equal(
	    kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), "abandoned", &abandoned), 0);
	assert_int_equal(abandoned, 1);

	/* The abandoned serial is on the next CRL. */
	unsigned char *crl = NULL;
	size_t len = 0;
	assert_int_equal(kl_ca_crl(e->ca, 3600, "officer", &crl, &len), 0);
	const unsigned char *p = crl;
	X509_CRL *c = d2i_X509_CRL(NULL, &p, (long)len);
	assert_non_null(c);
	assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c)), 2);
	X509_CRL_free(c);
	free(crl);
}

static void test_audit_tamper(void **state)
{
	struct env *e = *state;
	kl_audit_report rep;
	sqlite3 *db;

	assert_int_equal(kl_store_audit_verify(e->store, &rep), 0);
	assert_true(rep.entries >= 5);
	int64_t n = rep.entries;

	/* Another connection edits one entry's detail. */
	assert_int_equal(sqlite3_open(e->db, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "UPDATE audit SET detail = '{}' WHERE seq = 2", NULL, NULL, NULL),
	    SQLITE_OK);
	assert_int_equal(kl_store_audit_verify(e->store, &rep), -KL_E_CRYPTO);
	assert_int_equal(rep.first_bad, 2);
	assert_non_null(strstr(kl_error_detail(), "altered"));

	/* Deleting the last entry is found through the head record. */
	assert_int_equal(sqlite3_exec(db, "DELETE FROM audit WHERE seq = 2", NULL, NULL, NULL),
	                 SQLITE_OK);
	assert_int_equal(kl_store_audit_verify(e->store, &rep), -KL_E_CRYPTO);
	assert_non_null(strstr(kl_error_detail(), "missing"));
	char sql[128];
	snprintf(sql, sizeof(sql),
	         "DELETE FROM audit WHERE seq >= 2; DELETE FROM audit WHERE seq = %lld",
	         (long long)n);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(kl_store_audit_verify(e->store, &rep), -KL_E_CRYPTO);
	assert_non_null(strstr(kl_error_detail(), "deleted"));
	sqlite3_close(db);
}

/* Runs one SQL statement on another connection to the store's file. */
static void sql_on(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* Incremental verification: after a good walk only the new entries are
 * hashed again; a change at or after the checkpoint is still found; an edit
 * before it shows in a full walk, which also leaves the checkpoint alone
 * when it fails. */
static void test_audit_checkpoint(void **state)
{
	struct env *e = *state;
	kl_audit_report rep;
	char sql[256], path[PATH_MAX];
	kl_store *store;
	int64_t n;

	/* A store of its own: the edits below break its chain for good. */
	snprintf(path, sizeof(path), "%s.checkpoint", e->db);
	assert_int_equal(kl_store_open(path, &store), 0);

	assert_int_equal(kl_store_audit(store, "t", "test.one", "{\"k\":1}"), 0);
	assert_int_equal(kl_store_audit(store, "t", "test.two", "{\"k\":2}"), 0);
	assert_int_equal(kl_store_audit_verify_since(store, true, &rep), 0);
	assert_int_equal(rep.from, 0);
	assert_int_equal(rep.checked, rep.entries);
	assert_true(rep.saved);
	n = rep.entries;
	assert_true(n >= 2);

	/* Nothing new: nothing hashed, the count still whole. */
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), 0);
	assert_int_equal(rep.from, n);
	assert_int_equal(rep.checked, 0);
	assert_int_equal(rep.entries, n);

	/* Three new entries: only they are hashed. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(kl_store_audit(store, "t", "test.more", "{}"), 0);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), 0);
	assert_int_equal(rep.from, n);
	assert_int_equal(rep.checked, 3);
	assert_int_equal(rep.entries, n + 3);
	n += 3;

	/* An old entry edited: not read again by the incremental walk, found
	 * by a full one, which does not move the checkpoint. */
	snprintf(sql, sizeof(sql), "UPDATE audit SET detail = '{\"k\":9}' WHERE seq = %lld",
	         (long long)n - 4);
	sql_on(path, sql);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), 0);
	assert_int_equal(rep.checked, 0);
	assert_int_equal(kl_store_audit_verify_since(store, true, &rep), -KL_E_CRYPTO);
	assert_int_equal(rep.first_bad, n - 4);
	assert_non_null(strstr(kl_error_detail(), "altered"));
	assert_int_equal(kl_store_audit_verify(store, &rep), -KL_E_CRYPTO);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), 0);
	assert_int_equal(rep.from, n);
	snprintf(sql, sizeof(sql), "UPDATE audit SET detail = '{\"k\":1}' WHERE seq = %lld",
	         (long long)n - 4);
	sql_on(path, sql);
	assert_int_equal(kl_store_audit_verify_since(store, true, &rep), 0);

	/* A new entry edited after the checkpoint: found by the incremental
	 * walk. */
	assert_int_equal(kl_store_audit(store, "t", "test.new", "{\"k\":3}"), 0);
	assert_int_equal(kl_store_audit(store, "t", "test.new", "{\"k\":4}"), 0);
	snprintf(sql, sizeof(sql), "UPDATE audit SET detail = '{}' WHERE seq = %lld",
	         (long long)n + 1);
	sql_on(path, sql);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), -KL_E_CRYPTO);
	assert_int_equal(rep.first_bad, n + 1);
	assert_int_equal(rep.from, n);

	/* The checkpoint's own entry replaced, or gone: found too. */
	snprintf(sql, sizeof(sql), "UPDATE audit SET hash = zeroblob(32) WHERE seq = %lld",
	         (long long)n);
	sql_on(path, sql);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), -KL_E_CRYPTO);
	assert_int_equal(rep.first_bad, n);
	assert_non_null(strstr(kl_error_detail(), "changed"));
	snprintf(sql, sizeof(sql), "DELETE FROM audit WHERE seq >= %lld", (long long)n);
	sql_on(path, sql);
	assert_int_equal(kl_store_audit_verify_since(store, false, &rep), -KL_E_CRYPTO);
	assert_int_equal(rep.first_bad, n);
	assert_non_null(strstr(kl_error_detail(), "missing"));
	kl_store_free(store);
}

static void test_batch_mixed(void **state)
{
	struct env *e = *state;
	EVP_PKEY *ok = ec_key("P-256");
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	kl_issue_result res[3];
	kl_cert_row row;

	kl_cert_request reqs[3] = {
		{ .profile = "idevid", TEST_TPM_IDS, .pubkey = ok, .serial_number = "KL-B1" },
		{ .profile = "idevid", TEST_TPM_IDS, .pubkey = weak, .serial_number = "KL-B2" },
		{ .profile = "iak", TEST_TPM_IDS, .pubkey = ok, .serial_number = "KL-B3" },
	};
	assert_int_equal(kl_ca_issue_batch(e->ca, reqs, 3, res), 0);
	assert_int_equal(res[0].rc, 0);
	assert_non_null(res[0].cert);
	assert_int_equal(res[1].rc, -KL_E_INVALID);
	assert_null(res[1].cert);
	assert_non_null(strstr(res[1].error, "key.type"));
	assert_int_equal(res[2].rc, 0);
	assert_int_equal(verify(e, res[0].cert, NULL), 0);
	assert_int_equal(verify(e, res[2].cert, NULL), 0);
	/* The refused one burned its serial: REJECTED, never signed. */
	assert_int_equal(kl_store_cert_get(e->store, kl_ca_issuer_id(e->ca), res[1].serial, &row),
	                 0);
	assert_string_equal(row.state, "rejected");
	assert_null(row.der);
	kl_cert_row_clear(&row);
	assert_int_equal(kl_ca_issue_batch(e->ca, reqs, 0, res), -KL_E_INVALID);
	assert_non_null(res[0].der);
	X509_free(res[0].cert);
	X509_free(res[2].cert);
	OPENSSL_free(res[0].der);
	OPENSSL_free(res[2].der);
	EVP_PKEY_free(ok);
	EVP_PKEY_free(weak);
}

/* An outer commit after an inner failure rolls back and frees the
 * connection for the next transaction. */
static void test_store_inner_rollback(void **state)
{
	struct env *e = *state;

	assert_int_equal(kl_store_begin(e->store), 0);
	assert_int_equal(kl_store_begin(e->store), 0);
	assert_int_equal(kl_store_audit(e->store, "t", "inner", "{}"), 0);
	kl_store_rollback(e->store);
	assert_int_equal(kl_store_commit(e->store), -KL_E_DB);
	assert_non_null(strstr(kl_error_detail(), "rolled back by an inner step"));
	/* The next transaction starts and commits normally. */
	assert_int_equal(kl_store_begin(e->store), 0);
	assert_int_equal(kl_store_audit(e->store, "t", "after", "{}"), 0);
	assert_int_equal(kl_store_commit(e->store), 0);
}

/* A pending row is abandoned at start-up only when the process that
 * reserved it is gone: not while it lives (another station or command may be
 * signing right now), not for another host's process until an hour passed. */
static void test_reconcile_only_dead_owners(void **state)
{
	struct env *e = *state;
	unsigned char tbs[8] = { 0x30, 0x06, 0, 0, 0, 0, 0, 0 };
	kl_cert_pending p = { .issuer_id = kl_ca_issuer_id(e->ca),
		              .serial = "0a0b0c0d0e0f1011",
		              .profile = "idevid",
		              .subject = "test",
		              .tbs = tbs,
		              .tbs_len = sizeof(tbs),
		              .not_after = 0 };
	kl_cert_row row;
	sqlite3 *db;

	assert_int_equal(kl_store_cert_reserve(e->store, &p), 0);
	/* Ours, and we are alive. */
	kl_ca_free(e->ca);
	assert_int_equal(open_ca(e), 0);
	assert_int_equal(kl_ca_reconciled(e->ca), 0);
	/* Another host's, fresh: left alone. */
	assert_int_equal(sqlite3_open(e->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "UPDATE ca_cert SET owner = 'station-elsewhere:1' "
	                              "WHERE serial = '0a0b0c0d0e0f1011'",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	kl_ca_free(e->ca);
	assert_int_equal(open_ca(e), 0);
	assert_int_equal(kl_ca_reconciled(e->ca), 0);
	/* Another host's, two hours old: abandoned onto the CRL. */
	assert_int_equal(sqlite3_exec(db,
	                              "UPDATE ca_cert SET created = created - 7200 "
	                              "WHERE serial = '0a0b0c0d0e0f1011'",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	kl_ca_free(e->ca);
	assert_int_equal(open_ca(e), 0);
	assert_int_equal(kl_ca_reconciled(e->ca), 1);
	assert_int_equal(kl_store_cert_get(e->store, kl_ca_issuer_id(e->ca), p.serial, &row), 0);
	assert_string_equal(row.state, "abandoned");
	assert_true(row.revoked > 0);
	kl_cert_row_clear(&row);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 100,000 issuances: no serial repeats, in what the CA returned or in what
 * it stored; and every one is at least 64 bits. */
static void test_hundred_thousand_serials(void **state)
{
	struct env *e = *state;
	enum { TOTAL = 100000, BATCH = 1000 };
	EVP_PKEY *dev = ec_key("P-256");
	kl_cert_request reqs[BATCH];
	kl_issue_result *res = calloc(BATCH, sizeof(*res));
	char **serials = calloc(TOTAL, sizeof(*serials));
	int64_t before = 0, after = 0;
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_non_null(res);
	assert_non_null(serials);
	assert_int_equal(kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), NULL, &before), 0);
	for (int i = 0; i < BATCH; i++)
		reqs[i] = (kl_cert_request){ .profile = "idevid",
			                     TEST_TPM_IDS,
			                     .pubkey = dev,
			                     .serial_number = "KL-MASS",
			                     .der_only = true };
	for (int done = 0; done < TOTAL; done += BATCH) {
		assert_int_equal(kl_ca_issue_batch(e->ca, reqs, BATCH, res), 0);
		for (int i = 0; i < BATCH; i++) {
			assert_int_equal(res[i].rc, 0);
			assert_true(strlen(res[i].serial) >= 16);
			serials[done + i] = strdup(res[i].serial);
			assert_null(res[i].cert);
			assert_non_null(res[i].der);
			OPENSSL_free(res[i].der);
		}
	}
	qsort(serials, TOTAL, sizeof(*serials), cmp_str);
	for (int i = 1; i < TOTAL; i++)
		assert_string_not_equal(serials[i - 1], serials[i]);
	assert_int_equal(kl_store_cert_count(e->store, kl_ca_issuer_id(e->ca), NULL, &after), 0);
	assert_int_equal(after - before, TOTAL);

	/* The database agrees: every stored serial is distinct. */
	assert_int_equal(sqlite3_open(e->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
	                                    "SELECT count(*) - count(DISTINCT serial) FROM ca_cert",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(st, 0), 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	for (int i = 0; i < TOTAL; i++)
		free(serials[i]);
	free(serials);
	free(res);
	EVP_PKEY_free(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_idevid),
		cmocka_unit_test(test_issue_iak_tls_csr),
		cmocka_unit_test(test_lint_refuses_nothing_signed),
		cmocka_unit_test(test_revoke_and_crl),
		cmocka_unit_test(test_killed_between_pending_and_issued),
		cmocka_unit_test(test_batch_mixed),
		cmocka_unit_test(test_store_inner_rollback),
		cmocka_unit_test(test_reconcile_only_dead_owners),
		cmocka_unit_test(test_audit_checkpoint),
		cmocka_unit_test(test_audit_tamper),
		cmocka_unit_test(test_hundred_thousand_serials),
	};

	return cmocka_run_group_tests_name("ca", tests, setup, teardown);
}
