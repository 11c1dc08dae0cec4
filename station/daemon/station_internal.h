/* What the station daemon's files share; private to station/daemon/.
 *
 *   station.c         configuration: keyline.conf [station], [slots],
 *                     [roles]; open, offline open, free
 *   station_events.c  the event queue: notification lines for subscribers
 *   station_hsm.c     the backend lock, the HSM's health and one
 *                     reconnect, the sanitization-record signer, the CRL
 *   station_jobs.c    jobs and the slot workers that run them
 *   station_signals.c SIGTERM, SIGINT, SIGHUP: blocked in the daemon's
 *                     threads, taken by the poll thread
 *   station_backend.c the backend worker: the API's slow calls, off the
 *                     poll loop
 *   station_link.c    [link]: the keyline-agent listener, handshakes on
 *                     their own threads, attaching a DUT to an agent slot
 *   station_server.c  the socket server: connections, roles by peer uid,
 *                     the poll loop, in-process calls
 *   api_*.c           the socket API, one method table per area
 *                     (api_prereg.c: pre-registration and its batches)
 *
 * Object files depend on each other one way only: station_events <-
 * station_signals <- station_hsm <- station_jobs <- station_backend <-
 * station_link <- station_server <- api_*.c <- station.c, which hands the area tables to
 * the JSON-RPC server.
 *
 * Threads and locks:
 *   - the main thread runs the poll loop: accepts clients, reads requests,
 *     answers them (kl_rpc_feed) and writes queued events to subscribers;
 *     it never takes `backend` for a method that builds or signs a CRL or
 *     walks the audit log: those handlers defer their call (st_api_defer);
 *   - the backend worker runs the deferred calls one at a time, taking
 *     `backend` as the handlers did, and hands each settled answer back to
 *     the loop (bq_mu guards its queues; never held while it takes another
 *     lock);
 *   - one worker per slot runs that slot's jobs (provision, renew,
 *     decommission) and, when idle, probes the slot's link; on an agent
 *     slot it alone does I/O on the attached link once attached (keeps it
 *     alive with PING, sees it close, sends the verdict);
 *   - a handshake thread per accepted agent link (at most
 *     ST_LINK_HANDSHAKES at once; the loop stops accepting meanwhile)
 *     reads its HELLO within link.hello_timeout_ms and hands the link to a
 *     free agent slot;
 *   - every thread the daemon starts (st_thread_start) blocks SIGTERM,
 *     SIGINT and SIGHUP: only the poll thread takes them;
 *   - `backend` serialises every use of the store, registry, CA and HSM
 *     (the engine takes it through its lock hooks, never while it waits on
 *     a TPM); `mu` guards slots, jobs, the event queue and counters.
 *     Lock order: backend before mu; nobody holds mu while taking backend. */
#ifndef KL_STATION_INTERNAL_H
#define KL_STATION_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <json-c/json.h>

#include "engine.h"
#include "home.h"
#include "lifecycle.h"
#include "link_listen.h"
#include "link_usb.h"
#include "rpc.h"
#include "station.h"

#define KL_STATION_SLOT_NAME_MAX 32
#define KL_STATION_MAX_SLOTS     64
#define KL_STATION_JOBS_KEPT     512 /* finished jobs remembered for job.get */

typedef enum kl_job_kind {
	KL_JOB_PROVISION,
	KL_JOB_RENEW,
	KL_JOB_DECOMMISSION,
	KL_JOB_REPURPOSE,
} kl_job_kind;

typedef enum kl_job_state {
	KL_JOB_QUEUED,
	KL_JOB_RUNNING,
	KL_JOB_PASSED,
	KL_JOB_FAILED,
	KL_JOB_ABORTED,
} kl_job_state;

struct st_slot;

