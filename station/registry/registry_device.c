/* The registry's devices: provisioning begin and commit (behind the gates
 * of registry_gate.c), the other state changes and their history. The read
 * side is registry_query.c. See registry.h. */
#include "registry.h"
#include "registry_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

int kl_reg_history(kl_registry *r, int64_t device_id, int from, kl_device_state to,
                   int64_t tenant_id, const char *ek_hex, const char *reason, const char *actor,
                   int64_t when)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r,
	                        "INSERT INTO reg_device_history(device_id, from_state, to_state, "
	                        "tenant_id, ek_sha256, reason, actor, time) "
	                        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	                        &st);

	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, device_id);
	if (from >= 0)
		kl_db_bind_text(st, 2, kl_registry_state_name((kl_device_state)from));
	kl_db_bind_text(st, 3, kl_registry_state_name(to));
	kl_db_bind_int64(st, 4, tenant_id);
	if (ek_hex && *ek_hex)
		kl_db_bind_text(st, 5, ek_hex);
	if (reason && *reason)
		kl_db_bind_text(st, 6, reason);
	kl_db_bind_text(st, 7, actor);
	kl_db_bind_int64(st, 8, when);
	rc = kl_reg_step_done(r, st, "state history");
	return rc < 0 ? rc : 0;
}

int kl_reg_set_state_row(kl_registry *r, int64_t device_id, kl_device_state to, int64_t when)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	char sql[160];
	int rc;

	/* The column name comes from our own table of state names. */
	snprintf(sql, sizeof(sql),
	         "UPDATE reg_device SET state = ?2, state_time = ?3, %s_at = ?3 WHERE id = ?1",
	         kl_registry_state_name(to));
	if ((rc = kl_reg_prepare(r, sql, &st)) < 0)
		return rc;
	kl_db_bind_int64(st, 1, device_id);
	kl_db_bind_text(st, 2, kl_registry_state_name(to));
	kl_db_bind_int64(st, 3, when);
	rc = kl_reg_step_done(r, st, "set device state");
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "device %lld vanished", (long long)device_id);
	return rc < 0 ? rc : 0;
}

static int device_begin(kl_registry *r, const char *serial, const char *tenant, const char *ek,
                        const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_gate_result res;
	struct kl_reg_gate_ctx g;
	int64_t now = kl_reg_now(), id;
	int from = -1, rc;
	json_object *d;

	if ((rc = kl_reg_gate(r, serial, tenant, NULL, ek, false, &res, &g)) < 0)
		return rc;
	if (res.verdict != KL_GATE_OK)
		return kl_reg_gate_error(&res);

	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "tenant", json_object_new_string(res.tenant));
	json_object_object_add(d, "work_order", kl_reg_json_str(res.work_order));
	json_object_object_add(d, "ek_sha256", json_object_new_string(ek));
	if (res.resume) {
		rc = kl_reg_audit(r, actor, "registry.device.resume", d);
		return rc < 0 ? rc : 1;
	}

	if (g.have_device) {
		from = (int)g.dev.state;
		id = g.dev.id;
		if (!kl_registry_transition_allowed(g.dev.state, KL_DEVICE_PROVISIONING)) {
			json_object_put(d);
			return kl_error_set(KL_E_STATE,
			                    "device %s cannot go from %s to provisioning", serial,
			                    kl_registry_state_name(g.dev.state));
		}
		rc = kl_reg_prepare(r,
		                    "UPDATE reg_device SET ek_sha256 = ?2, tenant_id = ?3, "
		                    "work_order_id = ?4 WHERE id = ?1",
		                    &st);
	} else {
		id = 0;
		rc = kl_reg_prepare(r,
		                    "INSERT INTO reg_device(serial, ek_sha256, tenant_id, "
		                    "work_order_id, state, created, state_time) "
		                    "VALUES(?1, ?2, ?3, ?4, 'provisioning', ?5, ?5)",
		                    &st);
	}
	if (rc < 0) {
		json_object_put(d);
		return rc;
	}
	if (g.have_device)
		kl_db_bind_int64(st, 1, id);
	else
		kl_db_bind_text(st, 1, serial);
	kl_db_bind_text(st, 2, ek);
	kl_db_bind_int64(st, 3, g.tenant_id);
	if (g.pre.found)
		kl_db_bind_int64(st, 4, g.pre.work_order_id);
	if (!g.have_device)
		kl_db_bind_int64(st, 5, now);
	rc = kl_reg_step_done(r, st, "bind EK");
	if (rc == -KL_E_EXISTS)
		rc = kl_error_set(KL_E_EXISTS, "EK %s is bound to another device", ek);
	if (rc >= 0 && !g.have_device)
		id = kl_db_last_id(r->db);
	if (rc >= 0)
		rc = kl_reg_set_state_row(r, id, KL_DEVICE_PROVISIONING, now);
	if (rc >= 0)
		rc = kl_reg_history(r, id, from, KL_DEVICE_PROVISIONING, g.tenant_id, ek, NULL,
		                    actor, now);
	if (rc < 0) {
		json_object_put(d);
		return rc;
	}
	json_object_object_add(
	    d, "from",
	    kl_reg_json_str(from >= 0 ? kl_registry_state_name((kl_device_state)from) : NULL));
	return kl_reg_audit(r, actor, "registry.device.begin", d);
}

