/* The station daemon end to end over its real socket: `keyline station` on
 * a home made by `keyline ca init`, five swtpm DUTs from a trusted vendor on
 * five slots, and clients from station/client.h. Every method of the API
 * table is called at least once and its result checked, from the outside
 * where possible (openssl verify, the CRL parsed with OpenSSL, tpm2-tools on
 * the DUT); roles are exercised by forked children that drop to other uids;
 * hostile and careless clients (bad JSON, huge lines, silence, hundreds of
 * connections, a client that never reads, a DUT that vanishes) must never
 * hurt the daemon or the other clients.
 *
 * The tests run in order on one daemon and build on each other (the devices
 * they leave behind), as a line would. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "kl_error.h"
#include "rpc.h"

#define NDUTS         5
#define MAX_CLIENTS   400
#define MANY_CLIENTS  300
#define EVENT_WAIT_MS (180 * 1000) /* a bound against hanging, never a timing check */

#define READER_UID   65534
#define OPERATOR_UID 65533
#define PEER_GID     65534 /* nogroup: the socket's group */

/* RFC 5280 §5.3.1 CRLReason codes. */
#define REASON_KEY_COMPROMISE      1
#define REASON_AFFILIATION_CHANGED 3
#define REASON_SUPERSEDED          4
#define REASON_CESSATION           5

static const char *const slot_names[NDUTS] = { "A", "B", "C", "D", "E" };

static struct {
	struct env e;
	kl_vendor *acme;
	kl_dut **duts;
	char sock[PATH_MAX];
	char conf[PATH_MAX];
	char crl[PATH_MAX];
	char chain[PATH_MAX];
	char daemon_err[PATH_MAX];
	char *base_conf; /* keyline.conf as `keyline ca init` wrote it */
	pid_t daemon;
	pid_t others[2]; /* stations of test_two_stations_at_once, while they run */
	kl_client *c;    /* root, subscribed to every event */
	/* What the tests leave for the next ones. */
	char iak[NDUTS][48], idevid[NDUTS][48]; /* by DUT index */
} g;

/* ---- small JSON helpers ---- */

/* ---- calls ---- */

static json_object *params_v(const char *fmt, va_list ap)
{
	char buf[8192];
	json_object *p;

	if (!fmt)
		return NULL;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	p = json_tokener_parse(buf);
	if (!p)
		fail_msg("test bug: params are not JSON: %s", buf);
	return p;
}

/* KL_STATION_TRACE=FILE writes every call, answer and awaited event to
 * FILE: the examples in docs/api.md come from such a run. */
static FILE *trace;

static void trace_call(const char *method, json_object *params)
{
	if (trace)
		fprintf(trace, "--> {\"jsonrpc\":\"2.0\",\"method\":\"%s\"%s%s,\"id\":1}\n", method,
		        params ? ",\"params\":" : "", params ? dump(params) : "");
}

static void trace_line(const char *dir, const char *text)
{
	if (trace) {
		fprintf(trace, "%s %s\n", dir, text);
		fflush(trace);
	}
}

/* Calls method with params given as printf-style JSON text (NULL: none) and
 * fails the test unless it succeeds. The result is the caller's. */
__attribute__((format(printf, 3, 4))) static json_object *call_ok(kl_client *c, const char *method,
                                                                  const char *fmt, ...)
{
	json_object *p, *res = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	p = params_v(fmt, ap);
	va_end(ap);
	trace_call(method, p);
	r = kl_client_call_timeout(c, method, p, &res, 60000);
	if (r < 0)
		fail_msg("%s failed (code %d): %s", method, kl_client_last_code(c),
		         kl_error_detail());
	trace_line("<-- result", dump(res));
	return res;
}

/* Calls method expecting an error: returns its JSON-RPC code, the message
 * in msg. */
__attribute__((format(printf, 5, 6))) static int call_err(kl_client *c, char *msg, size_t size,
                                                          const char *method, const char *fmt, ...)
{
	json_object *p, *res = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	p = params_v(fmt, ap);
	va_end(ap);
	trace_call(method, p);
	r = kl_client_call_timeout(c, method, p, &res, 60000);
	if (r == 0)
		fail_msg("%s succeeded, an error was expected: %s", method, dump(res));
	if (trace)
		fprintf(trace, "<-- error %d %s %s\n", kl_client_last_code(c), kl_err_name(r),
		        kl_error_detail());
	if (msg)
		snprintf(msg, size, "%s", kl_error_detail());
	return kl_client_last_code(c);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!hay || !strstr(hay, needle))
		fail_msg("'%s' not found in: %s", needle, hay ? hay : "(null)");
}

/* The next message on a raw connection that is not an event. */
static json_object *read_msg(kl_client *c)
{
	for (;;) {
		json_object *m = NULL;
		int r = kl_client_read(c, 30000, &m);

		if (r < 0)
			fail_msg("no answer from the station: %s", kl_error_detail());
		if (strcmp(jstr(m, "method"), "event") != 0)
			return m;
		json_object_put(m);
	}
}

static void send_raw(kl_client *c, const char *text)
{
	assert_int_equal(kl_client_send_raw(c, text, strlen(text)), 0);
}

/* Sends one raw line and checks the error answer's code (and reason when
 * given). */
static void raw_error(kl_client *c, const char *line, int code, const char *reason)
{
	json_object *m, *err;

	send_raw(c, line);
	m = read_msg(c);
	trace_line("raw -->", line);
	trace_line("raw <--", dump(m));
	err = jget(m, "error");
	if (!err || jint(err, "code") != code)
		fail_msg("for %.80s expected error %d, got %s", line, code, dump(m));
	assert_true(json_object_object_get_ex(m, "id", NULL));
	if (reason)
		assert_string_equal(jstr(jget(err, "data"), "reason"), reason);
	json_object_put(m);
}

static kl_client *connect_root(void)
{
	kl_client *c = NULL;

	if (kl_client_connect(g.sock, &c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
	return c;
}

/* The daemon answers: called after every hostile act. */
static void assert_alive(void)
{
	json_object *st = call_ok(g.c, "station.status", NULL);

	assert_true(jbool(st, "running"));
	assert_int_equal(jint(jget(st, "slots"), "total"), NDUTS);
	json_object_put(st);
	assert_int_equal(waitpid(g.daemon, NULL, WNOHANG), 0);
}

/* ---- events and jobs ---- */

/* Events g.c read while waiting for others, oldest first: a test waiting
 * for one job must not lose the events of the jobs running beside it. */
static json_object *backlog[4096];
static size_t nbacklog;

static bool event_matches(json_object *ev, const char *type, int64_t job, const char *step)
{
	return strcmp(jstr(ev, "type"), type) == 0 && (job <= 0 || jint(ev, "job") == job) &&
	       (!step || strcmp(jstr(ev, "step"), step) == 0);
}

/* The next event of that type (and job, when > 0; and step, when given)
 * on c, keeping the others (on g.c) for later. Fails after EVENT_WAIT_MS. */
static json_object *wait_event(kl_client *c, const char *type, int64_t job, const char *step)
{
	int64_t deadline = mono_ms() + EVENT_WAIT_MS;

	for (size_t i = 0; c == g.c && i < nbacklog; i++) {
		json_object *ev = backlog[i];

		if (event_matches(ev, type, job, step)) {
			trace_line("<-- event", dump(ev));
			memmove(&backlog[i], &backlog[i + 1],
			        (nbacklog - i - 1) * sizeof(backlog[0]));
			nbacklog--;
			return ev;
		}
	}
	while (mono_ms() < deadline) {
		json_object *ev = NULL;
		int r = kl_client_next_event(c, 1000, &ev);

		if (r == -KL_E_TIMEOUT)
			continue;
		if (r < 0)
			fail_msg("waiting for %s: %s", type, kl_error_detail());
		if (event_matches(ev, type, job, step)) {
			trace_line("<-- event", dump(ev));
			return ev;
		}
		if (c != g.c)
			json_object_put(ev);
		else if (nbacklog < sizeof(backlog) / sizeof(backlog[0]))
			backlog[nbacklog++] = ev;
		else
			json_object_put(ev); /* nobody waits for events that old */
	}
	fail_msg("no %s event for job %lld", type, (long long)job);
	return NULL;
}

/* Waits for the job's job.finished event, checks it says `result`, and
 * returns job.get's answer. */
static json_object *finish(int64_t job, const char *result)
{
	json_object *ev = wait_event(g.c, "job.finished", job, NULL), *j;

	if (strcmp(jstr(ev, "result"), result) != 0)
		fail_msg("job %lld finished %s, expected %s: %s", (long long)job,
		         jstr(ev, "result"), result, dump(ev));
	j = call_ok(g.c, "job.get", "{\"job\": %lld}", (long long)job);
	assert_string_equal(jstr(j, "state"), result);
	assert_non_null(jget(j, "result"));
	/* The event carries what the result holds. */
	assert_int_equal(jint(ev, "steps"), jint(j, "steps"));
	assert_string_equal(jstr(ev, "idevid_serial"), jstr(jget(j, "result"), "idevid_serial"));
	assert_string_equal(jstr(ev, "new_serial"), jstr(jget(j, "result"), "new_serial"));
	assert_int_equal(jint(ev, "record_id"), jint(jget(j, "result"), "record_id"));
	json_object_put(ev);
	return j;
}

static int64_t submit(const char *method, const char *params)
{
	json_object *p = json_tokener_parse(params), *res = NULL;
	int64_t id;

	if (kl_client_call_timeout(g.c, method, p, &res, 60000) < 0)
		fail_msg("%s %s: %s", method, params, kl_error_detail());
	id = jint(res, "job");
	assert_true(id > 0);
	/* The slot's worker may have taken it already. */
	if (strcmp(jstr(res, "state"), "queued") != 0 && strcmp(jstr(res, "state"), "running") != 0)
		fail_msg("a new job is %s", jstr(res, "state"));
	json_object_put(res);
	return id;
}

static int64_t provision(const char *slot, const char *serial, const char *ek)
{
	char p[256];

	snprintf(p, sizeof(p), "{\"slot\":\"%s\",\"serial\":\"%s\",\"ek_type\":\"%s\"}", slot,
	         serial, ek);
	return submit("job.provision", p);
}

/* ---- outside checks ---- */

static void path_in(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", g.e.dir, name);
}

/* openssl verify of a PEM certificate against HOME/ca/chain.pem. */
static void verify_pem(const char *pem)
{
	char path[PATH_MAX];
	FILE *f;

	path_in(path, sizeof(path), "cert.pem");
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(pem, f);
	fclose(f);
	const char *v[] = { "openssl", "verify", "-x509_strict", "-CAfile", g.chain, path, NULL };
	assert_int_equal(kl_floor_run(g.e.floor, NULL, NULL, v), 0);
}

/* The CRL at HOME/crl/issuing.crl, checked with openssl against the issuing
 * CA, then parsed: the reason code of serial (hex), 0 when listed without a
 * reason, -1 when not listed. */
static int crl_reason(const char *serial)
{
	char issuing[PATH_MAX];
	BIGNUM *want = NULL;
	X509_CRL *crl;
	FILE *f;
	int found = -1;

	snprintf(issuing, sizeof(issuing), "%s/ca/issuing.pem", g.e.home);
	const char *v[] = { "openssl", "crl",     "-inform", "DER",   "-in", g.crl,
		            "-noout",  "-verify", "-CAfile", issuing, NULL };
	assert_int_equal(kl_floor_run(g.e.floor, NULL, NULL, v), 0);
	f = fopen(g.crl, "rb");
	assert_non_null(f);
	crl = d2i_X509_CRL_fp(f, NULL);
	fclose(f);
	assert_non_null(crl);
	assert_true(BN_hex2bn(&want, serial) > 0);
	STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
	for (int i = 0; i < sk_X509_REVOKED_num(revs) && found < 0; i++) {
		X509_REVOKED *rv = sk_X509_REVOKED_value(revs, i);
		BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(rv), NULL);

		if (bn && BN_cmp(bn, want) == 0) {
			ASN1_ENUMERATED *e =
			    X509_REVOKED_get_ext_d2i(rv, NID_crl_reason, NULL, NULL);

			found = e ? (int)ASN1_ENUMERATED_get(e) : 0;
			ASN1_ENUMERATED_free(e);
		}
		BN_free(bn);
	}
	BN_free(want);
	X509_CRL_free(crl);
	return found;
}

/* devices.show's answer for serial. */
static json_object *show(const char *serial)
{
	return call_ok(g.c, "devices.show", "{\"serial\":\"%s\"}", serial);
}

static const char *dev_state(json_object *shown)
{
	return jstr(jget(shown, "device"), "state");
}

/* The certificate of the device with that certificate serial, or NULL. */
static json_object *cert_by_serial(json_object *shown, const char *serial)
{
	json_object *certs = jget(shown, "certificates");

	for (size_t i = 0; certs && i < json_object_array_length(certs); i++) {
		json_object *c = json_object_array_get_idx(certs, i);

		if (strcmp(jstr(c, "serial"), serial) == 0)
			return c;
	}
	return NULL;
}

static size_t valid_certs(json_object *shown)
{
	json_object *certs = jget(shown, "certificates");
	size_t n = 0;

	for (size_t i = 0; certs && i < json_object_array_length(certs); i++) {
		json_object *c = json_object_array_get_idx(certs, i);

		n += !jbool(c, "revoked") && strcmp(jstr(c, "state"), "issued") == 0;
	}
	return n;
}

/* The certificate in the DUT's NV index, read with tpm2_nvread: its serial
 * in lowercase hex. */
static void nv_cert_serial(const kl_dut *d, const char *index, char *out, size_t size)
{
	char der[PATH_MAX], *hex;
	X509 *x;
	FILE *f;
	BIGNUM *bn;

	path_in(der, sizeof(der), "nv.der");
	const char *nvread[] = { "tpm2_nvread", index, "-C", "o", "-o", der, NULL };
	assert_int_equal(kl_dut_tool(g.e.floor, d, "/dev/null", nvread), 0);
	f = fopen(der, "rb");
	assert_non_null(f);
	x = d2i_X509_fp(f, NULL);
	fclose(f);
	assert_non_null(x);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = BN_bn2hex(bn);
	{
		const char *h = hex;
		size_t i = 0;

		while (h[0] == '0' && h[1])
			h++;
		for (; h[i] && i + 1 < size; i++)
			out[i] = (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] - 'A' + 'a' : h[i]);
		out[i] = '\0';
	}
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
}

