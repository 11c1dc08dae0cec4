/* The keyline commands that talk to the running station over its socket
 * (docs/api.md): status, slots, jobs, events, provision on a slot, renew,
 * decommission, repurpose, lost, revoke, record, crl, audit, and devices
 * while the station runs. Tables for people, --json for scripts. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "client.h"
#include "engine.h"
#include "kl_error.h"
#include "registry.h"
#include "station.h"

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return "";
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static double jdbl(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static json_object *jget(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
}

static const char *when(int64_t t, char *buf, size_t size)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0)
		return "-";
	gmtime_r(&tt, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
	return buf;
}

/* ---- the connection: the running station, or the home in process ---- */

typedef struct api {
	kl_client *client;
	kl_station *offline;
} api;

/* need: the command needs the running station (it changes something). */
static int api_open(const char *home, bool need, api *a)
{
	char path[PATH_MAX];
	int r;

	memset(a, 0, sizeof(*a));
	kl_client_socket_path(home, path, sizeof(path));
	r = kl_client_connect(path, &a->client);
	if (r == 0 || need || r != -KL_E_UNAVAILABLE)
		return r;
	return kl_station_open_offline(home, &a->offline);
}

static void api_close(api *a)
{
	kl_client_free(a->client);
	kl_station_free(a->offline);
}

static int api_call(api *a, const char *method, json_object *params, json_object **res)
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
		r = kl_error_set(KL_E_INVALID, "%s", jstr(v, "message"));
	} else {
		r = kl_error_set(KL_E_INVALID, "no answer");
	}
	json_object_put(ans);
	return r;
}

int kl_cli_call(const char *home, bool need_station, const char *method, json_object *params,
                json_object **res)
{
	api a;
	int r = api_open(home, need_station, &a);

	if (r < 0) {
		json_object_put(params);
		return r;
	}
	r = api_call(&a, method, params, res);
	api_close(&a);
	return r;
}

static int fail(const char *cmd)
{
	fprintf(stderr, "keyline %s: %s\n", cmd, kl_error_detail());
	return 1;
}

/* ---- options shared by the commands ---- */

struct opts {
	const char *slot, *serial, *tenant, *ek, *reason, *cert, *state, *search, *action;
	long limit, offset, before, id;
	bool json, json_lines, wait, repurpose, newest, follow;
};

