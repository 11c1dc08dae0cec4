/* The station's JSON-RPC 2.0 layer (ARCHITECTURE.md "Socket API").
 *
 * One JSON object per line. A connection (kl_rpc_conn) buffers the bytes it
 * is fed, cuts them into lines, parses each line, checks the caller's roles
 * against the method table, validates the parameters against the method's
 * schema and calls the handler. Every answer is handed to an output callback
 * as one line ending in '\n'. There are no sockets here: the daemon reads
 * from its socket and calls kl_rpc_feed().
 *
 * Rules, as the client sees them:
 *   - A line holds at most KL_RPC_MAX_LINE bytes, not counting the '\n' (a
 *     '\r' before it is allowed and ignored). A longer line is answered once
 *     with -32600 "request too large" (id null) as soon as it passes the
 *     limit, and the rest of it up to the next '\n' is dropped. Empty or
 *     blank lines are ignored.
 *   - Invalid JSON, a NUL byte or invalid UTF-8: -32700 "Parse error", id null.
 *   - Not an object, "jsonrpc" not "2.0", "method" not a string, "params"
 *     neither object nor array, "id" not a string, number or null: -32600
 *     "Invalid Request" (id null unless the id itself was valid). Integer ids
 *     are echoed exactly when they fit 64 bits (json-c saturates larger ones,
 *     so -2^63 and 2^64-1 are refused as out of range); fractional ids are
 *     echoed as written; non-finite ones (NaN, 1e400) are refused.
 *   - Batches (a top-level array) are not supported: -32600 "batches are not
 *     supported", id null.
 *   - A notification (no "id" member) is never answered once it is a
 *     well-formed request; denials of notifications still reach on_denied.
 *   - Unknown method: -32601 "Method not found", error.data {"method": name}.
 *   - A caller without any of the method's roles: KL_RPC_E_DENIED (-32001)
 *     "permission denied: method X needs role officer|service",
 *     error.data {"reason":"perm"}, and the server's on_denied hook is called
 *     once. Roles are checked before parameters.
 *   - Missing, unknown, extra positional, wrong-typed or out-of-range
 *     parameters: -32602 "Invalid params: ..." naming the parameter.
 *   - A handler's Keyline error: a server error code from
 *     kl_rpc_error_code(), error.data {"reason": kl_err_name(code)}.
 *
 * Built-in methods, callable by every role: "rpc.ping" -> {"pong":true} and
 * "rpc.methods" -> {"methods":[{"name","summary","roles":[..],"params":[..]}]}
 * listing only the methods the caller may call. A server dispatches several
 * method tables (one per API area), searched in order: the built-ins first,
 * then each table; the first entry with a name wins, so an entry with the
 * same name as a built-in or as an entry before it is never reached, and
 * rpc.methods lists the reachable entries in that same order.
 *
 * Deferred answers: a handler with slow work hands the call to another
 * thread with kl_rpc_call_defer() and returns 0 at once; kl_rpc_feed goes
 * on with the next request. The other thread builds the answer with the
 * usual kl_rpc_reply_* and kl_rpc_param_* on the deferred call, ends with
 * kl_rpc_call_settle(call, rc) (what the handler would have returned),
 * and the connection's thread later sends it with kl_rpc_call_send() or,
 * when the connection has gone meanwhile, drops it with
 * kl_rpc_call_free(). The answer's bytes are those the handler would have
 * given had it answered at once; answers on one connection may then come
 * in another order than their requests (JSON-RPC 2.0 §6: match them by
 * id).
 *
 * Not thread-safe per connection; different connections are independent.
 * A deferred call belongs to one thread at a time: hand it over through a
 * lock or a queue. */
#ifndef KL_RPC_H
#define KL_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"

#define KL_RPC_MAX_LINE (64 * 1024)

/* JSON-RPC 2.0 codes (spec §5.1) and Keyline's server errors. */
#define KL_RPC_E_PARSE     (-32700)
#define KL_RPC_E_INVALID   (-32600)
#define KL_RPC_E_NO_METHOD (-32601)
#define KL_RPC_E_PARAMS    (-32602)
#define KL_RPC_E_INTERNAL  (-32603)
#define KL_RPC_E_SERVER    (-32000) /* a kl_err the table below does not know */
#define KL_RPC_E_DENIED    (-32001) /* role denial, and KL_E_PERM from a handler */
#define KL_RPC_E_KL_BASE   (-32010) /* other kl_err c: KL_RPC_E_KL_BASE - c */

