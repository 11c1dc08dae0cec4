/* The provisioning engine: the steps in order, and those on the registry,
 * the HSM and the CA (5, 6, 11, 13). The steps on the DUT are in
 * engine_ek.c and engine_identity.c, a step's bookkeeping in engine_step.c.
 * See engine.h, engine_internal.h and docs/provisioning.md. */
#include "engine.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "devid.h"
#include "engine_internal.h"
#include "evidence_internal.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "link_conn.h"

/* How long each TPM command of the clean-up after a refusal may take. */
#define CLEANUP_TIMEOUT_MS 5000

/* Leftovers of an interrupted run on the DUT go, so that the run starts
 * clean; certificates issued for it but never engraved are revoked
 * (superseded) so that one valid set remains. */
static int revoke_unfinished(void *ctx, const kl_registry_cert *c)
{
	struct run *r = ctx;

	if (strcmp(c->state, "issued") == 0 && !c->revoked)
		return r->cfg->ca
		           ? kl_ca_revoke(r->cfg->ca, c->serial, 4 /* superseded */, r->job->actor)
		           : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
	return 0;
}

/* The registry's half of step 5, under the backend lock: the gates, the
 * device begun (or taken up again), and on a resume the certificates of the
 * interrupted run revoked. Returns 0, 1 when the device is already
 * provisioned, -1 refused; *resume says that the DUT must be cleaned. */
/* What the job names must be names before the registry looks them up: a
 * serial a scanner garbled is the job's fault, not the database's. */
static int check_job_names(struct run *r)
{
	static const struct {
		const char *what, *reason;
		size_t off;
	} names[] = {
		{ "serial", "invalid_serial", offsetof(kl_job, serial) },
		{ "tenant name", "invalid_tenant", offsetof(kl_job, tenant) },
		{ "work-order name", "invalid_work_order", offsetof(kl_job, work_order) },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *v = *(const char *const *)((const char *)r->job + names[i].off);

		if (v && kl_registry_check_name(names[i].what, v) < 0)
			return kl_eng_refuse(r, names[i].reason, "%s", kl_error_detail());
	}
	return 0;
}

/* The gates' verdict for the job, 0 when they ran. */
static int run_gates(struct run *r, kl_gate_result *g)
{
	return kl_registry_gate_order(r->cfg->reg, r->job->serial, r->job->tenant,
	                              r->job->work_order, r->ek.ek_sha256, r->cfg->require_prereg,
	                              g);
}

static int gates_registry(struct run *r, bool *resume)
{
	kl_gate_result g;
	int rc;

	if (check_job_names(r) < 0)
		return -1;
	rc = run_gates(r, &g);
	if (rc < 0)
		return kl_eng_failed(r, "registry_error", rc);
	if (g.verdict == KL_GATE_ALREADY_PROVISIONED && r->had_identity) {
		/* Idempotent: the same DUT again. Nothing is issued twice. */
		r->res->already_provisioned = true;
		return 1;
	}
	if (g.verdict != KL_GATE_OK)
		return kl_eng_refuse(r, g.reason, "%s", g.message);
	snprintf(r->tenant, sizeof(r->tenant), "%s", g.tenant);
	if (r->had_identity && !g.resume)
		return kl_eng_refuse(
		    r, "not_factory_new",
		    "the TPM already holds Keyline identity keys or certificates but the "
		    "registry has no provisioning in progress for %s: refused, nothing is "
		    "issued twice",
		    r->job->serial);
	rc = kl_registry_device_begin(r->cfg->reg, r->job->serial, g.tenant[0] ? g.tenant : NULL,
	                              r->ek.ek_sha256, r->job->actor);
	if (rc < 0 && rc != -KL_E_DB && rc != -KL_E_NOMEM) {
		/* begin runs the gates again in its own transaction: another
		 * station sharing the registry got there first. Its verdict,
		 * not the error code, is the reason. */
		char why[512];
		int begin_rc = rc;

		snprintf(why, sizeof(why), "%s", kl_error_detail());
		if (run_gates(r, &g) == 0 && g.verdict != KL_GATE_OK &&
		    g.verdict != KL_GATE_ALREADY_PROVISIONED)
			return kl_eng_refuse(r, g.reason, "%s", g.message);
		rc = kl_error_set((kl_err)-begin_rc, "%s", why);
	}
	if (rc < 0)
		return kl_eng_failed(r, "registry_error", rc);
	if (rc == 1 || g.resume) {
		r->res->resumed = true;
		if (kl_registry_device_certs(r->cfg->reg, r->job->serial, revoke_unfinished, r) < 0)
			return kl_eng_failed(r, "ca_error", -(int)kl_error_code());
		*resume = true;
	}
	return 0;
}