enum {
	O_SLOT = 1000,
	O_SERIAL,
	O_TENANT,
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

/* Parses argv; returns -1 for --help (printed), -2 for a usage error. */
static int parse(int argc, char **argv, const char *usage, struct opts *o)
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

#define PARSE(usage)                                                                          \
	do {                                                                                  \
		int p_ = parse(argc, argv, usage, &o);                                        \
		if (p_ == -1)                                                                 \
			return 0;                                                             \
		if (p_ == -2)                                                                 \
			return 2;                                                             \
		if (p_ < argc) {                                                              \
			fprintf(stderr, "keyline %s: unexpected '%s'\n%s", argv[0], argv[p_], \
			        usage);                                                       \
			return 2;                                                             \
		}                                                                             \
	} while (0)

static int need(const char *cmd, const char *what, const char *v, const char *usage)
{
	if (v)
		return 0;
	fprintf(stderr, "keyline %s: %s is required\n%s", cmd, what, usage);
	return 2;
}

/* ---- status, slots, jobs ---- */

static void print_slots(json_object *res)
{
	json_object *slots = jget(res, "slots");

	printf("%-10s %-6s %-5s %-18s %-14s %s\n", "SLOT", "STATE", "LINK", "SERIAL", "STEP",
	       "LINK TO DUT");
	for (size_t i = 0; slots && i < json_object_array_length(slots); i++) {
		json_object *s = json_object_array_get_idx(slots, i), *j = jget(s, "job");
		json_object *up = jget(s, "link_up");

		printf("%-10s %-6s %-5s %-18s %-14s %s\n", jstr(s, "name"), jstr(s, "state"),
		       !up                           ? "?"
		       : json_object_get_boolean(up) ? "up"
		                                     : "DOWN",
		       j ? jstr(j, "serial") : "-", j ? jstr(j, "step") : "-", jstr(s, "link"));
	}
}

static const char status_usage[] =
    "usage: keyline [--home DIR] status [--json]\n"
    "\nThe running station: its slots and what they do, jobs passed and failed, clients.\n";

int kl_cmd_status(const char *home, int argc, char **argv)
{
	struct opts o;
	json_object *st = NULL, *sl = NULL;
	api a;
	int r;

	PARSE(status_usage);
	if (api_open(home, true, &a) < 0)
		return fail("status");
	r = api_call(&a, "station.status", NULL, &st);
	if (r == 0)
		r = api_call(&a, "slots.list", NULL, &sl);
	api_close(&a);
	if (r < 0)
		return fail("status");
	if (o.json) {
		json_object_object_add(st, "slot_list", json_object_get(jget(sl, "slots")));
		print_json(st);
	} else {
		json_object *s = jget(st, "slots"), *j = jget(st, "jobs");

		printf("station %s (keyline %s), up %llds, %lld client(s)%s\n", jstr(st, "station"),
		       jstr(st, "version"), (long long)jint(st, "uptime_s"),
		       (long long)jint(st, "clients"), jbool(st, "stopping") ? ", STOPPING" : "");
		printf("slots: %lld, %lld busy, %lld link up; jobs: %lld running, %lld passed, "
		       "%lld failed\n\n",
		       (long long)jint(s, "total"), (long long)jint(s, "busy"),
		       (long long)jint(s, "link_up"), (long long)jint(j, "running"),
		       (long long)jint(j, "passed"), (long long)jint(j, "failed"));
		print_slots(sl);
	}
	json_object_put(st);
	json_object_put(sl);
	return 0;
}

static void print_job(json_object *j)
{
	json_object *res = jget(j, "result");

	printf("job %lld: %s %s on slot %s: %s", (long long)jint(j, "job"), jstr(j, "kind"),
	       jstr(j, "serial"), jstr(j, "slot"), jstr(j, "state"));
	if (res && !jbool(res, "ok"))
		printf(" at %s [%s]: %s", jstr(res, "failed_step"), jstr(res, "reason"),
		       jstr(res, "message"));
	if (res)
		printf(" (%.0f ms)", jdbl(res, "total_ms"));
	if (res && *jstr(res, "idevid_serial"))
		printf("\n  IDevID %s, IAK %s, EK %s%s", jstr(res, "idevid_serial"),
		       jstr(res, "iak_serial"), jstr(res, "ek_type"),
		       jbool(res, "already_provisioned") ? ", already provisioned" : "");
	if (res && *jstr(res, "new_serial"))
		printf("\n  new IDevID certificate %s", jstr(res, "new_serial"));
	if (res && jint(res, "record_id"))
		printf("\n  sanitization record %lld ('keyline record %s')",
		       (long long)jint(res, "record_id"), jstr(j, "serial"));
	printf("\n");
}

static const char jobs_usage[] =
    "usage: keyline [--home DIR] jobs [list] [--slot S] [--limit N] [--json]\n"
    "       keyline [--home DIR] jobs show --id N [--json]\n"
    "       keyline [--home DIR] jobs abort --id N\n"
    "\nThe station's recent jobs; a job's state and result; stop a job at its next step\n"
    "(it cleans up like any refusal).\n";

int kl_cmd_jobs(const char *home, int argc, char **argv)
{
	const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "list";
	json_object *p = json_object_new_object(), *res = NULL;
	struct opts o;
	api a;
	int r;

	if (argc > 1 && argv[1][0] != '-') {
		argc--;
		argv++;
	}
	PARSE(jobs_usage);
	if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "abort") != 0) {
		fprintf(stderr, "keyline jobs: unknown command '%s'\n%s", sub, jobs_usage);
		return 2;
	}
	if (strcmp(sub, "list") != 0 && o.id <= 0) {
		fprintf(stderr, "keyline jobs %s: --id is required\n", sub);
		return 2;
	}
	if (api_open(home, true, &a) < 0)
		return fail("jobs");
	if (strcmp(sub, "list") == 0) {
		if (o.limit > 0)
			json_object_object_add(p, "limit", json_object_new_int64(o.limit));
		if (o.slot)
			json_object_object_add(p, "slot", json_object_new_string(o.slot));
		r = api_call(&a, "job.list", p, &res);
	} else {
		json_object_object_add(p, "job", json_object_new_int64(o.id));
		r = api_call(&a, strcmp(sub, "show") == 0 ? "job.get" : "job.abort", p, &res);
	}
	api_close(&a);
	if (r < 0)
		return fail("jobs");
	if (o.json)
		print_json(res);
	else if (strcmp(sub, "list") == 0) {
		json_object *jobs = jget(res, "jobs");

		for (size_t i = 0; i < json_object_array_length(jobs); i++)
			print_job(json_object_array_get_idx(jobs, i));
		if (json_object_array_length(jobs) == 0)
			printf("(no jobs since the station started)\n");
	} else if (strcmp(sub, "show") == 0) {
		print_job(res);
	} else {
		printf("job %lld: %s\n", (long long)o.id, jstr(res, "note"));
	}
	json_object_put(res);
	return 0;
}

