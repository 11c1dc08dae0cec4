/* The default EK templates (TCG EK Credential Profile for TPM Family 2.0,
 * Annex B: L-1, L-2, H-3), checked byte for byte against an encoding written
 * here from the profile's tables, independently of station/tpm/ek_template.c.
 * A wrong bit gives a different EK, which then matches no certificate.
 * PolicyA_SHA256 is recomputed from its definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "tpm.h"

static const uint8_t policy_a_sha256[32] = {
	0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
	0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
	0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

static const uint8_t policy_b_sha384[48] = {
	0xb2, 0x6e, 0x7d, 0x28, 0xd1, 0x1a, 0x50, 0xbc, 0x53, 0xd8, 0x82, 0xbc,
	0xf5, 0xfd, 0x3a, 0x1a, 0x07, 0x41, 0x48, 0xbb, 0x35, 0xd3, 0xb4, 0xe4,
	0xcb, 0x1c, 0x0a, 0xd9, 0xbd, 0xe4, 0x19, 0xca, 0xcb, 0x47, 0xba, 0x09,
	0x69, 0x96, 0x46, 0x15, 0x0f, 0x9f, 0xc0, 0x00, 0xf3, 0xf8, 0x0e, 0x12,
};

struct buf {
	uint8_t b[1024];
	size_t n;
};

static void put16(struct buf *w, uint16_t v)
{
	w->b[w->n++] = (uint8_t)(v >> 8);
	w->b[w->n++] = (uint8_t)v;
}

static void put32(struct buf *w, uint32_t v)
{
	put16(w, (uint16_t)(v >> 16));
	put16(w, (uint16_t)v);
}

static void put(struct buf *w, const void *p, size_t n)
{
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void zeros(struct buf *w, size_t n)
{
	memset(w->b + w->n, 0, n);
	w->n += n;
}

/* TPMT_PUBLIC header: type, nameAlg, objectAttributes, authPolicy (TPM 2.0
 * Part 2 §12.2.4), then TPMT_SYM_DEF_OBJECT AES-keyBits-CFB. */
static void header(struct buf *w, uint16_t type, uint16_t name_alg, uint32_t attrs,
                   const uint8_t *policy, size_t policy_len, uint16_t aes_bits)
{
	put16(w, type);
	put16(w, name_alg);
	put32(w, attrs);
	put16(w, (uint16_t)policy_len);
	put(w, policy, policy_len);
	put16(w, 0x0006); /* TPM_ALG_AES */
	put16(w, aes_bits);
	put16(w, 0x0043); /* TPM_ALG_CFB */
}

static void expect_template(kl_ek_type type, const struct buf *want)
{
	unsigned char *got = NULL;
	size_t len = 0;

	assert_int_equal(kl_tpm_ek_template(type, &got, &len), 0);
	assert_int_equal(len, want->n);
	assert_memory_equal(got, want->b, want->n);
	free(got);
}

static uint32_t attrs_of(kl_ek_type type)
{
	unsigned char *got = NULL;
	size_t len = 0;
	uint32_t a;

	assert_int_equal(kl_tpm_ek_template(type, &got, &len), 0);
	assert_true(len > 8);
	a = (uint32_t)got[4] << 24 | (uint32_t)got[5] << 16 | (uint32_t)got[6] << 8 | got[7];
	free(got);
	return a;
}

/* Template L-1: RSA 2048, SHA-256, PolicyA, AES-128-CFB, scheme NULL,
 * exponent 0, unique 256 zero bytes. */
static void test_l1(void **state)
{
	struct buf w = { .n = 0 };

	(void)state;
	header(&w, 0x0001, 0x000b, 0x000300b2, policy_a_sha256, 32, 128);
	put16(&w, 0x0010); /* scheme TPM_ALG_NULL */
	put16(&w, 2048);   /* keyBits */
	put32(&w, 0);      /* exponent */
	put16(&w, 256);    /* unique.rsa */
	zeros(&w, 256);
	expect_template(KL_EK_RSA2048, &w);
	assert_int_equal(w.n, 314);
}

/* Template L-2: ECC NIST P-256, SHA-256, PolicyA, AES-128-CFB, scheme and KDF
 * NULL, unique x and y 32 zero bytes each. */
