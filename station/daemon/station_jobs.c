/* Jobs and the slot workers: a job is queued on a slot, the slot's worker
 * thread runs it (the provisioning engine, or a lifecycle operation), tells
 * subscribers about each step, and records how it ended; an idle worker
 * probes its slot's link. See station_internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_error.h"
#include "kl_log.h"
#include "tpm.h"
#include "station_internal.h"

#define LOG_MOD "station"

static const char *const kind_names[] = { "provision", "renew", "decommission", "repurpose" };

static const char *const state_names[] = { "queued", "running", "passed", "failed", "aborted" };

const char *kl_job_kind_name(kl_job_kind k)
{
	return (unsigned)k < 4 ? kind_names[k] : "unknown";
}

const char *kl_job_state_name(kl_job_state s)
{
	return (unsigned)s < 5 ? state_names[s] : "unknown";
}

/* An event about job j: {"type", "time_ms", "job", "slot", "serial",
 * "kind", "steps"}, to be completed and queued with st_event. */
static json_object *job_event_new(const char *type, const st_job *j)
{
	json_object *o = st_event_new(type);

	if (!o)
		return NULL;
	json_object_object_add(o, "job", json_object_new_int64(j->id));
	json_object_object_add(o, "slot", json_object_new_string(j->slot->name));
	json_object_object_add(o, "serial", json_object_new_string(j->serial));
	json_object_object_add(o, "kind", json_object_new_string(kl_job_kind_name(j->kind)));
	/* Provisioning has a fixed number of steps; a lifecycle job's are
	 * counted as they come (0 until then). */
	json_object_object_add(o, "steps", json_object_new_int(j->steps));
	return o;
}

