/* Keyline error reporting.
 *
 * Functions return 0 on success or a negative kl_err code. The code says what
 * kind of failure happened; a thread-local detail string says exactly what,
 * and keeps the raw code of the library that failed (TSS2_RC, CK_RV, the
 * OpenSSL reason) so that nothing is lost when the error crosses a layer. */
#ifndef KL_ERROR_H
#define KL_ERROR_H

#include <stddef.h>

typedef enum kl_err {
	KL_OK = 0,
	KL_E_NOMEM = 1,        /* allocation failed */
	KL_E_INVALID = 2,      /* bad argument or malformed input */
	KL_E_IO = 3,           /* file, socket or process failure */
	KL_E_NOTFOUND = 4,     /* a named thing does not exist */
	KL_E_EXISTS = 5,       /* a thing that must be unique exists already */
	KL_E_CRYPTO = 6,       /* OpenSSL failure or a signature/chain that does not verify */
	KL_E_TPM = 7,          /* the TPM or the TSS returned an error */
	KL_E_HSM = 8,          /* the PKCS#11 module returned an error */
	KL_E_PIN = 9,          /* PIN incorrect, locked or missing */
	KL_E_DB = 10,          /* the registry database failed */
	KL_E_PERM = 11,        /* not allowed by policy or role */
	KL_E_STATE = 12,       /* the object is in the wrong state for the operation */
	KL_E_UNSUPPORTED = 13, /* algorithm, mechanism or feature not supported */
	KL_E_TIMEOUT = 14,     /* a peer did not answer in time */
	KL_E_UNAVAILABLE = 15, /* a device, token, session or link went away (recovery may help) */
	KL_E__MAX
} kl_err;

/* Records the error for this thread and returns -code, so that callers can
 * write `return kl_error_set(KL_E_IO, "open %s: %m", path);`. The detail is
 * truncated at KL_ERROR_DETAIL_MAX bytes. Never put a secret in it. */
#define KL_ERROR_DETAIL_MAX 1024
/* On a function whose error the caller must look at and decide on. gcc
 * does not let a (void) cast silence it: a site that goes on whatever the
 * result says so in code (see kl_store_audit_noted). */
#define KL_MUST_CHECK __attribute__((warn_unused_result))

/* Runs expr and goes on whatever it returns: for best-effort work (cleanup
 * after a failure, a kill that may find nothing). Say why beside it. */
#define KL_BEST_EFFORT(expr)      \
	do {                      \
		if ((expr) < 0) { \
		}                 \
	} while (0)

int kl_error_set(kl_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like kl_error_set, and appends the reasons on OpenSSL's error queue (which
 * it then clears): "...: error:0480006C:PEM routines::no start line". */
int kl_error_set_ssl(kl_err code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current detail with more context ("load CA: " + detail) and
 * returns the current negative code; with no error recorded it returns
 * -KL_E_INVALID, never success. */
int kl_error_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last error recorded on this thread: its code (KL_OK when none) and its
 * detail ("" when none). The string stays valid until the next kl_error_*
 * call on this thread. */
kl_err kl_error_code(void);
const char *kl_error_detail(void);
void kl_error_clear(void);

/* A short stable name for a code ("tpm", "pin", ...), for machine-readable
 * reasons, and a sentence for people. Codes may be given negative. */
const char *kl_err_name(int code);
const char *kl_err_str(int code);

#endif
