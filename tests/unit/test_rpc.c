/* The JSON-RPC layer (station/rpc/), with exact answers: framing, the
 * JSON-RPC 2.0 error cases, roles and the denial hook, parameter checks,
 * id echo and bounded buffering. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kl_error.h"
#include "rpc.h"

/* Everything the connection answered, concatenated. */
struct sink {
	char *text;
	size_t len;
	int calls;
	int fail; /* out returns this when non-zero */
};

struct denial {
	int calls;
	unsigned roles;
	char method[64];
};

static int sink_out(void *ctx, const char *line, size_t len)
{
	struct sink *s = ctx;

	assert_true(len > 0 && line[len - 1] == '\n' && line[len] == '\0');
	assert_null(memchr(line, '\n', len - 1));
	s->calls++;
	if (s->fail)
		return s->fail;
	s->text = realloc(s->text, s->len + len + 1);
	assert_non_null(s->text);
	memcpy(s->text + s->len, line, len + 1);
	s->len += len;
	return 0;
}

static void on_denied(void *ctx, unsigned roles, const char *method)
{
	struct denial *d = ctx;

	d->calls++;
	d->roles = roles;
	snprintf(d->method, sizeof(d->method), "%s", method);
}

/* dev.get's work, shared with the deferred slow.get. */
static int get_body(kl_rpc_call *call)
{
	const char *serial = NULL;
	bool verbose = false;
	kl_rpc_obj *o;

	assert_int_equal(kl_rpc_param_str(call, "serial", &serial), 0);
	if (kl_rpc_param_bool(call, "verbose", &verbose) == 0)
		assert_true(verbose);
	/* Wrong type or not in the schema: refused by the accessors. */
	int64_t n;
	assert_int_equal(kl_rpc_param_int(call, "serial", &n), -KL_E_INVALID);
	assert_int_equal(kl_rpc_param_str(call, "nope", &serial), -KL_E_INVALID);
	if (strcmp(serial, "missing") == 0)
		return kl_rpc_reply_error(call, -KL_E_NOTFOUND, "no device %s", serial);
	if (strcmp(serial, "tpm") == 0)
		return kl_error_set(KL_E_TPM, "Esys_ReadPublic: 0x%x", 0x18b);
	if (strcmp(serial, "silent") == 0)
		return 0;
	assert_int_equal(kl_rpc_reply_object(call, &o), 0);
	assert_int_equal(kl_rpc_obj_put_str(o, "serial", serial), 0);
	assert_int_equal(kl_rpc_obj_put_bool(o, "verbose", verbose), 0);
	return 0;
}

static int h_get(kl_rpc_call *call)
{
	assert_string_equal(kl_rpc_call_method(call), "dev.get");
	return get_body(call);
}

static int h_set(kl_rpc_call *call)
{
	int64_t n = 0;
	const char *tags = "-", *meta = "-";
	kl_rpc_obj *o, *a, *sub;

	assert_int_equal(kl_rpc_param_int(call, "n", &n), 0);
	if (kl_rpc_param_json(call, "tags", &tags) < 0)
		tags = NULL;
	if (kl_rpc_param_json(call, "meta", &meta) < 0)
		meta = NULL;
	assert_int_equal(kl_rpc_reply_object(call, &o), 0);
	assert_int_equal(kl_rpc_obj_put_int(o, "n", n), 0);
	assert_int_equal(kl_rpc_obj_put_str(o, "tags", tags), 0);
	assert_int_equal(kl_rpc_obj_put_str(o, "meta", meta), 0);
	assert_int_equal(kl_rpc_obj_put_array(o, "a", &a), 0);
	assert_int_equal(kl_rpc_obj_put_object(a, NULL, &sub), 0);
	assert_int_equal(kl_rpc_obj_put_int(sub, "x", -1), 0);
	/* Key on an array, no key on an object: refused. */
	assert_int_equal(kl_rpc_obj_put_int(a, "k", 1), -KL_E_INVALID);
	assert_int_equal(kl_rpc_obj_put_int(o, NULL, 1), -KL_E_INVALID);
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
	{ "dev.set", KL_RPC_ROLE_OFFICER | KL_RPC_ROLE_SERVICE, set_params, h_set, "Set" },
	{ NULL, 0, NULL, NULL, NULL },
};

/* A handler that hands its call to another thread (deferred), as the
 * daemon's backend worker does; the tests below finish it. */
