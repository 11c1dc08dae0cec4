/* station/proof/attest.c without a TPM: the test makes its own TPMS_ATTEST and
 * TPMT_PUBLIC bytes with tss2-mu and signs them with an OpenSSL P-256 key
 * standing in for the IAK.
 *
 *   1. a good CertifyCreation verifies, and the report carries what it says;
 *   2. each failure has its own verdict: wrong magic, wrong type, wrong
 *      signer, wrong name, wrong nonce (value and length), creation data
 *      that is not what the TPM hashed or not of an endorsement primary, a
 *      signature by another key, malformed bytes;
 *   3. flipping any bit of any byte of the attestation, or of the
 *      signature, makes it fail;
 *   4. IAK and IDevID public areas (the DevID spec's and the legacy
 *      profile) pass, and each missing or forbidden attribute bit (all 32),
 *      nameAlg, type, policy (absent, other, legacy), symmetric, scheme,
 *      curve, KDF, an off-curve point and malformed bytes are refused with
 *      their verdict;
 *   5. bad arguments are -KL_E_INVALID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <tss2/tss2_mu.h>

#include "attest.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_mu.h"

static struct {
	EVP_PKEY *iak;   /* the "IAK" */
	EVP_PKEY *other; /* another key */
	kl_tpm_name iak_name, idevid_name;
	unsigned char nonce[32];
	unsigned char cd[sizeof(TPMS_CREATION_DATA)]; /* of an endorsement primary */
	size_t cd_len;
} fx;

/* TPMS_CREATION_DATA as a TPM returns it for a primary of the parent
 * handle (Part 3 §24.1): parentName = parentQualifiedName = the handle. */
static size_t creation_data(uint32_t parent, TPMI_ALG_HASH name_alg, unsigned char *buf,
                            size_t size)
{
	TPMS_CREATION_DATA c;
	size_t off = 0;

	memset(&c, 0, sizeof(c));
	c.pcrDigest.size = 32;
	assert_int_equal(EVP_Digest("", 0, c.pcrDigest.buffer, NULL, EVP_sha256(), NULL), 1);
	c.locality = TPMA_LOCALITY_TPM2_LOC_ZERO;
	c.parentNameAlg = name_alg;
	c.parentName.size = c.parentQualifiedName.size = 4;
	c.parentName.name[0] = c.parentQualifiedName.name[0] = (BYTE)(parent >> 24);
	c.parentName.name[1] = c.parentQualifiedName.name[1] = (BYTE)(parent >> 16);
	c.parentName.name[2] = c.parentQualifiedName.name[2] = (BYTE)(parent >> 8);
	c.parentName.name[3] = c.parentQualifiedName.name[3] = (BYTE)parent;
	assert_int_equal(Tss2_MU_TPMS_CREATION_DATA_Marshal(&c, buf, size, &off), TSS2_RC_SUCCESS);
	return off;
}

static void random_name(kl_tpm_name *n)
{
	n->len = 34;
	n->buf[0] = 0x00;
	n->buf[1] = 0x0b;
	assert_int_equal(RAND_bytes(n->buf + 2, 32), 1);
}

static int setup(void **state)
{
	(void)state;
	fx.iak = EVP_EC_gen("P-256");
	fx.other = EVP_EC_gen("P-256");
	if (!fx.iak || !fx.other)
		return -1;
	random_name(&fx.iak_name);
	random_name(&fx.idevid_name);
	fx.cd_len = creation_data(TPM2_RH_ENDORSEMENT, TPM2_ALG_NULL, fx.cd, sizeof(fx.cd));
	return RAND_bytes(fx.nonce, sizeof(fx.nonce)) == 1 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(fx.iak);
	EVP_PKEY_free(fx.other);
	return 0;
}

/* An independent Qualified Name: 0x000b || SHA-256(TPM_RH_ENDORSEMENT ||
 * name), TPM 2.0 Part 1 §16. */
static void qn(const kl_tpm_name *name, TPM2B_NAME *ret)
{
	unsigned char buf[4 + KL_TPM_NAME_MAX];
	unsigned int len = 0;

	buf[0] = 0x40;
	buf[1] = buf[2] = 0x00;
	buf[3] = 0x0b;
	memcpy(buf + 4, name->buf, name->len);
	ret->size = 34;
	ret->name[0] = 0x00;
	ret->name[1] = 0x0b;
	assert_int_equal(EVP_Digest(buf, 4 + name->len, ret->name + 2, &len, EVP_sha256(), NULL),
	                 1);
}

