/* Private to station/tpm/: the endorsement key as tpm2-tss types. The
 * templates and the check of what a TPM returns need no TPM (ek_template.c);
 * recreating the EK and opening a session that satisfies its policy do
 * (tpm_ek.c). */
#ifndef KL_STATION_TPM_EK_INTERNAL_H
#define KL_STATION_TPM_EK_INTERNAL_H

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tpm2_types.h>

#include "kl_error.h"
#include "tpm.h"

/* Fills *ret with the default template for type. Returns 0 or -KL_E_INVALID. */
int kl_ek_template_get(kl_ek_type type, TPM2B_PUBLIC *ret) KL_MUST_CHECK;

/* Checks the public area a TPM returned for the EK of type against the
 * template it was given. Returns 0 or -KL_E_TPM. */
int kl_ek_check_public(kl_ek_type type, const TPMT_PUBLIC *want,
                       const TPMT_PUBLIC *got) KL_MUST_CHECK;

/* Recreates the EK of that type (TPM2_CreatePrimary with its TCG template),
 * checks the returned public area against the template, and leaves it
 * loaded and tracked in *ret; *out_public (Esys_Free it) is its public
 * area. */
int tpm_ek_load(kl_tpm *t, kl_ek_type type, ESYS_TR *ret, TPM2B_PUBLIC **out_public);

/* A policy session of name_alg (the EK's nameAlg) that satisfies the
 * authPolicy of the EK of type with the endorsement hierarchy's empty
 * password, left tracked in *ret. */
int tpm_ek_policy_session(kl_tpm *t, kl_ek_type type, TPMI_ALG_HASH name_alg, ESYS_TR *ret);

#endif
