/* The DUT's identity keys over ESAPI: templates, Certify, Sign, persistence
 * and certificates in NV (provisioning steps 7, 9, 10, 12).
 *
 * Nothing here loads a transient object of its own: Certify and Sign use
 * keys the caller holds (kl_tpm_object), persistent objects and NV indices
 * are reached through ESYS_TRs that are closed before each call returns. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "tpm_ek_internal.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_persist.h"
#include "tpm_object_internal.h"

#define TPM_NV_CHUNK_DEFAULT 512

/* tpm2-tss 3.2's TPM2_PERSISTENT_FIRST has the same signed-shift problem
 * as TPM2_TRANSIENT_FIRST (see tpm.c); spell the ranges out. Part 2 §7.5:
 * owner persistent objects are 0x81000000..0x817FFFFF, platform ones above. */
#define TPM_PERSISTENT_OWNER_FIRST 0x81000000u
#define TPM_PERSISTENT_OWNER_LAST  0x817fffffu

/* DevID spec §7.3.4, Table 3 (attributes) and Table 4 (ECC P-256 with
 * SHA-256), with §7.3.1's unique strings:
 *   IAK:    fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
 *           adminWithPolicy | restricted | sign, ECDSA-SHA256
 *   IDevID: the same without restricted
 * and stClear, noDA, encryptedDuplication, decrypt clear.
 * Deviation: the spec sets adminWithPolicy with the authPolicy digests of
 * its §7.3.6 (PolicyOR of the commands the key may be administered with).
 * With adminWithPolicy, TPM2_Certify (ADMIN role on the certified key,
 * Part 3 §18.2) and TPM2_ActivateCredential (ADMIN role on the IAK, step 8)
 * need a policy session that satisfies that digest, which the station
 * cannot build without the policy's branches. We leave adminWithPolicy
 * clear and authPolicy empty, so the ADMIN role is given by the (empty)
 * authValue, as for KL_TPM_KEY_ATTEST_P256; attest.c checks exactly this
 * profile. */
int kl_tpm_identity_template(kl_tpm_key_type type, TPMT_PUBLIC *ret)
{
	static const char iak[] = "IAK", idevid[] = "IDevID";
	TPMT_PUBLIC a;
	TPMS_ECC_PARMS *e = &a.parameters.eccDetail;
	const char *unique;

	memset(&a, 0, sizeof(a));
	a.type = TPM2_ALG_ECC;
	a.nameAlg = TPM2_ALG_SHA256;
	a.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	                     TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
	                     TPMA_OBJECT_SIGN_ENCRYPT;
	e->symmetric.algorithm = TPM2_ALG_NULL;
	e->scheme.scheme = TPM2_ALG_ECDSA;
	e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	e->curveID = TPM2_ECC_NIST_P256;
	e->kdf.scheme = TPM2_ALG_NULL;
	switch (type) {
	case KL_TPM_KEY_IAK_P256:
		a.objectAttributes |= TPMA_OBJECT_RESTRICTED;
		unique = iak;
		break;
	case KL_TPM_KEY_IDEVID_P256:
		unique = idevid;
		break;
	default:
		return kl_error_set(KL_E_INVALID, "identity key: type %d is not IAK or IDevID",
		                    (int)type);
	}
	a.unique.ecc.x.size = (UINT16)strlen(unique);
	memcpy(a.unique.ecc.x.buffer, unique, a.unique.ecc.x.size);
	*ret = a;
	return 0;
}

/* TPMS_SIGNATURE_ECDSA -> DER ECDSA-Sig-Value (X9.62), what OpenSSL's
 * EVP_DigestVerify takes. */
