/* RFC 7512 PKCS#11 URI parsing and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "kl_error.h"
#include "uri.h"

static void test_parse(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(
	    kl_pkcs11_uri_parse("pkcs11:token=keyline-ca;object=issuing-ca;type=private", &u), 0);
	assert_string_equal(u.token, "keyline-ca");
	assert_string_equal(u.object, "issuing-ca");
	assert_string_equal(u.type, "private");
	assert_int_equal(u.id_len, 0);

	/* Percent-encoding, ids, queries, attributes we ignore (RFC 7512 §3). */
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:manufacturer=SoftHSM%20project;token=My%20HSM;"
	                                     "id=%01%02%ff;slot-id=3?module-path=/usr/lib/x.so"
	                                     "&pin-source=file:/etc/kl/pin",
	                                     &u),
	                 0);
	assert_string_equal(u.token, "My HSM");
	assert_int_equal(u.id_len, 3);
	assert_memory_equal(u.id, "\x01\x02\xff", 3);
	assert_string_equal(u.module_path, "/usr/lib/x.so");
	assert_string_equal(u.pin_source, "file:/etc/kl/pin");
	assert_string_equal(u.object, "");
}

static void test_refuse(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("file:/x", &u), -KL_E_INVALID);
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a?pin-value=1234", &u), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "pin-value is refused"));
	assert_null(strstr(kl_error_detail(), "1234"));
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:id=%zz", &u), -KL_E_INVALID);
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token", &u), -KL_E_INVALID);
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=123456789012345678901234567890123", &u),
	                 -KL_E_INVALID);
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:object=a%00b", &u), -KL_E_INVALID);
}

static void test_format_roundtrip(void **state)
{
	kl_pkcs11_uri u = { .token = "HSM A",
		            .object = "issuing;ca",
		            .id = { 0xde, 0xad },
		            .id_len = 2,
		            .type = "private" };
	kl_pkcs11_uri back;
	char text[512];

	(void)state;
	assert_int_equal(kl_pkcs11_uri_format(&u, text, sizeof(text)), 0);
	assert_string_equal(text,
	                    "pkcs11:token=HSM%20A;object=issuing%3Bca;id=%de%ad;type=private");
	assert_int_equal(kl_pkcs11_uri_parse(text, &back), 0);
	assert_string_equal(back.token, u.token);
	assert_string_equal(back.object, u.object);
	assert_int_equal(back.id_len, 2);
	assert_memory_equal(back.id, u.id, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_format_roundtrip),
	};

	return cmocka_run_group_tests_name("uri", tests, NULL, NULL);
}
