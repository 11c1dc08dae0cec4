/* The DUT's identity keys through provisioning: none there yet (step 2),
 * the IAK created (7), the IAK proven to live in the TPM that owns the EK
 * (8), the IDevID created and certified by it (9) and its possession proven
 * (10), both engraved with their certificates (12); and for a device
 * provisioned before, the check that it still holds that identity. See
 * engine_internal.h and docs/provisioning.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "attest.h"
#include "credential.h"
#include "engine_internal.h"
#include "evidence_internal.h"
#include "identity_internal.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "tpm_activate.h"
#include "tpm_object.h"
#include "tpm_nv.h"
#include "tpm_persist.h"

/* What the IDevID signs to prove possession (UC007-1 step 6): a fixed label,
 * the device serial and a fresh station nonce, so the signature can serve no
 * other purpose. */
#define POP_LABEL "KEYLINE-POP-V1"

int kl_eng_factory_new(struct run *r)
{
	static const uint32_t handles[] = { KL_TPM_HANDLE_IAK, KL_TPM_HANDLE_IDEVID };
	static const uint32_t indices[] = { KL_TPM_NV_IAK_CERT, KL_TPM_NV_IDEVID_CERT };
	unsigned char *data = NULL;
	size_t len;
	bool exists;

	kl_eng_step_begin(r, KL_STEP_FACTORY_NEW);
	for (size_t i = 0; i < 2; i++) {
		if (kl_tpm_persistent_exists(r->tpm, handles[i], &exists) < 0)
			return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
		r->had_identity |= exists;
		int rc = kl_tpm_nv_read(r->tpm, indices[i], &data, &len);
		free(data);
		data = NULL;
		if (rc == 0 || rc == -KL_E_STATE)
			r->had_identity = true;
		else if (rc != -KL_E_NOTFOUND)
			return kl_eng_failed(r, "tpm_error", rc);
	}
	/* Whether that is a resume, a device provisioned before, or a TPM that
	 * is not factory-new is decided with the registry in step 5. */
	kl_eng_step_end(r);
	return 0;
}

int kl_eng_clean_dut(struct run *r)
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

/* Step 7: the IAK. The IDevID is made in step 9, once the station's
 * attestation key of step 8 is gone: an IAK, that key and the EK fill the
 * three object slots a small TPM has (swtpm's). */
int kl_eng_keys(struct run *r)
{
	kl_eng_step_begin(r, KL_STEP_KEYS);
	if (kl_tpm_object_create(r->tpm, NULL, KL_TPM_KEY_IAK_P256, &r->iak) < 0 ||
	    kl_tpm_object_public(r->iak, &r->iak_pub) < 0)
		return kl_eng_failed(r, "key_creation_failed", -(int)kl_error_code());
	kl_eng_step_end(r);
	return 0;
}

/* The credential challenge of step 8 for ak: the TPM that owns the EK
 * decrypts it only for a key of that name loaded in it. */
