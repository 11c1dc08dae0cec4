/* Private to station/tpm/: the station's in-process TCTI over a
 * keyline-agent link (tpm_agent.c). Same guarantees as tpm_link.c's
 * swtpm: TCTI: a deadline per command set when it is sent, the cancel
 * predicate asked every 50 ms while waiting, a TCTI I/O error (never
 * TRY_AGAIN) and a dead link on timeout or on anything that is not a TPM
 * response, the why in tpm_link.c's thread-local record. A link that
 * closes or ends with ERROR is TPM_LINK_LOST. */
#ifndef KL_STATION_TPM_AGENT_INTERNAL_H
#define KL_STATION_TPM_AGENT_INTERNAL_H

#include <stdbool.h>

#include <tss2/tss2_tcti.h>

#include "link_conn.h"
#include "tpm_link_internal.h"

struct tpm_agent;

/* Makes the TCTI on c (not owned). cancelled may be NULL. */
int tpm_agent_open(kl_link_conn *c, int timeout_ms, bool (*cancelled)(void *ctx), void *cancel_ctx,
                   TSS2_TCTI_CONTEXT **ret, struct tpm_agent **ret_agent) KL_MUST_CHECK;
void tpm_agent_free(struct tpm_agent *a);

/* As tpm_link_rearm: after a cancel the link takes commands again (the
 * cancelled command's late answer is skipped). -KL_E_STATE when dead. */
int tpm_agent_rearm(struct tpm_agent *a, int timeout_ms) KL_MUST_CHECK;

tpm_link_state tpm_agent_state_get(const struct tpm_agent *a);

#endif
