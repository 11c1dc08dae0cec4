/* Trust bundle and EK certificate checks, no I/O with the DUT. See trust.h. */
#include "trust.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "kl_error.h"
#include "kl_hex.h"
#include "tpm.h"

#define OID_TCG_KP_EK_CERT          "2.23.133.8.1"
#define OID_TCG_AT_TPM_MANUFACTURER "2.23.133.2.1"

struct kl_trust {
	X509_STORE *store;
	STACK_OF(X509) * intermediates;
	size_t roots;
	char version[17];
};

static const char *const verdict_names[] = {
	[KL_EK_UNCHECKED] = "ek_unchecked",
	[KL_EK_OK] = "ok",
	[KL_EK_NO_CERT] = "ek_cert_missing",
	[KL_EK_BAD_CERT] = "ek_cert_malformed",
	[KL_EK_UNTRUSTED] = "ek_cert_untrusted",
	[KL_EK_NOT_EK_CERT] = "ek_cert_not_ek",
	[KL_EK_WRONG_VENDOR] = "ek_cert_vendor_mismatch",
	[KL_EK_MISMATCH] = "ek_mismatch",
	[KL_EK_TPM_ERROR] = "tpm_error",
};

const char *kl_ek_verdict_name(kl_ek_verdict v)
{
	return (unsigned)v < sizeof(verdict_names) / sizeof(verdict_names[0]) ? verdict_names[v]
	                                                                      : "unknown";
}

static bool is_self_signed(X509 *x)
{
	return X509_check_issued(x, x) == X509_V_OK;
}

static int cmp_fp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

int kl_trust_load(const char *dir, kl_trust **ret)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	kl_trust *t;
	unsigned char(*fps)[32] = NULL;
	size_t n_fps = 0;
	int r = 0;

	if (!d)
		return kl_error_set(KL_E_NOTFOUND, "trust bundle %s: %s", dir, strerror(errno));
	t = calloc(1, sizeof(*t));
	if (!t || !(t->store = X509_STORE_new()) || !(t->intermediates = sk_X509_new_null())) {
		closedir(d);
		kl_trust_free(t);
		return kl_error_set(KL_E_NOMEM, "trust bundle: out of memory");
	}
	while (r == 0 && (e = readdir(d)) != NULL) {
		const char *dot = strrchr(e->d_name, '.');
		char path[4096];
		FILE *f;
		X509 *x;
		int in_file = 0;

		if (!dot || (strcmp(dot, ".pem") && strcmp(dot, ".crt") && strcmp(dot, ".cer") &&
		             strcmp(dot, ".der")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		/* A PEM file may hold several certificates; a DER file one. */
		while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL || in_file == 0) {
			if (!x) {
				ERR_clear_error();
				rewind(f);
				x = d2i_X509_fp(f, NULL);
				if (!x) {
					r = kl_error_set_ssl(
					    KL_E_INVALID, "trust bundle: %s holds no certificate",
					    path);
					break;
				}
			}
			in_file++;
			void *grown = realloc(fps, (n_fps + 1) * sizeof(*fps));
			if (!grown) {
				X509_free(x);
				r = kl_error_set(KL_E_NOMEM, "trust bundle: out of memory");
				break;
			}
			fps = grown;
			X509_digest(x, EVP_sha256(), fps[n_fps++], NULL);
			if (is_self_signed(x)) {
				X509_STORE_add_cert(t->store, x);
				t->roots++;
				X509_free(x);
			} else {
				sk_X509_push(t->intermediates, x);
			}
			if (dot && strcmp(dot, ".der") == 0)
				break;
		}
		ERR_clear_error();
		fclose(f);
	}
	closedir(d);
	if (r == 0 && t->roots == 0)
		r = kl_error_set(KL_E_INVALID, "trust bundle %s holds no root certificate", dir);
	if (r < 0) {
		free(fps);
		kl_trust_free(t);
		return r;
	}
	/* The bundle's version: a digest of its sorted fingerprints. */
	{
		unsigned char md[32];
		EVP_MD_CTX *m = EVP_MD_CTX_new();

		qsort(fps, n_fps, sizeof(*fps), cmp_fp);
		EVP_DigestInit_ex(m, EVP_sha256(), NULL);
		EVP_DigestUpdate(m, fps, n_fps * sizeof(*fps));
		EVP_DigestFinal_ex(m, md, NULL);
		EVP_MD_CTX_free(m);
		kl_hex_encode(md, 8, t->version);
	}
	free(fps);
	*ret = t;
	return 0;
}

void kl_trust_free(kl_trust *t)
{
	if (!t)
		return;
	X509_STORE_free(t->store);
	sk_X509_pop_free(t->intermediates, X509_free);
	free(t);
}

size_t kl_trust_roots(const kl_trust *t)
{
	return t->roots;
}

const char *kl_trust_version(const kl_trust *t)
{
	return t->version;
}

void kl_ek_report_clear(kl_ek_report *r)
{
	free(r->cert_der);
	memset(r, 0, sizeof(*r));
}

int kl_ek_report_verdict(kl_ek_report *rep, kl_ek_verdict v, const char *fmt, ...)
{
	va_list ap;

	rep->verdict = v;
	va_start(ap, fmt);
	vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
	va_end(ap);
	return 0;
}

/* The tcg-at-tpmManufacturer value ("id:XXXXXXXX") from the SAN's
 * directoryName (TCG EK Credential Profile 2.0 §3.2.9). */