/* A job: what was asked, where it is, and how it ended. */
typedef struct st_job {
	struct st_job *next; /* newest first */
	int64_t id;
	kl_job_kind kind;
	kl_job_state state;
	struct st_slot *slot;
	char serial[KL_REGISTRY_NAME_MAX + 1];
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char work_order[KL_REGISTRY_NAME_MAX + 1]; /* "": any */
	char actor[160];
	int ek_type; /* kl_ek_type, KL_EK__MAX: detect */
	atomic_bool abort;
	char step[24]; /* current or last step */
	int step_index, steps;
	int64_t queued_ms, started_ms, finished_ms; /* wall clock */
	/* The result, once finished. */
	char reason[48];
	char message[512];
	char failed_step[24];
	char iak_serial[48], idevid_serial[48], new_serial[48];
	char fingerprint[65]; /* SHA-256 hex of the IDevID certificate (agent's verdict) */
	char ek_type_used[12];
	bool already_provisioned, resumed;
	double step_ms[KL_STEP__MAX];
	double total_ms, tpm_ms;
	int64_t record_id;
} st_job;

typedef struct st_slot {
	kl_station *st;
	char name[KL_STATION_SLOT_NAME_MAX + 1];
	char link[256];
	int link_up; /* 1 up, 0 down, -1 not probed yet */
	char link_error[256];
	st_job *pending, *current;
	int64_t last_job; /* the last finished job's id, 0 when none */
	pthread_cond_t cond;
	pthread_t thread;
	bool started;
	/* An agent slot ([slots] NAME = agent): a keyline-agent that attaches
	 * over the link listener is its DUT. conn is set by the handshake
	 * thread (under mu) and from then on used and freed by the slot's
	 * worker only. */
	bool agent;
	struct kl_link_conn *conn; /* NULL: no DUT attached */
	kl_link_agent_info info;   /* what its HELLO said */
	char agent_link[128];      /* "agent:tcp:127.0.0.1:40312", the job's link name */
	/* [slots] NAME = usb:auto or usb:PORT: its agent comes over USB, from
	 * any port ("") or this port path only; never over TCP. */
	bool usb;
	char usb_port[32];
	char usb_at[32]; /* the port of the device attached or attaching, "" none */
	int64_t attached_ms;
} st_slot;

/* A role rule from [roles]: who holds a role. */
typedef struct st_rule {
	unsigned role;
	enum { RULE_ANY, RULE_UID, RULE_GID } kind;
	uint32_t id;
} st_rule;

/* A queued event: one JSON-RPC notification line for the subscribers of
 * slot ("" for everyone). */
typedef struct st_event_entry {
	struct st_event_entry *next;
	char slot[KL_STATION_SLOT_NAME_MAX + 1];
	size_t len;
	char line[]; /* ends in '\n' */
} st_event_entry;

struct st_conn;

/* The caller of the method being handled: the kl_rpc_call's ctx. */
struct api_batch;

typedef struct st_caller {
	kl_station *st;
	struct st_conn *conn; /* NULL in process, and in a st_bjob */
	unsigned roles;
	char actor[160];
	bool subscribed;
	char sub_slot[KL_STATION_SLOT_NAME_MAX + 1]; /* "" all */
	/* A pre-registration batch sent in pieces (api_prereg.c), which
	 * lives no longer than its connection: the poll loop calls
	 * batch_drop(c, false) once batch_deadline_ms passes (0: never) and
	 * batch_drop(c, true) when the connection closes. A st_bjob's copy
	 * of the caller never touches it. */
	struct api_batch *batch;
	int64_t batch_deadline_ms;
	void (*batch_drop)(struct st_caller *c, bool closing);
	/* What st_api_defer_arg gave the deferred function (NULL otherwise). */
	void *defer_arg;
} st_caller;

/* A socket API call handed to the backend worker: fn runs there on call,
 * whose ctx is caller (a copy: the connection may close meanwhile, and then
 * the answer is dropped). conn_id names the connection to answer on. */
typedef struct st_bjob {
	struct st_bjob *next;
	uint64_t conn_id;
	kl_rpc_call *call;
	int (*fn)(kl_rpc_call *call);
	st_caller caller;
	void (*arg_free)(void *arg); /* frees caller.defer_arg, NULL: nothing to free */
	/* A job with no call (call NULL): task(s, caller.defer_arg) runs on the
	 * worker and nothing is answered (st_backend_audit). */
	void (*task)(kl_station *s, void *arg);
} st_bjob;

