/* kl_log: KEYLINE_LOG parsing, per-module levels, what reaches stderr. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kl_error.h"
#include "kl_log.h"

static void test_good_specs(void **state)
{
	assert_int_equal(kl_log_configure("all+warn,hsm+debug,tpm+none"), 0);
	assert_int_equal(kl_log_level_for("hsm"), KL_LOG_DEBUG);
	assert_int_equal(kl_log_level_for("tpm"), KL_LOG_NONE);
	assert_int_equal(kl_log_level_for("ca"), KL_LOG_WARN); /* the "all" default */
	assert_int_equal(kl_log_level_for(NULL), KL_LOG_WARN);
	assert_int_equal(kl_log_level_for("hs"), KL_LOG_WARN); /* exact names only */

	/* levels are case-insensitive; order does not matter; later "all" wins */
	assert_int_equal(kl_log_configure("station+ERROR,all+Info"), 0);
	assert_int_equal(kl_log_level_for("station"), KL_LOG_ERROR);
	assert_int_equal(kl_log_level_for("hsm"), KL_LOG_INFO); /* old rules are gone */

	/* one item, and the empty spec meaning all+info */
	assert_int_equal(kl_log_configure("ca+debug"), 0);
	assert_int_equal(kl_log_level_for("ca"), KL_LOG_DEBUG);
	assert_int_equal(kl_log_level_for("hsm"), KL_LOG_INFO);
	assert_int_equal(kl_log_configure(""), 0);
	assert_int_equal(kl_log_level_for("ca"), KL_LOG_INFO);
	assert_int_equal(kl_log_configure("all+none"), 0);
	assert_int_equal(kl_log_level_for("ca"), KL_LOG_NONE);
}

/* A bad item is named in the error, and the filter in force stays. */
static void check_bad(const char *spec, const char *item)
{
	char want[128];

	assert_int_equal(kl_log_configure("all+error,hsm+debug"), 0);
	kl_error_clear();
	assert_int_equal(kl_log_configure(spec), -KL_E_INVALID);
	assert_int_equal(kl_error_code(), KL_E_INVALID);
	snprintf(want, sizeof(want), "'%s'", item);
	if (!strstr(kl_error_detail(), want))
		fail_msg("spec \"%s\": detail \"%s\" does not name %s", spec, kl_error_detail(),
		         want);
	assert_int_equal(kl_log_level_for("hsm"), KL_LOG_DEBUG);
	assert_int_equal(kl_log_level_for("ca"), KL_LOG_ERROR);
}

static void test_bad_specs(void **state)
{
	check_bad("hsm+loud", "hsm+loud");
	check_bad("all+warn,hsm", "hsm");  /* no level */
	check_bad("+debug", "+debug");     /* no module */
	check_bad("ca+info,tpm+", "tpm+"); /* empty level */
	check_bad("ca+info,tpm+debugx", "tpm+debugx");
	check_bad("ca+info,,tpm+debug", ""); /* empty item */
	check_bad("a-module-name-that-is-far-too-long+debug",
	          "a-module-name-that-is-far-too-long+debug");
}

static void test_too_many_modules(void **state)
{
	char spec[1024] = "";
	size_t used = 0;

	for (int i = 0; i < 17; i++)
		used += (size_t)snprintf(spec + used, sizeof(spec) - used, "%sm%d+debug",
		                         i ? "," : "", i);
	assert_int_equal(kl_log_configure(spec), -KL_E_INVALID);
	/* sixteen is fine */
	*strrchr(spec, ',') = '\0';
	assert_int_equal(kl_log_configure(spec), 0);
	assert_int_equal(kl_log_level_for("m15"), KL_LOG_DEBUG);
}

static void test_from_environment(void **state)
{
	assert_int_equal(setenv("KEYLINE_LOG", "all+error,floor+debug", 1), 0);
	assert_int_equal(kl_log_configure(NULL), 0);
	assert_int_equal(kl_log_level_for("floor"), KL_LOG_DEBUG);
	assert_int_equal(kl_log_level_for("hsm"), KL_LOG_ERROR);
	assert_int_equal(unsetenv("KEYLINE_LOG"), 0);
	assert_int_equal(kl_log_configure(NULL), 0); /* unset: all+info */
	assert_int_equal(kl_log_level_for("floor"), KL_LOG_INFO);
}

/* Runs fn with stderr sent to a file, and returns what was written. */
static const char *capture_stderr(void (*fn)(void))
{
	static char buf[4096];
	char path[] = "/tmp/kl-test-log-XXXXXX";
	int fd, saved;
	ssize_t n;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	fn();
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static void log_some(void)
{
	kl_log_debug("hsm", "hsm debug %d", 1);
	kl_log_debug("ca", "ca debug hidden");
	kl_log_warn("ca", "ca warn %s", "shown");
	kl_log_error("tpm", "tpm error hidden");
	kl_log(KL_LOG_NONE, "hsm", "level none is never printed");
}

static void test_output_filtered(void **state)
{
	const char *out;

	assert_int_equal(kl_log_configure("all+warn,hsm+debug,tpm+none"), 0);
	out = capture_stderr(log_some);
	assert_non_null(strstr(out, "debug hsm: hsm debug 1\n"));
	assert_non_null(strstr(out, "warn  ca: ca warn shown\n"));
	assert_null(strstr(out, "hidden"));
	assert_null(strstr(out, "never printed"));
	/* one line per message, each with a UTC timestamp */
	assert_non_null(strchr(out, 'Z'));
	int lines = 0;
	for (const char *p = out; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 2);
}

/* A program that calls kl_log_configure(spec) (from its command line) before
 * its first log call must keep that filter. Today the first kl_log /
 * kl_log_level_for runs the one-time environment read (pthread_once) and
 * replaces the explicit filter with KEYLINE_LOG or all+info. Checked in a
 * fresh child, where the one-time read has not happened yet. */
static void test_configure_before_first_use(void **state)
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		unsetenv("KEYLINE_LOG");
		/* fork copies the parent's once-state, so this child is only
		 * meaningful when main() has not logged yet: see main(). */
		if (kl_log_configure("all+error,hsm+debug") < 0)
			_exit(2);
		_exit(kl_log_level_for("hsm") == KL_LOG_DEBUG &&
		              kl_log_level_for("ca") == KL_LOG_ERROR
		          ? 0
		          : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest first[] = {
		cmocka_unit_test(test_configure_before_first_use),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_specs),       cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_too_many_modules), cmocka_unit_test(test_from_environment),
		cmocka_unit_test(test_output_filtered),
	};
	int failed;

	unsetenv("KEYLINE_LOG");
	/* Before anything has logged in this process. */
	failed = cmocka_run_group_tests_name("kl_log first use", first, NULL, NULL);
	/* Let the one-time environment read happen now, so that it does not
	 * overwrite what the tests below configure (see the test above). */
	(void)kl_log_level_for(NULL);
	failed += cmocka_run_group_tests_name("kl_log", tests, NULL, NULL);
	return failed;
}
