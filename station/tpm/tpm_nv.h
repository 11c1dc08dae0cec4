/* NV indices of the DUT's TPM: any index read whole (the EK certificates of
 * step 3), and the station's certificates engraved in write-locked indices
 * (step 12).
 *
 * Like the rest of the TPM link, nothing of tpm2-tss shows here. */
#ifndef KL_STATION_TPM_NV_H
#define KL_STATION_TPM_NV_H

#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"
#include "tpm.h"

/* Where the station engraves the identity certificates (step 12): the
 * DevID/IAK certificate range 0x01C90000 (IDevID certificate at 0x01C90000,
 * as used by IDevID provisioning tools); the IAK
 * certificate at 0x01C90010, 16 handles further, leaving room for other
 * algorithms' IDevID certificates in between.
 *
 * The exact slots could not be confirmed against the TCG handle registry's
 * text from here: a deployment that follows an OEM convention passes its own
 * indices to the functions below, which take any NV index. */
#define KL_TPM_NV_IDEVID_CERT 0x01c90000u
#define KL_TPM_NV_IAK_CERT    0x01c90010u

/* Reads a whole NV index. The size comes from TPM2_NV_ReadPublic; the data
 * is read in chunks of at most TPM_PT_NV_BUFFER_MAX bytes (or the cap set with
 * kl_tpm_set_nv_chunk_max). Authorization: the owner hierarchy with an empty
 * password when the index has TPMA_NV_OWNERREAD, falling back to the index's
 * own (empty) authValue when it has TPMA_NV_AUTHREAD.
 * On success *data (free() it) holds *len bytes.
 * Returns -KL_E_NOTFOUND when the index is not defined, -KL_E_STATE when it
 * is defined but never written or read-locked, -KL_E_UNSUPPORTED when it can
 * be read only with platform or policy authorization. */
int kl_tpm_nv_read(kl_tpm *t, uint32_t index, unsigned char **data, size_t *len) KL_MUST_CHECK;

/* kl_tpm_nv_read for an index the DUT may have made as large as it likes:
 * when TPM2_NV_ReadPublic says it holds more than max bytes nothing is
 * read and 1 is returned with its size in *len. 0 when read as above. */
int kl_tpm_nv_read_max(kl_tpm *t, uint32_t index, size_t max, unsigned char **data,
                       size_t *len) KL_MUST_CHECK;

/* The NV indices from first to last (inclusive) that the TPM has defined,
 * in ascending order (TPM2_GetCapability TPM_CAP_HANDLES): at most max of
 * them in out[], and in *found how many there are, stopping the count at
 * max + 1 (more than max is all a caller needs to know). */
int kl_tpm_nv_list(kl_tpm *t, uint32_t first, uint32_t last, uint32_t *out, size_t max,
                   size_t *found) KL_MUST_CHECK;

/* Caps the chunk size of kl_tpm_nv_read below TPM_PT_NV_BUFFER_MAX, for links
 * with small transfer buffers (and for tests of the chunking). 0 restores the
 * TPM's own limit. */
void kl_tpm_set_nv_chunk_max(kl_tpm *t, size_t max);

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
int kl_tpm_nv_write_cert(kl_tpm *t, uint32_t index, const unsigned char *der,
                         size_t len) KL_MUST_CHECK;

/* TPM2_NV_UndefineSpace (Part 3 §31.4) with the owner's empty password.
 * Returns 0, -KL_E_NOTFOUND, -KL_E_INVALID, -KL_E_TPM (e.g. a platform
 * index such as the EK certificate's). */
int kl_tpm_nv_undefine(kl_tpm *t, uint32_t index) KL_MUST_CHECK;

#endif
