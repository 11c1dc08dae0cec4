/* keyline audit verify and audit list: the hash-chained audit log, checked
 * and read (through the station when it runs). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "home.h"
#include "kl_error.h"

static const char audit_usage[] =
    "usage: keyline [--home DIR] audit verify [--json]\n"
    "\n"
    "Walks the registry's audit log from its first entry and checks that each entry\n"
    "hashes its predecessor and its own content, and that the log ends where its head\n"
    "record says. Exit status 0 when it verifies, 1 when an entry was edited, deleted\n"
    "or inserted (the first bad entry is named). Through the station when it runs\n"
    "(a full walk: needs role officer there).\n"
    "'keyline audit list' shows the entries.\n";

int kl_cmd_audit(const char *home_dir, int argc, char **argv)
{
	json_object *res = NULL, *v, *params;
	bool json = false, ok;
	int64_t entries;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(audit_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "verify") != 0) {
		fprintf(stderr,
		        "keyline audit: unknown command '%s' (see 'keyline audit --help')\n",
		        argv[1]);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else {
			fprintf(stderr, "keyline audit verify: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	/* The whole chain, not just what came after the station's last walk:
	 * this command is what an auditor runs. */
	params = json_object_new_object();
	if (!params || json_object_object_add(params, "full", json_object_new_boolean(true)) < 0) {
		json_object_put(params);
		fprintf(stderr, "keyline audit verify: out of memory\n");
		return 1;
	}
	if (kl_cli_call(home_dir, false, "audit.verify", params, &res) < 0) {
		fprintf(stderr, "keyline audit verify: %s\n", kl_error_detail());
		return 1;
	}
	ok = json_object_object_get_ex(res, "ok", &v) && json_object_get_boolean(v);
	entries = json_object_object_get_ex(res, "entries", &v) ? json_object_get_int64(v) : 0;
	if (json)
		printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN));
	else if (ok)
		printf("audit log verifies: %lld entries, chain intact\n", (long long)entries);
	else
		printf("AUDIT LOG DOES NOT VERIFY: %s (%lld entries verified before it)\n",
		       json_object_object_get_ex(res, "problem", &v) ? json_object_get_string(v)
		                                                     : "?",
		       (long long)entries);
	json_object_put(res);
	return ok ? 0 : 1;
}

static const char audit_list_usage[] =
    "usage: keyline [--home DIR] audit list [--action PREFIX] [--limit N] [--before SEQ] [--json]\n"
    "\nAudit entries, newest first (through the station when it runs).\n";

int kl_cmd_audit_list(const char *home, int argc, char **argv)
{
	json_object *p, *res = NULL, *e;
	struct kl_cli_opts o;
	kl_cli_api a;
	int r;

	if ((r = kl_cli_options(argc, argv, audit_list_usage, &o)) >= 0)
		return r;
	p = json_object_new_object();
	if (o.limit > 0)
		json_object_object_add(p, "limit", json_object_new_int64(o.limit));
	if (o.before > 0)
		json_object_object_add(p, "before", json_object_new_int64(o.before));
	if (o.action)
		json_object_object_add(p, "action", json_object_new_string(o.action));
	if (kl_cli_api_open(home, false, &a) < 0) {
		json_object_put(p);
		return kl_cli_fail("audit list");
	}
	r = kl_cli_api_call(&a, "audit.list", p, &res);
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail("audit list");
	if (o.json) {
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	} else {
		e = kl_cli_jget(res, "entries");
		for (size_t i = 0; i < json_object_array_length(e); i++) {
			json_object *x = json_object_array_get_idx(e, i);
			char t[32];

			printf("%6lld %s %-28s %-22s %s\n", (long long)kl_cli_jint(x, "seq"),
			       kl_cli_when(kl_cli_jint(x, "time_ms") / 1000, t, sizeof(t)),
			       kl_cli_jstr(x, "action"), kl_cli_jstr(x, "actor"),
			       json_object_to_json_string_ext(kl_cli_jget(x, "detail"),
			                                      JSON_C_TO_STRING_PLAIN));
		}
	}
	json_object_put(res);
	return 0;
}
