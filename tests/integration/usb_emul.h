/* An emulated USB bus and DUT for the tests of the station's USB link
 * (test_usb_link.c, test_station_usb.c).
 *
 * WHAT IS EMULATED: the USB bus and the USB device. The test machines'
 * kernel has no USB, so umockdev makes a sysfs device 1d6b:0104 on port 1-2
 * (node /dev/bus/usb/001/002) with one vendor-class interface and bulk
 * endpoints 0x01 OUT / 0x81 IN, and this helper's ioctl handler (on
 * umockdev's own thread) answers the usbfs ioctls libusb issues: string
 * descriptors by control transfer (the iSerial is usb_emul_serial's), and
 * bulk URBs. In place of the gadget's FunctionFS endpoint files the handler
 * carries the bulk bytes to and from a keyline-agent process over a TCP
 * socket (the agent connects to usb_emul_agent_port()), unchanged, while
 * the interface is claimed. Packet sizes, timing and the host controller are
 * not emulated: one URB carries what libusb submitted.
 *
 * Whoever uses libusb on this bus must run under umockdev's preload library
 * with this testbed's UMOCKDEV_DIR (usb_emul_setup sets it in the
 * environment): the same process re-executed under umockdev-wrapper
 * (usb_emul_reexec), or a child started under it. The ioctl handler is
 * reached through a socket in the testbed directory, so a child process
 * under the wrapper talks to the handler in the test process. The test
 * process needs the preload library too when it sends uevents: umockdev
 * looks the device up through libudev, which must see the testbed. */
#ifndef KL_TEST_USB_EMUL_H
#define KL_TEST_USB_EMUL_H

#include <stdbool.h>

#include <umockdev.h>

#define USB_EMUL_VID     0x1d6b
#define USB_EMUL_PID     0x0104
#define USB_EMUL_SERIAL  "KL-USB-0001"
#define USB_EMUL_PORT    "1-2"
#define USB_EMUL_NODE    "/dev/bus/usb/001/002"
#define USB_EMUL_SYSPATH "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"

/* What the device does with the next bulk OUT transfer. */
typedef enum {
	USB_EMUL_RELAY,    /* carry it to the agent, and the agent's bytes back */
	USB_EMUL_GARBAGE,  /* answer with bytes that are no frame */
	USB_EMUL_OVERSIZE, /* answer with a header that claims 100000 bytes */
	USB_EMUL_UNPLUG,   /* never answer: the device leaves */
	USB_EMUL_BUSY,     /* the interface is claimed elsewhere (EBUSY) */
} usb_emul_mode;

/* Under umockdev-wrapper already: returns. Else re-executes argv under it
 * (adding verify_asan_link_order=0 to ASAN_OPTIONS) and returns only when
 * that failed, with -1. */
int usb_emul_reexec(char **argv);

/* The testbed (UMOCKDEV_DIR set for this process and its children), the
 * handler on the node, the listener for the agent. 0 or -1 (said on
 * stderr). Nothing is plugged in yet. */
int usb_emul_setup(void);
void usb_emul_free(void);
UMockdevTestbed *usb_emul_bed(void);

/* Plugs the device in: its sysfs device and node appear, with an "add"
 * uevent. Its iSerial from then on. */
bool usb_emul_plug(const char *iserial);
/* Unplugs it: its URBs fail with ENODEV, a "remove" uevent goes out and
 * the sysfs device goes. The agent's bridge stays (usb_emul_agent_close
 * cuts it). */
void usb_emul_unplug(void);

void usb_emul_set_mode(usb_emul_mode m);
/* TPM commands the station sent since the last claim of the interface. */
int usb_emul_commands(void);

/* The port keyline-agent's --station names; the agent that connected
 * there is bridged to the device's bulk endpoints (bounded wait, 0 or -1). */
int usb_emul_agent_port(void);
int usb_emul_agent_accept(int timeout_ms);
/* Cuts the agent's bridge (an agent whose link is gone exits by itself). */
void usb_emul_agent_close(void);

#endif
