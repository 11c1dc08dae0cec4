/* The device lifecycle after provisioning (ARCHITECTURE.md "Lifecycle"):
 * renewal / rekey, decommission with cryptographic erase and a signed
 * sanitization record, repurpose, revocation of a device, and a lost device.
 *
 * Operations on a DUT (renew, decommission) start with a proof of identity:
 * the persisted IDevID signs a fresh station nonce, and the signature must
 * verify with the public key of the device's current IDevID certificate in
 * the registry (issued, not revoked), whose key must also be the TPM's.
 *
 * Like the engine, these functions share the store, registry, CA and HSM with
 * other slots through the config's lock hooks: held around every use of
 * them, never while waiting on a TPM. A result carries a stable reason and a
 * sentence for the operator, as kl_job_result does; every operation leaves an
 * audit entry with its actor, also when it is refused. */
#ifndef KL_STATION_LIFECYCLE_H
#define KL_STATION_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "kl_error.h"
#include "registry.h"

typedef struct kl_life_config {
	kl_store *store;
	kl_registry *reg;
	kl_ca *ca;
	const char *station_id;
	const char *idevid_profile; /* default "idevid" (per-tenant choice as in the engine) */
	const char *(*profile_for)(void *ctx, const char *tenant, const char *kind);
	void *profile_ctx;
	/* Signs sanitization records (a key in the HSM) and its certificate. */
	EVP_PKEY *record_key;
	X509 *record_cert;
	void (*lock)(void *ctx);
	void (*unlock)(void *ctx);
	void *lock_ctx;
	int tpm_timeout_ms; /* per TPM command, as kl_engine_config's; 0 the default */
} kl_life_config;

/* A lifecycle step's progress: name is a stable step name ("prove",
 * "certify", "issue", "engrave", "revoke", "erase", "verify", "record"). */
typedef void (*kl_life_progress_fn)(void *ctx, const char *step, bool done, double ms);

typedef struct kl_life_job {
	const char *serial;         /* the device serial (registry) */
	const char *link;           /* the DUT's TCTI, as kl_job.link */
	struct kl_link_conn *agent; /* a keyline-agent link, as kl_job.agent (may be NULL) */
	const char *actor;
	kl_life_progress_fn progress;
	void *progress_ctx;
	bool (*cancelled)(void *ctx); /* asked between steps; may be NULL */
	void *cancel_ctx;
} kl_life_job;

typedef struct kl_life_result {
	int rc;              /* 0 done; else negative kl_err */
	char step[24];       /* the step that failed */
	char reason[48];     /* stable: "identity_unproven", "not_provisioned", ... */
	char message[512];   /* the sentence for the operator */
	char new_serial[48]; /* renew: the new IDevID certificate's serial */
	/* renew: SHA-256 hex of the new IDevID certificate's DER, as engraved
	 * (an agent's PASS verdict's fingerprint); "" for a decommission (the
	 * device keeps no certificate) and until the renewal engraved it */
	char idevid_sha256[65];
	int revoked;       /* how many certificates were revoked */
	bool tpm_cleared;  /* decommission: TPM2_Clear succeeded */
	int64_t record_id; /* decommission: the sanitization record's id */
	double total_ms;
} kl_life_result;

/* Renewal / rekey on a present device: proof of identity; a new IDevID key
 * (a different key from every earlier one) certified by the IAK
 * (TPM2_CertifyCreation, checked against the registry's IAK certificate); proof of
 * possession; a new IDevID certificate; the new key persisted and the new
 * certificate engraved in place of the old ones; every other valid IDevID
 * certificate of the device revoked as superseded; evidence recorded.
 * Returns 0 when it ran to a verdict (res->rc), negative when it could not. */
int kl_life_renew(const kl_life_config *cfg, const kl_life_job *job,
                  kl_life_result *res) KL_MUST_CHECK;

/* Decommission on a present device: proof of identity; all the device's
 * certificates revoked (cessationOfOperation); cryptographic erase (identity
 * keys evicted, the station's NV indices undefined, TPM2_Clear where the
 * lockout authorisation allows); read back to verify; a sanitization record
 * (NIST SP 800-88 style) signed with record_key and stored; the device moves
 * to decommissioned (its EK deny-listed) or, with repurpose, to repurposed
 * (it may be pre-registered and provisioned again for another tenant). */
int kl_life_decommission(const kl_life_config *cfg, const kl_life_job *job, bool repurpose,
                         kl_life_result *res) KL_MUST_CHECK;

/* A lost device (not present): all its certificates revoked (reason, an RFC
 * 5280 code; keyCompromise when < 0), state lost, EK deny-listed. */
int kl_life_lost(const kl_life_config *cfg, const char *serial, int reason, const char *actor,
                 kl_life_result *res) KL_MUST_CHECK;

/* Revocation of a device by the officer: all its valid certificates revoked
 * with reason, state revoked. */
int kl_life_revoke_device(const kl_life_config *cfg, const char *serial, int reason,
                          const char *actor, kl_life_result *res) KL_MUST_CHECK;

/* A stored sanitization record: *json (free() it) is the signed record, a
 * JSON object {"record": {...}, "signature": base64, "signer": PEM cert}.
 * id <= 0: the device's newest. Returns 0 or -KL_E_NOTFOUND. */
int kl_life_record_get(kl_registry *reg, const char *serial, int64_t id, char **json) KL_MUST_CHECK;

/* Checks a record's signature against its embedded signer certificate, and
 * that certificate against issuer (when not NULL). 0 or -KL_E_CRYPTO. */
int kl_life_record_verify(const char *json, const X509 *issuer) KL_MUST_CHECK;

#endif