static int ecdsa_to_der(const TPMT_SIGNATURE *s, unsigned char **ret, size_t *len)
{
	ECDSA_SIG *sig = NULL;
	BIGNUM *r = NULL, *ss = NULL;
	unsigned char *der = NULL;
	int n;

	if (s->sigAlg != TPM2_ALG_ECDSA)
		return kl_error_set(KL_E_UNSUPPORTED, "TPM signature: algorithm 0x%04x, not ECDSA",
		                    s->sigAlg);
	r = BN_bin2bn(s->signature.ecdsa.signatureR.buffer, s->signature.ecdsa.signatureR.size,
	              NULL);
	ss = BN_bin2bn(s->signature.ecdsa.signatureS.buffer, s->signature.ecdsa.signatureS.size,
	               NULL);
	sig = ECDSA_SIG_new();
	if (!r || !ss || !sig || ECDSA_SIG_set0(sig, r, ss) != 1) {
		BN_free(r);
		BN_free(ss);
		ECDSA_SIG_free(sig);
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM signature: ECDSA_SIG");
	}
	n = i2d_ECDSA_SIG(sig, &der);
	ECDSA_SIG_free(sig);
	if (n <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM signature: DER encoding");
	/* OPENSSL_malloc'd; hand out malloc'd memory as the API says */
	*ret = malloc((size_t)n);
	if (!*ret) {
		OPENSSL_free(der);
		return kl_error_set(KL_E_NOMEM, "TPM signature: out of memory");
	}
	memcpy(*ret, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return 0;
}

static bool object_of(const kl_tpm *t, const kl_tpm_object *o)
{
	return t && o && o->tpm == t;
}

int kl_tpm_certify(kl_tpm *t, const kl_tpm_object *certified, const kl_tpm_object *signer,
                   const unsigned char *qualifying_data, size_t qualifying_len,
                   unsigned char **attest, size_t *attest_len, unsigned char **sig, size_t *sig_len)
{
	_cleanup_(esys_freep) TPM2B_ATTEST *info = NULL;
	_cleanup_(esys_freep) TPMT_SIGNATURE *signature = NULL;
	_cleanup_(freep) unsigned char *a = NULL;
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
	TPM2B_DATA qd = { 0 };
	TSS2_RC rc;
	int r;

	if (!object_of(t, certified) || !object_of(t, signer))
		return kl_error_set(KL_E_INVALID, "Certify: the keys do not belong to this TPM");
	if (!qualifying_data || qualifying_len == 0 || qualifying_len > 64)
		return kl_error_set(KL_E_INVALID,
		                    "Certify: qualifying data of %zu bytes (1..64 expected)",
		                    qualifying_len);
	if (!(signer->pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
		return kl_error_set(KL_E_INVALID, "Certify: the signer is not a signing key");
	qd.size = (UINT16)qualifying_len;
	memcpy(qd.buffer, qualifying_data, qualifying_len);

	/* Part 3 §18.2: objectHandle needs the ADMIN role, signHandle USER;
	 * neither key has adminWithPolicy, so their passwords give both. */
	TPM_CALL(t, rc,
	         Esys_Certify(t->esys, certified->handle, signer->handle, ESYS_TR_PASSWORD,
	                      ESYS_TR_PASSWORD, ESYS_TR_NONE, &qd, &scheme, &info, &signature));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Certify");
	if (info->size == 0)
		return kl_error_set(KL_E_TPM, "Certify: the TPM returned an empty attestation");
	a = malloc(info->size);
	if (!a)
		return kl_error_set(KL_E_NOMEM, "Certify: out of memory");
	memcpy(a, info->attestationData, info->size);
	r = ecdsa_to_der(signature, sig, sig_len);
	if (r < 0)
		return kl_error_wrap("Certify");
	*attest_len = info->size;
	*attest = TAKE_PTR(a);
	return 0;
}

int kl_tpm_sign(kl_tpm *t, const kl_tpm_object *obj, const unsigned char *digest, size_t digest_len,
                unsigned char **sig, size_t *sig_len)
{
	_cleanup_(esys_freep) TPMT_SIGNATURE *signature = NULL;
	const TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
	/* Part 3 §20.2: a NULL ticket is accepted for unrestricted keys only */
	const TPMT_TK_HASHCHECK ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
	TPM2B_DIGEST d = { 0 };
	TSS2_RC rc;

	if (!object_of(t, obj))
		return kl_error_set(KL_E_INVALID, "Sign: the key does not belong to this TPM");
	if (!(obj->pub.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
		return kl_error_set(KL_E_INVALID, "Sign: not a signing key");
	if (obj->pub.objectAttributes & TPMA_OBJECT_RESTRICTED)
		return kl_error_set(KL_E_UNSUPPORTED,
		                    "Sign: a restricted key signs only digests the TPM made "
		                    "(TPM2_Hash ticket); use an unrestricted key");
	if (obj->pub.type != TPM2_ALG_ECC ||
	    obj->pub.parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA ||
	    obj->pub.parameters.eccDetail.scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256)
		return kl_error_set(KL_E_UNSUPPORTED, "Sign: only ECDSA-SHA256 keys");
	if (!digest || digest_len != 32)
		return kl_error_set(KL_E_INVALID, "Sign: a SHA-256 digest is 32 bytes, not %zu",
		                    digest_len);
	d.size = (UINT16)digest_len;
	memcpy(d.buffer, digest, digest_len);

	TPM_CALL(t, rc,
	         Esys_Sign(t->esys, obj->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d,
	                   &scheme, &ticket, &signature));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Sign");
	if (ecdsa_to_der(signature, sig, sig_len) < 0)
		return kl_error_wrap("Sign");
	return 0;
}

static int check_persistent_handle(uint32_t handle)
{
	if (handle < TPM_PERSISTENT_OWNER_FIRST || handle > TPM_PERSISTENT_OWNER_LAST)
		return kl_error_set(KL_E_INVALID,
		                    "0x%08" PRIx32 " is not an owner persistent handle "
		                    "(0x81000000..0x817fffff)",
		                    handle);
	return 0;
}

int kl_tpm_object_persist(kl_tpm *t, const kl_tpm_object *obj, uint32_t handle)
{
	ESYS_TR out = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!object_of(t, obj) || obj->persistent)
		return kl_error_set(KL_E_INVALID, "EvictControl: not a transient key of this TPM");
	r = check_persistent_handle(handle);
	if (r < 0)
		return r;
	TPM_CALL(t, rc,
	         Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, obj->handle, ESYS_TR_PASSWORD,
	                           ESYS_TR_NONE, ESYS_TR_NONE, handle, &out));
	if (tpm_rc_code(rc) == TPM2_RC_NV_DEFINED)
		return kl_error_set(KL_E_EXISTS,
		                    "EvictControl: persistent handle 0x%08" PRIx32 " is taken",
		                    handle);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_EvictControl(persist at 0x%08" PRIx32 ")", handle);
	(void)Esys_TR_Close(t->esys, &out);
	return 0;
}

/* An ESYS_TR for an object or NV index that exists in the TPM (its public
 * area read by ESAPI). -KL_E_NOTFOUND when there is none. */
static int tr_from_handle(kl_tpm *t, uint32_t handle, const char *what, ESYS_TR *ret)
{
	TSS2_RC rc;

	TPM_CALL(
	    t, rc,
	    Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ret));
	if (tpm_rc_code(rc) == TPM2_RC_HANDLE)
		return kl_error_set(KL_E_NOTFOUND, "%s 0x%08" PRIx32 " does not exist", what,
		                    handle);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_TR_FromTPMPublic(%s 0x%08" PRIx32 ")", what,
		                       handle);
	return 0;
}

int kl_tpm_persistent_evict(kl_tpm *t, uint32_t handle)
{
	ESYS_TR tr = ESYS_TR_NONE, out = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "EvictControl: no TPM");
	r = check_persistent_handle(handle);
	if (r < 0)
		return r;
	r = tr_from_handle(t, handle, "persistent object", &tr);
	if (r < 0)
		return r;
	/* Part 3 §28.5: evicting names the persistent handle itself. On
	 * success ESAPI drops tr (the object is gone) and out is NONE. */
	TPM_CALL(t, rc,
	         Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                           ESYS_TR_NONE, handle, &out));
	if (rc != TSS2_RC_SUCCESS) {
		(void)Esys_TR_Close(t->esys, &tr);
		return kl_tpm_rc_error(rc, "Esys_EvictControl(evict 0x%08" PRIx32 ")", handle);
	}
	if (out != ESYS_TR_NONE)
		(void)Esys_TR_Close(t->esys, &out);
	/* tpm2-tss 3.2 does not always drop tr after an eviction (its
	 * persistent-range test has the signed-shift problem above); a stale
	 * tr would make the next Esys_TR_FromTPMPublic of this handle fail
	 * with "name mismatch" once another key is persisted there. */
	TPM2_HANDLE still = 0;
	if (Esys_TR_GetTpmHandle(t->esys, tr, &still) == TSS2_RC_SUCCESS && still == handle)
		(void)Esys_TR_Close(t->esys, &tr);
	return 0;
}

