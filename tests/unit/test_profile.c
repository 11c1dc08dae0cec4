/* Certificate profiles (ca/profile.c): JSON null where a string belongs is
 * refused (or read as empty), never dereferenced. The first two inputs are
 * the ones fuzz_profile keeps as tests/fuzz/corpus/profile/crash-*. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kl_error.h"
#include "profile.h"

#define VALID_REST "\"key_types\":[\"ec-p256\"],\"key_usage\":[\"digitalSignature\"]"

static void assert_refused(const char *json, const char *field)
{
	kl_profile p;

	assert_int_equal(kl_profile_parse(json, "t.json", &p), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), field));
}

static void test_null_strings(void **state)
{
	kl_profile p;

	(void)state;
	assert_refused("{\"name\":\"m\",\"validity\":{\"days\":1}," VALID_REST ",\"digest\":null}",
	               "\"digest\"");
	assert_refused("{\"name\":\"m\",\"validity\":{\"not_after\":null}}", "validity.not_after");
	assert_refused("{\"name\":\"m\",\"validity\":{\"days\":1}," VALID_REST
	               ",\"hardware_module_name\":{\"hw_type\":null}}",
	               "hw_type");
	assert_int_equal(kl_profile_parse("{\"name\":\"m\",\"description\":null,"
	                                  "\"validity\":{\"days\":1}," VALID_REST "}",
	                                  "t.json", &p),
	                 0);
	assert_string_equal(p.description, "");
	assert_string_equal(p.digest, "sha256");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_null_strings),
	};

	return cmocka_run_group_tests_name("profile", tests, NULL, NULL);
}