int kl_registry_device_begin(kl_registry *r, const char *serial, const char *tenant,
                             const unsigned char ek_sha256[32], const char *actor)
{
	char ek[65];
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	kl_registry_ek_to_hex(ek_sha256, ek);
	/* The gates run again inside the write transaction: between two
	 * stations sharing the registry, the first to get here wins. */
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, device_begin(r, serial, tenant, ek, actor));
}

static int device_commit(kl_registry *r, const char *serial, const char *evidence,
                         const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_device dev;
	int64_t tenant_id, now = kl_reg_now();
	char digest[65];
	bool found;
	json_object *d;
	int rc;

	if ((rc = kl_reg_device_find(r, serial, &dev, &tenant_id, &found)) < 0)
		return rc;
	if (!found)
		return kl_error_set(KL_E_NOTFOUND, "no device with serial '%s'", serial);
	if (dev.state != KL_DEVICE_PROVISIONING)
		return kl_error_set(KL_E_STATE,
		                    "device %s cannot go from %s to provisioned (only a "
		                    "provisioning device commits)",
		                    serial, kl_registry_state_name(dev.state));
	if ((rc = kl_sha256_hex(evidence, strlen(evidence), digest)) < 0 ||
	    (rc = kl_reg_set_state_row(r, dev.id, KL_DEVICE_PROVISIONED, now)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "INSERT INTO reg_evidence(device_id, evidence, created) "
	                         "VALUES(?1, ?2, ?3)",
	                         &st)) < 0)
		return rc;
	kl_db_bind_int64(st, 1, dev.id);
	kl_db_bind_text(st, 2, evidence);
	kl_db_bind_int64(st, 3, now);
	if ((rc = kl_reg_step_done(r, st, "store evidence")) < 0 ||
	    (rc = kl_reg_history(r, dev.id, KL_DEVICE_PROVISIONING, KL_DEVICE_PROVISIONED,
	                         tenant_id, dev.ek_sha256, NULL, actor, now)) < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "tenant", json_object_new_string(dev.tenant));
	json_object_object_add(d, "work_order", kl_reg_json_str(dev.work_order));
	json_object_object_add(d, "ek_sha256", json_object_new_string(dev.ek_sha256));
	/* The evidence itself is in reg_evidence; its digest goes into the
	 * hash chain, so an edit of the stored evidence shows. */
	json_object_object_add(d, "evidence_sha256", json_object_new_string(digest));
	return kl_reg_audit(r, actor, "registry.device.commit", d);
}

int kl_registry_device_commit(kl_registry *r, const char *serial, const char *evidence_json,
                              const char *actor)
{
	json_object *parsed;
	enum json_tokener_error jerr = json_tokener_success;
	bool is_object;
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	if (!evidence_json)
		return kl_error_set(KL_E_INVALID, "commit %s: no evidence", serial ? serial : "");
	parsed = json_tokener_parse_verbose(evidence_json, &jerr);
	is_object = parsed && json_object_is_type(parsed, json_type_object);
	json_object_put(parsed);
	if (!is_object)
		return kl_error_set(KL_E_INVALID, "commit %s: evidence is not a JSON object%s%s",
		                    serial ? serial : "", parsed ? "" : ": ",
		                    parsed ? "" : json_tokener_error_desc(jerr));
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, device_commit(r, serial ? serial : "", evidence_json, actor));
}