st_job *st_job_find(kl_station *s, int64_t id)
{
	for (st_job *j = s->jobs; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

/* Forgets the oldest finished jobs beyond KL_STATION_JOBS_KEPT. mu held. */
static void jobs_trim(kl_station *s)
{
	size_t n = 0;

	for (st_job **p = &s->jobs; *p;) {
		st_job *j = *p;

		if (++n > KL_STATION_JOBS_KEPT && j->state >= KL_JOB_PASSED) {
			*p = j->next;
			free(j);
			s->njobs--;
			continue;
		}
		p = &j->next;
	}
}

int st_job_submit(kl_station *s, const char *slot, kl_job_kind kind, const char *serial,
                  const char *tenant, const char *work_order, int ek_type, const char *actor,
                  st_job **ret)
{
	st_slot *sl = NULL;
	st_job *j;

	if (s->offline)
		return kl_error_set(KL_E_UNAVAILABLE,
		                    "the station is not running: start it with 'keyline station'");
	j = calloc(1, sizeof(*j));
	if (!j)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	pthread_mutex_lock(&s->mu);
	if (atomic_load(&s->stopping)) {
		pthread_mutex_unlock(&s->mu);
		free(j);
		return kl_error_set(KL_E_UNAVAILABLE, "the station is shutting down");
	}
	if (!s->hsm_ok && s->hsm_gave_up) {
		int r = kl_error_set(KL_E_UNAVAILABLE,
		                     "the HSM is unavailable (%s): restart the station to log in "
		                     "again",
		                     s->hsm_error);

		pthread_mutex_unlock(&s->mu);
		free(j);
		return r;
	}
	/* No slot named: the agent slot where this DUT is attached, else the
	 * first free TCTI slot. */
	for (size_t i = 0; i < s->nslots && !slot && !sl; i++) {
		st_slot *c = &s->slots[i];

		if (c->agent && c->conn && strcmp(c->info.serial, serial) == 0)
			sl = c;
	}
	for (size_t i = 0; i < s->nslots && !sl; i++) {
		st_slot *c = &s->slots[i];

		if (slot ? strcmp(c->name, slot) == 0 : !c->agent && !c->pending && !c->current)
			sl = c;
	}
	if (!sl) {
		pthread_mutex_unlock(&s->mu);
		free(j);
		return slot ? kl_error_set(KL_E_NOTFOUND, "no slot named '%s'", slot)
		            : kl_error_set(KL_E_STATE, "every slot is busy");
	}
	if (sl->pending || sl->current) {
		int64_t busy = (sl->current ? sl->current : sl->pending)->id;

		pthread_mutex_unlock(&s->mu);
		free(j);
		return kl_error_set(KL_E_STATE, "slot %s is busy with job %lld", sl->name,
		                    (long long)busy);
	}
	if (sl->agent && !sl->conn) {
		pthread_mutex_unlock(&s->mu);
		free(j);
		return kl_error_set(KL_E_STATE,
		                    "slot %s has no DUT attached: plug it in (its keyline-agent "
		                    "attaches over the link) before starting the job",
		                    sl->name);
	}
	j->id = ++s->next_job;
	j->kind = kind;
	j->state = KL_JOB_QUEUED;
	j->slot = sl;
	snprintf(j->serial, sizeof(j->serial), "%s", serial);
	snprintf(j->tenant, sizeof(j->tenant), "%s", tenant ? tenant : "");
	snprintf(j->work_order, sizeof(j->work_order), "%s", work_order ? work_order : "");
	snprintf(j->actor, sizeof(j->actor), "%s", actor);
	j->ek_type = ek_type;
	j->queued_ms = st_wall_ms();
	j->steps = kind == KL_JOB_PROVISION ? KL_STEP__MAX : 0;
	j->next = s->jobs;
	s->jobs = j;
	s->njobs++;
	sl->pending = j;
	jobs_trim(s);
	pthread_cond_signal(&sl->cond);
	pthread_mutex_unlock(&s->mu);
	st_event(s, sl->name, job_event_new("job.queued", j));
	*ret = j;
	return 0;
}

static bool job_cancelled(void *ctx)
{
	st_job *j = ctx;

	return atomic_load(&j->abort) || atomic_load(&j->slot->st->stopping);
}

static void step_event(st_job *j, const char *step, int index, bool done, double ms)
{
	kl_station *s = j->slot->st;
	json_object *o;

	pthread_mutex_lock(&s->mu);
	snprintf(j->step, sizeof(j->step), "%s", step);
	if (index >= 0)
		j->step_index = index;
	pthread_mutex_unlock(&s->mu);
	o = job_event_new(done ? "step.finished" : "step.started", j);
	json_object_object_add(o, "step", json_object_new_string(step));
	if (index >= 0) {
		json_object_object_add(o, "index", json_object_new_int(index + 1));
		json_object_object_add(o, "of", json_object_new_int(j->steps));
	}
	if (done)
		json_object_object_add(o, "ms", json_object_new_double(ms));
	st_event(s, j->slot->name, o);
}

static void engine_progress(void *ctx, kl_step step, bool done, double ms)
{
	step_event(ctx, kl_step_name(step), (int)step, done, ms);
}

static void life_progress(void *ctx, const char *step, bool done, double ms)
{
	st_job *j = ctx;

	kl_station *s = j->slot->st;
	int index;

	/* A lifecycle's steps depend on the device: counted as they come. */
	pthread_mutex_lock(&s->mu);
	if (!done)
		j->steps++;
	index = j->steps - 1;
	pthread_mutex_unlock(&s->mu);
	step_event(j, step, index, done, ms);
}

/* A job's verdict from its runner. mu held. */
static void job_verdict(st_job *j, int rc, int res_rc, const char *reason, const char *message,
                        const char *failed_step, double total_ms)
{
	if (rc < 0) {
		j->state = KL_JOB_FAILED;
		snprintf(j->reason, sizeof(j->reason), "station_error");
		snprintf(j->message, sizeof(j->message), "%s", kl_error_detail());
		return;
	}
	j->state = res_rc == 0                      ? KL_JOB_PASSED
	           : strcmp(reason, "aborted") == 0 ? KL_JOB_ABORTED
	                                            : KL_JOB_FAILED;
	snprintf(j->reason, sizeof(j->reason), "%s", reason);
	snprintf(j->message, sizeof(j->message), "%s", message);
	snprintf(j->failed_step, sizeof(j->failed_step), "%s", res_rc < 0 ? failed_step : "");
	j->total_ms = total_ms;
}

/* The serial the operator scanned against the one the attached DUT's
 * HELLO says: a job for another device is refused before anything is
 * asked of the TPM (nothing issued, audited). */
static bool agent_serial_mismatch(kl_station *s, st_job *j)
{
	st_slot *sl = j->slot;
	json_object *d;

	if (strcmp(j->serial, sl->info.serial) == 0)
		return false;
	pthread_mutex_lock(&s->mu);
	j->state = KL_JOB_FAILED;
	snprintf(j->reason, sizeof(j->reason), "serial_mismatch");
	snprintf(j->message, sizeof(j->message),
	         "the serial scanned (%s) is not the one the DUT on slot %s says it is (%s): "
	         "check the label and scan again",
	         j->serial, sl->name, sl->info.serial);
	snprintf(j->failed_step, sizeof(j->failed_step), "%s", kl_step_name(KL_STEP_DISCOVER));
	pthread_mutex_unlock(&s->mu);
	d = json_object_new_object();
	json_object_object_add(d, "slot", json_object_new_string(sl->name));
	json_object_object_add(d, "scanned", json_object_new_string(j->serial));
	json_object_object_add(d, "hello", json_object_new_string(sl->info.serial));
	json_object_object_add(d, "reason", json_object_new_string("serial_mismatch"));
	st_backend_audit(s, j->actor, "station.provision.refused", json_object_to_json_string(d));
	json_object_put(d);
	return true;
}

static void run_provision(kl_station *s, st_job *j)
{
	kl_job job = {
		.serial = j->serial,
		.tenant = j->tenant[0] ? j->tenant : NULL,
		.work_order = j->work_order[0] ? j->work_order : NULL,
		.link = j->slot->agent ? j->slot->agent_link : j->slot->link,
		.agent = j->slot->conn,
		.ek_type = (kl_ek_type)j->ek_type,
		.actor = j->actor,
		.progress = engine_progress,
		.progress_ctx = j,
		.cancelled = job_cancelled,
		.cancel_ctx = j,
	};
	kl_job_result res;
	int rc;

	if (j->slot->agent && agent_serial_mismatch(s, j))
		return;
	rc = kl_engine_provision(&s->ecfg, &job, &res);
	pthread_mutex_lock(&s->mu);
	job_verdict(j, rc, res.rc, res.reason, res.message, kl_step_name(res.failed_step),
	            res.total_ms);
	if (rc == 0) {
		memcpy(j->iak_serial, res.iak_serial, sizeof(j->iak_serial));
		memcpy(j->idevid_serial, res.idevid_serial, sizeof(j->idevid_serial));
		memcpy(j->fingerprint, res.idevid_sha256, sizeof(j->fingerprint));
		snprintf(j->ek_type_used, sizeof(j->ek_type_used), "%s",
		         kl_ek_type_name(res.ek_type) ? kl_ek_type_name(res.ek_type) : "");
		j->already_provisioned = res.already_provisioned;
		j->resumed = res.resumed;
		memcpy(j->step_ms, res.step_ms, sizeof(j->step_ms));
		j->tpm_ms = res.tpm_ms;
	}
	pthread_mutex_unlock(&s->mu);
}

static void run_lifecycle(kl_station *s, st_job *j)
{
	kl_life_job job = {
		.serial = j->serial,
		.link = j->slot->agent ? j->slot->agent_link : j->slot->link,
		.agent = j->slot->conn,
		.actor = j->actor,
		.progress = life_progress,
		.progress_ctx = j,
		.cancelled = job_cancelled,
		.cancel_ctx = j,
	};
	kl_life_result res;
	int rc;

	memset(&res, 0, sizeof(res));
	if (j->slot->agent && strcmp(j->serial, j->slot->info.serial) != 0) {
		/* Renewing or erasing another device than the one attached. */
		pthread_mutex_lock(&s->mu);
		j->state = KL_JOB_FAILED;
		snprintf(j->reason, sizeof(j->reason), "serial_mismatch");
		snprintf(j->message, sizeof(j->message),
		         "the job is for %s, but the DUT on slot %s says it is %s", j->serial,
		         j->slot->name, j->slot->info.serial);
		pthread_mutex_unlock(&s->mu);
		return;
	}
	if (j->kind == KL_JOB_RENEW)
		rc = kl_life_renew(&s->lcfg, &job, &res);
	else
		rc = kl_life_decommission(&s->lcfg, &job, j->kind == KL_JOB_REPURPOSE, &res);
	if (rc == 0 && res.rc == 0 && res.revoked > 0) {
		char path[PATH_MAX];

		st_lock_backend(s);
		if (st_publish_crl(s, j->actor, path, sizeof(path), NULL) < 0)
			kl_log_warn(LOG_MOD, "CRL not published after %s of %s: %s",
			            kl_job_kind_name(j->kind), j->serial, kl_error_detail());
		st_unlock_backend(s);
	}
	pthread_mutex_lock(&s->mu);
	job_verdict(j, rc, res.rc, res.reason, res.message, res.step, res.total_ms);
	if (rc == 0) {
		snprintf(j->new_serial, sizeof(j->new_serial), "%s", res.new_serial);
		/* The agent's PASS verdict: the renewed certificate's SHA-256, ""
		 * after a decommission (no certificate left to name). */
		memcpy(j->fingerprint, res.idevid_sha256, sizeof(j->fingerprint));
		j->record_id = res.record_id;
	}
	pthread_mutex_unlock(&s->mu);
}

json_object *st_job_finished_new(st_job *j)
{
	json_object *o = job_event_new("job.finished", j);

	if (!o)
		return NULL;
	json_object_object_add(o, "result", json_object_new_string(kl_job_state_name(j->state)));
	json_object_object_add(o, "reason", json_object_new_string(j->reason));
	json_object_object_add(o, "message", json_object_new_string(j->message));
	json_object_object_add(o, "failed_step", json_object_new_string(j->failed_step));
	json_object_object_add(o, "total_ms", json_object_new_double(j->total_ms));
	if (j->idevid_serial[0]) {
		json_object_object_add(o, "idevid_serial",
		                       json_object_new_string(j->idevid_serial));
		json_object_object_add(o, "iak_serial", json_object_new_string(j->iak_serial));
	}
	if (j->new_serial[0])
		json_object_object_add(o, "new_serial", json_object_new_string(j->new_serial));
	if (j->record_id > 0)
		json_object_object_add(o, "record_id", json_object_new_int64(j->record_id));
	return o;
}

static void job_finished_event(kl_station *s, st_job *j)
{
	json_object *o;

	pthread_mutex_lock(&s->mu);
	o = st_job_finished_new(j);
	pthread_mutex_unlock(&s->mu);
	st_event(s, j->slot->name, o);
}

json_object *st_job_abort_queued(st_job *j, const char *message)
{
	j->slot->pending = NULL;
	j->state = KL_JOB_ABORTED;
	j->finished_ms = st_wall_ms();
	snprintf(j->reason, sizeof(j->reason), "aborted");
	snprintf(j->message, sizeof(j->message), "%s", message);
	return st_job_finished_new(j);
}

/* Tells whether the station is stopping: the cancel predicate of a link
 * probe, which has no job. */
static bool station_stopping(void *ctx)
{
	return atomic_load(&((kl_station *)ctx)->stopping);
}

/* Whether the slot's TPM answers; only while the slot is idle. */
static void probe_link(st_slot *sl)
{
	kl_tpm_link_opts opts = { .timeout_ms = sl->st->ecfg.tpm_timeout_ms,
		                  .cancelled = station_stopping,
		                  .cancel_ctx = sl->st };
	kl_tpm *t = NULL;
	kl_tpm_info info;
	int up = kl_tpm_open_link(sl->link, &opts, &t) == 0 && kl_tpm_get_info(t, &info) == 0;
	char why[256];

	snprintf(why, sizeof(why), "%s", up ? "" : kl_error_detail());
	kl_tpm_free(t);
	pthread_mutex_lock(&sl->st->mu);
	int was = sl->link_up;
	sl->link_up = up;
	snprintf(sl->link_error, sizeof(sl->link_error), "%s", why);
	pthread_mutex_unlock(&sl->st->mu);
	if (was != up) {
		json_object *o = st_event_new("slot.link");

		json_object_object_add(o, "slot", json_object_new_string(sl->name));
		json_object_object_add(o, "up", json_object_new_boolean(up));
		if (!up)
			json_object_object_add(o, "error", json_object_new_string(why));
		st_event(sl->st, sl->name, o);
	}
}

/* ---- agent slots: the worker owns the attached link ---- */

#define AGENT_IDLE_MS  500   /* how often an idle worker looks at its attached DUT */
#define AGENT_PING_MS  10000 /* a PING this often keeps the agent from timing out */
#define AGENT_CLOSE_MS 5000  /* how long the agent has to take its verdict and close */

static bool ask_once(void *ctx)
{
	int *n = ctx;

	return (*n)++ > 0;
}

/* Frees the slot's link: the slot takes the next DUT. Its worker only. */
static void agent_detach(st_slot *sl, const char *reason)
{
	kl_station *s = sl->st;
	kl_link_conn *c;
	char serial[KL_LINK_SERIAL_MAX + 1], peer[128];
	json_object *o;

	pthread_mutex_lock(&s->mu);
	c = sl->conn;
	sl->conn = NULL;
	snprintf(serial, sizeof(serial), "%s", sl->info.serial);
	snprintf(peer, sizeof(peer), "%s", sl->agent_link);
	sl->link_up = 0;
	snprintf(sl->link_error, sizeof(sl->link_error), "no DUT attached (the last one: %s)",
	         reason);
	pthread_mutex_unlock(&s->mu);
	if (!c)
		return;
	kl_link_conn_free(c);
	/* A USB slot takes the next device once this one is closed. */
	pthread_mutex_lock(&s->mu);
	sl->usb_at[0] = '\0';
	pthread_mutex_unlock(&s->mu);
	kl_log_info(LOG_MOD, "DUT %s detached from slot %s [%s]", serial, sl->name, reason);
	o = st_event_new("link.detached");
	if (o) {
		json_object_object_add(o, "slot", json_object_new_string(sl->name));
		json_object_object_add(o, "serial", json_object_new_string(serial));
		json_object_object_add(o, "reason", json_object_new_string(reason));
		json_object_object_add(o, "peer", json_object_new_string(peer + 6));
	}
	st_event(s, sl->name, o);
}

/* An attached DUT waiting for its job: still there? Nothing is read but a
 * PONG or the agent's ERROR; a PING now and then keeps it waiting. */
static void agent_idle(st_slot *sl, double *last_ping)
{
	kl_link_conn *c = sl->conn;
	int n = 0;
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + AGENT_IDLE_MS,
		           .cancelled = ask_once,
		           .cancel_ctx = &n };
	kl_link_type type;
	const uint8_t *p;
	uint32_t len;

	if (kl_link_conn_recv(c, &w, &type, &p, &len) == 0) {
		if (type == KL_LINK_PONG)
			return;
		if (type == KL_LINK_ERROR) {
			agent_detach(sl, "agent_left");
			return;
		}
		kl_link_conn_refuse(c, "link_garbage", "an agent waiting for its job sent a frame",
		                    &w);
		agent_detach(sl, "link_garbage");
		return;
	}
	if (!kl_link_conn_dead(c)) {
		if (kl_link_now_ms() - *last_ping >= AGENT_PING_MS) {
			w = (kl_link_wait){ .deadline_ms = kl_link_now_ms() + 2000 };
			*last_ping = kl_link_now_ms();
			if (kl_link_conn_send(c, KL_LINK_PING, "keepalive", 9, &w) == 0)
				return;
		} else {
			return;
		}
	}
	agent_detach(sl, kl_link_conn_reason(c) ? kl_link_conn_reason(c) : "link_lost");
}

/* After a job on an agent slot: the VERDICT (PASS with the IDevID
 * certificate's fingerprint, or FAIL with the reason), the agent's close,
 * and the slot free again. */
static void agent_finish(st_slot *sl, st_job *j)
{
	kl_station *s = sl->st;
	kl_link_conn *c = sl->conn;
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + AGENT_CLOSE_MS,
		           .cancelled = station_stopping,
		           .cancel_ctx = s };
	/* The verdict goes out also while the station stops (a job aborted
	 * then is a FAIL the DUT should show); waiting for the close does not. */
	kl_link_wait send = { .deadline_ms = kl_link_now_ms() + 2000 };
	const char *reason = "verdict_sent";
	bool pass;
	kl_link_type type;
	const uint8_t *p;
	uint32_t len;

	if (!c)
		return;
	pthread_mutex_lock(&s->mu);
	pass = j->state == KL_JOB_PASSED;
	pthread_mutex_unlock(&s->mu);
	if (kl_link_conn_dead(c)) {
		reason = kl_link_conn_reason(c) ? kl_link_conn_reason(c) : "link_lost";
	} else if (kl_link_send_verdict(c, &send, sl->info.serial, pass, j->fingerprint,
	                                j->reason[0] ? j->reason : "failed", j->message) < 0) {
		kl_log_warn(LOG_MOD, "the verdict for %s did not reach its agent: %s",
		            sl->info.serial, kl_error_detail());
		reason = kl_link_conn_reason(c) ? kl_link_conn_reason(c) : "link_lost";
	} else {
		/* The agent closes once it has its verdict. */
		while (kl_link_conn_recv(c, &w, &type, &p, &len) == 0)
			;
	}
	agent_detach(sl, reason);
}

