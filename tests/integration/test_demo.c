/* The README's main job: `keyline demo` on the embedded default succeeds,
 * says what it did, leaves a home that verifies, and no process behind.
 * `keyline demo` runs the demo program keyline-demo (fixtures/demo.c): the
 * arguments reach it, a missing one is a clear error, and its --ui mode is
 * what keyline-ui --demo reads. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "floor.h"

#ifndef KEYLINE_BIN
#error "KEYLINE_BIN must be defined by the build"
#endif
#ifndef KEYLINE_DEMO_BIN
#error "KEYLINE_DEMO_BIN must be defined by the build"
#endif

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void test_demo(void **state)
{
	kl_floor *f;
	char home[PATH_MAX], out[PATH_MAX], root[PATH_MAX], issuing[PATH_MAX], crl[PATH_MAX];
	char *text;
	char tmp[PATH_MAX], tmp_env[PATH_MAX + 8];

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	snprintf(home, sizeof(home), "%s/demo-home", kl_floor_dir(f));
	snprintf(out, sizeof(out), "%s/demo.out", kl_floor_dir(f));
	/* The demo's own floor (its swtpm state) goes under our directory, so
	 * that we can tell its processes from those of tests running beside. */
	snprintf(tmp, sizeof(tmp), "%s/tmp", kl_floor_dir(f));
	snprintf(tmp_env, sizeof(tmp_env), "TMPDIR=%s", tmp);
	assert_int_equal(mkdir(tmp, 0700), 0);
	const char *env[] = { tmp_env, NULL };

	const char *demo[] = { KEYLINE_BIN, "--home", home, "demo", "--devices", "3", NULL };
	assert_int_equal(kl_floor_run(f, out, env, demo), 0);
	text = slurp(out);
	assert_non_null(strstr(text, "Summary: 3 provisioned, 1 refused"));
	assert_non_null(strstr(text, "REFUSED at ek_cert [ek_cert_untrusted]"));
	assert_non_null(strstr(text, "6 certificates verify, 0 do not"));
	/* Through the agent path: every DUT's keyline-agent took its verdict. */
	assert_non_null(
	    strstr(text, "keyline-agent verdicts: 3 PASS (exit 0), 1 FAIL (exit 1) of 4"));
	assert_non_null(strstr(text, home));
	free(text);

	/* Nothing left running: every swtpm it started is gone, and so is its
	 * floor directory. */
	assert_int_equal(kl_procs_left(tmp, 10000), 0);
	const char *ls[] = { "sh", "-c", "ls -A \"$0\" | wc -l", tmp, NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, ls), 0);
	text = slurp(out);
	assert_int_equal(atoi(text), 0);
	free(text);

	/* The home it leaves is real: the CA chain and CRL verify with openssl,
	 * and the audit log verifies. */
	snprintf(root, sizeof(root), "%s/ca/root.pem", home);
	snprintf(issuing, sizeof(issuing), "%s/ca/issuing.pem", home);
	snprintf(crl, sizeof(crl), "%s/crl/issuing.crl", home);
	const char *chain[] = {
		"openssl", "verify", "-x509_strict", "-CAfile", root, issuing, NULL
	};
	assert_int_equal(kl_floor_run(f, NULL, NULL, chain), 0);
	const char *crlv[] = { "openssl", "crl",     "-inform", "DER",   "-in", crl,
		               "-noout",  "-verify", "-CAfile", issuing, NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, crlv), 0);
	const char *audit[] = { KEYLINE_BIN, "--home", home, "audit", "verify", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, audit), 0);
	/* The registry says the same as the demo. */
	const char *list[] = { KEYLINE_BIN, "--home",      home,     "devices", "list",
		               "--state",   "provisioned", "--json", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, list), 0);
	text = slurp(out);
	assert_non_null(strstr(text, "DEMO-0001"));
	assert_non_null(strstr(text, "DEMO-0003"));
	assert_null(strstr(text, "DEMO-0004")); /* the forged one */
	free(text);
	/* The record says the DUT came over a keyline-agent link, not a TCTI. */
	const char *show[] = { KEYLINE_BIN, "--home",    home,     "devices",
		               "show",      "DEMO-0001", "--json", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, show), 0);
	text = slurp(out);
	if (!strstr(text, "\"link\": \"agent:tcp:127.0.0.1:") &&
	    !strstr(text, "\"link\":\"agent:tcp:127.0.0.1:"))
		fail_msg("DEMO-0001's evidence does not name an agent link:\n%s", text);
	free(text);

	/* A bad option is a usage error, not a half-built line. */
	const char *bad[] = { KEYLINE_BIN, "--home", home, "demo", "--devices", "0", NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, bad), 2);
	kl_floor_free(f);
}

