/* The socket API's events: a connection subscribes to the station's step,
 * job, link, HSM and CRL events (all, or one slot's), which the poll loop
 * then sends it as notifications (station_events.c, docs/api.md). */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"

static int m_subscribe(kl_rpc_call *call)
{
	st_caller *c = api_caller(call);
	const char *slot = api_str_or(call, "slot", NULL);
	kl_rpc_obj *o;
	bool found = !slot;

	for (size_t i = 0; slot && i < c->st->nslots; i++)
		found |= strcmp(c->st->slots[i].name, slot) == 0;
	if (!found)
		return kl_rpc_reply_error(call, KL_E_NOTFOUND, "no slot named '%s'", slot);
	if (!c->conn)
		return kl_rpc_reply_error(call, KL_E_UNSUPPORTED,
		                          "events need a connection to the running station");
	c->subscribed = true;
	snprintf(c->sub_slot, sizeof(c->sub_slot), "%s", slot ? slot : "");
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "subscribed", true);
	kl_rpc_obj_put_str(o, "slot", slot);
	return 0;
}

static int m_unsubscribe(kl_rpc_call *call)
{
	kl_rpc_obj *o;

	api_caller(call)->subscribed = false;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "subscribed", false);
	return 0;
}

static const kl_rpc_param p_subscribe[] = { { "slot", KL_RPC_STRING, false }, { NULL, 0, false } };

/* events.subscribe, events.unsubscribe */
const kl_rpc_method st_api_events[] = {
	{ "events.subscribe", ALL, p_subscribe, m_subscribe,
	  "receive step, job, link and CRL events as notifications" },
	{ "events.unsubscribe", ALL, NULL, m_unsubscribe, "stop receiving events" },
	{ NULL, 0, NULL, NULL, NULL },
};
