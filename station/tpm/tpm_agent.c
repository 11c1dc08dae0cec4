/* The station's in-process TCTI over a keyline-agent link: each TPM
 * command goes out as one TPM_COMMAND frame and its answer comes back as
 * one TPM_RESPONSE (docs/link.md), every command bounded by its own
 * deadline and the job's cancel predicate (tpm_agent_internal.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tpm2_types.h>

#include "kl_error.h"
#include "link_conn.h"
#include "tpm_agent_internal.h"

#define AGENT_MAGIC 0x6b6c6167656e7401ull /* "klagent", 1 */

typedef enum { AGENT_IDLE, AGENT_SENT, AGENT_HAVE } agent_io;

struct tpm_agent {
	TSS2_TCTI_CONTEXT_COMMON_V2 common; /* first: ESAPI takes us for a TCTI */
	kl_link_conn *conn;
	int timeout_ms;
	bool (*cancelled)(void *ctx);
	void *cancel_ctx;
	agent_io io;
	double deadline;
	uint32_t cc;
	unsigned stale; /* answers to cancelled commands still to come */
	tpm_link_state state;
	uint8_t rsp[KL_LINK_TPM_MAX];
	size_t rsp_len;
};

static struct tpm_agent *agent_cast(TSS2_TCTI_CONTEXT *ctx)
{
	struct tpm_agent *a = (struct tpm_agent *)ctx;

	return a && a->common.v1.magic == AGENT_MAGIC ? a : NULL;
}

/* Turns the link's failure (kl_error and kl_link_conn_reason) into the
 * TCTI's: records the why, sets the state, returns the code for ESAPI. */
static TSS2_RC agent_fail(struct tpm_agent *a, tpm_link_state why, kl_err code, const char *detail)
{
	char d[256];

	snprintf(d, sizeof(d), "0x%" PRIx32 " on the agent link: %s", a->cc, detail);
	tpm_link_why_set(code, d);
	a->io = AGENT_IDLE;
	if (why != TPM_LINK_OK)
		a->state = why;
	return why == TPM_LINK_BROKEN ? TSS2_TCTI_RC_MALFORMED_RESPONSE : TSS2_TCTI_RC_IO_ERROR;
}

/* The link's last failure, as a TCTI state. */
static TSS2_RC agent_link_failed(struct tpm_agent *a)
{
	const char *reason = kl_link_conn_reason(a->conn);
	kl_err code = kl_error_code();
	char detail[256];
	tpm_link_state why = TPM_LINK_LOST;

	snprintf(detail, sizeof(detail), "%s", kl_error_detail());
	kl_error_clear();
	if (reason && strcmp(reason, "link_timeout") == 0)
		why = TPM_LINK_TIMEOUT;
	else if (reason && strcmp(reason, "aborted") == 0)
		why = TPM_LINK_CANCELLED;
	else if (reason &&
	         (strcmp(reason, "link_garbage") == 0 || strcmp(reason, "link_oversize") == 0))
		why = TPM_LINK_BROKEN;
	return agent_fail(a, why, why == TPM_LINK_BROKEN ? KL_E_TPM : code, detail);
}

static kl_link_wait agent_wait(const struct tpm_agent *a)
{
	kl_link_wait w = { .deadline_ms = a->deadline,
		           .cancelled = a->cancelled,
		           .cancel_ctx = a->cancel_ctx };

	return w;
}

