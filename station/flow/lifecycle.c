/* The device lifecycle: what renewal and decommission share (a run's
 * bookkeeping, the proof of identity, revocation), and the two operations
 * that need no device: a lost device and the revocation of a device. See
 * lifecycle.h and docs/lifecycle.md. */
#include "lifecycle.h"
#include "lifecycle_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "credential.h"
#include "evidence_internal.h"
#include "identity_internal.h"
#include "kl_error.h"
#include "link_conn.h"
#include "kl_hex.h"
#include "kl_failpoint.h"
#include "tpm_activate.h"
#include "tpm_object.h"
#include "tpm_persist.h"

/* TCG EK Credential Profile §3.2 / DevID spec §8: tcg-kp-AIKCertificate,
 * the EKU of an IAK certificate. */
#define OID_TCG_KP_AIK "2.23.133.8.3"

double kl_life_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void kl_life_lock(struct life *l)
{
	if (l->cfg->lock)
		l->cfg->lock(l->cfg->lock_ctx);
}

void kl_life_unlock(struct life *l)
{
	if (l->cfg->unlock)
		l->cfg->unlock(l->cfg->lock_ctx);
}

void kl_life_step_begin(struct life *l, const char *step)
{
	snprintf(l->res->step, sizeof(l->res->step), "%s", step);
	l->t0 = kl_life_now_ms();
	if (l->job && l->job->progress)
		l->job->progress(l->job->progress_ctx, l->res->step, false, 0);
}

void kl_life_step_end(struct life *l)
{
	char fp[64];
	double ms = kl_life_now_ms() - l->t0;

	if (l->job && l->job->progress)
		l->job->progress(l->job->progress_ctx, l->res->step, true, ms);
	snprintf(fp, sizeof(fp), "%s.%s", l->op, l->res->step);
	kl_failpoint(fp);
}

int kl_life_refuse(struct life *l, const char *reason, const char *fmt, ...)
{
	va_list ap;

	l->res->rc = -KL_E_PERM;
	snprintf(l->res->reason, sizeof(l->res->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(l->res->message, sizeof(l->res->message), fmt, ap);
	va_end(ap);
	return -1;
}

int kl_life_failed(struct life *l, const char *reason, int rc)
{
	/* A TPM command that ran out of time or was interrupted: that is the
	 * reason, whichever step it was in (as the engine's link_timeout). */
	switch (kl_tpm_link_state_of(l->tpm)) {
	case KL_TPM_LINK_TIMEOUT:
		reason = "link_timeout";
		break;
	case KL_TPM_LINK_CANCELLED:
		reason = "aborted";
		break;
	case KL_TPM_LINK_LOST:
		/* The agent's own ERROR (agent_tpm_error, ...), else a drop. */
		reason = l->job && l->job->agent && kl_link_conn_peer_reason(l->job->agent)
		             ? kl_link_conn_peer_reason(l->job->agent)
		             : "link_lost";
		break;
	default:
		break;
	}
	kl_life_refuse(l, reason, "%s failed: %s", l->res->step, kl_error_detail());
	l->res->rc = rc < 0 ? rc : -KL_E_INVALID;
	return -1;
}

bool kl_life_cancelled(struct life *l)
{
	if (!l->job || !l->job->cancelled || !l->job->cancelled(l->job->cancel_ctx))
		return false;
	kl_life_refuse(l, "aborted", "the job was aborted after step %s", l->res->step);
	return true;
}

static bool has_aik_eku(X509 *x)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	bool found = false;
	char oid[64];

	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++) {
		OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1);
		found |= strcmp(oid, OID_TCG_KP_AIK) == 0;
	}
	EXTENDED_KEY_USAGE_free(eku);
	return found;
}

