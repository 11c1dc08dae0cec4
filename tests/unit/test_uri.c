/* RFC 7512 PKCS#11 URI parsing and formatting. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
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

/* The detail of the last error holds want. */
static void assert_detail_has(const char *want)
{
	if (!strstr(kl_error_detail(), want))
		fail_msg("detail '%s' lacks '%s'", kl_error_detail(), want);
}

/* Percent-encoding in every attribute we keep, in either case of hex. */
static void test_percent_encoded(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=%4b%4C%20ca;object=a%3bb%26c%3Dd%25;"
	                                     "id=%00%7f%80%FF;type=private"
	                                     "?module-path=/opt/%76endor/lib%20p11.so"
	                                     "&pin-source=file:/etc/kl/pin%26x",
	                                     &u),
	                 0);
	assert_string_equal(u.token, "KL ca");
	assert_string_equal(u.object, "a;b&c=d%");
	assert_int_equal(u.id_len, 4);
	assert_memory_equal(u.id, "\x00\x7f\x80\xff", 4);
	assert_string_equal(u.type, "private");
	assert_string_equal(u.module_path, "/opt/vendor/lib p11.so");
	assert_string_equal(u.pin_source, "file:/etc/kl/pin&x");

	/* Literal white space is part of the value (p11-kit alone would drop
	 * it); a literal '&' in the path and ';' in the query are data. */
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=My HSM;object=a&b"
	                                     "?pin-source=/run/kl/a;b",
	                                     &u),
	                 0);
	assert_string_equal(u.token, "My HSM");
	assert_string_equal(u.object, "a&b");
	assert_string_equal(u.pin_source, "/run/kl/a;b");

	/* The largest values each field holds. */
	char text[512];
	snprintf(text, sizeof(text), "pkcs11:token=%s;id=", "12345678901234567890123456789012");
	for (int i = 0; i < 63; i++)
		strcat(text, "%ab");
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), 0);
	assert_string_equal(u.token, "12345678901234567890123456789012");
	assert_int_equal(u.id_len, 63);
	assert_int_equal(u.id[62], 0xab);
	strcat(text, "%ab");
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), -KL_E_INVALID);
	assert_detail_has("bad id");
}

/* Attributes we do not use are checked and ignored, whatever p11-kit would
 * make of them; the last of a repeated attribute counts. */
/* A token label is held without its blank padding, as PKCS#11 pads it and
 * libp11 strips it: trailing blanks in the URI name the same token (p11-kit
 * pads the label; the hand parser before it kept "abc ", which matched no
 * token). Leading and inner blanks count. */
static void test_token_label_padding(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=abc%20%20", &u), 0);
	assert_string_equal(u.token, "abc");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=%20a%20b", &u), 0);
	assert_string_equal(u.token, " a b");
}

static void test_unknown_attributes(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:;library-version=x;slot-id=abc;"
	                                     "slot-description=S%20D;model=m;serial=;"
	                                     "x-vendor=1;;token=t;objecttype=cert;"
	                                     "pin-source=/p;pin-value=1;object=o;"
	                                     "?module-name=m&&pinfile=/q&x-thing=%41&",
	                                     &u),
	                 0);
	assert_string_equal(u.token, "t");
	assert_string_equal(u.object, "o");
	assert_string_equal(u.type, "");
	assert_string_equal(u.module_path, "");
	assert_string_equal(u.pin_source, "");

	assert_int_equal(kl_pkcs11_uri_parse(
	                     "pkcs11:token=a;token=b;type=cert;type=private;object=x;object=", &u),
	                 0);
	assert_string_equal(u.token, "b");
	assert_string_equal(u.type, "private");
	assert_string_equal(u.object, "");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:type=private;type=", &u), 0);
	assert_string_equal(u.type, "");
	assert_int_equal(kl_pkcs11_uri_parse("PKCS11:type=secretkey", &u), 0);
	assert_string_equal(u.type, "secretkey");

	/* Ignored, but still held to the syntax. */
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:manufacturer=%zz", &u), -KL_E_INVALID);
	assert_detail_has("bad value for 'manufacturer'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a?x-thing=%4", &u), -KL_E_INVALID);
	assert_detail_has("bad value for 'x-thing'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:model=a%00", &u), -KL_E_INVALID);
	assert_detail_has("NUL byte in 'model'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a?=b", &u), -KL_E_INVALID);
	assert_detail_has("'=b' is not name=value");
}

