/* A keyline-agent link on the station's side: frames over a non-blocking
 * stream socket, or over a frame transport (USB, link_transport.h), every
 * wait bounded (link_conn.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kl_error.h"
#include "link_conn.h"
#include "link_transport.h"

#define SLICE_MS 50 /* how often a wait asks the cancel predicate */

struct kl_link_conn {
	int fd; /* -1 over a transport */
	kl_link_transport tr;
	bool has_tr;
	char peer[96];
	const char *reason;   /* of the last failure */
	char peer_reason[48]; /* "agent_<reason>" once the peer sent ERROR */
	bool dead;
	bool wire_broken; /* the stream itself failed: nothing more can be sent */
	bool sent;        /* a frame went out since the last receive */
	uint8_t rbuf[4096];
	size_t rlen, roff;
	kl_link_decoder dec;
};

double kl_link_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int kl_link_conn_fail(kl_link_conn *c, kl_err code, const char *reason, const char *fmt, ...)
{
	char msg[KL_ERROR_DETAIL_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->reason = reason;
	if (strcmp(reason, "aborted") != 0)
		c->dead = true;
	if (strcmp(reason, "link_lost") == 0 || strcmp(reason, "link_truncated") == 0)
		c->wire_broken = true;
	return kl_error_set(code, "%s", msg);
}

int kl_link_conn_wrap(int fd, const char *peer, kl_link_conn **ret)
{
	kl_link_conn *c;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		return kl_error_set(KL_E_IO, "link %s: fcntl: %s", peer, strerror(e));
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return kl_error_set(KL_E_NOMEM, "link: out of memory");
	}
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "agent");
	kl_link_decoder_init(&c->dec);
	*ret = c;
	return 0;
}

int kl_link_conn_wrap_transport(const kl_link_transport *t, kl_link_conn **ret)
{
	kl_link_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		t->close(t->self);
		return kl_error_set(KL_E_NOMEM, "link: out of memory");
	}
	c->fd = -1;
	c->tr = *t;
	c->has_tr = true;
	snprintf(c->peer, sizeof(c->peer), "%s", t->describe(t->self));
	kl_link_decoder_init(&c->dec);
	*ret = c;
	return 0;
}

void kl_link_conn_free(kl_link_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->has_tr)
		c->tr.close(c->tr.self);
	free(c);
}

/* A transport's failure as the link's: the same code, its reason, its
 * detail. */
static int tr_failed(kl_link_conn *c, int rc)
{
	const char *reason = c->tr.reason(c->tr.self);

	return kl_link_conn_fail(c, (kl_err)-rc, reason && *reason ? reason : "link_lost", "%s",
	                         kl_error_detail());
}

static int tr_send(kl_link_conn *c, kl_link_type type, const void *payload, size_t len,
                   const kl_link_wait *w)
{
	uint8_t frame[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];
	int rc;

	kl_link_header_encode(frame, type, (uint32_t)len);
	memcpy(frame + KL_LINK_HEADER_SIZE, payload, len);
	rc = c->tr.send_frame(c->tr.self, frame, KL_LINK_HEADER_SIZE + len, w);
	return rc < 0 ? tr_failed(c, rc) : 0;
}

/* The frame is checked by the transport (with the same codec); it is kept
 * in the decoder's payload buffer so that *payload lives as long as a
 * socket link's does. */
static int tr_recv(kl_link_conn *c, const kl_link_wait *w, kl_link_type *type,
                   const uint8_t **payload, uint32_t *len)
{
	uint8_t *f = NULL;
	size_t n = 0;
	int rc = c->tr.recv_frame(c->tr.self, w, &f, &n);

	if (rc < 0)
		return tr_failed(c, rc);
	c->dec.type = (kl_link_type)f[5];
	c->dec.len = (uint32_t)(n - KL_LINK_HEADER_SIZE);
	memcpy(c->dec.payload, f + KL_LINK_HEADER_SIZE, c->dec.len);
	free(f);
	*type = c->dec.type;
	*payload = c->dec.payload;
	*len = c->dec.len;
	return 0;
}