static int collect_cert(void *ctx, const kl_registry_cert *c)
{
	struct life *l = ctx;
	struct life_cert *n, *lc;

	n = realloc(l->certs, (l->n_certs + 1) * sizeof(*n));
	if (!n)
		return kl_error_set(KL_E_NOMEM, "lifecycle: out of memory");
	l->certs = n;
	lc = &l->certs[l->n_certs++];
	memset(lc, 0, sizeof(*lc));
	snprintf(lc->serial, sizeof(lc->serial), "%s", c->serial ? c->serial : "");
	snprintf(lc->profile, sizeof(lc->profile), "%s", c->profile ? c->profile : "");
	snprintf(lc->state, sizeof(lc->state), "%s", c->state ? c->state : "");
	lc->revoked = c->revoked != 0;
	lc->reason = c->reason;
	if (c->der && c->der_len) {
		const unsigned char *p = c->der;

		lc->x = d2i_X509(NULL, &p, (long)c->der_len);
		if (lc->x)
			lc->iak = has_aik_eku(lc->x);
	} else {
		/* No certificate to look at (abandoned): the profile says. */
		lc->iak = strstr(lc->profile, "iak") != NULL;
	}
	return 0;
}

static int newest_ek_type(void *ctx, const char *json, int64_t created)
{
	struct life *l = ctx;
	json_object *o = json_tokener_parse(json), *ek, *type;
	kl_ek_type t;

	(void)created;
	if (o && json_object_object_get_ex(o, "ek", &ek) &&
	    json_object_object_get_ex(ek, "type", &type) &&
	    kl_ek_type_from_name(json_object_get_string(type), &t) == 0)
		l->ek_type = t;
	json_object_put(o);
	return 0;
}

int kl_life_load(struct life *l)
{
	int rc = kl_registry_device_get(l->cfg->reg, l->serial, &l->dev);

	if (rc == -KL_E_NOTFOUND)
		return kl_life_refuse(l, "unknown_serial", "no device with serial %s is registered",
		                      l->serial);
	if (rc < 0)
		return kl_life_failed(l, "registry_error", rc);
	l->have_dev = true;
	if (kl_registry_device_certs(l->cfg->reg, l->serial, collect_cert, l) < 0 ||
	    kl_registry_device_evidence(l->cfg->reg, l->serial, newest_ek_type, l) < 0)
		return kl_life_failed(l, "registry_error", -(int)kl_error_code());
	return 0;
}

const char *kl_life_idevid_profile(const struct life *l)
{
	const char *p = NULL;

	if (l->cfg->profile_for)
		p = l->cfg->profile_for(l->cfg->profile_ctx, l->dev.tenant, "idevid");
	if (!p)
		p = l->cfg->idevid_profile;
	return p ? p : "idevid";
}

/* SHA-256(KL_LIFE_PROOF_LABEL || 0 || serial || 0 || nonce) */
int kl_life_sign_check(struct life *l, kl_tpm_object *key, EVP_PKEY *pub, json_object *ev,
                       int *ev_rc)
{
	return kl_identity_prove(l->tpm, key, pub, KL_LIFE_PROOF_LABEL, l->serial, ev, ev_rc);
}

/* The certificate in l->certs of that kind whose key is pub: a valid one
 * first, else (allow_revoked) a revoked one; -1 when none. */
static int cert_for_key(struct life *l, bool iak, EVP_PKEY *pub, bool allow_revoked)
{
	int found = -1;

	for (size_t i = 0; i < l->n_certs; i++) {
		struct life_cert *c = &l->certs[i];

		if (c->iak != iak || !c->x || strcmp(c->state, "issued") != 0 ||
		    EVP_PKEY_eq(X509_get0_pubkey(c->x), pub) != 1)
			continue;
		if (!c->revoked)
			found = (int)i; /* the newest valid one wins */
		else if (allow_revoked && (found < 0 || l->certs[found].revoked))
			found = (int)i;
	}
	return found;
}

/* The TPM's EK, of the type the provisioning used (or the first type whose
 * hash is the registry's), must be the EK bound to the serial. */
