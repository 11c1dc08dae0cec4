/* keyline-agent over USB FunctionFS (--usb-ffs DIR), without a UDC.
 *
 * What is real: the keyline-agent binary and its whole FunctionFS path
 * (agent_ffs.c: the descriptor and string blobs written to ep0, the bounded
 * wait for FUNCTIONFS_ENABLE, the reader and writer threads on ep1/ep2 and
 * the poll on their sockets and ep0, ep0's DISABLE/UNBIND/SUSPEND as a lost
 * link), the link codec on both sides, and a floor swtpm DUT behind the
 * agent's TCTI that answers the relayed TPM commands.
 *
 * What is emulated: this kernel has no USB device controller, so there is
 * no FunctionFS mount. DIR holds three FIFOs in place of the endpoint
 * files: ep0 (the test reads the descriptors and strings the agent writes,
 * then writes struct usb_functionfs_event records into it as the kernel
 * would), ep1 (the test writes the station's frames: bulk OUT) and ep2
 * (the test reads the agent's frames: bulk IN). The test plays the station
 * and the host's USB stack. Not emulated: packet sizes, zero-length
 * packets, the kernel's ESHUTDOWN on the endpoints after DISABLE (here ep0's
 * event alone ends the link), SETUP requests. The agent's wait mechanism
 * (blocking threads handing over socketpairs) is the same on FIFOs and on
 * FunctionFS, so no fallback is involved: the code under test is the code
 * a DUT runs. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/usb/functionfs.h>

#include "agent_ffs.h"
#include "floor.h"
#include "kl_error.h"
#include "link_frame.h"

#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

static struct {
	kl_floor *floor;
	kl_vendor *ibm;
	kl_dut **dut;
} g;

static int setup(void **state)
{
	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "IBM TPM", &g.ibm) < 0 ||
	    kl_floor_manufacture(g.floor, g.ibm, "affs", 1, &g.dut) < 0 ||
	    kl_dut_start(g.floor, g.dut[0]) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kl_floor_free(g.floor);
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One agent on a stand-in FunctionFS directory; the test's ends. */
struct gadget {
	char dir[256], out[300], err[300];
	pid_t pid;
	int ep0, ep1, ep2; /* ep1: the test writes; ep2: the test reads */
	kl_link_decoder dec;
	uint8_t buf[4096];
	size_t len, off;
};

