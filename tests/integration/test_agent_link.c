/* keyline-agent over TCP end to end: swtpm DUTs provisioned through a real
 * keyline-agent process and the station's link (listener, handshake, the
 * in-process TCTI, verdict), judged from the outside with tpm2-tools and
 * openssl; and every fault of the link as a named refusal with nothing
 * issued: a cut at each step (then one clean second run), oversize,
 * garbage, truncation, version mismatch, a silent agent, serial mismatch,
 * a FAIL verdict. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "lifecycle.h"
#include "link_frame.h"
#include "link_listen.h"
#include "registry.h"
#include "store.h"
#include "tpm.h"
#include "trust.h"

#include "agent_test.h"
#include "pki_fixture.h"

#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

enum { N_GOOD = 4, N_CUT = KL_STEP__MAX };

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **good, **cut, **terr;
	struct test_pki pki;
	char dir[PATH_MAX];
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
} g;

static int setup(void **state)
{
	static char names[N_GOOD + N_CUT + 4][16];
	kl_registry_item items[N_GOOD + N_CUT + 4];
	size_t n = 0;

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "agood", N_GOOD, &g.good) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "acut", N_CUT, &g.cut) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "aterr", 1, &g.terr) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "%s", kl_floor_dir(g.floor));
	if (test_pki_make(g.floor, g.acme, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0)
		return -1;
	for (int i = 0; i < N_GOOD; i++)
		snprintf(names[n++], sizeof(names[0]), "AG-%d", i);
	for (int i = 0; i < N_CUT; i++)
		snprintf(names[n++], sizeof(names[0]), "CUT-%d", i);
	snprintf(names[n++], sizeof(names[0]), "DIE-1");
	snprintf(names[n++], sizeof(names[0]), "TERR-1");
	for (size_t i = 0; i < n; i++)
		items[i] = (kl_registry_item){ .serial = names[i], .line = (unsigned)i + 1 };
	if (kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", items, n, "test") < 0) {
		fprintf(stderr, "registry: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < N_GOOD; i++)
		if (kl_dut_start(g.floor, g.good[i]) < 0)
			return -1;
	for (int i = 0; i < N_CUT; i++)
		if (kl_dut_start(g.floor, g.cut[i]) < 0)
			return -1;
	if (kl_dut_start(g.floor, g.terr[0]) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

static int64_t issued(void)
{
	int64_t n = -1;

	assert_int_equal(kl_store_cert_count(g.store, kl_ca_issuer_id(g.ca), "issued", &n), 0);
	return n;
}

struct count {
	int valid, superseded;
};

static int count_cert(void *ctx, const kl_registry_cert *cert)
{
	struct count *cc = ctx;

	if (!cert->revoked && strcmp(cert->state, "issued") == 0)
		cc->valid++;
	else if (cert->revoked && cert->reason == 4)
		cc->superseded++;
	return 0;
}

static kl_link_wait within(int ms)
{
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + ms };

	return w;
}

/* ---- a real keyline-agent ---- */

static pid_t spawn_agent(int port, const char *tcti, const char *serial, const char *out,
                         const char *const *extra)
{
	return agent_spawn_tcp(port, tcti, serial, "30", extra, out);
}

static void read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

/* What one station run through an agent came to. */
struct run {
	int handshake_rc;
	char handshake_reason[48];
	kl_job_result res;
	int agent_status; /* exit status, or 128 + signal */
	char agent_out[2048];
};

/* Kills the agent when the engine starts step cut_step; or, with dut set,
 * powers that DUT off instead (the agent's TPM goes away under it). */
struct cutter {
	pid_t agent;
	int cut_step;
	kl_dut *dut;
};

static void cut_at(void *ctx, kl_step step, bool done, double ms)
{
	struct cutter *c = ctx;

	(void)ms;
	if (!done && (int)step == c->cut_step && c->dut) {
		assert_int_equal(kl_dut_stop(g.floor, c->dut), 0);
		c->dut = NULL;
	} else if (!done && (int)step == c->cut_step && c->agent > 0) {
		kill(c->agent, SIGKILL);
		waitpid(c->agent, NULL, 0);
		c->agent = 0;
	}
}

