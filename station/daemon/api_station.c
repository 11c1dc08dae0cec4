/* The socket API's station area: the station's status and its slots
 * (docs/api.md). Handlers run on the daemon's main thread and must answer
 * promptly: work on a DUT is a job on its slot, and reads go through the
 * station's read connection (rstore, rreg) without waiting for the backend
 * lock that the slots' commits hold. The JSON-RPC layer checks roles and
 * parameters before a handler runs. */
#include <time.h>

#include "api_internal.h"

#ifndef KL_VERSION
#define KL_VERSION "0.0.0"
#endif

/* An agent slot's DUT, when one is attached. mu held. */
static void put_agent(kl_rpc_obj *e, const st_slot *sl)
{
	kl_rpc_obj *a;

	if (!sl->conn) {
		kl_rpc_obj_put_str(e, "dut", NULL);
		return;
	}
	kl_rpc_obj_put_object(e, "dut", &a);
	kl_rpc_obj_put_str(a, "serial", sl->info.serial);
	kl_rpc_obj_put_str(a, "model", sl->info.model);
	kl_rpc_obj_put_str(a, "firmware", sl->info.firmware);
	kl_rpc_obj_put_str(a, "agent", sl->info.agent);
	kl_rpc_obj_put_str(a, "peer", sl->agent_link + 6);
	kl_rpc_obj_put_int(a, "since_ms", sl->attached_ms);
}

/* "link": the agent listener and what is attached to each agent slot. */
static void put_link(kl_station *s, kl_rpc_obj *o)
{
	kl_rpc_obj *l, *a, *e;

	kl_rpc_obj_put_object(o, "link", &l);
	if (!s->link_l) {
		kl_rpc_obj_put_str(l, "listen", NULL);
		return;
	}
	kl_rpc_obj_put_str(l, "listen", s->link_listen);
	kl_rpc_obj_put_int(l, "port", kl_link_listener_port(s->link_l));
	kl_rpc_obj_put_bool(l, "zero_touch", s->zero_touch);
	kl_rpc_obj_put_bool(l, "require_scan", s->require_scan);
	kl_rpc_obj_put_array(l, "slots", &a);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++) {
		if (!s->slots[i].agent)
			continue;
		kl_rpc_obj_put_object(a, NULL, &e);
		kl_rpc_obj_put_str(e, "slot", s->slots[i].name);
		put_agent(e, &s->slots[i]);
	}
	pthread_mutex_unlock(&s->mu);
}

static int m_status(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
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
	/* Audit entries that could not be written since the start (the store
	 * counts them; docs/station.md says which operations stand anyway). */
	kl_rpc_obj_put_int(o, "audit_failures",
	                   s->store ? (int64_t)kl_store_audit_failures(s->store) : 0);
	kl_rpc_obj_put_bool(o, "stopping", atomic_load(&s->stopping));
	put_link(s, o);
	return 0;
}

static int m_slots(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
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
		if (sl->agent)
			put_agent(e, sl);
		if (cur) {
			kl_rpc_obj_put_object(e, "job", &j);
			api_job_put(j, cur);
		} else if (sl->last_job) {
			/* What the operator last saw on this slot, while it is
			 * still remembered. */
			const st_job *last = st_job_find(s, sl->last_job);

			if (last) {
				kl_rpc_obj_put_object(e, "last_job", &j);
				api_job_put(j, last);
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* station.status, slots.list */
const kl_rpc_method st_api_station[] = {
	{ "station.status", ALL, NULL, m_status, "the station: slots, jobs, clients, HSM" },
	{ "slots.list", ALL, NULL, m_slots, "every slot, its link and its current job" },
	{ NULL, 0, NULL, NULL, NULL },
};
