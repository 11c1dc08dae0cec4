/* keyline demo: a simulated line on the embedded default, provisioned by the
 * real engine.
 *
 * A CA key ceremony in SoftHSM, a simulated TPM vendor manufacturing swtpm
 * DUTs (plus one forged DUT from a vendor the station does not trust), the
 * serials pre-registered, and every DUT taken through the whole provisioning
 * flow by the same engine `keyline provision` and the daemon use. The DUTs run
 * one after another: parallel slots are the station daemon's job. Every
 * process it starts is stopped before it exits; the home stays for a look
 * around. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509_vfy.h>

#include "cli.h"
#include "engine.h"
#include "floor.h"
#include "home.h"
#include "kl_error.h"
#include "registry.h"
#include "trust.h"

#define DEMO_MAX 64

static const char demo_usage[] =
    "usage: keyline [--home DIR] demo [--devices N]\n"
    "\n"
    "Builds a simulated line on the embedded default and provisions it:\n"
    "  - a CA key ceremony in a SoftHSM token store inside the home (if not done yet)\n"
    "  - a simulated TPM vendor (EK root and issuing CA) whose certificates go into the\n"
    "    home's trust bundle, and N swtpm DUTs it manufactures (EK certificates for\n"
    "    RSA-2048, P-256 and P-384), plus one forged DUT from an untrusted vendor\n"
    "  - the serials pre-registered for tenant 'demo'\n"
    "  - every DUT through the whole provisioning flow (EK chain and match, gates,\n"
    "    factory entropy, IAK and IDevID in the TPM, credential activation, Certify,\n"
    "    proof of possession, certificates from the HSM-backed CA, engraving, registry\n"
    "    commit), then every certificate chain verified and a CRL published\n"
    "\n"
    "options:\n"
    "  --devices N   trusted DUTs to manufacture, 1..64 (default 4)\n"
    "  --home DIR    the station home to use (default: a new directory under $TMPDIR,\n"
    "                kept afterwards so that you can look around)\n";

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void dot(void *ctx, kl_step step, bool done, double ms)
{
	(void)ctx;
	(void)step;
	(void)ms;
	if (done) {
		putchar('.');
		fflush(stdout);
	}
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

/* Every certificate the registry holds for a device chains to the CA. */
struct chain_check {
	X509_STORE *store;
	int ok, bad;
};

static int check_chain(void *vctx, const kl_registry_cert *c)
{
	struct chain_check *cc = vctx;
	const unsigned char *q = c->der;
	X509 *x = q ? d2i_X509(NULL, &q, (long)c->der_len) : NULL;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	if (x && ctx && X509_STORE_CTX_init(ctx, cc->store, x, NULL) && X509_verify_cert(ctx) == 1)
		cc->ok++;
	else if (!c->revoked)
		cc->bad++;
	X509_STORE_CTX_free(ctx);
	X509_free(x);
	return 0;
}

static X509_STORE *ca_store(const char *home_dir)
{
	X509_STORE *s = X509_STORE_new();
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/ca/chain.pem", home_dir);
	if (!s || X509_STORE_load_file(s, p) != 1) {
		X509_STORE_free(s);
		return NULL;
	}
	X509_STORE_set_flags(s, X509_V_FLAG_X509_STRICT);
	return s;
}

