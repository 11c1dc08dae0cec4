/* Secret buffers: PINs, TPM auth values, seeds.
 *
 * A kl_secret owns a locked (mlock, best effort), non-dumpable allocation that
 * is wiped with OPENSSL_cleanse when it is freed. Secrets are never logged and
 * never written to disk by Keyline. */
#ifndef KL_SECRET_H
#define KL_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "kl_error.h"

typedef struct kl_secret {
	unsigned char *data; /* len bytes, followed by one NUL for C APIs */
	size_t len;
	size_t cap;
} kl_secret;

#define KL_SECRET_MAX 4096

/* A zeroed secret of len bytes (plus the NUL). */
int kl_secret_new(size_t len, kl_secret **ret) KL_MUST_CHECK;

/* A copy of len bytes of p. The caller still owns p (and should wipe it). */
int kl_secret_from_bytes(const void *p, size_t len, kl_secret **ret) KL_MUST_CHECK;

/* Reads a whole file (at most KL_SECRET_MAX bytes); one trailing "\n" or
 * "\r\n" is dropped. An empty file is an error. Refuses a file that others
 * may read, since a PIN file must be private. */
int kl_secret_from_file(const char *path, kl_secret **ret) KL_MUST_CHECK;

/* Takes the value of an environment variable, then wipes the variable's
 * storage and unsets it so that child processes do not inherit it. */
int kl_secret_from_env(const char *name, kl_secret **ret) KL_MUST_CHECK;

/* Asks on /dev/tty with echo off. Fails with -KL_E_IO when there is no tty. */
int kl_secret_from_prompt(const char *prompt, kl_secret **ret) KL_MUST_CHECK;

/* Parses a source spec: "file:PATH", "env:NAME" or "prompt". */
int kl_secret_from_spec(const char *spec, const char *prompt, kl_secret **ret) KL_MUST_CHECK;

/* Constant-time equality. */
bool kl_secret_equal(const kl_secret *a, const kl_secret *b);

/* Wipes and frees; accepts NULL. */
void kl_secret_free(kl_secret *s);

#endif
