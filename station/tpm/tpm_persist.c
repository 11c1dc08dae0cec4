/* Persistent objects over ESAPI (provisioning step 12, and a resumed flow):
 * TPM2_EvictControl in the owner's range, and a kl_tpm_object for what is
 * persisted there, checked like a fresh key.
 *
 * Persistent objects are reached through ESYS_TRs that are closed before
 * each call returns (or, for a loaded one, by kl_tpm_object_free). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_object_internal.h"
#include "tpm_persist.h"
#include "tpm_public_internal.h"

/* tpm2-tss 3.2's TPM2_PERSISTENT_FIRST has the same signed-shift problem
 * as TPM2_TRANSIENT_FIRST (see tpm.c); spell the ranges out. Part 2 §7.5:
 * owner persistent objects are 0x81000000..0x817FFFFF, platform ones above. */
#define TPM_PERSISTENT_OWNER_FIRST 0x81000000u
#define TPM_PERSISTENT_OWNER_LAST  0x817fffffu

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

	if (!tpm_object_of(t, obj) || obj->persistent)
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
	r = tpm_tr_from_handle(t, handle, "persistent object", &tr);
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
	r = tpm_tr_from_handle(t, handle, "persistent object", &tr);
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
	o->generation = t->generation;
	o->handle = tr;
	o->type = type;
	o->persistent = true;
	tr = ESYS_TR_NONE; /* transferred: kl_tpm_object_free closes it */
	o->pub = pub->publicArea;
	r = kl_tpm_key_check_public(type, &tmpl, &o->pub);
	if (r < 0 && (type == KL_TPM_KEY_IAK_P256 || type == KL_TPM_KEY_IDEVID_P256)) {
		/* A device engraved before the station used the DevID spec's
		 * templates keeps working for renewal and decommission. */
		TPMT_PUBLIC old;

		if (kl_tpm_key_template_legacy(type, &old) == 0 &&
		    kl_tpm_key_check_public(type, &old, &o->pub) == 0) {
			kl_error_clear();
			o->legacy = true;
			r = 0;
		}
	}
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
