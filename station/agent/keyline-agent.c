/* keyline-agent: the small program in a DUT's factory image (docs/link.md).
 *
 * It opens the DUT's own TPM through a TCTI, connects to the station's link
 * listener over TCP or presents itself to it as a USB gadget function
 * (FunctionFS, --usb-ffs; agent_ffs.h), says HELLO (protocol versions, serial, model, firmware,
 * agent version), relays each TPM_COMMAND to its TPM and the answer back as TPM_RESPONSE, and ends
 * with the station's VERDICT, which it prints and turns into its exit status: 0 PASS, 1 FAIL (the
 * station refused), 2 usage, 3 link or TPM error.
 *
 * Dependencies: libc and the tpm2-tss TCTI loader, plus the link codec
 * (station/link/link_frame.c, compiled in). The agent trusts nothing it is
 * sent beyond the codec's checks: the proofs are the TPM's, end to end. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tctildr.h>

#include "agent_ffs.h"
#include "link_frame.h"

#ifndef KL_AGENT_VERSION
#define KL_AGENT_VERSION "0.1.0"
#endif

enum { EXIT_PASS = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_LINK = 3 };

/* What the run ended with: EXIT_LINK may be retried, the others end. */
typedef enum { RUN_PASS, RUN_FAIL, RUN_LOST, RUN_ERROR } run_end;

static const char usage[] =
    "usage: keyline-agent (--station HOST:PORT | --usb-ffs DIR)\n"
    "                     (--serial S | --serial-file F | --serial-cmd CMD)\n"
    "                     [--tcti CONF] [--model M] [--firmware F] [--timeout-s N] [--retry N]\n"
    "\n"
    "Connects this device's TPM to a Keyline station for factory provisioning: says hello\n"
    "with the device serial, relays the station's TPM commands to the TPM, and prints the\n"
    "verdict.\n"
    "\n"
    "options:\n"
    "  --station HOST:PORT  the station's link listener ([IPV6]:PORT for IPv6)\n"
    "  --usb-ffs DIR        instead, the link over USB: DIR is this gadget's mounted\n"
    "                       FunctionFS (e.g. /dev/usb-ffs/keyline); the agent writes the\n"
    "                       descriptors to DIR/ep0 and waits up to --timeout-s for the host\n"
    "                       to enable the function (bind the UDC after starting it)\n"
    "  --tcti CONF          the TPM (default device:/dev/tpmrm0; swtpm:host=H,port=P for a\n"
    "                       simulator)\n"
    "  --serial S           the hardware serial (1..64 of A-Z a-z 0-9 . _ -)\n"
    "  --serial-file F      read it from the first line of F (e.g. /sys/.../serial)\n"
    "  --serial-cmd CMD     read it from the first line CMD prints (run by /bin/sh)\n"
    "  --model M, --firmware F  what the hello says about the device\n"
    "  --timeout-s N        how long the station may stay silent (1..3600, default 120)\n"
    "  --retry N            reconnect up to N times when the link is lost (0..100, default 0);\n"
    "                       over USB: wait for the host to enable the function again\n"
    "  --die-after N        TEST ONLY: exit abruptly (status 3) after relaying N TPM commands,\n"
    "                       as a DUT that loses power or its cable\n"
    "  --help               this text\n"
    "\n"
    "output: one line on stdout, 'PASS serial=S fingerprint=SHA256' or\n"
    "        'FAIL serial=S reason=R: MESSAGE'\n"
    "exit status: 0 PASS, 1 FAIL (refused by the station), 2 usage error, 3 link or TPM error\n";

struct agent;

/* The link's transport: TCP (--station) or FunctionFS (--usb-ffs). The
 * hello, relay and verdict code above it is one. Every call is bounded by
 * the agent's timeout. */
