/* The provisioning engine. See engine.h and docs/provisioning.md. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "attest.h"
#include "credential.h"
#include "ek_check.h"
#include "hsm.h"
#include "identity.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "kl_failpoint.h"
#include "tpm_activate.h"
#include "tpm_certify.h"
#include "tpm_nv.h"
#include "tpm_object.h"
#include "tpm_persist.h"

/* What the IDevID signs to prove possession (UC007-1 step 6): a fixed label,
 * the device serial and a fresh station nonce, so the signature can serve no
 * other purpose. */
#define POP_LABEL "KEYLINE-POP-V1"

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

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void backend_lock(struct run *r)
{
	if (r->cfg->lock)
		r->cfg->lock(r->cfg->lock_ctx);
}

static void backend_unlock(struct run *r)
{
	if (r->cfg->unlock)
		r->cfg->unlock(r->cfg->lock_ctx);
}

static void step_begin(struct run *r, kl_step s)
{
	r->step = s;
	r->t0 = now_ms();
	if (r->job->progress)
		r->job->progress(r->job->progress_ctx, s, false, 0);
}

static void step_end(struct run *r)
{
	double ms = now_ms() - r->t0;

	r->res->step_ms[r->step] = ms;
	if (r->job->progress)
		r->job->progress(r->job->progress_ctx, r->step, true, ms);
	kl_failpoint(kl_step_name(r->step));
}

/* Records a refusal or failure of the current step; returns -1 so steps can
 * `return refuse(...)`. */
static int refuse(struct run *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct run *r, const char *reason, const char *fmt, ...)
{
	va_list ap;

	r->res->rc = -KL_E_PERM;
	r->res->failed_step = r->step;
	r->res->step_ms[r->step] = now_ms() - r->t0;
	snprintf(r->res->reason, sizeof(r->res->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(r->res->message, sizeof(r->res->message), fmt, ap);
	va_end(ap);
	return -1;
}

/* A step failed for a technical reason (TPM, HSM, database): the detail of
 * the last error goes to the operator. */
static int failed(struct run *r, const char *reason, int rc)
{
	refuse(r, reason, "%s failed: %s", kl_step_name(r->step), kl_error_detail());
	r->res->rc = rc < 0 ? rc : -KL_E_INVALID;
	return -1;
}

static void ev_hex(json_object *o, const char *key, const unsigned char *p, size_t n)
{
	char *h = malloc(2 * n + 1);

	if (!h)
		return;
	h[0] = '\0';
	kl_hex_encode(p, n, h);
	json_object_object_add(o, key, json_object_new_string(h));
	free(h);
}

/* "certify_bad_signature" from the attestation verdict "bad-signature". */
static const char *attest_reason(const char *prefix, kl_attest_verdict v, char *buf, size_t size)
{
	snprintf(buf, size, "%s_%s", prefix, kl_attest_verdict_name(v));
	for (char *p = buf; *p; p++)
		if (*p == '-')
			*p = '_';
	return buf;
}

/* The first EK type, in order of preference, that the policy allows and
 * whose EK certificate index the TPM has defined. */
static int detect_ek_type(struct run *r)
{
	static const kl_ek_type order[] = { KL_EK_P256, KL_EK_P384, KL_EK_RSA2048 };

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		unsigned char *der = NULL;
		size_t len;
		int rc;

		if (!(r->cfg->ek_types & (1u << order[i])))
			continue;
		rc = kl_tpm_nv_read(r->tpm, kl_ek_type_nv_index(order[i]), &der, &len);
		free(der);
		if (rc == 0) {
			r->ek_type = order[i];
			return 0;
		}
		if (rc != -KL_E_NOTFOUND && rc != -KL_E_STATE)
			return failed(r, "tpm_error", rc);
	}
	return refuse(r, "ek_cert_missing",
	              "the TPM holds no EK certificate of a type the station policy allows");
}

static int discover(struct run *r)
{
	step_begin(r, KL_STEP_DISCOVER);
	if (kl_tpm_open(r->job->link, &r->tpm) < 0)
		return failed(r, "link_failed", -(int)kl_error_code());
	if (kl_tpm_get_info(r->tpm, &r->info) < 0)
		return failed(r, "tpm_error", -(int)kl_error_code());
	/* A killed earlier run may have left objects in the DUT's few slots. */
	size_t leftovers = 0;
	if (kl_tpm_flush_leftovers(r->tpm, &leftovers) < 0)
		return failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek_type == KL_EK__MAX && detect_ek_type(r) < 0)
		return -1;
	r->res->ek_type = r->ek_type;
	if (!(r->cfg->ek_types & (1u << r->ek_type)))
		return refuse(r, "ek_type_not_allowed",
		              "EK type %s is not allowed by the station policy",
		              kl_ek_type_name(r->ek_type));
	json_object *tpm = json_object_new_object();
	char fw[32];
	json_object_object_add(tpm, "manufacturer",
	                       json_object_new_string(r->info.manufacturer_str));
	json_object_object_add(tpm, "vendor", json_object_new_string(r->info.vendor));
	snprintf(fw, sizeof(fw), "%08x.%08x", r->info.firmware_version_1,
	         r->info.firmware_version_2);
	json_object_object_add(tpm, "firmware", json_object_new_string(fw));
	json_object_object_add(r->evidence, "tpm", tpm);
	step_end(r);
	return 0;
}

