/* keyline events: the running station's event stream (docs/api.md
 * events.subscribe), one line per event for people or JSON lines. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "client.h"
#include "kl_error.h"

static const char events_usage[] =
    "usage: keyline [--home DIR] events [--slot NAME] [--json]\n"
    "\nStreams the station's events (steps, job results, slot links, CRLs) until\n"
    "interrupted; --json prints one JSON object per line.\n";

int kl_cmd_events(const char *home, int argc, char **argv)
{
	json_object *p = NULL, *res = NULL, *ev;
	struct kl_cli_opts o;
	kl_client *c;
	int r;

	if ((r = kl_cli_options(argc, argv, events_usage, &o)) >= 0)
		return r;
	if (kl_cli_connect(home, &c) < 0)
		return kl_cli_fail("events");
	if (o.slot) {
		p = json_object_new_object();
		json_object_object_add(p, "slot", json_object_new_string(o.slot));
	}
	if (kl_client_call(c, "events.subscribe", p, &res) < 0) {
		kl_client_free(c);
		return kl_cli_fail("events");
	}
	json_object_put(res);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((r = kl_client_next_event(c, -1, &ev)) == 0) {
		const char *type = kl_cli_jstr(ev, "type");
		char t[32];
		time_t now = (time_t)(kl_cli_jint(ev, "time_ms") / 1000);
		struct tm tm;

		if (o.json) {
			printf("%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
		} else {
			gmtime_r(&now, &tm);
			strftime(t, sizeof(t), "%H:%M:%S", &tm);
			printf("%s %-14s", t, type);
			if (*kl_cli_jstr(ev, "slot"))
				printf(" slot %-6s", kl_cli_jstr(ev, "slot"));
			if (kl_cli_jint(ev, "job"))
				printf(" job %-4lld %s", (long long)kl_cli_jint(ev, "job"),
				       kl_cli_jstr(ev, "serial"));
			if (*kl_cli_jstr(ev, "step"))
				printf(" %s", kl_cli_jstr(ev, "step"));
			if (strcmp(type, "step.finished") == 0)
				printf(" %.1f ms", kl_cli_jdbl(ev, "ms"));
			if (strcmp(type, "job.finished") == 0)
				printf(" %s %s %s", kl_cli_jstr(ev, "result"),
				       kl_cli_jstr(ev, "reason"), kl_cli_jstr(ev, "message"));
			if (strcmp(type, "slot.link") == 0)
				printf(" %s %s", kl_cli_jbool(ev, "up") ? "up" : "DOWN",
				       kl_cli_jstr(ev, "error"));
			if (strcmp(type, "crl.published") == 0)
				printf(" %s", kl_cli_jstr(ev, "path"));
			printf("\n");
		}
		json_object_put(ev);
	}
	kl_client_free(c);
	fprintf(stderr, "keyline events: %s\n", kl_error_detail());
	return 1;
}
