/* The station API client. See client.h. */
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "kl_config.h"
#include "kl_error.h"

#define MAX_LINE (64u << 20) /* answers (a device with its evidence) can be large */

struct ev {
	struct ev *next;
	json_object *params;
};

struct kl_client {
	int fd;
	int64_t next_id;
	int last_code;
	char *buf;
	size_t len, cap;
	struct ev *head, *tail;
};

int kl_client_socket_path(const char *home_dir, char *out, size_t size)
{
	char conf[PATH_MAX];
	kl_config *c = NULL;

	snprintf(conf, sizeof(conf), "%s/keyline.conf", home_dir);
	if (access(conf, R_OK) == 0 && kl_config_load(conf, &c) == 0) {
		const char *p = kl_config_get(c, "station.socket", NULL);

		if (p) {
			snprintf(out, size, "%s", p);
			kl_config_free(c);
			return 0;
		}
		kl_config_free(c);
	}
	snprintf(out, size, "%s/station.sock", home_dir);
	return 0;
}

int kl_client_connect(const char *path, kl_client **ret)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	kl_client *c;
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return kl_error_set(KL_E_INVALID, "socket path too long: %s", path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		close(fd);
		if (e == EACCES)
			return kl_error_set(
			    KL_E_PERM,
			    "%s: permission denied (the socket is mode 0660: ask for "
			    "the station's socket group)",
			    path);
		return kl_error_set(KL_E_UNAVAILABLE,
		                    "no station is running on %s (%s): start it with 'keyline "
		                    "station'",
		                    path, strerror(e));
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	c->fd = fd;
	*ret = c;
	return 0;
}

void kl_client_free(kl_client *c)
{
	if (!c)
		return;
	close(c->fd);
	while (c->head) {
		struct ev *e = c->head;

		c->head = e->next;
		json_object_put(e->params);
		free(e);
	}
	free(c->buf);
	free(c);
}

int kl_client_last_code(const kl_client *c)
{
	return c->last_code;
}

int kl_client_send_raw(kl_client *c, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kl_error_set(KL_E_IO, "send to the station: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kl_client_read(kl_client *c, int timeout_ms, json_object **ret)
{
	int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : 0;

	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;

		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			json_tokener *tok = json_tokener_new_ex(64);
			json_object *o = tok ? json_tokener_parse_ex(tok, c->buf, (int)n) : NULL;

			json_tokener_free(tok);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			if (!o)
				return kl_error_set(KL_E_INVALID,
				                    "the station sent a line that is not JSON");
			*ret = o;
			return 0;
		}
		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *p;

			if (cap > MAX_LINE)
				return kl_error_set(KL_E_INVALID, "an answer longer than %u bytes",
				                    MAX_LINE);
			p = realloc(c->buf, cap);
			if (!p)
				return kl_error_set(KL_E_NOMEM, "out of memory");
			c->buf = p;
			c->cap = cap;
		}
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		int wait = -1;

		if (timeout_ms >= 0) {
			int64_t left = deadline - mono_ms();

			if (left <= 0)
				return kl_error_set(KL_E_TIMEOUT,
				                    "the station did not answer in time");
			wait = (int)left;
		}
		int pr = poll(&pfd, 1, wait);

		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			return kl_error_set(KL_E_TIMEOUT, "the station did not answer in time");
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);

		if (n == 0)
			return kl_error_set(KL_E_IO, "the station closed the connection");
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kl_error_set(KL_E_IO, "read from the station: %s", strerror(errno));
		}
		c->len += (size_t)n;
	}
}

static void queue_event(kl_client *c, json_object *msg)
{
	json_object *p;
	struct ev *e;

	if (!json_object_object_get_ex(msg, "params", &p) || !(e = calloc(1, sizeof(*e))))
		return;
	e->params = json_object_get(p);
	if (c->tail)
		c->tail->next = e;
	else
		c->head = e;
	c->tail = e;
}

static bool is_event(json_object *msg)
{
	json_object *m;

	return json_object_object_get_ex(msg, "method", &m) &&
	       strcmp(json_object_get_string(m), "event") == 0;
}

