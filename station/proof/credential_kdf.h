/* The two key derivation functions of TPM 2.0 Part 1 §11.4.10 (credential_kdf.c), as
 * credential.c uses them for MakeCredential and ActivateCredential, on
 * OpenSSL's EVP_KDF (KBKDF and SSKDF). Declared here so that the unit test
 * can hold them against a plain implementation of the spec's loops.
 *
 * md is an OpenSSL digest name ("SHA256", "SHA384"); label is a C string
 * whose terminating NUL is part of the derivation, as the TPM has it. Both
 * write exactly out_len bytes (whole bytes: the TPM's bit lengths here are
 * multiples of 8) and return 0 or -KL_E_CRYPTO / -KL_E_INVALID. */
#ifndef KL_PROOF_CREDENTIAL_KDF_H
#define KL_PROOF_CREDENTIAL_KDF_H

#include <stddef.h>

#include "kl_error.h"

/* KDFa(hashAlg, key, label, contextU || contextV, bits) (§11.4.10.2); the
 * callers have one context, given as context. */
int kl_kdfa(const char *md, const unsigned char *key, size_t key_len, const char *label,
            const unsigned char *context, size_t context_len, unsigned char *out,
            size_t out_len) KL_MUST_CHECK;

/* KDFe(hashAlg, Z, label, partyUInfo, partyVInfo, bits) (§11.4.10.3). */
int kl_kdfe(const char *md, const unsigned char *z, size_t z_len, const char *label,
            const unsigned char *u, size_t u_len, const unsigned char *v, size_t v_len,
            unsigned char *out, size_t out_len) KL_MUST_CHECK;

#endif
