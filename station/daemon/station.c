/* The station daemon's core: configuration, slots and their workers, jobs,
 * events, the socket and the poll loop. See station.h; the methods are in
 * station_api.c. */
#include "station.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "hsm.h"
#include "kl_error.h"
#include "kl_log.h"
#include "tpm.h"

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

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void st_lock_backend(kl_station *s)
{
	pthread_mutex_lock(&s->backend);
}

void st_unlock_backend(kl_station *s)
{
	pthread_mutex_unlock(&s->backend);
}

static void lock_hook(void *ctx)
{
	st_lock_backend(ctx);
}

static void unlock_hook(void *ctx)
{
	st_unlock_backend(ctx);
}

static void on_denied(void *ctx, unsigned roles, const char *method);
static int record_signer(kl_station *s);

/* ---- events ---- */

struct st_event {
	struct st_event *next;
	char slot[KL_STATION_SLOT_NAME_MAX + 1]; /* "" for everyone */
	size_t len;
	char line[]; /* a JSON-RPC notification line ending in '\n' */
};

static void wake(kl_station *s)
{
	char c = 0;

	if (s->wake[1] >= 0 && write(s->wake[1], &c, 1) < 0) {
		/* Full pipe: the loop is awake already. */
	}
}

void st_event(kl_station *s, const char *slot, const char *json)
{
	size_t n = strlen(json);
	struct st_event *e;
	static const char pre[] = "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":";

	if (s->offline)
		return;
	e = malloc(sizeof(*e) + sizeof(pre) + n + 3);
	if (!e)
		return;
	e->next = NULL;
	snprintf(e->slot, sizeof(e->slot), "%s", slot ? slot : "");
	e->len = (size_t)sprintf(e->line, "%s%s}\n", pre, json);
	pthread_mutex_lock(&s->mu);
	if (s->ev_count > 100000) {
		/* Nobody drains: the loop is stuck; drop rather than grow. */
		pthread_mutex_unlock(&s->mu);
		free(e);
		return;
	}
	if (s->ev_tail)
		s->ev_tail->next = e;
	else
		s->ev_head = e;
	s->ev_tail = e;
	s->ev_count++;
	pthread_mutex_unlock(&s->mu);
	wake(s);
}

/* An event built with json-c. Takes o. */
static void event_obj(kl_station *s, const char *slot, json_object *o)
{
	if (o)
		st_event(s, slot, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static json_object *event_new(const char *type, const st_job *j)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "time_ms", json_object_new_int64(wall_ms()));
	if (j) {
		json_object_object_add(o, "job", json_object_new_int64(j->id));
		json_object_object_add(o, "slot", json_object_new_string(j->slot->name));
		json_object_object_add(o, "serial", json_object_new_string(j->serial));
		json_object_object_add(o, "kind",
		                       json_object_new_string(kl_job_kind_name(j->kind)));
		/* Provisioning has a fixed number of steps; a lifecycle job's
		 * are counted as they come (0 until then). */
		json_object_object_add(o, "steps", json_object_new_int(j->steps));
	}
	return o;
}

