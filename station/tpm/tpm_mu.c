/* TPM structures from the DUT into the plain C of tpm_mu.h, with tss2-mu as
 * the parser. */
#include <inttypes.h>
#include <string.h>

#include <tss2/tss2_mu.h>
#include <tss2/tss2_tpm2_types.h>

#include "kl_error.h"
#include "tpm_mu.h"
#include "tpm_public_internal.h"

/* tpm_mu.h spells the TPM's values without tpm2-tss; they must be its. */
_Static_assert(KL_TPM_GENERATED_VALUE == TPM2_GENERATED_VALUE, "TPM_GENERATED_VALUE");
_Static_assert(KL_TPM_ST_ATTEST_CERTIFY == TPM2_ST_ATTEST_CERTIFY, "TPM_ST_ATTEST_CERTIFY");
_Static_assert(KL_TPM_ALG_SHA256 == TPM2_ALG_SHA256, "TPM_ALG_SHA256");
_Static_assert(KL_TPM_ALG_NULL == TPM2_ALG_NULL, "TPM_ALG_NULL");
_Static_assert(KL_TPM_ALG_ECDSA == TPM2_ALG_ECDSA, "TPM_ALG_ECDSA");
_Static_assert(KL_TPM_ALG_ECC == TPM2_ALG_ECC, "TPM_ALG_ECC");
_Static_assert(KL_TPM_ECC_NIST_P256 == TPM2_ECC_NIST_P256, "TPM_ECC_NIST_P256");
_Static_assert(KL_TPM_YES == TPM2_YES, "YES");
_Static_assert(KL_TPMA_OBJECT_FIXEDTPM == TPMA_OBJECT_FIXEDTPM, "fixedTPM");
_Static_assert(KL_TPMA_OBJECT_STCLEAR == TPMA_OBJECT_STCLEAR, "stClear");
_Static_assert(KL_TPMA_OBJECT_FIXEDPARENT == TPMA_OBJECT_FIXEDPARENT, "fixedParent");
_Static_assert(KL_TPMA_OBJECT_SENSITIVEDATAORIGIN == TPMA_OBJECT_SENSITIVEDATAORIGIN,
               "sensitiveDataOrigin");
_Static_assert(KL_TPMA_OBJECT_USERWITHAUTH == TPMA_OBJECT_USERWITHAUTH, "userWithAuth");
_Static_assert(KL_TPMA_OBJECT_ADMINWITHPOLICY == TPMA_OBJECT_ADMINWITHPOLICY, "adminWithPolicy");
_Static_assert(KL_TPMA_OBJECT_NODA == TPMA_OBJECT_NODA, "noDA");
_Static_assert(KL_TPMA_OBJECT_ENCRYPTEDDUPLICATION == TPMA_OBJECT_ENCRYPTEDDUPLICATION,
               "encryptedDuplication");
_Static_assert(KL_TPMA_OBJECT_RESTRICTED == TPMA_OBJECT_RESTRICTED, "restricted");
_Static_assert(KL_TPMA_OBJECT_DECRYPT == TPMA_OBJECT_DECRYPT, "decrypt");
_Static_assert(KL_TPMA_OBJECT_SIGN_ENCRYPT == TPMA_OBJECT_SIGN_ENCRYPT, "sign");
_Static_assert(KL_TPM2B_NAME_MAX == sizeof(((TPM2B_NAME *)0)->name), "TPM2B_NAME");
_Static_assert(KL_TPM2B_DATA_MAX == sizeof(((TPM2B_DATA *)0)->buffer), "TPM2B_DATA");
_Static_assert(KL_TPM2B_DIGEST_MAX == sizeof(((TPM2B_DIGEST *)0)->buffer), "TPM2B_DIGEST");
_Static_assert(KL_TPM2B_ECC_MAX == sizeof(((TPM2B_ECC_PARAMETER *)0)->buffer),
               "TPM2B_ECC_PARAMETER");

static void name_from(const TPM2B_NAME *n, kl_tpm2b_name *ret)
{
	ret->len = n->size;
	memcpy(ret->buf, n->name, n->size);
}

