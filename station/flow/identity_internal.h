/* Private to station/flow/. The proofs a DUT gives of its identity keys, shared by the provisioning
 * engine (proof of possession, the "already provisioned" check) and the
 * lifecycle (proof of identity before a renewal or a decommission). */
#ifndef KL_FLOW_IDENTITY_INTERNAL_H
#define KL_FLOW_IDENTITY_INTERNAL_H

#include <stddef.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "attest.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_object.h"

/* The key signs SHA-256(label || 0 || serial || 0 || nonce), nonce being a
 * fresh 32-byte station nonce, with TPM2_Sign; the signature must verify
 * with pub. The label keeps a signature made for one purpose from serving
 * another. nonce_out (may be NULL) receives the nonce; *sig_out (sig_out
 * may be NULL; free() it) the DER signature whenever the TPM signed, also
 * when it does not verify, for the evidence. Returns 0, -KL_E_CRYPTO when
 * it does not verify, or the TPM's error. */
int kl_identity_sign_check(kl_tpm *t, const kl_tpm_object *key, EVP_PKEY *pub, const char *label,
                           const char *serial, unsigned char nonce_out[32], unsigned char **sig_out,
                           size_t *sig_len) KL_MUST_CHECK;

/* kl_identity_sign_check with its nonce and signature recorded in ev (may
 * be NULL), for the provisioning engine and the lifecycle alike. Returns
 * the proof's verdict: 0, or negative when the key did not prove itself
 * (the error detail says why). *ev_rc is set apart: 0, or the error of
 * recording the evidence of a proof that held (out of memory), which the
 * caller reports as a failure of the station, not of the device. */
int kl_identity_prove(kl_tpm *t, const kl_tpm_object *key, EVP_PKEY *pub, const char *label,
                      const char *serial, json_object *ev, int *ev_rc) KL_MUST_CHECK;

/* The IAK's and the IDevID's public areas, as the TPM reports them, against
 * the DevID spec's templates (kl_attest_check_public). On -KL_E_CRYPTO,
 * *which is 0 for the IAK or 1 for the IDevID and *verdict says what is
 * wrong; other negative values are errors reading the areas. */
int kl_identity_check_keys(const kl_tpm_object *iak, const kl_tpm_object *idevid, int *which,
                           kl_attest_verdict *verdict) KL_MUST_CHECK;

/* signer (the station's attestation key, or the IAK) certifies with
 * TPM2_CertifyCreation that this TPM created key as an endorsement primary,
 * over a fresh nonce; the attestation must verify with signer_pub, which the
 * caller trusts (the activated attestation key's, or the IAK certificate's)
 * (kl_attest_verify_creation). With ev, the proof is recorded there:
 * "nonce", "attest", "signature", "creation_data".
 * Returns 0; -KL_E_CRYPTO when the attestation does not prove it (*verdict
 * says why); another negative value for a failure of the TPM or of the
 * station. *ev_rc is set apart, as for kl_identity_prove. */
int kl_identity_certify_creation(kl_tpm *t, const kl_tpm_object *key, const kl_tpm_object *signer,
                                 EVP_PKEY *signer_pub, json_object *ev, kl_attest_verdict *verdict,
                                 int *ev_rc) KL_MUST_CHECK;

/* A refusal reason from a verdict: ("certify", bad-signature) gives
 * "certify_bad_signature" in buf. */
const char *kl_identity_reason(const char *prefix, kl_attest_verdict v, char *buf, size_t size);

#endif
