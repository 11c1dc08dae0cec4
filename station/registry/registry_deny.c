/* The registry's EK deny list. See registry.h. */
#include "registry.h"
#include "registry_internal.h"

#include <stdio.h>
#include <string.h>

#include "kl_cleanup.h"
#include "kl_error.h"

int kl_reg_deny_insert(kl_registry *r, const char *ek_hex, const char *reason, const char *actor,
                       bool keep_existing)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	json_object *d;
	int rc;

	rc = kl_reg_prepare(r,
	                    keep_existing
	                        ? "INSERT OR IGNORE INTO reg_deny(ek_sha256, reason, actor, time) "
	                          "VALUES(?1, ?2, ?3, ?4)"
	                        : "INSERT INTO reg_deny(ek_sha256, reason, actor, time) "
	                          "VALUES(?1, ?2, ?3, ?4)",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, ek_hex);
	kl_db_bind_text(st, 2, reason ? reason : "");
	kl_db_bind_text(st, 3, actor);
	kl_db_bind_int64(st, 4, kl_reg_now());
	rc = kl_reg_step_done(r, st, "deny-list EK");
	if (rc == -KL_E_EXISTS)
		return kl_error_set(KL_E_EXISTS, "EK %s is on the deny list already", ek_hex);
	if (rc <= 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "ek_sha256", json_object_new_string(ek_hex));
	json_object_object_add(d, "reason", kl_reg_json_str(reason));
	rc = kl_reg_audit(r, actor, "registry.deny.add", d);
	return rc < 0 ? rc : 1;
}

int kl_registry_deny_add(kl_registry *r, const unsigned char ek_sha256[32], const char *reason,
                         const char *actor)
{
	char hex[65];
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	if (!reason || !*reason)
		return kl_error_set(KL_E_INVALID, "deny list: a reason is required");
	kl_registry_ek_to_hex(ek_sha256, hex);
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	rc = kl_reg_finish(r, kl_reg_deny_insert(r, hex, reason, actor, false));
	return rc < 0 ? rc : 0;
}

static int deny_remove(kl_registry *r, const char *hex, const char *reason, const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_deny old;
	unsigned char ek[32];
	json_object *d;
	int rc;

	if ((rc = kl_registry_ek_from_hex(hex, ek)) < 0 ||
	    (rc = kl_registry_deny_check(r, ek, &old)) < 0)
		return rc;
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "EK %s is not on the deny list", hex);
	if ((rc = kl_reg_prepare(r, "DELETE FROM reg_deny WHERE ek_sha256 = ?1", &st)) < 0)
		return rc;
	kl_db_bind_text(st, 1, hex);
	if ((rc = kl_reg_step_done(r, st, "remove from deny list")) < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "ek_sha256", json_object_new_string(hex));
	json_object_object_add(d, "reason", kl_reg_json_str(reason));
	json_object_object_add(d, "denied_for", kl_reg_json_str(old.reason));
	json_object_object_add(d, "denied_by", kl_reg_json_str(old.actor));
	return kl_reg_audit(r, actor, "registry.deny.remove", d);
}

int kl_registry_deny_remove(kl_registry *r, const unsigned char ek_sha256[32], const char *reason,
                            const char *actor)
{
	char hex[65];
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	if (!reason || !*reason)
		return kl_error_set(KL_E_INVALID, "deny list: a reason is required");
	kl_registry_ek_to_hex(ek_sha256, hex);
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, deny_remove(r, hex, reason, actor));
}

int kl_registry_deny_check(kl_registry *r, const unsigned char ek_sha256[32], kl_registry_deny *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_deny e = { 0 };
	int rc;

	kl_registry_ek_to_hex(ek_sha256, e.ek_sha256);
	rc =
	    kl_reg_prepare(r, "SELECT reason, actor, time FROM reg_deny WHERE ek_sha256 = ?1", &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, e.ek_sha256);
	rc = kl_db_step(st);
	if (rc == 0)
		return 0;
	if (rc != 1)
		return kl_reg_db_error(r, "check deny list");
	kl_db_column_copy(st, 0, e.reason, sizeof(e.reason));
	kl_db_column_copy(st, 1, e.actor, sizeof(e.actor));
	e.time = kl_db_column_int64(st, 2);
	if (ret)
		*ret = e;
	return 1;
}
