/* Private to station/tpm/: the station's own TCTI for "swtpm:" links
 * (tpm_link.c), which bounds every TPM command in time.
 *
 * Why not tpm2-tss's timeouts: every synchronous Esys_* call sets the
 * context's timeout to TSS2_TCTI_TIMEOUT_BLOCK around its _Finish and loops
 * on TSS2_BASE_RC_TRY_AGAIN, so Esys_SetTimeout never reaches a synchronous
 * call; and tcti-swtpm of tpm2-tss 3.2 (Debian 12) ignores the receive
 * timeout altogether ("Asynchronous I/O not actually implemented") and
 * blocks in read(). Checked on this machine: a peer that accepts and never
 * answers holds Esys_GetCapability forever, with or without
 * Esys_SetTimeout, synchronous or _Async/_Finish.
 *
 * So the link keeps its own socket: every command gets a deadline when it
 * is sent, the waits poll the socket in short slices and ask the cancel
 * predicate between them, and a command that runs out of time or is
 * cancelled fails with a TCTI I/O error (never TRY_AGAIN, on which ESAPI
 * would loop), after which the link is dead. The why stays in a
 * thread-local record that kl_tpm_rc_error reads. */
#ifndef KL_STATION_TPM_LINK_INTERNAL_H
#define KL_STATION_TPM_LINK_INTERNAL_H

#include <stdbool.h>

#include <tss2/tss2_tcti.h>

#include "kl_error.h"

struct tpm_link;

/* What became of the link (kl_tpm_link_state of tpm.h says the same to
 * callers; this header stays free of tpm.h, which includes it). */
typedef enum tpm_link_state {
	TPM_LINK_OK,
	TPM_LINK_TIMEOUT,
	TPM_LINK_CANCELLED,
	TPM_LINK_BROKEN,
	TPM_LINK_LOST, /* an agent link (tpm_agent.c) closed or reset: nothing comes back */
} tpm_link_state;

/* The TCTI entry points that the station's own TCTIs (tpm_link.c for
 * swtpm, tpm_agent.c for keyline-agent) share: no cancel, no poll handles,
 * locality 0 only, no sticky handles. */
TSS2_RC tpm_tcti_cancel_none(TSS2_TCTI_CONTEXT *ctx);
TSS2_RC tpm_tcti_poll_handles_none(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *h, size_t *n);
TSS2_RC tpm_tcti_set_locality_zero(TSS2_TCTI_CONTEXT *ctx, uint8_t locality);
TSS2_RC tpm_tcti_make_sticky_none(TSS2_TCTI_CONTEXT *ctx, TPM2_HANDLE *h, uint8_t sticky);

/* Whether conf is a link this TCTI takes ("swtpm", "swtpm:..."). */
bool tpm_link_handles(const char *conf);

/* Parses "swtpm:host=H,port=P" and makes the TCTI (no I/O yet: the first
 * command connects). *ret is the TCTI for Esys_Initialize, *ret_link the
 * same object for tpm_link_free. cancelled may be NULL. */
int tpm_link_open(const char *conf, int timeout_ms, bool (*cancelled)(void *ctx), void *cancel_ctx,
                  TSS2_TCTI_CONTEXT **ret, struct tpm_link **ret_link);
void tpm_link_free(struct tpm_link *l);

/* After a cancel: the link takes commands again, with this timeout and no
 * cancel predicate. -KL_E_STATE when it timed out or broke (dead). */
int tpm_link_rearm(struct tpm_link *l, int timeout_ms);

/* Records why this thread's last link command failed, for
 * tpm_link_last_error (the agent's TCTI, tpm_agent.c, shares the record). */
void tpm_link_why_set(kl_err code, const char *detail);

/* Forgets this thread's record of a failed link command. */
void tpm_link_forget(void);

/* TPM_LINK_OK until a command timed out, was cancelled or got a
 * malformed answer. NULL (a TCTI of the loader) is OK. */
tpm_link_state tpm_link_state_get(const struct tpm_link *l);

/* When rc is a TCTI code from this thread's last failed link command:
 * the kl_err it stands for (KL_E_TIMEOUT, KL_E_IO, KL_E_TPM) and the
 * sentence that says why. */
bool tpm_link_last_error(TSS2_RC rc, kl_err *code, const char **detail);

#endif
