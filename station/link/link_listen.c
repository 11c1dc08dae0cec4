/* The station's TCP listener for keyline-agent links, the handshake and the
 * verdict (link_listen.h, docs/link.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kl_error.h"
#include "link_listen.h"

#define SLICE_MS 50

struct kl_link_listener {
	int fd;
	int port;
	char where[80];
};

/* "HOST:PORT" or "[V6]:PORT" -> a socket address. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len, bool *any)
{
	char host[64];
	const char *colon, *port;
	char *end;
	long p;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || close[1] != ':' || (size_t)(close - addr - 1) >= sizeof(host))
			return kl_error_set(KL_E_INVALID, "link address \"%s\": not [IPV6]:PORT",
			                    addr);
		memcpy(host, addr + 1, (size_t)(close - addr - 1));
		host[close - addr - 1] = '\0';
		port = close + 2;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host))
			return kl_error_set(KL_E_INVALID,
			                    "link address \"%s\": not HOST:PORT (an IPv4 address, "
			                    "or [IPV6]:PORT)",
			                    addr);
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		port = colon + 1;
	}
	errno = 0;
	p = strtol(port, &end, 10);
	if (!*port || *end || errno || p < 0 || p > 65535)
		return kl_error_set(KL_E_INVALID, "link address \"%s\": port '%s' is not 0..65535",
		                    addr, port);
	memset(ss, 0, sizeof(*ss));
	if (addr[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return kl_error_set(KL_E_INVALID,
			                    "link address \"%s\": '%s' is not an IPv6 address",
			                    addr, host);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		*any = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
		*len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return kl_error_set(KL_E_INVALID,
			                    "link address \"%s\": '%s' is not an IPv4 address (the "
			                    "station binds an address, not a name)",
			                    addr, host);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
		*any = s4->sin_addr.s_addr == htonl(INADDR_ANY);
		*len = sizeof(*s4);
	}
	return 0;
}

int kl_link_listen(const char *addr, bool allow_any, kl_link_listener **ret)
{
	struct sockaddr_storage ss, got;
	socklen_t len = 0, glen = sizeof(got);
	kl_link_listener *l;
	bool any = false;
	int fd, one = 1, r;

	if (!addr || !*addr)
		return kl_error_set(KL_E_INVALID, "link: no listen address given");
	if ((r = parse_addr(addr, &ss, &len, &any)) < 0)
		return r;
	if (any && !allow_any)
		return kl_error_set(KL_E_PERM,
		                    "link address \"%s\" listens on every interface: give the "
		                    "factory network's address (or allow a wildcard explicitly)",
		                    addr);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "link %s: socket: %s", addr, strerror(errno));
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &glen) < 0) {
		int e = errno;

		close(fd);
		return kl_error_set(KL_E_IO, "link %s: %s", addr, strerror(e));
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return kl_error_set(KL_E_NOMEM, "link: out of memory");
	}
	l->fd = fd;
	l->port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
	                                          : ((struct sockaddr_in *)&got)->sin_port);
	snprintf(l->where, sizeof(l->where), "%s", addr);
	*ret = l;
	return 0;
}

void kl_link_listener_free(kl_link_listener *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}

int kl_link_listener_fd(const kl_link_listener *l)
{
	return l->fd;
}

int kl_link_listener_port(const kl_link_listener *l)
{
	return l->port;
}

int kl_link_accept(kl_link_listener *l, const kl_link_wait *w, kl_link_conn **ret)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char host[INET6_ADDRSTRLEN] = "?", peer[96];
		struct pollfd p = { .fd = l->fd, .events = POLLIN };
		double left;
		int fd, one = 1;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			int port = 0;

			if (ss.ss_family == AF_INET6) {
				inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
				          sizeof(host));
				port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
				snprintf(peer, sizeof(peer), "tcp:[%s]:%d", host, port);
			} else {
				inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
				          sizeof(host));
				port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
				snprintf(peer, sizeof(peer), "tcp:%s:%d", host, port);
			}
			/* One small frame per TPM command: no Nagle delay. */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			return kl_link_conn_wrap(fd, peer, ret);
		}
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return kl_error_set(KL_E_IO, "link %s: accept: %s", l->where,
			                    strerror(errno));
		if (w->cancelled && w->cancelled(w->cancel_ctx))
			return kl_error_set(KL_E_IO, "aborted while waiting for an agent on %s",
			                    l->where);
		left = w->deadline_ms - kl_link_now_ms();
		if (left <= 0)
			return kl_error_set(KL_E_TIMEOUT, "no agent connected to %s in time",
			                    l->where);
		if (poll(&p, 1, left < SLICE_MS ? (int)left + 1 : SLICE_MS) < 0 && errno != EINTR)
			return kl_error_set(KL_E_IO, "link %s: poll: %s", l->where,
			                    strerror(errno));
	}
}

