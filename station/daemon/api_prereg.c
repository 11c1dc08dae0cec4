/* The socket API's pre-registration: a tenant's work order's serials in one
 * request (devices.preregister), or, for lists larger than a request may
 * be (KL_RPC_MAX_LINE), in pieces inside a batch that is committed whole
 * or not at all (devices.preregister_begin, _add, _commit, _abort). See
 * docs/api.md.
 *
 * A batch is held in memory by the connection that began it and by no
 * other: it ends with its commit, its abort, the first error in any of its
 * calls, the connection's end, or timeout_s without a call for it. Nothing
 * reaches the registry before the commit, which runs the whole list as one
 * transaction, as devices.preregister does. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/rand.h>

#include "api_internal.h"
#include "kl_hex.h"

#define PREREG_MAX        100000 /* entries in one pre-registration */
#define BATCHES_MAX       4      /* batches holding entries at once, station-wide */
#define BATCH_TIMEOUT_S   300    /* default time a batch waits for its next call */
#define BATCH_TIMEOUT_MAX 3600
#define SOURCE_MAX        1024

/* One entry as it arrived, checked (kl_registry_check_items). */
struct entry {
	char serial[KL_REGISTRY_NAME_MAX + 1];
	char ek[65]; /* "" when none */
	unsigned line;
};

struct entries {
	struct entry *v;
	size_t n, cap;
};

struct api_batch {
	char id[33];
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char work_order[KL_REGISTRY_NAME_MAX + 1];
	char source[SOURCE_MAX + 1];
	int64_t quota;  /* for a new work order; -1: none */
	int64_t expect; /* entries announced by begin; -1: not said */
	int timeout_s;
	struct entries e;
	bool open; /* false once ended; why says how */
	char why[512];
};

static void entries_clear(struct entries *es)
{
	free(es->v);
	memset(es, 0, sizeof(*es));
}

/* Answers -32602 "Invalid params: ..." and keeps the sentence as the error
 * detail too, for the batch that it ends. */
static int bad_params(kl_rpc_call *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int bad_params(kl_rpc_call *call, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kl_error_set(KL_E_INVALID, "%s", msg);
	return kl_rpc_reply_params(call, "%s", msg);
}

/* source: printable text, as it goes into messages and the audit log. */
static int check_source(kl_rpc_call *call, const char *source)
{
	size_t n = strlen(source);

	if (n > SOURCE_MAX)
		return bad_params(call, "source must be at most %d bytes", SOURCE_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)source[i] < 0x20 || source[i] == 0x7f)
			return bad_params(call, "source must not hold control characters");
	return 0;
}

/* One item of the items array: a serial, or {"serial", "ek_sha256",
 * "line"}; any other key is refused, so that a misspelt ek_sha256 cannot
 * silently drop the EK check. */
static int item_parse(kl_rpc_call *call, json_object *it, size_t i, kl_registry_item *ret)
{
	if (json_object_is_type(it, json_type_string)) {
		ret->serial = json_object_get_string(it);
		return 0;
	}
	if (!json_object_is_type(it, json_type_object))
		goto bad;
	json_object_object_foreach(it, key, v)
	{
		if (strcmp(key, "serial") == 0 && json_object_is_type(v, json_type_string)) {
			ret->serial = json_object_get_string(v);
		} else if (strcmp(key, "ek_sha256") == 0 &&
		           (json_object_is_type(v, json_type_string) ||
		            json_object_is_type(v, json_type_null))) {
			ret->ek_sha256 = json_object_get_string(v);
		} else if (strcmp(key, "line") == 0 && json_object_is_type(v, json_type_int)) {
			int64_t line = json_object_get_int64(v);

			if (line < 1 || line > UINT_MAX)
				return bad_params(call, "items[%zu].line must be 1..%u", i,
				                  UINT_MAX);
			ret->line = (unsigned)line;
		} else if (strcmp(key, "serial") && strcmp(key, "ek_sha256") &&
		           strcmp(key, "line")) {
			return bad_params(call,
			                  "items[%zu]: unknown key \"%s\" (expected "
			                  "\"serial\", \"ek_sha256\" and \"line\")",
			                  i, key);
		} else {
			goto bad;
		}
	}
	if (ret->serial)
		return 0;
bad:
	return bad_params(call,
	                  "items[%zu] must be a serial or {\"serial\": ..., "
	                  "\"ek_sha256\": ..., \"line\": ...}",
	                  i);
}