static int factory_new(struct run *r)
{
	static const uint32_t handles[] = { KL_TPM_HANDLE_IAK, KL_TPM_HANDLE_IDEVID };
	static const uint32_t indices[] = { KL_TPM_NV_IAK_CERT, KL_TPM_NV_IDEVID_CERT };
	unsigned char *data = NULL;
	size_t len;
	bool exists;

	step_begin(r, KL_STEP_FACTORY_NEW);
	for (size_t i = 0; i < 2; i++) {
		if (kl_tpm_persistent_exists(r->tpm, handles[i], &exists) < 0)
			return failed(r, "tpm_error", -(int)kl_error_code());
		r->had_identity |= exists;
		int rc = kl_tpm_nv_read(r->tpm, indices[i], &data, &len);
		free(data);
		data = NULL;
		if (rc == 0 || rc == -KL_E_STATE)
			r->had_identity = true;
		else if (rc != -KL_E_NOTFOUND)
			return failed(r, "tpm_error", rc);
	}
	/* Whether that is a resume, a device provisioned before, or a TPM that
	 * is not factory-new is decided with the registry in step 5. */
	step_end(r);
	return 0;
}

static int ek_steps(struct run *r)
{
	char h[65];

	step_begin(r, KL_STEP_EK_CERT);
	if (kl_ek_check_cert(r->tpm, r->cfg->trust, r->ek_type, &r->ek) < 0)
		return failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek.verdict != KL_EK_OK)
		return refuse(r, kl_ek_verdict_name(r->ek.verdict), "%s", r->ek.reason);
	step_end(r);

	step_begin(r, KL_STEP_EK_MATCH);
	if (kl_ek_check_match(r->tpm, &r->ek, &r->ek_pub) < 0)
		return failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek.verdict != KL_EK_OK)
		return refuse(r, kl_ek_verdict_name(r->ek.verdict), "%s", r->ek.reason);
	json_object *ek = json_object_new_object();
	json_object_object_add(ek, "type", json_object_new_string(kl_ek_type_name(r->ek_type)));
	kl_hex_encode(r->ek.ek_sha256, 32, h);
	json_object_object_add(ek, "sha256", json_object_new_string(h));
	json_object_object_add(ek, "issuer", json_object_new_string(r->ek.issuer));
	json_object_object_add(ek, "manufacturer", json_object_new_string(r->ek.manufacturer));
	ev_hex(ek, "certificate", r->ek.cert_der, r->ek.cert_len);
	json_object_object_add(r->evidence, "ek", ek);
	step_end(r);
	return 0;
}

/* Leftovers of an interrupted run on the DUT go, so that the run starts
 * clean; certificates issued for it but never engraved are revoked
 * (superseded) so that one valid set remains. */