/* ---- the daemon ---- */

static void write_conf(const char *text)
{
	FILE *f = fopen(g.conf, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* text with the first `from` replaced by `to` (malloc'd). */
static char *replace(const char *text, const char *from, const char *to)
{
	const char *at = strstr(text, from);
	char *out;

	if (!at)
		fail_msg("test bug: '%s' not in keyline.conf", from);
	out = malloc(strlen(text) + strlen(to) + 1);
	memcpy(out, text, (size_t)(at - text));
	strcpy(out + (at - text), to);
	strcat(out, at + strlen(from));
	return out;
}

/* keyline.conf's additions: the [station] settings (the file ends inside
 * [station]), [slots] and [roles]. */
static char *station_conf(const char *base, bool slots, bool roles)
{
	char *text = malloc(strlen(base) + 4096);
	size_t n = 0;

	n += (size_t)sprintf(text + n,
	                     "%s\nsocket = %s\nsocket_group = nogroup\nidle_timeout_s = 2\n"
	                     "link_probe_s = 1\nmax_clients = %d\nmax_clients_per_uid = %d\n",
	                     base, g.sock, MAX_CLIENTS, MAX_CLIENTS);
	if (slots) {
		n += (size_t)sprintf(text + n, "\n[slots]\n");
		for (int i = 0; i < NDUTS; i++)
			n += (size_t)sprintf(text + n, "%s = %s\n", slot_names[i], g.duts[i]->tcti);
	}
	if (roles)
		n += (size_t)sprintf(text + n,
		                     "\n[roles]\n"
		                     "operator = uid:0, uid:%d\n"
		                     "automation = uid:0\n"
		                     "officer = uid:0\n"
		                     "service = uid:0\n"
		                     "reader = uid:0, uid:%d\n",
		                     OPERATOR_UID, READER_UID);
	return text;
}

/* `keyline --home HOME station` as a child, its output in err. */
/* The exit status of child pid once it exits (-2: killed by a signal), or
 * -1 when it still runs after ms (a bound against hanging). */
static int wait_exit(pid_t pid, int64_t ms)
{
	int64_t deadline = mono_ms() + ms;
	int st;

	do {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -2;
		sleep_ms(50);
	} while (mono_ms() < deadline);
	return -1;
}

/* Starts `keyline --home HOME station` as a child and connects g.c. */
static void daemon_start(void)
{
	g.daemon = station_spawn(g.e.home, g.daemon_err);
	station_wait_serving(g.daemon, g.sock, g.daemon_err);
	if (kl_client_connect(g.sock, &g.c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
}

/* SIGTERM; returns the exit status (-1: had to be killed). */
static int daemon_stop(void)
{
	int r;

	kl_client_free(g.c);
	g.c = NULL;
	r = station_stop(g.daemon, 60000);
	g.daemon = 0;
	return r;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	char p[PATH_MAX];
	const char *cp1[4], *cp2[4];
	char root[PATH_MAX], inter[PATH_MAX];

	(void)state;
	if (kl_floor_new(&g.e.floor) < 0 || kl_floor_vendor(g.e.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.e.floor, g.acme, "st", NDUTS, &g.duts) < 0)
		return -1;
	for (int i = 0; i < NDUTS; i++)
		if (kl_dut_start(g.e.floor, g.duts[i]) < 0)
			return -1;
	env_paths(&g.e, g.e.floor);
	snprintf(g.daemon_err, sizeof(g.daemon_err), "%s/station.log", g.e.dir);
	snprintf(g.conf, sizeof(g.conf), "%s/keyline.conf", g.e.home);
	snprintf(g.crl, sizeof(g.crl), "%s/crl/issuing.crl", g.e.home);
	snprintf(g.chain, sizeof(g.chain), "%s/ca/chain.pem", g.e.home);
	/* The socket lives outside the home (mode 0700) in a directory other
	 * users may traverse, so that the role tests' children reach it; the
	 * socket itself is 0660 root:nogroup. */
	snprintf(g.sock, sizeof(g.sock), "%s/run/station.sock", g.e.dir);
	snprintf(p, sizeof(p), "%s/run", g.e.dir);
	if (chmod(g.e.dir, 0711) < 0 || mkdir(p, 0711) < 0 || chmod(p, 0711) < 0)
		return -1;
	if (keyline(&g.e, "ca", "init", NULL) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/trust", g.e.home);
	mkdir(p, 0755);
	snprintf(root, sizeof(root), "%s/trust/acme.pem", g.e.home);
	snprintf(inter, sizeof(inter), "%s/trust/acme-issuing.pem", g.e.home);
	cp1[0] = cp2[0] = "cp";
	cp1[1] = g.acme->root_pem;
	cp1[2] = root;
	cp2[1] = g.acme->intermediate_pem;
	cp2[2] = inter;
	cp1[3] = cp2[3] = NULL;
	if (kl_floor_run(g.e.floor, NULL, NULL, cp1) != 0 ||
	    kl_floor_run(g.e.floor, NULL, NULL, cp2) != 0)
		return -1;
	g.base_conf = slurp(g.conf);
	if (getenv("KL_STATION_TRACE"))
		trace = fopen(getenv("KL_STATION_TRACE"), "w");
	return g.base_conf[0] ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++)
		if (g.others[i] > 0) {
			kill(g.others[i], SIGKILL);
			waitpid(g.others[i], NULL, 0);
		}
	if (g.daemon > 0) {
		char *err = slurp(g.daemon_err);

		daemon_stop();
		fprintf(stderr, "station log:\n%s\n", err);
		free(err);
	}
	free(g.base_conf);
	if (trace)
		fclose(trace);
	kl_floor_free(g.e.floor);
	return 0;
}

/* ---- the tests ---- */

/* keyline station refuses to start, naming the problem, on a config with no
 * [slots], a PIN source that does not exist, an empty trust bundle, and bad
 * [roles]; --check passes on the good one. */
static void test_start_refusals(void **state)
{
	char empty[PATH_MAX], *text, *tmp;

	(void)state;
	text = station_conf(g.base_conf, false, true);
	write_conf(text);
	free(text);
	assert_int_not_equal(keyline(&g.e, "station", NULL), 0);
	assert_in(g.e.err, "no [slots]");

	tmp = replace(g.base_conf, "pin = file:${home}/secrets/keyline-ca.pin",
	              "pin = env:KL_TEST_NO_SUCH_PIN");
	text = station_conf(tmp, true, true);
	write_conf(text);
	free(text);
	free(tmp);
	assert_int_not_equal(keyline(&g.e, "station", NULL), 0);
	assert_in(g.e.err, "KL_TEST_NO_SUCH_PIN");

	snprintf(empty, sizeof(empty), "%s/empty-trust", g.e.dir);
	assert_int_equal(mkdir(empty, 0755), 0);
	char line[PATH_MAX + 16];
	snprintf(line, sizeof(line), "trust = %s", empty);
	tmp = replace(g.base_conf, "trust = ${home}/trust", line);
	text = station_conf(tmp, true, true);
	write_conf(text);
	free(text);
	free(tmp);
	assert_int_not_equal(keyline(&g.e, "station", NULL), 0);
	assert_in(g.e.err, "trust bundle");
	assert_in(g.e.err, empty);

	text = station_conf(g.base_conf, true, false);
	tmp = malloc(strlen(text) + 64);
	sprintf(tmp, "%s\n[roles]\nreader = user:kl-no-such-user\n", text);
	write_conf(tmp);
	free(tmp);
	assert_int_not_equal(keyline(&g.e, "station", NULL), 0);
	assert_in(g.e.err, "no user 'kl-no-such-user'");
	tmp = malloc(strlen(text) + 64);
	sprintf(tmp, "%s\n[roles]\nadmin = *\n", text);
	write_conf(tmp);
	free(tmp);
	free(text);
	assert_int_not_equal(keyline(&g.e, "station", NULL), 0);
	assert_in(g.e.err, "admin is not a role");
	/* Nothing was left listening. */
	assert_int_not_equal(access(g.sock, F_OK), 0);

	text = station_conf(g.base_conf, true, true);
	write_conf(text);
	free(text);
	assert_int_equal(keyline(&g.e, "station", "--check", NULL), 0);
	assert_in(g.e.out, "HSM logged in");
	assert_in(g.e.out, "5 slot(s)");
	/* The station id and the socket are the ones keyline.conf names. */
	{
		static const char key[] = "\n[station]\nid = ";
		const char *id = strstr(g.base_conf, key);
		char want[PATH_MAX + 64];

		assert_non_null(id);
		id += strlen(key);
		snprintf(want, sizeof(want), "station %.*s: HSM logged in", (int)strcspn(id, "\n"),
		         id);
		assert_in(g.e.out, want);
		snprintf(want, sizeof(want), "socket %s\n", g.sock);
		assert_in(g.e.out, want);
	}
}

/* A station started while something that is not a socket sits at
 * station.socket refuses, naming it, and leaves it alone (a regular file,
 * a symbolic link to one). */
static void test_socket_not_a_socket(void **state)
{
	char err[PATH_MAX], target[PATH_MAX], *text;
	struct stat st;
	pid_t pid;
	int rc;
	FILE *f;

	(void)state;
	text = station_conf(g.base_conf, true, true);
	write_conf(text);
	free(text);
	path_in(err, sizeof(err), "station-file.log");
	f = fopen(g.sock, "w");
	assert_non_null(f);
	fputs("not a socket\n", f);
	fclose(f);
	pid = station_spawn(g.e.home, err);
	rc = wait_exit(pid, 120000);
	if (rc == -1) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		fail_msg("the station replaced a regular file at station.socket and served");
	}
	assert_int_equal(rc, 1);
	assert_in(err, "is not a socket");
	assert_in(err, g.sock);
	assert_int_equal(lstat(g.sock, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	text = slurp(g.sock);
	assert_string_equal(text, "not a socket\n");
	free(text);
	assert_int_equal(unlink(g.sock), 0);

	/* A symbolic link (to a file that is not there) is not a socket either. */
	path_in(target, sizeof(target), "elsewhere");
	assert_int_equal(symlink(target, g.sock), 0);
	pid = station_spawn(g.e.home, err);
	rc = wait_exit(pid, 120000);
	if (rc == -1) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		fail_msg("the station replaced a symbolic link at station.socket and served");
	}
	assert_int_equal(rc, 1);
	assert_in(err, "is not a socket");
	assert_int_equal(lstat(g.sock, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(unlink(g.sock), 0);
	assert_int_not_equal(access(target, F_OK), 0);
}

/* Two stations started at once on one socket path: exactly one serves, the
 * other refuses, saying a station runs there; the one serving is never
 * robbed of its socket. Several rounds, each over the socket file a killed
 * station left behind (both find it dead). */
static void test_two_stations_at_once(void **state)
{
	char err[2][PATH_MAX];

	(void)state;
	path_in(err[0], sizeof(err[0]), "station-1.log");
	path_in(err[1], sizeof(err[1]), "station-2.log");
	for (int round = 0; round < 4; round++) {
		pid_t *pid = g.others;
		int rc[2] = { -1, -1 }, serving = -1;
		int64_t deadline = mono_ms() + 180000;
		kl_client *c = NULL;
		json_object *r;

		pid[0] = station_spawn(g.e.home, err[0]);
		pid[1] = station_spawn(g.e.home, err[1]);
		/* Until one has exited and the other answers. */
		while (mono_ms() < deadline) {
			for (int i = 0; i < 2; i++) {
				int st;

				if (rc[i] == -1 && waitpid(pid[i], &st, WNOHANG) == pid[i]) {
					rc[i] = WIFEXITED(st) ? WEXITSTATUS(st) : -2;
					pid[i] = 0;
				}
			}
			if ((rc[0] != -1 || rc[1] != -1) && kl_client_connect(g.sock, &c) == 0)
				break;
			if (rc[0] != -1 && rc[1] != -1)
				break;
			sleep_ms(50);
		}
		if (rc[0] == -1 && rc[1] == -1)
			fail_msg("round %d: two stations serve one socket path", round);
		for (int i = 0; i < 2; i++)
			if (rc[i] == -1)
				serving = i;
		if (serving < 0)
			fail_msg("round %d: neither station serves (exit %d, %d):\n%s\n%s", round,
			         rc[0], rc[1], slurp(err[0]), slurp(err[1]));
		assert_non_null(c);
		r = call_ok(c, "rpc.ping", NULL);
		assert_true(jbool(r, "pong"));
		json_object_put(r);
		kl_client_free(c);
		assert_int_equal(rc[1 - serving], 1);
		assert_in(err[1 - serving], "already running on");
		/* The one serving stops cleanly and removes its socket. */
		kill(pid[serving], SIGTERM);
		assert_int_equal(wait_exit(pid[serving], 60000), 0);
		pid[serving] = 0;
		assert_int_not_equal(access(g.sock, F_OK), 0);
		/* The next round starts over a socket file left behind, as by a
		 * station killed outright. */
		{
			int64_t until = mono_ms() + 120000;

			pid[0] = station_spawn(g.e.home, err[0]);
			c = NULL;
			while (kl_client_connect(g.sock, &c) < 0 && mono_ms() < until)
				sleep_ms(50);
			assert_non_null(c);
			kl_client_free(c);
			kill(pid[0], SIGKILL);
			waitpid(pid[0], NULL, 0);
			pid[0] = 0;
			assert_int_equal(access(g.sock, F_OK), 0);
		}
	}
}

/* The daemon starts; the built-ins, status, slots, pre-registration. */
static void test_start(void **state)
{
	json_object *r, *a;
	char items[4096];
	size_t n = 0;
	int64_t deadline;
	bool all_up = false;

	(void)state;
	daemon_start();
	r = call_ok(g.c, "rpc.ping", NULL);
	assert_true(jbool(r, "pong"));
	json_object_put(r);

	/* root holds every role: every method of the table is listed. */
	r = call_ok(g.c, "rpc.methods", NULL);
	a = jget(r, "methods");
	assert_non_null(a);
	{
		static const char *const all[] = {
			"station.status",
			"slots.list",
			"job.provision",
			"job.get",
			"job.list",
			"job.abort",
			"events.subscribe",
			"events.unsubscribe",
			"devices.list",
			"devices.show",
			"devices.preregister",
			"device.renew",
			"device.revoke",
			"device.decommission",
			"device.repurpose",
			"device.lost",
			"device.record",
			"crl.publish",
			"ca.status",
			"audit.list",
			"audit.verify",
		};
		const char *text = dump(a);

		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
			char q[64];

			snprintf(q, sizeof(q), "\"%s\"", all[i]);
			assert_contains(text, q);
		}
	}
	json_object_put(r);

	r = call_ok(g.c, "station.status", NULL);
	assert_true(jbool(r, "running"));
	assert_true(jbool(r, "hsm_logged_in"));
	assert_false(jbool(r, "stopping"));
	assert_string_not_equal(jstr(r, "station"), "");
	assert_string_not_equal(jstr(r, "version"), "");
	assert_int_equal(jint(jget(r, "slots"), "total"), NDUTS);
	assert_int_equal(jint(jget(r, "slots"), "busy"), 0);
	assert_int_equal(jint(jget(r, "jobs"), "running"), 0);
	assert_true(jint(r, "clients") >= 1);
	json_object_put(r);

	/* Every slot's link is probed (link_probe_s = 1) and found up. */
	deadline = mono_ms() + 60000;
	while (!all_up && mono_ms() < deadline) {
		r = call_ok(g.c, "slots.list", NULL);
		a = jget(r, "slots");
		assert_int_equal(json_object_array_length(a), NDUTS);
		all_up = true;
		for (int i = 0; i < NDUTS; i++) {
			json_object *s = json_object_array_get_idx(a, (size_t)i);

			assert_string_equal(jstr(s, "name"), slot_names[i]);
			assert_string_equal(jstr(s, "link"), g.duts[i]->tcti);
			assert_string_equal(jstr(s, "state"), "idle");
			all_up &= jbool(s, "link_up");
		}
		json_object_put(r);
		if (!all_up)
			sleep_ms(200);
	}
	assert_true(all_up);

	r = call_ok(g.c, "events.subscribe", NULL);
	assert_true(jbool(r, "subscribed"));
	json_object_put(r);

	/* Five serials for the DUTs and thirty more for paging, all or nothing. */
	n += (size_t)snprintf(items + n, sizeof(items) - n, "[");
	for (int i = 1; i <= NDUTS; i++)
		n += (size_t)snprintf(items + n, sizeof(items) - n, "\"SN-%04d\",", i);
	for (int i = 0; i < 30; i++)
		n += (size_t)snprintf(items + n, sizeof(items) - n, "{\"serial\":\"SN-10%02d\"}%s",
		                      i, i < 29 ? "," : "]");
	r = call_ok(g.c, "devices.preregister",
	            "{\"tenant\":\"acme\",\"work_order\":\"wo-1\",\"items\":%s}", items);
	assert_int_equal(jint(r, "entries"), 35);
	assert_int_equal(jint(r, "changed"), 35);
	assert_string_equal(jstr(r, "tenant"), "acme");
	json_object_put(r);
	/* Again: the same entries change nothing. */
	r = call_ok(g.c, "devices.preregister",
	            "{\"tenant\":\"acme\",\"work_order\":\"wo-1\",\"items\":[\"SN-0001\"]}");
	assert_int_equal(jint(r, "changed"), 0);
	json_object_put(r);
	/* Bad items: an error, and nothing registered. */
	assert_int_equal(call_err(g.c, NULL, 0, "devices.preregister",
	                          "{\"tenant\":\"acme\",\"work_order\":\"wo-1\",\"items\":[]}"),
	                 KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.preregister",
	                          "{\"tenant\":\"acme\",\"work_order\":\"wo-1\","
	                          "\"items\":[\"SN-9001\", 7]}"),
	                 KL_RPC_E_PARAMS);
	r = call_ok(g.c, "devices.list", "{\"search\":\"SN-9001\"}");
	assert_int_equal(jint(r, "total"), 0);
	json_object_put(r);
}

/* Three DUTs at once, one per EK type: job.provision, the events, job.get,
 * the registry and the certificates from the outside. */
static void test_provision(void **state)
{
	static const char *const eks[] = { "p256", "rsa2048", NULL, NULL, NULL };
	static const int which[] = { 0, 1, 4 };
	int64_t jobs[3];
	json_object *r, *a, *ev;
	char serial[16], nv[48];

	(void)state;
	for (int k = 0; k < 3; k++) {
		int i = which[k];

		snprintf(serial, sizeof(serial), "SN-%04d", i + 1);
		jobs[k] = provision(slot_names[i], serial, eks[i] ? eks[i] : "auto");
	}
	/* A busy slot refuses a second job. */
	{
		char msg[256];

		assert_int_equal(call_err(g.c, msg, sizeof(msg), "job.provision",
		                          "{\"slot\":\"A\",\"serial\":\"SN-0003\"}"),
		                 KL_RPC_E_KL_BASE - KL_E_STATE);
		assert_contains(msg, "busy");
	}
	/* The first job's steps as events, in order, ending in job.finished. */
	ev = wait_event(g.c, "job.started", jobs[0], NULL);
	assert_string_equal(jstr(ev, "slot"), "A");
	assert_string_equal(jstr(ev, "kind"), "provision");
	json_object_put(ev);
	ev = wait_event(g.c, "step.started", jobs[0], "discover");
	assert_int_equal(jint(ev, "index"), 1);
	assert_int_equal(jint(ev, "of"), 13);
	json_object_put(ev);
	ev = wait_event(g.c, "step.finished", jobs[0], "commit");
	assert_int_equal(jint(ev, "index"), 13);
	json_object_put(ev);

	for (int k = 0; k < 3; k++) {
		int i = which[k];
		json_object *j = finish(jobs[k], "passed"), *res = jget(j, "result"), *d, *c;

		snprintf(serial, sizeof(serial), "SN-%04d", i + 1);
		assert_true(jbool(res, "ok"));
		assert_string_equal(jstr(j, "serial"), serial);
		assert_string_equal(jstr(j, "slot"), slot_names[i]);
		assert_string_equal(jstr(j, "kind"), "provision");
		assert_string_equal(jstr(res, "ek_type"), eks[i] ? eks[i] : jstr(res, "ek_type"));
		assert_string_not_equal(jstr(res, "ek_type"), "");
		assert_string_not_equal(jstr(res, "iak_serial"), "");
		assert_string_not_equal(jstr(res, "idevid_serial"), "");
		assert_false(jbool(res, "already_provisioned"));
		assert_int_equal(json_object_object_length(jget(res, "step_ms")), 13);
		snprintf(g.iak[i], sizeof(g.iak[i]), "%s", jstr(res, "iak_serial"));
		snprintf(g.idevid[i], sizeof(g.idevid[i]), "%s", jstr(res, "idevid_serial"));

		/* The registry: provisioned, with both certificates, which verify
		 * against the CA chain from the outside. */
		d = show(serial);
		assert_string_equal(dev_state(d), "provisioned");
		assert_string_equal(jstr(jget(d, "device"), "tenant"), "acme");
		assert_string_not_equal(jstr(jget(d, "device"), "ek_sha256"), "");
		assert_true(json_object_array_length(jget(d, "evidence")) >= 1);
		assert_true(json_object_array_length(jget(d, "history")) >= 2);
		assert_true(json_object_array_length(jget(d, "audit")) >= 1);
		c = cert_by_serial(d, g.iak[i]);
		assert_non_null(c);
		assert_string_equal(jstr(c, "profile"), "iak");
		assert_false(jbool(c, "revoked"));
		verify_pem(jstr(c, "pem"));
		c = cert_by_serial(d, g.idevid[i]);
		assert_non_null(c);
		assert_string_equal(jstr(c, "profile"), "idevid");
		assert_contains(jstr(c, "subject"), serial);
		verify_pem(jstr(c, "pem"));
		json_object_put(d);
		json_object_put(j);

		/* The DUT holds its IDevID certificate in NV. */
		nv_cert_serial(g.duts[i], "0x01c90000", nv, sizeof(nv));
		assert_string_equal(nv, g.idevid[i]);
	}

	/* Provisioning again is recognised, nothing issued. */
	r = finish(provision("A", "SN-0001", "p256"), "passed");
	assert_true(jbool(jget(r, "result"), "already_provisioned"));
	json_object_put(r);

	r = call_ok(g.c, "job.list", "{\"limit\":2}");
	a = jget(r, "jobs");
	assert_int_equal(json_object_array_length(a), 2);
	assert_true(jint(json_object_array_get_idx(a, 0), "job") >
	            jint(json_object_array_get_idx(a, 1), "job"));
	json_object_put(r);
	r = call_ok(g.c, "job.list", "{\"slot\":\"B\"}");
	a = jget(r, "jobs");
	assert_int_equal(json_object_array_length(a), 1);
	assert_int_equal(jint(json_object_array_get_idx(a, 0), "job"), jobs[1]);
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "job.list", "{\"limit\":0}"), KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, NULL, 0, "job.get", "{\"job\":424242}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);

	r = call_ok(g.c, "station.status", NULL);
	assert_true(jint(jget(r, "jobs"), "passed") >= 4);
	json_object_put(r);
}

/* devices.list: paging, search, state and tenant filters, bad filters. */
static void test_devices_list(void **state)
{
	json_object *r, *a;
	char seen[40][24];
	size_t nseen = 0;

	(void)state;
	for (int off = 0; off < 35; off += 10) {
		r = call_ok(g.c, "devices.list", "{\"limit\":10,\"offset\":%d}", off);
		a = jget(r, "devices");
		assert_int_equal(jint(r, "total"), 35);
		assert_int_equal(jint(r, "offset"), off);
		assert_int_equal(jint(r, "count"), off < 30 ? 10 : 5);
		assert_int_equal(json_object_array_length(a), off < 30 ? 10 : 5);
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			const char *s = jstr(json_object_array_get_idx(a, i), "serial");

			/* Pages do not overlap. */
			for (size_t k = 0; k < nseen; k++)
				assert_string_not_equal(seen[k], s);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", s);
		}
		json_object_put(r);
	}
	assert_int_equal(nseen, 35);

	r = call_ok(g.c, "devices.list", "{\"search\":\"SN-10\",\"limit\":1000}");
	assert_int_equal(jint(r, "total"), 30);
	json_object_put(r);
	r = call_ok(g.c, "devices.list", "{\"state\":\"provisioned\"}");
	assert_int_equal(jint(r, "total"), 3);
	a = jget(r, "devices");
	for (size_t i = 0; i < json_object_array_length(a); i++)
		assert_string_equal(jstr(json_object_array_get_idx(a, i), "state"), "provisioned");
	json_object_put(r);
	r = call_ok(g.c, "devices.list", "{\"tenant\":\"acme\",\"newest_first\":true,\"limit\":1}");
	assert_int_equal(jint(r, "total"), 35);
	assert_int_equal(jint(r, "count"), 1);
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.list", "{\"tenant\":\"nobody\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.list", "{\"state\":\"shiny\"}"),
	                 KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.list", "{\"limit\":0}"), KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.show", "{\"serial\":\"SN-NONE\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
}

/* Registers serials PREFIX00..PREFIX(n-1) for tenant "pager". */
static void pager_add(const char *prefix, int n)
{
	char items[2048];
	size_t off = 0;
	json_object *r;

	off += (size_t)snprintf(items + off, sizeof(items) - off, "[");
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(items + off, sizeof(items) - off, "\"%s%02d\"%s", prefix, i,
		                        i + 1 < n ? "," : "]");
	r = call_ok(g.c, "devices.preregister",
	            "{\"tenant\":\"pager\",\"work_order\":\"wo-p\",\"items\":%s}", items);
	assert_int_equal(jint(r, "changed"), n);
	json_object_put(r);
}

/* devices.list paged by cursor over a registry that changes between pages:
 * every device there from the first page to the last is listed exactly
 * once, whatever was added before or after the cursor meanwhile (paging by
 * offset lists some twice when devices are added before it). */
static void test_devices_cursor(void **state)
{
	char seen[64][24], after[128] = "";
	size_t nseen = 0;
	int pages = 0, b_seen = 0, c_seen = 0;
	json_object *r;

	(void)state;
	pager_add("PG-B", 20);
	for (;;) {
		json_object *a;
		size_t n;

		if (after[0])
			r = call_ok(g.c, "devices.list",
			            "{\"tenant\":\"pager\",\"limit\":5,\"after\":\"%s\"}", after);
		else
			r = call_ok(g.c, "devices.list", "{\"tenant\":\"pager\",\"limit\":5}");
		a = jget(r, "devices");
		n = json_object_array_length(a);
		for (size_t i = 0; i < n; i++) {
			const char *sn = jstr(json_object_array_get_idx(a, i), "serial");

			for (size_t k = 0; k < nseen; k++)
				if (strcmp(seen[k], sn) == 0)
					fail_msg("%s listed twice (page %d)", sn, pages + 1);
			assert_true(nseen < 64);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", sn);
			b_seen += strncmp(sn, "PG-B", 4) == 0;
			c_seen += strncmp(sn, "PG-C", 4) == 0;
			/* Nothing before the cursor comes back. */
			assert_true(!after[0] || strcmp(sn, after) > 0);
		}
		if (n > 0)
			assert_string_equal(jstr(r, "after"),
			                    jstr(json_object_array_get_idx(a, n - 1), "serial"));
		else
			assert_true(json_object_is_type(jget(r, "after"), json_type_null));
		snprintf(after, sizeof(after), "%s", jstr(r, "after"));
		json_object_put(r);
		pages++;
		/* Between pages: devices that sort before the cursor, and after. */
		if (pages == 1)
			pager_add("PG-A", 7);
		if (pages == 2)
			pager_add("PG-C", 3);
		if (n < 5)
			break;
	}
	assert_int_equal(b_seen, 20);
	assert_int_equal(c_seen, 3);
	assert_int_equal(nseen, 23);

	/* Newest first, by its own cursor: every device once. */
	nseen = 0;
	after[0] = '\0';
	for (;;) {
		json_object *a;
		size_t n;

		if (after[0])
			r = call_ok(g.c, "devices.list",
			            "{\"tenant\":\"pager\",\"newest_first\":true,\"limit\":7,"
			            "\"after\":\"%s\"}",
			            after);
		else
			r = call_ok(g.c, "devices.list",
			            "{\"tenant\":\"pager\",\"newest_first\":true,\"limit\":7}");
		assert_int_equal(jint(r, "total"), 30);
		a = jget(r, "devices");
		n = json_object_array_length(a);
		for (size_t i = 0; i < n; i++) {
			const char *sn = jstr(json_object_array_get_idx(a, i), "serial");

			for (size_t k = 0; k < nseen; k++)
				assert_string_not_equal(seen[k], sn);
			assert_true(nseen < 64);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", sn);
		}
		snprintf(after, sizeof(after), "%s", jstr(r, "after"));
		json_object_put(r);
		if (n < 7)
			break;
	}
	assert_int_equal(nseen, 30);

	/* Bad cursors, named. */
	{
		char msg[256];

		assert_int_equal(call_err(g.c, msg, sizeof(msg), "devices.list",
		                          "{\"newest_first\":true,\"after\":\"PG-B01\"}"),
		                 KL_RPC_E_PARAMS);
		assert_contains(msg, "PG-B01");
		assert_int_equal(call_err(g.c, msg, sizeof(msg), "devices.list",
		                          "{\"offset\":3,\"after\":\"PG-B01\"}"),
		                 KL_RPC_E_PARAMS);
		assert_contains(msg, "not both");
	}
}

/* job.abort of a running job: it ends aborted at its next step and the
 * device goes back to preregistered; a finished job cannot be aborted. */
static void test_abort(void **state)
{
	json_object *r, *ev, *d;
	int64_t job;
	char msg[256];

	(void)state;
	job = provision("C", "SN-0003", "p384");
	/* Past the gates: the device is being provisioned. */
	ev = wait_event(g.c, "step.finished", job, "gates");
	json_object_put(ev);
	r = call_ok(g.c, "job.abort", "{\"job\":%lld}", (long long)job);
	assert_string_equal(jstr(r, "was"), "running");
	json_object_put(r);
	r = finish(job, "aborted");
	assert_string_equal(jstr(jget(r, "result"), "reason"), "aborted");
	assert_false(jbool(jget(r, "result"), "ok"));
	json_object_put(r);
	d = show("SN-0003");
	assert_string_equal(dev_state(d), "preregistered");
	assert_int_equal(valid_certs(d), 0);
	json_object_put(d);

	assert_int_equal(
	    call_err(g.c, msg, sizeof(msg), "job.abort", "{\"job\":%lld}", (long long)job),
	    KL_RPC_E_KL_BASE - KL_E_STATE);
	assert_contains(msg, "aborted");
	assert_int_equal(call_err(g.c, NULL, 0, "job.abort", "{\"job\":999999}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
	assert_alive();
}

/* A client that starts a job and goes away: the job still finishes, as
 * another client sees. */
static void test_disconnect_mid_job(void **state)
{
	kl_client *c = connect_root();
	json_object *r, *ev;
	int64_t job;

	(void)state;
	/* A job for a work order the tenant does not have: a named refusal at
	 * the gates (not an error of the call); a work order that is no name
	 * is an error of the call. */
	r = finish(submit("job.provision", "{\"slot\":\"C\",\"serial\":\"SN-0003\","
	                                   "\"ek_type\":\"p384\",\"work_order\":\"wo-9\"}"),
	           "failed");
	assert_string_equal(jstr(r, "work_order"), "wo-9");
	assert_string_equal(jstr(jget(r, "result"), "reason"), "unknown_work_order");
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "job.provision",
	                          "{\"slot\":\"C\",\"serial\":\"SN-0003\",\"work_order\":\"w 9\"}"),
	                 KL_RPC_E_PARAMS);

	json_object_put(call_ok(c, "events.subscribe", "{\"slot\":\"C\"}"));
	r = call_ok(c, "job.provision",
	            "{\"slot\":\"C\",\"serial\":\"SN-0003\",\"ek_type\":\"p384\","
	            "\"work_order\":\"wo-1\"}");
	job = jint(r, "job");
	json_object_put(r);
	ev = wait_event(c, "step.started", job, "ek_cert");
	json_object_put(ev);
	kl_client_free(c);

	r = finish(job, "passed");
	snprintf(g.iak[2], sizeof(g.iak[2]), "%s", jstr(jget(r, "result"), "iak_serial"));
	snprintf(g.idevid[2], sizeof(g.idevid[2]), "%s", jstr(jget(r, "result"), "idevid_serial"));
	assert_string_equal(jstr(jget(r, "result"), "ek_type"), "p384");
	json_object_put(r);
	r = show("SN-0003");
	assert_string_equal(dev_state(r), "provisioned");
	json_object_put(r);
	assert_alive();
}

/* device.revoke by certificate serial and by device, crl.publish, ca.status:
 * the CRL (verified and parsed) lists each serial with its reason. */
static void test_revoke_crl(void **state)
{
	json_object *r, *ev, *c;
	int64_t number;
	char msg[256];

	(void)state;
	r = call_ok(g.c, "device.revoke", "{\"certificate\":\"%s\",\"reason\":\"keyCompromise\"}",
	            g.iak[2]);
	assert_int_equal(jint(r, "revoked"), 1);
	assert_string_equal(jstr(r, "crl"), g.crl);
	number = jint(r, "crl_number");
	assert_true(number >= 1);
	json_object_put(r);
	assert_int_equal(crl_reason(g.iak[2]), REASON_KEY_COMPROMISE);
	assert_int_equal(crl_reason(g.idevid[2]), -1);

	r = call_ok(g.c, "device.revoke",
	            "{\"serial\":\"SN-0003\",\"reason\":\"affiliationChanged\"}");
	assert_int_equal(jint(r, "revoked"), 1);
	assert_true(jint(r, "crl_number") > number);
	json_object_put(r);
	assert_int_equal(crl_reason(g.idevid[2]), REASON_AFFILIATION_CHANGED);
	assert_int_equal(crl_reason(g.iak[2]), REASON_KEY_COMPROMISE);
	r = show("SN-0003");
	assert_string_equal(dev_state(r), "revoked");
	assert_int_equal(valid_certs(r), 0);
	c = cert_by_serial(r, g.idevid[2]);
	assert_string_equal(jstr(c, "revocation_reason"), "affiliationChanged");
	json_object_put(r);

	/* Bad requests. */
	assert_int_equal(call_err(g.c, msg, sizeof(msg), "device.revoke", "{}"), KL_RPC_E_PARAMS);
	assert_contains(msg, "either serial");
	assert_int_equal(call_err(g.c, NULL, 0, "device.revoke",
	                          "{\"serial\":\"SN-0003\",\"certificate\":\"%s\"}", g.iak[2]),
	                 KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, msg, sizeof(msg), "device.revoke",
	                          "{\"serial\":\"SN-0003\",\"reason\":\"boredom\"}"),
	                 KL_RPC_E_PARAMS);
	assert_contains(msg, "boredom");
	assert_true(call_err(g.c, NULL, 0, "device.revoke", "{\"certificate\":\"7e57\"}") < -32000);

	/* crl.publish: a fresh CRL with a higher number, and an event. */
	r = call_ok(g.c, "crl.publish", NULL);
	assert_string_equal(jstr(r, "path"), g.crl);
	assert_true(jint(r, "crl_number") > number + 1);
	number = jint(r, "crl_number");
	json_object_put(r);
	ev = wait_event(g.c, "crl.published", 0, NULL);
	assert_string_equal(jstr(ev, "path"), g.crl);
	json_object_put(ev);
	assert_int_equal(crl_reason(g.idevid[2]), REASON_AFFILIATION_CHANGED);

	r = call_ok(g.c, "ca.status", NULL);
	assert_true(jbool(r, "hsm_logged_in"));
	assert_contains(jstr(jget(r, "root"), "subject"), "CN=");
	assert_contains(jstr(jget(r, "issuing"), "subject"), "CN=");
	assert_string_not_equal(jstr(jget(r, "issuing"), "serial"), "");
	assert_non_null(jget(r, "records")); /* the sanitization-record signer */
	assert_true(jint(jget(r, "certificates"), "issued") >= 8);
	assert_true(jint(jget(r, "certificates"), "revoked") >= 2);
	assert_int_equal(jint(r, "crl_number"), number);
	assert_string_equal(jstr(r, "crl"), g.crl);
	json_object_put(r);
}

/* device.lost on a provisioned device not present: its certificates are
 * revoked (keyCompromise by default), it is lost, its EK deny-listed. */
static void test_lost(void **state)
{
	json_object *r;

	(void)state;
	r = call_ok(g.c, "device.lost", "{\"serial\":\"SN-0005\"}");
	assert_int_equal(jint(r, "revoked"), 2);
	json_object_put(r);
	assert_int_equal(crl_reason(g.iak[4]), REASON_KEY_COMPROMISE);
	assert_int_equal(crl_reason(g.idevid[4]), REASON_KEY_COMPROMISE);
	r = show("SN-0005");
	assert_string_equal(dev_state(r), "lost");
	assert_int_equal(valid_certs(r), 0);
	{
		json_object *certs = jget(r, "certificates");

		assert_int_equal(json_object_array_length(certs), 2);
		for (size_t i = 0; i < 2; i++) {
			json_object *c = json_object_array_get_idx(certs, i);

			assert_string_equal(jstr(c, "revocation_reason"), "keyCompromise");
			assert_int_equal(crl_reason(jstr(c, "serial")), REASON_KEY_COMPROMISE);
		}
	}
	json_object_put(r);
	/* Found again on the line: its EK is denied. */
	r = finish(provision("E", "SN-0005", "auto"), "failed");
	assert_string_equal(jstr(jget(r, "result"), "reason"), "ek_denied");
	json_object_put(r);
	/* Unknown serial: a lifecycle refusal, answered with its sentence. */
	{
		char msg[256];

		assert_int_equal(
		    call_err(g.c, msg, sizeof(msg), "device.lost", "{\"serial\":\"SN-NONE\"}"),
		    KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
		assert_contains(msg, "SN-NONE");
	}
}

/* The lifecycle on a present DUT: renew, then decommission with
 * cryptographic erase and a signed record, then a refused provisioning. */
static void test_renew_decommission(void **state)
{
	json_object *r, *d, *c, *certs;
	char nv[48], new_serial[48], out[PATH_MAX];
	int64_t rec;
	kl_dut *dut = g.duts[0];

	(void)state;
	r = finish(submit("device.renew", "{\"slot\":\"A\",\"serial\":\"SN-0001\"}"), "passed");
	assert_string_equal(jstr(r, "kind"), "renew");
	snprintf(new_serial, sizeof(new_serial), "%s", jstr(jget(r, "result"), "new_serial"));
	assert_string_not_equal(new_serial, "");
	assert_string_not_equal(new_serial, g.idevid[0]);
	json_object_put(r);

	d = show("SN-0001");
	assert_string_equal(dev_state(d), "provisioned");
	c = cert_by_serial(d, new_serial);
	assert_non_null(c);
	assert_string_equal(jstr(c, "profile"), "idevid");
	assert_false(jbool(c, "revoked"));
	verify_pem(jstr(c, "pem"));
	c = cert_by_serial(d, g.idevid[0]);
	assert_true(jbool(c, "revoked"));
	assert_string_equal(jstr(c, "revocation_reason"), "superseded");
	json_object_put(d);
	assert_int_equal(crl_reason(g.idevid[0]), REASON_SUPERSEDED);
	assert_int_equal(crl_reason(new_serial), -1);
	/* The TPM holds the new certificate. */
	nv_cert_serial(dut, "0x01c90000", nv, sizeof(nv));
	assert_string_equal(nv, new_serial);

	/* Decommission: every certificate revoked, the TPM erased. */
	r = finish(submit("device.decommission", "{\"slot\":\"A\",\"serial\":\"SN-0001\"}"),
	           "passed");
	assert_string_equal(jstr(r, "kind"), "decommission");
	rec = jint(jget(r, "result"), "record_id");
	assert_true(rec > 0);
	json_object_put(r);
	d = show("SN-0001");
	assert_string_equal(dev_state(d), "decommissioned");
	assert_int_equal(valid_certs(d), 0);
	certs = jget(d, "certificates");
	for (size_t i = 0; i < json_object_array_length(certs); i++) {
		json_object *x = json_object_array_get_idx(certs, i);
		const char *s = jstr(x, "serial");

		if (strcmp(s, g.idevid[0]) == 0)
			assert_int_equal(crl_reason(s), REASON_SUPERSEDED);
		else if (strcmp(jstr(x, "state"), "issued") == 0)
			assert_int_equal(crl_reason(s), REASON_CESSATION);
	}
	assert_int_equal(crl_reason(new_serial), REASON_CESSATION);
	assert_int_equal(crl_reason(g.iak[0]), REASON_CESSATION);
	json_object_put(d);

	path_in(out, sizeof(out), "tool.txt");
	const char *handles[] = { "tpm2_getcap", "handles-persistent", NULL };
	assert_int_equal(kl_dut_tool(g.e.floor, dut, out, handles), 0);
	{
		char *t = slurp(out);

		assert_null(strstr(t, "0x81020000"));
		assert_null(strstr(t, "0x81020001"));
		free(t);
	}
	const char *nvpub[] = { "tpm2_nvreadpublic", NULL };
	assert_int_equal(kl_dut_tool(g.e.floor, dut, out, nvpub), 0);
	{
		char *t = slurp(out);

		assert_null(strstr(t, "0x1c90000"));
		assert_null(strstr(t, "0x1c90010"));
		assert_null(strstr(t, "0x01c90000"));
		assert_null(strstr(t, "0x01c90010"));
		/* The vendor's EK certificates are the vendor's: still there. */
		assert_true(strstr(t, "0x1c00002") || strstr(t, "0x01c00002"));
		free(t);
	}

	/* The signed sanitization record. */
	r = call_ok(g.c, "device.record", "{\"serial\":\"SN-0001\"}");
	{
		json_object *rec_obj = jget(r, "record");

		assert_non_null(jget(rec_obj, "record"));
		assert_string_not_equal(jstr(rec_obj, "signature"), "");
		assert_contains(jstr(rec_obj, "signer"), "BEGIN CERTIFICATE");
		assert_contains(dump(jget(rec_obj, "record")), "SN-0001");
	}
	json_object_put(r);
	r = call_ok(g.c, "device.record", "{\"serial\":\"SN-0001\",\"id\":%lld}", (long long)rec);
	assert_non_null(jget(r, "record"));
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "device.record", "{\"serial\":\"SN-0002\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);

	/* Its EK is denied now: the next provisioning is refused. */
	r = finish(provision("A", "SN-0001", "p256"), "failed");
	assert_string_equal(jstr(jget(r, "result"), "reason"), "ek_denied");
	assert_string_equal(jstr(jget(r, "result"), "failed_step"), "gates");
	json_object_put(r);
	/* A decommissioned device cannot be renewed. */
	r = finish(submit("device.renew", "{\"slot\":\"A\",\"serial\":\"SN-0001\"}"), "failed");
	assert_string_not_equal(jstr(jget(r, "result"), "reason"), "");
	json_object_put(r);
	assert_alive();
}

/* device.repurpose, then a new life under another tenant. */
static void test_repurpose(void **state)
{
	json_object *r, *d;
	char nv[48];

	(void)state;
	r = finish(submit("device.repurpose", "{\"slot\":\"B\",\"serial\":\"SN-0002\"}"), "passed");
	assert_string_equal(jstr(r, "kind"), "repurpose");
	json_object_put(r);
	d = show("SN-0002");
	assert_string_equal(dev_state(d), "repurposed");
	assert_int_equal(valid_certs(d), 0);
	json_object_put(d);
	assert_int_equal(crl_reason(g.idevid[1]), REASON_CESSATION);

	r = call_ok(g.c, "devices.preregister",
	            "{\"tenant\":\"globex\",\"work_order\":\"wo-g\",\"items\":[\"SN-0002\"]}");
	assert_int_equal(jint(r, "changed"), 1);
	json_object_put(r);
	d = show("SN-0002");
	assert_string_equal(dev_state(d), "preregistered");
	assert_string_equal(jstr(jget(d, "device"), "tenant"), "globex");
	json_object_put(d);

	r = finish(provision("B", "SN-0002", "rsa2048"), "passed");
	{
		const char *idevid = jstr(jget(r, "result"), "idevid_serial");

		d = show("SN-0002");
		assert_string_equal(dev_state(d), "provisioned");
		assert_string_equal(jstr(jget(d, "device"), "tenant"), "globex");
		assert_int_equal(valid_certs(d), 2);
		verify_pem(jstr(cert_by_serial(d, idevid), "pem"));
		nv_cert_serial(g.duts[1], "0x01c90000", nv, sizeof(nv));
		assert_string_equal(nv, idevid);
		json_object_put(d);
	}
	json_object_put(r);
}

/* A forked child, dropped to uid (and the socket's group), runs fn and writes
 * what it saw to a report that the parent reads. */
typedef void (*child_fn)(FILE *out);

static char *as_user(uid_t uid, child_fn fn)
{
	char report[PATH_MAX];
	pid_t pid;
	int st;
	FILE *f;

	path_in(report, sizeof(report), "child.txt");
	f = fopen(report, "w");
	assert_non_null(f);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gid_t gid = PEER_GID;

		if (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0) {
			fprintf(f, "setuid failed: %s\n", strerror(errno));
			fclose(f);
			_exit(2);
		}
		fn(f);
		fclose(f);
		_exit(0);
	}
	fclose(f);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	{
		char *text = slurp(report);

		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("child as uid %u failed (0x%x):\n%s", (unsigned)uid, st, text);
		return text;
	}
}

static void child_call(kl_client *c, FILE *out, const char *method, const char *params)
{
	json_object *res = NULL;
	int r = kl_client_call_timeout(c, method, params ? json_tokener_parse(params) : NULL, &res,
	                               30000);

	if (r == 0)
		fprintf(out, "%s ok %s\n", method, dump(res));
	else
		fprintf(out, "%s error %d %s\n", method, kl_client_last_code(c), kl_error_detail());
	json_object_put(res);
}

static void reader_child(FILE *out)
{
	kl_client *c = NULL;

	if (kl_client_connect(g.sock, &c) < 0) {
		fprintf(out, "connect failed: %s\n", kl_error_detail());
		return;
	}
	child_call(c, out, "rpc.methods", NULL);
	child_call(c, out, "device.revoke", "{\"serial\":\"SN-0004\"}");
	child_call(c, out, "station.status", NULL);
	child_call(c, out, "audit.verify", NULL);
	child_call(c, out, "audit.verify", "{\"full\":true}");
	child_call(c, out, "device.record", "{\"serial\":\"SN-0001\"}");
	kl_client_free(c);
}

static void operator_child(FILE *out)
{
	kl_client *c = NULL;

	if (kl_client_connect(g.sock, &c) < 0) {
		fprintf(out, "connect failed: %s\n", kl_error_detail());
		return;
	}
	child_call(c, out, "device.decommission", "{\"slot\":\"D\",\"serial\":\"SN-0004\"}");
	/* Allowed to the operator: refused for its parameters only. */
	child_call(c, out, "job.provision", "{\"slot\":\"Z\",\"serial\":\"SN-0004\"}");
	child_call(c, out, "audit.list", NULL);
	kl_client_free(c);
}

static void stranger_child(FILE *out)
{
	kl_client *c = NULL;
	json_object *m = NULL;

	if (kl_client_connect(g.sock, &c) < 0) {
		fprintf(out, "connect failed: %s\n", kl_error_detail());
		return;
	}
	child_call(c, out, "rpc.methods", NULL);
	/* Then the station has closed the connection. */
	if (kl_client_read(c, 30000, &m) == -KL_E_IO)
		fprintf(out, "closed\n");
	else
		fprintf(out, "still connected: %s\n", dump(m));
	json_object_put(m);
	kl_client_free(c);
	/* A raw look at the refusal: sent at once, id null. */
	if (kl_client_connect(g.sock, &c) < 0) {
		fprintf(out, "connect failed: %s\n", kl_error_detail());
		return;
	}
	if (kl_client_read(c, 30000, &m) == 0) {
		json_object *e = jget(m, "error");

		fprintf(out, "refused %lld %s id:%s %s\n", (long long)jint(e, "code"),
		        jstr(jget(e, "data"), "reason"),
		        json_object_is_type(jget(m, "id"), json_type_null) ? "null" : "?",
		        jstr(e, "message"));
		json_object_put(m);
	}
	if (kl_client_read(c, 30000, &m) == -KL_E_IO)
		fprintf(out, "closed\n");
	kl_client_free(c);
}

/* Roles from [roles] by uid over SO_PEERCRED: denials answered -32001 and
 * audited; rpc.methods lists only what the caller may call. */
static void test_roles(void **state)
{
	char *t, *line;
	json_object *r, *a;
	bool saw_revoke = false, saw_decom = false;

	(void)state;
	if (geteuid() != 0)
		skip(); /* the children need setresuid */
	t = as_user(READER_UID, reader_child);
	line = strstr(t, "rpc.methods ok");
	if (!line)
		fail_msg("reader's rpc.methods:\n%s", t);
	line = strndup(line, strcspn(line, "\n"));
	assert_contains(line, "\"station.status\"");
	assert_contains(line, "\"devices.show\"");
	assert_contains(line, "\"audit.list\"");
	assert_contains(line, "\"device.record\"");
	assert_null(strstr(line, "\"device.revoke\""));
	assert_null(strstr(line, "\"job.provision\""));
	assert_null(strstr(line, "\"job.abort\""));
	assert_null(strstr(line, "\"devices.preregister\""));
	assert_null(strstr(line, "\"crl.publish\""));
	assert_null(strstr(line, "\"device.decommission\""));
	free(line);
	assert_contains(t, "device.revoke error -32001");
	assert_contains(t, "station.status ok");
	assert_contains(t, "audit.verify ok");
	assert_contains(t, "audit.verify error -32001"); /* full: an officer's */
	assert_contains(t, "device.record ok");
	free(t);

	t = as_user(OPERATOR_UID, operator_child);
	assert_contains(t, "device.decommission error -32001");
	assert_contains(t, "needs role service");
	assert_contains(t, "job.provision error -32014"); /* no slot Z: not a denial */
	assert_contains(t, "audit.list error -32001");
	free(t);

	/* A uid with no role at all can call nothing: it is told so when it
	 * connects, audited, and closed. */
	t = as_user(12345, stranger_child);
	assert_contains(t, "rpc.methods error -32001");
	assert_contains(t, "closed\n");
	assert_null(strstr(t, "still connected"));
	assert_contains(t, "refused -32001 perm id:null permission denied: user:?(12345) holds "
	                   "no role");
	free(t);
	r = call_ok(g.c, "audit.list", "{\"action\":\"station.connect.denied\",\"limit\":10}");
	a = jget(r, "entries");
	assert_int_equal(json_object_array_length(a), 2);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);

		assert_string_equal(jstr(e, "actor"), "user:?(12345)");
		assert_int_equal(jint(jget(e, "detail"), "uid"), 12345);
		assert_int_equal(jint(jget(e, "detail"), "gid"), PEER_GID);
	}
	json_object_put(r);

	/* The denials are in the audit log, with who and what. */
	r = call_ok(g.c, "audit.list", "{\"action\":\"station.api.denied\",\"limit\":100}");
	a = jget(r, "entries");
	assert_true(json_object_array_length(a) >= 3);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i);
		const char *m = jstr(jget(e, "detail"), "method");

		assert_string_equal(jstr(e, "action"), "station.api.denied");
		if (strcmp(m, "device.revoke") == 0) {
			saw_revoke = true;
			assert_contains(jstr(e, "actor"), "65534");
		}
		if (strcmp(m, "device.decommission") == 0) {
			saw_decom = true;
			assert_contains(jstr(e, "actor"), "65533");
		}
	}
	assert_true(saw_revoke);
	assert_true(saw_decom);
	json_object_put(r);
	/* Nothing was done on the reader's behalf. */
	r = show("SN-0004");
	assert_string_equal(dev_state(r), "preregistered");
	json_object_put(r);
	assert_alive();
}

