/* KDFa and KDFe (TPM 2.0 Part 1 §11.4.10) on OpenSSL's EVP_KDF: the key
 * derivations of credential protection (credential.c). */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "credential_kdf.h"
#include "kl_cleanup.h"
#include "kl_error.h"

KL_DEFINE_CLEANUP(EVP_KDF, EVP_KDF_free)
KL_DEFINE_CLEANUP(EVP_KDF_CTX, EVP_KDF_CTX_free)

/* KDFe's label || partyUInfo || partyVInfo: "IDENTITY\0" and two x
 * coordinates of at most P-384's 48 bytes. */
#define KDFE_INFO_MAX (16 + 2 * 48)

/* KDFa (Part 1 §11.4.10.2) is SP 800-108's KDF in counter mode with HMAC:
 *   K(i) = HMAC(key, [i]32 || label || 00 || context || [bits]32)
 * for i = 1, 2, ... That is OpenSSL's KBKDF with its 32-bit counter (the
 * only size OpenSSL 3.0 has), salt = the label with its NUL (so no
 * separator byte of OpenSSL's own), info = the context, and L = the output
 * length in bits as a 32-bit big-endian number. KBKDF truncates the last
 * block itself. The context OpenSSL copies is wiped when ctx is freed. */
int kl_kdfa(const char *md, const unsigned char *key, size_t key_len, const char *label,
            const unsigned char *context, size_t context_len, unsigned char *out, size_t out_len)
{
	_cleanup_(EVP_KDF_freep) EVP_KDF *kdf = NULL;
	_cleanup_(EVP_KDF_CTX_freep) EVP_KDF_CTX *ctx = NULL;
	int use_l = 1, use_separator = 0;
	OSSL_PARAM params[9], *p = params;

	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, (char *)"counter", 0);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)"HMAC", 0);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)label,
	                                         strlen(label) + 1);
	if (context_len > 0) /* "INTEGRITY" has none */
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)context,
		                                         context_len);
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_KBKDF_USE_L, &use_l);
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_KBKDF_USE_SEPARATOR, &use_separator);
	*p = OSSL_PARAM_construct_end();

	kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
	if (!kdf || !(ctx = EVP_KDF_CTX_new(kdf)))
		return kl_error_set_ssl(KL_E_CRYPTO, "KDFa %s: KBKDF not available", md);
	if (EVP_KDF_derive(ctx, out, out_len, params) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "KDFa %s", md);
	return 0;
}

/* KDFe (Part 1 §11.4.10.3) is SP 800-56A's one-step (concatenation) KDF
 * with a hash:
 *   K(i) = H([i]32 || Z || label || 00 || partyUInfo || partyVInfo)
 * That is OpenSSL's SSKDF with key = Z and info = the rest after Z; the
 * counter is SSKDF's own. Z is wiped when ctx is freed. */
int kl_kdfe(const char *md, const unsigned char *z, size_t z_len, const char *label,
            const unsigned char *u, size_t u_len, const unsigned char *v, size_t v_len,
            unsigned char *out, size_t out_len)
{
	_cleanup_(EVP_KDF_freep) EVP_KDF *kdf = NULL;
	_cleanup_(EVP_KDF_CTX_freep) EVP_KDF_CTX *ctx = NULL;
	unsigned char info[KDFE_INFO_MAX]; /* public: a label and two x coordinates */
	const size_t label_len = strlen(label) + 1;
	OSSL_PARAM params[4];

	if (label_len > sizeof(info) || u_len > sizeof(info) - label_len ||
	    v_len > sizeof(info) - label_len - u_len)
		return kl_error_set(KL_E_INVALID, "KDFe: label and party info over %zu bytes",
		                    sizeof(info));
	memcpy(info, label, label_len);
	if (u_len)
		memcpy(info + label_len, u, u_len);
	if (v_len)
		memcpy(info + label_len + u_len, v, v_len);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, z_len);
	params[2] =
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, label_len + u_len + v_len);
	params[3] = OSSL_PARAM_construct_end();

	kdf = EVP_KDF_fetch(NULL, "SSKDF", NULL);
	if (!kdf || !(ctx = EVP_KDF_CTX_new(kdf)))
		return kl_error_set_ssl(KL_E_CRYPTO, "KDFe %s: SSKDF not available", md);
	if (EVP_KDF_derive(ctx, out, out_len, params) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "KDFe %s", md);
	return 0;
}