int kl_tpm_persistent_exists(kl_tpm *t, uint32_t handle, bool *ret)
{
	_cleanup_(esys_freep) TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more = TPM2_NO;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "GetCapability: no TPM");
	r = check_persistent_handle(handle);
	if (r < 0)
		return r;
	TPM_CALL(t, rc,
	         Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                            TPM2_CAP_HANDLES, handle, 1, &more, &cap));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_GetCapability(handle 0x%08" PRIx32 ")", handle);
	if (cap->capability != TPM2_CAP_HANDLES)
		return kl_error_set(KL_E_TPM, "GetCapability: answered capability %" PRIu32,
		                    cap->capability);
	/* Part 3 §30.2: the list starts at the first handle >= the one asked */
	*ret = cap->data.handles.count > 0 && cap->data.handles.handle[0] == handle;
	return 0;
}

int kl_tpm_persistent_load(kl_tpm *t, uint32_t handle, kl_tpm_key_type type, kl_tpm_object **ret)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *pub = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *tpm_name = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *qualified = NULL;
	kl_tpm_object *o = NULL;
	ESYS_TR tr = ESYS_TR_NONE;
	TPMT_PUBLIC tmpl;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "load persistent key: no TPM");
	r = check_persistent_handle(handle);
	if (r < 0)
		return r;
	r = kl_tpm_key_template(type, &tmpl);
	if (r < 0)
		return r;
	r = tr_from_handle(t, handle, "persistent object", &tr);
	if (r < 0)
		return r;
	TPM_CALL(t, rc,
	         Esys_ReadPublic(t->esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
	                         &tpm_name, &qualified));
	if (rc != TSS2_RC_SUCCESS) {
		r = kl_tpm_rc_error(rc, "Esys_ReadPublic(0x%08" PRIx32 ")", handle);
		goto out;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		r = kl_error_set(KL_E_NOMEM, "load persistent key: out of memory");
		goto out;
	}
	o->tpm = t;
	o->handle = tr;
	o->type = type;
	o->persistent = true;
	tr = ESYS_TR_NONE; /* transferred: kl_tpm_object_free closes it */
	o->pub = pub->publicArea;
	r = kl_tpm_key_check_public(type, &tmpl, &o->pub);
	if (r < 0) {
		r = kl_error_wrap("persistent object 0x%08" PRIx32, handle);
		goto out;
	}
	r = kl_tpm_public_name(&o->pub, &o->name);
	if (r < 0)
		goto out;
	if (tpm_name->size != o->name.len ||
	    memcmp(tpm_name->name, o->name.buf, o->name.len) != 0) {
		r = kl_error_set(KL_E_TPM,
		                 "persistent object 0x%08" PRIx32
		                 ": the TPM's name does not match its public area",
		                 handle);
		goto out;
	}
	r = kl_tpm_public_to_pkey(&o->pub, &o->key);
	if (r < 0)
		goto out;
	*ret = o;
	o = NULL; /* transferred */
	r = 0;