static void to_tpm2b_name(const kl_tpm_name *n, TPM2B_NAME *ret)
{
	ret->size = (UINT16)n->len;
	memcpy(ret->name, n->buf, n->len);
}

static void set_creation_hash(TPMS_ATTEST *a, const unsigned char *cd, size_t cd_len)
{
	a->attested.creation.creationHash.size = 32;
	assert_int_equal(EVP_Digest(cd, cd_len, a->attested.creation.creationHash.buffer, NULL,
	                            EVP_sha256(), NULL),
	                 1);
}

/* A TPMS_ATTEST as the TPM would make for CertifyCreation(IDevID by IAK,
 * nonce). */
static TPMS_ATTEST good_attest(void)
{
	TPMS_ATTEST a;

	memset(&a, 0, sizeof(a));
	a.magic = TPM2_GENERATED_VALUE;
	a.type = TPM2_ST_ATTEST_CREATION;
	qn(&fx.iak_name, &a.qualifiedSigner);
	a.extraData.size = sizeof(fx.nonce);
	memcpy(a.extraData.buffer, fx.nonce, sizeof(fx.nonce));
	a.clockInfo.clock = 123456;
	a.clockInfo.resetCount = 2;
	a.clockInfo.restartCount = 3;
	a.clockInfo.safe = TPM2_YES;
	a.firmwareVersion = 0x2000000100000002ull;
	to_tpm2b_name(&fx.idevid_name, &a.attested.creation.objectName);
	set_creation_hash(&a, fx.cd, fx.cd_len);
	return a;
}

static size_t marshal(const TPMS_ATTEST *a, unsigned char *buf, size_t size)
{
	size_t off = 0;

	assert_int_equal(Tss2_MU_TPMS_ATTEST_Marshal(a, buf, size, &off), TSS2_RC_SUCCESS);
	return off;
}

static size_t sign(EVP_PKEY *key, const unsigned char *msg, size_t len, unsigned char *sig,
                   size_t size)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t sig_len = size;

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, msg, len), 1);
	return sig_len;
}

/* Verifies a (marshalled, signed) attestation; returns the verdict and
 * checks that the return code agrees with it. */
static kl_attest_verdict verify_cd(const TPMS_ATTEST *a, EVP_PKEY *signer,
                                   const kl_tpm_name *iak_name, const kl_tpm_name *idevid_name,
                                   const unsigned char *nonce, size_t nonce_len,
                                   const unsigned char *cd, size_t cd_len)
{
	unsigned char buf[sizeof(TPMS_ATTEST)], sig[128];
	size_t len = marshal(a, buf, sizeof(buf));
	size_t sig_len = sign(signer, buf, len, sig, sizeof(sig));
	kl_attest_report rep;
	int r;

	r = kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, iak_name, idevid_name, cd,
	                              cd_len, nonce, nonce_len, &rep);
	if (rep.verdict == KL_ATTEST_OK) {
		assert_int_equal(r, 0);
	} else {
		assert_int_equal(r, -KL_E_CRYPTO);
		/* the detail starts with the verdict's name */
		assert_non_null(strstr(kl_error_detail(), kl_attest_verdict_name(rep.verdict)));
	}
	return rep.verdict;
}

static kl_attest_verdict verify_with(const TPMS_ATTEST *a, EVP_PKEY *signer,
                                     const kl_tpm_name *iak_name, const kl_tpm_name *idevid_name,
                                     const unsigned char *nonce, size_t nonce_len)
{
	return verify_cd(a, signer, iak_name, idevid_name, nonce, nonce_len, fx.cd, fx.cd_len);
}

static kl_attest_verdict verify(const TPMS_ATTEST *a)
{
	return verify_with(a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce, sizeof(fx.nonce));
}

