/* keyline-agent's USB side on a Linux gadget: FunctionFS (docs/link.md,
 * "USB gadget setup"). libc and the kernel's UAPI headers only.
 *
 * The gadget has one vendor-class interface with a bulk OUT (0x01, host ->
 * DUT) and a bulk IN (0x81, DUT -> host) endpoint. The agent writes the
 * descriptors and strings to DIR/ep0, after which the kernel creates
 * DIR/ep1 (the first endpoint descriptor: OUT, which the agent reads) and
 * DIR/ep2 (IN, which the agent writes); frames travel over them as they
 * are, exactly as over TCP. The host may only start once the function is
 * enabled (FUNCTIONFS_ENABLE on ep0, after the UDC is bound and the host
 * has set the configuration). */
#ifndef KL_AGENT_FFS_H
#define KL_AGENT_FFS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifndef KL_MUST_CHECK
#define KL_MUST_CHECK __attribute__((warn_unused_result))
#endif

/* Large enough for what kl_ffs_descriptors and kl_ffs_strings write. */
#define KL_FFS_BLOB_MAX 256

/* The FunctionFS v2 descriptor blob: full-speed (64-byte packets) and
 * high-speed (512-byte packets) sets of interface + bulk OUT + bulk IN.
 * Returns its length, 0 when cap is too small. */
size_t kl_ffs_descriptors(uint8_t *out, size_t cap);

/* The strings blob: one language (en-US), one string (the interface
 * name, NUL-ended UTF-8). Returns its length, 0 when it does not fit. */
size_t kl_ffs_strings(uint8_t *out, size_t cap, const char *interface_name);

typedef struct kl_ffs {
	int ep0;
	int out; /* ep1: what the station sends; read it */
	int in;  /* ep2: what the agent sends; write it */
	/* The pump (kl_ffs_pump_start): FunctionFS endpoint files cannot be
	 * polled, so one thread blocks in read(ep1) and passes the bytes to
	 * rx, another takes one frame at a time from tx, blocks in write(ep2)
	 * and answers a status byte on tx. rx, tx and ep0 (which FunctionFS
	 * does let poll) are what the agent waits on, each wait bounded. */
	int rx, tx;           /* the agent's ends of the two socketpairs */
	int rx_peer, tx_peer; /* the threads' ends */
	pthread_t reader, writer;
	bool pumping;
	int stop; /* set (atomically) to end the threads */
} kl_ffs;

/* Writes the descriptors and strings to dir/ep0 and opens dir/ep1 and
 * dir/ep2. 0, or -1 with errno and a sentence in why. */
int kl_ffs_open(const char *dir, kl_ffs *ret, char *why, size_t why_size) KL_MUST_CHECK;

/* Waits up to timeout_ms (-1: no limit) for the host to enable the
 * function: 1 enabled, 0 timed out, -1 error (errno). Other events (BIND,
 * SUSPEND...) are read and passed over; DISABLE/UNBIND make it wait on. */
int kl_ffs_wait_enable(kl_ffs *f, int timeout_ms) KL_MUST_CHECK;

/* Starts the pump threads on an open (and enabled) function. 0 or -1. */
int kl_ffs_pump_start(kl_ffs *f) KL_MUST_CHECK;

/* Stops them (interrupted with SIGUSR1 where they block in read or
 * write; the pump installs a handler that does nothing) and closes their
 * sockets; ep0, ep1 and ep2 stay open. */
void kl_ffs_pump_stop(kl_ffs *f);

/* Writes one whole frame to ep2 (one write(), one USB transfer) within
 * timeout_ms. 0 written; -1 with *why: "link_timeout" (the host did not
 * take it in time), "link_lost" (ep2 failed, or ep0 said DISABLE, UNBIND
 * or SUSPEND: *event names it). */
int kl_ffs_send(kl_ffs *f, const void *p, size_t n, int timeout_ms, const char **why,
                const char **event) KL_MUST_CHECK;

/* Reads what the host sent on ep1, up to cap bytes, within timeout_ms:
 * > 0 bytes; -1 with *why and *event as kl_ffs_send. */
ssize_t kl_ffs_recv(kl_ffs *f, void *buf, size_t cap, int timeout_ms, const char **why,
                    const char **event) KL_MUST_CHECK;

/* Closes what is open (the pump first). */
void kl_ffs_close(kl_ffs *f);

#endif
