/* Provisioning benchmark, one run, one thread, devices one after the other:
 *
 *   1. Keyline: kl_engine_provision on N fresh swtpm DUTs (EK types mixed:
 *      RSA-2048, P-256, P-384), the CA's issuing key in SoftHSM2, a SQLite
 *      registry with the serials pre-registered. Per-step means, total per
 *      device and devices per minute.
 *   2. The station's own share: the engine adds up the time spent inside
 *      TPM commands (kl_job_result.tpm_ms: the TPM and its link, a TCP
 *      connection per command for swtpm); station share =
 *      (total - TPM time) / total.
 *   3. The same flow as a shell script with tpm2-tools and openssl
 *      (scripted-provision.sh, software CA key: no HSM) on N other fresh DUTs
 *      of the same kinds, timed end to end.
 *
 *   bench_provision [N]     N devices per side (default 8)
 *
 * DUTs are manufactured and powered on before any timing starts. The script
 * runs once on a spare DUT first (outside the timing) to show it works end to
 * end. Not a test: no figure decides anything; the exit status is non-zero
 * only when a provisioning or the script failed. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "bench.h"
#include "ca.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#ifndef KL_PROFILES_DIR
#define KL_PROFILES_DIR "ca/profiles"
#endif

#define BENCH "bench_provision"

static void die(const char *what)
{
	bench_die(BENCH, what);
}

/* ---- The figures. ---- */

typedef struct sample {
	kl_ek_type ek;
	double wall_ms, tpm_ms; /* tpm_ms: Keyline only */
} sample;

typedef struct summary {
	double wall_ms, tpm_ms; /* means */
	double min_ms, max_ms;
	double by_ek[KL_EK__MAX];
	int n_by_ek[KL_EK__MAX];
} summary;

static void summarize(const sample *s, long n, summary *r)
{
	memset(r, 0, sizeof(*r));
	r->min_ms = 1e300;
	for (long i = 0; i < n; i++) {
		r->wall_ms += s[i].wall_ms / (double)n;
		r->tpm_ms += s[i].tpm_ms / (double)n;
		r->min_ms = s[i].wall_ms < r->min_ms ? s[i].wall_ms : r->min_ms;
		r->max_ms = s[i].wall_ms > r->max_ms ? s[i].wall_ms : r->max_ms;
		r->by_ek[s[i].ek] += s[i].wall_ms;
		r->n_by_ek[s[i].ek]++;
	}
	for (int e = 0; e < KL_EK__MAX; e++)
		if (r->n_by_ek[e])
			r->by_ek[e] /= r->n_by_ek[e];
}

static void print_summary(const summary *r, bool with_tpm)
{
	printf("  %-34s %9.1f ms  (min %.1f, max %.1f)\n", "wall time per device", r->wall_ms,
	       r->min_ms, r->max_ms);
	for (int e = 0; e < KL_EK__MAX; e++)
		if (r->n_by_ek[e])
			printf("    %-32s %9.1f ms  (%d devices)\n", kl_ek_type_name((kl_ek_type)e),
			       r->by_ek[e], r->n_by_ek[e]);
	if (with_tpm) {
		printf("  %-34s %9.1f ms\n", "in TPM commands (TPM + link)", r->tpm_ms);
		printf("  %-34s %9.1f ms  = %.1f%% of the wall time\n", "the station's own work",
		       r->wall_ms - r->tpm_ms, 100.0 * (r->wall_ms - r->tpm_ms) / r->wall_ms);
	}
	printf("  %-34s %9.1f\n", "devices/min", 60000.0 / r->wall_ms);
	fflush(stdout);
}

/* ---- Setup. ---- */

static void write_pem(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");

	if (!f || !PEM_write_X509(f, x))
		die(path);
	fclose(f);
}

static int run_cmd(kl_floor *fl, const char *out, const char *const argv[])
{
	return kl_floor_run(fl, out, NULL, argv);
}

/* scripted-provision.sh next to this source file, or $KEYLINE_BENCH_SCRIPT. */
static void script_path(char *buf, size_t len)
{
	const char *env = getenv("KEYLINE_BENCH_SCRIPT");
	char src[PATH_MAX];

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	snprintf(src, sizeof(src), "%s", __FILE__);
	snprintf(buf, len, "%s/scripted-provision.sh", dirname(src));
}

