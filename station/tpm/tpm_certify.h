/* What the DUT's TPM says about its keys: TPM2_CertifyCreation of one key
 * by another (provisioning steps 8 and 9, checked in software by attest.h) and
 * TPM2_Sign of a digest (the proof of possession of step 10).
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_CERTIFY_H
#define KL_STATION_TPM_CERTIFY_H

#include <stddef.h>

#include "kl_error.h"
#include "tpm.h"
#include "tpm_object.h"

/* TPM2_CertifyCreation (TPM 2.0 Part 3 §18.3): signer (a signing key: the
 * station's attestation key for the IAK, the IAK for the IDevID) attests
 * that this TPM created certified, with the creation data and ticket the
 * TPM returned then (kl_tpm_object_create / kl_tpm_identity_create keep
 * them), and qualifying_data (the station's fresh nonce, 1..64 bytes) as
 * extraData. The signer is authorized by its (empty) password in the USER
 * role; the certified object needs no authorization, which is why this and
 * not TPM2_Certify proves keys made from the DevID spec's templates, whose
 * ADMIN role is behind a policy. Both keys must belong to t.
 * On success *attest (free() it) holds the *attest_len bytes of the
 * marshalled TPMS_ATTEST as the TPM signed them, and *sig (free() it) the
 * ECDSA signature as a DER ECDSA-Sig-Value (X9.62) of *sig_len bytes.
 * Returns 0, -KL_E_INVALID, -KL_E_STATE (certified was loaded back, not
 * created: no ticket), -KL_E_TPM, -KL_E_UNSUPPORTED (a signer that is not
 * ECDSA). */
int kl_tpm_certify_creation(kl_tpm *t, const kl_tpm_object *certified, const kl_tpm_object *signer,
                            const unsigned char *qualifying_data, size_t qualifying_len,
                            unsigned char **attest, size_t *attest_len, unsigned char **sig,
                            size_t *sig_len) KL_MUST_CHECK;

/* TPM2_Sign (Part 3 §20.2) of a digest with the object's own scheme
 * (ECDSA-SHA256 for the IDevID: digest_len must be 32), e.g. the IDevID's
 * proof of possession (step 10). Only unrestricted signing keys: a
 * restricted key (the IAK) signs only digests the TPM computed itself (a
 * TPM2_Hash ticket over the message, which this digest interface does not
 * have) and is refused with -KL_E_UNSUPPORTED before anything reaches the
 * TPM. On success *sig (free() it) is a DER ECDSA-Sig-Value.
 * Returns 0, -KL_E_INVALID, -KL_E_UNSUPPORTED, -KL_E_TPM. */
int kl_tpm_sign(kl_tpm *t, const kl_tpm_object *obj, const unsigned char *digest, size_t digest_len,
                unsigned char **sig, size_t *sig_len) KL_MUST_CHECK;

#endif
