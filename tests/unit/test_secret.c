/* kl_secret: the ways a PIN gets in, and what is refused. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kl_error.h"
#include "kl_secret.h"

static char dir[] = "/tmp/kl-test-secret-XXXXXX";

static int group_setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes to dir/name with mode, and returns the path. */
static const char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	static char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0); /* exact, whatever the umask */
	close(fd);
	return path;
}

static void assert_secret(const kl_secret *s, const char *want)
{
	assert_non_null(s);
	assert_int_equal(s->len, strlen(want));
	assert_memory_equal(s->data, want, s->len);
	assert_int_equal(s->data[s->len], '\0'); /* NUL for C APIs */
}

static void test_from_bytes(void **state)
{
	static const unsigned char raw[] = { 0x00, 0x01, 0xff, 0x00 };
	kl_secret *s = NULL;
	char big[KL_SECRET_MAX + 2];

	assert_int_equal(kl_secret_from_bytes("1234", 4, &s), 0);
	assert_secret(s, "1234");
	kl_secret_free(s);

	/* binary, with NULs inside */
	s = NULL;
	assert_int_equal(kl_secret_from_bytes(raw, sizeof(raw), &s), 0);
	assert_int_equal(s->len, sizeof(raw));
	assert_memory_equal(s->data, raw, sizeof(raw));
	kl_secret_free(s);

	s = NULL;
	memset(big, 'x', sizeof(big));
	assert_int_equal(kl_secret_from_bytes(big, KL_SECRET_MAX, &s), 0);
	assert_int_equal(s->len, KL_SECRET_MAX);
	kl_secret_free(s);
	s = NULL;
	assert_int_equal(kl_secret_from_bytes(big, KL_SECRET_MAX + 1, &s), -KL_E_INVALID);
	assert_null(s);

	kl_secret_free(NULL);
}

static void test_from_file(void **state)
{
	kl_secret *s = NULL;

	assert_int_equal(kl_secret_from_file(write_file("a", "1234\n", 5, 0600), &s), 0);
	assert_secret(s, "1234");
	kl_secret_free(s);

	s = NULL; /* CRLF from a Windows editor */
	assert_int_equal(kl_secret_from_file(write_file("b", "1234\r\n", 6, 0600), &s), 0);
	assert_secret(s, "1234");
	kl_secret_free(s);

	s = NULL; /* only one newline is dropped */
	assert_int_equal(kl_secret_from_file(write_file("c", "1234\n\n", 6, 0600), &s), 0);
	assert_secret(s, "1234\n");
	kl_secret_free(s);

	s = NULL; /* no newline at all; inner spaces kept */
	assert_int_equal(kl_secret_from_file(write_file("d", " 12 34", 6, 0400), &s), 0);
	assert_secret(s, " 12 34");
	kl_secret_free(s);

	s = NULL; /* the group may read it: only "others" are refused */
	assert_int_equal(kl_secret_from_file(write_file("e", "5678", 4, 0640), &s), 0);
	assert_secret(s, "5678");
	kl_secret_free(s);
}

static void test_from_file_world_readable(void **state)
{
	kl_secret *s = NULL;
	const char *path = write_file("world", "1234\n", 5, 0644);

	kl_error_clear();
	assert_int_equal(kl_secret_from_file(path, &s), -KL_E_PERM);
	assert_null(s);
	assert_int_equal(kl_error_code(), KL_E_PERM);
	assert_non_null(strstr(kl_error_detail(), path));
	assert_non_null(strstr(kl_error_detail(), "0644"));
	assert_null(strstr(kl_error_detail(), "1234")); /* never the secret */

	path = write_file("world2", "1234\n", 5, 0604);
	assert_int_equal(kl_secret_from_file(path, &s), -KL_E_PERM);
}

static void test_from_file_errors(void **state)
{
	char missing[PATH_MAX], big[KL_SECRET_MAX + 1];
	kl_secret *s = NULL;

	assert_int_equal(kl_secret_from_file(write_file("empty", "", 0, 0600), &s), -KL_E_INVALID);
	assert_null(s);
	/* a lone newline is empty too, once it is dropped */
	assert_int_equal(kl_secret_from_file(write_file("nl", "\n", 1, 0600), &s), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "empty"));
	assert_int_equal(kl_secret_from_file(write_file("crlf", "\r\n", 2, 0600), &s),
	                 -KL_E_INVALID);
	assert_null(s);

	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);
	assert_int_equal(kl_secret_from_file(missing, &s), -KL_E_NOTFOUND);
	assert_non_null(strstr(kl_error_detail(), missing));

	assert_int_equal(kl_secret_from_file(dir, &s), -KL_E_INVALID); /* a directory */

	memset(big, 'x', sizeof(big));
	assert_int_equal(kl_secret_from_file(write_file("big", big, sizeof(big), 0600), &s),
	                 -KL_E_INVALID);
	assert_null(s);
}