/* ---- running a job with live progress ---- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void bar(const char *serial, const char *step, int idx, int of, double secs)
{
	char b[21];
	int fill = of > 0 ? idx * 20 / of : 0;

	for (int i = 0; i < 20; i++)
		b[i] = i < fill ? '#' : '.';
	b[20] = 0;
	if (of > 0)
		fprintf(stderr, "\r  %-16s [%s] %2d/%-2d %-14s %5.1fs", serial, b, idx, of, step,
		        secs);
	else
		fprintf(stderr, "\r  %-16s %-20s %5.1fs", serial, step, secs);
	fflush(stderr);
}

/* Submits method with params, then follows the job's events to its end.
 * Returns the exit status. */
static int run_job(const char *home, const char *cmd, const char *method, json_object *params,
                   const struct opts *o)
{
	json_object *job = NULL, *ev = NULL, *final = NULL;
	bool tty = isatty(STDERR_FILENO) && !o->json;
	int64_t id;
	kl_client *c;
	char path[PATH_MAX];
	struct timespec t0, t1;
	int r, rc = 1;

	kl_client_socket_path(home, path, sizeof(path));
	if (kl_client_connect(path, &c) < 0) {
		json_object_put(params);
		return fail(cmd);
	}
	/* Subscribe first so that no event of the job is missed. */
	if (o->wait) {
		json_object *sp = NULL, *sr = NULL;

		if (o->slot) {
			sp = json_object_new_object();
			json_object_object_add(sp, "slot", json_object_new_string(o->slot));
		}
		if (kl_client_call(c, "events.subscribe", sp, &sr) < 0) {
			kl_client_free(c);
			json_object_put(params);
			return fail(cmd);
		}
		json_object_put(sr);
	}
	if (kl_client_call(c, method, params, &job) < 0) {
		kl_client_free(c);
		return fail(cmd);
	}
	id = jint(job, "job");
	if (!o->wait) {
		if (o->json)
			print_json(job);
		else
			printf("job %lld queued on slot %s ('keyline jobs show --id %lld')\n",
			       (long long)id, jstr(job, "slot"), (long long)id);
		json_object_put(job);
		kl_client_free(c);
		return 0;
	}
	if (!o->json)
		fprintf(stderr, "%s %s on slot %s (job %lld)\n", jstr(job, "kind"),
		        jstr(job, "serial"), jstr(job, "slot"), (long long)id);
	json_object_put(job);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	signal(SIGINT, on_sigint);
	for (;;) {
		if (interrupted) {
			json_object *ap = json_object_new_object(), *ar = NULL;

			interrupted = 0;
			json_object_object_add(ap, "job", json_object_new_int64(id));
			fprintf(stderr,
			        "\n  interrupt: asking the station to stop job %lld at its "
			        "next step\n",
			        (long long)id);
			if (kl_client_call(c, "job.abort", ap, &ar) == 0)
				json_object_put(ar);
		}
		r = kl_client_next_event(c, 250, &ev);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (r == -KL_E_TIMEOUT)
			continue;
		if (r < 0) {
			fprintf(stderr, "\nkeyline %s: %s\n", cmd, kl_error_detail());
			break;
		}
		if (jint(ev, "job") == id) {
			const char *type = jstr(ev, "type");
			double secs = (double)(t1.tv_sec - t0.tv_sec) +
			              (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

			if (tty && strcmp(type, "step.started") == 0)
				bar(jstr(ev, "serial"), jstr(ev, "step"),
				    (int)jint(ev, "index") - 1, (int)jint(ev, "of"), secs);
			else if (tty && strcmp(type, "step.finished") == 0)
				bar(jstr(ev, "serial"), jstr(ev, "step"), (int)jint(ev, "index"),
				    (int)jint(ev, "of"), secs);
			if (strcmp(type, "job.finished") == 0) {
				json_object *gp = json_object_new_object();

				if (tty)
					fprintf(stderr, "\n");
				json_object_object_add(gp, "job", json_object_new_int64(id));
				if (kl_client_call(c, "job.get", gp, &final) < 0) {
					fail(cmd);
				} else {
					if (o->json)
						print_json(final);
					else
						print_job(final);
					rc = strcmp(jstr(final, "state"), "passed") == 0 ? 0 : 1;
				}
				json_object_put(ev);
				break;
			}
		}
		json_object_put(ev);
	}
	signal(SIGINT, SIG_DFL);
	json_object_put(final);
	kl_client_free(c);
	return rc;
}

static const char provision_usage[] =
    "usage: keyline [--home DIR] provision --serial S [--slot NAME] [--tenant T] [--ek TYPE]\n"
    "                                     [--no-wait] [--json]\n"
    "       keyline [--home DIR] provision --link TCTI --serial S ...   (no station: see\n"
    "                                     'keyline provision --link x --help')\n"
    "\nProvisions the DUT on a slot of the running station (the first free slot when\n"
    "--slot is not given) and shows its progress; Ctrl-C asks the station to abort.\n"
    "--ek: auto (default: what the TPM holds), rsa2048, p256, p384.\n"
    "exit status: 0 provisioned, 1 refused or failed, 2 usage error\n";

int kl_cmd_provision_station(const char *home, int argc, char **argv)
{
	json_object *p;
	struct opts o;
	int r;

	PARSE(provision_usage);
	if ((r = need("provision", "--serial", o.serial, provision_usage)))
		return r;
	p = json_object_new_object();
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.slot)
		json_object_object_add(p, "slot", json_object_new_string(o.slot));
	if (o.tenant)
		json_object_object_add(p, "tenant", json_object_new_string(o.tenant));
	if (o.ek)
		json_object_object_add(p, "ek_type", json_object_new_string(o.ek));
	return run_job(home, "provision", "job.provision", p, &o);
}