/* The station's side, as keyline provision --agent-listen does it: listen,
 * accept one agent, shake hands, provision the hello's serial through the
 * link, send the verdict. */
static void run_agent_stopping(const char *tcti, const char *serial, const char *expect,
                               const char *const *extra, int cut_step, kl_dut *stop,
                               struct run *out)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	struct cutter cutter = { .cut_step = cut_step, .dut = stop };
	char out_path[PATH_MAX], link[128];
	kl_link_wait w;
	int st = 0;

	memset(out, 0, sizeof(*out));
	snprintf(out_path, sizeof(out_path), "%s/agent-%s.out", g.dir, serial);
	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	cutter.agent = spawn_agent(kl_link_listener_port(l), tcti, serial, out_path, extra);
	w = within(20000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(10000);
	out->handshake_rc = kl_link_handshake(c, &w, g.cfg.station_id, expect, &info);
	if (out->handshake_rc < 0) {
		snprintf(out->handshake_reason, sizeof(out->handshake_reason), "%s",
		         kl_link_conn_reason(c));
	} else {
		kl_job job = { .serial = info.serial,
			       .link = link,
			       .agent = c,
			       .ek_type = KL_EK_P256,
			       .actor = "operator:test" };

		assert_string_equal(info.serial, serial);
		assert_string_equal(info.model, "WS-2");
		assert_string_equal(info.firmware, "1.0.3");
		assert_int_equal(info.proto, 1);
		snprintf(link, sizeof(link), "agent:%s", kl_link_conn_peer(c));
		if (cut_step >= 0) {
			job.progress = cut_at;
			job.progress_ctx = &cutter;
		}
		assert_int_equal(kl_engine_provision(&g.cfg, &job, &out->res), 0);
		w = within(5000);
		if (!kl_link_conn_dead(c) &&
		    kl_link_send_verdict(c, &w, info.serial, out->res.rc == 0,
		                         out->res.idevid_sha256, out->res.reason,
		                         out->res.message) < 0)
			kl_error_clear();
	}
	kl_link_conn_free(c);
	kl_link_listener_free(l);
	if (cutter.agent > 0) {
		assert_int_equal(waitpid(cutter.agent, &st, 0), cutter.agent);
		out->agent_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	} else {
		out->agent_status = 128 + SIGKILL;
	}
	read_file(out_path, out->agent_out, sizeof(out->agent_out));
}

static void run_agent(const char *tcti, const char *serial, const char *expect,
                      const char *const *extra, int cut_step, struct run *out)
{
	run_agent_stopping(tcti, serial, expect, extra, cut_step, NULL, out);
}

/* From the outside: the DUT's NV certificates chain to the CA, the IDevID
 * certificate's SHA-256 is the verdict's fingerprint, the keys persist. */
static void check_dut(kl_dut *d, const char *serial, const char *fingerprint)
{
	char der[PATH_MAX], pem[PATH_MAX], out[PATH_MAX], buf[8192], hex[65];
	const char *idx[2] = { "0x01c90000", "0x01c90010" };
	unsigned char bytes[4096];
	size_t n;
	FILE *f;

	snprintf(out, sizeof(out), "%s/out.txt", g.dir);
	for (int i = 0; i < 2; i++) {
		snprintf(der, sizeof(der), "%s/%s-%d.der", g.dir, serial, i);
		snprintf(pem, sizeof(pem), "%s/%s-%d.pem", g.dir, serial, i);
		const char *nvread[] = { "tpm2_nvread", idx[i], "-C", "o", "-o", der, NULL };
		assert_int_equal(kl_dut_tool(g.floor, d, "/dev/null", nvread), 0);
		const char *conv[] = { "openssl", "x509", "-inform", "DER", "-in",
			               der,       "-out", pem,       NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, conv), 0);
		const char *verify[] = { "openssl",
			                 "verify",
			                 "-x509_strict",
			                 "-CAfile",
			                 g.pki.root_pem,
			                 "-untrusted",
			                 g.pki.issuing_pem,
			                 pem,
			                 NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, verify), 0);
		const char *subj[] = { "openssl", "x509", "-in", pem, "-noout", "-subject", NULL };
		assert_int_equal(kl_floor_run(g.floor, out, NULL, subj), 0);
		read_file(out, buf, sizeof(buf));
		assert_non_null(strstr(buf, serial));
		if (i == 0 && fingerprint) {
			f = fopen(der, "rb");
			assert_non_null(f);
			n = fread(bytes, 1, sizeof(bytes), f);
			fclose(f);
			assert_int_equal(kl_sha256_hex(bytes, n, hex), 0);
			assert_string_equal(hex, fingerprint);
		}
	}
	const char *handles[] = { "tpm2_getcap", "handles-persistent", NULL };
	assert_int_equal(kl_dut_tool(g.floor, d, out, handles), 0);
	read_file(out, buf, sizeof(buf));
	assert_non_null(strstr(buf, "0x81020000"));
	assert_non_null(strstr(buf, "0x81020001"));
}

