/* KlStationClient: keyline-ui's one connection to the station daemon's
 * socket API (JSON-RPC 2.0, one JSON object per line, docs/api.md).
 *
 * Everything is asynchronous (GIO): the connection, line reads, writes, and
 * every call, whose answer is matched to it by id. Event notifications are
 * emitted as the "event" signal. When the station goes away the client says
 * so (the "state" and "message" properties), fails the calls in flight and
 * connects again by itself with a growing back-off; once connected it asks
 * rpc.methods (what this user may call), subscribes to events, and emits
 * "ready" so that views reload. It polls station.status to report whether
 * the station's HSM is logged in.
 *
 * json-c stays inside: views get GVariants (kl-json.h) and GObject
 * properties. */
#ifndef KL_UI_STATION_CLIENT_H
#define KL_UI_STATION_CLIENT_H

#include <gio/gio.h>

#include "kl-api.h"

G_BEGIN_DECLS

typedef enum {
	KL_STATION_STATE_IDLE,       /* not started, or no socket known yet */
	KL_STATION_STATE_CONNECTING, /* a connection attempt is under way */
	KL_STATION_STATE_CONNECTED,  /* connected, methods known, subscribed */
	KL_STATION_STATE_DOWN,       /* unreachable: waiting to try again */
} KlStationState;

GType kl_station_state_get_type(void);
#define KL_TYPE_STATION_STATE (kl_station_state_get_type())

#define KL_TYPE_STATION_CLIENT (kl_station_client_get_type())
G_DECLARE_FINAL_TYPE(KlStationClient, kl_station_client, KL, STATION_CLIENT, GObject)

KlStationClient *kl_station_client_new(const char *socket_path);

/* Starts (or restarts) connecting to socket_path (NULL: the current one). */
void kl_station_client_start(KlStationClient *self, const char *socket_path);

/* Closes the connection and stops trying: calls in flight fail. The I/O in
 * flight holds references to the client, so close it before dropping it. */
void kl_station_client_close(KlStationClient *self);

KlStationState kl_station_client_get_state(KlStationClient *self);
gboolean kl_station_client_get_hsm_logged_in(KlStationClient *self);
const char *kl_station_client_get_station_id(KlStationClient *self);
/* A sentence for people about the connection ("Connected to station-1",
 * "The station is not running (…). Trying again in 4 s."). */
const char *kl_station_client_get_message(KlStationClient *self);
const char *kl_station_client_get_socket_path(KlStationClient *self);

/* Whether rpc.methods listed method for this connection's user. FALSE while
 * not connected. */
gboolean kl_station_client_can(KlStationClient *self, const char *method);

/* The back-off before the n-th retry (n >= 1), in milliseconds. */
guint kl_station_client_backoff_ms(guint attempt);

G_END_DECLS

#endif
