/* [link]: the station's listener for keyline-agent links. The poll loop
 * accepts (never blocking); each accepted link gets a handshake thread
 * that reads its HELLO within link.hello_timeout_ms and hands it to a free
 * agent slot, which from then on owns it (station_jobs.c). With
 * link.zero_touch an attach queues the provisioning job by itself, with
 * the hello's serial. A refused handshake is logged and audited with its
 * reason and never touches a slot. See station_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_error.h"
#include "kl_log.h"
#include "station_internal.h"

#define LOG_MOD "station"

int st_link_config(kl_station *s)
{
	const char *listen = kl_config_get(s->home->conf, "link.listen", NULL);
	int r;

	if ((r = kl_config_bool(s->home->conf, "link.allow_any", false, &s->link_allow_any)) < 0 ||
	    (r = kl_config_bool(s->home->conf, "link.zero_touch", false, &s->zero_touch)) < 0 ||
	    (r = kl_config_bool(s->home->conf, "link.require_scan", false, &s->require_scan)) < 0 ||
	    (r = kl_config_int(s->home->conf, "link.hello_timeout_ms", 10000, 100, 600000,
	                       &s->hello_timeout_ms)) < 0)
		return r;
	if (listen && strlen(listen) >= sizeof(s->link_listen))
		return kl_error_set(KL_E_INVALID, "keyline.conf: link.listen '%s' is too long",
		                    listen);
	snprintf(s->link_listen, sizeof(s->link_listen), "%s", listen ? listen : "");
	for (size_t i = 0; i < s->nslots; i++)
		if (s->slots[i].agent && !listen)
			return kl_error_set(
			    KL_E_INVALID,
			    "keyline.conf: slot %s takes an agent, but [link] has no "
			    "listen = HOST:PORT for agents to attach to",
			    s->slots[i].name);
	return 0;
}

int st_link_listen(kl_station *s)
{
	if (!s->link_listen[0])
		return 0;
	if (kl_link_listen(s->link_listen, s->link_allow_any, &s->link_l) < 0)
		return kl_error_wrap("keyline.conf: link.listen");
	kl_log_info(LOG_MOD, "agent link listener on %s (port %d)%s", s->link_listen,
	            kl_link_listener_port(s->link_l), s->zero_touch ? ", zero touch" : "");
	return 0;
}

int st_link_fd(kl_station *s)
{
	bool full;

	if (!s->link_l)
		return -1;
	/* At ST_LINK_HANDSHAKES the next agents wait in the listen backlog;
	 * the loop is woken when a handshake ends. */
	pthread_mutex_lock(&s->mu);
	full = s->link_handshakes >= ST_LINK_HANDSHAKES;
	pthread_mutex_unlock(&s->mu);
	return full ? -1 : kl_link_listener_fd(s->link_l);
}

static bool station_stopping(void *ctx)
{
	return atomic_load(&((kl_station *)ctx)->stopping);
}

/* link.attached, link.refused: {"slot", "serial", "peer", ...}. */
static json_object *link_event_new(const char *type, const char *slot, const char *serial,
                                   const char *peer)
{
	json_object *o = st_event_new(type);

	if (!o)
		return NULL;
	if (slot)
		json_object_object_add(o, "slot", json_object_new_string(slot));
	json_object_object_add(o, "serial", json_object_new_string(serial ? serial : ""));
	json_object_object_add(o, "peer", json_object_new_string(peer));
	return o;
}

/* A link the station would not take: logged, audited, told to subscribers;
 * no slot touched. */
static void link_refused(kl_station *s, const char *peer, const char *serial, const char *reason,
                         const char *message)
{
	json_object *d = json_object_new_object(), *o;
	char actor[160];

	kl_log_warn(LOG_MOD, "agent link %s refused [%s]: %s", peer, reason, message);
	json_object_object_add(d, "peer", json_object_new_string(peer));
	if (serial && *serial)
		json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "message", json_object_new_string(message));
	snprintf(actor, sizeof(actor), "agent:%s", peer);
	st_backend_audit(s, actor, "station.link.refused", json_object_to_json_string(d));
	json_object_put(d);
	o = link_event_new("link.refused", NULL, serial, peer);
	if (o) {
		json_object_object_add(o, "reason", json_object_new_string(reason));
		json_object_object_add(o, "message", json_object_new_string(message));
	}
	st_event(s, NULL, o);
}

/* Gives c (handshaken) to a free agent slot; NULL when there is none. */
static st_slot *link_attach(kl_station *s, kl_link_conn *c, const kl_link_agent_info *info)
{
	st_slot *sl = NULL;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots && !sl; i++) {
		st_slot *c2 = &s->slots[i];

		if (c2->agent && !c2->conn && !c2->pending && !c2->current)
			sl = c2;
	}
	if (sl) {
		sl->conn = c;
		sl->info = *info;
		sl->attached_ms = st_wall_ms();
		snprintf(sl->agent_link, sizeof(sl->agent_link), "agent:%s", kl_link_conn_peer(c));
		sl->link_up = 1;
		sl->link_error[0] = '\0';
		pthread_cond_signal(&sl->cond);
	}
	pthread_mutex_unlock(&s->mu);
	return sl;
}