/* ---- jobs ---- */

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
                  const char *tenant, int ek_type, const char *actor, st_job **ret)
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
	if (s->stopping) {
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
	for (size_t i = 0; i < s->nslots; i++) {
		st_slot *c = &s->slots[i];

		if (slot ? strcmp(c->name, slot) == 0 : !c->pending && !c->current) {
			sl = c;
			break;
		}
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
	j->id = ++s->next_job;
	j->kind = kind;
	j->state = KL_JOB_QUEUED;
	j->slot = sl;
	snprintf(j->serial, sizeof(j->serial), "%s", serial);
	snprintf(j->tenant, sizeof(j->tenant), "%s", tenant ? tenant : "");
	snprintf(j->actor, sizeof(j->actor), "%s", actor);
	j->ek_type = ek_type;
	j->queued_ms = wall_ms();
	j->steps = kind == KL_JOB_PROVISION ? KL_STEP__MAX : 0;
	j->next = s->jobs;
	s->jobs = j;
	s->njobs++;
	sl->pending = j;
	jobs_trim(s);
	pthread_cond_signal(&sl->cond);
	pthread_mutex_unlock(&s->mu);
	event_obj(s, sl->name, event_new("job.queued", j));
	*ret = j;
	return 0;
}

static bool job_cancelled(void *ctx)
{
	st_job *j = ctx;

	return atomic_load(&j->abort) || j->slot->st->stopping;
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
	o = event_new(done ? "step.finished" : "step.started", j);
	json_object_object_add(o, "step", json_object_new_string(step));
	if (index >= 0) {
		json_object_object_add(o, "index", json_object_new_int(index + 1));
		json_object_object_add(o, "of", json_object_new_int(j->steps));
	}
	if (done)
		json_object_object_add(o, "ms", json_object_new_double(ms));
	event_obj(s, j->slot->name, o);
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

static void run_provision(kl_station *s, st_job *j)
{
	kl_job job = {
		.serial = j->serial,
		.tenant = j->tenant[0] ? j->tenant : NULL,
		.link = j->slot->link,
		.ek_type = (kl_ek_type)j->ek_type,
		.actor = j->actor,
		.progress = engine_progress,
		.progress_ctx = j,
		.cancelled = job_cancelled,
		.cancel_ctx = j,
	};
	kl_job_result res;
	int rc = kl_engine_provision(&s->ecfg, &job, &res);

	pthread_mutex_lock(&s->mu);
	job_verdict(j, rc, res.rc, res.reason, res.message, kl_step_name(res.failed_step),
	            res.total_ms);
	if (rc == 0) {
		memcpy(j->iak_serial, res.iak_serial, sizeof(j->iak_serial));
		memcpy(j->idevid_serial, res.idevid_serial, sizeof(j->idevid_serial));
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
		.link = j->slot->link,
		.actor = j->actor,
		.progress = life_progress,
		.progress_ctx = j,
		.cancelled = job_cancelled,
		.cancel_ctx = j,
	};
	kl_life_result res;
	int rc;

	memset(&res, 0, sizeof(res));
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
		j->record_id = res.record_id;
	}
	pthread_mutex_unlock(&s->mu);
}

/* After a job that failed in a step that uses the HSM: if the token no
 * longer answers on our session (an HSM that restarted, a network HSM that
 * dropped us), reopen everything of it once, with one login. A login that
 * fails is never tried again (a wrong PIN locks tokens): the station then
 * refuses work that needs the HSM and says why in station.status. */
/* Whether the CA key still signs: through libp11's own sessions, which a
 * token restart leaves dead while ours may have been reopened. backend
 * held. */
static bool ca_key_signs(kl_station *s)
{
	unsigned char digest[32] = { 0 }, sig[1024];
	size_t n = sizeof(sig);
	EVP_PKEY_CTX *c = s->home->ca_key ? EVP_PKEY_CTX_new(s->home->ca_key, NULL) : NULL;
	bool ok =
	    c && EVP_PKEY_sign_init(c) > 0 && EVP_PKEY_sign(c, sig, &n, digest, sizeof(digest)) > 0;

	EVP_PKEY_CTX_free(c);
	ERR_clear_error();
	return ok;
}

static void hsm_check(kl_station *s, const char *actor)
{
	unsigned char b;
	kl_ca *ca;
	int r;

	st_lock_backend(s);
	if (s->hsm_gave_up ||
	    (s->home->hsm && kl_hsm_random(s->home->hsm, &b, 1) == 0 && ca_key_signs(s))) {
		st_unlock_backend(s);
		return;
	}
	kl_log_warn(LOG_MOD, "the HSM does not answer or sign on its sessions: reconnecting once");
	EVP_PKEY_free(s->record_key);
	s->record_key = NULL;
	X509_free(s->record_cert);
	s->record_cert = NULL;
	s->ecfg.ca = NULL;
	s->ecfg.entropy = NULL;
	s->lcfg.ca = NULL;
	s->lcfg.record_key = NULL;
	s->lcfg.record_cert = NULL;
	r = kl_home_ca_reopen(s->home, actor, &ca);
	if (r == 0)
		r = record_signer(s);
	pthread_mutex_lock(&s->mu);
	s->hsm_ok = r == 0;
	snprintf(s->hsm_error, sizeof(s->hsm_error), "%s", r < 0 ? kl_error_detail() : "");
	pthread_mutex_unlock(&s->mu);
	if (r < 0) {
		s->hsm_gave_up = r == -KL_E_PIN || r == -KL_E_INVALID;
		kl_log_error(LOG_MOD, "the HSM could not be reopened: %s", s->hsm_error);
	} else {
		s->ecfg.ca = ca;
		s->ecfg.entropy = s->home->hsm;
		s->lcfg.ca = ca;
		s->lcfg.record_key = s->record_key;
		s->lcfg.record_cert = s->record_cert;
		kl_store_audit(s->store, actor, "station.hsm.reconnected", "{}");
		kl_log_info(LOG_MOD, "the HSM is back");
	}
	st_unlock_backend(s);
	{
		json_object *o = event_new("hsm", NULL);

		json_object_object_add(o, "ok", json_object_new_boolean(r == 0));
		if (r < 0)
			json_object_object_add(o, "error", json_object_new_string(s->hsm_error));
		event_obj(s, NULL, o);
	}
}

static void job_finished_event(kl_station *s, st_job *j)
{
	json_object *o = event_new("job.finished", j);

	pthread_mutex_lock(&s->mu);
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
	pthread_mutex_unlock(&s->mu);
	event_obj(s, j->slot->name, o);
}

/* Whether the slot's TPM answers; only while the slot is idle. */
static void probe_link(st_slot *sl)
{
	kl_tpm *t = NULL;
	kl_tpm_info info;
	int up = kl_tpm_open(sl->link, &t) == 0 && kl_tpm_get_info(t, &info) == 0;
	char why[256];

	snprintf(why, sizeof(why), "%s", up ? "" : kl_error_detail());
	kl_tpm_free(t);
	pthread_mutex_lock(&sl->st->mu);
	int was = sl->link_up;
	sl->link_up = up;
	snprintf(sl->link_error, sizeof(sl->link_error), "%s", why);
	pthread_mutex_unlock(&sl->st->mu);
	if (was != up) {
		json_object *o = event_new("slot.link", NULL);

		json_object_object_add(o, "slot", json_object_new_string(sl->name));
		json_object_object_add(o, "up", json_object_new_boolean(up));
		if (!up)
			json_object_object_add(o, "error", json_object_new_string(why));
		event_obj(sl->st, sl->name, o);
	}
}

static void *slot_main(void *arg)
{
	st_slot *sl = arg;
	kl_station *s = sl->st;
	long probe_s = 2;

	kl_config_int(s->home->conf, "station.link_probe_s", 2, 0, 3600, &probe_s);
	for (;;) {
		st_job *j;

		pthread_mutex_lock(&s->mu);
		while (!sl->pending && !s->stopping) {
			struct timespec ts;
			int rc;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += probe_s > 0 ? probe_s : 3600;
			rc = pthread_cond_timedwait(&sl->cond, &s->mu, &ts);
			if (rc == ETIMEDOUT && probe_s > 0 && !sl->pending && !s->stopping) {
				pthread_mutex_unlock(&s->mu);
				probe_link(sl);
				pthread_mutex_lock(&s->mu);
			}
		}
		if (s->stopping && !sl->pending) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		j = sl->pending;
		sl->pending = NULL;
		sl->current = j;
		j->state = KL_JOB_RUNNING;
		j->started_ms = wall_ms();
		pthread_mutex_unlock(&s->mu);
		event_obj(s, sl->name, event_new("job.started", j));

		if (j->kind == KL_JOB_PROVISION)
			run_provision(s, j);
		else
			run_lifecycle(s, j);

		pthread_mutex_lock(&s->mu);
		j->finished_ms = wall_ms();
		sl->current = NULL;
		sl->last_job = j->id;
		if (j->state == KL_JOB_PASSED)
			s->passed++;
		else
			s->failed++;
		/* A job that passed says the link is up; one that could not open
		 * it says it is down; anything else is left to the next probe. */
		if (j->state == KL_JOB_PASSED)
			sl->link_up = 1;
		else if (strcmp(j->reason, "link_failed") == 0)
			sl->link_up = 0;
		pthread_mutex_unlock(&s->mu);
		if (j->state == KL_JOB_FAILED)
			hsm_check(s, j->actor);
		kl_log_info(LOG_MOD, "job %lld %s %s on %s: %s%s%s", (long long)j->id,
		            kl_job_kind_name(j->kind), j->serial, sl->name,
		            kl_job_state_name(j->state), j->reason[0] ? " " : "", j->reason);
		job_finished_event(s, j);
	}
	return NULL;
}

/* ---- configuration ---- */

static int parse_roles(kl_station *s)
{
	static const struct {
		const char *name;
		unsigned role;
	} roles[] = {
		{ "operator", KL_RPC_ROLE_OPERATOR }, { "automation", KL_RPC_ROLE_AUTOMATION },
		{ "officer", KL_RPC_ROLE_OFFICER },   { "service", KL_RPC_ROLE_SERVICE },
		{ "reader", KL_RPC_ROLE_READER },
	};
	size_t iter = 0;
	const char *key, *value;
	bool any = false;

	while (kl_config_next(s->home->conf, &iter, &key, &value)) {
		unsigned role = 0;
		char buf[1024], *save = NULL;

		if (strncmp(key, "roles.", 6) != 0)
			continue;
		for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
			if (strcmp(key + 6, roles[i].name) == 0)
				role = roles[i].role;
		if (!role)
			return kl_error_set(KL_E_INVALID,
			                    "keyline.conf: [roles] %s is not a role (operator, "
			                    "automation, officer, service, reader)",
			                    key + 6);
		any = true;
		snprintf(buf, sizeof(buf), "%s", value);
		for (char *tok = strtok_r(buf, ", \t", &save); tok;
		     tok = strtok_r(NULL, ", \t", &save)) {
			st_rule *r = &s->rules[s->nrules];
			char *end;

			if (s->nrules >= sizeof(s->rules) / sizeof(s->rules[0]))
				return kl_error_set(KL_E_INVALID,
				                    "keyline.conf: too many [roles] entries");
			r->role = role;
			if (strcmp(tok, "*") == 0) {
				r->kind = RULE_ANY;
			} else if (strncmp(tok, "uid:", 4) == 0 || strncmp(tok, "gid:", 4) == 0) {
				unsigned long v = strtoul(tok + 4, &end, 10);

				if (!tok[4] || *end)
					return kl_error_set(
					    KL_E_INVALID,
					    "keyline.conf: [roles] %s: '%s' is not a number",
					    key + 6, tok);
				r->kind = tok[0] == 'u' ? RULE_UID : RULE_GID;
				r->id = (uint32_t)v;
			} else if (strncmp(tok, "user:", 5) == 0) {
				struct passwd *pw = getpwnam(tok + 5);

				if (!pw)
					return kl_error_set(
					    KL_E_INVALID, "keyline.conf: [roles] %s: no user '%s'",
					    key + 6, tok + 5);
				r->kind = RULE_UID;
				r->id = pw->pw_uid;
			} else if (strncmp(tok, "group:", 6) == 0) {
				struct group *gr = getgrnam(tok + 6);

				if (!gr)
					return kl_error_set(
					    KL_E_INVALID, "keyline.conf: [roles] %s: no group '%s'",
					    key + 6, tok + 6);
				r->kind = RULE_GID;
				r->id = gr->gr_gid;
			} else {
				return kl_error_set(
				    KL_E_INVALID,
				    "keyline.conf: [roles] %s: '%s' is not user:NAME, "
				    "group:NAME, uid:N, gid:N or *",
				    key + 6, tok);
			}
			s->nrules++;
		}
	}
	if (!any) {
		/* Default: root and the station's own user hold every role. */
		s->rules[s->nrules++] = (st_rule){ KL_RPC_ROLE_ALL, RULE_UID, 0 };
		s->rules[s->nrules++] = (st_rule){ KL_RPC_ROLE_ALL, RULE_UID, (uint32_t)getuid() };
	}
	return 0;
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > KL_STATION_SLOT_NAME_MAX)
		return false;
	for (const char *p = n; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '-' && *p != '_' && *p != '.')
			return false;
	return true;
}

