/* [link]: the station's listener for keyline-agent links. The poll loop
 * accepts (never blocking); each accepted link gets a handshake thread
 * that reads its HELLO within link.hello_timeout_ms and hands it to a free
 * agent slot, which from then on owns it (station_jobs.c). With
 * link.zero_touch an attach queues the provisioning job by itself, with
 * the hello's serial. A refused handshake is logged and audited with its
 * reason and never touches a slot. See station_internal.h.
 *
 * USB slots ([slots] NAME = usb:auto or usb:PORT) take their agents from a
 * libusb hot-plug watch for link.usb_id instead: the loop takes its events
 * without waiting on every wake (st_link_poll_ms keeps the wakes short), an
 * arrival at a free usb slot's port reserves the slot and starts the same
 * handshake thread, which opens the device there (the device's iSerial is
 * the serial the hello must say) and from the attach on everything is the
 * TCP path's: the slot's worker owns the link, a device that leaves fails
 * its transfers with link_lost and agent_detach frees the slot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_error.h"
#include "kl_log.h"
#include "station_internal.h"

#define LOG_MOD "station"

bool st_usb_port_ok(const char *port)
{
	/* BUS-PORT[.PORT]...: numbers of 1 to 3 digits, at most 7 hub ports
	 * (USB allows a chain of 7 tiers). */
	const char *p = port;
	int parts = 0;

	for (;;) {
		int digits = 0;

		while (*p >= '0' && *p <= '9' && digits < 4) {
			p++;
			digits++;
		}
		if (digits < 1 || digits > 3)
			return false;
		parts++;
		if (!*p)
			return parts >= 2 && parts <= 8;
		if (*p != (parts == 1 ? '-' : '.'))
			return false;
		p++;
	}
}

static int hex16(const char *p, size_t n, uint16_t *ret)
{
	unsigned v = 0;

	if (n != 4)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*ret = (uint16_t)v;
	return 0;
}

/* link.usb_id = VID:PID (hex), read when a slot is usb. */
static int usb_id_config(kl_station *s)
{
	const char *id = kl_config_get(s->home->conf, "link.usb_id", ST_USB_ID_DEFAULT);
	const char *colon = strchr(id, ':');
	bool any = false;

	for (size_t i = 0; i < s->nslots; i++)
		any |= s->slots[i].usb;
	if (!any)
		return 0;

	if (!colon || hex16(id, (size_t)(colon - id), &s->usb_vid) < 0 ||
	    hex16(colon + 1, strlen(colon + 1), &s->usb_pid) < 0)
		return kl_error_set(KL_E_INVALID,
		                    "keyline.conf: [link] usb_id = %s: want VID:PID, four hex "
		                    "digits each (1d6b:0104)",
		                    id);
	return 0;
}

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
	if ((r = usb_id_config(s)) < 0)
		return r;
	for (size_t i = 0; i < s->nslots; i++)
		if (s->slots[i].agent && !s->slots[i].usb && !listen)
			return kl_error_set(
			    KL_E_INVALID,
			    "keyline.conf: slot %s takes an agent, but [link] has no "
			    "listen = HOST:PORT for agents to attach to",
			    s->slots[i].name);
	return 0;
}

static int usb_start(kl_station *s)
{
	bool any = false;

	for (size_t i = 0; i < s->nslots; i++)
		any |= s->slots[i].usb;
	if (!any)
		return 0;
	if (kl_usb_new(&s->usb) < 0)
		return kl_error_wrap("usb slots");
	/* The devices already there are reported as arrived: they attach too. */
	if (kl_usb_watch(s->usb, s->usb_vid, s->usb_pid) < 0) {
		kl_usb_free(s->usb);
		s->usb = NULL;
		return kl_error_wrap("usb slots [%s]", kl_usb_reason());
	}
	kl_log_info(LOG_MOD, "watching USB for agents %04x:%04x%s", s->usb_vid, s->usb_pid,
	            s->zero_touch ? ", zero touch" : "");
	return 0;
}

int st_link_listen(kl_station *s)
{
	if (usb_start(s) < 0)
		return -kl_error_code();
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

/* Gives c (handshaken) to slot `to` (USB: reserved for it on arrival) or
 * else to a free TCP agent slot; NULL when there is none. */
static st_slot *link_attach(kl_station *s, st_slot *to, kl_link_conn *c, const char *peer,
                            const kl_link_agent_info *info)
{
	st_slot *sl = to;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots && !sl; i++) {
		st_slot *c2 = &s->slots[i];

		if (c2->agent && !c2->usb && !c2->conn && !c2->pending && !c2->current)
			sl = c2;
	}
	if (sl) {
		sl->conn = c;
		sl->info = *info;
		sl->attached_ms = st_wall_ms();
		snprintf(sl->agent_link, sizeof(sl->agent_link), "agent:%s", peer);
		sl->link_up = 1;
		sl->link_error[0] = '\0';
		pthread_cond_signal(&sl->cond);
	}
	pthread_mutex_unlock(&s->mu);
	return sl;
}

/* A handshake thread's work: a TCP link accepted (conn), or a USB device
 * that arrived at port, for which slot usb is reserved. */
struct handshake {
	kl_station *s;
	kl_link_conn *conn;
	st_slot *usb;
	char port[32];
};

/* The reservation of a USB slot ends (the attach failed, or its DUT left). */
static void usb_release(kl_station *s, st_slot *sl)
{
	pthread_mutex_lock(&s->mu);
	sl->usb_at[0] = '\0';
	pthread_mutex_unlock(&s->mu);
}

