/* The provisioning engine: takes one DUT in factory-new mode through the
 * whole flow of the architecture brief (steps 1 to 13) and records the result.
 * The CLI runs it in process for a single bench; the daemon runs one per slot.
 *
 * Every step is timed; a failure carries a stable machine-readable reason
 * ("ek_cert_untrusted", "not_preregistered", "activation_failed", ...) and a
 * sentence an operator understands. Refusals leave an audit entry and issue
 * nothing. */
#ifndef KL_STATION_ENGINE_H
#define KL_STATION_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

#include "ca.h"
#include "kl_error.h"
#include "registry.h"
#include "tpm.h"
#include "trust.h"

typedef struct kl_hsm kl_hsm;

typedef enum kl_step {
	KL_STEP_DISCOVER,    /* 1: capabilities */
	KL_STEP_FACTORY_NEW, /* 2: no identity objects yet (or a resume) */
	KL_STEP_EK_CERT,     /* 3: EK certificate, chain, EKU, manufacturer */
	KL_STEP_EK_MATCH,    /* 4: the TPM's EK is the certified key */
	KL_STEP_GATES,       /* 5: registry gates, device -> provisioning */
	KL_STEP_ENTROPY,     /* 6: HSM random into TPM2_StirRandom */
	KL_STEP_KEYS,        /* 7: the IAK created in the TPM */
	KL_STEP_ACTIVATE,    /* 8: credential activation, IAK creation certified */
	KL_STEP_CERTIFY,     /* 9: the IDevID created, its creation certified by the IAK */
	KL_STEP_POP,         /* 10: the IDevID signs a known-format message */
	KL_STEP_ISSUE,       /* 11: IAK and IDevID certificates from the CA */
	KL_STEP_ENGRAVE,     /* 12: keys persisted, certificates in locked NV */
	KL_STEP_COMMIT,      /* 13: one registry commit with the evidence */
	KL_STEP__MAX
} kl_step;

const char *kl_step_name(kl_step s);

typedef struct kl_engine_config {
	kl_store *store;
	kl_registry *reg;
	kl_ca *ca;
	const kl_trust *trust;
	kl_hsm *entropy;                          /* the HSM whose RNG seeds the TPM (step 6) */
	bool require_prereg;                      /* policy: serials must be pre-registered */
	unsigned ek_types;                        /* bit (1 << kl_ek_type) per allowed EK type */
	const char *station_id;                   /* recorded in the evidence */
	const char *iak_profile, *idevid_profile; /* defaults "iak", "idevid" */
	/* Profile per tenant (may be NULL): returns the profile name for a
	 * tenant and a kind ("iak" or "idevid"), or NULL for the default. */
	const char *(*profile_for)(void *ctx, const char *tenant, const char *kind);
	void *profile_ctx;
	/* How long one TPM command may take on the DUT's link (sending it,
	 * the TPM's work, the whole answer); 0: KL_TPM_TIMEOUT_MS_DEFAULT. A
	 * DUT that does not answer in time fails the job as "link_timeout". */
	int tpm_timeout_ms;
	/* The backend lock (may be NULL): held around every use of store, reg,
	 * ca and entropy, so that jobs on several slots share them while their
	 * TPM work runs in parallel. Never held while waiting on a TPM. */
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx);
	void *lock_ctx;
} kl_engine_config;

/* Progress: called when a step starts (done false) and ends (done true, with
 * its time in ms). */
typedef void (*kl_progress_fn)(void *ctx, kl_step step, bool done, double ms);

typedef struct kl_job {
	const char *serial;
	const char *tenant;     /* NULL: the pre-registration's tenant */
	const char *work_order; /* NULL: any; else the serial must be pre-registered in it */
	const char *link;       /* the DUT's link: a TCTI configuration ("swtpm:host=...,port=...",
	                         * "device:/dev/tpmrm0"), or, with agent, its name for the record
	                         * ("agent:tcp:10.0.0.7:40312") */
	/* A keyline-agent link (link_conn.h, after its handshake), or NULL: the
	 * TPM is then driven through the agent (kl_tpm_open_agent) and link is
	 * only a name. The job does not take it: the caller sends the verdict
	 * on it afterwards. A link that drops fails the job as "link_lost". */
	struct kl_link_conn *agent;
	kl_ek_type ek_type; /* which EK proves the TPM; KL_EK__MAX: the first of
	                     * P-256, P-384, RSA-2048 that the policy allows and
	                     * whose EK certificate the TPM holds */
	const char *actor;  /* operator or automation, for the audit log */
	kl_progress_fn progress;
	void *progress_ctx;
	/* Asked before every step and, while a TPM command waits for its
	 * answer, every 50 ms (may be NULL; called from the job's thread): true
	 * stops the run as refused with reason "aborted", cleaning up like any
	 * refusal (the clean-up's commands are not cancelled, and each is bounded
	 * by 5 s or the TPM timeout, whichever is shorter). */
	bool (*cancelled)(void *ctx);
	void *cancel_ctx;
} kl_job;

typedef struct kl_job_result {
	int rc;                   /* 0: provisioned (or already was) */
	kl_step failed_step;      /* when rc < 0 */
	char reason[48];          /* stable name of what went wrong */
	char message[512];        /* the sentence for the operator */
	bool already_provisioned; /* the DUT was provisioned before: nothing issued */
	bool resumed;             /* an interrupted run was taken up again */
	double step_ms[KL_STEP__MAX];
	double total_ms;
	double tpm_ms; /* of total_ms, spent waiting on the TPM and its link */
	char iak_serial[48], idevid_serial[48];
	/* SHA-256 (hex) of the IDevID certificate's DER: the one issued, or the
	 * one an already provisioned DUT holds; "" when there is none. What the
	 * agent's VERDICT names (docs/link.md). */
	char idevid_sha256[65];
	kl_ek_type ek_type; /* the EK type used (the detected one for auto) */
} kl_job_result;

/* Runs the flow. Returns 0 when it ran to a verdict (look at res->rc), a
 * negative kl_err only when the engine itself could not run. */
int kl_engine_provision(const kl_engine_config *cfg, const kl_job *job,
                        kl_job_result *res) KL_MUST_CHECK;

#endif
