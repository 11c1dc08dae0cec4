/* JSON-RPC 2.0 over lines: framing, parsing, role checks, parameter
 * validation and dispatch. json_object stays inside this file; handlers see
 * kl_rpc_call and kl_rpc_obj (a json_object behind an opaque pointer). */
#include "rpc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kl_error.h"
#include "rpc_internal.h"

/* Nesting limit handed to json-c: deeper input is a parse error, and every
 * recursive walk of a parsed value (free, serialise) stays shallow. */
#define RPC_MAX_DEPTH 32
/* Names taken from the input are quoted in messages up to this length. */
#define RPC_NAME_MAX 64

/* Sent when not even an error answer could be built, so json-c cannot
 * build it either (layout: allow-json). */
static const char oom_line[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                               "\"message\":\"Internal error: out of memory\"}}\n";

static const char *const role_names[] = { "operator", "automation", "officer", "service",
	                                  "reader" };

static int builtin_ping(kl_rpc_call *call);
static int builtin_methods(kl_rpc_call *call);

static const kl_rpc_method builtins[] = {
	{ "rpc.ping", KL_RPC_ROLE_ALL, NULL, builtin_ping, "Answers {\"pong\":true}." },
	{ "rpc.methods", KL_RPC_ROLE_ALL, NULL, builtin_methods,
	  "Lists the methods the caller may call, with their summaries and parameters." },
	{ NULL, 0, NULL, NULL, NULL },
};

static const char *type_name(kl_rpc_type t)
{
	switch (t) {
	case KL_RPC_STRING:
		return "string";
	case KL_RPC_INT:
		return "integer";
	case KL_RPC_BOOL:
		return "boolean";
	case KL_RPC_OBJECT:
		return "object";
	case KL_RPC_ARRAY:
		return "array";
	}
	return "unknown";
}

const char *kl_rpc_roles_str(unsigned roles, char *buf, size_t size)
{
	size_t off = 0;

	if (!buf || size == 0)
		return "";
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
		if (!(roles & (1u << i)))
			continue;
		int w = snprintf(buf + off, size - off, "%s%s", off ? "|" : "", role_names[i]);
		if (w < 0 || (size_t)w >= size - off) {
			buf[off] = '\0'; /* whole names only */
			break;
		}
		off += (size_t)w;
	}
	if (off == 0)
		snprintf(buf, size, "none");
	return buf;
}

/* Copies an untrusted name for a message: at most RPC_NAME_MAX bytes, bytes
 * outside printable ASCII replaced by '?', so the message stays valid UTF-8. */
