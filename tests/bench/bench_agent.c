/* The keyline-agent link's cost, one run, one thread, devices one after the
 * other, both ways interleaved on fresh swtpm DUTs of one kind (P-256 EK):
 *
 *   direct  kl_engine_provision with the station's own swtpm: TCTI
 *   agent   a keyline-agent process on the DUT's swtpm, connected over TCP
 *           to the station's listener: hello, every TPM command relayed as
 *           frames, verdict; timed twice: the station's job (accept to
 *           verdict sent: what the direct run times) and end to end (the
 *           agent's fork/exec, TCTI loader and connect included, which on a
 *           real DUT happen while it boots)
 *
 * Printed side by side: mean time per device, devices per minute, and the
 * ratios agent / direct (the bound: the link adds under 10%).
 *
 *   bench_agent [N]     N devices per side (default 8)
 *
 * Not a test: no figure decides anything; the exit status is non-zero only
 * when a provisioning failed. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "ca.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "link_listen.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#include "pki_fixture.h"

#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

#define BENCH "bench_agent"

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **direct, **agent;
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
} g;

static void die(const char *what)
{
	bench_die(BENCH, what);
}

static double direct_one(kl_dut *d, const char *serial, double *tpm_ms)
{
	kl_job job = { .serial = serial, .link = d->tcti, .ek_type = KL_EK_P256, .actor = "bench" };
	kl_job_result res;
	double t0 = bench_now();

	if (kl_engine_provision(&g.cfg, &job, &res) < 0)
		die("engine");
	if (res.rc != 0) {
		fprintf(stderr, BENCH ": direct %s: [%s] %s\n", serial, res.reason, res.message);
		exit(1);
	}
	*tpm_ms = res.tpm_ms;
	return (bench_now() - t0) * 1e3;
}

static double agent_one(kl_dut *d, const char *serial, double *tpm_ms, double *station_ms)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_job_result res;
	char station[32], link[128];
	kl_link_wait w;
	double t0, ts = 0;
	pid_t pid;
	int st;

	if (kl_link_listen("127.0.0.1:0", false, &l) < 0)
		die("listen");
	snprintf(station, sizeof(station), "127.0.0.1:%d", kl_link_listener_port(l));
	t0 = bench_now();
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, STDOUT_FILENO);
		execl(KEYLINE_AGENT_BIN, KEYLINE_AGENT_BIN, "--station", station, "--tcti", d->tcti,
		      "--serial", serial, (char *)NULL);
		_exit(127);
	}
	w.deadline_ms = kl_link_now_ms() + 20000;
	w.cancelled = NULL;
	if (kl_link_accept(l, &w, &c) < 0)
		die("accept");
	ts = bench_now();
	w.deadline_ms = kl_link_now_ms() + 10000;
	if (kl_link_handshake(c, &w, g.cfg.station_id, serial, &info) < 0)
		die("handshake");
	snprintf(link, sizeof(link), "agent:%s", kl_link_conn_peer(c));
	kl_job job = { .serial = info.serial,
		       .link = link,
		       .agent = c,
		       .ek_type = KL_EK_P256,
		       .actor = "bench" };
	if (kl_engine_provision(&g.cfg, &job, &res) < 0)
		die("engine");
	w.deadline_ms = kl_link_now_ms() + 5000;
	if (kl_link_send_verdict(c, &w, serial, res.rc == 0, res.idevid_sha256, res.reason,
	                         res.message) < 0)
		die("verdict");
	*station_ms = (bench_now() - ts) * 1e3;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || res.rc != 0) {
		fprintf(stderr, BENCH ": agent %s: [%s] %s (agent status %d)\n", serial, res.reason,
		        res.message, st);
		exit(1);
	}
	kl_link_conn_free(c);
	kl_link_listener_free(l);
	*tpm_ms = res.tpm_ms;
	return (bench_now() - t0) * 1e3;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 8;
	double direct_ms = 0, agent_ms = 0, direct_tpm = 0, agent_tpm = 0, station_ms = 0;
	kl_registry_item *items;
	char(*names)[16];

	if (n < 1 || n > 64) {
		fprintf(stderr, "usage: " BENCH " [N]   (1..64 devices per side)\n");
		return 2;
	}
	items = calloc((size_t)(2 * n), sizeof(*items));
	names = calloc((size_t)(2 * n), sizeof(*names));
	if (!items || !names)
		return 1;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "bdirect", (size_t)n, &g.direct) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "bagent", (size_t)n, &g.agent) < 0)
		die("floor");
	if (test_pki_make(g.floor, g.acme, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		die("pki");
	for (long i = 0; i < 2 * n; i++) {
		snprintf(names[i], sizeof(names[i]), "%s-%ld", i < n ? "BD" : "BA", i % n);
		items[i] = (kl_registry_item){ .serial = names[i], .line = (unsigned)i + 1 };
	}
	if (kl_registry_tenant_add(g.reg, "acme", "bench") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-B", -1, "bench") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-B", items, (size_t)(2 * n), "bench") < 0)
		die("registry");
	for (long i = 0; i < n; i++)
		if (kl_dut_start(g.floor, g.direct[i]) < 0 || kl_dut_start(g.floor, g.agent[i]) < 0)
			die("power on");

	/* Interleaved, so that drift (caches, the registry growing) hits both. */
	for (long i = 0; i < n; i++) {
		double t, st;

		direct_ms += direct_one(g.direct[i], names[i], &t) / (double)n;
		direct_tpm += t / (double)n;
		agent_ms += agent_one(g.agent[i], names[n + i], &t, &st) / (double)n;
		agent_tpm += t / (double)n;
		station_ms += st / (double)n;
	}
	printf("%-34s %12s %12s\n", BENCH " (P-256 EK, swtpm DUTs)", "direct", "agent/TCP");
	printf("%-34s %12ld %12ld\n", "devices", n, n);
	printf("%-34s %12.1f %12.1f\n", "ms per device: the station's job", direct_ms, station_ms);
	printf("%-34s %12.1f %12.1f\n", "  of which in TPM commands", direct_tpm, agent_tpm);
	printf("%-34s %12s %12.1f\n", "  end to end (agent start..exit)", "", agent_ms);
	printf("%-34s %12.1f %12.1f\n", "devices/min (station's job)", 60000.0 / direct_ms,
	       60000.0 / station_ms);
	printf("%-34s %12s %12.1f\n", "devices/min (end to end)", "", 60000.0 / agent_ms);
	printf("%-34s %25.3f\n", "ratio agent/direct, station's job", station_ms / direct_ms);
	printf("%-34s %25.3f\n", "ratio agent/direct, end to end", agent_ms / direct_ms);
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	free(items);
	free(names);
	return 0;
}
