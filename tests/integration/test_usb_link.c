/* The station's USB link (station/link/link_usb.c) end to end: a DUT on an
 * emulated USB bus, its real keyline-agent, its real TPM, provisioned by the
 * real engine.
 *
 * WHAT IS EMULATED: the USB bus and the USB device. This machine's kernel
 * has no USB, so umockdev (libumockdev-preload; the test re-executes itself
 * under umockdev-wrapper) makes a sysfs device 1d6b:0104, iSerial
 * "KL-USB-0001", on port 1-2, with one vendor-class interface and bulk
 * endpoints 0x01 OUT / 0x81 IN, and the ioctl handler of usb_emul.c (shared
 * with test_station_usb.c) answers the usbfs ioctls libusb issues (string
 * descriptors by control transfer, bulk URBs). In place of the gadget's FunctionFS endpoint files,
 * the handler carries the bulk bytes to and from a keyline-agent process over a TCP socket (the
 * agent's only transport so far), unchanged. Packet sizes, timing and the host controller are not
 * emulated: one URB carries what libusb submitted.
 *
 * WHAT IS REAL: libusb (enumeration through libudev, hot-plug, synchronous
 * bulk transfers with their timeouts and URB discards), the station's USB
 * transport and link connection, the handshake, the TCTI over the link,
 * the provisioning engine with a SoftHSM CA and an SQLite registry,
 * keyline-agent, and the TPM: a swtpm DUT of the floor.
 *
 * Asserted: a hot-plug arrival starts a job by itself (the test's watch
 * loop stands for the daemon's zero-touch slot) that opens the device on the
 * port the event names, completes HELLO with the agent (whose serial must be
 * the USB iSerial), provisions the DUT (registry row, certificates) and
 * sends a PASS verdict the agent exits 0 on; the transport finds the device
 * by VID:PID, iSerial and port and not by another, and says claim_failed
 * when the interface is taken; raw TPM commands go
 * through; garbage and an oversize header from the device are refused with
 * the codec's reasons; silence times out; a device that leaves while a TPM
 * command is outstanding fails the receive with link_lost, and the watch
 * reports the departure. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine.h"
#include "floor.h"
#include "kl_error.h"
#include "link_conn.h"
#include "link_frame.h"
#include "link_listen.h"
#include "link_usb.h"
#include "registry.h"

#include "pki_fixture.h"
#include "usb_emul.h"

#define VID     USB_EMUL_VID
#define PID     USB_EMUL_PID
#define SERIAL  USB_EMUL_SERIAL
#define PORT    USB_EMUL_PORT
#define WAIT_MS 30000 /* generous: liveness only */

static struct {
	kl_floor *floor;
	kl_vendor *vendor;
	kl_dut **duts;
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	kl_usb *usb;
	pid_t agent;
} g;

/* ---- keyline-agent, the DUT's program ---------------------------------- */

/* The DUT boots its agent: keyline-agent on the DUT's swtpm, connected to
 * the device's bulk endpoints (here: the listener the handler bridges). */
