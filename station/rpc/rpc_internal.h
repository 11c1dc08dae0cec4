/* What rpc.c (framing, dispatch) and rpc_call.c (what handlers use) share.
 * Private to the JSON-RPC layer: json_object never leaves these files. */
#ifndef KL_RPC_INTERNAL_H
#define KL_RPC_INTERNAL_H

#include <json-c/json.h>

#include "rpc.h"

struct kl_rpc_conn {
	const kl_rpc_server *srv;
	unsigned roles;
	void *ctx;
	size_t len;      /* bytes of the current line in buf */
	bool discarding; /* dropping an over-long line up to its '\n' */
	char buf[KL_RPC_MAX_LINE + 1];
};

struct kl_rpc_call {
	kl_rpc_conn *conn; /* NULL once deferred: the connection may be gone */
	void *ctx;         /* the connection's, or the one given to kl_rpc_call_defer */
	unsigned roles;
	const kl_rpc_method *method;
	json_object *id;     /* owned by a deferred call, borrowed otherwise */
	bool notification;   /* no "id" member: never answered */
	bool deferred;       /* the handler handed the call to kl_rpc_call_defer */
	bool settled;        /* the handler's return value is folded into result/error */
	bool owned;          /* made by kl_rpc_call_defer: freed by kl_rpc_call_free */
	json_object *params; /* named, after validation; owned */
	json_object *result; /* owned */
	json_object *error;  /* owned: {"code","message","data"} */
};

/* {"code":code,"message":msg[,"data":data]}, taking data (NULL for none).
 * NULL on NOMEM (data is released then too). */
json_object *rpc_error_new(int code, const char *msg, json_object *data);

/* {"reason": reason}, or NULL on NOMEM. */
json_object *rpc_reason_new(const char *reason);

#endif
