/* NV indices over ESAPI: read whole in chunks (the EK certificates of
 * provisioning step 3, and any other index), and the station's
 * certificates written to fresh, write-locked indices (step 12).
 *
 * An ESYS_TR for an index is closed before each call returns. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_nv.h"

/* Chunk size when a TPM does not report TPM_PT_NV_BUFFER_MAX: the smallest
 * that the PC Client platform TPM profile allows. */
#define TPM_NV_CHUNK_DEFAULT 512

void kl_tpm_set_nv_chunk_max(kl_tpm *t, size_t max)
{
	t->nv_chunk_cap = max;
}

static size_t tpm_nv_chunk(const kl_tpm *t)
{
	size_t chunk = t->nv_buffer_max ? t->nv_buffer_max : TPM_NV_CHUNK_DEFAULT;

	if (chunk > TPM2_MAX_NV_BUFFER_SIZE)
		chunk = TPM2_MAX_NV_BUFFER_SIZE;
	if (t->nv_chunk_cap && chunk > t->nv_chunk_cap)
		chunk = t->nv_chunk_cap;
	return chunk;
}

/* Reads size bytes of an NV index in chunks with one authorization (TPM 2.0
 * Part 3 §31.13). When the TPM refuses, *tpm_rc is its response code, so
 * that the caller can try another authorization. */
static int tpm_nv_read_as(kl_tpm *t, uint32_t index, ESYS_TR nv, ESYS_TR auth, unsigned char *buf,
                          size_t size, TSS2_RC *tpm_rc)
{
	const size_t chunk = tpm_nv_chunk(t);

	for (size_t off = 0; off < size;) {
		_cleanup_(esys_freep) TPM2B_MAX_NV_BUFFER *d = NULL;
		UINT16 n = (UINT16)(size - off < chunk ? size - off : chunk);
		TSS2_RC rc;

		TPM_CALL(t, rc,
		         Esys_NV_Read(t->esys, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
		                      ESYS_TR_NONE, n, (UINT16)off, &d));
		if (rc != TSS2_RC_SUCCESS) {
			*tpm_rc = tpm_rc_code(rc);
			return kl_tpm_rc_error(
			    rc, "Esys_NV_Read 0x%08" PRIx32 " (%s auth, %u bytes at %zu)", index,
			    auth == ESYS_TR_RH_OWNER ? "owner" : "index", (unsigned)n, off);
		}
		if (d->size != n)
			return kl_error_set(
			    KL_E_TPM, "NV_Read 0x%08" PRIx32 ": asked %u bytes at %zu, got %u",
			    index, (unsigned)n, off, (unsigned)d->size);
		memcpy(buf + off, d->buffer, n);
		off += n;
	}
	return 0;
}

static int check_nv_index(uint32_t index)
{
	if ((index >> TPM2_HR_SHIFT) != TPM2_HT_NV_INDEX)
		return kl_error_set(KL_E_INVALID, "0x%08" PRIx32 " is not an NV index handle",
		                    index);
	return 0;
}

/* EK certificate read (provisioning step 3), and any other NV index. TCG EK
 * Credential Profile §2.2.1.4: EK certificate indices have
 * TPMA_NV_PPREAD | OWNERREAD | AUTHREAD and an empty authValue. */
int kl_tpm_nv_read(kl_tpm *t, uint32_t index, unsigned char **data, size_t *len)
{
	int r = kl_tpm_nv_read_max(t, index, SIZE_MAX, data, len);

	return r > 0 ? kl_error_set(KL_E_INVALID, "NV index 0x%08" PRIx32 " is too large", index)
	             : r;
}

