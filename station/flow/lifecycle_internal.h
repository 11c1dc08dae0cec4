/* Shared by lifecycle*.c only: one lifecycle run's state and the steps that
 * renewal and decommission have in common (proof of identity, revocation,
 * results and audit). See lifecycle.h and docs/lifecycle.md. */
#ifndef KL_STATION_LIFECYCLE_INTERNAL_H
#define KL_STATION_LIFECYCLE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "lifecycle.h"
#include "registry.h"
#include "tpm.h"
#include "tpm_object.h"

/* What the persisted IDevID signs to prove the device's identity: a fixed
 * label (not the provisioning proof's, so that neither signature serves the
 * other), the serial and a fresh station nonce. */
#define KL_LIFE_PROOF_LABEL "KEYLINE-IDENTITY-V1"

/* A certificate of the device, as the registry holds it. */
struct life_cert {
	char serial[48];
	char profile[32];
	char state[16]; /* pending, issued, rejected, abandoned */
	bool revoked;
	int reason;
	bool iak; /* an IAK certificate (EKU tcg-kp-AIKCertificate) */
	X509 *x;  /* issued ones only */
};

/* How the device proved who it is. */
enum life_proof {
	LIFE_PROOF_NONE,
	LIFE_PROOF_IDEVID, /* the persisted IDevID signed a station nonce */
	LIFE_PROOF_IAK,    /* no IDevID (interrupted rekey): the IAK certifies */
	LIFE_PROOF_EK,     /* no identity keys (interrupted decommission): the EK
	                    * activates a credential */
};

struct life {
	const kl_life_config *cfg;
	const kl_life_job *job; /* NULL for lost and revoke_device */
	const char *op;         /* "renew", "decommission", "lost", "revoke_device" */
	const char *serial, *actor;
	kl_life_result *res;
	kl_registry_device dev;
	bool have_dev;
	struct life_cert *certs;
	size_t n_certs;
	kl_tpm *tpm;
	kl_ek_type ek_type;
	kl_tpm_object *idevid, *iak; /* the persisted keys, when there */
	int cur_idevid;              /* index in certs of the proven IDevID cert, or -1 */
	int cur_iak;                 /* index of the IAK cert matching the TPM's IAK, or -1 */
	enum life_proof proof;
	int64_t sanitize_id;   /* decommission: the open record */
	bool sanitize_resumed; /* ... that an earlier run opened */
	double t0, start;
	json_object *ev; /* evidence (renew) or the record's facts (decommission) */
};

double kl_life_now_ms(void);
void kl_life_lock(struct life *l);
void kl_life_unlock(struct life *l);

/* Step bookkeeping: progress callback, timing, failpoint "<op>.<step>". */
void kl_life_step_begin(struct life *l, const char *step);
void kl_life_step_end(struct life *l);
/* True (and the result refused as "aborted") when the job was cancelled. */
bool kl_life_cancelled(struct life *l);

/* Records a refusal of the current step (rc -KL_E_PERM); returns -1. */
int kl_life_refuse(struct life *l, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A technical failure: the last error's detail for the operator. */
int kl_life_failed(struct life *l, const char *reason, int rc) KL_MUST_CHECK;

/* Reads the device and its certificates (call with the lock held). Refuses
 * unknown_serial; fills l->dev, l->certs. */
int kl_life_load(struct life *l) KL_MUST_CHECK;

/* Opens the link and proves the device's identity (step "prove"): the TPM's
 * EK is the one the registry bound to the serial, and the persisted IDevID
 * signs a station nonce that verifies with the device's IDevID certificate
 * whose key is the TPM's. allow_revoked accepts a revoked certificate (an
 * officer-revoked device, an interrupted decommission); allow_iak and
 * allow_ek accept the fallbacks of enum life_proof when the IDevID is gone. */
int kl_life_prove(struct life *l, bool allow_revoked, bool allow_iak, bool allow_ek) KL_MUST_CHECK;

/* The signature check of a key in the TPM over the identity proof message. */
int kl_life_sign_check(struct life *l, kl_tpm_object *key, EVP_PKEY *pub, json_object *ev,
                       int *ev_rc) KL_MUST_CHECK;

/* The IDevID profile for the device's tenant. */
const char *kl_life_idevid_profile(const struct life *l);

/* Revokes, in one store transaction, every certificate of the device that
 * is issued or abandoned and not revoked, for which keep(ctx, cert) is
 * false; appends each serial to *revoked_list (may be NULL). Lock held by
 * the caller. Returns the count or a negative kl_err (nothing revoked). */
int kl_life_revoke_where(struct life *l, int reason,
                         bool (*keep)(void *ctx, const struct life_cert *c), void *ctx,
                         json_object *revoked_list) KL_MUST_CHECK;

/* Writes the audit entry of the run: "station.<op>" with detail, or
 * "station.<op>.refused" with step, reason and message. Lock held. */
void kl_life_audit(struct life *l, json_object *detail);

/* Frees what a run holds. */
void kl_life_cleanup(struct life *l);

/* Starts a run: validates arguments (negative kl_err when missing). */
int kl_life_start(struct life *l, const kl_life_config *cfg, const kl_life_job *job, const char *op,
                  const char *serial, const char *actor, kl_life_result *res) KL_MUST_CHECK;

#endif
