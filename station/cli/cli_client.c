/* How the keyline commands reach the station's data, and what they share on
 * the way: the connection (the running station's socket API, docs/api.md, or
 * the same method table in process over the home), the registry file of a
 * stopped home, reading and printing answers, the options of the client
 * commands, and the messages. The commands themselves are in cmd_*.c. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli_internal.h"
#include "client.h"
#include "home.h"
#include "kl_error.h"
#include "registry.h"
#include "station.h"

int kl_cli_fail(const char *cmd)
{
	fprintf(stderr, "keyline %s: %s\n", cmd, kl_error_detail());
	return 1;
}

int kl_cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "keyline %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see 'keyline %s --help')\n",
	        strncmp(cmd, "devices", 7) == 0 ? "devices" : cmd);
	return 2;
}

/* ---- reading and printing answers ---- */

const char *kl_cli_jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return "";
	return json_object_get_string(v);
}

int64_t kl_cli_jint(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

double kl_cli_jdbl(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

bool kl_cli_jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

json_object *kl_cli_jget(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

void kl_cli_print_json(json_object *o, int flags)
{
	puts(json_object_to_json_string_ext(o, flags | JSON_C_TO_STRING_NOSLASHESCAPE));
}

const char *kl_cli_when(int64_t t, char *buf, size_t size)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0 || !gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm) == 0)
		return "-";
	return buf;
}

/* ---- the connection: the running station, or the home in process ---- */

int kl_cli_connect(const char *home, kl_client **ret)
{
	char path[PATH_MAX];
	int r;

	if ((r = kl_client_socket_path(home, path, sizeof(path))) < 0)
		return r;
	return kl_client_connect(path, ret);
}

int kl_cli_api_open(const char *home, bool need, kl_cli_api *a)
{
	int r;

	memset(a, 0, sizeof(*a));
	r = kl_cli_connect(home, &a->client);
	if (r == 0 || need || r != -KL_E_UNAVAILABLE)
		return r;
	return kl_station_open_offline(home, &a->offline);
}

void kl_cli_api_close(kl_cli_api *a)
{
	kl_client_free(a->client);
	kl_station_free(a->offline);
	memset(a, 0, sizeof(*a));
}

int kl_cli_api_call(kl_cli_api *a, const char *method, json_object *params, json_object **res)
{
	json_object *req, *ans, *v;
	char *line = NULL;
	int r;

	if (a->client)
		return kl_client_call(a->client, method, params, res);
	req = json_object_new_object();
	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params)
		json_object_object_add(req, "params", params);
	json_object_object_add(req, "id", json_object_new_int(1));
	/* Whoever can read the home's files may read through it. */
	r = kl_station_call(a->offline, KL_RPC_ROLE_READER, kl_home_actor(),
	                    json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), &line);
	json_object_put(req);
	if (r < 0)
		return r;
	ans = json_tokener_parse(line);
	free(line);
	if (ans && json_object_object_get_ex(ans, "result", &v)) {
		*res = json_object_get(v);
		r = 0;
	} else if (ans && json_object_object_get_ex(ans, "error", &v)) {
		r = kl_error_set(KL_E_INVALID, "%s", kl_cli_jstr(v, "message"));
	} else {
		r = kl_error_set(KL_E_INVALID, "no answer");
	}
	json_object_put(ans);
	return r;
}

int kl_cli_call(const char *home, bool need_station, const char *method, json_object *params,
                json_object **res)
{
	kl_cli_api a;
	int r = kl_cli_api_open(home, need_station, &a);

	if (r < 0) {
		json_object_put(params);
		return r;
	}
	r = kl_cli_api_call(&a, method, params, res);
	kl_cli_api_close(&a);
	return r;
}

/* ---- the registry of a stopped home ---- */

int kl_cli_reg_open(const char *home_dir, struct kl_cli_reg *c)
{
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = kl_home_open(home_dir, &c->home)) < 0 ||
	    (r = kl_home_store(c->home, &c->store)) < 0 ||
	    (r = kl_registry_open(c->store, &c->reg)) < 0)
		return r;
	return 0;
}

void kl_cli_reg_close(struct kl_cli_reg *c)
{
	kl_registry_free(c->reg);
	kl_home_free(c->home);
	memset(c, 0, sizeof(*c));
}