static kl_rpc_call *deferred;
static int deferred_ctx;

static int h_slow(kl_rpc_call *call)
{
	assert_null(deferred);
	assert_int_equal(kl_rpc_call_defer(call, &deferred_ctx, &deferred), 0);
	/* Only once. */
	kl_rpc_call *again = NULL;
	assert_int_equal(kl_rpc_call_defer(call, NULL, &again), -KL_E_INVALID);
	assert_null(again);
	return 0;
}

static const kl_rpc_method slow_methods[] = {
	{ "slow.get", KL_RPC_ROLE_READER | KL_RPC_ROLE_OPERATOR, get_params, h_slow, "Later" },
	{ NULL, 0, NULL, NULL, NULL },
};

static const kl_rpc_method *const tables[] = { methods, NULL };
static const kl_rpc_server server = { tables, on_denied };
static const kl_rpc_method *const slow_tables[] = { methods, slow_methods, NULL };
static const kl_rpc_server slow_server = { slow_tables, on_denied };

struct fx {
	kl_rpc_conn *c;
	struct sink s;
	struct denial d;
};

static struct fx *fx_new_on(const kl_rpc_server *srv, unsigned roles)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(kl_rpc_conn_new(srv, roles, &f->d, &f->c), 0);
	return f;
}

static struct fx *fx_new(unsigned roles)
{
	return fx_new_on(&server, roles);
}

static void fx_free(struct fx *f)
{
	kl_rpc_conn_free(f->c);
	free(f->s.text);
	free(f);
}

/* Feeds text (as one feed() call) and returns everything answered so far. */
static const char *feed(struct fx *f, const char *text)
{
	assert_int_equal(kl_rpc_feed(f->c, text, strlen(text), sink_out, &f->s), 0);
	return f->s.text ? f->s.text : "";
}

/* One request, one exact answer (or none when want is ""). */
static void expect(unsigned roles, const char *req, const char *want)
{
	struct fx *f = fx_new(roles);

	assert_string_equal(feed(f, req), want);
	fx_free(f);
}

#define OP               KL_RPC_ROLE_OPERATOR
#define ERR(id, body)    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"error\":" body "}\n"
#define PARSE            ERR("null", "{\"code\":-32700,\"message\":\"Parse error\"}")
#define INVALID(id, why) ERR(id, "{\"code\":-32600,\"message\":\"Invalid Request: " why "\"}")
#define PONG(id)         "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"pong\":true}}\n"
#define PING(id)         "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":" id "}\n"
#define TOO_LARGE                                                                             \
	ERR("null", "{\"code\":-32600,\"message\":\"request too large\",\"data\":{\"limit\":" \
	            "65536}}")

static void test_valid_call(void **state)
{
	expect(OP, PING("1"), PONG("1"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"params\":{},\"id\":2}\n",
	       PONG("2"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"params\":[],\"id\":3}\r\n",
	       PONG("3"));
	expect(OP,
	       "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"params\":{\"serial\":\"A1\"},\"id\":"
	       "4}\n",
	       "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"serial\":\"A1\",\"verbose\":false}}\n");
	/* Positional params, in schema order. */
	expect(OP,
	       "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"params\":[\"B\",true],\"id\":5}\n",
	       "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"serial\":\"B\",\"verbose\":true}}\n");
	expect(
	    KL_RPC_ROLE_OFFICER,
	    "{\"jsonrpc\":\"2.0\",\"method\":\"dev.set\",\"params\":{\"n\":-7,\"tags\":[1,\"x\"],"
	    "\"meta\":{\"a\":null}},\"id\":6}\n",
	    "{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{\"n\":-7,\"tags\":\"[1,\\\"x\\\"]\","
	    "\"meta\":\"{\\\"a\\\":null}\",\"a\":[{\"x\":-1}]}}\n");
	/* Blank lines are ignored. */
	expect(OP, "\n\r\n  \t\n", "");
}

static void test_notification(void **state)
{
	struct fx *f = fx_new(KL_RPC_ROLE_READER);

	assert_string_equal(feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\"}\n"), "");
	assert_string_equal(feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"no.such\"}\n"), "");
	assert_string_equal(feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\"}\n"), "");
	/* Denied notification: silent, but audited. */
	assert_string_equal(feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"dev.set\"}\n"), "");
	assert_int_equal(f->d.calls, 1);
	assert_int_equal(f->s.calls, 0);
	fx_free(f);
}