/* Roles, as a bit set. */
enum {
	KL_RPC_ROLE_OPERATOR = 1u << 0,
	KL_RPC_ROLE_AUTOMATION = 1u << 1,
	KL_RPC_ROLE_OFFICER = 1u << 2,
	KL_RPC_ROLE_SERVICE = 1u << 3,
	KL_RPC_ROLE_READER = 1u << 4,
	KL_RPC_ROLE_ALL = (1u << 5) - 1,
};

typedef enum kl_rpc_type {
	KL_RPC_STRING,
	KL_RPC_INT, /* a JSON integer that fits int64_t */
	KL_RPC_BOOL,
	KL_RPC_OBJECT,
	KL_RPC_ARRAY,
} kl_rpc_type;

/* One parameter of a method's schema. A schema is an array terminated by an
 * entry whose name is NULL. Positional (array) params are matched to the
 * schema in order. */
typedef struct kl_rpc_param {
	const char *name;
	kl_rpc_type type;
	bool required;
} kl_rpc_param;

typedef struct kl_rpc_call kl_rpc_call;
typedef struct kl_rpc_conn kl_rpc_conn;

/* A result under construction: a JSON object or array owned by the call. */
typedef struct kl_rpc_obj kl_rpc_obj;

/* A method. Tables are arrays terminated by an entry whose name is NULL.
 * params may be NULL for "no parameters".
 *
 * The handler answers with kl_rpc_reply_object() or kl_rpc_reply_error() and
 * returns 0, or returns a negative kl_err: then the error it replied with is
 * sent, or, if it replied none, one made from the code and kl_error_detail().
 * Returning 0 without a reply is a bug and answered with -32603. */
typedef struct kl_rpc_method {
	const char *name;
	unsigned roles; /* KL_RPC_ROLE_* allowed to call it */
	const kl_rpc_param *params;
	int (*handler)(kl_rpc_call *call);
	const char *summary;
} kl_rpc_method;

/* What a set of connections share. Owned by the caller; it must outlive every
 * connection made with it, and so must its tables. tables is an array of
 * method tables ended by NULL (NULL itself: built-ins only). on_denied may be
 * NULL; it gets the connection's ctx, the caller's role set and the method
 * name. */
typedef struct kl_rpc_server {
	const kl_rpc_method *const *tables;
	void (*on_denied)(void *ctx, unsigned roles, const char *method);
} kl_rpc_server;

/* Receives one answer: len bytes of JSON text followed by '\n' (line[len-1]
 * is the '\n'; line is also NUL-terminated). Returns 0, or a negative kl_err
 * to stop kl_rpc_feed(), which then returns that value. It must not free the
 * connection. */
typedef int (*kl_rpc_out_fn)(void *ctx, const char *line, size_t len);

/* Creates a connection for a caller holding the role set roles. ctx is given
 * to on_denied and to handlers (kl_rpc_call_ctx). Returns 0 or -KL_E_NOMEM /
 * -KL_E_INVALID (srv NULL). */
int kl_rpc_conn_new(const kl_rpc_server *srv, unsigned roles, void *ctx, kl_rpc_conn **ret);
void kl_rpc_conn_free(kl_rpc_conn *c);

/* Feeds n bytes read from the peer, answering every complete line through
 * out(octx, ...). Returns 0, or the negative value out returned (the rest of
 * the bytes are then dropped; close the connection), or -KL_E_NOMEM when not
 * even an error answer could be built. Never buffers more than
 * KL_RPC_MAX_LINE bytes. */
int kl_rpc_feed(kl_rpc_conn *c, const char *bytes, size_t n, kl_rpc_out_fn out, void *octx);

/* Bytes of an incomplete line held by the connection (<= KL_RPC_MAX_LINE). */
size_t kl_rpc_conn_buffered(const kl_rpc_conn *c);

/* The JSON-RPC code a kl_err (given positive or negative) is answered with. */
int kl_rpc_error_code(int err);

/* "operator|officer" for a role set, written into buf (always terminated). */
const char *kl_rpc_roles_str(unsigned roles, char *buf, size_t size);

/* Takes call (being handled by its handler, on the connection's thread)
 * away from the connection: *ret is a call of its own that copies the
 * method, the caller's roles and the parameters, with ctx as its
 * kl_rpc_call_ctx (the connection's ctx may be gone by the time it is
 * answered). The handler then returns 0 and nothing is sent for the
 * request now. Returns 0, -KL_E_INVALID (not a call being handled, or
 * deferred already) or -KL_E_NOMEM (then nothing changed: the handler
 * may still answer itself). */