static void assert_provisioned_once(const char *serial)
{
	struct count c = { 0, 0 };
	kl_registry_device dev;

	assert_true(kl_registry_device_certs(g.reg, serial, count_cert, &c) >= 2);
	assert_int_equal(c.valid, 2);
	assert_int_equal(kl_registry_device_get(g.reg, serial, &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PROVISIONED);
}

static void test_provision_through_agent(void **state)
{
	char want[160];
	struct run r;

	(void)state;
	run_agent(g.good[0]->tcti, "AG-0", "AG-0", NULL, -1, &r);
	assert_int_equal(r.handshake_rc, 0);
	if (r.res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(r.res.failed_step), r.res.reason,
		         r.res.message);
	assert_int_equal(strlen(r.res.idevid_sha256), 64);
	snprintf(want, sizeof(want), "PASS serial=AG-0 fingerprint=%s\n", r.res.idevid_sha256);
	assert_string_equal(r.agent_out, want);
	assert_int_equal(r.agent_status, 0);
	check_dut(g.good[0], "AG-0", r.res.idevid_sha256);
	assert_provisioned_once("AG-0");

	/* Again: already provisioned, nothing issued, PASS with the same
	 * fingerprint (the engraved certificate's). */
	int64_t before = issued();
	run_agent(g.good[0]->tcti, "AG-0", NULL, NULL, -1, &r);
	assert_int_equal(r.res.rc, 0);
	assert_true(r.res.already_provisioned);
	assert_string_equal(r.agent_out, want);
	assert_int_equal(r.agent_status, 0);
	assert_int_equal(issued(), before);
}

/* A lifecycle operation runs unchanged over the link: AG-0 (provisioned by
 * the test before) renews its IDevID through a keyline-agent. */
static void test_renew_through_agent(void **state)
{
	kl_life_config life = {
		.store = g.store, .reg = g.reg, .ca = g.ca, .station_id = "test-station"
	};
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_life_result res;
	char out[PATH_MAX], text[2048], want[160];
	kl_link_wait w;
	struct count cc = { 0, 0 };
	pid_t pid;
	int st;

	(void)state;
	snprintf(out, sizeof(out), "%s/agent-renew.out", g.dir);
	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	pid = spawn_agent(kl_link_listener_port(l), g.good[0]->tcti, "AG-0", out, NULL);
	w = within(20000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(10000);
	assert_int_equal(kl_link_handshake(c, &w, "test-station", "AG-0", &info), 0);
	kl_life_job job = {
		.serial = info.serial, .link = "agent:renew", .agent = c, .actor = "operator:test"
	};
	assert_int_equal(kl_life_renew(&life, &job, &res), 0);
	if (res.rc != 0)
		fail_msg("renew: %s [%s] %s", res.step, res.reason, res.message);
	assert_true(strlen(res.new_serial) > 0);
	assert_int_equal(strlen(res.idevid_sha256), 64);
	w = within(5000);
	assert_int_equal(kl_link_send_verdict(c, &w, "AG-0", true, res.idevid_sha256, NULL, NULL),
	                 0);
	kl_link_conn_free(c);
	kl_link_listener_free(l);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	read_file(out, text, sizeof(text));
	snprintf(want, sizeof(want), "PASS serial=AG-0 fingerprint=%s\n", res.idevid_sha256);
	assert_string_equal(text, want);
	/* The old IDevID certificate is superseded; the device still verifies
	 * from the outside with its new one, whose SHA-256 the verdict named. */
	assert_true(kl_registry_device_certs(g.reg, "AG-0", count_cert, &cc) >= 3);
	assert_int_equal(cc.valid, 2);
	assert_int_equal(cc.superseded, 1);
	check_dut(g.good[0], "AG-0", res.idevid_sha256);
}

/* A refusal travels as FAIL: a serial the registry does not know. */
static void test_fail_verdict_exits_1(void **state)
{
	int64_t before = issued();
	struct run r;

	(void)state;
	run_agent(g.good[1]->tcti, "NOT-PREREG", NULL, NULL, -1, &r);
	assert_int_equal(r.handshake_rc, 0);
	assert_int_not_equal(r.res.rc, 0);
	assert_int_equal(r.agent_status, 1);
	assert_non_null(strstr(r.agent_out, "FAIL serial=NOT-PREREG reason="));
	assert_non_null(strstr(r.agent_out, r.res.reason));
	assert_int_equal(issued(), before);
}

static void test_serial_mismatch(void **state)
{
	int64_t before = issued();
	struct run r;

	(void)state;
	run_agent(g.good[1]->tcti, "AG-1", "AG-2", NULL, -1, &r);
	assert_true(r.handshake_rc < 0);
	assert_string_equal(r.handshake_reason, "serial_mismatch");
	assert_int_equal(r.agent_status, 1);
	assert_non_null(strstr(r.agent_out, "FAIL serial=AG-1 reason=serial_mismatch"));
	assert_int_equal(issued(), before);
}

/* The agent dies after 5 TPM commands (--die-after, as a pulled cable):
 * link_lost, then a second run provisions with one set of certificates. */
static void test_agent_dies_then_resumes(void **state)
{
	const char *die[] = { "--die-after", "5", NULL };
	struct run r;

	(void)state;
	run_agent(g.good[2]->tcti, "DIE-1", NULL, die, -1, &r);
	assert_int_equal(r.handshake_rc, 0);
	assert_int_not_equal(r.res.rc, 0);
	assert_string_equal(r.res.reason, "link_lost");
	assert_int_equal(r.agent_status, 3);
	run_agent(g.good[2]->tcti, "DIE-1", NULL, NULL, -1, &r);
	if (r.res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(r.res.failed_step), r.res.reason,
		         r.res.message);
	assert_int_equal(r.agent_status, 0);
	check_dut(g.good[2], "DIE-1", r.res.idevid_sha256);
	assert_provisioned_once("DIE-1");
}

/* The agent's TPM goes away mid-job (its swtpm powered off at the start of
 * the keys step): the agent says ERROR reason=tpm_error, the job is refused
 * with the agent's reason (agent_tpm_error) and its message, nothing is
 * issued, the device stays provisioning; with the TPM back, a second run
 * resumes and provisions it once. */
static void test_agent_tpm_fails_then_resumes(void **state)
{
	int64_t before = issued();
	kl_registry_device dev;
	struct run r;

	(void)state;
	run_agent_stopping(g.terr[0]->tcti, "TERR-1", NULL, NULL, KL_STEP_KEYS, g.terr[0], &r);
	assert_int_equal(r.handshake_rc, 0);
	assert_int_not_equal(r.res.rc, 0);
	if (strcmp(r.res.reason, "agent_tpm_error") != 0)
		fail_msg("%s [%s] %s", kl_step_name(r.res.failed_step), r.res.reason,
		         r.res.message);
	assert_int_equal(r.res.failed_step, KL_STEP_KEYS);
	assert_non_null(strstr(r.res.message, "tpm_error"));
	assert_non_null(strstr(r.res.message, "the TPM ("));
	assert_int_equal(r.agent_status, 3);
	assert_string_equal(r.agent_out, "");
	assert_int_equal(issued(), before);
	assert_int_equal(kl_registry_device_get(g.reg, "TERR-1", &dev), 0);
	assert_int_equal(dev.state, KL_DEVICE_PROVISIONING);

	assert_int_equal(kl_dut_start(g.floor, g.terr[0]), 0);
	run_agent(g.terr[0]->tcti, "TERR-1", NULL, NULL, -1, &r);
	if (r.res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(r.res.failed_step), r.res.reason,
		         r.res.message);
	assert_int_equal(r.agent_status, 0);
	check_dut(g.terr[0], "TERR-1", r.res.idevid_sha256);
	assert_provisioned_once("TERR-1");
}

/* The link cut at the start of each step: link_lost (unless the step and
 * the ones after it need no TPM: the commit), then a second run
 * provisions the DUT with exactly one valid set of certificates. */
static void test_cut_at_every_step(void **state)
{
	kl_audit_report rep;

	(void)state;
	for (int s = 0; s < N_CUT; s++) {
		char serial[16];
		struct run r;

		snprintf(serial, sizeof(serial), "CUT-%d", s);
		run_agent(g.cut[s]->tcti, serial, NULL, NULL, s, &r);
		assert_int_equal(r.handshake_rc, 0);
		if (s != KL_STEP_COMMIT) {
			if (r.res.rc == 0 || strcmp(r.res.reason, "link_lost") != 0)
				fail_msg("cut at %s: rc %d [%s] %s", kl_step_name((kl_step)s),
				         r.res.rc, r.res.reason, r.res.message);
		}
		run_agent(g.cut[s]->tcti, serial, NULL, NULL, -1, &r);
		if (r.res.rc != 0)
			fail_msg("after a cut at %s: %s [%s] %s", kl_step_name((kl_step)s),
			         kl_step_name(r.res.failed_step), r.res.reason, r.res.message);
		assert_int_equal(r.agent_status, 0);
		assert_provisioned_once(serial);
		check_dut(g.cut[s], serial, r.res.idevid_sha256);
	}
	assert_int_equal(kl_store_audit_verify(g.store, &rep), 0);
}

/* ---- raw clients: what a broken or hostile agent sends ---- */

static int raw_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Reads the station's answer: one ERROR frame, and its reason. */
static void expect_error_frame(int fd, const char *reason)
{
	static kl_link_decoder d;
	static kl_link_text t;
	uint8_t buf[1024];
	kl_link_err e;
	struct timeval tv = { .tv_sec = 10 };
	int r = KL_LINK_NEED_MORE;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t have = 0, off = 0;

	/* Frames before it (WELCOME, a TPM command) are passed over. */
	kl_link_decoder_init(&d);
	for (;;) {
		size_t used = 0;

		if (off == have) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);

			assert_true(n > 0);
			have = (size_t)n;
			off = 0;
		}
		r = kl_link_decoder_feed(&d, buf + off, have - off, &used, &e);
		assert_true(r >= 0);
		off += used;
		if (r == KL_LINK_FRAME && d.type == KL_LINK_ERROR)
			break;
		assert_true(r == KL_LINK_NEED_MORE || d.type == KL_LINK_WELCOME ||
		            d.type == KL_LINK_TPM_COMMAND);
	}
	assert_int_equal(kl_link_text_parse(d.payload, d.len, &t, &e), 0);
	assert_string_equal(kl_link_text_get(&t, "reason"), reason);
	assert_true(strlen(kl_link_text_get(&t, "message")) > 0);
}

