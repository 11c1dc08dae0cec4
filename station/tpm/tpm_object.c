/* Credential activation on the DUT's TPM (provisioning step 8), and the keys
 * it is about, over ESAPI.
 *
 * kl_tpm_activate_credential loads two things next to the credentialed
 * object: the EK, recreated from its TCG template, and a policy session.
 * Both are tracked in the kl_tpm and flushed before it returns, on every
 * path: swtpm has no resource manager and only three object slots, and the
 * credentialed object already holds one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "tpm_ek_internal.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_object.h"
#include "tpm_internal.h"
#include "tpm_object_internal.h"

static const char *key_type_name(kl_tpm_key_type type)
{
	switch (type) {
	case KL_TPM_KEY_ATTEST_P256:
		return "attest-p256";
	case KL_TPM_KEY_STORAGE_P256:
		return "storage-p256";
	case KL_TPM_KEY_IAK_P256:
		return "iak-p256";
	case KL_TPM_KEY_IDEVID_P256:
		return "idevid-p256";
	default:
		return "?";
	}
}

/* Flushes *h if set and clears it. After a failure (r < 0) the flush is
 * quiet and r is kept; otherwise a failed flush is the error. */
static int tpm_flush_keep(kl_tpm *t, ESYS_TR *h, int r)
{
	if (*h == ESYS_TR_NONE)
		return r;
	if (r < 0)
		tpm_flush_quiet(t, *h);
	else
		r = tpm_flush(t, *h);
	*h = ESYS_TR_NONE;
	return r;
}

/* TPM 2.0 Part 2 §12.2.4. The attestation key follows the IAK template of
 * TCG "TPM 2.0 Keys for Device Identity and Attestation" (restricted signing,
 * ECDSA with SHA-256) without its authPolicy; the storage key the SRK
 * template of the TCG Provisioning Guidance (restricted decrypt with
 * AES-128-CFB, unique = 32 + 32 zero bytes). */
static int key_template(kl_tpm_key_type type, TPMT_PUBLIC *ret)
{
	TPMT_PUBLIC a;
	TPMS_ECC_PARMS *e = &a.parameters.eccDetail;
	int r;

	memset(&a, 0, sizeof(a));
	a.type = TPM2_ALG_ECC;
	a.nameAlg = TPM2_ALG_SHA256;
	a.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	                     TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
	                     TPMA_OBJECT_RESTRICTED;
	e->curveID = TPM2_ECC_NIST_P256;
	e->kdf.scheme = TPM2_ALG_NULL;
	switch (type) {
	case KL_TPM_KEY_ATTEST_P256:
		a.objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT;
		e->symmetric.algorithm = TPM2_ALG_NULL;
		e->scheme.scheme = TPM2_ALG_ECDSA;
		e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
		break;
	case KL_TPM_KEY_IAK_P256:
	case KL_TPM_KEY_IDEVID_P256:
		/* tpm_keys.c: the identity keys, primaries with unique =
		 * "IAK" / "IDevID" (Device Identity spec §7.3.1). */
		r = kl_tpm_identity_template(type, &a);
		if (r < 0)
			return r;
		break;
	case KL_TPM_KEY_STORAGE_P256:
		a.objectAttributes |= TPMA_OBJECT_DECRYPT;
		e->symmetric.algorithm = TPM2_ALG_AES;
		e->symmetric.keyBits.aes = 128;
		e->symmetric.mode.aes = TPM2_ALG_CFB;
		e->scheme.scheme = TPM2_ALG_NULL;
		a.unique.ecc.x.size = 32;
		a.unique.ecc.y.size = 32;
		break;
	default:
		return kl_error_set(KL_E_INVALID, "TPM key: unknown type %d", (int)type);
	}
	*ret = a;
	return 0;
}

int kl_tpm_key_template(kl_tpm_key_type type, TPMT_PUBLIC *ret)
{
	return key_template(type, ret);
}

/* Everything but `unique` is an input of Create/CreatePrimary and must come
 * back as sent; `unique` must be a P-256 point. */
