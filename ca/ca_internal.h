/* Shared between the CA's own files; not part of its interface. */
#ifndef KL_CA_INTERNAL_H
#define KL_CA_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "store.h"

/* Builds, signs and self-verifies a full CRL of issuer_id's revoked,
 * unexpired certificates. *ret is malloc'd DER. */
int kl_crl_build(kl_store *store, int64_t issuer_id, const X509 *issuer, EVP_PKEY *key,
                 const EVP_MD *md, int64_t crl_number, time_t now, int64_t next_update_s,
                 unsigned char **ret, size_t *ret_len, int64_t *ret_count);

#endif
