/* The station's socket API: one handler per method (docs/api.md). Every
 * method lists its roles; the JSON-RPC layer (rpc.c) checks them and the
 * parameters before a handler runs. Handlers run on the daemon's main
 * thread and must answer promptly: work on a DUT is a job on its slot, and
 * reads go through the station's read connection (rstore, rreg) without
 * waiting for the backend lock that the slots' commits hold. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "station.h"

#define OP  KL_RPC_ROLE_OPERATOR
#define AUT KL_RPC_ROLE_AUTOMATION
#define OFF KL_RPC_ROLE_OFFICER
#define SVC KL_RPC_ROLE_SERVICE
#define RDR KL_RPC_ROLE_READER
#define ALL KL_RPC_ROLE_ALL

#ifndef KL_VERSION
#define KL_VERSION "0.0.0"
#endif

static st_caller *caller(kl_rpc_call *call)
{
	return kl_rpc_call_ctx(call);
}

static kl_station *station(kl_rpc_call *call)
{
	return caller(call)->st;
}

static const char *str_or(kl_rpc_call *call, const char *name, const char *def)
{
	const char *v;

	return kl_rpc_param_str(call, name, &v) == 0 ? v : def;
}

static int64_t int_or(kl_rpc_call *call, const char *name, int64_t def)
{
	int64_t v;

	return kl_rpc_param_int(call, name, &v) == 0 ? v : def;
}

static int need_online(kl_rpc_call *call)
{
	if (station(call)->offline)
		return kl_rpc_reply_error(call, KL_E_UNAVAILABLE,
		                          "%s needs the running station (keyline station)",
		                          kl_rpc_call_method(call));
	return 0;
}

/* ---- station, slots ---- */

static int m_status(kl_rpc_call *call)
{
	kl_station *s = station(call);
	kl_rpc_obj *o, *slots;
	size_t busy = 0, up = 0;
	int64_t running = 0;

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "station", s->station_id);
	kl_rpc_obj_put_str(o, "version", KL_VERSION);
	kl_rpc_obj_put_bool(o, "running", !s->offline);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++) {
		busy += s->slots[i].current || s->slots[i].pending;
		up += s->slots[i].link_up == 1;
	}
	for (st_job *j = s->jobs; j; j = j->next)
		running += j->state == KL_JOB_RUNNING;
	kl_rpc_obj_put_int(o, "started_ms", s->started_ms);
	kl_rpc_obj_put_int(o, "uptime_s", (int64_t)time(NULL) - s->started_ms / 1000);
	kl_rpc_obj_put_object(o, "slots", &slots);
	kl_rpc_obj_put_int(slots, "total", (int64_t)s->nslots);
	kl_rpc_obj_put_int(slots, "busy", (int64_t)busy);
	kl_rpc_obj_put_int(slots, "link_up", (int64_t)up);
	kl_rpc_obj_put_object(o, "jobs", &slots);
	kl_rpc_obj_put_int(slots, "running", running);
	kl_rpc_obj_put_int(slots, "passed", s->passed);
	kl_rpc_obj_put_int(slots, "failed", s->failed);
	pthread_mutex_unlock(&s->mu);
	kl_rpc_obj_put_int(o, "clients", (int64_t)st_client_count(s));
	pthread_mutex_lock(&s->mu);
	kl_rpc_obj_put_bool(o, "hsm_logged_in", !s->offline && s->hsm_ok);
	if (!s->offline && !s->hsm_ok)
		kl_rpc_obj_put_str(o, "hsm_error", s->hsm_error);
	pthread_mutex_unlock(&s->mu);
	kl_rpc_obj_put_bool(o, "stopping", s->stopping != 0);
	return 0;
}