static int prereg_delete(kl_registry *r, const char *serial)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, "DELETE FROM reg_prereg WHERE serial = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial);
	rc = kl_reg_step_done(r, st, "end pre-registration");
	return rc < 0 ? rc : 0;
}

static int clear_ek(kl_registry *r, int64_t id)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, "UPDATE reg_device SET ek_sha256 = NULL WHERE id = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, id);
	rc = kl_reg_step_done(r, st, "release EK");
	return rc < 0 ? rc : 0;
}

static int set_state(kl_registry *r, const char *serial, kl_device_state to, const char *reason,
                     const char *actor)
{
	kl_registry_device dev;
	int64_t tenant_id, now = kl_reg_now();
	bool found, denied = false;
	json_object *d;
	int rc;

	if ((rc = kl_reg_device_find(r, serial, &dev, &tenant_id, &found)) < 0)
		return rc;
	if (!found)
		return kl_error_set(KL_E_NOTFOUND, "no device with serial '%s'", serial);
	if (!kl_registry_transition_allowed(dev.state, to))
		return kl_error_set(KL_E_STATE, "device %s cannot go from %s to %s", serial,
		                    kl_registry_state_name(dev.state), kl_registry_state_name(to));
	/* Back to preregistered: nothing is bound any more. Repurposed: the
	 * pre-registration belonged to the life that ended. */
	if (to == KL_DEVICE_PREREGISTERED && (rc = clear_ek(r, dev.id)) < 0)
		return rc;
	if (to == KL_DEVICE_REPURPOSED && (rc = prereg_delete(r, serial)) < 0)
		return rc;
	if ((rc = kl_reg_set_state_row(r, dev.id, to, now)) < 0 ||
	    (rc = kl_reg_history(r, dev.id, (int)dev.state, to, tenant_id, dev.ek_sha256, reason,
	                         actor, now)) < 0)
		return rc;
	/* Architecture "Lifecycle": a decommissioned or lost device's EK goes
	 * on the deny list (a repurposed one's does not). */
	if ((to == KL_DEVICE_DECOMMISSIONED || to == KL_DEVICE_LOST) && dev.ek_sha256[0]) {
		char why[400];

		snprintf(why, sizeof(why), "device %s %s: %s", serial, kl_registry_state_name(to),
		         reason);
		rc = kl_reg_deny_insert(r, dev.ek_sha256, why, actor, true);
		if (rc < 0)
			return rc;
		denied = true;
	}
	d = json_object_new_object();
	json_object_object_add(d, "serial", json_object_new_string(serial));
	json_object_object_add(d, "tenant", json_object_new_string(dev.tenant));
	json_object_object_add(d, "from",
	                       json_object_new_string(kl_registry_state_name(dev.state)));
	json_object_object_add(d, "to", json_object_new_string(kl_registry_state_name(to)));
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "ek_sha256", kl_reg_json_str(dev.ek_sha256));
	json_object_object_add(d, "ek_denied", json_object_new_boolean(denied));
	return kl_reg_audit(r, actor, "registry.device.state", d);
}

int kl_registry_device_set_state(kl_registry *r, const char *serial, kl_device_state state,
                                 const char *reason, const char *actor)
{
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0)
		return rc;
	if ((unsigned)state >= KL_DEVICE__MAX)
		return kl_error_set(KL_E_INVALID, "device state %d out of range", (int)state);
	if (state == KL_DEVICE_PROVISIONING || state == KL_DEVICE_PROVISIONED)
		return kl_error_set(KL_E_INVALID,
		                    "a device becomes %s through kl_registry_device_%s, which "
		                    "binds its EK and evidence",
		                    kl_registry_state_name(state),
		                    state == KL_DEVICE_PROVISIONING ? "begin" : "commit");
	if (!reason || !*reason)
		return kl_error_set(KL_E_INVALID, "device %s: a state change needs a reason",
		                    serial ? serial : "");
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, set_state(r, serial ? serial : "", state, reason, actor));
}