static int check_ek(struct life *l, EVP_PKEY **ek_ret)
{
	static const kl_ek_type order[] = { KL_EK_P256, KL_EK_P384, KL_EK_RSA2048 };
	unsigned char want[32], got[32];
	char hex[65] = "";

	if (!l->dev.ek_sha256[0] || kl_registry_ek_from_hex(l->dev.ek_sha256, want) < 0)
		return kl_life_refuse(l, "identity_unproven",
		                      "the registry holds no EK for %s: its identity cannot be "
		                      "checked",
		                      l->serial);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		kl_ek_type t = l->ek_type != KL_EK__MAX ? l->ek_type : order[i];
		EVP_PKEY *ek = NULL;

		if (kl_tpm_ek_public(l->tpm, t, &ek) == 0 && kl_registry_ek_hash(ek, got) == 0 &&
		    CRYPTO_memcmp(got, want, 32) == 0) {
			l->ek_type = t;
			*ek_ret = ek;
			return 0;
		}
		if (ek && !hex[0])
			kl_hex_encode(got, 8, hex);
		EVP_PKEY_free(ek);
		if (l->ek_type != KL_EK__MAX)
			break;
	}
	return kl_life_refuse(l, "identity_unproven",
	                      "the TPM on this link is not %s's: its EK (%s...) is not the EK "
	                      "bound to %s (%.16s...)",
	                      l->serial, hex[0] ? hex : "none", l->serial, l->dev.ek_sha256);
}

/* Credential activation against the EK (as provisioning step 8) for a
 * transient attestation key: the TPM on the link owns the EK's private
 * key. For a device whose identity keys an interrupted decommission has
 * already erased. */
static int prove_by_ek(struct life *l, EVP_PKEY *ek_pub)
{
	unsigned char nonce[32];
	kl_tpm_object *ak = NULL;
	kl_credential *cred = NULL;
	kl_secret *back = NULL;
	kl_tpm_name name;
	bool same;
	int rc;

	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return kl_life_failed(l, "rng_failed", -KL_E_CRYPTO);
	rc = kl_tpm_object_create(l->tpm, NULL, KL_TPM_KEY_ATTEST_P256, &ak);
	if (rc == 0) {
		kl_tpm_object_name(ak, &name);
		rc = kl_make_credential(ek_pub, l->ek_type, nonce, sizeof(nonce), &name, &cred);
	}
	if (rc == 0)
		rc = kl_tpm_activate_credential(l->tpm, l->ek_type, ak, cred, &back);
	kl_credential_free(cred);
	kl_tpm_object_free(ak);
	same = rc == 0 && back->len == sizeof(nonce) &&
	       CRYPTO_memcmp(back->data, nonce, sizeof(nonce)) == 0;
	kl_secret_free(back);
	OPENSSL_cleanse(nonce, sizeof(nonce));
	if (!same)
		return kl_life_refuse(
		    l, "identity_unproven",
		    "the TPM holds no identity key, and it does not prove that it "
		    "owns %s's EK: %s",
		    l->serial, rc < 0 ? kl_error_detail() : "wrong secret");
	return 0;
}