static void test_parse_error(void **state)
{
	expect(OP, "{\"jsonrpc\":\"2.0\",\n", PARSE);
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1}x\n", PARSE);
	expect(OP, "{}{}\n", PARSE);
	expect(OP, "{\"a\":1,}\n", PARSE);
	expect(OP, "{\"a\":\"\xff\"}\n", PARSE);

	/* A NUL byte anywhere in the line. */
	struct fx *f = fx_new(OP);
	static const char nul[] = "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1}\0x\n";
	assert_int_equal(kl_rpc_feed(f->c, nul, sizeof(nul) - 1, sink_out, &f->s), 0);
	assert_string_equal(f->s.text, PARSE);
	fx_free(f);

	/* Nesting past the limit. */
	char deep[200] = "{\"a\":";
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	strcat(deep, "\n");
	expect(OP, deep, PARSE);
}

static void test_invalid_request(void **state)
{
	expect(OP, "42\n", INVALID("null", "not a JSON object"));
	expect(OP, "\"str\"\n", INVALID("null", "not a JSON object"));
	expect(OP, "null\n", INVALID("null", "not a JSON object"));
	expect(OP, "[{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1}]\n",
	       ERR("null", "{\"code\":-32600,\"message\":\"batches are not supported\"}"));
	expect(OP, "[]\n",
	       ERR("null", "{\"code\":-32600,\"message\":\"batches are not supported\"}"));
	expect(OP, "{\"method\":\"rpc.ping\",\"id\":1}\n", INVALID("1", "'jsonrpc' must be '2.0'"));
	expect(OP, "{\"jsonrpc\":\"1.0\",\"method\":\"rpc.ping\",\"id\":1}\n",
	       INVALID("1", "'jsonrpc' must be '2.0'"));
	expect(OP, "{\"jsonrpc\":2.0,\"method\":\"rpc.ping\",\"id\":1}\n",
	       INVALID("1", "'jsonrpc' must be '2.0'"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":\"x\"}\n",
	       INVALID("\"x\"", "'method' must be a string"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"id\":1}\n", INVALID("1", "'method' must be a string"));
	/* Invalid even without an id: answered with id null (JSON-RPC 2.0 §7). */
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"params\":\"bar\"}\n",
	       INVALID("null", "'params' must be an object or an array"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"params\":null,\"id\":2}\n",
	       INVALID("2", "'params' must be an object or an array"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":true}\n",
	       INVALID("null", "'id' must be a string, a number that fits 64 bits or null"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":{}}\n",
	       INVALID("null", "'id' must be a string, a number that fits 64 bits or null"));
	expect(OP,
	       "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":123456789012345678901234}\n",
	       INVALID("null", "'id' must be a string, a number that fits 64 bits or null"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1e400}\n",
	       INVALID("null", "'id' must be a string, a number that fits 64 bits or null"));
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":NaN}\n",
	       INVALID("null", "'id' must be a string, a number that fits 64 bits or null"));
}

static void test_unknown_method(void **state)
{
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"no.such\",\"id\":\"a\"}\n",
	       ERR("\"a\"",
	           "{\"code\":-32601,\"message\":\"Method not found\",\"data\":{\"method\":"
	           "\"no.such\"}}"));
	/* A NUL escape does not make "rpc.ping\0x" match "rpc.ping". */
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\\u0000x\",\"id\":1}\n",
	       ERR("1", "{\"code\":-32601,\"message\":\"Method not found\",\"data\":{\"method\":"
	                "\"rpc.ping\\u0000x\"}}"));
}

#define GET(params) "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"params\":" params ",\"id\":9}\n"
#define BADP(why)   ERR("9", "{\"code\":-32602,\"message\":\"Invalid params: " why "\"}")