static int revoke_unfinished(void *ctx, const kl_registry_cert *c)
{
	struct run *r = ctx;

	if (strcmp(c->state, "issued") == 0 && !c->revoked)
		return r->cfg->ca
		           ? kl_ca_revoke(r->cfg->ca, c->serial, 4 /* superseded */, r->job->actor)
		           : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
	return 0;
}

static int clean_dut(struct run *r)
{
	const uint32_t handles[] = { KL_TPM_HANDLE_IAK, KL_TPM_HANDLE_IDEVID };
	bool exists;

	for (size_t i = 0; i < 2; i++) {
		if (kl_tpm_persistent_exists(r->tpm, handles[i], &exists) < 0)
			return -1;
		if (exists && kl_tpm_persistent_evict(r->tpm, handles[i]) < 0)
			return -1;
	}
	const uint32_t idx[] = { KL_TPM_NV_IAK_CERT, KL_TPM_NV_IDEVID_CERT };
	for (size_t i = 0; i < 2; i++) {
		int rc = kl_tpm_nv_undefine(r->tpm, idx[i]);

		if (rc < 0 && rc != -KL_E_NOTFOUND)
			return -1;
	}
	return 0;
}

static int gates(struct run *r)
{
	kl_gate_result g;
	int rc;

	step_begin(r, KL_STEP_GATES);
	rc = kl_registry_gate(r->cfg->reg, r->job->serial, r->job->tenant, r->ek.ek_sha256,
	                      r->cfg->require_prereg, &g);
	if (rc == -KL_E_INVALID && !r->job->tenant)
		/* No tenant given and none from a pre-registration. */
		return refuse(r, "not_preregistered", "%s", kl_error_detail());
	if (rc < 0)
		return failed(r, "registry_error", rc);
	if (g.verdict == KL_GATE_ALREADY_PROVISIONED && r->had_identity) {
		/* Idempotent: the same DUT again. Nothing is issued twice. */
		r->res->already_provisioned = true;
		step_end(r);
		return 1;
	}
	if (g.verdict != KL_GATE_OK)
		return refuse(r, g.reason, "%s", g.message);
	snprintf(r->tenant, sizeof(r->tenant), "%s", g.tenant);
	if (r->had_identity && !g.resume)
		return refuse(
		    r, "not_factory_new",
		    "the TPM already holds Keyline identity keys or certificates but the "
		    "registry has no provisioning in progress for %s: refused, nothing is "
		    "issued twice",
		    r->job->serial);
	rc = kl_registry_device_begin(r->cfg->reg, r->job->serial, g.tenant[0] ? g.tenant : NULL,
	                              r->ek.ek_sha256, r->job->actor);
	if (rc < 0)
		return failed(r, "registry_error", rc);
	if (rc == 1 || g.resume) {
		r->res->resumed = true;
		if (kl_registry_device_certs(r->cfg->reg, r->job->serial, revoke_unfinished, r) < 0)
			return failed(r, "ca_error", -(int)kl_error_code());
		if (clean_dut(r) < 0)
			return failed(r, "tpm_error", -(int)kl_error_code());
	}
	step_end(r);
	return 0;
}

static int entropy(struct run *r)
{
	unsigned char seed[64];
	int rc;

	step_begin(r, KL_STEP_ENTROPY);
	backend_lock(r);
	rc = r->cfg->entropy ? kl_hsm_random(r->cfg->entropy, seed, sizeof(seed)) : 1;
	/* A session the token dropped (it restarted): reopen it, without a
	 * login, and ask once more. */
	if (rc == -KL_E_UNAVAILABLE && kl_hsm_recover(r->cfg->entropy) == 0)
		rc = kl_hsm_random(r->cfg->entropy, seed, sizeof(seed));
	backend_unlock(r);
	if (rc == 1)
		return refuse(r, "no_entropy_source", "no HSM is available to seed the TPM");
	if (rc == 0)
		rc = kl_tpm_stir_random(r->tpm, seed, sizeof(seed));
	OPENSSL_cleanse(seed, sizeof(seed));
	if (rc < 0)
		return failed(r, "entropy_failed", rc);
	json_object_object_add(r->evidence, "entropy_bytes", json_object_new_int(64));
	step_end(r);
	return 0;
}

