/* Reading evidence records in the engine and lifecycle tests: the newest
 * record of a device, and members checked by type, length and order (a
 * missing or mistyped member fails the test with the record). Include
 * after cmocka.h. */
#ifndef KL_EVIDENCE_TEST_H
#define KL_EVIDENCE_TEST_H

#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "kl_hex.h"

/* A kl_registry_evidence_fn keeping the newest record, parsed, in *ctx. */
static inline int newest_evidence(void *ctx, const char *json, int64_t created)
{
	json_object **o = ctx;

	(void)created;
	json_object_put(*o);
	*o = json_tokener_parse(json);
	return 0;
}

static inline const char *ev_str(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		fail_msg("evidence: no string \"%s\" in %s", key, json_object_to_json_string(o));
	return json_object_get_string(v);
}

static inline json_object *ev_obj(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_object))
		fail_msg("evidence: no object \"%s\" in %s", key, json_object_to_json_string(o));
	return v;
}

/* A hex member of n bytes (n 0: any even length but empty), decoded into
 * out when not NULL (4096 bytes at most); returns the byte count. */
static inline size_t ev_hex(json_object *o, const char *key, size_t n, unsigned char *out)
{
	const char *h = ev_str(o, key);
	size_t len = strlen(h);
	unsigned char buf[4096];

	assert_true(len > 0 && len % 2 == 0 && len / 2 <= sizeof(buf));
	if (n)
		assert_int_equal(len, 2 * n);
	assert_int_equal(kl_hex_decode(h, len / 2, out ? out : buf), 0);
	return len / 2;
}

/* The members of o, exactly these and in this order. */
static inline void ev_keys(json_object *o, const char *const *keys, size_t n)
{
	size_t i = 0;

	json_object_object_foreach(o, key, val)
	{
		(void)val;
		if (i >= n || strcmp(key, keys[i]) != 0)
			fail_msg("evidence: member %zu is \"%s\": %s", i, key,
			         json_object_to_json_string(o));
		i++;
	}
	assert_int_equal(i, n);
}

#endif
