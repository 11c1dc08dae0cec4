/* Full CRLs (RFC 5280 §5), streamed.
 *
 * OpenSSL's X509_CRL keeps every entry as a tree of small objects (several
 * hundred bytes each) and sorts them; at a million entries that is far more
 * memory than the CRL itself. So the CRL is written directly as DER: the
 * entries go straight from the database into one buffer, the fixed fields in
 * front of them, and the buffer is signed in place. Memory stays close to the
 * CRL's own size. The result is parsed back by the tests with OpenSSL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "ca_internal.h"
#include "der.h"
#include "kl_error.h"
#include "kl_hex.h"

/* Room left in front of the entries for everything that precedes them:
 * CertificateList and TBSCertList headers, version, signature algorithm,
 * issuer name, thisUpdate, nextUpdate and the revokedCertificates header. */
#define CRL_FRONT_MAX 4096

struct entries_ctx {
	kl_der *d;
	kl_der scratch; /* one entry's content, reused */
	int64_t count;
};

/* revokedCertificates entry:
 *   SEQUENCE { userCertificate INTEGER, revocationDate Time,
 *              crlEntryExtensions SEQUENCE { reasonCode } OPTIONAL }
 * reasonCode is left out for unspecified (RFC 5280 §5.3.1 SHOULD). */
static int put_entry(void *vctx, const char *serial, int64_t when, int reason)
{
	static const unsigned char reason_ext[] = { 0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55,
		                                    0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01 };
	struct entries_ctx *ctx = vctx;
	kl_der *one = &ctx->scratch;
	unsigned char mag[21];
	size_t n = 0, i = 0, hexlen = serial ? strlen(serial) : 0;
	int hi, lo;

	if (hexlen == 0 || hexlen > 40)
		return kl_error_set(KL_E_DB, "stored serial '%s' is malformed",
		                    serial ? serial : "");
	if (hexlen % 2) { /* odd length: the first nibble stands alone */
		if ((lo = kl_hex_digit((unsigned char)serial[0])) < 0)
			return kl_error_set(KL_E_DB, "stored serial '%s' is malformed", serial);
		mag[n++] = (unsigned char)lo;
		i = 1;
	}
	for (; i < hexlen; i += 2) {
		hi = kl_hex_digit((unsigned char)serial[i]);
		lo = kl_hex_digit((unsigned char)serial[i + 1]);
		if (hi < 0 || lo < 0)
			return kl_error_set(KL_E_DB, "stored serial '%s' is malformed", serial);
		mag[n++] = (unsigned char)(hi << 4 | lo);
	}
	/* The entry's content first, then framed into the CRL. */
	one->len = 0;
	kl_der_put_uint(one, mag, n);
	kl_der_put_time(one, (time_t)when);
	if (reason > 0) {
		unsigned char code = (unsigned char)reason;

		kl_der_put(one, reason_ext, sizeof(reason_ext));
		kl_der_put(one, &code, 1);
	}
	if (one->failed)
		return kl_error_set(KL_E_NOMEM, "CRL: out of memory");
	kl_der_put_hdr(ctx->d, KL_DER_SEQUENCE, one->len);
	kl_der_put(ctx->d, one->p, one->len);
	if (ctx->d->failed)
		return kl_error_set(KL_E_NOMEM, "CRL: out of memory");
	ctx->count++;
	return 0;
}

static int encode(unsigned char **out, int n, const char *what)
{
	if (n <= 0 || !*out)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode %s", what);
	return n;
}

/* X.690 INTEGER for a CRL number (RFC 5280 §5.2.3). */
static int crl_number_ext(int64_t number, unsigned char **out)
{
	ASN1_INTEGER *ai = ASN1_INTEGER_new();
	X509_EXTENSION *ext = NULL;
	int n = -1;

	if (ai && ASN1_INTEGER_set_int64(ai, number))
		ext = X509V3_EXT_i2d(NID_crl_number, 0, ai);
	if (ext)
		n = i2d_X509_EXTENSION(ext, out);
	X509_EXTENSION_free(ext);
	ASN1_INTEGER_free(ai);
	return encode(out, n, "CRL number");
}

