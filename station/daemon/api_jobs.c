/* The socket API's jobs: provisioning a DUT on a slot, a job's state and
 * result, recent jobs, aborting one (docs/api.md). The lifecycle's jobs
 * (api_lifecycle.c) are submitted and shown the same way. */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"

/* A job as JSON. mu held. */
void api_job_put(kl_rpc_obj *o, const st_job *j)
{
	kl_rpc_obj *r, *t;

	kl_rpc_obj_put_int(o, "job", j->id);
	kl_rpc_obj_put_str(o, "kind", kl_job_kind_name(j->kind));
	kl_rpc_obj_put_str(o, "state", kl_job_state_name(j->state));
	kl_rpc_obj_put_str(o, "slot", j->slot->name);
	kl_rpc_obj_put_str(o, "serial", j->serial);
	if (j->tenant[0])
		kl_rpc_obj_put_str(o, "tenant", j->tenant);
	if (j->work_order[0])
		kl_rpc_obj_put_str(o, "work_order", j->work_order);
	kl_rpc_obj_put_str(o, "actor", j->actor);
	kl_rpc_obj_put_str(o, "step", j->step);
	kl_rpc_obj_put_int(o, "step_index", j->step_index + (j->step[0] ? 1 : 0));
	kl_rpc_obj_put_int(o, "steps", j->steps);
	kl_rpc_obj_put_int(o, "queued_ms", j->queued_ms);
	kl_rpc_obj_put_int(o, "started_ms", j->started_ms);
	kl_rpc_obj_put_int(o, "finished_ms", j->finished_ms);
	if (j->state < KL_JOB_PASSED)
		return;
	kl_rpc_obj_put_object(o, "result", &r);
	kl_rpc_obj_put_bool(r, "ok", j->state == KL_JOB_PASSED);
	kl_rpc_obj_put_str(r, "reason", j->reason);
	kl_rpc_obj_put_str(r, "message", j->message);
	kl_rpc_obj_put_str(r, "failed_step", j->failed_step);
	kl_rpc_obj_put_double(r, "total_ms", j->total_ms);
	if (j->kind == KL_JOB_PROVISION) {
		kl_rpc_obj_put_str(r, "ek_type", j->ek_type_used);
		kl_rpc_obj_put_str(r, "iak_serial", j->iak_serial);
		kl_rpc_obj_put_str(r, "idevid_serial", j->idevid_serial);
		kl_rpc_obj_put_bool(r, "already_provisioned", j->already_provisioned);
		kl_rpc_obj_put_bool(r, "resumed", j->resumed);
		kl_rpc_obj_put_double(r, "tpm_ms", j->tpm_ms);
		kl_rpc_obj_put_object(r, "step_ms", &t);
		for (int i = 0; i < KL_STEP__MAX; i++)
			if (j->step_ms[i] > 0)
				kl_rpc_obj_put_double(t, kl_step_name((kl_step)i), j->step_ms[i]);
	} else {
		if (j->new_serial[0])
			kl_rpc_obj_put_str(r, "new_serial", j->new_serial);
		if (j->record_id > 0)
			kl_rpc_obj_put_int(r, "record_id", j->record_id);
	}
}