static int parse_slots(kl_station *s)
{
	size_t iter = 0;
	const char *key, *value;

	while (kl_config_next(s->home->conf, &iter, &key, &value)) {
		st_slot *sl;

		if (strncmp(key, "slots.", 6) != 0)
			continue;
		if (!name_ok(key + 6))
			return kl_error_set(
			    KL_E_INVALID,
			    "keyline.conf: slot name '%s': 1 to %d letters, digits, "
			    "'-', '_' or '.'",
			    key + 6, KL_STATION_SLOT_NAME_MAX);
		if (!*value || strlen(value) >= sizeof(sl->link))
			return kl_error_set(KL_E_INVALID, "keyline.conf: slot %s: the link is %s",
			                    key + 6, *value ? "too long" : "empty");
		if (s->nslots >= KL_STATION_MAX_SLOTS)
			return kl_error_set(KL_E_INVALID, "keyline.conf: more than %d slots",
			                    KL_STATION_MAX_SLOTS);
		sl = &s->slots[s->nslots++];
		sl->st = s;
		snprintf(sl->name, sizeof(sl->name), "%s", key + 6);
		snprintf(sl->link, sizeof(sl->link), "%s", value);
		sl->link_up = -1;
		pthread_cond_init(&sl->cond, NULL);
	}
	return 0;
}

