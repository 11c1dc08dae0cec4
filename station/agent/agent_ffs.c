/* keyline-agent on FunctionFS (agent_ffs.h). Descriptor layout: the
 * kernel's Documentation/usb/functionfs.rst and <linux/usb/functionfs.h>
 * (v2 header: magic, length, flags, then one count per speed present). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_tryjoin_np */
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>

#include "agent_ffs.h"

static uint8_t *le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

/* interface (vendor class, two endpoints, string 1), bulk OUT 0x01, bulk
 * IN 0x81, with this packet size: USB 2.0 §9.6.5, §9.6.6. */
static uint8_t *speed_set(uint8_t *p, uint16_t packet)
{
	const uint8_t set[] = {
		USB_DT_INTERFACE_SIZE,
		USB_DT_INTERFACE,
		0,
		0,
		2,
		USB_CLASS_VENDOR_SPEC,
		0,
		0,
		1,
		USB_DT_ENDPOINT_SIZE,
		USB_DT_ENDPOINT,
		USB_DIR_OUT | 1,
		USB_ENDPOINT_XFER_BULK,
		(uint8_t)packet,
		(uint8_t)(packet >> 8),
		0,
		USB_DT_ENDPOINT_SIZE,
		USB_DT_ENDPOINT,
		USB_DIR_IN | 1,
		USB_ENDPOINT_XFER_BULK,
		(uint8_t)packet,
		(uint8_t)(packet >> 8),
		0,
	};

	memcpy(p, set, sizeof(set));
	return p + sizeof(set);
}

#define SET_SIZE (USB_DT_INTERFACE_SIZE + 2 * USB_DT_ENDPOINT_SIZE)

size_t kl_ffs_descriptors(uint8_t *out, size_t cap)
{
	size_t len = 4 * 5 + 2 * SET_SIZE;
	uint8_t *p = out;

	if (cap < len)
		return 0;
	p = le32(p, FUNCTIONFS_DESCRIPTORS_MAGIC_V2);
	p = le32(p, (uint32_t)len);
	p = le32(p, FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC);
	p = le32(p, 3); /* fs_count */
	p = le32(p, 3); /* hs_count */
	p = speed_set(p, 64);
	speed_set(p, 512);
	return len;
}

size_t kl_ffs_strings(uint8_t *out, size_t cap, const char *interface_name)
{
	size_t n = strlen(interface_name) + 1, len = 16 + 2 + n;
	uint8_t *p = out;

	if (cap < len)
		return 0;
	p = le32(p, FUNCTIONFS_STRINGS_MAGIC);
	p = le32(p, (uint32_t)len);
	p = le32(p, 1); /* str_count */
	p = le32(p, 1); /* lang_count */
	p[0] = 0x09;    /* en-US, 0x0409, LE16 */
	p[1] = 0x04;
	memcpy(p + 2, interface_name, n);
	return len;
}

static int fail(char *why, size_t size, const char *what, const char *path)
{
	int e = errno;

	snprintf(why, size, "%s %s: %s", what, path, strerror(e));
	errno = e;
	return -1;
}

int kl_ffs_open(const char *dir, kl_ffs *ret, char *why, size_t why_size)
{
	uint8_t blob[KL_FFS_BLOB_MAX];
	char path[512];
	kl_ffs f = {
		.ep0 = -1, .out = -1, .in = -1, .rx = -1, .tx = -1, .rx_peer = -1, .tx_peer = -1
	};
	size_t n;

	snprintf(path, sizeof(path), "%s/ep0", dir);
	f.ep0 = open(path, O_RDWR | O_CLOEXEC);
	if (f.ep0 < 0)
		return fail(why, why_size, "open", path);
	n = kl_ffs_descriptors(blob, sizeof(blob));
	if (write(f.ep0, blob, n) != (ssize_t)n) {
		fail(why, why_size, "write descriptors to", path);
		goto err;
	}
	n = kl_ffs_strings(blob, sizeof(blob), "Keyline DUT link");
	if (write(f.ep0, blob, n) != (ssize_t)n) {
		fail(why, why_size, "write strings to", path);
		goto err;
	}
	snprintf(path, sizeof(path), "%s/ep1", dir);
	f.out = open(path, O_RDONLY | O_CLOEXEC);
	if (f.out < 0) {
		fail(why, why_size, "open", path);
		goto err;
	}
	snprintf(path, sizeof(path), "%s/ep2", dir);
	f.in = open(path, O_WRONLY | O_CLOEXEC);
	if (f.in < 0) {
		fail(why, why_size, "open", path);
		goto err;
	}
	*ret = f;
	return 0;
err:
	kl_ffs_close(&f);
	return -1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int kl_ffs_wait_enable(kl_ffs *f, int timeout_ms)
{
	double deadline = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = f->ep0, .events = POLLIN };
		struct usb_functionfs_event ev;
		int left = timeout_ms < 0 ? -1 : (int)(deadline - now_ms());
		ssize_t n;
		int r;

		if (timeout_ms >= 0 && left <= 0)
			return 0;
		r = poll(&p, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		n = read(f->ep0, &ev, sizeof(ev));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(ev)) {
			if (n >= 0)
				errno = EIO;
			return -1;
		}
		if (ev.type == FUNCTIONFS_ENABLE)
			return 1;
	}
}

