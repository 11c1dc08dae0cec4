/* `keyline station` with one DUT that goes silent mid-step (the mitm
 * proxy's STALL on step 9's TPM2_CertifyCreation) beside healthy ones: the other slots keep
 * provisioning while it is silent, job.abort ends the silent job inside
 * its step, a job aborted while still queued is heard to finish, and
 * SIGTERM stops the daemon while a DUT is silent.
 *
 * Waits are bounded by generous timeouts against hanging; nothing asserts
 * on how long anything took. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "kl_error.h"
#include "mitm.h"

#define CC_CERTIFY  0x0000014au /* TPM2_CertifyCreation */
#define CC_GETCAP   0x0000017Au
#define LIVENESS_MS (180 * 1000) /* a bound against hanging, never a timing check */
#define N_HEALTHY   2

static struct {
	struct env e;
	kl_vendor *acme;
	kl_dut **duts; /* [0] behind the proxy, the others direct */
	kl_mitm *mitm;
	kl_mitm *probe_mitm; /* in front of duts[N_HEALTHY + 1]: holds the link probe */
	char sock[PATH_MAX];
	char log[PATH_MAX];
	pid_t daemon;
	kl_client *c; /* subscribed to every event */
} g;

/* method with params as JSON text; fails the test unless it succeeds. */
static json_object *call_ok(const char *method, const char *params)
{
	json_object *p = params ? json_tokener_parse(params) : NULL, *res = NULL;

	if (params && !p)
		fail_msg("test bug: params are not JSON: %s", params);
	if (kl_client_call_timeout(g.c, method, p, &res, 60000) < 0)
		fail_msg("%s %s: %s", method, params ? params : "", kl_error_detail());
	return res;
}

/* Events read while waiting for another, kept for a later wait. */
static json_object *kept[1024];
static size_t nkept;

static bool matches(json_object *ev, const char *type, int64_t job, const char *step)
{
	return strcmp(jstr(ev, "type"), type) == 0 && jint(ev, "job") == job &&
	       (!step || strcmp(jstr(ev, "step"), step) == 0);
}

static json_object *wait_event(const char *type, int64_t job, const char *step)
{
	int64_t until = mono_ms() + LIVENESS_MS;

	for (size_t i = 0; i < nkept; i++)
		if (matches(kept[i], type, job, step)) {
			json_object *ev = kept[i];

			memmove(&kept[i], &kept[i + 1], (nkept - i - 1) * sizeof(kept[0]));
			nkept--;
			return ev;
		}
	while (mono_ms() < until) {
		json_object *ev = NULL;
		int r = kl_client_next_event(g.c, 1000, &ev);

		if (r == -KL_E_TIMEOUT)
			continue;
		if (r < 0)
			fail_msg("waiting for %s: %s", type, kl_error_detail());
		if (matches(ev, type, job, step))
			return ev;
		if (nkept < sizeof(kept) / sizeof(kept[0]))
			kept[nkept++] = ev;
		else
			json_object_put(ev);
	}
	fail_msg("no %s event for job %lld within %d s", type, (long long)job, LIVENESS_MS / 1000);
	return NULL;
}

static int64_t provision(const char *slot, const char *serial)
{
	char p[256];
	json_object *r;
	int64_t id;

	snprintf(p, sizeof(p), "{\"slot\":\"%s\",\"serial\":\"%s\",\"ek_type\":\"p256\"}", slot,
	         serial);
	r = call_ok("job.provision", p);
	id = jint(r, "job");
	json_object_put(r);
	assert_true(id > 0);
	return id;
}

/* The job's job.finished event says result (and reason, when given). */
static void expect_finished(int64_t job, const char *result, const char *reason)
{
	json_object *ev = wait_event("job.finished", job, NULL);

	if (strcmp(jstr(ev, "result"), result) != 0 ||
	    (reason && strcmp(jstr(ev, "reason"), reason) != 0))
		fail_msg("job %lld: %s [%s] %s, expected %s [%s]", (long long)job,
		         jstr(ev, "result"), jstr(ev, "reason"), jstr(ev, "message"), result,
		         reason ? reason : "");
	json_object_put(ev);
}