/* module-path and pin-source come from the query only. */
static void test_query(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:?module-path=/a.so&pin-source=file:/pin", &u),
	                 0);
	assert_string_equal(u.token, "");
	assert_string_equal(u.module_path, "/a.so");
	assert_string_equal(u.pin_source, "file:/pin");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a;module-path=/b.so?pin-source=/p1&"
	                                     "pin-source=/p2&module-path=",
	                                     &u),
	                 0);
	assert_string_equal(u.module_path, "");
	assert_string_equal(u.pin_source, "/p2");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a?module-path=/x%00y", &u),
	                 -KL_E_INVALID);
	assert_detail_has("NUL byte in 'module-path'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a?pin-source=%g0", &u), -KL_E_INVALID);
	assert_detail_has("bad value for 'pin-source'");

	/* pin-value is refused wherever it sits in the query, and the PIN is
	 * not repeated in the message. */
	assert_int_equal(kl_pkcs11_uri_parse(
	                     "pkcs11:token=a?module-path=/a.so&pin-value=s3cr3t&pin-source=/p", &u),
	                 -KL_E_INVALID);
	assert_detail_has("pin-value is refused");
	assert_null(strstr(kl_error_detail(), "s3cr3t"));
}

/* Each refusal names its reason. */
static void test_refuse_messages(void **state)
{
	kl_pkcs11_uri u;
	char text[PATH_MAX + 64];

	(void)state;
	assert_int_equal(kl_pkcs11_uri_parse("pkcs12:token=a", &u), -KL_E_INVALID);
	assert_detail_has("not a PKCS#11 URI");
	assert_int_equal(kl_pkcs11_uri_parse(NULL, &u), -KL_E_INVALID);
	assert_detail_has("not a PKCS#11 URI");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:id=%0", &u), -KL_E_INVALID);
	assert_detail_has("bad id (percent-encoded bytes, at most 63)");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a;token", &u), -KL_E_INVALID);
	assert_detail_has("'token' is not name=value");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=123456789012345678901234567890123", &u),
	                 -KL_E_INVALID);
	assert_detail_has("token label longer than 32");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=%41%42%43%44%45%46%47%48%41%42%43%44"
	                                     "%45%46%47%48%41%42%43%44%45%46%47%48%41%42%43%44"
	                                     "%45%46%47%48%49",
	                                     &u),
	                 -KL_E_INVALID);
	assert_detail_has("token label longer than 32");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:object=a%00b", &u), -KL_E_INVALID);
	assert_detail_has("NUL byte in 'object'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a%00", &u), -KL_E_INVALID);
	assert_detail_has("NUL byte in 'token'");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:type=privatekeyxyz1", &u), -KL_E_INVALID);
	assert_detail_has("bad type");
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:object=k;type=key", &u), -KL_E_INVALID);
	assert_detail_has("bad type");

	memset(text, 0, sizeof(text));
	strcpy(text, "pkcs11:object=");
	memset(text + strlen(text), 'o', 129);
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), -KL_E_INVALID);
	assert_detail_has("object label too long");
	text[strlen(text) - 1] = '\0';
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), 0);
	assert_int_equal(strlen(u.object), 128);

	memset(text, 0, sizeof(text));
	strcpy(text, "pkcs11:token=a?module-path=");
	memset(text + strlen(text), 'm', PATH_MAX);
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), -KL_E_INVALID);
	assert_detail_has("bad value for 'module-path'");
	text[strlen(text) - 1] = '\0';
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), 0);
	assert_int_equal(strlen(u.module_path), PATH_MAX - 1);

	/* The first error in the URI is the one reported. */
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:object=a%00;id=%zz?pin-value=1", &u),
	                 -KL_E_INVALID);
	assert_detail_has("NUL byte in 'object'");
}

/* Nothing is written on failure. */
static void test_output_untouched(void **state)
{
	kl_pkcs11_uri u;

	(void)state;
	memset(&u, 0x5a, sizeof(u));
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a;object=b%zz", &u), -KL_E_INVALID);
	/* This one fails after p11-kit has parsed the URI. */
	assert_int_equal(kl_pkcs11_uri_parse("pkcs11:token=a;object=b;type=bogus", &u),
	                 -KL_E_INVALID);
	for (size_t i = 0; i < sizeof(u); i++)
		assert_int_equal(((unsigned char *)&u)[i], 0x5a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_format_roundtrip),
		cmocka_unit_test(test_percent_encoded),
		cmocka_unit_test(test_token_label_padding),
		cmocka_unit_test(test_unknown_attributes),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_refuse_messages),
		cmocka_unit_test(test_output_untouched),
	};

	return cmocka_run_group_tests_name("uri", tests, NULL, NULL);
}