static int keys(struct run *r)
{
	step_begin(r, KL_STEP_KEYS);
	if (kl_tpm_object_create(r->tpm, NULL, KL_TPM_KEY_IAK_P256, &r->iak) < 0 ||
	    kl_tpm_object_create(r->tpm, NULL, KL_TPM_KEY_IDEVID_P256, &r->idevid) < 0 ||
	    kl_tpm_object_public(r->iak, &r->iak_pub) < 0 ||
	    kl_tpm_object_public(r->idevid, &r->idevid_pub) < 0)
		return failed(r, "key_creation_failed", -(int)kl_error_code());
	step_end(r);
	return 0;
}

static int activate(struct run *r)
{
	unsigned char nonce[32];
	kl_credential *cred = NULL;
	kl_secret *back = NULL;
	kl_tpm_name name;
	int rc;

	step_begin(r, KL_STEP_ACTIVATE);
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return failed(r, "rng_failed", -KL_E_CRYPTO);
	kl_tpm_object_name(r->iak, &name);
	rc = kl_make_credential(r->ek_pub, r->ek_type, nonce, sizeof(nonce), &name, &cred);
	if (rc < 0)
		return failed(r, "activation_failed", rc);
	rc = kl_tpm_activate_credential(r->tpm, r->ek_type, r->iak, cred, &back);
	kl_credential_free(cred);
	if (rc < 0) {
		OPENSSL_cleanse(nonce, sizeof(nonce));
		return refuse(
		    r, "activation_failed",
		    "the TPM could not activate a credential for its attestation key: the "
		    "key is not in the TPM that owns this EK (%s)",
		    kl_error_detail());
	}
	bool same =
	    back->len == sizeof(nonce) && CRYPTO_memcmp(back->data, nonce, sizeof(nonce)) == 0;
	kl_secret_free(back);
	OPENSSL_cleanse(nonce, sizeof(nonce));
	if (!same)
		return refuse(r, "activation_failed",
		              "the TPM answered the credential challenge with the wrong secret");
	json_object_object_add(r->evidence, "activation", json_object_new_string("ok"));
	step_end(r);
	return 0;
}

static int certify(struct run *r)
{
	unsigned char nonce[32], *attest = NULL, *sig = NULL;
	size_t attest_len = 0, sig_len = 0;
	kl_tpm_name iak_name, idevid_name;
	kl_attest_report rep;
	char why[64];
	int rc;

	step_begin(r, KL_STEP_CERTIFY);
	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return failed(r, "rng_failed", -KL_E_CRYPTO);
	kl_tpm_object_name(r->iak, &iak_name);
	kl_tpm_object_name(r->idevid, &idevid_name);
	rc = kl_tpm_certify(r->tpm, r->idevid, r->iak, nonce, sizeof(nonce), &attest, &attest_len,
	                    &sig, &sig_len);
	if (rc < 0)
		return failed(r, "certify_failed", rc);
	rc = kl_attest_verify_certify(attest, attest_len, sig, sig_len, r->iak_pub, &iak_name,
	                              &idevid_name, nonce, sizeof(nonce), &rep);
	if (rc == -KL_E_CRYPTO) {
		free(attest);
		free(sig);
		return refuse(r, attest_reason("certify", rep.verdict, why, sizeof(why)),
		              "TPM2_Certify does not prove the identity key is in this TPM: %s",
		              kl_error_detail());
	}
	/* Every attribute bit of both keys, as the TPM reports them. */
	if (rc == 0) {
		kl_attest_verdict v;
		int which;

		rc = kl_identity_check_keys(r->iak, r->idevid, &which, &v);
		if (rc == -KL_E_CRYPTO) {
			free(attest);
			free(sig);
			return refuse(r, attest_reason("key", v, why, sizeof(why)),
			              "the %s is not the key it must be: %s",
			              which == 0 ? "IAK" : "IDevID", kl_error_detail());
		}
	}
	if (rc < 0) {
		free(attest);
		free(sig);
		return failed(r, "certify_failed", rc);
	}
	json_object *c = json_object_new_object();
	ev_hex(c, "nonce", nonce, sizeof(nonce));
	ev_hex(c, "attest", attest, attest_len);
	ev_hex(c, "signature", sig, sig_len);
	json_object_object_add(r->evidence, "certify", c);
	free(attest);
	free(sig);
	step_end(r);
	return 0;
}