static int parse_socket(kl_station *s)
{
	char def[PATH_MAX];
	const char *p, *grp;
	long v;
	int r;

	kl_home_path(s->home, "station.sock", def, sizeof(def));
	p = kl_config_get(s->home->conf, "station.socket", def);
	if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return kl_error_set(KL_E_INVALID,
		                    "keyline.conf: station.socket '%s' is longer than a Unix "
		                    "socket path may be (%zu bytes)",
		                    p, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	snprintf(s->sock_path, sizeof(s->sock_path), "%s", p);
	s->sock_mode = 0660;
	s->sock_gid = (gid_t)-1;
	grp = kl_config_get(s->home->conf, "station.socket_group", NULL);
	if (grp) {
		struct group *g = getgrnam(grp);

		if (!g)
			return kl_error_set(KL_E_INVALID,
			                    "keyline.conf: station.socket_group: no "
			                    "group '%s'",
			                    grp);
		s->sock_gid = g->gr_gid;
	}
	if ((r = kl_config_int(s->home->conf, "station.max_clients", 256, 1, 4096, &v)) < 0)
		return r;
	s->max_clients = (int)v;
	if ((r = kl_config_int(s->home->conf, "station.idle_timeout_s", 30, 1, 3600, &v)) < 0)
		return r;
	s->idle_timeout_s = (int)v;
	s->max_out = 4u << 20;
	return 0;
}

/* A home made before the "records" profile existed gets the installed one. */
static int records_profile(kl_station *s)
{
	char def[PATH_MAX], dst[PATH_MAX], src[PATH_MAX];

	kl_home_path(s->home, "profiles", def, sizeof(def));
	snprintf(dst, sizeof(dst), "%s/records.json",
	         kl_config_get(s->home->conf, "ca.profiles", def));
	if (access(dst, R_OK) == 0)
		return 0;
	snprintf(src, sizeof(src), "%s/records.json", kl_home_data_dir("profiles"));
	return kl_copy_file(src, dst);
}

/* The key that signs sanitization records: "station-records" in the CA's
 * token, with a certificate from the CA (profile "records") kept in
 * HOME/ca/records.pem. Made on first start. */
static int record_signer(kl_station *s)
{
	char path[PATH_MAX];
	kl_hsm_key *k = NULL;
	EVP_PKEY *pub = NULL;
	FILE *f;
	int r;

	kl_home_path(s->home, "ca/records.pem", path, sizeof(path));
	f = fopen(path, "r");
	if (f) {
		s->record_cert = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		if (!s->record_cert)
			return kl_error_set_ssl(KL_E_CRYPTO, "%s", path);
	}
	r = kl_hsm_key_find(s->home->hsm, "station-records", &k);
	if (r == -KL_E_NOTFOUND && !s->record_cert)
		r = kl_hsm_key_generate(s->home->hsm, KL_HSM_KEY_EC_P256, "station-records", &k);
	if (r == 0)
		r = kl_hsm_key_private(s->home->hsm, k, &s->record_key);
	if (r == 0)
		r = kl_hsm_key_public(s->home->hsm, k, &pub);
	kl_hsm_key_free(k);
	if (r < 0)
		return kl_error_wrap("the sanitization-record key 'station-records'");
	if (s->record_cert) {
		if (EVP_PKEY_eq(X509_get0_pubkey(s->record_cert), pub) != 1)
			r = kl_error_set(KL_E_CRYPTO,
			                 "%s does not certify the token's 'station-records' key",
			                 path);
	} else {
		char cn[200], pem_path[PATH_MAX];
		kl_cert_request req = {
			.profile = "records",
			.pubkey = pub,
			.cn = cn,
			.o = "Keyline",
			.actor = "station",
		};
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;

		snprintf(cn, sizeof(cn), "%s sanitization records", s->station_id);
		r = records_profile(s);
		if (r == 0)
			r = kl_ca_issue(s->home->ca, &req, &s->record_cert, NULL);
		if (r == 0 && b && PEM_write_bio_X509(b, s->record_cert)) {
			n = BIO_get_mem_data(b, &p);
			snprintf(pem_path, sizeof(pem_path), "%s", path);
			r = kl_write_file(pem_path, p, (size_t)n, 0644);
		} else if (r == 0) {
			r = kl_error_set_ssl(KL_E_CRYPTO, "records certificate to PEM");
		}
		BIO_free(b);
		if (r < 0)
			r = kl_error_wrap("the sanitization-record certificate");
	}
	EVP_PKEY_free(pub);
	return r;
}

static const kl_rpc_method *const station_tables[] = { kl_station_methods, NULL };

static kl_station *station_new(void)
{
	kl_station *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->backend, NULL);
	pthread_mutex_init(&s->mu, NULL);
	s->wake[0] = s->wake[1] = -1;
	s->lfd = -1;
	s->started_ms = wall_ms();
	s->self_uid = getuid();
	s->rpc.tables = station_tables;
	s->rpc.on_denied = on_denied;
	return s;
}