static void test_l2(void **state)
{
	struct buf w = { .n = 0 };

	(void)state;
	header(&w, 0x0023, 0x000b, 0x000300b2, policy_a_sha256, 32, 128);
	put16(&w, 0x0010); /* scheme NULL */
	put16(&w, 0x0003); /* TPM_ECC_NIST_P256 */
	put16(&w, 0x0010); /* kdf NULL */
	put16(&w, 32);
	zeros(&w, 32);
	put16(&w, 32);
	zeros(&w, 32);
	expect_template(KL_EK_P256, &w);
}

/* Template H-3: ECC NIST P-384, SHA-384, userWithAuth added, PolicyB,
 * AES-256-CFB, scheme and KDF NULL, unique empty. */
static void test_h3(void **state)
{
	struct buf w = { .n = 0 };

	(void)state;
	header(&w, 0x0023, 0x000c, 0x000300f2, policy_b_sha384, 48, 256);
	put16(&w, 0x0010); /* scheme NULL */
	put16(&w, 0x0004); /* TPM_ECC_NIST_P384 */
	put16(&w, 0x0010); /* kdf NULL */
	put16(&w, 0);
	put16(&w, 0);
	expect_template(KL_EK_P384, &w);
}

static void test_attributes(void **state)
{
	(void)state;
	assert_int_equal(attrs_of(KL_EK_RSA2048), 0x000300b2);
	assert_int_equal(attrs_of(KL_EK_P256), 0x000300b2);
	assert_int_equal(attrs_of(KL_EK_P384), 0x000300f2);
}

/* PolicyA = TPM2_PolicySecret(TPM_RH_ENDORSEMENT) from an empty policy
 * (TPM 2.0 Part 3 §23.4, PolicyUpdate): H(H(0^32 || TPM_CC_PolicySecret ||
 * Name(TPM_RH_ENDORSEMENT)) || policyRef), policyRef empty. */
static void test_policy_a(void **state)
{
	uint8_t in[32 + 4 + 4] = { 0 };
	uint8_t d[32];
	unsigned int dlen = 0;

	(void)state;
	in[32 + 0] = 0x00, in[32 + 1] = 0x00, in[32 + 2] = 0x01, in[32 + 3] = 0x51;
	in[36 + 0] = 0x40, in[36 + 1] = 0x00, in[36 + 2] = 0x00, in[36 + 3] = 0x0b;
	assert_int_equal(EVP_Digest(in, sizeof(in), d, &dlen, EVP_sha256(), NULL), 1);
	assert_int_equal(EVP_Digest(d, 32, d, &dlen, EVP_sha256(), NULL), 1);
	assert_memory_equal(d, policy_a_sha256, 32);
}

static void test_types(void **state)
{
	kl_ek_type t = KL_EK__MAX;
	unsigned char *p = NULL;
	size_t len = 0;

	(void)state;
	assert_string_equal(kl_ek_type_name(KL_EK_RSA2048), "rsa2048");
	assert_string_equal(kl_ek_type_name(KL_EK_P256), "p256");
	assert_string_equal(kl_ek_type_name(KL_EK_P384), "p384");
	assert_null(kl_ek_type_name(KL_EK__MAX));
	assert_int_equal(kl_ek_type_nv_index(KL_EK_RSA2048), 0x01c00002);
	assert_int_equal(kl_ek_type_nv_index(KL_EK_P256), 0x01c0000a);
	assert_int_equal(kl_ek_type_nv_index(KL_EK_P384), 0x01c00016);
	assert_int_equal(kl_ek_type_nv_index(KL_EK__MAX), 0);
	for (int i = 0; i < KL_EK__MAX; i++) {
		assert_int_equal(kl_ek_type_from_name(kl_ek_type_name((kl_ek_type)i), &t), 0);
		assert_int_equal(t, i);
	}
	assert_int_equal(kl_ek_type_from_name("rsa4096", &t), -KL_E_INVALID);
	assert_int_equal(kl_ek_type_from_name(NULL, &t), -KL_E_INVALID);
	assert_int_equal(kl_tpm_ek_template(KL_EK__MAX, &p, &len), -KL_E_INVALID);
	assert_null(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_l1),       cmocka_unit_test(test_l2),
		cmocka_unit_test(test_h3),       cmocka_unit_test(test_attributes),
		cmocka_unit_test(test_policy_a), cmocka_unit_test(test_types),
	};

	return cmocka_run_group_tests_name("ek_template", tests, NULL, NULL);
}
