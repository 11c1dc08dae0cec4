/* A provisioning step's bookkeeping: its name, its time, its progress
 * callback and failpoint, and how it records a refusal. See
 * engine_internal.h. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "engine.h"
#include "engine_internal.h"
#include "kl_error.h"
#include "kl_failpoint.h"

static const char *const step_names[KL_STEP__MAX] = {
	[KL_STEP_DISCOVER] = "discover", [KL_STEP_FACTORY_NEW] = "factory_new",
	[KL_STEP_EK_CERT] = "ek_cert",   [KL_STEP_EK_MATCH] = "ek_match",
	[KL_STEP_GATES] = "gates",       [KL_STEP_ENTROPY] = "entropy",
	[KL_STEP_KEYS] = "keys",         [KL_STEP_ACTIVATE] = "activate",
	[KL_STEP_CERTIFY] = "certify",   [KL_STEP_POP] = "proof_of_possession",
	[KL_STEP_ISSUE] = "issue",       [KL_STEP_ENGRAVE] = "engrave",
	[KL_STEP_COMMIT] = "commit",
};

const char *kl_step_name(kl_step s)
{
	return (unsigned)s < KL_STEP__MAX ? step_names[s] : "unknown";
}

double kl_eng_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int kl_eng_timeout_ms(const struct run *r)
{
	return r->cfg->tpm_timeout_ms > 0 ? r->cfg->tpm_timeout_ms : KL_TPM_TIMEOUT_MS_DEFAULT;
}

void kl_eng_lock(struct run *r)
{
	if (r->cfg->lock)
		r->cfg->lock(r->cfg->lock_ctx);
}

void kl_eng_unlock(struct run *r)
{
	if (r->cfg->unlock)
		r->cfg->unlock(r->cfg->lock_ctx);
}

void kl_eng_step_begin(struct run *r, kl_step s)
{
	r->step = s;
	r->t0 = kl_eng_now_ms();
	if (r->job->progress)
		r->job->progress(r->job->progress_ctx, s, false, 0);
}

void kl_eng_step_end(struct run *r)
{
	double ms = kl_eng_now_ms() - r->t0;

	r->res->step_ms[r->step] = ms;
	if (r->job->progress)
		r->job->progress(r->job->progress_ctx, r->step, true, ms);
	kl_failpoint(kl_step_name(r->step));
}

int kl_eng_refuse(struct run *r, const char *reason, const char *fmt, ...)
{
	va_list ap;

	r->res->rc = -KL_E_PERM;
	r->res->failed_step = r->step;
	r->res->step_ms[r->step] = kl_eng_now_ms() - r->t0;
	snprintf(r->res->reason, sizeof(r->res->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(r->res->message, sizeof(r->res->message), fmt, ap);
	va_end(ap);
	return -1;
}

int kl_eng_failed(struct run *r, const char *reason, int rc)
{
	kl_eng_refuse(r, reason, "%s failed: %s", kl_step_name(r->step), kl_error_detail());
	r->res->rc = rc < 0 ? rc : -KL_E_INVALID;
	return -1;
}