int kl_tpm_key_check_public(kl_tpm_key_type type, const TPMT_PUBLIC *want, const TPMT_PUBLIC *got)
{
	uint8_t a[sizeof(TPMT_PUBLIC)], b[sizeof(TPMT_PUBLIC)];
	size_t alen = 0, blen = 0;
	TPMT_PUBLIC g = *got;
	TSS2_RC rc;

	g.unique = want->unique;
	rc = Tss2_MU_TPMT_PUBLIC_Marshal(want, a, sizeof(a), &alen);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_MU_TPMT_PUBLIC_Marshal(&g, b, sizeof(b), &blen);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "marshal TPMT_PUBLIC (%s)", key_type_name(type));
	if (alen != blen || memcmp(a, b, alen) != 0)
		return kl_error_set(KL_E_TPM,
		                    "TPM key %s: the TPM returned a public area that does not "
		                    "match the template (type 0x%04x, nameAlg 0x%04x, "
		                    "attributes 0x%08" PRIx32 ")",
		                    key_type_name(type), got->type, got->nameAlg,
		                    (uint32_t)got->objectAttributes);
	if (got->unique.ecc.x.size == 0 || got->unique.ecc.x.size > 32 ||
	    got->unique.ecc.y.size == 0 || got->unique.ecc.y.size > 32)
		return kl_error_set(KL_E_TPM, "TPM key %s: point of %u+%u bytes",
		                    key_type_name(type), (unsigned)got->unique.ecc.x.size,
		                    (unsigned)got->unique.ecc.y.size);
	return 0;
}

/* The name ESAPI holds for h must be the one of the public area we
 * checked: ESAPI uses it in every later authorization. */
static int check_name(kl_tpm *t, ESYS_TR h, const char *what, const kl_tpm_name *name)
{
	_cleanup_(esys_freep) TPM2B_NAME *esys_name = NULL;
	TSS2_RC rc;

	rc = Esys_TR_GetName(t->esys, h, &esys_name);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_TR_GetName(%s)", what);
	if (esys_name->size != name->len || memcmp(esys_name->name, name->buf, name->len) != 0)
		return kl_error_set(KL_E_TPM,
		                    "%s: the object's name does not match its public area", what);
	return 0;
}

static int object_create_primary(kl_tpm *t, const TPMT_PUBLIC *tmpl, const char *what, ESYS_TR *h,
                                 TPM2B_PUBLIC **out_public)
{
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	TPM2B_PUBLIC in = { .publicArea = *tmpl };
	TSS2_RC rc;

	TPM_CALL(t, rc,
	         Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                            ESYS_TR_NONE, &sensitive, &in, &outside_info, &creation_pcr, h,
	                            out_public, NULL, NULL, NULL));
	if (rc == TSS2_RC_SUCCESS)
		return 0;
	if (tpm_rc_code(rc) == TPM2_RC_OBJECT_MEMORY)
		return kl_tpm_rc_error(rc,
		                       "Esys_CreatePrimary(%s): no free transient object slot "
		                       "(something did not flush)",
		                       what);
	return kl_tpm_rc_error(rc, "Esys_CreatePrimary(%s)", what);
}

/* TPM2_Create then TPM2_Load (Part 3 §12.1, §12.2), rather than
 * TPM2_CreateLoaded (§12.9), which TPMs before revision 1.38 lack. */
static int object_create_child(kl_tpm *t, const kl_tpm_object *parent, const TPMT_PUBLIC *tmpl,
                               const char *what, ESYS_TR *h, TPM2B_PUBLIC **out_public)
{
	_cleanup_(esys_freep) TPM2B_PRIVATE *out_private = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	TPM2B_PUBLIC in = { .publicArea = *tmpl };
	TSS2_RC rc;

	TPM_CALL(t, rc,
	         Esys_Create(t->esys, parent->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	                     &sensitive, &in, &outside_info, &creation_pcr, &out_private,
	                     out_public, NULL, NULL, NULL));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Create(%s)", what);
	TPM_CALL(t, rc,
	         Esys_Load(t->esys, parent->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	                   out_private, *out_public, h));
	if (rc == TSS2_RC_SUCCESS)
		return 0;
	if (tpm_rc_code(rc) == TPM2_RC_OBJECT_MEMORY)
		return kl_tpm_rc_error(rc,
		                       "Esys_Load(%s): no free transient object slot "
		                       "(something did not flush)",
		                       what);
	return kl_tpm_rc_error(rc, "Esys_Load(%s)", what);
}

