/* The TPM objects the station creates on a DUT, and the templates of all its
 * keys: an attestation key and a storage parent, and the device identity keys
 * (provisioning step 7) of TCG "TPM 2.0 Keys for Device Identity and
 * Attestation" (v1.00 r12, hereafter "DevID spec"), the IAK and the IDevID.
 *
 *   kl_tpm_object *iak, *idevid;
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_IAK_P256, &iak);
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_IDEVID_P256, &idevid);
 *   kl_tpm_certify_creation(t, idevid, iak, nonce, 32, &att, &att_len, &sig, &sig_len);
 *   kl_attest_verify_creation(att, att_len, sig, sig_len, ...);      // attest.h
 *   kl_tpm_object_persist(t, iak, KL_TPM_HANDLE_IAK);                // tpm_persist.h
 *   kl_tpm_nv_write_cert(t, KL_TPM_NV_IAK_CERT, der, der_len);       // tpm_nv.h
 *   kl_tpm_object_free(iak);                                         // flushes it
 *
 * Key layout. DevID spec §7.3.1 derives the IAK and IDevID as *primary keys
 * of the endorsement hierarchy* from its templates (§7.3.4), told apart by
 * the ASCII strings "IAK" and "IDEVID" in `unique`, so that the same TPM
 * regenerates the same keys from the same templates, and persists them for
 * use. We do the same (no storage parent): the keys are tied to the
 * endorsement primary seed, like the EK they are proven against, survive
 * TPM2_Clear (which changes the storage seed, not the endorsement one), and
 * a resumed flow can either load the persisted copies or recreate them.
 * The templates are the spec's to the bit, adminWithPolicy and the Table 19
 * authPolicy included (identity_template in tpm_object.c).
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_OBJECT_H
#define KL_STATION_TPM_OBJECT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "tpm.h"

/* A transient object that the station created and holds loaded in the TPM
 * (one of swtpm's three object slots). It belongs to the kl_tpm it was
 * created through: free it before that kl_tpm. */
typedef struct kl_tpm_object kl_tpm_object;

/* What kind of key kl_tpm_object_create makes. All have fixedTPM |
 * fixedParent | sensitiveDataOrigin | userWithAuth, nameAlg SHA-256 and an
 * empty authValue; the identity keys also adminWithPolicy and the DevID
 * spec's authPolicy, the others no authPolicy. */
typedef enum kl_tpm_key_type {
	/* restricted | sign, ECC NIST P-256, ECDSA-SHA256: an attestation key
	 * (the shape of the IAK, TCG "TPM 2.0 Keys for Device Identity and
	 * Attestation" §7.3.4). */
	KL_TPM_KEY_ATTEST_P256,
	/* restricted | decrypt, ECC NIST P-256, AES-128-CFB: a storage parent
	 * for child keys (the SRK shape, TCG TPM v2.0 Provisioning Guidance). */
	KL_TPM_KEY_STORAGE_P256,
	/* The device identity keys: primaries of the
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
                         kl_tpm_object **ret) KL_MUST_CHECK;

/* The object's TPM name (what a credential is bound to). */
void kl_tpm_object_name(const kl_tpm_object *o, kl_tpm_name *ret);

/* The object's public key; *ret is a new reference (EVP_PKEY_free it). */
int kl_tpm_object_public(const kl_tpm_object *o, EVP_PKEY **ret) KL_MUST_CHECK;

/* The object's public area as a marshalled TPMT_PUBLIC, e.g. for the
 * residency checks of step 9. *ret (free() it) holds *len bytes. */
int kl_tpm_object_public_area(const kl_tpm_object *o, unsigned char **ret,
                              size_t *len) KL_MUST_CHECK;

/* Flushes the object from the TPM and frees it. Accepts NULL. If the flush
 * fails the handle stays with the kl_tpm, whose kl_tpm_free tries again. */
void kl_tpm_object_free(kl_tpm_object *o);

/* Creates an identity key like kl_tpm_object_create(t, NULL, type, ...)
 * (an endorsement primary from the DevID template of type), but with
 * `unique` (1..32 bytes) in place of the template's ASCII "IAK" /
 * "IDEVID" (in both coordinates). A primary is a function of the endorsement seed and the whole
 * template, so another unique gives another key: a rekey (renewal) uses a
 * fresh random unique, and the same unique gives the same key again, like
 * any primary. The key stays loaded (one transient slot) until
 * kl_tpm_object_free. Returns 0, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_identity_create(kl_tpm *t, kl_tpm_key_type type, const unsigned char *unique,
                           size_t unique_len, kl_tpm_object **ret) KL_MUST_CHECK;

/* The TPMS_CREATION_DATA (marshalled, *ret free() it) that the TPM
 * returned when it created o, whose SHA-256 is the creationHash that
 * kl_tpm_certify_creation attests. Returns 0, -KL_E_STATE for an object
 * that was loaded back rather than created, -KL_E_NOMEM. */
int kl_tpm_object_creation_data(const kl_tpm_object *o, unsigned char **ret,
                                size_t *len) KL_MUST_CHECK;

/* Whether o was loaded back with the identity templates the station used
 * before the DevID spec's (docs/provisioning.md, "Key templates"). */
bool kl_tpm_object_is_legacy(const kl_tpm_object *o);

#endif
