/* The station client; see kl-station-client.h. */
#include "kl-station-client.h"

#include <gio/gunixsocketaddress.h>
#include <json-c/json.h>

#include "kl-json.h"

#define STATUS_POLL_S 5

struct _KlStationClient {
	GObject parent_instance;

	char *socket_path;
	KlStationState state;
	gboolean hsm_logged_in;
	char *station_id;
	char *message;
	GHashTable *methods; /* name -> name, from rpc.methods */

	GSocketClient *sock_client;
	GSocketConnection *conn;
	GDataInputStream *in;
	GOutputStream *out;
	GCancellable *cancel; /* this connection's I/O */
	GQueue writes;        /* GBytes lines waiting for the stream */
	gboolean writing;

	gint64 next_id;
	GHashTable *pending; /* id -> GTask */

	guint attempt; /* failed attempts in a row */
	guint retry_source;
	guint poll_source;
	gboolean status_in_flight;
};

static void kl_station_client_api_init(KlApiInterface *iface);

G_DEFINE_TYPE_WITH_CODE(KlStationClient, kl_station_client, G_TYPE_OBJECT,
                        G_IMPLEMENT_INTERFACE(KL_TYPE_API, kl_station_client_api_init))

G_DEFINE_ENUM_TYPE(KlStationState, kl_station_state,
                   G_DEFINE_ENUM_VALUE(KL_STATION_STATE_IDLE, "idle"),
                   G_DEFINE_ENUM_VALUE(KL_STATION_STATE_CONNECTING, "connecting"),
                   G_DEFINE_ENUM_VALUE(KL_STATION_STATE_CONNECTED, "connected"),
                   G_DEFINE_ENUM_VALUE(KL_STATION_STATE_DOWN, "down"))

enum {
	PROP_0,
	PROP_SOCKET_PATH,
	PROP_STATE,
	PROP_HSM_LOGGED_IN,
	PROP_STATION_ID,
	PROP_MESSAGE,
	N_PROPS
};

enum { SIGNAL_EVENT, SIGNAL_READY, SIGNAL_STATUS, N_SIGNALS };

static GParamSpec *props[N_PROPS];
static guint signals[N_SIGNALS];

static void connect_now(KlStationClient *self);
static void read_next(KlStationClient *self);

guint kl_station_client_backoff_ms(guint attempt)
{
	/* 0.5 s, 1 s, 2 s, 4 s, 8 s, then every 10 s: a station that restarts
	 * is found again quickly, one that is down is not hammered. */
	guint ms = 500;

	for (guint i = 1; i < attempt && ms < 10000; i++)
		ms *= 2;
	return MIN(ms, 10000);
}

static void set_message(KlStationClient *self, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void set_message(KlStationClient *self, const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (g_strcmp0(m, self->message) == 0) {
		g_free(m);
		return;
	}
	g_free(self->message);
	self->message = m;
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_MESSAGE]);
}

static void set_state(KlStationClient *self, KlStationState state)
{
	if (self->state == state)
		return;
	self->state = state;
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_STATE]);
}

static void set_hsm(KlStationClient *self, gboolean logged_in)
{
	if (self->hsm_logged_in == logged_in)
		return;
	self->hsm_logged_in = logged_in;
	g_object_notify_by_pspec(G_OBJECT(self), props[PROP_HSM_LOGGED_IN]);
}

/* ---- writing ---- */

static void write_next(KlStationClient *self);

static void write_done(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = data;
	g_autoptr(GError) error = NULL;

	if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(src), res, NULL, &error)) {
		/* The reader sees the same failure and reconnects. */
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			g_debug("station write: %s", error->message);
		g_object_unref(self);
		return;
	}
	self->writing = FALSE;
	write_next(self);
	g_object_unref(self);
}

static void write_next(KlStationClient *self)
{
	GBytes *line;

	if (self->writing || !self->out)
		return;
	line = g_queue_pop_head(&self->writes);
	if (!line)
		return;
	self->writing = TRUE;
	/* The stream keeps the data alive only as long as we do: hand it the
	 * bytes through the task's lifetime by attaching them to self's queue
	 * of one. */
	g_object_set_data_full(G_OBJECT(self->out), "kl-line", line, (GDestroyNotify)g_bytes_unref);
	g_output_stream_write_all_async(self->out, g_bytes_get_data(line, NULL),
	                                g_bytes_get_size(line), G_PRIORITY_DEFAULT, self->cancel,
	                                write_done, g_object_ref(self));
}

