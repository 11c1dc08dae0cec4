/* The registry's part of the device lifecycle: sanitization records and
 * evidence added after provisioning. See registry_life.h. */
#include "registry_life.h"
#include "registry_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

/* Versioned migrations of the "lifecycle" module. Never edit a released
 * one: add more. */
static const char *const life_migrations[] = {
	/* 1 */
	"CREATE TABLE reg_sanitization("
	"  id INTEGER PRIMARY KEY,"
	"  device_id INTEGER NOT NULL REFERENCES reg_device(id),"
	"  state TEXT NOT NULL CHECK(state IN ('open','closed')),"
	"  actor TEXT NOT NULL,"
	"  opened INTEGER NOT NULL,"
	"  closed INTEGER,"
	"  record TEXT);"
	"CREATE INDEX reg_sanitization_device ON reg_sanitization(device_id, id);"
	/* At most one open record per device. */
	"CREATE UNIQUE INDEX reg_sanitization_open ON reg_sanitization(device_id)"
	"  WHERE state = 'open';",
};

static int ensure_schema(kl_registry *r)
{
	return kl_db_migrate(r->db, "lifecycle", life_migrations,
	                     sizeof(life_migrations) / sizeof(life_migrations[0]));
}

static int device_id(kl_registry *r, const char *serial, int64_t *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, "SELECT id FROM reg_device WHERE serial = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial ? serial : "");
	rc = kl_db_step(st);
	if (rc == 1) {
		*ret = kl_db_column_int64(st, 0);
		return 0;
	}
	if (rc != 0)
		return kl_reg_db_error(r, "device id");
	return kl_error_set(KL_E_NOTFOUND, "no device with serial '%s'", serial ? serial : "");
}

static int pending(kl_registry *r, int64_t dev, int64_t *id)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(
	    r, "SELECT id FROM reg_sanitization WHERE device_id = ?1 AND state = 'open'", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, dev);
	rc = kl_db_step(st);
	if (rc == 1) {
		*id = kl_db_column_int64(st, 0);
		return 1;
	}
	return rc == 0 ? 0 : kl_reg_db_error(r, "open sanitization record");
}

static int sanitize_open(kl_registry *r, const char *serial, const char *actor, int64_t *id)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t dev, now = kl_reg_now();
	json_object *d;
	int rc;

	if ((rc = device_id(r, serial, &dev)) < 0)
		return rc;
	if ((rc = pending(r, dev, id)) != 0)
		return rc;
	rc = kl_reg_prepare(r,
	                    "INSERT INTO reg_sanitization(device_id, state, actor, opened) "
	                    "VALUES(?1, 'open', ?2, ?3)",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, dev);
	kl_db_bind_text(st, 2, actor);
	kl_db_bind_int64(st, 3, now);
	if ((rc = kl_reg_step_done(r, st, "open sanitization record")) < 0)
		return rc;
	*id = kl_db_last_id(r->db);
	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "record_id", json_object_new_int64(*id));
	rc = kl_reg_audit(r, actor, "registry.sanitize.open", d);
	return rc < 0 ? rc : 0;
}

int kl_registry_sanitize_open(kl_registry *r, const char *serial, const char *actor, int64_t *id)
{
	int64_t got = 0;
	int rc;

	if (!r || !id)
		return kl_error_set(KL_E_INVALID, "sanitization record: no registry");
	if ((rc = kl_reg_check_actor(actor)) < 0 || (rc = ensure_schema(r)) < 0 ||
	    (rc = kl_store_begin(r->store)) < 0)
		return rc;
	rc = kl_reg_finish(r, sanitize_open(r, serial, actor, &got));
	if (rc >= 0)
		*id = got;
	return rc;
}

int kl_registry_sanitize_pending(kl_registry *r, const char *serial, int64_t *id)
{
	int64_t dev, got = 0;
	int rc;

	if (!r || !id)
		return kl_error_set(KL_E_INVALID, "sanitization record: no registry");
	if ((rc = ensure_schema(r)) < 0 || (rc = device_id(r, serial, &dev)) < 0)
		return rc;
	rc = pending(r, dev, &got);
	if (rc == 1)
		*id = got;
	return rc;
}

