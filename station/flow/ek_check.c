/* EK checks against a DUT: the TPM's answers, then the software checks of
 * trust.h. See ek_check.h. */
#include "ek_check.h"

#include <openssl/x509.h>

#include "kl_error.h"
#include "tpm_nv.h"

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
