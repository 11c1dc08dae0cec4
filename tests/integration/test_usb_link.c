/* The station's USB link (station/link/link_usb.c) end to end: a DUT on an
 * emulated USB bus, its real keyline-agent, its real TPM, provisioned by the
 * real engine.
 *
 * WHAT IS EMULATED: the USB bus and the USB device. This machine's kernel
 * has no USB, so umockdev (libumockdev-preload; the test re-executes itself
 * under umockdev-wrapper) makes a sysfs device 1d6b:0104, iSerial
 * "KL-USB-0001", on port 1-2, with one vendor-class interface and bulk
 * endpoints 0x01 OUT / 0x81 IN, and this file's ioctl handler answers the
 * usbfs ioctls libusb issues (string descriptors by control transfer, bulk
 * URBs). In place of the gadget's FunctionFS endpoint files, the handler
 * carries the bulk bytes to and from a keyline-agent process over a TCP
 * socket (the agent's only transport so far), unchanged. Packet sizes,
 * timing and the host controller are not emulated: one URB carries what
 * libusb submitted.
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
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/usbdevice_fs.h>
#include <umockdev.h>

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

#define VID     0x1d6b
#define PID     0x0104
#define SERIAL  "KL-USB-0001"
#define PORT    "1-2"
#define NODE    "/dev/bus/usb/001/002"
#define SYSPATH "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"
#define WAIT_MS 30000 /* generous: liveness only */

/* The device as usbfs sees it: sysfs attributes and the binary descriptors
 * file (device descriptor: USB 2.0, class per interface, EP0 64 bytes,
 * 1d6b:0104, bcdDevice 1.00, strings 1/2/3, one configuration; then the
 * configuration: one interface, class 0xff, two bulk endpoints of 512). */
static const char device_text[] = "P: /devices/pci0000:00/0000:00:14.0/usb1/1-2\n"
                                  "N: bus/usb/001/002\n"
                                  "E: SUBSYSTEM=usb\n"
                                  "E: DEVTYPE=usb_device\n"
                                  "E: DRIVER=usb\n"
                                  "E: BUSNUM=001\n"
                                  "E: DEVNUM=002\n"
                                  "E: DEVNAME=/dev/bus/usb/001/002\n"
                                  "A: busnum=1\\n\n"
                                  "A: devnum=2\\n\n"
                                  "A: bConfigurationValue=1\\n\n"
                                  "A: speed=480\\n\n"
                                  "A: idVendor=1d6b\\n\n"
                                  "A: idProduct=0104\\n\n"
                                  "A: serial=KL-USB-0001\\n\n"
                                  "H: descriptors="
                                  "12010002000000406b1d0401000101020301"
                                  "0902200001010080fa"
                                  "0904000002ff000000"
                                  "07050102000200"
                                  "07058102000200\n";

/* What the emulated device does with the next bulk OUT transfer. */
typedef enum {
	DEV_RELAY,    /* carry it to the agent, and the agent's bytes back */
	DEV_GARBAGE,  /* answer with bytes that are no frame */
	DEV_OVERSIZE, /* answer with a header that claims 100000 bytes */
	DEV_UNPLUG,   /* never answer: the device leaves */
	DEV_BUSY,     /* the interface is claimed elsewhere (EBUSY) */
} dev_mode;

/* The device side, touched on umockdev's ioctl thread (under mu) and set up
 * by the test thread. */
static struct {
	GMutex mu;
	dev_mode mode;
	bool gone;         /* unplugged: URBs fail with ENODEV */
	int agent_fd;      /* the agent's connection, -1 when none */
	GList *in_urbs;    /* submitted bulk IN URBs waiting for data */
	GList *done;       /* URBs to hand back on reap */
	uint8_t in[32768]; /* device -> station bytes not yet in an URB */
	size_t in_len;
	kl_link_decoder out; /* station -> device, to count TPM commands */
	int commands;
} dev = { .agent_fd = -1 };

