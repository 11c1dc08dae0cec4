/* keyline demo: a simulated line on the embedded default.
 *
 * What it does today, and says so: the CA key ceremony in SoftHSM, a
 * simulated TPM vendor manufacturing swtpm DUTs (plus one forged DUT from a
 * vendor the station does not trust), and on every DUT the checks the station
 * makes before it trusts a TPM: discover, EK certificate from NV, chain to
 * the trust bundle, EK EKU and manufacturer, EK match (provisioning flow steps
 * 1, 3 and 4). Identity keys, attestation and certificate issuance (steps 5 to
 * 13) are not built yet. Every process it starts is stopped before it exits;
 * the home stays for a look around. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "floor.h"
#include "home.h"
#include "kl_error.h"
#include "tpm.h"
#include "trust.h"

#define DEMO_MAX 64

static const char demo_usage[] =
    "usage: keyline [--home DIR] demo [--devices N]\n"
    "\n"
    "Builds a simulated line on the embedded default and runs the station's TPM checks\n"
    "on every device under test:\n"
    "  - a CA key ceremony in a SoftHSM token store inside the home (if not done yet)\n"
    "  - a simulated TPM vendor (EK root and issuing CA) whose roots go into the\n"
    "    home's trust bundle, and N swtpm DUTs it manufactures (EK certificates for\n"
    "    RSA-2048, P-256 and P-384), plus one forged DUT from an untrusted vendor\n"
    "  - on each DUT, in parallel: TPM discovery, the EK certificate read from NV,\n"
    "    its chain to the trust bundle, the EK EKU and TPM manufacturer, and the EK\n"
    "    recreated in the TPM and compared with the certificate\n"
    "Identity keys, attestation and certificate issuance are not built yet.\n"
    "\n"
    "options:\n"
    "  --devices N   trusted DUTs to manufacture, 1..64 (default 4)\n"
    "  --home DIR    the station home to use (default: a new directory under $TMPDIR,\n"
    "                kept afterwards so that you can look around)\n";

struct job {
	kl_dut *dut;
	kl_ek_type type;
	const kl_trust *trust;
	bool forged;
	kl_ek_report rep;
	kl_tpm_info info;
	double ms;
	char error[256];
};

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static int done_count, total_count;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *run_job(void *arg)
{
	struct job *j = arg;
	kl_tpm *tpm = NULL;
	double t0 = now_ms();

	if (kl_tpm_open(j->dut->tcti, &tpm) < 0 || kl_tpm_get_info(tpm, &j->info) < 0 ||
	    kl_ek_check(tpm, j->trust, j->type, &j->rep) < 0)
		snprintf(j->error, sizeof(j->error), "%s", kl_error_detail());
	kl_tpm_free(tpm);
	j->ms = now_ms() - t0;
	pthread_mutex_lock(&print_lock);
	done_count++;
	if (isatty(STDERR_FILENO)) {
		fprintf(stderr, "\r   checked %d/%d DUTs", done_count, total_count);
		fflush(stderr);
	}
	pthread_mutex_unlock(&print_lock);
	return NULL;
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "re"), *out;
	char buf[8192];
	size_t n;

	if (!in)
		return kl_error_set(KL_E_IO, "%s: %s", from, strerror(errno));
	out = fopen(to, "we");
	if (!out) {
		fclose(in);
		return kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno));
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	return fclose(out) == 0 ? 0 : kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno));
}

static int fail(const char *what)
{
	fprintf(stderr, "\nkeyline demo: %s: %s\n", what, kl_error_detail());
	return 1;
}

int kl_cmd_demo(const char *home_opt, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "devices", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char home_dir[PATH_MAX], conf[PATH_MAX], trust_dir[PATH_MAX], p[PATH_MAX];
	struct job jobs[DEMO_MAX + 1];
	pthread_t threads[DEMO_MAX + 1];
	kl_floor *floor = NULL;
	kl_vendor *acme, *rogue;
	kl_dut **duts, **forged;
	kl_trust *trust = NULL;
	kl_home *home = NULL;
	long n = 4;
	int c, rc = 1, passed = 0, refused = 0, errors = 0;
	bool forged_untrusted = false;
	double t0 = now_ms();

	optind = 0; /* start afresh: see kl_cmd_ca */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n': {
			char *end;

			n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > DEMO_MAX) {
				fprintf(stderr, "keyline demo: --devices must be 1..%d, not '%s'\n",
				        DEMO_MAX, optarg);
				return 2;
			}
			break;
		}
		case 'h':
			fputs(demo_usage, stdout);
			return 0;
		default:
			fputs(demo_usage, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "keyline demo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!getenv("KEYLINE_FIXTURES"))
		setenv("KEYLINE_FIXTURES", kl_cli_data_dir("fixtures"), 1);

	/* The home: the one given, or a fresh one that stays afterwards. */
	if (home_opt) {
		snprintf(home_dir, sizeof(home_dir), "%s", home_opt);
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(home_dir, sizeof(home_dir), "%s/keyline-demo.XXXXXX",
		         tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(home_dir)) {
			kl_error_set(KL_E_IO, "mkdtemp: %s", strerror(errno));
			return fail("home");
		}
	}
	printf("Keyline demo line, home %s\n\n", home_dir);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", home_dir);
	if (access(conf, F_OK) != 0) {
		char a0[] = "ca", a1[] = "init", a2[] = "--org", a3[] = "Keyline Demo";
		char *init_argv[] = { a0, a1, a2, a3, NULL };

		printf("1. CA key ceremony (SoftHSM2, keys generated inside the tokens)\n");
		fflush(stdout);
		if (kl_cmd_ca(home_dir, 4, init_argv) != 0)
			return 1;
	} else {
		printf("1. CA: using the existing CA of this home\n");
	}

	printf("\n2. Simulated TPM vendors and %ld DUTs (+1 forged)\n", n);
	fflush(stdout);
	if (kl_floor_new(&floor) < 0)
		return fail("floor");
	if (kl_floor_vendor(floor, "Acme TPM", &acme) < 0 ||
	    kl_floor_vendor(floor, "Rogue TPM", &rogue) < 0) {
		rc = fail("vendor CA");
		goto out;
	}
	/* The station trusts Acme only: its root and issuing CA go into the
	 * home's trust bundle. */
	snprintf(trust_dir, sizeof(trust_dir), "%s/trust", home_dir);
	if (mkdir(trust_dir, 0755) < 0 && errno != EEXIST) {
		kl_error_set(KL_E_IO, "mkdir %s: %s", trust_dir, strerror(errno));
		rc = fail("trust bundle");
		goto out;
	}
	snprintf(p, sizeof(p), "%s/acme-tpm-root.pem", trust_dir);
	if (copy_file(acme->root_pem, p) < 0) {
		rc = fail("trust bundle");
		goto out;
	}
	snprintf(p, sizeof(p), "%s/acme-tpm-issuing.pem", trust_dir);
	if (copy_file(acme->intermediate_pem, p) < 0 || kl_trust_load(trust_dir, &trust) < 0) {
		rc = fail("trust bundle");
		goto out;
	}
	double tm = now_ms();
	if (kl_floor_manufacture(floor, acme, "acme", (size_t)n, &duts) < 0 ||
	    kl_floor_manufacture(floor, rogue, "forged", 1, &forged) < 0) {
		rc = fail("manufacture");
		goto out;
	}
	printf("   manufactured %ld DUTs in %.1f s; trust bundle %s (%zu root, version %s)\n",
	       n + 1, (now_ms() - tm) / 1e3, trust_dir, kl_trust_roots(trust),
	       kl_trust_version(trust));

	printf("\n3. Station checks on every DUT, in parallel\n");
	fflush(stdout);
	total_count = (int)n + 1;
	for (long i = 0; i <= n; i++) {
		kl_dut *d = i < n ? duts[i] : forged[0];

		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].dut = d;
		jobs[i].type = (kl_ek_type)(i % KL_EK__MAX);
		jobs[i].trust = trust;
		jobs[i].forged = i == n;
		if (kl_dut_start(floor, d) < 0) {
			rc = fail("power on");
			goto out;
		}
	}
	for (long i = 0; i <= n; i++)
		pthread_create(&threads[i], NULL, run_job, &jobs[i]);
	for (long i = 0; i <= n; i++)
		pthread_join(threads[i], NULL);
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\n");

	printf("\n   %-9s %-8s %-18s %-8s %-8s %7s  %s\n", "DUT", "EK", "manufacturer", "chain",
	       "EK match", "time", "result");
	for (long i = 0; i <= n; i++) {
		struct job *j = &jobs[i];
		bool ok = !j->error[0] && j->rep.verdict == KL_EK_OK;
		const char *chain =
		    j->error[0] ? "-"
		    : (j->rep.verdict == KL_EK_UNTRUSTED || j->rep.verdict == KL_EK_NO_CERT ||
		       j->rep.verdict == KL_EK_BAD_CERT)
		        ? "REFUSED"
		        : "trusted";

		char mf[32];

		snprintf(mf, sizeof(mf), "%s %s", j->info.manufacturer_str,
		         j->rep.manufacturer[0] ? j->rep.manufacturer : "");
		printf("   %-9s %-8s %-18s %-8s %-8s %5.0fms  ", j->dut->name,
		       kl_ek_type_name(j->type), mf, chain,
		       ok ? "yes" : (j->rep.verdict == KL_EK_MISMATCH ? "NO" : "-"), j->ms);
		if (j->error[0]) {
			printf("ERROR: %s\n", j->error);
			errors++;
		} else if (ok) {
			printf("PASS genuine TPM\n");
			passed++;
		} else {
			printf("REFUSED [%s]: %s\n", kl_ek_verdict_name(j->rep.verdict),
			       j->rep.reason);
			refused++;
			forged_untrusted |= j->forged && j->rep.verdict == KL_EK_UNTRUSTED;
		}
		kl_ek_report_clear(&j->rep);
	}

	printf("\n4. CRL published by the CA (signed in the HSM)\n");
	if (kl_home_open(home_dir, &home) < 0 || kl_cli_publish_crl(home, 7, p, sizeof(p)) < 0) {
		rc = fail("CRL");
		goto out;
	}
	printf("   %s\n", p);

	printf("\nSummary: %d genuine, %d refused, %d errors, %.1f s in all.\n", passed, refused,
	       errors, (now_ms() - t0) / 1e3);
	printf("Not built yet: identity keys, attestation, certificate issuance and engraving\n"
	       "(provisioning steps 5-13); the forged DUT is refused as it must be.\n");
	printf("\nLook around:\n  keyline --home %s ca status\n  keyline --home %s audit verify\n"
	       "  ls %s\n",
	       home_dir, home_dir, home_dir);
	/* Success: every trusted DUT genuine, the forged one refused as untrusted. */
	rc = (passed == n && refused == 1 && forged_untrusted && errors == 0) ? 0 : 1;
out:
	kl_home_free(home);
	kl_trust_free(trust);
	kl_floor_free(floor); /* stops every swtpm */
	return rc;
}