/* 1. */
static void test_good(void **state)
{
	TPMS_ATTEST a = good_attest();
	unsigned char buf[sizeof(TPMS_ATTEST)], sig[128];
	size_t len = marshal(&a, buf, sizeof(buf));
	size_t sig_len = sign(fx.iak, buf, len, sig, sizeof(sig));
	kl_attest_report rep;

	(void)state;
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 0);
	assert_int_equal(rep.verdict, KL_ATTEST_OK);
	assert_int_equal(rep.clock, 123456);
	assert_int_equal(rep.reset_count, 2);
	assert_int_equal(rep.restart_count, 3);
	assert_true(rep.safe);
	assert_true(rep.firmware_version == 0x2000000100000002ull);
	assert_int_equal(rep.certified_name.len, fx.idevid_name.len);
	assert_memory_equal(rep.certified_name.buf, fx.idevid_name.buf, fx.idevid_name.len);
	assert_string_equal(kl_attest_verdict_name(KL_ATTEST_OK), "ok");
}

/* 2. */
static void test_distinct_failures(void **state)
{
	TPMS_ATTEST a;
	kl_tpm_name other;
	unsigned char nonce2[32];

	(void)state;
	a = good_attest();
	a.magic = 0xff544346; /* TPM_GENERATED_VALUE (0xff544347), one bit off */
	assert_int_equal(verify(&a), KL_ATTEST_BAD_MAGIC);

	a = good_attest();
	a.type = TPM2_ST_ATTEST_QUOTE;
	memset(&a.attested, 0, sizeof(a.attested));
	assert_int_equal(verify(&a), KL_ATTEST_BAD_TYPE);

	/* a TPM2_Certify of the right key is not a TPM2_CertifyCreation */
	a = good_attest();
	a.type = TPM2_ST_ATTEST_CERTIFY;
	memset(&a.attested, 0, sizeof(a.attested));
	to_tpm2b_name(&fx.idevid_name, &a.attested.certify.name);
	qn(&fx.idevid_name, &a.attested.certify.qualifiedName);
	assert_int_equal(verify(&a), KL_ATTEST_BAD_TYPE);

	/* another signer named in the attestation */
	random_name(&other);
	a = good_attest();
	qn(&other, &a.qualifiedSigner);
	assert_int_equal(verify(&a), KL_ATTEST_BAD_SIGNER);
	/* the IAK's plain name instead of its qualified name */
	a = good_attest();
	to_tpm2b_name(&fx.iak_name, &a.qualifiedSigner);
	assert_int_equal(verify(&a), KL_ATTEST_BAD_SIGNER);
	/* the verifier expects another IAK name */
	a = good_attest();
	assert_int_equal(
	    verify_with(&a, fx.iak, &other, &fx.idevid_name, fx.nonce, sizeof(fx.nonce)),
	    KL_ATTEST_BAD_SIGNER);

	/* another certified key */
	a = good_attest();
	to_tpm2b_name(&other, &a.attested.creation.objectName);
	assert_int_equal(verify(&a), KL_ATTEST_BAD_NAME);
	a = good_attest();
	assert_int_equal(verify_with(&a, fx.iak, &fx.iak_name, &other, fx.nonce, sizeof(fx.nonce)),
	                 KL_ATTEST_BAD_NAME);

	/* creation data: not the bytes the TPM hashed; a key of the owner
	 * hierarchy, a child key, trailing bytes (each hashed as the TPM
	 * would, so only the contents are wrong) */
	{
		unsigned char cd[sizeof(TPMS_CREATION_DATA) + 1];
		size_t n;

		a = good_attest();
		memcpy(cd, fx.cd, fx.cd_len);
		cd[fx.cd_len - 3] ^= 1;
		assert_int_equal(verify_cd(&a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce,
		                           sizeof(fx.nonce), cd, fx.cd_len),
		                 KL_ATTEST_BAD_CREATION);
		assert_non_null(strstr(kl_error_detail(), "not the one the TPM certified"));
		a.attested.creation.creationHash.size = 20;
		assert_int_equal(verify(&a), KL_ATTEST_BAD_CREATION);

		n = creation_data(TPM2_RH_OWNER, TPM2_ALG_NULL, cd, sizeof(cd));
		a = good_attest();
		set_creation_hash(&a, cd, n);
		assert_int_equal(verify_cd(&a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce,
		                           sizeof(fx.nonce), cd, n),
		                 KL_ATTEST_BAD_CREATION);
		assert_non_null(strstr(kl_error_detail(), "not the endorsement hierarchy"));
		n = creation_data(TPM2_RH_ENDORSEMENT, TPM2_ALG_SHA256, cd, sizeof(cd));
		set_creation_hash(&a, cd, n);
		assert_int_equal(verify_cd(&a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce,
		                           sizeof(fx.nonce), cd, n),
		                 KL_ATTEST_BAD_CREATION);
		memcpy(cd, fx.cd, fx.cd_len);
		cd[fx.cd_len] = 0;
		set_creation_hash(&a, cd, fx.cd_len + 1);
		assert_int_equal(verify_cd(&a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce,
		                           sizeof(fx.nonce), cd, fx.cd_len + 1),
		                 KL_ATTEST_BAD_CREATION);
		assert_non_null(strstr(kl_error_detail(), "not one TPMS_CREATION_DATA"));
	}

	/* nonce: another value, a prefix, a longer one, none */
	memcpy(nonce2, fx.nonce, sizeof(nonce2));
	nonce2[31] ^= 1;
	a = good_attest();
	assert_int_equal(
	    verify_with(&a, fx.iak, &fx.iak_name, &fx.idevid_name, nonce2, sizeof(nonce2)),
	    KL_ATTEST_BAD_NONCE);
	assert_int_equal(verify_with(&a, fx.iak, &fx.iak_name, &fx.idevid_name, fx.nonce, 16),
	                 KL_ATTEST_BAD_NONCE);
	a.extraData.size = 16;
	assert_int_equal(verify(&a), KL_ATTEST_BAD_NONCE);
	a.extraData.size = 0;
	assert_int_equal(verify(&a), KL_ATTEST_BAD_NONCE);

	/* signed by another key */
	a = good_attest();
	assert_int_equal(
	    verify_with(&a, fx.other, &fx.iak_name, &fx.idevid_name, fx.nonce, sizeof(fx.nonce)),
	    KL_ATTEST_BAD_SIGNATURE);

	/* every verdict has its own name and sentence */
	for (int i = 0; i < KL_ATTEST__MAX; i++) {
		assert_string_not_equal(kl_attest_verdict_name(i), "?");
		assert_true(strlen(kl_attest_verdict_str(i)) > 10);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(kl_attest_verdict_name(i),
			                        kl_attest_verdict_name(j));
	}
	assert_string_equal(kl_attest_verdict_name(KL_ATTEST__MAX), "?");
}

