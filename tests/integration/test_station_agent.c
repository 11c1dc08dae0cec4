/* `keyline station` with a [link] listener on 127.0.0.1 and two agent
 * slots, and real keyline-agent processes for floor swtpm DUTs: zero touch
 * provisions a DUT the moment it attaches; require_scan refuses a scan
 * that names another serial (serial_mismatch, nothing issued); an agent
 * killed mid-job ends it link_lost and the same DUT attaching again
 * provisions with one set of certificates; garbage and silence on the
 * listener are dropped with their reason while the daemon answers; a third
 * agent while both slots hold a DUT gets no_free_slot.
 *
 * Each test starts its own daemon (the policy differs) and stops it, and
 * every agent it started, even when it fails. Waits are bounded against
 * hanging; nothing asserts on how long anything took. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "kl_error.h"
#include "agent_test.h"
#include "station_test.h"

#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

#define LIVENESS_MS (180 * 1000) /* a bound against hanging, never a timing check */
#define N_DUTS      5
#define MAX_AGENTS  8

static struct {
	struct env e;
	kl_vendor *acme;
	kl_dut **duts;
	char sock[PATH_MAX];
	char log[PATH_MAX];
	char base_conf[8192];
	pid_t daemon;
	int port;
	kl_client *c; /* subscribed to every event */
	pid_t agents[MAX_AGENTS];
	struct st_events ev;  /* kept by wait_event */
	int hello_timeout_ms; /* [link] hello_timeout_ms; 0: 1500 */
} g;

static json_object *call_ok(const char *method, const char *params)
{
	return st_call_ok(g.c, method, params);
}

/* The next event of type whose key is value (key NULL: any). */
static json_object *wait_event(const char *type, const char *key, const char *value)
{
	return st_wait_event(g.c, &g.ev, g.log, LIVENESS_MS, type, key, value);
}

static void agents_kill(void)
{
	for (int i = 0; i < MAX_AGENTS; i++)
		if (g.agents[i] > 0) {
			kill(g.agents[i], SIGKILL);
			waitpid(g.agents[i], NULL, 0);
			g.agents[i] = 0;
		}
}

static void daemon_stop(void)
{
	agents_kill();
	st_daemon_stop(&g.c, &g.ev, &g.daemon, g.log);
}

/* Writes keyline.conf: the listener on listen, this policy, two agent
 * slots. */
static void conf_write(const char *listen, bool zero_touch, bool require_scan)
{
	char conf[PATH_MAX];
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/keyline.conf", g.e.home);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f,
	        "%s\nsocket = %s\n\n[link]\nlisten = %s\nhello_timeout_ms = %d\n"
	        "zero_touch = %s\nrequire_scan = %s\n\n[slots]\nA = agent\nB = agent\n",
	        g.base_conf, g.sock, listen, g.hello_timeout_ms ? g.hello_timeout_ms : 1500,
	        zero_touch ? "true" : "false", require_scan ? "true" : "false");
	assert_int_equal(fclose(f), 0);
}

