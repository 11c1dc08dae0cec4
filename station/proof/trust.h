/* The station's trust bundle of TPM vendors, and the EK certificate checks
 * of the provisioning flow (architecture brief, steps 3 and 4) in software:
 * what the DUT said is read by station/flow/ek_check.h.
 *
 * A bundle is a directory of PEM or DER certificate files. Self-signed CA
 * certificates in it are trust anchors (vendor EK roots); the other CA
 * certificates are intermediates that may help build a chain but are trusted
 * only through a root. */
#ifndef KL_STATION_TRUST_H
#define KL_STATION_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "tpm.h"

typedef struct kl_trust kl_trust;

/* Loads every *.pem, *.crt, *.cer and *.der file of dir. A directory with no
 * root is an error: the station would trust nothing. */
int kl_trust_load(const char *dir, kl_trust **ret) KL_MUST_CHECK;
void kl_trust_free(kl_trust *t);
size_t kl_trust_roots(const kl_trust *t);
/* A short identifier of the bundle's content (SHA-256 over the sorted
 * certificate fingerprints, first 16 hex digits), recorded as evidence. */
const char *kl_trust_version(const kl_trust *t);

/* Why an EK check failed: stable names for machines, and a sentence for the
 * operator. */
typedef enum kl_ek_verdict {
	/* 0, what a zeroed report says: nothing has passed. Only an explicit
	 * KL_EK_OK, written by a check that ran to its end, passes. */
	KL_EK_UNCHECKED = 0,
	KL_EK_OK,
	KL_EK_NO_CERT,      /* no EK certificate in NV for this key type */
	KL_EK_BAD_CERT,     /* the NV bytes are not a certificate */
	KL_EK_UNTRUSTED,    /* does not chain to a trusted TPM vendor */
	KL_EK_NOT_EK_CERT,  /* lacks EKU tcg-kp-EKCertificate (2.23.133.8.1) */
	KL_EK_WRONG_VENDOR, /* SAN TPM manufacturer differs from the TPM's own */
	KL_EK_MISMATCH,     /* certificate key differs from the TPM's EK */
	KL_EK_TPM_ERROR,    /* the TPM failed to answer */
} kl_ek_verdict;

const char *kl_ek_verdict_name(kl_ek_verdict v);

typedef struct kl_ek_report {
	kl_ek_type type;
	kl_ek_verdict verdict;
	char reason[512];            /* for the operator, when verdict != KL_EK_OK */
	char issuer[256];            /* the EK certificate's issuer, one line */
	char manufacturer[16];       /* from the certificate SAN, "id:49424D00" */
	unsigned char ek_sha256[32]; /* SHA-256 of the EK public key (SubjectPublicKeyInfo DER) */
	unsigned char *cert_der;     /* the EK certificate as read (free with kl_ek_report_clear) */
	size_t cert_len;
} kl_ek_report;

void kl_ek_report_clear(kl_ek_report *r);

/* Records a verdict and the operator's sentence in rep. Returns 0. */
int kl_ek_report_verdict(kl_ek_report *rep, kl_ek_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Step 3 in software, on the EK certificate the TPM held (rep->cert_der,
 * rep->cert_len as read from NV): it parses, its chain verifies to the
 * bundle (the signature over the signed bytes, whatever quirks the encoding
 * has), it has the EK EKU, and the TPM manufacturer in its SAN is
 * manufacturer (the TPM's TPM_PT_MANUFACTURER; manufacturer_str its text,
 * for the reason). Fills rep->verdict, reason, issuer and manufacturer.
 * Returns 0 when the check ran (the verdict says how it came out), or a
 * negative kl_err when it could not run. */
int kl_ek_cert_verify(const kl_trust *trust, uint32_t manufacturer, const char *manufacturer_str,
                      kl_ek_report *rep) KL_MUST_CHECK;

/* The certificate of rep parsed again (X509_free it). Returns 0 or
 * -KL_E_INVALID. */
int kl_ek_report_cert(const kl_ek_report *rep, X509 **ret) KL_MUST_CHECK;

/* Step 4 in software: ek, the EK the TPM recreated, must be the key of
 * cert (rep's certificate). On a match rep->ek_sha256 is the SHA-256 of its
 * SubjectPublicKeyInfo and the verdict KL_EK_OK, otherwise KL_EK_MISMATCH.
 * Returns 0, or -KL_E_CRYPTO when the hash cannot be made. */
int kl_ek_key_verify(kl_ek_report *rep, X509 *cert, EVP_PKEY *ek) KL_MUST_CHECK;

#endif