/* The key signs a fresh nonce (identity.h, POP_LABEL); the signature must
 * verify with pub. ev (may be NULL) receives the nonce and signature. */
static int prove(struct run *r, kl_tpm_object *key, EVP_PKEY *pub, json_object *ev)
{
	unsigned char nonce[32], *sig = NULL;
	size_t sig_len = 0;
	int rc = kl_identity_sign_check(r->tpm, key, pub, POP_LABEL, r->job->serial, nonce, &sig,
	                                &sig_len);

	if (ev && sig) {
		ev_hex(ev, "nonce", nonce, sizeof(nonce));
		ev_hex(ev, "signature", sig, sig_len);
	}
	free(sig);
	return rc;
}

static int pop(struct run *r)
{
	json_object *p = json_object_new_object();

	step_begin(r, KL_STEP_POP);
	json_object_object_add(r->evidence, "proof_of_possession", p);
	if (prove(r, r->idevid, r->idevid_pub, p) < 0)
		return refuse(r, "pop_failed", "the identity key's proof of possession failed: %s",
		              kl_error_detail());
	step_end(r);
	return 0;
}

/* The profile for this device: per tenant when the station says so. */
static const char *profile(struct run *r, const char *kind, const char *def)
{
	const char *p = NULL;

	if (r->cfg->profile_for)
		p = r->cfg->profile_for(r->cfg->profile_ctx, r->tenant, kind);
	return p ? p : def;
}

static int issue(struct run *r)
{
	kl_issue_result res[2];
	int rc;
	kl_cert_request reqs[2] = {
		{ .profile = profile(r, "iak", r->cfg->iak_profile ? r->cfg->iak_profile : "iak"),
		  .pubkey = r->iak_pub,
		  .serial_number = r->job->serial,
		  .actor = r->job->actor },
		{ .profile = profile(r, "idevid",
		                     r->cfg->idevid_profile ? r->cfg->idevid_profile : "idevid"),
		  .pubkey = r->idevid_pub,
		  .serial_number = r->job->serial,
		  .actor = r->job->actor },
	};

	step_begin(r, KL_STEP_ISSUE);
	backend_lock(r);
	/* The daemon clears ca while it reopens a lost HSM. */
	rc = r->cfg->ca ? kl_ca_issue_batch(r->cfg->ca, reqs, 2, res)
	                : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
	backend_unlock(r);
	if (rc < 0 || res[0].rc < 0 || res[1].rc < 0) {
		const char *why = res[0].rc < 0 ? res[0].error : res[1].error;

		for (int i = 0; i < 2; i++) {
			X509_free(res[i].cert);
			OPENSSL_free(res[i].der);
		}
		return refuse(r, "issue_failed", "the CA did not issue: %s",
		              why[0] ? why : kl_error_detail());
	}
	r->iak_cert = res[0].cert;
	r->idevid_cert = res[1].cert;
	OPENSSL_free(res[0].der);
	OPENSSL_free(res[1].der);
	snprintf(r->res->iak_serial, sizeof(r->res->iak_serial), "%s", res[0].serial);
	snprintf(r->res->idevid_serial, sizeof(r->res->idevid_serial), "%s", res[1].serial);
	json_object *c = json_object_new_object();
	json_object_object_add(c, "iak", json_object_new_string(res[0].serial));
	json_object_object_add(c, "idevid", json_object_new_string(res[1].serial));
	json_object_object_add(r->evidence, "certificates", c);
	step_end(r);
	return 0;
}

