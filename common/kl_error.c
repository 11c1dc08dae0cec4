#include "kl_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

static _Thread_local kl_err last_code;
static _Thread_local char last_detail[KL_ERROR_DETAIL_MAX];

static const struct {
	const char *name;
	const char *text;
} err_table[KL_E__MAX] = {
	[KL_OK] = { "ok", "success" },
	[KL_E_NOMEM] = { "nomem", "out of memory" },
	[KL_E_INVALID] = { "invalid", "invalid argument or input" },
	[KL_E_IO] = { "io", "input/output error" },
	[KL_E_NOTFOUND] = { "notfound", "not found" },
	[KL_E_EXISTS] = { "exists", "already exists" },
	[KL_E_CRYPTO] = { "crypto", "cryptographic failure" },
	[KL_E_TPM] = { "tpm", "TPM error" },
	[KL_E_HSM] = { "hsm", "HSM error" },
	[KL_E_PIN] = { "pin", "PIN rejected" },
	[KL_E_DB] = { "db", "registry database error" },
	[KL_E_PERM] = { "perm", "not permitted" },
	[KL_E_STATE] = { "state", "wrong state for this operation" },
	[KL_E_UNSUPPORTED] = { "unsupported", "not supported" },
	[KL_E_TIMEOUT] = { "timeout", "timed out" },
	[KL_E_UNAVAILABLE] = { "unavailable", "device or session unavailable" },
};

static kl_err normalise(int code)
{
	/* Range check before negating: -INT_MIN does not exist. */
	if (code <= -KL_E__MAX || code >= KL_E__MAX)
		return KL_E__MAX;
	if (code < 0)
		code = -code;
	return (kl_err)code;
}

const char *kl_err_name(int code)
{
	kl_err c = normalise(code);

	return c == KL_E__MAX ? "unknown" : err_table[c].name;
}

const char *kl_err_str(int code)
{
	kl_err c = normalise(code);

	return c == KL_E__MAX ? "unknown error" : err_table[c].text;
}

__attribute__((format(printf, 2, 0))) static int set_v(kl_err code, const char *fmt, va_list ap)
{
	int saved = errno; /* so that %m in fmt reports the caller's errno */

	errno = saved;
	vsnprintf(last_detail, sizeof(last_detail), fmt, ap);
	last_code = code;
	return -(int)code;
}

int kl_error_set(kl_err code, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = set_v(code, fmt, ap);
	va_end(ap);
	return r;
}

int kl_error_set_ssl(kl_err code, const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	size_t len;
	int r;

	va_start(ap, fmt);
	r = set_v(code, fmt, ap);
	va_end(ap);

	/* Oldest first: the first reason is usually the root cause. */
	while ((e = ERR_get_error()) != 0) {
		len = strlen(last_detail);
		if (len + 3 >= sizeof(last_detail))
			continue; /* keep draining the queue */
		last_detail[len++] = ':';
		last_detail[len++] = ' ';
		last_detail[len] = '\0';
		ERR_error_string_n(e, last_detail + len, sizeof(last_detail) - len);
	}
	return r;
}

int kl_error_wrap(const char *fmt, ...)
{
	char old[KL_ERROR_DETAIL_MAX];
	va_list ap;
	int n;

	memcpy(old, last_detail, sizeof(old));
	va_start(ap, fmt);
	n = vsnprintf(last_detail, sizeof(last_detail), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n + 2 < sizeof(last_detail)) {
		size_t len = (size_t)n;

		last_detail[len++] = ':';
		last_detail[len++] = ' ';
		/* old is NUL-terminated; copy what fits. */
		size_t room = sizeof(last_detail) - len - 1;
		size_t olen = strnlen(old, sizeof(old));
		if (olen > room)
			olen = room;
		memcpy(last_detail + len, old, olen);
		last_detail[len + olen] = '\0';
	}
	if (last_code == KL_OK)
		last_code = KL_E_INVALID;
	return -(int)last_code;
}

kl_err kl_error_code(void)
{
	return last_code;
}

const char *kl_error_detail(void)
{
	return last_detail;
}

void kl_error_clear(void)
{
	last_code = KL_OK;
	last_detail[0] = '\0';
}
