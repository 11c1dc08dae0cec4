/* Credential protection (TPM 2.0 Part 1 §24, Part 3 §12.6 TPM2_MakeCredential)
 * computed in software: provisioning step 8.
 *
 * The station binds a fresh secret to two things at once: the DUT's EK (only
 * the TPM that holds the EK private key can recover the seed) and the TPM
 * name of another object (the TPM releases the secret only when that object
 * is loaded next to the EK). When the DUT hands back the same secret, the
 * object — the IAK — lives in the TPM that owns the EK.
 *
 *   kl_credential *c;
 *   kl_make_credential(ek_pub, KL_EK_P256, secret->data, secret->len, &iak_name, &c);
 *   kl_tpm_activate_credential(t, KL_EK_P256, iak, c, &got);   // tpm_activate.h
 *   ok = kl_secret_equal(secret, got);                        // constant time
 *
 * No TPM is involved here and nothing of tpm2-tss is used: the structures are
 * marshalled by hand (big-endian, Part 2 §5). Seeds and keys live in buffers
 * that are wiped with OPENSSL_cleanse before they are released. */
#ifndef KL_STATION_CREDENTIAL_H
#define KL_STATION_CREDENTIAL_H

#include <stddef.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "kl_secret.h"
#include "tpm.h"
#include "tpm_activate.h"

/* The largest credential for an EK type: the digest size of the EK's nameAlg
 * (32 for L-1 and L-2, 48 for H-3); 0 for an unknown type. */
size_t kl_credential_max_len(kl_ek_type type);

/* MakeCredential in software. ek is the EK public key of that type (RSA 2048,
 * P-256 or P-384: anything else is -KL_E_INVALID), cred the 1..
 * kl_credential_max_len(type) bytes to protect, name the TPM name of the
 * object the credential is for (nameAlg + its digest).
 *   RSA EK: seed = random, RSA-OAEP(nameAlg, label "IDENTITY\0") to the EK.
 *   ECC EK: seed = KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, ek.x), the
 *           secret is the ephemeral public point (Part 1 §C.6.4).
 * On success *ret (kl_credential_free) holds both blobs. Returns 0,
 * -KL_E_INVALID or -KL_E_CRYPTO. */
int kl_make_credential(EVP_PKEY *ek, kl_ek_type type, const unsigned char *cred, size_t cred_len,
                       const kl_tpm_name *name, kl_credential **ret) KL_MUST_CHECK;

/* A kl_credential from marshalled bytes made elsewhere (tpm2_makecredential,
 * a TPM's MakeCredential). Each must be one whole TPM2B: its size field
 * equal to the bytes that follow. Copies; returns 0, -KL_E_INVALID or
 * -KL_E_NOMEM. */
int kl_credential_new(const unsigned char *blob, size_t blob_len, const unsigned char *secret,
                      size_t secret_len, kl_credential **ret) KL_MUST_CHECK;

/* Accepts NULL. */
void kl_credential_free(kl_credential *c);

/* FOR TESTS AND TOOLS ONLY: ActivateCredential in software, with the EK
 * private key. The station never holds an EK private key (it lives in the
 * DUT's TPM and nowhere else); this exists so that tests can check blobs made
 * by us and by tpm2-tools the same way the TPM does, without a TPM.
 *
 * Recovers the seed with ek_priv (which must be of the given type), checks
 * the outer HMAC over encIdentity || name in constant time, decrypts, and
 * returns the credential in *ret (kl_secret_free). A credential made for
 * another EK, another name or altered in transit fails the HMAC check:
 * -KL_E_CRYPTO; malformed input is -KL_E_INVALID. */
int kl_activate_credential_soft(EVP_PKEY *ek_priv, kl_ek_type type, const kl_tpm_name *name,
                                const kl_credential *c, kl_secret **ret) KL_MUST_CHECK;

#endif