static void write_script(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0755), 0);
}

/* keyline demo runs the demo program in its place: with the arguments
 * given, the home, and this keyline to drive; the demo's exit status is
 * keyline's. A demo program that is not there is an error naming it. */
static void test_demo_exec(void **state)
{
	kl_floor *f;
	char home[PATH_MAX], out[PATH_MAX], stub[PATH_MAX], args[PATH_MAX], self[PATH_MAX];
	char env_stub[PATH_MAX + 16], missing[PATH_MAX], env_missing[PATH_MAX + 16];
	char want[3 * PATH_MAX];
	char *text;

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	snprintf(home, sizeof(home), "%s/home", kl_floor_dir(f));
	snprintf(out, sizeof(out), "%s/out", kl_floor_dir(f));
	snprintf(stub, sizeof(stub), "%s/demo-stub", kl_floor_dir(f));
	assert_int_equal(mkdir(home, 0700), 0);
	assert_non_null(realpath(KEYLINE_BIN, self));

	/* A stand-in demo program that writes down what it was given. */
	write_script(stub, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\nexit 7\n");
	snprintf(args, sizeof(args), "%s.args", stub);
	snprintf(env_stub, sizeof(env_stub), "KEYLINE_DEMO=%s", stub);
	const char *stub_env[] = { env_stub, NULL };
	const char *run[] = { KEYLINE_BIN, "--home",  home, "demo", "--devices",
		              "2",         "--spare", "1",  NULL };
	assert_int_equal(kl_floor_run(f, NULL, stub_env, run), 7);
	text = slurp(args);
	snprintf(want, sizeof(want), "--keyline\n%s\n--home\n%s\n--devices\n2\n--spare\n1\n", self,
	         home);
	assert_string_equal(text, want);
	free(text);
	/* Without a home (none given, no $KEYLINE_HOME) the demo makes its own. */
	const char *no_home[] = { "env", "-u", "KEYLINE_HOME", KEYLINE_BIN, "demo", NULL };
	assert_int_equal(kl_floor_run(f, NULL, stub_env, no_home), 7);
	text = slurp(args);
	snprintf(want, sizeof(want), "--keyline\n%s\n", self);
	assert_string_equal(text, want);
	free(text);

	/* Installed side by side (no $KEYLINE_DEMO): the one beside keyline. */
	char bin[PATH_MAX], copy[PATH_MAX], beside[PATH_MAX];
	snprintf(bin, sizeof(bin), "%s/bin", kl_floor_dir(f));
	snprintf(copy, sizeof(copy), "%s/keyline", bin);
	snprintf(beside, sizeof(beside), "%s/keyline-demo", bin);
	assert_int_equal(mkdir(bin, 0700), 0);
	const char *cp[] = { "cp", KEYLINE_BIN, copy, NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, cp), 0);
	write_script(beside, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\nexit 5\n");
	const char *pair[] = { "env", "-u", "KEYLINE_DEMO", copy, "--home", home, "demo", NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, pair), 5);
	snprintf(args, sizeof(args), "%s.args", beside);
	text = slurp(args);
	assert_non_null(realpath(copy, self)); /* what /proc/self/exe says */
	snprintf(want, sizeof(want), "--keyline\n%s\n--home\n%s\n", self, home);
	assert_string_equal(text, want);
	free(text);

	/* Missing: exit 1 and a sentence that names the path, not a crash. */
	snprintf(missing, sizeof(missing), "%s/no-such-demo", kl_floor_dir(f));
	snprintf(env_missing, sizeof(env_missing), "KEYLINE_DEMO=%s", missing);
	const char *missing_env[] = { env_missing, NULL };
	const char *demo[] = { "sh",        "-c",        "exec \"$0\" \"$@\" 2>&1",
		               KEYLINE_BIN, "--home",    home,
		               "demo",      "--devices", "1",
		               NULL };
	assert_int_equal(kl_floor_run(f, out, missing_env, demo), 1);
	text = slurp(out);
	assert_non_null(strstr(text, "keyline demo: "));
	assert_non_null(strstr(text, missing));
	assert_non_null(strstr(text, "KEYLINE_DEMO"));
	free(text);
	/* Present but not a program: the same. */
	write_script(missing, "not a program\n");
	assert_int_equal(chmod(missing, 0644), 0);
	assert_int_equal(kl_floor_run(f, out, missing_env, demo), 1);
	text = slurp(out);
	assert_non_null(strstr(text, missing));
	free(text);

	/* The real one, through keyline: its usage is keyline demo's. */
	const char *help[] = { KEYLINE_BIN, "demo", "--help", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, help), 0);
	text = slurp(out);
	assert_memory_equal(text, "usage: keyline [--home DIR] demo [--devices N]\n", 47);
	assert_non_null(strstr(text, "--keep-running"));
	free(text);
	kl_floor_free(f);
}

