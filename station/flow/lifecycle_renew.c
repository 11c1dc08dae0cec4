/* Renewal / rekey of a present device (lifecycle.h, docs/lifecycle.md):
 * prove, certify, issue, engrave, revoke_step, record. */
#include "lifecycle.h"
#include "lifecycle_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "attest.h"
#include "devid.h"
#include "evidence_internal.h"
#include "identity_internal.h"
#include "kl_error.h"
#include "kl_failpoint.h"
#include "kl_hex.h"
#include "registry_life.h"
#include "tpm_nv.h"
#include "tpm_object.h"
#include "tpm_persist.h"

/* The new key's `unique`: the DevID spec's "IDevID" followed by 16 random
 * bytes, so that the endorsement primary it makes is a key no earlier
 * template made (see kl_tpm_identity_create). */
#define UNIQUE_PREFIX "IDevID"
#define UNIQUE_RANDOM 16

struct renew {
	struct life l;
	kl_tpm_object *key; /* the new IDevID, transient until engraved */
	EVP_PKEY *key_pub;
	X509 *cert;
	char serial_hex[48];
	json_object *superseded;
};

static int prove(struct renew *r)
{
	struct life *l = &r->l;
	int64_t open_id;
	int rc;

	kl_life_step_begin(l, "prove");
	kl_life_lock(l);
	rc = kl_life_load(l);
	if (rc == 0 && kl_registry_sanitize_pending(l->cfg->reg, l->serial, &open_id) == 1)
		rc = kl_life_refuse(l, "device_state",
		                    "a decommission of %s has begun and not finished: finish it "
		                    "instead of renewing",
		                    l->serial);
	kl_life_unlock(l);
	if (rc < 0)
		return rc;
	if (l->dev.state == KL_DEVICE_PREREGISTERED || l->dev.state == KL_DEVICE_PROVISIONING)
		return kl_life_refuse(l, "not_provisioned",
		                      "%s is %s: only a provisioned device can be renewed",
		                      l->serial, kl_registry_state_name(l->dev.state));
	if (l->dev.state != KL_DEVICE_PROVISIONED)
		return kl_life_refuse(l, "device_state",
		                      "%s is %s: only a provisioned device can be renewed",
		                      l->serial, kl_registry_state_name(l->dev.state));
	if (kl_life_prove(l, false, true, false) < 0) {
		/* An IDevID whose certificate is gone or revoked (a rekey
		 * that stopped half-way): the IAK may still prove who it is. */
		if (strcmp(l->res->reason, "identity_unproven") != 0 || !l->idevid || !l->iak ||
		    l->cur_iak < 0)
			return -1;
		json_object *p;

		l->proof = LIFE_PROOF_IAK;
		if (json_object_object_get_ex(l->ev, "identity_proof", &p)) {
			json_object_object_add(p, "method", json_object_new_string("iak-certify"));
			json_object_object_add(p, "idevid_refused",
			                       json_object_new_string(l->res->message));
		}
		l->res->rc = 0;
		l->res->reason[0] = l->res->message[0] = '\0';
	}
	if (!l->iak || l->cur_iak < 0)
		return kl_life_refuse(l, "identity_unproven",
		                      "the IAK in this TPM (0x%08x) is not the key of a valid IAK "
		                      "certificate of %s: it cannot certify a new key",
		                      KL_TPM_HANDLE_IAK, l->serial);
	kl_life_step_end(l);
	return 0;
}

/* The new key differs from every key the device ever had a certificate
 * for. A random unique makes that certain in practice; the check makes it
 * certain. */
static bool key_is_new(struct renew *r)
{
	for (size_t i = 0; i < r->l.n_certs; i++)
		if (r->l.certs[i].x &&
		    EVP_PKEY_eq(X509_get0_pubkey(r->l.certs[i].x), r->key_pub) == 1)
			return false;
	return true;
}