struct handshake {
	kl_station *s;
	kl_link_conn *conn;
};

static void *handshake_main(void *arg)
{
	struct handshake *h = arg;
	kl_station *s = h->s;
	kl_link_conn *c = h->conn;
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + (double)s->hello_timeout_ms,
		           .cancelled = station_stopping,
		           .cancel_ctx = s };
	kl_link_agent_info info;
	char peer[96];
	st_slot *sl;

	snprintf(peer, sizeof(peer), "%s", kl_link_conn_peer(c));
	if (kl_link_handshake(c, &w, s->station_id, NULL, &info) < 0) {
		const char *reason = kl_link_conn_reason(c);

		link_refused(s, peer, NULL, reason ? reason : "link_lost", kl_error_detail());
		kl_link_conn_free(c);
		goto out;
	}
	sl = link_attach(s, c, &info);
	if (!sl) {
		char msg[200];

		snprintf(msg, sizeof(msg),
		         "every agent slot of station %s has a DUT: try again later",
		         s->station_id);
		w.deadline_ms = kl_link_now_ms() + 1000;
		kl_link_conn_refuse(c, "no_free_slot", msg, &w);
		link_refused(s, peer, info.serial, "no_free_slot", msg);
		kl_link_conn_free(c);
		goto out;
	}
	{
		json_object *o = link_event_new("link.attached", sl->name, info.serial, peer);
		json_object *d = json_object_new_object();
		char actor[160];

		if (o) {
			json_object_object_add(o, "model", json_object_new_string(info.model));
			json_object_object_add(o, "firmware",
			                       json_object_new_string(info.firmware));
			json_object_object_add(o, "agent", json_object_new_string(info.agent));
		}
		kl_log_info(LOG_MOD, "DUT %s (%s) attached on slot %s from %s", info.serial,
		            info.model[0] ? info.model : "?", sl->name, peer);
		json_object_object_add(d, "slot", json_object_new_string(sl->name));
		json_object_object_add(d, "serial", json_object_new_string(info.serial));
		json_object_object_add(d, "peer", json_object_new_string(peer));
		snprintf(actor, sizeof(actor), "agent:%s", peer);
		st_backend_audit(s, actor, "station.link.attached", json_object_to_json_string(d));
		json_object_put(d);
		st_event(s, sl->name, o);
	}
	if (s->zero_touch && !s->require_scan) {
		char actor[160];
		st_job *j;

		snprintf(actor, sizeof(actor), "zero_touch(agent:%s)", peer);
		if (st_job_submit(s, sl->name, KL_JOB_PROVISION, info.serial, NULL, NULL,
		                  KL_EK__MAX, actor, &j) < 0)
			/* The DUT stays attached: the operator may start it. */
			kl_log_warn(LOG_MOD, "zero touch on slot %s for %s did not start: %s",
			            sl->name, info.serial, kl_error_detail());
	}
out:
	free(h);
	pthread_mutex_lock(&s->mu);
	s->link_handshakes--;
	pthread_cond_broadcast(&s->link_cond);
	pthread_mutex_unlock(&s->mu);
	st_wake(s); /* the loop polls the listener again if it had stopped */
	return NULL;
}

void st_link_accept(kl_station *s)
{
	for (int k = 0; k < 64 && s->link_l && !atomic_load(&s->stopping); k++) {
		kl_link_wait now = { .deadline_ms = kl_link_now_ms() };
		struct handshake *h;
		kl_link_conn *c;
		pthread_t t;
		bool room;

		/* Room first: beyond it agents wait in the backlog, unaccepted. */
		pthread_mutex_lock(&s->mu);
		room = s->link_handshakes < ST_LINK_HANDSHAKES;
		if (room)
			s->link_handshakes++;
		pthread_mutex_unlock(&s->mu);
		if (!room)
			return;
		/* Nothing more waiting (or a socket error: the next poll sees it). */
		if (kl_link_accept(s->link_l, &now, &c) < 0)
			goto undo;
		h = calloc(1, sizeof(*h));
		if (!h) {
			/* Closed unread: refusing would make the loop wait on it. */
			kl_log_warn(LOG_MOD, "agent link %s closed: out of memory",
			            kl_link_conn_peer(c));
			kl_link_conn_free(c);
			goto undo;
		}
		h->s = s;
		h->conn = c;
		if (st_thread_start(&t, handshake_main, h) < 0) {
			kl_log_warn(LOG_MOD, "agent link %s closed: no thread for its handshake",
			            kl_link_conn_peer(c));
			kl_link_conn_free(c);
			free(h);
			goto undo;
		}
		pthread_detach(t);
	}
	return;
undo:
	pthread_mutex_lock(&s->mu);
	s->link_handshakes--;
	pthread_mutex_unlock(&s->mu);
}

void st_link_stop(kl_station *s)
{
	pthread_mutex_lock(&s->mu);
	while (s->link_handshakes > 0)
		pthread_cond_wait(&s->link_cond, &s->mu);
	pthread_mutex_unlock(&s->mu);
	kl_link_listener_free(s->link_l);
	s->link_l = NULL;
}