/* Writes keyline.conf with this policy and starts the daemon on it. */
static void daemon_start(bool zero_touch, bool require_scan)
{
	json_object *r, *l;

	conf_write("127.0.0.1:0", zero_touch, require_scan);
	g.daemon = station_spawn(g.e.home, g.log);
	station_wait_serving(g.daemon, g.sock, g.log);
	if (kl_client_connect(g.sock, &g.c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
	json_object_put(call_ok("events.subscribe", NULL));
	r = call_ok("station.status", NULL);
	l = jget(r, "link");
	assert_string_equal(jstr(l, "listen"), "127.0.0.1:0");
	g.port = (int)jint(l, "port");
	assert_true(g.port > 0);
	assert_int_equal(jbool(l, "zero_touch"), zero_touch);
	json_object_put(r);
}

/* keyline-agent for DUT i as serial, stdout to out; its pid is kept to be
 * stopped by daemon_stop. */
static pid_t agent_start(int i, const char *serial, const char *out, const char *extra)
{
	const char *die[] = { "--die-after", extra, NULL };
	pid_t pid = agent_spawn_tcp(g.port, g.duts[i]->tcti, serial, "60", extra ? die : NULL, out);

	for (int k = 0; k < MAX_AGENTS; k++)
		if (g.agents[k] == 0) {
			g.agents[k] = pid;
			break;
		}
	return pid;
}

/* The agent's exit status (bounded wait). */
static int agent_wait(pid_t pid)
{
	int st = st_wait_exit(pid, LIVENESS_MS);

	if (st < 0)
		fail_msg("keyline-agent %d did not exit", (int)pid);
	for (int k = 0; k < MAX_AGENTS; k++)
		if (g.agents[k] == pid)
			g.agents[k] = 0;
	return st;
}

static void preregister(const char *serial)
{
	st_preregister(g.c, serial);
}

static size_t device_certs(const char *serial, char fp[65])
{
	return st_device_certs(g.c, serial, fp);
}

static const char *device_state(const char *serial)
{
	return st_device_state(g.c, serial);
}

static void expect_audit(const char *action, const char *reason)
{
	st_expect_audit(g.c, LIVENESS_MS, action, reason);
}

static void expect_finished(json_object *ev, const char *result, const char *reason)
{
	st_expect_finished(ev, result, reason);
}

static const char *slot_dut(const char *slot)
{
	return st_slot_dut(g.c, slot);
}

static int group_setup(void **state)
{
	(void)state;
	if (st_floor_setup(&g.e, &g.acme, &g.duts, "za", N_DUTS, g.log, g.sock, g.base_conf,
	                   sizeof(g.base_conf)) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	daemon_stop();
	kl_floor_free(g.e.floor);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	daemon_stop();
	return 0;
}

/* zero_touch: the DUT attaches and is provisioned by itself with the
 * hello's serial; its agent exits 0 naming the IDevID certificate. */
static void test_zero_touch(void **state)
{
	char out[PATH_MAX], fp[65], *text, want[160];
	json_object *ev;
	pid_t a;

	(void)state;
	daemon_start(true, false);
	preregister("ZT-0");
	snprintf(out, sizeof(out), "%s/agent-zt0.out", g.e.dir);
	a = agent_start(0, "ZT-0", out, NULL);
	ev = wait_event("link.attached", "serial", "ZT-0");
	assert_string_equal(jstr(ev, "model"), "WS-2");
	assert_string_equal(jstr(ev, "firmware"), "1.0.3");
	assert_true(strncmp(jstr(ev, "peer"), "tcp:127.0.0.1:", 14) == 0);
	json_object_put(ev);
	ev = wait_event("job.finished", "serial", "ZT-0");
	expect_finished(ev, "passed", NULL);
	json_object_put(ev);
	assert_int_equal(agent_wait(a), 0);
	json_object_put(wait_event("link.detached", "serial", "ZT-0"));
	assert_string_equal(device_state("ZT-0"), "provisioned");
	assert_int_equal(device_certs("ZT-0", fp), 2);
	text = slurp(out);
	snprintf(want, sizeof(want), "PASS serial=ZT-0 fingerprint=%s", fp);
	if (!strstr(text, want))
		fail_msg("agent said '%s', expected '%s'", text, want);
	free(text);
	assert_string_equal(slot_dut("A"), "");
}

/* require_scan: the DUT waits for the operator's scan; one that names
 * another serial is refused, nothing issued, and the agent exits 1. */
static void test_scan_mismatch(void **state)
{
	char out[PATH_MAX], fp[65], *text;
	json_object *ev, *r;
	pid_t a;

	(void)state;
	daemon_start(true, true);
	preregister("ZT-1");
	snprintf(out, sizeof(out), "%s/agent-zt1.out", g.e.dir);
	a = agent_start(1, "ZT-1", out, NULL);
	ev = wait_event("link.attached", "serial", "ZT-1");
	json_object_put(ev);
	/* Nothing starts by itself. */
	sleep_ms(500);
	assert_string_equal(slot_dut("A"), "ZT-1");
	r = call_ok("job.list", NULL);
	json_object_put(r);
	assert_string_equal(device_state("ZT-1"), "preregistered");
	r = call_ok("job.provision", "{\"slot\":\"A\",\"serial\":\"ZT-9\"}");
	json_object_put(r);
	ev = wait_event("job.finished", "serial", "ZT-9");
	expect_finished(ev, "failed", "serial_mismatch");
	json_object_put(ev);
	assert_int_equal(agent_wait(a), 1);
	text = slurp(out);
	if (!strstr(text, "FAIL serial=ZT-1 reason=serial_mismatch"))
		fail_msg("agent said '%s'", text);
	free(text);
	assert_int_equal(device_certs("ZT-1", fp), 0);
	assert_string_equal(device_state("ZT-1"), "preregistered");
	expect_audit("station.provision.refused", "serial_mismatch");
	json_object_put(wait_event("link.detached", "serial", "ZT-1"));
}

/* An agent that dies mid-job: link_lost, the slot free again; the same DUT
 * attaching again provisions with one set of certificates. */
static void test_killed_mid_job(void **state)
{
	char out[PATH_MAX], fp[65];
	json_object *ev;
	pid_t a;

	(void)state;
	daemon_start(true, false);
	preregister("ZT-2");
	snprintf(out, sizeof(out), "%s/agent-zt2a.out", g.e.dir);
	a = agent_start(2, "ZT-2", out, "40");
	json_object_put(wait_event("link.attached", "serial", "ZT-2"));
	ev = wait_event("job.finished", "serial", "ZT-2");
	expect_finished(ev, "failed", "link_lost");
	json_object_put(ev);
	assert_int_equal(agent_wait(a), 3);
	ev = wait_event("link.detached", "serial", "ZT-2");
	assert_string_equal(jstr(ev, "reason"), "link_lost");
	json_object_put(ev);
	assert_string_equal(slot_dut("A"), "");
	assert_string_equal(slot_dut("B"), "");

	snprintf(out, sizeof(out), "%s/agent-zt2b.out", g.e.dir);
	a = agent_start(2, "ZT-2", out, NULL);
	json_object_put(wait_event("link.attached", "serial", "ZT-2"));
	ev = wait_event("job.finished", "serial", "ZT-2");
	expect_finished(ev, "passed", NULL);
	json_object_put(ev);
	assert_int_equal(agent_wait(a), 0);
	assert_string_equal(device_state("ZT-2"), "provisioned");
	assert_int_equal(device_certs("ZT-2", fp), 2);
}

static int raw_connect(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g.port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Sends a HELLO with this text (NULL: a header announcing 1 MiB) and
 * waits for the station to refuse it with reason. */
static void raw_hello(const char *text, const char *reason)
{
	uint8_t buf[512] = { 'K', 'L', 'N', 'K', 1, 1, 0, 0 };
	size_t len = text ? strlen(text) : 1u << 20;
	int fd = raw_connect();
	json_object *ev;

	buf[8] = (uint8_t)(len >> 24);
	buf[9] = (uint8_t)(len >> 16);
	buf[10] = (uint8_t)(len >> 8);
	buf[11] = (uint8_t)len;
	if (text)
		memcpy(buf + 12, text, strlen(text));
	assert_int_equal(write(fd, buf, 12 + (text ? strlen(text) : 0)),
	                 (ssize_t)(12 + (text ? strlen(text) : 0)));
	ev = wait_event("link.refused", "reason", reason);
	assert_true(strlen(jstr(ev, "message")) > 0);
	json_object_put(ev);
	close(fd);
}

/* Garbage and silence on the listener are dropped with their reason, and
 * the daemon answers station.status while a silent client holds a
 * handshake. */
static void test_garbage_and_silence(void **state)
{
	static const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	int fd, silent;
	json_object *ev, *r;

	(void)state;
	/* A long hello timeout, so that "answered while the handshake waits"
	 * has a wide margin on a loaded (sanitizer) machine: the status calls
	 * must come back well before it, which a loop that waited on the link
	 * could not do. */
	g.hello_timeout_ms = 12000;
	daemon_start(true, false);
	fd = raw_connect();
	assert_int_equal(write(fd, junk, sizeof(junk) - 1), (ssize_t)(sizeof(junk) - 1));
	ev = wait_event("link.refused", "reason", "link_garbage");
	json_object_put(ev);
	close(fd);

	silent = raw_connect();
	for (int i = 0; i < 5; i++) {
		int64_t t0 = mono_ms();

		r = call_ok("station.status", NULL);
		json_object_put(r);
		/* Far below hello_timeout_ms: the loop did not wait on the link. */
		assert_true(mono_ms() - t0 < g.hello_timeout_ms / 2);
	}
	ev = wait_event("link.refused", "reason", "link_timeout");
	json_object_put(ev);
	close(silent);
	g.hello_timeout_ms = 0;

	/* A frame larger than the limit, another protocol version, a bad
	 * serial: each dropped with its reason. */
	raw_hello(NULL, "link_oversize");
	raw_hello("proto_min=7\nproto_max=9\nserial=RAW-V\n", "version_mismatch");
	raw_hello("proto_min=1\nproto_max=1\nserial=no/such\n", "serial_invalid");
	expect_audit("station.link.refused", "link_garbage");
	expect_audit("station.link.refused", "link_timeout");
	expect_audit("station.link.refused", "version_mismatch");
	assert_string_equal(slot_dut("A"), "");
	assert_string_equal(slot_dut("B"), "");
}

/* More silent clients than handshakes run at once: the rest wait in the
 * listen backlog, the daemon answers meanwhile, and a real agent behind
 * them all still attaches once they are dropped. */
static void test_handshake_backlog(void **state)
{
	enum { N_SILENT = 20 };
	int fds[N_SILENT];
	char out[PATH_MAX];
	json_object *ev;
	pid_t a;

	(void)state;
	daemon_start(false, false);
	for (int i = 0; i < N_SILENT; i++)
		fds[i] = raw_connect();
	snprintf(out, sizeof(out), "%s/agent-backlog.out", g.e.dir);
	a = agent_start(1, "BL-0", out, NULL);
	json_object_put(call_ok("station.status", NULL));
	for (int i = 0; i < N_SILENT; i++) {
		ev = wait_event("link.refused", "reason", "link_timeout");
		json_object_put(ev);
	}
	json_object_put(wait_event("link.attached", "serial", "BL-0"));
	assert_string_equal(slot_dut("A"), "BL-0");
	for (int i = 0; i < N_SILENT; i++)
		close(fds[i]);
	(void)a;
}

/* Both slots hold a DUT waiting for its scan: a third gets no_free_slot;
 * an attached agent that dies is seen to go (link_lost). */
static void test_no_free_slot(void **state)
{
	char out[3][PATH_MAX], *text;
	pid_t a[3];
	json_object *ev;

	(void)state;
	daemon_start(false, false);
	for (int i = 0; i < 3; i++)
		snprintf(out[i], sizeof(out[i]), "%s/agent-nf%d.out", g.e.dir, i);
	a[0] = agent_start(3, "NF-0", out[0], NULL);
	json_object_put(wait_event("link.attached", "serial", "NF-0"));
	a[1] = agent_start(4, "NF-1", out[1], NULL);
	json_object_put(wait_event("link.attached", "serial", "NF-1"));
	a[2] = agent_start(0, "NF-2", out[2], NULL);
	ev = wait_event("link.refused", "serial", "NF-2");
	assert_string_equal(jstr(ev, "reason"), "no_free_slot");
	json_object_put(ev);
	assert_int_equal(agent_wait(a[2]), 1);
	text = slurp(out[2]);
	if (!strstr(text, "reason=no_free_slot"))
		fail_msg("agent said '%s'", text);
	free(text);
	kill(a[0], SIGKILL);
	assert_int_equal(agent_wait(a[0]), 128 + SIGKILL);
	ev = wait_event("link.detached", "serial", "NF-0");
	assert_string_equal(jstr(ev, "reason"), "link_lost");
	json_object_put(ev);
	assert_string_equal(slot_dut("B"), "NF-1");
	/* station.status says which DUT each agent slot holds. */
	{
		json_object *r = call_ok("station.status", NULL);
		json_object *l = jget(jget(r, "link"), "slots");

		assert_int_equal(json_object_array_length(l), 2);
		assert_string_equal(jstr(json_object_array_get_idx(l, 0), "slot"), "A");
		assert_true(json_object_is_type(jget(json_object_array_get_idx(l, 0), "dut"),
		                                json_type_null) ||
		            !jget(json_object_array_get_idx(l, 0), "dut"));
		assert_string_equal(jstr(jget(json_object_array_get_idx(l, 1), "dut"), "serial"),
		                    "NF-1");
		assert_true(jint(jget(json_object_array_get_idx(l, 1), "dut"), "since_ms") > 0);
		json_object_put(r);
	}
	expect_audit("station.link.refused", "no_free_slot");
	(void)a[1];
}

/* A lifecycle job on an agent slot drives the TPM through the link: the
 * DUT provisioned by zero touch attaches again (zero_touch off) and is
 * renewed; its agent takes a PASS with the new certificate's SHA-256. */
static void test_renew_over_agent(void **state)
{
	char out[PATH_MAX], fp[65], want[160], *text;
	json_object *ev;
	pid_t a;

	(void)state;
	daemon_start(false, false);
	snprintf(out, sizeof(out), "%s/agent-renew.out", g.e.dir);
	a = agent_start(0, "ZT-0", out, NULL);
	json_object_put(wait_event("link.attached", "serial", "ZT-0"));
	/* Idle a while first: the worker watches the link meanwhile. */
	sleep_ms(1500);
	json_object_put(call_ok("device.renew", "{\"serial\":\"ZT-0\",\"slot\":\"A\"}"));
	ev = wait_event("job.finished", "serial", "ZT-0");
	assert_string_equal(jstr(ev, "kind"), "renew");
	expect_finished(ev, "passed", NULL);
	assert_true(strlen(jstr(ev, "new_serial")) > 0);
	json_object_put(ev);
	assert_int_equal(agent_wait(a), 0);
	assert_int_equal(device_certs("ZT-0", fp), 2); /* the old IDevID superseded */
	/* The verdict names the new IDevID certificate, the only valid one. */
	snprintf(want, sizeof(want), "PASS serial=ZT-0 fingerprint=%s\n", fp);
	text = slurp(out);
	if (strlen(fp) != 64 || strcmp(text, want) != 0)
		fail_msg("agent said '%s', expected '%s'", text, want);
	free(text);
	json_object_put(wait_event("link.detached", "serial", "ZT-0"));
}

/* listen on a wildcard address without allow_any: the station does not
 * start, and says why. */
static void test_wildcard_refused(void **state)
{
	int64_t until = mono_ms() + LIVENESS_MS;
	pid_t pid;
	int st = 0;
	char *log;

	(void)state;
	conf_write("0.0.0.0:0", false, false);
	pid = station_spawn(g.e.home, g.log);
	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (mono_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("keyline station started on a wildcard listener");
		}
		sleep_ms(50);
	}
	assert_true(WIFEXITED(st));
	assert_int_not_equal(WEXITSTATUS(st), 0);
	log = slurp(g.log);
	if (!strstr(log, "0.0.0.0") || !strstr(log, "allow"))
		fail_msg("the refusal does not name the address and allow_any:\n%s", log);
	free(log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_zero_touch, test_teardown),
		cmocka_unit_test_teardown(test_scan_mismatch, test_teardown),
		cmocka_unit_test_teardown(test_killed_mid_job, test_teardown),
		cmocka_unit_test_teardown(test_garbage_and_silence, test_teardown),
		cmocka_unit_test_teardown(test_handshake_backlog, test_teardown),
		cmocka_unit_test_teardown(test_no_free_slot, test_teardown),
		cmocka_unit_test_teardown(test_renew_over_agent, test_teardown),
		cmocka_unit_test_teardown(test_wildcard_refused, test_teardown),
	};

	return cmocka_run_group_tests_name("station_agent", tests, group_setup, group_teardown);
}