static bool san_manufacturer(X509 *x, char *out, size_t size)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	ASN1_OBJECT *oid = OBJ_txt2obj(OID_TCG_AT_TPM_MANUFACTURER, 1);
	bool found = false;

	for (int i = 0; gens && !found && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		int idx;

		if (g->type != GEN_DIRNAME)
			continue;
		idx = X509_NAME_get_index_by_OBJ(g->d.directoryName, oid, -1);
		if (idx < 0)
			continue;
		ASN1_STRING *v =
		    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(g->d.directoryName, idx));
		snprintf(out, size, "%.*s", ASN1_STRING_length(v),
		         (const char *)ASN1_STRING_get0_data(v));
		found = true;
	}
	GENERAL_NAMES_free(gens);
	ASN1_OBJECT_free(oid);
	return found;
}

static bool has_ek_eku(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	ASN1_OBJECT *oid = OBJ_txt2obj(OID_TCG_KP_EK_CERT, 1);
	bool found = false;

	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++)
		found |= OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), oid) == 0;
	EXTENDED_KEY_USAGE_free(eku);
	ASN1_OBJECT_free(oid);
	return found;
}

int kl_ek_cert_verify(const kl_trust *trust, uint32_t manufacturer, const char *manufacturer_str,
                      kl_ek_report *rep)
{
	X509 *cert = NULL;
	X509_STORE_CTX *ctx = NULL;
	const unsigned char *q;
	char want[16];
	int r = 0;

	/* Whatever the report said before, it passes only if this check does. */
	rep->verdict = KL_EK_UNCHECKED;
	q = rep->cert_der;
	cert = d2i_X509(NULL, &q, (long)rep->cert_len);
	if (!cert) {
		ERR_clear_error();
		kl_ek_report_verdict(
		    rep, KL_EK_BAD_CERT,
		    "the %s EK certificate in NV is not a readable X.509 certificate",
		    kl_ek_type_name(rep->type));
		goto out;
	}
	X509_NAME_oneline(X509_get_issuer_name(cert), rep->issuer, sizeof(rep->issuer));
	/* X509_verify_cert checks each signature over the certificate's signed
	 * bytes as they were read (OpenSSL keeps the original TBS encoding), so
	 * a vendor's odd-but-parseable encoding does not break the check. */
	ctx = X509_STORE_CTX_new();
	if (!ctx || !X509_STORE_CTX_init(ctx, trust->store, cert, trust->intermediates)) {
		r = kl_error_set_ssl(KL_E_NOMEM, "verify context");
		goto out;
	}
	/* EK certificates carry no TLS purposes; the EK EKU is checked below. */
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	if (X509_verify_cert(ctx) != 1) {
		kl_ek_report_verdict(
		    rep, KL_EK_UNTRUSTED,
		    "EK certificate not issued by a trusted TPM vendor: %s (issuer %s)",
		    X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)), rep->issuer);
		ERR_clear_error();
		goto out;
	}
	if (!has_ek_eku(cert)) {
		kl_ek_report_verdict(
		    rep, KL_EK_NOT_EK_CERT,
		    "the certificate is not an EK certificate (no EKU tcg-kp-EKCertificate)");
		goto out;
	}
	snprintf(want, sizeof(want), "id:%08X", manufacturer);
	if (!san_manufacturer(cert, rep->manufacturer, sizeof(rep->manufacturer)) ||
	    strcasecmp(rep->manufacturer, want) != 0) {
		kl_ek_report_verdict(
		    rep, KL_EK_WRONG_VENDOR,
		    "the EK certificate names TPM manufacturer '%s' but the TPM reports %s (%s)",
		    rep->manufacturer[0] ? rep->manufacturer : "none", want, manufacturer_str);
		goto out;
	}
	rep->verdict = KL_EK_OK;
out:
	X509_STORE_CTX_free(ctx);
	X509_free(cert);
	return r;
}

int kl_ek_report_cert(const kl_ek_report *rep, X509 **ret)
{
	const unsigned char *q = rep->cert_der;
	X509 *cert = d2i_X509(NULL, &q, (long)rep->cert_len);

	if (!cert)
		return kl_error_set_ssl(KL_E_INVALID, "EK match: no certificate in the report");
	*ret = cert;
	return 0;
}

int kl_ek_key_verify(kl_ek_report *rep, X509 *cert, EVP_PKEY *ek)
{
	unsigned char *spki = NULL;
	int len;

	/* The certificate's OK from kl_ek_cert_verify does not carry over: a
	 * failure below must leave a refusal, not that OK. */
	rep->verdict = KL_EK_UNCHECKED;
	if (EVP_PKEY_eq(ek, X509_get0_pubkey(cert)) != 1) {
		kl_ek_report_verdict(
		    rep, KL_EK_MISMATCH,
		    "the TPM's %s EK is not the key in its EK certificate: forged or swapped TPM",
		    kl_ek_type_name(rep->type));
		return 0;
	}
	/* The EK's identity for the registry: SHA-256 of its
	 * SubjectPublicKeyInfo. A failure here must not leave a zero hash
	 * behind an OK verdict. */
	len = i2d_PUBKEY(ek, &spki);
	if (len <= 0 || !EVP_Digest(spki, (size_t)len, rep->ek_sha256, NULL, EVP_sha256(), NULL)) {
		OPENSSL_free(spki);
		return kl_error_set_ssl(KL_E_CRYPTO, "hash of the EK");
	}
	OPENSSL_free(spki);
	rep->verdict = KL_EK_OK;
	return 0;
}
