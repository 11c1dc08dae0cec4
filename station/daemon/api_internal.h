/* What the socket API's area files (api_*.c) share: the caller behind a
 * kl_rpc_call, parameter defaults, and the few answer pieces two areas
 * give alike (a job, an audit entry). Private to station/daemon/. */
#ifndef KL_API_INTERNAL_H
#define KL_API_INTERNAL_H

#include <stdint.h>

#include "kl_error.h"
#include "station_internal.h"

/* Role sets of the method tables. */
#define OP  KL_RPC_ROLE_OPERATOR
#define AUT KL_RPC_ROLE_AUTOMATION
#define OFF KL_RPC_ROLE_OFFICER
#define SVC KL_RPC_ROLE_SERVICE
#define RDR KL_RPC_ROLE_READER
#define ALL KL_RPC_ROLE_ALL

static inline st_caller *api_caller(kl_rpc_call *call)
{
	return kl_rpc_call_ctx(call);
}

static inline kl_station *api_station(kl_rpc_call *call)
{
	return api_caller(call)->st;
}

/* A parameter's value, or def when it was not given. */
static inline const char *api_str_or(kl_rpc_call *call, const char *name, const char *def)
{
	const char *v;

	return kl_rpc_param_str(call, name, &v) == 0 ? v : def;
}

static inline int64_t api_int_or(kl_rpc_call *call, const char *name, int64_t def)
{
	int64_t v;

	return kl_rpc_param_int(call, name, &v) == 0 ? v : def;
}

/* Answers "unavailable" for a method that needs the running station when
 * the station is offline; 0 when it runs. */
static inline int api_need_online(kl_rpc_call *call)
{
	if (api_station(call)->offline)
		return kl_rpc_reply_error(call, KL_E_UNAVAILABLE,
		                          "%s needs the running station (keyline station)",
		                          kl_rpc_call_method(call));
	return 0;
}

/* api_jobs.c: a job as JSON into o (mu held), and a job submitted for the
 * caller with the answer built from it. */
void api_job_put(kl_rpc_obj *o, const st_job *j);
int api_submit(kl_rpc_call *call, kl_job_kind kind, const char *serial, const char *slot,
               const char *tenant, const char *work_order, int ek);

/* api_ca.c: audit entries into an array (a kl_store_audit_list
 * callback). */
struct api_audit_ctx {
	kl_rpc_obj *arr;
};
int api_audit_one(void *ctx, const kl_audit_entry *a);

#endif
