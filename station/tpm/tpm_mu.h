/* What a TPM answers, unmarshalled into plain C structures, for the checks
 * that station/proof/ makes in software (provisioning step 9). The bytes
 * come from the DUT (kl_tpm_certify_creation, kl_tpm_object_creation_data,
 * kl_tpm_object_public_area) and are
 * untrusted: the parser is tpm2-tss's (tss2-mu), kept inside station/tpm/.
 *
 *   kl_tpm_attest a;
 *   size_t used;
 *   uint32_t mu_rc;
 *   if (kl_tpm_attest_unmarshal(bytes, len, &a, &used, &mu_rc) < 0)
 *           ... not a TPMS_ATTEST (mu_rc says why) ...
 *   if (used != len) ... trailing bytes ...
 *
 * The constants are the TPM 2.0 Part 2 values (checked against tpm2-tss's
 * at compile time in tpm_mu.c). */
#ifndef KL_STATION_TPM_MU_H
#define KL_STATION_TPM_MU_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kl_error.h"

/* Part 2 §6.2 TPM_GENERATED, §6.9 TPM_ST, §6.3 TPM_ALG_ID, §6.4 TPM_ECC_CURVE */
#define KL_TPM_GENERATED_VALUE    0xff544347u
#define KL_TPM_ST_ATTEST_CERTIFY  0x8017u
#define KL_TPM_ST_ATTEST_CREATION 0x801au
#define KL_TPM_ALG_SHA256         0x000bu
#define KL_TPM_ALG_NULL           0x0010u
#define KL_TPM_ALG_ECDSA          0x0018u
#define KL_TPM_ALG_ECC            0x0023u
#define KL_TPM_ECC_NIST_P256      0x0003u
#define KL_TPM_YES                1u

/* Part 2 §8.3 TPMA_OBJECT */
#define KL_TPMA_OBJECT_FIXEDTPM             0x00000002u
#define KL_TPMA_OBJECT_STCLEAR              0x00000004u
#define KL_TPMA_OBJECT_FIXEDPARENT          0x00000010u
#define KL_TPMA_OBJECT_SENSITIVEDATAORIGIN  0x00000020u
#define KL_TPMA_OBJECT_USERWITHAUTH         0x00000040u
#define KL_TPMA_OBJECT_ADMINWITHPOLICY      0x00000080u
#define KL_TPMA_OBJECT_NODA                 0x00000400u
#define KL_TPMA_OBJECT_ENCRYPTEDDUPLICATION 0x00000800u
#define KL_TPMA_OBJECT_RESTRICTED           0x00010000u
#define KL_TPMA_OBJECT_DECRYPT              0x00020000u
#define KL_TPMA_OBJECT_SIGN_ENCRYPT         0x00040000u

/* The authPolicy of the IAK and IDevID templates of TCG "TPM 2.0 Keys for
 * Device Identity and Attestation", Table 19 (§7.3.6.6), for SHA-256: what
 * tpm_object.c creates the keys with and station/proof/attest.c holds
 * them to. */
#define KL_TPM_DEVID_POLICY_LEN 32
extern const unsigned char kl_tpm_devid_iak_policy[KL_TPM_DEVID_POLICY_LEN];
extern const unsigned char kl_tpm_devid_idevid_policy[KL_TPM_DEVID_POLICY_LEN];

/* The largest buffers of the TPM2Bs below, as the TPM may send them:
 * TPM2B_NAME (a TPMU_NAME), TPM2B_DATA and TPM2B_DIGEST (a TPMU_HA),
 * TPM2B_ECC_PARAMETER (MAX_ECC_KEY_BYTES). */
#define KL_TPM2B_NAME_MAX   68
#define KL_TPM2B_DATA_MAX   64
#define KL_TPM2B_DIGEST_MAX 64
#define KL_TPM2B_ECC_MAX    128

/* A TPM2B_NAME as the TPM sent it: up to KL_TPM2B_NAME_MAX bytes, which is
 * more than a name the station makes (kl_tpm_name). */
typedef struct kl_tpm2b_name {
	size_t len;
	unsigned char buf[KL_TPM2B_NAME_MAX];
} kl_tpm2b_name;