/* Checks the items parameter and appends its entries to es. base is the
 * number of entries before these: an item without a line is named by its
 * place in the whole list (base + index + 1). On error es is unchanged. */
static int entries_add(kl_rpc_call *call, struct entries *es, size_t base, const char *source)
{
	const char *text = NULL;
	json_object *arr;
	kl_registry_item *items = NULL;
	size_t n;
	int r = 0;

	kl_rpc_param_json(call, "items", &text);
	arr = text ? json_tokener_parse(text) : NULL;
	n = json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
	if (n == 0 || n > PREREG_MAX - es->n) {
		json_object_put(arr);
		if (n == 0)
			return bad_params(call, "items must hold at least one entry");
		return bad_params(call, "a pre-registration holds at most %d entries", PREREG_MAX);
	}
	items = calloc(n, sizeof(*items));
	if (!items) {
		json_object_put(arr);
		return -KL_E_NOMEM;
	}
	for (size_t i = 0; r == 0 && i < n; i++) {
		r = item_parse(call, json_object_array_get_idx(arr, i), i, &items[i]);
		if (r == 0 && !items[i].line)
			items[i].line = (unsigned)(base + i + 1);
	}
	if (r == 0)
		r = kl_registry_check_items(items, n, source && *source ? source : NULL);
	if (r == 0 && es->n + n > es->cap) {
		size_t cap = es->cap ? es->cap : 1024;
		struct entry *v;

		while (cap < es->n + n)
			cap *= 2;
		v = realloc(es->v, cap * sizeof(*v));
		if (!v)
			r = kl_error_set(KL_E_NOMEM, "pre-registration: out of memory");
		else
			es->v = v, es->cap = cap;
	}
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct entry *e = &es->v[es->n + i];

		/* Checked above: a serial fits, an EK is 64 hex digits. */
		snprintf(e->serial, sizeof(e->serial), "%s", items[i].serial);
		snprintf(e->ek, sizeof(e->ek), "%s", items[i].ek_sha256 ? items[i].ek_sha256 : "");
		e->line = items[i].line;
	}
	if (r == 0)
		es->n += n;
	free(items);
	json_object_put(arr);
	return r;
}

/* The tenant and the work order, made when new (quota for a new order). */
/* Pre-registers the entries in one transaction with the tenant and work
 * order, and answers with the counts. */
static int apply(kl_rpc_call *call, const char *tenant, const char *wo, int64_t quota,
                 const char *source, const struct entries *es, const char *batch)
{
	kl_station *s = api_station(call);
	const char *actor = api_caller(call)->actor;
	kl_registry_item *items = calloc(es->n ? es->n : 1, sizeof(*items));
	kl_rpc_obj *o;
	int r, changed = 0;

	if (!items)
		return -KL_E_NOMEM;
	for (size_t i = 0; i < es->n; i++)
		items[i] = (kl_registry_item){ .serial = es->v[i].serial,
			                       .ek_sha256 = es->v[i].ek,
			                       .line = es->v[i].line };
	st_lock_backend(s);
	r = kl_store_begin(s->store);
	if (r == 0) {
		r = kl_registry_ensure_work_order(s->reg, tenant, wo, quota, false, actor);
		if (r == 0)
			r = kl_registry_preregister_from(s->reg, tenant, wo, items, es->n, actor,
			                                 source);
		if (r >= 0) {
			changed = r;
			r = kl_store_commit(s->store);
		} else {
			kl_store_rollback(s->store);
		}
	}
	st_unlock_backend(s);
	free(items);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	if (batch)
		kl_rpc_obj_put_str(o, "batch", batch);
	kl_rpc_obj_put_int(o, "entries", (int64_t)es->n);
	kl_rpc_obj_put_int(o, "changed", changed);
	kl_rpc_obj_put_str(o, "tenant", tenant);
	kl_rpc_obj_put_str(o, "work_order", wo);
	return 0;
}

