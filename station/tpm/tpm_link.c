/* The station's own TCTI for "swtpm:" links: the swtpm socket protocol
 * (raw TPM commands on a TCP stream, one connection per command, as
 * tpm2-tss's tcti-swtpm does), with a deadline on every command and a
 * cancel predicate polled while it waits. See tpm_link_internal.h for why
 * tpm2-tss's own timeouts cannot do this. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tpm2_types.h>

#include "kl_error.h"
#include "tpm_link_internal.h"

#define LINK_MAGIC        0x6b6c6c696e6b0001ull /* "kllink", 1 */
#define LINK_SLICE_MS     50                    /* how often a wait looks at the cancel predicate */
#define LINK_MAX_RESPONSE 4096                  /* TPM2_MAX_COMMAND_SIZE of the PC Client profile */

typedef enum { LINK_IDLE, LINK_SENT } link_io;

struct tpm_link {
	TSS2_TCTI_CONTEXT_COMMON_V2 common; /* first: ESAPI takes us for a TCTI */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char where[96]; /* "127.0.0.1:2321", for the error detail */
	int timeout_ms;
	bool (*cancelled)(void *ctx);
	void *cancel_ctx;
	int sock;
	link_io io;
	double deadline;
	uint32_t cc; /* the command in flight */
	unsigned char hdr[10];
	size_t hdr_got;
	uint32_t rsp_size;
	tpm_link_state state;
};

/* Why the last command of this thread's link failed: ESAPI hands back only
 * a TCTI code, and kl_tpm_rc_error turns it into this detail. One thread
 * drives one kl_tpm (tpm.h), so thread-local is the command's own. */
static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static _Thread_local struct {
	bool set;
	kl_err code;
	char detail[256];
} link_why;

static struct tpm_link *link_cast(TSS2_TCTI_CONTEXT *ctx)
{
	struct tpm_link *l = (struct tpm_link *)ctx;

	return l && l->common.v1.magic == LINK_MAGIC ? l : NULL;
}

/* The command's name for the operator (TPM 2.0 Part 2 §6.5.2). */
static const char *cc_name(uint32_t cc)
{
	switch (cc) {
	case TPM2_CC_GetCapability:
		return "TPM2_GetCapability";
	case TPM2_CC_CreatePrimary:
		return "TPM2_CreatePrimary";
	case TPM2_CC_Create:
		return "TPM2_Create";
	case TPM2_CC_Load:
		return "TPM2_Load";
	case TPM2_CC_NV_Read:
		return "TPM2_NV_Read";
	case TPM2_CC_NV_ReadPublic:
		return "TPM2_NV_ReadPublic";
	case TPM2_CC_ReadPublic:
		return "TPM2_ReadPublic";
	case TPM2_CC_ActivateCredential:
		return "TPM2_ActivateCredential";
	case TPM2_CC_Certify:
		return "TPM2_Certify";
	case TPM2_CC_CertifyCreation:
		return "TPM2_CertifyCreation";
	case TPM2_CC_Sign:
		return "TPM2_Sign";
	case TPM2_CC_FlushContext:
		return "TPM2_FlushContext";
	case TPM2_CC_StirRandom:
		return "TPM2_StirRandom";
	case TPM2_CC_EvictControl:
		return "TPM2_EvictControl";
	case TPM2_CC_NV_DefineSpace:
		return "TPM2_NV_DefineSpace";
	case TPM2_CC_NV_UndefineSpace:
		return "TPM2_NV_UndefineSpace";
	case TPM2_CC_NV_Write:
		return "TPM2_NV_Write";
	case TPM2_CC_Clear:
		return "TPM2_Clear";
	case TPM2_CC_Startup:
		return "TPM2_Startup";
	default:
		return "TPM command";
	}
}

/* Records why the command failed, closes its connection and, unless it was
 * a plain I/O error of one connection, marks the link dead: after a
 * timeout or a cancel the DUT may still answer the old command, and
 * nothing it says is believed any more. Returns the TCTI code for ESAPI,
 * never TRY_AGAIN (the synchronous Esys_* calls would loop on it). */
