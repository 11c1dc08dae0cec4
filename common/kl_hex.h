/* Hex text for bytes: the one encoder and decoder the station, the CA and
 * the HSM layer share (serials, key ids, EK digests, fingerprints,
 * evidence). Always lowercase on output; either case on input. */
#ifndef KL_HEX_H
#define KL_HEX_H

#include <stddef.h>

#include <openssl/x509.h>

#include "kl_error.h"

/* Writes 2*n lowercase hex digits and a NUL into out (2*n + 1 bytes). */
void kl_hex_encode(const void *p, size_t n, char *out);

/* The value of one hex digit (0-15), or -1 when c is not one. */
int kl_hex_digit(int c) KL_MUST_CHECK;

/* Decodes exactly 2*n hex digits of hex into n bytes of out. Returns 0, or
 * -1 (out untouched) when a character is not a hex digit or hex is shorter. */
int kl_hex_decode(const char *hex, size_t n, unsigned char *out) KL_MUST_CHECK;

/* SHA-256 of n bytes of p as 64 lowercase hex digits. */
int kl_sha256_hex(const void *p, size_t n, char out[65]) KL_MUST_CHECK;

/* SHA-256 fingerprint of a certificate's DER as 64 lowercase hex digits;
 * an empty string when it cannot be computed. */
int kl_x509_fingerprint(const X509 *x, char out[65]) KL_MUST_CHECK;

#endif
