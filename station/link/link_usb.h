/* The station's USB link to a DUT (docs/link.md): the DUT is a USB gadget
 * with one vendor-class interface and one bulk IN and one bulk OUT endpoint;
 * keyline-agent frames travel over them as they are (bulk OUT station ->
 * DUT, bulk IN DUT -> station) and the receiver reassembles them by the
 * header's length. The only folder that includes libusb.h; no libusb type
 * leaves link_usb.c.
 *
 * Every call is bounded in time: transfers wait in short slices against a
 * kl_link_wait (link_conn.h) and ask its cancel predicate between them.
 * After a failure, kl_usb_reason() names it (snake_case, stable:
 * docs/link.md lists them). A direction that failed answers -KL_E_STATE
 * link_dead from then on: after a refused frame or a receive timeout the
 * station can still send (its ERROR); a device that left ends both. One
 * thread at a time drives a link; the links of one kl_usb may be on
 * different threads, and kl_usb_poll on yet another (libusb's context is
 * thread-safe, the hot-plug queue has its own lock): the daemon polls the
 * watch on its loop and drives each link on a worker. */
#ifndef KL_STATION_LINK_USB_H
#define KL_STATION_LINK_USB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"
#include "link_transport.h"

typedef struct kl_usb kl_usb;           /* a libusb context and its hot-plug queue */
typedef struct kl_usb_link kl_usb_link; /* one claimed DUT */

/* Which DUT: VID:PID, and optionally its iSerial and its port path
 * ("1-2.3": bus 1, port 2 of the root hub, port 3 of the hub behind it).
 * NULL, "" or "auto" match any. */
typedef struct kl_usb_match {
	uint16_t vid;
	uint16_t pid;
	const char *serial;
	const char *port;
} kl_usb_match;

int kl_usb_new(kl_usb **ret) KL_MUST_CHECK;
/* Closes nothing: close the links first. Accepts NULL. */
void kl_usb_free(kl_usb *u);

/* Finds the first device that matches, opens it, claims its vendor
 * interface and finds the bulk pair. -KL_E_NOTFOUND (device_not_found),
 * -KL_E_UNSUPPORTED (no_vendor_interface), -KL_E_UNAVAILABLE (open_failed,
 * claim_failed). */
int kl_usb_link_open(kl_usb *u, const kl_usb_match *m, kl_usb_link **ret) KL_MUST_CHECK;
/* Releases the interface and closes the device. Accepts NULL. */
void kl_usb_link_close(kl_usb_link *l);

/* Writes one frame to bulk OUT within w (link_conn.h: a deadline and a
 * cancel predicate asked between slices). A frame cut short by the
 * deadline or a cancel leaves the link dead (-KL_E_TIMEOUT link_timeout,
 * -KL_E_IO aborted). */
int kl_usb_link_send(kl_usb_link *l, const uint8_t *frame, size_t len,
                     const kl_link_wait *w) KL_MUST_CHECK;

/* Reads bulk IN until one whole frame is there, within w; *ret is the
 * frame (header and payload, malloc'd), *ret_len its size. What is not a
 * frame is refused by the codec (link_frame.h) before anything is
 * allocated for it: -KL_E_INVALID with link_garbage or link_oversize (the
 * codec's sentence in the detail). -KL_E_UNAVAILABLE link_lost when the
 * device left or the bus failed, -KL_E_TIMEOUT link_timeout, -KL_E_IO
 * aborted when w's predicate said so (the link stays usable: what arrived
 * is kept for the next call). */
int kl_usb_link_recv(kl_usb_link *l, const kl_link_wait *w, uint8_t **ret,
                     size_t *ret_len) KL_MUST_CHECK;

/* "usb:1-2 1d6b:0104 serial=KL-USB-0001" */
const char *kl_usb_link_describe(const kl_usb_link *l);
/* The link's iSerial ("" when it has none) and port path. */
const char *kl_usb_link_serial(const kl_usb_link *l);
const char *kl_usb_link_port(const kl_usb_link *l);

/* The link as a frame transport (link_transport.h); its close closes the
 * link. */
void kl_usb_link_transport(kl_usb_link *l, kl_link_transport *ret);

/* Hot-plug: what the watch saw, in order. */
typedef enum kl_usb_event_kind {
	KL_USB_ARRIVED = 1,
	KL_USB_LEFT = 2,
} kl_usb_event_kind;

typedef struct kl_usb_event {
	kl_usb_event_kind kind;
	uint16_t vid;
	uint16_t pid;
	char port[32]; /* "1-2.3" */
} kl_usb_event;

/* Starts watching for devices with this VID:PID arriving and leaving
 * (devices already there are reported as arrived). -KL_E_UNSUPPORTED
 * (hotplug_unsupported) when libusb cannot watch on this system. */
int kl_usb_watch(kl_usb *u, uint16_t vid, uint16_t pid) KL_MUST_CHECK;

/* Handles USB events for at most timeout_ms (at least once, without
 * waiting, when timeout_ms is 0); 1 and *ret when an event is there, 0 when
 * none came in time. */
int kl_usb_poll(kl_usb *u, int timeout_ms, kl_usb_event *ret) KL_MUST_CHECK;

/* The snake_case name of this thread's last USB failure, "" when none. */
const char *kl_usb_reason(void);

#endif