static const char life_usage[] =
    "usage: keyline [--home DIR] renew --slot NAME --serial S [--no-wait] [--json]\n"
    "       keyline [--home DIR] decommission --slot NAME --serial S [--repurpose] ...\n"
    "       keyline [--home DIR] repurpose --slot NAME --serial S ...\n"
    "\nrenew         the device on the slot proves its identity; its IAK certifies a new\n"
    "              IDevID key; a new certificate; the old one revoked (superseded)\n"
    "decommission  the device proves its identity; all its certificates revoked\n"
    "              (cessationOfOperation); its TPM cryptographically erased and read back;\n"
    "              a signed sanitization record ('keyline record S'); the EK deny-listed\n"
    "repurpose     decommission for reuse: the EK is not deny-listed and the device may be\n"
    "              pre-registered and provisioned again for another tenant\n";

int kl_cmd_lifecycle(const char *home, int argc, char **argv)
{
	const char *cmd = argv[0];
	json_object *p;
	struct opts o;
	int r;

	PARSE(life_usage);
	if ((r = need(cmd, "--slot", o.slot, life_usage)) ||
	    (r = need(cmd, "--serial", o.serial, life_usage)))
		return r;
	p = json_object_new_object();
	json_object_object_add(p, "slot", json_object_new_string(o.slot));
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (strcmp(cmd, "decommission") == 0 && o.repurpose)
		json_object_object_add(p, "repurpose", json_object_new_boolean(true));
	return run_job(home, cmd,
	               strcmp(cmd, "renew") == 0       ? "device.renew"
	               : strcmp(cmd, "repurpose") == 0 ? "device.repurpose"
	                                               : "device.decommission",
	               p, &o);
}