int kl_rpc_call_defer(kl_rpc_call *call, void *ctx, kl_rpc_call **ret) KL_MUST_CHECK;
/* Folds rc, what a handler would have returned, into the deferred call's
 * answer. Call it on the thread that did the work: an error made from rc
 * takes that thread's kl_error_detail(). */
void kl_rpc_call_settle(kl_rpc_call *call, int rc);
/* Sends the deferred call's answer as one line through out (nothing for
 * a notification) and frees the call. Returns what out returns, or
 * -KL_E_INVALID for a call that was not deferred. An unsettled call is
 * answered -32603 "method gave no reply" unless it replied. */
int kl_rpc_call_send(kl_rpc_call *call, kl_rpc_out_fn out, void *octx) KL_MUST_CHECK;
/* Frees a deferred call without answering (its connection closed).
 * Accepts NULL; does nothing to a call that was not deferred. */
void kl_rpc_call_free(kl_rpc_call *call);

/* About the call being handled. */
void *kl_rpc_call_ctx(const kl_rpc_call *call);
unsigned kl_rpc_call_roles(const kl_rpc_call *call);
const char *kl_rpc_call_method(const kl_rpc_call *call);

/* Typed access to validated parameters. Return 0 and write *ret, or
 * -KL_E_NOTFOUND when the (optional) parameter was not given or is null,
 * -KL_E_INVALID when name is not in the schema with that type. Strings hold
 * no NUL byte and stay valid until the handler returns (a deferred call:
 * until it is sent or freed). */
int kl_rpc_param_str(const kl_rpc_call *call, const char *name, const char **ret);
int kl_rpc_param_int(const kl_rpc_call *call, const char *name, int64_t *ret);
int kl_rpc_param_bool(const kl_rpc_call *call, const char *name, bool *ret);
/* An object or array parameter as compact JSON text, valid until the handler
 * returns. */
int kl_rpc_param_json(const kl_rpc_call *call, const char *name, const char **ret);

/* Starts (or restarts) the successful result: an empty object in *ret, owned
 * by the call. Returns 0 or -KL_E_NOMEM. */
int kl_rpc_reply_object(kl_rpc_call *call, kl_rpc_obj **ret);

/* Answers with Keyline error err (positive or negative kl_err): code
 * kl_rpc_error_code(err), message from fmt (kl_err_str(err) when fmt is
 * NULL), error.data {"reason": kl_err_name(err)}. Returns -|err| (or
 * -KL_E_NOMEM), so a handler can `return kl_rpc_reply_error(...)`. Never put
 * a secret in the message. */
int kl_rpc_reply_error(kl_rpc_call *call, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A parameter the schema cannot judge (a range, a name from a list): -32602
 * "Invalid params: " + the sentence, error.data {"reason": "invalid"}, as
 * the schema's own checks answer. Returns -KL_E_INVALID. */
int kl_rpc_reply_params(kl_rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like kl_rpc_reply_error, with the operation's stable refusal reason
 * ("identity_unproven", "not_provisioned", ...) in error.data.refusal. */
int kl_rpc_reply_refusal(kl_rpc_call *call, int err, const char *refusal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Builders for a result. On an object, key names the member (set, replacing
 * any previous one); on an array key must be NULL and the value is appended.
 * Return 0, -KL_E_INVALID (key/container mismatch, NULL o) or -KL_E_NOMEM.
 * A NULL string value is written as null. */
int kl_rpc_obj_put_str(kl_rpc_obj *o, const char *key, const char *val);
int kl_rpc_obj_put_int(kl_rpc_obj *o, const char *key, int64_t val);
int kl_rpc_obj_put_bool(kl_rpc_obj *o, const char *key, bool val);
int kl_rpc_obj_put_object(kl_rpc_obj *o, const char *key, kl_rpc_obj **ret);
int kl_rpc_obj_put_array(kl_rpc_obj *o, const char *key, kl_rpc_obj **ret);
/* A value given as JSON text (e.g. a stored evidence record); -KL_E_INVALID
 * when it does not parse. */
int kl_rpc_obj_put_json(kl_rpc_obj *o, const char *key, const char *json);
int kl_rpc_obj_put_double(kl_rpc_obj *o, const char *key, double val);

#endif