int kl_station_open_offline(const char *home_dir, kl_station **ret)
{
	kl_station *s = station_new();
	int r;

	if (!s)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	s->offline = true;
	if ((r = kl_home_open(home_dir, &s->home)) < 0 ||
	    (r = kl_home_store(s->home, &s->store)) < 0 ||
	    (r = kl_registry_open(s->store, &s->reg)) < 0) {
		kl_station_free(s);
		return r;
	}
	snprintf(s->station_id, sizeof(s->station_id), "%s",
	         kl_config_get(s->home->conf, "station.id", "station"));
	s->rstore = s->store;
	s->rreg = s->reg;
	*ret = s;
	return 0;
}

int kl_station_open(const char *home_dir, kl_station **ret)
{
	kl_station *s = station_new();
	int r;

	if (!s)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	if ((r = kl_home_open(home_dir, &s->home)) < 0)
		goto fail;
	snprintf(s->station_id, sizeof(s->station_id), "%s",
	         kl_config_get(s->home->conf, "station.id", "station"));
	if ((r = parse_slots(s)) < 0 || (r = parse_roles(s)) < 0 || (r = parse_socket(s)) < 0)
		goto fail;
	if (s->nslots == 0) {
		r = kl_error_set(
		    KL_E_INVALID,
		    "keyline.conf has no [slots]: name at least one slot and its link, "
		    "e.g. 'A = swtpm:host=127.0.0.1,port=2321' (docs/station.md)");
		goto fail;
	}
	if ((r = kl_config_int(s->home->conf, "ca.crl_days", 7, 1, 366, &s->crl_days)) < 0)
		goto fail;
	/* The registry, the HSM (one login) and the CA, the trust bundle. */
	r = kl_home_engine_config(s->home, &s->ecfg, &s->reg, &s->trust);
	if (r < 0) {
		r = kl_error_wrap("cannot start: %s", !s->home->store ? "the registry is unusable"
		                                      : !s->home->ca
		                                          ? "the HSM or the CA is unusable"
		                                          : "the trust bundle is unusable");
		goto fail;
	}
	s->store = s->home->store;
	{
		char def[PATH_MAX];

		kl_home_path(s->home, "registry.db", def, sizeof(def));
		if ((r = kl_store_open(kl_config_get(s->home->conf, "registry.path", def),
		                       &s->rstore)) < 0 ||
		    (r = kl_registry_open(s->rstore, &s->rreg)) < 0) {
			r = kl_error_wrap("cannot start: the registry is unusable");
			goto fail;
		}
	}
	if ((r = record_signer(s)) < 0) {
		r = kl_error_wrap("cannot start");
		goto fail;
	}
	s->hsm_ok = true;
	s->ecfg.station_id = s->station_id;
	s->ecfg.lock = lock_hook;
	s->ecfg.unlock = unlock_hook;
	s->ecfg.lock_ctx = s;
	s->lcfg = (kl_life_config){
		.store = s->store,
		.reg = s->reg,
		.ca = s->home->ca,
		.station_id = s->station_id,
		.idevid_profile = s->ecfg.idevid_profile,
		.profile_for = s->ecfg.profile_for,
		.profile_ctx = s->ecfg.profile_ctx,
		.record_key = s->record_key,
		.record_cert = s->record_cert,
		.lock = lock_hook,
		.unlock = unlock_hook,
		.lock_ctx = s,
	};
	kl_home_path(s->home, "crl/issuing.crl", s->crl_path, sizeof(s->crl_path));
	*ret = s;
	return 0;
fail:
	kl_station_free(s);
	return r;
}

