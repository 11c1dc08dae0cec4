/* RFC 7512 PKCS#11 URIs: how keys and tokens are named in configuration and
 * in the audit log, e.g.
 *
 *   pkcs11:token=keyline-ca;object=issuing-ca;type=private
 *   pkcs11:token=HSM%20A;id=%01%02%03?module-path=/usr/lib/vendor.so&pin-source=file:/etc/pin
 *
 * Only the parts Keyline uses are kept; other path attributes (manufacturer,
 * model, serial, slot-*, library-*) and query attributes (module-name,
 * vendor ones) are checked for syntax and encoding, then ignored. A PIN in
 * the URI (pin-value) is refused: PINs come from files, the environment or a
 * prompt. p11-kit decodes the values (uri.c says what is checked before). */
#ifndef KL_HSM_URI_H
#define KL_HSM_URI_H

#include <limits.h>
#include <stddef.h>

#include "kl_error.h"

typedef struct kl_pkcs11_uri {
	char token[33];             /* token label without its blank padding, "" when absent */
	char object[129];           /* CKA_LABEL of the key, "" when absent */
	unsigned char id[64];       /* CKA_ID */
	size_t id_len;              /* 0 when absent */
	char type[16];              /* "private", "public", "cert", "data", "secret-key" or "" */
	char module_path[PATH_MAX]; /* query module-path, "" when absent */
	char pin_source[PATH_MAX];  /* query pin-source, "" when absent */
} kl_pkcs11_uri;

/* Parses uri. Errors name the offending attribute; a type other than those
 * above (or p11-kit's "secretkey") is refused. */
int kl_pkcs11_uri_parse(const char *uri, kl_pkcs11_uri *ret) KL_MUST_CHECK;

/* Formats token/object/id as a URI (percent-encoding what needs it). */
int kl_pkcs11_uri_format(const kl_pkcs11_uri *u, char *out, size_t size) KL_MUST_CHECK;

#endif