struct kl_station {
	kl_home *home;
	bool offline; /* in process, read-only: no slots, no socket, no HSM */
	kl_store *store;
	kl_registry *reg;
	/* A second connection for the API's reads, used by the main thread
	 * only and without the backend lock (WAL: readers never wait for the
	 * writer), so that lists and look-ups stay prompt while every slot
	 * commits. Offline, the same as store/reg. */
	kl_store *rstore;
	kl_registry *rreg;
	kl_trust *trust;
	kl_engine_config ecfg;
	kl_life_config lcfg;
	EVP_PKEY *record_key;
	X509 *record_cert;
	/* The HSM's health, as the last check saw it (hsm_ok and hsm_error
	 * under mu; hsm_gave_up under backend). */
	bool hsm_ok;
	bool hsm_gave_up; /* a login after a reconnect failed: never again */
	char hsm_error[512];
	char station_id[128];
	char crl_path[PATH_MAX];
	long crl_days;

	pthread_mutex_t backend;
	pthread_mutex_t mu;
	st_slot slots[KL_STATION_MAX_SLOTS];
	size_t nslots;
	st_job *jobs;
	size_t njobs;
	int64_t next_job;
	int64_t passed, failed; /* jobs since start */
	int64_t started_ms;

	/* Events for subscribers: lines queued by any thread, sent by the loop. */
	st_event_entry *ev_head, *ev_tail;
	size_t ev_count;
	int wake[2];          /* self-pipe: workers and signals wake the loop */
	atomic_bool stopping; /* set by kl_station_stop, from any thread or a handler */

	/* The socket. */
	int lfd;
	int sock_lock; /* flock()ed PATH.lock while the station owns the path */
	char sock_path[PATH_MAX];
	mode_t sock_mode;
	gid_t sock_gid;
	int max_clients;
	int max_clients_per_uid;
	int idle_timeout_s;
	int idle_close_s;  /* 0: never */
	long link_probe_s; /* station.link_probe_s: seconds between link probes of an idle slot */
	size_t max_out;
	struct st_conn **conns;
	size_t nconns, conns_cap;
	st_rule rules[64];
	size_t nrules;
	uid_t self_uid;
	kl_rpc_server rpc;
	int open_batches;      /* pre-registration batches holding entries (poll thread) */
	uint64_t next_conn_id; /* the loop's, for st_bjob.conn_id */

	/* [link]: the keyline-agent listener (station_link.c). */
	kl_link_listener *link_l; /* NULL: no [link] listen */
	char link_listen[128];
	bool link_allow_any, zero_touch, require_scan;
	long hello_timeout_ms;
	/* [slots] NAME = usb:...: the hot-plug watch for link.usb_id, polled
	 * by the loop without waiting (station_link.c). NULL: no usb slot. */
	kl_usb *usb;
	uint16_t usb_vid, usb_pid;
	int link_handshakes;      /* handshake threads running (mu) */
	pthread_cond_t link_cond; /* signalled as each one ends */

	/* The backend worker (station_backend.c). */
	pthread_mutex_t bq_mu;
	pthread_cond_t bq_cond;
	st_bjob *bq_head, *bq_tail; /* to run, oldest first */
	st_bjob *bq_done;           /* settled, for the loop to send; newest first */
	bool bq_stop;
	bool bq_started;
	pthread_t bq_thread;
	/* The worker's own connection for its long reads (audit.verify), so
	 * that it needs neither the loop's rstore nor `backend`. Offline, the
	 * same as store. */
	kl_store *bstore;
};

/* Wall-clock milliseconds since the epoch. */
static inline int64_t st_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- station_events.c ---- */

/* Wakes the poll loop (async-signal-safe). */
void st_wake(kl_station *s);
/* {"type": type, "time_ms": now}, to be completed and queued with
 * st_event; NULL on NOMEM. */
json_object *st_event_new(const char *type);
/* Queues event o (taken; NULL is ignored) for the subscribers of slot
 * (NULL: everyone) as a JSON-RPC "event" notification. Takes mu itself;
 * does nothing offline. */
void st_event(kl_station *s, const char *slot, json_object *o);
/* Takes the whole queue (oldest first) for the loop to send. */
st_event_entry *st_events_take(kl_station *s);
void st_events_free(st_event_entry *e);

/* ---- station_signals.c ---- */

#define ST_STOP_SIGNALS 3 /* SIGTERM, SIGINT, SIGHUP */