/* 2, 3. */
static void test_tampered(void **state)
{
	TPMS_ATTEST a = good_attest();
	unsigned char buf[sizeof(TPMS_ATTEST)], sig[128], bad[sizeof(TPMS_ATTEST) + 1];
	size_t len = marshal(&a, buf, sizeof(buf));
	size_t sig_len = sign(fx.iak, buf, len, sig, sizeof(sig));
	kl_attest_report rep;

	(void)state;
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, buf, len);
			bad[i] ^= (unsigned char)(1u << bit);
			assert_true(kl_attest_verify_creation(bad, len, sig, sig_len, fx.iak,
			                                      &fx.iak_name, &fx.idevid_name, fx.cd,
			                                      fx.cd_len, fx.nonce, sizeof(fx.nonce),
			                                      &rep) < 0);
			assert_int_not_equal(rep.verdict, KL_ATTEST_OK);
		}
	}
	for (size_t i = 0; i < sig_len; i++) {
		unsigned char s2[128];

		memcpy(s2, sig, sig_len);
		s2[i] ^= 0x01;
		assert_int_equal(kl_attest_verify_creation(
		                     buf, len, s2, sig_len, fx.iak, &fx.iak_name, &fx.idevid_name,
		                     fx.cd, fx.cd_len, fx.nonce, sizeof(fx.nonce), &rep),
		                 -KL_E_CRYPTO);
		assert_int_equal(rep.verdict, KL_ATTEST_BAD_SIGNATURE);
	}
	/* truncated signature, trailing byte after it */
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len - 1, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_CRYPTO);
	assert_int_equal(rep.verdict, KL_ATTEST_BAD_SIGNATURE);

	/* malformed: truncated, trailing byte (re-signed, so only the
	 * structure is wrong) */
	assert_int_equal(kl_attest_verify_creation(buf, len - 1, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_CRYPTO);
	assert_int_equal(rep.verdict, KL_ATTEST_MALFORMED);
	memcpy(bad, buf, len);
	bad[len] = 0;
	{
		unsigned char s3[128];
		size_t s3_len = sign(fx.iak, bad, len + 1, s3, sizeof(s3));

		assert_int_equal(kl_attest_verify_creation(bad, len + 1, s3, s3_len, fx.iak,
		                                           &fx.iak_name, &fx.idevid_name, fx.cd,
		                                           fx.cd_len, fx.nonce, sizeof(fx.nonce),
		                                           &rep),
		                 -KL_E_CRYPTO);
		assert_int_equal(rep.verdict, KL_ATTEST_MALFORMED);
	}
	assert_int_equal(kl_attest_verify_creation(buf, 0, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_CRYPTO);
	assert_int_equal(rep.verdict, KL_ATTEST_MALFORMED);
}

/* 5. */
static void test_bad_arguments(void **state)
{
	TPMS_ATTEST a = good_attest();
	unsigned char buf[sizeof(TPMS_ATTEST)], sig[128];
	size_t len = marshal(&a, buf, sizeof(buf));
	size_t sig_len = sign(fx.iak, buf, len, sig, sizeof(sig));
	kl_attest_report rep;
	kl_tpm_name empty = { 0 };
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *rsa = EVP_RSA_gen(2048);

	(void)state;
	assert_int_equal(kl_attest_verify_creation(NULL, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, NULL, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, NULL, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &empty,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           NULL, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce, 0,
	                                           &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), NULL),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, NULL, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, fx.iak, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, 0, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_non_null(rsa);
	assert_int_equal(kl_attest_verify_creation(buf, len, sig, sig_len, rsa, &fx.iak_name,
	                                           &fx.idevid_name, fx.cd, fx.cd_len, fx.nonce,
	                                           sizeof(fx.nonce), &rep),
	                 -KL_E_INVALID);
	assert_int_not_equal(rep.verdict, KL_ATTEST_OK);
	assert_int_equal(kl_attest_check_public(NULL, 10, KL_ATTEST_KEY_IAK, NULL), -KL_E_INVALID);
	assert_int_equal(kl_attest_check_public(buf, 10, (kl_attest_key_kind)7, NULL),
	                 -KL_E_INVALID);
}

/* A public area of the station's profile, with the point of a software key. */
static TPMT_PUBLIC good_public(kl_attest_key_kind kind)
{
	TPMT_PUBLIC p;
	TPMS_ECC_PARMS *e = &p.parameters.eccDetail;
	unsigned char point[65];
	size_t point_len = 0;

	memset(&p, 0, sizeof(p));
	p.type = TPM2_ALG_ECC;
	p.nameAlg = TPM2_ALG_SHA256;
	p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	                     TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
	                     TPMA_OBJECT_SIGN_ENCRYPT;
	if (kind == KL_ATTEST_KEY_IAK || kind == KL_ATTEST_KEY_IAK_LEGACY)
		p.objectAttributes |= TPMA_OBJECT_RESTRICTED;
	if (kind == KL_ATTEST_KEY_IAK || kind == KL_ATTEST_KEY_IDEVID) {
		p.objectAttributes |= TPMA_OBJECT_ADMINWITHPOLICY;
		p.authPolicy.size = 32;
		memcpy(p.authPolicy.buffer,
		       kind == KL_ATTEST_KEY_IAK ? kl_tpm_devid_iak_policy
		                                 : kl_tpm_devid_idevid_policy,
		       32);
	}
	e->symmetric.algorithm = TPM2_ALG_NULL;
	e->scheme.scheme = TPM2_ALG_ECDSA;
	e->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	e->curveID = TPM2_ECC_NIST_P256;
	e->kdf.scheme = TPM2_ALG_NULL;
	assert_int_equal(EVP_PKEY_get_octet_string_param(fx.iak, OSSL_PKEY_PARAM_PUB_KEY, point,
	                                                 sizeof(point), &point_len),
	                 1);
	assert_int_equal(point_len, 65);
	p.unique.ecc.x.size = 32;
	memcpy(p.unique.ecc.x.buffer, point + 1, 32);
	p.unique.ecc.y.size = 32;
	memcpy(p.unique.ecc.y.buffer, point + 33, 32);
	return p;
}

static kl_attest_verdict check(const TPMT_PUBLIC *p, kl_attest_key_kind kind)
{
	unsigned char buf[sizeof(TPMT_PUBLIC)];
	kl_attest_verdict v = KL_ATTEST__MAX;
	size_t off = 0;
	int r;

	assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(p, buf, sizeof(buf), &off), TSS2_RC_SUCCESS);
	r = kl_attest_check_public(buf, off, kind, &v);
	assert_int_equal(r, v == KL_ATTEST_OK ? 0 : -KL_E_CRYPTO);
	return v;
}

