/* The issuance pipeline: see the order in ca.h. Batches share their
 * commits (one for every PENDING row, one for every ISSUED row with its audit
 * entry), which is what makes durable issuance fast; a single issuance is a
 * batch of one. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include <json-c/json.h>

#include "ca_internal.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "kl_failpoint.h"
#include "store_internal.h"

/* One certificate on its way through the batch. */
struct item {
	const kl_cert_request *req;
	const kl_profile *p;
	X509 *x;
	unsigned char *tbs;
	size_t tbs_len;
	int64_t not_after;
	char subject[512];
	bool reserved;
	bool signed_ok;
	char why[KL_ERROR_DETAIL_MAX];
};

static void item_fail(struct item *it, kl_issue_result *res, int rc)
{
	res->rc = rc;
	snprintf(res->error, sizeof(res->error), "%s", kl_error_detail());
	snprintf(it->why, sizeof(it->why), "%s", kl_error_detail());
}

/* Step 1: the unsigned certificate and its final TBS bytes. */
static int item_build(kl_ca *ca, struct item *it, kl_issue_result *res)
{
	const EVP_MD *md;
	struct tm tm;
	int r;

	X509_free(it->x);
	it->x = NULL;
	OPENSSL_free(it->tbs);
	it->tbs = NULL;
	if (!it->req->profile || !it->req->pubkey)
		return kl_error_set(KL_E_INVALID, "issue: a profile and a public key are required");
	it->p = kl_ca_profile(ca, it->req->profile);
	if (!it->p)
		return -(int)kl_error_code();
	md = kl_profile_md(it->p);
	if (!md)
		return kl_error_set(KL_E_UNSUPPORTED, "digest %s", it->p->digest);
	kl_ca_urls urls = { .crl = ca->crl_url,
		            .cps = ca->cps_url,
		            .ca_issuers = ca->ca_issuers_url,
		            .ocsp = ca->ocsp_url };

	if ((r = kl_cert_build(ca->cert, &urls, it->p, it->req, &it->x)) < 0 ||
	    (r = kl_cert_set_sigalg(it->x, ca->key, md)) < 0 ||
	    (r = kl_cert_tbs_der(it->x, &it->tbs, &it->tbs_len)) < 0 ||
	    (r = kl_serial_hex(X509_get0_serialNumber(it->x), res->serial, sizeof(res->serial))) <
	        0)
		return r;
	kl_cert_subject_line(it->x, it->subject, sizeof(it->subject));
	ASN1_TIME_to_tm(X509_get0_notAfter(it->x), &tm);
	it->not_after = (int64_t)timegm(&tm);
	return 0;
}

/* Steps 4 and 5: sign in the HSM; the signature verifies with the CA
 * certificate's key and the signed TBS is exactly the stored one. */
