/* Shared by the CA store's files (store*.c) and the CA code that writes
 * audit entries; private to ca/. Other modules reach the database through
 * kl_store_db (store.h). */
#ifndef KL_CA_STORE_INTERNAL_H
#define KL_CA_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include <json-c/json.h>

#include "kl_db.h"
#include "kl_error.h"
#include "store.h"

struct kl_store {
	kl_db *db;
	atomic_uint_fast64_t audit_failures; /* kl_store_audit_failures */
};

/* Runs one write in its own transaction unless the caller has one open. */
#define IN_TXN(s, expr)                                  \
	({                                               \
		int _r = kl_store_begin(s);              \
		if (_r == 0) {                           \
			_r = (expr);                     \
			if (_r < 0)                      \
				kl_store_rollback(s);    \
			else                             \
				_r = kl_store_commit(s); \
		}                                        \
		_r;                                      \
	})

int64_t kl_store_now(void);

/* Steps a statement that returns no rows: the rows it changed, or the
 * error with what it was doing in front ("mark issued: ..."). */
int kl_store_step_done(kl_db_stmt *st, const char *what) KL_MUST_CHECK;

/* Writes an audit entry whose detail is the JSON object (consumed; NULL,
 * as from a failed allocation, is -KL_E_NOMEM). The text is json-c's
 * plain form, keys in the order they were added. */
int kl_store_audit_json(kl_store *s, const char *actor, const char *action,
                        json_object *detail) KL_MUST_CHECK;
/* Adds key: value to the detail object d and returns d; when d or value is
 * NULL (out of memory) or the add fails, frees both and returns NULL, so
 * that a detail is written whole or not at all:
 *   d = kl_store_detail_add(json_object_new_object(), "serial", ...);
 *   d = kl_store_detail_add(d, "reason", ...);
 *   r = kl_store_audit_json(s, actor, action, d); */
json_object *kl_store_detail_add(json_object *d, const char *key, json_object *value);

#endif
