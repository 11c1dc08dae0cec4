/* The TPM objects the station creates in a DUT's TPM, and the templates of
 * all its keys (provisioning step 7): an attestation key, a storage parent,
 * and the device identity keys IAK and IDevID of the DevID spec.
 *
 * A created object stays loaded (one of swtpm's three transient slots) and
 * tracked in its kl_tpm until kl_tpm_object_free flushes it. Its public area
 * is checked against the template it was made from, and its name
 * recomputed, before the caller sees it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_mu.h"
#include "tpm_object.h"
#include "tpm_object_internal.h"
#include "tpm_public_internal.h"

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

/* DevID spec §7.3.4, Table 3 (attributes) and Table 4 (ECC NIST P-256 with
 * SHA-256), the policies of its Table 19 (§7.3.6.6) and the unique strings
 * of §7.3.1:
 *   IAK:    fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
 *           adminWithPolicy | restricted | sign, ECDSA-SHA256, unique "IAK"
 *   IDevID: the same without restricted, unique "IDEVID"
 * and stClear, noDA, encryptedDuplication, decrypt clear. For ECC the
 * string is in both coordinates of `unique` (as tpm2_createprimary -u and
 * rust-keylime put it), so anyone holding the spec's templates recreates
 * the same keys from the same TPM: tests/integration/test_tcg_templates.c
 * does it with tpm2-tools alone.
 *
 * adminWithPolicy puts the ADMIN role (TPM2_Certify's objectHandle,
 * TPM2_ActivateCredential's activateHandle, ObjectChangeAuth) behind the
 * Table 19 policy, which the station never needs: it activates the EK
 * credential for a station attestation key of its own and proves the
 * identity keys with TPM2_CertifyCreation, whose objectHandle takes no
 * authorization (Part 3 §18.3), signed in the USER role that userWithAuth
 * gives to the (empty) authValue (docs/provisioning.md, "Key templates"). */
static int identity_template_of(kl_tpm_key_type type, bool legacy, TPMT_PUBLIC *ret)
{
	TPMT_PUBLIC a;
	TPMS_ECC_PARMS *e = &a.parameters.eccDetail;
	const unsigned char *policy;
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
		policy = kl_tpm_devid_iak_policy;
		unique = "IAK";
		break;
	case KL_TPM_KEY_IDEVID_P256:
		policy = kl_tpm_devid_idevid_policy;
		unique = "IDEVID";
		break;
	default:
		return kl_error_set(KL_E_INVALID, "identity key: type %d is not IAK or IDevID",
		                    (int)type);
	}
	if (!legacy) {
		a.objectAttributes |= TPMA_OBJECT_ADMINWITHPOLICY;
		a.authPolicy.size = KL_TPM_DEVID_POLICY_LEN;
		memcpy(a.authPolicy.buffer, policy, KL_TPM_DEVID_POLICY_LEN);
		a.unique.ecc.y.size = (UINT16)strlen(unique);
		memcpy(a.unique.ecc.y.buffer, unique, a.unique.ecc.y.size);
	}
	a.unique.ecc.x.size = (UINT16)strlen(unique);
	memcpy(a.unique.ecc.x.buffer, unique, a.unique.ecc.x.size);
	*ret = a;
	return 0;
}

static int identity_template(kl_tpm_key_type type, TPMT_PUBLIC *ret)
{
	return identity_template_of(type, false, ret);
}

int kl_tpm_key_template_legacy(kl_tpm_key_type type, TPMT_PUBLIC *ret)
{
	return identity_template_of(type, true, ret);
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
		/* the identity keys, primaries with unique = "IAK" /
		 * "IDevID" (DevID spec §7.3.1) */
		r = identity_template(type, &a);
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

/* What CreatePrimary / Create said about the object's creation, kept for
 * TPM2_CertifyCreation. */
static int creation_keep(struct kl_tpm_creation *c, const TPM2B_CREATION_DATA *data,
                         const TPM2B_DIGEST *hash, const TPMT_TK_CREATION *ticket)
{
	size_t off = 0;
	TSS2_RC rc;

	if (!data || !hash || !ticket)
		return kl_error_set(KL_E_TPM, "the TPM returned no creation data");
	rc =
	    Tss2_MU_TPMS_CREATION_DATA_Marshal(&data->creationData, c->data, sizeof(c->data), &off);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "marshal TPMS_CREATION_DATA");
	c->data_len = off;
	c->hash = *hash;
	c->ticket = *ticket;
	c->present = true;
	return 0;
}