static void agent_start(const kl_dut *d)
{
	char station[32];

	snprintf(station, sizeof(station), "127.0.0.1:%d", usb_emul_agent_port());
	g.agent = fork();
	assert_true(g.agent >= 0);
	if (g.agent == 0) {
		execl(KEYLINE_AGENT_BIN, "keyline-agent", "--station", station, "--tcti", d->tcti,
		      "--serial", SERIAL, "--model", "KL-DEV", "--firmware", "1.0", "--timeout-s",
		      "60", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(usb_emul_agent_accept(WAIT_MS), 0);
}

/* The agent's exit status; its connection is cut first (an agent whose
 * link is gone exits on its own). */
static int agent_stop(void)
{
	int st = 0;

	usb_emul_agent_close();
	if (g.agent <= 0)
		return -1;
	if (waitpid(g.agent, &st, 0) != g.agent)
		st = -1;
	g.agent = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The agent's exit status once it has ended by itself (after a verdict). */
static int agent_wait(void)
{
	int st = 0;
	pid_t pid = g.agent;

	g.agent = 0;
	if (pid <= 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	usb_emul_agent_close();
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the station side --------------------------------------------------- */

static const kl_link_wait *within(int ms)
{
	static kl_link_wait w;

	w = (kl_link_wait){ .deadline_ms = kl_link_now_ms() + ms };
	return &w;
}

static kl_usb_link *open_link(const char *port)
{
	kl_usb_match m = { .vid = VID, .pid = PID, .serial = SERIAL, .port = port };
	kl_usb_link *l = NULL;

	if (kl_usb_link_open(g.usb, &m, &l) < 0)
		fail_msg("open: %s (%s)", kl_error_detail(), kl_usb_reason());
	return l;
}

/* The station's side of a session: the USB link as a link connection,
 * with the agent's HELLO checked against the device's iSerial. */
static kl_link_conn *session(kl_usb_link *l, kl_link_agent_info *info)
{
	kl_link_transport t;
	kl_link_conn *c = NULL;
	char serial[128];

	snprintf(serial, sizeof(serial), "%s", kl_usb_link_serial(l));
	kl_usb_link_transport(l, &t);
	assert_int_equal(kl_link_conn_wrap_transport(&t, &c), 0);
	agent_start(g.duts[0]);
	if (kl_link_handshake(c, within(WAIT_MS), "test-station", serial, info) < 0)
		fail_msg("handshake: %s (%s)", kl_error_detail(), kl_link_conn_reason(c));
	assert_string_equal(info->serial, SERIAL);
	return c;
}

static void send_frame(kl_usb_link *l, kl_link_type type, const void *payload, size_t len)
{
	uint8_t f[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];

	kl_link_header_encode(f, type, (uint32_t)len);
	memcpy(f + KL_LINK_HEADER_SIZE, payload, len);
	if (kl_usb_link_send(l, f, KL_LINK_HEADER_SIZE + len, within(WAIT_MS)) < 0)
		fail_msg("send: %s (%s)", kl_error_detail(), kl_usb_reason());
}

/* The agent's HELLO on the bare transport, for the tests in which the
 * emulated device itself answers what follows. */
static void hello_by_hand(kl_usb_link *l)
{
	uint8_t *f = NULL;
	size_t n = 0;

	agent_start(g.duts[0]);
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), 0);
	assert_int_equal(f[5], KL_LINK_HELLO);
	free(f);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1), TPM
 * 2.0 Part 3 §30.2. */
static const uint8_t get_manufacturer[] = { 0x80, 0x01, 0, 0, 0, 22, 0, 0, 0x01, 0x7a, 0,
	                                    0,    0,    6, 0, 0, 1,  5, 0, 0,    0,    1 };

static int count_cert(void *ctx, const kl_registry_cert *cert)
{
	int *n = ctx;

	if (!cert->revoked && strcmp(cert->state, "issued") == 0)
		(*n)++;
	return 0;
}

/* ---- the tests ---------------------------------------------------------- */

/* Zero touch: the watch is there before the device; plugging it in is an
 * arrival on a port, and the arrival alone starts the job: open the device
 * there, HELLO with the agent, provision, verdict. */
static void hotplug_starts_job(void **state)
{
	kl_link_agent_info info;
	kl_registry_device dev_row;
	kl_usb_event ev;
	kl_job_result res;
	kl_link_conn *c;
	int certs = 0;

	(void)state;
	assert_int_equal(kl_usb_watch(g.usb, VID, PID), 0);
	assert_int_equal(kl_usb_poll(g.usb, 200, &ev), 0); /* nothing plugged in yet */
	assert_true(usb_emul_plug(SERIAL));
	assert_int_equal(kl_usb_poll(g.usb, WAIT_MS, &ev), 1);
	assert_int_equal(ev.kind, KL_USB_ARRIVED);
	assert_int_equal(ev.vid, VID);
	assert_int_equal(ev.pid, PID);
	assert_string_equal(ev.port, PORT);

	/* what a zero-touch slot does with the event */
	kl_usb_match any = { .vid = ev.vid, .pid = ev.pid, .port = ev.port };
	kl_usb_link *l = NULL;
	assert_int_equal(kl_usb_link_open(g.usb, &any, &l), 0);
	c = session(l, &info);
	kl_job job = { .serial = info.serial,
		       .link = "agent:usb:1-2",
		       .agent = c,
		       .ek_type = KL_EK__MAX,
		       .actor = "station:zero-touch" };
	assert_int_equal(kl_engine_provision(&g.cfg, &job, &res), 0);
	if (res.rc != 0)
		fail_msg("%s [%s] %s", kl_step_name(res.failed_step), res.reason, res.message);
	assert_true(res.idevid_serial[0] && res.iak_serial[0]);
	assert_int_equal(strlen(res.idevid_sha256), 64);
	assert_int_equal(
	    kl_link_send_verdict(c, within(WAIT_MS), SERIAL, true, res.idevid_sha256, NULL, NULL),
	    0);
	assert_int_equal(agent_wait(), 0); /* keyline-agent took the PASS */
	kl_link_conn_free(c);

	assert_int_equal(kl_registry_device_get(g.reg, SERIAL, &dev_row), 0);
	assert_int_equal(dev_row.state, KL_DEVICE_PROVISIONED);
	assert_int_equal(strlen(dev_row.ek_sha256), 64);
	assert_true(kl_registry_device_certs(g.reg, SERIAL, count_cert, &certs) >= 2);
	assert_int_equal(certs, 2); /* IAK and IDevID */
	assert_true(usb_emul_commands() >
	            20); /* the engine's TPM commands went over the bulk endpoints */
}

/* Found by VID:PID + iSerial + port, not with another iSerial or port;
 * raw TPM commands go through the link connection to the agent's TPM. */
static void find_and_relay(void **state)
{
	kl_usb_match other = { .vid = VID, .pid = PID, .serial = "KL-USB-9999" };
	kl_usb_match elsewhere = { .vid = VID, .pid = PID, .port = "1-3" };
	kl_link_agent_info info;
	kl_usb_link *l = NULL;
	kl_link_conn *c;
	kl_link_type type;
	const uint8_t *rsp;
	uint32_t n;

	(void)state;
	assert_int_equal(kl_usb_link_open(g.usb, &other, &l), -KL_E_NOTFOUND);
	assert_string_equal(kl_usb_reason(), "device_not_found");
	assert_int_equal(kl_usb_link_open(g.usb, &elsewhere, &l), -KL_E_NOTFOUND);
	usb_emul_set_mode(USB_EMUL_BUSY);
	assert_int_equal(kl_usb_link_open(g.usb, &(kl_usb_match){ .vid = VID, .pid = PID }, &l),
	                 -KL_E_UNAVAILABLE);
	assert_string_equal(kl_usb_reason(), "claim_failed");
	usb_emul_set_mode(USB_EMUL_RELAY);
	l = open_link(PORT);
	assert_string_equal(kl_usb_link_serial(l), SERIAL);
	assert_string_equal(kl_usb_link_port(l), PORT);
	assert_string_equal(kl_usb_link_describe(l), "usb:1-2 1d6b:0104 serial=KL-USB-0001");
	c = session(l, &info);
	assert_string_equal(kl_link_conn_peer(c), "usb:1-2 1d6b:0104 serial=KL-USB-0001");
	assert_int_equal(kl_link_conn_send(c, KL_LINK_TPM_COMMAND, get_manufacturer,
	                                   sizeof(get_manufacturer), within(WAIT_MS)),
	                 0);
	assert_int_equal(kl_link_conn_recv(c, within(WAIT_MS), &type, &rsp, &n), 0);
	assert_int_equal(type, KL_LINK_TPM_RESPONSE);
	assert_int_equal(n, 27);
	assert_int_equal(be32(rsp + 6), 0);            /* TPM_RC_SUCCESS */
	assert_int_equal(be32(rsp + 19), 0x105);       /* TPM_PT_MANUFACTURER */
	assert_int_equal(be32(rsp + 23), 0x49424d00u); /* "IBM": swtpm */
	kl_link_conn_free(c);
	assert_int_equal(agent_stop(), 3); /* the agent's link error status */
}

static void refused(usb_emul_mode mode, const char *reason)
{
	kl_usb_link *l = open_link(PORT);
	uint8_t *f = NULL;
	size_t n = 0;

	hello_by_hand(l);
	usb_emul_set_mode(mode);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), -KL_E_INVALID);
	assert_null(f);
	assert_string_equal(kl_usb_reason(), reason);
	/* refused once, the link is dead */
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), -KL_E_STATE);
	assert_string_equal(kl_usb_reason(), "link_dead");
	/* the station can still say why: ERROR goes out on bulk OUT */
	send_frame(l, KL_LINK_ERROR, "reason=link_garbage\nmessage=refused\n", 36);
	usb_emul_set_mode(USB_EMUL_RELAY);
	kl_usb_link_close(l);
	(void)agent_stop();
}

