/* The station daemon (`keyline station`): owns the HSM session, the
 * registry and the slots, runs one job per slot in its own thread, and
 * serves the socket API (docs/api.md) to the UI, the MES and the CLI.
 *
 * The same method tables also run in process, without a socket, over a
 * home whose station is not running (kl_station_open_offline): the CLI uses
 * it for commands that only read.
 *
 * kl_station is opaque; the daemon's own files share its body through
 * station_internal.h. */
#ifndef KL_STATION_STATION_H
#define KL_STATION_STATION_H

#include <stddef.h>

#include "kl_error.h"
#include "rpc.h" /* KL_RPC_ROLE_* for kl_station_call */

typedef struct kl_station kl_station;

/* Opens the station of a home: configuration, registry, HSM login and CA,
 * trust bundle, sanitization-record key, slots. Refuses with a sentence
 * naming what is unusable. Does not yet listen. */
int kl_station_open(const char *home_dir, kl_station **ret) KL_MUST_CHECK;
/* The same, read-only, for in-process calls: registry and CA certificate
 * only, no HSM, no slots. */
int kl_station_open_offline(const char *home_dir, kl_station **ret) KL_MUST_CHECK;
/* Stops the workers if they run and frees everything; NULL is fine. */
void kl_station_free(kl_station *s);

/* Binds the socket (refusing when a station already owns the path), starts
 * the slot workers and serves until kl_station_stop. SIGTERM, SIGINT and
 * SIGHUP call kl_station_stop while it runs: the poll thread takes them, the
 * workers block them; the old dispositions come back on return. Running
 * jobs are then interrupted at their next step boundary and cleaned up like
 * refusals; queued ones are aborted. Returns 0 after a clean stop. */
int kl_station_run(kl_station *s) KL_MUST_CHECK;
/* Any thread; async-signal-safe. */
void kl_station_stop(kl_station *s);

/* Runs one request line in process with the given roles (KL_RPC_ROLE_*;
 * offline use); *answer (free() it) receives the answer line. */
int kl_station_call(kl_station *s, unsigned roles, const char *actor, const char *request,
                    char **answer) KL_MUST_CHECK;

/* What the station was opened with (keyline.conf), for the program's own
 * messages: station.id, the number of [slots], the socket path (empty for
 * an offline station). Valid while s lives. */
const char *kl_station_id(const kl_station *s);
size_t kl_station_slot_count(const kl_station *s);
const char *kl_station_socket_path(const kl_station *s);

#endif
