/* The station's USB link over libusb (link_usb.h, docs/link.md).
 *
 * Transfers are synchronous libusb bulk transfers cut into slices of
 * USB_SLICE_MS, so a transfer never waits longer than its deadline and the
 * cancel predicate is asked between slices; a slice that times out keeps
 * what it moved (libusb reports the bytes of a discarded URB) and the next
 * one goes on from there. Deadlines and cancel predicates are the link's
 * (kl_link_wait, link_conn.h), as for TCP. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libusb.h>

#include "link_frame.h"
#include "link_usb.h"

#define USB_SLICE_MS 100
#define USB_CTRL_MS  1000 /* a string descriptor read */
/* Bulk IN reads ask for whole packets (a read that is not a multiple of
 * wMaxPacketSize may overflow); what follows a frame in the same transfer
 * stays here for the next receive. */
#define USB_RX_CAP (16 * 1024)
#define USB_EVENTS 16

struct kl_usb {
	libusb_context *ctx;
	bool watching;
	libusb_hotplug_callback_handle hotplug;
	/* The callback runs in whichever thread handles libusb's events: the
	 * watcher's kl_usb_poll, or a link's transfer on another thread. */
	pthread_mutex_t q_mu;
	kl_usb_event queue[USB_EVENTS];
	size_t q_head, q_len;
};

struct kl_usb_link {
	kl_usb *usb;
	libusb_device_handle *h;
	int iface;
	uint8_t ep_in, ep_out;
	uint16_t in_packet; /* wMaxPacketSize of bulk IN */
	/* A direction that failed takes nothing more: after a refused or late
	 * frame nothing received can be trusted to start a frame, but the
	 * station may still send its ERROR; after a frame cut short on bulk OUT
	 * nothing can follow it; a lost device ends both. */
	bool rx_dead, tx_dead;
	char serial[128];
	char port[32];
	char desc[200];
	uint8_t rx[USB_RX_CAP]; /* read from bulk IN, not yet fed to dec */
	size_t rx_off, rx_len;
	kl_link_decoder dec; /* the codec's, shared with keyline-agent */
};

static _Thread_local const char *last_reason = "";

/* Records the reason, then the error, and returns the negative code. */
#define usb_fail(reason, code, ...) (last_reason = (reason), kl_error_set((code), __VA_ARGS__))

const char *kl_usb_reason(void)
{
	return last_reason;
}

static void port_path(libusb_device *dev, char *buf, size_t size)
{
	uint8_t ports[8];
	int n = libusb_get_port_numbers(dev, ports, (int)sizeof(ports));
	size_t off;

	off = (size_t)snprintf(buf, size, "%u", libusb_get_bus_number(dev));
	for (int i = 0; i < n && off < size; i++)
		off +=
		    (size_t)snprintf(buf + off, size - off, "%c%u", i == 0 ? '-' : '.', ports[i]);
}

int kl_usb_new(kl_usb **ret)
{
	kl_usb *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return kl_error_set(KL_E_NOMEM, "usb: out of memory");
	pthread_mutex_init(&u->q_mu, NULL);
	rc = libusb_init(&u->ctx);
	if (rc != 0) {
		pthread_mutex_destroy(&u->q_mu);
		free(u);
		return usb_fail("usb_unavailable", KL_E_UNAVAILABLE, "libusb_init: %s",
		                libusb_error_name(rc));
	}
	*ret = u;
	return 0;
}

void kl_usb_free(kl_usb *u)
{
	if (!u)
		return;
	if (u->watching)
		libusb_hotplug_deregister_callback(u->ctx, u->hotplug);
	libusb_exit(u->ctx);
	pthread_mutex_destroy(&u->q_mu);
	free(u);
}

static bool want(const char *s)
{
	return s && *s && strcmp(s, "auto") != 0;
}

/* The first vendor-class interface (altsetting 0) with a bulk IN and a bulk
 * OUT endpoint. */