static int engrave(struct run *r)
{
	unsigned char *der = NULL, *back = NULL;
	size_t back_len = 0;
	int len, rc = 0;
	struct {
		kl_tpm_object *key;
		uint32_t handle, index;
		X509 *cert;
	} items[2] = {
		{ r->iak, KL_TPM_HANDLE_IAK, KL_TPM_NV_IAK_CERT, r->iak_cert },
		{ r->idevid, KL_TPM_HANDLE_IDEVID, KL_TPM_NV_IDEVID_CERT, r->idevid_cert },
	};

	step_begin(r, KL_STEP_ENGRAVE);
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		len = i2d_X509(items[i].cert, &der);
		if (len <= 0)
			return failed(r, "engrave_failed", -KL_E_CRYPTO);
		rc = kl_tpm_object_persist(r->tpm, items[i].key, items[i].handle);
		if (rc == 0)
			rc = kl_tpm_nv_write_cert(r->tpm, items[i].index, der, (size_t)len);
		/* Read back what the DUT holds now. */
		if (rc == 0)
			rc = kl_tpm_nv_read(r->tpm, items[i].index, &back, &back_len);
		if (rc == 0 && (back_len != (size_t)len || memcmp(back, der, back_len) != 0))
			rc = kl_error_set(KL_E_TPM,
			                  "the certificate read back from NV 0x%08x differs",
			                  items[i].index);
		free(back);
		back = NULL;
		OPENSSL_free(der);
		der = NULL;
	}
	if (rc < 0)
		return failed(r, "engrave_failed", rc);

	/* A fresh signature by the persisted IDevID verifies with the public
	 * key of the certificate that now stands in its NV index. */
	kl_tpm_object *persisted = NULL;
	rc = kl_tpm_persistent_load(r->tpm, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256,
	                            &persisted);
	if (rc == 0)
		rc = prove(r, persisted, X509_get0_pubkey(r->idevid_cert), NULL);
	kl_tpm_object_free(persisted);
	if (rc < 0)
		return failed(r, "engrave_failed", rc);
	json_object *h = json_object_new_object();
	char v[16];
	snprintf(v, sizeof(v), "0x%08x", KL_TPM_HANDLE_IAK);
	json_object_object_add(h, "iak", json_object_new_string(v));
	snprintf(v, sizeof(v), "0x%08x", KL_TPM_HANDLE_IDEVID);
	json_object_object_add(h, "idevid", json_object_new_string(v));
	snprintf(v, sizeof(v), "0x%08x", KL_TPM_NV_IAK_CERT);
	json_object_object_add(h, "iak_cert_nv", json_object_new_string(v));
	snprintf(v, sizeof(v), "0x%08x", KL_TPM_NV_IDEVID_CERT);
	json_object_object_add(h, "idevid_cert_nv", json_object_new_string(v));
	json_object_object_add(r->evidence, "handles", h);
	step_end(r);
	return 0;
}

static int commit(struct run *r)
{
	json_object *t = json_object_new_object();
	int rc;

	step_begin(r, KL_STEP_COMMIT);
	for (int s = 0; s < KL_STEP_COMMIT; s++)
		json_object_object_add(t, kl_step_name((kl_step)s),
		                       json_object_new_double(r->res->step_ms[s]));
	json_object_object_add(r->evidence, "timings_ms", t);
	json_object_object_add(
	    r->evidence, "station",
	    json_object_new_string(r->cfg->station_id ? r->cfg->station_id : ""));
	json_object_object_add(r->evidence, "operator", json_object_new_string(r->job->actor));
	json_object_object_add(r->evidence, "trust_bundle",
	                       json_object_new_string(kl_trust_version(r->cfg->trust)));
	backend_lock(r);
	rc = kl_registry_device_commit(
	    r->cfg->reg, r->job->serial,
	    json_object_to_json_string_ext(r->evidence, JSON_C_TO_STRING_PLAIN), r->job->actor);
	backend_unlock(r);
	if (rc < 0)
		return failed(r, "registry_error", rc);
	step_end(r);
	return 0;
}

/* A refusal after the device was begun gives the serial back (aborted
 * provisioning, EK released) and leaves the audit entry of why. */
/* JSON string contents: quotes and backslashes escaped, control characters
 * dropped. */
