/* Persistent objects (provisioning step 12, and a resumed flow): the
 * station's identity keys kept in the TPM at documented handles, and loaded
 * back from there.
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_PERSIST_H
#define KL_STATION_TPM_PERSIST_H

#include <stdbool.h>
#include <stdint.h>

#include "kl_error.h"
#include "tpm.h"
#include "tpm_object.h"

/* Where the station persists the identity keys (step 12). TCG "Registry
 * of Reserved TPM 2.0 Handles and Localities" gives 0x81000000-0x8100FFFF
 * to storage primaries (SRK 0x81000001) and 0x81010000-0x8101FFFF to
 * endorsement primaries (the EK at 0x81010001, and by common use 0x81010002
 * for an ECC EK), so 0x81010002 is NOT free for the IAK. We take the next
 * range, 0x8102xxxx, with the IDevID at 0x81020000, where IDevID
 * provisioning tools put it, and the IAK next to it at 0x81020001.
 *
 * The exact slots inside the range could not be confirmed against the
 * registry's text from here: a deployment that follows an OEM convention
 * passes its own handles to the functions below, which take any handle in
 * the owner's persistent range. */
#define KL_TPM_HANDLE_IDEVID 0x81020000u
#define KL_TPM_HANDLE_IAK    0x81020001u

/* TPM2_EvictControl (Part 3 §28.5) with the owner hierarchy's empty
 * password: a persistent copy of the transient object obj at handle
 * (0x81000000..0x817FFFFF, the owner's range). obj stays loaded and owned
 * by the caller. Returns 0, -KL_E_EXISTS when handle is taken, -KL_E_INVALID,
 * -KL_E_TPM. */
int kl_tpm_object_persist(kl_tpm *t, const kl_tpm_object *obj, uint32_t handle) KL_MUST_CHECK;

/* Evicts the persistent object at handle (EvictControl, owner auth).
 * Returns 0, -KL_E_NOTFOUND when there is none, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_persistent_evict(kl_tpm *t, uint32_t handle) KL_MUST_CHECK;

/* *ret = whether a persistent object exists at handle (GetCapability
 * TPM_CAP_HANDLES). Returns 0, -KL_E_INVALID, -KL_E_TPM. */
int kl_tpm_persistent_exists(kl_tpm *t, uint32_t handle, bool *ret) KL_MUST_CHECK;

/* The persistent object at handle as a kl_tpm_object of type, for a flow
 * that resumes: its public area (TPM2_ReadPublic) is checked against the
 * template of type like a fresh key's, and its name recomputed and compared
 * with the TPM's. kl_tpm_object_free releases the object without evicting
 * it; it takes no transient slot. Returns 0, -KL_E_NOTFOUND, -KL_E_INVALID,
 * -KL_E_TPM (also when the object there is not a key of that type). */
int kl_tpm_persistent_load(kl_tpm *t, uint32_t handle, kl_tpm_key_type type,
                           kl_tpm_object **ret) KL_MUST_CHECK;

#endif