static void test_params(void **state)
{
	expect(OP, GET("{}"), BADP("missing required parameter 'serial'"));
	expect(OP, GET("{\"serial\":null}"), BADP("missing required parameter 'serial'"));
	expect(OP, GET("{\"serial\":5}"), BADP("parameter 'serial' must be a string"));
	expect(OP, GET("{\"serial\":\"a\",\"verbose\":\"yes\"}"),
	       BADP("parameter 'verbose' must be a boolean"));
	expect(OP, GET("{\"serial\":\"a\",\"color\":1}"), BADP("unknown parameter 'color'"));
	expect(OP, GET("{\"serial\":\"a\",\"\\u00e9\\n\":1}"), BADP("unknown parameter '\?\?\?'"));
	expect(OP, GET("[\"a\",true,3]"), BADP("too many parameters (at most 2)"));
	expect(OP, GET("[]"), BADP("missing required parameter 'serial'"));
	expect(OP, GET("{\"serial\":\"a\\u0000b\"}"),
	       BADP("parameter 'serial' must not contain a NUL character"));

	unsigned o = KL_RPC_ROLE_OFFICER;
#define SET(p) "{\"jsonrpc\":\"2.0\",\"method\":\"dev.set\",\"params\":" p ",\"id\":9}\n"
	expect(o, SET("{\"n\":1.5}"), BADP("parameter 'n' must be an integer"));
	expect(o, SET("{\"n\":\"1\"}"), BADP("parameter 'n' must be an integer"));
	expect(o, SET("{\"n\":9223372036854775808}"), BADP("parameter 'n' is out of range"));
	expect(o, SET("{\"n\":-99999999999999999999}"), BADP("parameter 'n' is out of range"));
	expect(o, SET("{\"n\":1,\"tags\":{}}"), BADP("parameter 'tags' must be an array"));
	expect(o, SET("{\"n\":1,\"meta\":[]}"), BADP("parameter 'meta' must be an object"));
	expect(o, SET("{\"n\":9223372036854775807}"),
	       "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"n\":9223372036854775807,\"tags\":null,"
	       "\"meta\":null,\"a\":[{\"x\":-1}]}}\n");
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"params\":{\"x\":1},\"id\":1}\n",
	       ERR("1", "{\"code\":-32602,\"message\":\"Invalid params: unknown parameter 'x'\"}"));
}

static void test_role_denied(void **state)
{
	struct fx *f = fx_new(KL_RPC_ROLE_READER | KL_RPC_ROLE_AUTOMATION);

	/* Denied before the (missing) params are looked at. */
	assert_string_equal(feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"dev.set\",\"id\":7}\n"),
	                    ERR("7", "{\"code\":-32001,\"message\":\"permission denied: method "
	                             "dev.set needs role officer|service\",\"data\":{\"reason\":"
	                             "\"perm\"}}"));
	assert_int_equal(f->d.calls, 1);
	assert_int_equal(f->d.roles, KL_RPC_ROLE_READER | KL_RPC_ROLE_AUTOMATION);
	assert_string_equal(f->d.method, "dev.set");
	fx_free(f);

	/* No hook: still denied, no crash. */
	static const kl_rpc_server quiet = { tables, NULL };
	kl_rpc_conn *c;
	struct sink s = { 0 };
	const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"dev.set\",\"id\":7}\n";
	assert_int_equal(kl_rpc_conn_new(&quiet, 0, NULL, &c), 0);
	assert_int_equal(kl_rpc_feed(c, req, strlen(req), sink_out, &s), 0);
	assert_non_null(strstr(s.text, "\"code\":-32001"));
	kl_rpc_conn_free(c);
	free(s.text);
}

static void test_methods_list(void **state)
{
	expect(
	    KL_RPC_ROLE_READER, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.methods\",\"id\":1}\n",
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"methods\":["
	    "{\"name\":\"rpc.ping\",\"summary\":\"Answers {\\\"pong\\\":true}.\",\"roles\":["
	    "\"operator\",\"automation\",\"officer\",\"service\",\"reader\"],\"params\":[]},"
	    "{\"name\":\"rpc.methods\",\"summary\":\"Lists the methods the caller may call, "
	    "with their summaries and parameters.\",\"roles\":[\"operator\",\"automation\","
	    "\"officer\",\"service\",\"reader\"],\"params\":[]},"
	    "{\"name\":\"dev.get\",\"summary\":\"Get a device\",\"roles\":[\"operator\","
	    "\"reader\"],\"params\":[{\"name\":\"serial\",\"type\":\"string\",\"required\":true},"
	    "{\"name\":\"verbose\",\"type\":\"boolean\",\"required\":false}]}]}}\n");
}

static int h_echo(kl_rpc_call *call)
{
	kl_rpc_obj *o;
	int r = kl_rpc_reply_object(call, &o);

	return r < 0 ? r : kl_rpc_obj_put_str(o, "method", kl_rpc_call_method(call));
}

