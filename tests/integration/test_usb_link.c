/* The station's USB link (station/link/link_usb.c) against an emulated USB
 * device whose TPM is real.
 *
 * WHAT IS EMULATED: the USB bus and the USB device. This machine's kernel
 * has no USB, so umockdev (libumockdev-preload, the test re-executes itself
 * under umockdev-wrapper) makes a sysfs device 1d6b:0104, iSerial
 * "KL-USB-0001", on port 1-2, with one vendor-class interface and bulk
 * endpoints 0x01 OUT / 0x81 IN, and this file's ioctl handler answers the
 * usbfs ioctls libusb issues (control transfers for the string descriptors,
 * bulk URBs). Packet sizes, timing and the host controller are not
 * emulated: one URB carries what libusb submitted.
 *
 * WHAT IS REAL: libusb itself (enumeration through libudev, hot-plug,
 * synchronous bulk transfers with their timeouts and URB discards), the
 * station's transport, the link codec on both sides, and the TPM: behind
 * the emulated device sits an agent stand-in (in this file, until the
 * USB path is wired to keyline-agent) that answers the station's HELLO
 * handshake and relays every TPM_COMMAND frame to a real swtpm DUT of the
 * floor, wrapping the TPM's answer as a TPM_RESPONSE frame.
 *
 * Asserted: the hot-plug watch reports the device's arrival and departure;
 * the transport finds the device by VID:PID, iSerial and port path (and not
 * with another iSerial); HELLO arrives and parses; real TPM commands
 * (Startup, GetCapability) go through; garbage and an oversize header from
 * the device are refused with the codec's reasons; a device that leaves
 * while a command is outstanding fails the receive with link_lost. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/usbdevice_fs.h>
#include <umockdev.h>

#include <cmocka.h>

#include "floor.h"
#include "kl_error.h"
#include "link_frame.h"
#include "link_usb.h"

#define VID     0x1d6b
#define PID     0x0104
#define SERIAL  "KL-USB-0001"
#define PORT    "1-2"
#define NODE    "/dev/bus/usb/001/002"
#define SYSPATH "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"
#define WAIT_MS 10000 /* generous: liveness only */

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

/* What the emulated device does with the next TPM_COMMAND. */
typedef enum {
	DEV_RELAY,    /* forward to the swtpm, answer with TPM_RESPONSE */
	DEV_GARBAGE,  /* answer with bytes that are no frame */
	DEV_OVERSIZE, /* answer with a header that claims 100000 bytes */
	DEV_UNPLUG,   /* never answer: the device leaves */
} dev_mode;

/* The device side, touched on umockdev's ioctl thread (under mu) and set up
 * by the test thread. */
static struct {
	GMutex mu;
	dev_mode mode;
	bool gone; /* unplugged: URBs fail with ENODEV */
	int swtpm_port;
	GList *in_urbs;    /* submitted bulk IN URBs waiting for data */
	GList *done;       /* URBs to hand back on reap */
	uint8_t in[32768]; /* device -> station bytes not yet in an URB */
	size_t in_len;
	kl_link_decoder dec; /* station -> device */
	atomic_int commands; /* TPM commands relayed */
} dev;

static struct {
	kl_floor *floor;
	kl_vendor *vendor;
	kl_dut **duts;
	UMockdevTestbed *bed;
	UMockdevIoctlBase *handler;
	kl_usb *usb;
} g;

/* ---- the agent stand-in behind the emulated device ---------------------- */

static void dev_queue(kl_link_type type, const void *payload, size_t len)
{
	if (dev.in_len + KL_LINK_HEADER_SIZE + len > sizeof(dev.in))
		return;
	kl_link_header_encode(dev.in + dev.in_len, type, (uint32_t)len);
	memcpy(dev.in + dev.in_len + KL_LINK_HEADER_SIZE, payload, len);
	dev.in_len += KL_LINK_HEADER_SIZE + len;
}

static void dev_queue_raw(const void *bytes, size_t len)
{
	memcpy(dev.in + dev.in_len, bytes, len);
	dev.in_len += len;
}

/* One TPM command to the swtpm (raw TPM stream on its command port, one
 * connection per command as the station's own TCTI does); the answer into
 * rsp. Returns its size, 0 on failure. */
