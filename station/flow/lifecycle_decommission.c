/* Decommission of a present device with cryptographic erase and a signed
 * sanitization record (lifecycle.h, docs/lifecycle.md): prove, revoke,
 * erase, verify, record. And the record's export and verification. */
#include "lifecycle.h"
#include "lifecycle_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "kl_error.h"
#include "registry_life.h"
#include "tpm_nv.h"
#include "tpm_persist.h"

#define RECORD_FORMAT "keyline-sanitization-record-v1"

/* What the record says about the keys, in plain words (NIST SP 800-88 Rev. 1
 * §2.6: a cryptographic erase is only as good as what it removes). */
#define LIMITATION                                                                              \
	"The IAK and IDevID are primary keys of the TPM's endorsement hierarchy (TCG TPM 2.0 "  \
	"Keys for Device Identity and Attestation): the TPM can derive them again from its "    \
	"endorsement primary seed and their templates, and TPM2_Clear does not change that "    \
	"seed. The erase removes the persisted copies and the certificates stored in the TPM; " \
	"the certificates that bound the keys to this device are revoked "                      \
	"(cessationOfOperation), so a key derived again identifies nothing. The EK and its "    \
	"certificate are the TPM vendor's and stay."

struct decom {
	struct life l;
	bool repurpose;
	json_object *actions; /* what the erase did, in order */
	json_object *checks;  /* what the read-back found */
	bool clear_refused;
	char clear_detail[300];
};

static int prove(struct decom *d)
{
	struct life *l = &d->l;
	int64_t open_id = 0;
	int rc, pending = 0;

	kl_life_step_begin(l, "prove");
	if (!l->cfg->record_key || !l->cfg->record_cert)
		return kl_life_refuse(l, "no_record_key",
		                      "the station has no key to sign sanitization records with: "
		                      "nothing was done");
	kl_life_lock(l);
	rc = kl_life_load(l);
	if (rc == 0) {
		pending = kl_registry_sanitize_pending(l->cfg->reg, l->serial, &open_id);
		if (pending < 0)
			rc = kl_life_failed(l, "registry_error", pending);
	}
	kl_life_unlock(l);
	if (rc < 0)
		return rc;
	if (l->dev.state == KL_DEVICE_PREREGISTERED || l->dev.state == KL_DEVICE_PROVISIONING)
		return kl_life_refuse(l, "not_provisioned",
		                      "%s is %s: it has no identity to prove; report it lost or "
		                      "abort its provisioning instead",
		                      l->serial, kl_registry_state_name(l->dev.state));
	if (l->dev.state != KL_DEVICE_PROVISIONED && l->dev.state != KL_DEVICE_REVOKED)
		return kl_life_refuse(l, "device_state",
		                      "%s is %s: only a provisioned or revoked device can be "
		                      "decommissioned here",
		                      l->serial, kl_registry_state_name(l->dev.state));
	/* A revoked device, or one an interrupted decommission revoked, still
	 * proves itself with its (revoked) IDevID certificate; one whose keys
	 * are gone, with its EK. */
	if (kl_life_prove(l, l->dev.state == KL_DEVICE_REVOKED || pending == 1, false, true) < 0)
		return -1;
	kl_life_lock(l);
	rc = kl_registry_sanitize_open(l->cfg->reg, l->serial, l->actor, &l->sanitize_id);
	kl_life_unlock(l);
	if (rc < 0)
		return kl_life_failed(l, "registry_error", rc);
	l->sanitize_resumed = rc == 1;
	l->res->record_id = l->sanitize_id;
	kl_life_step_end(l);
	return 0;
}

static int revoke_step(struct decom *d)
{
	struct life *l = &d->l;
	int n;

	kl_life_step_begin(l, "revoke");
	kl_life_lock(l);
	n = kl_life_revoke_where(l, 5 /* cessationOfOperation */, NULL, NULL, NULL);
	kl_life_unlock(l);
	if (n < 0)
		return kl_life_failed(l, "ca_error", n);
	l->res->revoked = n;
	kl_life_step_end(l);
	return 0;
}

static void action(struct decom *d, const char *what, const char *target, const char *result)
{
	json_object *a = json_object_new_object();

	json_object_object_add(a, "action", json_object_new_string(what));
	json_object_object_add(a, "target", json_object_new_string(target));
	json_object_object_add(a, "result", json_object_new_string(result));
	json_object_array_add(d->actions, a);
}

static const struct {
	uint32_t handle;
	const char *name;
} keys[] = { { KL_TPM_HANDLE_IDEVID, "IDevID key" }, { KL_TPM_HANDLE_IAK, "IAK key" } };