/* ---- calls ---- */

static void fail_pending(KlStationClient *self, const char *why)
{
	GList *tasks = g_hash_table_get_values(self->pending);

	/* The table frees its keys, never its values: each task is ours. */
	g_hash_table_remove_all(self->pending);
	for (GList *l = tasks; l; l = l->next) {
		g_task_return_new_error(l->data, KL_API_ERROR, KL_API_ERROR_DISCONNECTED, "%s",
		                        why);
		g_object_unref(l->data);
	}
	g_list_free(tasks);
}

static void client_call(KlApi *api, const char *method, GVariant *params, GCancellable *cancellable,
                        GAsyncReadyCallback callback, gpointer user_data)
{
	KlStationClient *self = KL_STATION_CLIENT(api);
	GTask *task = g_task_new(self, cancellable, callback, user_data);
	json_object *req;
	const char *text;
	gint64 id;
	g_autofree char *params_text = NULL;

	g_task_set_source_tag(task, client_call);
	g_task_set_task_data(task, g_strdup(method), g_free);
	if (params)
		g_variant_ref_sink(params);
	if (!self->out) {
		g_task_return_new_error(task, KL_API_ERROR, KL_API_ERROR_DISCONNECTED,
		                        "not connected to the station");
		g_object_unref(task);
		if (params)
			g_variant_unref(params);
		return;
	}
	id = ++self->next_id;
	req = json_object_new_object();
	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "id", json_object_new_int64(id));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params) {
		params_text = kl_json_print(params, FALSE);
		json_object_object_add(req, "params", json_tokener_parse(params_text));
		g_variant_unref(params);
	}
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN |
	                                               JSON_C_TO_STRING_NOSLASHESCAPE);
	g_queue_push_tail(&self->writes,
	                  g_bytes_new_take(g_strconcat(text, "\n", NULL), strlen(text) + 1));
	json_object_put(req);
	g_hash_table_insert(self->pending, g_memdup2(&id, sizeof(id)), task);
	write_next(self);
}

static GVariant *client_call_finish(KlApi *api, GAsyncResult *result, GError **error)
{
	g_return_val_if_fail(g_task_is_valid(result, api), NULL);
	return g_task_propagate_pointer(G_TASK(result), error);
}

static void kl_station_client_api_init(KlApiInterface *iface)
{
	iface->call = client_call;
	iface->call_finish = client_call_finish;
}

/* An answer: the pending call with its id gets its result or error. */
static void handle_answer(KlStationClient *self, json_object *o)
{
	json_object *idv, *v;
	gint64 id;
	GTask *task;

	if (!json_object_object_get_ex(o, "id", &idv) || !json_object_is_type(idv, json_type_int))
		return; /* e.g. "too many clients" with id null: the reader sees EOF next */
	id = json_object_get_int64(idv);
	task = g_hash_table_lookup(self->pending, &id);
	if (!task)
		return;
	g_hash_table_remove(self->pending, &id);
	if (json_object_object_get_ex(o, "error", &v)) {
		json_object *code = NULL, *msg = NULL;

		json_object_object_get_ex(v, "code", &code);
		json_object_object_get_ex(v, "message", &msg);
		g_task_return_new_error(task, KL_API_ERROR,
		                        code ? json_object_get_int(code) : -32603, "%s",
		                        msg ? json_object_get_string(msg) : "error");
	} else {
		g_autoptr(GVariant) r = NULL;
		g_autoptr(GError) error = NULL;
		const char *text = json_object_object_get_ex(o, "result", &v)
		                       ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN)
		                       : "{}";

		r = kl_json_parse(text, &error);
		if (r)
			g_task_return_pointer(task, g_steal_pointer(&r),
			                      (GDestroyNotify)g_variant_unref);
		else
			g_task_return_error(task, g_steal_pointer(&error));
	}
	g_object_unref(task);
}

static void handle_line(KlStationClient *self, const char *line)
{
	json_object *o = json_tokener_parse(line), *m, *p;

	if (!o || !json_object_is_type(o, json_type_object)) {
		g_debug("station sent a line that is not a JSON object");
		json_object_put(o);
		return;
	}
	if (json_object_object_get_ex(o, "method", &m) &&
	    g_strcmp0(json_object_get_string(m), "event") == 0 &&
	    json_object_object_get_ex(o, "params", &p)) {
		g_autoptr(GVariant) params =
		    kl_json_parse(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN), NULL);

		if (params)
			g_signal_emit(self, signals[SIGNAL_EVENT], 0,
			              kl_variant_str(params, "type", ""), params);
	} else {
		handle_answer(self, o);
	}
	json_object_put(o);
}