static int certify(struct renew *r)
{
	struct life *l = &r->l;
	unsigned char unique[sizeof(UNIQUE_PREFIX) - 1 + UNIQUE_RANDOM];
	EVP_PKEY *iak_pub = X509_get0_pubkey(l->certs[l->cur_iak].x);
	kl_attest_verdict v;
	int ev_rc, which;
	json_object *c;
	char why[64];
	int rc;

	kl_life_step_begin(l, "certify");
	memcpy(unique, UNIQUE_PREFIX, sizeof(UNIQUE_PREFIX) - 1);
	if (RAND_bytes(unique + sizeof(UNIQUE_PREFIX) - 1, UNIQUE_RANDOM) != 1)
		return kl_life_failed(l, "rng_failed", -KL_E_CRYPTO);
	if (kl_tpm_identity_create(l->tpm, KL_TPM_KEY_IDEVID_P256, unique, sizeof(unique),
	                           &r->key) < 0 ||
	    kl_tpm_object_public(r->key, &r->key_pub) < 0)
		return kl_life_failed(l, "key_creation_failed", -(int)kl_error_code());
	if (!key_is_new(r))
		return kl_life_refuse(l, "key_not_new",
		                      "the TPM made a key that %s had before: refused", l->serial);
	if (kl_ev_object(l->ev, "certify", &c) < 0 ||
	    kl_ev_hex(c, "unique", unique, sizeof(unique)) < 0)
		return kl_life_failed(l, "out_of_memory", -KL_E_NOMEM);
	/* Checked against the registry's IAK certificate, not the TPM's word
	 * for its IAK. */
	rc = kl_identity_certify_creation(l->tpm, r->key, l->iak, iak_pub, c, &v, &ev_rc);
	if (rc == -KL_E_CRYPTO) {
		if (l->proof == LIFE_PROOF_IAK)
			return kl_life_refuse(
			    l, "identity_unproven",
			    "the IAK's TPM2_CertifyCreation does not prove %s's identity: %s",
			    l->serial, kl_error_detail());
		return kl_life_refuse(
		    l, kl_identity_reason("certify", v, why, sizeof(why)),
		    "TPM2_CertifyCreation does not prove the new key is in this TPM: %s",
		    kl_error_detail());
	}
	if (rc < 0)
		return kl_life_failed(l, "certify_failed", rc);
	if (ev_rc < 0)
		return kl_life_failed(l, "out_of_memory", ev_rc);
	rc = kl_identity_check_keys(l->iak, r->key, &which, &v);
	if (rc == -KL_E_CRYPTO)
		return kl_life_refuse(l, kl_identity_reason("key", v, why, sizeof(why)),
		                      "the %s is not the key it must be: %s",
		                      which == 0 ? "IAK" : "new IDevID", kl_error_detail());
	if (rc < 0)
		return kl_life_failed(l, "certify_failed", rc);
	if (kl_ev_string(c, "iak_certificate", l->certs[l->cur_iak].serial) < 0)
		return kl_life_failed(l, "out_of_memory", -KL_E_NOMEM);

	/* Proof of possession of the new key, as provisioning step 10. */
	if (kl_ev_object(l->ev, "proof_of_possession", &c) < 0)
		return kl_life_failed(l, "out_of_memory", -KL_E_NOMEM);
	if (kl_life_sign_check(l, r->key, r->key_pub, c, &ev_rc) < 0)
		return kl_life_refuse(l, "pop_failed",
		                      "the new key's proof of possession failed: %s",
		                      kl_error_detail());
	if (ev_rc < 0)
		return kl_life_failed(l, "out_of_memory", ev_rc);
	kl_life_step_end(l);
	return 0;
}

static int issue(struct renew *r)
{
	struct life *l = &r->l;
	kl_devid_tpm_ids ids = { 0 };
	/* The new IDevID names the same TPM as the IAK certificate whose key
	 * certified it (hardwareModuleName, permanentIdentifier: devid.h). */
	kl_cert_request req = { .profile = kl_life_idevid_profile(l),
		                .pubkey = r->key_pub,
		                .serial_number = l->serial,
		                .hw_serial = ids.hw_serial,
		                .permanent_id = ids.permanent_id,
		                .actor = l->actor };
	int rc;

	kl_life_step_begin(l, "issue");
	if (l->cur_iak < 0 || !l->certs[l->cur_iak].x ||
	    kl_devid_tpm_ids_from_cert(l->certs[l->cur_iak].x, &ids) < 0)
		return kl_life_refuse(l, "issue_failed",
		                      "the TPM's identifiers cannot be taken from %s's IAK "
		                      "certificate: %s",
		                      l->serial, kl_error_detail());
	kl_life_lock(l);
	rc = l->cfg->ca ? kl_ca_issue(l->cfg->ca, &req, &r->cert, r->serial_hex)
	                : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
	kl_life_unlock(l);
	if (rc < 0)
		return kl_life_refuse(l, "issue_failed", "the CA did not issue: %s",
		                      kl_error_detail());
	snprintf(l->res->new_serial, sizeof(l->res->new_serial), "%s", r->serial_hex);
	json_object_object_add(l->ev, "certificate", json_object_new_string(r->serial_hex));
	json_object_object_add(l->ev, "profile", json_object_new_string(req.profile));
	kl_life_step_end(l);
	return 0;
}

