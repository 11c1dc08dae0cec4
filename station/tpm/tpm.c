/* The station's link to a DUT's TPM: tpm2-tss ESAPI over a TCTI.
 *
 * Every TSS2_RC becomes a kl_err in kl_tpm_rc_error(); every transient
 * object goes through tpm_track()/tpm_flush() so that none outlives the call
 * that made it (swtpm has no resource manager and holds three transient
 * objects). What needs no TPM (templates, public areas, keys) is in
 * ek_template.c. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "tpm_ek_internal.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_internal.h"

/* Chunk size when a TPM does not report TPM_PT_NV_BUFFER_MAX: the smallest
 * that the PC Client platform TPM profile allows. */
#define TPM_NV_CHUNK_DEFAULT 512

/* The longest name we make: nameAlg + a SHA-512 digest. */
_Static_assert(2 + TPM2_SHA512_DIGEST_SIZE <= KL_TPM_NAME_MAX, "KL_TPM_NAME_MAX too small");

KL_DEFINE_CLEANUP(kl_tpm, kl_tpm_free)

/* The TCTI loader's answer to a TCTI name it has no module for
 * (tpm2-tss 3.2 says NOT_SUPPORTED, 0x000a0015). */
static bool is_not_implemented(TSS2_RC rc)
{
	TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;

	return tpm_rc_code(rc) == 0 &&
	       (base == TSS2_BASE_RC_NOT_SUPPORTED || base == TSS2_BASE_RC_NOT_IMPLEMENTED);
}

/* The one place where a TSS2_RC becomes a kl_err. Link failures (TCTI I/O,
 * no connection) give -KL_E_IO, a TSS timeout -KL_E_TIMEOUT, a TSS allocation
 * failure -KL_E_NOMEM, everything else -KL_E_TPM. The detail keeps the
 * decoded text and the raw code:
 *   "Esys_NV_Read 0x01c00002: tpm:error(2.0): ... (rc 0x0000014a)" */
int kl_tpm_rc_error(TSS2_RC rc, const char *fmt, ...)
{
	char what[256];
	kl_err code = KL_E_TPM;
	va_list ap;

	if (tpm_rc_code(rc) == 0) {
		switch (rc & ~TSS2_RC_LAYER_MASK) {
		case TSS2_BASE_RC_IO_ERROR:
		case TSS2_BASE_RC_NO_CONNECTION:
			code = KL_E_IO;
			break;
		case TSS2_BASE_RC_TRY_AGAIN:
			code = KL_E_TIMEOUT;
			break;
		case TSS2_BASE_RC_MEMORY:
			code = KL_E_NOMEM;
			break;
		default:
			break;
		}
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kl_error_set(code, "%s: %s (rc 0x%08" PRIx32 ")", what, Tss2_RC_Decode(rc),
	                    (uint32_t)rc);
}

/* tpm2-tss logs warnings and errors to stderr by itself. A library does not
 * log (the daemon reports our errors once), so turn that off unless the user
 * asked for it with TSS2_LOG. tpm2-tss reads the variable on its first log
 * call, which comes after kl_tpm_open. */
static pthread_once_t tss_log_once = PTHREAD_ONCE_INIT;

static void tss_log_quiet(void)
{
	setenv("TSS2_LOG", "all+none", 0);
}

/* Calls fn for each TPM property in [first, first + count), following
 * moreData across as many TPM2_GetCapability calls as the TPM needs
 * (TPM 2.0 Part 3 §30.2). */
static int tpm_get_props(kl_tpm *t, TPM2_PT first, uint32_t count,
                         void (*fn)(TPM2_PT pt, uint32_t value, void *userdata), void *userdata)
{
	TPM2_PT pt = first;
	const TPM2_PT end = first + count;

	while (pt < end) {
		_cleanup_(esys_freep) TPMS_CAPABILITY_DATA *cap = NULL;
		TPMI_YES_NO more = TPM2_NO;
		TPM2_PT last = pt;
		TSS2_RC rc;

		TPM_CALL(t, rc,
		         Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
		                            TPM2_CAP_TPM_PROPERTIES, pt, end - pt, &more, &cap));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(rc, "Esys_GetCapability(properties 0x%" PRIx32 ")",
			                       pt);
		if (cap->capability != TPM2_CAP_TPM_PROPERTIES)
			return kl_error_set(KL_E_TPM,
			                    "GetCapability: TPM answered capability %" PRIu32
			                    " for TPM_CAP_TPM_PROPERTIES",
			                    cap->capability);
		const TPML_TAGGED_TPM_PROPERTY *l = &cap->data.tpmProperties;
		for (uint32_t i = 0; i < l->count && i < TPM2_MAX_TPM_PROPERTIES; i++) {
			const TPMS_TAGGED_PROPERTY *p = &l->tpmProperty[i];
			if (p->property < pt || p->property >= end)
				continue;
			fn(p->property, p->value, userdata);
			if (p->property > last)
				last = p->property;
		}
		/* A TPM that says "more" without moving forward would loop us. */
		if (more != TPM2_YES || l->count == 0 || last < pt)
			break;
		pt = last + 1;
	}
	return 0;
}