/* Reads exactly n bytes from fd within ms; false when it could not. */
static bool read_exact(int fd, uint8_t *p, size_t n, int ms)
{
	double deadline = now_ms() + ms;

	while (n > 0) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&pf, 1, (int)(deadline - now_ms()) + 1) <= 0 || now_ms() > deadline)
			return false;
		k = read(fd, p, n);
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static void spawn(struct gadget *gd, const char *serial, const char *const *extra)
{
	const char *argv[24];
	size_t n = 0;
	const char *eps[] = { "ep0", "ep1", "ep2" };

	memset(gd, 0, sizeof(*gd));
	snprintf(gd->dir, sizeof(gd->dir), "%s/ffs-XXXXXX", kl_floor_dir(g.floor));
	assert_non_null(mkdtemp(gd->dir));
	for (int i = 0; i < 3; i++) {
		char path[300];

		snprintf(path, sizeof(path), "%s/%s", gd->dir, eps[i]);
		assert_int_equal(mkfifo(path, 0600), 0);
	}
	snprintf(gd->out, sizeof(gd->out), "%s/out", gd->dir);
	snprintf(gd->err, sizeof(gd->err), "%s/err", gd->dir);
	argv[n++] = KEYLINE_AGENT_BIN;
	argv[n++] = "--usb-ffs";
	argv[n++] = gd->dir;
	argv[n++] = "--tcti";
	argv[n++] = g.dut[0]->tcti;
	argv[n++] = "--serial";
	argv[n++] = serial;
	argv[n++] = "--model";
	argv[n++] = "WS-2";
	for (size_t i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	gd->pid = fork();
	assert_true(gd->pid >= 0);
	if (gd->pid == 0) {
		int o = open(gd->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(gd->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (o < 0 || e < 0 || dup2(o, STDOUT_FILENO) < 0 || dup2(e, STDERR_FILENO) < 0)
			_exit(127);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	kl_link_decoder_init(&gd->dec);
}

/* The host's side of "mount, then the agent writes ep0": reads the
 * descriptors and strings from ep0 and checks them against agent_ffs's
 * blobs byte for byte; then opens ep1 and ep2 as the kernel would
 * create them. */
static void attach(struct gadget *gd)
{
	uint8_t want[2 * KL_FFS_BLOB_MAX], got[2 * KL_FFS_BLOB_MAX];
	size_t nd = kl_ffs_descriptors(want, KL_FFS_BLOB_MAX);
	size_t ns = kl_ffs_strings(want + nd, KL_FFS_BLOB_MAX, "Keyline DUT link");
	char path[300];
	double deadline = now_ms() + 10000;

	assert_true(nd > 0 && ns > 0);
	snprintf(path, sizeof(path), "%s/ep0", gd->dir);
	gd->ep0 = open(path, O_RDWR | O_CLOEXEC);
	assert_true(gd->ep0 >= 0);
	assert_true(read_exact(gd->ep0, got, nd + ns, 10000));
	assert_memory_equal(got, want, nd + ns);
	snprintf(path, sizeof(path), "%s/ep1", gd->dir);
	/* ENXIO until the agent has it open for reading. */
	while ((gd->ep1 = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		assert_int_equal(errno, ENXIO);
		assert_true(now_ms() < deadline);
		usleep(2000);
	}
	assert_int_equal(fcntl(gd->ep1, F_SETFL, 0), 0);
	snprintf(path, sizeof(path), "%s/ep2", gd->dir);
	gd->ep2 = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(gd->ep2 >= 0);
}

static void event(struct gadget *gd, int type)
{
	struct usb_functionfs_event ev = { .type = (uint8_t)type };

	assert_int_equal(sizeof(ev), 12);
	assert_int_equal(write(gd->ep0, &ev, sizeof(ev)), (ssize_t)sizeof(ev));
}

static void send_frame(struct gadget *gd, kl_link_type type, const void *p, size_t n)
{
	uint8_t frame[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];

	kl_link_header_encode(frame, type, (uint32_t)n);
	memcpy(frame + KL_LINK_HEADER_SIZE, p, n);
	assert_int_equal(write(gd->ep1, frame, KL_LINK_HEADER_SIZE + n),
	                 (ssize_t)(KL_LINK_HEADER_SIZE + n));
}

static void send_text(struct gadget *gd, kl_link_type type, const char *const *kv)
{
	char out[2048];
	size_t len = 0;
	kl_link_err e;

	for (size_t i = 0; kv[i]; i += 2)
		assert_int_equal(kl_link_text_add(out, sizeof(out), &len, kv[i], kv[i + 1], &e), 0);
	send_frame(gd, type, out, len);
}

/* One frame from the agent on ep2 within ms: 0, or -1 when none came. */
static int recv_frame(struct gadget *gd, int ms)
{
	double deadline = now_ms() + ms;

	for (;;) {
		kl_link_err e = { 0 };

		if (gd->off < gd->len) {
			size_t used = 0;
			int r = kl_link_decoder_feed(&gd->dec, gd->buf + gd->off, gd->len - gd->off,
			                             &used, &e);

			gd->off += used;
			assert_true(r >= 0);
			if (r == KL_LINK_FRAME)
				return 0;
			continue;
		}
		{
			struct pollfd pf = { .fd = gd->ep2, .events = POLLIN };
			ssize_t k;

			if (poll(&pf, 1, (int)(deadline - now_ms()) + 1) <= 0 ||
			    now_ms() > deadline)
				return -1;
			k = read(gd->ep2, gd->buf, sizeof(gd->buf));
			if (k <= 0)
				return -1;
			gd->len = (size_t)k;
			gd->off = 0;
		}
	}
}

static void expect_hello(struct gadget *gd, const char *serial)
{
	static kl_link_text t;
	kl_link_err e;

	assert_int_equal(recv_frame(gd, 10000), 0);
	assert_int_equal(gd->dec.type, KL_LINK_HELLO);
	assert_int_equal(kl_link_text_parse(gd->dec.payload, gd->dec.len, &t, &e), 0);
	assert_string_equal(kl_link_text_get(&t, "serial"), serial);
	assert_string_equal(kl_link_text_get(&t, "model"), "WS-2");
}

static void welcome(struct gadget *gd)
{
	send_text(gd, KL_LINK_WELCOME, (const char *const[]){ "proto", "1", "station", "t", NULL });
}

/* TPM2_GetCapability(TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1) through the
 * agent: the floor's swtpm says "IBM". */
static void relay_manufacturer(struct gadget *gd)
{
	static const uint8_t cmd[] = { 0x80, 0x01, 0, 0, 0, 22, 0,    0, 0x01, 0x7a, 0,
		                       0,    0,    6, 0, 0, 1,  0x05, 0, 0,    0,    1 };
	const uint8_t *r;

	send_frame(gd, KL_LINK_TPM_COMMAND, cmd, sizeof(cmd));
	assert_int_equal(recv_frame(gd, 10000), 0);
	assert_int_equal(gd->dec.type, KL_LINK_TPM_RESPONSE);
	assert_true(gd->dec.len >= 27);
	r = gd->dec.payload;
	assert_int_equal(r[6] | r[7] | r[8] | r[9], 0); /* TPM_RC_SUCCESS */
	/* tag, size, rc, moreData, capability, count, property, then the value */
	assert_memory_equal(r + 23, "IBM", 3);
}

/* The agent's exit status within ms (-1: still running, then killed). */
static int wait_exit(struct gadget *gd, int ms)
{
	double deadline = now_ms() + ms;
	int status;

	for (;;) {
		pid_t p = waitpid(gd->pid, &status, WNOHANG);

		if (p == gd->pid) {
			gd->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		if (now_ms() > deadline) {
			kill(gd->pid, SIGKILL);
			waitpid(gd->pid, NULL, 0);
			gd->pid = 0;
			return -1;
		}
		usleep(5000);
	}
}

static void slurp(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

static void done(struct gadget *gd)
{
	if (gd->pid > 0)
		(void)wait_exit(gd, 0);
	close(gd->ep0);
	close(gd->ep1);
	close(gd->ep2);
}

/* A whole session: descriptors on ep0, ENABLE (after BIND, which is
 * passed over), HELLO on ep2, a relayed command, PASS, exit 0. */
static void test_pass(void **state)
{
	struct gadget gd;
	char out[512];

	(void)state;
	spawn(&gd, "FFS-1", (const char *const[]){ "--timeout-s", "20", NULL });
	attach(&gd);
	event(&gd, FUNCTIONFS_BIND);
	event(&gd, FUNCTIONFS_ENABLE);
	expect_hello(&gd, "FFS-1");
	welcome(&gd);
	relay_manufacturer(&gd);
	relay_manufacturer(&gd);
	send_text(&gd, KL_LINK_VERDICT,
	          (const char *const[]){ "result", "PASS", "serial", "FFS-1", "fingerprint", "00ff",
	                                 NULL });
	assert_int_equal(wait_exit(&gd, 10000), 0);
	slurp(gd.out, out, sizeof(out));
	assert_string_equal(out, "PASS serial=FFS-1 fingerprint=00ff\n");
	done(&gd);
}

static void test_fail(void **state)
{
	struct gadget gd;
	char out[512];

	(void)state;
	spawn(&gd, "FFS-2", (const char *const[]){ "--timeout-s", "20", NULL });
	attach(&gd);
	event(&gd, FUNCTIONFS_ENABLE);
	expect_hello(&gd, "FFS-2");
	welcome(&gd);
	relay_manufacturer(&gd);
	send_text(&gd, KL_LINK_VERDICT,
	          (const char *const[]){ "result", "FAIL", "serial", "FFS-2", "reason",
	                                 "ek_untrusted", "message", "no", NULL });
	assert_int_equal(wait_exit(&gd, 10000), 1);
	slurp(gd.out, out, sizeof(out));
	assert_string_equal(out, "FAIL serial=FFS-2 reason=ek_untrusted: no\n");
	done(&gd);
}

/* DISABLE, UNBIND, SUSPEND on ep0 mid-session: a lost link, exit 3, while
 * the agent waits for the station's next frame. */
static void test_lost_event(void **state)
{
	static const struct {
		int type;
		const char *name;
	} evs[] = { { FUNCTIONFS_DISABLE, "DISABLE" },
		    { FUNCTIONFS_UNBIND, "UNBIND" },
		    { FUNCTIONFS_SUSPEND, "SUSPEND" } };

	(void)state;
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		struct gadget gd;
		char err[4096];
		double t0;

		spawn(&gd, "FFS-3", (const char *const[]){ "--timeout-s", "30", NULL });
		attach(&gd);
		event(&gd, FUNCTIONFS_ENABLE);
		expect_hello(&gd, "FFS-3");
		welcome(&gd);
		relay_manufacturer(&gd);
		t0 = now_ms();
		event(&gd, evs[i].type);
		/* well before the 30 s timeout */
		assert_int_equal(wait_exit(&gd, 5000), 3);
		assert_true(now_ms() - t0 < 5000);
		slurp(gd.err, err, sizeof(err));
		if (!strstr(err, "link_lost"))
			fprintf(stderr, "agent: %s\n", err);
		assert_non_null(strstr(err, evs[i].name));
		assert_non_null(strstr(err, "link_lost"));
		done(&gd);
	}
}

/* --retry 1: after DISABLE the agent waits for the host to enable the
 * function again, says HELLO again and finishes. */
static void test_retry_after_disable(void **state)
{
	struct gadget gd;

	(void)state;
	spawn(&gd, "FFS-4", (const char *const[]){ "--timeout-s", "20", "--retry", "1", NULL });
	attach(&gd);
	event(&gd, FUNCTIONFS_ENABLE);
	expect_hello(&gd, "FFS-4");
	welcome(&gd);
	event(&gd, FUNCTIONFS_DISABLE);
	event(&gd, FUNCTIONFS_ENABLE);
	kl_link_decoder_init(&gd.dec);
	expect_hello(&gd, "FFS-4");
	welcome(&gd);
	relay_manufacturer(&gd);
	send_text(&gd, KL_LINK_VERDICT,
	          (const char *const[]){ "result", "PASS", "serial", "FFS-4", "fingerprint", "01",
	                                 NULL });
	assert_int_equal(wait_exit(&gd, 10000), 0);
	done(&gd);
}

/* A station that says nothing after the HELLO: the agent's --timeout-s. */
static void test_silent_station(void **state)
{
	struct gadget gd;
	char err[4096];
	double t0;

	(void)state;
	spawn(&gd, "FFS-5", (const char *const[]){ "--timeout-s", "1", NULL });
	attach(&gd);
	event(&gd, FUNCTIONFS_ENABLE);
	t0 = now_ms();
	expect_hello(&gd, "FFS-5");
	assert_int_equal(wait_exit(&gd, 5000), 3);
	assert_true(now_ms() - t0 >= 900);
	slurp(gd.err, err, sizeof(err));
	assert_non_null(strstr(err, "link_timeout"));
	done(&gd);
}

/* A host that never enables the function: bounded by --timeout-s too. */
static void test_never_enabled(void **state)
{
	struct gadget gd;
	char err[4096];

	(void)state;
	spawn(&gd, "FFS-6", (const char *const[]){ "--timeout-s", "1", NULL });
	attach(&gd);
	event(&gd, FUNCTIONFS_BIND);
	assert_int_equal(wait_exit(&gd, 5000), 3);
	slurp(gd.err, err, sizeof(err));
	assert_non_null(strstr(err, "did not enable"));
	done(&gd);
}

/* Usage: exactly one of --station and --usb-ffs. */
static void test_usage(void **state)
{
	char cmd[512];

	(void)state;
	snprintf(cmd, sizeof(cmd),
	         "%s --usb-ffs /nonexistent --station 127.0.0.1:1 --serial X 2>/dev/null",
	         KEYLINE_AGENT_BIN);
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "%s --help | grep -q -- '--usb-ffs DIR'", KEYLINE_AGENT_BIN);
	assert_int_equal(WEXITSTATUS(system(cmd)), 0);
	/* no such FunctionFS: a link error, not a hang */
	snprintf(cmd, sizeof(cmd), "%s --usb-ffs /nonexistent --serial X --tcti %s 2>/dev/null",
	         KEYLINE_AGENT_BIN, g.dut[0]->tcti);
	assert_int_equal(WEXITSTATUS(system(cmd)), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_lost_event),
		cmocka_unit_test(test_retry_after_disable),
		cmocka_unit_test(test_silent_station),
		cmocka_unit_test(test_never_enabled),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