/* The new key at the IDevID's handle and its certificate in the IDevID's
 * index, in place of the old ones. Between the eviction and the
 * persistence the TPM holds no IDevID: a rerun then proves the device by
 * its IAK. */
static int engrave(struct renew *r)
{
	struct life *l = &r->l;
	unsigned char *der = NULL;
	kl_tpm_object *persisted = NULL;
	bool exists = false;
	int len, rc, ev_rc;

	kl_life_step_begin(l, "engrave");
	len = i2d_X509(r->cert, &der);
	if (len <= 0)
		return kl_life_failed(l, "engrave_failed", -KL_E_CRYPTO);
	kl_tpm_object_free(l->idevid); /* its handle is about to go */
	l->idevid = NULL;
	rc = kl_tpm_persistent_exists(l->tpm, KL_TPM_HANDLE_IDEVID, &exists);
	if (rc == 0 && exists)
		rc = kl_tpm_persistent_evict(l->tpm, KL_TPM_HANDLE_IDEVID);
	if (rc == 0) {
		kl_failpoint("renew.evicted");
		rc = kl_tpm_object_persist(l->tpm, r->key, KL_TPM_HANDLE_IDEVID);
	}
	if (rc == 0) {
		/* The index is write-locked; its owner may still undefine it. */
		rc = kl_tpm_nv_undefine(l->tpm, KL_TPM_NV_IDEVID_CERT);
		if (rc == -KL_E_NOTFOUND)
			rc = 0;
	}
	if (rc == 0) {
		kl_failpoint("renew.undefined");
		rc = kl_tpm_nv_write_cert(l->tpm, KL_TPM_NV_IDEVID_CERT, der, (size_t)len);
	}
	/* The PASS verdict's fingerprint: the certificate now in the index. */
	if (rc == 0 && kl_sha256_hex(der, (size_t)len, l->res->idevid_sha256) < 0)
		l->res->idevid_sha256[0] = '\0';
	OPENSSL_free(der);
	/* A fresh signature by the persisted key verifies with the new
	 * certificate. */
	if (rc == 0)
		rc = kl_tpm_persistent_load(l->tpm, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256,
		                            &persisted);
	if (rc == 0)
		rc = kl_life_sign_check(l, persisted, X509_get0_pubkey(r->cert), NULL, &ev_rc);
	kl_tpm_object_free(persisted);
	if (rc < 0)
		return kl_life_failed(l, "engrave_failed", rc);
	kl_tpm_object_free(r->key); /* the persisted copy stays */
	r->key = NULL;
	if (kl_ev_handles(l->ev, false) < 0)
		return kl_life_failed(l, "out_of_memory", -KL_E_NOMEM);
	kl_life_step_end(l);
	return 0;
}

struct settle {
	EVP_PKEY *tpm_key; /* the key at the IDevID handle, or NULL */
	const char *new_serial;
};

/* What stays valid: IAK certificates, and the IDevID certificate whose key
 * is the TPM's (or, when the TPM holds no IDevID, this run's certificate
 * is the one that goes). */
static bool keep_cert(void *ctx, const struct life_cert *c)
{
	const struct settle *s = ctx;

	if (c->iak)
		return true;
	if (!s->tpm_key)
		return !s->new_serial || strcmp(c->serial, s->new_serial) != 0;
	return c->x && EVP_PKEY_eq(X509_get0_pubkey(c->x), s->tpm_key) == 1;
}

/* Leaves exactly one valid IDevID certificate: the one of the key the TPM
 * holds; every other one is revoked as superseded (RFC 5280 reason 4).
 * Also what a refusal after issuing does, so that a half-done rekey leaves
 * no second valid identity. */
