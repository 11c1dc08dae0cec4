/* keyline demo: a simulated line on the embedded default, provisioned by the
 * real engine.
 *
 * A CA key ceremony in SoftHSM, a simulated TPM vendor manufacturing swtpm
 * DUTs (plus one forged DUT from a vendor the station does not trust), the
 * station daemon started with one slot per DUT, the serials pre-registered
 * and every DUT provisioned in parallel through the socket API, exactly as an
 * MES drives a line. Every process it starts is stopped before it exits; the
 * home stays for a look around. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <json-c/json.h>

#include "cli.h"
#include "client.h"
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
    "  - a station daemon with one slot per DUT (keyline station), and through its\n"
    "    socket API: the serials pre-registered for tenant 'demo', then all DUTs\n"
    "    provisioned in parallel with live progress, each through the whole flow\n"
    "    (EK chain and match, gates,\n"
    "    factory entropy, IAK and IDevID in the TPM, credential activation, Certify,\n"
    "    proof of possession, certificates from the HSM-backed CA, engraving, registry\n"
    "    commit), then every certificate chain verified and a CRL published\n"
    "\n"
    "options:\n"
    "  --devices N   trusted DUTs to manufacture, 1..64 (default 4)\n"
    "  --spare N     more factory-new DUTs on their own slots, pre-registered but left\n"
    "                for you (or keyline-ui) to provision (default 0)\n"
    "  --keep-running  leave the station and the DUTs up until Ctrl-C (prints READY)\n"
    "  --home DIR    the station home to use (default: a new directory under $TMPDIR,\n"
    "                kept afterwards so that you can look around)\n";

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
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

/* Verifies one PEM certificate against the CA chain. */
static void check_pem(struct chain_check *cc, const char *pem, bool revoked)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();

	if (x && ctx && X509_STORE_CTX_init(ctx, cc->store, x, NULL) && X509_verify_cert(ctx) == 1)
		cc->ok++;
	else if (!revoked)
		cc->bad++;
	X509_STORE_CTX_free(ctx);
	X509_free(x);
	BIO_free(b);
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

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return "";
	return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static double jdbl(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_double(v) : 0;
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

static json_object *jobj(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* keyline.conf with this run's [slots] (the DUTs' ports change every run):
 * an earlier [slots] section is replaced. */
static int write_slots(const char *conf, kl_dut **duts, size_t n, kl_dut *forged, kl_dut **spare,
                       size_t n_spare)
{
	FILE *f = fopen(conf, "re");
	char line[1024], *text = NULL;
	size_t len = 0;
	bool skip = false;
	FILE *out;
	int r;

	if (!f)
		return kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
	out = open_memstream(&text, &len);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '[')
			skip = strncmp(line, "[slots]", 7) == 0;
		if (!skip)
			fputs(line, out);
	}
	fclose(f);
	fprintf(out, "[slots]\n");
	for (size_t i = 0; i <= n; i++)
		fprintf(out, "slot-%02zu = %s\n", i + 1, i < n ? duts[i]->tcti : forged->tcti);
	for (size_t i = 0; i < n_spare; i++)
		fprintf(out, "slot-%02zu = %s\n", n + 2 + i, spare[i]->tcti);
	fclose(out);
	r = kl_write_file(conf, text, len, 0600);
	free(text);
	return r;
}

/* Starts `keyline --home H station` (this program), its log in
 * HOME/station.log, and waits until its socket answers. */