static void prop_nv_buffer_max(TPM2_PT pt, uint32_t value, void *userdata)
{
	if (pt == TPM2_PT_NV_BUFFER_MAX)
		*(uint32_t *)userdata = value;
}

int kl_tpm_open(const char *tcti_conf, kl_tpm **ret)
{
	_cleanup_(kl_tpm_freep) kl_tpm *t = NULL;
	TSS2_RC rc;
	int r;

	if (!tcti_conf || !*tcti_conf)
		return kl_error_set(KL_E_INVALID, "TPM: no TCTI configuration given");
	pthread_once(&tss_log_once, tss_log_quiet);

	t = calloc(1, sizeof(*t));
	if (!t)
		return kl_error_set(KL_E_NOMEM, "TPM: out of memory");
	rc = Tss2_TctiLdr_Initialize(tcti_conf, &t->tcti);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(
		    rc, "TCTI \"%s\"%s", tcti_conf,
		    is_not_implemented(rc) ? " (unknown TCTI name or bad configuration)" : "");
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Initialize on \"%s\"", tcti_conf);

	/* A first command proves that a TPM answers (and starts it when it needs
	 * TPM2_Startup); NV reads need its buffer size anyway. */
	r = tpm_get_props(t, TPM2_PT_NV_BUFFER_MAX, 1, prop_nv_buffer_max, &t->nv_buffer_max);
	if (r < 0)
		return kl_error_wrap("TPM on \"%s\"", tcti_conf);

	*ret = TAKE_PTR(t);
	return 0;
}

void kl_tpm_free(kl_tpm *t)
{
	if (!t)
		return;
	if (t->esys) {
		while (t->n_loaded > 0) {
			ESYS_TR h = t->loaded[--t->n_loaded];
			(void)Esys_FlushContext(t->esys, h);
		}
		Esys_Finalize(&t->esys);
	}
	if (t->tcti)
		Tss2_TctiLdr_Finalize(&t->tcti);
	free(t);
}

/* Appends the four bytes of a TPM_PT string property (big-endian ASCII,
 * Part 2 §6.13) to out, dropping NULs and replacing what is not printable:
 * the bytes come from the device and end up in logs and on screens. */
static void prop_string(uint32_t v, char *out, size_t size)
{
	size_t n = strlen(out);

	for (int shift = 24; shift >= 0; shift -= 8) {
		unsigned char c = (unsigned char)(v >> shift);
		if (c == 0)
			continue;
		if (n + 1 >= size)
			break;
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[n] = '\0';
}

static void rtrim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == ' ')
		s[--n] = '\0';
}

