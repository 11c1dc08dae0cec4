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
	kl_quirks *quirks; /* NULL: none */
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
	[KL_EK_CHAIN_TOO_MANY] = "ek_chain_nv_too_many",
	[KL_EK_CHAIN_OVERSIZED] = "ek_chain_nv_oversized",
	[KL_EK_CHAIN_MALFORMED] = "ek_chain_nv_malformed",
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

/* DIR/quirks.json when there is one, and the SHA-256 of its bytes. */
static int load_quirks(kl_trust *t, const char *dir, unsigned char md[32])
{
	char path[4096];
	int r;

	snprintf(path, sizeof(path), "%s/quirks.json", dir);
	r = kl_quirks_load(path, &t->quirks, md);
	if (r == -KL_E_NOTFOUND) {
		kl_error_clear();
		return 0;
	}
	return r < 0 ? kl_error_wrap("trust bundle %s: vendor quirks", dir) : 0;
}

int kl_trust_load(const char *dir, kl_trust **ret)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	kl_trust *t;
	unsigned char(*fps)[32] = NULL, quirks_md[32];
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
	if (r == 0)
		r = load_quirks(t, dir, quirks_md);
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
		/* A quirk changes what the bundle accepts: its table is part
		 * of the version (and a bundle without one keeps its old
		 * version). */
		if (t->quirks)
			EVP_DigestUpdate(m, quirks_md, sizeof(quirks_md));
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
	kl_quirks_free(t->quirks);
	free(t);
}

const kl_quirks *kl_trust_quirks(const kl_trust *t)
{
	return t->quirks;
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
	for (size_t i = 0; i < r->n_nv && i < KL_EK_CHAIN_NV_MAX_INDICES; i++)
		free(r->nv[i].der);
	memset(r, 0, sizeof(*r));
}