/* A pre-registration handed to the backend worker: its own copy of what
 * it registers, so that the connection may close while it runs. */
struct prereg_job {
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char work_order[KL_REGISTRY_NAME_MAX + 1];
	char source[SOURCE_MAX + 1];
	char batch[33]; /* "" for a single request */
	int64_t quota;
	struct entries e;
};

static void prereg_job_free(void *arg)
{
	struct prereg_job *pj = arg;

	if (!pj)
		return;
	entries_clear(&pj->e);
	free(pj);
}

/* On the backend worker: 100,000 entries take seconds to commit. */
static int prereg_run(kl_rpc_call *call)
{
	const struct prereg_job *pj = api_caller(call)->defer_arg;

	return apply(call, pj->tenant, pj->work_order, pj->quota, pj->source, &pj->e,
	             pj->batch[0] ? pj->batch : NULL);
}

/* Hands the entries es (taken: es is left empty) to prereg_run. */
static int prereg_defer(kl_rpc_call *call, const char *tenant, const char *wo, int64_t quota,
                        const char *source, struct entries *es, const char *batch)
{
	struct prereg_job *pj = calloc(1, sizeof(*pj));

	if (!pj) {
		entries_clear(es);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	snprintf(pj->tenant, sizeof(pj->tenant), "%s", tenant);
	snprintf(pj->work_order, sizeof(pj->work_order), "%s", wo);
	snprintf(pj->source, sizeof(pj->source), "%s", source);
	snprintf(pj->batch, sizeof(pj->batch), "%s", batch ? batch : "");
	pj->quota = quota;
	pj->e = *es;
	memset(es, 0, sizeof(*es));
	return st_api_defer_arg(call, prereg_run, pj, prereg_job_free);
}

static int m_preregister(kl_rpc_call *call)
{
	const char *tenant = api_str_or(call, "tenant", ""),
	           *wo = api_str_or(call, "work_order", ""),
	           *source = api_str_or(call, "source", "");
	struct entries es = { 0 };
	int r;

	if ((r = check_source(call, source)) == 0 && (r = entries_add(call, &es, 0, source)) == 0)
		r = prereg_defer(call, tenant, wo, api_int_or(call, "quota", -1), source, &es,
		                 NULL);
	entries_clear(&es);
	return r;
}

/* ---- batches ---- */

/* Ends the caller's batch, keeping why for the calls that still name it;
 * its entries are freed. */
static void batch_end(st_caller *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void batch_end(st_caller *c, const char *fmt, ...)
{
	struct api_batch *b = c->batch;
	va_list ap;

	if (!b || !b->open)
		return;
	va_start(ap, fmt);
	vsnprintf(b->why, sizeof(b->why), fmt, ap);
	va_end(ap);
	b->open = false;
	entries_clear(&b->e);
	c->batch_deadline_ms = 0;
	c->st->open_batches--;
}

/* The poll loop's hook (st_caller.batch_drop). */
static void batch_drop(st_caller *c, bool closing)
{
	if (!c->batch)
		return;
	if (!closing) {
		batch_end(c, "no call for it within its timeout_s (%d s)", c->batch->timeout_s);
		return;
	}
	batch_end(c, "its connection closed");
	free(c->batch);
	c->batch = NULL;
	c->batch_drop = NULL;
}

/* The caller's open batch named by the "batch" parameter. */
static int batch_get(kl_rpc_call *call, struct api_batch **ret)
{
	st_caller *c = api_caller(call);
	const char *id = api_str_or(call, "batch", "");

	if (!c->batch || strcmp(c->batch->id, id) != 0)
		return kl_rpc_reply_error(call, KL_E_NOTFOUND,
		                          "no pre-registration batch '%s' on this connection (a "
		                          "batch belongs to the connection that began it)",
		                          id);
	/* The poll loop drops a batch past its time at its next turn; a call
	 * that comes first must not find it alive. */
	if (c->batch->open && st_wall_ms() > c->batch_deadline_ms)
		batch_drop(c, false);
	if (!c->batch->open)
		return kl_rpc_reply_error(
		    call, KL_E_STATE, "pre-registration batch %s has ended: %s", id, c->batch->why);
	*ret = c->batch;
	return 0;
}

static void batch_touch(st_caller *c)
{
	c->batch_deadline_ms = st_wall_ms() + (int64_t)c->batch->timeout_s * 1000;
}

static int m_batch_begin(kl_rpc_call *call)
{
	st_caller *c = api_caller(call);
	kl_station *s = c->st;
	const char *tenant = api_str_or(call, "tenant", ""),
	           *wo = api_str_or(call, "work_order", ""),
	           *source = api_str_or(call, "source", "");
	int64_t timeout_s = api_int_or(call, "timeout_s", BATCH_TIMEOUT_S),
	        expect = api_int_or(call, "entries", -1);
	unsigned char rnd[16];
	struct api_batch *b;
	kl_rpc_obj *o;
	int r;

	if (!c->conn)
		return kl_rpc_reply_error(call, KL_E_UNAVAILABLE,
		                          "a pre-registration batch needs a connection to the "
		                          "running station's socket");
	if (c->batch && c->batch->open)
		return kl_rpc_reply_error(call, KL_E_STATE,
		                          "batch %s is open on this connection already: commit or "
		                          "abort it first",
		                          c->batch->id);
	if (kl_registry_check_name("tenant name", tenant) < 0 ||
	    kl_registry_check_name("work order name", wo) < 0)
		return kl_rpc_reply_params(call, "%s", kl_error_detail());
	if ((r = check_source(call, source)) < 0)
		return r;
	if (timeout_s < 1 || timeout_s > BATCH_TIMEOUT_MAX)
		return kl_rpc_reply_params(call, "timeout_s must be 1..%d", BATCH_TIMEOUT_MAX);
	if (expect != -1 && (expect < 1 || expect > PREREG_MAX))
		return kl_rpc_reply_params(call, "entries must be 1..%d", PREREG_MAX);
	if (s->open_batches >= BATCHES_MAX)
		return kl_rpc_reply_error(call, KL_E_UNAVAILABLE,
		                          "%d pre-registration batches are open already; try again "
		                          "when one has ended",
		                          s->open_batches);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "batch id");
	b = c->batch ? c->batch : calloc(1, sizeof(*b));
	if (!b)
		return -KL_E_NOMEM;
	memset(b, 0, sizeof(*b));
	kl_hex_encode(rnd, sizeof(rnd), b->id);
	snprintf(b->tenant, sizeof(b->tenant), "%s", tenant);
	snprintf(b->work_order, sizeof(b->work_order), "%s", wo);
	snprintf(b->source, sizeof(b->source), "%s", source);
	b->quota = api_int_or(call, "quota", -1);
	b->expect = expect;
	b->timeout_s = (int)timeout_s;
	b->open = true;
	c->batch = b;
	c->batch_drop = batch_drop;
	s->open_batches++;
	batch_touch(c);
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "batch", b->id);
	kl_rpc_obj_put_int(o, "timeout_s", b->timeout_s);
	kl_rpc_obj_put_int(o, "max_entries", PREREG_MAX);
	return 0;
}