int st_publish_crl(kl_station *s, const char *actor, char *path, size_t size, int64_t *number)
{
	int r = kl_home_publish_crl(s->home, s->crl_days, actor, path, size);

	if (r == 0 && number) {
		kl_issuer_row row;

		*number = 0;
		if (kl_store_issuer_get(s->store,
		                        kl_config_get(s->home->conf, "ca.issuer", "issuing"),
		                        &row) == 0) {
			*number = row.crl_number;
			kl_issuer_row_clear(&row);
		}
	}
	if (r == 0) {
		json_object *o = event_new("crl.published", NULL);

		json_object_object_add(o, "path", json_object_new_string(path));
		event_obj(s, NULL, o);
	}
	return r;
}

/* ---- connections ---- */

typedef struct st_conn {
	int fd;
	kl_rpc_conn *rpc;
	st_caller caller;
	char *out;
	size_t out_len, out_cap, out_off;
	time_t last_rx;
	bool closing; /* close once out is written */
} st_conn;

size_t st_client_count(kl_station *s)
{
	return s->nconns;
}

static int conn_queue(st_conn *c, const char *line, size_t len)
{
	kl_station *s = c->caller.st;

	if (c->closing)
		return -KL_E_IO; /* dropped for slowness, or gone: nothing more to send */
	if (c->out_len - c->out_off + len > s->max_out) {
		kl_log_warn(LOG_MOD, "client %s does not read its answers: disconnected",
		            c->caller.actor);
		c->closing = true;
		c->out_len = c->out_off = 0;
		return -KL_E_IO;
	}
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p)
			return -KL_E_NOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	return 0;
}

static int conn_out(void *ctx, const char *line, size_t len)
{
	st_conn *c = ctx;
	int r = conn_queue(c, line, len);

	return r == -KL_E_IO ? 0 : r;
}

static void conn_flush(st_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->closing = true, c->out_off = c->out_len;
			return;
		}
		c->out_off += (size_t)n;
	}
}

static void conn_free(st_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	kl_rpc_conn_free(c->rpc);
	free(c->out);
	free(c);
}

static unsigned peer_roles(kl_station *s, uid_t uid, gid_t gid)
{
	gid_t groups[64];
	int ngroups = 64;
	unsigned roles = 0;
	struct passwd pw, *pwp = NULL;
	char buf[1024];

	groups[0] = gid;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp ||
	    getgrouplist(pwp->pw_name, gid, groups, &ngroups) < 0)
		ngroups = 1;
	for (size_t i = 0; i < s->nrules; i++) {
		const st_rule *r = &s->rules[i];

		if (r->kind == RULE_ANY || (r->kind == RULE_UID && r->id == uid))
			roles |= r->role;
		for (int g = 0; r->kind == RULE_GID && g < ngroups; g++)
			if (groups[g] == r->id)
				roles |= r->role;
	}
	return roles;
}

static void on_denied(void *ctx, unsigned roles, const char *method)
{
	st_caller *c = ctx;
	json_object *o = json_object_new_object();
	char rs[128];

	json_object_object_add(o, "method", json_object_new_string(method));
	json_object_object_add(o, "roles",
	                       json_object_new_string(kl_rpc_roles_str(roles, rs, sizeof(rs))));
	if (!c->st->offline) {
		st_lock_backend(c->st);
		kl_store_audit(c->st->store, c->actor, "station.api.denied",
		               json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		st_unlock_backend(c->st);
	}
	json_object_put(o);
	kl_log_warn(LOG_MOD, "%s denied %s", c->actor, method);
}

static void accept_one(kl_station *s)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char rs[128];
	st_conn *c;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->nconns >= (size_t)s->max_clients) {
		static const char busy[] =
		    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32025,\"message\":\"too many "
		    "clients: the station serves at most station.max_clients\",\"data\":"
		    "{\"reason\":\"unavailable\"}},\"id\":null}\n";

		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* It is going away anyway. */
		}
		close(fd);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->last_rx = time(NULL);
	c->caller.st = s;
	c->caller.conn = c;
	c->caller.roles = peer_roles(s, cred.uid, cred.gid);
	{
		struct passwd pw, *pwp = NULL;
		char buf[1024];

		getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &pwp);
		snprintf(c->caller.actor, sizeof(c->caller.actor), "user:%s(%u)",
		         pwp ? pwp->pw_name : "?", (unsigned)cred.uid);
	}
	if (kl_rpc_conn_new(&s->rpc, c->caller.roles, &c->caller, &c->rpc) < 0) {
		conn_free(c);
		return;
	}
	if (s->nconns == s->conns_cap) {
		size_t cap = s->conns_cap ? s->conns_cap * 2 : 16;
		st_conn **p = realloc(s->conns, cap * sizeof(*p));

		if (!p) {
			conn_free(c);
			return;
		}
		s->conns = p;
		s->conns_cap = cap;
	}
	s->conns[s->nconns++] = c;
	kl_log_debug(LOG_MOD, "client %s (pid %d) connected with roles %s", c->caller.actor,
	             (int)cred.pid, kl_rpc_roles_str(c->caller.roles, rs, sizeof(rs)));
}