static void garbage_refused(void **state)
{
	(void)state;
	refused(USB_EMUL_GARBAGE, "link_garbage");
}

static void oversize_refused(void **state)
{
	(void)state;
	refused(USB_EMUL_OVERSIZE, "link_oversize");
}

/* Silence is bounded: nothing from the device fails the receive with
 * link_timeout at the deadline; a cancel before that is "aborted" and
 * leaves the link usable. */
static bool yes(void *ctx)
{
	(void)ctx;
	return true;
}

static void silence_times_out(void **state)
{
	kl_link_wait cancel = { .deadline_ms = kl_link_now_ms() + WAIT_MS, .cancelled = yes };
	kl_usb_link *l = open_link(PORT);
	uint8_t *f = NULL;
	size_t n = 0;

	(void)state;
	hello_by_hand(l);
	assert_int_equal(kl_usb_link_recv(l, &cancel, &f, &n), -KL_E_IO);
	assert_string_equal(kl_usb_reason(), "aborted");
	assert_int_equal(kl_usb_link_recv(l, within(300), &f, &n), -KL_E_TIMEOUT);
	assert_string_equal(kl_usb_reason(), "link_timeout");
	kl_usb_link_close(l);
	(void)agent_stop();
}

/* The device leaves while a TPM command is outstanding: the receive fails
 * with link_lost, and the watch reports the departure. */
