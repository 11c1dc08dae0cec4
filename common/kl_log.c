#include "kl_log.h"
#include "kl_error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define KL_LOG_MAX_RULES  16
#define KL_LOG_MODULE_MAX 24

struct rule {
	char module[KL_LOG_MODULE_MAX];
	kl_log_level level;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static struct rule rules[KL_LOG_MAX_RULES];
static size_t n_rules;
static kl_log_level default_level = KL_LOG_INFO;

static const char *const level_names[] = { "none", "error", "warn", "info", "debug" };

static int parse_level(const char *s, size_t len, kl_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strlen(level_names[i]) == len && strncasecmp(s, level_names[i], len) == 0) {
			*out = (kl_log_level)i;
			return 0;
		}
	}
	return -1;
}

static void configure_from_env(void);

int kl_log_configure(const char *spec)
{
	struct rule parsed[KL_LOG_MAX_RULES];
	kl_log_level def = KL_LOG_INFO;
	size_t n = 0;
	const char *p;
	bool explicit_spec = spec != NULL;

	if (!spec)
		spec = getenv("KEYLINE_LOG");
	if (!spec || !*spec)
		spec = "all+info";

	for (p = spec; *p;) {
		const char *end = strchr(p, ',');
		const char *plus;
		size_t len = end ? (size_t)(end - p) : strlen(p);
		kl_log_level lvl;

		plus = memchr(p, '+', len);
		if (!plus || plus == p || (size_t)(plus - p) >= KL_LOG_MODULE_MAX ||
		    parse_level(plus + 1, len - (size_t)(plus - p) - 1, &lvl) < 0)
			return kl_error_set(KL_E_INVALID,
			                    "KEYLINE_LOG: bad item '%.*s' (want module+level, "
			                    "level one of none,error,warn,info,debug)",
			                    (int)len, p);
		if ((size_t)(plus - p) == 3 && strncmp(p, "all", 3) == 0) {
			def = lvl;
		} else {
			if (n == KL_LOG_MAX_RULES)
				return kl_error_set(KL_E_INVALID,
				                    "KEYLINE_LOG: more than %d modules",
				                    KL_LOG_MAX_RULES);
			memcpy(parsed[n].module, p, (size_t)(plus - p));
			parsed[n].module[plus - p] = '\0';
			parsed[n].level = lvl;
			n++;
		}
		p += len;
		if (*p == ',')
			p++;
	}

	/* An explicit filter wins over the environment read on first use. */
	if (explicit_spec)
		pthread_once(&log_once, configure_from_env);
	pthread_mutex_lock(&log_lock);
	memcpy(rules, parsed, n * sizeof(parsed[0]));
	n_rules = n;
	default_level = def;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

static void configure_from_env(void)
{
	if (kl_log_configure(NULL) < 0)
		fprintf(stderr, "keyline: %s; using all+info\n", kl_error_detail());
}

kl_log_level kl_log_level_for(const char *module)
{
	kl_log_level lvl;

	pthread_once(&log_once, configure_from_env);
	pthread_mutex_lock(&log_lock);
	lvl = default_level;
	for (size_t i = 0; module && i < n_rules; i++) {
		if (strcmp(rules[i].module, module) == 0) {
			lvl = rules[i].level;
			break;
		}
	}
	pthread_mutex_unlock(&log_lock);
	return lvl;
}

void kl_logv(kl_log_level level, const char *module, const char *fmt, va_list ap)
{
	char msg[2048];
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	if (level == KL_LOG_NONE || level > kl_log_level_for(module))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line keeps lines from different threads whole. */
	fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", stamp, ts.tv_nsec / 1000000L, level_names[level],
	        module ? module : "-", msg);
}

void kl_log(kl_log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kl_logv(level, module, fmt, ap);
	va_end(ap);
}