/* What st_signals_take replaced, for st_signals_restore. */
typedef struct st_signals {
	struct sigaction old[ST_STOP_SIGNALS], old_pipe;
	size_t installed;
	bool pipe, masked;
	sigset_t old_mask;
} st_signals;

/* Starts a thread of the daemon with the stop signals blocked in it (the
 * only way the daemon starts threads). -KL_E_NOMEM when it cannot. */
int st_thread_start(pthread_t *t, void *(*fn)(void *), void *arg) KL_MUST_CHECK;
/* At the start of kl_station_run: blocks SIGTERM, SIGINT and SIGHUP in
 * the calling thread (threads started later inherit the block), makes
 * them stop s (kl_station_stop) and ignores SIGPIPE. What it replaced goes
 * to *saved. */
int st_signals_take(kl_station *s, st_signals *saved) KL_MUST_CHECK;
/* On the poll thread, once the workers run: unblocks the stop signals
 * there, the one thread that takes them. */
int st_signals_unblock(void) KL_MUST_CHECK;
/* Puts back what st_signals_take replaced. */
void st_signals_restore(st_signals *saved);
/* The last stop signal caught since st_signals_take, 0 when none. */
int st_signal_caught(void);

/* ---- station_hsm.c ---- */

void st_lock_backend(kl_station *s);
void st_unlock_backend(kl_station *s);
/* The same, as the engine's and the lifecycle's lock hooks (ctx: s). */
void st_lock_hook(void *ctx);
void st_unlock_hook(void *ctx);
/* Loads (first start: makes) the key that signs sanitization records and
 * its certificate into s->record_key / s->record_cert. */
int st_record_signer(kl_station *s);
/* Whether a job that failed for reason (st_job.reason) may have met the
 * HSM: only then is st_hsm_check worth its round trip. */
bool st_hsm_suspect(const char *reason);
/* After a job that failed for an HSM reason: reopens the HSM once when it
 * no longer serves our session (kl_hsm_check: no key signs for the probe),
 * and tells subscribers. Takes backend itself. */
void st_hsm_check(kl_station *s, const char *actor);
/* Writes the CRL files (DER and PEM) after a revocation. backend held. */
int st_publish_crl(kl_station *s, const char *actor, char *path, size_t size, int64_t *number);

/* ---- station_jobs.c ---- */

const char *kl_job_kind_name(kl_job_kind k);
const char *kl_job_state_name(kl_job_state s);
/* Queues a job on a slot (NULL: the first free one). -KL_E_STATE when the
 * slot is busy, -KL_E_NOTFOUND for an unknown slot, -KL_E_UNAVAILABLE when
 * the station is stopping. *ret is the job (owned by the station). */
int st_job_submit(kl_station *s, const char *slot, kl_job_kind kind, const char *serial,
                  const char *tenant, const char *work_order, int ek_type, const char *actor,
                  st_job **ret);
st_job *st_job_find(kl_station *s, int64_t id); /* with mu held */
/* The job.finished event of j, built with mu held (NULL on NOMEM); queue
 * it with st_event after letting mu go. */
json_object *st_job_finished_new(st_job *j);
/* Takes a queued job off its slot as aborted, with message, and returns
 * its job.finished event (as st_job_finished_new). mu held. */
json_object *st_job_abort_queued(st_job *j, const char *message);
/* Starts one worker thread per slot; on failure the started ones are
 * stopped again. */
int st_workers_start(kl_station *s);
/* Aborts queued jobs, asks running ones to stop at their next step, and
 * joins every worker. */
void st_workers_stop(kl_station *s);
/* Forgets every job (workers stopped). */
void st_jobs_free(kl_station *s);

/* ---- station_backend.c ---- */

/* Starts and stops the worker. Stopping lets the call in progress end;
 * calls still queued are answered "unavailable" (moved to the done list). */
int st_backend_start(kl_station *s);
void st_backend_stop(kl_station *s);
bool st_backend_running(kl_station *s);
/* Queues j (taken) to run; when the worker is stopping or stopped, j is
 * answered "unavailable" at once (done list). */
