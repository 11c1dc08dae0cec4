/* station/proof/trust.c without a TPM: the EK certificate and EK checks of
 * steps 3 and 4 on certificates and keys made here with OpenSSL.
 *
 *   1. an EK certificate of a trusted root, with the EK EKU and the TPM's
 *      manufacturer in its SAN, passes; the EK of its key matches and its
 *      hash is the SHA-256 of the SubjectPublicKeyInfo;
 *   2. the manufacturer is compared without regard to case, and another
 *      one is refused with both named;
 *   3. no EK EKU, an untrusted issuer, bytes that are no certificate and a
 *      key that is not the certificate's each get their verdict;
 *   4. an intermediate from the TPM's EK chain indices completes a chain to
 *      a root of the bundle, alone or concatenated, padded or not;
 *   5. a forged intermediate, a loop, a self-issued "root" that is not in
 *      the bundle, bytes that are no certificate and too many certificates
 *      in those indices are refused;
 *   6. a vendor quirk explains the one deviation it names for the root it
 *      names, and relaxes nothing else; a malformed table is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "kl_error.h"
#include "kl_hex.h"
#include "quirks.h"
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

/* A CA certificate named cn, issued under the name issuer_cn and signed
 * with signer: the issuer name and the signing key chosen apart, to build
 * forged and looping chains. */
static X509 *ca_cert(const char *cn, EVP_PKEY *key, const char *issuer_cn, EVP_PKEY *signer)
{
	X509 *x = new_cert(cn, key, NULL);
	X509_NAME *in = X509_NAME_new();

	assert_non_null(in);
	assert_int_equal(X509_NAME_add_entry_by_txt(in, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)issuer_cn, -1, -1, 0),
	                 1);
	assert_int_equal(X509_set_issuer_name(x, in), 1);
	X509_NAME_free(in);
	add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	return x;
}

static size_t der_of(X509 *x, unsigned char **der)
{
	int len;

	*der = NULL;
	len = i2d_X509(x, der);
	assert_true(len > 0);
	return (size_t)len;
}

/* Appends the DER of x (and pad bytes of padding) to an NV buffer. */
static void nv_append(unsigned char **buf, size_t *len, X509 *x, size_t pad)
{
	unsigned char *der = NULL;
	size_t n = der_of(x, &der);
	unsigned char *grown = realloc(*buf, *len + n + pad);

	assert_non_null(grown);
	memcpy(grown + *len, der, n);
	memset(grown + *len + n, 0xff, pad);
	*buf = grown;
	*len += n + pad;
	OPENSSL_free(der);
}

/* rep with one EK chain index holding the given certificates. */
static void nv_add(kl_ek_report *rep, uint32_t index, X509 *const *certs, size_t n, size_t pad)
{
	unsigned char *buf = NULL;
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		nv_append(&buf, &len, certs[i], i + 1 == n ? pad : 0);
	assert_int_equal(kl_ek_report_add_nv(rep, index, buf, len), 0);
}

/* The EK certificate's bytes as a report owns them. */
static kl_ek_report report_of(X509 *issuer, EVP_PKEY *issuer_key, const char *manufacturer)
{
	unsigned char *der = NULL;
	size_t len = ek_cert(issuer, issuer_key, fx.ek, 1, manufacturer, &der);
	unsigned char *own = malloc(len);

	assert_non_null(own);
	memcpy(own, der, len);
	OPENSSL_free(der);
	return report(own, len);
}

/* 4. An intermediate that is only in the TPM's NV completes the chain to a
 * root of the bundle; it is recorded as such; trailing padding and a
 * second certificate in the same index are fine. */