/* Hostile input over the socket: every bad line gets its JSON-RPC error and
 * the connection, and the daemon, keep working. */
static void test_bad_input(void **state)
{
	kl_client *c = connect_root();
	json_object *m;
	char *big;
	size_t n = 70 * 1024;

	(void)state;
	raw_error(c, "{not json}\n", KL_RPC_E_PARSE, NULL);
	raw_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1\n", KL_RPC_E_PARSE,
	          NULL);
	raw_error(c, "[{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1}]\n", KL_RPC_E_INVALID,
	          NULL);
	raw_error(c, "{\"jsonrpc\":\"1.0\",\"method\":\"rpc.ping\",\"id\":1}\n", KL_RPC_E_INVALID,
	          NULL);
	raw_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"no.such\",\"id\":2}\n", KL_RPC_E_NO_METHOD,
	          NULL);
	raw_error(
	    c, "{\"jsonrpc\":\"2.0\",\"method\":\"job.get\",\"params\":{\"job\":\"x\"},\"id\":3}\n",
	    KL_RPC_E_PARAMS, NULL);
	raw_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"job.get\",\"params\":{},\"id\":4}\n",
	          KL_RPC_E_PARAMS, NULL);
	raw_error(c,
	          "{\"jsonrpc\":\"2.0\",\"method\":\"devices.list\",\"params\":{\"limit\":\"10\"},"
	          "\"id\":5}\n",
	          KL_RPC_E_PARAMS, NULL);
	raw_error(c,
	          "{\"jsonrpc\":\"2.0\",\"method\":\"devices.list\",\"params\":{\"colour\":1},"
	          "\"id\":6}\n",
	          KL_RPC_E_PARAMS, NULL);
	raw_error(c,
	          "{\"jsonrpc\":\"2.0\",\"method\":\"devices.preregister\",\"params\":"
	          "{\"tenant\":\"a\",\"work_order\":\"w\",\"items\":\"SN-1\"},\"id\":7}\n",
	          KL_RPC_E_PARAMS, NULL);
	/* A handler's Keyline error: code from the kl_err, reason in data. */
	raw_error(
	    c, "{\"jsonrpc\":\"2.0\",\"method\":\"job.get\",\"params\":{\"job\":77777},\"id\":8}\n",
	    KL_RPC_E_KL_BASE - KL_E_NOTFOUND, "notfound");

	/* A notification is not answered: the next answer is the ping's. */
	send_raw(c, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\"}\n"
	            "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":\"after\"}\n");
	m = read_msg(c);
	assert_string_equal(jstr(m, "id"), "after");
	assert_true(jbool(jget(m, "result"), "pong"));
	json_object_put(m);

	/* A line over 64 KiB: one -32600, then the connection still works. */
	big = malloc(n + 1);
	memset(big, 'x', n);
	big[0] = '"';
	big[n - 1] = '\n';
	big[n] = '\0';
	send_raw(c, big);
	free(big);
	m = read_msg(c);
	assert_int_equal(jint(jget(m, "error"), "code"), KL_RPC_E_INVALID);
	assert_contains(jstr(jget(m, "error"), "message"), "too large");
	json_object_put(m);
	send_raw(c, "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":9}\n");
	m = read_msg(c);
	assert_int_equal(jint(m, "id"), 9);
	assert_true(jbool(jget(m, "result"), "pong"));
	json_object_put(m);

	/* Bytes that are not UTF-8, and a NUL. */
	raw_error(c, "{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\",\"id\":10}\n", KL_RPC_E_PARSE,
	          NULL);
	assert_int_equal(kl_client_send_raw(c, "{\"a\":\0}\n", 8), 0);
	m = read_msg(c);
	assert_int_equal(jint(jget(m, "error"), "code"), KL_RPC_E_PARSE);
	json_object_put(m);

	/* events.subscribe to a slot that does not exist; unsubscribe. */
	m = call_ok(c, "events.subscribe", "{\"slot\":\"A\"}");
	assert_string_equal(jstr(m, "slot"), "A");
	json_object_put(m);
	assert_int_equal(call_err(c, NULL, 0, "events.subscribe", "{\"slot\":\"Q\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
	m = call_ok(c, "events.unsubscribe", NULL);
	assert_false(jbool(m, "subscribed"));
	json_object_put(m);
	kl_client_free(c);
	assert_alive();
}

/* A client that sends part of a line and falls silent is told and
 * disconnected after idle_timeout_s; the others are served meanwhile. */
static void test_idle_timeout(void **state)
{
	kl_client *silent = connect_root(), *other = connect_root();
	json_object *m = NULL;
	int r;

	(void)state;
	send_raw(silent, "{\"jsonrpc\":\"2.0\",\"method\":");
	for (int i = 0; i < 3; i++)
		json_object_put(call_ok(other, "station.status", NULL));
	r = kl_client_read(silent, 60000, &m);
	if (r < 0)
		fail_msg("the silent client got nothing: %s", kl_error_detail());
	assert_int_equal(jint(jget(m, "error"), "code"), KL_RPC_E_INVALID);
	assert_contains(jstr(jget(m, "error"), "message"), "idle_timeout_s");
	assert_string_equal(jstr(jget(jget(m, "error"), "data"), "reason"), "timeout");
	assert_true(json_object_is_type(jget(m, "id"), json_type_null) &&
	            json_object_object_get_ex(m, "id", NULL));
	assert_string_equal(jstr(m, "jsonrpc"), "2.0");
	json_object_put(m);
	assert_int_equal(kl_client_read(silent, 60000, &m), -KL_E_IO);
	json_object_put(call_ok(other, "rpc.ping", NULL));
	kl_client_free(silent);
	kl_client_free(other);
	/* An idle client with nothing half-sent is not disconnected. */
	other = connect_root();
	sleep_ms(3500);
	json_object_put(call_ok(other, "rpc.ping", NULL));
	kl_client_free(other);
	assert_alive();
}

/* Hundreds of clients at once all get answers; one past max_clients is
 * told so and closed. */
static void test_many_clients(void **state)
{
	static kl_client *cs[MAX_CLIENTS + 1];
	static const char ping[] = "{\"jsonrpc\":\"2.0\",\"method\":\"rpc.ping\",\"id\":1}\n";
	size_t n = 0;
	json_object *m, *st;
	int64_t have;
	kl_client *extra = NULL;

	(void)state;
	for (; n < MANY_CLIENTS; n++)
		cs[n] = connect_root();
	for (size_t i = 0; i < n; i++)
		send_raw(cs[i], ping);
	for (size_t i = 0; i < n; i++) {
		m = read_msg(cs[i]);
		assert_true(jbool(jget(m, "result"), "pong"));
		json_object_put(m);
	}
	st = call_ok(g.c, "station.status", NULL);
	have = jint(st, "clients");
	json_object_put(st);
	assert_true(have >= MANY_CLIENTS + 1);
	/* Up to the limit, each answered (so that the station counts it). */
	for (; have < MAX_CLIENTS; have++, n++) {
		cs[n] = connect_root();
		send_raw(cs[n], ping);
		m = read_msg(cs[n]);
		assert_true(jbool(jget(m, "result"), "pong"));
		json_object_put(m);
	}
	assert_int_equal(kl_client_connect(g.sock, &extra), 0);
	assert_int_equal(kl_client_read(extra, 30000, &m), 0);
	assert_contains(jstr(jget(m, "error"), "message"), "too many clients");
	assert_string_equal(jstr(jget(jget(m, "error"), "data"), "reason"), "unavailable");
	assert_int_equal(jint(jget(m, "error"), "code"), -32025);
	assert_true(json_object_is_type(jget(m, "id"), json_type_null) &&
	            json_object_object_get_ex(m, "id", NULL));
	assert_string_equal(jstr(m, "jsonrpc"), "2.0");
	json_object_put(m);
	assert_int_equal(kl_client_read(extra, 30000, &m), -KL_E_IO);
	kl_client_free(extra);
	for (size_t i = 0; i < n; i++)
		kl_client_free(cs[i]);
	/* The station notices they left, and serves new clients again. */
	{
		int64_t deadline = mono_ms() + 30000;

		do {
			st = call_ok(g.c, "station.status", NULL);
			have = jint(st, "clients");
			json_object_put(st);
			if (have > 5)
				sleep_ms(100);
		} while (have > 5 && mono_ms() < deadline);
		assert_true(have <= 5);
	}
	extra = connect_root();
	json_object_put(call_ok(extra, "rpc.ping", NULL));
	kl_client_free(extra);
	assert_alive();
}

/* Stops the daemon and starts it again on keyline.conf as text has it,
 * g.c subscribed to every event again. Events of the old daemon are
 * forgotten: its job numbers start over. */
static void daemon_restart(const char *text)
{
	assert_int_equal(daemon_stop(), 0);
	write_conf(text);
	while (nbacklog > 0)
		json_object_put(backlog[--nbacklog]);
	daemon_start();
	json_object_put(call_ok(g.c, "events.subscribe", NULL));
}

static void ping_ok(kl_client *c)
{
	json_object *r = call_ok(c, "rpc.ping", NULL);

	assert_true(jbool(r, "pong"));
	json_object_put(r);
}

/* A connection refused when it opens: the error line, then the close. */
static void assert_refused(kl_client *c, int code, const char *reason, const char *text)
{
	json_object *m = NULL;

	if (kl_client_read(c, 60000, &m) < 0)
		fail_msg("no refusal: %s", kl_error_detail());
	assert_int_equal(jint(jget(m, "error"), "code"), code);
	assert_string_equal(jstr(jget(jget(m, "error"), "data"), "reason"), reason);
	assert_contains(jstr(jget(m, "error"), "message"), text);
	assert_true(json_object_is_type(jget(m, "id"), json_type_null) &&
	            json_object_object_get_ex(m, "id", NULL));
	json_object_put(m);
	assert_int_equal(kl_client_read(c, 60000, &m), -KL_E_IO);
}

static void per_uid_child(FILE *out)
{
	kl_client *c[4] = { 0 };
	json_object *m = NULL;

	for (int i = 0; i < 4; i++) {
		if (kl_client_connect(g.sock, &c[i]) < 0) {
			fprintf(out, "connect failed: %s\n", kl_error_detail());
			break;
		}
		child_call(c[i], out, "rpc.ping", NULL);
	}
	/* The fourth was refused: its call failed on the refusal line (even
	 * when the station had closed it before the call was sent). */
	if (c[3] && kl_client_read(c[3], 30000, &m) == -KL_E_IO)
		fprintf(out, "fourth closed\n");
	json_object_put(m);
	for (int i = 0; i < 4; i++)
		kl_client_free(c[i]);
}

/* Fairness on a station with max_clients_per_uid = 3 and idle_close_s = 3:
 * one uid cannot take more than its share, while another uid still gets
 * in; a connection that asks nothing is closed after idle_close_s, and a
 * subscriber waiting for events as long is not. */
static void test_fairness(void **state)
{
	kl_client *mine[3] = { 0 }, *extra = NULL, *idle = NULL, *sub = NULL;
	char *base = station_conf(g.base_conf, true, true), *text, *t = NULL;
	json_object *m = NULL;
	int r;

	(void)state;
	text = replace(base, "max_clients_per_uid = 400\n",
	               "max_clients_per_uid = 3\nidle_close_s = 3\n");
	daemon_restart(text);
	free(text);

	/* root: g.c and two more; the fourth is refused and closed. */
	mine[0] = connect_root();
	mine[1] = connect_root();
	ping_ok(mine[0]);
	ping_ok(mine[1]);
	extra = connect_root();
	assert_refused(extra, -32025, "unavailable", "station.max_clients_per_uid (3) per user");
	kl_client_free(extra);
	/* Another uid is not held back by root's connections, up to its own
	 * three. */
	if (geteuid() == 0) {
		char *third;

		t = as_user(READER_UID, per_uid_child);
		third = strstr(t, "rpc.ping ok");

		for (int i = 0; i < 2 && third; i++)
			third = strstr(third + 1, "rpc.ping ok");
		if (!third)
			fail_msg("the reader's three connections were not all served:\n%s", t);
		assert_contains(t, "rpc.ping error -32025 too many connections from "
		                   "user:nobody(65534)");
		assert_contains(t, "fourth closed");
		free(t);
	}
	/* Closing one makes room again. */
	kl_client_free(mine[1]);
	mine[1] = NULL;
	for (int tries = 0; tries < 600 && !mine[1]; tries++) {
		json_object *res = NULL;

		mine[1] = connect_root();
		if (kl_client_call_timeout(mine[1], "rpc.ping", NULL, &res, 60000) == 0) {
			json_object_put(res);
			break;
		}
		/* The station had not yet seen the close: refused, try again. */
		kl_client_free(mine[1]);
		mine[1] = NULL;
		sleep_ms(100);
	}
	assert_non_null(mine[1]);
	kl_client_free(mine[0]);
	kl_client_free(mine[1]);

	/* A subscriber, then a connection that never asks anything. */
	sub = connect_root();
	json_object_put(call_ok(sub, "events.subscribe", "{\"slot\":\"A\"}"));
	idle = connect_root();
	r = kl_client_read(idle, 60000, &m);
	if (r < 0)
		fail_msg("the idle connection was not closed: %s", kl_error_detail());
	assert_int_equal(jint(jget(m, "error"), "code"), -32024);
	assert_string_equal(jstr(jget(jget(m, "error"), "data"), "reason"), "timeout");
	assert_contains(jstr(jget(m, "error"), "message"), "idle_close_s");
	assert_true(json_object_is_type(jget(m, "id"), json_type_null));
	json_object_put(m);
	assert_int_equal(kl_client_read(idle, 60000, &m), -KL_E_IO);
	kl_client_free(idle);
	/* The subscriber was silent longer than that, and is still served. */
	ping_ok(sub);
	kl_client_free(sub);

	daemon_restart(base);
	free(base);
	assert_alive();
}

/* A client that sends requests and never reads its answers is disconnected
 * once 4 MiB of output wait for it; the station goes on. */
static void test_slow_reader(void **state)
{
	kl_client *c = connect_root();
	static const char req[] = "{\"jsonrpc\":\"2.0\",\"method\":\"devices.list\",\"params\":{"
	                          "\"limit\":1000},\"id\":1}\n";
	int answers = 0, r;
	json_object *m;

	(void)state;
	/* ~35 devices: some 8 KiB an answer; 2000 answers are far past 4 MiB.
	 * The send fails once the station has hung up: fine. A station that
	 * kept the connection instead would block this send for ever: the
	 * alarm turns that into a failure. */
	alarm(300);
	for (int i = 0; i < 2000; i++)
		if (kl_client_send_raw(c, req, sizeof(req) - 1) < 0)
			break;
	alarm(0);
	while ((r = kl_client_read(c, 60000, &m)) == 0) {
		answers++;
		json_object_put(m);
	}
	assert_int_equal(r, -KL_E_IO);
	assert_true(answers < 2000);
	kl_client_free(c);
	assert_alive();
}

/* A DUT that vanishes mid-job: the job fails with a reason, the device is
 * not left half-provisioned, the slot's link is reported down, the daemon
 * serves on. */
static void test_dut_vanishes(void **state)
{
	json_object *r, *ev, *res;
	int64_t job, deadline;
	bool down = false;

	(void)state;
	job = provision("D", "SN-0004", "auto");
	ev = wait_event(g.c, "step.started", job, "entropy");
	json_object_put(ev);
	assert_int_equal(kl_dut_stop(g.e.floor, g.duts[3]), 0);
	r = finish(job, "failed");
	res = jget(r, "result");
	assert_false(jbool(res, "ok"));
	assert_string_not_equal(jstr(res, "reason"), "");
	assert_string_not_equal(jstr(res, "message"), "");
	assert_string_not_equal(jstr(res, "failed_step"), "");
	json_object_put(r);
	assert_alive();
	r = show("SN-0004");
	if (strcmp(dev_state(r), "preregistered") != 0 && strcmp(dev_state(r), "provisioning") != 0)
		fail_msg("SN-0004 is %s after its DUT vanished", dev_state(r));
	assert_int_equal(valid_certs(r), 0);
	json_object_put(r);

	/* The idle slot's probe finds the link down. */
	deadline = mono_ms() + 60000;
	while (!down && mono_ms() < deadline) {
		json_object *s;

		r = call_ok(g.c, "slots.list", NULL);
		s = json_object_array_get_idx(jget(r, "slots"), 3);
		assert_string_equal(jstr(s, "name"), "D");
		down = jget(s, "link_up") &&
		       json_object_is_type(jget(s, "link_up"), json_type_boolean) &&
		       !jbool(s, "link_up");
		if (down)
			assert_string_not_equal(jstr(s, "link_error"), "");
		json_object_put(r);
		if (!down)
			sleep_ms(200);
	}
	assert_true(down);
	/* A job on the dead link fails cleanly too. */
	r = finish(provision("D", "SN-0004", "auto"), "failed");
	assert_string_not_equal(jstr(jget(r, "result"), "reason"), "");
	json_object_put(r);
	assert_alive();
}

/* The audit log over the API: listing, filtering, verification. */
static void test_audit(void **state)
{
	json_object *r, *a;
	int64_t first, entries;

	(void)state;
	r = call_ok(g.c, "audit.verify", NULL);
	assert_true(jbool(r, "ok"));
	assert_true(jint(r, "entries") > 20);
	entries = jint(r, "entries");
	json_object_put(r);
	/* The whole chain again (an officer's), and from the checkpoint: the
	 * same count. */
	r = call_ok(g.c, "audit.verify", "{\"full\":true}");
	assert_true(jbool(r, "ok"));
	assert_true(jint(r, "entries") >= entries);
	entries = jint(r, "entries");
	json_object_put(r);
	r = call_ok(g.c, "audit.verify", NULL);
	assert_true(jbool(r, "ok"));
	assert_true(jint(r, "entries") >= entries);
	json_object_put(r);
	/* Many slow calls pipelined on one connection: each answered once,
	 * by id, with a ping among them. */
	{
		kl_client *c = connect_root();
		char line[128];
		bool seen[21] = { false };

		for (int id = 1; id <= 20; id++) {
			snprintf(line, sizeof(line),
			         "{\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"id\":%d}\n",
			         id == 10 ? "rpc.ping" : "audit.verify", id);
			send_raw(c, line);
		}
		for (int i = 0; i < 20; i++) {
			json_object *m = read_msg(c);
			int64_t id = jint(m, "id");

			assert_true(id >= 1 && id <= 20);
			assert_false(seen[id]);
			seen[id] = true;
			if (id == 10)
				assert_true(jbool(jget(m, "result"), "pong"));
			else
				assert_true(jbool(jget(m, "result"), "ok"));
			json_object_put(m);
		}
		kl_client_free(c);
	}
	r = call_ok(g.c, "audit.list", "{\"limit\":5}");
	a = jget(r, "entries");
	assert_int_equal(json_object_array_length(a), 5);
	first = jint(json_object_array_get_idx(a, 0), "seq");
	assert_true(first > jint(json_object_array_get_idx(a, 4), "seq"));
	json_object_put(r);
	r = call_ok(g.c, "audit.list", "{\"limit\":5,\"before\":%lld}", (long long)first);
	a = jget(r, "entries");
	assert_true(jint(json_object_array_get_idx(a, 0), "seq") < first);
	json_object_put(r);
	r = call_ok(g.c, "audit.list", "{\"action\":\"station.start\"}");
	assert_true(json_object_array_length(jget(r, "entries")) >= 1);
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "audit.list", "{\"limit\":0}"), KL_RPC_E_PARAMS);
}