static void conn_read(st_conn *c)
{
	char buf[16384];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0) {
			c->closing = true;
			c->out_off = c->out_len; /* nobody to tell */
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->closing = true, c->out_off = c->out_len;
			return;
		}
		c->last_rx = time(NULL);
		if (kl_rpc_feed(c->rpc, buf, (size_t)n, conn_out, c) < 0 || c->closing)
			return;
		/* Answer before reading more: a client that only writes cannot
		 * make us buffer without bound. */
		if (c->out_len - c->out_off > 0)
			return;
	}
}

/* Sends queued events to the subscribers they concern. */
static void dispatch_events(kl_station *s)
{
	struct st_event *e;

	pthread_mutex_lock(&s->mu);
	e = s->ev_head;
	s->ev_head = s->ev_tail = NULL;
	s->ev_count = 0;
	pthread_mutex_unlock(&s->mu);
	while (e) {
		struct st_event *next = e->next;

		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];

			if (!c->caller.subscribed || c->closing)
				continue;
			if (c->caller.sub_slot[0] && e->slot[0] &&
			    strcmp(c->caller.sub_slot, e->slot))
				continue;
			conn_queue(c, e->line, e->len);
		}
		free(e);
		e = next;
	}
}

static int listen_socket(kl_station *s)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;
	mode_t old;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", s->sock_path);
	/* A socket file that answers belongs to a running station. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		return kl_error_set(KL_E_EXISTS, "a station is already running on %s",
		                    s->sock_path);
	}
	close(fd);
	unlink(s->sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "socket: %s", strerror(errno));
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		umask(old);
		close(fd);
		return kl_error_set(KL_E_IO, "bind %s: %s", s->sock_path, strerror(e));
	}
	umask(old);
	if (chmod(s->sock_path, s->sock_mode) < 0 ||
	    (s->sock_gid != (gid_t)-1 && chown(s->sock_path, (uid_t)-1, s->sock_gid) < 0) ||
	    listen(fd, 128) < 0) {
		int e = errno;

		close(fd);
		unlink(s->sock_path);
		return kl_error_set(KL_E_IO, "socket %s: %s", s->sock_path, strerror(e));
	}
	s->lfd = fd;
	return 0;
}

void kl_station_stop(kl_station *s)
{
	s->stopping = 1;
	if (s->wake[1] >= 0) {
		char c = 1;

		if (write(s->wake[1], &c, 1) < 0) {
			/* The loop is awake already. */
		}
	}
}

static void stop_workers(kl_station *s)
{
	pthread_mutex_lock(&s->mu);
	s->stopping = 1;
	for (size_t i = 0; i < s->nslots; i++) {
		st_slot *sl = &s->slots[i];

		if (sl->pending) {
			/* Never started: nothing to clean up. */
			sl->pending->state = KL_JOB_ABORTED;
			snprintf(sl->pending->reason, sizeof(sl->pending->reason), "aborted");
			snprintf(sl->pending->message, sizeof(sl->pending->message),
			         "the station stopped before the job started");
			sl->pending = NULL;
		}
		if (sl->current)
			atomic_store(&sl->current->abort, true);
		pthread_cond_signal(&sl->cond);
	}
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++)
		if (s->slots[i].started) {
			pthread_join(s->slots[i].thread, NULL);
			s->slots[i].started = false;
		}
}

