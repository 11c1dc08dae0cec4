/* station/tpm/tpm_mu.c without a TPM: structures marshalled here with
 * tss2-mu come back as the plain C of tpm_mu.h, field by field.
 *
 *   1. an ECC TPMT_PUBLIC: every field, bytes used, trailing bytes left;
 *   2. a non-ECC public area: its type and attributes, ecc all zero;
 *   3. a TPMS_ATTEST of a Certify with the largest names a TPM2B_NAME
 *      holds; of another type: no certified names;
 *   4. truncated and empty input: -KL_E_INVALID with tss2-mu's code;
 *   5. kl_tpm_public_key: the software key's point gives that key; a
 *      point off the curve and a non-ECC type are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <tss2/tss2_mu.h>

#include "kl_error.h"
#include "tpm_mu.h"

static TPMT_PUBLIC ecc_public(EVP_PKEY *key)
{
	TPMT_PUBLIC p;
	TPMS_ECC_PARMS *e = &p.parameters.eccDetail;
	unsigned char point[65];
	size_t point_len = 0;

	memset(&p, 0, sizeof(p));
	p.type = TPM2_ALG_ECC;
	p.nameAlg = TPM2_ALG_SHA256;
	p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	p.authPolicy.size = 3;
	memcpy(p.authPolicy.buffer, "\x01\x02\x03", 3);
	e->symmetric.algorithm = TPM2_ALG_AES;
	e->symmetric.keyBits.aes = 128;
	e->symmetric.mode.aes = TPM2_ALG_CFB;
	e->scheme.scheme = TPM2_ALG_ECDAA;
	e->scheme.details.ecdaa.hashAlg = TPM2_ALG_SHA384;
	e->scheme.details.ecdaa.count = 7;
	e->curveID = TPM2_ECC_NIST_P256;
	e->kdf.scheme = TPM2_ALG_KDF1_SP800_56A;
	e->kdf.details.kdf1_sp800_56a.hashAlg = TPM2_ALG_SHA256;
	assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point,
	                                                 sizeof(point), &point_len),
	                 1);
	assert_int_equal(point_len, 65);
	p.unique.ecc.x.size = 32;
	memcpy(p.unique.ecc.x.buffer, point + 1, 32);
	p.unique.ecc.y.size = 32;
	memcpy(p.unique.ecc.y.buffer, point + 33, 32);
	return p;
}

static size_t marshal_public(const TPMT_PUBLIC *p, unsigned char *buf, size_t size)
{
	size_t off = 0;

	assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(p, buf, size, &off), TSS2_RC_SUCCESS);
	return off;
}

/* 1. and 5. */
static void test_public_ecc(void **state)
{
	EVP_PKEY *key = EVP_EC_gen("P-256"), *got = NULL;
	unsigned char buf[sizeof(TPMT_PUBLIC) + 1];
	TPMT_PUBLIC in;
	kl_tpm_public p;
	size_t len, used = 0;
	uint32_t mu_rc = 1;

	(void)state;
	assert_non_null(key);
	in = ecc_public(key);
	len = marshal_public(&in, buf, sizeof(buf) - 1);
	buf[len] = 0xee; /* a trailing byte is the caller's business */
	assert_int_equal(kl_tpm_public_unmarshal(buf, len + 1, &p, &used, &mu_rc), 0);
	assert_int_equal(used, len);
	assert_int_equal(mu_rc, 0);
	assert_int_equal(p.type, KL_TPM_ALG_ECC);
	assert_int_equal(p.name_alg, KL_TPM_ALG_SHA256);
	assert_int_equal(p.attributes, KL_TPMA_OBJECT_FIXEDTPM | KL_TPMA_OBJECT_RESTRICTED |
	                                   KL_TPMA_OBJECT_DECRYPT);
	assert_int_equal(p.auth_policy_len, 3);
	assert_memory_equal(p.auth_policy, "\x01\x02\x03", 3);
	assert_int_equal(p.ecc.symmetric, TPM2_ALG_AES);
	assert_int_equal(p.ecc.scheme, TPM2_ALG_ECDAA);
	assert_int_equal(p.ecc.scheme_hash, TPM2_ALG_SHA384);
	assert_int_equal(p.ecc.curve, KL_TPM_ECC_NIST_P256);
	assert_int_equal(p.ecc.kdf, TPM2_ALG_KDF1_SP800_56A);
	assert_int_equal(p.ecc.x_len, 32);
	assert_int_equal(p.ecc.y_len, 32);
	assert_memory_equal(p.ecc.x, in.unique.ecc.x.buffer, 32);
	assert_memory_equal(p.ecc.y, in.unique.ecc.y.buffer, 32);

	assert_int_equal(kl_tpm_public_key(&p, &got), 0);
	assert_int_equal(EVP_PKEY_eq(got, key), 1);
	EVP_PKEY_free(got);
	got = NULL;

	/* one bit of y flipped: the point is off the curve */
	p.ecc.y[31] ^= 0x01;
	assert_int_not_equal(kl_tpm_public_key(&p, &got), 0);
	assert_null(got);
	p.ecc.y[31] ^= 0x01;
	p.ecc.curve = 0x0042;
	assert_int_equal(kl_tpm_public_key(&p, &got), -KL_E_UNSUPPORTED);
	p.ecc.curve = KL_TPM_ECC_NIST_P256;
	p.type = TPM2_ALG_RSA;
	assert_int_equal(kl_tpm_public_key(&p, &got), -KL_E_UNSUPPORTED);
	assert_null(got);
	EVP_PKEY_free(key);
}

