/* The link to a DUT that stops answering: every TPM command has a deadline,
 * an abort reaches a command that waits, the backend lock is never held
 * while the DUT is waited on, and the failures that follow leave the
 * registry consistent. Real swtpm DUTs behind the mitm proxy (its STALL
 * action), a SoftHSM CA and a real registry.
 *
 * No assertion is on wall-clock time: waits are bounded by generous
 * timeouts for liveness only, and what is asserted is the outcome (the
 * reason, the step, the lock taken while the DUT was silent). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ca.h"
#include "engine.h"
#include "floor.h"
#include "kl_error.h"
#include "mitm.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#include "pki_fixture.h"

#define CC_EVICT_CONTROL 0x00000120u
#define CC_CERTIFY       0x0000014au /* TPM2_CertifyCreation */
#define LIVENESS_S       120         /* generous: for a test that would otherwise hang */

enum { N_DUT = 5 };

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **duts;
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	pthread_mutex_t backend; /* the lock hooks' mutex, as the daemon's */
} g;

static void lock_hook(void *ctx)
{
	pthread_mutex_lock(ctx);
}

static void unlock_hook(void *ctx)
{
	pthread_mutex_unlock(ctx);
}

static int open_all(void)
{
	if (test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		return -1;
	g.cfg.lock = lock_hook;
	g.cfg.unlock = unlock_hook;
	g.cfg.lock_ctx = &g.backend;
	return 0;
}

static int setup(void **state)
{
	static const char *const serials[] = { "L-1", "L-2", "L-3", "L-4", "L-5" };
	kl_registry_item items[5];

	(void)state;
	pthread_mutex_init(&g.backend, NULL);
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "link", N_DUT, &g.duts) < 0 ||
	    test_pki_make(g.floor, g.acme, &g.pki) < 0 || open_all() < 0) {
		fprintf(stderr, "setup: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < 5; i++)
		items[i] = (kl_registry_item){ .serial = serials[i], .line = (unsigned)i + 1 };
	if (kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", items, 5, "test") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < N_DUT; i++)
		if (kl_dut_start(g.floor, g.duts[i]) < 0)
			return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	pthread_mutex_destroy(&g.backend);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits (for liveness, up to LIVENESS_S) until the proxy holds a command. */
static bool wait_stalled(const kl_mitm *m)
{
	double until = now_s() + LIVENESS_S;

	while (kl_mitm_stalled(m) == 0 && now_s() < until)
		usleep(10 * 1000);
	return kl_mitm_stalled(m) > 0;
}

static void device_state(const char *serial, kl_device_state want)
{
	kl_registry_device dev;

	assert_int_equal(kl_registry_device_get(g.reg, serial, &dev), 0);
	assert_int_equal(dev.state, want);
}

static void provision(const kl_engine_config *cfg, const char *link, const char *serial,
                      kl_job_result *res)
{
	kl_job job = {
		.serial = serial, .link = link, .ek_type = KL_EK_P256, .actor = "operator:test"
	};

	assert_int_equal(kl_engine_provision(cfg, &job, res), 0);
}

static void expect_pass(const char *link, const char *serial, bool resumed)
{
	kl_job_result res;

	provision(&g.cfg, link, serial, &res);
	if (res.rc != 0)
		fail_msg("%s: %s [%s] %s", serial, kl_step_name(res.failed_step), res.reason,
		         res.message);
	assert_int_equal(res.resumed, resumed);
	device_state(serial, KL_DEVICE_PROVISIONED);
}

static atomic_bool abort_flag;

static bool cancelled(void *ctx)
{
	(void)ctx;
	return atomic_load(&abort_flag);
}

struct job_thread {
	kl_engine_config cfg;
	kl_job job;
	kl_job_result res;
	int rc;
	atomic_bool done;
	pthread_t thread;
};

static void *job_main(void *arg)
{
	struct job_thread *t = arg;

	t->rc = kl_engine_provision(&t->cfg, &t->job, &t->res);
	atomic_store(&t->done, true);
	return NULL;
}

/* Waits (up to LIVENESS_S) for the job to end. If it does not, the DUT's
 * silence held it: the proxy is stopped, which lets the job go, and the
 * test fails rather than hangs. Stops the proxy either way. */
static void finish_job(struct job_thread *t, kl_mitm *m)
{
	double until = now_s() + LIVENESS_S;
	bool ended;

	while (!atomic_load(&t->done) && now_s() < until)
		usleep(10 * 1000);
	ended = atomic_load(&t->done);
	kl_mitm_stop(m);
	assert_int_equal(pthread_join(t->thread, NULL), 0);
	if (!ended)
		fail_msg("the job did not end within %d s while its DUT was silent", LIVENESS_S);
	assert_int_equal(t->rc, 0);
}

/* A DUT that takes the IDevID's TPM2_CertifyCreation and never answers: the job fails at that
 * step as link_timeout, and the message says so. The device stays
 * provisioning (a dead link cannot clean the DUT), and the next run on
 * the DUT itself takes the resume path and provisions it. */
static void test_stall_times_out(void **state)
{
	kl_mitm_rule stall = { .command_code = CC_CERTIFY, .action = KL_MITM_STALL, .skip = 1 };
	struct job_thread t = { .cfg = g.cfg };
	kl_job_result res;
	kl_mitm *m = NULL;

	(void)state;
	t.cfg.tpm_timeout_ms = 1000;
	assert_int_equal(kl_mitm_start(g.duts[0], &stall, 1, &m), 0);
	t.job = (kl_job){ .serial = "L-1",
		          .link = kl_mitm_tcti(m),
		          .ek_type = KL_EK_P256,
		          .actor = "operator:test" };
	assert_int_equal(pthread_create(&t.thread, NULL, job_main, &t), 0);
	finish_job(&t, m);
	res = t.res;
	assert_int_not_equal(res.rc, 0);
	assert_string_equal(res.reason, "link_timeout");
	assert_int_equal(res.failed_step, KL_STEP_CERTIFY);
	assert_non_null(strstr(res.message, "stopped answering"));
	assert_non_null(strstr(res.message, "TPM2_CertifyCreation"));
	device_state("L-1", KL_DEVICE_PROVISIONING);

	expect_pass(g.duts[0]->tcti, "L-1", true);
}

/* An abort while a TPM command waits for a DUT that went silent ends the
 * job at once as aborted, not when the (long) timeout runs out; the DUT,
 * which answers everything but step 9's TPM2_CertifyCreation, is cleaned up afterwards. */
static void test_abort_in_step(void **state)
{
	kl_mitm_rule stall = { .command_code = CC_CERTIFY, .action = KL_MITM_STALL, .skip = 1 };
	struct job_thread t = { .cfg = g.cfg };
	kl_mitm *m = NULL;

	(void)state;
	/* Longer than the liveness bound: only the abort can end the wait. */
	t.cfg.tpm_timeout_ms = KL_TPM_TIMEOUT_MS_MAX;
	atomic_store(&abort_flag, false);
	assert_int_equal(kl_mitm_start(g.duts[1], &stall, 1, &m), 0);
	t.job = (kl_job){ .serial = "L-2",
		          .link = kl_mitm_tcti(m),
		          .ek_type = KL_EK_P256,
		          .actor = "operator:test",
		          .cancelled = cancelled };
	assert_int_equal(pthread_create(&t.thread, NULL, job_main, &t), 0);
	bool stalled = wait_stalled(m);
	atomic_store(&abort_flag, true);
	finish_job(&t, m);
	assert_true(stalled);
	assert_string_equal(t.res.reason, "aborted");
	assert_int_equal(t.res.failed_step, KL_STEP_CERTIFY);
	device_state("L-2", KL_DEVICE_PREREGISTERED);

	atomic_store(&abort_flag, false);
	expect_pass(g.duts[1]->tcti, "L-2", false);
}

/* A run that resumes an interrupted one cleans the DUT without the backend
 * lock: while that DUT is silent inside the cleaning, another thread (in
 * the daemon: every other slot) takes the lock. */
static void test_resume_cleans_outside_lock(void **state)
{
	kl_mitm_rule stall = { .command_code = CC_EVICT_CONTROL, .action = KL_MITM_STALL };
	struct job_thread t = { .cfg = g.cfg };
	struct timespec until;
	kl_mitm *m = NULL;
	pid_t pid;
	int st, locked;

	(void)state;
	/* First run killed right after engraving: keys persisted in the DUT,
	 * the device still provisioning. */
	test_pki_close(&g.store, &g.ca, &g.reg);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		kl_job_result r;
		kl_job job = { .serial = "L-3",
			       .link = g.duts[2]->tcti,
			       .ek_type = KL_EK_P256,
			       .actor = "operator:test" };

		setenv("KEYLINE_FAILPOINT", "engrave", 1);
		if (open_all() < 0 || kl_engine_provision(&g.cfg, &job, &r) < 0)
			_exit(3);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(open_all(), 0);
	device_state("L-3", KL_DEVICE_PROVISIONING);

	/* The resume run: its first TPM2_EvictControl is the cleaning's. */
	t.cfg = g.cfg;
	t.cfg.tpm_timeout_ms = 3000;
	assert_int_equal(kl_mitm_start(g.duts[2], &stall, 1, &m), 0);
	t.job = (kl_job){ .serial = "L-3",
		          .link = kl_mitm_tcti(m),
		          .ek_type = KL_EK_P256,
		          .actor = "operator:test" };
	assert_int_equal(pthread_create(&t.thread, NULL, job_main, &t), 0);
	bool stalled = wait_stalled(m);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LIVENESS_S;
	/* Taken while the DUT is silent, or only when the job gives up. */
	locked = pthread_mutex_timedlock(&g.backend, &until);
	bool during = kl_mitm_stalled(m) > 0;
	if (locked == 0)
		pthread_mutex_unlock(&g.backend);
	finish_job(&t, m);
	assert_true(stalled);
	assert_int_equal(locked, 0);
	assert_true(during);
	assert_string_equal(t.res.reason, "link_timeout");
	assert_int_equal(t.res.failed_step, KL_STEP_GATES);
	assert_true(t.res.resumed);
	device_state("L-3", KL_DEVICE_PROVISIONING);

	/* Consistent afterwards: the next run resumes, cleans and passes. */
	expect_pass(g.duts[2]->tcti, "L-3", true);
}

/* With the CA closed (the daemon clears it while it reopens a lost HSM),
 * step 11 refuses with the reason, and frees nothing it was not given. */
static void test_ca_closed_at_issue(void **state)
{
	kl_engine_config cfg = g.cfg;
	kl_job_result res;

	(void)state;
	cfg.ca = NULL;
	provision(&cfg, g.duts[3]->tcti, "L-4", &res);
	assert_string_equal(res.reason, "issue_failed");
	assert_int_equal(res.failed_step, KL_STEP_ISSUE);
	assert_non_null(strstr(res.message, "unavailable"));
}

/* TPM2_Clear is not attempted when the lockout authorisation is set: an
 * empty one would count as an authorisation failure and lock the lockout
 * hierarchy, so that even its owner could not clear it for a while. */
static void test_clear_with_lockout_auth(void **state)
{
	const char *const set[] = { "tpm2_changeauth", "-c", "lockout", "lock-1", NULL };
	const char *const clear[] = { "tpm2_clear", "-c", "l", "lock-1", NULL };
	kl_dut *d = g.duts[4];
	kl_tpm *t = NULL;

	(void)state;
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", set), 0);
	assert_int_equal(kl_tpm_open(d->tcti, &t), 0);
	assert_int_equal(kl_tpm_clear(t), -KL_E_PERM);
	assert_non_null(strstr(kl_error_detail(), "lockoutAuthSet"));
	kl_tpm_free(t);
	/* The lockout hierarchy is not locked: its owner clears the TPM. */
	assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", clear), 0);
	/* After that the authorisation is empty again, and the station clears. */
	assert_int_equal(kl_tpm_open(d->tcti, &t), 0);
	assert_int_equal(kl_tpm_clear(t), 0);
	kl_tpm_free(t);
}

/* The link's own checks: a bad timeout and a bad configuration are
 * refused with the reason, before any I/O. */
static void test_link_options(void **state)
{
	kl_tpm_link_opts o = { .timeout_ms = 5 };
	kl_tpm *t = NULL;

	(void)state;
	assert_int_equal(kl_tpm_open_link(g.duts[4]->tcti, &o, &t), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "5 ms"));
	assert_null(t);
	assert_int_equal(kl_tpm_open("swtpm:port=0", &t), -KL_E_INVALID);
	assert_int_equal(kl_tpm_open("swtpm:hots=x", &t), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "hots"));
	assert_null(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stall_times_out),
		cmocka_unit_test(test_abort_in_step),
		cmocka_unit_test(test_resume_cleans_outside_lock),
		cmocka_unit_test(test_ca_closed_at_issue),
		cmocka_unit_test(test_clear_with_lockout_auth),
		cmocka_unit_test(test_link_options),
	};

	return cmocka_run_group_tests_name("link", tests, setup, teardown);
}