static void test_nv_chain(void **state)
{
	EVP_PKEY *ik = EVP_EC_gen("P-256"), *ik2 = EVP_EC_gen("P-256");
	X509 *ica = ca_cert("Test NV CA", ik, "Test EK Root", fx.root_key);
	X509 *ica2 = ca_cert("Test NV CA 2", ik2, "Test NV CA", ik);
	kl_ek_report rep;

	(void)state;
	/* Without it: no chain. */
	rep = report_of(ica, ik, "id:49424D00");
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	assert_non_null(strstr(rep.reason, "0 certificate(s) from the TPM"));
	/* With it in NV 0x01c00100. */
	nv_add(&rep, 0x01c00100, &ica, 1, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	if (rep.verdict != KL_EK_OK)
		fail_msg("%s: %s", kl_ek_verdict_name(rep.verdict), rep.reason);
	assert_int_equal(rep.chain_len, 3);
	assert_non_null(strstr(rep.chain[0].subject, "EK"));
	assert_int_equal(rep.chain[0].nv_index, 0);
	assert_non_null(strstr(rep.chain[1].subject, "Test NV CA"));
	assert_int_equal(rep.chain[1].nv_index, 0x01c00100);
	assert_false(rep.chain[1].from_bundle);
	assert_non_null(strstr(rep.chain[2].subject, "Test EK Root"));
	assert_true(rep.chain[2].from_bundle);
	assert_string_equal(rep.quirk, "");
	kl_ek_report_clear(&rep);

	/* Two levels, concatenated in one index with 0xff padding after. */
	rep = report_of(ica2, ik2, "id:49424D00");
	X509 *both[] = { ica2, ica };
	nv_add(&rep, 0x01c00100, both, 2, 37);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	if (rep.verdict != KL_EK_OK)
		fail_msg("%s: %s", kl_ek_verdict_name(rep.verdict), rep.reason);
	assert_int_equal(rep.chain_len, 4);
	kl_ek_report_clear(&rep);

	/* The same, one certificate per index. */
	rep = report_of(ica2, ik2, "id:49424D00");
	nv_add(&rep, 0x01c00100, &ica, 1, 0);
	nv_add(&rep, 0x01c00101, &ica2, 1, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_OK);
	assert_int_equal(rep.chain[1].nv_index, 0x01c00101);
	assert_int_equal(rep.chain[2].nv_index, 0x01c00100);
	kl_ek_report_clear(&rep);
	X509_free(ica);
	X509_free(ica2);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(ik2);
}

/* 5. What a DUT may put in its EK chain indices instead. */
static void test_nv_chain_hostile(void **state)
{
	EVP_PKEY *ik = EVP_EC_gen("P-256"), *fk = EVP_EC_gen("P-256"), *ak = EVP_EC_gen("P-256"),
	         *bk = EVP_EC_gen("P-256");
	/* Forged: the genuine intermediate's name, another key, "signed by"
	 * the root's name with a key that is not the root's. */
	X509 *forged = ca_cert("Test NV CA", fk, "Test EK Root", fk);
	/* A loop: A is issued by B and B by A. */
	X509 *a = ca_cert("Loop A", ak, "Loop B", bk);
	X509 *b = ca_cert("Loop B", bk, "Loop A", ak);
	/* Self-issued, not in the bundle: NV never holds anchors. */
	X509 *self = ca_cert("Test NV CA", ik, "Test NV CA", ik);
	unsigned char junk[64];
	kl_ek_report rep;

	(void)state;
	assert_non_null(forged);
	rep = report_of(forged, fk, "id:49424D00");
	nv_add(&rep, 0x01c00100, &forged, 1, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	assert_non_null(strstr(rep.reason, "1 certificate(s) from the TPM"));
	assert_int_equal(rep.chain_len, 0);
	kl_ek_report_clear(&rep);

	rep = report_of(a, ak, "id:49424D00");
	X509 *loop[] = { a, b };
	nv_add(&rep, 0x01c00100, loop, 2, 0);
	nv_add(&rep, 0x01c00101, loop, 2, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	kl_ek_report_clear(&rep);

	rep = report_of(self, ik, "id:49424D00");
	nv_add(&rep, 0x01c00100, &self, 1, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_cert_untrusted");
	kl_ek_report_clear(&rep);

	/* Bytes that are no certificate, after a good one or alone. */
	memset(junk, 0x41, sizeof(junk));
	rep = report_of(self, ik, "id:49424D00");
	unsigned char *buf = NULL;
	size_t len = 0;
	nv_append(&buf, &len, self, 0);
	unsigned char *grown = realloc(buf, len + sizeof(junk));
	assert_non_null(grown);
	memcpy(grown + len, junk, sizeof(junk));
	assert_int_equal(kl_ek_report_add_nv(&rep, 0x01c00102, grown, len + sizeof(junk)), 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_CHAIN_MALFORMED);
	assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_chain_nv_malformed");
	assert_non_null(strstr(rep.reason, "NV 0x01c00102"));
	kl_ek_report_clear(&rep);
	rep = report_of(self, ik, "id:49424D00");
	buf = calloc(1, 16);
	assert_non_null(buf);
	assert_int_equal(kl_ek_report_add_nv(&rep, 0x01c00100, buf, 16), 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_CHAIN_MALFORMED);
	assert_non_null(strstr(rep.reason, "holds no certificate"));
	kl_ek_report_clear(&rep);

	/* More certificates than the station takes. */
	rep = report_of(self, ik, "id:49424D00");
	X509 *many[KL_EK_CHAIN_MAX_CERTS + 1];
	for (size_t i = 0; i < KL_EK_CHAIN_MAX_CERTS + 1; i++)
		many[i] = self;
	nv_add(&rep, 0x01c00100, many, KL_EK_CHAIN_MAX_CERTS + 1, 0);
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_CHAIN_TOO_MANY);
	assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_chain_nv_too_many");
	/* ... and more indices than a report holds. */
	for (size_t i = 1; i < KL_EK_CHAIN_NV_MAX_INDICES; i++)
		assert_int_equal(
		    kl_ek_report_add_nv(&rep, 0x01c00100 + (uint32_t)i, calloc(1, 1), 1), 0);
	assert_int_equal(kl_ek_report_add_nv(&rep, 0x01c00140, calloc(1, 1), 1), -KL_E_INVALID);
	kl_ek_report_clear(&rep);

	X509_free(forged);
	X509_free(a);
	X509_free(b);
	X509_free(self);
	EVP_PKEY_free(ik);
	EVP_PKEY_free(fk);
	EVP_PKEY_free(ak);
	EVP_PKEY_free(bk);
}

/* A bundle in its own directory: fx.root, and quirks.json holding text. */
static kl_trust *bundle_with_quirks(const char *dir, const char *text)
{
	char p[160];
	FILE *f;
	kl_trust *t = NULL;

	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(p, sizeof(p), "%s/root.pem", dir);
	f = fopen(p, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, fx.root), 1);
	fclose(f);
	snprintf(p, sizeof(p), "%s/quirks.json", dir);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	if (kl_trust_load(dir, &t) < 0)
		t = NULL;
	unlink(p);
	snprintf(p, sizeof(p), "%s/root.pem", dir);
	unlink(p);
	rmdir(dir);
	return t;
}

static const char *quirk_json(char *buf, size_t size, const char *root_hex, const char *extra)
{
	snprintf(buf, size,
	         "{\"version\": 1, \"quirks\": [{\"id\": \"swtpm-localca-manufacturer\", "
	         "\"kind\": \"manufacturer\", \"root_sha256\": \"%s\", "
	         "\"cert_manufacturer\": \"id:00001014\", \"tpm_manufacturer\": "
	         "\"id:49424D00\", \"meaning\": \"swtpm_setup names IBM by its PCI id\", "
	         "\"source\": \"https://github.com/stefanberger/libtpms\"%s}]}\n",
	         root_hex, extra);
	return buf;
}

/* 6. A quirk explains one deviation for the root it names, and nothing
 * else; a table that is not well-formed is refused with a name. */
static void test_quirks(void **state)
{
	char dir[128], text[1024], fp[65], other_fp[65];
	kl_ek_report rep;
	kl_trust *t;
	kl_quirks *q = NULL;

	(void)state;
	assert_int_equal(kl_x509_fingerprint(fx.root, fp), 0);
	assert_int_equal(kl_x509_fingerprint(fx.other, other_fp), 0);
	snprintf(dir, sizeof(dir), "%s/q1", fx.dir);
	t = bundle_with_quirks(dir, quirk_json(text, sizeof(text), fp, ""));
	if (!t)
		fail_msg("%s", kl_error_detail());
	assert_int_equal(kl_quirks_count(kl_trust_quirks(t)), 1);
	assert_string_not_equal(kl_trust_version(t), kl_trust_version(fx.trust));
	assert_null(kl_trust_quirks(fx.trust));

	/* Explained: the stock swtpm_setup manufacturer for an IBM TPM. */
	rep = report_of(fx.root, fx.root_key, "id:00001014");
	assert_int_equal(kl_ek_cert_verify(t, 0x49424d00, "IBM", &rep), 0);
	if (rep.verdict != KL_EK_OK)
		fail_msg("%s", rep.reason);
	assert_string_equal(rep.quirk, "swtpm-localca-manufacturer");
	assert_string_equal(rep.manufacturer, "id:00001014");
	/* Not for another TPM manufacturer, and not without the table. */
	assert_int_equal(kl_ek_cert_verify(t, 0x414d4400, "AMD", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	assert_string_equal(rep.quirk, "");
	assert_non_null(strstr(rep.reason, "no vendor quirk of the trust bundle explains it"));
	assert_int_equal(kl_ek_cert_verify(fx.trust, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	kl_ek_report_clear(&rep);
	/* Not for another certificate manufacturer. */
	rep = report_of(fx.root, fx.root_key, "id:414D4400");
	assert_int_equal(kl_ek_cert_verify(t, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	kl_ek_report_clear(&rep);
	/* It relaxes nothing else: no EK EKU, or an untrusted chain. */
	unsigned char *der = NULL;
	size_t len = ek_cert(fx.root, fx.root_key, fx.ek, 0, "id:00001014", &der);
	rep = report(der, len);
	assert_int_equal(kl_ek_cert_verify(t, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_NOT_EK_CERT);
	kl_ek_report_clear(&rep);
	rep = report_of(fx.other, fx.other_key, "id:00001014");
	assert_int_equal(kl_ek_cert_verify(t, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_UNTRUSTED);
	kl_ek_report_clear(&rep);
	kl_trust_free(t);

	/* A quirk for another root explains nothing here. */
	snprintf(dir, sizeof(dir), "%s/q2", fx.dir);
	t = bundle_with_quirks(dir, quirk_json(text, sizeof(text), other_fp, ""));
	assert_non_null(t);
	rep = report_of(fx.root, fx.root_key, "id:00001014");
	assert_int_equal(kl_ek_cert_verify(t, 0x49424d00, "IBM", &rep), 0);
	assert_int_equal(rep.verdict, KL_EK_WRONG_VENDOR);
	kl_ek_report_clear(&rep);
	kl_trust_free(t);

	/* Malformed tables: each refused, naming what is wrong. */
	static const struct {
		const char *text, *needle;
	} bad[] = {
		{ "{\"version\": 2, \"quirks\": []}", "version 1" },
		{ "{\"version\": 1, \"quirks\": {}}", "must be an array" },
		{ "{\"version\": 1, \"quirks\": [], \"more\": 1}", "unknown member \"more\"" },
		{ "[1, 2]", "version 1" },
		{ "{\"version\": 1, \"quirks\": []} trailing", "not JSON" },
		{ "{\"version\": 1, \"quirks\": [{\"id\": \"x\"}]}", "\"kind\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    kl_quirks_parse(bad[i].text, strlen(bad[i].text), "quirks.json", &q),
		    -KL_E_INVALID);
		if (!strstr(kl_error_detail(), bad[i].needle))
			fail_msg("%zu: '%s' not in '%s'", i, bad[i].needle, kl_error_detail());
	}
	quirk_json(text, sizeof(text), fp, ", \"extra\": true");
	assert_int_equal(kl_quirks_parse(text, strlen(text), "quirks.json", &q), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "unknown member \"extra\""));
	quirk_json(text, sizeof(text), "abcd", "");
	assert_int_equal(kl_quirks_parse(text, strlen(text), "quirks.json", &q), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "root_sha256"));
	/* No source: a quirk must say where the deviation is documented. */
	snprintf(text, sizeof(text),
	         "{\"version\": 1, \"quirks\": [{\"id\": \"a\", \"kind\": \"manufacturer\", "
	         "\"root_sha256\": \"%s\", \"cert_manufacturer\": \"id:00001014\", "
	         "\"tpm_manufacturer\": \"id:49424D00\", \"meaning\": \"m\", \"source\": \"\"}]}",
	         fp);
	assert_int_equal(kl_quirks_parse(text, strlen(text), "quirks.json", &q), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "\"source\" must be a non-empty string"));
	/* A broken table fails the bundle: the station would trust more or
	 * less than its operator wrote. */
	snprintf(dir, sizeof(dir), "%s/q3", fx.dir);
	assert_null(bundle_with_quirks(dir, "{\"version\": 1"));
	assert_non_null(strstr(kl_error_detail(), "vendor quirks"));
	assert_null(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),     cmocka_unit_test(test_manufacturer),
		cmocka_unit_test(test_refusals), cmocka_unit_test(test_default_refuses),
		cmocka_unit_test(test_nv_chain), cmocka_unit_test(test_nv_chain_hostile),
		cmocka_unit_test(test_quirks),
	};

	return cmocka_run_group_tests_name("ek_verify", tests, setup, teardown);
}
