/* Logging for Keyline programs.
 *
 * Libraries do not log: they return errors. Programs (the daemon, the CLI,
 * test helpers) log once, where they handle the error. Each message belongs to
 * a module ("hsm", "tpm", "ca", "station", "floor", ...). The level per module
 * comes from KEYLINE_LOG, in the manner of tpm2-tss's TSS2_LOG:
 *
 *   KEYLINE_LOG=all+warn,hsm+debug,tpm+none
 *
 * Levels: none, error, warn, info, debug. The default is info. Messages go to
 * stderr, one line each, with a UTC timestamp. Never log a secret. */
#ifndef KL_LOG_H
#define KL_LOG_H

#include <stdarg.h>

typedef enum kl_log_level {
	KL_LOG_NONE = 0,
	KL_LOG_ERROR = 1,
	KL_LOG_WARN = 2,
	KL_LOG_INFO = 3,
	KL_LOG_DEBUG = 4,
} kl_log_level;

/* Parses a KEYLINE_LOG-style specification; NULL reads the environment.
 * Returns 0, or -KL_E_INVALID naming the bad item (the previous filter stays). */
int kl_log_configure(const char *spec);

/* The level in force for a module. */
kl_log_level kl_log_level_for(const char *module);

void kl_log(kl_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kl_logv(kl_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define kl_log_error(m, ...) kl_log(KL_LOG_ERROR, (m), __VA_ARGS__)
#define kl_log_warn(m, ...)  kl_log(KL_LOG_WARN, (m), __VA_ARGS__)
#define kl_log_info(m, ...)  kl_log(KL_LOG_INFO, (m), __VA_ARGS__)
#define kl_log_debug(m, ...) kl_log(KL_LOG_DEBUG, (m), __VA_ARGS__)

#endif