static int m_batch_add(kl_rpc_call *call)
{
	st_caller *c = api_caller(call);
	int64_t offset = api_int_or(call, "offset", -1);
	struct api_batch *b;
	kl_rpc_obj *o;
	int r;

	if ((r = batch_get(call, &b)) < 0)
		return r;
	if (offset != (int64_t)b->e.n) {
		r = kl_error_set(KL_E_INVALID,
		                 "a piece at offset %lld, but batch %s holds %zu entries: a piece "
		                 "was lost or sent twice",
		                 (long long)offset, b->id, b->e.n);
		batch_end(c, "a piece arrived out of order (offset %lld, expected %zu)",
		          (long long)offset, b->e.n);
		return r;
	}
	if ((r = entries_add(call, &b->e, b->e.n, b->source)) < 0) {
		batch_end(c, "a piece was refused: %s", kl_error_detail());
		return r;
	}
	batch_touch(c);
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "batch", b->id);
	kl_rpc_obj_put_int(o, "received", (int64_t)b->e.n);
	return 0;
}

static int m_batch_commit(kl_rpc_call *call)
{
	st_caller *c = api_caller(call);
	struct api_batch *b;
	int r;

	if ((r = batch_get(call, &b)) < 0)
		return r;
	if (b->e.n == 0)
		r = kl_error_set(KL_E_INVALID, "batch %s holds no entries", b->id);
	else if (b->expect >= 0 && (int64_t)b->e.n != b->expect)
		r = kl_error_set(
		    KL_E_INVALID,
		    "batch %s holds %zu entries, but its begin announced %lld: nothing "
		    "was registered",
		    b->id, b->e.n, (long long)b->expect);
	if (r < 0) {
		batch_end(c, "its commit failed: %s", kl_error_detail());
		return r;
	}
	/* The entries go with the commit to the backend worker; the batch has
	 * ended here, whatever the commit's answer says. */
	{
		struct entries es = b->e;
		char id[sizeof(b->id)];

		memset(&b->e, 0, sizeof(b->e));
		snprintf(id, sizeof(id), "%s", b->id);
		batch_end(c, "committed (its commit's answer says how)");
		return prereg_defer(call, b->tenant, b->work_order, b->quota, b->source, &es, id);
	}
}