int kl_life_prove(struct life *l, bool allow_revoked, bool allow_iak, bool allow_ek)
{
	json_object *p = json_object_new_object();
	EVP_PKEY *ek = NULL, *pub = NULL;
	bool exists = false;
	int rc = 0, i, ev_rc;

	json_object_object_add(l->ev, "identity_proof", p);
	/* Bounded in time; not cancelled inside a step: a lifecycle job stops
	 * between its steps (lifecycle.h), so an aborted renewal or erase
	 * never stops half-way through a TPM command. */
	kl_tpm_link_opts link = { .timeout_ms = l->cfg->tpm_timeout_ms };

	if ((l->job->agent ? kl_tpm_open_agent(l->job->agent, &link, &l->tpm)
	                   : kl_tpm_open_link(l->job->link, &link, &l->tpm)) < 0)
		return kl_life_failed(
		    l,
		    l->job->agent && kl_link_conn_reason(l->job->agent) &&
		            strncmp(kl_link_conn_reason(l->job->agent), "link_", 5) == 0
		        ? kl_link_conn_reason(l->job->agent)
		    : kl_error_code() == KL_E_TIMEOUT     ? "link_timeout"
		    : kl_error_code() == KL_E_UNAVAILABLE ? "link_lost"
		                                          : "link_failed",
		    -(int)kl_error_code());
	if (kl_tpm_flush_leftovers(l->tpm, NULL) < 0)
		return kl_life_failed(l, "tpm_error", -(int)kl_error_code());
	if (check_ek(l, &ek) < 0)
		return -1;
	json_object_object_add(p, "ek_type", json_object_new_string(kl_ek_type_name(l->ek_type)));

	/* The IAK, when there: the renewal's certifier, and the fallback
	 * proof of an interrupted rekey. */
	if (kl_tpm_persistent_exists(l->tpm, KL_TPM_HANDLE_IAK, &exists) < 0)
		goto tpm_error;
	if (exists &&
	    kl_tpm_persistent_load(l->tpm, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IAK_P256, &l->iak) == 0 &&
	    kl_tpm_object_public(l->iak, &pub) == 0) {
		l->cur_iak = cert_for_key(l, true, pub, allow_revoked);
		EVP_PKEY_free(pub);
		pub = NULL;
	}

	if (kl_tpm_persistent_exists(l->tpm, KL_TPM_HANDLE_IDEVID, &exists) < 0)
		goto tpm_error;
	if (exists) {
		if (kl_tpm_persistent_load(l->tpm, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256,
		                           &l->idevid) < 0) {
			rc = kl_life_refuse(l, "identity_unproven",
			                    "the object at 0x%08x is not an IDevID key: %s",
			                    KL_TPM_HANDLE_IDEVID, kl_error_detail());
			goto out;
		}
		if (kl_tpm_object_public(l->idevid, &pub) < 0)
			goto tpm_error;
		i = cert_for_key(l, false, pub, allow_revoked);
		if (i < 0) {
			rc =
			    kl_life_refuse(l, "identity_unproven",
			                   "the IDevID key in this TPM is not the key of %s IDevID "
			                   "certificate of %s in the registry",
			                   allow_revoked ? "an issued" : "a valid", l->serial);
			goto out;
		}
		if (kl_life_sign_check(l, l->idevid, X509_get0_pubkey(l->certs[i].x), p, &ev_rc) <
		    0) {
			rc = kl_life_refuse(l, "identity_unproven",
			                    "the IDevID's signature over the station's nonce does "
			                    "not verify with certificate %s: %s",
			                    l->certs[i].serial, kl_error_detail());
			goto out;
		}
		if (ev_rc < 0) {
			rc = kl_life_failed(l, "out_of_memory", ev_rc);
			goto out;
		}
		l->cur_idevid = i;
		l->proof = LIFE_PROOF_IDEVID;
		json_object_object_add(p, "method", json_object_new_string("idevid-signature"));
		json_object_object_add(p, "certificate",
		                       json_object_new_string(l->certs[i].serial));
	} else if (allow_iak && l->iak && l->cur_iak >= 0) {
		/* The TPM2_CertifyCreation of the renewal, signed by this IAK over a
		 * station nonce, is the proof; the certify step checks it. */
		l->proof = LIFE_PROOF_IAK;
		json_object_object_add(p, "method", json_object_new_string("iak-certify"));
		json_object_object_add(p, "certificate",
		                       json_object_new_string(l->certs[l->cur_iak].serial));
	} else if (allow_ek) {
		if (prove_by_ek(l, ek) < 0) {
			rc = -1;
			goto out;
		}
		l->proof = LIFE_PROOF_EK;
		json_object_object_add(p, "method", json_object_new_string("ek-activation"));
	} else {
		rc = kl_life_refuse(l, "identity_unproven",
		                    "the TPM holds no IDevID key at 0x%08x: %s cannot prove its "
		                    "identity",
		                    KL_TPM_HANDLE_IDEVID, l->serial);
		goto out;
	}
	rc = 0;
	goto out;
tpm_error:
	rc = kl_life_failed(l, "tpm_error", -(int)kl_error_code());
out:
	EVP_PKEY_free(pub);
	EVP_PKEY_free(ek);
	return rc;
}

