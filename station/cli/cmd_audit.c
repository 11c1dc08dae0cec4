/* keyline audit: verify the hash-chained audit log. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "home.h"
#include "kl_error.h"

static const char audit_usage[] =
    "usage: keyline [--home DIR] audit verify [--json]\n"
    "\n"
    "Walks the registry's audit log from its first entry and checks that each entry\n"
    "hashes its predecessor and its own content, and that the log ends where its head\n"
    "record says. Exit status 0 when it verifies, 1 when an entry was edited, deleted\n"
    "or inserted (the first bad entry is named). Through the station when it runs.\n"
    "'keyline audit list' shows the entries.\n";

int kl_cmd_audit(const char *home_dir, int argc, char **argv)
{
	json_object *res = NULL, *v;
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
	if (kl_cli_call(home_dir, false, "audit.verify", NULL, &res) < 0) {
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
