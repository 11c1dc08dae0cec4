/* keyline devices list and show: the device registry from the command line.
 * With a running station both go through it (cmd_devices_station.c); on a
 * stopped home they read the home's database alone: no HSM, no daemon. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "cli.h"
#include "cli_internal.h"
#include "home.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "registry.h"

static const char devices_usage[] =
    "usage: keyline [--home DIR] devices COMMAND [OPTIONS]\n"
    "\n"
    "The device registry: what was pre-registered and provisioned, for whom, and\n"
    "with which EK and certificates.\n"
    "\n"
    "commands:\n"
    "  list [OPTIONS]          devices in serial order, a page at a time\n"
    "      --state S           only devices in state S (preregistered, provisioning,\n"
    "                          provisioned, revoked, decommissioned, lost, repurposed)\n"
    "      --tenant T          only the tenant's devices\n"
    "      --limit N           at most N devices (default 100; 0 for all)\n"
    "      --offset N          skip the first N\n"
    "      --json              a JSON array of device objects\n"
    "      --json-lines        one JSON object per line\n"
    "      --search TEXT       serials containing TEXT (through the station)\n"
    "      --newest-first      by last change (through the station)\n"
    "  show SERIAL [--json]    one device: state, tenant, work order, EK hash, state\n"
    "                          history, evidence, and its certificates as PEM\n"
    "\n"
    "With a running station both go through its socket API; the objects --json prints\n"
    "are then the API's (docs/api.md devices.list, devices.show). On a stopped home they\n"
    "are read from the registry file.\n";

/* "2024-05-01T10:00:00Z", or "" for 0. */
static const char *iso_time(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	buf[0] = '\0';
	if (t > 0 && gmtime_r(&tt, &tm))
		strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static json_object *json_str(const char *s)
{
	return s && *s ? json_object_new_string(s) : NULL;
}

static json_object *json_time(int64_t t)
{
	char buf[32];

	return t > 0 ? json_object_new_string(iso_time(t, buf)) : NULL;
}

/* keyline devices list */

static json_object *device_json(const kl_registry_device *d)
{
	json_object *o = json_object_new_object(), *times = json_object_new_object();

	json_object_object_add(o, "serial", json_object_new_string(d->serial));
	json_object_object_add(o, "state",
	                       json_object_new_string(kl_registry_state_name(d->state)));
	json_object_object_add(o, "tenant", json_object_new_string(d->tenant));
	json_object_object_add(o, "work_order", json_str(d->work_order));
	json_object_object_add(o, "ek_sha256", json_str(d->ek_sha256));
	json_object_object_add(o, "expected_ek_sha256", json_str(d->expected_ek));
	json_object_object_add(o, "created", json_time(d->created));
	json_object_object_add(o, "state_time", json_time(d->state_time));
	for (int i = 0; i < KL_DEVICE__MAX; i++)
		if (d->at[i])
			json_object_object_add(times, kl_registry_state_name((kl_device_state)i),
			                       json_time(d->at[i]));
	json_object_object_add(o, "times", times);
	return o;
}

enum list_format { LIST_TABLE, LIST_JSON, LIST_JSON_LINES };

struct list_out {
	enum list_format format;
	int n;
};

static int list_one(void *ctx, const kl_registry_device *d)
{
	struct list_out *out = ctx;
	char t[32], ek[24] = "-";
	json_object *o;

	if (out->format == LIST_TABLE) {
		if (d->ek_sha256[0])
			snprintf(ek, sizeof(ek), "%.16s...", d->ek_sha256);
		printf("%-20s %-15s %-16s %-16s %-19s %s\n", d->serial,
		       kl_registry_state_name(d->state), d->tenant,
		       d->work_order[0] ? d->work_order : "-", ek, iso_time(d->state_time, t));
	} else {
		o = device_json(d);
		if (out->format == LIST_JSON)
			printf("%s  ", out->n ? ",\n" : "");
		fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
		                                            JSON_C_TO_STRING_NOSLASHESCAPE),
		      stdout);
		if (out->format == LIST_JSON_LINES)
			putchar('\n');
		json_object_put(o);
	}
	out->n++;
	return 0;
}

