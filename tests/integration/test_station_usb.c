/* `keyline station` with USB agent slots ([slots] A = usb:1-2, B =
 * usb:auto) and zero touch: a DUT plugged into the station's USB bus
 * attaches to the slot of its port by itself and is provisioned with the
 * serial of its hello, its keyline-agent exiting 0 on the PASS verdict; a
 * DUT unplugged mid-job ends it link_lost and frees its slot; a device
 * whose iSerial is not the serial its agent says is refused
 * serial_mismatch, nothing issued; without zero touch an attached DUT
 * pulled out while it waits is detached link_lost; a DUT already plugged
 * in when the station starts is attached too; bad [slots] usb forms and a bad
 * [link] usb_id are refused naming the setting.
 *
 * WHAT IS EMULATED: the USB bus and the USB device, with umockdev
 * (usb_emul.c: this kernel has no USB). The testbed lives in this process
 * (re-executed under umockdev-wrapper, as its uevents need) and the
 * station runs as a child under umockdev-wrapper with the testbed's
 * UMOCKDEV_DIR: umockdev's preload library in the station
 * reaches the device's ioctl handler here through a socket in the testbed
 * directory and receives the testbed's uevents (hot-plug) the same way.
 * The handler carries the bulk bytes to and from a real keyline-agent
 * process over TCP in place of the gadget's FunctionFS endpoints.
 *
 * WHAT IS REAL: the station daemon (its libusb hot-plug watch, the USB
 * transport, the handshake, slots, jobs, events, registry, SoftHSM CA),
 * keyline-agent, and the TPMs: swtpm DUTs of the floor.
 *
 * Each test starts its own daemon and stops it, and every agent it
 * started, even when it fails. Waits are bounded against hanging; nothing
 * asserts on how long anything took. */
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
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "kl_error.h"
#include "agent_test.h"
#include "station_test.h"
#include "usb_emul.h"

#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

#define LIVENESS_MS (180 * 1000) /* a bound against hanging, never a timing check */
#define N_DUTS      4

static struct {
	struct env e;
	kl_vendor *acme;
	kl_dut **duts;
	char sock[PATH_MAX];
	char log[PATH_MAX];
	char base_conf[8192];
	pid_t daemon;
	kl_client *c; /* subscribed to every event */
	pid_t agent;
	struct st_events ev; /* kept by wait_event */
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

static void agent_kill(void)
{
	usb_emul_agent_close();
	if (g.agent > 0) {
		kill(g.agent, SIGKILL);
		waitpid(g.agent, NULL, 0);
		g.agent = 0;
	}
}

static void daemon_stop(void)
{
	agent_kill();
	st_daemon_stop(&g.c, &g.ev, &g.daemon, g.log);
}

/* Writes keyline.conf: zero touch (or not), these [slots] lines and [link]
 * extra. */
static void conf_write_zt(bool zero_touch, const char *slots, const char *link_extra)
{
	char conf[PATH_MAX];
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/keyline.conf", g.e.home);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "%s\nsocket = %s\n\n[link]\nzero_touch = %s\n%s\n[slots]\n%s", g.base_conf,
	        g.sock, zero_touch ? "true" : "false", link_extra, slots);
	assert_int_equal(fclose(f), 0);
}

static void conf_write(const char *slots, const char *link_extra)
{
	conf_write_zt(true, slots, link_extra);
}

/* `keyline station` under umockdev-wrapper, with this process's testbed
 * (UMOCKDEV_DIR is in the environment it inherits). */