/* A job as JSON. mu held. */
static void job_put(kl_rpc_obj *o, const st_job *j)
{
	kl_rpc_obj *r, *t;

	kl_rpc_obj_put_int(o, "job", j->id);
	kl_rpc_obj_put_str(o, "kind", kl_job_kind_name(j->kind));
	kl_rpc_obj_put_str(o, "state", kl_job_state_name(j->state));
	kl_rpc_obj_put_str(o, "slot", j->slot->name);
	kl_rpc_obj_put_str(o, "serial", j->serial);
	if (j->tenant[0])
		kl_rpc_obj_put_str(o, "tenant", j->tenant);
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

static int m_slots(kl_rpc_call *call)
{
	kl_station *s = station(call);
	kl_rpc_obj *o, *a, *e, *j;

	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "slots", &a) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++) {
		const st_slot *sl = &s->slots[i];
		const st_job *cur = sl->current ? sl->current : sl->pending;

		kl_rpc_obj_put_object(a, NULL, &e);
		kl_rpc_obj_put_str(e, "name", sl->name);
		kl_rpc_obj_put_str(e, "link", sl->link);
		if (sl->link_up < 0)
			kl_rpc_obj_put_str(e, "link_up", NULL);
		else
			kl_rpc_obj_put_bool(e, "link_up", sl->link_up == 1);
		if (sl->link_up == 0)
			kl_rpc_obj_put_str(e, "link_error", sl->link_error);
		kl_rpc_obj_put_str(e, "state", cur ? "busy" : "idle");
		if (cur) {
			kl_rpc_obj_put_object(e, "job", &j);
			job_put(j, cur);
		} else if (sl->last_job) {
			/* What the operator last saw on this slot, while it is
			 * still remembered. */
			const st_job *last = st_job_find(s, sl->last_job);

			if (last) {
				kl_rpc_obj_put_object(e, "last_job", &j);
				job_put(j, last);
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* ---- jobs ---- */

static int submit(kl_rpc_call *call, kl_job_kind kind, const char *serial, const char *slot,
                  const char *tenant, int ek)
{
	kl_station *s = station(call);
	st_job *j;
	kl_rpc_obj *o;
	int r;

	if ((r = kl_registry_check_name("serial", serial)) < 0 ||
	    (tenant && (r = kl_registry_check_name("tenant", tenant)) < 0))
		return kl_rpc_reply_params(call, "%s", kl_error_detail());
	r = st_job_submit(s, slot, kind, serial, tenant, ek, caller(call)->actor, &j);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	job_put(o, j);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int m_provision(kl_rpc_call *call)
{
	const char *serial, *ek = str_or(call, "ek_type", "auto");
	kl_ek_type t = KL_EK__MAX;

	kl_rpc_param_str(call, "serial", &serial);
	if (strcmp(ek, "auto") != 0 && kl_ek_type_from_name(ek, &t) < 0)
		return kl_rpc_reply_params(call, "ek_type must be auto, rsa2048, p256 or "
		                                 "p384");
	return submit(call, KL_JOB_PROVISION, serial, str_or(call, "slot", NULL),
	              str_or(call, "tenant", NULL), (int)t);
}

static int m_job_get(kl_rpc_call *call)
{
	kl_station *s = station(call);
	int64_t id = int_or(call, "job", 0);
	kl_rpc_obj *o;
	st_job *j;

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	pthread_mutex_lock(&s->mu);
	j = st_job_find(s, id);
	if (j)
		job_put(o, j);
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
	kl_station *s = station(call);
	int64_t limit = int_or(call, "limit", 50), n = 0;
	const char *slot = str_or(call, "slot", NULL);
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
		job_put(e, j);
		n++;
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int m_job_abort(kl_rpc_call *call)
{
	kl_station *s = station(call);
	int64_t id = int_or(call, "job", 0);
	kl_rpc_obj *o;
	st_job *j;
	const char *was = NULL;

	pthread_mutex_lock(&s->mu);
	j = st_job_find(s, id);
	if (j && j->state == KL_JOB_QUEUED) {
		/* Not started: take it off its slot. */
		j->slot->pending = NULL;
		j->state = KL_JOB_ABORTED;
		snprintf(j->reason, sizeof(j->reason), "aborted");
		snprintf(j->message, sizeof(j->message), "aborted by %s before it started",
		         caller(call)->actor);
		was = "queued";
	} else if (j && j->state == KL_JOB_RUNNING) {
		atomic_store(&j->abort, true);
		was = "running";
	} else if (j) {
		was = kl_job_state_name(j->state);
	}
	pthread_mutex_unlock(&s->mu);
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
	                       ? "the job stops at its next step and cleans up; watch job.finished"
	                       : "the job will not run");
	return 0;
}

/* ---- events ---- */

static int m_subscribe(kl_rpc_call *call)
{
	st_caller *c = caller(call);
	const char *slot = str_or(call, "slot", NULL);
	kl_rpc_obj *o;
	bool found = !slot;

	for (size_t i = 0; slot && i < c->st->nslots; i++)
		found |= strcmp(c->st->slots[i].name, slot) == 0;
	if (!found)
		return kl_rpc_reply_error(call, KL_E_NOTFOUND, "no slot named '%s'", slot);
	if (!c->conn)
		return kl_rpc_reply_error(call, KL_E_UNSUPPORTED,
		                          "events need a connection to the running station");
	c->subscribed = true;
	snprintf(c->sub_slot, sizeof(c->sub_slot), "%s", slot ? slot : "");
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "subscribed", true);
	kl_rpc_obj_put_str(o, "slot", slot);
	return 0;
}

static int m_unsubscribe(kl_rpc_call *call)
{
	kl_rpc_obj *o;

	caller(call)->subscribed = false;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "subscribed", false);
	return 0;
}

/* ---- devices ---- */

static void device_put(kl_rpc_obj *e, const kl_registry_device *d)
{
	kl_rpc_obj_put_str(e, "serial", d->serial);
	kl_rpc_obj_put_str(e, "tenant", d->tenant);
	kl_rpc_obj_put_str(e, "work_order", d->work_order[0] ? d->work_order : NULL);
	kl_rpc_obj_put_str(e, "state", kl_registry_state_name(d->state));
	kl_rpc_obj_put_str(e, "ek_sha256", d->ek_sha256[0] ? d->ek_sha256 : NULL);
	kl_rpc_obj_put_int(e, "created", d->created);
	kl_rpc_obj_put_int(e, "state_time", d->state_time);
}

static int list_one(void *ctx, const kl_registry_device *d)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r == 0)
		device_put(e, d);
	return r;
}