int kl_tpm_object_create(kl_tpm *t, const kl_tpm_object *parent, kl_tpm_key_type type,
                         kl_tpm_object **ret)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *out_public = NULL;
	kl_tpm_object *o = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	TPMT_PUBLIC tmpl;
	char what[64];
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "TPM key: no TPM");
	r = key_template(type, &tmpl);
	if (r < 0)
		return r;
	if (parent && (parent->tpm != t || parent->type != KL_TPM_KEY_STORAGE_P256))
		return kl_error_set(KL_E_INVALID,
		                    "TPM key %s: the parent is not a storage key "
		                    "of this TPM",
		                    key_type_name(type));
	snprintf(what, sizeof(what), "%s %s", parent ? "child" : "primary", key_type_name(type));

	if (parent)
		r = object_create_child(t, parent, &tmpl, what, &h, &out_public);
	else
		r = object_create_primary(t, &tmpl, what, &h, &out_public);
	if (r < 0)
		return r;
	r = tpm_track(t, h);
	if (r < 0) {
		(void)Esys_FlushContext(t->esys, h);
		return r;
	}

	o = calloc(1, sizeof(*o));
	if (!o) {
		r = kl_error_set(KL_E_NOMEM, "TPM key: out of memory");
		goto out;
	}
	o->tpm = t;
	o->handle = h;
	o->type = type;
	h = ESYS_TR_NONE; /* transferred: kl_tpm_object_free flushes it */
	o->pub = out_public->publicArea;

	r = kl_tpm_key_check_public(type, &tmpl, &o->pub);
	if (r < 0)
		goto out;
	r = kl_tpm_public_name(&o->pub, &o->name);
	if (r < 0)
		goto out;
	r = check_name(t, o->handle, what, &o->name);
	if (r < 0)
		goto out;
	r = kl_tpm_public_to_pkey(&o->pub, &o->key);
	if (r < 0)
		goto out;

	*ret = o;
	o = NULL; /* transferred */
	r = 0;
out:
	tpm_flush_quiet(t, h);
	kl_tpm_object_free(o);
	return r;
}

void kl_tpm_object_name(const kl_tpm_object *o, kl_tpm_name *ret)
{
	*ret = o->name;
}

int kl_tpm_object_public(const kl_tpm_object *o, EVP_PKEY **ret)
{
	if (EVP_PKEY_up_ref(o->key) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM key: public key reference");
	*ret = o->key;
	return 0;
}

int kl_tpm_object_public_area(const kl_tpm_object *o, unsigned char **ret, size_t *len)
{
	uint8_t buf[sizeof(TPMT_PUBLIC)];
	unsigned char *out;
	size_t off = 0;
	TSS2_RC rc;

	rc = Tss2_MU_TPMT_PUBLIC_Marshal(&o->pub, buf, sizeof(buf), &off);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "marshal TPMT_PUBLIC (%s)", key_type_name(o->type));
	out = malloc(off);
	if (!out)
		return kl_error_set(KL_E_NOMEM, "TPM key: out of memory");
	memcpy(out, buf, off);
	*ret = out;
	*len = off;
	return 0;
}

/* A destructor must not overwrite the error its caller is about to report,
 * so the flush is quiet. */
void kl_tpm_object_free(kl_tpm_object *o)
{
	if (!o)
		return;
	if (o->tpm && o->persistent)
		(void)Esys_TR_Close(o->tpm->esys, &o->handle); /* stays in the TPM */
	else if (o->tpm)
		tpm_flush_quiet(o->tpm, o->handle);
	EVP_PKEY_free(o->key);
	free(o);
}

/* The EK of type, recreated (TPM2_CreatePrimary with the TCG template, as in
 * kl_tpm_ek_public_name) and left loaded and tracked in *ret. *name_alg is
 * its nameAlg, which its policy session must use. */
static int ek_load(kl_tpm *t, kl_ek_type type, ESYS_TR *ret, TPMI_ALG_HASH *name_alg)
{
	TPM2B_PUBLIC *pub = NULL;
	int r = tpm_ek_load(t, type, ret, &pub);

	if (r == 0)
		*name_alg = pub->publicArea.nameAlg;
	Esys_Free(pub);
	return r;
}

/* EK Credential Profile Annex B: the high-range templates' authPolicy
 * PolicyB_SHA384 is not PolicySecret(endorsement) itself but
 *   PolicyOR(PolicyA_SHA384, PolicyC_SHA384)
 * where PolicyA_SHA384 = PolicySecret(TPM_RH_ENDORSEMENT) with SHA-384 and
 * PolicyC_SHA384 = PolicyAuthorizeNV(0x01c07f02), the branch for an EK policy
 * a vendor may provision in NV. We take branch A and then name both branches
 * in TPM2_PolicyOR (Part 3 §23.6), which needs their digests. */