/* Runs the script on one DUT (through tcti), its stdout and stderr to
 * out_dir/script.log. Returns its exit status. */
static int run_script(kl_floor *fl, const char *script, const char *tcti, const char *serial,
                      const char *ca_dir, const char *out_dir, kl_ek_type ek)
{
	char log[PATH_MAX];
	const char *argv[] = { "bash", "-c",    "exec \"$0\" \"$@\" 2>&1", script, tcti, serial,
		               ca_dir, out_dir, kl_ek_type_name(ek),       NULL };

	if (mkdir(out_dir, 0700) < 0 && errno != EEXIST)
		return -1;
	snprintf(log, sizeof(log), "%s/script.log", out_dir);
	return run_cmd(fl, log, argv);
}

static void print_log(const char *out_dir)
{
	char log[PATH_MAX], line[1024];
	FILE *f;

	snprintf(log, sizeof(log), "%s/script.log", out_dir);
	f = fopen(log, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  | %s", line);
	fclose(f);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 8;
	kl_floor *fl;
	kl_vendor *acme;
	kl_dut **kd, **sd;
	kl_token tok;
	kl_hsm *hsm;
	kl_hsm_key *key;
	kl_secret *pin;
	EVP_PKEY *ca_key, *root_key;
	X509 *root, *issuing;
	X509_NAME *rn, *in;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_trust *trust;
	kl_registry_item *items;
	char(*serials)[24];
	char dir[PATH_MAX], db[PATH_MAX], p[PATH_MAX], trust_dir[PATH_MAX], ca_dir[PATH_MAX],
	    script[PATH_MAX];
	unsigned char *der = NULL;
	sample *ks, *ss;
	double step_sum[KL_STEP__MAX] = { 0 }, engine_total = 0;
	summary k, s;
	int len, failed = 0;

	if (n < 1)
		n = 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	script_path(script, sizeof(script));
	if (access(script, X_OK) != 0) {
		fprintf(stderr, "%s: %s: %s\n", BENCH, script, strerror(errno));
		return 1;
	}

	/* The floor: 2N + 1 DUTs of one vendor, all powered on before timing:
	 * N for Keyline, N + 1 for the script. */
	double tm = bench_now();
	if (kl_floor_new(&fl) < 0 || kl_floor_vendor(fl, "Acme TPM", &acme) < 0 ||
	    kl_floor_manufacture(fl, acme, "kl", (size_t)n, &kd) < 0 ||
	    kl_floor_manufacture(fl, acme, "sh", (size_t)n + 1, &sd) < 0 ||
	    kl_floor_token(fl, "ca", "so-1", "user-1", &tok) < 0)
		die("floor");
	for (long i = 0; i < n; i++)
		if (kl_dut_start(fl, kd[i]) < 0)
			die("start DUT");
	for (long i = 0; i <= n; i++)
		if (kl_dut_start(fl, sd[i]) < 0)
			die("start DUT");
	snprintf(dir, sizeof(dir), "%s", kl_floor_dir(fl));
	printf(
	    "Provisioning, %ld fresh swtpm DUTs per side (EK types mixed: rsa2048, p256, p384),\n"
	    "one thread, one device after the other (%ld DUTs manufactured in %.1f s, before "
	    "timing)\n\n",
	    n, 2 * n + 1, bench_now() - tm);

	/* The CA: software root, issuing key in the SoftHSM token. */
	if (kl_secret_from_bytes("user-1", 6, &pin) < 0 ||
	    kl_hsm_open(tok.module, "ca", &hsm) < 0 || kl_hsm_login(hsm, pin) < 0 ||
	    kl_hsm_key_generate(hsm, KL_HSM_KEY_EC_P256, "issuing", &key) < 0 ||
	    kl_hsm_key_private(hsm, key, &ca_key) < 0)
		die("hsm");
	kl_secret_free(pin);
	kl_hsm_key_free(key);
	root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (kl_ceremony_name("Bench Root", "Keyline", "DE", &rn) < 0 ||
	    kl_ceremony_name("Bench Issuing", "Keyline", "DE", &in) < 0 ||
	    kl_ceremony_root(root_key, rn, 3650, &root) < 0 ||
	    kl_ceremony_issuing(root, root_key, in, ca_key, 1825, &issuing) < 0)
		die("ceremony");
	X509_NAME_free(rn);
	X509_NAME_free(in);
	snprintf(p, sizeof(p), "%s/root.pem", dir);
	write_pem(p, root);
	snprintf(db, sizeof(db), "%s/registry.db", dir);
	len = i2d_X509(issuing, &der);
	if (len <= 0 || kl_store_open(db, &store) < 0 ||
	    kl_store_issuer_add(store, "issuing", "pkcs11:token=ca;object=issuing", der,
	                        (size_t)len, NULL) < 0)
		die("store");
	OPENSSL_free(der);
	kl_ca_config cc = { .issuer_name = "issuing",
		            .profiles_dir = KL_PROFILES_DIR,
		            .crl_url = "http://pki.example.test/issuing.crl",
		            .cps_url = "http://pki.test/cps.html",
		            .ca_issuers_url = "http://pki.test/issuing.der",
		            .actor = "bench" };
	if (kl_ca_open(store, &cc, ca_key, &ca) < 0 || kl_registry_open(store, &reg) < 0)
		die("ca / registry");

	/* The trust bundle: the vendor's EK root and intermediate. */
	snprintf(trust_dir, sizeof(trust_dir), "%s/trust", dir);
	mkdir(trust_dir, 0700);
	snprintf(p, sizeof(p), "%s/acme.pem", trust_dir);
	const char *cp1[] = { "cp", acme->root_pem, p, NULL };
	if (run_cmd(fl, NULL, cp1) != 0)
		die("trust bundle");
	snprintf(p, sizeof(p), "%s/acme-issuing.pem", trust_dir);
	const char *cp2[] = { "cp", acme->intermediate_pem, p, NULL };
	if (run_cmd(fl, NULL, cp2) != 0 || kl_trust_load(trust_dir, &trust) < 0)
		die("trust bundle");

	/* The registry: serials KL-0000.. pre-registered for one work order. */
	items = calloc(2 * (size_t)n, sizeof(*items));
	serials = calloc(2 * (size_t)n, sizeof(*serials));
	ks = calloc((size_t)n, sizeof(*ks));
	ss = calloc((size_t)n, sizeof(*ss));
	if (!items || !serials || !ks || !ss)
		die("out of memory");
	for (long i = 0; i < 2 * n; i++) {
		snprintf(serials[i], sizeof(serials[i]), "KL-%04ld", i);
		items[i] = (kl_registry_item){ .serial = serials[i], .line = (unsigned)i + 1 };
	}
	if (kl_registry_tenant_add(reg, "acme", "bench") < 0 ||
	    kl_registry_work_order_add(reg, "acme", "WO-1", -1, "bench") < 0 ||
	    kl_registry_preregister(reg, "acme", "WO-1", items, 2 * (size_t)n, "bench") < 0)
		die("registry");
	kl_engine_config cfg = { .store = store,
		                 .reg = reg,
		                 .ca = ca,
		                 .trust = trust,
		                 .entropy = hsm,
		                 .require_prereg = true,
		                 .ek_types = 7,
		                 .station_id = "bench-station" };

	/* The script's CA (software key) and a rehearsal on the spare DUT. */
	snprintf(ca_dir, sizeof(ca_dir), "%s/script-ca", dir);
	const char *init[] = {
		"bash", "-c",           "exec \"$0\" \"$@\" 2>&1", script, "--init-ca",
		ca_dir, acme->root_pem, acme->intermediate_pem,    NULL
	};
	snprintf(p, sizeof(p), "%s/script-ca.log", dir);
	if (run_cmd(fl, p, init) != 0) {
		fprintf(stderr, "%s: %s --init-ca failed (log: %s)\n", BENCH, script, p);
		failed = 1;
		goto out;
	}
	snprintf(p, sizeof(p), "%s/rehearsal", dir);
	double tr = bench_now();
	int st = run_script(fl, script, sd[n]->tcti, "SH-REHEARSAL", ca_dir, p, KL_EK_P384);
	if (st != 0) {
		fprintf(stderr, "%s: the script failed its rehearsal (status %d):\n", BENCH, st);
		print_log(p);
		failed = 1;
		goto out;
	}
	tr = bench_now() - tr;

	/* 1 and 2: Keyline. */
	printf("Keyline: kl_engine_provision (issuing key in SoftHSM2, SQLite registry)\n");
	for (long i = 0; i < n; i++) {
		kl_job_result res;
		kl_ek_type ek = (kl_ek_type)(i % KL_EK__MAX);
		kl_job job = { .serial = serials[i],
			       .link = kd[i]->tcti,
			       .ek_type = ek,
			       .actor = "operator:bench" };
		double t0 = bench_now();
		int r = kl_engine_provision(&cfg, &job, &res);

		ks[i].wall_ms = 1000.0 * (bench_now() - t0);
		ks[i].tpm_ms = res.tpm_ms;
		ks[i].ek = ek;
		if (r < 0 || res.rc != 0 || res.already_provisioned) {
			fprintf(stderr, "%s: %s (%s): %s [%s] %s\n", BENCH, serials[i],
			        kl_ek_type_name(ek), kl_step_name(res.failed_step), res.reason,
			        r < 0 ? kl_error_detail() : res.message);
			failed = 1;
			goto out;
		}
		for (int st2 = 0; st2 < KL_STEP__MAX; st2++)
			step_sum[st2] += res.step_ms[st2];
		engine_total += res.total_ms;
	}
	printf("  %-34s %9s\n", "step (mean over devices)", "ms");
	for (int i = 0; i < KL_STEP__MAX; i++)
		printf("  %2d %-31s %9.1f\n", i + 1, kl_step_name((kl_step)i),
		       step_sum[i] / (double)n);
	printf("  %-34s %9.1f ms\n", "total (engine's own clock)", engine_total / (double)n);
	summarize(ks, n, &k);
	print_summary(&k, true);

	/* 3: the script, on N other DUTs. */
	printf("\nScripted: %s\n"
	       "  (tpm2-tools + openssl, one process per step; its CA key is a software key\n"
	       "   made by the script: NO HSM, no registry, no audit, no evidence kept;\n"
	       "   rehearsal on a spare p384 DUT first: %.1f ms, exit 0)\n",
	       script, 1000.0 * tr);
	for (long i = 0; i < n; i++) {
		kl_ek_type ek = (kl_ek_type)(i % KL_EK__MAX);
		char serial[24], out_dir[PATH_MAX];
		double t0;

		snprintf(serial, sizeof(serial), "SH-%04ld", i);
		snprintf(out_dir, sizeof(out_dir), "%s/%s", dir, serial);
		t0 = bench_now();
		st = run_script(fl, script, sd[i]->tcti, serial, ca_dir, out_dir, ek);
		ss[i].wall_ms = 1000.0 * (bench_now() - t0);
		ss[i].ek = ek;
		if (st != 0) {
			fprintf(stderr, "%s: the script failed on %s (%s, status %d):\n", BENCH,
			        serial, kl_ek_type_name(ek), st);
			print_log(out_dir);
			failed = 1;
			goto out;
		}
	}
	summarize(ss, n, &s);
	print_summary(&s, false);

	/* 4: side by side. */
	double k_rate = 60000.0 / k.wall_ms, s_rate = 60000.0 / s.wall_ms;
	double share = 100.0 * (k.wall_ms - k.tpm_ms) / k.wall_ms;
	printf("\nSide by side (%ld devices each)\n", n);
	printf("  %-34s %9.1f devices/min\n", "Keyline", k_rate);
	printf("  %-34s %9.1f devices/min\n", "scripted (no HSM)", s_rate);
	printf("  %-34s %9.2fx     target >= 10x: %s\n", "Keyline / scripted", k_rate / s_rate,
	       k_rate / s_rate >= 10.0 ? "met" : "NOT met");
	printf("  %-34s %9.1f%%      target <= 10%%: %s\n", "station share (own work / total)",
	       share, share <= 10.0 ? "met" : "NOT met");
	printf("  (targets are printed, not asserted)\n");

out:
	kl_registry_free(reg);
	kl_ca_free(ca);
	kl_store_free(store);
	kl_trust_free(trust);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(root_key);
	X509_free(root);
	X509_free(issuing);
	kl_hsm_free(hsm);
	free(items);
	free(serials);
	free(ks);
	free(ss);
	kl_floor_free(fl);
	return failed;
}
