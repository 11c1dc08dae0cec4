/* kl_file: atomic whole-file writes and copies, in a temp directory: the
 * content and mode land, a failed write leaves the old file and no temp
 * file, and every failure names the file. */
#include <dirent.h>
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
#include "kl_file.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/kl-file.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static size_t read_all(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

static int entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_write_content_mode_and_replace(void **state)
{
	char path[PATH_MAX], buf[64];
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/pin", dir);
	assert_int_equal(kl_write_file(path, "first", 5, 0600), 0);
	assert_int_equal(read_all(path, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "first");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(kl_write_file(path, "second!", 7, 0600), 0);
	assert_int_equal(read_all(path, buf, sizeof(buf)), 7);
	assert_string_equal(buf, "second!");
	assert_int_equal(entries(), 1); /* no temp file left beside it */
	assert_int_equal(unlink(path), 0);
}

static void test_write_failure_names_path_and_leaves_nothing(void **state)
{
	char path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s/missing/dir/file", dir);
	assert_true(kl_write_file(path, "x", 1, 0644) < 0);
	assert_int_equal(kl_error_code(), KL_E_IO);
	assert_non_null(strstr(kl_error_detail(), path));
	assert_int_equal(entries(), 0);
}

/* The temp file is never a path someone could plant: a symlink at the old
 * predictable name (PATH.tmp.PID) pointing at another file is not written
 * through, and the mode is the one asked for whatever the umask. */
static void test_write_planted_temp_and_umask(void **state)
{
	char path[PATH_MAX], planted[PATH_MAX], victim[PATH_MAX], buf[64];
	struct stat st;
	mode_t old;

	(void)state;
	snprintf(path, sizeof(path), "%s/ca.pin", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
	assert_int_equal(kl_write_file(victim, "untouched", 9, 0644), 0);
	assert_int_equal(symlink(victim, planted), 0);

	old = umask(0077);
	assert_int_equal(kl_write_file(path, "secret", 6, 0640), 0);
	umask(old);
	assert_int_equal(read_all(victim, buf, sizeof(buf)), 9);
	assert_string_equal(buf, "untouched");
	assert_int_equal(read_all(path, buf, sizeof(buf)), 6);
	assert_string_equal(buf, "secret");
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(entries(), 3); /* path, victim, the planted link: no temp left */
	unlink(planted);
	unlink(victim);
	unlink(path);
}

static void test_copy(void **state)
{
	char from[PATH_MAX], to[PATH_MAX], buf[64];

	(void)state;
	snprintf(from, sizeof(from), "%s/a", dir);
	snprintf(to, sizeof(to), "%s/b", dir);
	assert_int_equal(kl_write_file(from, "profile", 7, 0644), 0);
	assert_int_equal(kl_copy_file(from, to), 0);
	assert_int_equal(read_all(to, buf, sizeof(buf)), 7);
	assert_string_equal(buf, "profile");

	/* A missing source is named. */
	assert_true(kl_copy_file("/nonexistent/keyline-profile", to) < 0);
	assert_int_equal(kl_error_code(), KL_E_NOTFOUND);
	assert_non_null(strstr(kl_error_detail(), "/nonexistent/keyline-profile"));

	/* A destination that cannot take the bytes is an error, not a short copy. */
	assert_true(kl_copy_file(from, "/dev/full") < 0);
	assert_int_equal(kl_error_code(), KL_E_IO);
	assert_non_null(strstr(kl_error_detail(), "/dev/full"));

	/* Reading a directory fails on read, and says so. */
	assert_true(kl_copy_file(dir, to) < 0);
	assert_int_equal(kl_error_code(), KL_E_IO);
	assert_non_null(strstr(kl_error_detail(), dir));
	unlink(from);
	unlink(to);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_content_mode_and_replace),
		cmocka_unit_test(test_write_failure_names_path_and_leaves_nothing),
		cmocka_unit_test(test_write_planted_temp_and_umask),
		cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