static int start_station(const char *home, pid_t *pid, kl_client **client)
{
	char log[PATH_MAX], sock[PATH_MAX];
	pid_t parent = getpid();

	snprintf(log, sizeof(log), "%s/station.log", home);
	kl_client_socket_path(home, sock, sizeof(sock));
	fflush(NULL);
	*pid = fork();
	if (*pid < 0)
		return kl_error_set(KL_E_IO, "fork: %s", strerror(errno));
	if (*pid == 0) {
		FILE *l = freopen(log, "a", stderr);

		(void)l;
		/* Never outlive the demo, even when it is killed. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		execl("/proc/self/exe", "keyline", "--home", home, "station", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		int st;

		if (kl_client_connect(sock, client) == 0)
			return 0;
		if (waitpid(*pid, &st, WNOHANG) == *pid) {
			*pid = 0;
			return kl_error_set(KL_E_UNAVAILABLE,
			                    "the station did not start; its log %s says why", log);
		}
		usleep(100 * 1000);
	}
	return kl_error_set(KL_E_TIMEOUT, "the station did not open %s in 30 s (log %s)", sock,
	                    log);
}

/* SIGTERM, and its exit status. */
static int stop_station(pid_t pid)
{
	int st = 0;

	if (pid <= 0)
		return 0;
	kill(pid, SIGTERM);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return kl_error_set(KL_E_IO, "the station ended badly (status 0x%x)", st);
	return 0;
}

/* Serials this home has not seen yet (a second demo on the same home
 * provisions new devices), pre-registered through the API. */
static int preregister(kl_client *c, char serials[][32], long count)
{
	json_object *p = json_object_new_object(), *res = NULL, *items;
	int64_t base;
	int r;

	json_object_object_add(p, "search", json_object_new_string("DEMO-"));
	json_object_object_add(p, "limit", json_object_new_int(1));
	if ((r = kl_client_call(c, "devices.list", p, &res)) < 0)
		return r;
	base = jint(res, "total") + 1;
	json_object_put(res);
	p = json_object_new_object();
	items = json_object_new_array();
	for (long i = 0; i < count; i++) {
		snprintf(serials[i], 32, "DEMO-%04lld", (long long)(base + i));
		json_object_array_add(items, json_object_new_string(serials[i]));
	}
	json_object_object_add(p, "tenant", json_object_new_string("demo"));
	json_object_object_add(p, "work_order", json_object_new_string("demo-line"));
	json_object_object_add(p, "items", items);
	r = kl_client_call(c, "devices.preregister", p, &res);
	json_object_put(res);
	return r;
}

struct slot_view {
	int64_t job;
	char step[24];
	int index, of;
	bool done;
	char result[64];
};

/* One line per slot, redrawn in place on a terminal. */
static void draw(struct slot_view *v, char serials[][32], long n, bool redraw, double secs)
{
	if (redraw)
		printf("\033[%ldA", n + 1);
	for (long i = 0; i <= n; i++) {
		char bar[21];
		int fill = v[i].of ? v[i].index * 20 / v[i].of : 0;

		for (int k = 0; k < 20; k++)
			bar[k] = k < fill ? '#' : '.';
		bar[20] = 0;
		printf("\033[2K   slot-%02ld %-10s [%s] %-13s %s\n", i + 1, serials[i], bar,
		       v[i].done ? "" : v[i].step, v[i].done ? v[i].result : "");
	}
	printf("\033[2K   %.1f s\r", secs);
	fflush(stdout);
}

/* Submits every job, follows their events, and fetches each result. */
static int provision_all(kl_client *c, char serials[][32], long n, json_object **jobs)
{
	struct slot_view v[DEMO_MAX + 1] = { 0 };
	bool tty = isatty(STDOUT_FILENO);
	json_object *res = NULL, *ev;
	long left = n + 1;
	double t0 = now_ms();
	int r;

	if ((r = kl_client_call(c, "events.subscribe", NULL, &res)) < 0)
		return r;
	json_object_put(res);
	for (long i = 0; i <= n; i++) {
		json_object *p = json_object_new_object();
		char slot[16];

		snprintf(slot, sizeof(slot), "slot-%02ld", i + 1);
		json_object_object_add(p, "slot", json_object_new_string(slot));
		json_object_object_add(p, "serial", json_object_new_string(serials[i]));
		/* Every EK type the line meets, in turn. */
		json_object_object_add(
		    p, "ek_type",
		    json_object_new_string(kl_ek_type_name((kl_ek_type)(i % KL_EK__MAX))));
		if ((r = kl_client_call(c, "job.provision", p, &res)) < 0)
			return r;
		v[i].job = jint(res, "job");
		json_object_put(res);
	}
	if (tty)
		draw(v, serials, n, false, 0);
	while (left > 0) {
		r = kl_client_next_event(c, 500, &ev);
		if (r == -KL_E_TIMEOUT) {
			if (tty)
				draw(v, serials, n, true, (now_ms() - t0) / 1e3);
			continue;
		}
		if (r < 0)
			return r;
		for (long i = 0; i <= n; i++) {
			const char *type = jstr(ev, "type");

			if (jint(ev, "job") != v[i].job)
				continue;
			if (strncmp(type, "step.", 5) == 0) {
				snprintf(v[i].step, sizeof(v[i].step), "%s", jstr(ev, "step"));
				v[i].index = (int)jint(ev, "index") - (type[5] == 's' ? 1 : 0);
				v[i].of = (int)jint(ev, "of");
			} else if (strcmp(type, "job.finished") == 0 && !v[i].done) {
				v[i].done = true;
				v[i].index = v[i].of;
				snprintf(v[i].result, sizeof(v[i].result), "%s %.0f ms",
				         strcmp(jstr(ev, "result"), "passed") == 0 ? "PASS"
				                                                   : "FAIL",
				         jdbl(ev, "total_ms"));
				left--;
				if (!tty)
					printf("   slot-%02ld %-10s %s\n", i + 1, serials[i],
					       v[i].result);
			}
		}
		json_object_put(ev);
		if (tty)
			draw(v, serials, n, true, (now_ms() - t0) / 1e3);
	}
	if (tty)
		printf("\n");
	for (long i = 0; i <= n; i++) {
		json_object *p = json_object_new_object();

		json_object_object_add(p, "job", json_object_new_int64(v[i].job));
		if ((r = kl_client_call(c, "job.get", p, &jobs[i])) < 0)
			return r;
	}
	return 0;
}

/* Every certificate the registry holds for the device chains to the CA. */
static int verify_device(kl_client *c, const char *serial, struct chain_check *cc)
{
	json_object *p = json_object_new_object(), *res = NULL, *certs;
	int r;

	json_object_object_add(p, "serial", json_object_new_string(serial));
	if ((r = kl_client_call(c, "devices.show", p, &res)) < 0)
		return r;
	certs = jobj(res, "certificates");
	for (size_t i = 0; certs && i < json_object_array_length(certs); i++) {
		json_object *x = json_object_array_get_idx(certs, i);

		if (*jstr(x, "pem"))
			check_pem(cc, jstr(x, "pem"), jbool(x, "revoked"));
	}
	json_object_put(res);
	return 0;
}

static volatile sig_atomic_t demo_stop;

static void on_stop(int sig)
{
	(void)sig;
	demo_stop = 1;
}

/* --keep-running: the line stays up (station, DUTs) until Ctrl-C or
 * SIGTERM, for a person, keyline-ui or a test to use. */
static void keep_running(const char *home, char serials[][32], long n, long spare_n)
{
	struct sigaction sa = { .sa_handler = on_stop };
	char sock[PATH_MAX];

	kl_client_socket_path(home, sock, sizeof(sock));
	printf("\nThe line keeps running: station socket %s\n", sock);
	if (spare_n > 0)
		printf("  factory-new DUTs on slots slot-%02ld..slot-%02ld, serials %s..%s\n"
		       "  e.g.: keyline --home %s provision --slot slot-%02ld --serial %s\n",
		       n + 2, n + 1 + spare_n, serials[n + 1], serials[n + spare_n], home, n + 2,
		       serials[n + 1]);
	printf("  keyline --home %s status    keyline --home %s events\n"
	       "Ctrl-C stops the station and the DUTs.\n",
	       home, home);
	/* The handlers before READY: whoever waits for it may stop us at once. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	printf("READY\n");
	fflush(stdout);
	while (!demo_stop)
		pause();
	printf("stopping the line\n");
}

int kl_cmd_demo(const char *home_opt, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "devices", required_argument, NULL, 'n' },
		{ "spare", required_argument, NULL, 's' },
		{ "keep-running", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char home_dir[PATH_MAX], conf[PATH_MAX], trust_dir[PATH_MAX], p[PATH_MAX];
	static char serials[2 * DEMO_MAX + 1][32];
	json_object *jobs[DEMO_MAX + 1] = { 0 };
	kl_floor *floor = NULL;
	kl_vendor *acme, *rogue;
	kl_dut **duts = NULL, **forged = NULL, **spare = NULL;
	long spare_n = 0;
	bool keep = false;
	kl_client *client = NULL;
	pid_t station = 0;
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
		case 's': {
			char *end;

			spare_n = strtol(optarg, &end, 10);
			if (*end || spare_n < 0 || spare_n > DEMO_MAX) {
				fprintf(stderr, "keyline demo: --spare must be 0..%d, not '%s'\n",
				        DEMO_MAX, optarg);
				return 2;
			}
			break;
		}
		case 'k':
			keep = true;
			break;
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
		setenv("KEYLINE_FIXTURES", kl_home_data_dir("fixtures"), 1);

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
	if (kl_copy_file(acme->root_pem, p) < 0) {
		rc = fail("trust bundle");
		goto out;
	}
	snprintf(p, sizeof(p), "%s/acme-tpm-issuing.pem", trust_dir);
	if (kl_copy_file(acme->intermediate_pem, p) < 0) {
		rc = fail("trust bundle");
		goto out;
	}
	double tm = now_ms();
	if (kl_floor_manufacture(floor, acme, "acme", (size_t)n, &duts) < 0 ||
	    kl_floor_manufacture(floor, rogue, "forged", 1, &forged) < 0 ||
	    (spare_n > 0 &&
	     kl_floor_manufacture(floor, acme, "spare", (size_t)spare_n, &spare) < 0)) {
		rc = fail("manufacture");
		goto out;
	}
	printf("   %ld DUTs in %.1f s; trust bundle %s\n", n + 1 + spare_n, (now_ms() - tm) / 1e3,
	       trust_dir);
	fflush(stdout);

	/* Every DUT on its own slot of a station. */
	for (long i = 0; i <= n; i++)
		if (kl_dut_start(floor, i < n ? duts[i] : forged[0]) < 0) {
			rc = fail("power on");
			goto out;
		}
	for (long i = 0; i < spare_n; i++)
		if (kl_dut_start(floor, spare[i]) < 0) {
			rc = fail("power on");
			goto out;
		}
	if (write_slots(conf, duts, (size_t)n, forged[0], spare, (size_t)spare_n) < 0) {
		rc = fail("keyline.conf");
		goto out;
	}
	printf("\n3. The station: %ld slots, socket API\n", n + 1 + spare_n);
	fflush(stdout);
	if (start_station(home_dir, &station, &client) < 0) {
		rc = fail("station");
		goto out;
	}
	if (preregister(client, serials, n + 1 + spare_n) < 0) {
		rc = fail("pre-registration");
		goto out;
	}
	printf("   serials %s..%s pre-registered for tenant 'demo' (devices.preregister)\n",
	       serials[0], serials[n + spare_n]);

	printf("\n4. Provisioning all %ld DUTs in parallel (job.provision on every slot)\n", n + 1);
	fflush(stdout);
	double tp = now_ms();
	if (provision_all(client, serials, n, jobs) < 0) {
		rc = fail("provisioning");
		goto out;
	}
	double wall = now_ms() - tp;

	printf("\n   %-8s %-10s %-8s %-34s %8s  %s\n", "slot", "serial", "EK",
	       "IDevID certificate serial", "time", "result");
	for (long i = 0; i <= n; i++) {
		json_object *r = jobj(jobs[i], "result");
		bool ok = jbool(r, "ok");

		printf("   %-8s %-10s %-8s %-34s %5.0f ms  ", jstr(jobs[i], "slot"), serials[i],
		       *jstr(r, "ek_type") ? jstr(r, "ek_type") : "-",
		       ok ? jstr(r, "idevid_serial") : "-", jdbl(r, "total_ms"));
		if (ok)
			printf("PASS\n");
		else
			printf("REFUSED at %s [%s]\n%14s%s\n", jstr(r, "failed_step"),
			       jstr(r, "reason"), "", jstr(r, "message"));
		if (ok)
			provisioned++;
		else {
			refused++;
			forged_refused |=
			    i == n && strcmp(jstr(r, "reason"), "ek_cert_untrusted") == 0;
			errors += i < n;
		}
	}
	printf("   %d provisioned in %.1f s wall time: %.0f devices/min\n", provisioned, wall / 1e3,
	       provisioned * 60e3 / wall);

	printf("\n5. Every certificate chain, verified against the CA (x509_strict)\n");
	cc.store = ca_store(home_dir);
	if (!cc.store) {
		kl_error_set_ssl(KL_E_CRYPTO, "load %s/ca/chain.pem", home_dir);
		rc = fail("verify");
		goto out;
	}
	for (long i = 0; i < n; i++)
		if (verify_device(client, serials[i], &cc) < 0) {
			rc = fail("verify");
			goto out;
		}
	X509_STORE_free(cc.store);
	cc.store = NULL;
	printf("   %d certificates verify, %d do not\n", cc.ok, cc.bad);

	printf("\n6. CRL published by the CA (signed in the HSM; crl.publish)\n");
	{
		json_object *res = NULL;

		if (kl_client_call(client, "crl.publish", NULL, &res) < 0) {
			rc = fail("CRL");
			goto out;
		}
		printf("   CRL %lld: %s\n", (long long)jint(res, "crl_number"), jstr(res, "path"));
		json_object_put(res);
	}

	printf("\nSummary: %d provisioned, %d refused, %.1f s in all.\n", provisioned, refused,
	       (now_ms() - t0) / 1e3);
	printf(
	    keep ? "\nLook around:\n"
	         : "\nLook around (the station has stopped; these read the home):\n"
	           "  keyline --home %s devices list\n"
	           "  keyline --home %s devices show %s\n  keyline --home %s ca status\n"
	           "  keyline --home %s audit verify\n"
	           "Run the line yourself: keyline --home %s station   (the demo's DUTs are gone;\n"
	           "  point [slots] in keyline.conf at your own TPMs)\n",
	    home_dir, home_dir, serials[0], home_dir, home_dir, home_dir);
	/* Success: every trusted DUT provisioned with verifying certificates,
	 * the forged one refused as untrusted. */
	if (keep)
		keep_running(home_dir, serials, n, spare_n);
	rc = (provisioned == n && refused == 1 && forged_refused && errors == 0 && cc.bad == 0 &&
	      cc.ok == 2 * n)
	         ? 0
	         : 1;
out:
	X509_STORE_free(cc.store);
	for (long i = 0; i <= n; i++)
		json_object_put(jobs[i]);
	kl_client_free(client);
	if (stop_station(station) < 0 && rc == 0)
		rc = fail("station");
	kl_floor_free(floor); /* stops every swtpm */
	return rc;
}
