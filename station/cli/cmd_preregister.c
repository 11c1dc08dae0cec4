/* keyline preregister: device serials for a tenant's work order, all or
 * nothing; through the running station when it runs, else on the home's
 * registry file. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "home.h"
#include "kl_error.h"
#include "registry.h"
#include "rpc.h"

static const char preregister_usage[] =
    "usage: keyline [--home DIR] preregister FILE --tenant T [--work-order W] [--quota N]\n"
    "\n"
    "Pre-registers the device serials in FILE for a tenant's work order, all or\n"
    "nothing: one bad line and nothing is registered (the error names FILE:LINE).\n"
    "The tenant and the work order are created when they do not exist yet.\n"
    "\n"
    "FILE is CSV or JSON (by extension, else by content):\n"
    "  CSV   one 'serial[,ek_sha256]' per line; a header line 'serial,ek_sha256',\n"
    "        blank lines and '#' comments are allowed\n"
    "  JSON  [{\"serial\": \"SN-0001\", \"ek_sha256\": \"<64 hex digits>\"}, ...]\n"
    "A serial is 1..64 printable ASCII characters without spaces or commas; the\n"
    "optional ek_sha256 is the SHA-256 of the TPM's EK public key (DER\n"
    "SubjectPublicKeyInfo), which the station then requires to match.\n"
    "\n"
    "options:\n"
    "  --tenant T        the tenant (customer) the devices are built for\n"
    "  --work-order W    the work order (default: 'default')\n"
    "  --quota N         most devices the work order may provision; 'none' for no\n"
    "                    limit. Sets the quota of an existing work order too\n"
    "  --json            print the result as one JSON object\n"
    "  --progress        show how much of a long list was sent to the station\n"
    "                    (on stderr; shown anyway when stderr is a terminal)\n"
    "\n"
    "With a running station the list goes through its socket API: in one request\n"
    "when it fits, else in pieces of one batch that the station registers whole\n"
    "or not at all (an interrupted upload registers nothing).\n";

/* What the station path needs while the file's entries are in hand. */
struct upload {
	kl_client *c;
	const char *tenant, *wo, *file;
	long long quota; /* -2: leave it */
	bool progress, tty;
	json_object *res; /* the station's answer */
};

/* An entry as the API takes it, with its line, so that the station's
 * errors name FILE:LINE as the offline path's do. */
