/* libFuzzer harness for the station's dispatcher: the real method tables
 * (station/daemon/api_*.c) behind the JSON-RPC layer, over an offline
 * station on a scratch home with an empty registry, called with every role.
 * Handlers that need the running station answer "unavailable"; the others
 * validate and run against SQLite. Invariants (abort when broken): every
 * input gets exactly one answer that parses as a JSON-RPC 2.0 response with
 * exactly one of "result" / "error"; an error has an integer code and a
 * string message. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "kl_error.h"
#include "station.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kl_station *st;
static char home[64];

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_station: invariant broken: %s\n", what);
		abort();
	}
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	kl_station_free(st);
	st = NULL;
	if (home[0])
		nftw(home, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
	char conf[128];
	FILE *f;

	snprintf(home, sizeof(home), "/tmp/kl-fuzz-station.XXXXXX");
	check(mkdtemp(home) != NULL, "scratch home");
	snprintf(conf, sizeof(conf), "%s/keyline.conf", home);
	f = fopen(conf, "w");
	check(f != NULL, "keyline.conf");
	fputs("[station]\nid = fuzz\n", f);
	fclose(f);
	if (kl_station_open_offline(home, &st) < 0) {
		fprintf(stderr, "fuzz_station: %s\n", kl_error_detail());
		abort();
	}
	atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o, *v, *e;
	char *in, *ans = NULL;
	int has_result, has_error;

	if (!st)
		setup();
	if (size > KL_RPC_MAX_LINE)
		return 0;
	in = malloc(size + 1);
	check(in != NULL, "memory");
	memcpy(in, data, size);
	in[size] = '\0';
	/* One request per input: the first line. */
	char *nl = memchr(in, '\n', size);
	if (nl)
		nl[1] = '\0';
	if (kl_station_call(st, KL_RPC_ROLE_ALL, "fuzz", in, &ans) < 0) {
		/* No answer: blank input, or a well-formed notification. */
		free(in);
		return 0;
	}
	free(in);
	o = json_tokener_parse(ans);
	check(json_object_is_type(o, json_type_object), "answer is an object");
	check(json_object_object_get_ex(o, "jsonrpc", &v) &&
	          strcmp(json_object_get_string(v), "2.0") == 0,
	      "jsonrpc 2.0");
	check(json_object_object_get_ex(o, "id", &v), "id present");
	has_result = json_object_object_get_ex(o, "result", &v);
	has_error = json_object_object_get_ex(o, "error", &e);
	check(has_result + has_error == 1, "exactly one of result and error");
	if (has_error) {
		check(json_object_object_get_ex(e, "code", &v) &&
		          json_object_is_type(v, json_type_int),
		      "error code");
		check(json_object_object_get_ex(e, "message", &v) &&
		          json_object_is_type(v, json_type_string),
		      "error message");
	}
	json_object_put(o);
	free(ans);
	return 0;
}
