/* The default EK templates of the TCG EK Credential Profile for TPM Family
 * 2.0 (Version 2.3 and later), Annex B: L-1 (RSA 2048), L-2 (NIST P-256) and
 * H-3 (NIST P-384), and the NV indices of their certificates (§2.2.1.4).
 *
 * A TPM derives its EK from the endorsement primary seed and the template,
 * so the template must be exactly the profile's: one changed bit gives a
 * different key, which then does not match the EK certificate.
 *
 * Also the check of the public area a TPM returns for an EK against the
 * template. Nothing here talks to a TPM (tpm_ek.c does). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#include "kl_error.h"
#include "tpm_ek_internal.h"
#include "tpm_internal.h"
#include "tpm_public_internal.h"

/* Template attributes (Annex B, the objectAttributes row of each template):
 * fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted
 * | decrypt = 0x000300b2. The high-range templates (H-*) add userWithAuth,
 * 0x000300f2. */
#define EK_ATTRS_L                                                                          \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | \
	 TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)
#define EK_ATTRS_H (EK_ATTRS_L | TPMA_OBJECT_USERWITHAUTH)

/* PolicyA_SHA256 (Annex B): TPM2_PolicySecret(TPM_RH_ENDORSEMENT). */
static const uint8_t policy_a_sha256[32] = {
	0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
	0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
	0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

/* PolicyB_SHA384 (Annex B), the policy of the high-range (H-*) EKs. */
static const uint8_t policy_b_sha384[48] = {
	0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc,
	0xf5, 0xfd, 0x3a, 0x1a, 0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4,
	0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca, 0xcb, 0x47, 0xba, 0x09,
	0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
};

static const struct {
	const char *name;
	uint32_t nv_index;
} ek_types[KL_EK__MAX] = {
	[KL_EK_RSA2048] = { "rsa2048", 0x01c00002 },
	[KL_EK_P256] = { "p256", 0x01c0000a },
	[KL_EK_P384] = { "p384", 0x01c00016 },
};

const char *kl_ek_type_name(kl_ek_type type)
{
	if ((unsigned)type >= KL_EK__MAX)
		return NULL;
	return ek_types[type].name;
}

int kl_ek_type_from_name(const char *name, kl_ek_type *ret)
{
	if (!name)
		return kl_error_set(KL_E_INVALID, "EK type: none given");
	for (unsigned i = 0; i < KL_EK__MAX; i++) {
		if (strcmp(name, ek_types[i].name) == 0) {
			*ret = (kl_ek_type)i;
			return 0;
		}
	}
	return kl_error_set(KL_E_INVALID, "unknown EK type \"%s\" (want rsa2048, p256 or p384)",
	                    name);
}

uint32_t kl_ek_type_nv_index(kl_ek_type type)
{
	if ((unsigned)type >= KL_EK__MAX)
		return 0;
	return ek_types[type].nv_index;
}

/* Annex B, templates L-1, L-2 and H-3. The low-range templates carry an
 * all-zero `unique` of the key size (256 bytes, or 32 + 32 bytes) so that old
 * TPMs produce the same EK as with an EK nonce of zeros; H-3 has an empty
 * `unique`. The symmetric algorithm is AES-128-CFB (L) or AES-256-CFB (H),
 * the scheme and KDF are TPM_ALG_NULL and the RSA exponent is 0 (= 65537). */
int kl_ek_template_get(kl_ek_type type, TPM2B_PUBLIC *ret)
{
	TPM2B_PUBLIC p;
	TPMT_PUBLIC *a = &p.publicArea;

	memset(&p, 0, sizeof(p));
	switch (type) {
	case KL_EK_RSA2048:
		a->type = TPM2_ALG_RSA;
		a->nameAlg = TPM2_ALG_SHA256;
		a->objectAttributes = EK_ATTRS_L;
		a->authPolicy.size = sizeof(policy_a_sha256);
		memcpy(a->authPolicy.buffer, policy_a_sha256, sizeof(policy_a_sha256));
		a->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
		a->parameters.rsaDetail.symmetric.keyBits.aes = 128;
		a->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
		a->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
		a->parameters.rsaDetail.keyBits = 2048;
		a->parameters.rsaDetail.exponent = 0;
		a->unique.rsa.size = 256;
		break;
	case KL_EK_P256:
		a->type = TPM2_ALG_ECC;
		a->nameAlg = TPM2_ALG_SHA256;
		a->objectAttributes = EK_ATTRS_L;
		a->authPolicy.size = sizeof(policy_a_sha256);
		memcpy(a->authPolicy.buffer, policy_a_sha256, sizeof(policy_a_sha256));
		a->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
		a->parameters.eccDetail.symmetric.keyBits.aes = 128;
		a->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
		a->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
		a->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
		a->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
		a->unique.ecc.x.size = 32;
		a->unique.ecc.y.size = 32;
		break;
	case KL_EK_P384:
		a->type = TPM2_ALG_ECC;
		a->nameAlg = TPM2_ALG_SHA384;
		a->objectAttributes = EK_ATTRS_H;
		a->authPolicy.size = sizeof(policy_b_sha384);
		memcpy(a->authPolicy.buffer, policy_b_sha384, sizeof(policy_b_sha384));
		a->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
		a->parameters.eccDetail.symmetric.keyBits.aes = 256;
		a->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
		a->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
		a->parameters.eccDetail.curveID = TPM2_ECC_NIST_P384;
		a->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
		break;
	default:
		return kl_error_set(KL_E_INVALID, "unknown EK type %d", (int)type);
	}
	*ret = p;
	return 0;
}

int kl_tpm_ek_template(kl_ek_type type, unsigned char **ret, size_t *len)
{
	uint8_t buf[sizeof(TPMT_PUBLIC)];
	TPM2B_PUBLIC p;
	unsigned char *out;
	size_t off = 0;
	TSS2_RC rc;
	int r;

	r = kl_ek_template_get(type, &p);
	if (r < 0)
		return r;
	rc = Tss2_MU_TPMT_PUBLIC_Marshal(&p.publicArea, buf, sizeof(buf), &off);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "marshal EK template %s", kl_ek_type_name(type));
	out = malloc(off);
	if (!out)
		return kl_error_set(KL_E_NOMEM, "EK template: out of memory");
	memcpy(out, buf, off);
	*ret = out;
	*len = off;
	return 0;
}