/* ---- connection ---- */

static gboolean retry_cb(gpointer data)
{
	KlStationClient *self = data;

	self->retry_source = 0;
	connect_now(self);
	return G_SOURCE_REMOVE;
}

/* The connection is gone (or never came): say so, fail what was asked, and
 * try again after the back-off. */
static void disconnected(KlStationClient *self, const char *why)
{
	guint ms;

	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	g_clear_object(&self->in);
	self->out = NULL;
	if (self->conn)
		g_io_stream_close(G_IO_STREAM(self->conn), NULL, NULL);
	g_clear_object(&self->conn);
	g_queue_clear_full(&self->writes, (GDestroyNotify)g_bytes_unref);
	self->writing = FALSE;
	self->status_in_flight = FALSE;
	g_clear_handle_id(&self->poll_source, g_source_remove);
	g_hash_table_remove_all(self->methods);
	fail_pending(self, why);
	self->attempt++;
	ms = kl_station_client_backoff_ms(self->attempt);
	set_hsm(self, FALSE);
	set_message(self, "No connection to the station: %s. Trying again in %u s.", why,
	            (ms + 999) / 1000);
	set_state(self, KL_STATION_STATE_DOWN);
	g_clear_handle_id(&self->retry_source, g_source_remove);
	self->retry_source = g_timeout_add(ms, retry_cb, self);
}

static void line_read(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = data;
	g_autoptr(GError) error = NULL;
	g_autofree char *line = NULL;
	gsize len;

	line =
	    g_data_input_stream_read_line_finish_utf8(G_DATA_INPUT_STREAM(src), res, &len, &error);
	if (G_DATA_INPUT_STREAM(src) != self->in) {
		/* A connection we already dropped. */
		g_object_unref(self);
		return;
	}
	if (error || !line) {
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			disconnected(self,
			             error ? error->message : "the station closed the connection");
		g_object_unref(self);
		return;
	}
	handle_line(self, line);
	if (self->in == G_DATA_INPUT_STREAM(src))
		read_next(self);
	g_object_unref(self);
}

static void read_next(KlStationClient *self)
{
	g_data_input_stream_read_line_async(self->in, G_PRIORITY_DEFAULT, self->cancel, line_read,
	                                    g_object_ref(self));
}

static void status_done(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = KL_STATION_CLIENT(src);
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(self), res, NULL);

	self->status_in_flight = FALSE;
	if (!r)
		return;
	set_hsm(self, kl_variant_bool(r, "hsm_logged_in", FALSE));
	if (g_strcmp0(self->station_id, kl_variant_str(r, "station", NULL)) != 0) {
		g_free(self->station_id);
		self->station_id = g_strdup(kl_variant_str(r, "station", NULL));
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_STATION_ID]);
	}
	if (self->state == KL_STATION_STATE_CONNECTED)
		set_message(self, "Connected to station %s%s", self->station_id,
		            kl_variant_bool(r, "stopping", FALSE) ? " (the station is stopping)"
		                                                  : "");
	g_signal_emit(self, signals[SIGNAL_STATUS], 0, r);
}

static gboolean poll_status(gpointer data)
{
	KlStationClient *self = data;

	if (self->status_in_flight) {
		/* Still no answer from the last poll: say so, keep waiting. */
		set_message(self, "The station is slow to answer…");
		return G_SOURCE_CONTINUE;
	}
	self->status_in_flight = TRUE;
	kl_api_call(KL_API(self), "station.status", NULL, NULL, status_done, NULL);
	return G_SOURCE_CONTINUE;
}

static void subscribed(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = KL_STATION_CLIENT(src);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(self), res, &error);

	if (!r) {
		if (!g_error_matches(error, KL_API_ERROR, KL_API_ERROR_DISCONNECTED))
			g_warning("events.subscribe: %s", error->message);
		return;
	}
	self->attempt = 0;
	set_state(self, KL_STATION_STATE_CONNECTED);
	set_message(self, "Connected to the station");
	poll_status(self);
	g_clear_handle_id(&self->poll_source, g_source_remove);
	self->poll_source = g_timeout_add_seconds(STATUS_POLL_S, poll_status, self);
	g_signal_emit(self, signals[SIGNAL_READY], 0);
}