int kl_tpm_nv_read_max(kl_tpm *t, uint32_t index, size_t max, unsigned char **data, size_t *len)
{
	_cleanup_(esys_freep) TPM2B_NV_PUBLIC *pub = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *name = NULL;
	_cleanup_(freep) unsigned char *buf = NULL;
	ESYS_TR nv = ESYS_TR_NONE;
	ESYS_TR auths[2];
	size_t n_auths = 0;
	TPMA_NV attrs;
	size_t size;
	TSS2_RC rc;
	int r = 0;

	r = check_nv_index(index);
	if (r < 0)
		return r;

	TPM_CALL(
	    t, rc,
	    Esys_TR_FromTPMPublic(t->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv));
	if (tpm_rc_code(rc) == TPM2_RC_HANDLE)
		return kl_error_set(KL_E_NOTFOUND, "NV index 0x%08" PRIx32 " is not defined",
		                    index);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "NV_ReadPublic 0x%08" PRIx32, index);

	TPM_CALL(
	    t, rc,
	    Esys_NV_ReadPublic(t->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name));
	if (rc != TSS2_RC_SUCCESS) {
		r = kl_tpm_rc_error(rc, "Esys_NV_ReadPublic 0x%08" PRIx32, index);
		goto out;
	}
	attrs = pub->nvPublic.attributes;
	size = pub->nvPublic.dataSize;

	if (!(attrs & TPMA_NV_WRITTEN)) {
		r = kl_error_set(
		    KL_E_STATE, "NV index 0x%08" PRIx32 " is defined but was never written", index);
		goto out;
	}
	if (attrs & TPMA_NV_READLOCKED) {
		r = kl_error_set(KL_E_STATE, "NV index 0x%08" PRIx32 " is read-locked", index);
		goto out;
	}
	if (attrs & TPMA_NV_OWNERREAD)
		auths[n_auths++] = ESYS_TR_RH_OWNER;
	if (attrs & TPMA_NV_AUTHREAD)
		auths[n_auths++] = nv;
	/* A bound the caller sets before anything is allocated or read: the
	 * size is the DUT's word, and the DUT may lie. */
	if (size > max) {
		*len = size;
		r = 1;
		goto out;
	}
	if (n_auths == 0) {
		r = kl_error_set(KL_E_UNSUPPORTED,
		                 "NV index 0x%08" PRIx32 " (attributes 0x%08" PRIx32
		                 ") can be read only with platform or policy authorization",
		                 index, (uint32_t)attrs);
		goto out;
	}

	buf = malloc(size ? size : 1);
	if (!buf) {
		r = kl_error_set(KL_E_NOMEM, "NV index 0x%08" PRIx32 ": out of memory", index);
		goto out;
	}
	/* Owner first, as tpm2-tools does; when the owner hierarchy has a
	 * password or is disabled, the index's own empty authValue still reads
	 * an AUTHREAD index. Hierarchy and no_da index authorizations do not
	 * count towards dictionary-attack lockout. */
	for (size_t i = 0; i < n_auths; i++) {
		TSS2_RC tpm_rc = 0;

		r = tpm_nv_read_as(t, index, nv, auths[i], buf, size, &tpm_rc);
		if (r == 0 || tpm_rc == 0)
			break;
	}
	if (r < 0)
		goto out;

	*data = TAKE_PTR(buf);
	*len = size;
	r = 0;
out:
	if (nv != ESYS_TR_NONE)
		(void)Esys_TR_Close(t->esys, &nv);
	return r;
}

/* TPM 2.0 Part 3 §30.2: TPM_CAP_HANDLES from first, as many calls as the
 * TPM needs, stopping once more than max were seen (the caller refuses
 * that many anyway) or past last. */
int kl_tpm_nv_list(kl_tpm *t, uint32_t first, uint32_t last, uint32_t *out, size_t max,
                   size_t *found)
{
	TPM2_HANDLE h = first;
	size_t n = 0;
	int r;

	if ((r = check_nv_index(first)) < 0 || (r = check_nv_index(last)) < 0)
		return r;
	for (;;) {
		_cleanup_(esys_freep) TPMS_CAPABILITY_DATA *cap = NULL;
		TPMI_YES_NO more = TPM2_NO;
		const TPML_HANDLE *l;
		TPM2_HANDLE seen = 0;
		TSS2_RC rc;

		TPM_CALL(t, rc,
		         Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
		                            TPM2_CAP_HANDLES, h, (UINT32)(max + 1), &more, &cap));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(
			    rc, "Esys_GetCapability(NV indices from 0x%08" PRIx32 ")", h);
		if (cap->capability != TPM2_CAP_HANDLES)
			return kl_error_set(KL_E_TPM,
			                    "GetCapability: TPM answered capability %" PRIu32
			                    " for TPM_CAP_HANDLES",
			                    cap->capability);
		l = &cap->data.handles;
		for (uint32_t i = 0; i < l->count && i < TPM2_MAX_CAP_HANDLES; i++) {
			/* A TPM that answers out of order or out of range is not
			 * believed for those entries. */
			if (l->handle[i] < h || l->handle[i] > last || l->handle[i] <= seen)
				continue;
			if (n < max)
				out[n] = l->handle[i];
			n++;
			seen = l->handle[i];
		}
		/* A TPM that says "more" without moving forward would loop us. */
		if (more != TPM2_YES || seen == 0 || seen >= last || n > max)
			break;
		h = seen + 1;
	}
	*found = n;
	return 0;
}

/* Writes and locks a freshly defined index (Part 3 §31.7, §31.9) with the
 * owner's authorization (OWNERWRITE). */
