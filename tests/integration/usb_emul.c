/* The emulated USB bus and DUT of usb_emul.h. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/usbdevice_fs.h>

#include "link_frame.h"
#include "usb_emul.h"

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
                                  "A: serial=" USB_EMUL_SERIAL "\\n\n"
                                  "H: descriptors="
                                  "12010002000000406b1d0401000101020301"
                                  "0902200001010080fa"
                                  "0904000002ff000000"
                                  "07050102000200"
                                  "07058102000200\n";

/* The device side, touched on umockdev's ioctl thread (under mu) and set up
 * by the test thread. */
static struct {
	GMutex mu;
	usb_emul_mode mode;
	bool gone;         /* unplugged: URBs fail with ENODEV */
	bool claimed;      /* the station holds the interface: bytes flow */
	char serial[64];   /* string descriptor 3, the iSerial */
	int agent_fd;      /* the agent's connection, -1 when none */
	GList *in_urbs;    /* submitted bulk IN URBs waiting for data */
	GList *done;       /* URBs to hand back on reap */
	uint8_t in[32768]; /* device -> station bytes not yet in an URB */
	size_t in_len;
	kl_link_decoder out; /* station -> device, to count TPM commands */
	int commands;
	UMockdevTestbed *bed;
	UMockdevIoctlBase *handler;
	int listen_fd; /* where keyline-agent connects */
	int listen_port;
} dev = { .agent_fd = -1, .listen_fd = -1 };

/* ---- the DUT's side of the device ---- */

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
	/* The gadget's endpoints carry nothing until the station claimed the
	 * interface: what the agent said first (its HELLO) waits in the socket. */
	while (dev.claimed && dev.agent_fd >= 0 && dev.in_len < sizeof(dev.in)) {
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
	case USB_EMUL_RELAY:
		if (dev.agent_fd >= 0 && send(dev.agent_fd, p, n, MSG_NOSIGNAL) != (ssize_t)n)
			fprintf(stderr, "device: the agent's socket took less than %zu bytes\n", n);
		break;
	case USB_EMUL_GARBAGE:
		dev_queue_raw(garbage, sizeof(garbage) - 1);
		break;
	case USB_EMUL_OVERSIZE:
		kl_link_header_encode(oversize, KL_LINK_TPM_RESPONSE, 0);
		oversize[9] = 0x01; /* 0x000186a0 = 100000 */
		oversize[10] = 0x86;
		oversize[11] = 0xa0;
		dev_queue_raw(oversize, sizeof(oversize));
		break;
	case USB_EMUL_UNPLUG:
		dev.gone = true;
		break;
	case USB_EMUL_BUSY:
		break;
	}
}

