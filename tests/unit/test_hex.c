/* kl_hex: the one hex encoder/decoder, SHA-256 as hex and certificate
 * fingerprints, checked against values computed independently (FIPS 180-2
 * test vector, `openssl x509 -fingerprint -sha256`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_hex.h"

static void test_encode_lowercase_and_nul(void **state)
{
	const unsigned char b[] = { 0x00, 0x01, 0xab, 0xCD, 0xff };
	char out[2 * sizeof(b) + 2];

	(void)state;
	memset(out, 'x', sizeof(out));
	kl_hex_encode(b, sizeof(b), out);
	assert_string_equal(out, "0001abcdff");
	assert_int_equal(out[10], '\0');
	assert_int_equal(out[11], 'x'); /* nothing past the NUL */
	kl_hex_encode(b, 0, out);
	assert_string_equal(out, "");
}

static void test_digit(void **state)
{
	(void)state;
	assert_int_equal(kl_hex_digit('0'), 0);
	assert_int_equal(kl_hex_digit('9'), 9);
	assert_int_equal(kl_hex_digit('a'), 10);
	assert_int_equal(kl_hex_digit('F'), 15);
	assert_int_equal(kl_hex_digit('g'), -1);
	assert_int_equal(kl_hex_digit(' '), -1);
	assert_int_equal(kl_hex_digit('\0'), -1);
	assert_int_equal(kl_hex_digit(0xe9), -1);
}

static void test_decode_round_trip_and_refusals(void **state)
{
	unsigned char out[4] = { 1, 2, 3, 4 };

	(void)state;
	assert_int_equal(kl_hex_decode("00aBcDfF", 4, out), 0);
	assert_int_equal(out[0], 0x00);
	assert_int_equal(out[1], 0xab);
	assert_int_equal(out[2], 0xcd);
	assert_int_equal(out[3], 0xff);

	memcpy(out, "\x01\x02\x03\x04", 4);
	assert_int_equal(kl_hex_decode("00abcdfg", 4, out), -1);
	assert_memory_equal(out, "\x01\x02\x03\x04", 4);     /* untouched */
	assert_int_equal(kl_hex_decode("00ab", 4, out), -1); /* too short: stops at NUL */
	assert_memory_equal(out, "\x01\x02\x03\x04", 4);
}

static void test_sha256_hex_known_vector(void **state)
{
	char out[65];

	(void)state;
	assert_int_equal(kl_sha256_hex("abc", 3, out), 0);
	assert_string_equal(out,
	                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(kl_sha256_hex("", 0, out), 0);
	assert_string_equal(out,
	                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_x509_fingerprint_matches_der_digest(void **state)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	unsigned char *der = NULL;
	int len;
	char fp[65], want[65];

	(void)state;
	assert_non_null(k);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"hex test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);

	len = i2d_X509(x, &der);
	assert_true(len > 0);
	assert_int_equal(kl_sha256_hex(der, (size_t)len, want), 0);
	assert_int_equal(kl_x509_fingerprint(x, fp), 0);
	assert_string_equal(fp, want);
	assert_int_equal(strlen(fp), 64);

	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_lowercase_and_nul),
		cmocka_unit_test(test_digit),
		cmocka_unit_test(test_decode_round_trip_and_refusals),
		cmocka_unit_test(test_sha256_hex_known_vector),
		cmocka_unit_test(test_x509_fingerprint_matches_der_digest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
