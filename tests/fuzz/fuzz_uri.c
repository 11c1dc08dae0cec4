/* libFuzzer harness for RFC 7512 PKCS#11 URIs as the operator writes them in
 * keyline.conf and on the command line (hsm/uri.c, kl_pkcs11_uri_parse, with
 * p11-kit behind it). The input is the URI's text up to its first NUL byte;
 * one without the "pkcs11:" scheme is also tried with it. The seeds are the
 * repository's URIs (uri.h, docs, tests) and edge cases.
 *
 * Invariants (abort when broken):
 *   - a refusal is -KL_E_INVALID; a URI without the scheme is refused;
 *   - what is accepted fits its fields: token at most 32 bytes, object at
 *     most 128, id at most 63, a type RFC 7512 or p11-kit names;
 *   - no pin-value ever comes through (the PIN is refused, not ignored):
 *     a URI whose query has pin-value is refused;
 *   - kl_pkcs11_uri_format of what was accepted succeeds and parses back
 *     to the same token, object, id and type. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "kl_error.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_uri"

static bool known_type(const char *t)
{
	static const char *const types[] = { "",     "private",    "public",   "cert",
		                             "data", "secret-key", "secretkey" };

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(t, types[i]) == 0)
			return true;
	return false;
}

/* A query component named pin-value, as uri.c splits the query. */
static bool query_has_pin_value(const char *uri)
{
	const char *q = strchr(uri, '?');

	for (const char *p = q; p; p = strchr(p + 1, '&'))
		if (strncmp(p + 1, "pin-value=", 10) == 0)
			return true;
	return false;
}

static void parse(const char *uri)
{
	kl_pkcs11_uri u, back;
	char text[2048];
	int r;

	memset(&u, 0x5a, sizeof(u));
	r = kl_pkcs11_uri_parse(uri, &u);
	if (strncasecmp(uri, "pkcs11:", 7) != 0)
		fuzz_check(r == -KL_E_INVALID, H, "no scheme: refused");
	if (query_has_pin_value(uri))
		fuzz_check(r == -KL_E_INVALID, H, "pin-value: refused");
	if (r < 0) {
		fuzz_check(r == -KL_E_INVALID, H, "refusal: -KL_E_INVALID");
		return;
	}
	fuzz_check(memchr(u.token, '\0', sizeof(u.token)) && strlen(u.token) <= 32 &&
	               memchr(u.object, '\0', sizeof(u.object)) &&
	               memchr(u.type, '\0', sizeof(u.type)) &&
	               memchr(u.module_path, '\0', sizeof(u.module_path)) &&
	               memchr(u.pin_source, '\0', sizeof(u.pin_source)),
	           H, "fields terminated");
	fuzz_check(u.id_len < sizeof(u.id), H, "id at most 63 bytes");
	fuzz_check(known_type(u.type), H, "a known type");

	r = kl_pkcs11_uri_format(&u, text, sizeof(text));
	fuzz_check(r == 0, H, "format what was parsed");
	r = kl_pkcs11_uri_parse(text, &back);
	if (r < 0)
		fprintf(stderr, H ": '%s' formatted as '%s': %s\n", uri, text, kl_error_detail());
	fuzz_check(r == 0, H, "the formatted URI parses");
	fuzz_check(strcmp(u.token, back.token) == 0 && strcmp(u.object, back.object) == 0 &&
	               u.id_len == back.id_len && memcmp(u.id, back.id, u.id_len) == 0 &&
	               strcmp(u.type, back.type) == 0,
	           H, "format and parse agree");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *uri = malloc(size + 8);

	fuzz_check(uri != NULL, H, "memory");
	memcpy(uri, data, size);
	uri[size] = '\0';
	parse(uri);
	if (strncasecmp(uri, "pkcs11:", 7) != 0) {
		memmove(uri + 7, uri, strlen(uri) + 1);
		memcpy(uri, "pkcs11:", 7);
		parse(uri);
	}
	free(uri);
	kl_error_clear();
	return 0;
}
