/* The DUT's identity keys (provisioning steps 7, 9, 10 and 12): the IAK and
 * the IDevID of TCG "TPM 2.0 Keys for Device Identity and Attestation"
 * (v1.00 r12, hereafter "DevID spec"), TPM2_Certify of one by the other, a
 * signature for proof of possession, persistence at documented handles and
 * certificates in write-locked NV indices.
 *
 *   kl_tpm_object *iak, *idevid;
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_IAK_P256, &iak);        // tpm_cred.h
 *   kl_tpm_object_create(t, NULL, KL_TPM_KEY_IDEVID_P256, &idevid);
 *   kl_tpm_certify(t, idevid, iak, nonce, 32, &att, &att_len, &sig, &sig_len);
 *   kl_attest_verify_certify(att, att_len, sig, sig_len, ...);       // attest.h
 *   kl_tpm_object_persist(t, iak, KL_TPM_HANDLE_IAK);
 *   kl_tpm_nv_write_cert(t, KL_TPM_NV_IAK_CERT, der, der_len);
 *
 * Key layout. DevID spec §7.3.1 derives the IAK and IDevID as *primary keys
 * of the endorsement hierarchy* from its templates (§7.3.4), told apart by
 * the ASCII strings "IAK" and "IDevID" in `unique`, so that the same TPM
 * regenerates the same keys from the same templates, and persists them for
 * use. We do the same (no storage parent): the keys are tied to the
 * endorsement primary seed, like the EK they are activated against, and a
 * resumed flow can either load the persisted copies or recreate them.
 * The one deviation from its Table 3 templates: no adminWithPolicy and no
 * authPolicy (see kl_tpm_identity_template in tpm_keys.c).
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_PERSIST_H
#define KL_STATION_TPM_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tpm.h"
#include "tpm_object.h"

/* Where the station engraves the identity (step 12).
 *
 * Persistent handles: TCG "Registry of Reserved TPM 2.0 Handles and
 * Localities" gives 0x81000000-0x8100FFFF to storage primaries (SRK
 * 0x81000001) and 0x81010000-0x8101FFFF to endorsement primaries (the EK at
 * 0x81010001, and by common use 0x81010002 for an ECC EK), so 0x81010002 is
 * NOT free for the IAK. We take the next range, 0x8102xxxx, with the IDevID
 * at 0x81020000, where IDevID provisioning tools put it, and the IAK next to
 * it at 0x81020001.
 *
 * NV indices: the DevID/IAK certificate range 0x01C90000 (IDevID
 * certificate at 0x01C90000, as used by IDevID provisioning tools); the IAK
 * certificate at 0x01C90010, 16 handles further, leaving room for other
 * algorithms' IDevID certificates in between.
 *
 * The exact slots inside the ranges could not be confirmed against the
 * registry's text from here: a deployment that follows an OEM convention
 * passes its own handles to the functions below, which take any handle in
 * the owner's persistent / NV range. */
#define KL_TPM_HANDLE_IDEVID  0x81020000u
#define KL_TPM_HANDLE_IAK     0x81020001u
#define KL_TPM_NV_IDEVID_CERT 0x01c90000u
#define KL_TPM_NV_IAK_CERT    0x01c90010u

/* TPM2_Certify (TPM 2.0 Part 3 §18.2): signer (a restricted signing key,
 * the IAK) attests that certified (the IDevID) is loaded in the same TPM,
 * with qualifying_data (the station's fresh nonce, 1..64 bytes) as
 * extraData. Both keys are authorized by their (empty) passwords; both must
 * belong to t.
 * On success *attest (free() it) holds the *attest_len bytes of the
 * marshalled TPMS_ATTEST as the TPM signed them, and *sig (free() it) the
 * ECDSA signature as a DER ECDSA-Sig-Value (X9.62) of *sig_len bytes.
 * Returns 0, -KL_E_INVALID, -KL_E_TPM, -KL_E_UNSUPPORTED (a signer that is
 * not ECDSA). */
int kl_tpm_certify(kl_tpm *t, const kl_tpm_object *certified, const kl_tpm_object *signer,
                   const unsigned char *qualifying_data, size_t qualifying_len,
                   unsigned char **attest, size_t *attest_len, unsigned char **sig,
                   size_t *sig_len);

/* TPM2_Sign (Part 3 §20.2) of a digest with the object's own scheme
 * (ECDSA-SHA256 for the IDevID: digest_len must be 32), e.g. the IDevID's
 * proof of possession (step 10). Only unrestricted signing keys: a
 * restricted key (the IAK) signs only digests the TPM computed itself (a
 * TPM2_Hash ticket over the message, which this digest interface does not
 * have) and is refused with -KL_E_UNSUPPORTED before anything reaches the
 * TPM. On success *sig (free() it) is a DER ECDSA-Sig-Value.
 * Returns 0, -KL_E_INVALID, -KL_E_UNSUPPORTED, -KL_E_TPM. */