static const struct {
	uint32_t index;
	const char *name;
} indices[] = { { KL_TPM_NV_IDEVID_CERT, "IDevID certificate" },
	        { KL_TPM_NV_IAK_CERT, "IAK certificate" } };

static int erase(struct decom *d)
{
	struct life *l = &d->l;
	char target[64];
	bool exists;
	int rc;

	kl_life_step_begin(l, "erase");
	/* Our handles on the keys are about to go with them. */
	kl_tpm_object_free(l->idevid);
	kl_tpm_object_free(l->iak);
	l->idevid = l->iak = NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(target, sizeof(target), "%s 0x%08x", keys[i].name, keys[i].handle);
		if (kl_tpm_persistent_exists(l->tpm, keys[i].handle, &exists) < 0)
			return kl_life_failed(l, "erase_failed", -(int)kl_error_code());
		if (exists && (rc = kl_tpm_persistent_evict(l->tpm, keys[i].handle)) < 0)
			return kl_life_failed(l, "erase_failed", rc);
		action(d, "TPM2_EvictControl", target, exists ? "evicted" : "absent already");
	}
	for (size_t i = 0; i < sizeof(indices) / sizeof(indices[0]); i++) {
		snprintf(target, sizeof(target), "%s NV 0x%08x", indices[i].name, indices[i].index);
		rc = kl_tpm_nv_undefine(l->tpm, indices[i].index);
		if (rc < 0 && rc != -KL_E_NOTFOUND)
			return kl_life_failed(l, "erase_failed", rc);
		action(d, "TPM2_NV_UndefineSpace", target,
		       rc == 0 ? "undefined" : "absent already");
	}
	/* TPM2_Clear with the lockout authorisation: every owner object and
	 * index, and a new storage seed. Refused is recorded, not fatal: what
	 * the station made is gone already. */
	rc = kl_tpm_clear(l->tpm);
	if (rc == 0) {
		l->res->tpm_cleared = true;
		action(d, "TPM2_Clear", "owner hierarchy (lockout authorisation)",
		       "cleared: owner objects and indices removed, storage seed replaced");
	} else if (rc == -KL_E_PERM) {
		d->clear_refused = true;
		snprintf(d->clear_detail, sizeof(d->clear_detail), "%s", kl_error_detail());
		action(d, "TPM2_Clear", "owner hierarchy (lockout authorisation)", d->clear_detail);
	} else {
		return kl_life_failed(l, "erase_failed", rc);
	}
	kl_life_step_end(l);
	return 0;
}

static int verify(struct decom *d)
{
	struct life *l = &d->l;
	unsigned char *data = NULL;
	char target[64];
	bool exists, ok = true;
	size_t len;
	int rc;

	kl_life_step_begin(l, "verify");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_object *c = json_object_new_object();

		if (kl_tpm_persistent_exists(l->tpm, keys[i].handle, &exists) < 0) {
			json_object_put(c);
			return kl_life_failed(l, "tpm_error", -(int)kl_error_code());
		}
		snprintf(target, sizeof(target), "persistent handle 0x%08x (%s)", keys[i].handle,
		         keys[i].name);
		json_object_object_add(c, "check", json_object_new_string(target));
		json_object_object_add(c, "result",
		                       json_object_new_string(exists ? "PRESENT" : "absent"));
		json_object_array_add(d->checks, c);
		ok &= !exists;
	}
	for (size_t i = 0; i < sizeof(indices) / sizeof(indices[0]); i++) {
		json_object *c = json_object_new_object();

		rc = kl_tpm_nv_read(l->tpm, indices[i].index, &data, &len);
		free(data);
		data = NULL;
		if (rc < 0 && rc != -KL_E_NOTFOUND && rc != -KL_E_STATE &&
		    rc != -KL_E_UNSUPPORTED) {
			json_object_put(c);
			return kl_life_failed(l, "tpm_error", rc);
		}
		snprintf(target, sizeof(target), "NV index 0x%08x (%s)", indices[i].index,
		         indices[i].name);
		json_object_object_add(c, "check", json_object_new_string(target));
		json_object_object_add(
		    c, "result",
		    json_object_new_string(rc == -KL_E_NOTFOUND ? "undefined" : "DEFINED"));
		json_object_array_add(d->checks, c);
		ok &= rc == -KL_E_NOTFOUND;
	}
	if (!ok)
		return kl_life_refuse(l, "erase_unverified",
		                      "the read-back finds identity objects still in the TPM: the "
		                      "erase is not verified and no record was made; run it again");
	kl_life_step_end(l);
	return 0;
}