static TSS2_RC agent_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
	struct tpm_agent *a = agent_cast(ctx);
	kl_link_wait w;

	if (!a)
		return TSS2_TCTI_RC_BAD_CONTEXT;
	if (!cmd || size < KL_LINK_TPM_MIN || size > KL_LINK_TPM_MAX)
		return TSS2_TCTI_RC_BAD_VALUE;
	if (a->io != AGENT_IDLE)
		return TSS2_TCTI_RC_BAD_SEQUENCE;
	tpm_link_forget();
	a->cc = (uint32_t)cmd[6] << 24 | (uint32_t)cmd[7] << 16 | (uint32_t)cmd[8] << 8 | cmd[9];
	if (a->state != TPM_LINK_OK)
		return agent_fail(a, a->state,
		                  a->state == TPM_LINK_TIMEOUT ? KL_E_TIMEOUT : KL_E_IO,
		                  "the link failed earlier; the command was not sent");
	a->deadline = kl_link_now_ms() + a->timeout_ms;
	w = agent_wait(a);
	if (kl_link_conn_send(a->conn, KL_LINK_TPM_COMMAND, cmd, size, &w) < 0) {
		/* A cancel with half a frame sent leaves the link dead. */
		TSS2_RC rc = agent_link_failed(a);

		if (kl_link_conn_dead(a->conn) && a->state == TPM_LINK_CANCELLED)
			a->state = TPM_LINK_LOST;
		return rc;
	}
	a->io = AGENT_SENT;
	return TSS2_RC_SUCCESS;
}

/* Reads frames until the answer: late answers of cancelled commands are
 * skipped, a PING is answered, an ERROR ends the link. */
static TSS2_RC agent_read(struct tpm_agent *a)
{
	kl_link_wait w = agent_wait(a);

	for (;;) {
		kl_link_type type;
		const uint8_t *p;
		uint32_t len;

		if (kl_link_conn_recv(a->conn, &w, &type, &p, &len) < 0) {
			const char *why = kl_link_conn_reason(a->conn);
			TSS2_RC rc;

			/* A refused frame: the agent is told why before it is dropped. */
			if (why && (strcmp(why, "link_garbage") == 0 ||
			            strcmp(why, "link_oversize") == 0)) {
				char d[KL_LINK_TEXT_VALUE_MAX];

				snprintf(d, sizeof(d), "%s", kl_error_detail());
				kl_link_conn_refuse(a->conn, why, d, &w);
			}
			rc = agent_link_failed(a);

			/* The answer is still to come: skip it after a rearm. */
			if (a->state == TPM_LINK_CANCELLED)
				a->stale++;
			return rc;
		}
		if (type == KL_LINK_TPM_RESPONSE && a->stale > 0) {
			a->stale--;
			continue;
		}
		if (type == KL_LINK_TPM_RESPONSE) {
			memcpy(a->rsp, p, len);
			a->rsp_len = len;
			a->io = AGENT_HAVE;
			return TSS2_RC_SUCCESS;
		}
		if (type == KL_LINK_PING) {
			if (kl_link_conn_send(a->conn, KL_LINK_PONG, p, len, &w) < 0)
				return agent_link_failed(a);
			continue;
		}
		if (type == KL_LINK_PONG)
			continue;
		if (type == KL_LINK_ERROR) {
			static _Thread_local kl_link_text t; /* 8 KB: not on the stack */
			kl_link_err e;
			char d[256];
			const char *reason = NULL, *msg = NULL;

			if (kl_link_text_parse(p, len, &t, &e) == 0) {
				reason = kl_link_text_get(&t, "reason");
				msg = kl_link_text_get(&t, "message");
			}
			snprintf(d, sizeof(d), "the agent on %s ended the link: %s: %s",
			         kl_link_conn_peer(a->conn),
			         reason && kl_link_reason_valid(reason) ? reason : "(no reason)",
			         msg ? msg : "");
			kl_link_conn_refuse(a->conn, "link_lost", "the agent sent ERROR", &w);
			/* Its reason is the job's (engine.c, lifecycle.c). */
			kl_link_conn_peer_ended(a->conn, reason);
			return agent_fail(a, TPM_LINK_LOST, KL_E_UNAVAILABLE, d);
		}
		{
			char d[160];

			snprintf(d, sizeof(d),
			         "the agent on %s sent %s where a TPM response belongs",
			         kl_link_conn_peer(a->conn), kl_link_type_name(type));
			kl_link_conn_refuse(a->conn, "link_garbage", d, &w);
			return agent_fail(a, TPM_LINK_BROKEN, KL_E_TPM, d);
		}
	}
}