/* Waits until the proxy has begun its n-th stall and holds it. */
static void wait_stalled(unsigned n)
{
	int64_t until = mono_ms() + LIVENESS_MS;

	while ((kl_mitm_altered(g.mitm) < n || kl_mitm_stalled(g.mitm) == 0) && mono_ms() < until)
		usleep(10 * 1000);
	if (kl_mitm_altered(g.mitm) < n || kl_mitm_stalled(g.mitm) == 0)
		fail_msg("the proxy never held TPM2_CertifyCreation (stall %u)", n);
}

static void daemon_start(void)
{
	g.daemon = station_spawn(g.e.home, g.log);
	station_wait_serving(g.daemon, g.sock, g.log);
	if (kl_client_connect(g.sock, &g.c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
	json_object_put(call_ok("events.subscribe", NULL));
}

static int group_setup(void **state)
{
	char conf[PATH_MAX], p[PATH_MAX], *base;
	const char *cp1[] = { "cp", NULL, NULL, NULL }, *cp2[] = { "cp", NULL, NULL, NULL };
	kl_mitm_rule stall = { .command_code = CC_CERTIFY, .action = KL_MITM_STALL, .skip = 1 };
	char root[PATH_MAX], inter[PATH_MAX];
	FILE *f;

	(void)state;
	if (kl_floor_new(&g.e.floor) < 0 || kl_floor_vendor(g.e.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.e.floor, g.acme, "sl", N_HEALTHY + 2, &g.duts) < 0)
		return -1;
	for (int i = 0; i <= N_HEALTHY + 1; i++)
		if (kl_dut_start(g.e.floor, g.duts[i]) < 0)
			return -1;
	if (kl_mitm_start(g.duts[0], &stall, 1, &g.mitm) < 0)
		return -1;
	/* Slot Q's link probe (TPM2_GetCapability while the slot is idle)
	 * never comes back: a job submitted then waits in the queue. */
	kl_mitm_rule probe_stall = { .command_code = CC_GETCAP, .action = KL_MITM_STALL };
	if (kl_mitm_start(g.duts[N_HEALTHY + 1], &probe_stall, 1, &g.probe_mitm) < 0)
		return -1;
	env_paths(&g.e, g.e.floor);
	snprintf(g.log, sizeof(g.log), "%s/station.log", g.e.dir);
	snprintf(g.sock, sizeof(g.sock), "%s/station.sock", g.e.dir);
	if (keyline(&g.e, "ca", "init", NULL) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/trust", g.e.home);
	mkdir(p, 0755);
	snprintf(root, sizeof(root), "%s/trust/acme.pem", g.e.home);
	snprintf(inter, sizeof(inter), "%s/trust/acme-issuing.pem", g.e.home);
	cp1[1] = g.acme->root_pem;
	cp1[2] = root;
	cp2[1] = g.acme->intermediate_pem;
	cp2[2] = inter;
	if (kl_floor_run(g.e.floor, NULL, NULL, cp1) != 0 ||
	    kl_floor_run(g.e.floor, NULL, NULL, cp2) != 0)
		return -1;
	/* keyline.conf as `ca init` wrote it ends inside [station]. The
	 * timeout is the longest allowed: only job.abort or SIGTERM can end
	 * the silent job within the test's bounds. */
	snprintf(conf, sizeof(conf), "%s/keyline.conf", g.e.home);
	base = slurp(conf);
	f = fopen(conf, "w");
	if (!f)
		return -1;
	fprintf(f, "%s\nsocket = %s\nlink_probe_s = 1\ntpm_timeout_ms = %d\n\n[slots]\n", base,
	        g.sock, 600000);
	fprintf(f, "S = %s\n", kl_mitm_tcti(g.mitm));
	for (int i = 1; i <= N_HEALTHY; i++)
		fprintf(f, "H%d = %s\n", i, g.duts[i]->tcti);
	fprintf(f, "Q = %s\n", kl_mitm_tcti(g.probe_mitm));
	free(base);
	return fclose(f) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	kl_client_free(g.c);
	if (g.daemon > 0) {
		kill(g.daemon, SIGKILL);
		waitpid(g.daemon, NULL, 0);
		fprintf(stderr, "station log:\n%s\n", slurp(g.log));
	}
	for (size_t i = 0; i < nkept; i++)
		json_object_put(kept[i]);
	kl_mitm_stop(g.mitm);
	kl_mitm_stop(g.probe_mitm);
	kl_floor_free(g.e.floor);
	return 0;
}

/* While S's DUT is silent inside TPM2_CertifyCreation, both healthy slots
 * provision to the end; then job.abort ends S's job inside that step. */
static void test_others_provision_during_stall(void **state)
{
	json_object *r;
	int64_t stalled, other[N_HEALTHY];
	char name[16], serial[16];

	(void)state;
	daemon_start();
	r = call_ok("devices.preregister", "{\"tenant\":\"acme\",\"work_order\":\"wo-1\",\"items\":"
	                                   "[\"LK-0\",\"LK-1\",\"LK-2\"]}");
	json_object_put(r);

	stalled = provision("S", "LK-0");
	wait_stalled(1);
	for (int i = 0; i < N_HEALTHY; i++) {
		snprintf(name, sizeof(name), "H%d", i + 1);
		snprintf(serial, sizeof(serial), "LK-%d", i + 1);
		other[i] = provision(name, serial);
	}
	for (int i = 0; i < N_HEALTHY; i++)
		expect_finished(other[i], "passed", NULL);
	/* All that happened while the DUT was still silent. */
	assert_true(kl_mitm_stalled(g.mitm) > 0);

	char p[64];
	snprintf(p, sizeof(p), "{\"job\":%lld}", (long long)stalled);
	r = call_ok("job.abort", p);
	assert_string_equal(jstr(r, "was"), "running");
	json_object_put(r);
	expect_finished(stalled, "aborted", "aborted");
	r = call_ok("job.get", p);
	json_object *res = NULL;
	assert_true(json_object_object_get_ex(r, "result", &res));
	assert_string_equal(jstr(res, "failed_step"), "certify");
	json_object_put(r);
}

/* A job still queued (its slot's worker is held in a link probe) that is
 * aborted ends at once, and its subscribers hear job.finished. */
static void test_abort_queued(void **state)
{
	int64_t until = mono_ms() + LIVENESS_MS, id;
	json_object *r;
	char p[64];

	(void)state;
	while (kl_mitm_stalled(g.probe_mitm) == 0 && mono_ms() < until)
		usleep(10 * 1000);
	if (kl_mitm_stalled(g.probe_mitm) == 0)
		fail_msg("slot Q's link probe was never held");
	json_object_put(
	    call_ok("devices.preregister",
	            "{\"tenant\":\"acme\",\"work_order\":\"wo-q\",\"items\":[\"LK-Q\"]}"));
	id = provision("Q", "LK-Q");
	snprintf(p, sizeof(p), "{\"job\":%lld}", (long long)id);
	r = call_ok("job.abort", p);
	assert_string_equal(jstr(r, "was"), "queued");
	json_object_put(r);
	expect_finished(id, "aborted", "aborted");
	/* ... while the probe still holds the worker: it never started. */
	assert_true(kl_mitm_stalled(g.probe_mitm) > 0);
	r = call_ok("job.get", p);
	assert_string_equal(jstr(r, "state"), "aborted");
	json_object_put(r);
}

/* SIGTERM while a DUT is silent: the daemon stops (exit 0) instead of
 * waiting for the DUT forever. */
static void test_sigterm_during_stall(void **state)
{
	int64_t until = mono_ms() + LIVENESS_MS, job;
	int st = 0;
	pid_t w = 0;

	(void)state;
	/* LK-0 again (the aborted run cleaned it up): silent at step 9's TPM2_CertifyCreation. */
	job = provision("S", "LK-0");
	(void)job;
	wait_stalled(2);
	kl_client_free(g.c);
	g.c = NULL;
	assert_int_equal(kill(g.daemon, SIGTERM), 0);
	while (mono_ms() < until && (w = waitpid(g.daemon, &st, WNOHANG)) == 0)
		usleep(50 * 1000);
	if (w != g.daemon)
		fail_msg("keyline station did not stop within %d s of SIGTERM while its DUT "
		         "was silent",
		         LIVENESS_MS / 1000);
	g.daemon = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_others_provision_during_stall),
		cmocka_unit_test(test_abort_queued),
		cmocka_unit_test(test_sigterm_during_stall),
	};

	return cmocka_run_group_tests_name("station_link", tests, group_setup, group_teardown);
}