/* The TPM must have made the EK of the template we sent: everything but
 * `unique` is an input and must come back unchanged, and `unique` must be a
 * key of the template's size. Otherwise a broken or hostile TPM (or link)
 * could pass off a key with other attributes or another name. */
int kl_ek_check_public(kl_ek_type type, const TPMT_PUBLIC *want, const TPMT_PUBLIC *got)
{
	uint8_t a[sizeof(TPMT_PUBLIC)], b[sizeof(TPMT_PUBLIC)];
	size_t alen, blen;
	TPMT_PUBLIC g = *got;
	int r;

	g.unique = want->unique;
	r = tpm_public_marshal(want, a, sizeof(a), &alen);
	if (r < 0)
		return r;
	r = tpm_public_marshal(&g, b, sizeof(b), &blen);
	if (r < 0)
		return r;
	if (alen != blen || memcmp(a, b, alen) != 0)
		return kl_error_set(
		    KL_E_TPM,
		    "CreatePrimary(EK %s): the TPM returned a public area that does "
		    "not match the template (type 0x%04x, nameAlg 0x%04x, "
		    "attributes 0x%08" PRIx32 ")",
		    kl_ek_type_name(type), got->type, got->nameAlg,
		    (uint32_t)got->objectAttributes);

	switch (type) {
	case KL_EK_RSA2048:
		if (got->unique.rsa.size != 256)
			return kl_error_set(KL_E_TPM,
			                    "CreatePrimary(EK rsa2048): modulus of %u bytes",
			                    (unsigned)got->unique.rsa.size);
		break;
	case KL_EK_P256:
	case KL_EK_P384: {
		unsigned field = type == KL_EK_P256 ? 32 : 48;
		if (got->unique.ecc.x.size == 0 || got->unique.ecc.x.size > field ||
		    got->unique.ecc.y.size == 0 || got->unique.ecc.y.size > field)
			return kl_error_set(KL_E_TPM, "CreatePrimary(EK %s): point of %u+%u bytes",
			                    kl_ek_type_name(type), (unsigned)got->unique.ecc.x.size,
			                    (unsigned)got->unique.ecc.y.size);
		break;
	}
	default:
		return kl_error_set(KL_E_INVALID, "unknown EK type %d", (int)type);
	}
	return 0;
}
