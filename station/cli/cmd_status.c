/* keyline status: the running station, its slots and its jobs. */
#include <stdio.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"

static void print_slots(json_object *res)
{
	json_object *slots = kl_cli_jget(res, "slots");

	printf("%-10s %-6s %-5s %-18s %-14s %s\n", "SLOT", "STATE", "LINK", "SERIAL", "STEP",
	       "LINK TO DUT");
	for (size_t i = 0; slots && i < json_object_array_length(slots); i++) {
		json_object *s = json_object_array_get_idx(slots, i), *j = kl_cli_jget(s, "job");
		json_object *up = kl_cli_jget(s, "link_up");

		printf("%-10s %-6s %-5s %-18s %-14s %s\n", kl_cli_jstr(s, "name"),
		       kl_cli_jstr(s, "state"),
		       !up                           ? "?"
		       : json_object_get_boolean(up) ? "up"
		                                     : "DOWN",
		       j ? kl_cli_jstr(j, "serial") : "-", j ? kl_cli_jstr(j, "step") : "-",
		       kl_cli_jstr(s, "link"));
	}
}

static const char status_usage[] =
    "usage: keyline [--home DIR] status [--json]\n"
    "\nThe running station: its slots and what they do, jobs passed and failed, clients.\n";

int kl_cmd_status(const char *home, int argc, char **argv)
{
	struct kl_cli_opts o;
	json_object *st = NULL, *sl = NULL;
	kl_cli_api a;
	int r;

	if ((r = kl_cli_options(argc, argv, status_usage, &o)) >= 0)
		return r;
	if (kl_cli_api_open(home, true, &a) < 0)
		return kl_cli_fail("status");
	r = kl_cli_api_call(&a, "station.status", NULL, &st);
	if (r == 0)
		r = kl_cli_api_call(&a, "slots.list", NULL, &sl);
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail("status");
	if (o.json) {
		json_object_object_add(st, "slot_list", json_object_get(kl_cli_jget(sl, "slots")));
		kl_cli_print_json(st, JSON_C_TO_STRING_PRETTY);
	} else {
		json_object *s = kl_cli_jget(st, "slots"), *j = kl_cli_jget(st, "jobs");

		printf("station %s (keyline %s), up %llds, %lld client(s)%s\n",
		       kl_cli_jstr(st, "station"), kl_cli_jstr(st, "version"),
		       (long long)kl_cli_jint(st, "uptime_s"),
		       (long long)kl_cli_jint(st, "clients"),
		       kl_cli_jbool(st, "stopping") ? ", STOPPING" : "");
		printf("slots: %lld, %lld busy, %lld link up; jobs: %lld running, %lld passed, "
		       "%lld failed\n\n",
		       (long long)kl_cli_jint(s, "total"), (long long)kl_cli_jint(s, "busy"),
		       (long long)kl_cli_jint(s, "link_up"), (long long)kl_cli_jint(j, "running"),
		       (long long)kl_cli_jint(j, "passed"), (long long)kl_cli_jint(j, "failed"));
		print_slots(sl);
	}
	json_object_put(st);
	json_object_put(sl);
	return 0;
}
