/* Shared between the CA's own files; not part of its interface. */
#ifndef KL_CA_INTERNAL_H
#define KL_CA_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "kl_error.h"
#include "profile.h"
#include "store.h"

#define CA_MAX_PROFILES 16

struct kl_ca {
	kl_store *store;
	int64_t issuer_id;
	X509 *cert;
	EVP_PKEY *key;
	char issuer_name[64];
	char profiles_dir[1024];
	char crl_url[512];
	char cps_url[512];
	char ca_issuers_url[512];
	char ocsp_url[512];
	char actor[128];
	kl_profile profiles[CA_MAX_PROFILES];
	int n_profiles;
	int reconciled;
};

/* The loaded profile of that name (loaded on first use). NULL with the
 * error recorded when it does not exist or does not parse. */
const kl_profile *kl_ca_profile(kl_ca *ca, const char *name);

/* The URIs the CA writes into certificates ("" or NULL: not configured). */
typedef struct kl_ca_urls {
	const char *crl, *cps, *ca_issuers, *ocsp;
} kl_ca_urls;

/* Builds the unsigned certificate for req under issuer, with a fresh random
 * serial, following profile p. */
int kl_cert_build(X509 *issuer, const kl_ca_urls *urls, const kl_profile *p,
                  const kl_cert_request *req, X509 **ret) KL_MUST_CHECK;
const EVP_MD *kl_profile_md(const kl_profile *p);
/* Sets the TBSCertificate's signature AlgorithmIdentifier for key and md, so
 * that the TBS bytes are final before signing. */
int kl_cert_set_sigalg(X509 *x, EVP_PKEY *key, const EVP_MD *md) KL_MUST_CHECK;
/* The TBSCertificate's DER (OPENSSL_free it). */
int kl_cert_tbs_der(X509 *x, unsigned char **der, size_t *len) KL_MUST_CHECK;
void kl_cert_subject_line(const X509 *x, char *buf, size_t size);

/* Builds, signs and self-verifies a full CRL of issuer_id's revoked,
 * unexpired certificates. *ret is malloc'd DER. */
int kl_crl_build(kl_store *store, int64_t issuer_id, const X509 *issuer, EVP_PKEY *key,
                 const EVP_MD *md, int64_t crl_number, time_t now, int64_t next_update_s,
                 unsigned char **ret, size_t *ret_len, int64_t *ret_count) KL_MUST_CHECK;

#endif