static int find_bulk_pair(kl_usb_link *l, libusb_device *dev)
{
	struct libusb_config_descriptor *cfg = NULL;
	int rc = libusb_get_active_config_descriptor(dev, &cfg);

	if (rc != 0)
		return usb_fail("no_vendor_interface", KL_E_UNSUPPORTED,
		                "usb %s: no active configuration: %s", l->port,
		                libusb_error_name(rc));
	rc = 1; /* not found yet */
	for (int i = 0; i < cfg->bNumInterfaces && rc == 1; i++) {
		const struct libusb_interface_descriptor *alt;
		uint8_t in = 0, out = 0;
		uint16_t in_packet = 0;

		if (cfg->interface[i].num_altsetting < 1)
			continue;
		alt = &cfg->interface[i].altsetting[0];
		if (alt->bInterfaceClass != LIBUSB_CLASS_VENDOR_SPEC)
			continue;
		for (int e = 0; e < alt->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ep = &alt->endpoint[e];

			if ((ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK) !=
			    LIBUSB_TRANSFER_TYPE_BULK)
				continue;
			if ((ep->bEndpointAddress & LIBUSB_ENDPOINT_DIR_MASK) ==
			        LIBUSB_ENDPOINT_IN &&
			    !in) {
				in = ep->bEndpointAddress;
				in_packet = ep->wMaxPacketSize;
			} else if ((ep->bEndpointAddress & LIBUSB_ENDPOINT_DIR_MASK) ==
			               LIBUSB_ENDPOINT_OUT &&
			           !out) {
				out = ep->bEndpointAddress;
			}
		}
		if (in && out && in_packet) {
			l->iface = alt->bInterfaceNumber;
			l->ep_in = in;
			l->ep_out = out;
			l->in_packet = in_packet;
			rc = 0;
		}
	}
	libusb_free_config_descriptor(cfg);
	if (rc == 1)
		return usb_fail(
		    "no_vendor_interface", KL_E_UNSUPPORTED,
		    "usb %s: no vendor-class interface with one bulk IN and one bulk OUT endpoint",
		    l->port);
	return 0;
}

/* Opens dev if it is the one m asks for: 1 when it is (and *l is set up),
 * 0 when not, negative on failure. */
static int try_device(kl_usb_link *l, libusb_device *dev, const kl_usb_match *m)
{
	struct libusb_device_descriptor dd;
	int rc;

	if (libusb_get_device_descriptor(dev, &dd) != 0 || dd.idVendor != m->vid ||
	    dd.idProduct != m->pid)
		return 0;
	port_path(dev, l->port, sizeof(l->port));
	if (want(m->port) && strcmp(m->port, l->port) != 0)
		return 0;
	rc = libusb_open(dev, &l->h);
	if (rc != 0)
		return usb_fail("open_failed", KL_E_UNAVAILABLE, "usb %s: open: %s", l->port,
		                libusb_error_name(rc));
	l->serial[0] = '\0';
	if (dd.iSerialNumber) {
		rc = libusb_get_string_descriptor_ascii(
		    l->h, dd.iSerialNumber, (unsigned char *)l->serial, (int)sizeof(l->serial) - 1);
		l->serial[rc > 0 ? rc : 0] = '\0';
	}
	if (want(m->serial) && strcmp(m->serial, l->serial) != 0) {
		libusb_close(l->h);
		l->h = NULL;
		return 0;
	}
	rc = find_bulk_pair(l, dev);
	if (rc < 0)
		goto fail;
	/* A kernel driver bound to a vendor interface is unusual; libusb frees
	 * the interface from it where the platform allows (not an error where
	 * it does not). */
	(void)libusb_set_auto_detach_kernel_driver(l->h, 1);
	rc = libusb_claim_interface(l->h, l->iface);
	if (rc != 0) {
		rc = usb_fail("claim_failed", KL_E_UNAVAILABLE, "usb %s: claim interface %d: %s",
		              l->port, l->iface, libusb_error_name(rc));
		goto fail;
	}
	snprintf(l->desc, sizeof(l->desc), "usb:%s %04x:%04x serial=%s", l->port, m->vid, m->pid,
	         l->serial[0] ? l->serial : "-");
	return 1;
fail:
	libusb_close(l->h);
	l->h = NULL;
	return rc;
}

int kl_usb_link_open(kl_usb *u, const kl_usb_match *m, kl_usb_link **ret)
{
	libusb_device **list = NULL;
	kl_usb_link *l;
	ssize_t n;
	int rc = 0;

	l = calloc(1, sizeof(*l));
	if (!l)
		return kl_error_set(KL_E_NOMEM, "usb: out of memory");
	l->usb = u;
	kl_link_decoder_init(&l->dec);
	n = libusb_get_device_list(u->ctx, &list);
	if (n < 0) {
		free(l);
		return usb_fail("usb_unavailable", KL_E_UNAVAILABLE, "usb: list devices: %s",
		                libusb_error_name((int)n));
	}
	/* A matching device that cannot be opened or claimed (another process
	 * holds it, no permission) does not hide the next one; when none could
	 * be taken, the last such failure is the answer, not "not found". */
	for (ssize_t i = 0; i < n && rc != 1; i++) {
		int r = try_device(l, list[i], m);

		if (r != 0)
			rc = r;
	}
	libusb_free_device_list(list, 1);
	if (rc == 0)
		rc = usb_fail("device_not_found", KL_E_NOTFOUND, "usb: no device %04x:%04x%s%s%s%s",
		              m->vid, m->pid, want(m->serial) ? " serial=" : "",
		              want(m->serial) ? m->serial : "", want(m->port) ? " port=" : "",
		              want(m->port) ? m->port : "");
	if (rc < 0) {
		free(l);
		return rc;
	}
	last_reason = "";
	*ret = l;
	return 0;
}

