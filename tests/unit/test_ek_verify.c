/* station/proof/trust.c without a TPM: the EK certificate and EK checks of
 * steps 3 and 4 on certificates and keys made here with OpenSSL.
 *
 *   1. an EK certificate of a trusted root, with the EK EKU and the TPM's
 *      manufacturer in its SAN, passes; the EK of its key matches and its
 *      hash is the SHA-256 of the SubjectPublicKeyInfo;
 *   2. the manufacturer is compared without regard to case, and another
 *      one is refused with both named;
 *   3. no EK EKU, an untrusted issuer, bytes that are no certificate and a
 *      key that is not the certificate's each get their verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "kl_error.h"
#include "trust.h"

static struct {
	char dir[64], root_path[96];
	EVP_PKEY *root_key, *other_key, *ek, *ek2;
	X509 *root, *other;
	kl_trust *trust;
} fx;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

static X509 *new_cert(const char *cn, EVP_PKEY *key, X509 *issuer)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	static long serial = 1;

	assert_non_null(x);
	assert_non_null(n);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
	assert_int_equal(
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
	    1);
	assert_int_equal(X509_set_subject_name(x, n), 1);
	assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n), 1);
	X509_NAME_free(n);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	return x;
}

static X509 *new_root(const char *cn, EVP_PKEY *key)
{
	X509 *x = new_cert(cn, key, NULL);

	add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

/* An EK certificate of ek by issuer: the EK EKU when eku, and the TPM
 * manufacturer attribute in a directoryName SAN when manufacturer. */
static size_t ek_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *ek, int eku,
                      const char *manufacturer, unsigned char **der)
{
	X509 *x = new_cert("EK", ek, issuer);
	int len;

	add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
	add_ext(x, issuer, NID_key_usage, "critical,keyEncipherment");
	if (eku)
		add_ext(x, issuer, NID_ext_key_usage, "2.23.133.8.1");
	if (manufacturer) {
		GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
		GENERAL_NAME *g = GENERAL_NAME_new();
		X509_NAME *dn = X509_NAME_new();
		ASN1_OBJECT *oid = OBJ_txt2obj("2.23.133.2.1", 1);

		assert_non_null(gens);
		assert_non_null(g);
		assert_non_null(dn);
		assert_non_null(oid);
		assert_int_equal(X509_NAME_add_entry_by_OBJ(dn, oid, MBSTRING_ASC,
		                                            (const unsigned char *)manufacturer, -1,
		                                            -1, 0),
		                 1);
		GENERAL_NAME_set0_value(g, GEN_DIRNAME, dn);
		assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
		assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, 0), 1);
		GENERAL_NAMES_free(gens);
		ASN1_OBJECT_free(oid);
	}
	assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
	*der = NULL;
	len = i2d_X509(x, der);
	assert_true(len > 0);
	X509_free(x);
	return (size_t)len;
}

static int setup(void **state)
{
	FILE *f;

	(void)state;
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_ek_verify.XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	fx.root_key = EVP_EC_gen("P-384");
	fx.other_key = EVP_EC_gen("P-384");
	fx.ek = EVP_EC_gen("P-256");
	fx.ek2 = EVP_EC_gen("P-256");
	if (!fx.root_key || !fx.other_key || !fx.ek || !fx.ek2)
		return -1;
	fx.root = new_root("Test EK Root", fx.root_key);
	fx.other = new_root("Other EK Root", fx.other_key);
	snprintf(fx.root_path, sizeof(fx.root_path), "%s/root.pem", fx.dir);
	f = fopen(fx.root_path, "w");
	if (!f || PEM_write_X509(f, fx.root) != 1)
		return -1;
	fclose(f);
	return kl_trust_load(fx.dir, &fx.trust) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	kl_trust_free(fx.trust);
	unlink(fx.root_path);
	rmdir(fx.dir);
	X509_free(fx.root);
	X509_free(fx.other);
	EVP_PKEY_free(fx.root_key);
	EVP_PKEY_free(fx.other_key);
	EVP_PKEY_free(fx.ek);
	EVP_PKEY_free(fx.ek2);
	return 0;
}

/* A report as the flow hands it over: type and the bytes read from NV. */
static kl_ek_report report(unsigned char *der, size_t len)
{
	kl_ek_report rep;

	memset(&rep, 0, sizeof(rep));
	rep.type = KL_EK_P256;
	rep.cert_der = der;
	rep.cert_len = len;
	return rep;
}

