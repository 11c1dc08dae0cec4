/* libFuzzer harness for the JSON-RPC layer (station/rpc/rpc.c, rpc_call.c).
 *
 * The input is a byte stream from a peer. It is fed to two connections with
 * the same roles, one in a single kl_rpc_feed() call and one in chunks of
 * odd sizes, and then to a third connection with other roles. Besides "no
 * crash, no leak, no sanitizer report", it checks invariants and aborts when
 * one breaks:
 *   - every answer is one line ending in '\n' that parses as a JSON object
 *     with "jsonrpc":"2.0", an "id" and exactly one of "result" / "error";
 *   - the answers do not depend on how the stream was cut into feed() calls;
 *   - a connection never buffers more than KL_RPC_MAX_LINE bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "kl_error.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	uint64_t hash; /* FNV-1a over every answer */
	size_t lines;
};

static unsigned denied;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_rpc: invariant broken: %s\n", what);
		abort();
	}
}

static int sink_out(void *ctx, const char *line, size_t len)
{
	struct sink *s = ctx;
	json_object *o, *v;
	int n = 0;

	check(len >= 3 && line[len - 1] == '\n' && line[len] == '\0', "line framing");
	check(memchr(line, '\n', len - 1) == NULL, "one line per answer");
	o = json_tokener_parse(line);
	check(json_object_is_type(o, json_type_object), "answer is an object");
	check(json_object_object_get_ex(o, "jsonrpc", &v) &&
	          strcmp(json_object_get_string(v), "2.0") == 0,
	      "jsonrpc 2.0");
	check(json_object_object_get_ex(o, "id", &v), "id present");
	n += json_object_object_get_ex(o, "result", &v);
	if (json_object_object_get_ex(o, "error", &v)) {
		json_object *code;
		n++;
		check(json_object_object_get_ex(v, "code", &code) &&
		          json_object_is_type(code, json_type_int),
		      "error code");
	}
	check(n == 1, "result xor error");
	json_object_put(o);
	for (size_t i = 0; i < len; i++)
		s->hash = (s->hash ^ (uint8_t)line[i]) * 0x100000001b3ull;
	s->lines++;
	return 0;
}

static void on_denied(void *ctx, unsigned roles, const char *method)
{
	check(method != NULL && ctx == &denied, "on_denied arguments");
	denied++;
}

static int h_get(kl_rpc_call *call)
{
	const char *serial;
	bool verbose = false;
	kl_rpc_obj *o;
	int r;

	if (kl_rpc_param_str(call, "serial", &serial) < 0)
		return kl_rpc_reply_error(call, KL_E_INVALID, "no serial");
	(void)kl_rpc_param_bool(call, "verbose", &verbose);
	if (strcmp(serial, "missing") == 0)
		return kl_rpc_reply_error(call, -KL_E_NOTFOUND, "no device %s", serial);
	if ((r = kl_rpc_reply_object(call, &o)) < 0 ||
	    (r = kl_rpc_obj_put_str(o, "serial", serial)) < 0 ||
	    (r = kl_rpc_obj_put_bool(o, "verbose", verbose)) < 0)
		return r;
	return 0;
}

static int h_set(kl_rpc_call *call)
{
	int64_t n = 0;
	const char *tags = NULL, *meta = NULL;
	kl_rpc_obj *o, *a;
	int r;

	(void)kl_rpc_param_int(call, "n", &n);
	(void)kl_rpc_param_json(call, "tags", &tags);
	(void)kl_rpc_param_json(call, "meta", &meta);
	if (n < 0)
		return kl_error_set(KL_E_TPM, "negative n %lld", (long long)n);
	if (n == 0)
		return 0; /* no reply: the layer answers -32603 */
	if ((r = kl_rpc_reply_object(call, &o)) < 0 || (r = kl_rpc_obj_put_int(o, "n", n)) < 0 ||
	    (r = kl_rpc_obj_put_str(o, "tags", tags)) < 0 ||
	    (r = kl_rpc_obj_put_str(o, "meta", meta)) < 0 ||
	    (r = kl_rpc_obj_put_array(o, "list", &a)) < 0 ||
	    (r = kl_rpc_obj_put_int(a, NULL, n)) < 0)
		return r;
	/* A misuse the builder must refuse without leaking. */
	check(kl_rpc_obj_put_int(a, "key", 1) == -KL_E_INVALID, "array with key");
	return 0;
}

static const kl_rpc_param get_params[] = {
	{ "serial", KL_RPC_STRING, true },
	{ "verbose", KL_RPC_BOOL, false },
	{ NULL, KL_RPC_STRING, false },
};

static const kl_rpc_param set_params[] = {
	{ "n", KL_RPC_INT, true },
	{ "tags", KL_RPC_ARRAY, false },
	{ "meta", KL_RPC_OBJECT, false },
	{ NULL, KL_RPC_STRING, false },
};

static const kl_rpc_method methods[] = {
	{ "dev.get", KL_RPC_ROLE_READER | KL_RPC_ROLE_OPERATOR, get_params, h_get, "Get a device" },
	{ "dev.set", KL_RPC_ROLE_OFFICER, set_params, h_set, "Set a thing" },
	{ NULL, 0, NULL, NULL, NULL },
};

static const kl_rpc_method *const tables[] = { methods, NULL };
static const kl_rpc_server server = { tables, on_denied };

static struct sink run(const uint8_t *data, size_t size, unsigned roles, size_t chunk)
{
	struct sink s = { 0xcbf29ce484222325ull, 0 };
	kl_rpc_conn *c = NULL;

	check(kl_rpc_conn_new(&server, roles, &denied, &c) == 0, "conn_new");
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		check(kl_rpc_feed(c, (const char *)data + off, n, sink_out, &s) == 0, "feed");
		check(kl_rpc_conn_buffered(c) <= KL_RPC_MAX_LINE, "bounded buffer");
		off += n;
		/* Vary the cut so lines end at every position of a chunk. */
		if (chunk != SIZE_MAX)
			chunk = chunk % 13 + 1;
	}
	kl_rpc_conn_free(c);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned roles = KL_RPC_ROLE_OPERATOR | KL_RPC_ROLE_OFFICER;
	struct sink whole, cut;

	whole = run(data, size, roles, SIZE_MAX);
	cut = run(data, size, roles, 7);
	check(whole.hash == cut.hash && whole.lines == cut.lines, "answers depend on the cuts");
	(void)run(data, size, KL_RPC_ROLE_READER, SIZE_MAX);
	return 0;
}