static size_t swtpm_exchange(const uint8_t *cmd, size_t n, uint8_t *rsp, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
		                 .sin_port = htons((uint16_t)dev.swtpm_port) };
	size_t got = 0, want = 10;
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(s, cmd, n) != (ssize_t)n) {
		if (s >= 0)
			close(s);
		return 0;
	}
	while (got < want) {
		ssize_t r = read(s, rsp + got, want - got);

		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == 10) {
			want = (size_t)rsp[2] << 24 | (size_t)rsp[3] << 16 | (size_t)rsp[4] << 8 |
			       rsp[5];
			if (want < 10 || want > cap)
				break;
		}
	}
	close(s);
	return got == want ? got : 0;
}

/* What keyline-agent does with a frame from the station. */
static void dev_frame(void)
{
	uint8_t rsp[KL_LINK_TPM_MAX];
	static const uint8_t garbage[] = "GARBAGE, NOT A FRAME";
	uint8_t oversize[KL_LINK_HEADER_SIZE];
	size_t n;

	if (dev.dec.type != KL_LINK_TPM_COMMAND)
		return; /* WELCOME, VERDICT: nothing to answer */
	switch (dev.mode) {
	case DEV_RELAY:
		n = swtpm_exchange(dev.dec.payload, dev.dec.len, rsp, sizeof(rsp));
		if (n) {
			atomic_fetch_add(&dev.commands, 1);
			dev_queue(KL_LINK_TPM_RESPONSE, rsp, n);
		} else {
			static const char err[] =
			    "reason=tpm_unreachable\nmessage=the swtpm did not answer\n";
			dev_queue(KL_LINK_ERROR, err, sizeof(err) - 1);
		}
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
	}
}

/* The station claimed the interface: a fresh session, and the agent says
 * hello first (on a real DUT, FunctionFS reports ENABLE then). */
static void dev_reset(void)
{
	static const char hello[] = "proto_min=1\nproto_max=1\nserial=" SERIAL "\nmodel=KL-DEV\n"
	                            "firmware=1.0\nagent=usb-stand-in\n";

	dev.in_len = 0;
	kl_link_decoder_init(&dev.dec);
	dev_queue(KL_LINK_HELLO, hello, sizeof(hello) - 1);
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
	const uint8_t *p = urb->buffer;
	size_t left = (size_t)urb->buffer_length;

	while (left && !dev.dec.failed && !dev.gone) {
		kl_link_err e;
		size_t used = 0;
		int rc = kl_link_decoder_feed(&dev.dec, p, left, &used, &e);

		p += used;
		left -= used;
		if (rc == KL_LINK_FRAME)
			dev_frame();
		else if (rc < 0)
			break;
	}
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

static void dev_set_mode(dev_mode m)
{
	g_mutex_lock(&dev.mu);
	dev.mode = m;
	g_mutex_unlock(&dev.mu);
}

/* ---- the station side --------------------------------------------------- */

static kl_usb_link *open_link(void)
{
	kl_usb_match m = { .vid = VID, .pid = PID, .serial = SERIAL, .port = PORT };
	kl_usb_link *l = NULL;

	if (kl_usb_link_open(g.usb, &m, &l) < 0)
		fail_msg("open: %s (%s)", kl_error_detail(), kl_usb_reason());
	return l;
}

static void send_frame(kl_usb_link *l, kl_link_type type, const void *payload, size_t len)
{
	uint8_t f[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];

	kl_link_header_encode(f, type, (uint32_t)len);
	memcpy(f + KL_LINK_HEADER_SIZE, payload, len);
	if (kl_usb_link_send(l, f, KL_LINK_HEADER_SIZE + len, WAIT_MS) < 0)
		fail_msg("send: %s (%s)", kl_error_detail(), kl_usb_reason());
}

/* The handshake as the station does it: HELLO in, WELCOME out. */
static void handshake(kl_usb_link *l)
{
	static kl_link_text text;
	static const char welcome[] = "proto=1\nstation=test_usb_link\n";
	kl_link_hello hello;
	kl_link_err e;
	uint8_t *f = NULL;
	size_t n = 0;

	assert_int_equal(kl_usb_link_recv(l, WAIT_MS, &f, &n), 0);
	assert_int_equal(f[5], KL_LINK_HELLO);
	assert_int_equal(
	    kl_link_text_parse(f + KL_LINK_HEADER_SIZE, n - KL_LINK_HEADER_SIZE, &text, &e), 0);
	assert_int_equal(kl_link_hello_read(&text, &hello, &e), 0);
	assert_string_equal(hello.serial, SERIAL);
	assert_int_equal(kl_link_negotiate(hello.proto_min, hello.proto_max, KL_LINK_PROTO_MIN,
	                                   KL_LINK_PROTO_MAX, &e),
	                 1);
	free(f);
	send_frame(l, KL_LINK_WELCOME, welcome, sizeof(welcome) - 1);
}

/* One TPM command over the link; the TPM_RESPONSE payload into rsp. */
static size_t tpm_command(kl_usb_link *l, const uint8_t *cmd, size_t n, uint8_t *rsp)
{
	uint8_t *f = NULL;
	size_t len = 0, size;

	send_frame(l, KL_LINK_TPM_COMMAND, cmd, n);
	if (kl_usb_link_recv(l, WAIT_MS, &f, &len) < 0)
		fail_msg("recv: %s (%s)", kl_error_detail(), kl_usb_reason());
	assert_int_equal(f[5], KL_LINK_TPM_RESPONSE);
	size = len - KL_LINK_HEADER_SIZE;
	memcpy(rsp, f + KL_LINK_HEADER_SIZE, size);
	free(f);
	return size;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* TPM2_Startup(SU_CLEAR) and TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES,
 * TPM_PT_MANUFACTURER, 1), TPM 2.0 Part 3 §9.3 and §30.2. */
static const uint8_t startup[] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0 };
static const uint8_t get_manufacturer[] = { 0x80, 0x01, 0, 0, 0, 22, 0, 0, 0x01, 0x7a, 0,
	                                    0,    0,    6, 0, 0, 1,  5, 0, 0,    0,    1 };