/* The number of devices whose serial contains text. */
static int64_t devices_matching(const char *text)
{
	json_object *r = call_ok(g.c, "devices.list", "{\"search\":\"%s\"}", text);
	int64_t n = jint(r, "total");

	json_object_put(r);
	return n;
}

/* begin on c; returns the batch id in id. */
static void batch_begin(kl_client *c, const char *extra, char *id, size_t size)
{
	json_object *r =
	    call_ok(c, "devices.preregister_begin",
	            "{\"tenant\":\"batchco\",\"work_order\":\"wo-b\"%s}", extra ? extra : "");

	assert_int_equal(strlen(jstr(r, "batch")), 32);
	assert_int_equal(jint(r, "max_entries"), 100000);
	snprintf(id, size, "%s", jstr(r, "batch"));
	json_object_put(r);
}

/* A pre-registration sent in pieces: committed whole, or nothing of it when
 * a piece is bad, lost or repeated, when the count is short, when its
 * connection goes, or when it waits past its timeout; a batch is its
 * connection's alone, and there are only so many at once. */
static void test_prereg_batch(void **state)
{
	kl_client *c = connect_root(), *other = connect_root(), *cs[4];
	json_object *r;
	char id[64], id2[64], msg[512];
	int64_t deadline;

	(void)state;
	/* Three pieces, committed: every entry, lines from the client. */
	batch_begin(c, ",\"source\":\"wo-b.csv\",\"entries\":5,\"quota\":9", id, sizeof(id));
	r = call_ok(c, "devices.preregister_add",
	            "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"B-1\",{\"serial\":\"B-2\","
	            "\"line\":3}]}",
	            id);
	assert_int_equal(jint(r, "received"), 2);
	json_object_put(r);
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":2,\"items\":[\"B-3\",\"B-4\"]}", id));
	assert_int_equal(devices_matching("B-"), 0); /* nothing before the commit */
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":4,\"items\":[{\"serial\":\"B-5\","
	                        "\"ek_sha256\":null}]}",
	                        id));
	r = call_ok(c, "devices.preregister_commit", "{\"batch\":\"%s\"}", id);
	assert_int_equal(jint(r, "entries"), 5);
	assert_int_equal(jint(r, "changed"), 5);
	assert_string_equal(jstr(r, "tenant"), "batchco");
	assert_string_equal(jstr(r, "batch"), id);
	json_object_put(r);
	assert_int_equal(devices_matching("B-"), 5);
	/* A committed batch has ended. */
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_add",
	                          "{\"batch\":\"%s\",\"offset\":5,\"items\":[\"B-6\"]}", id),
	                 KL_RPC_E_KL_BASE - KL_E_STATE);
	assert_contains(msg, "has ended: committed");

	/* A bad line in the middle of a piece: its FILE:LINE, and nothing. */
	batch_begin(c, ",\"source\":\"big.csv\"", id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-1\",\"C-2\"]}", id));
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_add",
	                          "{\"batch\":\"%s\",\"offset\":2,\"items\":[\"C-3\",{\"serial\":"
	                          "\"C 4\",\"line\":51}]}",
	                          id),
	                 KL_RPC_E_KL_BASE - KL_E_INVALID);
	assert_contains(msg, "big.csv:51: serial 'C 4' contains a space");
	assert_int_equal(
	    call_err(c, msg, sizeof(msg), "devices.preregister_commit", "{\"batch\":\"%s\"}", id),
	    KL_RPC_E_KL_BASE - KL_E_STATE);
	assert_contains(msg, "a piece was refused: big.csv:51");
	/* A serial of another tenant, found at the commit, names its line. */
	batch_begin(c, ",\"source\":\"steal.csv\"", id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-5\",\"SN-0002\","
	                        "\"C-6\"]}",
	                        id));
	assert_int_equal(
	    call_err(c, msg, sizeof(msg), "devices.preregister_commit", "{\"batch\":\"%s\"}", id),
	    KL_RPC_E_KL_BASE - KL_E_EXISTS);
	assert_contains(msg, "steal.csv:2: serial SN-0002 is already registered to tenant");
	/* A serial twice across pieces. */
	batch_begin(c, NULL, id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-7\"]}", id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":1,\"items\":[\"C-8\",\"C-7\"]}", id));
	assert_int_equal(
	    call_err(c, msg, sizeof(msg), "devices.preregister_commit", "{\"batch\":\"%s\"}", id),
	    KL_RPC_E_KL_BASE - KL_E_EXISTS);
	assert_contains(msg, "line 3: serial C-7 appears twice (first on line 1)");
	/* A piece lost (offset ahead) or sent twice (behind). */
	batch_begin(c, NULL, id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-9\"]}", id));
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_add",
	                          "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-9\"]}", id),
	                 KL_RPC_E_KL_BASE - KL_E_INVALID);
	assert_contains(msg, "lost or sent twice");
	/* Fewer entries than begin announced. */
	batch_begin(c, ",\"entries\":3", id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"C-10\",\"C-11\"]}",
	                        id));
	assert_int_equal(
	    call_err(c, msg, sizeof(msg), "devices.preregister_commit", "{\"batch\":\"%s\"}", id),
	    KL_RPC_E_KL_BASE - KL_E_INVALID);
	assert_contains(msg, "holds 2 entries, but its begin announced 3");
	/* A misspelt key is refused, not ignored. */
	batch_begin(c, NULL, id, sizeof(id));
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_add",
	                          "{\"batch\":\"%s\",\"offset\":0,\"items\":[{\"serial\":\"C-12\","
	                          "\"ek_sha265\":\"00\"}]}",
	                          id),
	                 KL_RPC_E_PARAMS);
	assert_contains(msg, "unknown key \"ek_sha265\"");
	assert_int_equal(devices_matching("C-"), 0);

	/* One batch per connection at a time, and only its own. */
	batch_begin(c, NULL, id, sizeof(id));
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_begin",
	                          "{\"tenant\":\"batchco\",\"work_order\":\"wo-b\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_STATE);
	assert_contains(msg, "commit or abort it first");
	assert_int_equal(call_err(other, msg, sizeof(msg), "devices.preregister_commit",
	                          "{\"batch\":\"%s\"}", id),
	                 KL_RPC_E_KL_BASE - KL_E_NOTFOUND);
	r = call_ok(c, "devices.preregister_abort", "{\"batch\":\"%s\"}", id);
	assert_int_equal(jint(r, "dropped"), 0);
	json_object_put(r);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.preregister_begin",
	                          "{\"tenant\":\"batchco\",\"work_order\":\"wo-b\","
	                          "\"timeout_s\":0}"),
	                 KL_RPC_E_PARAMS);
	assert_int_equal(call_err(g.c, NULL, 0, "devices.preregister_begin",
	                          "{\"tenant\":\"bad tenant\",\"work_order\":\"wo-b\"}"),
	                 KL_RPC_E_PARAMS);

	/* A connection dropped mid-batch registers nothing, and its batch
	 * no longer counts against the station's few. */
	batch_begin(other, NULL, id2, sizeof(id2));
	json_object_put(call_ok(other, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"D-1\",\"D-2\"]}",
	                        id2));
	for (int i = 0; i < 3; i++) {
		cs[i] = connect_root();
		batch_begin(cs[i], NULL, id, sizeof(id));
	}
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_begin",
	                          "{\"tenant\":\"batchco\",\"work_order\":\"wo-b\"}"),
	                 KL_RPC_E_KL_BASE - KL_E_UNAVAILABLE);
	assert_contains(msg, "4 pre-registration batches are open already");
	kl_client_free(other);
	/* The station notices the close at its next poll: bounded, not timed. */
	deadline = mono_ms() + 30000;
	for (;;) {
		json_object *res = NULL;

		if (kl_client_call_timeout(c, "devices.preregister_begin",
		                           json_tokener_parse("{\"tenant\":\"batchco\","
		                                              "\"work_order\":\"wo-b\"}"),
		                           &res, 30000) == 0) {
			snprintf(id, sizeof(id), "%s", jstr(res, "batch"));
			json_object_put(res);
			break;
		}
		if (mono_ms() > deadline)
			fail_msg("the dropped connection's batch still counts: %s",
			         kl_error_detail());
		sleep_ms(50);
	}
	assert_int_equal(devices_matching("D-"), 0);
	for (int i = 0; i < 3; i++)
		kl_client_free(cs[i]);
	json_object_put(call_ok(c, "devices.preregister_abort", "{\"batch\":\"%s\"}", id));

	/* A batch left waiting past its timeout_s is dropped. */
	batch_begin(c, ",\"timeout_s\":1", id, sizeof(id));
	json_object_put(call_ok(c, "devices.preregister_add",
	                        "{\"batch\":\"%s\",\"offset\":0,\"items\":[\"E-1\"]}", id));
	sleep_ms(2000);
	assert_int_equal(call_err(c, msg, sizeof(msg), "devices.preregister_add",
	                          "{\"batch\":\"%s\",\"offset\":1,\"items\":[\"E-2\"]}", id),
	                 KL_RPC_E_KL_BASE - KL_E_STATE);
	assert_contains(msg, "no call for it within its timeout_s (1 s)");
	assert_int_equal(devices_matching("E-"), 0);

	/* The single request names source and line too. */
	assert_int_equal(
	    call_err(g.c, msg, sizeof(msg), "devices.preregister",
	             "{\"tenant\":\"batchco\",\"work_order\":\"wo-b\",\"source\":"
	             "\"one.csv\",\"items\":[\"F-1\",{\"serial\":\"F 2\",\"line\":7}]}"),
	    KL_RPC_E_KL_BASE - KL_E_INVALID);
	assert_contains(msg, "one.csv:7: serial 'F 2' contains a space");
	/* In process (no socket) there is no batch to hold. */
	kl_client_free(c);
	assert_alive();
}

