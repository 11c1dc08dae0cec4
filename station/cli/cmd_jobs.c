/* keyline jobs: the running station's recent jobs, one job, or stopping one. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"

static const char jobs_usage[] =
    "usage: keyline [--home DIR] jobs [list] [--slot S] [--limit N] [--json]\n"
    "       keyline [--home DIR] jobs show --id N [--json]\n"
    "       keyline [--home DIR] jobs abort --id N\n"
    "\nThe station's recent jobs; a job's state and result; stop a job at its next step\n"
    "(it cleans up like any refusal).\n";

int kl_cmd_jobs(const char *home, int argc, char **argv)
{
	const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "list";
	json_object *p, *res = NULL;
	struct kl_cli_opts o;
	kl_cli_api a;
	int r;

	if (argc > 1 && argv[1][0] != '-') {
		argc--;
		argv++;
	}
	if ((r = kl_cli_options(argc, argv, jobs_usage, &o)) >= 0)
		return r;
	if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "abort") != 0) {
		fprintf(stderr, "keyline jobs: unknown command '%s'\n%s", sub, jobs_usage);
		return 2;
	}
	if (strcmp(sub, "list") != 0 && o.id <= 0) {
		fprintf(stderr, "keyline jobs %s: --id is required\n", sub);
		return 2;
	}
	if (kl_cli_api_open(home, true, &a) < 0)
		return kl_cli_fail("jobs");
	p = json_object_new_object();
	if (strcmp(sub, "list") == 0) {
		if (o.limit > 0)
			json_object_object_add(p, "limit", json_object_new_int64(o.limit));
		if (o.slot)
			json_object_object_add(p, "slot", json_object_new_string(o.slot));
		r = kl_cli_api_call(&a, "job.list", p, &res);
	} else {
		json_object_object_add(p, "job", json_object_new_int64(o.id));
		r = kl_cli_api_call(&a, strcmp(sub, "show") == 0 ? "job.get" : "job.abort", p,
		                    &res);
	}
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail("jobs");
	if (o.json)
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	else if (strcmp(sub, "list") == 0) {
		json_object *jobs = kl_cli_jget(res, "jobs");

		size_t n = jobs ? json_object_array_length(jobs) : 0;

		for (size_t i = 0; i < n; i++)
			kl_cli_print_job(json_object_array_get_idx(jobs, i));
		if (n == 0)
			printf("(no jobs since the station started)\n");
	} else if (strcmp(sub, "show") == 0) {
		kl_cli_print_job(res);
	} else {
		printf("job %lld: %s\n", (long long)o.id, kl_cli_jstr(res, "note"));
	}
	json_object_put(res);
	return 0;
}