void kl_usb_link_close(kl_usb_link *l)
{
	if (!l)
		return;
	if (l->h) {
		(void)libusb_release_interface(l->h, l->iface);
		libusb_close(l->h);
	}
	free(l);
}

const char *kl_usb_link_describe(const kl_usb_link *l)
{
	return l->desc;
}

const char *kl_usb_link_serial(const kl_usb_link *l)
{
	return l->serial;
}

const char *kl_usb_link_port(const kl_usb_link *l)
{
	return l->port;
}

/* One slice of a bulk transfer, or why the transfer is over: 0 to go on
 * (*moved says how far it went), negative when the link is lost, timed out
 * or the wait was cancelled. Only a cancel leaves the link alive: nothing
 * was lost, the next call goes on from there. */
static int slice(kl_usb_link *l, uint8_t ep, uint8_t *buf, int len, const kl_link_wait *w,
                 const char *what, int *moved)
{
	double left = w->deadline_ms - kl_link_now_ms();
	int rc;

	*moved = 0;
	if (w->cancelled && w->cancelled(w->cancel_ctx))
		return usb_fail("aborted", KL_E_IO, "%s: %s aborted", l->desc, what);
	if (left <= 0) {
		if (ep & LIBUSB_ENDPOINT_IN)
			l->rx_dead = true;
		else
			l->tx_dead = true;
		return usb_fail("link_timeout", KL_E_TIMEOUT, "%s: %s: the device went silent",
		                l->desc, what);
	}
	rc = libusb_bulk_transfer(l->h, ep, buf, len, moved,
	                          left < USB_SLICE_MS ? (unsigned)left + 1 : USB_SLICE_MS);
	if (rc == 0 || rc == LIBUSB_ERROR_TIMEOUT)
		return 0;
	l->rx_dead = l->tx_dead = true;
	/* NO_DEVICE: unplugged; IO, PIPE (stall), OVERFLOW (the device sent more
	 * than a whole number of packets asked for): the bus or the gadget
	 * failed. Either way the frame stream is gone. */
	return usb_fail("link_lost", KL_E_UNAVAILABLE, "%s: %s: %s", l->desc, what,
	                libusb_error_name(rc));
}

int kl_usb_link_send(kl_usb_link *l, const uint8_t *frame, size_t len, const kl_link_wait *w)
{
	size_t done = 0;

	if (l->tx_dead)
		return usb_fail("link_dead", KL_E_STATE, "%s: the link failed before", l->desc);
	if (len < KL_LINK_HEADER_SIZE || len > KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX)
		return usb_fail(len < KL_LINK_HEADER_SIZE ? "link_garbage" : "link_oversize",
		                KL_E_INVALID, "%s: not sending a frame of %zu bytes", l->desc, len);
	while (done < len) {
		int moved, rc;

		/* libusb takes a non-const buffer for both directions; OUT only reads it. */
		rc = slice(l, l->ep_out, (uint8_t *)frame + done, (int)(len - done), w, "bulk OUT",
		           &moved);
		if (rc < 0) {
			/* half a frame on the wire: nothing can follow it */
			l->tx_dead = true;
			return rc;
		}
		done += (size_t)moved;
	}
	return 0;
}

int kl_usb_link_recv(kl_usb_link *l, const kl_link_wait *w, uint8_t **ret, size_t *ret_len)
{
	if (l->rx_dead)
		return usb_fail("link_dead", KL_E_STATE, "%s: the link failed before", l->desc);
	for (;;) {
		kl_link_err e;
		size_t used = 0, room;
		int moved, rc;

		while (l->rx_len) {
			/* The decoder refuses a bad header from its first bytes and
			 * keeps the payload in its own buffer: nothing is allocated for
			 * a length the device made up. */
			rc = kl_link_decoder_feed(&l->dec, l->rx + l->rx_off, l->rx_len, &used, &e);
			l->rx_off += used;
			l->rx_len -= used;
			if (rc < 0) {
				l->rx_dead = true;
				return usb_fail(e.reason, KL_E_INVALID,
				                "%s: refused what the device sent: %s", l->desc,
				                e.message);
			}
			if (rc == KL_LINK_FRAME) {
				size_t size = KL_LINK_HEADER_SIZE + l->dec.len;
				uint8_t *f = malloc(size);

				if (!f)
					return kl_error_set(KL_E_NOMEM, "usb: out of memory");
				kl_link_header_encode(f, l->dec.type, l->dec.len);
				memcpy(f + KL_LINK_HEADER_SIZE, l->dec.payload, l->dec.len);
				*ret = f;
				*ret_len = size;
				return 0;
			}
		}
		l->rx_off = 0;
		room = sizeof(l->rx) / l->in_packet * l->in_packet;
		rc = slice(l, l->ep_in, l->rx, (int)room, w, "bulk IN", &moved);
		if (rc < 0)
			return rc;
		l->rx_len = (size_t)moved;
	}
}