static const uint8_t policy_a_sha384[48] = {
	0x8b, 0xbf, 0x22, 0x66, 0x53, 0x7c, 0x17, 0x1c, 0xb5, 0x6e, 0x40, 0x3c,
	0x4d, 0xc1, 0xd4, 0xb6, 0x4f, 0x43, 0x26, 0x11, 0xdc, 0x38, 0x6e, 0x6f,
	0x53, 0x20, 0x50, 0xc3, 0x27, 0x8c, 0x93, 0x0e, 0x14, 0x3e, 0x8b, 0xb1,
	0x13, 0x38, 0x24, 0xcc, 0xb4, 0x31, 0x05, 0x38, 0x71, 0xc6, 0xdb, 0x53,
};
static const uint8_t policy_c_sha384[48] = {
	0xd6, 0x03, 0x2c, 0xe6, 0x1f, 0x2f, 0xb3, 0xc2, 0x40, 0xeb, 0x3c, 0xf6,
	0xa3, 0x32, 0x37, 0xef, 0x2b, 0x6a, 0x16, 0xf4, 0x29, 0x3c, 0x22, 0xb4,
	0x55, 0xe2, 0x61, 0xcf, 0xfd, 0x21, 0x7a, 0xd5, 0xb4, 0x94, 0x7c, 0x2d,
	0x73, 0xe6, 0x30, 0x05, 0xee, 0xd2, 0xdc, 0x2b, 0x35, 0x93, 0xd1, 0x65,
};

/* A policy session of the EK's nameAlg that satisfies the EK's authPolicy
 * with the endorsement hierarchy's empty password: PolicySecret
 * (TPM_RH_ENDORSEMENT), which is PolicyA_SHA256 of L-1 and L-2, followed for
 * H-3 by the PolicyOR above. The low-range EKs have no userWithAuth, so only
 * their policy authorizes them (Part 1 §19.7). Left tracked in *ret. */
static int ek_policy_session(kl_tpm *t, kl_ek_type type, TPMI_ALG_HASH name_alg, ESYS_TR *ret)
{
	_cleanup_(esys_freep) TPM2B_TIMEOUT *timeout = NULL;
	_cleanup_(esys_freep) TPMT_TK_AUTH *ticket = NULL;
	const TPMT_SYM_DEF symmetric = { .algorithm = TPM2_ALG_NULL };
	ESYS_TR s = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	TPM_CALL(t, rc,
	         Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                               ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY, &symmetric,
	                               name_alg, &s));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_StartAuthSession(policy, hash 0x%04x)", name_alg);
	r = tpm_track(t, s);
	if (r < 0) {
		(void)Esys_FlushContext(t->esys, s);
		return r;
	}
	TPM_CALL(t, rc,
	         Esys_PolicySecret(t->esys, ESYS_TR_RH_ENDORSEMENT, s, ESYS_TR_PASSWORD,
	                           ESYS_TR_NONE, ESYS_TR_NONE, NULL, NULL, NULL, 0, &timeout,
	                           &ticket));
	if (rc != TSS2_RC_SUCCESS) {
		r = kl_tpm_rc_error(rc, "Esys_PolicySecret(endorsement)");
		goto fail;
	}
	if (type == KL_EK_P384) {
		TPML_DIGEST branches = { .count = 2 };

		branches.digests[0].size = sizeof(policy_a_sha384);
		memcpy(branches.digests[0].buffer, policy_a_sha384, sizeof(policy_a_sha384));
		branches.digests[1].size = sizeof(policy_c_sha384);
		memcpy(branches.digests[1].buffer, policy_c_sha384, sizeof(policy_c_sha384));
		TPM_CALL(
		    t, rc,
		    Esys_PolicyOR(t->esys, s, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &branches));
		if (rc != TSS2_RC_SUCCESS) {
			r = kl_tpm_rc_error(rc, "Esys_PolicyOR(PolicyB_SHA384)");
			goto fail;
		}
	}
	*ret = s;
	return 0;
fail:
	tpm_flush_quiet(t, s);
	return r;
}

/* The marshalled TPM2Bs of c into ESAPI's structures: each one whole TPM2B
 * that fits. Bad input is ours to report, before anything reaches the TPM. */
