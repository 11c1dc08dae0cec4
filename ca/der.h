/* A small DER writer for the structures the CA streams (CRLs with a million
 * entries) or that OpenSSL has no builder for (HardwareModuleName). Only
 * definite lengths, only what X.690 DER needs for these. */
#ifndef KL_CA_DER_H
#define KL_CA_DER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kl_error.h"

typedef struct kl_der {
	unsigned char *p;
	size_t len;
	size_t cap;
	int failed; /* an allocation failed: the buffer is unusable */
} kl_der;

#define KL_DER_SEQUENCE     0x30
#define KL_DER_INTEGER      0x02
#define KL_DER_OCTET_STRING 0x04
#define KL_DER_BIT_STRING   0x03
#define KL_DER_OID          0x06
#define KL_DER_ENUMERATED   0x0a
#define KL_DER_UTCTIME      0x17
#define KL_DER_GENTIME      0x18
#define KL_DER_CTX0         0xa0

/* Bytes a tag-and-length header takes for content of len bytes. */
size_t kl_der_hdr_size(size_t len);
/* Writes a header at out (which has kl_der_hdr_size(len) bytes). */
void kl_der_hdr_write(unsigned char *out, unsigned char tag, size_t len);

int kl_der_reserve(kl_der *d, size_t more) KL_MUST_CHECK;
void kl_der_put(kl_der *d, const void *p, size_t n);
void kl_der_put_hdr(kl_der *d, unsigned char tag, size_t len);
void kl_der_put_tlv(kl_der *d, unsigned char tag, const void *p, size_t n);
/* A positive INTEGER from big-endian magnitude bytes. */
void kl_der_put_uint(kl_der *d, const unsigned char *mag, size_t n);
/* UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). */
void kl_der_put_time(kl_der *d, time_t t);
void kl_der_free(kl_der *d);

#endif