static int item_sign(kl_ca *ca, struct item *it, const char *serial)
{
	unsigned char *signed_tbs = NULL;
	size_t signed_len = 0;
	int r;

	if (X509_sign(it->x, ca->key, kl_profile_md(it->p)) <= 0)
		return kl_error_set_ssl(KL_E_HSM, "sign certificate %s", serial);
	if (X509_verify(it->x, X509_get0_pubkey(ca->cert)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO,
		                        "certificate %s: signature does not verify with the CA "
		                        "certificate (HSM key mismatch or fault); not issued",
		                        serial);
	r = kl_cert_tbs_der(it->x, &signed_tbs, &signed_len);
	if (r < 0)
		return r;
	if (signed_len != it->tbs_len || CRYPTO_memcmp(signed_tbs, it->tbs, it->tbs_len) != 0)
		r = kl_error_set(
		    KL_E_CRYPTO,
		    "certificate %s: signed TBSCertificate differs from the pending one", serial);
	OPENSSL_free(signed_tbs);
	return r;
}

/* The audit detail of a certificate's outcome: serial, profile, subject,
 * then last_key ("reason" for a rejection, "sha256" for an issuance). NULL
 * when out of memory. */
static json_object *record_detail(const char *serial, const char *profile, const char *subject,
                                  const char *last_key, const char *last)
{
	json_object *d = json_object_new_object();

	d = kl_store_detail_add(d, "serial", json_object_new_string(serial));
	d = kl_store_detail_add(d, "profile", json_object_new_string(profile));
	d = kl_store_detail_add(d, "subject", json_object_new_string(subject));
	return kl_store_detail_add(d, last_key, json_object_new_string(last));
}

/* Step 6 for one item, inside the caller's transaction. */
static int item_record(kl_ca *ca, struct item *it, kl_issue_result *res, const char *actor,
                       unsigned char **der, int *der_len)
{
	char fp[72];
	int r;

	if (!it->signed_ok) {
		r = kl_store_cert_rejected(ca->store, ca->issuer_id, res->serial, it->why);
		if (r < 0)
			return r;
		return kl_store_audit_json(
		    ca->store, actor, "ca.reject",
		    record_detail(res->serial, it->p->name, it->subject, "reason", it->why));
	}
	*der_len = i2d_X509(it->x, der);
	if (*der_len <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode certificate");
	if ((r = kl_x509_fingerprint(it->x, fp)) < 0)
		return r; /* inside the step-6 transaction: the rows stay pending */
	r = kl_store_cert_issued(ca->store, ca->issuer_id, res->serial, *der, (size_t)*der_len);
	if (r < 0)
		return r;
	return kl_store_audit_json(
	    ca->store, actor, "ca.issue",
	    record_detail(res->serial, it->p->name, it->subject, "sha256", fp));
}

int kl_ca_issue_batch(kl_ca *ca, const kl_cert_request *reqs, size_t n, kl_issue_result *res)
{
	struct item *items;
	kl_cert_pending *pend;
	unsigned char **ders;
	int *der_lens;
	size_t n_pend = 0, collided = 0;
	int r = 0;

	if (n == 0 || n > KL_CA_BATCH_MAX)
		return kl_error_set(KL_E_INVALID, "a batch holds 1..%d requests", KL_CA_BATCH_MAX);
	memset(res, 0, n * sizeof(*res));
	items = calloc(n, sizeof(*items));
	pend = calloc(n, sizeof(*pend));
	ders = calloc(n, sizeof(*ders));
	der_lens = calloc(n, sizeof(*der_lens));
	if (!items || !pend || !ders || !der_lens) {
		r = kl_error_set(KL_E_NOMEM, "issue: out of memory");
		goto out;
	}

	/* 1-2: build every certificate, then reserve all serials with their
	 * intended TBS in one commit. A serial collision (2^-127 per pair)
	 * draws that one again. */
	for (size_t i = 0; i < n; i++) {
		items[i].req = &reqs[i];
		r = item_build(ca, &items[i], &res[i]);
		if (r < 0)
			item_fail(&items[i], &res[i], r);
	}
	for (int attempt = 0;; attempt++) {
		n_pend = 0;
		for (size_t i = 0; i < n; i++) {
			if (res[i].rc < 0)
				continue;
			pend[n_pend++] = (kl_cert_pending){
				.issuer_id = ca->issuer_id,
				.serial = res[i].serial,
				.profile = items[i].p->name,
				.subject = items[i].subject,
				.device_serial = reqs[i].serial_number,
				.tbs = items[i].tbs,
				.tbs_len = items[i].tbs_len,
				.not_after = items[i].not_after,
			};
		}
		if (n_pend == 0) {
			r = 0;
			goto out;
		}
		r = kl_store_cert_reserve_many(ca->store, pend, n_pend, &collided);
		if (r == -KL_E_EXISTS && attempt < 3) {
			for (size_t i = 0; i < n; i++) {
				if (res[i].rc == 0 &&
				    strcmp(res[i].serial, pend[collided].serial) == 0) {
					r = item_build(ca, &items[i], &res[i]);
					if (r < 0)
						item_fail(&items[i], &res[i], r);
					break;
				}
			}
			continue;
		}
		if (r < 0) {
			kl_error_wrap("reserve serials");
			goto out;
		}
		break;
	}
	for (size_t i = 0; i < n; i++)
		items[i].reserved = res[i].rc == 0;
	kl_failpoint("ca.after_pending");

	/* 3-5: lint; only what passes is signed, then checked. */
	for (size_t i = 0; i < n; i++) {
		if (!items[i].reserved)
			continue;
		r = kl_lint_cert(items[i].x, items[i].p, ca->cert);
		if (r < 0) {
			char why[KL_ERROR_DETAIL_MAX];

			snprintf(why, sizeof(why), "%s", kl_error_detail());
			kl_error_set(KL_E_INVALID, "certificate refused, nothing signed: %s", why);
			item_fail(&items[i], &res[i], -KL_E_INVALID);
			snprintf(items[i].why, sizeof(items[i].why), "%s", why);
			continue;
		}
		r = item_sign(ca, &items[i], res[i].serial);
		if (r < 0) {
			item_fail(&items[i], &res[i], r);
			continue;
		}
		items[i].signed_ok = true;
	}
	kl_failpoint("ca.after_sign");

	/* 6: ISSUED (or REJECTED) with an audit entry each, one commit. */
	const char *actor;
	r = kl_store_begin(ca->store);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (!items[i].reserved)
			continue;
		actor = reqs[i].actor ? reqs[i].actor : ca->actor;
		r = item_record(ca, &items[i], &res[i], actor, &ders[i], &der_lens[i]);
		if (r < 0)
			kl_store_rollback(ca->store);
	}
	if (r == 0)
		r = kl_store_commit(ca->store);
	if (r < 0) {
		/* Nothing recorded: the rows stay PENDING and the next start
		 * counts them as possibly issued. No certificate leaves. */
		kl_error_wrap("record certificates");
		goto out;
	}
	/* Hand back each certificate's DER, and unless the caller wants only
	 * that, an X509 decoded afresh from it: the object we built got its
	 * public key from raw parameters, and OpenSSL 3.0 only fills the key
	 * that X509_get0_pubkey returns when it decodes DER (which costs about
	 * a third of an issuance here). */
	for (size_t i = 0; i < n; i++) {
		const unsigned char *q = ders[i];

		if (!items[i].signed_ok)
			continue;
		if (!reqs[i].der_only) {
			res[i].cert = d2i_X509(NULL, &q, der_lens[i]);
			if (!res[i].cert) {
				kl_error_set_ssl(KL_E_NOMEM, "decode issued certificate %s",
				                 res[i].serial);
				item_fail(&items[i], &res[i], -KL_E_NOMEM);
				continue;
			}
		}
		res[i].der = ders[i];
		res[i].der_len = (size_t)der_lens[i];
		ders[i] = NULL; /* transferred */
	}
	r = 0;
out:
	if (r < 0) {
		/* The batch as a whole failed: every item says so. */
		for (size_t i = 0; i < n; i++) {
			if (res[i].rc == 0) {
				res[i].rc = r;
				snprintf(res[i].error, sizeof(res[i].error), "%s",
				         kl_error_detail());
			}
		}
	}
	for (size_t i = 0; items && i < n; i++) {
		X509_free(items[i].x);
		OPENSSL_free(items[i].tbs);
	}
	for (size_t i = 0; ders && i < n; i++)
		OPENSSL_free(ders[i]);
	free(items);
	free(pend);
	free(ders);
	free(der_lens);
	return r;
}

int kl_ca_issue(kl_ca *ca, const kl_cert_request *req, X509 **ret, char *serial_hex)
{
	kl_cert_request one = *req;
	kl_issue_result res;
	int r;

	one.der_only = false; /* this function returns the X509 */
	r = kl_ca_issue_batch(ca, &one, 1, &res);
	if (r == 0)
		r = res.rc;
	if (r < 0) {
		/* Put this item's own detail back in the error. */
		kl_error_set(kl_error_code() ? kl_error_code() : KL_E_INVALID, "%s", res.error);
		X509_free(res.cert);
		OPENSSL_free(res.der);
		return r;
	}
	OPENSSL_free(res.der);
	if (serial_hex)
		memcpy(serial_hex, res.serial, strlen(res.serial) + 1);
	*ret = res.cert;
	return 0;
}

static const char *name_text(const X509_NAME *n, int nid, char *buf, size_t size)
{
	int len = X509_NAME_get_text_by_NID(n, nid, buf, (int)size);

	return len > 0 ? buf : NULL;
}

int kl_ca_issue_csr(kl_ca *ca, X509_REQ *csr, const char *profile, const char *actor, X509 **ret,
                    char *serial_hex)
{
	char cn[128], o[128], ou[128], c[8], sn[128];
	const X509_NAME *n;
	EVP_PKEY *pub;

	pub = X509_REQ_get0_pubkey(csr);
	if (!pub)
		return kl_error_set_ssl(KL_E_INVALID, "CSR has no usable public key");
	/* Proof of possession: the request is signed by its own key. */
	if (X509_REQ_verify(csr, pub) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "CSR signature does not verify");
	n = X509_REQ_get_subject_name(csr);
	kl_cert_request req = {
		.profile = profile,
		.pubkey = pub,
		.serial_number = name_text(n, NID_serialNumber, sn, sizeof(sn)),
		.cn = name_text(n, NID_commonName, cn, sizeof(cn)),
		.o = name_text(n, NID_organizationName, o, sizeof(o)),
		.ou = name_text(n, NID_organizationalUnitName, ou, sizeof(ou)),
		.c = name_text(n, NID_countryName, c, sizeof(c)),
		.actor = actor,
	};
	return kl_ca_issue(ca, &req, ret, serial_hex);
}
