/* The DUT's side of credential activation (provisioning step 8), and the TPM
 * objects it is about.
 *
 *   kl_tpm_object *iak;
 *   kl_tpm_name name;
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_ATTEST_P256, &iak);
 *   kl_tpm_object_name(iak, &name);
 *   kl_make_credential(ek_pub, KL_EK_P256, nonce, nonce_len, &name, &c);  // credential.h
 *   kl_tpm_activate_credential(t, KL_EK_P256, iak, c, &got);
 *   kl_tpm_object_free(iak);                                          // flushes it
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_OBJECT_H
#define KL_STATION_TPM_OBJECT_H

#include <openssl/evp.h>

#include "kl_secret.h"
#include "tpm.h"

/* What TPM2_MakeCredential returns (credential.h makes one in software), marshalled, ready for
 * TPM2_ActivateCredential: credentialBlob (a TPM2B_ID_OBJECT, its 2-byte size
 * first) and secret (a TPM2B_ENCRYPTED_SECRET, its 2-byte size first). Neither
 * is secret: both go to the DUT over an untrusted link. */
typedef struct kl_credential {
	unsigned char *blob;
	size_t blob_len;
	unsigned char *secret;
	size_t secret_len;
} kl_credential;

/* A transient object that the station created and holds loaded in the TPM
 * (one of swtpm's three object slots). It belongs to the kl_tpm it was
 * created through: free it before that kl_tpm. */
typedef struct kl_tpm_object kl_tpm_object;

/* What kind of key kl_tpm_object_create makes. All have fixedTPM |
 * fixedParent | sensitiveDataOrigin | userWithAuth, nameAlg SHA-256, an empty
 * authValue and no authPolicy. */
typedef enum kl_tpm_key_type {
	/* restricted | sign, ECC NIST P-256, ECDSA-SHA256: an attestation key
	 * (the shape of the IAK, TCG "TPM 2.0 Keys for Device Identity and
	 * Attestation" §7.3.4). */
	KL_TPM_KEY_ATTEST_P256,
	/* restricted | decrypt, ECC NIST P-256, AES-128-CFB: a storage parent
	 * for child keys (the SRK shape, TCG TPM v2.0 Provisioning Guidance). */
	KL_TPM_KEY_STORAGE_P256,
	/* The device identity keys of tpm_keys.h: primaries of the
	 * endorsement hierarchy with the TCG templates' unique strings.
	 * IAK: restricted | sign, ECDSA-SHA256; IDevID: sign (unrestricted),
	 * ECDSA-SHA256; both ECC NIST P-256. */
	KL_TPM_KEY_IAK_P256,
	KL_TPM_KEY_IDEVID_P256,
	KL_TPM_KEY__MAX
} kl_tpm_key_type;

/* Creates a key in the TPM and keeps it loaded. With parent NULL it is a
 * primary key of the endorsement hierarchy (TPM2_CreatePrimary, empty
 * endorsement authorization): the same template gives the same key again on
 * the same TPM. With a parent (a KL_TPM_KEY_STORAGE_P256 object of the same
 * kl_tpm) it is a fresh child key (TPM2_Create + TPM2_Load).
 * The public area the TPM returns is checked against the template and its
 * name recomputed. Returns 0, -KL_E_INVALID, -KL_E_TPM (also when no
 * object slot is free). */
int kl_tpm_object_create(kl_tpm *t, const kl_tpm_object *parent, kl_tpm_key_type type,
                         kl_tpm_object **ret);

/* The object's TPM name (what a credential is bound to). */
void kl_tpm_object_name(const kl_tpm_object *o, kl_tpm_name *ret);

/* The object's public key; *ret is a new reference (EVP_PKEY_free it). */
int kl_tpm_object_public(const kl_tpm_object *o, EVP_PKEY **ret);

/* The object's public area as a marshalled TPMT_PUBLIC, e.g. for the
 * residency checks of step 9. *ret (free() it) holds *len bytes. */
int kl_tpm_object_public_area(const kl_tpm_object *o, unsigned char **ret, size_t *len);

/* Flushes the object from the TPM and frees it. Accepts NULL. If the flush
 * fails the handle stays with the kl_tpm, whose kl_tpm_free tries again. */
void kl_tpm_object_free(kl_tpm_object *o);

/* TPM2_ActivateCredential (TPM 2.0 Part 3 §12.5) with the EK of type ek
 * (recreated from its TCG template, provisioning step 4) and obj, the
 * credentialed object, which must belong to t. The EK is authorized by a
 * policy session of the EK's nameAlg that satisfies its authPolicy through
 * PolicySecret(TPM_RH_ENDORSEMENT) with the (empty) endorsement password:
 * PolicyA for L-1 and L-2; for H-3, whose PolicyB is PolicyOR(PolicyA,
 * PolicyC), followed by that PolicyOR. obj is authorized by its (empty)
 * password.
 * On success *ret (kl_secret_free) holds the credential the TPM recovered:
 * compare it with what was sent, in constant time (kl_secret_equal).
 * The EK and the session are flushed before this returns, on every path.
 * A credential made for another EK or another object is refused by the TPM
 * (TPM_RC_INTEGRITY, or TPM_RC_VALUE for an RSA secret that does not
 * decrypt): -KL_E_TPM with the TPM's code in the detail. */
int kl_tpm_activate_credential(kl_tpm *t, kl_ek_type ek, const kl_tpm_object *obj,
                               const kl_credential *c, kl_secret **ret);

#endif