static pid_t station_spawn_usb(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(g.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("umockdev-wrapper", "umockdev-wrapper", KEYLINE_BIN, "--home", g.e.home,
		       "station", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void daemon_start_zt(bool zero_touch)
{
	conf_write_zt(zero_touch, "A = usb:1-2\nB = usb:auto\n", "usb_id = 1d6b:0104\n");
	g.daemon = station_spawn_usb();
	station_wait_serving(g.daemon, g.sock, g.log);
	if (kl_client_connect(g.sock, &g.c) < 0)
		fail_msg("connect %s: %s", g.sock, kl_error_detail());
	json_object_put(call_ok("events.subscribe", NULL));
}

static void daemon_start(void)
{
	daemon_start_zt(true);
}

/* keyline-agent for DUT i saying serial, on the emulated device's
 * endpoints; stdout to out. */
static void agent_start(int i, const char *serial, const char *out)
{
	char station[32];
	const char *argv[] = { KEYLINE_AGENT_BIN,
		               "--station",
		               station,
		               "--tcti",
		               g.duts[i]->tcti,
		               "--serial",
		               serial,
		               "--model",
		               "WS-USB",
		               "--firmware",
		               "2.0",
		               "--timeout-s",
		               "60",
		               NULL };

	snprintf(station, sizeof(station), "127.0.0.1:%d", usb_emul_agent_port());
	g.agent = agent_spawn(argv, out);
	if (usb_emul_agent_accept(LIVENESS_MS) < 0)
		fail_msg("keyline-agent did not connect to the emulated device");
}

/* The agent's exit status (bounded wait). */
static int agent_wait(void)
{
	int st = st_wait_exit(g.agent, LIVENESS_MS);

	if (st < 0)
		fail_msg("keyline-agent %d did not exit", (int)g.agent);
	g.agent = 0;
	usb_emul_agent_close();
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

/* Provisioned by itself over USB: attached on the port's slot, passed,
 * the agent exits 0 naming the IDevID certificate. */
static void expect_zero_touch_pass(const char *serial, const char *out)
{
	char fp[65], want[160], *text;
	json_object *ev;

	ev = wait_event("link.attached", "serial", serial);
	assert_string_equal(jstr(ev, "slot"), "A"); /* usb:1-2 before usb:auto */
	assert_string_equal(jstr(ev, "peer"), "usb:" USB_EMUL_PORT);
	assert_string_equal(jstr(ev, "model"), "WS-USB");
	json_object_put(ev);
	ev = wait_event("job.finished", "serial", serial);
	expect_finished(ev, "passed", NULL);
	json_object_put(ev);
	assert_int_equal(agent_wait(), 0);
	ev = wait_event("link.detached", "serial", serial);
	assert_string_equal(jstr(ev, "peer"), "usb:" USB_EMUL_PORT);
	json_object_put(ev);
	assert_string_equal(device_state(serial), "provisioned");
	assert_int_equal(device_certs(serial, fp), 2);
	text = slurp(out);
	snprintf(want, sizeof(want), "PASS serial=%s fingerprint=%s", serial, fp);
	if (!strstr(text, want))
		fail_msg("agent said '%s', expected '%s'", text, want);
	free(text);
	assert_string_equal(slot_dut("A"), "");
}

static void test_hotplug_zero_touch(void **state)
{
	char out[PATH_MAX];

	(void)state;
	daemon_start();
	preregister("KL-USB-0001");
	preregister("KL-USB-0004"); /* for test_present_at_start */
	snprintf(out, sizeof(out), "%s/agent-usb1.out", g.e.dir);
	agent_start(0, "KL-USB-0001", out);
	assert_true(usb_emul_plug("KL-USB-0001"));
	expect_zero_touch_pass("KL-USB-0001", out);
	usb_emul_unplug();
}

static void test_unplug_mid_job(void **state)
{
	char out[PATH_MAX], fp[65];
	int64_t until = mono_ms() + LIVENESS_MS;
	json_object *ev;

	(void)state;
	daemon_start();
	preregister("KL-USB-0002");
	snprintf(out, sizeof(out), "%s/agent-usb2.out", g.e.dir);
	agent_start(1, "KL-USB-0002", out);
	assert_true(usb_emul_plug("KL-USB-0002"));
	json_object_put(wait_event("link.attached", "serial", "KL-USB-0002"));
	json_object_put(wait_event("job.started", "serial", "KL-USB-0002"));
	while (usb_emul_commands() < 10 && mono_ms() < until)
		sleep_ms(5);
	assert_true(usb_emul_commands() >= 10);
	usb_emul_unplug();
	ev = wait_event("job.finished", "serial", "KL-USB-0002");
	expect_finished(ev, "failed", "link_lost");
	json_object_put(ev);
	ev = wait_event("link.detached", "serial", "KL-USB-0002");
	assert_string_equal(jstr(ev, "reason"), "link_lost");
	json_object_put(ev);
	assert_string_equal(slot_dut("A"), "");
	assert_string_equal(slot_dut("B"), "");
	assert_int_equal(device_certs("KL-USB-0002", fp), 0);
	agent_kill();
}

static void test_iserial_mismatch(void **state)
{
	char out[PATH_MAX], fp[65];
	json_object *ev;

	(void)state;
	daemon_start();
	preregister("KL-USB-0003");
	snprintf(out, sizeof(out), "%s/agent-usb3.out", g.e.dir);
	/* the device says KL-USB-0003, its agent another serial */
	agent_start(2, "KL-USB-0099", out);
	assert_true(usb_emul_plug("KL-USB-0003"));
	ev = wait_event("link.refused", "reason", "serial_mismatch");
	assert_string_equal(jstr(ev, "peer"), "usb:" USB_EMUL_PORT);
	json_object_put(ev);
	assert_true(agent_wait() != 0);
	expect_audit("station.link.refused", "serial_mismatch");
	assert_int_equal(device_certs("KL-USB-0003", fp), 0);
	assert_string_equal(device_state("KL-USB-0003"), "preregistered");
	assert_string_equal(slot_dut("A"), "");
	usb_emul_unplug();
}

/* Without zero touch the DUT waits on its slot for the operator; pulled
 * out meanwhile, it is detached link_lost and the slot is free. */
static void test_unplug_while_waiting(void **state)
{
	char out[PATH_MAX];
	json_object *ev;

	(void)state;
	daemon_start_zt(false);
	snprintf(out, sizeof(out), "%s/agent-usb5.out", g.e.dir);
	agent_start(1, "KL-USB-0005", out);
	assert_true(usb_emul_plug("KL-USB-0005"));
	ev = wait_event("link.attached", "serial", "KL-USB-0005");
	assert_string_equal(jstr(ev, "slot"), "A");
	json_object_put(ev);
	assert_string_equal(slot_dut("A"), "KL-USB-0005");
	usb_emul_unplug();
	ev = wait_event("link.detached", "serial", "KL-USB-0005");
	assert_string_equal(jstr(ev, "reason"), "link_lost");
	json_object_put(ev);
	assert_string_equal(slot_dut("A"), "");
	agent_kill();
}

/* A DUT plugged in before the station starts: enumerated, attached. */
static void test_present_at_start(void **state)
{
	char out[PATH_MAX];

	(void)state;
	snprintf(out, sizeof(out), "%s/agent-usb4.out", g.e.dir);
	agent_start(3, "KL-USB-0004", out);
	assert_true(usb_emul_plug("KL-USB-0004"));
	daemon_start();
	expect_zero_touch_pass("KL-USB-0004", out);
	usb_emul_unplug();
}

/* Bad usb forms are refused at start, naming the setting. */
static void refused_conf(const char *slots, const char *link_extra, const char *needle)
{
	conf_write(slots, link_extra);
	assert_true(keyline(&g.e, "station", NULL) != 0);
	assert_in(g.e.err, needle);
}

static void test_conf_refused(void **state)
{
	(void)state;
	refused_conf("A = usb:1-x\n", "", "[slots] A = usb:1-x");
	refused_conf("A = usb:\n", "", "[slots] A = usb:");
	refused_conf("A = usb:1.2\n", "", "[slots] A = usb:1.2");
	refused_conf("A = usb:auto\n", "usb_id = 1d6b\n", "[link] usb_id = 1d6b");
	refused_conf("A = usb:auto\n", "usb_id = 1d6b:01045\n", "[link] usb_id = 1d6b:01045");
}

static int group_setup(void **state)
{
	(void)state;
	if (st_floor_setup(&g.e, &g.acme, &g.duts, "zu", N_DUTS, g.log, g.sock, g.base_conf,
	                   sizeof(g.base_conf)) < 0)
		return -1;
	/* The testbed last: UMOCKDEV_DIR is for the station, not for ca init. */
	return usb_emul_setup();
}

static int group_teardown(void **state)
{
	(void)state;
	daemon_stop();
	usb_emul_free();
	kl_floor_free(g.e.floor);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	daemon_stop();
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_conf_refused, test_teardown),
		cmocka_unit_test_teardown(test_hotplug_zero_touch, test_teardown),
		cmocka_unit_test_teardown(test_unplug_mid_job, test_teardown),
		cmocka_unit_test_teardown(test_iserial_mismatch, test_teardown),
		cmocka_unit_test_teardown(test_unplug_while_waiting, test_teardown),
		cmocka_unit_test_teardown(test_present_at_start, test_teardown),
	};

	/* Under umockdev's preload library, as the station will be: the
	 * uevents this process sends look the device up in the testbed. */
	(void)argc;
	if (usb_emul_reexec(argv) < 0)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