static int h_never(kl_rpc_call *call)
{
	(void)call;
	fail_msg("a shadowed method ran");
	return -KL_E_INVALID;
}

/* A server over several tables (one per API area): each table's methods are
 * reached, the built-ins and earlier tables shadow later entries of the same
 * name (for calls, roles and rpc.methods alike), and rpc.methods lists the
 * tables in order. */
static void test_several_tables(void **state)
{
	static const kl_rpc_method area[] = {
		{ "area.echo", KL_RPC_ROLE_ALL, NULL, h_echo, "Echo" },
		{ "dev.get", KL_RPC_ROLE_ALL, NULL, h_never, "shadowed by the first table" },
		{ "rpc.ping", KL_RPC_ROLE_ALL, NULL, h_never, "shadowed by a built-in" },
		{ "area.echo", KL_RPC_ROLE_ALL, NULL, h_never, "shadowed within its table" },
		{ NULL, 0, NULL, NULL, NULL },
	};
	static const kl_rpc_method officer[] = {
		{ "area.officer", KL_RPC_ROLE_OFFICER, NULL, h_echo, "Officers only" },
		{ NULL, 0, NULL, NULL, NULL },
	};
	static const kl_rpc_method *const three[] = { methods, area, officer, NULL };
	static const kl_rpc_server multi = { three, NULL };
	static const kl_rpc_server bare = { NULL, NULL };
	static const struct {
		const kl_rpc_server *srv;
		unsigned roles;
		const char *req, *want;
	} cases[] = {
		{ &multi, KL_RPC_ROLE_READER,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"area.echo\",\"id\":1}\n",
		  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"method\":\"area.echo\"}}\n" },
		{ &multi, KL_RPC_ROLE_OFFICER,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"area.officer\",\"id\":2}\n",
		  "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"method\":\"area.officer\"}}\n" },
		{ &multi, KL_RPC_ROLE_READER,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"area.officer\",\"id\":3}\n",
		  ERR("3", "{\"code\":-32001,\"message\":\"permission denied: method "
		           "area.officer needs role officer\",\"data\":{\"reason\":\"perm\"}}") },
		/* The first table's dev.get, with its roles and its schema. */
		{ &multi, KL_RPC_ROLE_AUTOMATION,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"id\":4}\n",
		  ERR("4",
		      "{\"code\":-32001,\"message\":\"permission denied: method "
		      "dev.get needs role operator|reader\",\"data\":{\"reason\":\"perm\"}}") },
		{ &multi, KL_RPC_ROLE_READER,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"params\":[\"Z\"],\"id\":5}\n",
		  "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"serial\":\"Z\",\"verbose\":false}}"
		  "\n" },
		{ &multi, KL_RPC_ROLE_READER, PING("6"), PONG("6") },
		{ &multi, KL_RPC_ROLE_READER,
		  "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.methods\",\"id\":7}\n",
		  "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"methods\":["
		  "{\"name\":\"rpc.ping\",\"summary\":\"Answers {\\\"pong\\\":true}.\",\"roles\":["
		  "\"operator\",\"automation\",\"officer\",\"service\",\"reader\"],\"params\":[]},"
		  "{\"name\":\"rpc.methods\",\"summary\":\"Lists the methods the caller may call, "
		  "with their summaries and parameters.\",\"roles\":[\"operator\",\"automation\","
		  "\"officer\",\"service\",\"reader\"],\"params\":[]},"
		  "{\"name\":\"dev.get\",\"summary\":\"Get a device\",\"roles\":[\"operator\","
		  "\"reader\"],\"params\":[{\"name\":\"serial\",\"type\":\"string\",\"required\":"
		  "true},{\"name\":\"verbose\",\"type\":\"boolean\",\"required\":false}]},"
		  "{\"name\":\"area.echo\",\"summary\":\"Echo\",\"roles\":[\"operator\","
		  "\"automation\",\"officer\",\"service\",\"reader\"],\"params\":[]}]}}\n" },
		/* No tables: the built-ins only. */
		{ &bare, KL_RPC_ROLE_ALL, "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"id\":8}\n",
		  ERR("8", "{\"code\":-32601,\"message\":\"Method not found\",\"data\":{"
		           "\"method\":\"dev.get\"}}") },
		{ &bare, KL_RPC_ROLE_ALL, PING("9"), PONG("9") },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sink s = { 0 };
		kl_rpc_conn *c;

		assert_int_equal(kl_rpc_conn_new(cases[i].srv, cases[i].roles, NULL, &c), 0);
		assert_int_equal(kl_rpc_feed(c, cases[i].req, strlen(cases[i].req), sink_out, &s),
		                 0);
		assert_non_null(s.text);
		assert_string_equal(s.text, cases[i].want);
		kl_rpc_conn_free(c);
		free(s.text);
	}
}