/* 4. */
static void test_public_good(void **state)
{
	TPMT_PUBLIC iak = good_public(KL_ATTEST_KEY_IAK);
	TPMT_PUBLIC idevid = good_public(KL_ATTEST_KEY_IDEVID);

	(void)state;
	assert_int_equal(check(&iak, KL_ATTEST_KEY_IAK), KL_ATTEST_OK);
	assert_int_equal(check(&idevid, KL_ATTEST_KEY_IDEVID), KL_ATTEST_OK);
	/* one is not the other */
	assert_int_equal(check(&iak, KL_ATTEST_KEY_IDEVID), KL_ATTEST_PUB_ATTRIBUTES);
	assert_non_null(strstr(kl_error_detail(), "forbidden restricted"));
	assert_int_equal(check(&idevid, KL_ATTEST_KEY_IAK), KL_ATTEST_PUB_ATTRIBUTES);
	assert_non_null(strstr(kl_error_detail(), "missing restricted"));
	/* the legacy profile passes only as legacy, and the spec's only as the
	 * spec's */
	iak = good_public(KL_ATTEST_KEY_IAK_LEGACY);
	idevid = good_public(KL_ATTEST_KEY_IDEVID_LEGACY);
	assert_int_equal(check(&iak, KL_ATTEST_KEY_IAK_LEGACY), KL_ATTEST_OK);
	assert_int_equal(check(&idevid, KL_ATTEST_KEY_IDEVID_LEGACY), KL_ATTEST_OK);
	assert_int_equal(check(&iak, KL_ATTEST_KEY_IAK), KL_ATTEST_PUB_ATTRIBUTES);
	assert_non_null(strstr(kl_error_detail(), "missing adminWithPolicy"));
	iak = good_public(KL_ATTEST_KEY_IAK);
	assert_int_equal(check(&iak, KL_ATTEST_KEY_IAK_LEGACY), KL_ATTEST_PUB_ATTRIBUTES);
	assert_non_null(strstr(kl_error_detail(), "forbidden adminWithPolicy"));
}