static TSS2_RC link_fail(struct tpm_link *l, tpm_link_state why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static TSS2_RC link_fail(struct tpm_link *l, tpm_link_state why, const char *fmt, ...)
{
	va_list ap;

	link_why.set = true;
	link_why.code = why == TPM_LINK_TIMEOUT  ? KL_E_TIMEOUT
	                : why == TPM_LINK_BROKEN ? KL_E_TPM
	                                         : KL_E_IO;
	va_start(ap, fmt);
	vsnprintf(link_why.detail, sizeof(link_why.detail), fmt, ap);
	va_end(ap);
	if (l->sock >= 0)
		close(l->sock);
	l->sock = -1;
	l->io = LINK_IDLE;
	l->hdr_got = 0;
	if (why != TPM_LINK_OK)
		l->state = why;
	return why == TPM_LINK_BROKEN ? TSS2_TCTI_RC_MALFORMED_RESPONSE : TSS2_TCTI_RC_IO_ERROR;
}

/* Waits until fd is ready for events, the command's deadline passes or the
 * job is cancelled. 0 when ready, or the TCTI code of link_fail. */
static TSS2_RC link_wait(struct tpm_link *l, int fd, short events)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		double left = l->deadline - now_ms();
		int n;

		if (l->cancelled && l->cancelled(l->cancel_ctx))
			return link_fail(l, TPM_LINK_CANCELLED,
			                 "the job was cancelled while %s waited on %s",
			                 cc_name(l->cc), l->where);
		if (left <= 0)
			return link_fail(l, TPM_LINK_TIMEOUT,
			                 "the TPM on %s did not answer %s within %d ms", l->where,
			                 cc_name(l->cc), l->timeout_ms);
		n = poll(&p, 1, left < LINK_SLICE_MS ? (int)left + 1 : LINK_SLICE_MS);
		if (n > 0)
			return TSS2_RC_SUCCESS;
		if (n < 0 && errno != EINTR)
			return link_fail(l, TPM_LINK_OK, "poll on %s: %s", l->where,
			                 strerror(errno));
	}
}

static TSS2_RC link_connect(struct tpm_link *l)
{
	int err = 0;
	socklen_t len = sizeof(err);
	TSS2_RC rc;

	l->sock = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->sock < 0)
		return link_fail(l, TPM_LINK_OK, "socket: %s", strerror(errno));
	if (connect(l->sock, (struct sockaddr *)&l->addr, l->addr_len) == 0)
		return TSS2_RC_SUCCESS;
	if (errno != EINPROGRESS)
		return link_fail(l, TPM_LINK_OK, "connect to %s: %s", l->where, strerror(errno));
	if ((rc = link_wait(l, l->sock, POLLOUT)) != TSS2_RC_SUCCESS)
		return rc;
	if (getsockopt(l->sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
		return link_fail(l, TPM_LINK_OK, "connect to %s: %s", l->where,
		                 strerror(err ? err : errno));
	return TSS2_RC_SUCCESS;
}

static TSS2_RC link_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
	struct tpm_link *l = link_cast(ctx);
	TSS2_RC rc;

	if (!l)
		return TSS2_TCTI_RC_BAD_CONTEXT;
	if (!cmd || size < 10)
		return TSS2_TCTI_RC_BAD_VALUE;
	if (l->io != LINK_IDLE)
		return TSS2_TCTI_RC_BAD_SEQUENCE;
	link_why.set = false;
	l->cc = (uint32_t)cmd[6] << 24 | (uint32_t)cmd[7] << 16 | (uint32_t)cmd[8] << 8 | cmd[9];
	if (l->state != TPM_LINK_OK)
		return link_fail(l, l->state, "the link to %s failed earlier; %s not sent",
		                 l->where, cc_name(l->cc));
	l->deadline = now_ms() + l->timeout_ms;
	if ((rc = link_connect(l)) != TSS2_RC_SUCCESS)
		return rc;
	for (size_t done = 0; done < size;) {
		ssize_t n = send(l->sock, cmd + done, size - done, MSG_NOSIGNAL);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return link_fail(l, TPM_LINK_OK, "send to %s: %s", l->where,
			                 strerror(errno));
		if ((rc = link_wait(l, l->sock, POLLOUT)) != TSS2_RC_SUCCESS)
			return rc;
	}
	l->io = LINK_SENT;
	l->hdr_got = 0;
	return TSS2_RC_SUCCESS;
}

