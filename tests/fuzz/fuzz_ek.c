/* libFuzzer harness for an EK certificate as the station reads it from the
 * DUT's NV (provisioning steps 3 and 4, station/proof/trust.c): the input
 * is the NV index's bytes, checked against the trust bundle of the floor's
 * vendor (tests/fuzz/data/trust, written by seed_from_floor.c with the
 * corpus) for a TPM that reports manufacturer IBM (swtpm's). The seeds are
 * the certificates swtpm_setup and the floor wrote to real DUTs.
 *
 * A mutated certificate no longer verifies under the vendor's CA, so the
 * harness also re-signs whatever OpenSSL reads (issuer set to a root of its
 * own, authority key identifier dropped) and checks that against a bundle
 * of that root: the EKU and manufacturer checks after the chain see every
 * readable input.
 *
 * Invariants (abort when broken):
 *   - the check runs (0) and records a verdict of its own: it never leaves
 *     the report as it was given;
 *   - the verdict is ek_cert_malformed exactly when OpenSSL cannot read the
 *     bytes as a certificate, and kl_ek_report_cert reads it back exactly
 *     when it can;
 *   - an accepted certificate names manufacturer id:49424D00, and the same
 *     certificate for a TPM of another manufacturer is refused as such;
 *   - step 4 on an accepted certificate: its own key matches, with the
 *     SHA-256 of its SubjectPublicKeyInfo recorded; another key does not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz_util.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_ek"

#define IBM 0x49424d00u /* TPM_PT_MANUFACTURER of swtpm */
#define AMD 0x414d4400u

/* A report that no check has decided yet: a verdict the software checks
 * never give. */
#define UNDECIDED KL_EK_TPM_ERROR

static kl_trust *trust;     /* the floor vendor's bundle */
static kl_trust *own_trust; /* a bundle of own_root only */
static X509 *own_root;
static EVP_PKEY *own_key; /* own_root's key, re-signs inputs */
static EVP_PKEY *other;   /* a key no certificate holds */

static void add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	fuzz_check(e && X509_add_ext(x, e, -1) == 1, H, "root extension");
	X509_EXTENSION_free(e);
}

