/* Private to station/tpm/: the kl_tpm handle and the few helpers that every
 * file talking ESAPI through it shares. tpm2-tss types stay in station/tpm/.
 *
 * Every TPM command goes through TPM_CALL (one Startup(CLEAR) retry), every
 * TSS2_RC through kl_tpm_rc_error (tpm_rc.c), and every transient object
 * or session that outlives one call through tpm_track()/tpm_flush(), so that
 * kl_tpm_free can flush what a failed path left behind. */
#ifndef KL_STATION_TPM_INTERNAL_H
#define KL_STATION_TPM_INTERNAL_H

#include <stdbool.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "kl_error.h"
#include "tpm.h"

/* More than any TPM holds at once; the station loads one or two. */
#define TPM_MAX_LOADED 8

struct tpm_link;
struct tpm_agent;

struct kl_tpm {
	TSS2_TCTI_CONTEXT *tcti;
	struct tpm_link *link;   /* our own TCTI (tpm_link.c); NULL: the loader's */
	struct tpm_agent *agent; /* or the TCTI over a keyline-agent link (tpm_agent.c) */
	unsigned generation;     /* bumped when kl_tpm_link_rearm makes a new ESAPI context */
	ESYS_CONTEXT *esys;
	bool startup_tried;     /* Startup(CLEAR) sent once already */
	uint32_t nv_buffer_max; /* TPM_PT_NV_BUFFER_MAX, 0 when not reported */
	size_t nv_chunk_cap;    /* kl_tpm_set_nv_chunk_max, 0 for none */
	ESYS_TR loaded[TPM_MAX_LOADED];
	size_t n_loaded;
	double busy_ms; /* time spent inside TPM commands (link included) */
};

static inline double tpm_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void esys_freep(void *p)
{
	Esys_Free(*(void **)p);
}

/* The TPM's own response code without the handle, parameter or session
 * number of format-1 codes (TPM 2.0 Part 2 §6.6.3), so that it can be
 * compared with TPM2_RC_HANDLE and friends; 0 when rc is not a TPM response
 * (a TSS or TCTI error). */
static inline TSS2_RC tpm_rc_code(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

	if (rc == TSS2_RC_SUCCESS)
		return 0;
	if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER)
		return 0;
	rc &= 0xffff;
	if (rc & TPM2_RC_FMT1)
		return rc & (TPM2_RC_FMT1 | 0x3f);
	return rc;
}

/* TPM 2.0 Part 1 §12.2.2 / Part 3 §9.3: after _TPM_Init a TPM answers every
 * command but TPM2_Startup with TPM_RC_INITIALIZE. Our swtpm DUTs start with
 * startup-clear; a board that was just powered may not. Send Startup(CLEAR)
 * once and tell the caller to repeat its command. */
static inline bool tpm_started_now(kl_tpm *t, TSS2_RC rc)
{
	TSS2_RC r;

	if (tpm_rc_code(rc) != TPM2_RC_INITIALIZE || t->startup_tried)
		return false;
	t->startup_tried = true;
	r = Esys_Startup(t->esys, TPM2_SU_CLEAR);
	return r == TSS2_RC_SUCCESS || tpm_rc_code(r) == TPM2_RC_INITIALIZE;
}

/* rc = call, and once more after a Startup(CLEAR) if the TPM asked for one. */
/* Each call's time is added to t->busy_ms: what the station spends waiting
 * on the TPM and its link, as opposed to its own work. */
#define TPM_CALL(t, rc, call)                                  \
	do {                                                   \
		double tpm_call_t0_ = tpm_clock_ms();          \
		(rc) = (call);                                 \
		if (tpm_started_now((t), (rc)))                \
			(rc) = (call);                         \
		(t)->busy_ms += tpm_clock_ms() - tpm_call_t0_; \
	} while (0)

/* The one place where a TSS2_RC becomes a kl_err (tpm_rc.c). Link failures
 * (TCTI I/O, no connection) give -KL_E_IO, a TSS timeout -KL_E_TIMEOUT, a TSS
 * allocation failure -KL_E_NOMEM, everything else -KL_E_TPM; the detail keeps
 * the decoded text and the raw code. */
int kl_tpm_rc_error(TSS2_RC rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An ESYS_TR for an object or NV index that exists in the TPM (its public
 * area read by ESAPI; tpm.c). -KL_E_NOTFOUND when there is none; what names
 * the handle in the error ("persistent object", "NV index"). */
int tpm_tr_from_handle(kl_tpm *t, uint32_t handle, const char *what, ESYS_TR *ret);

static inline int tpm_track(kl_tpm *t, ESYS_TR h)
{
	if (t->n_loaded == TPM_MAX_LOADED)
		return kl_error_set(KL_E_STATE, "TPM: more than %d objects loaded", TPM_MAX_LOADED);
	t->loaded[t->n_loaded++] = h;
	return 0;
}

static inline void tpm_untrack(kl_tpm *t, ESYS_TR h)
{
	for (size_t i = 0; i < t->n_loaded; i++) {
		if (t->loaded[i] == h) {
			t->loaded[i] = t->loaded[--t->n_loaded];
			return;
		}
	}
}

/* Flushes a transient object (TPM 2.0 Part 3 §28.4) and forgets it. If the
 * flush fails it stays tracked, and kl_tpm_free tries again. */
static inline int tpm_flush(kl_tpm *t, ESYS_TR h)
{
	TSS2_RC rc;

	TPM_CALL(t, rc, Esys_FlushContext(t->esys, h));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_FlushContext");
	tpm_untrack(t, h);
	return 0;
}

/* Flushes a handle on a path that already failed, without touching the
 * recorded error. If even that fails the handle stays tracked, and
 * kl_tpm_free tries again. */
static inline void tpm_flush_quiet(kl_tpm *t, ESYS_TR h)
{
	if (h != ESYS_TR_NONE && Esys_FlushContext(t->esys, h) == TSS2_RC_SUCCESS)
		tpm_untrack(t, h);
}

#endif