/* The reader: blocks in read(ep1) and passes what arrives to rx_peer. A
 * failed read (ESHUTDOWN when the host disables the function) ends it,
 * and the agent sees rx reach its end. A read of 0 bytes is a
 * zero-length packet on FunctionFS, but the end of the writer on a FIFO
 * (which the tests put in ep1's place): there it ends too.
 *
 * Both threads end when f->stop is set: kl_ffs_pump_stop interrupts
 * their blocking calls with SIGUSR1 (a handler that does nothing, without
 * SA_RESTART, so the call fails with EINTR) until they are gone. Not
 * pthread_cancel: glibc's cancellation dlopen()s libgcc_s for unwinding,
 * which the agent does not otherwise need. */
static bool stopping(kl_ffs *f)
{
	return __atomic_load_n(&f->stop, __ATOMIC_SEQ_CST) != 0;
}

static void *reader(void *arg)
{
	kl_ffs *f = arg;
	struct stat st;
	bool fifo = fstat(f->out, &st) == 0 && S_ISFIFO(st.st_mode);
	uint8_t buf[4096]; /* a multiple of both packet sizes */

	while (!stopping(f)) {
		ssize_t n = read(f->out, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n == 0 && fifo))
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t k = send(f->rx_peer, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

			if (k < 0 && errno == EINTR && !stopping(f))
				continue;
			if (k <= 0)
				goto out;
			off += k;
		}
	}
out:
	shutdown(f->rx_peer, SHUT_WR);
	return NULL;
}

/* The writer: one frame per message from tx_peer, one write() to ep2 for
 * it, a status byte back (0 written, 1 failed). */
static void *writer(void *arg)
{
	kl_ffs *f = arg;
	static uint8_t frame[16384];

	while (!stopping(f)) {
		ssize_t n = recv(f->tx_peer, frame, sizeof(frame), 0), k;
		uint8_t status;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		do
			k = write(f->in, frame, (size_t)n);
		while (k < 0 && errno == EINTR && !stopping(f));
		status = k == n ? 0 : 1;
		if (send(f->tx_peer, &status, 1, MSG_NOSIGNAL) != 1 || status)
			break;
	}
	return NULL;
}

static void on_interrupt(int sig)
{
	(void)sig;
}

/* Interrupts t until it has ended, for up to 2 s: true when joined. */
static bool stop_thread(pthread_t t)
{
	for (int i = 0; i < 200; i++) {
		struct timespec ms10 = { 0, 10 * 1000 * 1000 };

		if (pthread_tryjoin_np(t, NULL) == 0)
			return true;
		pthread_kill(t, SIGUSR1);
		nanosleep(&ms10, NULL);
	}
	return false;
}

int kl_ffs_pump_start(kl_ffs *f)
{
	struct sigaction sa = { .sa_handler = on_interrupt };
	int rx[2], tx[2];

	if (f->pumping)
		return 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return -1;
	__atomic_store_n(&f->stop, 0, __ATOMIC_SEQ_CST);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rx) < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, tx) < 0) {
		close(rx[0]);
		close(rx[1]);
		return -1;
	}
	f->rx = rx[0];
	f->rx_peer = rx[1];
	f->tx = tx[0];
	f->tx_peer = tx[1];
	if (pthread_create(&f->reader, NULL, reader, f) != 0)
		goto err;
	if (pthread_create(&f->writer, NULL, writer, f) != 0) {
		__atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
		shutdown(f->rx, SHUT_RDWR);
		if (!stop_thread(f->reader))
			abort(); /* a reader that outlives its kl_ffs */
		goto err;
	}
	f->pumping = true;
	return 0;