/* Step 5. The registry's part runs under the backend lock; the DUT's part
 * of a resume (its leftover identity objects evicted) after it, so that a
 * DUT that stops answering holds only its own slot. That order keeps a
 * crash consistent: the device stays "provisioning" until its commit, so a
 * run killed while cleaning takes the resume path again, which finds the
 * certificates already revoked and cleans again. */
static int gates(struct run *r)
{
	bool resume = false;
	int rc;

	kl_eng_step_begin(r, KL_STEP_GATES);
	kl_eng_lock(r);
	rc = gates_registry(r, &resume);
	kl_eng_unlock(r);
	if (rc < 0)
		return rc;
	if (resume && kl_eng_clean_dut(r) < 0)
		return kl_eng_failed(r, "tpm_error", -(int)kl_error_code());
	kl_eng_step_end(r);
	return rc;
}

static int entropy(struct run *r)
{
	unsigned char seed[64];
	int rc;

	kl_eng_step_begin(r, KL_STEP_ENTROPY);
	kl_eng_lock(r);
	rc = r->cfg->entropy ? kl_hsm_random(r->cfg->entropy, seed, sizeof(seed)) : 1;
	/* A session the token dropped (it restarted): reopen it, without a
	 * login, and ask once more. */
	if (rc == -KL_E_UNAVAILABLE && kl_hsm_recover(r->cfg->entropy) == 0)
		rc = kl_hsm_random(r->cfg->entropy, seed, sizeof(seed));
	kl_eng_unlock(r);
	if (rc == 1)
		return kl_eng_refuse(r, "no_entropy_source", "no HSM is available to seed the TPM");
	if (rc == 0)
		rc = kl_tpm_stir_random(r->tpm, seed, sizeof(seed));
	OPENSSL_cleanse(seed, sizeof(seed));
	if (rc < 0)
		return kl_eng_failed(r, "entropy_failed", rc);
	if (kl_ev_int(r->evidence, "entropy_bytes", 64) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	kl_eng_step_end(r);
	return 0;
}

/* The profile for this device: per tenant when the station says so. */
static const char *profile(struct run *r, const char *kind, const char *def)
{
	const char *p = NULL;

	if (r->cfg->profile_for)
		p = r->cfg->profile_for(r->cfg->profile_ctx, r->tenant, kind);
	return p ? p : def;
}

static int issue(struct run *r)
{
	/* Zeroed: with the CA closed (the daemon reopens a lost HSM) nothing
	 * fills them, and the refusal below reads and frees them. */
	kl_issue_result res[2] = { 0 };
	kl_devid_tpm_ids ids;
	int rc;
	/* Both name the TPM by its EK certificate (TCG device identity §8):
	 * hardwareModuleName and permanentIdentifier; the device serial stays
	 * in the subject's serialNumber. */
	kl_cert_request reqs[2] = {
		{ .profile = profile(r, "iak", r->cfg->iak_profile ? r->cfg->iak_profile : "iak"),
		  .pubkey = r->iak_pub,
		  .serial_number = r->job->serial,
		  .hw_serial = ids.hw_serial,
		  .permanent_id = ids.permanent_id,
		  .actor = r->job->actor },
		{ .profile = profile(r, "idevid",
		                     r->cfg->idevid_profile ? r->cfg->idevid_profile : "idevid"),
		  .pubkey = r->idevid_pub,
		  .serial_number = r->job->serial,
		  .hw_serial = ids.hw_serial,
		  .permanent_id = ids.permanent_id,
		  .actor = r->job->actor },
	};

	kl_eng_step_begin(r, KL_STEP_ISSUE);
	rc = kl_devid_tpm_ids_from_ek(r->ek.cert_der, r->ek.cert_len, &ids);
	if (rc < 0)
		return kl_eng_refuse(r, "issue_failed",
		                     "the TPM's identifiers cannot be taken from its EK "
		                     "certificate: %s",
		                     kl_error_detail());
	kl_eng_lock(r);
	/* The daemon clears ca while it reopens a lost HSM. */
	rc = r->cfg->ca ? kl_ca_issue_batch(r->cfg->ca, reqs, 2, res)
	                : kl_error_set(KL_E_UNAVAILABLE, "the CA's HSM is unavailable");
	kl_eng_unlock(r);
	if (rc < 0 || res[0].rc < 0 || res[1].rc < 0) {
		const char *why = res[0].rc < 0 ? res[0].error : res[1].error;

		for (int i = 0; i < 2; i++) {
			X509_free(res[i].cert);
			OPENSSL_free(res[i].der);
		}
		return kl_eng_refuse(r, "issue_failed", "the CA did not issue: %s",
		                     why[0] ? why : kl_error_detail());
	}
	r->iak_cert = res[0].cert;
	r->idevid_cert = res[1].cert;
	if (kl_sha256_hex(res[1].der, res[1].der_len, r->res->idevid_sha256) < 0)
		r->res->idevid_sha256[0] = '\0';
	OPENSSL_free(res[0].der);
	OPENSSL_free(res[1].der);
	snprintf(r->res->iak_serial, sizeof(r->res->iak_serial), "%s", res[0].serial);
	snprintf(r->res->idevid_serial, sizeof(r->res->idevid_serial), "%s", res[1].serial);
	json_object *c = NULL;
	if (kl_ev_object(r->evidence, "certificates", &c) < 0 ||
	    kl_ev_string(c, "iak", res[0].serial) < 0 ||
	    kl_ev_string(c, "idevid", res[1].serial) < 0)
		return kl_eng_failed(r, "out_of_memory", -KL_E_NOMEM);
	kl_eng_step_end(r);
	return 0;
}

static int commit(struct run *r)
{
	const char *names[KL_STEP_COMMIT], *text = NULL;
	int rc;

	kl_eng_step_begin(r, KL_STEP_COMMIT);
	for (int s = 0; s < KL_STEP_COMMIT; s++)
		names[s] = kl_step_name((kl_step)s);
	rc = kl_ev_timings(r->evidence, names, r->res->step_ms, KL_STEP_COMMIT);
	if (rc == 0)
		rc = kl_ev_station(r->evidence, r->cfg->station_id, r->job->actor);
	if (rc == 0)
		rc = kl_ev_string(r->evidence, "trust_bundle", kl_trust_version(r->cfg->trust));
	/* Which way the DUT was reached: its TCTI, or "agent:tcp:HOST:PORT". */
	if (rc == 0)
		rc = kl_ev_string(r->evidence, "link", r->job->link);
	if (rc == 0 && !(text = kl_ev_text(r->evidence, true)))
		rc = kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	if (rc < 0)
		return kl_eng_failed(r, "out_of_memory", rc);
	kl_eng_lock(r);
	rc = kl_registry_device_commit(r->cfg->reg, r->job->serial, text, r->job->actor);
	kl_eng_unlock(r);
	if (rc < 0)
		return kl_eng_failed(r, "registry_error", rc);
	kl_eng_step_end(r);
	return 0;
}

/* A refusal leaves an audit entry. After step 5 the device was begun: the
 * certificates of this run (if it got as far as issuing) are revoked, and
 * the device goes back to preregistered, its EK released, only when the DUT
 * could be cleaned; otherwise it stays provisioning, so that the next run
 * takes the resume path, which revokes and cleans. */
static void record_refusal(struct run *r)
{
	json_object *detail = NULL;
	bool cleaned = false;
	int revoked = 0;

	if (r->res->failed_step > KL_STEP_GATES) {
		cleaned = r->tpm && kl_eng_clean_dut(r) == 0;
		kl_eng_lock(r);
		if (r->res->failed_step >= KL_STEP_ISSUE) {
			revoked = kl_registry_device_certs(r->cfg->reg, r->job->serial,
			                                   revoke_unfinished, r);
		}
		/* A device that cannot go back to preregistered stays
		 * provisioning, which is consistent: the next run takes the
		 * resume path and tries again (the library does not log). */
		if (cleaned)
			KL_BEST_EFFORT(kl_registry_device_set_state(r->cfg->reg, r->job->serial,
			                                            KL_DEVICE_PREREGISTERED,
			                                            r->res->reason, r->job->actor));
	}
	/* Without memory for the detail the entry still says what happened. */
	if (kl_ev_refusal(r->job->serial, kl_step_name(r->res->failed_step), r->res->reason,
	                  r->res->message, r->res->failed_step > KL_STEP_GATES, cleaned,
	                  revoked >= 0, &detail) < 0)
		detail = NULL;
	if (r->res->failed_step <= KL_STEP_GATES)
		kl_eng_lock(r);
	/* The refusal stands whether or not its entry is written: a failed
	 * write is counted and logged by the store (docs/station.md). */
	kl_store_audit_noted(r->cfg->store, r->job->actor, "station.provision.refused",
	                     detail ? kl_ev_text(detail, false) : NULL);
	kl_eng_unlock(r);
	json_object_put(detail);
}

/* A step that failed because the link did: whatever the step made of the
 * failed command, the job's reason is that the DUT stopped answering
 * (link_timeout), that its agent link dropped (link_lost), that its agent
 * gave up with ERROR (agent_<its reason>) or that the job was aborted while
 * it waited. */
static void link_verdict(struct run *r)
{
	kl_tpm_link_state st = kl_tpm_link_state_of(r->tpm);
	char why[sizeof(r->res->message)];

	const char *agent_why = r->job->agent ? kl_link_conn_reason(r->job->agent) : NULL;

	snprintf(why, sizeof(why), "%s", r->res->message);
	/* An agent that answered with a frame the link refused: its reason. */
	if (st == KL_TPM_LINK_BROKEN && agent_why &&
	    (strcmp(agent_why, "link_garbage") == 0 || strcmp(agent_why, "link_oversize") == 0)) {
		kl_eng_refuse(r, agent_why,
		              "the DUT's agent answered garbage during step %s and was dropped: %s",
		              kl_step_name(r->res->failed_step), why);
		r->res->rc = -KL_E_INVALID;
		return;
	}
	if (st != KL_TPM_LINK_TIMEOUT && st != KL_TPM_LINK_CANCELLED && st != KL_TPM_LINK_LOST)
		return;
	/* An agent that gave up with ERROR of its own (its TPM failed, it was
	 * told to stop): its reason, as agent_<reason>; resumable as a cut. */
	const char *peer_why = r->job->agent ? kl_link_conn_peer_reason(r->job->agent) : NULL;
	if (st == KL_TPM_LINK_LOST && peer_why) {
		kl_eng_refuse(r, peer_why,
		              "the DUT's agent gave up during step %s: %s (run it again when "
		              "it is fixed: the job resumes)",
		              kl_step_name(r->res->failed_step), why);
		r->res->rc = -KL_E_UNAVAILABLE;
		return;
	}
	if (st == KL_TPM_LINK_LOST) {
		kl_eng_refuse(r, "link_lost",
		              "the link to the DUT was lost during step %s: %s (run it again when "
		              "it is back: the job resumes)",
		              kl_step_name(r->res->failed_step), why);
		r->res->rc = -KL_E_UNAVAILABLE;
		return;
	}
	if (st == KL_TPM_LINK_TIMEOUT)
		kl_eng_refuse(r, "link_timeout",
		              "the DUT stopped answering during step %s (within %d ms per TPM "
		              "command): %s",
		              kl_step_name(r->res->failed_step), kl_eng_timeout_ms(r), why);
	else
		kl_eng_refuse(r, "aborted", "the job was aborted during step %s: %s",
		              kl_step_name(r->res->failed_step), why);
	r->res->rc = st == KL_TPM_LINK_TIMEOUT ? -KL_E_TIMEOUT : -KL_E_PERM;
}

/* The steps in order, each with the first kl_step it runs. */
static const struct {
	kl_step first;
	int (*run)(struct run *r);
} steps[] = {
	{ KL_STEP_DISCOVER, kl_eng_discover }, { KL_STEP_FACTORY_NEW, kl_eng_factory_new },
	{ KL_STEP_EK_CERT, kl_eng_ek },        { KL_STEP_GATES, gates },
	{ KL_STEP_ENTROPY, entropy },          { KL_STEP_KEYS, kl_eng_keys },
	{ KL_STEP_ACTIVATE, kl_eng_activate }, { KL_STEP_CERTIFY, kl_eng_certify },
	{ KL_STEP_POP, kl_eng_pop },           { KL_STEP_ISSUE, issue },
	{ KL_STEP_ENGRAVE, kl_eng_engrave },   { KL_STEP_COMMIT, commit },
};

int kl_engine_provision(const kl_engine_config *cfg, const kl_job *job, kl_job_result *res)
{
	struct run r = { .cfg = cfg, .job = job, .res = res };
	double start = kl_eng_now_ms();
	int rc;

	memset(res, 0, sizeof(*res));
	if (!job->serial || !job->link || !job->actor)
		return kl_error_set(KL_E_INVALID, "provision: serial, link and actor are required");
	r.evidence = json_object_new_object();
	if (!r.evidence)
		return kl_error_set(KL_E_NOMEM, "provision: out of memory");
	rc = kl_ev_string(r.evidence, "serial", job->serial);
	if (rc < 0) {
		json_object_put(r.evidence);
		return rc;
	}
	r.ek_type = job->ek_type;
	res->ek_type = job->ek_type;
	rc = 0;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && rc == 0; i++) {
		if (job->cancelled && job->cancelled(job->cancel_ctx)) {
			r.step = steps[i].first;
			r.t0 = kl_eng_now_ms();
			rc = kl_eng_refuse(&r, "aborted", "the job was aborted before step %s",
			                   kl_step_name(steps[i].first));
			break;
		}
		rc = steps[i].run(&r);
		if (steps[i].first == KL_STEP_GATES && rc == 1)
			rc = kl_eng_check_engraved(&r);
	}
	if (rc < 0) {
		link_verdict(&r);
		/* The clean-up is not cancelled (the abort asked for it) and gets
		 * a short bound: a DUT that went silent is not waited on again.
		 * A dead link cleans nothing, and the device stays provisioning. */
		if (r.tpm && kl_tpm_link_rearm(r.tpm, kl_eng_timeout_ms(&r) < CLEANUP_TIMEOUT_MS
		                                          ? kl_eng_timeout_ms(&r)
		                                          : CLEANUP_TIMEOUT_MS) < 0)
			kl_error_clear();
		record_refusal(&r);
	}

	res->total_ms = kl_eng_now_ms() - start;
	res->tpm_ms = kl_tpm_busy_ms(r.tpm);
	json_object_put(r.evidence);
	kl_tpm_object_free(r.iak);
	kl_tpm_object_free(r.idevid);
	EVP_PKEY_free(r.iak_pub);
	EVP_PKEY_free(r.idevid_pub);
	EVP_PKEY_free(r.ek_pub);
	X509_free(r.iak_cert);
	X509_free(r.idevid_cert);
	kl_ek_report_clear(&r.ek);
	kl_tpm_free(r.tpm);
	return 0;
}