/* 4: every one of the 32 attribute bits, flipped on each kind of key. */
static void test_public_every_bit(void **state)
{
	static const struct {
		unsigned bit;
		const char *name;
	} named[] = { { 1, "fixedTPM" },     { 2, "stClear" },
		      { 4, "fixedParent" },  { 5, "sensitiveDataOrigin" },
		      { 6, "userWithAuth" }, { 7, "adminWithPolicy" },
		      { 10, "noDA" },        { 11, "encryptedDuplication" },
		      { 16, "restricted" },  { 17, "decrypt" },
		      { 18, "sign" },        { 19, "x509sign" } };
	const kl_attest_key_kind kinds[] = { KL_ATTEST_KEY_IAK, KL_ATTEST_KEY_IDEVID };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		for (unsigned bit = 0; bit < 32; bit++) {
			TPMT_PUBLIC p = good_public(kinds[k]);
			uint32_t m = UINT32_C(1) << bit;
			bool was_set = (p.objectAttributes & m) != 0;
			const char *name = NULL;
			char want[96];

			p.objectAttributes ^= m;
			assert_int_equal(check(&p, kinds[k]), KL_ATTEST_PUB_ATTRIBUTES);
			for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
				if (named[i].bit == bit)
					name = named[i].name;
			if (name)
				snprintf(want, sizeof(want), "%s %s",
				         was_set ? "missing" : "forbidden", name);
			else
				snprintf(want, sizeof(want), "reserved attribute bit %u", bit);
			if (!strstr(kl_error_detail(), want))
				fail_msg("bit %u: detail '%s' lacks '%s'", bit, kl_error_detail(),
				         want);
		}
	}
}

