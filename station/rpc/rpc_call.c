/* The handler's side of the JSON-RPC layer: the call's context, typed
 * access to validated parameters and the result/error builders. A
 * kl_rpc_obj is a json_object behind an opaque pointer. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kl_error.h"
#include "rpc_internal.h"

/* The error table of the socket API: KL_E_PERM shares the role denial's
 * code, every other kl_err c is KL_RPC_E_KL_BASE - c, anything else the
 * generic server error. It lives beside the error builders below, which are
 * its users together with the dispatcher in rpc.c. */
int kl_rpc_error_code(int err)
{
	if (err < 0)
		err = err == INT_MIN ? 0 : -err;
	if (err <= KL_OK || err >= KL_E__MAX)
		return KL_RPC_E_SERVER;
	if (err == KL_E_PERM)
		return KL_RPC_E_DENIED;
	return KL_RPC_E_KL_BASE - err;
}

/* {"code":code,"message":msg[,"data":data]}, taking data. NULL on NOMEM. */
json_object *rpc_error_new(int code, const char *msg, json_object *data)
{
	json_object *e = json_object_new_object();
	json_object *c = json_object_new_int(code);
	json_object *m = json_object_new_string(msg);

	if (!e || !c || !m || json_object_object_add(e, "code", c) < 0)
		goto fail;
	c = NULL;
	if (json_object_object_add(e, "message", m) < 0)
		goto fail;
	m = NULL;
	if (data && json_object_object_add(e, "data", data) < 0)
		goto fail;
	return e;
fail:
	json_object_put(e);
	json_object_put(c);
	json_object_put(m);
	json_object_put(data);
	return NULL;
}

/* {"reason": reason}, or NULL on NOMEM. */
json_object *rpc_reason_new(const char *reason)
{
	json_object *d = json_object_new_object();
	json_object *r = json_object_new_string(reason);

	if (!d || !r || json_object_object_add(d, "reason", r) < 0) {
		json_object_put(d);
		json_object_put(r);
		return NULL;
	}
	return d;
}

void *kl_rpc_call_ctx(const kl_rpc_call *call)
{
	return call->ctx;
}

unsigned kl_rpc_call_roles(const kl_rpc_call *call)
{
	return call->roles;
}

const char *kl_rpc_call_method(const kl_rpc_call *call)
{
	return call->method->name;
}

/* The validated value of a schema parameter of type t, or an error. */
static int param_get(const kl_rpc_call *call, const char *name, kl_rpc_type t, json_object **ret)
{
	const kl_rpc_param *p = call->method->params;
	json_object *v = NULL;

	while (p && p->name && strcmp(p->name, name) != 0)
		p++;
	if (!p || !p->name || p->type != t)
		return -KL_E_INVALID;
	if (!json_object_object_get_ex(call->params, name, &v) || !v)
		return -KL_E_NOTFOUND;
	*ret = v;
	return 0;
}

int kl_rpc_param_str(const kl_rpc_call *call, const char *name, const char **ret)
{
	json_object *v;
	int r = param_get(call, name, KL_RPC_STRING, &v);

	if (r == 0)
		*ret = json_object_get_string(v);
	return r;
}

int kl_rpc_param_int(const kl_rpc_call *call, const char *name, int64_t *ret)
{
	json_object *v;
	int r = param_get(call, name, KL_RPC_INT, &v);

	if (r == 0)
		*ret = json_object_get_int64(v);
	return r;
}

int kl_rpc_param_bool(const kl_rpc_call *call, const char *name, bool *ret)
{
	json_object *v;
	int r = param_get(call, name, KL_RPC_BOOL, &v);

	if (r == 0)
		*ret = json_object_get_boolean(v);
	return r;
}