static int aki_ext(const X509 *issuer, unsigned char **out)
{
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id((X509 *)issuer);
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	X509_EXTENSION *ext = NULL;
	int n = -1;

	if (!ski) {
		AUTHORITY_KEYID_free(akid);
		return kl_error_set(KL_E_INVALID, "CA certificate has no subjectKeyIdentifier");
	}
	if (akid && (akid->keyid = ASN1_OCTET_STRING_dup(ski)) != NULL)
		ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
	if (ext)
		n = i2d_X509_EXTENSION(ext, out);
	X509_EXTENSION_free(ext);
	AUTHORITY_KEYID_free(akid);
	return encode(out, n, "authorityKeyIdentifier");
}

static int sig_alg(EVP_PKEY *key, const EVP_MD *md, unsigned char **out)
{
	X509_ALGOR *alg = X509_ALGOR_new();
	int nid = NID_undef, n = -1;

	if (alg && OBJ_find_sigid_by_algs(&nid, EVP_MD_get_type(md), EVP_PKEY_get_base_id(key)) &&
	    X509_ALGOR_set0(alg, OBJ_nid2obj(nid),
	                    EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF,
	                    NULL))
		n = i2d_X509_ALGOR(alg, out);
	X509_ALGOR_free(alg);
	return encode(out, n, "signature algorithm");
}

