/* libFuzzer harness for keyline.conf (common/kl_config.c): the input is the
 * file's text, parsed as kl_config_load does (up to its first NUL byte)
 * with a home directory for ${home} and again without one. Every setting is
 * read back through each accessor the station uses, and a value that is a
 * PKCS#11 URI (ca.key = pkcs11:...) goes through kl_pkcs11_uri_parse, as
 * station/daemon/home.c does. The seeds are the repository's examples
 * (docs/configuration.md, what `keyline ca init` writes, the tests') and
 * edge cases.
 *
 * Invariants (abort when broken):
 *   - a refusal is -KL_E_INVALID and names the file;
 *   - with or without a home, the same settings in the same order;
 *   - every key is "section.key", both parts non-empty, each key once;
 *     kl_config_get finds each key's own value;
 *   - values have no blanks around them and no ${home} left in them;
 *   - kl_config_int / kl_config_bool / kl_config_require answer 0 or
 *     -KL_E_INVALID, and a missing key gives the default. */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kl_config.h"
#include "kl_error.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_config"

static void check_value(const char *v)
{
	size_t n = strlen(v);

	fuzz_check(n == 0 || (!isspace((unsigned char)v[0]) && !isspace((unsigned char)v[n - 1])),
	           H, "values are trimmed");
	fuzz_check(strstr(v, "${home}") == NULL, H, "${home} expanded");
}

/* "section.key" with both parts non-empty: a dot after the first byte and
 * before the last (either part may hold dots of its own). */
static void check_key(const char *k)
{
	const char *dot = strchr(k + (*k != '\0'), '.');
	size_t n = strlen(k);

	fuzz_check(n >= 3 && dot && (size_t)(dot - k) <= n - 2, H, "keys are section.key");
}

static void check_accessors(const kl_config *c, const char *key, const char *value)
{
	const char *got = NULL;
	long n = 0;
	bool b = false;
	int r;

	fuzz_check(kl_config_get(c, key, NULL) == value, H, "get finds the key's own value");
	r = kl_config_int(c, key, 0, LONG_MIN, LONG_MAX, &n);
	fuzz_check(r == 0 || r == -KL_E_INVALID, H, "int: 0 or -KL_E_INVALID");
	r = kl_config_int(c, key, 7, 1, 366, &n);
	fuzz_check(r == -KL_E_INVALID || (n >= 1 && n <= 366), H, "int: in range");
	r = kl_config_bool(c, key, false, &b);
	fuzz_check(r == 0 || r == -KL_E_INVALID, H, "bool: 0 or -KL_E_INVALID");
	r = kl_config_require(c, key, &got);
	fuzz_check(r == 0 ? got == value && *value : r == -KL_E_INVALID && !*value, H,
	           "require: set and non-empty");
	if (strncmp(value, "pkcs11:", 7) == 0) {
		kl_pkcs11_uri u;

		r = kl_pkcs11_uri_parse(value, &u);
		fuzz_check(r == 0 || r == -KL_E_INVALID, H, "URI: 0 or -KL_E_INVALID");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kl_config *c = NULL, *plain = NULL;
	const char *k, *v, *pk, *pv;
	size_t it = 0, pit = 0, n = 0;
	char *text;
	long dflt = 0;
	int r, rp;

	text = malloc(size + 1);
	fuzz_check(text != NULL, H, "memory");
	memcpy(text, data, size);
	text[size] = '\0';

	r = kl_config_parse(text, "fuzz.conf", "/var/lib/keyline", &c);
	rp = kl_config_parse(text, "fuzz.conf", NULL, &plain);
	fuzz_check((r == 0) == (rp == 0), H, "home does not decide what is valid");
	if (r < 0) {
		fuzz_check(r == -KL_E_INVALID, H, "refusal: -KL_E_INVALID");
		fuzz_check(strstr(kl_error_detail(), "fuzz.conf") != NULL, H,
		           "refusal names the file");
		free(text);
		kl_error_clear();
		return 0;
	}
	while (kl_config_next(c, &it, &k, &v)) {
		fuzz_check(kl_config_next(plain, &pit, &pk, &pv) && strcmp(k, pk) == 0, H,
		           "same keys with and without a home");
		check_key(k);
		check_value(v);
		check_accessors(c, k, v);
		for (size_t j = 0; j < n; j++) {
			size_t jt = j;
			const char *jk, *jv;

			fuzz_check(kl_config_next(c, &jt, &jk, &jv) && strcmp(jk, k) != 0, H,
			           "each key once");
		}
		n++;
	}
	fuzz_check(!kl_config_next(plain, &pit, &pk, &pv), H, "as many keys without a home");
	fuzz_check(kl_config_get(c, "no\nsuch.key", NULL) == NULL, H, "missing: NULL");
	fuzz_check(kl_config_int(c, "no\nsuch.key", 42, 0, 100, &dflt) == 0 && dflt == 42, H,
	           "missing: the default");
	kl_config_free(c);
	kl_config_free(plain);
	free(text);
	kl_error_clear();
	return 0;
}