/* ---- the tests ---------------------------------------------------------- */

/* The watch is there before the device: plugging it in is an arrival,
 * on the port the station's [slots] would name. */
static void hotplug_arrival(void **state)
{
	kl_usb_event ev;
	GError *err = NULL;

	(void)state;
	assert_int_equal(kl_usb_watch(g.usb, VID, PID), 0);
	assert_int_equal(kl_usb_poll(g.usb, 200, &ev), 0); /* nothing plugged in yet */
	assert_true(umockdev_testbed_add_from_string(g.bed, device_text, &err));
	assert_int_equal(kl_usb_poll(g.usb, WAIT_MS, &ev), 1);
	assert_int_equal(ev.kind, KL_USB_ARRIVED);
	assert_int_equal(ev.vid, VID);
	assert_int_equal(ev.pid, PID);
	assert_string_equal(ev.port, PORT);
}

/* Found by VID:PID + iSerial + port, not with another iSerial or port;
 * HELLO completes; real TPM commands go through to the swtpm. */
static void find_hello_and_relay(void **state)
{
	kl_usb_match other = { .vid = VID, .pid = PID, .serial = "KL-USB-9999" };
	kl_usb_match elsewhere = { .vid = VID, .pid = PID, .port = "1-3" };
	kl_usb_link *l = NULL;
	uint8_t rsp[KL_LINK_TPM_MAX];
	size_t n;

	(void)state;
	assert_int_equal(kl_usb_link_open(g.usb, &other, &l), -KL_E_NOTFOUND);
	assert_string_equal(kl_usb_reason(), "device_not_found");
	assert_int_equal(kl_usb_link_open(g.usb, &elsewhere, &l), -KL_E_NOTFOUND);
	l = open_link();
	assert_string_equal(kl_usb_link_serial(l), SERIAL);
	assert_string_equal(kl_usb_link_port(l), PORT);
	assert_string_equal(kl_usb_link_describe(l), "usb:1-2 1d6b:0104 serial=KL-USB-0001");
	handshake(l);

	n = tpm_command(l, startup, sizeof(startup), rsp);
	assert_int_equal(n, 10);
	/* TPM_RC_SUCCESS, or TPM_RC_INITIALIZE when the floor started it */
	assert_true(be32(rsp + 6) == 0 || be32(rsp + 6) == 0x100);
	n = tpm_command(l, get_manufacturer, sizeof(get_manufacturer), rsp);
	assert_int_equal(n, 27);
	assert_int_equal(be32(rsp + 6), 0);            /* TPM_RC_SUCCESS */
	assert_int_equal(be32(rsp + 19), 0x105);       /* TPM_PT_MANUFACTURER */
	assert_int_equal(be32(rsp + 23), 0x49424d00u); /* "IBM": swtpm */
	assert_int_equal(atomic_load(&dev.commands), 2);
	kl_usb_link_close(l);
}

