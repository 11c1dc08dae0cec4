/* The station's link to a DUT's TPM: tpm2-tss ESAPI over a TCTI, and what
 * concerns the TPM as a whole (its properties, its transient objects, its
 * RNG, TPM2_Clear).
 *
 * Every TSS2_RC becomes a kl_err in kl_tpm_rc_error() (tpm_rc.c); every
 * transient object goes through tpm_track()/tpm_flush() (tpm_internal.h) so
 * that none outlives the call that made it (swtpm has no resource manager
 * and holds three transient objects). */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_internal.h"
#include "tpm_agent_internal.h"
#include "tpm_link_internal.h"

KL_DEFINE_CLEANUP(kl_tpm, kl_tpm_free)

/* The TCTI loader's answer to a TCTI name it has no module for
 * (tpm2-tss 3.2 says NOT_SUPPORTED, 0x000a0015). */
static bool is_not_implemented(TSS2_RC rc)
{
	TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;

	return tpm_rc_code(rc) == 0 &&
	       (base == TSS2_BASE_RC_NOT_SUPPORTED || base == TSS2_BASE_RC_NOT_IMPLEMENTED);
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

static int check_timeout(const kl_tpm_link_opts *opts, int *ret)
{
	int timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : KL_TPM_TIMEOUT_MS_DEFAULT;

	if (timeout_ms < KL_TPM_TIMEOUT_MS_MIN || timeout_ms > KL_TPM_TIMEOUT_MS_MAX)
		return kl_error_set(KL_E_INVALID, "TPM: a timeout of %d ms is not within %d..%d",
		                    timeout_ms, KL_TPM_TIMEOUT_MS_MIN, KL_TPM_TIMEOUT_MS_MAX);
	*ret = timeout_ms;
	pthread_once(&tss_log_once, tss_log_quiet);
	tpm_link_forget();
	return 0;
}

/* ESAPI on t's TCTI, and a first command that proves a TPM answers (and
 * starts it when it needs TPM2_Startup); NV reads need its buffer size
 * anyway. */
static int tpm_start(kl_tpm *t, const char *what)
{
	TSS2_RC rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	int r;

	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_Initialize on \"%s\"", what);
	r = tpm_get_props(t, TPM2_PT_NV_BUFFER_MAX, 1, prop_nv_buffer_max, &t->nv_buffer_max);
	if (r < 0)
		return kl_error_wrap("TPM on \"%s\"", what);
	return 0;
}

int kl_tpm_open_link(const char *tcti_conf, const kl_tpm_link_opts *opts, kl_tpm **ret)
{
	_cleanup_(kl_tpm_freep) kl_tpm *t = NULL;
	int timeout_ms;
	TSS2_RC rc;
	int r;

	if (!tcti_conf || !*tcti_conf)
		return kl_error_set(KL_E_INVALID, "TPM: no TCTI configuration given");
	if ((r = check_timeout(opts, &timeout_ms)) < 0)
		return r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return kl_error_set(KL_E_NOMEM, "TPM: out of memory");
	if (tpm_link_handles(tcti_conf)) {
		r = tpm_link_open(tcti_conf, timeout_ms, opts ? opts->cancelled : NULL,
		                  opts ? opts->cancel_ctx : NULL, &t->tcti, &t->link);
		if (r < 0)
			return r;
	} else {
		rc = Tss2_TctiLdr_Initialize(tcti_conf, &t->tcti);
		if (rc != TSS2_RC_SUCCESS)
			return kl_tpm_rc_error(rc, "TCTI \"%s\"%s", tcti_conf,
			                       is_not_implemented(rc)
			                           ? " (unknown TCTI name or bad configuration)"
			                           : "");
	}
	if ((r = tpm_start(t, tcti_conf)) < 0)
		return r;
	*ret = TAKE_PTR(t);
	return 0;
}

int kl_tpm_open_agent(struct kl_link_conn *c, const kl_tpm_link_opts *opts, kl_tpm **ret)
{
	_cleanup_(kl_tpm_freep) kl_tpm *t = NULL;
	int timeout_ms, r;

	if ((r = check_timeout(opts, &timeout_ms)) < 0)
		return r;
	t = calloc(1, sizeof(*t));
	if (!t)
		return kl_error_set(KL_E_NOMEM, "TPM: out of memory");
	r = tpm_agent_open(c, timeout_ms, opts ? opts->cancelled : NULL,
	                   opts ? opts->cancel_ctx : NULL, &t->tcti, &t->agent);
	if (r < 0)
		return r;
	if ((r = tpm_start(t, kl_link_conn_peer(c))) < 0)
		return r;
	*ret = TAKE_PTR(t);
	return 0;
}

int kl_tpm_open(const char *tcti_conf, kl_tpm **ret)
{
	return kl_tpm_open_link(tcti_conf, NULL, ret);
}