/* 2. */
static void test_public_rsa(void **state)
{
	unsigned char buf[sizeof(TPMT_PUBLIC)];
	TPMT_PUBLIC in;
	kl_tpm_public p, zero;
	size_t len, used = 0;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.type = TPM2_ALG_RSA;
	in.nameAlg = TPM2_ALG_SHA384;
	in.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT;
	in.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
	in.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
	in.parameters.rsaDetail.keyBits = 2048;
	in.unique.rsa.size = 256;
	memset(in.unique.rsa.buffer, 0xa5, 256);
	len = marshal_public(&in, buf, sizeof(buf));
	assert_int_equal(kl_tpm_public_unmarshal(buf, len, &p, &used, NULL), 0);
	assert_int_equal(used, len);
	assert_int_equal(p.type, TPM2_ALG_RSA);
	assert_int_equal(p.name_alg, TPM2_ALG_SHA384);
	assert_int_equal(p.attributes, KL_TPMA_OBJECT_SIGN_ENCRYPT);
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&p.ecc, &zero.ecc, sizeof(zero.ecc));
}

static void fill_name(TPM2B_NAME *n, size_t len, unsigned char v)
{
	n->size = (UINT16)len;
	memset(n->name, v, len);
}

/* 3. */
static void test_attest(void **state)
{
	unsigned char buf[sizeof(TPMS_ATTEST)];
	TPMS_ATTEST in;
	kl_tpm_attest a;
	size_t len = 0, used = 0;
	uint32_t mu_rc = 1;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.magic = TPM2_GENERATED_VALUE;
	in.type = TPM2_ST_ATTEST_CERTIFY;
	fill_name(&in.qualifiedSigner, 34, 0x11);
	in.extraData.size = KL_TPM2B_DATA_MAX;
	memset(in.extraData.buffer, 0x22, KL_TPM2B_DATA_MAX);
	in.clockInfo.clock = 0x0102030405060708ull;
	in.clockInfo.resetCount = 9;
	in.clockInfo.restartCount = 10;
	in.clockInfo.safe = TPM2_YES;
	in.firmwareVersion = 0x1112131415161718ull;
	fill_name(&in.attested.certify.name, KL_TPM2B_NAME_MAX, 0x33);
	fill_name(&in.attested.certify.qualifiedName, KL_TPM2B_NAME_MAX, 0x44);
	assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(&in, buf, sizeof(buf), &len), TSS2_RC_SUCCESS);
	assert_int_equal(kl_tpm_attest_unmarshal(buf, len, &a, &used, &mu_rc), 0);
	assert_int_equal(used, len);
	assert_int_equal(mu_rc, 0);
	assert_int_equal(a.magic, KL_TPM_GENERATED_VALUE);
	assert_int_equal(a.type, KL_TPM_ST_ATTEST_CERTIFY);
	assert_int_equal(a.qualified_signer.len, 34);
	assert_memory_equal(a.qualified_signer.buf, in.qualifiedSigner.name, 34);
	assert_int_equal(a.extra_len, KL_TPM2B_DATA_MAX);
	assert_memory_equal(a.extra, in.extraData.buffer, KL_TPM2B_DATA_MAX);
	assert_true(a.clock == 0x0102030405060708ull);
	assert_int_equal(a.reset_count, 9);
	assert_int_equal(a.restart_count, 10);
	assert_int_equal(a.safe, KL_TPM_YES);
	assert_true(a.firmware_version == 0x1112131415161718ull);
	assert_int_equal(a.certified_name.len, KL_TPM2B_NAME_MAX);
	assert_memory_equal(a.certified_name.buf, in.attested.certify.name.name, KL_TPM2B_NAME_MAX);
	assert_int_equal(a.certified_qualified_name.len, KL_TPM2B_NAME_MAX);
	assert_memory_equal(a.certified_qualified_name.buf, in.attested.certify.qualifiedName.name,
	                    KL_TPM2B_NAME_MAX);

	/* Another type: the union holds something else, no certified names. */
	memset(&in.attested, 0, sizeof(in.attested));
	in.type = TPM2_ST_ATTEST_CREATION;
	fill_name(&in.attested.creation.objectName, 34, 0x55);
	len = 0;
	assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(&in, buf, sizeof(buf), &len), TSS2_RC_SUCCESS);
	assert_int_equal(kl_tpm_attest_unmarshal(buf, len, &a, &used, NULL), 0);
	assert_int_equal(a.type, TPM2_ST_ATTEST_CREATION);
	assert_int_equal(a.certified_name.len, 0);
	assert_int_equal(a.certified_qualified_name.len, 0);
}

