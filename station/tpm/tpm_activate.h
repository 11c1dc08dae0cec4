/* The DUT's side of credential activation (provisioning step 8).
 *
 *   kl_tpm_object *iak;
 *   kl_tpm_name name;
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_IAK_P256, &iak);        // tpm_object.h
 *   kl_tpm_object_name(iak, &name);
 *   kl_make_credential(ek_pub, KL_EK_P256, nonce, nonce_len, &name, &c);  // credential.h
 *   kl_tpm_activate_credential(t, KL_EK_P256, iak, c, &got);
 *   kl_tpm_object_free(iak);                                          // flushes it
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_ACTIVATE_H
#define KL_STATION_TPM_ACTIVATE_H

#include <stddef.h>

#include "kl_error.h"
#include "kl_secret.h"
#include "tpm.h"
#include "tpm_object.h"

/* What TPM2_MakeCredential returns (credential.h makes one in software), marshalled, ready for
 * TPM2_ActivateCredential: credentialBlob (a TPM2B_ID_OBJECT, its 2-byte size
 * first) and secret (a TPM2B_ENCRYPTED_SECRET, its 2-byte size first). Neither
 * is secret: both go to the DUT over an untrusted link. */
typedef struct kl_credential {
	unsigned char *blob;
	size_t blob_len;
	unsigned char *secret;
	size_t secret_len;
} kl_credential;

/* TPM2_ActivateCredential (TPM 2.0 Part 3 §12.5) with the EK of type ek
 * (recreated from its TCG template, provisioning step 4) and obj, the
 * credentialed object, which must belong to t. The EK is authorized by a
 * policy session of the EK's nameAlg that satisfies its authPolicy through
 * PolicySecret(TPM_RH_ENDORSEMENT) with the (empty) endorsement password:
 * PolicyA for L-1 and L-2; for H-3, whose PolicyB is PolicyOR(PolicyA,
 * PolicyC), followed by that PolicyOR. obj is authorized by its (empty)
 * password.
 * On success *ret (kl_secret_free) holds the credential the TPM recovered:
 * compare it with what was sent, in constant time (kl_secret_equal).
 * The EK and the session are flushed before this returns, on every path.
 * A credential made for another EK or another object is refused by the TPM
 * (TPM_RC_INTEGRITY, or TPM_RC_VALUE for an RSA secret that does not
 * decrypt): -KL_E_TPM with the TPM's code in the detail. */
int kl_tpm_activate_credential(kl_tpm *t, kl_ek_type ek, const kl_tpm_object *obj,
                               const kl_credential *c, kl_secret **ret) KL_MUST_CHECK;

#endif
