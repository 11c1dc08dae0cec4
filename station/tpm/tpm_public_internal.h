/* Private to station/tpm/: what the station does with a TPMT_PUBLIC, none of
 * which talks to a TPM (tpm_public.c): marshal it, compute its name, turn
 * its key into an OpenSSL key. */
#ifndef KL_STATION_TPM_PUBLIC_INTERNAL_H
#define KL_STATION_TPM_PUBLIC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "kl_error.h"
#include "tpm.h"

/* Marshals p into buf (size bytes); *len is the length written. */
int tpm_public_marshal(const TPMT_PUBLIC *p, uint8_t *buf, size_t size, size_t *len);

/* The TPM name of a public area (TPM 2.0 Part 1 §16). */
int kl_tpm_public_name(const TPMT_PUBLIC *p, kl_tpm_name *ret) KL_MUST_CHECK;

/* The public key of an RSA or ECC public area as an OpenSSL key. */
int kl_tpm_public_to_pkey(const TPMT_PUBLIC *p, EVP_PKEY **ret) KL_MUST_CHECK;

#endif