kl_tpm_link_state kl_tpm_link_state_of(const kl_tpm *t)
{
	switch (!t         ? TPM_LINK_OK
	        : t->agent ? tpm_agent_state_get(t->agent)
	                   : tpm_link_state_get(t->link)) {
	case TPM_LINK_TIMEOUT:
		return KL_TPM_LINK_TIMEOUT;
	case TPM_LINK_CANCELLED:
		return KL_TPM_LINK_CANCELLED;
	case TPM_LINK_BROKEN:
		return KL_TPM_LINK_BROKEN;
	case TPM_LINK_LOST:
		return KL_TPM_LINK_LOST;
	default:
		return KL_TPM_LINK_OK;
	}
}

int kl_tpm_link_rearm(kl_tpm *t, int timeout_ms)
{
	bool fresh;
	TSS2_RC rc;
	int r;

	if (!t || (!t->link && !t->agent))
		return 0; /* a loader TCTI has neither deadline nor cancel */
	if (t->agent) {
		fresh = tpm_agent_state_get(t->agent) == TPM_LINK_CANCELLED;
		r = tpm_agent_rearm(t->agent, timeout_ms);
	} else {
		fresh = tpm_link_state_get(t->link) == TPM_LINK_CANCELLED;
		r = tpm_link_rearm(t->link, timeout_ms);
	}
	if (r < 0)
		return r;
	if (!fresh)
		return 0;
	/* The TCTI's error left ESAPI in its internal-error state, where it
	 * refuses every call; a new context on the same link starts clean. */
	Esys_Finalize(&t->esys);
	t->n_loaded = 0;
	t->generation++;
	rc = Esys_Initialize(&t->esys, t->tcti, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		t->esys = NULL;
		return kl_tpm_rc_error(rc, "Esys_Initialize after a cancel");
	}
	return kl_tpm_flush_leftovers(t, NULL);
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
	if (t->link)
		tpm_link_free(t->link);
	else if (t->agent)
		tpm_agent_free(t->agent);
	else if (t->tcti)
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

int tpm_tr_from_handle(kl_tpm *t, uint32_t handle, const char *what, ESYS_TR *ret)
{
	TSS2_RC rc;

	TPM_CALL(
	    t, rc,
	    Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ret));
	if (tpm_rc_code(rc) == TPM2_RC_HANDLE)
		return kl_error_set(KL_E_NOTFOUND, "%s 0x%08" PRIx32 " does not exist", what,
		                    handle);
	if (rc != TSS2_RC_SUCCESS)
		return kl_tpm_rc_error(rc, "Esys_TR_FromTPMPublic(%s 0x%08" PRIx32 ")", what,
		                       handle);
	return 0;
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

static void prop_permanent(TPM2_PT pt, uint32_t value, void *userdata)
{
	if (pt == TPM2_PT_PERMANENT) {
		((uint32_t *)userdata)[0] = value;
		((uint32_t *)userdata)[1] = 1;
	}
}

int kl_tpm_clear(kl_tpm *t)
{
	uint32_t permanent[2] = { 0, 0 }; /* the value, and whether the TPM reported it */
	TSS2_RC rc, code;
	int r;

	if (!t)
		return kl_error_set(KL_E_INVALID, "TPM2_Clear: no TPM");
	/* TPM 2.0 Part 2 §8.6: lockoutAuthSet. With a lockout authorisation
	 * set, an empty one would be a failed authorisation, and the lockout
	 * hierarchy locks after its first (Part 1 §19.8.6.4). */
	r = tpm_get_props(t, TPM2_PT_PERMANENT, 1, prop_permanent, permanent);
	if (r < 0)
		return kl_error_wrap("TPM2_Clear: reading TPM_PT_PERMANENT");
	if (!permanent[1])
		return kl_error_set(KL_E_TPM, "TPM2_Clear: the TPM does not report "
		                              "TPM_PT_PERMANENT; not clearing blind");
	if (permanent[0] & TPMA_PERMANENT_LOCKOUTAUTHSET)
		return kl_error_set(KL_E_PERM,
		                    "the TPM's lockout authorisation is set (TPM_PT_PERMANENT "
		                    "lockoutAuthSet): TPM2_Clear was not attempted, because an "
		                    "empty authorisation would count as a failure and lock the "
		                    "lockout hierarchy; clear the TPM with its owner's lockout "
		                    "authorisation");
	TPM_CALL(
	    t, rc,
	    Esys_Clear(t->esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
	if (rc == TSS2_RC_SUCCESS)
		return 0;
	code = tpm_rc_code(rc);
	if (code == TPM2_RC_DISABLED || code == TPM2_RC_AUTH_FAIL || code == TPM2_RC_BAD_AUTH ||
	    code == TPM2_RC_LOCKOUT || code == TPM2_RC_HIERARCHY) {
		char why[KL_ERROR_DETAIL_MAX];

		kl_tpm_rc_error(rc, "Esys_Clear(lockout, empty authorisation)");
		snprintf(why, sizeof(why), "%s", kl_error_detail());
		return kl_error_set(KL_E_PERM, "the TPM refuses TPM2_Clear: %s", why);
	}
	return kl_tpm_rc_error(rc, "Esys_Clear(lockout)");
}
