/* The socket API's lifecycle: renewal, decommissioning and repurposing
 * as jobs on a slot; revocation and loss, which need no DUT; a device's
 * signed sanitization record (docs/api.md, docs/lifecycle.md). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

static int m_renew(kl_rpc_call *call)
{
	return api_submit(call, KL_JOB_RENEW, api_str_or(call, "serial", ""),
	                  api_str_or(call, "slot", ""), NULL, NULL, KL_EK__MAX);
}

static int m_decommission(kl_rpc_call *call)
{
	bool repurpose = false;

	kl_rpc_param_bool(call, "repurpose", &repurpose);
	return api_submit(call, repurpose ? KL_JOB_REPURPOSE : KL_JOB_DECOMMISSION,
	                  api_str_or(call, "serial", ""), api_str_or(call, "slot", ""), NULL, NULL,
	                  KL_EK__MAX);
}

static int m_repurpose(kl_rpc_call *call)
{
	return api_submit(call, KL_JOB_REPURPOSE, api_str_or(call, "serial", ""),
	                  api_str_or(call, "slot", ""), NULL, NULL, KL_EK__MAX);
}

static int reason_param(kl_rpc_call *call, int def)
{
	const char *name = api_str_or(call, "reason", NULL);
	int code;

	if (!name)
		return def;
	code = kl_crl_reason_from_name(name);
	if (code < 0)
		kl_rpc_reply_params(call,
		                    "reason '%s' is not an RFC 5280 reason "
		                    "(keyCompromise, superseded, cessationOfOperation, ...)",
		                    name);
	return code;
}

/* The CRL after a revocation; the answer says where it is. backend held. */
static void publish_into(kl_rpc_call *call, kl_rpc_obj *o)
{
	char path[PATH_MAX];
	int64_t number = 0;

	if (st_publish_crl(api_station(call), api_caller(call)->actor, path, sizeof(path),
	                   &number) == 0) {
		kl_rpc_obj_put_str(o, "crl", path);
		kl_rpc_obj_put_int(o, "crl_number", number);
	} else {
		kl_rpc_obj_put_str(o, "crl_error", kl_error_detail());
	}
}

/* The kl_err a lifecycle refusal is answered with: its own reason goes in
 * error.data.refusal. */
static int refusal_code(const kl_life_result *res)
{
	static const struct {
		const char *reason;
		int err;
	} map[] = {
		{ "unknown_serial", KL_E_NOTFOUND },   { "not_provisioned", KL_E_STATE },
		{ "device_state", KL_E_STATE },        { "bad_reason", KL_E_INVALID },
		{ "no_record_key", KL_E_UNAVAILABLE },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(res->reason, map[i].reason) == 0)
			return map[i].err;
	return res->rc;
}

static int life_reply(kl_rpc_call *call, const kl_life_result *res)
{
	kl_rpc_obj *o;

	if (res->rc < 0)
		return kl_rpc_reply_refusal(call, refusal_code(res), res->reason, "%s",
		                            res->message);
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_int(o, "revoked", res->revoked);
	publish_into(call, o);
	return 0;
}

/* The answer of a revocation the lifecycle made (r its result); the CRL
 * it published is read under the backend lock. */
static int life_answer(kl_rpc_call *call, int r, const kl_life_result *res)
{
	kl_station *s = api_station(call);

	if (r < 0)
		return r;
	st_lock_backend(s);
	r = life_reply(call, res);
	st_unlock_backend(s);
	return r;
}

/* device.revoke and device.lost run on the backend worker
 * (st_api_defer): each signs and publishes the whole CRL. */
static int revoke_call(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	const char *serial = api_str_or(call, "serial", NULL),
	           *cert = api_str_or(call, "certificate", NULL);
	int reason = reason_param(call, 0), r;
	kl_life_result res = { 0 };
	kl_rpc_obj *o;

	if (reason < 0)
		return reason;
	if (api_need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	if (!serial == !cert)
		return kl_rpc_reply_params(call, "give either serial (a device) or "
		                                 "certificate (a certificate serial)");
	if (cert) {
		st_lock_backend(s);
		r = kl_ca_revoke(s->home->ca, cert, reason, api_caller(call)->actor);
		if (r == 0 && kl_rpc_reply_object(call, &o) == 0) {
			kl_rpc_obj_put_int(o, "revoked", 1);
			publish_into(call, o);
		}
		st_unlock_backend(s);
		return r;
	}
	/* The lifecycle takes the backend lock itself. */
	r = kl_life_revoke_device(&s->lcfg, serial, reason, api_caller(call)->actor, &res);
	return life_answer(call, r, &res);
}

static int m_revoke(kl_rpc_call *call)
{
	return st_api_defer(call, revoke_call);
}

static int lost_call(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	int reason = reason_param(call, -1), r;
	kl_life_result res = { 0 };

	if (reason < -1 || (api_str_or(call, "reason", NULL) && reason < 0))
		return reason;
	if (api_need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	r = kl_life_lost(&s->lcfg, api_str_or(call, "serial", ""), reason, api_caller(call)->actor,
	                 &res);
	return life_answer(call, r, &res);
}

static int m_lost(kl_rpc_call *call)
{
	return st_api_defer(call, lost_call);
}

static int m_record(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	char *json = NULL;
	kl_rpc_obj *o;
	int r;

	r = kl_life_record_get(s->rreg, api_str_or(call, "serial", ""), api_int_or(call, "id", 0),
	                       &json);
	if (r < 0)
		return r;
	r = kl_rpc_reply_object(call, &o);
	if (r == 0)
		r = kl_rpc_obj_put_json(o, "record", json);
	free(json);
	return r;
}

static const kl_rpc_param p_slot_serial[] = {
	{ "slot", KL_RPC_STRING, true },
	{ "serial", KL_RPC_STRING, true },
	{ NULL, 0, false },
};

static const kl_rpc_param p_decommission[] = {
	{ "slot", KL_RPC_STRING, true },
	{ "serial", KL_RPC_STRING, true },
	{ "repurpose", KL_RPC_BOOL, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_revoke[] = {
	{ "serial", KL_RPC_STRING, false },
	{ "certificate", KL_RPC_STRING, false },
	{ "reason", KL_RPC_STRING, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_lost[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "reason", KL_RPC_STRING, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_record[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "id", KL_RPC_INT, false },
	{ NULL, 0, false },
};

/* device.renew, device.revoke, device.decommission, device.repurpose,
 * device.lost, device.record */
const kl_rpc_method st_api_life[] = {
	{ "device.renew", OP | AUT | SVC, p_slot_serial, m_renew,
	  "rekey the device on a slot: new IDevID, old one revoked (superseded)" },
	{ "device.revoke", OFF, p_revoke, m_revoke,
	  "revoke a device's certificates or one certificate; publishes the CRL" },
	{ "device.decommission", SVC, p_decommission, m_decommission,
	  "revoke, cryptographically erase and sign a sanitization record" },
	{ "device.repurpose", SVC, p_slot_serial, m_repurpose,
	  "decommission for reuse: the device may be provisioned again" },
	{ "device.lost", SVC | OFF, p_lost, m_lost,
	  "a device not present: revoke, mark lost, deny-list its EK" },
	{ "device.record", SVC | OFF | RDR, p_record, m_record,
	  "a device's signed sanitization record" },
	{ NULL, 0, NULL, NULL, NULL },
};
