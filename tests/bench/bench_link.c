/* bench_link [N]: what a silent DUT costs the other slots. Two slots
 * provision N devices each through the engine (one thread per slot, the
 * backend lock shared as in the daemon), first with no other job running
 * (the baseline), then while a third slot's DUT sits silent (the mitm
 * proxy's STALL, a long TPM timeout) inside the clean-up of a resumed run:
 * TPM2_EvictControl of the identity keys an interrupted run persisted, the
 * place that once held the backend lock. Prints devices/min of both phases
 * and their ratio. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "floor.h"
#include "kl_error.h"
#include "mitm.h"
#include "registry.h"
#include "tpm.h"

#include "../integration/pki_fixture.h"

#define SLOTS 2

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **duts; /* SLOTS * N * 2 healthy, then the silent one */
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	pthread_mutex_t backend;
	long n;
	atomic_bool stop_silent;
} g;

struct slot {
	int first; /* index of its first DUT */
	long done, failed;
	pthread_t thread;
};

static void lock_hook(void *ctx)
{
	pthread_mutex_lock(ctx);
}

static void unlock_hook(void *ctx)
{
	pthread_mutex_unlock(ctx);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *slot_main(void *arg)
{
	struct slot *s = arg;

	for (long i = 0; i < g.n; i++) {
		char serial[32];
		kl_job_result res;
		kl_job job = { .serial = serial,
			       .link = g.duts[s->first + i]->tcti,
			       .ek_type = KL_EK_P256,
			       .actor = "bench" };

		snprintf(serial, sizeof(serial), "B-%d", s->first + (int)i);
		if (kl_engine_provision(&g.cfg, &job, &res) < 0 || res.rc != 0) {
			fprintf(stderr, "%s: [%s] %s\n", serial, res.reason, res.message);
			s->failed++;
		} else {
			s->done++;
		}
	}
	return NULL;
}

static bool silent_cancelled(void *ctx)
{
	(void)ctx;
	return atomic_load(&g.stop_silent);
}

static void *silent_main(void *arg)
{
	kl_engine_config cfg = g.cfg;
	kl_job_result res;
	kl_job job = { .serial = "B-silent",
		       .link = arg,
		       .ek_type = KL_EK_P256,
		       .actor = "bench",
		       .cancelled = silent_cancelled };

	cfg.tpm_timeout_ms = KL_TPM_TIMEOUT_MS_MAX;
	if (kl_engine_provision(&cfg, &job, &res) == 0)
		fprintf(stderr, "silent DUT: [%s]\n", res.reason);
	return NULL;
}

/* One phase: SLOTS threads from DUT index base; devices/min, 0 on failure. */
static double phase(int base)
{
	struct slot s[SLOTS];
	double t0 = now_s(), wall;
	long done = 0;

	for (int i = 0; i < SLOTS; i++) {
		s[i] = (struct slot){ .first = base + i * (int)g.n };
		if (pthread_create(&s[i].thread, NULL, slot_main, &s[i]) != 0)
			return 0;
	}
	for (int i = 0; i < SLOTS; i++) {
		pthread_join(s[i].thread, NULL);
		done += s[i].done;
		if (s[i].failed)
			return 0;
	}
	wall = now_s() - t0;
	return wall > 0 ? (double)done * 60.0 / wall : 0;
}

int main(int argc, char **argv)
{
	long total;
	kl_registry_item *items = NULL;
	char(*names)[32] = NULL;
	kl_mitm_rule stall = { .command_code = 0x00000120u, .action = KL_MITM_STALL };
	kl_mitm *m = NULL;
	pthread_t silent;
	double base_rate, stall_rate;
	int r = 1;

	g.n = argc > 1 ? atol(argv[1]) : 4;
	if (g.n < 1 || g.n > 50) {
		fprintf(stderr, "usage: bench_link [N (1..50) devices per slot]\n");
		return 2;
	}
	total = SLOTS * g.n * 2;
	pthread_mutex_init(&g.backend, NULL);
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "bl", (size_t)total + 1, &g.duts) < 0 ||
	    test_pki_make(g.floor, g.acme, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0) {
		fprintf(stderr, "setup: %s\n", kl_error_detail());
		goto out;
	}
	g.cfg.lock = lock_hook;
	g.cfg.unlock = unlock_hook;
	g.cfg.lock_ctx = &g.backend;
	items = calloc((size_t)total + 1, sizeof(*items));
	names = calloc((size_t)total + 1, sizeof(*names));
	if (!items || !names)
		goto out;
	for (long i = 0; i <= total; i++) {
		if (i < total)
			snprintf(names[i], sizeof(names[i]), "B-%ld", i);
		else
			snprintf(names[i], sizeof(names[i]), "B-silent");
		items[i] = (kl_registry_item){ .serial = names[i], .line = (unsigned)i + 1 };
	}
	if (kl_registry_tenant_add(g.reg, "acme", "bench") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-B", -1, "bench") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-B", items, (size_t)total + 1, "bench") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		goto out;
	}
	for (long i = 0; i <= total; i++)
		if (kl_dut_start(g.floor, g.duts[i]) < 0)
			goto out;
	/* The silent slot's device: a run killed after engraving, so that the
	 * next one resumes and must evict what it left. */
	test_pki_close(&g.store, &g.ca, &g.reg);
	pid_t pid = fork();
	if (pid == 0) {
		kl_job_result res;
		kl_job job = { .serial = "B-silent",
			       .link = g.duts[total]->tcti,
			       .ek_type = KL_EK_P256,
			       .actor = "bench" };

		setenv("KEYLINE_FAILPOINT", "engrave", 1);
		if (test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0 ||
		    kl_engine_provision(&g.cfg, &job, &res) < 0)
			_exit(3);
		_exit(4);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0) {
		fprintf(stderr, "the interrupted run did not happen as planned\n");
		goto out;
	}
	g.cfg.lock = lock_hook;
	g.cfg.unlock = unlock_hook;
	g.cfg.lock_ctx = &g.backend;

	base_rate = phase(0);
	if (kl_mitm_start(g.duts[total], &stall, 1, &m) < 0 ||
	    pthread_create(&silent, NULL, silent_main, (void *)kl_mitm_tcti(m)) != 0)
		goto out;
	while (kl_mitm_stalled(m) == 0)
		usleep(10 * 1000);
	stall_rate = phase(SLOTS * (int)g.n);
	bool still = kl_mitm_stalled(m) > 0;
	atomic_store(&g.stop_silent, true);
	pthread_join(silent, NULL);

	printf("Two slots provisioning %ld devices each (same run; baseline: no other job)\n", g.n);
	printf("  %-34s %12s %8s\n", "", "devices/min", "ratio");
	printf("  %-34s %12.1f %8.2fx\n", "baseline", base_rate, 1.0);
	printf("  %-34s %12.1f %8.2fx\n", "a third DUT silent while resuming", stall_rate,
	       base_rate > 0 ? stall_rate / base_rate : 0);
	printf("  (the silent DUT was %s for the whole second phase)\n",
	       still ? "still silent" : "NOT silent");
	r = base_rate > 0 && stall_rate > 0 && still ? 0 : 1;
out:
	free(items);
	free(names);
	kl_mitm_stop(m);
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return r;
}
