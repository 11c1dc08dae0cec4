/* The station's socket server: the Unix socket and its connections, the
 * caller's roles from the peer's uid and groups ([roles]), the poll loop
 * that reads requests, answers them through the method tables and sends
 * queued events to subscribers, and the same tables called in process.
 * See station_internal.h. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kl_error.h"
#include "kl_log.h"
#include "station_internal.h"

#define LOG_MOD "station"

/* A connection with this many calls on the backend worker is not read
 * until one is answered: a client cannot queue work without bound. */
#define ST_CONN_MAX_PENDING 8

typedef struct st_conn {
	uint64_t id;      /* unique for the station's life: deferred answers find it */
	unsigned pending; /* its calls on the backend worker */
	int fd;
	kl_rpc_conn *rpc;
	st_caller caller;
	char *out;
	size_t out_len, out_cap, out_off;
	time_t last_rx;
	uid_t uid;    /* the peer's, for max_clients_per_uid */
	bool closing; /* close once out is written */
} st_conn;

size_t st_client_count(kl_station *s)
{
	return s->nconns;
}

/* Adds v (taken, even on failure; NULL is a failed allocation) to object
 * o under key. */
static int put(json_object *o, const char *key, json_object *v)
{
	if (!v || json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return -KL_E_NOMEM;
	}
	return 0;
}

/* An error answer to no request in particular (id null), for a client
 * refused outside a request: {"jsonrpc":"2.0","error":{"code","message",
 * "data":{"reason"}},"id":null} and a '\n', in *ret (free() it). Returns
 * its length, or 0 (and *ret NULL) on NOMEM. */
static size_t refusal_line(int code, const char *message, const char *reason, char **ret)
{
	json_object *a = json_object_new_object(), *e = json_object_new_object();
	json_object *d = json_object_new_object();
	const char *text;
	size_t len = 0;

	*ret = NULL;
	if (!a || !e || !d || put(d, "reason", json_object_new_string(reason)) < 0 ||
	    put(e, "code", json_object_new_int(code)) < 0 ||
	    put(e, "message", json_object_new_string(message)) < 0)
		goto out;
	if (put(e, "data", d) < 0) {
		d = NULL; /* freed by put */
		goto out;
	}
	d = NULL; /* in e */
	if (put(a, "jsonrpc", json_object_new_string("2.0")) < 0)
		goto out;
	if (put(a, "error", e) < 0) {
		e = NULL;
		goto out;
	}
	e = NULL; /* in a */
	if (json_object_object_add(a, "id", NULL) < 0)
		goto out;
	text = json_object_to_json_string_length(
	    a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (text && (*ret = malloc(len + 2))) {
		memcpy(*ret, text, len);
		(*ret)[len] = '\n';
		(*ret)[len + 1] = '\0';
	}
out:
	json_object_put(d);
	json_object_put(e);
	json_object_put(a);
	return *ret ? len + 1 : 0;
}

static int conn_queue(st_conn *c, const char *line, size_t len)
{
	kl_station *s = c->caller.st;

	if (c->closing)
		return -KL_E_IO; /* dropped for slowness, or gone: nothing more to send */
	if (c->out_len - c->out_off + len > s->max_out) {
		kl_log_warn(LOG_MOD, "client %s does not read its answers: disconnected",
		            c->caller.actor);
		c->closing = true;
		c->out_len = c->out_off = 0;
		return -KL_E_IO;
	}
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p)
			return -KL_E_NOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	return 0;
}

static int conn_out(void *ctx, const char *line, size_t len)
{
	st_conn *c = ctx;
	int r = conn_queue(c, line, len);

	return r == -KL_E_IO ? 0 : r;
}

static void conn_flush(st_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->closing = true, c->out_off = c->out_len;
			return;
		}
		c->out_off += (size_t)n;
	}
}

static void conn_free(st_conn *c)
{
	if (!c)
		return;
	if (c->caller.batch_drop)
		c->caller.batch_drop(&c->caller, true);
	if (c->fd >= 0)
		close(c->fd);
	kl_rpc_conn_free(c->rpc);
	free(c->out);
	free(c);
}