/* ESAPI's synchronous calls pass TSS2_TCTI_TIMEOUT_BLOCK; the command's
 * own deadline, set when it was sent, applies instead. */
static TSS2_RC agent_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
	struct tpm_agent *a = agent_cast(ctx);
	TSS2_RC rc;

	(void)timeout;
	if (!a)
		return TSS2_TCTI_RC_BAD_CONTEXT;
	if (!size)
		return TSS2_TCTI_RC_BAD_REFERENCE;
	if (a->io == AGENT_IDLE)
		return TSS2_TCTI_RC_BAD_SEQUENCE;
	if (a->io == AGENT_SENT && (rc = agent_read(a)) != TSS2_RC_SUCCESS)
		return rc;
	if (!rsp) {
		*size = a->rsp_len;
		return TSS2_RC_SUCCESS;
	}
	if (*size < a->rsp_len) {
		*size = a->rsp_len;
		return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
	}
	memcpy(rsp, a->rsp, a->rsp_len);
	*size = a->rsp_len;
	a->io = AGENT_IDLE;
	return TSS2_RC_SUCCESS;
}

static void agent_finalize(TSS2_TCTI_CONTEXT *ctx)
{
	(void)ctx; /* the link is the caller's */
}

int tpm_agent_open(kl_link_conn *c, int timeout_ms, bool (*cancelled)(void *ctx), void *cancel_ctx,
                   TSS2_TCTI_CONTEXT **ret, struct tpm_agent **ret_agent)
{
	struct tpm_agent *a;

	if (!c)
		return kl_error_set(KL_E_INVALID, "TPM: no agent link given");
	if (kl_link_conn_dead(c))
		return kl_error_set(KL_E_UNAVAILABLE, "the link to %s failed earlier (%s)",
		                    kl_link_conn_peer(c),
		                    kl_link_conn_reason(c) ? kl_link_conn_reason(c) : "link_lost");
	a = calloc(1, sizeof(*a));
	if (!a)
		return kl_error_set(KL_E_NOMEM, "TPM agent link: out of memory");
	a->conn = c;
	a->timeout_ms = timeout_ms;
	a->cancelled = cancelled;
	a->cancel_ctx = cancel_ctx;
	a->common.v1.magic = AGENT_MAGIC;
	a->common.v1.version = 2;
	a->common.v1.transmit = agent_transmit;
	a->common.v1.receive = agent_receive;
	a->common.v1.finalize = agent_finalize;
	a->common.v1.cancel = tpm_tcti_cancel_none;
	a->common.v1.getPollHandles = tpm_tcti_poll_handles_none;
	a->common.v1.setLocality = tpm_tcti_set_locality_zero;
	a->common.makeSticky = tpm_tcti_make_sticky_none;
	*ret = (TSS2_TCTI_CONTEXT *)a;
	*ret_agent = a;
	return 0;
}

void tpm_agent_free(struct tpm_agent *a)
{
	free(a);
	tpm_link_forget();
}

int tpm_agent_rearm(struct tpm_agent *a, int timeout_ms)
{
	if (a->state != TPM_LINK_OK && a->state != TPM_LINK_CANCELLED)
		return kl_error_set(KL_E_STATE, "the agent link to %s is dead (%s)",
		                    kl_link_conn_peer(a->conn),
		                    a->state == TPM_LINK_TIMEOUT ? "the agent went silent"
		                    : a->state == TPM_LINK_LOST  ? "the link was lost"
		                                                 : "the agent answered garbage");
	a->state = TPM_LINK_OK;
	a->cancelled = NULL;
	a->cancel_ctx = NULL;
	a->timeout_ms = timeout_ms;
	a->io = AGENT_IDLE;
	return 0;
}

tpm_link_state tpm_agent_state_get(const struct tpm_agent *a)
{
	return a ? a->state : TPM_LINK_OK;
}