static void prop_info(TPM2_PT pt, uint32_t value, void *userdata)
{
	kl_tpm_info *i = userdata;

	switch (pt) {
	case TPM2_PT_FAMILY_INDICATOR:
		prop_string(value, i->family, sizeof(i->family));
		break;
	case TPM2_PT_LEVEL:
		i->spec_level = value;
		break;
	case TPM2_PT_REVISION:
		i->spec_revision = value;
		break;
	case TPM2_PT_DAY_OF_YEAR:
		i->spec_day_of_year = value;
		break;
	case TPM2_PT_YEAR:
		i->spec_year = value;
		break;
	case TPM2_PT_MANUFACTURER:
		i->manufacturer = value;
		prop_string(value, i->manufacturer_str, sizeof(i->manufacturer_str));
		break;
	case TPM2_PT_VENDOR_STRING_1:
	case TPM2_PT_VENDOR_STRING_2:
	case TPM2_PT_VENDOR_STRING_3:
	case TPM2_PT_VENDOR_STRING_4:
		/* Properties arrive in order, so appending concatenates 1..4. */
		prop_string(value, i->vendor, sizeof(i->vendor));
		break;
	case TPM2_PT_FIRMWARE_VERSION_1:
		i->firmware_version_1 = value;
		break;
	case TPM2_PT_FIRMWARE_VERSION_2:
		i->firmware_version_2 = value;
		break;
	case TPM2_PT_NV_BUFFER_MAX:
		i->nv_buffer_max = value;
		break;
	default:
		break;
	}
}

/* Discover (provisioning step 1): the fixed properties TPM_PT_FAMILY_INDICATOR
 * .. TPM_PT_NV_BUFFER_MAX (TPM 2.0 Part 2 §6.13). */
int kl_tpm_get_info(kl_tpm *t, kl_tpm_info *ret)
{
	kl_tpm_info info;
	int r;

	memset(&info, 0, sizeof(info));
	r = tpm_get_props(t, TPM2_PT_FAMILY_INDICATOR,
	                  TPM2_PT_NV_BUFFER_MAX - TPM2_PT_FAMILY_INDICATOR + 1, prop_info, &info);
	if (r < 0)
		return r;
	if (info.manufacturer == 0)
		return kl_error_set(KL_E_TPM, "GetCapability: TPM reports no TPM_PT_MANUFACTURER");
	rtrim(info.manufacturer_str);
	rtrim(info.vendor);
	*ret = info;
	return 0;
}

/* tpm2-tss 3.2's TPM2_TRANSIENT_FIRST shifts the int-promoted 0x80 by 24
 * bits, which is undefined behaviour (UBSan says so); spell it unsigned. */
#define TPM_TRANSIENT_FIRST ((TPM2_HANDLE)TPM2_HT_TRANSIENT << TPM2_HR_SHIFT)
#define TPM_TRANSIENT_LAST  (TPM_TRANSIENT_FIRST + 0x00fffffeu)

/* TPM 2.0 Part 3 §30.2, TPM_CAP_HANDLES from TPM_HT_TRANSIENT. */
int kl_tpm_transient_count(kl_tpm *t, size_t *ret)
{
	TPM2_HANDLE h = TPM_TRANSIENT_FIRST;
	size_t n = 0;

	for (;;) {
		_cleanup_(esys_freep) TPMS_CAPABILITY_DATA *cap = NULL;
		TPMI_YES_NO more = TPM2_NO;
		const TPML_HANDLE *l;
		TSS2_RC rc;

		TPM_CALL(t, rc,
		         Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
		                            TPM2_CAP_HANDLES, h, TPM2_MAX_CAP_HANDLES, &more,
		                            &cap));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(rc, "Esys_GetCapability(transient handles)");
		if (cap->capability != TPM2_CAP_HANDLES)
			return kl_error_set(KL_E_TPM,
			                    "GetCapability: TPM answered capability %" PRIu32
			                    " for TPM_CAP_HANDLES",
			                    cap->capability);
		l = &cap->data.handles;
		TPM2_HANDLE last = 0;
		bool progressed = false;
		for (uint32_t i = 0; i < l->count && i < TPM2_MAX_CAP_HANDLES; i++) {
			if ((l->handle[i] >> TPM2_HR_SHIFT) != TPM2_HT_TRANSIENT ||
			    l->handle[i] < h)
				continue;
			n++;
			last = l->handle[i];
			progressed = true;
		}
		/* A TPM that says "more" without moving forward would loop us. */
		if (more != TPM2_YES || !progressed || last >= TPM_TRANSIENT_LAST)
			break;
		h = last + 1;
	}
	*ret = n;
	return 0;
}

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