static unsigned peer_roles(kl_station *s, uid_t uid, gid_t gid)
{
	gid_t groups[64];
	int ngroups = 64;
	unsigned roles = 0;
	struct passwd pw, *pwp = NULL;
	char buf[1024];

	groups[0] = gid;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp ||
	    getgrouplist(pwp->pw_name, gid, groups, &ngroups) < 0)
		ngroups = 1;
	for (size_t i = 0; i < s->nrules; i++) {
		const st_rule *r = &s->rules[i];

		if (r->kind == RULE_ANY || (r->kind == RULE_UID && r->id == uid))
			roles |= r->role;
		for (int g = 0; r->kind == RULE_GID && g < ngroups; g++)
			if (groups[g] == r->id)
				roles |= r->role;
	}
	return roles;
}

void st_on_denied(void *ctx, unsigned roles, const char *method)
{
	st_caller *c = ctx;
	json_object *o = json_object_new_object();
	char rs[128];

	json_object_object_add(o, "method", json_object_new_string(method));
	json_object_object_add(o, "roles",
	                       json_object_new_string(kl_rpc_roles_str(roles, rs, sizeof(rs))));
	if (!c->st->offline) {
		/* The request is denied whether or not the entry is written; it
		 * is written by the backend worker, so that a slot holding the
		 * backend lock (an HSM back-off, a long CRL) does not stop the
		 * loop. */
		st_backend_audit(c->st, c->actor, "station.api.denied",
		                 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	}
	json_object_put(o);
	kl_log_warn(LOG_MOD, "%s denied %s", c->actor, method);
}

/* Sends one refusal line to a client that is not kept, and closes it. The
 * socket is new and its buffer empty: the line goes at once or never. */
static void refuse(int fd, int code, const char *message, const char *reason)
{
	char *line;
	size_t n = refusal_line(code, message, reason, &line);

	if (n > 0 && send(fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* It is going away anyway. */
	}
	free(line);
	close(fd);
}

static size_t conns_of_uid(const kl_station *s, uid_t uid)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nconns; i++)
		n += s->conns[i]->uid == uid && !s->conns[i]->closing;
	return n;
}

/* A peer that holds no role could call nothing: it is audited
 * (station.connect.denied) and closed rather than kept. The refusal stands
 * whether or not its audit entry could be written (kl_store_audit_noted
 * counts and logs a failed write). */
static void refuse_no_role(kl_station *s, int fd, const struct ucred *cred, const char *actor)
{
	json_object *o = json_object_new_object();
	char msg[320];

	if (o && put(o, "uid", json_object_new_int64((int64_t)cred->uid)) == 0 &&
	    put(o, "gid", json_object_new_int64((int64_t)cred->gid)) == 0 &&
	    put(o, "pid", json_object_new_int64((int64_t)cred->pid)) == 0) {
		st_backend_audit(s, actor, "station.connect.denied",
		                 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	} else {
		kl_log_error(LOG_MOD, "the refusal of %s could not be audited: out of memory",
		             actor);
	}
	json_object_put(o);
	kl_log_warn(LOG_MOD, "%s holds no role: connection refused", actor);
	snprintf(msg, sizeof(msg),
	         "permission denied: %s holds no role in the station's [roles]; the "
	         "connection is closed",
	         actor);
	refuse(fd, KL_RPC_E_DENIED, msg, kl_err_name(KL_E_PERM));
}

static void accept_one(kl_station *s)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char rs[128], actor[160];
	unsigned roles;
	st_conn *c;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->nconns >= (size_t)s->max_clients) {
		refuse(fd, kl_rpc_error_code(-KL_E_UNAVAILABLE),
		       "too many clients: the station serves at most station.max_clients",
		       kl_err_name(KL_E_UNAVAILABLE));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	{
		struct passwd pw, *pwp = NULL;
		char buf[1024];

		if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &pwp) != 0)
			pwp = NULL;
		snprintf(actor, sizeof(actor), "user:%s(%u)", pwp ? pwp->pw_name : "?",
		         (unsigned)cred.uid);
	}
	roles = peer_roles(s, cred.uid, cred.gid);
	if (!roles) {
		refuse_no_role(s, fd, &cred, actor);
		return;
	}
	if (conns_of_uid(s, cred.uid) >= (size_t)s->max_clients_per_uid) {
		char msg[320];

		snprintf(msg, sizeof(msg),
		         "too many connections from %s: the station serves at most "
		         "station.max_clients_per_uid (%d) per user",
		         actor, s->max_clients_per_uid);
		kl_log_warn(LOG_MOD, "%s has %d connections already: one more refused", actor,
		            s->max_clients_per_uid);
		refuse(fd, kl_rpc_error_code(-KL_E_UNAVAILABLE), msg,
		       kl_err_name(KL_E_UNAVAILABLE));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->uid = cred.uid;
	c->id = ++s->next_conn_id;
	c->last_rx = time(NULL);
	c->caller.st = s;
	c->caller.conn = c;
	c->caller.roles = roles;
	snprintf(c->caller.actor, sizeof(c->caller.actor), "%s", actor);
	if (kl_rpc_conn_new(&s->rpc, c->caller.roles, &c->caller, &c->rpc) < 0) {
		conn_free(c);
		return;
	}
	if (s->nconns == s->conns_cap) {
		size_t cap = s->conns_cap ? s->conns_cap * 2 : 16;
		st_conn **p = realloc(s->conns, cap * sizeof(*p));

		if (!p) {
			conn_free(c);
			return;
		}
		s->conns = p;
		s->conns_cap = cap;
	}
	s->conns[s->nconns++] = c;
	kl_log_debug(LOG_MOD, "client %s (pid %d) connected with roles %s", c->caller.actor,
	             (int)cred.pid, kl_rpc_roles_str(c->caller.roles, rs, sizeof(rs)));
}

