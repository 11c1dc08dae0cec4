/* Private to station/flow/: one provisioning run's state and the
 * bookkeeping that the engine's files share. engine.c runs the steps in
 * order and holds those on the registry, the HSM and the CA (5, 6, 11, 13);
 * engine_ek.c the DUT and its EK (1, 3, 4); engine_identity.c the identity
 * keys in the DUT (2, 7 to 10, 12, and the check of an engraved identity);
 * engine_step.c a step's bookkeeping, which all of them use.
 * Each step returns 0, or -1 after recording its refusal in the result. */
#ifndef KL_STATION_ENGINE_INTERNAL_H
#define KL_STATION_ENGINE_INTERNAL_H

#include <stdbool.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "engine.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_object.h"
#include "trust.h"

/* One run's state. */
struct run {
	const kl_engine_config *cfg;
	const kl_job *job;
	kl_job_result *res;
	kl_tpm *tpm;
	kl_tpm_info info;
	kl_ek_report ek;
	kl_ek_type ek_type; /* the job's, or the one detected */
	EVP_PKEY *ek_pub;
	kl_tpm_object *iak, *idevid;
	EVP_PKEY *iak_pub, *idevid_pub;
	X509 *iak_cert, *idevid_cert;
	bool had_identity; /* step 2: persistent keys or certificate indices */
	char tenant[128];  /* the device's tenant, known from step 5 */
	kl_step step;
	double t0;
	json_object *evidence;
};

/* engine_step.c: the monotonic clock in ms. */
double kl_eng_now_ms(void);

/* The configuration's TPM timeout, the default filled in. */
int kl_eng_timeout_ms(const struct run *r);

/* The backend lock of the configuration (engine.h), when there is one. */
void kl_eng_lock(struct run *r);
void kl_eng_unlock(struct run *r);

/* Step bookkeeping: progress callback, timing, failpoint of the step name. */
void kl_eng_step_begin(struct run *r, kl_step s);
void kl_eng_step_end(struct run *r);

/* Records a refusal or failure of the current step; returns -1 so steps can
 * `return kl_eng_refuse(...)`. */
int kl_eng_refuse(struct run *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A step failed for a technical reason (TPM, HSM, database): the detail of
 * the last error goes to the operator. Returns -1. */
int kl_eng_failed(struct run *r, const char *reason, int rc) KL_MUST_CHECK;

/* engine_ek.c: steps 1 (discover, and the EK type when the job leaves it
 * open) and 3 + 4 (the EK certificate and the EK). */
int kl_eng_discover(struct run *r) KL_MUST_CHECK;
int kl_eng_ek(struct run *r) KL_MUST_CHECK;

/* engine_identity.c: step 2, steps 7 to 10, step 12. */
int kl_eng_factory_new(struct run *r) KL_MUST_CHECK;
int kl_eng_keys(struct run *r) KL_MUST_CHECK;
int kl_eng_activate(struct run *r) KL_MUST_CHECK;
int kl_eng_certify(struct run *r) KL_MUST_CHECK;
int kl_eng_pop(struct run *r) KL_MUST_CHECK;
int kl_eng_engrave(struct run *r) KL_MUST_CHECK;

/* For a device the registry says is provisioned: 1 when the DUT shows the
 * identity the registry issued, -1 (refused as engraved_mismatch) when not. */
int kl_eng_check_engraved(struct run *r) KL_MUST_CHECK;

/* Removes the station's identity objects from the DUT (persistent keys and
 * certificate indices), so that an interrupted run starts clean. Returns 0
 * or -1 (the error in kl_error_detail). */
int kl_eng_clean_dut(struct run *r) KL_MUST_CHECK;

#endif