err:
	close(f->rx);
	close(f->rx_peer);
	close(f->tx);
	close(f->tx_peer);
	f->rx = f->rx_peer = f->tx = f->tx_peer = -1;
	errno = EAGAIN;
	return -1;
}

void kl_ffs_pump_stop(kl_ffs *f)
{
	if (!f->pumping)
		return;
	__atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
	/* A thread blocked on its socket wakes from this, one blocked on an
	 * endpoint from the signal. */
	shutdown(f->rx, SHUT_RDWR);
	shutdown(f->tx, SHUT_RDWR);
	if (!stop_thread(f->reader) || !stop_thread(f->writer)) {
		/* Stuck in a call no signal interrupts: it still uses the
		 * kl_ffs and its sockets, so leave them; the process is about
		 * to report a lost link. */
		f->pumping = false;
		return;
	}
	close(f->rx);
	close(f->rx_peer);
	close(f->tx);
	close(f->tx_peer);
	f->rx = f->rx_peer = f->tx = f->tx_peer = -1;
	f->pumping = false;
}

/* Reads the events ep0 has: 1 when one of them ends the link (*event
 * names it), 0 when none did, -1 when ep0 failed. A SETUP request (the
 * function defines none) is stalled: a read for a host-to-device one's
 * data stage in the wrong direction, per Documentation/usb/functionfs. */
static int ep0_events(kl_ffs *f, const char **event)
{
	struct usb_functionfs_event ev;
	ssize_t n = read(f->ep0, &ev, sizeof(ev));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n != (ssize_t)sizeof(ev)) {
		*event = "ep0 failed";
		return -1;
	}
	switch (ev.type) {
	case FUNCTIONFS_DISABLE:
		*event = "DISABLE";
		return 1;
	case FUNCTIONFS_UNBIND:
		*event = "UNBIND";
		return 1;
	case FUNCTIONFS_SUSPEND:
		*event = "SUSPEND";
		return 1;
	case FUNCTIONFS_SETUP:
		if (ev.u.setup.bRequestType & USB_DIR_IN)
			(void)!read(f->ep0, &ev, 0);
		else
			(void)!write(f->ep0, &ev, 0);
		return 0;
	default: /* BIND, ENABLE, RESUME */
		return 0;
	}
}

/* Waits until fd is readable or ep0 ends the link, within deadline. */
static int wait_pumped(kl_ffs *f, int fd, double deadline, const char **why, const char **event)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
			               { .fd = f->ep0, .events = POLLIN } };
		double left = deadline - now_ms();
		int n;

		if (left <= 0) {
			*why = "link_timeout";
			return -1;
		}
		n = poll(p, 2, (int)left + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*why = "link_lost";
			*event = "poll failed";
			return -1;
		}
		/* What is done is taken first: an event after it is seen next. */
		if (p[0].revents)
			return 0;
		if (p[1].revents && ep0_events(f, event) != 0) {
			*why = "link_lost";
			return -1;
		}
	}
}

int kl_ffs_send(kl_ffs *f, const void *p, size_t n, int timeout_ms, const char **why,
                const char **event)
{
	double deadline = now_ms() + timeout_ms;
	uint8_t status = 1;

	*event = NULL;
	/* The writer takes one frame at a time and answers before the next,
	 * so this send fits in the socket's buffer. */
	if (send(f->tx, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
		*why = "link_lost";
		*event = "the writer is gone";
		return -1;
	}
	if (wait_pumped(f, f->tx, deadline, why, event) < 0)
		return -1;
	if (recv(f->tx, &status, 1, MSG_DONTWAIT) != 1 || status != 0) {
		*why = "link_lost";
		*event = "ep2 failed";
		return -1;
	}
	return 0;
}

ssize_t kl_ffs_recv(kl_ffs *f, void *buf, size_t cap, int timeout_ms, const char **why,
                    const char **event)
{
	double deadline = now_ms() + timeout_ms;

	*event = NULL;
	for (;;) {
		ssize_t n;

		if (wait_pumped(f, f->rx, deadline, why, event) < 0)
			return -1;
		n = recv(f->rx, buf, cap, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		*why = "link_lost";
		*event = "ep1 failed";
		return -1;
	}
}

void kl_ffs_close(kl_ffs *f)
{
	kl_ffs_pump_stop(f);
	if (f->in >= 0)
		close(f->in);
	if (f->out >= 0)
		close(f->out);
	if (f->ep0 >= 0)
		close(f->ep0);
	f->in = f->out = f->ep0 = -1;
}
