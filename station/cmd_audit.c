/* keyline audit: verify the hash-chained audit log. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "home.h"
#include "kl_error.h"

static const char audit_usage[] =
    "usage: keyline [--home DIR] audit verify [--json]\n"
    "\n"
    "Walks the registry's audit log from its first entry and checks that each entry\n"
    "hashes its predecessor and its own content, and that the log ends where its head\n"
    "record says. Exit status 0 when it verifies, 1 when an entry was edited, deleted\n"
    "or inserted (the first bad entry is named).\n";

int kl_cmd_audit(const char *home_dir, int argc, char **argv)
{
	kl_audit_report rep = { 0 };
	kl_home *home = NULL;
	kl_store *store;
	bool json = false;
	int r;

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
	if (kl_home_open(home_dir, &home) < 0 || kl_home_store(home, &store) < 0) {
		fprintf(stderr, "keyline audit verify: %s\n", kl_error_detail());
		kl_home_free(home);
		return 1;
	}
	r = kl_store_audit_verify(store, &rep);
	if (json)
		printf("{\"ok\":%s,\"entries\":%lld,\"first_bad\":%lld,\"problem\":\"%s\"}\n",
		       r == 0 ? "true" : "false", (long long)rep.entries, (long long)rep.first_bad,
		       rep.problem);
	else if (r == 0)
		printf("audit log verifies: %lld entries, chain intact\n", (long long)rep.entries);
	else if (rep.first_bad)
		printf("AUDIT LOG DOES NOT VERIFY: %s (%lld entries verified before it)\n",
		       rep.problem, (long long)rep.entries);
	else
		fprintf(stderr, "keyline audit verify: %s\n", kl_error_detail());
	kl_home_free(home);
	return r == 0 ? 0 : 1;
}