/* ---- one-shot calls ---- */

static const char revoke_usage[] =
    "usage: keyline [--home DIR] revoke (--serial DEVICE | --certificate HEX) [--reason R]\n"
    "       keyline [--home DIR] lost --serial DEVICE [--reason R]\n"
    "\nrevoke  (officer) revokes every valid certificate of a device, or one certificate;\n"
    "        reason: an RFC 5280 name (unspecified, keyCompromise, superseded,\n"
    "        cessationOfOperation, ...); the CRL is rebuilt and published\n"
    "lost    (service) a device that is not present: its certificates revoked\n"
    "        (keyCompromise unless --reason), marked lost, its EK deny-listed\n";

int kl_cmd_revoke(const char *home, int argc, char **argv)
{
	const char *cmd = argv[0];
	json_object *p = json_object_new_object(), *res = NULL;
	struct opts o;
	api a;
	int r;

	PARSE(revoke_usage);
	if (strcmp(cmd, "lost") == 0 && (r = need(cmd, "--serial", o.serial, revoke_usage)))
		return r;
	if (o.serial)
		json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.cert)
		json_object_object_add(p, "certificate", json_object_new_string(o.cert));
	if (o.reason)
		json_object_object_add(p, "reason", json_object_new_string(o.reason));
	if (api_open(home, true, &a) < 0) {
		json_object_put(p);
		return fail(cmd);
	}
	r = api_call(&a, strcmp(cmd, "lost") == 0 ? "device.lost" : "device.revoke", p, &res);
	api_close(&a);
	if (r < 0)
		return fail(cmd);
	if (o.json)
		print_json(res);
	else
		printf("%lld certificate(s) revoked; CRL %s (number %lld)\n",
		       (long long)jint(res, "revoked"),
		       *jstr(res, "crl") ? jstr(res, "crl") : "NOT published",
		       (long long)jint(res, "crl_number"));
	json_object_put(res);
	return 0;
}

static const char record_usage[] =
    "usage: keyline [--home DIR] record --serial DEVICE [--id N]\n"
    "\nPrints a device's signed sanitization record (JSON), the newest unless --id.\n";

int kl_cmd_record(const char *home, int argc, char **argv)
{
	json_object *p = json_object_new_object(), *res = NULL;
	struct opts o;
	api a;
	int r;

	PARSE(record_usage);
	if ((r = need("record", "--serial", o.serial, record_usage))) {
		json_object_put(p);
		return r;
	}
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.id > 0)
		json_object_object_add(p, "id", json_object_new_int64(o.id));
	if (api_open(home, false, &a) < 0) {
		json_object_put(p);
		return fail("record");
	}
	r = api_call(&a, "device.record", p, &res);
	api_close(&a);
	if (r < 0)
		return fail("record");
	print_json(jget(res, "record"));
	json_object_put(res);
	return 0;
}

static const char crl_usage[] = "usage: keyline [--home DIR] crl [--json]\n"
                                "\nAsks the station to sign and publish a fresh CRL.\n";

int kl_cmd_crl(const char *home, int argc, char **argv)
{
	json_object *res = NULL;
	struct opts o;
	api a;
	int r;

	PARSE(crl_usage);
	if (api_open(home, true, &a) < 0)
		return fail("crl");
	r = api_call(&a, "crl.publish", NULL, &res);
	api_close(&a);
	if (r < 0)
		return fail("crl");
	if (o.json)
		print_json(res);
	else
		printf("CRL %lld published: %s\n", (long long)jint(res, "crl_number"),
		       jstr(res, "path"));
	json_object_put(res);
	return 0;
}