int kl_ek_report_add_nv(kl_ek_report *rep, uint32_t index, unsigned char *der, size_t len)
{
	if (rep->n_nv >= KL_EK_CHAIN_NV_MAX_INDICES) {
		free(der);
		return kl_error_set(KL_E_INVALID, "EK chain: more than %d NV indices",
		                    KL_EK_CHAIN_NV_MAX_INDICES);
	}
	rep->nv[rep->n_nv++] = (struct kl_ek_nv){ .index = index, .der = der, .len = len };
	return 0;
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

/* Whether p..end is padding: some vendors size an index larger than what
 * they write and fill the rest with 0x00 or 0xff. */
static bool all_padding(const unsigned char *p, const unsigned char *end)
{
	for (; p < end; p++)
		if (*p != 0x00 && *p != 0xff)
			return false;
	return true;
}

/* The certificates of the EK chain indices in rep, pushed on out with the
 * index each came from in from[]. Returns 0, 1 when the verdict was set
 * (malformed, too many), or a negative kl_err. */
static int nv_certs(kl_ek_report *rep, STACK_OF(X509) * out, uint32_t from[KL_EK_CHAIN_MAX_CERTS])
{
	size_t total = 0;

	for (size_t i = 0; i < rep->n_nv; i++) {
		const struct kl_ek_nv *nv = &rep->nv[i];
		const unsigned char *p = nv->der, *end = nv->der + nv->len;
		size_t here = 0;

		while (p < end && !all_padding(p, end)) {
			const unsigned char *q = p;
			X509 *x = d2i_X509(NULL, &q, (long)(end - p));

			if (!x) {
				ERR_clear_error();
				kl_ek_report_verdict(
				    rep, KL_EK_CHAIN_MALFORMED,
				    "the TPM's EK chain index NV 0x%08x holds bytes "
				    "that are not a DER certificate (at offset %zu "
				    "of %zu)",
				    nv->index, (size_t)(p - nv->der), nv->len);
				return 1;
			}
			if (total == KL_EK_CHAIN_MAX_CERTS) {
				X509_free(x);
				kl_ek_report_verdict(rep, KL_EK_CHAIN_TOO_MANY,
				                     "the TPM's EK chain indices hold more than %d "
				                     "certificates (NV 0x%08x and before): the "
				                     "station uses at most %d",
				                     KL_EK_CHAIN_MAX_CERTS, nv->index,
				                     KL_EK_CHAIN_MAX_CERTS);
				return 1;
			}
			if (!sk_X509_push(out, x)) {
				X509_free(x);
				return kl_error_set(KL_E_NOMEM, "EK chain: out of memory");
			}
			from[total++] = nv->index;
			here++;
			p = q;
		}
		if (here == 0) {
			kl_ek_report_verdict(
			    rep, KL_EK_CHAIN_MALFORMED,
			    "the TPM's EK chain index NV 0x%08x holds no certificate "
			    "(%zu bytes)",
			    nv->index, nv->len);
			return 1;
		}
	}
	return 0;
}

/* The chain that verified, for the evidence: each certificate's subject,
 * fingerprint and where it came from. The last is the anchor, from the
 * bundle's store whatever copies the TPM holds; a certificate the bundle
 * and the TPM both hold (the same bytes) is marked as both. */
static int record_chain(const kl_trust *trust, kl_ek_report *rep, STACK_OF(X509) * chain,
                        STACK_OF(X509) * from_nv, const uint32_t *nv_index)
{
	int n = sk_X509_num(chain);

	rep->chain_len = 0;
	for (int i = 0; i < n && rep->chain_len < sizeof(rep->chain) / sizeof(rep->chain[0]); i++) {
		struct kl_ek_link *l = &rep->chain[rep->chain_len++];
		X509 *x = sk_X509_value(chain, i);

		memset(l, 0, sizeof(*l));
		X509_NAME_oneline(X509_get_subject_name(x), l->subject, sizeof(l->subject));
		if (!X509_digest(x, EVP_sha256(), l->sha256, NULL))
			return kl_error_set_ssl(KL_E_CRYPTO, "EK chain: fingerprint");
		if (i == 0)
			continue;
		for (int j = 0; j < sk_X509_num(from_nv) && !l->nv_index; j++)
			if (X509_cmp(x, sk_X509_value(from_nv, j)) == 0)
				l->nv_index = nv_index[j];
		l->from_bundle = i == n - 1 || l->nv_index == 0;
		for (int j = 0; j < sk_X509_num(trust->intermediates) && !l->from_bundle; j++)
			l->from_bundle = X509_cmp(x, sk_X509_value(trust->intermediates, j)) == 0;
	}
	return 0;
}

int kl_ek_cert_verify(const kl_trust *trust, uint32_t manufacturer, const char *manufacturer_str,
                      kl_ek_report *rep)
{
	STACK_OF(X509) *nv = NULL, *untrusted = NULL;
	uint32_t nv_index[KL_EK_CHAIN_MAX_CERTS];
	X509 *cert = NULL;
	X509_STORE_CTX *ctx = NULL;
	const unsigned char *q;
	char want[16];
	int r = 0;

	/* Whatever the report said before, it passes only if this check does. */
	rep->verdict = KL_EK_UNCHECKED;
	rep->chain_len = 0;
	rep->quirk[0] = '\0';
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
	/* The TPM's own intermediates help build the chain but are never
	 * anchors: they join the bundle's intermediates as untrusted
	 * certificates, and trust still comes from a root in the store. */
	if (!(nv = sk_X509_new_null()) || !(untrusted = sk_X509_dup(trust->intermediates))) {
		r = kl_error_set(KL_E_NOMEM, "EK chain: out of memory");
		goto out;
	}
	r = nv_certs(rep, nv, nv_index);
	if (r != 0) {
		r = r < 0 ? r : 0;
		goto out;
	}
	for (int i = 0; i < sk_X509_num(nv); i++)
		if (!sk_X509_push(untrusted, sk_X509_value(nv, i))) {
			r = kl_error_set(KL_E_NOMEM, "EK chain: out of memory");
			goto out;
		}
	/* X509_verify_cert checks each signature over the certificate's signed
	 * bytes as they were read (OpenSSL keeps the original TBS encoding), so
	 * a vendor's odd-but-parseable encoding does not break the check. */
	ctx = X509_STORE_CTX_new();
	if (!ctx || !X509_STORE_CTX_init(ctx, trust->store, cert, untrusted)) {
		r = kl_error_set_ssl(KL_E_NOMEM, "verify context");
		goto out;
	}
	/* EK certificates carry no TLS purposes; the EK EKU is checked below. */
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
	/* A bound on the chain, whatever the TPM's indices hold: certificates
	 * that issue each other in a loop end here (OpenSSL also uses each
	 * untrusted certificate once). */
	X509_STORE_CTX_set_depth(ctx, KL_EK_CHAIN_MAX_DEPTH);
	if (X509_verify_cert(ctx) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);
		X509 *at = X509_STORE_CTX_get_current_cert(ctx);
		char where[256] = "";

		if (at)
			X509_NAME_oneline(X509_get_subject_name(at), where, sizeof(where));
		kl_ek_report_verdict(
		    rep, KL_EK_UNTRUSTED,
		    "EK certificate not issued by a trusted TPM vendor: %s (issuer %s; at %s; "
		    "%d certificate(s) from the TPM's EK chain indices)",
		    X509_verify_cert_error_string(err), rep->issuer, where[0] ? where : "-",
		    sk_X509_num(nv));
		ERR_clear_error();
		goto out;
	}
	r = record_chain(trust, rep, X509_STORE_CTX_get0_chain(ctx), nv, nv_index);
	if (r < 0)
		goto out;
	if (!has_ek_eku(cert)) {
		kl_ek_report_verdict(
		    rep, KL_EK_NOT_EK_CERT,
		    "the certificate is not an EK certificate (no EKU tcg-kp-EKCertificate)");
		goto out;
	}
	snprintf(want, sizeof(want), "id:%08X", manufacturer);
	if (!san_manufacturer(cert, rep->manufacturer, sizeof(rep->manufacturer)) ||
	    strcasecmp(rep->manufacturer, want) != 0) {
		/* The one relaxation: a documented deviation of the vendor
		 * whose root this chain ended at (quirks.h). */
		const char *quirk = rep->manufacturer[0] && rep->chain_len > 0
		                        ? kl_quirks_explain_manufacturer(
		                              trust->quirks, rep->chain[rep->chain_len - 1].sha256,
		                              rep->manufacturer, manufacturer)
		                        : NULL;

		if (!quirk) {
			kl_ek_report_verdict(
			    rep, KL_EK_WRONG_VENDOR,
			    "the EK certificate names TPM manufacturer '%s' but the "
			    "TPM reports %s (%s)%s",
			    rep->manufacturer[0] ? rep->manufacturer : "none", want,
			    manufacturer_str,
			    trust->quirks ? "; no vendor quirk of the trust bundle "
			                    "explains it"
			                  : "");
			goto out;
		}
		snprintf(rep->quirk, sizeof(rep->quirk), "%s", quirk);
	}
	rep->verdict = KL_EK_OK;
out:
	if (rep->verdict != KL_EK_OK)
		rep->quirk[0] = '\0';
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	sk_X509_pop_free(nv, X509_free);
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