/* Whether a connection has asked nothing for station.idle_close_s and may
 * be closed: never a subscriber (it waits for events), nor one with a
 * request half sent (idle_timeout_s handles that), answers still to write
 * or calls still running on the backend worker (it waits for their
 * answers). */
static bool conn_idle(const kl_station *s, const st_conn *c, time_t now)
{
	return s->idle_close_s > 0 && !c->closing && !c->caller.subscribed && c->pending == 0 &&
	       kl_rpc_conn_buffered(c->rpc) == 0 && c->out_off >= c->out_len &&
	       now - c->last_rx >= s->idle_close_s;
}

static void conn_reap_idle(st_conn *c)
{
	char *line;
	size_t len = refusal_line(kl_rpc_error_code(-KL_E_TIMEOUT),
	                          "idle: nothing asked within station.idle_close_s; the "
	                          "connection is closed",
	                          kl_err_name(KL_E_TIMEOUT), &line);

	kl_log_debug(LOG_MOD, "client %s idle: closed", c->caller.actor);
	if (len > 0)
		conn_queue(c, line, len);
	free(line);
	c->closing = true;
}

static void conn_read(st_conn *c)
{
	char buf[16384];

	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0) {
			c->closing = true;
			c->out_off = c->out_len; /* nobody to tell */
			return;
		}
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				c->closing = true, c->out_off = c->out_len;
			return;
		}
		c->last_rx = time(NULL);
		if (kl_rpc_feed(c->rpc, buf, (size_t)n, conn_out, c) < 0 || c->closing)
			return;
		/* Answer before reading more: a client that only writes cannot
		 * make us buffer without bound. */
		if (c->out_len - c->out_off > 0 || c->pending >= ST_CONN_MAX_PENDING)
			return;
	}
}