static int m_devices_list(kl_rpc_call *call)
{
	kl_station *s = station(call);
	const char *state = str_or(call, "state", NULL);
	kl_registry_filter f = {
		.state = -1,
		.tenant = str_or(call, "tenant", NULL),
		.search = str_or(call, "search", NULL),
		.offset = int_or(call, "offset", 0),
		.limit = int_or(call, "limit", 100),
	};
	kl_rpc_obj *o, *a;
	int64_t total = 0;
	bool newest = false;
	int r;

	kl_rpc_param_bool(call, "newest_first", &newest);
	f.newest_first = newest;
	if (state && (f.state = kl_registry_state_from_name(state)) < 0)
		return kl_rpc_reply_params(call, "%s", kl_error_detail());
	if (f.offset < 0 || f.limit < 1 || f.limit > 1000)
		return kl_rpc_reply_params(call, "offset must be >= 0 and limit 1..1000");
	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "devices", &a) < 0)
		return -KL_E_NOMEM;
	r = kl_registry_device_count(s->rreg, &f, &total);
	if (r == 0)
		r = kl_registry_device_list(s->rreg, &f, list_one, a);
	if (r < 0)
		return r;
	kl_rpc_obj_put_int(o, "total", total);
	kl_rpc_obj_put_int(o, "offset", f.offset);
	kl_rpc_obj_put_int(o, "count", r);
	return 0;
}

static int history_one(void *ctx, const kl_registry_event *ev)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r < 0)
		return r;
	kl_rpc_obj_put_str(e, "from",
	                   ev->from < 0 ? NULL : kl_registry_state_name((kl_device_state)ev->from));
	kl_rpc_obj_put_str(e, "to", kl_registry_state_name(ev->to));
	kl_rpc_obj_put_str(e, "tenant", ev->tenant);
	kl_rpc_obj_put_str(e, "reason", ev->reason);
	kl_rpc_obj_put_str(e, "actor", ev->actor);
	kl_rpc_obj_put_int(e, "time", ev->time);
	return 0;
}

static int evidence_one(void *ctx, const char *json, int64_t created)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r == 0)
		r = kl_rpc_obj_put_int(e, "created", created);
	if (r == 0)
		r = kl_rpc_obj_put_json(e, "record", json);
	return r;
}

