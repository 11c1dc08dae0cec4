/* The station's TCP listener for keyline-agent links, and the two ends of
 * a session on the station's side: the handshake (HELLO in, WELCOME or
 * ERROR out) and the verdict (docs/link.md).
 *
 * Reusable in a poll loop: the listener's socket is non-blocking
 * (kl_link_listener_fd to poll it) and every call that waits takes a
 * kl_link_wait, so nothing blocks without a deadline. */
#ifndef KL_STATION_LINK_LISTEN_H
#define KL_STATION_LINK_LISTEN_H

#include <stdbool.h>

#include "kl_error.h"
#include "link_conn.h"

typedef struct kl_link_listener kl_link_listener;

/* Binds and listens on "HOST:PORT" (IPv4 "127.0.0.1:7300", IPv6
 * "[::1]:7300"; port 0 picks a free one). A wildcard address (0.0.0.0,
 * [::]) is refused unless allow_any: the agent link belongs on the factory
 * network's interface, not on every interface of the station. */
int kl_link_listen(const char *addr, bool allow_any, kl_link_listener **ret) KL_MUST_CHECK;
void kl_link_listener_free(kl_link_listener *l);
int kl_link_listener_fd(const kl_link_listener *l);
/* The port bound (what port 0 became). */
int kl_link_listener_port(const kl_link_listener *l);

/* Accepts one agent within w: 0 and *ret, -KL_E_TIMEOUT when none came,
 * -KL_E_IO (aborted or a socket error). */
int kl_link_accept(kl_link_listener *l, const kl_link_wait *w, kl_link_conn **ret) KL_MUST_CHECK;

/* What the agent said in its HELLO, copied. */
typedef struct kl_link_agent_info {
	unsigned proto; /* the version agreed */
	char serial[KL_LINK_SERIAL_MAX + 1];
	char model[65], firmware[65], agent[65]; /* cut to 64 bytes */
} kl_link_agent_info;

/* The station's side of the handshake within w: reads HELLO, checks it
 * (link_garbage, serial_invalid), negotiates the version
 * (version_mismatch), checks the serial against expect_serial when given
 * (serial_mismatch), and answers WELCOME proto=, station=. A refusal is
 * sent to the agent as ERROR reason=, message= and the link is dead with
 * that reason (kl_link_conn_reason); the return is a negative kl_err
 * (-KL_E_PERM for serial_mismatch and version_mismatch, -KL_E_INVALID for a
 * bad hello, the link's own otherwise). */
int kl_link_handshake(kl_link_conn *c, const kl_link_wait *w, const char *station_id,
                      const char *expect_serial, kl_link_agent_info *ret) KL_MUST_CHECK;

/* Sends VERDICT: result=PASS with serial= and fingerprint= (SHA-256 hex of
 * the IDevID certificate's DER), or result=FAIL with serial=, reason= and
 * message= (cut to fit, control characters replaced). */
int kl_link_send_verdict(kl_link_conn *c, const kl_link_wait *w, const char *serial, bool pass,
                         const char *fingerprint, const char *reason,
                         const char *message) KL_MUST_CHECK;

#endif