/* Refuses the agent: ERROR on the wire, the link dead, the error set. */
static int refuse(kl_link_conn *c, const kl_link_wait *w, kl_err code, const char *reason,
                  const char *message)
{
	char msg[KL_LINK_TEXT_VALUE_MAX + 1];

	snprintf(msg, sizeof(msg), "%s", message);
	kl_link_conn_refuse(c, reason, msg, w);
	return kl_error_set(code, "%s [%s]", msg, reason);
}

int kl_link_handshake(kl_link_conn *c, const kl_link_wait *w, const char *station_id,
                      const char *expect_serial, kl_link_agent_info *ret)
{
	static _Thread_local kl_link_text t;
	char out[512], msg[300], proto_s[12];
	size_t len = 0;
	kl_link_hello h;
	kl_link_type type;
	const uint8_t *p;
	uint32_t n;
	kl_link_err e;
	int proto, r;

	if ((r = kl_link_conn_recv(c, w, &type, &p, &n)) < 0) {
		const char *reason = kl_link_conn_reason(c);

		/* Garbage and oversize are told to the agent before it goes. */
		if (reason &&
		    (strcmp(reason, "link_garbage") == 0 || strcmp(reason, "link_oversize") == 0)) {
			snprintf(msg, sizeof(msg), "%s", kl_error_detail());
			kl_link_conn_refuse(c, reason, msg, w);
			return kl_error_set(KL_E_INVALID, "%s [%s]", msg, reason);
		}
		if (reason && strcmp(reason, "link_timeout") == 0) {
			snprintf(msg, sizeof(msg), "%s", kl_error_detail());
			kl_link_conn_refuse(c, reason, "no HELLO in time", w);
			return kl_error_set(KL_E_TIMEOUT, "%s [%s]", msg, reason);
		}
		return r;
	}
	if (type != KL_LINK_HELLO) {
		snprintf(msg, sizeof(msg), "the agent on %s sent %s where HELLO belongs",
		         kl_link_conn_peer(c), kl_link_type_name(type));
		return refuse(c, w, KL_E_INVALID, "link_garbage", msg);
	}
	if (kl_link_text_parse(p, n, &t, &e) < 0 || kl_link_hello_read(&t, &h, &e) < 0) {
		snprintf(msg, sizeof(msg), "the agent on %s sent a bad HELLO: %s",
		         kl_link_conn_peer(c), e.message);
		return refuse(c, w, KL_E_INVALID, e.reason, msg);
	}
	if ((proto = kl_link_negotiate(h.proto_min, h.proto_max, KL_LINK_PROTO_MIN,
	                               KL_LINK_PROTO_MAX, &e)) < 0) {
		snprintf(msg, sizeof(msg), "the agent on %s (%s): %s", kl_link_conn_peer(c),
		         h.serial, e.message);
		return refuse(c, w, KL_E_PERM, e.reason, msg);
	}
	if (expect_serial && strcmp(expect_serial, h.serial) != 0) {
		snprintf(msg, sizeof(msg),
		         "the agent on %s says serial %s, but this station expects %.64s",
		         kl_link_conn_peer(c), h.serial, expect_serial);
		return refuse(c, w, KL_E_PERM, "serial_mismatch", msg);
	}
	snprintf(proto_s, sizeof(proto_s), "%d", proto);
	if (kl_link_text_add(out, sizeof(out), &len, "proto", proto_s, &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "station",
	                     station_id && *station_id ? station_id : "keyline", &e) < 0)
		return kl_error_set(KL_E_INVALID, "WELCOME: %s", e.message);
	if ((r = kl_link_conn_send(c, KL_LINK_WELCOME, out, len, w)) < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->proto = (unsigned)proto;
	snprintf(ret->serial, sizeof(ret->serial), "%s", h.serial);
	snprintf(ret->model, sizeof(ret->model), "%.64s", h.model);
	snprintf(ret->firmware, sizeof(ret->firmware), "%.64s", h.firmware);
	snprintf(ret->agent, sizeof(ret->agent), "%.64s", h.agent);
	return 0;
}

int kl_link_send_verdict(kl_link_conn *c, const kl_link_wait *w, const char *serial, bool pass,
                         const char *fingerprint, const char *reason, const char *message)
{
	char out[2048], msg[KL_LINK_TEXT_VALUE_MAX + 1];
	size_t len = 0;
	kl_link_err e;
	int r = 0;

	snprintf(msg, sizeof(msg), "%s", message ? message : "");
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	if (kl_link_text_add(out, sizeof(out), &len, "result", pass ? "PASS" : "FAIL", &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "serial", serial, &e) < 0)
		r = -1;
	else if (pass)
		r = kl_link_text_add(out, sizeof(out), &len, "fingerprint",
		                     fingerprint ? fingerprint : "", &e);
	else if (kl_link_text_add(out, sizeof(out), &len, "reason",
	                          reason && kl_link_reason_valid(reason) ? reason : "failed",
	                          &e) < 0 ||
	         kl_link_text_add(out, sizeof(out), &len, "message", msg, &e) < 0)
		r = -1;
	if (r < 0)
		return kl_error_set(KL_E_INVALID, "VERDICT: %s", e.message);
	return kl_link_conn_send(c, KL_LINK_VERDICT, out, len, w);
}