int st_api_defer_arg(kl_rpc_call *call, int (*fn)(kl_rpc_call *call), void *arg,
                     void (*arg_free)(void *arg))
{
	st_caller *caller = kl_rpc_call_ctx(call);
	kl_station *s = caller->st;
	st_bjob *j;
	int r;

	if (!caller->conn || !st_backend_running(s)) {
		caller->defer_arg = arg;
		r = fn(call);
		caller->defer_arg = NULL;
		if (arg_free)
			arg_free(arg);
		return r;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		if (arg_free)
			arg_free(arg);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	j->caller = *caller;
	j->caller.conn = NULL;
	j->caller.subscribed = false;
	/* The connection's batch is not the job's: only arg travels. */
	j->caller.batch = NULL;
	j->caller.batch_drop = NULL;
	j->caller.defer_arg = arg;
	j->arg_free = arg_free;
	j->conn_id = caller->conn->id;
	j->fn = fn;
	if ((r = kl_rpc_call_defer(call, &j->caller, &j->call)) < 0) {
		if (arg_free)
			arg_free(arg);
		free(j);
		return r;
	}
	caller->conn->pending++;
	st_backend_submit(s, j);
	return 0;
}

int st_api_defer(kl_rpc_call *call, int (*fn)(kl_rpc_call *call))
{
	return st_api_defer_arg(call, fn, NULL, NULL);
}

/* Sends the backend worker's settled answers on their connections; an
 * answer whose connection has closed meanwhile is dropped. */
static void deliver_answers(kl_station *s)
{
	st_bjob *j = st_backend_take_done(s);

	while (j) {
		st_bjob *next = j->next;
		st_conn *c = NULL;

		for (size_t i = 0; i < s->nconns && !c; i++)
			if (s->conns[i]->id == j->conn_id)
				c = s->conns[i];
		if (c) {
			/* Read again from now: its idle clock restarts too. */
			if (c->pending-- == ST_CONN_MAX_PENDING)
				c->last_rx = time(NULL);
			if (kl_rpc_call_send(j->call, conn_out, c) < 0) {
				kl_log_warn(LOG_MOD, "client %s: answer lost: %s", c->caller.actor,
				            kl_error_detail());
				c->closing = true;
			}
		} else {
			kl_rpc_call_free(j->call);
		}
		if (j->arg_free)
			j->arg_free(j->caller.defer_arg);
		free(j);
		j = next;
	}
}

/* Sends queued events to the subscribers they concern. */
static void dispatch_events(kl_station *s)
{
	st_event_entry *e = st_events_take(s);

	while (e) {
		st_event_entry *next = e->next;

		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];

			if (!c->caller.subscribed || c->closing)
				continue;
			if (c->caller.sub_slot[0] && e->slot[0] &&
			    strcmp(c->caller.sub_slot, e->slot))
				continue;
			conn_queue(c, e->line, e->len);
		}
		free(e);
		e = next;
	}
}

/* PATH.lock beside the socket, kept for as long as the station lives: the
 * one station that holds it owns the path. Two stations that start
 * together both find an old socket dead; without the lock the second would
 * unlink the socket the first had just bound. The file stays (an unlinked
 * lock file could be locked twice). */
int st_socket_claim(kl_station *s)
{
	char path[PATH_MAX + 8];
	int fd, e;

	snprintf(path, sizeof(path), "%s.lock", s->sock_path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "cannot open the socket's lock file %s: %s", path,
		                    strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
		s->sock_lock = fd;
		return 0;
	}
	e = errno;
	close(fd);
	if (e == EWOULDBLOCK)
		return kl_error_set(KL_E_EXISTS,
		                    "a station is already running on %s (another process "
		                    "holds %s)",
		                    s->sock_path, path);
	return kl_error_set(KL_E_IO, "cannot lock %s: %s", path, strerror(e));
}

/* Removes what a station killed outright left at the socket path, after
 * checking it is a socket: anything else there (a file, a directory, a
 * symbolic link) was not made by a station and is never removed. The path
 * is locked. */