int kl_tpm_sign(kl_tpm *t, const kl_tpm_object *obj, const unsigned char *digest, size_t digest_len,
                unsigned char **sig, size_t *sig_len);

/* TPM2_EvictControl (Part 3 §28.5) with the owner hierarchy's empty
 * password: a persistent copy of the transient object obj at handle
 * (0x81000000..0x817FFFFF, the owner's range). obj stays loaded and owned
 * by the caller. Returns 0, -KL_E_EXISTS when handle is taken, -KL_E_INVALID,
 * -KL_E_TPM. */
int kl_tpm_object_persist(kl_tpm *t, const kl_tpm_object *obj, uint32_t handle);

/* Evicts the persistent object at handle (EvictControl, owner auth).
 * Returns 0, -KL_E_NOTFOUND when there is none, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_persistent_evict(kl_tpm *t, uint32_t handle);

/* *ret = whether a persistent object exists at handle (GetCapability
 * TPM_CAP_HANDLES). Returns 0, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_persistent_exists(kl_tpm *t, uint32_t handle, bool *ret);

/* The persistent object at handle as a kl_tpm_object of type, for a flow
 * that resumes: its public area (TPM2_ReadPublic) is checked against the
 * template of type like a fresh key's, and its name recomputed and compared
 * with the TPM's. kl_tpm_object_free releases the object without evicting
 * it; it takes no transient slot. Returns 0, -KL_E_NOTFOUND, -KL_E_INVALID,
 * -KL_E_TPM (also when the object there is not a key of that type). */
int kl_tpm_persistent_load(kl_tpm *t, uint32_t handle, kl_tpm_key_type type, kl_tpm_object **ret);

/* Engraves a certificate (step 12): TPM2_NV_DefineSpace in the owner
 * hierarchy (empty owner password) of an ordinary index of exactly len
 * bytes with OWNERWRITE | OWNERREAD | AUTHREAD | PPREAD | NO_DA |
 * WRITEDEFINE and an empty authValue (the EK certificates' read access, TCG
 * EK Credential Profile §2.2.1.4), TPM2_NV_Write in chunks of
 * TPM_PT_NV_BUFFER_MAX (or the kl_tpm_set_nv_chunk_max cap),
 * TPM2_NV_WriteLock (permanent, as WRITEDEFINE), then reads it all back
 * with kl_tpm_nv_read and compares. On any failure after the index was
 * defined it is undefined again, so that a retry starts clean.
 * Returns 0, -KL_E_EXISTS when the index is defined already, -KL_E_INVALID
 * (not an NV index, empty or larger than the TPM takes), -KL_E_TPM. */
int kl_tpm_nv_write_cert(kl_tpm *t, uint32_t index, const unsigned char *der, size_t len);

/* TPM2_NV_UndefineSpace (Part 3 §31.4) with the owner's empty password.
 * Returns 0, -KL_E_NOTFOUND, -KL_E_INVALID, -KL_E_TPM (e.g. a platform
 * index such as the EK certificate's). */
int kl_tpm_nv_undefine(kl_tpm *t, uint32_t index);

/* The lifecycle's additions (lifecycle.h). */

/* Creates an identity key like kl_tpm_object_create(t, NULL, type, ...)
 * (an endorsement primary from the DevID template of type), but with
 * `unique` (1..32 bytes) in place of the template's ASCII "IAK" /
 * "IDevID". A primary is a function of the endorsement seed and the whole
 * template, so another unique gives another key: a rekey (renewal) uses a
 * fresh random unique, and the same unique gives the same key again, like
 * any primary. The key stays loaded (one transient slot) until
 * kl_tpm_object_free. Returns 0, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_identity_create(kl_tpm *t, kl_tpm_key_type type, const unsigned char *unique,
                           size_t unique_len, kl_tpm_object **ret);

/* TPM2_Clear (TPM 2.0 Part 3 §24.6) with the lockout hierarchy's empty
 * password: the owner hierarchy's persistent objects and NV indices go, the
 * storage primary seed is replaced, and the owner, endorsement and lockout
 * authorisations become empty. The endorsement primary seed is NOT changed
 * (Part 1 §14.4.2): endorsement primaries (the EK, and the identity keys of
 * this header) can be derived again. Platform-created NV indices (the EK
 * certificates) stay.
 * Returns 0; -KL_E_PERM when the TPM refuses the authorisation or has
 * TPM2_Clear disabled (TPM_RC_DISABLED, TPM_RC_AUTH_FAIL, TPM_RC_BAD_AUTH,
 * TPM_RC_LOCKOUT, TPM_RC_HIERARCHY), the TPM's code in the detail;
 * -KL_E_INVALID; -KL_E_TPM otherwise. */
int kl_tpm_clear(kl_tpm *t);

#endif