int api_submit(kl_rpc_call *call, kl_job_kind kind, const char *serial, const char *slot,
               const char *tenant, const char *work_order, int ek)
{
	kl_station *s = api_station(call);
	st_job *j;
	kl_rpc_obj *o;
	int r;

	if ((r = kl_registry_check_name("serial", serial)) < 0 ||
	    (tenant && (r = kl_registry_check_name("tenant", tenant)) < 0) ||
	    (work_order && (r = kl_registry_check_name("work_order", work_order)) < 0))
		return kl_rpc_reply_params(call, "%s", kl_error_detail());
	r = st_job_submit(s, slot, kind, serial, tenant, work_order, ek, api_caller(call)->actor,
	                  &j);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	api_job_put(o, j);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int m_provision(kl_rpc_call *call)
{
	const char *serial, *ek = api_str_or(call, "ek_type", "auto");
	kl_ek_type t = KL_EK__MAX;

	kl_rpc_param_str(call, "serial", &serial);
	if (strcmp(ek, "auto") != 0 && kl_ek_type_from_name(ek, &t) < 0)
		return kl_rpc_reply_params(call, "ek_type must be auto, rsa2048, p256 or "
		                                 "p384");
	return api_submit(call, KL_JOB_PROVISION, serial, api_str_or(call, "slot", NULL),
	                  api_str_or(call, "tenant", NULL), api_str_or(call, "work_order", NULL),
	                  (int)t);
}

static int m_job_get(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	int64_t id = api_int_or(call, "job", 0);
	kl_rpc_obj *o;
	st_job *j;

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	j = st_job_find(s, id);
	if (j)
		api_job_put(o, j);
	pthread_mutex_unlock(&s->mu);
	if (!j)
		return kl_rpc_reply_error(call, KL_E_NOTFOUND,
		                          "no job %lld (finished jobs are "
		                          "kept for a while, then only in the "
		                          "registry)",
		                          (long long)id);
	return 0;
}

static int m_job_list(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	int64_t limit = api_int_or(call, "limit", 50), n = 0;
	const char *slot = api_str_or(call, "slot", NULL);
	kl_rpc_obj *o, *a, *e;

	if (limit < 1 || limit > KL_STATION_JOBS_KEPT)
		return kl_rpc_reply_params(call, "limit must be 1..%d", KL_STATION_JOBS_KEPT);
	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "jobs", &a) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	for (st_job *j = s->jobs; j && n < limit; j = j->next) {
		if (slot && strcmp(slot, j->slot->name) != 0)
			continue;
		kl_rpc_obj_put_object(a, NULL, &e);
		api_job_put(e, j);
		n++;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int m_job_abort(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	int64_t id = api_int_or(call, "job", 0);
	json_object *finished = NULL;
	const char *slot = NULL;
	kl_rpc_obj *o;
	st_job *j;
	const char *was = NULL;

	pthread_mutex_lock(&s->mu);
	j = st_job_find(s, id);
	if (j && j->state == KL_JOB_QUEUED) {
		char why[256];

		/* Not started: take it off its slot; subscribers hear it ended. */
		snprintf(why, sizeof(why), "aborted by %s before it started",
		         api_caller(call)->actor);
		finished = st_job_abort_queued(j, why);
		slot = j->slot->name; /* the slots live as long as the station */
		was = "queued";
	} else if (j && j->state == KL_JOB_RUNNING) {
		atomic_store(&j->abort, true);
		was = "running";
	} else if (j) {
		was = kl_job_state_name(j->state);
	}
	pthread_mutex_unlock(&s->mu);
	if (finished)
		st_event(s, slot, finished);
	if (!j)
		return kl_rpc_reply_error(call, KL_E_NOTFOUND, "no job %lld", (long long)id);
	if (strcmp(was, "queued") != 0 && strcmp(was, "running") != 0)
		return kl_rpc_reply_error(call, KL_E_STATE, "job %lld has already %s",
		                          (long long)id, was);
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_int(o, "job", id);
	kl_rpc_obj_put_str(o, "was", was);
	kl_rpc_obj_put_str(o, "note",
	                   strcmp(was, "running") == 0
	                       ? "the job stops at its next step, or at once while it waits on the "
	                         "TPM; watch job.finished"
	                       : "the job will not run");
	return 0;
}

static const kl_rpc_param p_provision[] = {
	{ "serial", KL_RPC_STRING, true },   { "slot", KL_RPC_STRING, false },
	{ "tenant", KL_RPC_STRING, false },  { "work_order", KL_RPC_STRING, false },
	{ "ek_type", KL_RPC_STRING, false }, { NULL, 0, false },
};

static const kl_rpc_param p_job[] = { { "job", KL_RPC_INT, true }, { NULL, 0, false } };

static const kl_rpc_param p_jobs[] = {
	{ "limit", KL_RPC_INT, false },
	{ "slot", KL_RPC_STRING, false },
	{ NULL, 0, false },
};

/* job.provision, job.get, job.list, job.abort */
const kl_rpc_method st_api_jobs[] = {
	{ "job.provision", OP | AUT, p_provision, m_provision,
	  "provision the DUT on a slot (or the first free one)" },
	{ "job.get", ALL, p_job, m_job_get, "a job's state, step and result" },
	{ "job.list", ALL, p_jobs, m_job_list, "recent jobs, newest first" },
	{ "job.abort", OP | AUT | SVC, p_job, m_job_abort,
	  "abort a queued job, or stop a running one (at once while it waits on the TPM)" },
	{ NULL, 0, NULL, NULL, NULL },
};
