/* The backend worker: one thread that runs the socket API's slow calls
 * (audit verification, CRL publication, revocation) so that the poll loop
 * never waits for them. The loop hands a deferred call over with
 * st_backend_submit; the worker runs it, settles its answer on its own
 * thread and queues it as done, then wakes the loop, which sends it on its
 * connection (station_server.c). Calls run one at a time, in the order
 * they came. See station_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "kl_error.h"
#include "station_internal.h"

/* Runs a job with no call and frees it. bq_mu not held. */
static void task_run(kl_station *s, st_bjob *j)
{
	j->task(s, j->caller.defer_arg);
	if (j->arg_free)
		j->arg_free(j->caller.defer_arg);
	free(j);
}

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
		if (!j->call) {
			task_run(s, j);
			pthread_mutex_lock(&s->bq_mu);
			continue;
		}
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
	st_bjob *tasks = NULL, **tail = &tasks;

	while (s->bq_head) {
		st_bjob *j = s->bq_head;

		s->bq_head = j->next;
		if (j->call) {
			refuse_locked(s, j);
		} else { /* an audit entry is still written, in line */
			j->next = NULL;
			*tail = j;
			tail = &j->next;
		}
	}
	s->bq_tail = NULL;
	pthread_mutex_unlock(&s->bq_mu);
	while (tasks) {
		st_bjob *next = tasks->next;

		task_run(s, tasks);
		tasks = next;
	}
}

bool st_backend_running(kl_station *s)
{
	return s->bq_started;
}

void st_backend_submit(kl_station *s, st_bjob *j)
{
	j->next = NULL;
	pthread_mutex_lock(&s->bq_mu);
	if ((s->bq_stop || !s->bq_started) && !j->call) {
		pthread_mutex_unlock(&s->bq_mu);
		task_run(s, j);
		return;
	}
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

struct audit_task {
	char *actor, *action, *detail;
};

static void audit_task_free(void *arg)
{
	struct audit_task *t = arg;

	if (!t)
		return;
	free(t->actor);
	free(t->action);
	free(t->detail);
	free(t);
}

static void audit_task_run(kl_station *s, void *arg)
{
	struct audit_task *t = arg;

	st_lock_backend(s);
	kl_store_audit_noted(s->store, t->actor, t->action, t->detail);
	st_unlock_backend(s);
}

void st_backend_audit(kl_station *s, const char *actor, const char *action, const char *detail)
{
	struct audit_task *t = calloc(1, sizeof(*t));
	st_bjob *j = calloc(1, sizeof(*j));

	if (t) {
		t->actor = strdup(actor ? actor : "");
		t->action = strdup(action);
		t->detail = strdup(detail ? detail : "{}");
	}
	if (!t || !j || !t->actor || !t->action || !t->detail) {
		/* Out of memory: written in line, as before the worker. */
		audit_task_free(t);
		free(j);
		st_lock_backend(s);
		kl_store_audit_noted(s->store, actor, action, detail);
		st_unlock_backend(s);
		return;
	}
	j->task = audit_task_run;
	j->caller.defer_arg = t;
	j->arg_free = audit_task_free;
	st_backend_submit(s, j);
}
