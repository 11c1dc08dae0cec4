/* Residency checks of provisioning step 9, in software: the station
 * verifies what the DUT's TPM said, with no TPM of its own.
 *
 *   kl_attest_report rep;
 *   if (kl_attest_verify_certify(att, att_len, sig, sig_len, iak_pub, &iak_name,
 *                                &idevid_name, nonce, nonce_len, &rep) < 0)
 *           ... rep.verdict says which check failed, kl_attest_verdict_str why ...
 *   kl_attest_check_public(area, area_len, KL_ATTEST_KEY_IDEVID, &verdict);
 *
 * Inputs are the bytes the TPM produced (kl_tpm_certify,
 * kl_tpm_object_public_area): a marshalled TPMS_ATTEST, a DER
 * ECDSA-Sig-Value, a marshalled TPMT_PUBLIC. No tpm2-tss type shows here. */
#ifndef KL_STATION_ATTEST_H
#define KL_STATION_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "tpm.h"

/* Why a check failed; each has a stable name and a sentence for the
 * operator (kl_attest_verdict_name / _str). */
typedef enum kl_attest_verdict {
	KL_ATTEST_OK = 0,
	/* kl_attest_verify_certify */
	KL_ATTEST_MALFORMED,     /* not a TPMS_ATTEST (or trailing bytes) */
	KL_ATTEST_BAD_SIGNATURE, /* not signed by the IAK over these bytes */
	KL_ATTEST_BAD_MAGIC,     /* magic != TPM_GENERATED_VALUE */
	KL_ATTEST_BAD_TYPE,      /* not TPM_ST_ATTEST_CERTIFY */
	KL_ATTEST_BAD_SIGNER,    /* qualifiedSigner is not the IAK's */
	KL_ATTEST_BAD_NAME,      /* the certified object is not the IDevID */
	KL_ATTEST_BAD_NONCE,     /* extraData is not the station's nonce */
	/* kl_attest_check_public */
	KL_ATTEST_PUB_MALFORMED,  /* not a TPMT_PUBLIC (or trailing bytes) */
	KL_ATTEST_PUB_TYPE,       /* not an ECC key */
	KL_ATTEST_PUB_NAME_ALG,   /* nameAlg is not SHA-256 */
	KL_ATTEST_PUB_ATTRIBUTES, /* an attribute bit missing or forbidden */
	KL_ATTEST_PUB_POLICY,     /* an authPolicy the profile does not have */
	KL_ATTEST_PUB_SYMMETRIC,  /* a symmetric algorithm on a signing key */
	KL_ATTEST_PUB_SCHEME,     /* not ECDSA with SHA-256 */
	KL_ATTEST_PUB_CURVE,      /* not NIST P-256 */
	KL_ATTEST_PUB_KDF,        /* a KDF on a signing key */
	KL_ATTEST_PUB_POINT,      /* unique is not a point on the curve */
	KL_ATTEST__MAX
} kl_attest_verdict;

/* "ok", "bad-nonce", ...; "?" for an unknown verdict. */
const char *kl_attest_verdict_name(kl_attest_verdict v);

/* A sentence for the line operator. */
const char *kl_attest_verdict_str(kl_attest_verdict v);

/* What a verified TPMS_ATTEST says (TPM 2.0 Part 2 §10.12.12), for the
 * evidence record of step 13. */
typedef struct kl_attest_report {
	kl_attest_verdict verdict;
	uint64_t clock;         /* clockInfo.clock, ms */
	uint32_t reset_count;   /* clockInfo.resetCount */
	uint32_t restart_count; /* clockInfo.restartCount */
	bool safe;              /* clockInfo.safe */
	uint64_t firmware_version;
	kl_tpm_name certified_name;           /* attested.certify.name */
	kl_tpm_name certified_qualified_name; /* attested.certify.qualifiedName */
} kl_attest_report;

/* Verifies a TPM2_Certify of the IDevID by the IAK (step 9), in this order:
 * the bytes unmarshal as exactly one TPMS_ATTEST; the ECDSA signature
 * (DER) verifies with iak_pub over SHA-256 of those bytes; magic ==
 * TPM_GENERATED_VALUE; type == TPM_ST_ATTEST_CERTIFY; qualifiedSigner is
 * the IAK's qualified name; attested.certify.name == idevid_name and its
 * qualifiedName that of the IDevID; extraData == nonce (constant time).
 * The signature comes first: contents that are not signed say nothing.
 * Qualified names (Part 1 §16.6) are those of primaries of the endorsement
 * hierarchy, where tpm_object.h puts both keys: nameAlg || H(TPM_RH_ENDORSEMENT
 * || name).
 * *report is written on every path (so that a failure can be recorded);
 * its contents other than verdict are valid only when this returns 0.
 * Returns 0, -KL_E_CRYPTO when a check fails (verdict and
 * kl_error_detail() say which), -KL_E_INVALID for bad arguments. */
int kl_attest_verify_certify(const unsigned char *attest, size_t attest_len,
                             const unsigned char *sig_der, size_t sig_len, EVP_PKEY *iak_pub,
                             const kl_tpm_name *iak_name, const kl_tpm_name *idevid_name,
                             const unsigned char *nonce, size_t nonce_len,
                             kl_attest_report *report) KL_MUST_CHECK;

typedef enum kl_attest_key_kind { KL_ATTEST_KEY_IAK, KL_ATTEST_KEY_IDEVID } kl_attest_key_kind;

/* Checks a key's public area (a marshalled TPMT_PUBLIC) against the
 * station's profile of the DevID spec's templates (tpm_object.h): ECC,
 * nameAlg SHA-256, exactly the attributes fixedTPM | fixedParent |
 * sensitiveDataOrigin | userWithAuth | sign (+ restricted for the IAK) and
 * no other bit (stClear, adminWithPolicy, noDA, encryptedDuplication,
 * decrypt, restricted for the IDevID, reserved bits), empty authPolicy,
 * no symmetric algorithm, ECDSA-SHA256, NIST P-256, no KDF, and a unique
 * that is a point on the curve.
 * verdict (may be NULL) is written on every path.
 * Returns 0, -KL_E_CRYPTO when the key does not match (the detail names
 * the first failing field or bit), -KL_E_INVALID for bad arguments. */
int kl_attest_check_public(const unsigned char *area, size_t len, kl_attest_key_kind kind,
                           kl_attest_verdict *verdict) KL_MUST_CHECK;

#endif