/* devices.show finds a device's audit entries through the index: behind
 * more than 5,000 newer entries about other things, and for serials with
 * characters JSON escapes. */
static void test_show_audit(void **state)
{
	static const char *const odd[] = { "SL/0001", "Q\\\"1", "BS\\\\1" };
	static const char *const plain[] = { "SL/0001", "Q\"1", "BS\\1" };
	kl_client *c = connect_root();
	char line[512];
	size_t len;
	json_object *r;

	(void)state;
	for (size_t i = 0; i < 3; i++)
		json_object_put(call_ok(g.c, "devices.preregister",
		                        "{\"tenant\":\"oddco\",\"work_order\":\"wo-o\","
		                        "\"items\":[\"%s\"]}",
		                        odd[i]));
	/* 5,001 newer entries that name none of them: the same entry again,
	 * which changes nothing but is audited. Sent in bursts. */
	json_object_put(call_ok(g.c, "devices.preregister",
	                        "{\"tenant\":\"oddco\",\"work_order\":\"wo-o\","
	                        "\"items\":[\"NOISE-1\"]}"));
	len = (size_t)snprintf(line, sizeof(line),
	                       "{\"jsonrpc\":\"2.0\",\"method\":\"devices.preregister\",\"params\":"
	                       "{\"tenant\":\"oddco\",\"work_order\":\"wo-o\",\"items\":"
	                       "[\"NOISE-1\"]},\"id\":1}\n");
	for (int done = 0; done < 5001;) {
		int burst = 5001 - done < 100 ? 5001 - done : 100;

		for (int i = 0; i < burst; i++)
			assert_int_equal(kl_client_send_raw(c, line, len), 0);
		for (int i = 0; i < burst; i++) {
			json_object *m = read_msg(c);

			if (!jget(m, "result"))
				fail_msg("noise call failed: %s", dump(m));
			json_object_put(m);
		}
		done += burst;
	}
	kl_client_free(c);
	for (size_t i = 0; i < 3; i++) {
		json_object *a, *e, *items;
		bool named = false;

		r = call_ok(g.c, "devices.show", "{\"serial\":\"%s\"}", odd[i]);
		assert_string_equal(jstr(jget(r, "device"), "serial"), plain[i]);
		a = jget(r, "audit");
		assert_int_equal(json_object_array_length(a), 1);
		assert_false(jbool(r, "audit_more"));
		e = json_object_array_get_idx(a, 0);
		assert_string_equal(jstr(e, "action"), "registry.preregister");
		items = jget(jget(e, "detail"), "items");
		for (size_t k = 0; k < json_object_array_length(items); k++)
			named |= strcmp(jstr(json_object_array_get_idx(items, k), "serial"),
			                plain[i]) == 0;
		assert_true(named);
		json_object_put(r);
	}
	/* The newest 5,000 entries are all noise. */
	r = call_ok(g.c, "audit.list", "{\"limit\":1000}");
	for (size_t k = 0; k < json_object_array_length(jget(r, "entries")); k++)
		assert_string_equal(
		    jstr(json_object_array_get_idx(jget(r, "entries"), k), "action"),
		    "registry.preregister");
	json_object_put(r);
}