int kl_life_revoke_where(struct life *l, int reason,
                         bool (*keep)(void *ctx, const struct life_cert *c), void *ctx,
                         json_object *revoked_list)
{
	kl_store *s = l->cfg->store;
	int n = 0, rc;

	if ((rc = kl_store_begin(s)) < 0)
		return rc;
	for (size_t i = 0; i < l->n_certs; i++) {
		struct life_cert *c = &l->certs[i];

		if (c->revoked ||
		    (strcmp(c->state, "issued") != 0 && strcmp(c->state, "abandoned") != 0) ||
		    (keep && keep(ctx, c)))
			continue;
		/* The station clears ca while it reopens a lost HSM. */
		rc = l->cfg->ca ? kl_ca_revoke(l->cfg->ca, c->serial, reason, l->actor)
		                : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
		if (rc < 0) {
			kl_store_rollback(s);
			return kl_error_wrap("revoke %s", c->serial);
		}
		n++;
	}
	if ((rc = kl_store_commit(s)) < 0)
		return rc;
	/* Committed: now the copies say so too. */
	for (size_t i = 0; i < l->n_certs; i++) {
		struct life_cert *c = &l->certs[i];

		if (c->revoked ||
		    (strcmp(c->state, "issued") != 0 && strcmp(c->state, "abandoned") != 0) ||
		    (keep && keep(ctx, c)))
			continue;
		c->revoked = true;
		c->reason = reason;
		if (revoked_list)
			json_object_array_add(revoked_list, json_object_new_string(c->serial));
	}
	return n;
}