static void methods_done(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = KL_STATION_CLIENT(src);
	g_autoptr(GError) error = NULL;
	g_autoptr(GVariant) r = kl_api_call_finish(KL_API(self), res, &error);
	g_autoptr(GVariant) list = NULL;
	GVariantIter it;
	GVariant *e;

	if (!r)
		return; /* disconnected: the retry asks again */
	list = kl_variant_child(r, "methods");
	g_hash_table_remove_all(self->methods);
	if (list) {
		g_variant_iter_init(&it, list);
		while (g_variant_iter_next(&it, "v", &e)) {
			const char *name = kl_variant_str(e, "name", NULL);

			if (name)
				g_hash_table_add(self->methods, g_strdup(name));
			g_variant_unref(e);
		}
	}
	kl_api_call(KL_API(self), "events.subscribe", NULL, NULL, subscribed, NULL);
}

static void connected(GObject *src, GAsyncResult *res, gpointer data)
{
	KlStationClient *self = data;
	g_autoptr(GError) error = NULL;
	GSocketConnection *conn = g_socket_client_connect_finish(G_SOCKET_CLIENT(src), res, &error);

	if (!conn) {
		if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
			const char *why = error->message;

			if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
			    g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
				why = "the station is not running";
			else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED))
				why = "this user may not open the station's socket";
			disconnected(self, why);
		}
		g_object_unref(self);
		return;
	}
	self->conn = conn;
	self->in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
	g_data_input_stream_set_newline_type(self->in, G_DATA_STREAM_NEWLINE_TYPE_LF);
	self->out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
	read_next(self);
	kl_api_call(KL_API(self), "rpc.methods", NULL, NULL, methods_done, NULL);
	g_object_unref(self);
}

static void connect_now(KlStationClient *self)
{
	g_autoptr(GSocketAddress) addr = NULL;

	if (!self->socket_path)
		return;
	g_clear_handle_id(&self->retry_source, g_source_remove);
	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	self->cancel = g_cancellable_new();
	set_state(self, KL_STATION_STATE_CONNECTING);
	if (self->attempt == 0)
		set_message(self, "Connecting to the station at %s…", self->socket_path);
	addr = g_unix_socket_address_new(self->socket_path);
	g_socket_client_connect_async(self->sock_client, G_SOCKET_CONNECTABLE(addr), self->cancel,
	                              connected, g_object_ref(self));
}

void kl_station_client_start(KlStationClient *self, const char *socket_path)
{
	g_return_if_fail(KL_IS_STATION_CLIENT(self));
	if (socket_path && g_strcmp0(socket_path, self->socket_path) != 0) {
		g_free(self->socket_path);
		self->socket_path = g_strdup(socket_path);
		g_object_notify_by_pspec(G_OBJECT(self), props[PROP_SOCKET_PATH]);
	}
	if (self->conn)
		disconnected(self, "reconnecting");
	self->attempt = 0;
	connect_now(self);
}

void kl_station_client_close(KlStationClient *self)
{
	g_return_if_fail(KL_IS_STATION_CLIENT(self));
	g_clear_handle_id(&self->retry_source, g_source_remove);
	g_clear_handle_id(&self->poll_source, g_source_remove);
	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	g_clear_object(&self->in);
	self->out = NULL;
	if (self->conn)
		g_io_stream_close(G_IO_STREAM(self->conn), NULL, NULL);
	g_clear_object(&self->conn);
	g_queue_clear_full(&self->writes, (GDestroyNotify)g_bytes_unref);
	self->writing = FALSE;
	self->status_in_flight = FALSE;
	g_hash_table_remove_all(self->methods);
	fail_pending(self, "the client was closed");
	set_state(self, KL_STATION_STATE_IDLE);
}

/* ---- GObject ---- */

KlStationClient *kl_station_client_new(const char *socket_path)
{
	return g_object_new(KL_TYPE_STATION_CLIENT, "socket-path", socket_path, NULL);
}

KlStationState kl_station_client_get_state(KlStationClient *self)
{
	return self->state;
}

gboolean kl_station_client_get_hsm_logged_in(KlStationClient *self)
{
	return self->hsm_logged_in;
}

const char *kl_station_client_get_station_id(KlStationClient *self)
{
	return self->station_id;
}

const char *kl_station_client_get_message(KlStationClient *self)
{
	return self->message ? self->message : "";
}