static struct {
	kl_floor *floor;
	kl_vendor *vendor;
	kl_dut **duts;
	struct test_pki pki;
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	UMockdevTestbed *bed;
	UMockdevIoctlBase *handler;
	kl_usb *usb;
	int listen_fd; /* where keyline-agent connects */
	int listen_port;
	pid_t agent;
} g = { .listen_fd = -1 };

/* ---- the DUT's side of the device --------------------------------------- */

static void dev_queue_raw(const void *bytes, size_t len)
{
	if (dev.in_len + len > sizeof(dev.in))
		return;
	memcpy(dev.in + dev.in_len, bytes, len);
	dev.in_len += len;
}

/* What the agent has written goes into the device's IN queue. */
static void dev_from_agent(void)
{
	while (dev.agent_fd >= 0 && dev.in_len < sizeof(dev.in)) {
		ssize_t n = recv(dev.agent_fd, dev.in + dev.in_len, sizeof(dev.in) - dev.in_len,
		                 MSG_DONTWAIT);

		if (n <= 0)
			break;
		dev.in_len += (size_t)n;
	}
}

/* A bulk OUT transfer: counted frame by frame, then carried to the agent
 * or, in the test's other modes, answered by the device itself. */
static void dev_to_agent(const uint8_t *p, size_t n)
{
	static const uint8_t garbage[] = "GARBAGE, NOT A FRAME";
	uint8_t oversize[KL_LINK_HEADER_SIZE];

	for (size_t left = n, used = 0; left && !dev.out.failed; left -= used) {
		kl_link_err e;

		used = 0;
		if (kl_link_decoder_feed(&dev.out, p + (n - left), left, &used, &e) ==
		        KL_LINK_FRAME &&
		    dev.out.type == KL_LINK_TPM_COMMAND)
			dev.commands++;
		if (!used)
			break;
	}
	switch (dev.mode) {
	case DEV_RELAY:
		if (dev.agent_fd >= 0 && send(dev.agent_fd, p, n, MSG_NOSIGNAL) != (ssize_t)n)
			fprintf(stderr, "device: the agent's socket took less than %zu bytes\n", n);
		break;
	case DEV_GARBAGE:
		dev_queue_raw(garbage, sizeof(garbage) - 1);
		break;
	case DEV_OVERSIZE:
		kl_link_header_encode(oversize, KL_LINK_TPM_RESPONSE, 0);
		oversize[9] = 0x01; /* 0x000186a0 = 100000 */
		oversize[10] = 0x86;
		oversize[11] = 0xa0;
		dev_queue_raw(oversize, sizeof(oversize));
		break;
	case DEV_UNPLUG:
		dev.gone = true;
		break;
	case DEV_BUSY:
		break;
	}
}

/* The station claimed the interface: a fresh session. */
static void dev_reset(void)
{
	dev.in_len = 0;
	kl_link_decoder_init(&dev.out);
}

/* ---- the emulated USB device: usbfs ioctls ------------------------------ */

static void urb_finish(UMockdevIoctlData *u, int status, int actual)
{
	struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data;

	urb->status = status;
	urb->actual_length = actual;
	dev.done = g_list_append(dev.done, u);
}

/* Fills waiting bulk IN URBs from what the device has to say. */
static void dev_pump(void)
{
	dev_from_agent();
	while (dev.in_urbs && (dev.in_len || dev.gone)) {
		UMockdevIoctlData *u = dev.in_urbs->data;
		struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data;
		size_t n = dev.in_len < (size_t)urb->buffer_length ? dev.in_len
		                                                   : (size_t)urb->buffer_length;

		dev.in_urbs = g_list_delete_link(dev.in_urbs, dev.in_urbs);
		if (dev.gone) {
			urb_finish(u, -ENODEV, 0);
			continue;
		}
		memcpy(urb->buffer, dev.in, n);
		memmove(dev.in, dev.in + n, dev.in_len - n);
		dev.in_len -= n;
		urb_finish(u, 0, (int)n);
	}
}