static int tr_send(void *self, const uint8_t *frame, size_t len, const kl_link_wait *w)
{
	return kl_usb_link_send(self, frame, len, w);
}

static int tr_recv(void *self, const kl_link_wait *w, uint8_t **ret, size_t *ret_len)
{
	return kl_usb_link_recv(self, w, ret, ret_len);
}

static void tr_close(void *self)
{
	kl_usb_link_close(self);
}

static const char *tr_describe(const void *self)
{
	return kl_usb_link_describe(self);
}

/* The link's failures are recorded per thread, and one thread drives a
 * link (link_usb.h). */
static const char *tr_reason(const void *self)
{
	(void)self;
	return kl_usb_reason();
}

void kl_usb_link_transport(kl_usb_link *l, kl_link_transport *ret)
{
	*ret = (kl_link_transport){
		.self = l,
		.send_frame = tr_send,
		.recv_frame = tr_recv,
		.close = tr_close,
		.describe = tr_describe,
		.reason = tr_reason,
	};
}

/* ---- hot-plug --------------------------------------------------------- */

/* libusb calls this from inside its event handling (kl_usb_poll); it may do
 * no I/O on the device, so it only queues what happened. */
static int LIBUSB_CALL on_hotplug(libusb_context *ctx, libusb_device *dev,
                                  libusb_hotplug_event event, void *data)
{
	kl_usb *u = data;
	struct libusb_device_descriptor dd;
	kl_usb_event *e;

	(void)ctx;
	pthread_mutex_lock(&u->q_mu);
	if (u->q_len == USB_EVENTS) { /* full: the oldest goes */
		u->q_head = (u->q_head + 1) % USB_EVENTS;
		u->q_len--;
	}
	e = &u->queue[(u->q_head + u->q_len) % USB_EVENTS];
	memset(e, 0, sizeof(*e));
	e->kind = event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? KL_USB_ARRIVED : KL_USB_LEFT;
	if (libusb_get_device_descriptor(dev, &dd) == 0) {
		e->vid = dd.idVendor;
		e->pid = dd.idProduct;
	}
	port_path(dev, e->port, sizeof(e->port));
	u->q_len++;
	pthread_mutex_unlock(&u->q_mu);
	return 0; /* stay registered */
}

int kl_usb_watch(kl_usb *u, uint16_t vid, uint16_t pid)
{
	int rc;

	if (u->watching)
		return usb_fail("already_watching", KL_E_STATE, "usb: already watching");
	if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG))
		return usb_fail("hotplug_unsupported", KL_E_UNSUPPORTED,
		                "usb: libusb has no hot-plug here");
	rc = libusb_hotplug_register_callback(
	    u->ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
	    LIBUSB_HOTPLUG_ENUMERATE, vid, pid, LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, u,
	    &u->hotplug);
	if (rc != 0)
		return usb_fail("hotplug_unsupported", KL_E_UNSUPPORTED,
		                "usb: register hot-plug: %s", libusb_error_name(rc));
	u->watching = true;
	return 0;
}

static bool usb_dequeue(kl_usb *u, kl_usb_event *ret)
{
	bool got;

	pthread_mutex_lock(&u->q_mu);
	got = u->q_len > 0;
	if (got) {
		*ret = u->queue[u->q_head];
		u->q_head = (u->q_head + 1) % USB_EVENTS;
		u->q_len--;
	}
	pthread_mutex_unlock(&u->q_mu);
	return got;
}

int kl_usb_poll(kl_usb *u, int timeout_ms, kl_usb_event *ret)
{
	double deadline = kl_link_now_ms() + timeout_ms;

	/* Events are handled at least once, also with timeout_ms 0 (a caller's
	 * own poll loop that must not wait here). */
	for (bool first = true;; first = false) {
		double left;
		struct timeval tv;
		int rc;

		if (usb_dequeue(u, ret))
			return 1;
		left = deadline - kl_link_now_ms();
		if (left <= 0 && !first)
			return 0;
		if (left < 0)
			left = 0;
		if (left > USB_SLICE_MS)
			left = USB_SLICE_MS;
		tv.tv_sec = 0;
		tv.tv_usec = (long)(left * 1000);
		rc = libusb_handle_events_timeout_completed(u->ctx, &tv, NULL);
		if (rc != 0 && rc != LIBUSB_ERROR_INTERRUPTED)
			return usb_fail("usb_unavailable", KL_E_UNAVAILABLE,
			                "usb: handle events: %s", libusb_error_name(rc));
		if (left <= 0)
			return usb_dequeue(u, ret) ? 1 : 0;
	}
}