static int cert_one(void *ctx, const kl_registry_cert *c)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r < 0)
		return r;
	kl_rpc_obj_put_str(e, "serial", c->serial);
	kl_rpc_obj_put_str(e, "profile", c->profile);
	kl_rpc_obj_put_str(e, "state", c->state);
	kl_rpc_obj_put_int(e, "not_after", c->not_after);
	kl_rpc_obj_put_bool(e, "revoked", c->revoked != 0);
	if (c->revoked) {
		kl_rpc_obj_put_int(e, "revoked_time", c->revoked);
		kl_rpc_obj_put_str(e, "revocation_reason", kl_crl_reason_name(c->reason));
	}
	if (c->der) {
		const unsigned char *p = c->der;
		X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
		BIO *b = BIO_new(BIO_s_mem());
		char *pem;
		long n;

		if (x && b && PEM_write_bio_X509(b, x)) {
			n = BIO_get_mem_data(b, &pem);
			char *z = strndup(pem, (size_t)n);

			kl_rpc_obj_put_str(e, "pem", z);
			free(z);
		}
		if (x) {
			char subj[256];

			X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
			kl_rpc_obj_put_str(e, "subject", subj);
		}
		BIO_free(b);
		X509_free(x);
	}
	return 0;
}

struct audit_ctx {
	kl_rpc_obj *arr;
	const char *serial; /* only entries whose detail names it */
};

static int audit_one(void *ctx, const kl_audit_entry *a)
{
	struct audit_ctx *c = ctx;
	kl_rpc_obj *e;
	int r;

	if (c->serial) {
		char needle[160];

		snprintf(needle, sizeof(needle), "\"%s\"", c->serial);
		if (!a->detail || !strstr(a->detail, needle))
			return 0;
	}
	if ((r = kl_rpc_obj_put_object(c->arr, NULL, &e)) < 0)
		return r;
	kl_rpc_obj_put_int(e, "seq", a->seq);
	kl_rpc_obj_put_int(e, "time_ms", a->time_ms);
	kl_rpc_obj_put_str(e, "actor", a->actor);
	kl_rpc_obj_put_str(e, "action", a->action);
	if (kl_rpc_obj_put_json(e, "detail", a->detail) < 0)
		kl_rpc_obj_put_str(e, "detail", a->detail);
	return 0;
}

static int m_devices_show(kl_rpc_call *call)
{
	kl_station *s = station(call);
	const char *serial = str_or(call, "serial", "");
	kl_registry_device d;
	kl_rpc_obj *o, *dev, *h, *ev, *certs, *au;
	int r;

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	r = kl_registry_device_get(s->rreg, serial, &d);
	if (r == 0) {
		kl_rpc_obj_put_object(o, "device", &dev);
		device_put(dev, &d);
		kl_rpc_obj_put_str(dev, "expected_ek", d.expected_ek[0] ? d.expected_ek : NULL);
		kl_rpc_obj_put_array(o, "history", &h);
		kl_rpc_obj_put_array(o, "certificates", &certs);
		kl_rpc_obj_put_array(o, "evidence", &ev);
		kl_rpc_obj_put_array(o, "audit", &au);
		struct audit_ctx ac = { .arr = au, .serial = serial };

		if ((r = kl_registry_device_history(s->rreg, serial, history_one, h)) >= 0 &&
		    (r = kl_registry_device_certs(s->rreg, serial, cert_one, certs)) >= 0 &&
		    (r = kl_registry_device_evidence(s->rreg, serial, evidence_one, ev)) >= 0)
			r = kl_store_audit_list(s->rstore, 0, NULL, 5000, audit_one, &ac);
	}
	return r < 0 ? r : 0;
}