static void test_handler_errors(void **state)
{
	expect(OP, GET("{\"serial\":\"missing\"}"),
	       ERR("9", "{\"code\":-32014,\"message\":\"no device missing\",\"data\":{\"reason\":"
	                "\"notfound\"}}"));
	expect(OP, GET("{\"serial\":\"tpm\"}"),
	       ERR("9", "{\"code\":-32017,\"message\":\"Esys_ReadPublic: 0x18b\",\"data\":{"
	                "\"reason\":\"tpm\"}}"));
	expect(OP, GET("{\"serial\":\"silent\"}"),
	       ERR("9", "{\"code\":-32603,\"message\":\"Internal error: method gave no reply\"}"));
	assert_int_equal(kl_rpc_error_code(-KL_E_PERM), KL_RPC_E_DENIED);
	assert_int_equal(kl_rpc_error_code(KL_E_NOMEM), -32011);
	assert_int_equal(kl_rpc_error_code(-KL_E_UNAVAILABLE), -32025);
	assert_int_equal(kl_rpc_error_code(0), KL_RPC_E_SERVER);
	assert_int_equal(kl_rpc_error_code(-1000), KL_RPC_E_SERVER);
	assert_int_equal(kl_rpc_error_code(-2147483647 - 1), KL_RPC_E_SERVER);
}

static void test_ids_echoed(void **state)
{
	expect(OP, PING("\"abc\""), PONG("\"abc\""));
	expect(OP, PING("\"\""), PONG("\"\""));
	expect(OP, PING("\"\\u00e9\\\"\""), PONG("\"é\\\"\""));
	expect(OP, PING("0"), PONG("0"));
	expect(OP, PING("-5"), PONG("-5"));
	expect(OP, PING("9223372036854775807"), PONG("9223372036854775807"));
	expect(OP, PING("18446744073709551614"), PONG("18446744073709551614"));
	expect(OP, PING("1.50"), PONG("1.50"));
	expect(OP, PING("-2e3"), PONG("-2e3"));
	expect(OP, PING("null"), PONG("null"));
	/* The id is echoed on errors too. */
	expect(OP, "{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"id\":\"q\"}\n",
	       ERR("\"q\"",
	           "{\"code\":-32601,\"message\":\"Method not found\",\"data\":{\"method\":"
	           "\"x\"}}"));
}

static void test_too_large_then_valid(void **state)
{
	struct fx *f = fx_new(OP);
	size_t n = KL_RPC_MAX_LINE + 10;
	char *big = malloc(n);

	assert_non_null(big);
	memset(big, 'x', n);
	assert_int_equal(kl_rpc_feed(f->c, big, n, sink_out, &f->s), 0);
	assert_string_equal(f->s.text, TOO_LARGE);
	assert_true(kl_rpc_conn_buffered(f->c) <= KL_RPC_MAX_LINE);
	/* The rest of the long line, then a valid request on the same feed. */
	assert_string_equal(feed(f, "yyyy\n" PING("2")), TOO_LARGE PONG("2"));
	assert_int_equal(kl_rpc_conn_buffered(f->c), 0);

	/* Exactly at the limit is accepted; one more byte is not. */
	const char *req = PING("3");
	size_t rl = strlen(req) - 1;
	memset(big, ' ', KL_RPC_MAX_LINE);
	memcpy(big, req, rl);
	big[KL_RPC_MAX_LINE] = '\n';
	free(f->s.text);
	f->s = (struct sink){ 0 };
	assert_int_equal(kl_rpc_feed(f->c, big, KL_RPC_MAX_LINE + 1, sink_out, &f->s), 0);
	assert_string_equal(f->s.text, PONG("3"));
	big[KL_RPC_MAX_LINE] = ' ';
	assert_int_equal(kl_rpc_feed(f->c, big, KL_RPC_MAX_LINE + 1, sink_out, &f->s), 0);
	assert_string_equal(feed(f, "\n"), PONG("3") TOO_LARGE);
	free(big);
	fx_free(f);
}