out:
	if (tr != ESYS_TR_NONE)
		(void)Esys_TR_Close(t->esys, &tr);
	kl_tpm_object_free(o);
	return r;
}

static size_t nv_chunk(const kl_tpm *t)
{
	size_t chunk = t->nv_buffer_max ? t->nv_buffer_max : TPM_NV_CHUNK_DEFAULT;

	if (chunk > TPM2_MAX_NV_BUFFER_SIZE)
		chunk = TPM2_MAX_NV_BUFFER_SIZE;
	if (t->nv_chunk_cap && chunk > t->nv_chunk_cap)
		chunk = t->nv_chunk_cap;
	return chunk;
}

static int check_nv_index(uint32_t index)
{
	if ((index >> TPM2_HR_SHIFT) != TPM2_HT_NV_INDEX)
		return kl_error_set(KL_E_INVALID, "0x%08" PRIx32 " is not an NV index handle",
		                    index);
	return 0;
}

/* Writes and locks a freshly defined index (Part 3 §31.7, §31.9) with the
 * owner's authorization (OWNERWRITE). */
static int nv_fill(kl_tpm *t, uint32_t index, ESYS_TR nv, const unsigned char *der, size_t len)
{
	const size_t chunk = nv_chunk(t);
	TSS2_RC rc;

	for (size_t off = 0; off < len;) {
		TPM2B_MAX_NV_BUFFER d = { 0 };
		size_t n = len - off < chunk ? len - off : chunk;

		d.size = (UINT16)n;
		memcpy(d.buffer, der + off, n);
		TPM_CALL(t, rc,
		         Esys_NV_Write(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
		                       ESYS_TR_NONE, ESYS_TR_NONE, &d, (UINT16)off));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(
			    rc, "Esys_NV_Write 0x%08" PRIx32 " (%zu bytes at %zu)", index, n, off);
		off += n;
	}
	TPM_CALL(t, rc,
	         Esys_NV_WriteLock(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                           ESYS_TR_NONE));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_NV_WriteLock 0x%08" PRIx32, index);
	return 0;
}

