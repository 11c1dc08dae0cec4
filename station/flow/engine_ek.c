/* Provisioning steps 1, 3 and 4: what the DUT is, and whether its TPM is
 * one a trusted vendor made (its EK certificate, and its EK). See
 * engine_internal.h and docs/provisioning.md. */
#include <stdlib.h>
#include <string.h>

#include "ek_check.h"
#include "engine_internal.h"
#include "evidence_internal.h"
#include "kl_error.h"
#include "link_conn.h"
#include "tpm_nv.h"

/* The first EK type, in order of preference, that the policy allows and
 * whose EK certificate index the TPM has defined. */
static int detect_ek_type(struct run *r)
{
	static const kl_ek_type order[] = { KL_EK_P256, KL_EK_P384, KL_EK_RSA2048 };

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		unsigned char *der = NULL;
		size_t len;
		int rc;

		if (!(r->cfg->ek_types & (1u << order[i])))
			continue;
		rc = kl_tpm_nv_read(r->tpm, kl_ek_type_nv_index(order[i]), &der, &len);
		free(der);
		if (rc == 0) {
			r->ek_type = order[i];
			return 0;
		}
		if (rc != -KL_E_NOTFOUND && rc != -KL_E_STATE)
			return kl_eng_failed(r, "tpm_error", rc);
	}
	return kl_eng_refuse(r, "ek_cert_missing",
	                     "the TPM holds no EK certificate of a type the station policy allows");
}

int kl_eng_discover(struct run *r)
{
	kl_tpm_link_opts link = {
		.timeout_ms = kl_eng_timeout_ms(r),
		.cancelled = r->job->cancelled,
		.cancel_ctx = r->job->cancel_ctx,
	};

	kl_eng_step_begin(r, KL_STEP_DISCOVER);
	if ((r->job->agent ? kl_tpm_open_agent(r->job->agent, &link, &r->tpm)
	                   : kl_tpm_open_link(r->job->link, &link, &r->tpm)) < 0) {
		int code = -(int)kl_error_code();

		/* The handle is gone: its link's verdict is the error's. */
		if (r->job->cancelled && r->job->cancelled(r->job->cancel_ctx))
			return kl_eng_failed(r, "aborted", code);
		/* An agent link says what became of it (link_garbage, ...). */
		const char *why = r->job->agent ? kl_link_conn_reason(r->job->agent) : NULL;
		if (why && strncmp(why, "link_", 5) == 0)
			return kl_eng_failed(r, why, code);
		return kl_eng_failed(r,
		                     code == -KL_E_TIMEOUT       ? "link_timeout"
		                     : code == -KL_E_UNAVAILABLE ? "link_lost"
		                                                 : "link_failed",
		                     code);
	}
	if (kl_tpm_get_info(r->tpm, &r->info) < 0)
		return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
	/* A killed earlier run may have left objects in the DUT's few slots. */
	size_t leftovers = 0;
	if (kl_tpm_flush_leftovers(r->tpm, &leftovers) < 0)
		return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek_type == KL_EK__MAX && detect_ek_type(r) < 0)
		return -1;
	r->res->ek_type = r->ek_type;
	if (!(r->cfg->ek_types & (1u << r->ek_type)))
		return kl_eng_refuse(r, "ek_type_not_allowed",
		                     "EK type %s is not allowed by the station policy",
		                     kl_ek_type_name(r->ek_type));
	if (kl_ev_tpm(r->evidence, &r->info) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	kl_eng_step_end(r);
	return 0;
}

int kl_eng_ek(struct run *r)
{
	kl_eng_step_begin(r, KL_STEP_EK_CERT);
	if (kl_ek_check_cert(r->tpm, r->cfg->trust, r->ek_type, &r->ek) < 0)
		return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek.verdict != KL_EK_OK)
		return kl_eng_refuse(r, kl_ek_verdict_name(r->ek.verdict), "%s", r->ek.reason);
	kl_eng_step_end(r);

	kl_eng_step_begin(r, KL_STEP_EK_MATCH);
	if (kl_ek_check_match(r->tpm, &r->ek, &r->ek_pub) < 0)
		return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
	if (r->ek.verdict != KL_EK_OK)
		return kl_eng_refuse(r, kl_ek_verdict_name(r->ek.verdict), "%s", r->ek.reason);
	if (kl_ev_ek(r->evidence, &r->ek) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	kl_eng_step_end(r);
	return 0;
}