/* EK certificate read (provisioning step 3), and any other NV index. TCG EK
 * Credential Profile §2.2.1.4: EK certificate indices have
 * TPMA_NV_PPREAD | OWNERREAD | AUTHREAD and an empty authValue. */
int kl_tpm_nv_read(kl_tpm *t, uint32_t index, unsigned char **data, size_t *len)
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

	if ((index >> TPM2_HR_SHIFT) != TPM2_HT_NV_INDEX)
		return kl_error_set(KL_E_INVALID, "0x%08" PRIx32 " is not an NV index handle",
		                    index);

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

/* EK match (provisioning step 4): TPM2_CreatePrimary (TPM 2.0 Part 3 §24.1)
 * in the endorsement hierarchy with the profile's template recreates the EK
 * that the vendor certified. The object is flushed at once, also when
 * anything after CreatePrimary fails: we only need its public area. */
int tpm_ek_load(kl_tpm *t, kl_ek_type type, ESYS_TR *ret, TPM2B_PUBLIC **out_public)
{
	TPM2B_PUBLIC *pub = NULL;
	const TPM2B_SENSITIVE_CREATE sensitive = { 0 };
	const TPM2B_DATA outside_info = { 0 };
	const TPML_PCR_SELECTION creation_pcr = { 0 };
	ESYS_TR h = ESYS_TR_NONE;
	TPM2B_PUBLIC in;
	TSS2_RC rc;
	int r;

	r = kl_ek_template_get(type, &in);
	if (r < 0)
		return r;
	TPM_CALL(t, rc,
	         Esys_CreatePrimary(t->esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                            ESYS_TR_NONE, &sensitive, &in, &outside_info, &creation_pcr, &h,
	                            &pub, NULL, NULL, NULL));
	if (rc != TSS2_RC_SUCCESS) {
		if (tpm_rc_code(rc) == TPM2_RC_OBJECT_MEMORY)
			return kl_tpm_rc_error(rc,
			                       "Esys_CreatePrimary(EK %s): no free transient "
			                       "object slot (something did not flush)",
			                       kl_ek_type_name(type));
		return kl_tpm_rc_error(rc, "Esys_CreatePrimary(EK %s)", kl_ek_type_name(type));
	}
	r = tpm_track(t, h);
	if (r < 0) {
		(void)Esys_FlushContext(t->esys, h);
		Esys_Free(pub);
		return r;
	}
	/* Only `unique` may differ from the template. */
	r = kl_ek_check_public(type, &in.publicArea, &pub->publicArea);
	if (r < 0) {
		tpm_flush_quiet(t, h);
		Esys_Free(pub);
		return r;
	}
	*ret = h;
	*out_public = pub;
	return 0;
}

