/* A client of the station's socket API (docs/api.md), for the CLI, tests and
 * benchmarks: one connection, JSON-RPC 2.0 calls with answers matched by id,
 * and the event notifications that arrive in between kept in order.
 *
 *   kl_client *c;
 *   kl_client_connect("/var/lib/keyline/station.sock", &c);
 *   json_object *res;
 *   kl_client_call(c, "station.status", NULL, &res);   // 0, or -err with
 *   json_object_put(res);                              // the server's message
 *   kl_client_free(c);
 *
 * Not thread-safe: one thread per client. */
#ifndef KL_STATION_CLIENT_H
#define KL_STATION_CLIENT_H

#include <stdbool.h>

#include <json-c/json.h>

#include "kl_error.h"

typedef struct kl_client kl_client;

/* Connects to the station's socket. -KL_E_UNAVAILABLE when no station
 * listens there (no socket, or a stale one), -KL_E_PERM when the socket's
 * mode refuses this user. */
int kl_client_connect(const char *path, kl_client **ret) KL_MUST_CHECK;
void kl_client_free(kl_client *c);

/* Calls method with params (an object or NULL; taken). On success *result
 * (json_object_put it) is the result. A JSON-RPC error is returned as a
 * negative kl_err (the reason in error.data mapped back; -KL_E_PERM for a
 * denial) with the server's message as the error detail, and
 * kl_client_last_code() gives its JSON-RPC code. timeout_ms <= 0 waits as
 * long as it takes. */
int kl_client_call(kl_client *c, const char *method, json_object *params,
                   json_object **result) KL_MUST_CHECK;
int kl_client_call_timeout(kl_client *c, const char *method, json_object *params,
                           json_object **result, int timeout_ms) KL_MUST_CHECK;
int kl_client_last_code(const kl_client *c) KL_MUST_CHECK;

/* Sends raw bytes (tests of bad input). */
int kl_client_send_raw(kl_client *c, const void *data, size_t len) KL_MUST_CHECK;
/* The next line from the station (answer or event) as parsed JSON, waiting
 * up to timeout_ms (< 0: forever). -KL_E_TIMEOUT, -KL_E_IO when it closed. */
int kl_client_read(kl_client *c, int timeout_ms, json_object **ret) KL_MUST_CHECK;

/* The next event notification's params, queued while calling or read now.
 * Returns 0, -KL_E_TIMEOUT, or -KL_E_IO when the station went away. */
int kl_client_next_event(kl_client *c, int timeout_ms, json_object **ret) KL_MUST_CHECK;

/* The socket a home's station listens on: station.socket from its
 * keyline.conf, else HOME/station.sock. */
int kl_client_socket_path(const char *home_dir, char *out, size_t size) KL_MUST_CHECK;

#endif