/* A self-signed EK root of the harness's own, in a bundle of its own. */
static void make_own_root(void)
{
	char dir[] = "/tmp/kl-fuzz-ek.XXXXXX", path[64];
	X509_NAME *name;
	FILE *f;

	own_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	own_root = X509_new();
	name = X509_NAME_new();
	fuzz_check(
	    own_key && own_root && name &&
	        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                   (const unsigned char *)"fuzz EK root", -1, -1, 0) == 1 &&
	        X509_set_version(own_root, X509_VERSION_3) == 1 &&
	        ASN1_INTEGER_set(X509_get_serialNumber(own_root), 1) == 1 &&
	        X509_set_subject_name(own_root, name) == 1 &&
	        X509_set_issuer_name(own_root, name) == 1 &&
	        ASN1_TIME_set_string(X509_getm_notBefore(own_root), "20000101000000Z") == 1 &&
	        ASN1_TIME_set_string(X509_getm_notAfter(own_root), "99991231235959Z") == 1 &&
	        X509_set_pubkey(own_root, own_key) == 1,
	    H, "own root");
	X509_NAME_free(name);
	add_ext(own_root, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(own_root, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(own_root, NID_subject_key_identifier, "hash");
	fuzz_check(X509_sign(own_root, own_key, EVP_sha256()) > 0, H, "sign own root");

	fuzz_check(mkdtemp(dir) != NULL, H, "scratch directory");
	snprintf(path, sizeof(path), "%s/root.pem", dir);
	f = fopen(path, "we");
	fuzz_check(f && PEM_write_X509(f, own_root) == 1 && fclose(f) == 0, H, "root.pem");
	fuzz_check(kl_trust_load(dir, &own_trust) == 0, H, "own bundle");
	remove(path);
	remove(dir);
}

static void setup(void)
{
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/trust", fuzz_data_dir());
	if (kl_trust_load(dir, &trust) < 0) {
		fprintf(stderr, H ": %s (set KL_FUZZ_DATA)\n", kl_error_detail());
		abort();
	}
	other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	fuzz_check(other != NULL, H, "P-256 key");
	make_own_root();
}

static void report_new(kl_ek_report *rep, kl_ek_type type, const uint8_t *data, size_t size)
{
	memset(rep, 0, sizeof(*rep));
	rep->type = type;
	rep->verdict = UNDECIDED;
	rep->cert_der = malloc(size ? size : 1);
	fuzz_check(rep->cert_der != NULL, H, "memory");
	memcpy(rep->cert_der, data, size);
	rep->cert_len = size;
}

/* Step 4 on an accepted certificate. */
static void check_key(const kl_ek_report *accepted)
{
	_cleanup_(X509_freep) X509 *cert = NULL;
	unsigned char *spki = NULL, md[32];
	kl_ek_report rep;
	EVP_PKEY *key;
	int len;

	fuzz_check(kl_ek_report_cert(accepted, &cert) == 0, H, "accepted: reads back");
	key = X509_get0_pubkey(cert);
	fuzz_check(key != NULL, H, "accepted: has a key");

	rep = *accepted;
	rep.cert_der = NULL;
	rep.verdict = UNDECIDED;
	memset(rep.ek_sha256, 0, sizeof(rep.ek_sha256));
	fuzz_check(kl_ek_key_verify(&rep, cert, key) == 0 && rep.verdict == KL_EK_OK, H,
	           "step 4: own key matches");
	len = i2d_PUBKEY(key, &spki);
	fuzz_check(len > 0 && EVP_Digest(spki, (size_t)len, md, NULL, EVP_sha256(), NULL) == 1, H,
	           "SPKI hash");
	OPENSSL_free(spki);
	fuzz_check(memcmp(md, rep.ek_sha256, sizeof(md)) == 0, H, "step 4: EK hash recorded");

	rep.verdict = UNDECIDED;
	fuzz_check(kl_ek_key_verify(&rep, cert, other) == 0 && rep.verdict == KL_EK_MISMATCH, H,
	           "step 4: another key is a mismatch");
}

/* Runs the checks on DER bytes against a bundle; returns the verdict. */
static kl_ek_verdict check_cert(const kl_trust *t, kl_ek_type type, const uint8_t *data,
                                size_t size)
{
	kl_ek_report rep;
	kl_ek_verdict v;

	report_new(&rep, type, data, size);
	fuzz_check(kl_ek_cert_verify(t, IBM, "IBM", &rep) == 0, H, "the check runs");
	fuzz_check(rep.verdict != UNDECIDED, H, "a verdict is recorded");
	fuzz_check(rep.verdict <= KL_EK_TPM_ERROR, H, "known verdict");
	fuzz_check(rep.verdict == KL_EK_OK || rep.reason[0], H, "a refusal says why");
	fuzz_check(memchr(rep.reason, '\0', sizeof(rep.reason)) &&
	               memchr(rep.issuer, '\0', sizeof(rep.issuer)) &&
	               memchr(rep.manufacturer, '\0', sizeof(rep.manufacturer)),
	           H, "strings terminated");
	if (rep.verdict == KL_EK_OK) {
		kl_ek_report amd;

		fuzz_check(strcasecmp(rep.manufacturer, "id:49424D00") == 0, H,
		           "accepted: manufacturer IBM");
		check_key(&rep);
		report_new(&amd, rep.type, data, size);
		fuzz_check(kl_ek_cert_verify(t, AMD, "AMD", &amd) == 0 &&
		               amd.verdict == KL_EK_WRONG_VENDOR,
		           H, "another manufacturer is refused");
		kl_ek_report_clear(&amd);
	}
	v = rep.verdict;
	kl_ek_report_clear(&rep);
	return v;
}

/* The certificate as the harness's root would have issued it. */
static void check_resigned(X509 *parsed, kl_ek_type type)
{
	_cleanup_(X509_freep) X509 *x = X509_dup(parsed);
	unsigned char *der = NULL;
	int idx, len;

	if (!x)
		return;
	while ((idx = X509_get_ext_by_NID(x, NID_authority_key_identifier, -1)) >= 0)
		X509_EXTENSION_free(X509_delete_ext(x, idx));
	if (X509_set_issuer_name(x, X509_get_subject_name(own_root)) != 1 ||
	    X509_sign(x, own_key, EVP_sha256()) <= 0 || (len = i2d_X509(x, &der)) <= 0) {
		ERR_clear_error();
		return;
	}
	(void)check_cert(own_trust, type, der, (size_t)len);
	OPENSSL_free(der);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *q = data;
	kl_ek_report rep;
	kl_ek_verdict v;
	kl_ek_type type;
	X509 *parsed, *back = NULL;

	if (!trust)
		setup();
	type = (kl_ek_type)(size % KL_EK__MAX);
	v = check_cert(trust, type, data, size);

	parsed = d2i_X509(NULL, &q, (long)size);
	ERR_clear_error();
	fuzz_check((parsed == NULL) == (v == KL_EK_BAD_CERT), H,
	           "malformed exactly when unreadable");
	report_new(&rep, type, data, size);
	fuzz_check((kl_ek_report_cert(&rep, &back) == 0) == (parsed != NULL), H,
	           "report reads back exactly when readable");
	X509_free(back);
	if (parsed)
		check_resigned(parsed, type);
	X509_free(parsed);
	kl_ek_report_clear(&rep);
	ERR_clear_error();
	kl_error_clear();
	return 0;
}