static void *slot_main(void *arg)
{
	st_slot *sl = arg;
	kl_station *s = sl->st;
	long probe_s = s->link_probe_s;
	double last_ping = kl_link_now_ms();

	for (;;) {
		st_job *j;

		pthread_mutex_lock(&s->mu);
		while (!sl->pending && !atomic_load(&s->stopping)) {
			struct timespec ts;
			int rc;

			clock_gettime(CLOCK_REALTIME, &ts);
			if (sl->agent && sl->conn) {
				/* A DUT attached, waiting for its job. */
				pthread_mutex_unlock(&s->mu);
				agent_idle(sl, &last_ping);
				pthread_mutex_lock(&s->mu);
				if (sl->pending || !sl->conn || atomic_load(&s->stopping))
					continue;
				ts.tv_nsec += 50 * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				(void)pthread_cond_timedwait(&sl->cond, &s->mu, &ts);
				continue;
			}
			ts.tv_sec += probe_s > 0 && !sl->agent ? probe_s : 3600;
			rc = pthread_cond_timedwait(&sl->cond, &s->mu, &ts);
			if (sl->agent && sl->conn)
				last_ping = kl_link_now_ms();
			if (rc == ETIMEDOUT && probe_s > 0 && !sl->agent && !sl->pending &&
			    !atomic_load(&s->stopping)) {
				pthread_mutex_unlock(&s->mu);
				probe_link(sl);
				pthread_mutex_lock(&s->mu);
			}
		}
		if (atomic_load(&s->stopping) && !sl->pending) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		j = sl->pending;
		sl->pending = NULL;
		sl->current = j;
		j->state = KL_JOB_RUNNING;
		j->started_ms = st_wall_ms();
		pthread_mutex_unlock(&s->mu);
		st_event(s, sl->name, job_event_new("job.started", j));

		if (sl->agent && !sl->conn) {
			/* It left between the job's submission and now. */
			pthread_mutex_lock(&s->mu);
			j->state = KL_JOB_FAILED;
			snprintf(j->reason, sizeof(j->reason), "link_lost");
			snprintf(j->message, sizeof(j->message),
			         "the DUT on slot %s left before its job started", sl->name);
			pthread_mutex_unlock(&s->mu);
		} else if (j->kind == KL_JOB_PROVISION) {
			run_provision(s, j);
		} else {
			run_lifecycle(s, j);
		}
		if (sl->agent)
			agent_finish(sl, j);

		pthread_mutex_lock(&s->mu);
		j->finished_ms = st_wall_ms();
		sl->current = NULL;
		sl->last_job = j->id;
		if (j->state == KL_JOB_PASSED)
			s->passed++;
		else
			s->failed++;
		/* A job that passed says the link is up; one that could not open
		 * it says it is down; anything else is left to the next probe. */
		if (sl->agent)
			; /* its DUT came and went: agent_detach said so */
		else if (j->state == KL_JOB_PASSED)
			sl->link_up = 1;
		else if (strcmp(j->reason, "link_failed") == 0 ||
		         strcmp(j->reason, "link_timeout") == 0)
			sl->link_up = 0;
		pthread_mutex_unlock(&s->mu);
		if (j->state == KL_JOB_FAILED && st_hsm_suspect(j->reason))
			st_hsm_check(s, j->actor);
		kl_log_info(LOG_MOD, "job %lld %s %s on %s: %s%s%s", (long long)j->id,
		            kl_job_kind_name(j->kind), j->serial, sl->name,
		            kl_job_state_name(j->state), j->reason[0] ? " " : "", j->reason);
		job_finished_event(s, j);
	}
	return NULL;
}