static size_t hello_frame(uint8_t *out, const char *proto_min, const char *proto_max,
                          const char *serial)
{
	char text[512];
	size_t len = 0;
	kl_link_err e;

	assert_int_equal(kl_link_text_add(text, sizeof(text), &len, "proto_min", proto_min, &e), 0);
	assert_int_equal(kl_link_text_add(text, sizeof(text), &len, "proto_max", proto_max, &e), 0);
	assert_int_equal(kl_link_text_add(text, sizeof(text), &len, "serial", serial, &e), 0);
	kl_link_header_encode(out, KL_LINK_HELLO, (uint32_t)len);
	memcpy(out + KL_LINK_HEADER_SIZE, text, len);
	return KL_LINK_HEADER_SIZE + len;
}

/* A raw client sends bytes (then closes its sending side when half_close);
 * the station's handshake refuses with reason, and says so on the wire
 * when tell. */
static void raw_refused(const void *bytes, size_t n, bool half_close, int hello_ms,
                        const char *reason, bool tell)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_link_wait w;
	int64_t before = issued();
	int fd;

	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	fd = raw_connect(kl_link_listener_port(l));
	if (n)
		assert_int_equal(send(fd, bytes, n, MSG_NOSIGNAL), (ssize_t)n);
	if (half_close)
		shutdown(fd, SHUT_WR);
	w = within(5000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(hello_ms);
	assert_true(kl_link_handshake(c, &w, "test-station", NULL, &info) < 0);
	assert_string_equal(kl_link_conn_reason(c), reason);
	assert_true(strlen(kl_error_detail()) > 0);
	if (tell)
		expect_error_frame(fd, reason);
	close(fd);
	kl_link_conn_free(c);
	kl_link_listener_free(l);
	assert_int_equal(issued(), before);
}

