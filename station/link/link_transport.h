/* A frame transport of the DUT link: what carries keyline-agent frames
 * (12-byte header + payload, docs/link.md) between the station and a DUT
 * when the wire is not a stream socket (USB bulk endpoints). A kl_link_conn
 * wraps one (kl_link_conn_wrap_transport), so the handshake, the TCTI over
 * the link and the verdict run over it unchanged.
 *
 * Conventions: 0 or a negative kl_err, with the snake_case reason of the
 * last failure from reason(); send_frame takes one whole frame; recv_frame
 * hands back one whole frame (malloc'd, the caller frees) that the link
 * codec has checked; every call is bounded by w (kl_link_wait: an absolute
 * deadline and a cancel predicate, asked between short slices). A cancel
 * while receiving fails with -KL_E_IO "aborted" and keeps what arrived so
 * far; any other failure leaves the transport dead. close frees the
 * transport's object (self); describe names it ("usb:1-2 1d6b:0104
 * serial=KL-USB-0001"). */
#ifndef KL_STATION_LINK_TRANSPORT_H
#define KL_STATION_LINK_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "link_conn.h"

typedef struct kl_link_transport {
	void *self;
	int (*send_frame)(void *self, const uint8_t *frame, size_t len, const kl_link_wait *w);
	int (*recv_frame)(void *self, const kl_link_wait *w, uint8_t **ret, size_t *ret_len);
	void (*close)(void *self);
	const char *(*describe)(const void *self);
	const char *(*reason)(const void *self);
} kl_link_transport;

#endif
