/* Private to station/flow/: the evidence that the provisioning engine and
 * the lifecycle record in the registry (docs/provisioning.md,
 * docs/lifecycle.md), and the details of their audit entries, built with
 * json-c in one place.
 *
 *   json_object *ev = json_object_new_object();
 *   kl_ev_tpm(ev, &info);
 *   kl_ev_ek(ev, &ek_report);
 *   ...
 *   kl_registry_device_commit(reg, serial, kl_ev_text(ev), actor);
 *
 * Each function adds members to the object it is given and returns 0, or
 * -KL_E_NOMEM when json-c cannot allocate (the object may then hold part of
 * what was asked). */
#ifndef KL_STATION_EVIDENCE_INTERNAL_H
#define KL_STATION_EVIDENCE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kl_error.h"
#include "tpm.h"
#include "trust.h"

/* o[key] = s, a JSON string (NULL is ""). */
int kl_ev_string(json_object *o, const char *key, const char *s) KL_MUST_CHECK;

/* o[key] = v, a JSON number. */
int kl_ev_int(json_object *o, const char *key, int64_t v) KL_MUST_CHECK;

/* o[key] = the n bytes at p in lower-case hex. */
int kl_ev_hex(json_object *o, const char *key, const unsigned char *p, size_t n) KL_MUST_CHECK;

/* o[key] = a TPM handle or NV index as "0x%08x". */
int kl_ev_handle(json_object *o, const char *key, uint32_t handle) KL_MUST_CHECK;

/* o[key] = a new empty object, returned in *ret (owned by o). */
int kl_ev_object(json_object *o, const char *key, json_object **ret) KL_MUST_CHECK;

/* The TPM of step 1: "tpm": { manufacturer, vendor, firmware }. */
int kl_ev_tpm(json_object *ev, const kl_tpm_info *info) KL_MUST_CHECK;

/* The EK of steps 3 and 4: "ek": { type, sha256, issuer, manufacturer,
 * certificate, chain_nv: [{index, der}], chain: [{subject, sha256, from}],
 * quirks: [id] }. */
int kl_ev_ek(json_object *ev, const kl_ek_report *ek) KL_MUST_CHECK;

/* A signature over a station nonce (the proofs of identity.h): o gets
 * "nonce" and "signature". */
int kl_ev_signature(json_object *o, const unsigned char nonce[32], const unsigned char *sig,
                    size_t sig_len) KL_MUST_CHECK;

/* A TPM2_CertifyCreation (steps 8 and 9): o gets "nonce", "attest" and "signature". */
int kl_ev_certify(json_object *o, const unsigned char *nonce, size_t nonce_len,
                  const unsigned char *attest, size_t attest_len, const unsigned char *sig,
                  size_t sig_len) KL_MUST_CHECK;

/* Where step 12 engraved the identity: "handles": { [iak,] idevid,
 * [iak_cert_nv,] idevid_cert_nv } (the IAK's only when with_iak). */
int kl_ev_handles(json_object *ev, bool with_iak) KL_MUST_CHECK;

/* "timings_ms": { names[i]: ms[i] } for the n steps given. */
int kl_ev_timings(json_object *ev, const char *const *names, const double *ms,
                  size_t n) KL_MUST_CHECK;

/* Who recorded it: "station" (station_id, "" when NULL) and "operator". */
int kl_ev_station(json_object *ev, const char *station_id, const char *actor) KL_MUST_CHECK;

/* The detail of a "station.provision.refused" audit entry: serial, step,
 * reason, message and, after_gates, whether the DUT was cleaned and its
 * certificates revoked. *ret (json_object_put it) on success. */
int kl_ev_refusal(const char *serial, const char *step, const char *reason, const char *message,
                  bool after_gates, bool cleaned, bool revoked, json_object **ret) KL_MUST_CHECK;

/* o as compact JSON text, valid until o changes or is freed; NULL when
 * json-c cannot allocate. slash_escape false leaves '/' as it is. */
const char *kl_ev_text(json_object *o, bool slash_escape);

#endif