static void departure_mid_command(void **state)
{
	kl_usb_link *l = open_link(PORT);
	kl_usb_event ev;
	uint8_t *f = NULL;
	size_t n = 0;

	(void)state;
	hello_by_hand(l);
	usb_emul_set_mode(USB_EMUL_UNPLUG);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	umockdev_testbed_uevent(usb_emul_bed(), USB_EMUL_SYSPATH, "remove");
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), -KL_E_UNAVAILABLE);
	assert_string_equal(kl_usb_reason(), "link_lost");
	kl_usb_link_close(l);
	(void)agent_stop();
	do
		assert_int_equal(kl_usb_poll(g.usb, WAIT_MS, &ev), 1);
	while (ev.kind != KL_USB_LEFT);
	assert_string_equal(ev.port, PORT);
}

static int setup(void **state)
{
	kl_registry_item item = { .serial = SERIAL, .line = 1 };

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.vendor) < 0 ||
	    kl_floor_manufacture(g.floor, g.vendor, "usb", 1, &g.duts) < 0 ||
	    kl_dut_start(g.floor, g.duts[0]) < 0 || test_pki_make(g.floor, g.vendor, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0 ||
	    kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", &item, 1, "test") < 0) {
		fprintf(stderr, "setup: %s\n", kl_error_detail());
		return -1;
	}
	if (usb_emul_setup() < 0)
		return -1;
	if (kl_usb_new(&g.usb) < 0) {
		fprintf(stderr, "usb: %s\n", kl_error_detail());
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	(void)agent_stop();
	kl_usb_free(g.usb);
	usb_emul_free();
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hotplug_starts_job), cmocka_unit_test(find_and_relay),
		cmocka_unit_test(garbage_refused),    cmocka_unit_test(oversize_refused),
		cmocka_unit_test(silence_times_out),  cmocka_unit_test(departure_mid_command),
	};

	/* libusb must see the emulated bus from its first call: run under
	 * umockdev's preload library. */
	(void)argc;
	if (usb_emul_reexec(argv) < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
