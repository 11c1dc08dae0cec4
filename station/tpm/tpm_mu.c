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
_Static_assert(KL_TPM_ST_ATTEST_CREATION == TPM2_ST_ATTEST_CREATION, "TPM_ST_ATTEST_CREATION");
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

const unsigned char kl_tpm_devid_iak_policy[KL_TPM_DEVID_POLICY_LEN] = {
	0x54, 0x37, 0x18, 0x23, 0x26, 0xe4, 0x14, 0xfc, 0xa7, 0x97, 0xd5,
	0xf1, 0x74, 0x61, 0x5a, 0x16, 0x41, 0xf6, 0x12, 0x55, 0x79, 0x7c,
	0x3a, 0x2b, 0x22, 0xc2, 0x1d, 0x12, 0x0b, 0x2d, 0x1e, 0x07,
};
const unsigned char kl_tpm_devid_idevid_policy[KL_TPM_DEVID_POLICY_LEN] = {
	0xad, 0x6b, 0x3a, 0x22, 0x84, 0xfd, 0x69, 0x8a, 0x07, 0x10, 0xbf,
	0x5c, 0xc1, 0xb9, 0xbd, 0xf1, 0x5e, 0x25, 0x32, 0xe3, 0xf6, 0x01,
	0xfa, 0x4b, 0x93, 0xa6, 0xa8, 0xfa, 0x8d, 0xe5, 0x79, 0xea,
};

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
	} else if (a.type == TPM2_ST_ATTEST_CREATION) {
		name_from(&a.attested.creation.objectName, &ret->creation_name);
		ret->creation_hash_len = a.attested.creation.creationHash.size;
		memcpy(ret->creation_hash, a.attested.creation.creationHash.buffer,
		       a.attested.creation.creationHash.size);
	}
	*used = off;
	return 0;
}

int kl_tpm_creation_data_unmarshal(const unsigned char *buf, size_t len, kl_tpm_creation_data *ret,
                                   size_t *used, uint32_t *mu_rc)
{
	TPMS_CREATION_DATA c;
	size_t off = 0;
	TSS2_RC rc;

	if (mu_rc)
		*mu_rc = 0;
	memset(&c, 0, sizeof(c));
	rc = Tss2_MU_TPMS_CREATION_DATA_Unmarshal(buf, len, &off, &c);
	if (rc != TSS2_RC_SUCCESS) {
		if (mu_rc)
			*mu_rc = rc;
		return kl_error_set(KL_E_INVALID,
		                    "not a TPMS_CREATION_DATA (tss2-mu 0x%" PRIx32 ")", rc);
	}
	memset(ret, 0, sizeof(*ret));
	ret->pcr_banks = c.pcrSelect.count;
	ret->locality = c.locality;
	ret->parent_name_alg = c.parentNameAlg;
	name_from(&c.parentName, &ret->parent_name);
	name_from(&c.parentQualifiedName, &ret->parent_qualified_name);
	ret->outside_info_len = c.outsideInfo.size;
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