void st_backend_submit(kl_station *s, st_bjob *j);
/* Writes an audit entry (kl_store_audit_noted: a failure is counted and
 * logged) on the backend worker, after every call queued before it, so that
 * the poll loop never waits on the backend lock for it; in line when the
 * worker is not running. The strings are copied. */
void st_backend_audit(kl_station *s, const char *actor, const char *action, const char *detail);
/* The settled calls, oldest first, for the loop to send. */
st_bjob *st_backend_take_done(kl_station *s);
/* Frees a list of jobs and their calls, unanswered. */
void st_bjobs_free(st_bjob *j);

/* ---- station_link.c ---- */

#define ST_LINK_HANDSHAKES 16          /* handshakes at once; more wait in the listen backlog */
#define ST_USB_ID_DEFAULT  "1d6b:0104" /* link.usb_id: Linux Foundation's gadget pair */
#define ST_USB_POLL_MS     100         /* the loop's longest sleep while watching USB */

/* Reads [link] (listen, allow_any, hello_timeout_ms, zero_touch,
 * require_scan, usb_id). */
int st_link_config(kl_station *s) KL_MUST_CHECK;
/* Binds link.listen, when set, and starts the USB watch when a slot is
 * usb (the devices already there are reported as arriving). */
int st_link_listen(kl_station *s) KL_MUST_CHECK;
/* The listener's socket for the poll loop, -1 when there is none or
 * ST_LINK_HANDSHAKES run (the loop is woken when one ends). */
int st_link_fd(kl_station *s);
/* On the poll thread when the listener is readable: accepts what waits
 * (never blocks) and starts a handshake thread for each. */
void st_link_accept(kl_station *s);
/* How long the loop may sleep in poll: short while a USB watch must be
 * polled (its events are taken without waiting on each wake). */
int st_link_poll_ms(kl_station *s);
/* On the poll thread after every wake: takes the USB watch's events
 * without waiting; an arrival at a free usb slot's port starts a handshake
 * thread that opens the device, a departure is logged (the slot's worker
 * sees its link fail). */
void st_link_usb_events(kl_station *s);
/* A port path "1-2" or "1-2.3" ([slots] NAME = usb:PORT). */
bool st_usb_port_ok(const char *port);
/* Waits for the handshake threads (they see `stopping` within 50 ms) and
 * closes the listener. */
void st_link_stop(kl_station *s);

/* ---- station_server.c ---- */

/* Runs fn(call) for a method that may take long (walks the audit log,
 * builds or signs a CRL): on the backend worker for a socket client, the
 * answer sent when it is done; now, on this thread, in process or when the
 * worker is not running. A handler returns what this returns. */
int st_api_defer(kl_rpc_call *call, int (*fn)(kl_rpc_call *call));
/* The same, with arg for fn (api_caller(call)->defer_arg): data the call
 * takes from its connection, such as a pre-registration batch, so that the
 * connection may close while fn runs. arg is freed with arg_free once fn
 * has run, or when it will not run. */
int st_api_defer_arg(kl_rpc_call *call, int (*fn)(kl_rpc_call *call), void *arg,
                     void (*arg_free)(void *arg));
/* Number of clients connected. */
size_t st_client_count(kl_station *s);
/* The JSON-RPC server's denial hook: audits and logs the refusal. */
void st_on_denied(void *ctx, unsigned roles, const char *method);
/* Takes the socket path for s (a lock on PATH.lock, held until
 * st_server_free): -KL_E_EXISTS, naming the path, when another station
 * holds it. */
int st_socket_claim(kl_station *s) KL_MUST_CHECK;
/* Closes every connection, the socket and the self-pipe. */
void st_server_free(kl_station *s);

/* ---- api_*.c: the method tables, one per area, in rpc.methods order ---- */

extern const kl_rpc_method st_api_station[]; /* station.status, slots.list */
extern const kl_rpc_method st_api_jobs[];    /* job.* */
extern const kl_rpc_method st_api_events[];  /* events.* */
extern const kl_rpc_method st_api_devices[]; /* devices.list, devices.show */
extern const kl_rpc_method st_api_prereg[];  /* devices.preregister* */
extern const kl_rpc_method st_api_life[];    /* device.*: the lifecycle */
extern const kl_rpc_method st_api_ca[];      /* crl.publish, ca.status, audit.* */

#endif
