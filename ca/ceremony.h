/* Certificates made at the CA key ceremony. */
#ifndef KL_CA_CEREMONY_H
#define KL_CA_CEREMONY_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_error.h"

/* A CA name: C, O (optional) and CN (required). */
int kl_ceremony_name(const char *cn, const char *o, const char *c, X509_NAME **ret) KL_MUST_CHECK;

/* A self-signed root CA certificate (pathlen 1), valid for days. */
int kl_ceremony_root(EVP_PKEY *key, const X509_NAME *subject, int days, X509 **ret) KL_MUST_CHECK;

/* An issuing CA certificate (pathlen 0) for issuing_pub, signed by the root. */
int kl_ceremony_issuing(X509 *root, EVP_PKEY *root_key, const X509_NAME *subject,
                        EVP_PKEY *issuing_pub, int days, X509 **ret) KL_MUST_CHECK;

/* A PKCS#10 request for an issuing CA, for an external (enterprise) root. */
int kl_ceremony_csr(EVP_PKEY *key, const X509_NAME *subject, X509_REQ **ret) KL_MUST_CHECK;

/* Checks an issuing CA certificate returned by an external root: it is for
 * our key, it is a CA, and it chains to root under x509_strict. */
int kl_ceremony_check_issuing(X509 *cert, EVP_PKEY *issuing_key, X509 *root) KL_MUST_CHECK;

#endif