static json_object *item_json(const kl_registry_item *it)
{
	json_object *o = json_object_new_object();

	if (!o || json_object_object_add(o, "serial", json_object_new_string(it->serial)) < 0 ||
	    (it->ek_sha256 && *it->ek_sha256 &&
	     json_object_object_add(o, "ek_sha256", json_object_new_string(it->ek_sha256)) < 0) ||
	    json_object_object_add(o, "line", json_object_new_int64(it->line)) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Bytes a value takes in a request, as the client writes it. */
static size_t json_len(json_object *o)
{
	size_t n = 0;

	return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n) ? n : SIZE_MAX;
}

/* Room for what a request holds besides its items: the envelope, the
 * method, the names and a batch id (the file's name is sent at begin). */
#define REQUEST_SLACK 1024

static void show_progress(struct upload *u, size_t sent, size_t n, int *last_decile)
{
	int pct = (int)(sent * 100 / n);

	if (!u->progress)
		return;
	if (u->tty) {
		fprintf(stderr, "\rkeyline preregister: sent %zu of %zu entries (%d%%)", sent, n,
		        pct);
		fflush(stderr);
	} else if (pct / 10 != *last_decile || sent == n) {
		*last_decile = pct / 10;
		fprintf(stderr, "keyline preregister: sent %zu of %zu entries (%d%%)\n", sent, n,
		        pct);
	}
}

/* A list too large for one request: a batch of pieces that each fit, then
 * its commit; the station registers all of it or nothing. */
static int send_batch(struct upload *u, const kl_registry_item *items, size_t n)
{
	json_object *p = json_object_new_object(), *res = NULL, *piece = NULL;
	char batch[64];
	size_t sent = 0, start = 0, bytes = 0;
	int last = -1, r;

	if (!p)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	json_object_object_add(p, "tenant", json_object_new_string(u->tenant));
	json_object_object_add(p, "work_order", json_object_new_string(u->wo));
	json_object_object_add(p, "source", json_object_new_string(u->file));
	json_object_object_add(p, "entries", json_object_new_int64((int64_t)n));
	if (u->quota >= -1)
		json_object_object_add(p, "quota", json_object_new_int64(u->quota));
	if ((r = kl_client_call(u->c, "devices.preregister_begin", p, &res)) < 0)
		return r;
	snprintf(batch, sizeof(batch), "%s", kl_cli_jstr(res, "batch"));
	json_object_put(res);
	for (size_t i = 0; i <= n; i++) {
		json_object *it = NULL;
		size_t len = 0;

		if (i < n) {
			if (!(it = item_json(&items[i])) || (len = json_len(it)) == SIZE_MAX) {
				json_object_put(it);
				r = kl_error_set(KL_E_NOMEM, "out of memory");
				break;
			}
		}
		/* Send the piece so far when this entry would not fit, or at the end. */
		if (piece && (i == n || bytes + len + 1 > KL_RPC_MAX_LINE - REQUEST_SLACK)) {
			size_t count = json_object_array_length(piece);

			p = json_object_new_object();
			if (!p) {
				json_object_put(it);
				r = kl_error_set(KL_E_NOMEM, "out of memory");
				break;
			}
			json_object_object_add(p, "batch", json_object_new_string(batch));
			json_object_object_add(p, "offset", json_object_new_int64((int64_t)start));
			json_object_object_add(p, "items", piece);
			piece = NULL;
			r = kl_client_call(u->c, "devices.preregister_add", p, &res);
			if (r == 0 && kl_cli_jint(res, "received") != (int64_t)(start + count))
				r = kl_error_set(KL_E_INVALID,
				                 "the station holds %lld entries of the batch, %zu "
				                 "were sent",
				                 (long long)kl_cli_jint(res, "received"),
				                 start + count);
			json_object_put(res);
			res = NULL;
			if (r < 0) {
				json_object_put(it);
				break;
			}
			sent = start + count;
			start = sent;
			bytes = 0;
			show_progress(u, sent, n, &last);
		}
		if (!it)
			continue;
		if (!piece && !(piece = json_object_new_array())) {
			json_object_put(it);
			r = kl_error_set(KL_E_NOMEM, "out of memory");
			break;
		}
		json_object_array_add(piece, it);
		bytes += len + 1;
	}
	json_object_put(piece);
	if (u->progress && u->tty)
		fputc('\n', stderr);
	if (r < 0)
		return r; /* the station drops the batch when we go */
	if (u->progress)
		fprintf(stderr, "keyline preregister: registering %zu entries...\n", n);
	p = json_object_new_object();
	if (!p)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	json_object_object_add(p, "batch", json_object_new_string(batch));
	return kl_client_call(u->c, "devices.preregister_commit", p, &u->res);
}

/* The file's entries, checked here first (FILE:LINE, before anything is
 * sent), then in one request when they fit, else as a batch. */
static int upload(void *ctx, const kl_registry_item *items, size_t n)
{
	struct upload *u = ctx;
	json_object *arr, *p;
	size_t bytes = 0;
	int r;

	if ((r = kl_registry_check_items(items, n, u->file)) < 0)
		return r;
	arr = json_object_new_array();
	for (size_t i = 0; arr && i < n && bytes < KL_RPC_MAX_LINE; i++) {
		json_object *it = item_json(&items[i]);
		size_t len = it ? json_len(it) : SIZE_MAX;

		if (len == SIZE_MAX || json_object_array_add(arr, it) < 0) {
			json_object_put(it);
			json_object_put(arr);
			arr = NULL;
			break;
		}
		bytes += len + 1;
	}
	if (!arr)
		return kl_error_set(KL_E_NOMEM, "out of memory");
	if (bytes + strlen(u->file) > KL_RPC_MAX_LINE - REQUEST_SLACK) {
		json_object_put(arr);
		return send_batch(u, items, n);
	}
	p = json_object_new_object();
	if (!p) {
		json_object_put(arr);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	json_object_object_add(p, "tenant", json_object_new_string(u->tenant));
	json_object_object_add(p, "work_order", json_object_new_string(u->wo));
	json_object_object_add(p, "source", json_object_new_string(u->file));
	json_object_object_add(p, "items", arr);
	if (u->quota >= -1)
		json_object_object_add(p, "quota", json_object_new_int64(u->quota));
	return kl_client_call(u->c, "devices.preregister", p, &u->res);
}

/* preregister through the running station (quota -2: leave it): 1 when
 * handled (*status set), 0 when no station runs. */
static int via_station(const char *home, const char *tenant, const char *wo, long long quota,
                       const char *file, bool json, bool progress, int *status)
{
	struct upload u = { .tenant = tenant, .wo = wo, .file = file, .quota = quota };
	int r;

	if (kl_cli_connect(home, &u.c) < 0)
		return 0;
	u.tty = isatty(STDERR_FILENO);
	u.progress = progress || (u.tty && !json);
	r = kl_registry_read_file(file, upload, &u);
	kl_client_free(u.c);
	if (r < 0) {
		json_object_put(u.res);
		*status = kl_cli_fail("preregister");
		return 1;
	}
	if (json)
		kl_cli_print_json(u.res, JSON_C_TO_STRING_PRETTY);
	else
		printf("registered %lld serial(s) from %s for tenant %s, work order %s through the "
		       "station (%lld added or changed)\n",
		       (long long)kl_cli_jint(u.res, "entries"), file, tenant, wo,
		       (long long)kl_cli_jint(u.res, "changed"));
	json_object_put(u.res);
	*status = 0;
	return 1;
}

int kl_cmd_preregister(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "tenant", required_argument, NULL, 't' },
		{ "work-order", required_argument, NULL, 'w' },
		{ "quota", required_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "progress", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tenant = NULL, *wo = "default", *file, *actor = kl_home_actor();
	bool set_quota = false, json = false, progress = false;
	int64_t quota = -1;
	kl_registry_work_order w;
	struct kl_cli_reg c;
	size_t count = 0;
	int ch, r;

	optind = 0; /* a fresh scan, in permute order */
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(preregister_usage, stdout);
			return 0;
		case 't':
			tenant = optarg;
			break;
		case 'w':
			wo = optarg;
			break;
		case 'q':
			set_quota = true;
			if (strcmp(optarg, "none") == 0)
				quota = -1;
			else if (!kl_cli_parse_count(optarg, &quota))
				return kl_cli_usage_error(
				    "preregister", "--quota must be a count or 'none', not '%s'",
				    optarg);
			break;
		case 'j':
			json = true;
			break;
		case 'p':
			progress = true;
			break;
		default:
			return kl_cli_usage_error("preregister", "bad option");
		}
	}
	if (optind >= argc)
		return kl_cli_usage_error("preregister", "no FILE given");
	if (argc - optind > 1)
		return kl_cli_usage_error("preregister", "one FILE at a time ('%s' is extra)",
		                          argv[optind + 1]);
	if (!tenant)
		return kl_cli_usage_error("preregister", "--tenant is required");
	file = argv[optind];

	/* With a running station, it does the work (devices.preregister). */
	if (via_station(home_dir, tenant, wo, set_quota ? quota : -2, file, json, progress, &r))
		return r;
	if (kl_cli_reg_open(home_dir, &c) < 0) {
		r = kl_cli_fail("preregister");
		kl_cli_reg_close(&c);
		return r;
	}
	/* One transaction: a bad file leaves no new tenant or work order behind. */
	r = kl_store_begin(c.store);
	if (r == 0) {
		r = kl_registry_ensure_work_order(c.reg, tenant, wo, set_quota ? quota : -1,
		                                  set_quota, actor);
		if (r >= 0)
			r = kl_registry_import_file(c.reg, tenant, wo, file, actor, &count);
		if (r < 0)
			kl_store_rollback(c.store);
		else
			r = kl_store_commit(c.store);
	}
	if (r >= 0)
		r = kl_registry_work_order_get(c.reg, tenant, wo, &w);
	if (r < 0) {
		r = kl_cli_fail("preregister");
		kl_cli_reg_close(&c);
		return r;
	}
	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "file", json_object_new_string(file));
		json_object_object_add(o, "tenant", json_object_new_string(tenant));
		json_object_object_add(o, "work_order", json_object_new_string(wo));
		json_object_object_add(o, "entries", json_object_new_int64((int64_t)count));
		json_object_object_add(o, "preregistered", json_object_new_int64(w.preregistered));
		json_object_object_add(o, "quota",
		                       w.quota < 0 ? NULL : json_object_new_int64(w.quota));
		json_object_object_add(o, "used", json_object_new_int64(w.used));
		kl_cli_print_json(o, JSON_C_TO_STRING_PLAIN);
		json_object_put(o);
	} else {
		char q[64] = "no quota";

		if (w.quota >= 0)
			snprintf(q, sizeof(q), "quota %lld, %lld used", (long long)w.quota,
			         (long long)w.used);
		printf("registered %zu serial%s from %s for tenant %s, work order %s\n"
		       "(the work order now has %lld pre-registered, %s)\n",
		       count, count == 1 ? "" : "s", file, tenant, wo, (long long)w.preregistered,
		       q);
	}
	kl_cli_reg_close(&c);
	return 0;
}