int kl_rpc_param_json(const kl_rpc_call *call, const char *name, const char **ret)
{
	json_object *v;
	int r = param_get(call, name, KL_RPC_OBJECT, &v);
	const char *s;

	if (r == -KL_E_INVALID)
		r = param_get(call, name, KL_RPC_ARRAY, &v);
	if (r < 0)
		return r;
	s = json_object_to_json_string_ext(v,
	                                   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		return -KL_E_NOMEM;
	*ret = s;
	return 0;
}

int kl_rpc_reply_object(kl_rpc_call *call, kl_rpc_obj **ret)
{
	json_object *o = json_object_new_object();

	if (!o)
		return -KL_E_NOMEM;
	json_object_put(call->result);
	json_object_put(call->error);
	call->error = NULL;
	call->result = o;
	*ret = (kl_rpc_obj *)o;
	return 0;
}

/* Replaces the call's answer with error e (taken). */
static int set_error(kl_rpc_call *call, json_object *e, int err)
{
	if (!e)
		return -KL_E_NOMEM;
	json_object_put(call->result);
	json_object_put(call->error);
	call->result = NULL;
	call->error = e;
	return err < 0 ? err : -KL_E_INVALID;
}

int kl_rpc_reply_error(kl_rpc_call *call, int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (err > 0)
		err = -err;
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	} else {
		snprintf(msg, sizeof(msg), "%s", kl_err_str(err));
	}
	return set_error(
	    call, rpc_error_new(kl_rpc_error_code(err), msg, rpc_reason_new(kl_err_name(err))),
	    err);
}

int kl_rpc_reply_params(kl_rpc_call *call, const char *fmt, ...)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "Invalid params: ");
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	return set_error(call, rpc_error_new(KL_RPC_E_PARAMS, msg, rpc_reason_new("invalid")),
	                 -KL_E_INVALID);
}

int kl_rpc_reply_refusal(kl_rpc_call *call, int err, const char *refusal, const char *fmt, ...)
{
	char msg[512];
	json_object *data;
	va_list ap;

	if (err > 0)
		err = -err;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	data = rpc_reason_new(kl_err_name(err));
	if (data && refusal)
		json_object_object_add(data, "refusal", json_object_new_string(refusal));
	return set_error(call, rpc_error_new(kl_rpc_error_code(err), msg, data), err);
}

/* Puts v (taken) into o under key (object) or at the end (array). */
static int obj_put(kl_rpc_obj *o, const char *key, json_object *v)
{
	json_object *j = (json_object *)o;
	int r = -KL_E_INVALID;

	if (j && key && json_object_is_type(j, json_type_object))
		r = json_object_object_add(j, key, v) < 0 ? -KL_E_NOMEM : 0;
	else if (j && !key && json_object_is_type(j, json_type_array))
		r = json_object_array_add(j, v) < 0 ? -KL_E_NOMEM : 0;
	if (r < 0)
		json_object_put(v);
	return r;
}

int kl_rpc_obj_put_str(kl_rpc_obj *o, const char *key, const char *val)
{
	json_object *v = NULL;

	if (val && !(v = json_object_new_string(val)))
		return -KL_E_NOMEM;
	return obj_put(o, key, v);
}

int kl_rpc_obj_put_int(kl_rpc_obj *o, const char *key, int64_t val)
{
	json_object *v = json_object_new_int64(val);

	return v ? obj_put(o, key, v) : -KL_E_NOMEM;
}

int kl_rpc_obj_put_bool(kl_rpc_obj *o, const char *key, bool val)
{
	json_object *v = json_object_new_boolean(val);

	return v ? obj_put(o, key, v) : -KL_E_NOMEM;
}

static int put_container(kl_rpc_obj *o, const char *key, json_object *v, kl_rpc_obj **ret)
{
	int r;

	if (!v)
		return -KL_E_NOMEM;
	r = obj_put(o, key, v);
	if (r == 0)
		*ret = (kl_rpc_obj *)v;
	return r;
}

int kl_rpc_obj_put_object(kl_rpc_obj *o, const char *key, kl_rpc_obj **ret)
{
	return put_container(o, key, json_object_new_object(), ret);
}

int kl_rpc_obj_put_array(kl_rpc_obj *o, const char *key, kl_rpc_obj **ret)
{
	return put_container(o, key, json_object_new_array(), ret);
}

int kl_rpc_obj_put_json(kl_rpc_obj *o, const char *key, const char *json)
{
	json_object *v = json ? json_tokener_parse(json) : NULL;

	if (json && !v)
		return kl_error_set(KL_E_INVALID, "stored JSON does not parse");
	return obj_put(o, key, v);
}

int kl_rpc_obj_put_double(kl_rpc_obj *o, const char *key, double val)
{
	json_object *v = json_object_new_double(val);

	return v ? obj_put(o, key, v) : -KL_E_NOMEM;
}