static TSS2_RC link_read(struct tpm_link *l, unsigned char *p, size_t want)
{
	while (want > 0) {
		ssize_t n = recv(l->sock, p, want, 0);
		TSS2_RC rc;

		if (n > 0) {
			p += n;
			want -= (size_t)n;
			continue;
		}
		if (n == 0)
			return link_fail(l, TPM_LINK_OK, "%s closed the link during %s", l->where,
			                 cc_name(l->cc));
		if (errno != EAGAIN && errno != EINTR)
			return link_fail(l, TPM_LINK_OK, "recv from %s: %s", l->where,
			                 strerror(errno));
		if ((rc = link_wait(l, l->sock, POLLIN)) != TSS2_RC_SUCCESS)
			return rc;
	}
	return TSS2_RC_SUCCESS;
}

/* ESAPI's synchronous calls pass TSS2_TCTI_TIMEOUT_BLOCK; the link's own
 * deadline, set when the command was sent, applies instead. */
static TSS2_RC link_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
	struct tpm_link *l = link_cast(ctx);
	TSS2_RC rc;

	(void)timeout;
	if (!l)
		return TSS2_TCTI_RC_BAD_CONTEXT;
	if (!size)
		return TSS2_TCTI_RC_BAD_REFERENCE;
	if (l->io != LINK_SENT)
		return TSS2_TCTI_RC_BAD_SEQUENCE;
	if (l->hdr_got < sizeof(l->hdr)) {
		if ((rc = link_read(l, l->hdr, sizeof(l->hdr))) != TSS2_RC_SUCCESS)
			return rc;
		l->hdr_got = sizeof(l->hdr);
		l->rsp_size = (uint32_t)l->hdr[2] << 24 | (uint32_t)l->hdr[3] << 16 |
		              (uint32_t)l->hdr[4] << 8 | l->hdr[5];
		if (l->rsp_size < sizeof(l->hdr) || l->rsp_size > LINK_MAX_RESPONSE)
			return link_fail(l, TPM_LINK_BROKEN,
			                 "the TPM on %s answered %s with a size of %" PRIu32
			                 " bytes",
			                 l->where, cc_name(l->cc), l->rsp_size);
	}
	if (!rsp) {
		*size = l->rsp_size;
		return TSS2_RC_SUCCESS;
	}
	if (*size < l->rsp_size) {
		*size = l->rsp_size;
		return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
	}
	memcpy(rsp, l->hdr, sizeof(l->hdr));
	rc = link_read(l, rsp + sizeof(l->hdr), l->rsp_size - sizeof(l->hdr));
	if (rc != TSS2_RC_SUCCESS)
		return rc;
	*size = l->rsp_size;
	close(l->sock);
	l->sock = -1;
	l->io = LINK_IDLE;
	l->hdr_got = 0;
	return TSS2_RC_SUCCESS;
}

static void link_finalize(TSS2_TCTI_CONTEXT *ctx)
{
	struct tpm_link *l = link_cast(ctx);

	if (l && l->sock >= 0) {
		close(l->sock);
		l->sock = -1;
	}
}

