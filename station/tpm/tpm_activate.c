/* Credential activation on the DUT's TPM (provisioning step 8), over ESAPI.
 *
 * kl_tpm_activate_credential loads two things next to the credentialed
 * object: the EK, recreated from its TCG template, and a policy session.
 * Both are tracked in the kl_tpm and flushed before it returns, on every
 * path: swtpm has no resource manager and only three object slots, and the
 * credentialed object already holds one. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_activate.h"
#include "tpm_ek_internal.h"
#include "tpm_internal.h"
#include "tpm_object_internal.h"

/* Flushes *h if set and clears it. After a failure (r < 0) the flush is
 * quiet and r is kept; otherwise a failed flush is the error. */
static int tpm_flush_keep(kl_tpm *t, ESYS_TR *h, int r)
{
	if (*h == ESYS_TR_NONE)
		return r;
	if (r < 0)
		tpm_flush_quiet(t, *h);
	else
		r = tpm_flush(t, *h);
	*h = ESYS_TR_NONE;
	return r;
}

/* The EK of type, recreated (TPM2_CreatePrimary with the TCG template, as in
 * kl_tpm_ek_public_name) and left loaded and tracked in *ret. *name_alg is
 * its nameAlg, which its policy session must use. */
static int ek_load(kl_tpm *t, kl_ek_type type, ESYS_TR *ret, TPMI_ALG_HASH *name_alg)
{
	TPM2B_PUBLIC *pub = NULL;
	int r = tpm_ek_load(t, type, ret, &pub);

	if (r == 0)
		*name_alg = pub->publicArea.nameAlg;
	Esys_Free(pub);
	return r;
}

/* The marshalled TPM2Bs of c into ESAPI's structures: each one whole TPM2B
 * that fits. Bad input is ours to report, before anything reaches the TPM. */
static int credential_unmarshal(const kl_credential *c, TPM2B_ID_OBJECT *blob,
                                TPM2B_ENCRYPTED_SECRET *secret)
{
	size_t off = 0;
	TSS2_RC rc;

	if (!c || !c->blob || !c->secret || c->blob_len < 2 || c->secret_len < 2 ||
	    c->blob_len > sizeof(blob->credential) + 2 ||
	    c->secret_len > sizeof(secret->secret) + 2 ||
	    (((size_t)c->blob[0] << 8) | c->blob[1]) != c->blob_len - 2 ||
	    (((size_t)c->secret[0] << 8) | c->secret[1]) != c->secret_len - 2)
		return kl_error_set(KL_E_INVALID,
		                    "ActivateCredential: the credential is not a TPM2B_ID_OBJECT "
		                    "and a TPM2B_ENCRYPTED_SECRET");
	rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(c->blob, c->blob_len, &off, blob);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "unmarshal TPM2B_ID_OBJECT");
	off = 0;
	rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(c->secret, c->secret_len, &off, secret);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "unmarshal TPM2B_ENCRYPTED_SECRET");
	return 0;
}

/* TPM 2.0 Part 3 §12.5: activateHandle (obj) needs the ADMIN role, given by
 * its password as it has no adminWithPolicy; keyHandle (the EK) the USER
 * role, given by the policy session. */
int kl_tpm_activate_credential(kl_tpm *t, kl_ek_type ek, const kl_tpm_object *obj,
                               const kl_credential *c, kl_secret **ret)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;
	TPM2B_DIGEST *cert_info = NULL;
	TPM2B_ID_OBJECT blob;
	TPM2B_ENCRYPTED_SECRET secret;
	ESYS_TR ek_h = ESYS_TR_NONE, session = ESYS_TR_NONE;
	TPMI_ALG_HASH name_alg = TPM2_ALG_NULL;
	TSS2_RC rc;
	int r;

	if (!t || !obj || obj->tpm != t)
		return kl_error_set(KL_E_INVALID,
		                    "ActivateCredential: the object does not belong to this TPM");
	if (!kl_ek_type_name(ek))
		return kl_error_set(KL_E_INVALID, "ActivateCredential: unknown EK type %d",
		                    (int)ek);
	r = credential_unmarshal(c, &blob, &secret);
	if (r < 0)
		return r;

	r = ek_load(t, ek, &ek_h, &name_alg);
	if (r < 0)
		goto out;
	r = tpm_ek_policy_session(t, ek, name_alg, &session);
	if (r < 0)
		goto out;

	TPM_CALL(t, rc,
	         Esys_ActivateCredential(t->esys, obj->handle, ek_h, ESYS_TR_PASSWORD, session,
	                                 ESYS_TR_NONE, &blob, &secret, &cert_info));
	if (rc != TSS2_RC_SUCCESS) {
		TSS2_RC code = tpm_rc_code(rc);

		/* Part 3 §12.5: the outer HMAC does not verify (another
		 * object's name, another EK's seed) is TPM_RC_INTEGRITY; an RSA
		 * secret that does not decrypt is TPM_RC_VALUE. libtpms (swtpm)
		 * answers TPM_RC_FAILURE for the latter: its OpenSSL-based
		 * CryptRsaDecrypt maps every decryption error to it. */
		if (code == TPM2_RC_INTEGRITY || code == TPM2_RC_VALUE)
			r = kl_tpm_rc_error(rc,
			                    "Esys_ActivateCredential(EK %s): the TPM refuses the "
			                    "credential (made for another EK or another object)",
			                    kl_ek_type_name(ek));
		else if (code == TPM2_RC_FAILURE && ek == KL_EK_RSA2048)
			r = kl_tpm_rc_error(
			    rc,
			    "Esys_ActivateCredential(EK %s): the TPM refuses the "
			    "credential (its secret does not decrypt with this EK: "
			    "libtpms says TPM_RC_FAILURE for that) or is in failure "
			    "mode",
			    kl_ek_type_name(ek));
		else
			r = kl_tpm_rc_error(rc, "Esys_ActivateCredential(EK %s)",
			                    kl_ek_type_name(ek));
		goto out;
	}
	r = kl_secret_from_bytes(cert_info->buffer, cert_info->size, &got);

out:
	if (cert_info) {
		OPENSSL_cleanse(cert_info, sizeof(*cert_info));
		Esys_Free(cert_info);
	}
	r = tpm_flush_keep(t, &session, r);
	r = tpm_flush_keep(t, &ek_h, r);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(got);
	return 0;
}
