/* Residency checks of provisioning steps 8 and 9, in software: the station
 * verifies what the DUT's TPM said, with no TPM of its own.
 *
 *   kl_attest_report rep;
 *   if (kl_attest_verify_creation(att, att_len, sig, sig_len, iak_pub, &iak_name,
 *                                 &idevid_name, cd, cd_len, nonce, nonce_len, &rep) < 0)
 *           ... rep.verdict says which check failed, kl_attest_verdict_str why ...
 *   kl_attest_check_public(area, area_len, KL_ATTEST_KEY_IDEVID, &verdict);
 *
 * Inputs are the bytes the TPM produced (kl_tpm_certify_creation,
 * kl_tpm_object_creation_data, kl_tpm_object_public_area): a marshalled
 * TPMS_ATTEST, a DER ECDSA-Sig-Value, a marshalled TPMS_CREATION_DATA, a
 * marshalled TPMT_PUBLIC. No tpm2-tss type shows here. */
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
	/* kl_attest_verify_creation */
	KL_ATTEST_MALFORMED,     /* not a TPMS_ATTEST (or trailing bytes) */
	KL_ATTEST_BAD_SIGNATURE, /* not signed by the IAK over these bytes */
	KL_ATTEST_BAD_MAGIC,     /* magic != TPM_GENERATED_VALUE */
	KL_ATTEST_BAD_TYPE,      /* not TPM_ST_ATTEST_CREATION */
	KL_ATTEST_BAD_SIGNER,    /* qualifiedSigner is not the signing key's */
	KL_ATTEST_BAD_NAME,      /* the certified object is not the expected key */
	KL_ATTEST_BAD_NONCE,     /* extraData is not the station's nonce */
	KL_ATTEST_BAD_CREATION,  /* creation data altered, or not an endorsement primary */
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

/* Verifies a TPM2_CertifyCreation (steps 8 and 9: the IAK's creation by
 * the station's attestation key, the IDevID's by the IAK), in this order:
 * the bytes unmarshal as exactly one TPMS_ATTEST; the ECDSA signature (DER)
 * verifies with signer_pub over SHA-256 of those bytes; magic ==
 * TPM_GENERATED_VALUE; type == TPM_ST_ATTEST_CREATION; qualifiedSigner is
 * the signer's qualified name; attested.creation.objectName == object_name;
 * extraData == nonce (constant time); creationHash == SHA-256 of
 * creation_data (a marshalled TPMS_CREATION_DATA, as the TPM returned it
 * when it created the key), and that creation data names the endorsement
 * hierarchy as the parent (a primary key: parentNameAlg TPM_ALG_NULL,
 * parentName and parentQualifiedName TPM_RH_ENDORSEMENT).
 * The signature comes first: contents that are not signed say nothing.
 * Qualified names (Part 1 §16.6) are those of primaries of the endorsement
 * hierarchy, where tpm_object.h puts the keys: nameAlg || H(TPM_RH_ENDORSEMENT
 * || name).
 * *report is written on every path (so that a failure can be recorded);
 * its contents other than verdict are valid only when this returns 0.
 * Returns 0, -KL_E_CRYPTO when a check fails (verdict and
 * kl_error_detail() say which), -KL_E_INVALID for bad arguments. */
int kl_attest_verify_creation(const unsigned char *attest, size_t attest_len,
                              const unsigned char *sig_der, size_t sig_len, EVP_PKEY *signer_pub,
                              const kl_tpm_name *signer_name, const kl_tpm_name *object_name,
                              const unsigned char *creation_data, size_t creation_len,
                              const unsigned char *nonce, size_t nonce_len,
                              kl_attest_report *report) KL_MUST_CHECK;

/* Which profile kl_attest_check_public holds a key to: the DevID spec's
 * templates, or (_LEGACY) the ones the station used before, without
 * adminWithPolicy and authPolicy, accepted only for keys already engraved
 * (docs/provisioning.md, "Key templates"). */
typedef enum kl_attest_key_kind {
	KL_ATTEST_KEY_IAK,
	KL_ATTEST_KEY_IDEVID,
	KL_ATTEST_KEY_IAK_LEGACY,
	KL_ATTEST_KEY_IDEVID_LEGACY,
} kl_attest_key_kind;

/* Checks a key's public area (a marshalled TPMT_PUBLIC) against the
 * station's profile of the DevID spec's templates (tpm_object.h): ECC,
 * nameAlg SHA-256, exactly the attributes fixedTPM | fixedParent |
 * sensitiveDataOrigin | userWithAuth | adminWithPolicy | sign (+ restricted
 * for the IAK; no adminWithPolicy for the _LEGACY kinds) and no other bit
 * (stClear, noDA, encryptedDuplication, decrypt, restricted for the
 * IDevID, reserved bits), the Table 19 authPolicy (empty for _LEGACY),
 * no symmetric algorithm, ECDSA-SHA256, NIST P-256, no KDF, and a unique
 * that is a point on the curve.
 * verdict (may be NULL) is written on every path.
 * Returns 0, -KL_E_CRYPTO when the key does not match (the detail names
 * the first failing field or bit), -KL_E_INVALID for bad arguments. */
int kl_attest_check_public(const unsigned char *area, size_t len, kl_attest_key_kind kind,
                           kl_attest_verdict *verdict) KL_MUST_CHECK;

#endif