/* Opens the device at h->port and wraps it as a link; its iSerial goes to
 * serial (what the hello must say). */
static int usb_open(struct handshake *h, char *serial, size_t size, kl_link_conn **ret)
{
	kl_usb_match m = { .vid = h->s->usb_vid, .pid = h->s->usb_pid, .port = h->port };
	kl_link_transport t;
	kl_usb_link *l;

	if (kl_usb_link_open(h->s->usb, &m, &l) < 0)
		return -kl_error_code();
	snprintf(serial, size, "%s", kl_usb_link_serial(l));
	kl_usb_link_transport(l, &t);
	return kl_link_conn_wrap_transport(&t, ret);
}

static void *handshake_main(void *arg)
{
	struct handshake *h = arg;
	kl_station *s = h->s;
	kl_link_conn *c = h->conn;
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + (double)s->hello_timeout_ms,
		           .cancelled = station_stopping,
		           .cancel_ctx = s };
	kl_link_agent_info info;
	char peer[96], iserial[KL_LINK_SERIAL_MAX + 2] = "";
	st_slot *sl;

	if (h->usb) {
		snprintf(peer, sizeof(peer), "usb:%s", h->port);
		if (usb_open(h, iserial, sizeof(iserial), &c) < 0) {
			const char *reason = kl_usb_reason();

			link_refused(s, peer, NULL, *reason ? reason : "open_failed",
			             kl_error_detail());
			usb_release(s, h->usb);
			goto out;
		}
	} else {
		snprintf(peer, sizeof(peer), "%s", kl_link_conn_peer(c));
	}
	/* Over USB the device's iSerial is the serial its agent must say. */
	if (kl_link_handshake(c, &w, s->station_id, h->usb ? iserial : NULL, &info) < 0) {
		const char *reason = kl_link_conn_reason(c);

		link_refused(s, peer, NULL, reason ? reason : "link_lost", kl_error_detail());
		kl_link_conn_free(c);
		if (h->usb)
			usb_release(s, h->usb);
		goto out;
	}
	sl = link_attach(s, h->usb, c, peer, &info);
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

int st_link_poll_ms(kl_station *s)
{
	return s->usb ? ST_USB_POLL_MS : 1000;
}

static bool slot_free(const st_slot *sl)
{
	return sl->usb && !sl->conn && !sl->pending && !sl->current && !sl->usb_at[0];
}

/* A device arrived at port: the free slot for that port, else a free
 * usb:auto slot, is reserved for it and a handshake thread opens it. */
static void usb_arrived(kl_station *s, const char *port)
{
	char peer[48], msg[200];
	struct handshake *h;
	st_slot *sl = NULL;
	bool dup = false, room;
	pthread_t t;

	snprintf(peer, sizeof(peer), "usb:%s", port);
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nslots; i++)
		dup |= s->slots[i].usb && strcmp(s->slots[i].usb_at, port) == 0;
	for (size_t i = 0; i < s->nslots && !sl && !dup; i++)
		if (slot_free(&s->slots[i]) && strcmp(s->slots[i].usb_port, port) == 0)
			sl = &s->slots[i];
	for (size_t i = 0; i < s->nslots && !sl && !dup; i++)
		if (slot_free(&s->slots[i]) && !s->slots[i].usb_port[0])
			sl = &s->slots[i];
	room = s->link_handshakes < ST_LINK_HANDSHAKES;
	if (sl && room) {
		snprintf(sl->usb_at, sizeof(sl->usb_at), "%s", port);
		s->link_handshakes++;
	}
	pthread_mutex_unlock(&s->mu);
	if (dup) /* reported twice (enumerated and hot-plugged): it is being taken */
		return;
	if (!sl || !room) {
		snprintf(msg, sizeof(msg),
		         !sl ? "no free usb slot of station %s takes a device on port %s"
		             : "station %s has too many agents in their handshake for port %s",
		         s->station_id, port);
		link_refused(s, peer, NULL, "no_free_slot", msg);
		return;
	}
	kl_log_info(LOG_MOD, "USB device at %s: attaching it to slot %s", port, sl->name);
	h = calloc(1, sizeof(*h));
	if (h) {
		h->s = s;
		h->usb = sl;
		snprintf(h->port, sizeof(h->port), "%s", port);
	}
	if (!h || st_thread_start(&t, handshake_main, h) < 0) {
		free(h);
		link_refused(s, peer, NULL, "no_free_slot", "no thread for its handshake");
		usb_release(s, sl);
		pthread_mutex_lock(&s->mu);
		s->link_handshakes--;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	pthread_detach(t);
}

void st_link_usb_events(kl_station *s)
{
	kl_usb_event ev;
	int r;

	for (int k = 0; k < 16 && s->usb && !atomic_load(&s->stopping); k++) {
		r = kl_usb_poll(s->usb, 0, &ev);
		if (r < 0) {
			kl_log_warn(LOG_MOD, "usb: %s", kl_error_detail());
			return;
		}
		if (r == 0)
			return;
		if (ev.kind == KL_USB_ARRIVED) {
			usb_arrived(s, ev.port);
		} else {
			/* Its slot's worker sees the link fail (link_lost) and
			 * frees the slot. */
			kl_log_info(LOG_MOD, "USB device at %s left", ev.port);
		}
	}
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
