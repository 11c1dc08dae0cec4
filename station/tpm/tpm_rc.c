/* TSS2_RC -> kl_err, in one place (see tpm_internal.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include <tss2/tss2_rc.h>

#include "kl_error.h"
#include "tpm_internal.h"
#include "tpm_link_internal.h"

/* The one place where a TSS2_RC becomes a kl_err. Link failures (TCTI I/O,
 * no connection) give -KL_E_IO, a TSS timeout -KL_E_TIMEOUT, a TSS allocation
 * failure -KL_E_NOMEM, everything else -KL_E_TPM. The detail keeps the
 * decoded text and the raw code:
 *   "Esys_NV_Read 0x01c00002: tpm:error(2.0): ... (rc 0x0000014a)" */
int kl_tpm_rc_error(TSS2_RC rc, const char *fmt, ...)
{
	char what[256];
	kl_err code = KL_E_TPM;
	const char *link_detail = NULL;
	va_list ap;

	if (tpm_link_last_error(rc, &code, &link_detail)) {
		/* The link's own failure: a timeout, a cancel, a dead socket. */
		va_start(ap, fmt);
		vsnprintf(what, sizeof(what), fmt, ap);
		va_end(ap);
		return kl_error_set(code, "%s: %s (rc 0x%08" PRIx32 ")", what, link_detail,
		                    (uint32_t)rc);
	}
	if (tpm_rc_code(rc) == 0) {
		switch (rc & ~TSS2_RC_LAYER_MASK) {
		case TSS2_BASE_RC_IO_ERROR:
		case TSS2_BASE_RC_NO_CONNECTION:
			code = KL_E_IO;
			break;
		case TSS2_BASE_RC_TRY_AGAIN:
			code = KL_E_TIMEOUT;
			break;
		case TSS2_BASE_RC_MEMORY:
			code = KL_E_NOMEM;
			break;
		default:
			break;
		}
	}
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kl_error_set(code, "%s: %s (rc 0x%08" PRIx32 ")", what, Tss2_RC_Decode(rc),
	                    (uint32_t)rc);
}