static int devices_list(struct kl_cli_reg *c, const kl_registry_filter *f, enum list_format format)
{
	struct list_out out = { .format = format };
	int64_t total = 0;
	int r;

	if ((r = kl_registry_device_count(c->reg, f, &total)) < 0)
		return kl_cli_fail("devices list");
	if (format == LIST_TABLE)
		printf("%-20s %-15s %-16s %-16s %-19s %s\n", "SERIAL", "STATE", "TENANT",
		       "WORK ORDER", "EK SHA-256", "SINCE (UTC)");
	else if (format == LIST_JSON)
		fputs("[\n", stdout);
	r = kl_registry_device_list(c->reg, f, list_one, &out);
	if (format == LIST_JSON)
		fputs(out.n ? "\n]\n" : "]\n", stdout);
	if (r < 0)
		return kl_cli_fail("devices list");
	if (format != LIST_TABLE && f->offset + out.n < total)
		/* Scripts see a short page on stderr, not a silent cut. */
		fprintf(stderr,
		        "keyline devices list: %d of %lld devices from offset %lld; "
		        "--limit 0 for all\n",
		        out.n, (long long)total, (long long)f->offset);
	if (format == LIST_TABLE) {
		if (out.n == 0)
			printf("(no devices%s)\n", total ? " on this page" : "");
		else if (out.n < total)
			printf("(%lld-%lld of %lld; --offset %lld for more)\n",
			       (long long)f->offset + 1, (long long)f->offset + out.n,
			       (long long)total, (long long)f->offset + out.n);
		else
			printf("(%d device%s)\n", out.n, out.n == 1 ? "" : "s");
	}
	return 0;
}

/* keyline devices show */

struct show {
	bool json;
	json_object *arr;
};

static int show_event(void *ctx, const kl_registry_event *ev)
{
	struct show *s = ctx;
	char t[32];

	if (s->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "from",
		                       ev->from < 0 ? NULL
		                                    : json_object_new_string(kl_registry_state_name(
		                                          (kl_device_state)ev->from)));
		json_object_object_add(o, "to",
		                       json_object_new_string(kl_registry_state_name(ev->to)));
		json_object_object_add(o, "tenant", json_str(ev->tenant));
		json_object_object_add(o, "ek_sha256", json_str(ev->ek_sha256));
		json_object_object_add(o, "reason", json_str(ev->reason));
		json_object_object_add(o, "actor", json_str(ev->actor));
		json_object_object_add(o, "time", json_time(ev->time));
		json_object_array_add(s->arr, o);
		return 0;
	}
	printf("  %s  %-14s -> %-14s tenant %s, by %s%s%s\n", iso_time(ev->time, t),
	       ev->from < 0 ? "(new)" : kl_registry_state_name((kl_device_state)ev->from),
	       kl_registry_state_name(ev->to), ev->tenant, ev->actor, ev->reason[0] ? ": " : "",
	       ev->reason);
	return 0;
}

/* Prints text with each line prefixed. */
static void print_indented(const char *text, const char *prefix)
{
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		printf("%s%.*s\n", prefix, n, p);
		p += n + (nl ? 1 : 0);
	}
}

static int show_evidence(void *ctx, const char *text, int64_t created)
{
	struct show *s = ctx;
	json_object *ev = json_tokener_parse(text);
	char t[32];

	if (s->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "created", json_time(created));
		json_object_object_add(o, "evidence", ev ? ev : json_object_new_string(text));
		json_object_array_add(s->arr, o);
		return 0;
	}
	printf("  recorded %s:\n", iso_time(created, t));
	print_indented(ev ? json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PRETTY |
	                                                           JSON_C_TO_STRING_SPACED |
	                                                           JSON_C_TO_STRING_NOSLASHESCAPE)
	                  : text,
	               "    ");
	json_object_put(ev);
	return 0;
}

static int cert_pem(const kl_registry_cert *c, char **ret)
{
	const unsigned char *q = c->der;
	_cleanup_(X509_freep) X509 *x = d2i_X509(NULL, &q, (long)c->der_len);
	_cleanup_(BIO_free_allp) BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	if (!x || !b || !PEM_write_bio_X509(b, x))
		return kl_error_set_ssl(KL_E_CRYPTO, "certificate %s: stored DER", c->serial);
	n = BIO_get_mem_data(b, &p);
	*ret = strndup(p, (size_t)n);
	return *ret ? 0 : kl_error_set(KL_E_NOMEM, "out of memory");
}

static int show_cert(void *ctx, const kl_registry_cert *c)
{
	struct show *s = ctx;
	_cleanup_(freep) char *pem = NULL;
	char t[32], rt[32];
	int r;

	if (c->der && (r = cert_pem(c, &pem)) < 0)
		return r;
	if (s->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "serial", json_str(c->serial));
		json_object_object_add(o, "profile", json_str(c->profile));
		json_object_object_add(o, "state", json_str(c->state));
		json_object_object_add(o, "issuer", json_str(c->issuer));
		json_object_object_add(o, "not_after", json_time(c->not_after));
		json_object_object_add(o, "revoked", json_time(c->revoked));
		json_object_object_add(
		    o, "revocation_reason",
		    c->revoked ? json_object_new_string(kl_crl_reason_name(c->reason)) : NULL);
		json_object_object_add(o, "pem", json_str(pem));
		json_object_array_add(s->arr, o);
		return 0;
	}
	printf("  serial %s, profile %s, %s, not after %s", c->serial, c->profile, c->state,
	       iso_time(c->not_after, t));
	if (c->revoked)
		printf(", REVOKED %s (%s)", iso_time(c->revoked, rt),
		       kl_crl_reason_name(c->reason));
	printf("\n%s", pem ? pem : "");
	return 0;
}

