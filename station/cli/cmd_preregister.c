/* keyline preregister: device serials for a tenant's work order, all or
 * nothing; through the running station when it runs, else on the home's
 * registry file. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "home.h"
#include "kl_error.h"
#include "registry.h"

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
    "  --json            print the result as one JSON object\n";

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

/* preregister through the running station (quota -2: leave it): 1 when
 * handled (*status set), 0 when no station runs. */
static int via_station(const char *home, const char *tenant, const char *wo, long long quota,
                       const char *file, bool json, int *status)
{
	json_object *items, *p, *res = NULL;
	kl_client *c;
	int r;

	if (kl_cli_connect(home, &c) < 0)
		return 0;
	items = json_object_new_array();
	if (kl_registry_read_file(file, items_to_json, items) < 0) {
		json_object_put(items);
		kl_client_free(c);
		*status = kl_cli_fail("preregister");
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
		*status = kl_cli_fail("preregister");
		return 1;
	}
	if (json)
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	else
		printf("registered %lld serial(s) from %s for tenant %s, work order %s through the "
		       "station (%lld added or changed)\n",
		       (long long)kl_cli_jint(res, "entries"), file, tenant, wo,
		       (long long)kl_cli_jint(res, "changed"));
	json_object_put(res);
	*status = 0;
	return 1;
}

static int ensure_order(kl_registry *reg, const char *tenant, const char *wo, bool set_quota,
                        int64_t quota, const char *actor)
{
	kl_registry_tenant t;
	kl_registry_work_order w;
	int r;

	r = kl_registry_tenant_get(reg, tenant, &t);
	if (r == -KL_E_NOTFOUND)
		r = kl_registry_tenant_add(reg, tenant, actor);
	if (r < 0)
		return r;
	r = kl_registry_work_order_get(reg, tenant, wo, &w);
	if (r == -KL_E_NOTFOUND)
		return kl_registry_work_order_add(reg, tenant, wo, set_quota ? quota : -1, actor);
	if (r == 0 && set_quota && w.quota != quota)
		r = kl_registry_work_order_set_quota(reg, tenant, wo, quota, actor);
	return r;
}

int kl_cmd_preregister(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "tenant", required_argument, NULL, 't' },
		{ "work-order", required_argument, NULL, 'w' },
		{ "quota", required_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tenant = NULL, *wo = "default", *file, *actor = kl_home_actor();
	bool set_quota = false, json = false;
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
	if (via_station(home_dir, tenant, wo, set_quota ? quota : -2, file, json, &r))
		return r;
	if (kl_cli_reg_open(home_dir, &c) < 0) {
		r = kl_cli_fail("preregister");
		kl_cli_reg_close(&c);
		return r;
	}
	/* One transaction: a bad file leaves no new tenant or work order behind. */
	r = kl_store_begin(c.store);
	if (r == 0) {
		r = ensure_order(c.reg, tenant, wo, set_quota, quota, actor);
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