/* 4. */
static void test_malformed(void **state)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	unsigned char buf[sizeof(TPMT_PUBLIC)];
	TPMT_PUBLIC in;
	kl_tpm_public p;
	kl_tpm_attest a;
	size_t len, used = 99;
	uint32_t mu_rc = 0;

	(void)state;
	assert_non_null(key);
	in = ecc_public(key);
	len = marshal_public(&in, buf, sizeof(buf));
	for (size_t cut = 0; cut < len; cut++) {
		mu_rc = 0;
		assert_int_equal(kl_tpm_public_unmarshal(buf, cut, &p, &used, &mu_rc),
		                 -KL_E_INVALID);
		assert_int_not_equal(mu_rc, 0);
	}
	assert_int_equal(used, 99); /* written only on success */
	mu_rc = 0;
	assert_int_equal(kl_tpm_attest_unmarshal(buf, 3, &a, &used, &mu_rc), -KL_E_INVALID);
	assert_int_not_equal(mu_rc, 0);
	/* a public area is not an attestation: 0x0023 is no TPMI_ST_ATTEST */
	mu_rc = 0;
	assert_int_equal(kl_tpm_attest_unmarshal(buf, len, &a, &used, &mu_rc), -KL_E_INVALID);
	assert_int_not_equal(mu_rc, 0);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public_ecc),
		cmocka_unit_test(test_public_rsa),
		cmocka_unit_test(test_attest),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests_name("tpm_mu", tests, NULL, NULL);
}
