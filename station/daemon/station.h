/* The station daemon (`keyline station`): owns the HSM session, the
 * registry and the slots, runs one job per slot in its own thread, and
 * serves the socket API (docs/api.md) to the UI, the MES and the CLI.
 *
 * Threads and locks:
 *   - the main thread runs the poll loop: accepts clients, reads requests,
 *     answers them (kl_rpc_feed) and writes queued events to subscribers;
 *   - one worker per slot runs that slot's jobs (provision, renew,
 *     decommission) and, when idle, probes the slot's link;
 *   - `backend` serialises every use of the store, registry, CA and HSM
 *     (the engine takes it through its lock hooks, never while it waits on
 *     a TPM); `mu` guards slots, jobs, the event queue and counters.
 *     Lock order: backend before mu; nobody holds mu while taking backend.
 *
 * The same method table also runs in process, without a socket, over a
 * home whose station is not running (kl_station_open_offline): the CLI uses
 * it for commands that only read. */
#ifndef KL_STATION_STATION_H
#define KL_STATION_STATION_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine.h"
#include "home.h"
#include "lifecycle.h"
#include "rpc.h"

typedef struct kl_station kl_station;

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

const char *kl_job_kind_name(kl_job_kind k);
const char *kl_job_state_name(kl_job_state s);

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
} st_slot;

/* A role rule from [roles]: who holds a role. */
typedef struct st_rule {
	unsigned role;
	enum { RULE_ANY, RULE_UID, RULE_GID } kind;
	uint32_t id;
} st_rule;

struct st_conn;

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
	struct st_event *ev_head, *ev_tail;
	size_t ev_count;
	int wake[2]; /* self-pipe: workers and signals wake the loop */
	volatile sig_atomic_t stopping;

	/* The socket. */
	int lfd;
	char sock_path[PATH_MAX];
	mode_t sock_mode;
	gid_t sock_gid;
	int max_clients;
	int idle_timeout_s;
	size_t max_out;
	struct st_conn **conns;
	size_t nconns, conns_cap;
	st_rule rules[64];
	size_t nrules;
	uid_t self_uid;
	kl_rpc_server rpc;
};

/* Opens the station of a home: configuration, registry, HSM login and CA,
 * trust bundle, sanitization-record key, slots. Refuses with a sentence
 * naming what is unusable. Does not yet listen. */
int kl_station_open(const char *home_dir, kl_station **ret);
/* The same, read-only, for in-process calls: registry and CA certificate
 * only, no HSM, no slots. */
int kl_station_open_offline(const char *home_dir, kl_station **ret);
void kl_station_free(kl_station *s);

/* Binds the socket (refusing when a station already answers on it), starts
 * the slot workers and serves until kl_station_stop. Running jobs are then
 * interrupted at their next step boundary and cleaned up like refusals;
 * queued ones are aborted. Returns 0 after a clean stop. */
int kl_station_run(kl_station *s);
/* Async-signal-safe. */
void kl_station_stop(kl_station *s);

/* Runs one request line in process with the given roles (offline use);
 * *answer (free() it) receives the answer line. */
int kl_station_call(kl_station *s, unsigned roles, const char *actor, const char *request,
                    char **answer);

/* --- between station.c and station_api.c --- */

/* The method table. */
extern const kl_rpc_method kl_station_methods[];

/* The caller of the method being handled. */
typedef struct st_caller {
	kl_station *st;
	struct st_conn *conn; /* NULL in process */
	unsigned roles;
	char actor[160];
	bool subscribed;
	char sub_slot[KL_STATION_SLOT_NAME_MAX + 1]; /* "" all */
} st_caller;

void st_lock_backend(kl_station *s);
void st_unlock_backend(kl_station *s);

/* Queues a job on a slot (NULL: the first free one). -KL_E_STATE when the
 * slot is busy, -KL_E_NOTFOUND for an unknown slot, -KL_E_UNAVAILABLE when
 * the station is stopping. *ret is the job (owned by the station). */
int st_job_submit(kl_station *s, const char *slot, kl_job_kind kind, const char *serial,
                  const char *tenant, int ek_type, const char *actor, st_job **ret);
st_job *st_job_find(kl_station *s, int64_t id); /* with mu held */

/* Queues an event ({"type":..., ...} as JSON text) for subscribers of slot
 * (NULL: everyone). Takes mu itself. */
void st_event(kl_station *s, const char *slot, const char *json);

/* Writes the CRL files (DER and PEM) after a revocation. backend held. */
int st_publish_crl(kl_station *s, const char *actor, char *path, size_t size, int64_t *number);

/* Number of clients connected. */
size_t st_client_count(kl_station *s);

#endif