void st_workers_stop(kl_station *s)
{
	json_object *finished[KL_STATION_MAX_SLOTS] = { 0 };

	pthread_mutex_lock(&s->mu);
	atomic_store(&s->stopping, true);
	for (size_t i = 0; i < s->nslots; i++) {
		st_slot *sl = &s->slots[i];

		if (sl->pending)
			/* Never started: nothing to clean up. */
			finished[i] = st_job_abort_queued(
			    sl->pending, "the station stopped before the job started");
		if (sl->current)
			atomic_store(&sl->current->abort, true);
		pthread_cond_signal(&sl->cond);
	}
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++)
		st_event(s, s->slots[i].name, finished[i]);
	for (size_t i = 0; i < s->nslots; i++)
		if (s->slots[i].started) {
			pthread_join(s->slots[i].thread, NULL);
			s->slots[i].started = false;
		}
}

int st_workers_start(kl_station *s)
{
	for (size_t i = 0; i < s->nslots; i++) {
		int r = st_thread_start(&s->slots[i].thread, slot_main, &s->slots[i]);

		if (r < 0) {
			r = kl_error_wrap("cannot start the worker of slot %s", s->slots[i].name);
			st_workers_stop(s);
			return r;
		}
		s->slots[i].started = true;
	}
	return 0;
}

void st_jobs_free(kl_station *s)
{
	while (s->jobs) {
		st_job *j = s->jobs;

		s->jobs = j->next;
		free(j);
	}
	s->njobs = 0;
}