static int m_preregister(kl_rpc_call *call)
{
	kl_station *s = station(call);
	const char *tenant = str_or(call, "tenant", ""), *wo = str_or(call, "work_order", "");
	const char *items_json = NULL;
	int64_t quota = int_or(call, "quota", -1);
	kl_registry_item *items = NULL;
	json_object *arr;
	kl_rpc_obj *o;
	size_t n;
	int r;

	kl_rpc_param_json(call, "items", &items_json);
	arr = json_tokener_parse(items_json);
	n = arr ? json_object_array_length(arr) : 0;
	if (n == 0 || n > 100000) {
		json_object_put(arr);
		return kl_rpc_reply_params(call, "items must hold 1 to 100000 entries");
	}
	items = calloc(n, sizeof(*items));
	if (!items) {
		json_object_put(arr);
		return -KL_E_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(arr, i), *v;

		items[i].line = (unsigned)i + 1;
		if (json_object_is_type(it, json_type_string)) {
			items[i].serial = json_object_get_string(it);
			continue;
		}
		if (!json_object_is_type(it, json_type_object) ||
		    !json_object_object_get_ex(it, "serial", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			free(items);
			json_object_put(arr);
			return kl_rpc_reply_params(call,
			                           "items[%zu] must be a serial or "
			                           "{\"serial\": ..., \"ek_sha256\": ...}",
			                           i);
		}
		items[i].serial = json_object_get_string(v);
		if (json_object_object_get_ex(it, "ek_sha256", &v) &&
		    json_object_is_type(v, json_type_string))
			items[i].ek_sha256 = json_object_get_string(v);
	}
	st_lock_backend(s);
	r = kl_store_begin(s->store);
	if (r == 0) {
		kl_registry_tenant t;
		kl_registry_work_order w;

		if (kl_registry_tenant_get(s->reg, tenant, &t) == -KL_E_NOTFOUND)
			r = kl_registry_tenant_add(s->reg, tenant, caller(call)->actor);
		if (r == 0 && kl_registry_work_order_get(s->reg, tenant, wo, &w) == -KL_E_NOTFOUND)
			r = kl_registry_work_order_add(s->reg, tenant, wo, quota,
			                               caller(call)->actor);
		if (r == 0)
			r = kl_registry_preregister(s->reg, tenant, wo, items, n,
			                            caller(call)->actor);
		if (r >= 0) {
			int c = kl_store_commit(s->store);

			if (c < 0)
				r = c;
		} else {
			kl_store_rollback(s->store);
		}
	}
	st_unlock_backend(s);
	free(items);
	json_object_put(arr);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_int(o, "entries", (int64_t)n);
	kl_rpc_obj_put_int(o, "changed", r);
	kl_rpc_obj_put_str(o, "tenant", tenant);
	kl_rpc_obj_put_str(o, "work_order", wo);
	return 0;
}

/* ---- lifecycle ---- */

static int m_renew(kl_rpc_call *call)
{
	return submit(call, KL_JOB_RENEW, str_or(call, "serial", ""), str_or(call, "slot", ""),
	              NULL, KL_EK__MAX);
}

static int m_decommission(kl_rpc_call *call)
{
	bool repurpose = false;

	kl_rpc_param_bool(call, "repurpose", &repurpose);
	return submit(call, repurpose ? KL_JOB_REPURPOSE : KL_JOB_DECOMMISSION,
	              str_or(call, "serial", ""), str_or(call, "slot", ""), NULL, KL_EK__MAX);
}

static int m_repurpose(kl_rpc_call *call)
{
	return submit(call, KL_JOB_REPURPOSE, str_or(call, "serial", ""), str_or(call, "slot", ""),
	              NULL, KL_EK__MAX);
}

static int reason_param(kl_rpc_call *call, int def)
{
	const char *name = str_or(call, "reason", NULL);
	int code;

	if (!name)
		return def;
	code = kl_crl_reason_from_name(name);
	if (code < 0)
		kl_rpc_reply_params(call,
		                    "reason '%s' is not an RFC 5280 reason "
		                    "(keyCompromise, superseded, cessationOfOperation, ...)",
		                    name);
	return code;
}

/* The CRL after a revocation; the answer says where it is. backend held. */
static void publish_into(kl_rpc_call *call, kl_rpc_obj *o)
{
	char path[PATH_MAX];
	int64_t number = 0;

	if (st_publish_crl(station(call), caller(call)->actor, path, sizeof(path), &number) == 0) {
		kl_rpc_obj_put_str(o, "crl", path);
		kl_rpc_obj_put_int(o, "crl_number", number);
	} else {
		kl_rpc_obj_put_str(o, "crl_error", kl_error_detail());
	}
}

/* The kl_err a lifecycle refusal is answered with: its own reason goes in
 * error.data.refusal. */
static int refusal_code(const kl_life_result *res)
{
	static const struct {
		const char *reason;
		int err;
	} map[] = {
		{ "unknown_serial", KL_E_NOTFOUND },   { "not_provisioned", KL_E_STATE },
		{ "device_state", KL_E_STATE },        { "bad_reason", KL_E_INVALID },
		{ "no_record_key", KL_E_UNAVAILABLE },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(res->reason, map[i].reason) == 0)
			return map[i].err;
	return res->rc;
}

static int life_reply(kl_rpc_call *call, const kl_life_result *res)
{
	kl_rpc_obj *o;

	if (res->rc < 0)
		return kl_rpc_reply_refusal(call, refusal_code(res), res->reason, "%s",
		                            res->message);
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_int(o, "revoked", res->revoked);
	publish_into(call, o);
	return 0;
}

static int m_revoke(kl_rpc_call *call)
{
	kl_station *s = station(call);
	const char *serial = str_or(call, "serial", NULL),
	           *cert = str_or(call, "certificate", NULL);
	int reason = reason_param(call, 0), r;
	kl_life_result res = { 0 };
	kl_rpc_obj *o;

	if (reason < 0)
		return reason;
	if (need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	if (!serial == !cert)
		return kl_rpc_reply_params(call, "give either serial (a device) or "
		                                 "certificate (a certificate serial)");
	if (cert) {
		st_lock_backend(s);
		r = kl_ca_revoke(s->home->ca, cert, reason, caller(call)->actor);
		if (r == 0 && kl_rpc_reply_object(call, &o) == 0) {
			kl_rpc_obj_put_int(o, "revoked", 1);
			publish_into(call, o);
		}
		st_unlock_backend(s);
		return r;
	}
	/* The lifecycle takes the backend lock itself. */
	r = kl_life_revoke_device(&s->lcfg, serial, reason, caller(call)->actor, &res);
	if (r < 0)
		return r;
	st_lock_backend(s);
	r = life_reply(call, &res);
	st_unlock_backend(s);
	return r;
}

static int m_lost(kl_rpc_call *call)
{
	kl_station *s = station(call);
	int reason = reason_param(call, -1), r;
	kl_life_result res = { 0 };

	if (reason < -1 || (str_or(call, "reason", NULL) && reason < 0))
		return reason;
	if (need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	r = kl_life_lost(&s->lcfg, str_or(call, "serial", ""), reason, caller(call)->actor, &res);
	if (r < 0)
		return r;
	st_lock_backend(s);
	r = life_reply(call, &res);
	st_unlock_backend(s);
	return r;
}

static int m_record(kl_rpc_call *call)
{
	kl_station *s = station(call);
	char *json = NULL;
	kl_rpc_obj *o;
	int r;

	r = kl_life_record_get(s->rreg, str_or(call, "serial", ""), int_or(call, "id", 0), &json);
	if (r < 0)
		return r;
	r = kl_rpc_reply_object(call, &o);
	if (r == 0)
		r = kl_rpc_obj_put_json(o, "record", json);
	free(json);
	return r;
}

/* ---- CA, CRL, audit ---- */

static int m_crl_publish(kl_rpc_call *call)
{
	kl_station *s = station(call);
	kl_rpc_obj *o;
	char path[PATH_MAX];
	int64_t number = 0;
	int r;

	if (need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	st_lock_backend(s);
	r = st_publish_crl(s, caller(call)->actor, path, sizeof(path), &number);
	st_unlock_backend(s);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "path", path);
	kl_rpc_obj_put_int(o, "crl_number", number);
	return 0;
}

static void cert_file_put(kl_station *s, kl_rpc_obj *o, const char *key, const char *rel)
{
	char path[PATH_MAX], buf[512], serial[64];
	kl_rpc_obj *e;
	X509 *x = NULL;
	FILE *f;

	kl_home_path(s->home, rel, path, sizeof(path));
	f = fopen(path, "r");
	if (f) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!x) {
		kl_rpc_obj_put_str(o, key, NULL);
		return;
	}
	kl_rpc_obj_put_object(o, key, &e);
	X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
	kl_rpc_obj_put_str(e, "subject", buf);
	kl_serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	kl_rpc_obj_put_str(e, "serial", serial);
	{
		struct tm tm;

		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
			kl_rpc_obj_put_int(e, "not_after", (int64_t)timegm(&tm));
	}
	kl_rpc_obj_put_str(e, "file", path);
	X509_free(x);
}

static int m_ca_status(kl_rpc_call *call)
{
	kl_station *s = station(call);
	kl_issuer_row row;
	kl_rpc_obj *o, *c;
	int64_t n;
	static const char *const states[] = { "issued", "pending", "rejected", "abandoned" };

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	cert_file_put(s, o, "root", "ca/root.pem");
	cert_file_put(s, o, "issuing", "ca/issuing.pem");
	cert_file_put(s, o, "records", "ca/records.pem");
	kl_rpc_obj_put_str(o, "key", kl_config_get(s->home->conf, "ca.key", NULL));
	pthread_mutex_lock(&s->mu);
	kl_rpc_obj_put_bool(o, "hsm_logged_in", !s->offline && s->hsm_ok);
	pthread_mutex_unlock(&s->mu);
	if (kl_store_issuer_get(s->rstore, kl_config_get(s->home->conf, "ca.issuer", "issuing"),
	                        &row) == 0) {
		kl_rpc_obj_put_object(o, "certificates", &c);
		for (size_t i = 0; i < 4; i++)
			if (kl_store_cert_count(s->rstore, row.id, states[i], &n) == 0)
				kl_rpc_obj_put_int(c, states[i], n);
		if (kl_store_revoked_count(s->rstore, row.id, &n) == 0)
			kl_rpc_obj_put_int(c, "revoked", n);
		kl_rpc_obj_put_int(o, "crl_number", row.crl_number);
		kl_issuer_row_clear(&row);
	}
	{
		char p[PATH_MAX];

		kl_home_path(s->home, "crl/issuing.crl", p, sizeof(p));
		kl_rpc_obj_put_str(o, "crl", p);
	}
	return 0;
}

static int m_audit_list(kl_rpc_call *call)
{
	kl_station *s = station(call);
	int64_t limit = int_or(call, "limit", 100);
	struct audit_ctx ac = { 0 };
	kl_rpc_obj *o;
	int r;

	if (limit < 1 || limit > 1000)
		return kl_rpc_reply_params(call, "limit must be 1..1000");
	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "entries", &ac.arr) < 0)
		return -KL_E_NOMEM;
	r = kl_store_audit_list(s->rstore, int_or(call, "before", 0), str_or(call, "action", NULL),
	                        limit, audit_one, &ac);
	return r < 0 ? r : 0;
}

