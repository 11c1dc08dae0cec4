/* Certificates and requests as files and text for the ca commands: PEM out,
 * PEM or DER in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli_internal.h"
#include "home.h"
#include "kl_error.h"
#include "kl_file.h"

int kl_cli_pem_string(X509 *x, X509_REQ *req, char **out, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	if (!b || (x && !PEM_write_bio_X509(b, x)) || (req && !PEM_write_bio_X509_REQ(b, req))) {
		BIO_free(b);
		return kl_error_set_ssl(KL_E_CRYPTO, "PEM");
	}
	n = BIO_get_mem_data(b, &p);
	if (n < 0) {
		BIO_free(b);
		return kl_error_set_ssl(KL_E_CRYPTO, "PEM");
	}
	s = malloc((size_t)n + 1);
	if (!s) {
		BIO_free(b);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	*out = s;
	*len = (size_t)n;
	return 0;
}

int kl_cli_pem_write(const char *path, X509 *x, X509_REQ *req)
{
	char *s = NULL;
	size_t len = 0;
	int r = kl_cli_pem_string(x, req, &s, &len);

	if (r == 0)
		r = kl_write_file(path, s, len, 0644);
	free(s);
	return r;
}

static FILE *open_input(const char *what, const char *path)
{
	FILE *f = fopen(path, "re");

	if (!f)
		kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "%s%s: %s", what, path,
		             strerror(errno));
	return f;
}

X509 *kl_cli_cert_read(const char *path)
{
	FILE *f = open_input("", path);
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	if (!x) {
		rewind(f);
		x = d2i_X509_fp(f, NULL);
	}
	fclose(f);
	if (!x)
		kl_error_set_ssl(KL_E_INVALID, "%s: not an X.509 certificate (PEM or DER)", path);
	return x;
}

X509_REQ *kl_cli_csr_read(const char *path)
{
	FILE *f = open_input("CSR ", path);
	X509_REQ *req;

	if (!f)
		return NULL;
	req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
	if (!req) {
		rewind(f);
		req = d2i_X509_REQ_fp(f, NULL);
	}
	fclose(f);
	if (!req)
		kl_error_set_ssl(KL_E_INVALID, "%s is not a PKCS#10 request (PEM or DER)", path);
	return req;
}