const char *kl_station_client_get_socket_path(KlStationClient *self)
{
	return self->socket_path;
}

gboolean kl_station_client_can(KlStationClient *self, const char *method)
{
	return self->state == KL_STATION_STATE_CONNECTED &&
	       g_hash_table_contains(self->methods, method);
}

static void kl_station_client_dispose(GObject *object)
{
	KlStationClient *self = KL_STATION_CLIENT(object);

	g_clear_handle_id(&self->retry_source, g_source_remove);
	g_clear_handle_id(&self->poll_source, g_source_remove);
	if (self->cancel)
		g_cancellable_cancel(self->cancel);
	g_clear_object(&self->cancel);
	g_clear_object(&self->in);
	self->out = NULL;
	g_clear_object(&self->conn);
	g_clear_object(&self->sock_client);
	g_queue_clear_full(&self->writes, (GDestroyNotify)g_bytes_unref);
	if (self->pending)
		fail_pending(self, "the client was closed");
	G_OBJECT_CLASS(kl_station_client_parent_class)->dispose(object);
}

static void kl_station_client_finalize(GObject *object)
{
	KlStationClient *self = KL_STATION_CLIENT(object);

	g_hash_table_unref(self->pending);
	g_hash_table_unref(self->methods);
	g_free(self->socket_path);
	g_free(self->station_id);
	g_free(self->message);
	G_OBJECT_CLASS(kl_station_client_parent_class)->finalize(object);
}

static void kl_station_client_get_property(GObject *object, guint id, GValue *value,
                                           GParamSpec *pspec)
{
	KlStationClient *self = KL_STATION_CLIENT(object);

	switch (id) {
	case PROP_SOCKET_PATH:
		g_value_set_string(value, self->socket_path);
		break;
	case PROP_STATE:
		g_value_set_enum(value, self->state);
		break;
	case PROP_HSM_LOGGED_IN:
		g_value_set_boolean(value, self->hsm_logged_in);
		break;
	case PROP_STATION_ID:
		g_value_set_string(value, self->station_id);
		break;
	case PROP_MESSAGE:
		g_value_set_string(value, kl_station_client_get_message(self));
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
	}
}

static void kl_station_client_set_property(GObject *object, guint id, const GValue *value,
                                           GParamSpec *pspec)
{
	KlStationClient *self = KL_STATION_CLIENT(object);

	switch (id) {
	case PROP_SOCKET_PATH:
		g_free(self->socket_path);
		self->socket_path = g_value_dup_string(value);
		break;
	default:
		G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
	}
}

static void kl_station_client_class_init(KlStationClientClass *klass)
{
	GObjectClass *oc = G_OBJECT_CLASS(klass);

	oc->dispose = kl_station_client_dispose;
	oc->finalize = kl_station_client_finalize;
	oc->get_property = kl_station_client_get_property;
	oc->set_property = kl_station_client_set_property;

	props[PROP_SOCKET_PATH] =
	    g_param_spec_string("socket-path", NULL, NULL, NULL,
	                        G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_STATIC_STRINGS);
	props[PROP_STATE] =
	    g_param_spec_enum("state", NULL, NULL, KL_TYPE_STATION_STATE, KL_STATION_STATE_IDLE,
	                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_HSM_LOGGED_IN] = g_param_spec_boolean("hsm-logged-in", NULL, NULL, FALSE,
	                                                 G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_STATION_ID] = g_param_spec_string("station-id", NULL, NULL, NULL,
	                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	props[PROP_MESSAGE] = g_param_spec_string("message", NULL, NULL, NULL,
	                                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
	g_object_class_install_properties(oc, N_PROPS, props);

	/* event(type, params): a notification from the station; params is the
	 * whole a{sv} (docs/api.md, "Events"). */
	signals[SIGNAL_EVENT] =
	    g_signal_new("event", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
	                 G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_VARIANT);
	/* ready(): connected, methods known, subscribed: reload what you show. */
	signals[SIGNAL_READY] = g_signal_new("ready", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST,
	                                     0, NULL, NULL, NULL, G_TYPE_NONE, 0);
	/* status(result): each station.status answer. */
	signals[SIGNAL_STATUS] = g_signal_new("status", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST,
	                                      0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_VARIANT);
}

static void kl_station_client_init(KlStationClient *self)
{
	self->sock_client = g_socket_client_new();
	self->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
	self->methods = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_queue_init(&self->writes);
}