TSS2_RC tpm_tcti_cancel_none(TSS2_TCTI_CONTEXT *ctx)
{
	(void)ctx;
	return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

TSS2_RC tpm_tcti_poll_handles_none(TSS2_TCTI_CONTEXT *ctx, TSS2_TCTI_POLL_HANDLE *h, size_t *n)
{
	(void)ctx;
	(void)h;
	(void)n;
	return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

/* Neither swtpm's data channel nor an agent link has a locality; the
 * station uses locality 0. */
TSS2_RC tpm_tcti_set_locality_zero(TSS2_TCTI_CONTEXT *ctx, uint8_t locality)
{
	(void)ctx;
	return locality == 0 ? TSS2_RC_SUCCESS : TSS2_TCTI_RC_NOT_SUPPORTED;
}

TSS2_RC tpm_tcti_make_sticky_none(TSS2_TCTI_CONTEXT *ctx, TPM2_HANDLE *h, uint8_t sticky)
{
	(void)ctx;
	(void)h;
	(void)sticky;
	return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}

bool tpm_link_handles(const char *conf)
{
	return strcmp(conf, "swtpm") == 0 || strncmp(conf, "swtpm:", 6) == 0;
}

/* "swtpm:host=H,port=P" (either may be left out: localhost, 2321, as
 * tcti-swtpm takes them). */
static int parse_conf(const char *conf, char *host, size_t host_size, char *port, size_t port_size)
{
	char buf[256], *save = NULL;

	snprintf(host, host_size, "localhost");
	snprintf(port, port_size, "2321");
	if (strlen(conf) >= sizeof(buf))
		return kl_error_set(KL_E_INVALID, "TCTI \"%s\": too long", conf);
	snprintf(buf, sizeof(buf), "%s", conf[5] == ':' ? conf + 6 : "");
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');

		if (!eq || eq == kv || !eq[1])
			return kl_error_set(KL_E_INVALID,
			                    "TCTI \"%s\": '%s' is not key=value (host=, port=)",
			                    conf, kv);
		*eq = '\0';
		if (strcmp(kv, "host") == 0 && strlen(eq + 1) < host_size)
			snprintf(host, host_size, "%s", eq + 1);
		else if (strcmp(kv, "port") == 0 && strlen(eq + 1) < port_size &&
		         strspn(eq + 1, "0123456789") == strlen(eq + 1) && atoi(eq + 1) > 0 &&
		         atoi(eq + 1) < 65536)
			snprintf(port, port_size, "%s", eq + 1);
		else
			return kl_error_set(KL_E_INVALID,
			                    "TCTI \"%s\": bad %s '%s' (host=NAME, port=1..65535)",
			                    conf, kv, eq + 1);
	}
	return 0;
}

int tpm_link_open(const char *conf, int timeout_ms, bool (*cancelled)(void *ctx), void *cancel_ctx,
                  TSS2_TCTI_CONTEXT **ret, struct tpm_link **ret_link)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char host[128], port[8];
	struct tpm_link *l;
	int r, g;

	if ((r = parse_conf(conf, host, sizeof(host), port, sizeof(port))) < 0)
		return r;
	g = getaddrinfo(host, port, &hints, &ai);
	if (g != 0)
		return kl_error_set(KL_E_IO, "TCTI \"%s\": host %s: %s", conf, host,
		                    gai_strerror(g));
	l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(ai);
		return kl_error_set(KL_E_NOMEM, "TPM link: out of memory");
	}
	memcpy(&l->addr, ai->ai_addr, ai->ai_addrlen);
	l->addr_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(l->where, sizeof(l->where), "%s:%s", host, port);
	l->timeout_ms = timeout_ms;
	l->cancelled = cancelled;
	l->cancel_ctx = cancel_ctx;
	l->sock = -1;
	l->common.v1.magic = LINK_MAGIC;
	l->common.v1.version = 2;
	l->common.v1.transmit = link_transmit;
	l->common.v1.receive = link_receive;
	l->common.v1.finalize = link_finalize;
	l->common.v1.cancel = tpm_tcti_cancel_none;
	l->common.v1.getPollHandles = tpm_tcti_poll_handles_none;
	l->common.v1.setLocality = tpm_tcti_set_locality_zero;
	l->common.makeSticky = tpm_tcti_make_sticky_none;
	*ret = (TSS2_TCTI_CONTEXT *)l;
	*ret_link = l;
	return 0;
}

int tpm_link_rearm(struct tpm_link *l, int timeout_ms)
{
	if (l->state == TPM_LINK_TIMEOUT || l->state == TPM_LINK_BROKEN)
		return kl_error_set(
		    KL_E_STATE, "the link to %s is dead: its TPM %s earlier", l->where,
		    l->state == TPM_LINK_TIMEOUT ? "did not answer in time" : "answered garbage");
	/* A cancelled command's connection was closed: swtpm answers it to
	 * nobody, and the next command has a connection of its own. */
	l->state = TPM_LINK_OK;
	l->cancelled = NULL;
	l->cancel_ctx = NULL;
	l->timeout_ms = timeout_ms;
	return 0;
}

void tpm_link_why_set(kl_err code, const char *detail)
{
	link_why.set = true;
	link_why.code = code;
	snprintf(link_why.detail, sizeof(link_why.detail), "%s", detail);
}

void tpm_link_forget(void)
{
	link_why.set = false;
}

void tpm_link_free(struct tpm_link *l)
{
	if (!l)
		return;
	link_finalize((TSS2_TCTI_CONTEXT *)l);
	free(l);
	link_why.set = false;
}

tpm_link_state tpm_link_state_get(const struct tpm_link *l)
{
	return l ? l->state : TPM_LINK_OK;
}

bool tpm_link_last_error(TSS2_RC rc, kl_err *code, const char **detail)
{
	if (!link_why.set || (rc & TSS2_RC_LAYER_MASK) != TSS2_TCTI_RC_LAYER)
		return false;
	*code = link_why.code;
	*detail = link_why.detail;
	return true;
}