static void test_raw_refusals(void **state)
{
	uint8_t buf[KL_LINK_HEADER_SIZE + 1024];
	size_t n;

	(void)state;
	/* Garbage: HTTP where a frame belongs, a bad reserved byte, an unknown
	 * type, a HELLO whose text is not key=value, a TPM frame first. */
	raw_refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, false, 2000, "link_garbage", true);
	n = hello_frame(buf, "1", "1", "RAW-1");
	buf[6] = 1;
	raw_refused(buf, n, false, 2000, "link_garbage", true);
	n = hello_frame(buf, "1", "1", "RAW-1");
	buf[5] = 42;
	raw_refused(buf, n, false, 2000, "link_garbage", true);
	kl_link_header_encode(buf, KL_LINK_HELLO, 5);
	memcpy(buf + KL_LINK_HEADER_SIZE, "junk\n", 5);
	raw_refused(buf, KL_LINK_HEADER_SIZE + 5, false, 2000, "link_garbage", true);
	kl_link_header_encode(buf, KL_LINK_PING, 0);
	raw_refused(buf, KL_LINK_HEADER_SIZE, false, 2000, "link_garbage", true);
	/* Oversize: a header announcing 1 MiB; refused from the header. */
	kl_link_header_encode(buf, KL_LINK_HELLO, 1u << 20);
	raw_refused(buf, KL_LINK_HEADER_SIZE, false, 2000, "link_oversize", true);
	/* Version mismatch: an agent of versions 2..3 only. */
	n = hello_frame(buf, "2", "3", "RAW-1");
	raw_refused(buf, n, false, 2000, "version_mismatch", true);
	/* A serial the link does not take. */
	n = hello_frame(buf, "1", "1", "RAW/1");
	raw_refused(buf, n, false, 2000, "serial_invalid", true);
	/* Truncated: half a header, then the agent closes. */
	n = hello_frame(buf, "1", "1", "RAW-1");
	raw_refused(buf, 7, true, 2000, "link_truncated", false);
	raw_refused(buf, n - 3, true, 2000, "link_truncated", false);
	/* Gone before a byte. */
	raw_refused(NULL, 0, true, 2000, "link_lost", false);
	/* Silent: connects and says nothing; refused within the timeout. */
	double t0 = kl_link_now_ms();
	raw_refused(NULL, 0, false, 500, "link_timeout", true);
	assert_true(kl_link_now_ms() - t0 < 5000);
}

