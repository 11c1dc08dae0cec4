/* The backend worker: one thread that runs the socket API's slow calls
 * (audit verification, CRL publication, revocation) so that the poll loop
 * never waits for them. The loop hands a deferred call over with
 * st_backend_submit; the worker runs it, settles its answer on its own
 * thread and queues it as done, then wakes the loop, which sends it on its
 * connection (station_server.c). Calls run one at a time, in the order
 * they came. See station_internal.h. */
#include <stdlib.h>

#include "kl_error.h"
#include "station_internal.h"

/* Moves j to the done list and wakes the loop. bq_mu held. */
static void done_locked(kl_station *s, st_bjob *j)
{
	j->next = s->bq_done;
	s->bq_done = j;
	st_wake(s);
}

static void *backend_main(void *arg)
{
	kl_station *s = arg;

	pthread_mutex_lock(&s->bq_mu);
	for (;;) {
		st_bjob *j;

		while (!s->bq_head && !s->bq_stop)
			pthread_cond_wait(&s->bq_cond, &s->bq_mu);
		if (s->bq_stop)
			break;
		j = s->bq_head;
		s->bq_head = j->next;
		if (!s->bq_head)
			s->bq_tail = NULL;
		pthread_mutex_unlock(&s->bq_mu);

		kl_error_clear();
		kl_rpc_call_settle(j->call, j->fn(j->call));

		pthread_mutex_lock(&s->bq_mu);
		done_locked(s, j);
	}
	pthread_mutex_unlock(&s->bq_mu);
	return NULL;
}

int st_backend_start(kl_station *s)
{
	pthread_mutex_lock(&s->bq_mu);
	s->bq_stop = false;
	pthread_mutex_unlock(&s->bq_mu);
	if (pthread_create(&s->bq_thread, NULL, backend_main, s) != 0)
		return kl_error_set(KL_E_NOMEM, "cannot start the backend worker");
	s->bq_started = true;
	return 0;
}

/* A call that will not run: answered "unavailable". bq_mu held. */
static void refuse_locked(kl_station *s, st_bjob *j)
{
	kl_error_set(KL_E_UNAVAILABLE, "the station is shutting down");
	kl_rpc_call_settle(j->call, -KL_E_UNAVAILABLE);
	done_locked(s, j);
}

void st_backend_stop(kl_station *s)
{
	if (!s->bq_started)
		return;
	pthread_mutex_lock(&s->bq_mu);
	s->bq_stop = true;
	pthread_cond_signal(&s->bq_cond);
	pthread_mutex_unlock(&s->bq_mu);
	/* The call in progress, if any, ends first. */
	pthread_join(s->bq_thread, NULL);
	s->bq_started = false;
	pthread_mutex_lock(&s->bq_mu);
	while (s->bq_head) {
		st_bjob *j = s->bq_head;

		s->bq_head = j->next;
		refuse_locked(s, j);
	}
	s->bq_tail = NULL;
	pthread_mutex_unlock(&s->bq_mu);
}

bool st_backend_running(kl_station *s)
{
	return s->bq_started;
}

void st_backend_submit(kl_station *s, st_bjob *j)
{
	j->next = NULL;
	pthread_mutex_lock(&s->bq_mu);
	if (s->bq_stop || !s->bq_started) {
		refuse_locked(s, j);
	} else {
		if (s->bq_tail)
			s->bq_tail->next = j;
		else
			s->bq_head = j;
		s->bq_tail = j;
		pthread_cond_signal(&s->bq_cond);
	}
	pthread_mutex_unlock(&s->bq_mu);
}

st_bjob *st_backend_take_done(kl_station *s)
{
	st_bjob *done, *rev = NULL;

	pthread_mutex_lock(&s->bq_mu);
	done = s->bq_done;
	s->bq_done = NULL;
	pthread_mutex_unlock(&s->bq_mu);
	/* Oldest first. */
	while (done) {
		st_bjob *next = done->next;

		done->next = rev;
		rev = done;
		done = next;
	}
	return rev;
}

void st_bjobs_free(st_bjob *j)
{
	while (j) {
		st_bjob *next = j->next;

		kl_rpc_call_free(j->call);
		if (j->arg_free)
			j->arg_free(j->caller.defer_arg);
		free(j);
		j = next;
	}
}
