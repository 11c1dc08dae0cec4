/* EK checks against a DUT: the TPM's answers, then the software checks of
 * trust.h. See ek_check.h. */
#include "ek_check.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/x509.h>

#include "kl_error.h"
#include "tpm_nv.h"

/* Records a verdict of the chain read; returns -1. */
__attribute__((format(printf, 3, 4))) static int chain_verdict(kl_ek_report *rep, kl_ek_verdict v,
                                                               const char *fmt, ...)
{
	va_list ap;

	rep->verdict = v;
	va_start(ap, fmt);
	vsnprintf(rep->reason, sizeof(rep->reason), fmt, ap);
	va_end(ap);
	return -1;
}

/* The EK chain indices the TPM has defined (TCG EK Credential Profile 2.x,
 * "EK Certificate Chain", from 0x01C00100), each read whole, within the bounds of
 * trust.h: how many and how large they are is the DUT's word. Returns 0,
 * or -1 with the verdict set. */
static int read_nv_chain(kl_tpm *tpm, kl_ek_report *rep)
{
	uint32_t idx[KL_EK_CHAIN_NV_MAX_INDICES];
	size_t found = 0, total = 0;
	int r;

	r = kl_tpm_nv_list(tpm, KL_EK_CHAIN_NV_FIRST, KL_EK_CHAIN_NV_LAST, idx,
	                   KL_EK_CHAIN_NV_MAX_INDICES, &found);
	if (r < 0)
		return chain_verdict(rep, KL_EK_TPM_ERROR,
		                     "listing the TPM's EK chain indices failed: %s",
		                     kl_error_detail());
	if (found > KL_EK_CHAIN_NV_MAX_INDICES)
		return chain_verdict(rep, KL_EK_CHAIN_TOO_MANY,
		                     "the TPM defines more than %d EK chain indices from "
		                     "0x%08x: the station reads at most %d",
		                     KL_EK_CHAIN_NV_MAX_INDICES, KL_EK_CHAIN_NV_FIRST,
		                     KL_EK_CHAIN_NV_MAX_INDICES);
	for (size_t i = 0; i < found; i++) {
		size_t left = KL_EK_CHAIN_NV_MAX_TOTAL - total, len = 0;
		size_t max = left < KL_EK_CHAIN_NV_MAX_BYTES ? left : KL_EK_CHAIN_NV_MAX_BYTES;
		unsigned char *der = NULL;

		r = kl_tpm_nv_read_max(tpm, idx[i], max, &der, &len);
		if (r == 1)
			return chain_verdict(
			    rep, KL_EK_CHAIN_OVERSIZED,
			    len > KL_EK_CHAIN_NV_MAX_BYTES
			        ? "the TPM's EK chain index NV 0x%08x holds %zu bytes, more "
			          "than the %d the station reads from one index"
			        : "the TPM's EK chain index NV 0x%08x holds %zu bytes, which "
			          "takes its EK chain indices past the %d bytes the station "
			          "reads from all of them",
			    idx[i], len,
			    len > KL_EK_CHAIN_NV_MAX_BYTES ? KL_EK_CHAIN_NV_MAX_BYTES
			                                   : KL_EK_CHAIN_NV_MAX_TOTAL);
		/* Defined but never written, read-locked or readable only under
		 * platform authorization: it cannot help, and is not needed. */
		if (r == -KL_E_NOTFOUND || r == -KL_E_STATE || r == -KL_E_UNSUPPORTED) {
			kl_error_clear();
			continue;
		}
		if (r < 0)
			return chain_verdict(rep, KL_EK_TPM_ERROR,
			                     "reading the EK chain index 0x%08x failed: %s", idx[i],
			                     kl_error_detail());
		total += len;
		if (kl_ek_report_add_nv(rep, idx[i], der, len) < 0)
			return chain_verdict(rep, KL_EK_TPM_ERROR, "%s", kl_error_detail());
	}
	return 0;
}

int kl_ek_check_cert(kl_tpm *tpm, const kl_trust *trust, kl_ek_type type, kl_ek_report *ret)
{
	kl_ek_report rep = { .type = type };
	kl_tpm_info info;
	int r;

	r = kl_tpm_get_info(tpm, &info);
	if (r < 0) {
		kl_ek_report_verdict(&rep, KL_EK_TPM_ERROR,
		                     "the TPM did not answer GetCapability: %s", kl_error_detail());
		goto done;
	}
	r = kl_tpm_nv_read(tpm, kl_ek_type_nv_index(type), &rep.cert_der, &rep.cert_len);
	if (r == -KL_E_NOTFOUND || r == -KL_E_STATE) {
		kl_ek_report_verdict(&rep, KL_EK_NO_CERT,
		                     "the TPM has no %s EK certificate (NV 0x%08x)",
		                     kl_ek_type_name(type), kl_ek_type_nv_index(type));
		goto done;
	}
	if (r < 0) {
		kl_ek_report_verdict(&rep, KL_EK_TPM_ERROR, "reading the EK certificate failed: %s",
		                     kl_error_detail());
		goto done;
	}
	if (read_nv_chain(tpm, &rep) < 0)
		goto done;
	r = kl_ek_cert_verify(trust, info.manufacturer, info.manufacturer_str, &rep);
	if (r < 0) {
		kl_ek_report_clear(&rep);
		return r;
	}
done:
	*ret = rep;
	return 0;
}

int kl_ek_check_match(kl_tpm *tpm, kl_ek_report *rep, EVP_PKEY **ek_ret)
{
	EVP_PKEY *ek = NULL;
	X509 *cert = NULL;
	int r;

	r = kl_ek_report_cert(rep, &cert);
	if (r < 0)
		return r;
	/* Step 4: the TPM's own EK must be the certified key. */
	if (kl_tpm_ek_public(tpm, rep->type, &ek) < 0)
		r = kl_ek_report_verdict(rep, KL_EK_TPM_ERROR, "recreating the %s EK failed: %s",
		                         kl_ek_type_name(rep->type), kl_error_detail());
	else
		r = kl_ek_key_verify(rep, cert, ek);
	if (r == 0 && ek && rep->verdict == KL_EK_OK && ek_ret) {
		*ek_ret = ek;
		ek = NULL; /* transferred */
	}
	EVP_PKEY_free(ek);
	X509_free(cert);
	return r;
}

int kl_ek_check(kl_tpm *tpm, const kl_trust *trust, kl_ek_type type, kl_ek_report *ret)
{
	int r = kl_ek_check_cert(tpm, trust, type, ret);

	if (r == 0 && ret->verdict == KL_EK_OK)
		r = kl_ek_check_match(tpm, ret, NULL);
	return r;
}