const char *kl_link_conn_peer(const kl_link_conn *c)
{
	return c->peer;
}

const char *kl_link_conn_reason(const kl_link_conn *c)
{
	return c->reason;
}

void kl_link_conn_peer_ended(kl_link_conn *c, const char *reason)
{
	if (reason && kl_link_reason_valid(reason) &&
	    strlen(reason) < sizeof(c->peer_reason) - strlen("agent_"))
		snprintf(c->peer_reason, sizeof(c->peer_reason), "agent_%s", reason);
	else
		snprintf(c->peer_reason, sizeof(c->peer_reason), "agent_error");
}

const char *kl_link_conn_peer_reason(const kl_link_conn *c)
{
	return c && c->peer_reason[0] ? c->peer_reason : NULL;
}

bool kl_link_conn_dead(const kl_link_conn *c)
{
	return c->dead;
}

/* Waits for events on the socket within w: 0 ready, else the failure. */
static int conn_wait(kl_link_conn *c, short events, const kl_link_wait *w, const char *doing)
{
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = events };
		double left = w->deadline_ms - kl_link_now_ms();
		int n;

		if (w->cancelled && w->cancelled(w->cancel_ctx))
			return kl_link_conn_fail(c, KL_E_IO, "aborted",
			                         "the job was aborted while %s %s", doing, c->peer);
		if (left <= 0)
			return kl_link_conn_fail(c, KL_E_TIMEOUT, "link_timeout",
			                         "the agent on %s went silent: timed out %s it",
			                         c->peer, doing);
		n = poll(&p, 1, left < SLICE_MS ? (int)left + 1 : SLICE_MS);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return kl_link_conn_fail(c, KL_E_IO, "link_lost", "poll on %s: %s", c->peer,
			                         strerror(errno));
	}
}

static int dead_again(kl_link_conn *c)
{
	return kl_error_set(KL_E_UNAVAILABLE, "the link to %s failed earlier (%s)", c->peer,
	                    c->reason ? c->reason : "link_lost");
}

static int conn_send(kl_link_conn *c, kl_link_type type, const void *payload, size_t len,
                     const kl_link_wait *w);

int kl_link_conn_send(kl_link_conn *c, kl_link_type type, const void *payload, size_t len,
                      const kl_link_wait *w)
{
	if (c->dead)
		return dead_again(c);
	return conn_send(c, type, payload, len, w);
}

static int conn_send(kl_link_conn *c, kl_link_type type, const void *payload, size_t len,
                     const kl_link_wait *w)
{
	/* Header and payload in one buffer, one send: one segment per frame
	 * with TCP_NODELAY, so the peer wakes once per TPM command. */
	uint8_t frame[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];
	size_t done = 0, total = KL_LINK_HEADER_SIZE + len;
	kl_link_type t;
	uint32_t n32;
	kl_link_err e;

	if (c->wire_broken)
		return dead_again(c);
	kl_link_header_encode(frame, type, (uint32_t)len);
	if (len > KL_LINK_PAYLOAD_MAX || kl_link_header_decode(frame, &t, &n32, &e) < 0 ||
	    kl_link_tpm_check(type, payload, len, &e) < 0)
		return kl_error_set(
		    KL_E_INVALID, "link %s: not sending a %s frame of %zu bytes: %s", c->peer,
		    kl_link_type_name(type), len,
		    len > KL_LINK_PAYLOAD_MAX ? "larger than the limit" : e.message);
	if (c->has_tr)
		return tr_send(c, type, payload, len, w);
	if (len)
		memcpy(frame + KL_LINK_HEADER_SIZE, payload, len);
	while (done < total) {
		ssize_t n = send(c->fd, frame + done, total - done, MSG_NOSIGNAL);
		int r;

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return kl_link_conn_fail(c, KL_E_UNAVAILABLE, "link_lost",
			                         "the link to %s was lost sending %s: %s", c->peer,
			                         kl_link_type_name(type), strerror(errno));
		if ((r = conn_wait(c, POLLOUT, w, "sending to")) < 0) {
			/* Part of a frame on the wire: nothing can follow it. */
			if (done > 0) {
				c->dead = true;
				c->wire_broken = true;
			}
			return r;
		}
	}
	c->sent = true;
	return 0;
}