static void json_escape(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = in; p && *p && n + 3 < size; p++) {
		if ((unsigned char)*p < 0x20)
			continue;
		if (*p == '"' || *p == '\\')
			out[n++] = '\\';
		out[n++] = *p;
	}
	out[n] = '\0';
}

/* A refusal leaves an audit entry. After step 5 the device was begun: the
 * certificates of this run (if it got as far as issuing) are revoked, and
 * the device goes back to preregistered, its EK released, only when the DUT
 * could be cleaned; otherwise it stays provisioning, so that the next run
 * takes the resume path, which revokes and cleans. */
static void record_refusal(struct run *r)
{
	char detail[1400], msg[600], serial[200], extra[160] = "";
	bool cleaned = false;
	int revoked = 0;

	if (r->res->failed_step > KL_STEP_GATES) {
		cleaned = r->tpm && clean_dut(r) == 0;
		backend_lock(r);
		if (r->res->failed_step >= KL_STEP_ISSUE) {
			revoked = kl_registry_device_certs(r->cfg->reg, r->job->serial,
			                                   revoke_unfinished, r);
		}
		if (cleaned)
			kl_registry_device_set_state(r->cfg->reg, r->job->serial,
			                             KL_DEVICE_PREREGISTERED, r->res->reason,
			                             r->job->actor);
		snprintf(extra, sizeof(extra), ",\"dut_cleaned\":%s,\"certificates_revoked\":%s",
		         cleaned ? "true" : "false", revoked >= 0 ? "true" : "false");
	}
	json_escape(r->res->message, msg, sizeof(msg));
	json_escape(r->job->serial, serial, sizeof(serial));
	snprintf(detail, sizeof(detail),
	         "{\"serial\":\"%s\",\"step\":\"%s\",\"reason\":\"%s\",\"message\":\"%s\"%s}",
	         serial, kl_step_name(r->res->failed_step), r->res->reason, msg, extra);
	if (r->res->failed_step <= KL_STEP_GATES)
		backend_lock(r);
	kl_store_audit(r->cfg->store, r->job->actor, "station.provision.refused", detail);
	backend_unlock(r);
}

/* The registry's valid certificate with this DER, if any. */
struct engraved_find {
	const unsigned char *der;
	size_t len;
	bool found;
};

static int engraved_match(void *ctx, const kl_registry_cert *c)
{
	struct engraved_find *f = ctx;

	if (c->der && !c->revoked && strcmp(c->state, "issued") == 0 && c->der_len == f->len &&
	    memcmp(c->der, f->der, f->len) == 0)
		f->found = true;
	return 0;
}

/* "Already provisioned" is believed only when the DUT shows it: each NV
 * certificate is one of the registry's valid certificates for the serial,
 * the key persisted beside it is that certificate's key, and the IDevID
 * signs a fresh nonce. A TPM whose identity was tampered with, or that
 * lost part of it, is refused rather than passed. */