int kl_station_run(kl_station *s)
{
	struct pollfd *pfd = NULL;
	size_t pfd_cap = 0;
	int r;

	if (s->offline)
		return kl_error_set(KL_E_INVALID, "an offline station cannot run");
	if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0)
		return kl_error_set(KL_E_IO, "pipe: %s", strerror(errno));
	if ((r = listen_socket(s)) < 0)
		return r;
	for (size_t i = 0; i < s->nslots; i++) {
		if (pthread_create(&s->slots[i].thread, NULL, slot_main, &s->slots[i]) != 0) {
			r = kl_error_set(KL_E_NOMEM, "cannot start the worker of slot %s",
			                 s->slots[i].name);
			stop_workers(s);
			return r;
		}
		s->slots[i].started = true;
	}
	kl_log_info(LOG_MOD, "station %s serving %zu slot(s) on %s", s->station_id, s->nslots,
	            s->sock_path);
	{
		st_caller sys = { .st = s };

		snprintf(sys.actor, sizeof(sys.actor), "%s", kl_home_actor());
		st_lock_backend(s);
		kl_store_audit(s->store, sys.actor, "station.start", "{}");
		st_unlock_backend(s);
	}

	while (!s->stopping) {
		size_t n = 0;
		time_t now;

		if (pfd_cap < s->nconns + 2) {
			pfd_cap = s->nconns + 64;
			free(pfd);
			pfd = calloc(pfd_cap, sizeof(*pfd));
			if (!pfd) {
				r = kl_error_set(KL_E_NOMEM, "out of memory");
				break;
			}
		}
		pfd[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];
			short ev = c->closing ? 0 : POLLIN;

			if (c->out_off < c->out_len)
				ev |= POLLOUT;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		if (poll(pfd, n, 1000) < 0 && errno != EINTR) {
			r = kl_error_set(KL_E_IO, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			char buf[256];

			while (read(s->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		/* Clients first, in the order polled; new ones join next round. */
		now = time(NULL);
		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];
			short re = pfd[i + 2].revents;

			if (re & (POLLIN | POLLHUP | POLLERR))
				conn_read(c);
			/* A partial request that stops arriving is a stuck client. */
			if (!c->closing && kl_rpc_conn_buffered(c->rpc) > 0 &&
			    now - c->last_rx > s->idle_timeout_s) {
				static const char slow[] =
				    "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32600,\"message\":"
				    "\"request incomplete: no complete line within "
				    "station.idle_timeout_s\",\"data\":{\"reason\":\"timeout\"}},"
				    "\"id\":null}\n";

				conn_queue(c, slow, sizeof(slow) - 1);
				c->closing = true;
			}
		}
		dispatch_events(s);
		if (pfd[1].revents & POLLIN)
			for (int k = 0; k < 64; k++) {
				size_t before = s->nconns;

				accept_one(s);
				if (s->nconns == before)
					break;
			}
		for (size_t i = 0; i < s->nconns;) {
			st_conn *c = s->conns[i];

			conn_flush(c);
			if (c->closing && c->out_off >= c->out_len) {
				conn_free(c);
				s->conns[i] = s->conns[--s->nconns];
				continue;
			}
			i++;
		}
	}
	free(pfd);
	kl_log_info(LOG_MOD, "station stopping: interrupting running jobs at their next step");
	stop_workers(s);
	dispatch_events(s);
	for (size_t i = 0; i < s->nconns; i++) {
		conn_flush(s->conns[i]);
		conn_free(s->conns[i]);
	}
	s->nconns = 0;
	close(s->lfd);
	s->lfd = -1;
	unlink(s->sock_path);
	st_lock_backend(s);
	kl_store_audit(s->store, kl_home_actor(), "station.stop", "{}");
	st_unlock_backend(s);
	return r < 0 ? r : 0;
}

struct call_out {
	char *line;
};

static int call_out(void *ctx, const char *line, size_t len)
{
	struct call_out *o = ctx;

	free(o->line);
	o->line = strndup(line, len);
	return o->line ? 0 : -KL_E_NOMEM;
}

int kl_station_call(kl_station *s, unsigned roles, const char *actor, const char *request,
                    char **answer)
{
	st_caller caller = { .st = s, .roles = roles };
	struct call_out out = { 0 };
	kl_rpc_conn *c = NULL;
	int r;

	snprintf(caller.actor, sizeof(caller.actor), "%s", actor);
	if ((r = kl_rpc_conn_new(&s->rpc, roles, &caller, &c)) < 0)
		return r;
	r = kl_rpc_feed(c, request, strlen(request), call_out, &out);
	if (r == 0 && !strchr(request, '\n'))
		r = kl_rpc_feed(c, "\n", 1, call_out, &out);
	kl_rpc_conn_free(c);
	if (r == 0 && !out.line)
		r = kl_error_set(KL_E_INVALID, "no answer");
	if (r < 0) {
		free(out.line);
		return r;
	}
	*answer = out.line;
	return 0;
}

void kl_station_free(kl_station *s)
{
	if (!s)
		return;
	if (!s->offline)
		stop_workers(s);
	for (size_t i = 0; i < s->nconns; i++)
		conn_free(s->conns[i]);
	free(s->conns);
	while (s->jobs) {
		st_job *j = s->jobs;

		s->jobs = j->next;
		free(j);
	}
	while (s->ev_head) {
		struct st_event *e = s->ev_head;

		s->ev_head = e->next;
		free(e);
	}
	for (size_t i = 0; i < s->nslots; i++)
		pthread_cond_destroy(&s->slots[i].cond);
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->sock_path);
	}
	for (int i = 0; i < 2; i++)
		if (s->wake[i] >= 0)
			close(s->wake[i]);
	EVP_PKEY_free(s->record_key);
	X509_free(s->record_cert);
	if (s->rreg != s->reg) {
		kl_registry_free(s->rreg);
		kl_store_free(s->rstore);
	}
	kl_registry_free(s->reg);
	kl_trust_free(s->trust);
	kl_home_free(s->home);
	pthread_mutex_destroy(&s->backend);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