/* keyline-demo --ui, as keyline-ui runs it: STEP lines, then READY with the
 * station's socket and the pre-registered serials, nothing else on stdout;
 * the line runs until stdin closes, then every process stops and it exits
 * 0. */
static void test_demo_ui(void **state)
{
	kl_floor *f;
	char home[PATH_MAX], tmp[PATH_MAX], sock[PATH_MAX], log[PATH_MAX], line[1024];
	char ready[1024] = "";
	int to_demo[2], from_demo[2], steps = 0, st;
	struct stat sb;
	pid_t pid;
	FILE *r;
	char *text;

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	/* Not made beforehand: keyline-ui names a home that may not exist. */
	snprintf(home, sizeof(home), "%s/ui-home", kl_floor_dir(f));
	snprintf(tmp, sizeof(tmp), "%s/tmp", kl_floor_dir(f));
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(pipe(to_demo), 0);
	assert_int_equal(pipe(from_demo), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(to_demo[0], STDIN_FILENO) < 0 || dup2(from_demo[1], STDOUT_FILENO) < 0)
			_exit(126);
		close(to_demo[1]);
		close(from_demo[0]);
		setenv("TMPDIR", tmp, 1);
		execl(KEYLINE_DEMO_BIN, "keyline-demo", "--ui", "--home", home, "--keyline",
		      KEYLINE_BIN, "--devices", "1", (char *)NULL);
		_exit(127);
	}
	close(to_demo[0]);
	close(from_demo[1]);
	r = fdopen(from_demo[0], "r");
	assert_non_null(r);
	while (fgets(line, sizeof(line), r)) {
		if (strncmp(line, "READY ", 6) == 0) {
			snprintf(ready, sizeof(ready), "%s", line);
			break;
		}
		if (strncmp(line, "STEP ", 5) != 0)
			fail_msg("not a protocol line: %s", line);
		steps++;
	}
	/* The ceremony, the vendor, power, the station. */
	assert_int_equal(steps, 4);
	snprintf(sock, sizeof(sock), "%s/station.sock", home);
	snprintf(line, sizeof(line), "READY %s DEMO-0001 DEMO-0002\n", sock);
	assert_string_equal(ready, line);
	assert_int_equal(stat(sock, &sb), 0);
	assert_true(S_ISSOCK(sb.st_mode));
	/* The ceremony's own output went to the home, not to the protocol. */
	snprintf(log, sizeof(log), "%s/demo-line.log", home);
	text = slurp(log);
	assert_non_null(strstr(text, "CA ceremony done"));
	free(text);

	/* keyline-ui goes away: stdin closes, the line stops. */
	close(to_demo[1]);
	assert_null(fgets(line, sizeof(line), r));
	fclose(r);
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(kl_procs_left(tmp, 10000), 0);
	assert_int_equal(kl_procs_left(home, 10000), 0); /* the station */
	assert_int_equal(stat(sock, &sb) == 0 && S_ISSOCK(sb.st_mode), 0);
	kl_floor_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo),
		cmocka_unit_test(test_demo_exec),
		cmocka_unit_test(test_demo_ui),
	};

	return cmocka_run_group_tests_name("demo", tests, NULL, NULL);
}