static int settle(struct renew *r)
{
	struct life *l = &r->l;
	struct settle s = { .new_serial = r->serial_hex[0] ? r->serial_hex : NULL };
	kl_tpm_object *at = NULL;
	bool exists = false;
	int n;

	if (l->tpm && kl_tpm_persistent_exists(l->tpm, KL_TPM_HANDLE_IDEVID, &exists) == 0 &&
	    exists &&
	    kl_tpm_persistent_load(l->tpm, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256, &at) ==
	        0 &&
	    kl_tpm_object_public(at, &s.tpm_key) < 0)
		s.tpm_key = NULL; /* as when no key could be loaded */
	kl_tpm_object_free(at);
	kl_life_lock(l);
	for (size_t i = 0; i < l->n_certs; i++)
		X509_free(l->certs[i].x);
	free(l->certs);
	l->certs = NULL;
	l->n_certs = 0;
	n = kl_life_load(l) < 0 ? -1 : kl_life_revoke_where(l, 4, keep_cert, &s, r->superseded);
	kl_life_unlock(l);
	EVP_PKEY_free(s.tpm_key);
	if (n > 0)
		l->res->revoked += n;
	return n;
}

static int revoke_step(struct renew *r)
{
	struct life *l = &r->l;
	int n;

	kl_life_step_begin(l, "revoke");
	n = settle(r);
	if (n < 0)
		return l->res->rc < 0 ? -1 : kl_life_failed(l, "ca_error", n);
	kl_life_step_end(l);
	return 0;
}

static int record(struct renew *r)
{
	struct life *l = &r->l;
	kl_store *s = l->cfg->store;
	int rc;

	kl_life_step_begin(l, "record");
	if (kl_ev_station(l->ev, l->cfg->station_id, l->actor) < 0)
		return kl_life_failed(l, "out_of_memory", -KL_E_NOMEM);
	kl_life_lock(l);
	rc = kl_store_begin(s);
	if (rc == 0)
		rc = kl_registry_evidence_add(
		    l->cfg->reg, l->serial,
		    json_object_to_json_string_ext(l->ev, JSON_C_TO_STRING_PLAIN), l->actor);
	if (rc < 0)
		kl_store_rollback(s);
	else
		rc = kl_store_commit(s);
	kl_life_unlock(l);
	if (rc < 0)
		return kl_life_failed(l, "registry_error", rc);
	kl_life_step_end(l);
	return 0;
}

int kl_life_renew(const kl_life_config *cfg, const kl_life_job *job, kl_life_result *res)
{
	static int (*const steps[])(struct renew *) = { prove,   certify,     issue,
		                                        engrave, revoke_step, record };
	struct renew r = { 0 };
	struct life *l = &r.l;
	int rc;

	if (!job)
		return kl_error_set(KL_E_INVALID, "renew: no job");
	rc = kl_life_start(l, cfg, job, "renew", job->serial, job->actor, res);
	if (rc < 0)
		return rc;
	json_object_object_add(l->ev, "kind", json_object_new_string("renewal"));
	json_object_object_add(l->ev, "serial", json_object_new_string(l->serial));
	r.superseded = json_object_new_array();
	json_object_object_add(l->ev, "superseded", r.superseded);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (i > 0 && kl_life_cancelled(l))
			break;
		if (steps[i](&r) < 0)
			break;
	}
	if (res->rc < 0 && r.serial_hex[0] && strcmp(res->step, "revoke") != 0 &&
	    strcmp(res->step, "record") != 0)
		settle(&r);
	kl_life_lock(l);
	json_object *d = json_object_new_object();
	json_object_object_add(d, "certificate", json_object_new_string(r.serial_hex));
	json_object_object_add(d, "superseded", json_object_get(r.superseded));
	kl_life_audit(l, d);
	kl_life_unlock(l);
	if (res->rc == 0)
		snprintf(res->message, sizeof(res->message),
		         "%s renewed: new IDevID certificate %s, %d superseded", l->serial,
		         r.serial_hex, res->revoked);
	kl_tpm_object_free(r.key);
	EVP_PKEY_free(r.key_pub);
	X509_free(r.cert);
	kl_life_cleanup(l);
	return 0;
}