/* A control URB: the 8-byte setup packet, then the data stage. Only
 * GET_DESCRIPTOR of strings is answered (libusb reads the rest from
 * sysfs): 0 the language list, 3 the iSerial. */
static void dev_control(UMockdevIoctlData *u)
{
	struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data;
	uint8_t *setup = urb->buffer, *data = setup + 8;
	static const char *const strings[] = { NULL, "Keyline", "Keyline DUT", SERIAL };
	int n = 0;

	if (setup[0] == 0x80 && setup[1] == 6 && setup[3] == 3) {
		if (setup[2] == 0) {
			static const uint8_t langs[] = { 4, 3, 0x09, 0x04 };
			memcpy(data, langs, sizeof(langs));
			n = sizeof(langs);
		} else if (setup[2] < 4) {
			const char *s = strings[setup[2]];
			size_t len = strlen(s);

			data[0] = (uint8_t)(2 + 2 * len);
			data[1] = 3;
			for (size_t i = 0; i < len; i++) {
				data[2 + 2 * i] = (uint8_t)s[i];
				data[3 + 2 * i] = 0;
			}
			n = (int)(2 + 2 * len);
		}
	}
	if (n > urb->buffer_length - 8)
		n = urb->buffer_length - 8;
	urb_finish(u, n ? 0 : -EPIPE, n);
}

static void dev_bulk_out(UMockdevIoctlData *u)
{
	struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data;

	dev_to_agent(urb->buffer, (size_t)urb->buffer_length);
	urb_finish(u, 0, urb->buffer_length);
}

static gboolean on_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer data)
{
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	gulong request = umockdev_ioctl_client_get_request(client);
	gboolean handled = TRUE;

	(void)handler;
	(void)data;
	g_mutex_lock(&dev.mu);
	if (dev.gone && request != USBDEVFS_REAPURBNDELAY && request != USBDEVFS_REAPURB &&
	    request != USBDEVFS_DISCARDURB && request != USBDEVFS_RELEASEINTERFACE) {
		umockdev_ioctl_client_complete(client, -1, ENODEV);
		g_mutex_unlock(&dev.mu);
		return TRUE;
	}
	switch (request) {
	case USBDEVFS_GET_CAPABILITIES: {
		UMockdevIoctlData *caps =
		    umockdev_ioctl_data_resolve(arg, 0, sizeof(guint32), NULL);

		*(guint32 *)caps->data =
		    USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM |
		    USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_REAP_AFTER_DISCONNECT;
		umockdev_ioctl_client_complete(client, 0, 0);
		umockdev_ioctl_data_unref(caps);
		break;
	}
	case USBDEVFS_CLAIMINTERFACE:
	case USBDEVFS_DISCONNECT_CLAIM:
		if (dev.mode == DEV_BUSY) {
			umockdev_ioctl_client_complete(client, -1, EBUSY);
			break;
		}
		dev_reset();
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_GETDRIVER: /* no kernel driver on the vendor interface */
		umockdev_ioctl_client_complete(client, -1, ENODATA);
		break;
	case USBDEVFS_RELEASEINTERFACE:
	case USBDEVFS_CLEAR_HALT:
	case USBDEVFS_RESET:
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_SUBMITURB: {
		UMockdevIoctlData *u =
		    umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), NULL);
		struct usbdevfs_urb *urb = (struct usbdevfs_urb *)u->data;
		/* resolving the buffer makes urb->buffer this side's copy of it */
		UMockdevIoctlData *buf =
		    umockdev_ioctl_data_resolve(u, G_STRUCT_OFFSET(struct usbdevfs_urb, buffer),
		                                (gsize)urb->buffer_length, NULL);

		if (urb->type == USBDEVFS_URB_TYPE_CONTROL)
			dev_control(u);
		else if (urb->type == USBDEVFS_URB_TYPE_BULK && urb->endpoint == 0x81)
			dev.in_urbs = g_list_append(dev.in_urbs, u);
		else if (urb->type == USBDEVFS_URB_TYPE_BULK && urb->endpoint == 0x01)
			dev_bulk_out(u);
		else
			urb_finish(u, -EPIPE, 0);
		dev_pump();
		umockdev_ioctl_data_unref(buf);
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	}
	case USBDEVFS_REAPURB:
	case USBDEVFS_REAPURBNDELAY: {
		UMockdevIoctlData *u, *ptr;

		dev_pump();
		if (!dev.done) {
			umockdev_ioctl_client_complete(client, -1,
			                               dev.gone && !dev.in_urbs ? ENODEV : EAGAIN);
			break;
		}
		u = dev.done->data;
		dev.done = g_list_delete_link(dev.done, dev.done);
		ptr = umockdev_ioctl_data_resolve(arg, 0, sizeof(gpointer), NULL);
		umockdev_ioctl_data_set_ptr(ptr, 0, u); /* the reaped URB, written back whole */
		umockdev_ioctl_client_complete(client, 0, 0);
		umockdev_ioctl_data_unref(ptr);
		umockdev_ioctl_data_unref(u);
		break;
	}
	case USBDEVFS_DISCARDURB: {
		gulong addr = (gulong) * (void **)arg->data;
		GList *l;

		for (l = dev.in_urbs; l; l = l->next)
			if (((UMockdevIoctlData *)l->data)->client_addr == addr)
				break;
		if (l) {
			UMockdevIoctlData *u = l->data;

			dev.in_urbs = g_list_delete_link(dev.in_urbs, l);
			urb_finish(u, -ENOENT, 0);
			umockdev_ioctl_client_complete(client, 0, 0);
		} else {
			umockdev_ioctl_client_complete(client, -1, EINVAL);
		}
		break;
	}
	default:
		handled = FALSE;
		break;
	}
	g_mutex_unlock(&dev.mu);
	return handled;
}