/* 1. */
static void test_good(void **state)
{
	unsigned char *der = NULL, *spki = NULL, want[32];
	size_t len = ek_cert(fx.root, fx.root_key, fx.ek, 1, "id:49424D00", &der);
	kl_ek_report rep = report(der, len);
	X509 *cert = NULL;
	int n;

	(void)state;
	assert_int_equal(kl_trust_roots(fx.trust), 1);
	assert_int_equal(strlen(kl_trust_version(fx.trust)), 16);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	if (rep.verdict != KL_EK_OK)
		fail_msg("%s: %s", kl_ek_verdict_name(rep.verdict), rep.reason);
	assert_non_null(strstr(rep.issuer, "Test EK Root"));
	assert_string_equal(rep.manufacturer, "id:49424D00");

	assert_int_equal(kl_ek_report_cert(&rep, &cert), 0);
	assert_int_equal(kl_ek_key_verify(&rep, cert, fx.ek), 0);
	assert_int_equal(rep.verdict, KL_EK_OK);
	n = i2d_PUBKEY(fx.ek, &spki);
	assert_true(n > 0);
	assert_int_equal(EVP_Digest(spki, (size_t)n, want, NULL, EVP_sha256(), NULL), 1);
	assert_memory_equal(rep.ek_sha256, want, 32);
	OPENSSL_free(spki);
	X509_free(cert);
	kl_ek_report_clear(&rep);
}

/* 2. */
static void test_manufacturer(void **state)
{
	unsigned char *der = NULL;
	size_t len = ek_cert(fx.root, fx.root_key, fx.ek, 1, "id:49424d00", &der);
	kl_ek_report rep = report(der, len);

	(void)state;
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_OK);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x414d4400, "AMD", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_cert_vendor_mismatch");
	assert_non_null(strstr(rep.reason, "'id:49424d00'"));
	assert_non_null(strstr(rep.reason, "id:414D4400 (AMD)"));
	kl_ek_report_clear(&rep);

	len = ek_cert(fx.root, fx.root_key, fx.ek, 1, NULL, &der);
	rep = report(der, len);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	assert_non_null(strstr(rep.reason, "'none'"));
	kl_ek_report_clear(&rep);
}

/* 3. */
static void test_refusals(void **state)
{
	unsigned char *der = NULL, junk[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
	size_t len;
	kl_ek_report rep;
	X509 *cert = NULL;

	(void)state;
	len = ek_cert(fx.root, fx.root_key, fx.ek, 0, "id:49424D00", &der);
	rep = report(der, len);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_NOT_EK_CERT);
	kl_ek_report_clear(&rep);

	len = ek_cert(fx.other, fx.other_key, fx.ek, 1, "id:49424D00", &der);
	rep = report(der, len);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	assert_non_null(strstr(rep.reason, "Other EK Root"));

	/* the certificate's key against another EK */
	assert_int_equal(kl_ek_report_cert(&rep, &cert), 0);
	assert_int_equal(kl_ek_key_verify(&rep, cert, fx.ek2), 0);
	assert_int_equal(rep.verdict, KL_EK_MISMATCH);
	assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_mismatch");
	for (size_t i = 0; i < sizeof(rep.ek_sha256); i++)
		assert_int_equal(rep.ek_sha256[i], 0);
	X509_free(cert);
	kl_ek_report_clear(&rep);

	der = malloc(sizeof(junk));
	assert_non_null(der);
	memcpy(der, junk, sizeof(junk));
	rep = report(der, sizeof(junk));
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_BAD_CERT);
	cert = NULL;
	assert_int_equal(kl_ek_report_cert(&rep, &cert), -KL_E_INVALID);
	assert_null(cert);
	kl_ek_report_clear(&rep);
}

/* A report nobody checked, or whose check failed part-way, is a refusal:
 * only a check that ran to its end says OK. */
static void test_default_refuses(void **state)
{
	unsigned char *der = NULL;
	size_t len = ek_cert(fx.root, fx.root_key, fx.ek, 1, "id:49424D00", &der);
	kl_ek_report zero, rep;
	X509 *cert = NULL;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	assert_int_not_equal(zero.verdict, KL_EK_OK);
	assert_string_not_equal(kl_ek_verdict_name(zero.verdict), "ok");

	/* The certificate passes; its key is not the TPM's: the earlier OK
	 * must not survive the second check. */
	rep = report(der, len);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_OK);
	assert_int_equal(kl_ek_report_cert(&rep, &cert), 0);
	assert_int_equal(kl_ek_key_verify(&rep, cert, fx.ek2), 0);
	assert_int_equal(rep.verdict, KL_EK_MISMATCH);
	X509_free(cert);
	kl_ek_report_clear(&rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_manufacturer),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_default_refuses),
	};

	return cmocka_run_group_tests_name("ek_verify", tests, setup, teardown);
}
