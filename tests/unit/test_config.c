/* kl_config: INI parsing, lookups, and errors that name file and line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kl_config.h"
#include "kl_error.h"

static void test_parse_and_get(void **state)
{
	const char *text = "# station\n"
	                   "[hsm]\n"
	                   "  module = /usr/lib/softhsm/libsofthsm2.so  \n"
	                   "pin = file:${home}/secrets/user.pin\n"
	                   "\n"
	                   "; other comment\n"
	                   "[ca]\n"
	                   "crl_days = 7\n"
	                   "require_prereg = yes\n";
	kl_config *c = NULL;
	const char *v, *key, *value;
	long n;
	bool b;
	size_t it = 0;

	(void)state;
	assert_int_equal(kl_config_parse(text, "t.conf", "/srv/kl", &c), 0);
	assert_string_equal(kl_config_get(c, "hsm.module", NULL),
	                    "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(kl_config_get(c, "hsm.pin", NULL), "file:/srv/kl/secrets/user.pin");
	assert_null(kl_config_get(c, "hsm.nosuch", NULL));
	assert_string_equal(kl_config_get(c, "hsm.nosuch", "dflt"), "dflt");
	assert_int_equal(kl_config_int(c, "ca.crl_days", 1, 1, 366, &n), 0);
	assert_int_equal(n, 7);
	assert_int_equal(kl_config_int(c, "ca.crl_days", 1, 10, 366, &n), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "ca.crl_days"));
	assert_int_equal(kl_config_bool(c, "ca.require_prereg", false, &b), 0);
	assert_true(b);
	assert_int_equal(kl_config_require(c, "ca.missing", &v), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "ca.missing"));
	assert_true(kl_config_next(c, &it, &key, &value));
	assert_string_equal(key, "hsm.module");
	kl_config_free(c);
}

static void test_errors_name_line(void **state)
{
	kl_config *c = NULL;

	(void)state;
	assert_int_equal(kl_config_parse("[a]\nx = 1\nbroken line\n", "f.conf", NULL, &c),
	                 -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "f.conf:3"));
	assert_null(c);
	assert_int_equal(kl_config_parse("x = 1\n", "f.conf", NULL, &c), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "outside any [section]"));
	assert_int_equal(kl_config_parse("[a]\nx = 1\nx = 2\n", "f.conf", NULL, &c), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "set twice"));
	assert_int_equal(kl_config_parse("[a\n", "f.conf", NULL, &c), -KL_E_INVALID);
	assert_int_equal(kl_config_load("/nonexistent/keyline.conf", &c), -KL_E_NOTFOUND);
}

/* The example in docs/configuration.md parses, and every value in it means
 * what the page says (a comment after a value would be part of it). */
static void test_documented_example(void **state)
{
	FILE *f = fopen(KL_DOCS_DIR "/configuration.md", "re");
	char line[512], *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	bool in = false, found = false;
	kl_config *c = NULL;
	long n;
	bool b;
	size_t it = 0;
	const char *key, *value;

	(void)state;
	assert_non_null(f);
	assert_non_null(out);
	while (fgets(line, sizeof(line), f)) {
		if (!in && strncmp(line, "```ini", 6) == 0 && !found) {
			in = found = true;
			continue;
		}
		if (in && strncmp(line, "```", 3) == 0)
			in = false;
		else if (in)
			fputs(line, out);
	}
	fclose(f);
	assert_int_equal(fclose(out), 0);
	assert_true(found);
	if (kl_config_parse(text, "docs/configuration.md", "/var/lib/keyline", &c) < 0)
		fail_msg("the documented keyline.conf does not parse: %s", kl_error_detail());
	assert_string_equal(kl_config_get(c, "hsm.module", NULL),
	                    "/usr/lib/softhsm/libsofthsm2.so");
	assert_int_equal(kl_config_int(c, "ca.crl_days", 1, 1, 366, &n), 0);
	assert_int_equal(n, 7);
	assert_string_equal(kl_config_get(c, "ca.cps_url", NULL),
	                    "http://pki.example.com/cps.html");
	assert_string_equal(kl_config_get(c, "ca.ca_issuers_url", NULL),
	                    "http://pki.example.com/issuing.der");
	assert_string_equal(kl_config_get(c, "ca.ocsp_url", NULL), "http://ocsp.example.com/");
	assert_int_equal(kl_config_bool(c, "policy.require_prereg", false, &b), 0);
	assert_true(b);
	while (kl_config_next(c, &it, &key, &value))
		if (strchr(value, '#') && strncmp(value, "pkcs11:", 7) != 0)
			fail_msg("%s = '%s' holds a comment", key, value);
	kl_config_free(c);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_get),
		cmocka_unit_test(test_errors_name_line),
		cmocka_unit_test(test_documented_example),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