static int object_create_primary(kl_tpm *t, const TPMT_PUBLIC *tmpl, const char *what, ESYS_TR *h,
                                 TPM2B_PUBLIC **out_public, struct kl_tpm_creation *creation)
{
	_cleanup_(esys_freep) TPM2B_CREATION_DATA *data = NULL;
	_cleanup_(esys_freep) TPM2B_DIGEST *hash = NULL;
	_cleanup_(esys_freep) TPMT_TK_CREATION *ticket = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	TPM2B_PUBLIC in = { .publicArea = *tmpl };
	TSS2_RC rc;

	TPM_CALL(t, rc,
	         Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                            ESYS_TR_NONE, &sensitive, &in, &outside_info, &creation_pcr, h,
	                            out_public, &data, &hash, &ticket));
	if (rc == TSS2_RC_SUCCESS)
		return creation_keep(creation, data, hash, ticket);
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
                               const char *what, ESYS_TR *h, TPM2B_PUBLIC **out_public,
                               struct kl_tpm_creation *creation)
{
	_cleanup_(esys_freep) TPM2B_PRIVATE *out_private = NULL;
	_cleanup_(esys_freep) TPM2B_CREATION_DATA *data = NULL;
	_cleanup_(esys_freep) TPM2B_DIGEST *hash = NULL;
	_cleanup_(esys_freep) TPMT_TK_CREATION *ticket = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	TPM2B_PUBLIC in = { .publicArea = *tmpl };
	TSS2_RC rc;
	int r;

	TPM_CALL(t, rc,
	         Esys_Create(t->esys, parent->handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	                     &sensitive, &in, &outside_info, &creation_pcr, &out_private,
	                     out_public, &data, &hash, &ticket));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Create(%s)", what);
	r = creation_keep(creation, data, hash, ticket);
	if (r < 0)
		return r;
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

/* Creates the object of type from tmpl (under parent, or a primary of the
 * endorsement hierarchy), checks what the TPM returned and wraps it. */
static int object_create(kl_tpm *t, const kl_tpm_object *parent, kl_tpm_key_type type,
                         const TPMT_PUBLIC *tmpl, kl_tpm_object **ret)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *out_public = NULL;
	struct kl_tpm_creation creation = { 0 };
	kl_tpm_object *o = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	char what[64];
	int r;

	snprintf(what, sizeof(what), "%s %s", parent ? "child" : "primary", key_type_name(type));
	if (parent)
		r = object_create_child(t, parent, tmpl, what, &h, &out_public, &creation);
	else
		r = object_create_primary(t, tmpl, what, &h, &out_public, &creation);
	if (r < 0) {
		tpm_flush_quiet(t, h);
		return r;
	}
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
	o->generation = t->generation;
	o->handle = h;
	o->type = type;
	h = ESYS_TR_NONE; /* transferred: kl_tpm_object_free flushes it */
	o->pub = out_public->publicArea;
	o->creation = creation;

	r = kl_tpm_key_check_public(type, tmpl, &o->pub);
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

int kl_tpm_object_create(kl_tpm *t, const kl_tpm_object *parent, kl_tpm_key_type type,
                         kl_tpm_object **ret)
{
	TPMT_PUBLIC tmpl;
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
	return object_create(t, parent, type, &tmpl, ret);
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
	/* An object made under an ESAPI context that kl_tpm_link_rearm
	 * replaced is left alone: its ESYS_TR means nothing to the new one,
	 * and rearm flushed the TPM. */
	if (o->tpm && o->generation == o->tpm->generation) {
		if (o->persistent)
			(void)Esys_TR_Close(o->tpm->esys, &o->handle); /* stays in the TPM */
		else
			tpm_flush_quiet(o->tpm, o->handle);
	}
	EVP_PKEY_free(o->key);
	free(o);
}

int kl_tpm_identity_create(kl_tpm *t, kl_tpm_key_type type, const unsigned char *unique,
                           size_t unique_len, kl_tpm_object **ret)
{
	TPMT_PUBLIC tmpl;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "identity key: no TPM");
	if (!unique || unique_len == 0 || unique_len > 32)
		return kl_error_set(KL_E_INVALID, "identity key: unique of %zu bytes (1..32)",
		                    unique_len);
	r = identity_template(type, &tmpl);
	if (r < 0)
		return r;
	/* Part 1 §27.2.6 (CreatePrimary): the primary is derived from the
	 * seed and the template, unique included; both coordinates, as the
	 * template's own string. */
	tmpl.unique.ecc.x.size = tmpl.unique.ecc.y.size = (UINT16)unique_len;
	memcpy(tmpl.unique.ecc.x.buffer, unique, unique_len);
	memcpy(tmpl.unique.ecc.y.buffer, unique, unique_len);
	return object_create(t, NULL, type, &tmpl, ret);
}

int kl_tpm_object_creation_data(const kl_tpm_object *o, unsigned char **ret, size_t *len)
{
	unsigned char *out;

	if (!o->creation.present)
		return kl_error_set(
		    KL_E_STATE, "TPM key %s: no creation data (the key was loaded, not created)",
		    key_type_name(o->type));
	out = malloc(o->creation.data_len);
	if (!out)
		return kl_error_set(KL_E_NOMEM, "TPM key: out of memory");
	memcpy(out, o->creation.data, o->creation.data_len);
	*ret = out;
	*len = o->creation.data_len;
	return 0;
}

bool kl_tpm_object_is_legacy(const kl_tpm_object *o)
{
	return o && o->legacy;
}
