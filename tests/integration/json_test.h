/* The small helpers of the tests that talk to a station: members of a
 * json-c answer, and a monotonic clock for waits that are bounded against
 * hanging (never a timing check). Include after cmocka.h. */
#ifndef KL_JSON_TEST_H
#define KL_JSON_TEST_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

/* o[key], or NULL when o is NULL or has no such member. */
static inline json_object *jget(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* o[key] as a string; "" when missing or null. */
static inline const char *jstr(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v && json_object_get_string(v) ? json_object_get_string(v) : "";
}

/* o[key] as an integer; 0 when missing. */
static inline int64_t jint(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v ? json_object_get_int64(v) : 0;
}

/* o[key] as a boolean; false when missing. */
static inline bool jbool(json_object *o, const char *key)
{
	json_object *v = jget(o, key);

	return v && json_object_get_boolean(v);
}

/* o as one line, for failure messages. */
static inline const char *dump(json_object *o)
{
	return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "(null)";
}

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#endif