static int check_engraved(struct run *r)
{
	static const struct {
		const char *what;
		uint32_t index, handle;
		kl_tpm_key_type type;
	} ids[] = {
		{ "IDevID", KL_TPM_NV_IDEVID_CERT, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256 },
		{ "IAK", KL_TPM_NV_IAK_CERT, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IAK_P256 },
	};
	char why[256] = "";

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]) && !why[0]; i++) {
		struct engraved_find f = { 0 };
		unsigned char *der = NULL;
		const unsigned char *q;
		kl_tpm_object *key = NULL;
		EVP_PKEY *pub = NULL;
		X509 *x = NULL;
		int rc;

		rc = kl_tpm_nv_read(r->tpm, ids[i].index, &der, &f.len);
		if (rc < 0) {
			snprintf(why, sizeof(why),
			         "its %s certificate (NV 0x%08x) cannot be read: %s", ids[i].what,
			         ids[i].index, kl_error_detail());
			break;
		}
		f.der = der;
		backend_lock(r);
		rc = kl_registry_device_certs(r->cfg->reg, r->job->serial, engraved_match, &f);
		backend_unlock(r);
		q = der;
		x = d2i_X509(NULL, &q, (long)f.len);
		if (rc < 0 || !f.found || !x)
			snprintf(why, sizeof(why),
			         "its %s certificate (NV 0x%08x) is not a valid certificate the "
			         "registry issued for it",
			         ids[i].what, ids[i].index);
		else if (kl_tpm_persistent_load(r->tpm, ids[i].handle, ids[i].type, &key) < 0 ||
		         kl_tpm_object_public(key, &pub) < 0 ||
		         EVP_PKEY_eq(pub, X509_get0_pubkey(x)) != 1)
			snprintf(why, sizeof(why),
			         "the key at 0x%08x is not the one its %s certificate certifies",
			         ids[i].handle, ids[i].what);
		else if (ids[i].type == KL_TPM_KEY_IDEVID_P256 &&
		         prove(r, key, X509_get0_pubkey(x), NULL) < 0)
			snprintf(why, sizeof(why),
			         "its IDevID does not sign for its certificate: %s",
			         kl_error_detail());
		EVP_PKEY_free(pub);
		kl_tpm_object_free(key);
		X509_free(x);
		free(der);
	}
	if (!why[0])
		return 1;
	r->res->already_provisioned = false;
	return refuse(r, "engraved_mismatch",
	              "%s is registered as provisioned with this EK, but %s: refused; have service "
	              "look at the device (decommission or repurpose it)",
	              r->job->serial, why);
}

/* The steps in order, each with the first kl_step it runs. */
static const struct {
	kl_step first;
	int (*run)(struct run *r);
} steps[] = {
	{ KL_STEP_DISCOVER, discover }, { KL_STEP_FACTORY_NEW, factory_new },
	{ KL_STEP_EK_CERT, ek_steps },  { KL_STEP_GATES, gates },
	{ KL_STEP_ENTROPY, entropy },   { KL_STEP_KEYS, keys },
	{ KL_STEP_ACTIVATE, activate }, { KL_STEP_CERTIFY, certify },
	{ KL_STEP_POP, pop },           { KL_STEP_ISSUE, issue },
	{ KL_STEP_ENGRAVE, engrave },   { KL_STEP_COMMIT, commit },
};

int kl_engine_provision(const kl_engine_config *cfg, const kl_job *job, kl_job_result *res)
{
	struct run r = { .cfg = cfg, .job = job, .res = res };
	double start = now_ms();
	int rc;

	memset(res, 0, sizeof(*res));
	if (!job->serial || !job->link || !job->actor)
		return kl_error_set(KL_E_INVALID, "provision: serial, link and actor are required");
	r.evidence = json_object_new_object();
	if (!r.evidence)
		return kl_error_set(KL_E_NOMEM, "provision: out of memory");
	json_object_object_add(r.evidence, "serial", json_object_new_string(job->serial));
	r.ek_type = job->ek_type;
	res->ek_type = job->ek_type;
	rc = 0;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == 0; i++) {
		if (job->cancelled && job->cancelled(job->cancel_ctx)) {
			r.step = steps[i].first;
			r.t0 = now_ms();
			rc = refuse(&r, "aborted", "the job was aborted before step %s",
			            kl_step_name(steps[i].first));
			break;
		}
		if (steps[i].first == KL_STEP_GATES) {
			backend_lock(&r);
			rc = gates(&r);
			backend_unlock(&r);
			if (rc == 1)
				rc = check_engraved(&r);
		} else {
			rc = steps[i].run(&r);
		}
	}
	if (rc < 0)
		record_refusal(&r);

	res->total_ms = now_ms() - start;
	res->tpm_ms = kl_tpm_busy_ms(r.tpm);
	json_object_put(r.evidence);
	kl_tpm_object_free(r.iak);
	kl_tpm_object_free(r.idevid);
	EVP_PKEY_free(r.iak_pub);
	EVP_PKEY_free(r.idevid_pub);
	EVP_PKEY_free(r.ek_pub);
	X509_free(r.iak_cert);
	X509_free(r.idevid_cert);
	kl_ek_report_clear(&r.ek);
	kl_tpm_free(r.tpm);
	return 0;
}
