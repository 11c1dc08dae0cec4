/* keyline devices list and show while the station runs: the same commands
 * through its socket API (docs/api.md devices.list, devices.show), so that
 * a running station's registry is read by the station alone. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli_internal.h"
#include "client.h"

int kl_cli_devices_via_station(const char *home, const char *sub, int argc, char **argv,
                               int *status)
{
	json_object *p = json_object_new_object(), *res = NULL;
	struct kl_cli_opts o;
	kl_client *c;
	int r;

	if (kl_cli_connect(home, &c) < 0) {
		json_object_put(p);
		return 0; /* not running: the caller reads the home itself */
	}
	opterr = 0;
	r = kl_cli_parse(argc, argv, "", &o);
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
		 * answer is put together as one devices.list result. Each page
		 * starts after the last device of the one before (the cursor),
		 * not at a count, so that devices registered or changed while
		 * we page are neither listed twice nor skipped. --offset applies
		 * to the first page only. */
		int64_t want = o.limit < 0 ? 100 : o.limit, got = 0, total = 0;
		json_object *all = json_object_new_array();
		char *after = NULL;

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
			if (after)
				json_object_object_add(q, "after", json_object_new_string(after));
			else if (o.offset > 0)
				json_object_object_add(q, "offset",
				                       json_object_new_int64(o.offset));
			json_object_object_add(q, "limit", json_object_new_int64(page));
			if (o.newest)
				json_object_object_add(q, "newest_first",
				                       json_object_new_boolean(true));
			r = kl_client_call(c, "devices.list", q, &part);
			if (r < 0)
				break;
			d = kl_cli_jget(part, "devices");
			n = json_object_array_length(d);
			total = kl_cli_jint(part, "total");
			for (size_t i = 0; i < n; i++)
				json_object_array_add(
				    all, json_object_get(json_object_array_get_idx(d, i)));
			got += (int64_t)n;
			free(after);
			after =
			    *kl_cli_jstr(part, "after") ? strdup(kl_cli_jstr(part, "after")) : NULL;
			json_object_put(part);
			if ((int64_t)n < page || !after)
				break;
		}
		free(after);
		res = json_object_new_object();
		json_object_object_add(res, "devices", all);
		json_object_object_add(res, "total", json_object_new_int64(total));
		json_object_object_add(res, "offset", json_object_new_int64(o.offset));
	}
	kl_client_free(c);
	if (r < 0) {
		json_object_put(res);
		*status = kl_cli_fail(strcmp(sub, "show") == 0 ? "devices show" : "devices list");
		return 1;
	}
	*status = 0;
	if (strcmp(sub, "list") == 0 && (o.json || o.json_lines)) {
		/* The same outer shape as on a stopped home: an array, or lines;
		 * each object is the API's device (docs/api.md devices.list). */
		json_object *d = kl_cli_jget(res, "devices");

		if (o.json)
			kl_cli_print_json(d, JSON_C_TO_STRING_PRETTY);
		for (size_t i = 0; o.json_lines && i < json_object_array_length(d); i++)
			printf("%s\n",
			       json_object_to_json_string_ext(json_object_array_get_idx(d, i),
			                                      JSON_C_TO_STRING_PLAIN));
		if (o.json_lines)
			fprintf(stderr, "%zu of %lld devices from offset %lld\n",
			        json_object_array_length(d), (long long)kl_cli_jint(res, "total"),
			        (long long)kl_cli_jint(res, "offset"));
	} else if (o.json) {
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	} else if (strcmp(sub, "list") == 0) {
		json_object *d = kl_cli_jget(res, "devices");
		size_t n = json_object_array_length(d);
		char t[32];

		printf("%-20s %-15s %-16s %-16s %-20s %s\n", "SERIAL", "STATE", "TENANT",
		       "WORK ORDER", "SINCE", "EK SHA-256");
		for (size_t i = 0; i < n; i++) {
			json_object *x = json_object_array_get_idx(d, i);

			printf("%-20s %-15s %-16s %-16s %-20s %.16s%s\n", kl_cli_jstr(x, "serial"),
			       kl_cli_jstr(x, "state"), kl_cli_jstr(x, "tenant"),
			       *kl_cli_jstr(x, "work_order") ? kl_cli_jstr(x, "work_order") : "-",
			       kl_cli_when(kl_cli_jint(x, "state_time"), t, sizeof(t)),
			       *kl_cli_jstr(x, "ek_sha256") ? kl_cli_jstr(x, "ek_sha256") : "-",
			       *kl_cli_jstr(x, "ek_sha256") ? "..." : "");
		}
		printf("(%zu of %lld device(s), from %lld)\n", n,
		       (long long)kl_cli_jint(res, "total"), (long long)kl_cli_jint(res, "offset"));
	} else {
		json_object *d = kl_cli_jget(res, "device"), *a;
		char t[32];

		printf("serial       %s\nstate        %s (since %s)\ntenant       %s\n"
		       "EK SHA-256   %s\n",
		       kl_cli_jstr(d, "serial"), kl_cli_jstr(d, "state"),
		       kl_cli_when(kl_cli_jint(d, "state_time"), t, sizeof(t)),
		       kl_cli_jstr(d, "tenant"),
		       *kl_cli_jstr(d, "ek_sha256") ? kl_cli_jstr(d, "ek_sha256") : "(none)");
		printf("history\n");
		a = kl_cli_jget(res, "history");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);

			printf("  %s  %-14s -> %-14s by %s%s%s\n",
			       kl_cli_when(kl_cli_jint(x, "time"), t, sizeof(t)),
			       *kl_cli_jstr(x, "from") ? kl_cli_jstr(x, "from") : "(new)",
			       kl_cli_jstr(x, "to"), kl_cli_jstr(x, "actor"),
			       *kl_cli_jstr(x, "reason") ? ": " : "", kl_cli_jstr(x, "reason"));
		}
		printf("certificates\n");
		a = kl_cli_jget(res, "certificates");
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *x = json_object_array_get_idx(a, i);

			printf("  %s %-7s %-9s%s%s\n", kl_cli_jstr(x, "serial"),
			       kl_cli_jstr(x, "profile"), kl_cli_jstr(x, "state"),
			       kl_cli_jbool(x, "revoked") ? " REVOKED " : "",
			       kl_cli_jstr(x, "revocation_reason"));
		}
		printf("evidence records: %zu, audit entries: %zu ('--json' shows them)\n",
		       json_object_array_length(kl_cli_jget(res, "evidence")),
		       json_object_array_length(kl_cli_jget(res, "audit")));
	}
	json_object_put(res);
	return 1;
}