int kl_tpm_ek_public_name(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret_key, kl_tpm_name *ret_name)
{
	_cleanup_(esys_freep) TPM2B_PUBLIC *out_public = NULL;
	_cleanup_(esys_freep) TPM2B_NAME *esys_name = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	kl_tpm_name name;
	TSS2_RC rc;
	int r;

	r = tpm_ek_load(t, type, &h, &out_public);
	if (r < 0)
		return r;
	rc = Esys_TR_GetName(t->esys, h, &esys_name);
	if (rc != TSS2_RC_SUCCESS) {
		r = kl_tpm_rc_error(rc, "Esys_TR_GetName(EK %s)", kl_ek_type_name(type));
		goto out;
	}
	r = tpm_flush(t, h);
	if (r < 0)
		goto out;
	h = ESYS_TR_NONE;

	r = kl_tpm_public_name(&out_public->publicArea, &name);
	if (r < 0)
		goto out;
	if (esys_name->size != name.len || memcmp(esys_name->name, name.buf, name.len) != 0) {
		r = kl_error_set(KL_E_TPM,
		                 "CreatePrimary(EK %s): the object's name does not "
		                 "match its public area",
		                 kl_ek_type_name(type));
		goto out;
	}
	r = kl_tpm_public_to_pkey(&out_public->publicArea, &key);
	if (r < 0)
		goto out;

	*ret_key = TAKE_PTR(key);
	if (ret_name)
		*ret_name = name;
	r = 0;
out:
	/* Only failures get here with the object still loaded. */
	tpm_flush_quiet(t, h);
	return r;
}

int kl_tpm_ek_public(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret)
{
	return kl_tpm_ek_public_name(t, type, ret, NULL);
}

int kl_tpm_stir_random(kl_tpm *t, const unsigned char *data, size_t len)
{
	TPM2B_SENSITIVE_DATA in = { 0 };
	TSS2_RC rc;
	int r = 0;

	/* TPM2_StirRandom takes at most 128 bytes (TPM 2.0 Part 3 §16.2). */
	for (size_t done = 0; done < len && r == 0;) {
		size_t n = len - done < sizeof(in.buffer) ? len - done : sizeof(in.buffer);

		in.size = (UINT16)n;
		memcpy(in.buffer, data + done, n);
		TPM_CALL(t, rc,
		         Esys_StirRandom(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &in));
		if (rc != TSS2_RC_SUCCESS)
			r = kl_tpm_rc_error(rc, "Esys_StirRandom");
		done += n;
	}
	OPENSSL_cleanse(&in, sizeof(in));
	return r;
}

int kl_tpm_flush_leftovers(kl_tpm *t, size_t *flushed)
{
	/* Transient objects, then loaded sessions (TPM 2.0 Part 2 §7.2). */
	static const TPM2_HANDLE first[] = { TPM_TRANSIENT_FIRST, 0x02000000u, 0x03000000u };
	size_t n = 0;

	for (size_t k = 0; k < sizeof(first) / sizeof(first[0]); k++) {
		_cleanup_(esys_freep) TPMS_CAPABILITY_DATA *cap = NULL;
		TPMI_YES_NO more = TPM2_NO;
		TSS2_RC rc;

		TPM_CALL(t, rc,
		         Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
		                            TPM2_CAP_HANDLES, first[k], TPM2_MAX_CAP_HANDLES, &more,
		                            &cap));
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(rc, "Esys_GetCapability(handles 0x%08x)", first[k]);
		for (uint32_t i = 0; i < cap->data.handles.count && i < TPM2_MAX_CAP_HANDLES; i++) {
			TPM2_HANDLE h = cap->data.handles.handle[i];
			ESYS_TR tr = ESYS_TR_NONE;

			if ((h >> TPM2_HR_SHIFT) != (first[k] >> TPM2_HR_SHIFT))
				continue;
			TPM_CALL(t, rc,
			         Esys_TR_FromTPMPublic(t->esys, h, ESYS_TR_NONE, ESYS_TR_NONE,
			                               ESYS_TR_NONE, &tr));
			if (rc != TSS2_RC_SUCCESS)
				continue; /* gone meanwhile */
			TPM_CALL(t, rc, Esys_FlushContext(t->esys, tr));
			if (rc != TSS2_RC_SUCCESS)
				return kl_tpm_rc_error(rc, "Esys_FlushContext(0x%08x)", h);
			n++;
		}
	}
	if (flushed)
		*flushed = n;
	return 0;
}

double kl_tpm_busy_ms(const kl_tpm *t)
{
	return t ? t->busy_ms : 0;
}