int kl_crl_build(kl_store *store, int64_t issuer_id, const X509 *issuer, EVP_PKEY *key,
                 const EVP_MD *md, int64_t crl_number, time_t now, int64_t next_update_s,
                 unsigned char **ret, size_t *ret_len, int64_t *ret_count)
{
	unsigned char *alg = NULL, *name = NULL, *aki = NULL, *num = NULL, *sig = NULL;
	int alg_len, name_len, aki_len, num_len, r;
	kl_der d = { 0 }, head = { 0 };
	struct entries_ctx ctx = { .d = &d };
	size_t entries_len, exts_len, tbs_len, sig_len = 0, total, front, start;
	EVP_MD_CTX *mctx = NULL;

	if ((r = alg_len = sig_alg(key, md, &alg)) < 0 ||
	    (r = name_len = encode(&name, i2d_X509_NAME(X509_get_subject_name(issuer), &name),
	                           "issuer name")) < 0 ||
	    (r = aki_len = aki_ext(issuer, &aki)) < 0 ||
	    (r = num_len = crl_number_ext(crl_number, &num)) < 0)
		goto out;

	/* The fixed fields before the entries. */
	static const unsigned char version_v2[] = { 0x02, 0x01, 0x01 };
	kl_der_put(&head, version_v2, sizeof(version_v2));
	kl_der_put(&head, alg, (size_t)alg_len);
	kl_der_put(&head, name, (size_t)name_len);
	kl_der_put_time(&head, now);
	kl_der_put_time(&head, now + (time_t)next_update_s);
	if (head.failed || head.len + 32 > CRL_FRONT_MAX) {
		r = kl_error_set(KL_E_INVALID, "CRL header too large");
		goto out;
	}

	/* Entries, after room for everything in front of them. Expired
	 * certificates leave the CRL (RFC 5280 §3.3). */
	if (kl_der_reserve(&d, CRL_FRONT_MAX) < 0) {
		r = kl_error_set(KL_E_NOMEM, "CRL: out of memory");
		goto out;
	}
	d.len = CRL_FRONT_MAX;
	r = kl_store_revoked_each(store, issuer_id, (int64_t)now, put_entry, &ctx);
	if (r < 0)
		goto out;
	entries_len = d.len - CRL_FRONT_MAX;

	/* crlExtensions [0] EXPLICIT SEQUENCE { AKI, CRL number }. */
	exts_len = (size_t)aki_len + (size_t)num_len;
	kl_der_put_hdr(&d, KL_DER_CTX0, kl_der_hdr_size(exts_len) + exts_len);
	kl_der_put_hdr(&d, KL_DER_SEQUENCE, exts_len);
	kl_der_put(&d, aki, (size_t)aki_len);
	kl_der_put(&d, num, (size_t)num_len);
	if (d.failed) {
		r = kl_error_set(KL_E_NOMEM, "CRL: out of memory");
		goto out;
	}

	/* Now every length is known: write the front, right-aligned against
	 * the entries. An empty CRL leaves revokedCertificates out entirely. */
	size_t revoked_len = entries_len ? kl_der_hdr_size(entries_len) + entries_len : 0;
	tbs_len = head.len + revoked_len + (d.len - CRL_FRONT_MAX - entries_len);
	front =
	    kl_der_hdr_size(tbs_len) + head.len + (entries_len ? kl_der_hdr_size(entries_len) : 0);
	start = CRL_FRONT_MAX - front;
	{
		unsigned char *q = d.p + start;

		kl_der_hdr_write(q, KL_DER_SEQUENCE, tbs_len);
		q += kl_der_hdr_size(tbs_len);
		memcpy(q, head.p, head.len);
		q += head.len;
		if (entries_len)
			kl_der_hdr_write(q, KL_DER_SEQUENCE, entries_len);
	}
	tbs_len += kl_der_hdr_size(tbs_len);

	/* Sign the TBSCertList in the HSM, then check the signature with the
	 * CA certificate's key before anything leaves. */
	mctx = EVP_MD_CTX_new();
	if (!mctx || EVP_DigestSignInit(mctx, NULL, md, NULL, key) <= 0 ||
	    EVP_DigestSign(mctx, NULL, &sig_len, d.p + start, tbs_len) <= 0 ||
	    !(sig = malloc(sig_len)) ||
	    EVP_DigestSign(mctx, sig, &sig_len, d.p + start, tbs_len) <= 0) {
		r = kl_error_set_ssl(KL_E_HSM, "sign CRL");
		goto out;
	}
	EVP_MD_CTX_free(mctx);
	mctx = EVP_MD_CTX_new();
	if (!mctx ||
	    EVP_DigestVerifyInit(mctx, NULL, md, NULL, X509_get0_pubkey((X509 *)issuer)) <= 0 ||
	    EVP_DigestVerify(mctx, sig, sig_len, d.p + start, tbs_len) != 1) {
		r = kl_error_set_ssl(KL_E_CRYPTO,
		                     "CRL signature does not verify with the CA certificate");
		goto out;
	}

	/* signatureAlgorithm, signatureValue BIT STRING (no unused bits). */
	kl_der_put(&d, alg, (size_t)alg_len);
	kl_der_put_hdr(&d, KL_DER_BIT_STRING, sig_len + 1);
	kl_der_put(&d, "\0", 1);
	kl_der_put(&d, sig, sig_len);
	if (d.failed) {
		r = kl_error_set(KL_E_NOMEM, "CRL: out of memory");
		goto out;
	}
	/* The outer CertificateList header goes just before the TBS. */
	total = d.len - start;
	if (kl_der_hdr_size(total) > start) {
		r = kl_error_set(KL_E_INVALID, "CRL header room exhausted");
		goto out;
	}
	start -= kl_der_hdr_size(total);
	kl_der_hdr_write(d.p + start, KL_DER_SEQUENCE, total);
	memmove(d.p, d.p + start, d.len - start);
	*ret_len = d.len - start;
	*ret = d.p;
	d.p = NULL; /* transferred */
	if (ret_count)
		*ret_count = ctx.count;
	r = 0;
out:
	EVP_MD_CTX_free(mctx);
	OPENSSL_free(alg);
	OPENSSL_free(name);
	OPENSSL_free(aki);
	OPENSSL_free(num);
	free(sig);
	kl_der_free(&d);
	kl_der_free(&head);
	kl_der_free(&ctx.scratch);
	return r;
}
