/* TPM2_CertifyCreation and TPM2_Sign with keys the caller holds
 * (provisioning steps 8 to 10), over ESAPI. Nothing here loads a transient object of its own. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>

#include <tss2/tss2_esys.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_certify.h"
#include "tpm_internal.h"
#include "tpm_object_internal.h"

/* TPMS_SIGNATURE_ECDSA -> DER ECDSA-Sig-Value (X9.62), what OpenSSL's
 * EVP_DigestVerify takes. */
static int ecdsa_to_der(const TPMT_SIGNATURE *s, unsigned char **ret, size_t *len)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *ss = NULL;
	unsigned char *der = NULL;
	int n;

	if (s->sigAlg != TPM2_ALG_ECDSA)
		return kl_error_set(KL_E_UNSUPPORTED, "TPM signature: algorithm 0x%04x, not ECDSA",
		                    s->sigAlg);
	r = BN_bin2bn(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size,
	              NULL);
	ss = BN_bin2bn(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size,
	               NULL);
	sig = ECDSA_SIG_new();
	if (!r || !ss || !sig || ECDSA_SIG_set0(sig, r, ss) != 1) {
		BN_free(r);
		BN_free(ss);
		ECDSA_SIG_free(sig);
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM signature: ECDSA_SIG");
	}
	n = i2d_ECDSA_SIG(sig, &der);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM signature: DER encoding");
	/* OPENSSL_malloc'd; hand out malloc'd memory as the API says */
	*ret = malloc((size_t)n);
	if (!*ret) {
		OPENSSL_free(der);
		return kl_error_set(KL_E_NOMEM, "TPM signature: out of memory");
	}
	memcpy(*ret, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return 0;
}

int kl_tpm_certify_creation(kl_tpm *t, const kl_tpm_object *certified, const kl_tpm_object *signer,
                            const unsigned char *qualifying_data, size_t qualifying_len,
                            unsigned char **attest, size_t *attest_len, unsigned char **sig,
                            size_t *sig_len)
{
	_cleanup_(esys_freep) TPM2B_ATTEST *info = NULL;
	_cleanup_(esys_freep) TPMT_SIGNATURE *signature = NULL;
	_cleanup_(freep) unsigned char *a = NULL;
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
	TPM2B_DATA qd = { 0 };
	TSS2_RC rc;
	int r;

	if (!tpm_object_of(t, certified) || !tpm_object_of(t, signer))
		return kl_error_set(KL_E_INVALID,
		                    "CertifyCreation: the keys do not belong to this TPM");
	if (!qualifying_data || qualifying_len == 0 || qualifying_len > 64)
		return kl_error_set(
		    KL_E_INVALID, "CertifyCreation: qualifying data of %zu bytes (1..64 expected)",
		    qualifying_len);
	if (!(signer->pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
		return kl_error_set(KL_E_INVALID,
		                    "CertifyCreation: the signer is not a signing key");
	if (!certified->creation.present)
		return kl_error_set(KL_E_STATE,
		                    "CertifyCreation: the key was loaded back, not created: the "
		                    "TPM's creation ticket is gone");
	qd.size = (UINT16)qualifying_len;
	memcpy(qd.buffer, qualifying_data, qualifying_len);

	/* Part 3 §18.3: signHandle needs the USER role, which userWithAuth
	 * gives to its (empty) password; objectHandle needs no authorization,
	 * so the identity keys' adminWithPolicy does not come into it. The
	 * TPM checks the ticket: the object was created by this TPM with
	 * this creation data. */
	TPM_CALL(t, rc,
	         Esys_CertifyCreation(t->esys, signer->handle, certified->handle, ESYS_TR_PASSWORD,
	                              ESYS_TR_NONE, ESYS_TR_NONE, &qd, &certified->creation.hash,
	                              &scheme, &certified->creation.ticket, &info, &signature));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_CertifyCreation");
	if (info->size == 0)
		return kl_error_set(KL_E_TPM,
		                    "CertifyCreation: the TPM returned an empty attestation");
	a = malloc(info->size);
	if (!a)
		return kl_error_set(KL_E_NOMEM, "CertifyCreation: out of memory");
	memcpy(a, info->attestationData, info->size);
	r = ecdsa_to_der(signature, sig, sig_len);
	if (r < 0)
		return kl_error_wrap("CertifyCreation");
	*attest_len = info->size;
	*attest = TAKE_PTR(a);
	return 0;
}

int kl_tpm_sign(kl_tpm *t, const kl_tpm_object *obj, const unsigned char *digest, size_t digest_len,
                unsigned char **sig, size_t *sig_len)
{
	_cleanup_(esys_freep) TPMT_SIGNATURE *signature = NULL;
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
	/* Part 3 §20.2: a NULL ticket is accepted for unrestricted keys only */
	const TPMT_TK_HASHCHECK ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
	TPM2B_DIGEST d = { 0 };
	TSS2_RC rc;

	if (!tpm_object_of(t, obj))
		return kl_error_set(KL_E_INVALID, "Sign: the key does not belong to this TPM");
	if (!(obj->pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
		return kl_error_set(KL_E_INVALID, "Sign: not a signing key");
	if (obj->pub.objectAttributes & TPMA_OBJECT_RESTRICTED)
		return kl_error_set(KL_E_UNSUPPORTED,
		                    "Sign: a restricted key signs only digests the TPM made "
		                    "(TPM2_Hash ticket); use an unrestricted key");
	if (obj->pub.type != TPM2_ALG_ECC ||
	    obj->pub.parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
	    obj->pub.parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
		return kl_error_set(KL_E_UNSUPPORTED, "Sign: only ECDSA-SHA256 keys");
	if (!digest || digest_len != 32)
		return kl_error_set(KL_E_INVALID, "Sign: a SHA-256 digest is 32 bytes, not %zu",
		                    digest_len);
	d.size = (UINT16)digest_len;
	memcpy(d.buffer, digest, digest_len);

	TPM_CALL(t, rc,
	         Esys_Sign(t->esys, obj->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d,
	                   &scheme, &ticket, &signature));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Sign");
	if (ecdsa_to_der(signature, sig, sig_len) < 0)
		return kl_error_wrap("Sign");
	return 0;
}