/* Valid (issued, unrevoked) certificates of a profile in the offline
 * `keyline devices show --json` answer. */
static size_t offline_valid(const char *serial, const char *profile)
{
	json_object *o, *certs;
	size_t n = 0;
	char *text;

	assert_int_equal(keyline(&g.e, "devices", "show", serial, "--json", NULL), 0);
	text = slurp(g.e.out);
	o = json_tokener_parse(text);
	free(text);
	assert_non_null(o);
	certs = jget(o, "certificates");
	for (size_t i = 0; certs && i < json_object_array_length(certs); i++) {
		json_object *c = json_object_array_get_idx(certs, i);

		n += strcmp(jstr(c, "profile"), profile) == 0 &&
		     strcmp(jstr(c, "state"), "issued") == 0 &&
		     json_object_is_type(jget(c, "revoked"), json_type_null);
	}
	json_object_put(o);
	return n;
}

/* Whether the signal mask of thread tid of the daemon (its SigBlk line in
 * /proc) blocks SIGTERM, SIGINT and SIGHUP: 1 all of them, 0 none, -1 some,
 * -2 when the thread has gone. */
static int thread_blocks_stop_signals(pid_t pid, const char *tid)
{
	char path[PATH_MAX], line[256];
	unsigned long long mask = 0;
	bool found = false;
	FILE *f;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, tid);
	f = fopen(path, "r");
	if (!f)
		return -2;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			found = true;
	fclose(f);
	assert_true(found);
	n = !!(mask & (1ull << (SIGTERM - 1))) + !!(mask & (1ull << (SIGINT - 1))) +
	    !!(mask & (1ull << (SIGHUP - 1)));
	return n == 3 ? 1 : n == 0 ? 0 : -1;
}