static int nv_read_back(kl_tpm *t, uint32_t index, const unsigned char *der, size_t len)
{
	_cleanup_(freep) unsigned char *got = NULL;
	size_t got_len = 0;
	int r;

	r = kl_tpm_nv_read(t, index, &got, &got_len);
	if (r < 0)
		return kl_error_wrap("read back");
	if (got_len != len || memcmp(got, der, len) != 0)
		return kl_error_set(KL_E_TPM,
		                    "NV index 0x%08" PRIx32 ": read back %zu bytes that differ "
		                    "from the %zu written",
		                    index, got_len, len);
	return 0;
}

int kl_tpm_nv_write_cert(kl_tpm *t, uint32_t index, const unsigned char *der, size_t len)
{
	const TPM2B_AUTH auth = { 0 };
	TPM2B_NV_PUBLIC pub = { 0 };
	ESYS_TR nv = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "NV certificate: no TPM");
	r = check_nv_index(index);
	if (r < 0)
		return r;
	if (!der || len == 0 || len > UINT16_MAX)
		return kl_error_set(KL_E_INVALID, "NV certificate: %zu bytes", len);

	pub.nvPublic.nvIndex = index;
	pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
	/* TPM_NT_ORDINARY (0 in the TPMA_NV_TPM2_NT field) */
	pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
	                          TPMA_NV_PPREAD | TPMA_NV_NO_DA | TPMA_NV_WRITEDEFINE;
	pub.nvPublic.dataSize = (UINT16)len;
	TPM_CALL(t, rc,
	         Esys_NV_DefineSpace(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                             ESYS_TR_NONE, &auth, &pub, &nv));
	if (tpm_rc_code(rc) == TPM2_RC_NV_DEFINED)
		return kl_error_set(KL_E_EXISTS, "NV index 0x%08" PRIx32 " is defined already",
		                    index);
	if (tpm_rc_code(rc) == TPM2_RC_SIZE || tpm_rc_code(rc) == TPM2_RC_NV_SPACE)
		return kl_tpm_rc_error(
		    rc, "Esys_NV_DefineSpace 0x%08" PRIx32 ": the TPM takes no index of %zu bytes",
		    index, len);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_NV_DefineSpace 0x%08" PRIx32, index);

	r = nv_fill(t, index, nv, der, len);
	if (r == 0)
		r = nv_read_back(t, index, der, len);
	if (r < 0) {
		/* leave no half-engraved index behind; the error stays ours */
		if (Esys_NV_UndefineSpace(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
		                          ESYS_TR_NONE, ESYS_TR_NONE) != TSS2_RC_SUCCESS)
			(void)Esys_TR_Close(t->esys, &nv);
		return r;
	}
	(void)Esys_TR_Close(t->esys, &nv);
	return 0;
}

