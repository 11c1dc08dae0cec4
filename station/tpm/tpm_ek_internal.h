/* Station-internal: EK templates and TPM public areas as tpm2-tss types.
 * Only station's own .c files include it; tpm2-tss types stay in station/.
 * Nothing here talks to a TPM: tpm.c does, with these helpers. */
#ifndef KL_STATION_TPM_EK_INTERNAL_H
#define KL_STATION_TPM_EK_INTERNAL_H

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "tpm.h"

/* Fills *ret with the default template for type. Returns 0 or -KL_E_INVALID. */
int kl_ek_template_get(kl_ek_type type, TPM2B_PUBLIC *ret);

/* Checks the public area a TPM returned for the EK of type against the
 * template it was given. Returns 0 or -KL_E_TPM. */
int kl_ek_check_public(kl_ek_type type, const TPMT_PUBLIC *want, const TPMT_PUBLIC *got);

/* The TPM name of a public area (TPM 2.0 Part 1 §16). */
int kl_tpm_public_name(const TPMT_PUBLIC *p, kl_tpm_name *ret);

/* The public key of an RSA or ECC public area as an OpenSSL key. */
int kl_tpm_public_to_pkey(const TPMT_PUBLIC *p, EVP_PKEY **ret);

/* The one place where a TSS2_RC becomes a kl_err (defined in tpm.c). */
int kl_tpm_rc_error(TSS2_RC rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
