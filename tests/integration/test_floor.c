/* The simulated factory floor is real and cleans up after itself.
 *
 * Manufactures DUTs with swtpm_setup and our vendor CA, powers them on as
 * swtpm processes on 127.0.0.1, checks from the outside (tpm2-tools, openssl)
 * that each carries the three EK certificates, and that nothing is left
 * behind: not when the floor is freed, and not when its owner is killed. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "floor.h"
#include "kl_error.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits (bounded) until nothing mentions dir and dir is gone. The bound only
 * stops a broken cleanup from hanging the test; it is not a timing check. */
static bool wait_gone(const char *dir)
{
	for (int i = 0; i < 300; i++) {
		if (kl_procs_mentioning(dir, false) == 0 && !exists(dir))
			return true;
		sleep_ms(50);
	}
	return false;
}

/* Reads one EK certificate with tpm2_nvread and verifies it with openssl. */
static void assert_ek_cert_chains(kl_floor *f, const kl_dut *d, const char *index)
{
	char der[PATH_MAX], pem[PATH_MAX];

	snprintf(der, sizeof(der), "%s/%s-%s.der", kl_floor_dir(f), d->name, index);
	snprintf(pem, sizeof(pem), "%s/%s-%s.pem", kl_floor_dir(f), d->name, index);
	const char *nvread[] = { "tpm2_nvread", index, "-C", "o", "-o", der, NULL };
	assert_int_equal(kl_dut_tool(f, d, "/dev/null", nvread), 0);
	const char *conv[] = { "openssl", "x509", "-inform", "DER", "-in", der, "-out", pem, NULL };
	assert_int_equal(kl_floor_run(f, "/dev/null", NULL, conv), 0);
	const char *verify[] = { "openssl",
		                 "verify",
		                 "-x509_strict",
		                 "-purpose",
		                 "any",
		                 "-CAfile",
		                 d->vendor->root_pem,
		                 "-untrusted",
		                 d->vendor->intermediate_pem,
		                 pem,
		                 NULL };
	assert_int_equal(kl_floor_run(f, "/dev/null", NULL, verify), 0);
}

static void test_sixteen_duts(void **state)
{
	kl_floor *f = NULL;
	kl_vendor *v;
	kl_dut **duts;
	char dir[PATH_MAX], out[PATH_MAX];
	int ports[16];

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	snprintf(dir, sizeof(dir), "%s", kl_floor_dir(f));
	assert_int_equal(kl_floor_vendor(f, "Acme TPM", &v), 0);
	if (kl_floor_manufacture(f, v, "dut", 16, &duts) < 0)
		fail_msg("manufacture: %s", kl_error_detail());

	/* All sixteen powered on at once, each on its own port pair. */
	for (int i = 0; i < 16; i++) {
		assert_int_equal(kl_dut_start(f, duts[i]), 0);
		assert_true(duts[i]->pid > 0);
		ports[i] = duts[i]->port;
		for (int j = 0; j < i; j++) {
			assert_int_not_equal(ports[i], ports[j]);
			assert_int_not_equal(ports[i], ports[j] + 1);
			assert_int_not_equal(ports[i] + 1, ports[j]);
		}
	}
	assert_int_equal(kl_procs_mentioning(dir, false), 16);

	for (int i = 0; i < 16; i++) {
		char *text;

		snprintf(out, sizeof(out), "%s/nv-%d.txt", dir, i);
		const char *getcap[] = { "tpm2_getcap", "handles-nv-index", NULL };
		assert_int_equal(kl_dut_tool(f, duts[i], out, getcap), 0);
		text = slurp(out);
		assert_non_null(text);
		assert_non_null(strstr(text, "0x1C00002"));
		assert_non_null(strstr(text, "0x1C0000A"));
		assert_non_null(strstr(text, "0x1C00016"));
		assert_non_null(strstr(text, "0x1C08000"));
		free(text);
	}
	/* Every certificate of two DUTs, end to end. */
	for (int i = 0; i < 16; i += 15) {
		assert_ek_cert_chains(f, duts[i], "0x1c00002");
		assert_ek_cert_chains(f, duts[i], "0x1c0000a");
		assert_ek_cert_chains(f, duts[i], "0x1c00016");
	}

	/* Power cycle keeps the state: the P-256 certificate is still there. */
	assert_int_equal(kl_dut_stop(f, duts[3]), 0);
	assert_int_equal(duts[3]->pid, 0);
	assert_int_equal(kl_dut_start(f, duts[3]), 0);
	assert_ek_cert_chains(f, duts[3], "0x1c0000a");

	kl_floor_free(f);
	assert_true(wait_gone(dir));
}

/* The owner of a floor is killed with SIGKILL while DUTs run: the guardian
 * stops them and removes the directory. */
static void test_killed_owner_leaves_nothing(void **state)
{
	char dir[PATH_MAX] = { 0 };
	int p[2];
	pid_t child;
	int st;

	(void)state;
	assert_int_equal(pipe(p), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		kl_floor *f;
		kl_vendor *v;
		kl_dut **duts;

		close(p[0]);
		if (kl_floor_new(&f) < 0 || kl_floor_vendor(f, "Acme TPM", &v) < 0 ||
		    kl_floor_manufacture(f, v, "victim", 2, &duts) < 0 ||
		    kl_dut_start(f, duts[0]) < 0 || kl_dut_start(f, duts[1]) < 0) {
			fprintf(stderr, "child: %s\n", kl_error_detail());
			_exit(1);
		}
		(void)!write(p[1], kl_floor_dir(f), strlen(kl_floor_dir(f)));
		close(p[1]);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_true(read(p[0], dir, sizeof(dir) - 1) > 0);
	close(p[0]);
	assert_true(exists(dir));
	assert_int_equal(kl_procs_mentioning(dir, false), 2);

	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &st, 0), child);
	assert_true(WIFSIGNALED(st));
	assert_true(wait_gone(dir));
}

static void test_bad_input(void **state)
{
	kl_floor *f = NULL;
	kl_vendor *v;
	kl_dut **duts = NULL;
	kl_dut ghost = { .name = "ghost" };
	char dir[PATH_MAX];

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	snprintf(dir, sizeof(dir), "%s", kl_floor_dir(f));
	assert_int_equal(kl_floor_vendor(f, "bad/name", &v), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "bad/name"));
	assert_int_equal(kl_floor_vendor(f, "Acme TPM", &v), 0);
	assert_int_equal(kl_floor_manufacture(f, v, "a b", 1, &duts), -KL_E_INVALID);
	assert_int_equal(kl_floor_manufacture(f, v, "ok", 0, &duts), -KL_E_INVALID);
	assert_null(duts);
	const char *getcap[] = { "tpm2_getcap", "properties-fixed", NULL };
	assert_int_equal(kl_dut_tool(f, &ghost, NULL, getcap), -KL_E_STATE);
	/* The same vendor name gives the same CA. */
	kl_vendor *again;
	assert_int_equal(kl_floor_vendor(f, "Acme TPM", &again), 0);
	assert_ptr_equal(again, v);
	kl_floor_free(f);
	assert_true(wait_gone(dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_killed_owner_leaves_nothing),
		cmocka_unit_test(test_sixteen_duts),
	};

	return cmocka_run_group_tests_name("floor", tests, NULL, NULL);
}
