#include "kl_hex.h"
#include "kl_error.h"

#include <string.h>

#include <openssl/evp.h>

void kl_hex_encode(const void *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int kl_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int kl_hex_decode(const char *hex, size_t n, unsigned char *out)
{
	/* Checked in full first so that a bad digit leaves out untouched. */
	for (size_t i = 0; i < 2 * n; i++)
		if (kl_hex_digit((unsigned char)hex[i]) < 0)
			return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(kl_hex_digit((unsigned char)hex[2 * i]) << 4 |
		                         kl_hex_digit((unsigned char)hex[2 * i + 1]));
	return 0;
}

int kl_sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;

	out[0] = '\0';
	if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != sizeof(md))
		return kl_error_set_ssl(KL_E_CRYPTO, "SHA-256");
	kl_hex_encode(md, sizeof(md), out);
	return 0;
}

int kl_x509_fingerprint(const X509 *x, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;

	out[0] = '\0';
	if (!X509_digest(x, EVP_sha256(), md, &len) || len != sizeof(md))
		return kl_error_set_ssl(KL_E_CRYPTO, "certificate fingerprint");
	kl_hex_encode(md, sizeof(md), out);
	return 0;
}