static int m_audit_verify(kl_rpc_call *call)
{
	kl_station *s = station(call);
	kl_audit_report rep = { 0 };
	kl_rpc_obj *o;
	int r;

	r = kl_store_audit_verify(s->rstore, &rep);
	if (r < 0 && r != -KL_E_CRYPTO)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "ok", r == 0);
	kl_rpc_obj_put_int(o, "entries", rep.entries);
	if (r < 0) {
		kl_rpc_obj_put_int(o, "first_bad", rep.first_bad);
		kl_rpc_obj_put_str(o, "problem", rep.problem);
	}
	return 0;
}

/* ---- the table ---- */

static const kl_rpc_param p_provision[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "slot", KL_RPC_STRING, false },
	{ "tenant", KL_RPC_STRING, false },
	{ "ek_type", KL_RPC_STRING, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_job[] = { { "job", KL_RPC_INT, true }, { NULL, 0, false } };
static const kl_rpc_param p_jobs[] = {
	{ "limit", KL_RPC_INT, false },
	{ "slot", KL_RPC_STRING, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_subscribe[] = { { "slot", KL_RPC_STRING, false }, { NULL, 0, false } };
static const kl_rpc_param p_devices[] = {
	{ "state", KL_RPC_STRING, false },
	{ "tenant", KL_RPC_STRING, false },
	{ "search", KL_RPC_STRING, false },
	{ "offset", KL_RPC_INT, false },
	{ "limit", KL_RPC_INT, false },
	{ "newest_first", KL_RPC_BOOL, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_serial[] = { { "serial", KL_RPC_STRING, true }, { NULL, 0, false } };
static const kl_rpc_param p_prereg[] = {
	{ "tenant", KL_RPC_STRING, true },
	{ "work_order", KL_RPC_STRING, true },
	{ "items", KL_RPC_ARRAY, true },
	{ "quota", KL_RPC_INT, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_slot_serial[] = {
	{ "slot", KL_RPC_STRING, true },
	{ "serial", KL_RPC_STRING, true },
	{ NULL, 0, false },
};
static const kl_rpc_param p_decommission[] = {
	{ "slot", KL_RPC_STRING, true },
	{ "serial", KL_RPC_STRING, true },
	{ "repurpose", KL_RPC_BOOL, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_revoke[] = {
	{ "serial", KL_RPC_STRING, false },
	{ "certificate", KL_RPC_STRING, false },
	{ "reason", KL_RPC_STRING, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_lost[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "reason", KL_RPC_STRING, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_record[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "id", KL_RPC_INT, false },
	{ NULL, 0, false },
};
static const kl_rpc_param p_audit[] = {
	{ "before", KL_RPC_INT, false },
	{ "action", KL_RPC_STRING, false },
	{ "limit", KL_RPC_INT, false },
	{ NULL, 0, false },
};

const kl_rpc_method kl_station_methods[] = {
	{ "station.status", ALL, NULL, m_status, "the station: slots, jobs, clients, HSM" },
	{ "slots.list", ALL, NULL, m_slots, "every slot, its link and its current job" },
	{ "job.provision", OP | AUT, p_provision, m_provision,
	  "provision the DUT on a slot (or the first free one)" },
	{ "job.get", ALL, p_job, m_job_get, "a job's state, step and result" },
	{ "job.list", ALL, p_jobs, m_job_list, "recent jobs, newest first" },
	{ "job.abort", OP | AUT | SVC, p_job, m_job_abort,
	  "abort a queued job, or stop a running one at its next step" },
	{ "events.subscribe", ALL, p_subscribe, m_subscribe,
	  "receive step, job, link and CRL events as notifications" },
	{ "events.unsubscribe", ALL, NULL, m_unsubscribe, "stop receiving events" },
	{ "devices.list", ALL, p_devices, m_devices_list,
	  "devices, filtered and paged (state, tenant, search)" },
	{ "devices.show", ALL, p_serial, m_devices_show,
	  "a device: state, history, certificates, evidence, audit" },
	{ "devices.preregister", OFF | AUT, p_prereg, m_preregister,
	  "pre-register serials for a tenant's work order, all or nothing" },
	{ "device.renew", OP | AUT | SVC, p_slot_serial, m_renew,
	  "rekey the device on a slot: new IDevID, old one revoked (superseded)" },
	{ "device.revoke", OFF, p_revoke, m_revoke,
	  "revoke a device's certificates or one certificate; publishes the CRL" },
	{ "device.decommission", SVC, p_decommission, m_decommission,
	  "revoke, cryptographically erase and sign a sanitization record" },
	{ "device.repurpose", SVC, p_slot_serial, m_repurpose,
	  "decommission for reuse: the device may be provisioned again" },
	{ "device.lost", SVC | OFF, p_lost, m_lost,
	  "a device not present: revoke, mark lost, deny-list its EK" },
	{ "device.record", SVC | OFF | RDR, p_record, m_record,
	  "a device's signed sanitization record" },
	{ "crl.publish", OFF, NULL, m_crl_publish, "sign and publish a fresh CRL" },
	{ "ca.status", ALL, NULL, m_ca_status, "CA certificates, counts, CRL" },
	{ "audit.list", OFF | RDR | SVC, p_audit, m_audit_list, "audit entries, newest first" },
	{ "audit.verify", OFF | RDR | SVC, NULL, m_audit_verify,
	  "walk the hash-chained audit log" },
	{ NULL, 0, NULL, NULL, NULL },
};
