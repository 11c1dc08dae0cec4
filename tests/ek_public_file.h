/* Shared by the credential tests: writes an EK's public area as a
 * TPM2B_PUBLIC file (what tpm2_makecredential -u takes): the station's EK
 * template with `unique` filled from the key, coordinates and modulus at
 * full size as a TPM makes them. Include after cmocka.h. */
#ifndef KL_TEST_EK_PUBLIC_FILE_H
#define KL_TEST_EK_PUBLIC_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "kl_cleanup.h"
#include "tpm.h"

/* The template ends with an empty unique: 2 + 256 (L-1), 2 + 32 + 2 + 32
 * (L-2), 2 + 2 (H-3, empty). */
static inline void write_tpm2b_public(const char *path, kl_ek_type type, EVP_PKEY *ek)
{
	unsigned char *tmpl = NULL, buf[1024];
	size_t len = 0, n;
	FILE *f;

	assert_int_equal(kl_tpm_ek_template(type, &tmpl, &len), 0);
	n = len - (type == KL_EK_RSA2048 ? 258 : type == KL_EK_P256 ? 68 : 4);
	memcpy(buf + 2, tmpl, n);
	n += 2;
	free(tmpl);
	if (type == KL_EK_RSA2048) {
		_cleanup_(BN_freep) BIGNUM *m = NULL;

		assert_int_equal(EVP_PKEY_get_bn_param(ek, OSSL_PKEY_PARAM_RSA_N, &m), 1);
		buf[n++] = 0x01;
		buf[n++] = 0x00;
		assert_int_equal(BN_bn2binpad(m, buf + n, 256), 256);
		n += 256;
	} else {
		_cleanup_(BN_freep) BIGNUM *x = NULL;
		_cleanup_(BN_freep) BIGNUM *y = NULL;
		int fs = type == KL_EK_P256 ? 32 : 48;

		assert_int_equal(EVP_PKEY_get_bn_param(ek, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
		assert_int_equal(EVP_PKEY_get_bn_param(ek, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
		buf[n++] = 0;
		buf[n++] = (unsigned char)fs;
		assert_int_equal(BN_bn2binpad(x, buf + n, fs), fs);
		n += (size_t)fs;
		buf[n++] = 0;
		buf[n++] = (unsigned char)fs;
		assert_int_equal(BN_bn2binpad(y, buf + n, fs), fs);
		n += (size_t)fs;
	}
	buf[0] = (unsigned char)((n - 2) >> 8);
	buf[1] = (unsigned char)(n - 2);
	f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

#endif