int kl_tpm_nv_undefine(kl_tpm *t, uint32_t index)
{
	ESYS_TR nv = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "NV_UndefineSpace: no TPM");
	r = check_nv_index(index);
	if (r < 0)
		return r;
	r = tr_from_handle(t, index, "NV index", &nv);
	if (r < 0)
		return r;
	/* On success ESAPI drops nv with the index. */
	TPM_CALL(t, rc,
	         Esys_NV_UndefineSpace(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
	                               ESYS_TR_NONE, ESYS_TR_NONE));
	if (rc != TSS2_RC_SUCCESS) {
		(void)Esys_TR_Close(t->esys, &nv);
		return kl_tpm_rc_error(rc, "Esys_NV_UndefineSpace 0x%08" PRIx32, index);
	}
	return 0;
}

int kl_tpm_identity_create(kl_tpm *t, kl_tpm_key_type type, const unsigned char *unique,
                           size_t unique_len, kl_tpm_object **ret)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *out_public = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *esys_name = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	TPM2B_PUBLIC in = { 0 };
	kl_tpm_object *o = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "identity key: no TPM");
	if (!unique || unique_len == 0 || unique_len > 32)
		return kl_error_set(KL_E_INVALID, "identity key: unique of %zu bytes (1..32)",
		                    unique_len);
	r = kl_tpm_identity_template(type, &in.publicArea);
	if (r < 0)
		return r;
	/* Part 1 §27.2.6 (CreatePrimary): the primary is derived from the
	 * seed and the template, unique included. */
	in.publicArea.unique.ecc.x.size = (UINT16)unique_len;
	memcpy(in.publicArea.unique.ecc.x.buffer, unique, unique_len);
	TPM_CALL(t, rc,
	         Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                            ESYS_TR_NONE, &sensitive, &in, &outside_info, &creation_pcr, &h,
	                            &out_public, NULL, NULL, NULL));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_CreatePrimary(identity key, new unique)");
	r = tpm_track(t, h);
	if (r < 0) {
		(void)Esys_FlushContext(t->esys, h);
		return r;
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		tpm_flush_quiet(t, h);
		return kl_error_set(KL_E_NOMEM, "identity key: out of memory");
	}
	o->tpm = t;
	o->handle = h; /* transferred: kl_tpm_object_free flushes it */
	o->type = type;
	o->pub = out_public->publicArea;
	r = kl_tpm_key_check_public(type, &in.publicArea, &o->pub);
	if (r == 0)
		r = kl_tpm_public_name(&o->pub, &o->name);
	if (r == 0) {
		rc = Esys_TR_GetName(t->esys, o->handle, &esys_name);
		if (rc != TSS2_RC_SUCCESS)
			r = kl_tpm_rc_error(rc, "Esys_TR_GetName(identity key)");
		else if (esys_name->size != o->name.len ||
		         memcmp(esys_name->name, o->name.buf, o->name.len) != 0)
			r = kl_error_set(KL_E_TPM,
			                 "identity key: the object's name does not match its "
			                 "public area");
	}
	if (r == 0)
		r = kl_tpm_public_to_pkey(&o->pub, &o->key);
	if (r < 0) {
		kl_tpm_object_free(o);
		return r;
	}
	*ret = o;
	return 0;
}

int kl_tpm_clear(kl_tpm *t)
{
	TSS2_RC rc, code;

	if (!t)
		return kl_error_set(KL_E_INVALID, "TPM2_Clear: no TPM");
	TPM_CALL(
	    t, rc,
	    Esys_Clear(t->esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
	if (rc == TSS2_RC_SUCCESS)
		return 0;
	code = tpm_rc_code(rc);
	if (code == TPM2_RC_DISABLED || code == TPM2_RC_AUTH_FAIL || code == TPM2_RC_BAD_AUTH ||
	    code == TPM2_RC_LOCKOUT || code == TPM2_RC_HIERARCHY) {
		char why[KL_ERROR_DETAIL_MAX];

		kl_tpm_rc_error(rc, "Esys_Clear(lockout, empty authorisation)");
		snprintf(why, sizeof(why), "%s", kl_error_detail());
		return kl_error_set(KL_E_PERM, "the TPM refuses TPM2_Clear: %s", why);
	}
	return kl_tpm_rc_error(rc, "Esys_Clear(lockout)");
}