/* ---- keyline-agent, the DUT's program ---------------------------------- */

/* The DUT boots its agent: keyline-agent on the DUT's swtpm, connected to
 * the device's bulk endpoints (here: the listener the handler bridges). */
static void agent_start(const kl_dut *d)
{
	char station[32];
	struct pollfd p = { .fd = g.listen_fd, .events = POLLIN };
	int fd;

	snprintf(station, sizeof(station), "127.0.0.1:%d", g.listen_port);
	g.agent = fork();
	assert_true(g.agent >= 0);
	if (g.agent == 0) {
		execl(KEYLINE_AGENT_BIN, "keyline-agent", "--station", station, "--tcti", d->tcti,
		      "--serial", SERIAL, "--model", "KL-DEV", "--firmware", "1.0", "--timeout-s",
		      "60", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	fd = accept(g.listen_fd, NULL, NULL);
	assert_true(fd >= 0);
	g_mutex_lock(&dev.mu);
	dev.agent_fd = fd;
	g_mutex_unlock(&dev.mu);
}

/* The agent's exit status; its connection is cut first (an agent whose
 * link is gone exits on its own). */
static int agent_stop(void)
{
	int st = 0;

	g_mutex_lock(&dev.mu);
	if (dev.agent_fd >= 0)
		close(dev.agent_fd);
	dev.agent_fd = -1;
	g_mutex_unlock(&dev.mu);
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
	g_mutex_lock(&dev.mu);
	if (dev.agent_fd >= 0)
		close(dev.agent_fd);
	dev.agent_fd = -1;
	g_mutex_unlock(&dev.mu);
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
	GError *err = NULL;
	int certs = 0;

	(void)state;
	assert_int_equal(kl_usb_watch(g.usb, VID, PID), 0);
	assert_int_equal(kl_usb_poll(g.usb, 200, &ev), 0); /* nothing plugged in yet */
	assert_true(umockdev_testbed_add_from_string(g.bed, device_text, &err));
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
	assert_int_equal(certs, 2);     /* IAK and IDevID */
	assert_true(dev.commands > 20); /* the engine's TPM commands went over the bulk endpoints */
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
	g_mutex_lock(&dev.mu);
	dev.mode = DEV_BUSY;
	g_mutex_unlock(&dev.mu);
	assert_int_equal(kl_usb_link_open(g.usb, &(kl_usb_match){ .vid = VID, .pid = PID }, &l),
	                 -KL_E_UNAVAILABLE);
	assert_string_equal(kl_usb_reason(), "claim_failed");
	g_mutex_lock(&dev.mu);
	dev.mode = DEV_RELAY;
	g_mutex_unlock(&dev.mu);
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

static void refused(dev_mode mode, const char *reason)
{
	kl_usb_link *l = open_link(PORT);
	uint8_t *f = NULL;
	size_t n = 0;

	hello_by_hand(l);
	g_mutex_lock(&dev.mu);
	dev.mode = mode;
	g_mutex_unlock(&dev.mu);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), -KL_E_INVALID);
	assert_null(f);
	assert_string_equal(kl_usb_reason(), reason);
	/* refused once, the link is dead */
	assert_int_equal(kl_usb_link_recv(l, within(WAIT_MS), &f, &n), -KL_E_STATE);
	assert_string_equal(kl_usb_reason(), "link_dead");
	/* the station can still say why: ERROR goes out on bulk OUT */
	send_frame(l, KL_LINK_ERROR, "reason=link_garbage\nmessage=refused\n", 36);
	g_mutex_lock(&dev.mu);
	dev.mode = DEV_RELAY;
	g_mutex_unlock(&dev.mu);
	kl_usb_link_close(l);
	(void)agent_stop();
}

static void garbage_refused(void **state)
{
	(void)state;
	refused(DEV_GARBAGE, "link_garbage");
}

static void oversize_refused(void **state)
{
	(void)state;
	refused(DEV_OVERSIZE, "link_oversize");
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
	g_mutex_lock(&dev.mu);
	dev.mode = DEV_UNPLUG;
	g_mutex_unlock(&dev.mu);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	umockdev_testbed_uevent(g.bed, SYSPATH, "remove");
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
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	kl_registry_item item = { .serial = SERIAL, .line = 1 };
	GError *err = NULL;

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
	/* where keyline-agent connects; the device handler bridges it */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (g.listen_fd < 0 || bind(g.listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(g.listen_fd, 4) != 0 ||
	    getsockname(g.listen_fd, (struct sockaddr *)&a, &alen) != 0) {
		perror("listen");
		return -1;
	}
	g.listen_port = ntohs(a.sin_port);
	g_mutex_init(&dev.mu);
	g.bed = umockdev_testbed_new();
	g.handler = umockdev_ioctl_base_new();
	g_signal_connect(g.handler, "handle-ioctl", G_CALLBACK(on_ioctl), NULL);
	/* The handler first, so the node answers from the moment the device
	 * appears (umockdev issue #173: add_from_string's node and a handler
	 * attached later race). */
	if (!umockdev_testbed_attach_ioctl(g.bed, NODE, g.handler, &err)) {
		fprintf(stderr, "umockdev: %s\n", err->message);
		return -1;
	}
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
	if (g.listen_fd >= 0)
		close(g.listen_fd);
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	if (g.bed)
		g_object_unref(g.bed);
	if (g.handler)
		g_object_unref(g.handler);
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
	 * umockdev's preload library. An ASan build puts its runtime first and
	 * the preload library after it, which is what ASan checks against. */
	(void)argc;
	/* umockdev_in_mock_environment() says whether a testbed exists (it
	 * looks at UMOCKDEV_DIR), not whether the preload library is loaded */
	if (!strstr(getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "", "libumockdev-preload")) {
		char wrapper[] = "umockdev-wrapper";
		char *args[] = { wrapper, argv[0], NULL };

		/* added to what the caller set (CI sets ASAN_OPTIONS too) */
		const char *asan = getenv("ASAN_OPTIONS");
		char opts[512];

		snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
		         asan && *asan ? ":" : "");
		setenv("ASAN_OPTIONS", opts, 1);
		execvp(args[0], args);
		fprintf(stderr, "test_usb_link: cannot run umockdev-wrapper: %s\n",
		        strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
