/* Identity proofs shared by the engine and the lifecycle. See identity.h. */
#include "identity_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "evidence_internal.h"
#include "kl_error.h"
#include "tpm_certify.h"

static int digest(const char *label, const char *serial, const unsigned char *nonce, size_t n,
                  unsigned char out[32])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
	         EVP_DigestUpdate(m, label, strlen(label) + 1) == 1 &&
	         EVP_DigestUpdate(m, serial, strlen(serial) + 1) == 1 &&
	         EVP_DigestUpdate(m, nonce, n) == 1 && EVP_DigestFinal_ex(m, out, NULL) == 1;

	EVP_MD_CTX_free(m);
	return ok ? 0 : kl_error_set_ssl(KL_E_CRYPTO, "SHA-256 of the proof");
}

int kl_identity_sign_check(kl_tpm *t, const kl_tpm_object *key, EVP_PKEY *pub, const char *label,
                           const char *serial, unsigned char nonce_out[32], unsigned char **sig_out,
                           size_t *sig_len)
{
	unsigned char nonce[32], md[32], *sig = NULL;
	size_t len = 0;
	EVP_PKEY_CTX *v;
	int ok, rc;

	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "no random nonce");
	if ((rc = digest(label, serial, nonce, sizeof(nonce), md)) < 0)
		return rc;
	rc = kl_tpm_sign(t, key, md, sizeof(md), &sig, &len);
	if (rc < 0)
		return rc;
	v = EVP_PKEY_CTX_new(pub, NULL);
	ok = v && EVP_PKEY_verify_init(v) > 0 && EVP_PKEY_verify(v, sig, len, md, sizeof(md)) == 1;
	EVP_PKEY_CTX_free(v);
	if (nonce_out)
		memcpy(nonce_out, nonce, sizeof(nonce));
	if (sig_out) {
		*sig_out = sig;
		*sig_len = len;
	} else {
		free(sig);
	}
	return ok ? 0 : kl_error_set(KL_E_CRYPTO, "the signature does not verify");
}

int kl_identity_check_keys(const kl_tpm_object *iak, const kl_tpm_object *idevid, int *which,
                           kl_attest_verdict *verdict)
{
	const struct {
		const kl_tpm_object *key;
		kl_attest_key_kind kind;
	} keys[2] = {
		{ iak,
		  kl_tpm_object_is_legacy(iak) ? KL_ATTEST_KEY_IAK_LEGACY : KL_ATTEST_KEY_IAK },
		{ idevid, kl_tpm_object_is_legacy(idevid) ? KL_ATTEST_KEY_IDEVID_LEGACY
		                                          : KL_ATTEST_KEY_IDEVID },
	};
	int rc = 0;

	for (int i = 0; rc == 0 && i < 2; i++) {
		unsigned char *area = NULL;
		size_t len = 0;

		*verdict = KL_ATTEST_OK;
		*which = i;
		rc = kl_tpm_object_public_area(keys[i].key, &area, &len);
		if (rc == 0)
			rc = kl_attest_check_public(area, len, keys[i].kind, verdict);
		free(area);
	}
	return rc;
}

int kl_identity_prove(kl_tpm *t, const kl_tpm_object *key, EVP_PKEY *pub, const char *label,
                      const char *serial, json_object *ev, int *ev_rc)
{
	unsigned char nonce[32], *sig = NULL;
	size_t sig_len = 0;
	int rc = kl_identity_sign_check(t, key, pub, label, serial, nonce, &sig, &sig_len);

	*ev_rc = 0;
	/* A failed proof keeps its own detail for the refusal: the evidence of
	 * it is recorded when it can be, and its failure is not reported. */
	if (ev && sig) {
		int e = kl_ev_signature(ev, nonce, sig, sig_len);

		if (rc == 0)
			*ev_rc = e;
	}
	free(sig);
	return rc;
}

int kl_identity_certify_creation(kl_tpm *t, const kl_tpm_object *key, const kl_tpm_object *signer,
                                 EVP_PKEY *signer_pub, json_object *ev, kl_attest_verdict *verdict,
                                 int *ev_rc)
{
	unsigned char nonce[32], *attest = NULL, *sig = NULL, *cd = NULL;
	size_t attest_len = 0, sig_len = 0, cd_len = 0;
	kl_tpm_name signer_name, key_name;
	kl_attest_report rep = { .verdict = KL_ATTEST_OK };
	int rc;

	*verdict = KL_ATTEST_OK;
	*ev_rc = 0;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return kl_error_set_ssl(KL_E_UNAVAILABLE, "random nonce");
	kl_tpm_object_name(signer, &signer_name);
	kl_tpm_object_name(key, &key_name);
	rc = kl_tpm_object_creation_data(key, &cd, &cd_len);
	if (rc == 0)
		rc = kl_tpm_certify_creation(t, key, signer, nonce, sizeof(nonce), &attest,
		                             &attest_len, &sig, &sig_len);
	if (rc == 0) {
		rc = kl_attest_verify_creation(attest, attest_len, sig, sig_len, signer_pub,
		                               &signer_name, &key_name, cd, cd_len, nonce,
		                               sizeof(nonce), &rep);
		*verdict = rep.verdict;
	}
	if (rc == 0 && ev) {
		*ev_rc = kl_ev_certify(ev, nonce, sizeof(nonce), attest, attest_len, sig, sig_len);
		if (*ev_rc == 0)
			*ev_rc = kl_ev_hex(ev, "creation_data", cd, cd_len);
	}
	free(attest);
	free(sig);
	free(cd);
	return rc;
}

const char *kl_identity_reason(const char *prefix, kl_attest_verdict v, char *buf, size_t size)
{
	snprintf(buf, size, "%s_%s", prefix, kl_attest_verdict_name(v));
	for (char *p = buf; *p; p++)
		if (*p == '-')
			*p = '_';
	return buf;
}