static int error_from(kl_client *c, json_object *err)
{
	json_object *code, *msg, *data, *reason;
	static const struct {
		const char *name;
		int err;
	} map[] = {
		{ "invalid", KL_E_INVALID },
		{ "notfound", KL_E_NOTFOUND },
		{ "exists", KL_E_EXISTS },
		{ "perm", KL_E_PERM },
		{ "state", KL_E_STATE },
		{ "unavailable", KL_E_UNAVAILABLE },
		{ "crypto", KL_E_CRYPTO },
		{ "tpm", KL_E_TPM },
		{ "hsm", KL_E_HSM },
		{ "db", KL_E_DB },
		{ "unsupported", KL_E_UNSUPPORTED },
	};
	int e = KL_E_INVALID;

	c->last_code =
	    json_object_object_get_ex(err, "code", &code) ? json_object_get_int(code) : 0;
	if (json_object_object_get_ex(err, "data", &data) &&
	    json_object_object_get_ex(data, "reason", &reason))
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(json_object_get_string(reason), map[i].name) == 0)
				e = map[i].err;
	if (c->last_code == -32001)
		e = KL_E_PERM;
	return kl_error_set((kl_err)e, "%s",
	                    json_object_object_get_ex(err, "message", &msg)
	                        ? json_object_get_string(msg)
	                        : "the station answered with an error");
}

/* After a send that failed (r) because the station had closed the
 * connection: the line it sent before closing, an error with id null (a
 * refusal: no role, too many connections), says why better than the
 * broken pipe does. r when there is no such line. */
static int send_failed(kl_client *c, int r)
{
	char why[KL_ERROR_DETAIL_MAX];
	json_object *msg = NULL, *err, *id;

	snprintf(why, sizeof(why), "%s", kl_error_detail());
	/* Nothing waits long: the peer is gone, the read ends at once. */
	if (kl_client_read(c, 1000, &msg) == 0 && json_object_object_get_ex(msg, "error", &err) &&
	    json_object_object_get_ex(msg, "id", &id) && json_object_get_type(id) == json_type_null)
		r = error_from(c, err);
	else
		r = kl_error_set((kl_err)-r, "%s", why);
	json_object_put(msg);
	return r;
}

int kl_client_call_timeout(kl_client *c, const char *method, json_object *params,
                           json_object **result, int timeout_ms)
{
	json_object *req = json_object_new_object(), *msg = NULL, *id, *v;
	int64_t my = ++c->next_id;
	const char *text;
	char *line;
	int r;

	json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(req, "method", json_object_new_string(method));
	if (params)
		json_object_object_add(req, "params", params);
	json_object_object_add(req, "id", json_object_new_int64(my));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	line = malloc(strlen(text) + 2);
	if (!line) {
		json_object_put(req);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	sprintf(line, "%s\n", text);
	json_object_put(req);
	r = kl_client_send_raw(c, line, strlen(line));
	free(line);
	c->last_code = 0;
	if (r < 0)
		return send_failed(c, r);
	while (r == 0) {
		r = kl_client_read(c, timeout_ms, &msg);
		if (r < 0)
			break;
		if (is_event(msg)) {
			queue_event(c, msg);
			json_object_put(msg);
			continue;
		}
		if (!json_object_object_get_ex(msg, "id", &id) || json_object_get_int64(id) != my) {
			/* An answer to a request sent raw, or a connection-level
			 * error (id null): an error one is ours to report. */
			if (json_object_object_get_ex(msg, "error", &v) &&
			    json_object_get_type(id) == json_type_null) {
				r = error_from(c, v);
				json_object_put(msg);
				return r;
			}
			json_object_put(msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			r = error_from(c, v);
		} else if (json_object_object_get_ex(msg, "result", &v)) {
			*result = json_object_get(v);
		} else {
			r = kl_error_set(KL_E_INVALID, "the station's answer has no result");
		}
		json_object_put(msg);
		return r;
	}
	return r;
}

int kl_client_call(kl_client *c, const char *method, json_object *params, json_object **result)
{
	return kl_client_call_timeout(c, method, params, result, -1);
}

int kl_client_next_event(kl_client *c, int timeout_ms, json_object **ret)
{
	json_object *msg;
	int r;

	for (;;) {
		if (c->head) {
			struct ev *e = c->head;

			c->head = e->next;
			if (!c->head)
				c->tail = NULL;
			*ret = e->params;
			free(e);
			return 0;
		}
		r = kl_client_read(c, timeout_ms, &msg);
		if (r < 0)
			return r;
		if (is_event(msg))
			queue_event(c, msg);
		json_object_put(msg);
	}
}