static int activate(struct run *r, const kl_tpm_object *ak)
{
	unsigned char nonce[32];
	kl_credential *cred = NULL;
	kl_secret *back = NULL;
	kl_tpm_name name;
	int rc;

	if (RAND_bytes(nonce, sizeof(nonce)) != 1)
		return kl_eng_failed(r, "rng_failed", -KL_E_CRYPTO);
	kl_tpm_object_name(ak, &name);
	rc = kl_make_credential(r->ek_pub, r->ek_type, nonce, sizeof(nonce), &name, &cred);
	if (rc < 0)
		return kl_eng_failed(r, "activation_failed", rc);
	rc = kl_tpm_activate_credential(r->tpm, r->ek_type, ak, cred, &back);
	kl_credential_free(cred);
	if (rc < 0) {
		OPENSSL_cleanse(nonce, sizeof(nonce));
		return kl_eng_refuse(
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
		return kl_eng_refuse(
		    r, "activation_failed",
		    "the TPM answered the credential challenge with the wrong secret");
	return 0;
}

/* Step 8: the IAK lives in the TPM that owns the EK. The EK credential is
 * activated for an attestation key of the station's (the IAK's ADMIN role,
 * which TPM2_ActivateCredential needs, is behind the DevID spec's policy),
 * and that key certifies the IAK's creation in the same TPM. */
int kl_eng_activate(struct run *r)
{
	kl_tpm_object *ak = NULL;
	EVP_PKEY *ak_pub = NULL;
	unsigned char *area = NULL;
	size_t area_len = 0;
	json_object *c = NULL;
	kl_attest_verdict v;
	char why[64];
	int rc, ev_rc;

	kl_eng_step_begin(r, KL_STEP_ACTIVATE);
	if (kl_tpm_object_create(r->tpm, NULL, KL_TPM_KEY_ATTEST_P256, &ak) < 0 ||
	    kl_tpm_object_public(ak, &ak_pub) < 0 ||
	    kl_tpm_object_public_area(ak, &area, &area_len) < 0) {
		rc = kl_eng_failed(r, "key_creation_failed", -(int)kl_error_code());
		goto out;
	}
	rc = activate(r, ak);
	if (rc < 0)
		goto out;
	if (kl_ev_string(r->evidence, "activation", "ok") < 0 ||
	    kl_ev_object(r->evidence, "iak_creation", &c) < 0 ||
	    kl_ev_hex(c, "ak_public", area, area_len) < 0) {
		rc = kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
		goto out;
	}
	rc = kl_identity_certify_creation(r->tpm, r->iak, ak, ak_pub, c, &v, &ev_rc);
	if (rc == -KL_E_CRYPTO)
		rc = kl_eng_refuse(r, kl_identity_reason("iak_creation", v, why, sizeof(why)),
		                   "TPM2_CertifyCreation does not prove the IAK was made in the "
		                   "TPM that owns the EK: %s",
		                   kl_error_detail());
	else if (rc < 0)
		rc = kl_eng_failed(r, "activation_failed", rc);
	else if (ev_rc < 0)
		rc = kl_eng_failed(r, "out_of_memory", ev_rc);
	else
		kl_eng_step_end(r);
out:
	free(area);
	EVP_PKEY_free(ak_pub);
	kl_tpm_object_free(ak);
	return rc;
}

/* Step 9: the IDevID, made now, and its creation certified by the IAK
 * over a fresh nonce; then every attribute of both keys. */
int kl_eng_certify(struct run *r)
{
	json_object *c = NULL;
	kl_attest_verdict v;
	char why[64];
	int rc, ev_rc, which;

	kl_eng_step_begin(r, KL_STEP_CERTIFY);
	if (kl_tpm_object_create(r->tpm, NULL, KL_TPM_KEY_IDEVID_P256, &r->idevid) < 0 ||
	    kl_tpm_object_public(r->idevid, &r->idevid_pub) < 0)
		return kl_eng_failed(r, "key_creation_failed", -(int)kl_error_code());
	if (kl_ev_object(r->evidence, "certify", &c) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	rc = kl_identity_certify_creation(r->tpm, r->idevid, r->iak, r->iak_pub, c, &v, &ev_rc);
	if (rc == -KL_E_CRYPTO)
		return kl_eng_refuse(
		    r, kl_identity_reason("certify", v, why, sizeof(why)),
		    "TPM2_CertifyCreation does not prove the identity key is in this TPM: %s",
		    kl_error_detail());
	if (rc < 0)
		return kl_eng_failed(r, "certify_failed", rc);
	if (ev_rc < 0)
		return kl_eng_failed(r, "out_of_memory", ev_rc);
	/* Every attribute bit of both keys, as the TPM reports them. */
	rc = kl_identity_check_keys(r->iak, r->idevid, &which, &v);
	if (rc == -KL_E_CRYPTO)
		return kl_eng_refuse(r, kl_identity_reason("key", v, why, sizeof(why)),
		                     "the %s is not the key it must be: %s",
		                     which == 0 ? "IAK" : "IDevID", kl_error_detail());
	if (rc < 0)
		return kl_eng_failed(r, "certify_failed", rc);
	kl_eng_step_end(r);
	return 0;
}

/* The key signs a fresh nonce (identity_internal.h, POP_LABEL); the
 * signature must verify with pub. No evidence is kept of these checks. */
static int prove(struct run *r, kl_tpm_object *key, EVP_PKEY *pub)
{
	int ev_rc;

	return kl_identity_prove(r->tpm, key, pub, POP_LABEL, r->job->serial, NULL, &ev_rc);
}

int kl_eng_pop(struct run *r)
{
	json_object *p = NULL;
	int ev_rc;

	kl_eng_step_begin(r, KL_STEP_POP);
	if (kl_ev_object(r->evidence, "proof_of_possession", &p) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	if (kl_identity_prove(r->tpm, r->idevid, r->idevid_pub, POP_LABEL, r->job->serial, p,
	                      &ev_rc) < 0)
		return kl_eng_refuse(r, "pop_failed",
		                     "the identity key's proof of possession failed: %s",
		                     kl_error_detail());
	if (ev_rc < 0)
		return kl_eng_failed(r, "out_of_memory", ev_rc);
	kl_eng_step_end(r);
	return 0;
}

int kl_eng_engrave(struct run *r)
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

	kl_eng_step_begin(r, KL_STEP_ENGRAVE);
	for (size_t i = 0; i < 2 && rc == 0; i++) {
		len = i2d_X509(items[i].cert, &der);
		if (len <= 0)
			return kl_eng_failed(r, "engrave_failed", -KL_E_CRYPTO);
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
		return kl_eng_failed(r, "engrave_failed", rc);

	/* A fresh signature by the persisted IDevID verifies with the public
	 * key of the certificate that now stands in its NV index. */
	kl_tpm_object *persisted = NULL;
	rc = kl_tpm_persistent_load(r->tpm, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256,
	                            &persisted);
	if (rc == 0)
		rc = prove(r, persisted, X509_get0_pubkey(r->idevid_cert));
	kl_tpm_object_free(persisted);
	if (rc < 0)
		return kl_eng_failed(r, "engrave_failed", rc);
	if (kl_ev_handles(r->evidence, true) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	kl_eng_step_end(r);
	return 0;
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
int kl_eng_check_engraved(struct run *r)
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
		kl_eng_lock(r);
		rc = kl_registry_device_certs(r->cfg->reg, r->job->serial, engraved_match, &f);
		kl_eng_unlock(r);
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
		         prove(r, key, X509_get0_pubkey(x)) < 0)
			snprintf(why, sizeof(why),
			         "its IDevID does not sign for its certificate: %s",
			         kl_error_detail());
		else if (ids[i].type == KL_TPM_KEY_IDEVID_P256 &&
		         kl_sha256_hex(der, f.len, r->res->idevid_sha256) < 0)
			r->res->idevid_sha256[0] = '\0';
		EVP_PKEY_free(pub);
		kl_tpm_object_free(key);
		X509_free(x);
		free(der);
	}
	if (!why[0])
		return 1;
	r->res->already_provisioned = false;
	return kl_eng_refuse(
	    r, "engraved_mismatch",
	    "%s is registered as provisioned with this EK, but %s: refused; have service "
	    "look at the device (decommission or repurpose it)",
	    r->job->serial, why);
}