int kl_tpm_attest_unmarshal(const unsigned char *buf, size_t len, kl_tpm_attest *ret, size_t *used,
                            uint32_t *mu_rc)
{
	TPMS_ATTEST a;
	size_t off = 0;
	TSS2_RC rc;

	if (mu_rc)
		*mu_rc = 0;
	memset(&a, 0, sizeof(a));
	rc = Tss2_MU_TPMS_ATTEST_Unmarshal(buf, len, &off, &a);
	if (rc != TSS2_RC_SUCCESS) {
		if (mu_rc)
			*mu_rc = rc;
		return kl_error_set(KL_E_INVALID, "not a TPMS_ATTEST (tss2-mu 0x%" PRIx32 ")", rc);
	}
	memset(ret, 0, sizeof(*ret));
	ret->magic = a.magic;
	ret->type = a.type;
	name_from(&a.qualifiedSigner, &ret->qualified_signer);
	ret->extra_len = a.extraData.size;
	memcpy(ret->extra, a.extraData.buffer, a.extraData.size);
	ret->clock = a.clockInfo.clock;
	ret->reset_count = a.clockInfo.resetCount;
	ret->restart_count = a.clockInfo.restartCount;
	ret->safe = a.clockInfo.safe;
	ret->firmware_version = a.firmwareVersion;
	if (a.type == TPM2_ST_ATTEST_CERTIFY) {
		name_from(&a.attested.certify.name, &ret->certified_name);
		name_from(&a.attested.certify.qualifiedName, &ret->certified_qualified_name);
	}
	*used = off;
	return 0;
}

int kl_tpm_public_unmarshal(const unsigned char *buf, size_t len, kl_tpm_public *ret, size_t *used,
                            uint32_t *mu_rc)
{
	TPMT_PUBLIC p;
	size_t off = 0;
	TSS2_RC rc;

	if (mu_rc)
		*mu_rc = 0;
	memset(&p, 0, sizeof(p));
	rc = Tss2_MU_TPMT_PUBLIC_Unmarshal(buf, len, &off, &p);
	if (rc != TSS2_RC_SUCCESS) {
		if (mu_rc)
			*mu_rc = rc;
		return kl_error_set(KL_E_INVALID, "not a TPMT_PUBLIC (tss2-mu 0x%" PRIx32 ")", rc);
	}
	memset(ret, 0, sizeof(*ret));
	ret->type = p.type;
	ret->name_alg = p.nameAlg;
	ret->attributes = p.objectAttributes;
	ret->auth_policy_len = p.authPolicy.size;
	memcpy(ret->auth_policy, p.authPolicy.buffer, p.authPolicy.size);
	if (p.type == TPM2_ALG_ECC) {
		const TPMS_ECC_PARMS *e = &p.parameters.eccDetail;

		ret->ecc.symmetric = e->symmetric.algorithm;
		ret->ecc.scheme = e->scheme.scheme;
		/* every signing scheme's details start with hashAlg (Part 2
		 * §11.2.1.3), so the ECDSA member reads it for any of them */
		ret->ecc.scheme_hash = e->scheme.details.ecdsa.hashAlg;
		ret->ecc.curve = e->curveID;
		ret->ecc.kdf = e->kdf.scheme;
		ret->ecc.x_len = p.unique.ecc.x.size;
		memcpy(ret->ecc.x, p.unique.ecc.x.buffer, p.unique.ecc.x.size);
		ret->ecc.y_len = p.unique.ecc.y.size;
		memcpy(ret->ecc.y, p.unique.ecc.y.buffer, p.unique.ecc.y.size);
	}
	*used = off;
	return 0;
}

int kl_tpm_public_key(const kl_tpm_public *p, EVP_PKEY **ret)
{
	TPMT_PUBLIC t;

	if (p->type != TPM2_ALG_ECC || p->ecc.x_len > KL_TPM2B_ECC_MAX ||
	    p->ecc.y_len > KL_TPM2B_ECC_MAX)
		return kl_error_set(KL_E_UNSUPPORTED, "TPM key: type 0x%04x is not an ECC key",
		                    p->type);
	memset(&t, 0, sizeof(t));
	t.type = TPM2_ALG_ECC;
	t.parameters.eccDetail.curveID = p->ecc.curve;
	t.unique.ecc.x.size = (UINT16)p->ecc.x_len;
	memcpy(t.unique.ecc.x.buffer, p->ecc.x, p->ecc.x_len);
	t.unique.ecc.y.size = (UINT16)p->ecc.y_len;
	memcpy(t.unique.ecc.y.buffer, p->ecc.y, p->ecc.y_len);
	return kl_tpm_public_to_pkey(&t, ret);
}