static const char events_usage[] =
    "usage: keyline [--home DIR] events [--slot NAME] [--json]\n"
    "\nStreams the station's events (steps, job results, slot links, CRLs) until\n"
    "interrupted; --json prints one JSON object per line.\n";

int kl_cmd_events(const char *home, int argc, char **argv)
{
	json_object *p = NULL, *res = NULL, *ev;
	char path[PATH_MAX];
	struct opts o;
	kl_client *c;
	int r;

	PARSE(events_usage);
	kl_client_socket_path(home, path, sizeof(path));
	if (kl_client_connect(path, &c) < 0)
		return fail("events");
	if (o.slot) {
		p = json_object_new_object();
		json_object_object_add(p, "slot", json_object_new_string(o.slot));
	}
	if (kl_client_call(c, "events.subscribe", p, &res) < 0) {
		kl_client_free(c);
		return fail("events");
	}
	json_object_put(res);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((r = kl_client_next_event(c, -1, &ev)) == 0) {
		const char *type = jstr(ev, "type");
		char t[32];
		time_t now = (time_t)(jint(ev, "time_ms") / 1000);
		struct tm tm;

		if (o.json) {
			printf("%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
		} else {
			gmtime_r(&now, &tm);
			strftime(t, sizeof(t), "%H:%M:%S", &tm);
			printf("%s %-14s", t, type);
			if (*jstr(ev, "slot"))
				printf(" slot %-6s", jstr(ev, "slot"));
			if (jint(ev, "job"))
				printf(" job %-4lld %s", (long long)jint(ev, "job"),
				       jstr(ev, "serial"));
			if (*jstr(ev, "step"))
				printf(" %s", jstr(ev, "step"));
			if (strcmp(type, "step.finished") == 0)
				printf(" %.1f ms", jdbl(ev, "ms"));
			if (strcmp(type, "job.finished") == 0)
				printf(" %s %s %s", jstr(ev, "result"), jstr(ev, "reason"),
				       jstr(ev, "message"));
			if (strcmp(type, "slot.link") == 0)
				printf(" %s %s", jbool(ev, "up") ? "up" : "DOWN",
				       jstr(ev, "error"));
			if (strcmp(type, "crl.published") == 0)
				printf(" %s", jstr(ev, "path"));
			printf("\n");
		}
		json_object_put(ev);
	}
	kl_client_free(c);
	fprintf(stderr, "keyline events: %s\n", kl_error_detail());
	return 1;
}

static const char audit_list_usage[] =
    "usage: keyline [--home DIR] audit list [--action PREFIX] [--limit N] [--before SEQ] [--json]\n"
    "\nAudit entries, newest first (through the station when it runs).\n";

int kl_cmd_audit_list(const char *home, int argc, char **argv)
{
	json_object *p = json_object_new_object(), *res = NULL, *e;
	struct opts o;
	api a;
	int r;

	PARSE(audit_list_usage);
	if (o.limit > 0)
		json_object_object_add(p, "limit", json_object_new_int64(o.limit));
	if (o.before > 0)
		json_object_object_add(p, "before", json_object_new_int64(o.before));
	if (o.action)
		json_object_object_add(p, "action", json_object_new_string(o.action));
	if (api_open(home, false, &a) < 0) {
		json_object_put(p);
		return fail("audit list");
	}
	r = api_call(&a, "audit.list", p, &res);
	api_close(&a);
	if (r < 0)
		return fail("audit list");
	if (o.json) {
		print_json(res);
	} else {
		e = jget(res, "entries");
		for (size_t i = 0; i < json_object_array_length(e); i++) {
			json_object *x = json_object_array_get_idx(e, i);
			char t[32];

			printf("%6lld %s %-28s %-22s %s\n", (long long)jint(x, "seq"),
			       when(jint(x, "time_ms") / 1000, t, sizeof(t)), jstr(x, "action"),
			       jstr(x, "actor"),
			       json_object_to_json_string_ext(jget(x, "detail"),
			                                      JSON_C_TO_STRING_PLAIN));
		}
	}
	json_object_put(res);
	return 0;
}

/* ---- devices, through the running station ---- */

int kl_cli_devices_via_station(const char *home, const char *sub, int argc, char **argv,
                               int *status)
{
	char path[PATH_MAX];
	json_object *p = json_object_new_object(), *res = NULL;
	struct opts o;
	kl_client *c;
	int r;

	kl_client_socket_path(home, path, sizeof(path));
	if (kl_client_connect(path, &c) < 0) {
		json_object_put(p);
		return 0; /* not running: the caller reads the home itself */
	}
	opterr = 0;
	r = parse(argc, argv, "", &o);
	opterr = 1;
	if (r < 0 || (strcmp(sub, "list") == 0 && r < argc)) {
		json_object_put(p);
		kl_client_free(c);
		return 0; /* let the local parser report it */
	}
	if (strcmp(sub, "show") == 0) {
		const char *serial = o.serial ? o.serial : r < argc ? argv[r] : NULL;

		if (!serial) {
			json_object_put(p);
			kl_client_free(c);
			return 0;
		}
		json_object_object_add(p, "serial", json_object_new_string(serial));
		r = kl_client_call(c, "devices.show", p, &res);
	} else {
		/* Pages of at most 1000 until the limit (0: all) or the end; the
		 * answer is put together as one devices.list result. */
		int64_t want = o.limit < 0 ? 100 : o.limit, got = 0, total = 0;
		json_object *all = json_object_new_array();

		json_object_put(p);
		p = NULL;
		r = 0;
		while (r == 0 && (want == 0 || got < want)) {
			int64_t page = want == 0 || want - got > 1000 ? 1000 : want - got;
			json_object *q = json_object_new_object(), *part = NULL, *d;
			size_t n;

			if (o.state)
				json_object_object_add(q, "state", json_object_new_string(o.state));
			if (o.tenant)
				json_object_object_add(q, "tenant",
				                       json_object_new_string(o.tenant));
			if (o.search)
				json_object_object_add(q, "search",
				                       json_object_new_string(o.search));
			json_object_object_add(q, "offset", json_object_new_int64(o.offset + got));
			json_object_object_add(q, "limit", json_object_new_int64(page));
			if (o.newest)
				json_object_object_add(q, "newest_first",
				                       json_object_new_boolean(true));
			r = kl_client_call(c, "devices.list", q, &part);
			if (r < 0)
				break;
			d = jget(part, "devices");
			n = json_object_array_length(d);
			total = jint(part, "total");
			for (size_t i = 0; i < n; i++)
				json_object_array_add(
				    all, json_object_get(json_object_array_get_idx(d, i)));
			got += (int64_t)n;
			json_object_put(part);
			if ((int64_t)n < page)
				break;
		}
		res = json_object_new_object();
		json_object_object_add(res, "devices", all);
		json_object_object_add(res, "total", json_object_new_int64(total));
		json_object_object_add(res, "offset", json_object_new_int64(o.offset));
	}
	kl_client_free(c);
	if (r < 0) {
		*status = fail(strcmp(sub, "show") == 0 ? "devices show" : "devices list");
		return 1;
	}
	*status = 0;
	if (strcmp(sub, "list") == 0 && (o.json || o.json_lines)) {
		/* The same outer shape as on a stopped home: an array, or lines;
		 * each object is the API's device (docs/api.md devices.list). */
		json_object *d = jget(res, "devices");

		if (o.json)
			print_json(d);
		for (size_t i = 0; o.json_lines && i < json_object_array_length(d); i++)
			printf("%s\n",
			       json_object_to_json_string_ext(json_object_array_get_idx(d, i),
			                                      JSON_C_TO_STRING_PLAIN));
		if (o.json_lines)
			fprintf(stderr, "%zu of %lld devices from offset %lld\n",
			        json_object_array_length(d), (long long)jint(res, "total"),
			        (long long)jint(res, "offset"));
	} else if (o.json) {
		print_json(res);
	} else if (strcmp(sub, "list") == 0) {
		json_object *d = jget(res, "devices");
		size_t n = json_object_array_length(d);
		char t[32];

		printf("%-20s %-15s %-16s %-16s %-20s %s\n", "SERIAL", "STATE", "TENANT",
		       "WORK ORDER", "SINCE", "EK SHA-256");
		for (size_t i = 0; i < n; i++) {
			json_object *x = json_object_array_get_idx(d, i);

			printf("%-20s %-15s %-16s %-16s %-20s %.16s%s\n", jstr(x, "serial"),
			       jstr(x, "state"), jstr(x, "tenant"),
			       *jstr(x, "work_order") ? jstr(x, "work_order") : "-",
			       when(jint(x, "state_time"), t, sizeof(t)),
			       *jstr(x, "ek_sha256") ? jstr(x, "ek_sha256") : "-",
			       *jstr(x, "ek_sha256") ? "..." : "");
		}
		printf("(%zu of %lld device(s), from %lld)\n", n, (long long)jint(res, "total"),
		       (long long)jint(res, "offset"));
	} else {
		json_object *d = jget(res, "device"), *a;
		char t[32];

		printf("serial       %s\nstate        %s (since %s)\ntenant       %s\n"
		       "EK SHA-256   %s\n",
		       jstr(d, "serial"), jstr(d, "state"),
		       when(jint(d, "state_time"), t, sizeof(t)), jstr(d, "tenant"),
		       *jstr(d, "ek_sha256") ? jstr(d, "ek_sha256") : "(none)");
		printf("history\n");
		a = jget(res, "history");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);

			printf("  %s  %-14s -> %-14s by %s%s%s\n",
			       when(jint(x, "time"), t, sizeof(t)),
			       *jstr(x, "from") ? jstr(x, "from") : "(new)", jstr(x, "to"),
			       jstr(x, "actor"), *jstr(x, "reason") ? ": " : "", jstr(x, "reason"));
		}
		printf("certificates\n");
		a = jget(res, "certificates");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);

			printf("  %s %-7s %-9s%s%s\n", jstr(x, "serial"), jstr(x, "profile"),
			       jstr(x, "state"), jbool(x, "revoked") ? " REVOKED " : "",
			       jstr(x, "revocation_reason"));
		}
		printf("evidence records: %zu, audit entries: %zu ('--json' shows them)\n",
		       json_object_array_length(jget(res, "evidence")),
		       json_object_array_length(jget(res, "audit")));
	}
	json_object_put(res);
	return 1;
}