static int devices_show(struct kl_cli_reg *c, const char *serial, bool json)
{
	kl_registry_device d;
	struct show s = { .json = json };
	json_object *o = NULL;
	char t[32];
	int r;

	if (kl_registry_device_get(c->reg, serial, &d) < 0)
		return kl_cli_fail("devices show");
	if (json) {
		o = device_json(&d);
		s.arr = json_object_new_array();
		json_object_object_add(o, "history", s.arr);
	} else {
		printf("serial       %s\n", d.serial);
		printf("state        %s (since %s)\n", kl_registry_state_name(d.state),
		       iso_time(d.state_time, t));
		printf("tenant       %s\n", d.tenant);
		printf("work order   %s\n", d.work_order[0] ? d.work_order : "(none)");
		printf("EK SHA-256   %s\n", d.ek_sha256[0] ? d.ek_sha256 : "(none bound)");
		printf("expected EK  %s%s\n", d.expected_ek[0] ? d.expected_ek : "(none given)",
		       d.expected_ek[0] && d.ek_sha256[0]
		           ? (strcmp(d.expected_ek, d.ek_sha256) == 0 ? " (matches)" : " (DIFFERS)")
		           : "");
		printf("history\n");
	}
	r = kl_registry_device_history(c->reg, serial, show_event, &s);
	if (r >= 0) {
		if (json) {
			s.arr = json_object_new_array();
			json_object_object_add(o, "evidence", s.arr);
		} else {
			printf("evidence\n");
		}
		r = kl_registry_device_evidence(c->reg, serial, show_evidence, &s);
		if (r == 0 && !json)
			printf("  (none)\n");
	}
	if (r >= 0) {
		if (json) {
			s.arr = json_object_new_array();
			json_object_object_add(o, "certificates", s.arr);
		} else {
			printf("certificates\n");
		}
		r = kl_registry_device_certs(c->reg, serial, show_cert, &s);
		if (r == 0 && !json)
			printf("  (none)\n");
	}
	if (r >= 0 && json)
		kl_cli_print_json(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
	json_object_put(o);
	return r < 0 ? kl_cli_fail("devices show") : 0;
}

int kl_cmd_devices(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "state", required_argument, NULL, 's' },
		{ "tenant", required_argument, NULL, 't' },
		{ "limit", required_argument, NULL, 'l' },
		{ "offset", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "json-lines", no_argument, NULL, 'J' },
		{ NULL, 0, NULL, 0 },
	};
	kl_registry_filter f = { .state = -1, .limit = 100 };
	enum list_format format = LIST_TABLE;
	struct kl_cli_reg c;
	const char *cmd;
	char what[32];
	int ch, r;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(devices_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0)
		return kl_cli_usage_error("devices", "unknown command '%s'", cmd);
	snprintf(what, sizeof(what), "devices %s", cmd);
	/* With a running station, it answers (docs/api.md devices.*). */
	if (kl_cli_devices_via_station(home_dir, cmd, argc - 1, argv + 1, &r))
		return r;
	/* Parse what follows the command; argv[1] plays argv[0]. */
	argc--;
	argv++;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(devices_usage, stdout);
			return 0;
		case 's':
			r = kl_registry_state_from_name(optarg);
			if (r < 0)
				return kl_cli_usage_error(what, "%s", kl_error_detail());
			f.state = r;
			break;
		case 't':
			f.tenant = optarg;
			break;
		case 'l':
			if (!kl_cli_parse_count(optarg, &f.limit))
				return kl_cli_usage_error(what, "--limit must be a count, not '%s'",
				                          optarg);
			break;
		case 'o':
			if (!kl_cli_parse_count(optarg, &f.offset))
				return kl_cli_usage_error(
				    what, "--offset must be a count, not '%s'", optarg);
			break;
		case 'j':
			format = LIST_JSON;
			break;
		case 'J':
			format = LIST_JSON_LINES;
			break;
		default:
			return kl_cli_usage_error(what, "bad option");
		}
	}
	if (strcmp(cmd, "show") == 0) {
		if (optind >= argc)
			return kl_cli_usage_error(what, "which SERIAL?");
		if (argc - optind > 1)
			return kl_cli_usage_error(what, "one SERIAL at a time");
		if (f.state >= 0 || f.tenant || format == LIST_JSON_LINES)
			return kl_cli_usage_error(what, "show takes only SERIAL and --json");
	} else if (optind < argc) {
		return kl_cli_usage_error(what, "unexpected argument '%s'", argv[optind]);
	}
	if (kl_cli_reg_open(home_dir, &c) < 0) {
		r = kl_cli_fail(what);
		kl_cli_reg_close(&c);
		return r;
	}
	if (strcmp(cmd, "show") == 0)
		r = devices_show(&c, argv[optind], format == LIST_JSON);
	else
		r = devices_list(&c, &f, format);
	kl_cli_reg_close(&c);
	return r;
}