/* A silent agent after its hello: the engine's first TPM command times out
 * (link_timeout within the configured timeout), nothing issued. */
static void test_silent_agent(void **state)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_job_result res;
	uint8_t buf[512];
	kl_link_wait w;
	int64_t before = issued();
	int fd, saved = g.cfg.tpm_timeout_ms;

	(void)state;
	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	fd = raw_connect(kl_link_listener_port(l));
	size_t n = hello_frame(buf, "1", "1", "AG-3");
	assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
	w = within(5000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(5000);
	assert_int_equal(kl_link_handshake(c, &w, "test-station", "AG-3", &info), 0);

	kl_job job = { .serial = info.serial,
		       .link = "agent:silent",
		       .agent = c,
		       .ek_type = KL_EK_P256,
		       .actor = "operator:test" };
	g.cfg.tpm_timeout_ms = 700;
	assert_int_equal(kl_engine_provision(&g.cfg, &job, &res), 0);
	g.cfg.tpm_timeout_ms = saved;
	assert_int_not_equal(res.rc, 0);
	assert_string_equal(res.reason, "link_timeout");
	assert_int_equal(res.failed_step, KL_STEP_DISCOVER);
	assert_true(res.total_ms < 5000);
	assert_int_equal(issued(), before);
	close(fd);
	kl_link_conn_free(c);
	kl_link_listener_free(l);
}

