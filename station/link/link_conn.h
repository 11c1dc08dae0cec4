/* A keyline-agent link on the station's side: one connected stream socket
 * (TCP today) carrying frames of link_frame.h, every wait bounded by a
 * deadline and a cancel predicate, polled in short slices. Nothing here
 * blocks without a deadline.
 *
 * A failure names its reason (kl_link_conn_reason): link_timeout (the
 * deadline passed), link_lost (closed or reset), link_truncated (closed
 * inside a frame), link_garbage, link_oversize (the peer's frame was
 * refused), aborted (the cancel predicate). After any failure but an
 * abort while waiting for a frame the link is dead: every later call fails
 * at once with the same reason. The usual kl_error detail says why. */
#ifndef KL_STATION_LINK_CONN_H
#define KL_STATION_LINK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"
#include "link_frame.h"

typedef struct kl_link_conn kl_link_conn;

/* How long a send or a receive may wait: deadline_ms is absolute
 * (kl_link_now_ms); cancelled (may be NULL) is asked every slice. */
typedef struct kl_link_wait {
	double deadline_ms;
	bool (*cancelled)(void *ctx);
	void *cancel_ctx;
} kl_link_wait;

/* CLOCK_MONOTONIC in milliseconds. */
double kl_link_now_ms(void);

/* Wraps a connected stream socket (made non-blocking; owned from now on,
 * closed by kl_link_conn_free, also on failure). peer names it in errors
 * ("tcp:127.0.0.1:40312"). */
int kl_link_conn_wrap(int fd, const char *peer, kl_link_conn **ret) KL_MUST_CHECK;

struct kl_link_transport; /* link_transport.h */

/* Wraps a frame transport (USB: link_usb.h), taken over from now on (its
 * close runs in kl_link_conn_free, also on failure here). The peer's name
 * is the transport's description. */
int kl_link_conn_wrap_transport(const struct kl_link_transport *t,
                                kl_link_conn **ret) KL_MUST_CHECK;

/* Closes the socket or the transport. Accepts NULL. */
void kl_link_conn_free(kl_link_conn *c);

const char *kl_link_conn_peer(const kl_link_conn *c);

/* The reason of the last failure (NULL while none), and whether the link
 * is dead. */
const char *kl_link_conn_reason(const kl_link_conn *c);
bool kl_link_conn_dead(const kl_link_conn *c);

/* Sends one frame, whole, within w. 0, or a negative kl_err:
 * -KL_E_TIMEOUT (link_timeout), -KL_E_UNAVAILABLE (link_lost), -KL_E_IO
 * (aborted), -KL_E_INVALID (a payload the codec refuses to send). */
int kl_link_conn_send(kl_link_conn *c, kl_link_type type, const void *payload, size_t len,
                      const kl_link_wait *w) KL_MUST_CHECK;

/* Receives one whole frame within w. *payload points into c until the next
 * receive. A peer's refused frame is -KL_E_INVALID (link_garbage,
 * link_oversize), a close -KL_E_UNAVAILABLE (link_lost, link_truncated), the
 * deadline -KL_E_TIMEOUT (link_timeout), the cancel predicate -KL_E_IO
 * (aborted; the link stays usable, a partly received frame is kept). */
int kl_link_conn_recv(kl_link_conn *c, const kl_link_wait *w, kl_link_type *type,
                      const uint8_t **payload, uint32_t *len) KL_MUST_CHECK;

/* Sends ERROR reason=, message= (best effort, bounded by w or 1 s from now,
 * whichever is later; also after a refused frame, not after the stream
 * broke) and marks the link dead with that reason (a static string): what
 * the station says before it drops a peer. The kl_error detail is kept. */
void kl_link_conn_refuse(kl_link_conn *c, const char *reason, const char *message,
                         const kl_link_wait *w);

/* The peer ended the link with ERROR reason=R: remembered as "agent_R" (R
 * snake_case and at most 41 characters, else "agent_error"), which
 * kl_link_conn_peer_reason returns from now on (NULL until then). The
 * link's own reason stays what its failure says (link_lost after
 * kl_link_conn_refuse): this is what the agent said, for the job's
 * verdict (docs/link.md, "Errors"). */
void kl_link_conn_peer_ended(kl_link_conn *c, const char *reason);
const char *kl_link_conn_peer_reason(const kl_link_conn *c);

/* Marks the link dead with this reason (and kl_error_set's detail), as a
 * caller that judged a frame does. Returns the negative code. */
int kl_link_conn_fail(kl_link_conn *c, kl_err code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