struct transport {
	/* Connects, or presents the function and waits for the host: 0, -1. */
	int (*open)(struct agent *a);
	/* Sends one whole frame (one buffer): 0, or -1 with *why. */
	int (*send)(struct agent *a, const uint8_t *p, size_t n, const char **why);
	/* Receives what the station sent, up to cap bytes: > 0; 0 the peer
	 * closed; -1 with *why ("link_timeout": silence; else lost). */
	ssize_t (*recv)(struct agent *a, uint8_t *buf, size_t cap, const char **why);
	/* Ends this session's link (a retry opens it again). */
	void (*close)(struct agent *a);
};

struct agent {
	const char *station, *usb_ffs, *peer, *tcti_conf, *model, *firmware;
	const struct transport *link;
	kl_ffs ffs;
	bool ffs_open;
	char serial[KL_LINK_SERIAL_MAX + 2];
	int timeout_ms, retries;
	long die_after;
	long relayed;
	TSS2_TCTI_CONTEXT *tcti;
	int fd;
	kl_link_decoder dec;
	uint8_t rbuf[4096];
	size_t rlen, roff;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("keyline-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Waits for events on fd until deadline: 0 ready, -1 timed out or failed. */
static int wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		double left = deadline - now_ms();
		int n;

		if (left <= 0)
			return -1;
		n = poll(&p, 1, (int)left + 1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static int connect_station(struct agent *a)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char host[256];
	const char *port;
	double deadline = now_ms() + a->timeout_ms;
	int fd = -1, g, one = 1;

	if (a->station[0] == '[') {
		const char *close = strchr(a->station, ']');

		if (!close || close[1] != ':' || (size_t)(close - a->station) >= sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(close - a->station - 1), a->station + 1);
		port = close + 2;
	} else {
		const char *colon = strrchr(a->station, ':');

		if (!colon || (size_t)(colon - a->station) >= sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - a->station), a->station);
		port = colon + 1;
	}
	if ((g = getaddrinfo(host, port, &hints, &ai)) != 0) {
		say("station %s: %s", a->station, gai_strerror(g));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		int err = errno;
		socklen_t len = sizeof(err);

		if (err != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			say("connect to %s: %s", a->station, err ? strerror(err) : "timed out");
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	a->fd = fd;
	return fd >= 0 ? 0 : -1;
}

static int tcp_send(struct agent *a, const uint8_t *p, size_t n, const char **why)
{
	double deadline = now_ms() + a->timeout_ms;

	while (n > 0) {
		ssize_t k = send(a->fd, p, n, MSG_NOSIGNAL);

		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno != EAGAIN && errno != EINTR) {
			*why = strerror(errno);
			return -1;
		}
		if (wait_fd(a->fd, POLLOUT, deadline) < 0) {
			*why = "timed out";
			return -1;
		}
	}
	return 0;
}

static ssize_t tcp_recv(struct agent *a, uint8_t *buf, size_t cap, const char **why)
{
	double deadline = now_ms() + a->timeout_ms;

	for (;;) {
		ssize_t n = recv(a->fd, buf, cap, 0);

		if (n >= 0)
			return n;
		if (errno != EAGAIN && errno != EINTR) {
			*why = "link_lost";
			return -1;
		}
		if (wait_fd(a->fd, POLLIN, deadline) < 0) {
			*why = "link_timeout";
			return -1;
		}
	}
}

static void tcp_close(struct agent *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
}

static const struct transport tcp_link = { connect_station, tcp_send, tcp_recv, tcp_close };

/* FunctionFS. Its endpoint files cannot be polled (only ep0 can), and a
 * read of ep1 or a write of ep2 blocks until the host moves data. The
 * agent bounds them with two small threads that do the blocking calls
 * and hand the data over socketpairs it can poll along with ep0
 * (agent_ffs.c, kl_ffs_pump_start). Chosen over Linux AIO (io_submit on
 * the endpoints with an eventfd, as the kernel's ffs-aio-example): the
 * threads need nothing but libc, and they behave the same on FunctionFS
 * and on the FIFOs the tests put in its place, so what the tests run is
 * the code a DUT runs; AIO on a FIFO does not complete asynchronously. A
 * thread left blocked by a deadline is interrupted (SIGUSR1) and joined
 * when the link closes. */
static int ffs_open(struct agent *a)
{
	char why[600];
	int r;

	if (!a->ffs_open) {
		if (kl_ffs_open(a->usb_ffs, &a->ffs, why, sizeof(why)) < 0) {
			say("FunctionFS: %s", why);
			return -1;
		}
		a->ffs_open = true;
	}
	r = kl_ffs_wait_enable(&a->ffs, a->timeout_ms);
	if (r <= 0) {
		say("the USB host did not enable the function on %s within %d s%s%s", a->usb_ffs,
		    a->timeout_ms / 1000, r < 0 ? ": " : " [link_timeout]",
		    r < 0 ? strerror(errno) : "");
		return -1;
	}
	if (kl_ffs_pump_start(&a->ffs) < 0) {
		say("FunctionFS: the endpoint threads do not start: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int ffs_send(struct agent *a, const uint8_t *p, size_t n, const char **why)
{
	const char *event = NULL;

	if (kl_ffs_send(&a->ffs, p, n, a->timeout_ms, why, &event) == 0)
		return 0;
	if (event)
		*why = event;
	return -1;
}

static ssize_t ffs_recv(struct agent *a, uint8_t *buf, size_t cap, const char **why)
{
	const char *event = NULL;
	ssize_t n = kl_ffs_recv(&a->ffs, buf, cap, a->timeout_ms, why, &event);

	if (n < 0 && event)
		say("FunctionFS: %s", event);
	return n;
}

static void ffs_close(struct agent *a)
{
	kl_ffs_pump_stop(&a->ffs);
}

static const struct transport ffs_link = { ffs_open, ffs_send, ffs_recv, ffs_close };

static int send_frame(struct agent *a, kl_link_type type, const void *p, size_t n)
{
	/* One buffer, one send: one segment per frame. */
	uint8_t frame[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];
	const char *why = "";

	if (n > KL_LINK_PAYLOAD_MAX)
		return -1;
	kl_link_header_encode(frame, type, (uint32_t)n);
	if (n)
		memcpy(frame + KL_LINK_HEADER_SIZE, p, n);
	if (a->link->send(a, frame, KL_LINK_HEADER_SIZE + n, &why) < 0) {
		say("the link to %s was lost sending %s [link_lost]: %s", a->peer,
		    kl_link_type_name(type), why);
		return -1;
	}
	return 0;
}

/* Sends ERROR reason=, message= (best effort) before the agent leaves. */
static void send_error(struct agent *a, const char *reason, const char *message)
{
	char out[1024];
	size_t len = 0;
	kl_link_err e;

	if (kl_link_text_add(out, sizeof(out), &len, "reason", reason, &e) == 0 &&
	    kl_link_text_add(out, sizeof(out), &len, "message", message, &e) == 0)
		(void)send_frame(a, KL_LINK_ERROR, out, len);
}

/* One whole frame from the station within the timeout. -1: lost (or
 * silent: *why says), -2: the station sent garbage (told with ERROR). */
static int recv_frame(struct agent *a, const char **why)
{
	for (;;) {
		kl_link_err e = { 0 };
		ssize_t n;

		if (a->roff < a->rlen) {
			size_t used = 0;
			int r = kl_link_decoder_feed(&a->dec, a->rbuf + a->roff, a->rlen - a->roff,
			                             &used, &e);

			a->roff += used;
			if (r < 0) {
				say("the station sent a bad frame [%s]: %s", e.reason, e.message);
				send_error(a, e.reason, e.message);
				*why = e.reason;
				return -2;
			}
			if (r == KL_LINK_FRAME)
				return 0;
			continue;
		}
		n = a->link->recv(a, a->rbuf, sizeof(a->rbuf), why);
		if (n > 0) {
			a->rlen = (size_t)n;
			a->roff = 0;
			continue;
		}
		if (n < 0 && strcmp(*why, "link_timeout") == 0) {
			say("the station %s said nothing for %d s [link_timeout]", a->peer,
			    a->timeout_ms / 1000);
			return -1;
		}
		(void)kl_link_decoder_eof(&a->dec, &e);
		say("the link to %s was lost [%s]: %s", a->peer, e.reason, e.message);
		*why = e.reason;
		return -1;
	}
}

static int send_hello(struct agent *a)
{
	char out[2048], v[16];
	size_t len = 0;
	kl_link_err e;

	snprintf(v, sizeof(v), "%d", KL_LINK_PROTO_MIN);
	if (kl_link_text_add(out, sizeof(out), &len, "proto_min", v, &e) < 0)
		goto bad;
	snprintf(v, sizeof(v), "%d", KL_LINK_PROTO_MAX);
	if (kl_link_text_add(out, sizeof(out), &len, "proto_max", v, &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "serial", a->serial, &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "model", a->model, &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "firmware", a->firmware, &e) < 0 ||
	    kl_link_text_add(out, sizeof(out), &len, "agent", KL_AGENT_VERSION, &e) < 0)
		goto bad;
	return send_frame(a, KL_LINK_HELLO, out, len);
bad:
	say("HELLO: %s", e.message);
	return -2;
}

/* Relays one TPM command to the TPM and its answer back. -1 link lost,
 * -2 the TPM failed (the station is told). */
static int relay(struct agent *a)
{
	uint8_t rsp[KL_LINK_TPM_MAX];
	size_t size = sizeof(rsp);
	kl_link_err e;
	char msg[300];
	TSS2_RC rc;

	rc = Tss2_Tcti_Transmit(a->tcti, a->dec.len, a->dec.payload);
	if (rc == TSS2_RC_SUCCESS)
		rc = Tss2_Tcti_Receive(a->tcti, &size, rsp, TSS2_TCTI_TIMEOUT_BLOCK);
	if (rc == TSS2_RC_SUCCESS && kl_link_tpm_check(KL_LINK_TPM_RESPONSE, rsp, size, &e) < 0) {
		snprintf(msg, sizeof(msg), "the TPM answered something that is not a response: %s",
		         e.message);
		goto tpm_failed;
	}
	if (rc != TSS2_RC_SUCCESS) {
		snprintf(msg, sizeof(msg), "the TPM (%s) failed: TCTI rc 0x%08x", a->tcti_conf,
		         (unsigned)rc);
		goto tpm_failed;
	}
	if (send_frame(a, KL_LINK_TPM_RESPONSE, rsp, size) < 0)
		return -1;
	if (++a->relayed == a->die_after) {
		say("--die-after %ld: exiting abruptly (test only)", a->die_after);
		_exit(EXIT_LINK);
	}
	return 0;
tpm_failed:
	say("%s", msg);
	send_error(a, "tpm_error", msg);
	return -2;
}

static run_end on_verdict(struct agent *a)
{
	static kl_link_text t;
	kl_link_err e;
	const char *result, *serial, *fp, *reason, *message;

	if (kl_link_text_parse(a->dec.payload, a->dec.len, &t, &e) < 0) {
		say("the station's VERDICT is bad: %s", e.message);
		return RUN_ERROR;
	}
	result = kl_link_text_get(&t, "result");
	serial = kl_link_text_get(&t, "serial");
	fp = kl_link_text_get(&t, "fingerprint");
	reason = kl_link_text_get(&t, "reason");
	message = kl_link_text_get(&t, "message");
	if (result && strcmp(result, "PASS") == 0) {
		printf("PASS serial=%s fingerprint=%s\n", serial ? serial : a->serial,
		       fp ? fp : "");
		return RUN_PASS;
	}
	if (result && strcmp(result, "FAIL") == 0) {
		printf("FAIL serial=%s reason=%s: %s\n", serial ? serial : a->serial,
		       reason && kl_link_reason_valid(reason) ? reason : "failed",
		       message ? message : "");
		return RUN_FAIL;
	}
	say("the station's VERDICT has no result PASS or FAIL");
	return RUN_ERROR;
}

static run_end on_error(struct agent *a)
{
	static kl_link_text t;
	kl_link_err e;
	const char *reason = NULL, *message = NULL;

	if (kl_link_text_parse(a->dec.payload, a->dec.len, &t, &e) == 0) {
		reason = kl_link_text_get(&t, "reason");
		message = kl_link_text_get(&t, "message");
	}
	reason = reason && kl_link_reason_valid(reason) ? reason : "refused";
	/* The station's own link trouble (it saw garbage or silence) is a link
	 * error, which --retry may overcome; a refusal of this device is a FAIL. */
	if (strncmp(reason, "link_", 5) == 0) {
		say("the station ended the link [%s]: %s", reason, message ? message : "");
		return RUN_LOST;
	}
	printf("FAIL serial=%s reason=%s: %s\n", a->serial, reason, message ? message : "");
	return RUN_FAIL;
}

/* One session: connect, hello, relay until the verdict. */
static run_end session(struct agent *a)
{
	const char *why = NULL;
	bool welcomed = false;
	run_end end;
	int r;

	a->rlen = a->roff = 0;
	kl_link_decoder_init(&a->dec);
	if (a->link->open(a) < 0)
		return RUN_LOST;
	if ((r = send_hello(a)) < 0) {
		end = r == -2 ? RUN_ERROR : RUN_LOST;
		goto out;
	}
	for (;;) {
		if ((r = recv_frame(a, &why)) < 0) {
			end = r == -2 ? RUN_ERROR : RUN_LOST;
			break;
		}
		if (!welcomed && a->dec.type != KL_LINK_WELCOME && a->dec.type != KL_LINK_ERROR) {
			say("the station sent %s before WELCOME", kl_link_type_name(a->dec.type));
			send_error(a, "link_garbage", "expected WELCOME");
			end = RUN_ERROR;
			break;
		}
		if (a->dec.type == KL_LINK_WELCOME) {
			welcomed = true;
			continue;
		}
		if (a->dec.type == KL_LINK_TPM_COMMAND) {
			if ((r = relay(a)) < 0) {
				end = r == -2 ? RUN_ERROR : RUN_LOST;
				break;
			}
			continue;
		}
		if (a->dec.type == KL_LINK_PING) {
			if (send_frame(a, KL_LINK_PONG, a->dec.payload, a->dec.len) < 0) {
				end = RUN_LOST;
				break;
			}
			continue;
		}
		if (a->dec.type == KL_LINK_PONG)
			continue;
		if (a->dec.type == KL_LINK_VERDICT) {
			end = on_verdict(a);
			break;
		}
		if (a->dec.type == KL_LINK_ERROR) {
			end = on_error(a);
			break;
		}
		say("the station sent %s, which an agent does not take",
		    kl_link_type_name(a->dec.type));
		send_error(a, "link_garbage", "unexpected frame type");
		end = RUN_ERROR;
		break;
	}
out:
	a->link->close(a);
	return end;
}

/* The first line of a file or a command's output, trimmed. */
static int read_line(FILE *f, char *out, size_t size)
{
	size_t n;

	if (!fgets(out, (int)size, f))
		return -1;
	n = strcspn(out, "\r\n");
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
		out[--n] = '\0';
	return 0;
}

static int number(const char *s, long min, long max, long *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*ret = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "station", required_argument, NULL, 'S' },
		{ "usb-ffs", required_argument, NULL, 'U' },
		{ "tcti", required_argument, NULL, 't' },
		{ "serial", required_argument, NULL, 's' },
		{ "serial-file", required_argument, NULL, 'f' },
		{ "serial-cmd", required_argument, NULL, 'c' },
		{ "model", required_argument, NULL, 'm' },
		{ "firmware", required_argument, NULL, 'w' },
		{ "timeout-s", required_argument, NULL, 'T' },
		{ "retry", required_argument, NULL, 'r' },
		{ "die-after", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a = { .tcti_conf = "device:/dev/tpmrm0",
		           .model = "",
		           .firmware = "",
		           .timeout_ms = 120000,
		           .fd = -1 };
	const char *serial = NULL, *serial_file = NULL, *serial_cmd = NULL;
	long v;
	int c, sources = 0;
	run_end end = RUN_LOST;
	TSS2_RC rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			a.station = optarg;
			break;
		case 'U':
			a.usb_ffs = optarg;
			break;
		case 't':
			a.tcti_conf = optarg;
			break;
		case 's':
			serial = optarg;
			sources++;
			break;
		case 'f':
			serial_file = optarg;
			sources++;
			break;
		case 'c':
			serial_cmd = optarg;
			sources++;
			break;
		case 'm':
			a.model = optarg;
			break;
		case 'w':
			a.firmware = optarg;
			break;
		case 'T':
			if (number(optarg, 1, 3600, &v) < 0) {
				say("--timeout-s '%s' is not 1..3600 seconds", optarg);
				return EXIT_USAGE;
			}
			a.timeout_ms = (int)v * 1000;
			break;
		case 'r':
			if (number(optarg, 0, 100, &v) < 0) {
				say("--retry '%s' is not 0..100", optarg);
				return EXIT_USAGE;
			}
			a.retries = (int)v;
			break;
		case 'D':
			if (number(optarg, 1, 1000000, &a.die_after) < 0) {
				say("--die-after '%s' is not a count of TPM commands", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			fputs(usage, stdout);
			return EXIT_PASS;
		default:
			fputs(usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (!a.station == !a.usb_ffs || sources != 1 || optind < argc) {
		say("%s (see --help)", optind < argc ? "unexpected argument"
		                       : !a.station == !a.usb_ffs
		                           ? "give one of --station, --usb-ffs"
		                           : "give one of --serial, --serial-file, --serial-cmd");
		return EXIT_USAGE;
	}
	if (a.usb_ffs) {
		a.link = &ffs_link;
		a.peer = a.usb_ffs;
	} else {
		a.link = &tcp_link;
		a.peer = a.station;
	}
	if (a.station) {
		const char *colon = strrchr(a.station, ':');

		if (!colon || colon == a.station || !colon[1] ||
		    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
		    (a.station[0] == '[' && colon[-1] != ']')) {
			say("--station '%s' is not HOST:PORT or [IPV6]:PORT", a.station);
			return EXIT_USAGE;
		}
	}
	if (serial) {
		snprintf(a.serial, sizeof(a.serial), "%s", serial);
	} else {
		FILE *f = serial_file ? fopen(serial_file, "r") : popen(serial_cmd, "r");
		int r;

		if (!f) {
			say("%s: %s", serial_file ? serial_file : serial_cmd, strerror(errno));
			return EXIT_USAGE;
		}
		r = read_line(f, a.serial, sizeof(a.serial));
		if (serial_file ? fclose(f) != 0 : pclose(f) != 0)
			r = -1;
		if (r < 0) {
			say("%s gave no serial", serial_file ? serial_file : serial_cmd);
			return EXIT_USAGE;
		}
	}
	if (!kl_link_serial_valid(a.serial)) {
		say("the serial is not 1..%d of A-Z a-z 0-9 . _ - [serial_invalid]",
		    KL_LINK_SERIAL_MAX);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!getenv("TSS2_LOG"))
		setenv("TSS2_LOG", "all+none", 0);
	rc = Tss2_TctiLdr_Initialize(a.tcti_conf, &a.tcti);
	if (rc != TSS2_RC_SUCCESS) {
		say("the TPM's TCTI \"%s\" does not open: rc 0x%08x", a.tcti_conf, (unsigned)rc);
		return EXIT_LINK;
	}
	for (int attempt = 0; attempt <= a.retries; attempt++) {
		if (attempt > 0) {
			say("the link was lost; reconnecting (%d of %d)", attempt, a.retries);
			sleep(1);
		}
		end = session(&a);
		if (end != RUN_LOST)
			break;
	}
	if (a.ffs_open)
		kl_ffs_close(&a.ffs);
	Tss2_TctiLdr_Finalize(&a.tcti);
	switch (end) {
	case RUN_PASS:
		return EXIT_PASS;
	case RUN_FAIL:
		return EXIT_REFUSED;
	default:
		return EXIT_LINK;
	}
}