/* An agent that answers a TPM command with a frame the link refuses is
 * dropped with that reason; nothing issued. */
static void bad_answer(const uint8_t *frame, size_t n, const char *reason)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_job_result res;
	uint8_t buf[512];
	kl_link_wait w;
	int64_t before = issued();
	int fd;

	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	fd = raw_connect(kl_link_listener_port(l));
	size_t hn = hello_frame(buf, "1", "1", "AG-3");
	assert_int_equal(send(fd, buf, hn, MSG_NOSIGNAL), (ssize_t)hn);
	/* Sent before the command: the station reads it as the answer. */
	assert_int_equal(send(fd, frame, n, MSG_NOSIGNAL), (ssize_t)n);
	w = within(5000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(5000);
	assert_int_equal(kl_link_handshake(c, &w, "test-station", NULL, &info), 0);

	kl_job job = { .serial = info.serial,
		       .link = "agent:bad",
		       .agent = c,
		       .ek_type = KL_EK_P256,
		       .actor = "operator:test" };
	assert_int_equal(kl_engine_provision(&g.cfg, &job, &res), 0);
	assert_int_not_equal(res.rc, 0);
	if (strcmp(res.reason, reason) != 0)
		fail_msg("want %s, got [%s] %s", reason, res.reason, res.message);
	assert_int_equal(res.failed_step, KL_STEP_DISCOVER);
	assert_true(kl_link_conn_dead(c));
	/* The agent was told before the station let go. */
	expect_error_frame(fd, reason);
	assert_int_equal(issued(), before);
	close(fd);
	kl_link_conn_free(c);
	kl_link_listener_free(l);
}

static void test_bad_answers(void **state)
{
	uint8_t f[KL_LINK_HEADER_SIZE + 64];

	(void)state;
	/* A TPM_RESPONSE header announcing 64 KiB. */
	kl_link_header_encode(f, KL_LINK_TPM_RESPONSE, 65536);
	bad_answer(f, KL_LINK_HEADER_SIZE, "link_oversize");
	/* Bad magic where the answer belongs. */
	memcpy(f, "XXXXXXXXXXXXXXXX", 16);
	bad_answer(f, 16, "link_garbage");
	/* A TPM response whose size field lies. */
	kl_link_header_encode(f, KL_LINK_TPM_RESPONSE, 10);
	memcpy(f + KL_LINK_HEADER_SIZE, "\x80\x01\x00\x00\x00\x0b\x00\x00\x00\x00", 10);
	bad_answer(f, KL_LINK_HEADER_SIZE + 10, "link_garbage");
	/* A HELLO where the answer belongs. */
	size_t n = hello_frame(f, "1", "1", "AG-3");
	bad_answer(f, n, "link_garbage");
}

/* The agent reads its serial from a file or a command; a FAIL verdict
 * (here the station's own, after the hello) is exit 1. */
static void serial_from(const char *const *extra, const char *want)
{
	kl_link_listener *l = NULL;
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	char out[PATH_MAX], text[1024], line[160];
	kl_link_wait w;
	pid_t pid;
	int st;

	snprintf(out, sizeof(out), "%s/agent-serial.out", g.dir);
	assert_int_equal(kl_link_listen("127.0.0.1:0", false, &l), 0);
	pid = spawn_agent(kl_link_listener_port(l), g.good[3]->tcti, NULL, out, extra);
	w = within(20000);
	assert_int_equal(kl_link_accept(l, &w, &c), 0);
	w = within(10000);
	assert_int_equal(kl_link_handshake(c, &w, "test-station", NULL, &info), 0);
	assert_string_equal(info.serial, want);
	w = within(5000);
	assert_int_equal(kl_link_send_verdict(c, &w, want, false, NULL, "operator_stop",
	                                      "stopped by the operator"),
	                 0);
	kl_link_conn_free(c);
	kl_link_listener_free(l);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 1);
	read_file(out, text, sizeof(text));
	snprintf(line, sizeof(line),
	         "FAIL serial=%s reason=operator_stop: stopped by the operator\n", want);
	assert_string_equal(text, line);
}

