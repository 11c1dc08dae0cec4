/* keyline-agent on FunctionFS (agent_ffs.h). Descriptor layout: the
 * kernel's Documentation/usb/functionfs.rst and <linux/usb/functionfs.h>
 * (v2 header: magic, length, flags, then one count per speed present). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
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
	kl_ffs f = { -1, -1, -1 };
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

void kl_ffs_close(kl_ffs *f)
{
	if (f->in >= 0)
		close(f->in);
	if (f->out >= 0)
		close(f->out);
	if (f->ep0 >= 0)
		close(f->ep0);
	f->in = f->out = f->ep0 = -1;
}