static int revoked_list(void *ctx, const kl_registry_cert *c)
{
	json_object *list = ctx, *o;

	if (!c->revoked)
		return 0;
	o = json_object_new_object();
	json_object_object_add(o, "serial", json_object_new_string(c->serial));
	json_object_object_add(o, "profile", json_object_new_string(c->profile));
	json_object_object_add(o, "reason", json_object_new_string(kl_crl_reason_name(c->reason)));
	json_object_array_add(list, o);
	return 0;
}

/* The signed bytes: the record member, serialised compactly in member order
 * (json-c's plain form, no escaped slashes). The record holds strings,
 * integers, booleans, arrays and objects only, which parse and serialise
 * back to the same bytes. */
static const char *record_bytes(json_object *record)
{
	return json_object_to_json_string_ext(record, JSON_C_TO_STRING_PLAIN |
	                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
}

static int sign_record(EVP_PKEY *key, X509 *cert, json_object *record, char **ret)
{
	const char *text = record_bytes(record);
	unsigned char *sig = NULL;
	char *b64 = NULL, *pem = NULL;
	size_t sig_len = 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	BIO *bio = BIO_new(BIO_s_mem());
	json_object *env = NULL;
	int rc = -KL_E_CRYPTO;
	long pem_len;

	if (!m || !bio || EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(m, NULL, &sig_len, (const unsigned char *)text, strlen(text)) != 1 ||
	    !(sig = OPENSSL_malloc(sig_len)) ||
	    EVP_DigestSign(m, sig, &sig_len, (const unsigned char *)text, strlen(text)) != 1) {
		rc = kl_error_set_ssl(KL_E_CRYPTO, "sign the sanitization record");
		goto out;
	}
	b64 = OPENSSL_malloc(4 * ((sig_len + 2) / 3) + 1);
	if (!b64 || PEM_write_bio_X509(bio, cert) != 1) {
		rc = kl_error_set_ssl(KL_E_CRYPTO, "sanitization record: encode");
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)sig_len);
	pem_len = BIO_get_mem_data(bio, &pem);
	env = json_object_new_object();
	json_object_object_add(env, "record", json_object_get(record));
	json_object_object_add(env, "signature", json_object_new_string(b64));
	json_object_object_add(env, "signer", json_object_new_string_len(pem, (int)pem_len));
	*ret = strdup(json_object_to_json_string_ext(env, JSON_C_TO_STRING_PRETTY |
	                                                      JSON_C_TO_STRING_SPACED |
	                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
	rc = *ret ? 0 : kl_error_set(KL_E_NOMEM, "sanitization record: out of memory");
out:
	json_object_put(env);
	OPENSSL_free(sig);
	OPENSSL_free(b64);
	BIO_free(bio);
	EVP_MD_CTX_free(m);
	return rc;
}

static json_object *build_record(struct decom *d)
{
	struct life *l = &d->l;
	json_object *rec = json_object_new_object(), *o, *proof;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(rec, "format", json_object_new_string(RECORD_FORMAT));
	json_object_object_add(rec, "guideline",
	                       json_object_new_string("NIST SP 800-88 Rev. 1, Guidelines for "
	                                              "Media Sanitization"));
	json_object_object_add(rec, "record_id", json_object_new_int64(l->sanitize_id));
	o = json_object_new_object();
	json_object_object_add(o, "serial", json_object_new_string(l->serial));
	json_object_object_add(o, "tenant", json_object_new_string(l->dev.tenant));
	json_object_object_add(o, "ek_sha256", json_object_new_string(l->dev.ek_sha256));
	json_object_object_add(o, "ek_type",
	                       json_object_new_string(kl_ek_type_name(l->ek_type)
	                                                  ? kl_ek_type_name(l->ek_type)
	                                                  : "unknown"));
	json_object_object_add(o, "media", json_object_new_string("TPM 2.0"));
	json_object_object_add(rec, "device", o);
	if (json_object_object_get_ex(l->ev, "identity_proof", &proof))
		json_object_object_add(rec, "identity_proof", json_object_get(proof));
	o = json_object_new_object();
	json_object_object_add(o, "category", json_object_new_string("Purge"));
	json_object_object_add(o, "method", json_object_new_string("Purge: cryptographic erase"));
	json_object_object_add(
	    o, "technique",
	    json_object_new_string("the device identity keys persisted in the TPM evicted "
	                           "(TPM2_EvictControl), the certificate NV indices the station "
	                           "defined undefined (TPM2_NV_UndefineSpace), the owner "
	                           "hierarchy cleared (TPM2_Clear) where the lockout "
	                           "authorisation allows; every certificate of the device "
	                           "revoked"));
	json_object_object_add(o, "actions", json_object_get(d->actions));
	json_object_object_add(o, "tpm2_clear", json_object_new_boolean(l->res->tpm_cleared));
	if (d->clear_refused)
		json_object_object_add(o, "tpm2_clear_refused",
		                       json_object_new_string(d->clear_detail));
	json_object_object_add(o, "limitations", json_object_new_string(LIMITATION));
	json_object_object_add(rec, "sanitization", o);
	o = json_object_new_object();
	json_object_object_add(o, "method",
	                       json_object_new_string("read back: persistent handles "
	                                              "(TPM2_GetCapability) and NV indices "
	                                              "(TPM2_NV_ReadPublic) queried after the "
	                                              "erase"));
	json_object_object_add(o, "checks", json_object_get(d->checks));
	json_object_object_add(o, "result", json_object_new_string("pass"));
	json_object_object_add(rec, "verification", o);
	o = json_object_new_array();
	/* A signed record that forgot a certificate would be worse than none. */
	if (kl_registry_device_certs(l->cfg->reg, l->serial, revoked_list, o) < 0) {
		json_object_put(o);
		json_object_put(rec);
		return NULL;
	}
	json_object_object_add(rec, "certificates_revoked", o);
	json_object_object_add(
	    rec, "disposition",
	    json_object_new_string(d->repurpose ? "repurposed: EK not deny-listed, may be "
	                                          "provisioned again"
	                                        : "decommissioned: EK deny-listed"));
	json_object_object_add(rec, "operator", json_object_new_string(l->actor));
	json_object_object_add(
	    rec, "station", json_object_new_string(l->cfg->station_id ? l->cfg->station_id : ""));
	json_object_object_add(rec, "time", json_object_new_string(when));
	json_object_object_add(rec, "resumed", json_object_new_boolean(l->sanitize_resumed));
	return rec;
}

static int record(struct decom *d)
{
	struct life *l = &d->l;
	kl_device_state to = d->repurpose ? KL_DEVICE_REPURPOSED : KL_DEVICE_DECOMMISSIONED;
	json_object *rec;
	char *signed_json = NULL, why[160];
	int rc;

	kl_life_step_begin(l, "record");
	kl_life_lock(l);
	rec = build_record(d);
	/* The record key is in the HSM: signed under the lock. */
	if (!rec)
		rc = kl_error_wrap("the sanitization record");
	else if (l->cfg->record_key && l->cfg->record_cert)
		rc = sign_record(l->cfg->record_key, l->cfg->record_cert, rec, &signed_json);
	else
		rc = kl_error_set(KL_E_UNAVAILABLE, "the record key's HSM is unavailable");
	json_object_put(rec);
	if (rc == 0)
		rc = kl_store_begin(l->cfg->store);
	if (rc == 0) {
		snprintf(why, sizeof(why), "%s by %s after cryptographic erase (record %lld)",
		         d->repurpose ? "repurposed" : "decommissioned", l->actor,
		         (long long)l->sanitize_id);
		rc = kl_registry_sanitize_close(l->cfg->reg, l->sanitize_id, signed_json, l->actor);
		if (rc == 0)
			rc =
			    kl_registry_device_set_state(l->cfg->reg, l->serial, to, why, l->actor);
		if (rc < 0)
			kl_store_rollback(l->cfg->store);
		else
			rc = kl_store_commit(l->cfg->store);
	}
	kl_life_unlock(l);
	free(signed_json);
	if (rc < 0)
		return kl_life_failed(l, "record_failed", rc);
	kl_life_step_end(l);
	return 0;
}

int kl_life_decommission(const kl_life_config *cfg, const kl_life_job *job, bool repurpose,
                         kl_life_result *res)
{
	static int (*const steps[])(struct decom *) = { prove, revoke_step, erase, verify, record };
	struct decom d = { .repurpose = repurpose };
	struct life *l = &d.l;
	int rc;

	if (!job)
		return kl_error_set(KL_E_INVALID, "decommission: no job");
	rc = kl_life_start(l, cfg, job, "decommission", job->serial, job->actor, res);
	if (rc < 0)
		return rc;
	d.actions = json_object_new_array();
	d.checks = json_object_new_array();
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (i > 0 && kl_life_cancelled(l))
			break;
		if (steps[i](&d) < 0)
			break;
	}
	kl_life_lock(l);
	json_object *a = json_object_new_object();
	json_object_object_add(a, "repurpose", json_object_new_boolean(repurpose));
	json_object_object_add(a, "record_id", json_object_new_int64(l->sanitize_id));
	json_object_object_add(a, "tpm_cleared", json_object_new_boolean(res->tpm_cleared));
	kl_life_audit(l, a);
	kl_life_unlock(l);
	if (res->rc == 0)
		snprintf(res->message, sizeof(res->message),
		         "%s %s: %d certificate(s) revoked, identity erased and verified%s, "
		         "sanitization record %lld",
		         l->serial, repurpose ? "repurposed" : "decommissioned", res->revoked,
		         res->tpm_cleared ? ", TPM cleared" : " (TPM2_Clear refused)",
		         (long long)l->sanitize_id);
	json_object_put(d.actions);
	json_object_put(d.checks);
	kl_life_cleanup(l);
	return 0;
}

int kl_life_record_get(kl_registry *reg, const char *serial, int64_t id, char **json)
{
	if (!reg || !serial || !json)
		return kl_error_set(KL_E_INVALID,
		                    "sanitization record: registry and serial required");
	return kl_registry_sanitize_get(reg, serial, id, json);
}

static int verify_chain(X509 *signer, const X509 *issuer)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = 0;

	if (st && ctx && X509_STORE_add_cert(st, (X509 *)issuer) == 1 &&
	    X509_STORE_CTX_init(ctx, st, signer, NULL) == 1) {
		/* The issuer may be an intermediate: it is the anchor here. */
		X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
		ok = X509_verify_cert(ctx) == 1;
		if (!ok)
			kl_error_set(KL_E_CRYPTO,
			             "the record's signer certificate does not chain to "
			             "the issuer: %s",
			             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	} else {
		kl_error_set_ssl(KL_E_CRYPTO, "record signer: certificate store");
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok ? 0 : -KL_E_CRYPTO;
}

int kl_life_record_verify(const char *json, const X509 *issuer)
{
	json_object *env = NULL, *rec, *sig_o, *signer_o;
	unsigned char *sig = NULL;
	const char *b64, *text;
	X509 *signer = NULL;
	BIO *bio = NULL;
	EVP_MD_CTX *m = NULL;
	size_t b64_len;
	int sig_len, rc = -KL_E_CRYPTO;

	if (!json)
		return kl_error_set(KL_E_INVALID, "sanitization record: nothing to verify");
	env = json_tokener_parse(json);
	if (!env || !json_object_is_type(env, json_type_object) ||
	    !json_object_object_get_ex(env, "record", &rec) ||
	    !json_object_is_type(rec, json_type_object) ||
	    !json_object_object_get_ex(env, "signature", &sig_o) ||
	    !json_object_object_get_ex(env, "signer", &signer_o)) {
		rc =
		    kl_error_set(KL_E_CRYPTO, "not a signed sanitization record (record, signature "
		                              "and signer are required)");
		goto out;
	}
	bio = BIO_new_mem_buf(json_object_get_string(signer_o), -1);
	signer = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	if (!signer) {
		rc = kl_error_set_ssl(KL_E_CRYPTO, "the record's signer is not a PEM certificate");
		goto out;
	}
	if (!(X509_get_key_usage(signer) & KU_DIGITAL_SIGNATURE)) {
		rc = kl_error_set(KL_E_CRYPTO, "the record's signer may not sign (no "
		                               "digitalSignature key usage)");
		goto out;
	}
	if (issuer && verify_chain(signer, issuer) < 0)
		goto out;
	b64 = json_object_get_string(sig_o);
	b64_len = b64 ? strlen(b64) : 0;
	sig = OPENSSL_malloc(b64_len / 4 * 3 + 3);
	sig_len = sig && b64_len % 4 == 0 && b64_len
	              ? EVP_DecodeBlock(sig, (const unsigned char *)b64, (int)b64_len)
	              : -1;
	if (sig_len < 0) {
		rc = kl_error_set(KL_E_CRYPTO, "the record's signature is not base64");
		goto out;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	for (size_t i = b64_len; i > 0 && b64[i - 1] == '='; i--)
		sig_len--;
	text = record_bytes(rec);
	m = EVP_MD_CTX_new();
	if (!m ||
	    EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, X509_get0_pubkey(signer)) != 1 ||
	    EVP_DigestVerify(m, sig, (size_t)sig_len, (const unsigned char *)text, strlen(text)) !=
	        1) {
		ERR_clear_error();
		rc =
		    kl_error_set(KL_E_CRYPTO, "the sanitization record's signature does not "
		                              "verify: it was changed or not signed by its signer");
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(m);
	OPENSSL_free(sig);
	X509_free(signer);
	BIO_free(bio);
	json_object_put(env);
	return rc;
}
