/* Scoped cleanup, in the manner of systemd's _cleanup_ and GLib's g_autoptr.
 *
 *   _cleanup_(EVP_PKEY_freep) EVP_PKEY *key = NULL;
 *   ...
 *   *ret = TAKE_PTR(key);   // ownership handed to the caller
 *
 * Every free function used here accepts NULL. Types of a vendor library are
 * given their cleanup helpers in the one module that wraps that library
 * (ESAPI in station/, PKCS#11 in hsm/); OpenSSL is used everywhere, so its
 * helpers live here. */
#ifndef KL_CLEANUP_H
#define KL_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "kl_secret.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

/* Returns *pp and sets it to NULL, so the cleanup handler leaves it alone. */
#define TAKE_PTR(p)                         \
	({                                  \
		__typeof__(p) *_pp_ = &(p); \
		__typeof__(p) _v_ = *_pp_;  \
		*_pp_ = NULL;               \
		_v_;                        \
	})

#define KL_DEFINE_CLEANUP(type, func)        \
	static inline void func##p(type **p) \
	{                                    \
		if (*p)                      \
			func(*p);            \
	}

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

KL_DEFINE_CLEANUP(EVP_PKEY, EVP_PKEY_free)
KL_DEFINE_CLEANUP(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
KL_DEFINE_CLEANUP(EVP_MD_CTX, EVP_MD_CTX_free)
KL_DEFINE_CLEANUP(X509, X509_free)
KL_DEFINE_CLEANUP(X509_REQ, X509_REQ_free)
KL_DEFINE_CLEANUP(X509_CRL, X509_CRL_free)
KL_DEFINE_CLEANUP(X509_STORE, X509_STORE_free)
KL_DEFINE_CLEANUP(X509_STORE_CTX, X509_STORE_CTX_free)
KL_DEFINE_CLEANUP(X509_NAME, X509_NAME_free)
KL_DEFINE_CLEANUP(BIO, BIO_free_all)
KL_DEFINE_CLEANUP(BIGNUM, BN_free)
KL_DEFINE_CLEANUP(BN_CTX, BN_CTX_free)
KL_DEFINE_CLEANUP(kl_secret, kl_secret_free)

static inline void sk_X509_pop_freep(STACK_OF(X509) * *sk)
{
	if (*sk)
		sk_X509_pop_free(*sk, X509_free);
}

#endif
