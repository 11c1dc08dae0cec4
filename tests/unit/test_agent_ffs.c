/* keyline-agent's FunctionFS side (station/agent/agent_ffs.c): the
 * descriptor and string blobs byte for byte against the kernel's layout
 * (<linux/usb/functionfs.h>, USB 2.0 §9.6), and kl_ffs_open against a
 * directory of plain files standing in for the FunctionFS mount (no gadget
 * here: what is checked is what the agent writes to ep0 and which files it
 * opens). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/usb/ch9.h>
#include <linux/usb/functionfs.h>

#include <cmocka.h>

#include "agent_ffs.h"

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walks one speed's three descriptors: the vendor interface with two
 * endpoints, then bulk OUT 0x01 and bulk IN 0x81 of this packet size. */
static const uint8_t *check_set(const uint8_t *p, uint16_t packet)
{
	const struct usb_interface_descriptor *i = (const void *)p;
	const struct usb_endpoint_descriptor_no_audio *out, *in;

	assert_int_equal(i->bLength, USB_DT_INTERFACE_SIZE);
	assert_int_equal(i->bDescriptorType, USB_DT_INTERFACE);
	assert_int_equal(i->bNumEndpoints, 2);
	assert_int_equal(i->bInterfaceClass, USB_CLASS_VENDOR_SPEC);
	assert_int_equal(i->iInterface, 1);
	p += i->bLength;
	out = (const void *)p;
	assert_int_equal(out->bLength, USB_DT_ENDPOINT_SIZE);
	assert_int_equal(out->bDescriptorType, USB_DT_ENDPOINT);
	assert_int_equal(out->bEndpointAddress, 0x01);
	assert_int_equal(out->bmAttributes, USB_ENDPOINT_XFER_BULK);
	assert_int_equal(p[4] | p[5] << 8, packet);
	p += out->bLength;
	in = (const void *)p;
	assert_int_equal(in->bEndpointAddress, 0x81);
	assert_int_equal(in->bmAttributes, USB_ENDPOINT_XFER_BULK);
	assert_int_equal(p[4] | p[5] << 8, packet);
	return p + in->bLength;
}

static void descriptors(void **state)
{
	uint8_t b[KL_FFS_BLOB_MAX];
	size_t n = kl_ffs_descriptors(b, sizeof(b));
	const uint8_t *p;

	(void)state;
	assert_int_equal(n, 20 + 2 * (USB_DT_INTERFACE_SIZE + 2 * USB_DT_ENDPOINT_SIZE));
	assert_int_equal(rd32(b), FUNCTIONFS_DESCRIPTORS_MAGIC_V2);
	assert_int_equal(rd32(b + 4), n);
	assert_int_equal(rd32(b + 8), FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC);
	assert_int_equal(rd32(b + 12), 3);
	assert_int_equal(rd32(b + 16), 3);
	p = check_set(b + 20, 64); /* full speed */
	p = check_set(p, 512);     /* high speed */
	assert_ptr_equal(p, b + n);
	assert_int_equal(kl_ffs_descriptors(b, n - 1), 0); /* too small: nothing */
}

static void strings(void **state)
{
	uint8_t b[KL_FFS_BLOB_MAX];
	size_t n = kl_ffs_strings(b, sizeof(b), "Keyline DUT link");

	(void)state;
	assert_int_equal(n, 16 + 2 + sizeof("Keyline DUT link"));
	assert_int_equal(rd32(b), FUNCTIONFS_STRINGS_MAGIC);
	assert_int_equal(rd32(b + 4), n);
	assert_int_equal(rd32(b + 8), 1);
	assert_int_equal(rd32(b + 12), 1);
	assert_int_equal(b[16] | b[17] << 8, 0x0409);
	assert_string_equal((const char *)b + 18, "Keyline DUT link");
	assert_int_equal(kl_ffs_strings(b, 10, "x"), 0);
}

static void open_writes_ep0(void **state)
{
	char dir[] = "/tmp/kl-ffs.XXXXXX", path[64], why[256];
	uint8_t want[2 * KL_FFS_BLOB_MAX], got[2 * KL_FFS_BLOB_MAX];
	size_t wn;
	kl_ffs f;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* no ep0: a named failure */
	assert_int_equal(kl_ffs_open(dir, &f, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "ep0"));
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/ep%d", dir, i);
		fd = open(path, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(kl_ffs_open(dir, &f, why, sizeof(why)), 0);
	assert_true(f.ep0 >= 0 && f.out >= 0 && f.in >= 0);
	kl_ffs_close(&f);
	wn = kl_ffs_descriptors(want, sizeof(want));
	wn += kl_ffs_strings(want + wn, sizeof(want) - wn, "Keyline DUT link");
	snprintf(path, sizeof(path), "%s/ep0", dir);
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, got, sizeof(got)), (ssize_t)wn);
	close(fd);
	assert_memory_equal(got, want, wn);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/ep%d", dir, i);
		unlink(path);
	}
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(descriptors),
		cmocka_unit_test(strings),
		cmocka_unit_test(open_writes_ep0),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