static int nv_fill(kl_tpm *t, uint32_t index, ESYS_TR nv, const unsigned char *der, size_t len)
{
	const size_t chunk = tpm_nv_chunk(t);
	TSS2_RC rc;

	for (size_t off = 0; off < len;) {
		TPM2B_MAX_NV_BUFFER d = { 0 };
		size_t n = len - off < chunk ? len - off : chunk;

		d.size = (UINT16)n;
		memcpy(d.buffer, der + off, n);
		TPM_CALL(t, rc,
		         Esys_NV_Write(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
		                       ESYS_TR_NONE, ESYS_TR_NONE, &d, (UINT16)off));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(
			    rc, "Esys_NV_Write 0x%08" PRIx32 " (%zu bytes at %zu)", index, n, off);
		off += n;
	}
	TPM_CALL(t, rc,
	         Esys_NV_WriteLock(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                           ESYS_TR_NONE));
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_NV_WriteLock 0x%08" PRIx32, index);
	return 0;
}

static int nv_read_back(kl_tpm *t, uint32_t index, const unsigned char *der, size_t len)
{
	_cleanup_(freep) unsigned char *got = NULL;
	size_t got_len = 0;
	int r;

	r = kl_tpm_nv_read(t, index, &got, &got_len);
	if (r < 0)
		return kl_error_wrap("read back");
	if (got_len != len || memcmp(got, der, len) != 0)
		return kl_error_set(KL_E_TPM,
		                    "NV index 0x%08" PRIx32 ": read back %zu bytes that differ "
		                    "from the %zu written",
		                    index, got_len, len);
	return 0;
}

int kl_tpm_nv_write_cert(kl_tpm *t, uint32_t index, const unsigned char *der, size_t len)
{
	const TPM2B_AUTH auth = { 0 };
	TPM2B_NV_PUBLIC pub = { 0 };
	ESYS_TR nv = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "NV certificate: no TPM");
	r = check_nv_index(index);
	if (r < 0)
		return r;
	if (!der || len == 0 || len > UINT16_MAX)
		return kl_error_set(KL_E_INVALID, "NV certificate: %zu bytes", len);

	pub.nvPublic.nvIndex = index;
	pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
	/* TPM_NT_ORDINARY (0 in the TPMA_NV_TPM2_NT field) */
	pub.nvPublic.attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD |
	                          TPMA_NV_PPREAD | TPMA_NV_NO_DA | TPMA_NV_WRITEDEFINE;
	pub.nvPublic.dataSize = (UINT16)len;
	TPM_CALL(t, rc,
	         Esys_NV_DefineSpace(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                             ESYS_TR_NONE, &auth, &pub, &nv));
	if (tpm_rc_code(rc) == TPM2_RC_NV_DEFINED)
		return kl_error_set(KL_E_EXISTS, "NV index 0x%08" PRIx32 " is defined already",
		                    index);
	if (tpm_rc_code(rc) == TPM2_RC_SIZE || tpm_rc_code(rc) == TPM2_RC_NV_SPACE)
		return kl_tpm_rc_error(
		    rc, "Esys_NV_DefineSpace 0x%08" PRIx32 ": the TPM takes no index of %zu bytes",
		    index, len);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_NV_DefineSpace 0x%08" PRIx32, index);

	r = nv_fill(t, index, nv, der, len);
	if (r == 0)
		r = nv_read_back(t, index, der, len);
	if (r < 0) {
		/* leave no half-engraved index behind; the error stays ours */
		if (Esys_NV_UndefineSpace(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
		                          ESYS_TR_NONE, ESYS_TR_NONE) != TSS2_RC_SUCCESS)
			(void)Esys_TR_Close(t->esys, &nv);
		return r;
	}
	(void)Esys_TR_Close(t->esys, &nv);
	return 0;
}

int kl_tpm_nv_undefine(kl_tpm *t, uint32_t index)
{
	ESYS_TR nv = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "NV_UndefineSpace: no TPM");
	r = check_nv_index(index);
	if (r < 0)
		return r;
	r = tpm_tr_from_handle(t, index, "NV index", &nv);
	if (r < 0)
		return r;
	/* On success ESAPI drops nv with the index. */
	TPM_CALL(t, rc,
	         Esys_NV_UndefineSpace(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD,
	                               ESYS_TR_NONE, ESYS_TR_NONE));
	if (rc != TSS2_RC_SUCCESS) {
		(void)Esys_TR_Close(t->esys, &nv);
		return kl_tpm_rc_error(rc, "Esys_NV_UndefineSpace 0x%08" PRIx32, index);
	}
	return 0;
}