int kl_cmd_demo(const char *home_opt, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "devices", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char home_dir[PATH_MAX], conf[PATH_MAX], trust_dir[PATH_MAX], p[PATH_MAX];
	static char serials[DEMO_MAX + 1][32];
	kl_job_result results[DEMO_MAX + 1];
	kl_registry_item items[DEMO_MAX];
	kl_floor *floor = NULL;
	kl_vendor *acme, *rogue;
	kl_dut **duts, **forged;
	kl_trust *trust = NULL;
	kl_registry *reg = NULL;
	kl_home *home = NULL;
	kl_engine_config cfg;
	struct chain_check cc = { 0 };
	long n = 4;
	int c, rc = 1, provisioned = 0, refused = 0, errors = 0;
	bool forged_refused = false;
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

	printf("\n2. A simulated TPM vendor manufactures %ld DUTs (+1 forged by another)\n", n);
	fflush(stdout);
	if (kl_floor_new(&floor) < 0)
		return fail("floor");
	if (kl_floor_vendor(floor, "Acme TPM", &acme) < 0 ||
	    kl_floor_vendor(floor, "Rogue TPM", &rogue) < 0) {
		rc = fail("vendor CA");
		goto out;
	}
	/* The station trusts Acme only. */
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
	if (copy_file(acme->intermediate_pem, p) < 0) {
		rc = fail("trust bundle");
		goto out;
	}
	double tm = now_ms();
	if (kl_floor_manufacture(floor, acme, "acme", (size_t)n, &duts) < 0 ||
	    kl_floor_manufacture(floor, rogue, "forged", 1, &forged) < 0) {
		rc = fail("manufacture");
		goto out;
	}
	printf("   %ld DUTs in %.1f s; trust bundle %s\n", n + 1, (now_ms() - tm) / 1e3, trust_dir);
	fflush(stdout);

	/* The engine, configured from the home; serials pre-registered. */
	if (kl_home_open(home_dir, &home) < 0 ||
	    kl_engine_config_from_home(home, &cfg, &reg, &trust) < 0) {
		rc = fail("station");
		goto out;
	}
	/* Serials this home has not seen yet, so that a second demo run on the
	 * same home provisions new devices. */
	long base = 0;
	kl_registry_device probe;
	do {
		base++;
		snprintf(serials[0], sizeof(serials[0]), "DEMO-%04ld", base);
	} while (kl_registry_device_get(reg, serials[0], &probe) == 0);
	for (long i = 0; i <= n; i++)
		snprintf(serials[i], sizeof(serials[i]), "DEMO-%04ld", base + i);
	for (long i = 0; i < n + 1 && i < DEMO_MAX; i++)
		items[i] = (kl_registry_item){ .serial = serials[i], .line = (unsigned)i + 1 };
	kl_registry_tenant tenant;
	kl_registry_work_order wo;
	if ((kl_registry_tenant_get(reg, "demo", &tenant) < 0 &&
	     kl_registry_tenant_add(reg, "demo", kl_home_actor()) < 0) ||
	    (kl_registry_work_order_get(reg, "demo", "demo-line", &wo) < 0 &&
	     kl_registry_work_order_add(reg, "demo", "demo-line", -1, kl_home_actor()) < 0) ||
	    kl_registry_preregister(reg, "demo", "demo-line", items,
	                            (size_t)(n + 1 <= DEMO_MAX ? n + 1 : n), kl_home_actor()) < 0) {
		rc = fail("pre-registration");
		goto out;
	}
	printf("   serials %s..%s pre-registered for tenant 'demo', work order 'demo-line'\n",
	       serials[0], serials[n]);

	printf("\n3. Provisioning, one DUT after another\n");
	fflush(stdout);
	for (long i = 0; i <= n; i++) {
		kl_dut *d = i < n ? duts[i] : forged[0];
		kl_job job = { .serial = serials[i],
			       .ek_type = (kl_ek_type)(i % KL_EK__MAX),
			       .actor = kl_home_actor(),
			       .progress = dot };

		if (kl_dut_start(floor, d) < 0) {
			rc = fail("power on");
			goto out;
		}
		job.link = d->tcti;
		printf("   %-9s %-10s %-8s ", d->name, serials[i], kl_ek_type_name(job.ek_type));
		fflush(stdout);
		if (kl_engine_provision(&cfg, &job, &results[i]) < 0) {
			rc = fail("engine");
			goto out;
		}
		kl_dut_stop(floor, d);
		if (results[i].rc == 0) {
			printf(" PASS %6.0f ms\n", results[i].total_ms);
			provisioned++;
		} else {
			printf(" REFUSED at %s [%s]\n", kl_step_name(results[i].failed_step),
			       results[i].reason);
			refused++;
			forged_refused |=
			    i == n && strcmp(results[i].reason, "ek_cert_untrusted") == 0;
			errors += i < n;
		}
	}

	printf("\n   %-10s %-8s %-34s %9s  %s\n", "serial", "EK", "IDevID certificate serial",
	       "time", "result");
	for (long i = 0; i <= n; i++)
		printf("   %-10s %-8s %-34s %6.0f ms  %s\n", serials[i],
		       kl_ek_type_name((kl_ek_type)(i % KL_EK__MAX)),
		       results[i].rc == 0 ? results[i].idevid_serial : "-", results[i].total_ms,
		       results[i].rc == 0 ? "provisioned" : results[i].message);

	printf("\n4. Every certificate chain, verified against the CA (x509_strict)\n");
	cc.store = ca_store(home_dir);
	if (!cc.store) {
		kl_error_set_ssl(KL_E_CRYPTO, "load %s/ca/chain.pem", home_dir);
		rc = fail("verify");
		goto out;
	}
	for (long i = 0; i < n; i++)
		kl_registry_device_certs(reg, serials[i], check_chain, &cc);
	X509_STORE_free(cc.store);
	printf("   %d certificates verify, %d do not\n", cc.ok, cc.bad);

	printf("\n5. CRL published by the CA (signed in the HSM)\n");
	if (kl_cli_publish_crl(home, 7, p, sizeof(p)) < 0) {
		rc = fail("CRL");
		goto out;
	}
	printf("   %s\n", p);

	printf("\nSummary: %d provisioned, %d refused, %.1f s in all.\n", provisioned, refused,
	       (now_ms() - t0) / 1e3);
	printf("\nLook around:\n  keyline --home %s devices list\n"
	       "  keyline --home %s devices show %s\n  keyline --home %s ca status\n"
	       "  keyline --home %s audit verify\n",
	       home_dir, home_dir, serials[0], home_dir, home_dir);
	/* Success: every trusted DUT provisioned with verifying certificates,
	 * the forged one refused as untrusted. */
	rc = (provisioned == n && refused == 1 && forged_refused && errors == 0 && cc.bad == 0 &&
	      cc.ok == 2 * n)
	         ? 0
	         : 1;
out:
	kl_registry_free(reg);
	kl_trust_free(trust);
	kl_home_free(home);
	kl_floor_free(floor); /* stops every swtpm */
	return rc;
}
