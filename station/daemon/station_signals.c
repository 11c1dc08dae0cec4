/* The daemon's signals. SIGTERM, SIGINT and SIGHUP stop the station; they
 * are blocked in every thread the daemon starts and taken by the poll
 * thread alone, through a handler that sets `stopping` and writes the
 * self-pipe the loop already polls (st_wake). See station_internal.h.
 *
 * Why a handler and the self-pipe rather than signalfd: signalfd needs the
 * signals blocked in every thread of the process, and a PKCS#11 module may
 * start threads of its own while the HSM is opened, before the daemon can
 * block anything; a signal that reached such a thread would kill the
 * station with the default action. With a handler installed, a signal that
 * lands there still stops the station cleanly; our own threads never see
 * it, so their TPM and HSM calls are never interrupted (EINTR). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "kl_error.h"
#include "station_internal.h"

/* The handler may only store to a lock-free atomic (C11 7.14.1.1). */
_Static_assert(ATOMIC_BOOL_LOCK_FREE == 2, "stopping must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the caught signal must be lock-free");

/* The station the handler stops: one runs per process. */
static kl_station *_Atomic running;
static atomic_int caught;

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };

static void stop_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(set, stop_signals[i]);
}

void kl_station_stop(kl_station *s)
{
	int saved = errno; /* also called from the handler */

	atomic_store(&s->stopping, true);
	st_wake(s);
	errno = saved;
}

static void on_signal(int sig)
{
	kl_station *s = atomic_load(&running);

	atomic_store(&caught, sig);
	if (s)
		kl_station_stop(s);
}

int st_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t set, old;
	int r;

	stop_set(&set);
	/* The new thread inherits the mask in force at pthread_create. */
	if ((r = pthread_sigmask(SIG_BLOCK, &set, &old)) != 0)
		return kl_error_set(KL_E_IO, "pthread_sigmask: %s", strerror(r));
	r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return kl_error_set(KL_E_NOMEM, "pthread_create: %s", strerror(r));
	return 0;
}

int st_signals_take(kl_station *s, st_signals *saved)
{
	struct sigaction sa = { .sa_handler = on_signal }, ign = { .sa_handler = SIG_IGN };
	sigset_t set;
	size_t i;
	int r;

	*saved = (st_signals){ 0 };
	/* Blocked first, so that every thread started from here on inherits
	 * the block, whoever starts it; st_signals_unblock opens them on the
	 * poll thread alone. */
	stop_set(&set);
	if ((r = pthread_sigmask(SIG_BLOCK, &set, &saved->old_mask)) != 0)
		return kl_error_set(KL_E_IO, "pthread_sigmask: %s", strerror(r));
	saved->masked = true;
	/* The handler runs with the others blocked: one stop at a time. */
	stop_set(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigemptyset(&ign.sa_mask);
	atomic_store(&caught, 0);
	atomic_store(&running, s);
	for (i = 0; i < ST_STOP_SIGNALS; i++) {
		if (sigaction(stop_signals[i], &sa, &saved->old[i]) < 0)
			break;
		saved->installed = i + 1;
	}
	/* A peer that goes away is a send error (MSG_NOSIGNAL), never a signal. */
	if (i < ST_STOP_SIGNALS || sigaction(SIGPIPE, &ign, &saved->old_pipe) < 0) {
		r = kl_error_set(KL_E_IO, "sigaction: %s", strerror(errno));
		st_signals_restore(saved);
		return r;
	}
	saved->pipe = true;
	return 0;
}

int st_signals_unblock(void)
{
	sigset_t set;
	int r;

	stop_set(&set);
	if ((r = pthread_sigmask(SIG_UNBLOCK, &set, NULL)) != 0)
		return kl_error_set(KL_E_IO, "pthread_sigmask: %s", strerror(r));
	return 0;
}

void st_signals_restore(st_signals *saved)
{
	sigset_t set;

	/* Blocked while the dispositions go back: a late signal waits for the
	 * old mask rather than meeting a half-restored set of handlers. */
	stop_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (size_t i = 0; i < saved->installed; i++)
		sigaction(stop_signals[i], &saved->old[i], NULL);
	if (saved->pipe)
		sigaction(SIGPIPE, &saved->old_pipe, NULL);
	atomic_store(&running, NULL);
	if (saved->masked)
		pthread_sigmask(SIG_SETMASK, &saved->old_mask, NULL);
	*saved = (st_signals){ 0 };
}

int st_signal_caught(void)
{
	return atomic_load(&caught);
}