static void test_byte_by_byte(void **state)
{
	struct fx *f = fx_new(OP);
	const char *in = PING("1") "{\"jsonrpc\":\"2.0\",\"meth"
	                           "\n" PING("\"z\"");

	for (size_t i = 0; in[i]; i++) {
		assert_int_equal(kl_rpc_feed(f->c, in + i, 1, sink_out, &f->s), 0);
		if (in[i] != '\n')
			assert_true(kl_rpc_conn_buffered(f->c) > 0);
	}
	assert_string_equal(f->s.text, PONG("1") PARSE PONG("\"z\""));
	assert_int_equal(kl_rpc_feed(f->c, NULL, 0, sink_out, &f->s), 0);
	fx_free(f);
}

static void test_several_in_one_feed(void **state)
{
	expect(OP, PING("1") PING("2") "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\"}\n" PING("3"),
	       PONG("1") PONG("2") PONG("3"));
	/* An incomplete tail stays buffered until its newline. */
	struct fx *f = fx_new(OP);
	assert_string_equal(feed(f, PING("1") "{\"jsonrpc\":"), PONG("1"));
	assert_int_equal(kl_rpc_conn_buffered(f->c), strlen("{\"jsonrpc\":"));
	assert_string_equal(feed(f, "\"2.0\",\"method\":\"rpc.ping\",\"id\":2}\n"),
	                    PONG("1") PONG("2"));
	fx_free(f);
}

static void test_garbage_stream(void **state)
{
	struct fx *f = fx_new(OP);
	char chunk[4096];
	uint32_t x = 12345;

	/* 1 MiB of random bytes without a newline, in 4 KiB reads. */
	for (int i = 0; i < 256; i++) {
		for (size_t j = 0; j < sizeof(chunk); j++) {
			x = x * 1103515245u + 12345u;
			chunk[j] = (char)(x >> 16);
			if (chunk[j] == '\n')
				chunk[j] = 'n';
		}
		assert_int_equal(kl_rpc_feed(f->c, chunk, sizeof(chunk), sink_out, &f->s), 0);
		assert_true(kl_rpc_conn_buffered(f->c) <= KL_RPC_MAX_LINE);
	}
	/* One answer for the whole over-long line; then the connection works. */
	assert_string_equal(f->s.text, TOO_LARGE);
	assert_string_equal(feed(f, "\n" PING("1")), TOO_LARGE PONG("1"));
	fx_free(f);
}

static void test_out_failure(void **state)
{
	struct fx *f = fx_new(OP);
	const char *in = PING("1") PING("2");

	f->s.fail = -KL_E_IO;
	assert_int_equal(kl_rpc_feed(f->c, in, strlen(in), sink_out, &f->s), -KL_E_IO);
	assert_int_equal(f->s.calls, 1);
	assert_int_equal(kl_rpc_feed(NULL, in, 1, sink_out, &f->s), -KL_E_INVALID);
	assert_int_equal(kl_rpc_feed(f->c, NULL, 1, sink_out, &f->s), -KL_E_INVALID);
	assert_int_equal(kl_rpc_feed(f->c, in, 1, NULL, NULL), -KL_E_INVALID);
	kl_rpc_conn *c = NULL;
	assert_int_equal(kl_rpc_conn_new(NULL, OP, NULL, &c), -KL_E_INVALID);
	assert_null(c);
	kl_rpc_conn_free(NULL);
	fx_free(f);
}

/* What the worker thread does with a deferred call: h_get's body (the
 * same answers), then settle, on a thread of its own. */
static void *finish_main(void *arg)
{
	kl_rpc_call *call = arg;

	assert_ptr_equal(kl_rpc_call_ctx(call), &deferred_ctx);
	assert_int_equal(kl_rpc_call_roles(call), OP);
	assert_string_equal(kl_rpc_call_method(call), "slow.get");
	kl_error_clear();
	kl_rpc_call_settle(call, get_body(call));
	return NULL;
}

static void finish_on_thread(kl_rpc_call *call)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, finish_main, call), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/* A deferred call answers later, with the bytes the handler would have
 * given at once (the error detail of the thread that did the work too);
 * the connection goes on serving meanwhile; a call whose connection went
 * away is dropped without an answer and without a leak. */
