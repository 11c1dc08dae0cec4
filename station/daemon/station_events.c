/* The station's event queue: any thread queues an event for the
 * subscribers of a slot (or everyone) as a JSON-RPC notification line,
 * and the poll loop (station_server.c) takes the queue and sends each
 * line to the connections it concerns. See station_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "station_internal.h"

/* Beyond this many queued events nobody drains: the loop is stuck, and new
 * events are dropped rather than held without bound. */
#define ST_EVENTS_MAX 100000

void st_wake(kl_station *s)
{
	char c = 0;

	if (s->wake[1] >= 0 && write(s->wake[1], &c, 1) < 0) {
		/* Full pipe: the loop is awake already. */
	}
}

json_object *st_event_new(const char *type)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "time_ms", json_object_new_int64(st_wall_ms()));
	return o;
}

/* {"jsonrpc":"2.0","method":"event","params":o} and a '\n', as a queue
 * entry for slot. Takes o. NULL on NOMEM. */
static st_event_entry *event_line(const char *slot, json_object *o)
{
	json_object *n = json_object_new_object();
	const char *text;
	size_t len = 0;
	st_event_entry *e = NULL;

	if (!n || json_object_object_add(n, "jsonrpc", json_object_new_string("2.0")) < 0 ||
	    json_object_object_add(n, "method", json_object_new_string("event")) < 0) {
		json_object_put(o);
		goto out;
	}
	if (json_object_object_add(n, "params", o) < 0) {
		json_object_put(o);
		goto out;
	}
	text = json_object_to_json_string_length(n, JSON_C_TO_STRING_PLAIN, &len);
	if (!text || !(e = malloc(sizeof(*e) + len + 2)))
		goto out;
	e->next = NULL;
	snprintf(e->slot, sizeof(e->slot), "%s", slot ? slot : "");
	memcpy(e->line, text, len);
	e->line[len] = '\n';
	e->line[len + 1] = '\0';
	e->len = len + 1;
out:
	json_object_put(n);
	return e;
}

void st_event(kl_station *s, const char *slot, json_object *o)
{
	st_event_entry *e;

	if (!o)
		return;
	if (s->offline) {
		json_object_put(o);
		return;
	}
	e = event_line(slot, o);
	if (!e)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->ev_count > ST_EVENTS_MAX) {
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
	st_wake(s);
}

st_event_entry *st_events_take(kl_station *s)
{
	st_event_entry *e;

	pthread_mutex_lock(&s->mu);
	e = s->ev_head;
	s->ev_head = s->ev_tail = NULL;
	s->ev_count = 0;
	pthread_mutex_unlock(&s->mu);
	return e;
}

void st_events_free(st_event_entry *e)
{
	while (e) {
		st_event_entry *next = e->next;

		free(e);
		e = next;
	}
}
