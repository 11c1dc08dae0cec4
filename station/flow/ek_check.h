/* The EK checks of provisioning steps 3 and 4 against a DUT: what its TPM
 * holds and answers (the EK certificate in NV, TPM_PT_MANUFACTURER, the EK
 * recreated from its template) checked by station/proof/trust.h. */
#ifndef KL_STATION_EK_CHECK_H
#define KL_STATION_EK_CHECK_H

#include <openssl/evp.h>

#include "kl_error.h"
#include "tpm.h"
#include "trust.h"

/* Steps 3 and 4: reads the EK certificate of that type from NV and the EK
 * chain indices the TPM defines (from 0x01C00100, within the bounds of
 * trust.h), verifies its chain to the bundle with those as untrusted
 * intermediates (the signature over the signed bytes, whatever quirks the
 * encoding has), checks the EK EKU and the TPM manufacturer in its SAN
 * against the TPM's TPM_PT_MANUFACTURER, and recreates the EK with the TCG
 * template to compare public keys. Returns 0 when the check ran (the verdict
 * says how it came out), or a negative kl_err when it could not run. */
int kl_ek_check(kl_tpm *tpm, const kl_trust *trust, kl_ek_type type,
                kl_ek_report *ret) KL_MUST_CHECK;

/* The two halves of kl_ek_check, for a caller that times them apart:
 * step 3 (certificate read, chain, EKU, manufacturer) and step 4 (the EK
 * recreated and compared; on success ek_sha256 is set and, when ek_ret is
 * not NULL, the EK public key is returned). */
int kl_ek_check_cert(kl_tpm *tpm, const kl_trust *trust, kl_ek_type type,
                     kl_ek_report *ret) KL_MUST_CHECK;
int kl_ek_check_match(kl_tpm *tpm, kl_ek_report *rep, EVP_PKEY **ek_ret) KL_MUST_CHECK;

#endif