int kl_link_conn_recv(kl_link_conn *c, const kl_link_wait *w, kl_link_type *type,
                      const uint8_t **payload, uint32_t *len)
{
	if (c->dead)
		return dead_again(c);
	if (c->has_tr)
		return tr_recv(c, w, type, payload, len);
	/* Right after a send (a TPM command) the answer cannot be there yet:
	 * poll first, instead of a recv that fails with EAGAIN once per
	 * command (docs/link.md, "Tests and figures"). */
	bool wait_first = c->sent && c->roff >= c->rlen;

	c->sent = false;
	for (;;) {
		kl_link_err e = { 0 };
		ssize_t n;
		int r;

		if (wait_first) {
			wait_first = false;
			if ((r = conn_wait(c, POLLIN, w, "waiting for")) < 0)
				return r;
		}

		if (c->roff < c->rlen) {
			size_t used = 0;

			r = kl_link_decoder_feed(&c->dec, c->rbuf + c->roff, c->rlen - c->roff,
			                         &used, &e);
			c->roff += used;
			if (r < 0)
				return kl_link_conn_fail(c, KL_E_INVALID, e.reason,
				                         "the agent on %s sent a bad frame: %s",
				                         c->peer, e.message);
			if (r == KL_LINK_FRAME) {
				*type = c->dec.type;
				*payload = c->dec.payload;
				*len = c->dec.len;
				return 0;
			}
			continue;
		}
		n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
		if (n > 0) {
			c->rlen = (size_t)n;
			c->roff = 0;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			int err = n == 0 ? 0 : errno;

			(void)kl_link_decoder_eof(&c->dec, &e);
			return kl_link_conn_fail(
			    c, KL_E_UNAVAILABLE, e.reason, "the link to %s was lost: %s%s%s",
			    c->peer, e.message, err ? ": " : "", err ? strerror(err) : "");
		}
		if ((r = conn_wait(c, POLLIN, w, "waiting for")) < 0)
			return r;
	}
}

void kl_link_conn_refuse(kl_link_conn *c, const char *reason, const char *message,
                         const kl_link_wait *w)
{
	char text[KL_LINK_TEXT_VALUE_MAX * 2];
	size_t len = 0;
	char msg[KL_LINK_TEXT_VALUE_MAX + 1];
	kl_link_wait rw = *w;
	kl_err code = kl_error_code();
	char saved[KL_ERROR_DETAIL_MAX];
	kl_link_err e;

	snprintf(saved, sizeof(saved), "%s", kl_error_detail());

	/* A refusal for silence comes after its deadline: it gets 1 s. */
	if (rw.deadline_ms < kl_link_now_ms() + 1000)
		rw.deadline_ms = kl_link_now_ms() + 1000;
	/* The message goes on the wire: make it printable ASCII first. */
	snprintf(msg, sizeof(msg), "%s", message ? message : "");
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	/* Also after a refused frame (the link is dead for frames, the stream
	 * still takes bytes); not after the stream itself failed. */
	if (!c->wire_broken &&
	    kl_link_text_add(text, sizeof(text), &len, "reason", reason, &e) == 0 &&
	    kl_link_text_add(text, sizeof(text), &len, "message", msg, &e) == 0 &&
	    conn_send(c, KL_LINK_ERROR, text, len, &rw) < 0) {
		if (code)
			(void)kl_error_set(code, "%s", saved);
		else
			kl_error_clear();
	}
	c->dead = true;
	c->reason = reason;
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}