static int credential_unmarshal(const kl_credential *c, TPM2B_ID_OBJECT *blob,
                                TPM2B_ENCRYPTED_SECRET *secret)
{
	size_t off = 0;
	TSS2_RC rc;

	if (!c || !c->blob || !c->secret || c->blob_len < 2 || c->secret_len < 2 ||
	    c->blob_len > sizeof(blob->credential) + 2 ||
	    c->secret_len > sizeof(secret->secret) + 2 ||
	    (((size_t)c->blob[0] << 8) | c->blob[1]) != c->blob_len - 2 ||
	    (((size_t)c->secret[0] << 8) | c->secret[1]) != c->secret_len - 2)
		return kl_error_set(KL_E_INVALID,
		                    "ActivateCredential: the credential is not a TPM2B_ID_OBJECT "
		                    "and a TPM2B_ENCRYPTED_SECRET");
	rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(c->blob, c->blob_len, &off, blob);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "unmarshal TPM2B_ID_OBJECT");
	off = 0;
	rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(c->secret, c->secret_len, &off, secret);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "unmarshal TPM2B_ENCRYPTED_SECRET");
	return 0;
}

/* TPM 2.0 Part 3 §12.5: activateHandle (obj) needs the ADMIN role, given by
 * its password as it has no adminWithPolicy; keyHandle (the EK) the USER
 * role, given by the policy session. */
int kl_tpm_activate_credential(kl_tpm *t, kl_ek_type ek, const kl_tpm_object *obj,
                               const kl_credential *c, kl_secret **ret)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;
	TPM2B_DIGEST *cert_info = NULL;
	TPM2B_ID_OBJECT blob;
	TPM2B_ENCRYPTED_SECRET secret;
	ESYS_TR ek_h = ESYS_TR_NONE, session = ESYS_TR_NONE;
	TPMI_ALG_HASH name_alg = TPM2_ALG_NULL;
	TSS2_RC rc;
	int r;

	if (!t || !obj || obj->tpm != t)
		return kl_error_set(KL_E_INVALID,
		                    "ActivateCredential: the object does not belong to this TPM");
	if (!kl_ek_type_name(ek))
		return kl_error_set(KL_E_INVALID, "ActivateCredential: unknown EK type %d",
		                    (int)ek);
	r = credential_unmarshal(c, &blob, &secret);
	if (r < 0)
		return r;

	r = ek_load(t, ek, &ek_h, &name_alg);
	if (r < 0)
		goto out;
	r = ek_policy_session(t, ek, name_alg, &session);
	if (r < 0)
		goto out;

	TPM_CALL(t, rc,
	         Esys_ActivateCredential(t->esys, obj->handle, ek_h, ESYS_TR_PASSWORD, session,
	                                 ESYS_TR_NONE, &blob, &secret, &cert_info));
	if (rc != TSS2_RC_SUCCESS) {
		TSS2_RC code = tpm_rc_code(rc);

		/* Part 3 §12.5: the outer HMAC does not verify (another
		 * object's name, another EK's seed) is TPM_RC_INTEGRITY; an RSA
		 * secret that does not decrypt is TPM_RC_VALUE. libtpms (swtpm)
		 * answers TPM_RC_FAILURE for the latter: its OpenSSL-based
		 * CryptRsaDecrypt maps every decryption error to it. */
		if (code == TPM2_RC_INTEGRITY || code == TPM2_RC_VALUE)
			r = kl_tpm_rc_error(rc,
			                    "Esys_ActivateCredential(EK %s): the TPM refuses the "
			                    "credential (made for another EK or another object)",
			                    kl_ek_type_name(ek));
		else if (code == TPM2_RC_FAILURE && ek == KL_EK_RSA2048)
			r = kl_tpm_rc_error(
			    rc,
			    "Esys_ActivateCredential(EK %s): the TPM refuses the "
			    "credential (its secret does not decrypt with this EK: "
			    "libtpms says TPM_RC_FAILURE for that) or is in failure "
			    "mode",
			    kl_ek_type_name(ek));
		else
			r = kl_tpm_rc_error(rc, "Esys_ActivateCredential(EK %s)",
			                    kl_ek_type_name(ek));
		goto out;
	}
	r = kl_secret_from_bytes(cert_info->buffer, cert_info->size, &got);

out:
	if (cert_info) {
		OPENSSL_cleanse(cert_info, sizeof(*cert_info));
		Esys_Free(cert_info);
	}
	r = tpm_flush_keep(t, &session, r);
	r = tpm_flush_keep(t, &ek_h, r);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(got);
	return 0;
}