static const char *safe_name(const char *s, char *buf, size_t size)
{
	size_t i = 0;

	for (; s[i] && i < size - 1 && i < RPC_NAME_MAX; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* Writes {"jsonrpc":"2.0","id":id,"result"|"error":body} as one line through
 * out. Takes body (which may be NULL after a failed allocation: then the
 * fixed out-of-memory answer is sent); id is borrowed (NULL is null).
 * Returns what out returns. */
static int send_answer(kl_rpc_out_fn out, void *octx, json_object *id, bool is_error,
                       json_object *body)
{
	json_object *a = json_object_new_object();
	json_object *v = json_object_new_string("2.0");
	const char *text;
	size_t len = 0;
	char *line = NULL;
	int r;

	if (!a || !body || !v || json_object_object_add(a, "jsonrpc", v) < 0)
		goto oom;
	v = NULL;
	if (json_object_object_add(a, "id", json_object_get(id)) < 0) {
		json_object_put(id);
		goto oom;
	}
	if (json_object_object_add(a, is_error ? "error" : "result", body) < 0)
		goto oom;
	body = NULL;
	text = json_object_to_json_string_length(
	    a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (!text || !(line = malloc(len + 2)))
		goto oom;
	memcpy(line, text, len);
	line[len] = '\n';
	line[len + 1] = '\0';
	json_object_put(a);
	r = out(octx, line, len + 1);
	free(line);
	return r;
oom:
	json_object_put(a);
	json_object_put(v);
	json_object_put(body);
	return out(octx, oom_line, sizeof(oom_line) - 1);
}

static int send_error(kl_rpc_out_fn out, void *octx, json_object *id, int code, const char *msg,
                      json_object *data)
{
	return send_answer(out, octx, id, true, rpc_error_new(code, msg, data));
}

/* Finds a method by name (which may hold NUL bytes: compared by length). */
static const kl_rpc_method *lookup(const kl_rpc_method *table, const char *name, size_t len)
{
	for (const kl_rpc_method *m = table; m && m->name; m++)
		if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
			return m;
	return NULL;
}

/* The entry a call to name reaches: the built-ins, then srv's tables in
 * order, the first match winning. */
static const kl_rpc_method *find(const kl_rpc_server *srv, const char *name, size_t len)
{
	const kl_rpc_method *m = lookup(builtins, name, len);

	for (const kl_rpc_method *const *t = srv->tables; !m && t && *t; t++)
		m = lookup(*t, name, len);
	return m;
}

/* json-c saturates integers it cannot hold; those values cannot be echoed or
 * used exactly, so they are refused. */
static bool int_saturated(json_object *v)
{
	return json_object_get_int64(v) == INT64_MIN || json_object_get_uint64(v) == UINT64_MAX;
}

static bool id_valid(json_object *id)
{
	switch (json_object_get_type(id)) {
	case json_type_null:
	case json_type_string:
		return true;
	case json_type_int:
		return !int_saturated(id);
	case json_type_double:
		return isfinite(json_object_get_double(id));
	default:
		return false;
	}
}

/* Checks one value against its schema entry; writes a message into why. */
static bool param_ok(const kl_rpc_param *p, json_object *v, char *why, size_t size)
{
	const char *problem = NULL;

	switch (p->type) {
	case KL_RPC_STRING:
		if (!json_object_is_type(v, json_type_string))
			break;
		if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
			problem = "must not contain a NUL character";
		goto checked;
	case KL_RPC_INT:
		if (!json_object_is_type(v, json_type_int))
			break;
		/* json-c keeps 2^63..2^64-1 as uint64; int64_t cannot. */
		if (int_saturated(v) || json_object_get_uint64(v) > (uint64_t)INT64_MAX)
			problem = "is out of range";
		goto checked;
	case KL_RPC_BOOL:
		if (json_object_is_type(v, json_type_boolean))
			goto checked;
		break;
	case KL_RPC_OBJECT:
		if (json_object_is_type(v, json_type_object))
			goto checked;
		break;
	case KL_RPC_ARRAY:
		if (json_object_is_type(v, json_type_array))
			goto checked;
		break;
	}
	snprintf(why, size, "Invalid params: parameter '%s' must be %s %s", p->name,
	         p->type == KL_RPC_INT || p->type == KL_RPC_OBJECT || p->type == KL_RPC_ARRAY ? "an"
	                                                                                      : "a",
	         type_name(p->type));
	return false;
checked:
	if (problem) {
		snprintf(why, size, "Invalid params: parameter '%s' %s", p->name, problem);
		return false;
	}
	return true;
}

/* Matches params (object, array or NULL) against m's schema and builds the
 * named object in *ret. Returns 0, 1 with why filled in, or -KL_E_NOMEM. A null value counts as
 * absent. */
static int bind_params(const kl_rpc_method *m, json_object *params, char *why, size_t size,
                       json_object **ret)
{
	static const kl_rpc_param none[] = { { NULL, KL_RPC_STRING, false } };
	const kl_rpc_param *schema = m->params ? m->params : none;
	json_object *named = json_object_new_object();
	size_t count = 0;
	char name[RPC_NAME_MAX + 1];

	if (!named)
		return -KL_E_NOMEM;
	while (schema[count].name)
		count++;

	if (json_object_is_type(params, json_type_array)) {
		size_t n = json_object_array_length(params);
		if (n > count) {
			snprintf(why, size, "Invalid params: too many parameters (at most %zu)",
			         count);
			goto invalid;
		}
		for (size_t i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(params, i);
			if (v &&
			    json_object_object_add(named, schema[i].name, json_object_get(v)) < 0)
				goto oom;
		}
	} else if (params) {
		json_object_object_foreach(params, key, val)
		{
			size_t i = 0;
			while (i < count && strcmp(schema[i].name, key) != 0)
				i++;
			if (i == count) {
				snprintf(why, size, "Invalid params: unknown parameter '%s'",
				         safe_name(key, name, sizeof(name)));
				goto invalid;
			}
			if (val && json_object_object_add(named, key, json_object_get(val)) < 0)
				goto oom;
		}
	}

	for (size_t i = 0; i < count; i++) {
		json_object *v = NULL;
		if (!json_object_object_get_ex(named, schema[i].name, &v) || !v) {
			if (!schema[i].required)
				continue;
			snprintf(why, size, "Invalid params: missing required parameter '%s'",
			         schema[i].name);
			goto invalid;
		}
		if (!param_ok(&schema[i], v, why, size))
			goto invalid;
	}
	*ret = named;
	return 0;
invalid:
	json_object_put(named);
	return 1;
oom:
	json_object_put(named);
	return -KL_E_NOMEM;
}

/* Folds the handler's return value r into the call's answer: a negative
 * kl_err without an error reply becomes one (with the thread's error
 * detail when it belongs to that code), 0 without any reply the internal
 * "method gave no reply". On NOMEM both are left NULL, which answer()
 * sends as the fixed out-of-memory line. Runs on the thread that ran the
 * handler: the detail is thread-local. */
static void settle(kl_rpc_call *call, int r)
{
	if (call->settled)
		return;
	call->settled = true;
	if (r < 0 && !call->error) {
		const char *msg =
		    r > -KL_E__MAX && (int)kl_error_code() == -r && kl_error_detail()[0]
		        ? kl_error_detail()
		        : kl_err_str(r);

		json_object_put(call->result);
		call->result = NULL;
		call->error =
		    rpc_error_new(kl_rpc_error_code(r), msg, rpc_reason_new(kl_err_name(r)));
	} else if (r >= 0 && !call->error && !call->result) {
		call->error =
		    rpc_error_new(KL_RPC_E_INTERNAL, "Internal error: method gave no reply", NULL);
	}
}

/* Sends a settled call's answer (nothing for a notification) and releases
 * its parameters, result and error. Returns what out returns. */
static int answer(kl_rpc_call *call, kl_rpc_out_fn out, void *octx)
{
	bool is_error = call->error || !call->result;
	json_object *body = call->error ? call->error : call->result;

	if (call->error)
		json_object_put(call->result);
	call->error = call->result = NULL;
	json_object_put(call->params);
	call->params = NULL;
	if (call->notification) {
		json_object_put(body);
		return 0;
	}
	return send_answer(out, octx, call->id, is_error, body);
}

int kl_rpc_call_defer(kl_rpc_call *call, void *ctx, kl_rpc_call **ret)
{
	kl_rpc_call *d;

	if (!call || !ret || call->deferred || !call->conn)
		return kl_error_set(KL_E_INVALID, "kl_rpc_call_defer: not a call being handled");
	d = calloc(1, sizeof(*d));
	if (!d)
		return kl_error_set(KL_E_NOMEM, "kl_rpc_call_defer: out of memory");
	/* Copies, not references: json-c's reference counts are not atomic,
	 * and the request they came from is freed on this thread while the
	 * deferred call lives on in another. */
	if ((call->params && json_object_deep_copy(call->params, &d->params, NULL) < 0) ||
	    (call->id && json_object_deep_copy(call->id, &d->id, NULL) < 0)) {
		json_object_put(d->params);
		free(d);
		return kl_error_set(KL_E_NOMEM, "kl_rpc_call_defer: out of memory");
	}
	d->method = call->method;
	d->ctx = ctx;
	d->roles = call->roles;
	d->notification = call->notification;
	d->deferred = true;
	d->owned = true;
	json_object_put(call->params);
	json_object_put(call->result);
	json_object_put(call->error);
	call->params = call->result = call->error = NULL;
	call->deferred = true;
	*ret = d;
	return 0;
}

void kl_rpc_call_settle(kl_rpc_call *call, int r)
{
	if (call)
		settle(call, r);
}

int kl_rpc_call_send(kl_rpc_call *call, kl_rpc_out_fn out, void *octx)
{
	int r;

	if (!call || !call->owned || !out)
		return -KL_E_INVALID;
	settle(call, 0); /* unsettled and no reply: answered as the bug it is */
	r = answer(call, out, octx);
	kl_rpc_call_free(call);
	return r;
}

void kl_rpc_call_free(kl_rpc_call *call)
{
	if (!call || !call->owned)
		return;
	json_object_put(call->params);
	json_object_put(call->result);
	json_object_put(call->error);
	json_object_put(call->id);
	free(call);
}

/* Runs a well-formed request. id is NULL for null; notification says there
 * was no id member at all, and then nothing is sent. */
static int dispatch(kl_rpc_conn *c, json_object *req, json_object *id, bool notification,
                    kl_rpc_out_fn out, void *octx)
{
	json_object *jm = json_object_object_get(req, "method");
	json_object *params = json_object_object_get(req, "params");
	const char *name = json_object_get_string(jm);
	size_t name_len = (size_t)json_object_get_string_len(jm);
	const kl_rpc_method *m = find(c->srv, name, name_len);
	kl_rpc_call call = { .conn = c };
	char why[256], roles[64];
	int r;

	if (!m) {
		json_object *d, *s;
		if (notification)
			return 0;
		d = json_object_new_object();
		s = json_object_new_string_len(name, (int)name_len);
		if (!d || !s || json_object_object_add(d, "method", s) < 0) {
			json_object_put(d);
			json_object_put(s);
			return send_answer(out, octx, id, true, NULL);
		}
		return send_error(out, octx, id, KL_RPC_E_NO_METHOD, "Method not found", d);
	}

	if (!(m->roles & c->roles)) {
		if (c->srv->on_denied)
			c->srv->on_denied(c->ctx, c->roles, m->name);
		if (notification)
			return 0;
		snprintf(why, sizeof(why), "permission denied: method %s needs role %s", m->name,
		         kl_rpc_roles_str(m->roles, roles, sizeof(roles)));
		return send_error(out, octx, id, KL_RPC_E_DENIED, why,
		                  rpc_reason_new(kl_err_name(KL_E_PERM)));
	}

	r = bind_params(m, params, why, sizeof(why), &call.params);
	if (r != 0) {
		if (notification)
			return 0;
		if (r < 0)
			return send_answer(out, octx, id, true, NULL);
		return send_error(out, octx, id, KL_RPC_E_PARAMS, why, NULL);
	}

	call.method = m;
	call.ctx = c->ctx;
	call.roles = c->roles;
	call.id = id;
	call.notification = notification;
	kl_error_clear();
	r = m->handler(&call);
	if (call.deferred)
		return 0; /* answered later, through kl_rpc_call_send */
	settle(&call, r);
	return answer(&call, out, octx);
}

/* Parses and answers one line of len bytes in c->buf (which has room for a
 * terminating NUL at buf[len]). */
static int handle_line(kl_rpc_conn *c, size_t len, kl_rpc_out_fn out, void *octx)
{
	char *line = c->buf;
	struct json_tokener *tok;
	json_object *req, *v, *id = NULL;
	enum json_tokener_error jerr;
	size_t end, i;
	bool has_id;
	const char *bad = NULL;
	int r;

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'); i++)
		;
	if (i == len)
		return 0; /* blank line */
	/* json-c stops at a NUL byte; never let it see one. */
	if (memchr(line, '\0', len))
		return send_error(out, octx, NULL, KL_RPC_E_PARSE, "Parse error", NULL);
	line[len] = '\0';

	tok = json_tokener_new_ex(RPC_MAX_DEPTH);
	if (!tok)
		return send_answer(out, octx, NULL, true, NULL);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	/* Including the NUL terminates a bare top-level number or literal. */
	req = json_tokener_parse_ex(tok, line, (int)len + 1);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr != json_tokener_success || end < len) {
		json_object_put(req);
		return send_error(out, octx, NULL, KL_RPC_E_PARSE, "Parse error", NULL);
	}

	if (json_object_is_type(req, json_type_array)) {
		json_object_put(req);
		return send_error(out, octx, NULL, KL_RPC_E_INVALID, "batches are not supported",
		                  NULL);
	}
	if (!json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return send_error(out, octx, NULL, KL_RPC_E_INVALID,
		                  "Invalid Request: not a JSON object", NULL);
	}

	has_id = json_object_object_get_ex(req, "id", &id);
	if (has_id && !id_valid(id)) {
		id = NULL;
		bad = "Invalid Request: 'id' must be a string, a number that fits 64 bits or null";
	} else if (!json_object_object_get_ex(req, "jsonrpc", &v) ||
	           !json_object_is_type(v, json_type_string) ||
	           json_object_get_string_len(v) != 3 ||
	           memcmp(json_object_get_string(v), "2.0", 3) != 0) {
		bad = "Invalid Request: 'jsonrpc' must be '2.0'";
	} else if (!json_object_object_get_ex(req, "method", &v) ||
	           !json_object_is_type(v, json_type_string)) {
		bad = "Invalid Request: 'method' must be a string";
	} else if (json_object_object_get_ex(req, "params", &v) &&
	           !json_object_is_type(v, json_type_object) &&
	           !json_object_is_type(v, json_type_array)) {
		bad = "Invalid Request: 'params' must be an object or an array";
	}
	if (bad)
		r = send_error(out, octx, id, KL_RPC_E_INVALID, bad, NULL);
	else
		r = dispatch(c, req, id, !has_id, out, octx);
	json_object_put(req);
	return r;
}

static int too_large(kl_rpc_out_fn out, void *octx)
{
	json_object *d = json_object_new_object();
	json_object *l = json_object_new_int(KL_RPC_MAX_LINE);

	if (!d || !l || json_object_object_add(d, "limit", l) < 0) {
		json_object_put(d);
		json_object_put(l);
		return send_answer(out, octx, NULL, true, NULL);
	}
	return send_error(out, octx, NULL, KL_RPC_E_INVALID, "request too large", d);
}

int kl_rpc_feed(kl_rpc_conn *c, const char *bytes, size_t n, kl_rpc_out_fn out, void *octx)
{
	int r;

	if (!c || !out || (!bytes && n))
		return -KL_E_INVALID;
	while (n > 0) {
		const char *nl = memchr(bytes, '\n', n);
		size_t seg = nl ? (size_t)(nl - bytes) : n;

		if (c->discarding) {
			if (!nl)
				return 0;
			c->discarding = false;
		} else if (seg > KL_RPC_MAX_LINE - c->len) {
			/* Answer as soon as the limit is passed, then drop the rest. */
			c->len = 0;
			c->discarding = !nl;
			r = too_large(out, octx);
			if (r < 0)
				return r;
			if (!nl)
				return 0;
		} else {
			memcpy(c->buf + c->len, bytes, seg);
			c->len += seg;
			if (!nl)
				return 0;
			size_t len = c->len;
			c->len = 0;
			r = handle_line(c, len, out, octx);
			if (r < 0)
				return r;
		}
		bytes = nl + 1;
		n -= seg + 1;
	}
	return 0;
}

size_t kl_rpc_conn_buffered(const kl_rpc_conn *c)
{
	return c ? c->len : 0;
}

int kl_rpc_conn_new(const kl_rpc_server *srv, unsigned roles, void *ctx, kl_rpc_conn **ret)
{
	kl_rpc_conn *c;

	if (!srv || !ret)
		return kl_error_set(KL_E_INVALID, "kl_rpc_conn_new: no server");
	c = malloc(sizeof(*c));
	if (!c)
		return kl_error_set(KL_E_NOMEM, "kl_rpc_conn_new: out of memory");
	c->srv = srv;
	c->roles = roles;
	c->ctx = ctx;
	c->len = 0;
	c->discarding = false;
	*ret = c;
	return 0;
}

void kl_rpc_conn_free(kl_rpc_conn *c)
{
	free(c);
}

static int builtin_ping(kl_rpc_call *call)
{
	kl_rpc_obj *o;
	int r = kl_rpc_reply_object(call, &o);

	return r < 0 ? r : kl_rpc_obj_put_bool(o, "pong", true);
}

/* One entry of rpc.methods. */
static int describe(kl_rpc_obj *list, const kl_rpc_method *m)
{
	kl_rpc_obj *e, *roles, *params, *p;
	int r;

	if ((r = kl_rpc_obj_put_object(list, NULL, &e)) < 0 ||
	    (r = kl_rpc_obj_put_str(e, "name", m->name)) < 0 ||
	    (r = kl_rpc_obj_put_str(e, "summary", m->summary)) < 0 ||
	    (r = kl_rpc_obj_put_array(e, "roles", &roles)) < 0)
		return r;
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if ((m->roles & (1u << i)) &&
		    (r = kl_rpc_obj_put_str(roles, NULL, role_names[i])) < 0)
			return r;
	if ((r = kl_rpc_obj_put_array(e, "params", &params)) < 0)
		return r;
	for (const kl_rpc_param *q = m->params; q && q->name; q++)
		if ((r = kl_rpc_obj_put_object(params, NULL, &p)) < 0 ||
		    (r = kl_rpc_obj_put_str(p, "name", q->name)) < 0 ||
		    (r = kl_rpc_obj_put_str(p, "type", type_name(q->type))) < 0 ||
		    (r = kl_rpc_obj_put_bool(p, "required", q->required)) < 0)
			return r;
	return 0;
}

/* The caller's methods of one table, skipping entries shadowed by a
 * built-in or by an earlier entry of the same name. */
static int describe_table(kl_rpc_obj *list, const kl_rpc_server *srv, const kl_rpc_method *table,
                          unsigned roles)
{
	int r;

	for (const kl_rpc_method *m = table; m && m->name; m++) {
		if (!(m->roles & roles))
			continue;
		if (find(srv, m->name, strlen(m->name)) != m)
			continue; /* shadowed */
		if ((r = describe(list, m)) < 0)
			return r;
	}
	return 0;
}

static int builtin_methods(kl_rpc_call *call)
{
	const kl_rpc_server *srv = call->conn->srv;
	unsigned roles = call->conn->roles;
	kl_rpc_obj *o, *list;
	int r;

	if ((r = kl_rpc_reply_object(call, &o)) < 0 ||
	    (r = kl_rpc_obj_put_array(o, "methods", &list)) < 0 ||
	    (r = describe_table(list, srv, builtins, roles)) < 0)
		return r;
	for (const kl_rpc_method *const *t = srv->tables; t && *t; t++)
		if ((r = describe_table(list, srv, *t, roles)) < 0)
			return r;
	return 0;
}