/* The station claimed the interface: a fresh session. */
static void dev_reset(void)
{
	dev.in_len = 0;
	dev.commands = 0;
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
	const char *const strings[] = { NULL, "Keyline", "Keyline DUT", dev.serial };
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
		if (dev.mode == USB_EMUL_BUSY) {
			umockdev_ioctl_client_complete(client, -1, EBUSY);
			break;
		}
		dev_reset();
		dev.claimed = true;
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
	case USBDEVFS_GETDRIVER: /* no kernel driver on the vendor interface */
		umockdev_ioctl_client_complete(client, -1, ENODATA);
		break;
	case USBDEVFS_RELEASEINTERFACE:
		dev.claimed = false;
		umockdev_ioctl_client_complete(client, 0, 0);
		break;
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

/* ---- the helper's API ---- */

int usb_emul_reexec(char **argv)
{
	const char *pre = getenv("LD_PRELOAD");
	const char *asan = getenv("ASAN_OPTIONS");
	char wrapper[] = "umockdev-wrapper";
	char opts[512];
	char *args[] = { wrapper, argv[0], NULL };

	/* umockdev_in_mock_environment() says whether a testbed exists (it
	 * looks at UMOCKDEV_DIR), not whether the preload library is loaded */
	if (strstr(pre ? pre : "", "libumockdev-preload"))
		return 0;
	/* An ASan build puts its runtime first and the preload library after
	 * it, which is what ASan checks against; added to what the caller set
	 * (CI sets ASAN_OPTIONS too). */
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
	         asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	execvp(args[0], args);
	fprintf(stderr, "usb_emul: cannot run umockdev-wrapper: %s\n", strerror(errno));
	return -1;
}

int usb_emul_setup(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	GError *err = NULL;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	dev.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (dev.listen_fd < 0 || bind(dev.listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(dev.listen_fd, 4) != 0 ||
	    getsockname(dev.listen_fd, (struct sockaddr *)&a, &alen) != 0) {
		perror("usb_emul: listen");
		return -1;
	}
	dev.listen_port = ntohs(a.sin_port);
	snprintf(dev.serial, sizeof(dev.serial), "%s", USB_EMUL_SERIAL);
	g_mutex_init(&dev.mu);
	dev.bed = umockdev_testbed_new();
	dev.handler = umockdev_ioctl_base_new();
	g_signal_connect(dev.handler, "handle-ioctl", G_CALLBACK(on_ioctl), NULL);
	/* The handler first, so the node answers from the moment the device
	 * appears (umockdev issue #173: add_from_string's node and a handler
	 * attached later race). */
	if (!umockdev_testbed_attach_ioctl(dev.bed, USB_EMUL_NODE, dev.handler, &err)) {
		fprintf(stderr, "umockdev: %s\n", err->message);
		g_error_free(err);
		return -1;
	}
	return 0;
}

void usb_emul_free(void)
{
	usb_emul_agent_close();
	if (dev.listen_fd >= 0)
		close(dev.listen_fd);
	dev.listen_fd = -1;
	if (dev.bed)
		g_object_unref(dev.bed);
	if (dev.handler)
		g_object_unref(dev.handler);
	dev.bed = NULL;
	dev.handler = NULL;
}

UMockdevTestbed *usb_emul_bed(void)
{
	return dev.bed;
}

bool usb_emul_plug(const char *iserial)
{
	GError *err = NULL;

	g_mutex_lock(&dev.mu);
	snprintf(dev.serial, sizeof(dev.serial), "%s", iserial);
	dev.gone = false;
	dev.mode = USB_EMUL_RELAY;
	g_mutex_unlock(&dev.mu);
	/* the sysfs device and its node appear, with an "add" uevent */
	if (!umockdev_testbed_add_from_string(dev.bed, device_text, &err)) {
		fprintf(stderr, "umockdev: %s\n", err->message);
		g_error_free(err);
		return false;
	}
	return true;
}

void usb_emul_unplug(void)
{
	g_mutex_lock(&dev.mu);
	dev.gone = true;
	dev.claimed = false;
	dev_pump(); /* what waits in bulk IN fails now */
	g_mutex_unlock(&dev.mu);
	umockdev_testbed_uevent(dev.bed, USB_EMUL_SYSPATH, "remove");
	/* gone from sysfs too: a station started later does not enumerate it */
	umockdev_testbed_remove_device(dev.bed, USB_EMUL_SYSPATH);
}

void usb_emul_set_mode(usb_emul_mode m)
{
	g_mutex_lock(&dev.mu);
	dev.mode = m;
	g_mutex_unlock(&dev.mu);
}

int usb_emul_commands(void)
{
	int n;

	g_mutex_lock(&dev.mu);
	n = dev.commands;
	g_mutex_unlock(&dev.mu);
	return n;
}

int usb_emul_agent_port(void)
{
	return dev.listen_port;
}

int usb_emul_agent_accept(int timeout_ms)
{
	struct pollfd p = { .fd = dev.listen_fd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	fd = accept4(dev.listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	g_mutex_lock(&dev.mu);
	if (dev.agent_fd >= 0)
		close(dev.agent_fd);
	dev.agent_fd = fd;
	g_mutex_unlock(&dev.mu);
	return 0;
}

void usb_emul_agent_close(void)
{
	g_mutex_lock(&dev.mu);
	if (dev.agent_fd >= 0)
		close(dev.agent_fd);
	dev.agent_fd = -1;
	g_mutex_unlock(&dev.mu);
}