static void test_from_env(void **state)
{
	kl_secret *s = NULL;

	assert_int_equal(setenv("KL_TEST_PIN", "s3cret-pin", 1), 0);
	assert_int_equal(kl_secret_from_env("KL_TEST_PIN", &s), 0);
	assert_secret(s, "s3cret-pin");
	assert_null(getenv("KL_TEST_PIN")); /* children will not inherit it */
	kl_secret_free(s);

	s = NULL;
	assert_int_equal(kl_secret_from_env("KL_TEST_PIN", &s), -KL_E_NOTFOUND);
	assert_null(s);
	assert_non_null(strstr(kl_error_detail(), "KL_TEST_PIN"));

	assert_int_equal(setenv("KL_TEST_PIN", "", 1), 0);
	assert_int_equal(kl_secret_from_env("KL_TEST_PIN", &s), -KL_E_NOTFOUND);
	unsetenv("KL_TEST_PIN");
}

static void test_from_spec(void **state)
{
	char spec[PATH_MAX + 8];
	kl_secret *s = NULL;

	snprintf(spec, sizeof(spec), "file:%s", write_file("spec", "9999\n", 5, 0600));
	assert_int_equal(kl_secret_from_spec(spec, "user PIN", &s), 0);
	assert_secret(s, "9999");
	kl_secret_free(s);

	s = NULL;
	assert_int_equal(setenv("KL_TEST_SPEC", "8888", 1), 0);
	assert_int_equal(kl_secret_from_spec("env:KL_TEST_SPEC", "user PIN", &s), 0);
	assert_secret(s, "8888");
	assert_null(getenv("KL_TEST_SPEC"));
	kl_secret_free(s);

	/* Somebody typed the PIN itself where a source was wanted: the error
	 * must not echo it into a log. */
	s = NULL;
	kl_error_clear();
	assert_int_equal(kl_secret_from_spec("hunter2-the-pin", "SO PIN", &s), -KL_E_INVALID);
	assert_null(s);
	assert_null(strstr(kl_error_detail(), "hunter2"));
	assert_non_null(strstr(kl_error_detail(), "SO PIN"));
	assert_non_null(strstr(kl_error_detail(), "file:"));
	assert_int_equal(kl_secret_from_spec("File:/x", "SO PIN", &s), -KL_E_INVALID);
	assert_null(strstr(kl_error_detail(), "File:/x"));
	assert_int_equal(kl_secret_from_spec(NULL, "SO PIN", &s), -KL_E_INVALID);
	assert_null(s);
}

static void test_equal(void **state)
{
	kl_secret *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

	assert_int_equal(kl_secret_from_bytes("123456", 6, &a), 0);
	assert_int_equal(kl_secret_from_bytes("123456", 6, &b), 0);
	assert_int_equal(kl_secret_from_bytes("123457", 6, &c), 0);
	assert_int_equal(kl_secret_from_bytes("12345", 5, &d), 0); /* a prefix */
	assert_int_equal(kl_secret_from_bytes("", 0, &e), 0);

	assert_true(kl_secret_equal(a, b));
	assert_true(kl_secret_equal(b, a));
	assert_true(kl_secret_equal(a, a));
	assert_false(kl_secret_equal(a, c));
	assert_false(kl_secret_equal(a, d));
	assert_false(kl_secret_equal(d, a));
	assert_false(kl_secret_equal(a, e));
	assert_true(kl_secret_equal(e, e));
	assert_false(kl_secret_equal(a, NULL));
	assert_false(kl_secret_equal(NULL, a));
	assert_false(kl_secret_equal(NULL, NULL));

	kl_secret_free(a);
	kl_secret_free(b);
	kl_secret_free(c);
	kl_secret_free(d);
	kl_secret_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_bytes),
		cmocka_unit_test(test_from_file),
		cmocka_unit_test(test_from_file_world_readable),
		cmocka_unit_test(test_from_file_errors),
		cmocka_unit_test(test_from_env),
		cmocka_unit_test(test_from_spec),
		cmocka_unit_test(test_equal),
	};

	return cmocka_run_group_tests_name("kl_secret", tests, group_setup, group_teardown);
}