static void test_deferred(void **state)
{
	static const struct {
		const char *serial, *want;
	} cases[] = {
		{ "A1", "{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"result\":{\"serial\":\"A1\","
		        "\"verbose\":false}}\n" },
		{ "missing", ERR("\"x\"", "{\"code\":-32014,\"message\":\"no device missing\","
		                          "\"data\":{\"reason\":\"notfound\"}}") },
		{ "tpm", ERR("\"x\"", "{\"code\":-32017,\"message\":\"Esys_ReadPublic: 0x18b\","
		                      "\"data\":{\"reason\":\"tpm\"}}") },
		{ "silent", ERR("\"x\"", "{\"code\":-32603,\"message\":\"Internal error: method "
		                         "gave no reply\"}") },
	};
	char req[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fx *f = fx_new_on(&slow_server, OP);
		struct sink later = { 0 };

		snprintf(req, sizeof(req),
		         "{\"jsonrpc\":\"2.0\",\"method\":\"slow.get\",\"params\":"
		         "{\"serial\":\"%s\"},\"id\":\"x\"}\n" PING("2"),
		         cases[i].serial);
		/* Nothing for the deferred request; the next one is answered. */
		assert_string_equal(feed(f, req), PONG("2"));
		assert_non_null(deferred);
		finish_on_thread(deferred);
		assert_int_equal(kl_rpc_call_send(deferred, sink_out, &later), 0);
		deferred = NULL;
		assert_string_equal(later.text, cases[i].want);
		/* The same request answered at once gives the same bytes. */
		snprintf(req, sizeof(req),
		         "{\"jsonrpc\":\"2.0\",\"method\":\"dev.get\",\"params\":"
		         "{\"serial\":\"%s\"},\"id\":\"x\"}\n",
		         cases[i].serial);
		free(f->s.text);
		f->s.text = NULL;
		f->s.len = 0;
		assert_string_equal(feed(f, req), cases[i].want);
		free(later.text);
		fx_free(f);
	}

	/* The connection closes before the answer: the call is dropped. */
	{
		struct fx *f = fx_new_on(&slow_server, OP);

		assert_string_equal(
		    feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"slow.get\",\"params\":[\"B\"],"
		            "\"id\":9}\n"),
		    "");
		fx_free(f);
		assert_non_null(deferred);
		finish_on_thread(deferred);
		kl_rpc_call_free(deferred);
		deferred = NULL;
	}
	/* A notification is worked on but never answered. */
	{
		struct fx *f = fx_new_on(&slow_server, OP);
		struct sink later = { 0 };

		assert_string_equal(
		    feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"slow.get\",\"params\":[\"B\"]}\n"),
		    "");
		finish_on_thread(deferred);
		assert_int_equal(kl_rpc_call_send(deferred, sink_out, &later), 0);
		deferred = NULL;
		assert_int_equal(later.calls, 0);
		fx_free(f);
	}
	/* Not deferred: refused. */
	kl_rpc_call_free(NULL);
	assert_int_equal(kl_rpc_call_send(NULL, sink_out, NULL), -KL_E_INVALID);
}

static void test_roles_str(void **state)
{
	char buf[64], tiny[9];

	assert_string_equal(kl_rpc_roles_str(KL_RPC_ROLE_ALL, buf, sizeof(buf)),
	                    "operator|automation|officer|service|reader");
	assert_string_equal(kl_rpc_roles_str(0, buf, sizeof(buf)), "none");
	assert_string_equal(
	    kl_rpc_roles_str(KL_RPC_ROLE_READER | KL_RPC_ROLE_OFFICER, tiny, sizeof(tiny)),
	    "officer");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_call),     cmocka_unit_test(test_notification),
		cmocka_unit_test(test_parse_error),    cmocka_unit_test(test_invalid_request),
		cmocka_unit_test(test_unknown_method), cmocka_unit_test(test_params),
		cmocka_unit_test(test_role_denied),    cmocka_unit_test(test_methods_list),
		cmocka_unit_test(test_several_tables), cmocka_unit_test(test_handler_errors),
		cmocka_unit_test(test_ids_echoed),     cmocka_unit_test(test_too_large_then_valid),
		cmocka_unit_test(test_byte_by_byte),   cmocka_unit_test(test_several_in_one_feed),
		cmocka_unit_test(test_garbage_stream), cmocka_unit_test(test_out_failure),
		cmocka_unit_test(test_roles_str),      cmocka_unit_test(test_deferred),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