static int sanitize_close(kl_registry *r, int64_t id, const char *record, const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	char digest[65], serial[KL_REGISTRY_NAME_MAX + 1] = "";
	json_object *d;
	int rc;

	if ((rc = kl_sha256_hex(record, strlen(record), digest)) < 0)
		return rc;
	rc = kl_reg_prepare(r,
	                    "SELECT d.serial FROM reg_sanitization s JOIN reg_device d "
	                    "ON d.id = s.device_id WHERE s.id = ?1 AND s.state = 'open'",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, id);
	rc = kl_db_step(st);
	if (rc == 1)
		kl_db_column_copy(st, 0, serial, sizeof(serial));
	else if (rc == 0)
		return kl_error_set(KL_E_STATE, "sanitization record %lld is not open",
		                    (long long)id);
	else
		return kl_reg_db_error(r, "sanitization record");
	kl_db_stmt_free(st);
	st = NULL;
	rc = kl_reg_prepare(r,
	                    "UPDATE reg_sanitization SET state = 'closed', closed = ?2, "
	                    "record = ?3 WHERE id = ?1",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, id);
	kl_db_bind_int64(st, 2, kl_reg_now());
	kl_db_bind_text(st, 3, record);
	if ((rc = kl_reg_step_done(r, st, "close sanitization record")) < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "record_id", json_object_new_int64(id));
	/* The record is in reg_sanitization; its digest goes into the hash
	 * chain, so an edit of the stored record shows. */
	json_object_object_add(d, "record_sha256", json_object_new_string(digest));
	rc = kl_reg_audit(r, actor, "registry.sanitize.close", d);
	return rc < 0 ? rc : 0;
}

int kl_registry_sanitize_close(kl_registry *r, int64_t id, const char *record_json,
                               const char *actor)
{
	int rc;

	if (!r || !record_json || !*record_json)
		return kl_error_set(KL_E_INVALID, "sanitization record: nothing to store");
	if ((rc = kl_reg_check_actor(actor)) < 0 || (rc = ensure_schema(r)) < 0 ||
	    (rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, sanitize_close(r, id, record_json, actor));
}

int kl_registry_sanitize_get(kl_registry *r, const char *serial, int64_t id, char **json)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t dev;
	char *copy;
	int rc;

	if (!r || !json)
		return kl_error_set(KL_E_INVALID, "sanitization record: no registry");
	if ((rc = ensure_schema(r)) < 0 || (rc = device_id(r, serial, &dev)) < 0)
		return rc;
	rc = kl_reg_prepare(r,
	                    id > 0 ? "SELECT record FROM reg_sanitization WHERE device_id = ?1 "
	                             "AND state = 'closed' AND id = ?2"
	                           : "SELECT record FROM reg_sanitization WHERE device_id = ?1 "
	                             "AND state = 'closed' ORDER BY id DESC LIMIT 1",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, dev);
	if (id > 0)
		kl_db_bind_int64(st, 2, id);
	rc = kl_db_step(st);
	if (rc == 0) {
		if (id > 0)
			return kl_error_set(KL_E_NOTFOUND,
			                    "device %s has no sanitization record %lld", serial,
			                    (long long)id);
		return kl_error_set(KL_E_NOTFOUND, "device %s has no sanitization record", serial);
	}
	if (rc != 1)
		return kl_reg_db_error(r, "sanitization record");
	copy = strdup(kl_db_column_text(st, 0));
	if (!copy)
		return kl_error_set(KL_E_NOMEM, "sanitization record: out of memory");
	*json = copy;
	return 0;
}

static int evidence_add(kl_registry *r, const char *serial, const char *evidence, const char *kind,
                        const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t dev, now = kl_reg_now();
	char digest[65];
	json_object *d;
	int rc;

	if ((rc = device_id(r, serial, &dev)) < 0 ||
	    (rc = kl_sha256_hex(evidence, strlen(evidence), digest)) < 0)
		return rc;
	rc = kl_reg_prepare(
	    r, "INSERT INTO reg_evidence(device_id, evidence, created) VALUES(?1, ?2, ?3)", &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, dev);
	kl_db_bind_text(st, 2, evidence);
	kl_db_bind_int64(st, 3, now);
	if ((rc = kl_reg_step_done(r, st, "store evidence")) < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "kind", kl_reg_json_str(kind));
	json_object_object_add(d, "evidence_sha256", json_object_new_string(digest));
	rc = kl_reg_audit(r, actor, "registry.device.evidence", d);
	return rc < 0 ? rc : 0;
}

int kl_registry_evidence_add(kl_registry *r, const char *serial, const char *evidence_json,
                             const char *actor)
{
	char kind[64] = "";
	json_object *parsed, *k;
	bool is_object;
	int rc;

	if (!r || !evidence_json)
		return kl_error_set(KL_E_INVALID, "evidence: nothing to store");
	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	parsed = json_tokener_parse(evidence_json);
	is_object = parsed && json_object_is_type(parsed, json_type_object);
	if (is_object && json_object_object_get_ex(parsed, "kind", &k))
		snprintf(kind, sizeof(kind), "%s", json_object_get_string(k));
	json_object_put(parsed);
	if (!is_object)
		return kl_error_set(KL_E_INVALID, "evidence of %s is not a JSON object",
		                    serial ? serial : "");
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, evidence_add(r, serial ? serial : "", evidence_json, kind, actor));
}
