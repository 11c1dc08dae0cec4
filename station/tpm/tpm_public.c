/* Public areas (TPMT_PUBLIC) as the station handles them, none of which
 * talks to a TPM: marshalled, named (TPM 2.0 Part 1 §16) and turned into an
 * OpenSSL key. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <tss2/tss2_mu.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_public_internal.h"

/* The longest name we make: nameAlg + a SHA-512 digest. */
_Static_assert(2 + TPM2_SHA512_DIGEST_SIZE <= KL_TPM_NAME_MAX, "KL_TPM_NAME_MAX too small");

KL_DEFINE_CLEANUP(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free)
KL_DEFINE_CLEANUP(OSSL_PARAM, OSSL_PARAM_free)

int tpm_public_marshal(const TPMT_PUBLIC *p, uint8_t *buf, size_t size, size_t *len)
{
	TSS2_RC rc;

	*len = 0;
	rc = Tss2_MU_TPMT_PUBLIC_Marshal(p, buf, size, len);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "marshal TPMT_PUBLIC");
	return 0;
}

/* TPM 2.0 Part 1 §16: Name = nameAlg || H_nameAlg(TPMT_PUBLIC). */
int kl_tpm_public_name(const TPMT_PUBLIC *p, kl_tpm_name *ret)
{
	uint8_t buf[sizeof(TPMT_PUBLIC)];
	unsigned int dlen = 0;
	const EVP_MD *md;
	kl_tpm_name n;
	size_t len;
	int r;

	switch (p->nameAlg) {
	case TPM2_ALG_SHA256:
		md = EVP_sha256();
		break;
	case TPM2_ALG_SHA384:
		md = EVP_sha384();
		break;
	case TPM2_ALG_SHA512:
		md = EVP_sha512();
		break;
	default:
		return kl_error_set(KL_E_UNSUPPORTED, "TPM name: nameAlg 0x%04x", p->nameAlg);
	}
	r = tpm_public_marshal(p, buf, sizeof(buf), &len);
	if (r < 0)
		return r;
	memset(&n, 0, sizeof(n));
	n.buf[0] = (unsigned char)(p->nameAlg >> 8);
	n.buf[1] = (unsigned char)p->nameAlg;
	if (EVP_Digest(buf, len, n.buf + 2, &dlen, md, NULL) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "TPM name: digest");
	n.len = 2 + dlen;
	*ret = n;
	return 0;
}

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **ret)
{
	_cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *check = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;

	params = OSSL_PARAM_BLD_to_param(bld);
	if (!params)
		return kl_error_set_ssl(KL_E_CRYPTO, "EK %s key: parameters", type);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "EK %s key from TPM public area", type);
	/* The point is on the curve, the modulus is odd and not tiny: the
	 * bytes came from the device. */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	if (!check || EVP_PKEY_public_check(check) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "EK %s key from the TPM is not valid", type);
	*ret = TAKE_PTR(key);
	return 0;
}

/* TPM2B_PUBLIC → EVP_PKEY (OpenSSL 3 provider API, no RSA_ / EC_KEY_).
 * RSA: n from unique.rsa, e = exponent or 65537 when 0 (Part 2 §12.2.3.5).
 * ECC: uncompressed point 04 || x || y, each coordinate left-padded to the
 * field size (Part 2 §11.2.5.2). */
int kl_tpm_public_to_pkey(const TPMT_PUBLIC *p, EVP_PKEY **ret)
{
	_cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;

	bld = OSSL_PARAM_BLD_new();
	if (!bld)
		return kl_error_set_ssl(KL_E_NOMEM, "EK key: parameters");

	if (p->type == TPM2_ALG_RSA) {
		_cleanup_(BN_freep) BIGNUM *n = NULL;
		_cleanup_(BN_freep) BIGNUM *e = NULL;
		uint32_t exp =
		    p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537;

		n = BN_bin2bn(p->unique.rsa.buffer, p->unique.rsa.size, NULL);
		e = BN_new();
		if (!n || !e || BN_set_word(e, exp) != 1 ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
			return kl_error_set_ssl(KL_E_CRYPTO, "EK RSA key: parameters");
		return pkey_fromdata("RSA", bld, ret);
	}

	if (p->type == TPM2_ALG_ECC) {
		unsigned char point[1 + 2 * 66];
		const TPMS_ECC_POINT *u = &p->unique.ecc;
		const char *group;
		size_t field;

		switch (p->parameters.eccDetail.curveID) {
		case TPM2_ECC_NIST_P256:
			group = "P-256";
			field = 32;
			break;
		case TPM2_ECC_NIST_P384:
			group = "P-384";
			field = 48;
			break;
		case TPM2_ECC_NIST_P521:
			group = "P-521";
			field = 66;
			break;
		default:
			return kl_error_set(KL_E_UNSUPPORTED, "EK key: ECC curve 0x%04x",
			                    p->parameters.eccDetail.curveID);
		}
		if (u->x.size > field || u->y.size > field)
			return kl_error_set(KL_E_TPM, "EK key: point of %u+%u bytes on %s",
			                    (unsigned)u->x.size, (unsigned)u->y.size, group);
		memset(point, 0, sizeof(point));
		point[0] = 0x04;
		memcpy(point + 1 + field - u->x.size, u->x.buffer, u->x.size);
		memcpy(point + 1 + 2 * field - u->y.size, u->y.buffer, u->y.size);
		if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) !=
		        1 ||
		    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
		                                     1 + 2 * field) != 1)
			return kl_error_set_ssl(KL_E_CRYPTO, "EK EC key: parameters");
		return pkey_fromdata("EC", bld, ret);
	}

	return kl_error_set(KL_E_UNSUPPORTED, "EK key: TPM key type 0x%04x", p->type);
}
