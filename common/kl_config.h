/* Keyline configuration files: INI-style text.
 *
 *   # comment
 *   [hsm]
 *   module = /usr/lib/softhsm/libsofthsm2.so
 *   pin = file:/var/lib/keyline/secrets/user.pin
 *
 * Keys are looked up as "section.key". Values run to the end of the line,
 * surrounding blanks removed; no quoting, no continuation lines. A value
 * "${home}" anywhere is replaced by the directory the file lives in. */
#ifndef KL_CONFIG_H
#define KL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "kl_error.h"

typedef struct kl_config kl_config;

/* Parses a file. Errors name the file and line. */
int kl_config_load(const char *path, kl_config **ret) KL_MUST_CHECK;
int kl_config_parse(const char *text, const char *origin, const char *home,
                    kl_config **ret) KL_MUST_CHECK;
void kl_config_free(kl_config *c);

/* The value of "section.key", or def when absent. */
const char *kl_config_get(const kl_config *c, const char *key, const char *def);
/* Like kl_config_get, but a missing key is an error naming file and key. */
int kl_config_require(const kl_config *c, const char *key, const char **ret) KL_MUST_CHECK;
int kl_config_int(const kl_config *c, const char *key, long def, long min, long max,
                  long *ret) KL_MUST_CHECK;
int kl_config_bool(const kl_config *c, const char *key, bool def, bool *ret) KL_MUST_CHECK;

/* Iterates keys in file order; returns false at the end. */
bool kl_config_next(const kl_config *c, size_t *iter, const char **key, const char **value);

#endif