static int m_batch_abort(kl_rpc_call *call)
{
	struct api_batch *b;
	kl_rpc_obj *o;
	size_t n;
	int r;

	if ((r = batch_get(call, &b)) < 0)
		return r;
	n = b->e.n;
	batch_end(api_caller(call), "aborted by its client");
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "batch", b->id);
	kl_rpc_obj_put_int(o, "dropped", (int64_t)n);
	return 0;
}

static const kl_rpc_param p_prereg[] = {
	{ "tenant", KL_RPC_STRING, true },  { "work_order", KL_RPC_STRING, true },
	{ "items", KL_RPC_ARRAY, true },    { "quota", KL_RPC_INT, false },
	{ "source", KL_RPC_STRING, false }, { NULL, 0, false },
};

static const kl_rpc_param p_begin[] = {
	{ "tenant", KL_RPC_STRING, true },
	{ "work_order", KL_RPC_STRING, true },
	{ "quota", KL_RPC_INT, false },
	{ "source", KL_RPC_STRING, false },
	{ "entries", KL_RPC_INT, false },
	{ "timeout_s", KL_RPC_INT, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_add[] = {
	{ "batch", KL_RPC_STRING, true },
	{ "offset", KL_RPC_INT, true },
	{ "items", KL_RPC_ARRAY, true },
	{ NULL, 0, false },
};

static const kl_rpc_param p_batch[] = { { "batch", KL_RPC_STRING, true }, { NULL, 0, false } };

/* devices.preregister and its batches */
const kl_rpc_method st_api_prereg[] = {
	{ "devices.preregister", OFF | AUT, p_prereg, m_preregister,
	  "pre-register serials for a tenant's work order, all or nothing" },
	{ "devices.preregister_begin", OFF | AUT, p_begin, m_batch_begin,
	  "begin a pre-registration sent in pieces, for this connection" },
	{ "devices.preregister_add", OFF | AUT, p_add, m_batch_add,
	  "add a piece of entries to a pre-registration batch" },
	{ "devices.preregister_commit", OFF | AUT, p_batch, m_batch_commit,
	  "pre-register a batch's entries, all or nothing" },
	{ "devices.preregister_abort", OFF | AUT, p_batch, m_batch_abort,
	  "drop a pre-registration batch" },
	{ NULL, 0, NULL, NULL, NULL },
};
