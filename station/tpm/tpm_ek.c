/* The endorsement key in the DUT's TPM: recreated from its TCG template
 * (provisioning step 4), its public key and name, and the policy session
 * that authorizes it (step 8, credential activation).
 *
 * The templates themselves, and the check of what the TPM returns, are in
 * ek_template.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <tss2/tss2_esys.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_ek_internal.h"
#include "tpm_internal.h"
#include "tpm_public_internal.h"

/* EK match (provisioning step 4): TPM2_CreatePrimary (TPM 2.0 Part 3 §24.1)
 * in the endorsement hierarchy with the profile's template recreates the EK
 * that the vendor certified. The object is flushed at once, also when
 * anything after CreatePrimary fails: we only need its public area. */
int tpm_ek_load(kl_tpm *t, kl_ek_type type, ESYS_TR *ret, TPM2B_PUBLIC **out_public)
{
	TPM2B_PUBLIC *pub = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	ESYS_TR h = ESYS_TR_NONE;
	TPM2B_PUBLIC in;
	TSS2_RC rc;
	int r;

	r = kl_ek_template_get(type, &in);
	if (r < 0)
		return r;
	TPM_CALL(t, rc,
	         Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                            ESYS_TR_NONE, &sensitive, &in, &outside_info, &creation_pcr, &h,
	                            &pub, NULL, NULL, NULL));
	if (rc != TSS2_RC_SUCCESS) {
		if (tpm_rc_code(rc) == TPM2_RC_OBJECT_MEMORY)
			return kl_tpm_rc_error(rc,
			                       "Esys_CreatePrimary(EK %s): no free transient "
			                       "object slot (something did not flush)",
			                       kl_ek_type_name(type));
		return kl_tpm_rc_error(rc, "Esys_CreatePrimary(EK %s)", kl_ek_type_name(type));
	}
	r = tpm_track(t, h);
	if (r < 0) {
		(void)Esys_FlushContext(t->esys, h);
		Esys_Free(pub);
		return r;
	}
	/* Only `unique` may differ from the template. */
	r = kl_ek_check_public(type, &in.publicArea, &pub->publicArea);
	if (r < 0) {
		tpm_flush_quiet(t, h);
		Esys_Free(pub);
		return r;
	}
	*ret = h;
	*out_public = pub;
	return 0;
}

int kl_tpm_ek_public_name(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret_key, kl_tpm_name *ret_name)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *out_public = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *esys_name = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	kl_tpm_name name;
	TSS2_RC rc;
	int r;

	r = tpm_ek_load(t, type, &h, &out_public);
	if (r < 0)
		return r;
	rc = Esys_TR_GetName(t->esys, h, &esys_name);
	if (rc != TSS2_RC_SUCCESS) {
		r = kl_tpm_rc_error(rc, "Esys_TR_GetName(EK %s)", kl_ek_type_name(type));
		goto out;
	}
	r = tpm_flush(t, h);
	if (r < 0)
		goto out;
	h = ESYS_TR_NONE;

	r = kl_tpm_public_name(&out_public->publicArea, &name);
	if (r < 0)
		goto out;
	if (esys_name->size != name.len || memcmp(esys_name->name, name.buf, name.len) != 0) {
		r = kl_error_set(KL_E_TPM,
		                 "CreatePrimary(EK %s): the object's name does not "
		                 "match its public area",
		                 kl_ek_type_name(type));
		goto out;
	}
	r = kl_tpm_public_to_pkey(&out_public->publicArea, &key);
	if (r < 0)
		goto out;

	*ret_key = TAKE_PTR(key);
	if (ret_name)
		*ret_name = name;
	r = 0;
out:
	/* Only failures get here with the object still loaded. */
	tpm_flush_quiet(t, h);
	return r;
}

int kl_tpm_ek_public(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret)
{
	return kl_tpm_ek_public_name(t, type, ret, NULL);
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
int tpm_ek_policy_session(kl_tpm *t, kl_ek_type type, TPMI_ALG_HASH name_alg, ESYS_TR *ret)
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
