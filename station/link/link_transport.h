/* A frame transport of the DUT link: what carries keyline-agent frames
 * (12-byte header + payload, docs/link.md) between the station and a DUT,
 * whatever the wire (USB bulk endpoints, TCP). The TCTI over a link and the
 * HELLO/WELCOME exchange take one of these and need not know the wire.
 *
 * Conventions: 0 or a negative kl_err; send_frame takes one whole frame;
 * recv_frame hands back one whole frame (malloc'd, the caller frees) whose
 * header has been checked; every call is bounded by timeout_ms. close frees
 * the transport's object (self) and accepts NULL. */
#ifndef KL_STATION_LINK_TRANSPORT_H
#define KL_STATION_LINK_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

typedef struct kl_link_transport {
	void *self;
	int (*send_frame)(void *self, const uint8_t *frame, size_t len, int timeout_ms);
	int (*recv_frame)(void *self, int timeout_ms, uint8_t **ret, size_t *ret_len);
	void (*close)(void *self);
	const char *(*describe)(const void *self); /* "usb:1-2 1d6b:0104 serial=KL-USB-0001" */
} kl_link_transport;

#endif