void kl_life_audit(struct life *l, json_object *detail)
{
	char action[64];

	if (!detail)
		detail = json_object_new_object();
	json_object_object_add(detail, "serial", json_object_new_string(l->serial));
	if (l->res->rc < 0) {
		snprintf(action, sizeof(action), "station.%s.refused", l->op);
		json_object_object_add(detail, "step", json_object_new_string(l->res->step));
		json_object_object_add(detail, "reason", json_object_new_string(l->res->reason));
		json_object_object_add(detail, "message", json_object_new_string(l->res->message));
	} else {
		snprintf(action, sizeof(action), "station.%s", l->op);
	}
	json_object_object_add(detail, "revoked", json_object_new_int(l->res->revoked));
	/* The operation is committed (or refused) by now and stands; a failed
	 * write is counted and logged by the store, and the result says so
	 * (docs/station.md, "When the audit log cannot be written"). */
	if (kl_store_audit(l->cfg->store, l->actor, action,
	                   json_object_to_json_string_ext(
	                       detail, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) <
	    0) {
		size_t n = strlen(l->res->message);

		snprintf(l->res->message + n, sizeof(l->res->message) - n,
		         "%s(its audit entry was not written: see the station log)", n ? " " : "");
	}
	json_object_put(detail);
}

int kl_life_start(struct life *l, const kl_life_config *cfg, const kl_life_job *job, const char *op,
                  const char *serial, const char *actor, kl_life_result *res)
{
	memset(l, 0, sizeof(*l));
	if (!res)
		return kl_error_set(KL_E_INVALID, "%s: no result", op);
	memset(res, 0, sizeof(*res));
	if (!cfg || !cfg->store || !cfg->reg || !cfg->ca)
		return kl_error_set(KL_E_INVALID, "%s: store, registry and CA are required", op);
	if (!serial || !*serial)
		return kl_error_set(KL_E_INVALID, "%s: a device serial is required", op);
	if (!actor || !*actor)
		return kl_error_set(KL_E_INVALID, "%s: an actor is required for the audit log", op);
	if (job && (!job->link || !*job->link))
		return kl_error_set(KL_E_INVALID, "%s: the device's link is required", op);
	l->cfg = cfg;
	l->job = job;
	l->op = op;
	l->serial = serial;
	l->actor = actor;
	l->res = res;
	l->ek_type = KL_EK__MAX;
	l->cur_idevid = l->cur_iak = -1;
	l->start = kl_life_now_ms();
	l->ev = json_object_new_object();
	if (!l->ev)
		return kl_error_set(KL_E_NOMEM, "%s: out of memory", op);
	return 0;
}

void kl_life_cleanup(struct life *l)
{
	if (l->res)
		l->res->total_ms = kl_life_now_ms() - l->start;
	for (size_t i = 0; i < l->n_certs; i++)
		X509_free(l->certs[i].x);
	free(l->certs);
	kl_tpm_object_free(l->idevid);
	kl_tpm_object_free(l->iak);
	kl_tpm_free(l->tpm);
	json_object_put(l->ev);
	memset(l, 0, sizeof(*l));
}

/* Lost and revoked devices: no TPM, the registry and the CA only. */

static int revoke_device(const kl_life_config *cfg, const char *serial, int reason,
                         const char *actor, kl_life_result *res, bool lost)
{
	struct life l;
	kl_device_state to = lost ? KL_DEVICE_LOST : KL_DEVICE_REVOKED;
	json_object *list;
	int rc;

	rc = kl_life_start(&l, cfg, NULL, lost ? "lost" : "revoke_device", serial, actor, res);
	if (rc < 0)
		return rc;
	if (reason < 0)
		reason = lost ? 1 /* keyCompromise */ : 0 /* unspecified */;
	list = json_object_new_array();
	json_object_object_add(l.ev, "certificates_revoked", list);
	json_object_object_add(l.ev, "reason_code",
	                       json_object_new_string(kl_crl_reason_name(reason)));
	kl_life_step_begin(&l, "revoke");
	kl_life_lock(&l);
	if (reason > 10 || reason == 7 || reason == 8) {
		rc = kl_life_refuse(&l, "bad_reason",
		                    "revocation reason %d is not an RFC 5280 reason a device "
		                    "can be revoked with",
		                    reason);
	} else if ((rc = kl_life_load(&l)) == 0) {
		if (!lost && (l.dev.state == KL_DEVICE_PREREGISTERED ||
		              l.dev.state == KL_DEVICE_PROVISIONING))
			rc = kl_life_refuse(&l, "not_provisioned",
			                    "%s is %s: only a provisioned device can be revoked",
			                    serial, kl_registry_state_name(l.dev.state));
		else if (!kl_registry_transition_allowed(l.dev.state, to))
			rc = kl_life_refuse(&l, "device_state", "%s is %s and cannot become %s",
			                    serial, kl_registry_state_name(l.dev.state),
			                    kl_registry_state_name(to));
	}
	if (rc == 0 && (rc = kl_store_begin(cfg->store)) == 0) {
		int n = kl_life_revoke_where(&l, reason, NULL, NULL, list);
		char why[160];

		snprintf(why, sizeof(why), "%s by %s (%s)",
		         lost ? "reported lost" : "device revoked", actor,
		         kl_crl_reason_name(reason));
		rc = n;
		if (n >= 0)
			rc = kl_registry_device_set_state(cfg->reg, serial, to, why, actor);
		if (rc < 0) {
			kl_store_rollback(cfg->store);
			rc = kl_life_failed(&l, "registry_error", rc);
		} else if ((rc = kl_store_commit(cfg->store)) < 0) {
			rc = kl_life_failed(&l, "registry_error", rc);
		} else {
			res->revoked = n;
		}
	}
	if (rc == 0) {
		kl_life_step_end(&l);
		snprintf(res->message, sizeof(res->message),
		         "%s is %s: %d certificate(s) revoked (%s)%s", serial,
		         kl_registry_state_name(to), res->revoked, kl_crl_reason_name(reason),
		         lost ? ", its EK deny-listed" : "");
	}
	kl_life_audit(&l, json_object_get(l.ev));
	kl_life_unlock(&l);
	kl_life_cleanup(&l);
	return 0;
}

int kl_life_lost(const kl_life_config *cfg, const char *serial, int reason, const char *actor,
                 kl_life_result *res)
{
	return revoke_device(cfg, serial, reason, actor, res, true);
}

int kl_life_revoke_device(const kl_life_config *cfg, const char *serial, int reason,
                          const char *actor, kl_life_result *res)
{
	return revoke_device(cfg, serial, reason, actor, res, false);
}