/* The same through the transport interface the TCTI over a link takes. */
static void transport_interface(void **state)
{
	kl_link_transport t;
	uint8_t f[KL_LINK_HEADER_SIZE + sizeof(get_manufacturer)], *r = NULL;
	size_t n = 0;

	(void)state;
	kl_usb_link_transport(open_link(), &t);
	assert_string_equal(t.describe(t.self), "usb:1-2 1d6b:0104 serial=KL-USB-0001");
	assert_int_equal(t.recv_frame(t.self, WAIT_MS, &r, &n), 0); /* HELLO */
	assert_int_equal(r[5], KL_LINK_HELLO);
	free(r);
	kl_link_header_encode(f, KL_LINK_TPM_COMMAND, sizeof(get_manufacturer));
	memcpy(f + KL_LINK_HEADER_SIZE, get_manufacturer, sizeof(get_manufacturer));
	assert_int_equal(t.send_frame(t.self, f, sizeof(f), WAIT_MS), 0);
	assert_int_equal(t.recv_frame(t.self, WAIT_MS, &r, &n), 0);
	assert_int_equal(r[5], KL_LINK_TPM_RESPONSE);
	assert_int_equal(be32(r + KL_LINK_HEADER_SIZE + 23), 0x49424d00u);
	free(r);
	t.close(t.self);
}

static void refused(dev_mode mode, const char *reason)
{
	kl_usb_link *l = open_link();
	uint8_t *f = NULL;
	size_t n = 0;

	handshake(l);
	dev_set_mode(mode);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	assert_int_equal(kl_usb_link_recv(l, WAIT_MS, &f, &n), -KL_E_INVALID);
	assert_null(f);
	assert_string_equal(kl_usb_reason(), reason);
	/* refused once, the link is dead */
	assert_int_equal(kl_usb_link_recv(l, WAIT_MS, &f, &n), -KL_E_STATE);
	assert_string_equal(kl_usb_reason(), "link_dead");
	dev_set_mode(DEV_RELAY);
	kl_usb_link_close(l);
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

/* Silence is bounded: a device that says nothing fails the receive with
 * link_timeout at the deadline, not later. */
static void silence_times_out(void **state)
{
	kl_usb_link *l = open_link();
	uint8_t *f = NULL;
	size_t n = 0;

	(void)state;
	handshake(l);
	assert_int_equal(kl_usb_link_recv(l, 300, &f, &n), -KL_E_TIMEOUT);
	assert_string_equal(kl_usb_reason(), "link_timeout");
	kl_usb_link_close(l);
}

/* The device leaves while a TPM command is outstanding: the receive fails
 * with link_lost, and the watch reports the departure. */
static void departure_mid_command(void **state)
{
	kl_usb_link *l = open_link();
	kl_usb_event ev;
	uint8_t *f = NULL;
	size_t n = 0;

	(void)state;
	handshake(l);
	dev_set_mode(DEV_UNPLUG);
	send_frame(l, KL_LINK_TPM_COMMAND, get_manufacturer, sizeof(get_manufacturer));
	umockdev_testbed_uevent(g.bed, SYSPATH, "remove");
	assert_int_equal(kl_usb_link_recv(l, WAIT_MS, &f, &n), -KL_E_UNAVAILABLE);
	assert_string_equal(kl_usb_reason(), "link_lost");
	kl_usb_link_close(l);
	do
		assert_int_equal(kl_usb_poll(g.usb, WAIT_MS, &ev), 1);
	while (ev.kind != KL_USB_LEFT);
	assert_string_equal(ev.port, PORT);
}

static int setup(void **state)
{
	GError *err = NULL;

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.vendor) < 0 ||
	    kl_floor_manufacture(g.floor, g.vendor, "usb", 1, &g.duts) < 0 ||
	    kl_dut_start(g.floor, g.duts[0]) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	g_mutex_init(&dev.mu);
	dev.swtpm_port = g.duts[0]->port;
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
	kl_usb_free(g.usb);
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
		cmocka_unit_test(hotplug_arrival),       cmocka_unit_test(find_hello_and_relay),
		cmocka_unit_test(transport_interface),   cmocka_unit_test(garbage_refused),
		cmocka_unit_test(oversize_refused),      cmocka_unit_test(silence_times_out),
		cmocka_unit_test(departure_mid_command),
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

		setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 0);
		execvp(args[0], args);
		fprintf(stderr, "test_usb_link: cannot run umockdev-wrapper: %s\n",
		        strerror(errno));
		return 1;
	}
	return cmocka_run_group_tests(tests, setup, teardown);
}
