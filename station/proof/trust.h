/* The station's trust bundle of TPM vendors, and the EK certificate checks
 * of the provisioning flow (architecture brief, steps 3 and 4) in software:
 * what the DUT said is read by station/flow/ek_check.h.
 *
 * A bundle is a directory of PEM or DER certificate files. Self-signed CA
 * certificates in it are trust anchors (vendor EK roots); the other CA
 * certificates are intermediates that may help build a chain but are trusted
 * only through a root. A quirks.json beside them is the bundle's table of
 * known vendor deviations (quirks.h).
 *
 * The EK chain may also come from the TPM: intermediates a vendor stored in
 * the TPM's NV (the EK certificate chain indices from 0x01C00100, TCG EK
 * Credential Profile 2.x, "EK Certificate Chain"; one DER
 * certificate, or several concatenated, per index). They are added as
 * untrusted certificates only: the chain must still end at a root of the
 * bundle. */
#ifndef KL_STATION_TRUST_H
#define KL_STATION_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "quirks.h"
#include "tpm.h"

typedef struct kl_trust kl_trust;

/* The EK chain indices and the bounds on what the station reads from them
 * (docs/provisioning.md): the DUT says how many and how large they are,
 * and the DUT may lie. */
#define KL_EK_CHAIN_NV_FIRST       0x01c00100u
#define KL_EK_CHAIN_NV_LAST        0x01c001ffu
#define KL_EK_CHAIN_NV_MAX_INDICES 8
#define KL_EK_CHAIN_NV_MAX_BYTES   4096 /* one index */
#define KL_EK_CHAIN_NV_MAX_TOTAL   8192 /* all of them */
#define KL_EK_CHAIN_MAX_CERTS      8    /* certificates in all of them */
/* The longest chain verified: EK, at most this many intermediates, root. */
#define KL_EK_CHAIN_MAX_DEPTH 8

/* Loads every *.pem, *.crt, *.cer and *.der file of dir. A directory with no
 * root is an error: the station would trust nothing. */
int kl_trust_load(const char *dir, kl_trust **ret) KL_MUST_CHECK;
void kl_trust_free(kl_trust *t);
size_t kl_trust_roots(const kl_trust *t);
/* A short identifier of the bundle's content (SHA-256 over the sorted
 * certificate fingerprints and the quirk table's bytes, first 16 hex
 * digits), recorded as evidence. */
const char *kl_trust_version(const kl_trust *t);
/* The bundle's quirk table; NULL when the bundle has none. */
const kl_quirks *kl_trust_quirks(const kl_trust *t);

/* Why an EK check failed: stable names for machines, and a sentence for the
 * operator. */
typedef enum kl_ek_verdict {
	/* 0, what a zeroed report says: nothing has passed. Only an explicit
	 * KL_EK_OK, written by a check that ran to its end, passes. */
	KL_EK_UNCHECKED = 0,
	KL_EK_OK,
	KL_EK_NO_CERT,         /* no EK certificate in NV for this key type */
	KL_EK_BAD_CERT,        /* the NV bytes are not a certificate */
	KL_EK_UNTRUSTED,       /* does not chain to a trusted TPM vendor */
	KL_EK_NOT_EK_CERT,     /* lacks EKU tcg-kp-EKCertificate (2.23.133.8.1) */
	KL_EK_WRONG_VENDOR,    /* SAN TPM manufacturer differs from the TPM's own */
	KL_EK_MISMATCH,        /* certificate key differs from the TPM's EK */
	KL_EK_TPM_ERROR,       /* the TPM failed to answer */
	KL_EK_CHAIN_TOO_MANY,  /* more EK chain indices or certificates than the limits */
	KL_EK_CHAIN_OVERSIZED, /* an EK chain index larger than the limits */
	KL_EK_CHAIN_MALFORMED, /* an EK chain index that is not DER certificates */
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
	/* The EK chain indices read from NV (kl_ek_report_add_nv), in order. */
	size_t n_nv;
	struct kl_ek_nv {
		uint32_t index;
		unsigned char *der; /* as read, owned by the report */
		size_t len;
	} nv[KL_EK_CHAIN_NV_MAX_INDICES];
	/* The chain that verified, EK certificate first and root last. */
	size_t chain_len;
	struct kl_ek_link {
		char subject[256];
		unsigned char sha256[32]; /* of the certificate's DER */
		uint32_t nv_index;        /* an EK chain index that holds it, or 0 */
		bool from_bundle;         /* the bundle holds it (always the last, the root) */
	} chain[KL_EK_CHAIN_MAX_DEPTH + 2];
	/* The quirk (quirks.h) that explained a deviation, "" when none did. */
	char quirk[KL_QUIRK_ID_MAX + 1];
} kl_ek_report;

void kl_ek_report_clear(kl_ek_report *r);

/* Adds an EK chain index as read from NV to rep, which takes der (free()
 * memory) whatever the result. -KL_E_INVALID when rep holds
 * KL_EK_CHAIN_NV_MAX_INDICES already. */
int kl_ek_report_add_nv(kl_ek_report *rep, uint32_t index, unsigned char *der,
                        size_t len) KL_MUST_CHECK;

/* Records a verdict and the operator's sentence in rep. Returns 0. */
int kl_ek_report_verdict(kl_ek_report *rep, kl_ek_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Step 3 in software, on the EK certificate the TPM held (rep->cert_der,
 * rep->cert_len as read from NV) and the EK chain indices read with it
 * (rep->nv): it parses, each chain index is DER certificates (trailing
 * 0x00 or 0xff padding allowed; KL_EK_CHAIN_MALFORMED otherwise, and
 * KL_EK_CHAIN_TOO_MANY beyond KL_EK_CHAIN_MAX_CERTS), its chain verifies to
 * a root of the bundle with the bundle's intermediates and the NV
 * certificates as untrusted helpers (the signature over the signed bytes,
 * whatever quirks the encoding has; at most KL_EK_CHAIN_MAX_DEPTH
 * intermediates), it has the EK EKU, and the TPM manufacturer in its SAN
 * is manufacturer (the TPM's TPM_PT_MANUFACTURER; manufacturer_str its
 * text, for the reason) or a quirk of the bundle for that root explains
 * the difference (rep->quirk). Fills rep->verdict, reason, issuer,
 * manufacturer and, when it verified, chain.
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