/* ---- options ---- */

bool kl_cli_parse_count(const char *s, int64_t *ret)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return false;
	*ret = v;
	return true;
}

enum {
	O_SLOT = 1000,
	O_SERIAL,
	O_TENANT,
	O_WORK_ORDER,
	O_EK,
	O_REASON,
	O_CERT,
	O_STATE,
	O_SEARCH,
	O_ACTION,
	O_LIMIT,
	O_OFFSET,
	O_BEFORE,
	O_ID,
	O_JSON,
	O_NOWAIT,
	O_REPURPOSE,
	O_NEWEST,
	O_JSONL,
};

static const struct option long_opts[] = {
	{ "slot", required_argument, NULL, O_SLOT },
	{ "serial", required_argument, NULL, O_SERIAL },
	{ "tenant", required_argument, NULL, O_TENANT },
	{ "work-order", required_argument, NULL, O_WORK_ORDER },
	{ "ek", required_argument, NULL, O_EK },
	{ "reason", required_argument, NULL, O_REASON },
	{ "certificate", required_argument, NULL, O_CERT },
	{ "state", required_argument, NULL, O_STATE },
	{ "search", required_argument, NULL, O_SEARCH },
	{ "action", required_argument, NULL, O_ACTION },
	{ "limit", required_argument, NULL, O_LIMIT },
	{ "offset", required_argument, NULL, O_OFFSET },
	{ "before", required_argument, NULL, O_BEFORE },
	{ "id", required_argument, NULL, O_ID },
	{ "json", no_argument, NULL, O_JSON },
	{ "no-wait", no_argument, NULL, O_NOWAIT },
	{ "repurpose", no_argument, NULL, O_REPURPOSE },
	{ "newest-first", no_argument, NULL, O_NEWEST },
	{ "json-lines", no_argument, NULL, O_JSONL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static bool num(const char *s, long *ret)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < 0)
		return false;
	*ret = v;
	return true;
}

int kl_cli_parse(int argc, char **argv, const char *usage, struct kl_cli_opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->wait = true;
	o->limit = -1;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case O_SLOT:
			o->slot = optarg;
			break;
		case O_SERIAL:
			o->serial = optarg;
			break;
		case O_TENANT:
			o->tenant = optarg;
			break;
		case O_WORK_ORDER:
			o->work_order = optarg;
			break;
		case O_EK:
			o->ek = optarg;
			break;
		case O_REASON:
			o->reason = optarg;
			break;
		case O_CERT:
			o->cert = optarg;
			break;
		case O_STATE:
			o->state = optarg;
			break;
		case O_SEARCH:
			o->search = optarg;
			break;
		case O_ACTION:
			o->action = optarg;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_NOWAIT:
			o->wait = false;
			break;
		case O_REPURPOSE:
			o->repurpose = true;
			break;
		case O_NEWEST:
			o->newest = true;
			break;
		case O_JSONL:
			o->json_lines = true;
			break;
		case O_LIMIT:
		case O_OFFSET:
		case O_BEFORE:
		case O_ID: {
			long *dst = c == O_LIMIT    ? &o->limit
			            : c == O_OFFSET ? &o->offset
			            : c == O_BEFORE ? &o->before
			                            : &o->id;
			if (!num(optarg, dst)) {
				fprintf(stderr, "keyline %s: '%s' is not a number\n", argv[0],
				        optarg);
				return -2;
			}
			break;
		}
		case 'h':
			fputs(usage, stdout);
			return -1;
		default:
			fputs(usage, stderr);
			return -2;
		}
	}
	return optind;
}

int kl_cli_options(int argc, char **argv, const char *usage, struct kl_cli_opts *o)
{
	int r = kl_cli_parse(argc, argv, usage, o);

	if (r == -1)
		return 0;
	if (r == -2)
		return 2;
	if (r < argc) {
		fprintf(stderr, "keyline %s: unexpected '%s'\n%s", argv[0], argv[r], usage);
		return 2;
	}
	return -1;
}

int kl_cli_need(const char *cmd, const char *what, const char *v, const char *usage)
{
	if (v)
		return 0;
	fprintf(stderr, "keyline %s: %s is required\n%s", cmd, what, usage);
	return 2;
}