/* Every thread of the daemon but the poll thread (its main thread) blocks
 * the stop signals, so that none of them lands in a slot worker. */
static void assert_signals_on_poll_thread_only(pid_t pid)
{
	char dir[64];
	struct dirent *d;
	size_t workers = 0;
	DIR *t;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	t = opendir(dir);
	assert_non_null(t);
	while ((d = readdir(t))) {
		int b;

		if (d->d_name[0] == '.')
			continue;
		b = thread_blocks_stop_signals(pid, d->d_name);
		if (b == -2)
			continue;
		if (atoi(d->d_name) == (int)pid) {
			if (b != 0)
				fail_msg("the poll thread blocks a stop signal");
		} else {
			if (b != 1)
				fail_msg("thread %s of the daemon takes stop signals", d->d_name);
			workers++;
		}
	}
	closedir(t);
	assert_true(workers >= NDUTS);
}

/* SIGTERM while a job runs: the job stops at its next step boundary and
 * cleans up (or ends, if it was on its last step), the daemon exits 0 and
 * removes its socket, and the device keeps exactly one valid identity.
 * Other slots are busy at the same time, with jobs that end refused; the
 * signal reaches the poll thread only. */
static void test_shutdown(void **state)
{
	json_object *r, *ev;
	int64_t job;
	char *log;

	(void)state;
	json_object_put(call_ok(g.c, "events.subscribe", "{\"slot\":\"B\"}"));
	r = call_ok(g.c, "device.renew", "{\"slot\":\"B\",\"serial\":\"SN-0002\"}");
	job = jint(r, "job");
	json_object_put(r);
	ev = wait_event(g.c, "step.started", job, NULL);
	json_object_put(ev);
	/* More busy slots: devices that end refused (decommissioned, revoked,
	 * lost), each job talking to its DUT first. */
	provision("A", "SN-0001", "p256");
	provision("C", "SN-0003", "p384");
	provision("E", "SN-0005", "auto");
	assert_signals_on_poll_thread_only(g.daemon);
	assert_int_equal(daemon_stop(), 0);
	log = slurp(g.daemon_err);
	assert_contains(log, "interrupting running jobs");
	assert_contains(log, "SIGTERM received");
	free(log);
	assert_int_equal(offline_valid("SN-0002", "idevid"), 1);
	assert_int_equal(offline_valid("SN-0002", "iak"), 1);
	assert_int_not_equal(access(g.sock, F_OK), 0);
	log = slurp(g.daemon_err);
	assert_contains(log, "stopped");
	free(log);
	/* Its audit trail ends with the stop; the log still verifies. */
	assert_int_equal(keyline(&g.e, "audit", "verify", NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_refusals),
		cmocka_unit_test(test_socket_not_a_socket),
		cmocka_unit_test(test_two_stations_at_once),
		cmocka_unit_test(test_start),
		cmocka_unit_test(test_provision),
		cmocka_unit_test(test_devices_list),
		cmocka_unit_test(test_devices_cursor),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_disconnect_mid_job),
		cmocka_unit_test(test_revoke_crl),
		cmocka_unit_test(test_lost),
		cmocka_unit_test(test_renew_decommission),
		cmocka_unit_test(test_repurpose),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_many_clients),
		cmocka_unit_test(test_fairness),
		cmocka_unit_test(test_slow_reader),
		cmocka_unit_test(test_dut_vanishes),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_prereg_batch),
		cmocka_unit_test(test_show_audit),
		cmocka_unit_test(test_shutdown),
	};

	return cmocka_run_group_tests_name("station", tests, group_setup, group_teardown);
}