/* 4: every other field. */
static void test_public_fields(void **state)
{
	const kl_attest_key_kind kinds[] = { KL_ATTEST_KEY_IAK, KL_ATTEST_KEY_IDEVID };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		kl_attest_key_kind kind = kinds[k];
		TPMT_PUBLIC p;
		unsigned char buf[sizeof(TPMT_PUBLIC) + 1];
		size_t off = 0;
		kl_attest_verdict v;

		p = good_public(kind);
		p.nameAlg = TPM2_ALG_SHA384;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_NAME_ALG);
		p = good_public(kind);
		p.nameAlg = TPM2_ALG_SHA1;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_NAME_ALG);

		p = good_public(kind);
		p.type = TPM2_ALG_RSA;
		memset(&p.parameters, 0, sizeof(p.parameters));
		p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
		p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
		p.parameters.rsaDetail.keyBits = 2048;
		memset(&p.unique, 0, sizeof(p.unique));
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_TYPE);

		/* no policy, another policy, the other key's policy */
		p = good_public(kind);
		p.authPolicy.size = 0;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_POLICY);
		p = good_public(kind);
		p.authPolicy.buffer[7] ^= 0x10;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_POLICY);
		assert_non_null(strstr(kl_error_detail(), "Table 19"));
		p = good_public(kind);
		memcpy(p.authPolicy.buffer,
		       kind == KL_ATTEST_KEY_IAK ? kl_tpm_devid_idevid_policy
		                                 : kl_tpm_devid_iak_policy,
		       32);
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_POLICY);
		/* a legacy key has none */
		p = good_public(kind == KL_ATTEST_KEY_IAK ? KL_ATTEST_KEY_IAK_LEGACY
		                                          : KL_ATTEST_KEY_IDEVID_LEGACY);
		p.authPolicy.size = 32;
		assert_int_equal(check(&p, kind == KL_ATTEST_KEY_IAK ? KL_ATTEST_KEY_IAK_LEGACY
		                                                     : KL_ATTEST_KEY_IDEVID_LEGACY),
		                 KL_ATTEST_PUB_POLICY);

		p = good_public(kind);
		p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
		p.parameters.eccDetail.symmetric.keyBits.aes = 128;
		p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_SYMMETRIC);

		p = good_public(kind);
		p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA384;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_SCHEME);
		p = good_public(kind);
		p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_SCHEME);
		p = good_public(kind);
		p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECSCHNORR;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_SCHEME);

		p = good_public(kind);
		p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P384;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_CURVE);

		p = good_public(kind);
		p.parameters.eccDetail.kdf.scheme = TPM2_ALG_KDF1_SP800_108;
		p.parameters.eccDetail.kdf.details.kdf1_sp800_108.hashAlg = TPM2_ALG_SHA256;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_KDF);

		p = good_public(kind);
		p.unique.ecc.y.buffer[31] ^= 1; /* off the curve */
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_POINT);
		p = good_public(kind);
		p.unique.ecc.y.size = 0;
		assert_int_equal(check(&p, kind), KL_ATTEST_PUB_POINT);

		/* malformed: truncated, trailing byte */
		p = good_public(kind);
		assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(&p, buf, sizeof(buf), &off),
		                 TSS2_RC_SUCCESS);
		assert_int_equal(kl_attest_check_public(buf, off - 1, kind, &v), -KL_E_CRYPTO);
		assert_int_equal(v, KL_ATTEST_PUB_MALFORMED);
		buf[off] = 0;
		assert_int_equal(kl_attest_check_public(buf, off + 1, kind, &v), -KL_E_CRYPTO);
		assert_int_equal(v, KL_ATTEST_PUB_MALFORMED);
		assert_int_equal(kl_attest_check_public(buf, off, kind, NULL), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),          cmocka_unit_test(test_distinct_failures),
		cmocka_unit_test(test_tampered),      cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_public_good),   cmocka_unit_test(test_public_every_bit),
		cmocka_unit_test(test_public_fields),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