/* A TPMS_ATTEST (Part 2 §10.12.12). */
typedef struct kl_tpm_attest {
	uint32_t magic;
	uint16_t type; /* TPM_ST_ATTEST_* */
	kl_tpm2b_name qualified_signer;
	size_t extra_len; /* extraData */
	unsigned char extra[KL_TPM2B_DATA_MAX];
	uint64_t clock;         /* clockInfo.clock */
	uint32_t reset_count;   /* clockInfo.resetCount */
	uint32_t restart_count; /* clockInfo.restartCount */
	uint8_t safe;           /* clockInfo.safe, KL_TPM_YES or 0 */
	uint64_t firmware_version;
	/* attested.certify, when type is KL_TPM_ST_ATTEST_CERTIFY; empty
	 * otherwise */
	kl_tpm2b_name certified_name;
	kl_tpm2b_name certified_qualified_name;
	/* attested.creation, when type is KL_TPM_ST_ATTEST_CREATION; empty
	 * otherwise */
	kl_tpm2b_name creation_name; /* objectName */
	size_t creation_hash_len;    /* creationHash */
	unsigned char creation_hash[KL_TPM2B_DIGEST_MAX];
} kl_tpm_attest;

/* A TPMS_CREATION_DATA (Part 2 §15.1): what the TPM recorded when it
 * created an object, and what the creationHash of a TPM2_CertifyCreation
 * is the digest of. */
typedef struct kl_tpm_creation_data {
	uint32_t pcr_banks;       /* pcrSelect.count */
	uint8_t locality;         /* TPMA_LOCALITY */
	uint16_t parent_name_alg; /* TPM_ALG_NULL for a primary */
	kl_tpm2b_name parent_name;
	kl_tpm2b_name parent_qualified_name;
	size_t outside_info_len;
} kl_tpm_creation_data;

/* A TPMT_PUBLIC (Part 2 §12.2.4). The parameters and unique of an ECC key
 * are in ecc; for any other type only the first fields are filled and ecc
 * is all zero. */
typedef struct kl_tpm_public {
	uint16_t type;       /* TPM_ALG_ECC, TPM_ALG_RSA, ... */
	uint16_t name_alg;   /* nameAlg */
	uint32_t attributes; /* objectAttributes, KL_TPMA_OBJECT_* */
	size_t auth_policy_len;
	unsigned char auth_policy[KL_TPM2B_DIGEST_MAX];
	struct {
		uint16_t symmetric;   /* symmetric.algorithm */
		uint16_t scheme;      /* scheme.scheme */
		uint16_t scheme_hash; /* scheme.details.<scheme>.hashAlg */
		uint16_t curve;       /* curveID */
		uint16_t kdf;         /* kdf.scheme */
		size_t x_len, y_len;  /* unique.ecc */
		unsigned char x[KL_TPM2B_ECC_MAX], y[KL_TPM2B_ECC_MAX];
	} ecc;
} kl_tpm_public;

/* Unmarshals one TPMS_ATTEST from the start of the len bytes at buf.
 * On success *used is how many bytes it took (the caller decides about
 * trailing bytes). Returns 0, or -KL_E_INVALID when the bytes are not a
 * TPMS_ATTEST, with tss2-mu's code in *mu_rc (mu_rc may be NULL). */
int kl_tpm_attest_unmarshal(const unsigned char *buf, size_t len, kl_tpm_attest *ret, size_t *used,
                            uint32_t *mu_rc) KL_MUST_CHECK;

/* The same for a TPMS_CREATION_DATA (the structure, not its TPM2B). */
int kl_tpm_creation_data_unmarshal(const unsigned char *buf, size_t len, kl_tpm_creation_data *ret,
                                   size_t *used, uint32_t *mu_rc) KL_MUST_CHECK;

/* The same for a TPMT_PUBLIC. */
int kl_tpm_public_unmarshal(const unsigned char *buf, size_t len, kl_tpm_public *ret, size_t *used,
                            uint32_t *mu_rc) KL_MUST_CHECK;

/* The key of an ECC public area as an OpenSSL key; OpenSSL refuses a point
 * that is not on the curve. Returns 0, -KL_E_UNSUPPORTED (not ECC, or a
 * curve other than NIST P-256, P-384, P-521), -KL_E_TPM (coordinates longer
 * than the field) or -KL_E_CRYPTO. */
int kl_tpm_public_key(const kl_tpm_public *p, EVP_PKEY **ret) KL_MUST_CHECK;

#endif