/* ---- pre-registration, through the running station ---- */

static int items_to_json(void *ctx, const kl_registry_item *items, size_t n)
{
	json_object *arr = ctx;

	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "serial", json_object_new_string(items[i].serial));
		if (items[i].ek_sha256 && *items[i].ek_sha256)
			json_object_object_add(e, "ek_sha256",
			                       json_object_new_string(items[i].ek_sha256));
		json_object_array_add(arr, e);
	}
	return 0;
}

int kl_cli_preregister_via_station(const char *home, const char *tenant, const char *wo,
                                   long long quota, const char *file, bool json, int *status)
{
	char path[PATH_MAX];
	json_object *items, *p, *res = NULL;
	kl_client *c;
	int r;

	kl_client_socket_path(home, path, sizeof(path));
	if (kl_client_connect(path, &c) < 0)
		return 0;
	items = json_object_new_array();
	if (kl_registry_read_file(file, items_to_json, items) < 0) {
		json_object_put(items);
		kl_client_free(c);
		*status = fail("preregister");
		return 1;
	}
	p = json_object_new_object();
	json_object_object_add(p, "tenant", json_object_new_string(tenant));
	json_object_object_add(p, "work_order", json_object_new_string(wo));
	json_object_object_add(p, "items", items);
	if (quota >= -1)
		json_object_object_add(p, "quota", json_object_new_int64(quota));
	r = kl_client_call(c, "devices.preregister", p, &res);
	kl_client_free(c);
	if (r < 0) {
		*status = fail("preregister");
		return 1;
	}
	if (json)
		print_json(res);
	else
		printf("registered %lld serial(s) from %s for tenant %s, work order %s through the "
		       "station (%lld added or changed)\n",
		       (long long)jint(res, "entries"), file, tenant, wo,
		       (long long)jint(res, "changed"));
	json_object_put(res);
	*status = 0;
	return 1;
}