static int clear_stale_socket(kl_station *s)
{
	struct stat st;

	if (lstat(s->sock_path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return kl_error_set(KL_E_IO, "station.socket %s: %s", s->sock_path,
		                    strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return kl_error_set(KL_E_EXISTS,
		                    "station.socket %s exists and is not a socket: the station "
		                    "does not replace it (remove it or name another path)",
		                    s->sock_path);
	if (unlink(s->sock_path) < 0 && errno != ENOENT)
		return kl_error_set(KL_E_IO, "cannot remove the old socket %s: %s", s->sock_path,
		                    strerror(errno));
	return 0;
}

static int listen_socket(kl_station *s)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, r;
	mode_t old;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", s->sock_path);
	if (s->sock_lock < 0 && (r = st_socket_claim(s)) < 0)
		return r;
	/* A socket that answers belongs to a running station, even one that
	 * does not take the lock. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		return kl_error_set(KL_E_EXISTS, "a station is already running on %s",
		                    s->sock_path);
	}
	close(fd);
	if ((r = clear_stale_socket(s)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return kl_error_set(KL_E_IO, "socket: %s", strerror(errno));
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		umask(old);
		close(fd);
		return kl_error_set(KL_E_IO, "bind %s: %s", s->sock_path, strerror(e));
	}
	umask(old);
	if (chmod(s->sock_path, s->sock_mode) < 0 ||
	    (s->sock_gid != (gid_t)-1 && chown(s->sock_path, (uid_t)-1, s->sock_gid) < 0) ||
	    listen(fd, 128) < 0) {
		int e = errno;

		close(fd);
		unlink(s->sock_path);
		return kl_error_set(KL_E_IO, "socket %s: %s", s->sock_path, strerror(e));
	}
	s->lfd = fd;
	return 0;
}

static int serve(kl_station *s)
{
	struct pollfd *pfd = NULL;
	size_t pfd_cap = 0;
	int r;

	if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0)
		return kl_error_set(KL_E_IO, "pipe: %s", strerror(errno));
	if ((r = listen_socket(s)) < 0 || (r = st_link_listen(s)) < 0)
		return r;
	if ((r = st_backend_start(s)) < 0)
		return r;
	if ((r = st_workers_start(s)) < 0) {
		st_backend_stop(s);
		return r;
	}
	if ((r = st_signals_unblock()) < 0) {
		st_workers_stop(s);
		st_backend_stop(s);
		return r;
	}
	kl_log_info(LOG_MOD, "station %s serving %zu slot(s) on %s", s->station_id, s->nslots,
	            s->sock_path);
	{
		st_caller sys = { .st = s };

		snprintf(sys.actor, sizeof(sys.actor), "%s", kl_home_actor());
		/* A station does not serve without its audit log: if the start
		 * cannot be recorded it stops again at once (docs/station.md). */
		st_lock_backend(s);
		r = kl_store_audit(s->store, sys.actor, "station.start", "{}");
		st_unlock_backend(s);
		if (r < 0)
			r = kl_error_wrap("the station will not serve without its audit log");
	}

	while (r == 0 && !atomic_load(&s->stopping)) {
		size_t n = 0;
		int64_t now_ms;
		time_t now;

		if (pfd_cap < s->nconns + 3) {
			pfd_cap = s->nconns + 64;
			free(pfd);
			pfd = calloc(pfd_cap, sizeof(*pfd));
			if (!pfd) {
				r = kl_error_set(KL_E_NOMEM, "out of memory");
				break;
			}
		}
		pfd[n++] = (struct pollfd){ .fd = s->wake[0], .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		/* -1 without a listener: poll skips it. */
		pfd[n++] = (struct pollfd){ .fd = st_link_fd(s), .events = POLLIN };
		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];
			short ev = c->closing || c->pending >= ST_CONN_MAX_PENDING ? 0 : POLLIN;

			if (c->out_off < c->out_len)
				ev |= POLLOUT;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = ev };
		}
		if (poll(pfd, n, st_link_poll_ms(s)) < 0 && errno != EINTR) {
			r = kl_error_set(KL_E_IO, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents) {
			char buf[256];

			while (read(s->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		/* Clients first, in the order polled; new ones join next round. */
		now = time(NULL);
		now_ms = st_wall_ms();
		for (size_t i = 0; i < s->nconns; i++) {
			st_conn *c = s->conns[i];
			short re = pfd[i + 3].revents;

			if (re & (POLLIN | POLLHUP | POLLERR))
				conn_read(c);
			/* An upload left unfinished gives its memory back. */
			if (c->caller.batch_deadline_ms && now_ms > c->caller.batch_deadline_ms &&
			    c->caller.batch_drop)
				c->caller.batch_drop(&c->caller, false);
			/* A partial request that stops arriving is a stuck client
			 * (unless we stopped reading it: its slow calls run). */
			if (!c->closing && kl_rpc_conn_buffered(c->rpc) > 0 &&
			    c->pending < ST_CONN_MAX_PENDING &&
			    now - c->last_rx > s->idle_timeout_s) {
				char *slow;
				size_t len = refusal_line(KL_RPC_E_INVALID,
				                          "request incomplete: no complete line "
				                          "within station.idle_timeout_s",
				                          "timeout", &slow);

				if (len > 0)
					conn_queue(c, slow, len);
				free(slow);
				c->closing = true;
			}
			if (conn_idle(s, c, now))
				conn_reap_idle(c);
		}
		deliver_answers(s);
		dispatch_events(s);
		if (pfd[1].revents & POLLIN)
			for (int k = 0; k < 64; k++) {
				size_t before = s->nconns;

				accept_one(s);
				if (s->nconns == before)
					break;
			}
		if (pfd[2].revents & POLLIN)
			st_link_accept(s);
		st_link_usb_events(s); /* takes what the USB watch saw, never waits */
		for (size_t i = 0; i < s->nconns;) {
			st_conn *c = s->conns[i];

			conn_flush(c);
			if (c->closing && c->out_off >= c->out_len) {
				conn_free(c);
				s->conns[i] = s->conns[--s->nconns];
				continue;
			}
			i++;
		}
	}
	free(pfd);
	if (st_signal_caught())
		kl_log_info(LOG_MOD, "SIG%s received", sigabbrev_np(st_signal_caught()));
	kl_log_info(LOG_MOD, "station stopping: interrupting running jobs at their next step");
	atomic_store(&s->stopping, true);
	st_link_stop(s);
	st_workers_stop(s);
	st_backend_stop(s);
	deliver_answers(s);
	dispatch_events(s);
	for (size_t i = 0; i < s->nconns; i++) {
		conn_flush(s->conns[i]);
		conn_free(s->conns[i]);
	}
	s->nconns = 0;
	close(s->lfd);
	s->lfd = -1;
	unlink(s->sock_path);
	/* The station stops whether or not the entry is written. */
	st_lock_backend(s);
	kl_store_audit_noted(s->store, kl_home_actor(), "station.stop", "{}");
	st_unlock_backend(s);
	return r < 0 ? r : 0;
}

int kl_station_run(kl_station *s)
{
	st_signals saved;
	int r;

	if (s->offline)
		return kl_error_set(KL_E_INVALID, "an offline station cannot run");
	if ((r = st_signals_take(s, &saved)) < 0)
		return r;
	r = serve(s);
	st_signals_restore(&saved);
	return r;
}

struct call_out {
	char *line;
};

static int call_out(void *ctx, const char *line, size_t len)
{
	struct call_out *o = ctx;

	free(o->line);
	o->line = strndup(line, len);
	return o->line ? 0 : -KL_E_NOMEM;
}

int kl_station_call(kl_station *s, unsigned roles, const char *actor, const char *request,
                    char **answer)
{
	st_caller caller = { .st = s, .roles = roles };
	struct call_out out = { 0 };
	kl_rpc_conn *c = NULL;
	int r;

	snprintf(caller.actor, sizeof(caller.actor), "%s", actor);
	if ((r = kl_rpc_conn_new(&s->rpc, roles, &caller, &c)) < 0)
		return r;
	r = kl_rpc_feed(c, request, strlen(request), call_out, &out);
	if (r == 0 && !strchr(request, '\n'))
		r = kl_rpc_feed(c, "\n", 1, call_out, &out);
	kl_rpc_conn_free(c);
	if (r == 0 && !out.line)
		r = kl_error_set(KL_E_INVALID, "no answer");
	if (r < 0) {
		free(out.line);
		return r;
	}
	*answer = out.line;
	return 0;
}

void st_server_free(kl_station *s)
{
	for (size_t i = 0; i < s->nconns; i++)
		conn_free(s->conns[i]);
	free(s->conns);
	s->conns = NULL;
	s->nconns = s->conns_cap = 0;
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->sock_path);
		s->lfd = -1;
	}
	/* After the socket is gone: the next station may take the path. */
	if (s->sock_lock >= 0) {
		close(s->sock_lock);
		s->sock_lock = -1;
	}
	for (int i = 0; i < 2; i++)
		if (s->wake[i] >= 0) {
			close(s->wake[i]);
			s->wake[i] = -1;
		}
}