static int agent_status(const char *const *args)
{
	const char *argv[16] = { KEYLINE_AGENT_BIN };
	size_t n = 1;
	int st;
	pid_t pid;

	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_agent_options(void **state)
{
	char file[PATH_MAX], bad[PATH_MAX];
	FILE *f;

	(void)state;
	snprintf(file, sizeof(file), "%s/serial.txt", g.dir);
	f = fopen(file, "w");
	fputs("FILE-1  \nsecond line\n", f);
	fclose(f);
	const char *from_file[] = { "--serial-file", file, NULL };
	serial_from(from_file, "FILE-1");
	const char *from_cmd[] = { "--serial-cmd", "echo CMD-1", NULL };
	serial_from(from_cmd, "CMD-1");

	/* Usage errors are 2, before anything is opened. */
	snprintf(bad, sizeof(bad), "%s/bad-serial.txt", g.dir);
	f = fopen(bad, "w");
	fputs("not/a serial\n", f);
	fclose(f);
	const char *help[] = { "--help", NULL };
	assert_int_equal(agent_status(help), 0);
	const char *none[] = { "--serial", "A", NULL };
	assert_int_equal(agent_status(none), 2);
	const char *two[] = { "--station",    "127.0.0.1:1", "--serial", "A",
		              "--serial-cmd", "true",        NULL };
	assert_int_equal(agent_status(two), 2);
	const char *badser[] = { "--station", "127.0.0.1:1", "--serial-file", bad, NULL };
	assert_int_equal(agent_status(badser), 2);
	const char *nofile[] = { "--station", "127.0.0.1:1", "--serial-file", "/nonexistent/x",
		                 NULL };
	assert_int_equal(agent_status(nofile), 2);
	const char *failcmd[] = { "--station", "127.0.0.1:1", "--serial-cmd", "exit 3", NULL };
	assert_int_equal(agent_status(failcmd), 2);
	const char *badst[] = { "--station", "nowhere", "--serial", "A", NULL };
	assert_int_equal(agent_status(badst), 2);
	const char *badto[] = { "--station",   "127.0.0.1:1", "--serial", "A",
		                "--timeout-s", "0",           NULL };
	assert_int_equal(agent_status(badto), 2);
	/* No station listening (a closed port): a link error, 3. */
	const char *nost[] = { "--station", "127.0.0.1:1",   "--serial", "A",
		               "--tcti",    g.good[3]->tcti, NULL };
	assert_int_equal(agent_status(nost), 3);
}

static void test_listener_refuses_wildcard(void **state)
{
	kl_link_listener *l = NULL;

	(void)state;
	assert_int_equal(kl_link_listen("0.0.0.0:0", false, &l), -KL_E_PERM);
	assert_non_null(strstr(kl_error_detail(), "every interface"));
	assert_int_equal(kl_link_listen("[::]:0", false, &l), -KL_E_PERM);
	assert_int_equal(kl_link_listen("localhost:0", false, &l), -KL_E_INVALID);
	assert_int_equal(kl_link_listen("127.0.0.1", false, &l), -KL_E_INVALID);
	assert_int_equal(kl_link_listen("127.0.0.1:70000", false, &l), -KL_E_INVALID);
	assert_int_equal(kl_link_listen("0.0.0.0:0", true, &l), 0);
	assert_true(kl_link_listener_port(l) > 0);
	kl_link_listener_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listener_refuses_wildcard),
		cmocka_unit_test(test_provision_through_agent),
		cmocka_unit_test(test_renew_through_agent),
		cmocka_unit_test(test_fail_verdict_exits_1),
		cmocka_unit_test(test_serial_mismatch),
		cmocka_unit_test(test_raw_refusals),
		cmocka_unit_test(test_silent_agent),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_agent_options),
		cmocka_unit_test(test_agent_dies_then_resumes),
		cmocka_unit_test(test_agent_tpm_fails_then_resumes),
		cmocka_unit_test(test_cut_at_every_step),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
