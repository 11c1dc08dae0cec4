/* The registry's devices: the provisioning gates, begin and commit, the
 * other state changes, and the read side (get, list, history, evidence,
 * certificates). See registry.h. */
#include "registry.h"
#include "registry_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

static const char *const verdict_names[KL_GATE__MAX] = {
	[KL_GATE_OK] = "ok",
	[KL_GATE_NOT_PREREGISTERED] = "not_preregistered",
	[KL_GATE_TENANT_MISMATCH] = "tenant_mismatch",
	[KL_GATE_EK_MISMATCH] = "ek_not_expected",
	[KL_GATE_EK_DENIED] = "ek_denied",
	[KL_GATE_EK_BOUND] = "ek_bound",
	[KL_GATE_SERIAL_BOUND] = "serial_bound",
	[KL_GATE_QUOTA_EXHAUSTED] = "quota_exhausted",
	[KL_GATE_ALREADY_PROVISIONED] = "already_provisioned",
	[KL_GATE_DEVICE_STATE] = "device_state",
};

const char *kl_registry_verdict_name(kl_gate_verdict v)
{
	return (unsigned)v < KL_GATE__MAX ? verdict_names[v] : "unknown";
}

/* Looks a device up; 0 and *found = false when there is none. */
static int device_find(kl_registry *r, const char *serial, kl_registry_device *d,
                       int64_t *tenant_id, bool *found)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, KL_REG_DEVICE_SELECT "WHERE d.serial = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial);
	rc = kl_db_step(st);
	*found = rc == 1;
	if (rc == 0)
		return 0;
	if (rc != 1)
		return kl_reg_db_error(r, "get device");
	kl_reg_device_from_row(st, d);
	if (tenant_id)
		*tenant_id = kl_db_column_int64(st, 16);
	return 0;
}

/* A pre-registration entry with its work order and tenant. */
struct prereg {
	bool found;
	int64_t work_order_id, tenant_id;
	int64_t quota; /* -1: none */
	char work_order[KL_REGISTRY_NAME_MAX + 1];
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char ek[65];
};

static int prereg_find(kl_registry *r, const char *serial, struct prereg *p)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc;

	memset(p, 0, sizeof(*p));
	rc = kl_reg_prepare(r,
	                    "SELECT w.id, t.id, w.quota, w.name, t.name, p.ek_sha256 "
	                    "FROM reg_prereg p JOIN reg_work_order w ON w.id = p.work_order_id "
	                    "JOIN reg_tenant t ON t.id = w.tenant_id WHERE p.serial = ?1",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial);
	rc = kl_db_step(st);
	if (rc == 0)
		return 0;
	if (rc != 1)
		return kl_reg_db_error(r, "get pre-registration");
	p->found = true;
	p->work_order_id = kl_db_column_int64(st, 0);
	p->tenant_id = kl_db_column_int64(st, 1);
	p->quota = kl_db_column_null(st, 2) ? -1 : kl_db_column_int64(st, 2);
	kl_db_column_copy(st, 3, p->work_order, sizeof(p->work_order));
	kl_db_column_copy(st, 4, p->tenant, sizeof(p->tenant));
	kl_db_column_copy(st, 5, p->ek, sizeof(p->ek));
	return 0;
}

/* What the gates found, for begin. */
struct gate_ctx {
	bool have_device;
	kl_registry_device dev;
	struct prereg pre;
	int64_t tenant_id;
};

__attribute__((format(printf, 3, 4))) static int verdict(kl_gate_result *res, kl_gate_verdict v,
                                                         const char *fmt, ...)
{
	va_list ap;

	res->verdict = v;
	res->reason = kl_registry_verdict_name(v);
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	return 0;
}

/* A short form of an EK hash for sentences: the first 16 hex digits. */
static const char *ek_short(const char *hex, char buf[24])
{
	snprintf(buf, 24, "%.16s...", hex);
	return buf;
}

static int gate(kl_registry *r, const char *serial, const char *tenant, const char *ek,
                bool require_prereg, kl_gate_result *res, struct gate_ctx *g)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_deny deny;
	unsigned char ekb[32];
	char s1[24], s2[24];
	int rc;

	memset(res, 0, sizeof(*res));
	memset(g, 0, sizeof(*g));
	if ((rc = kl_registry_check_name("serial", serial)) < 0)
		return rc;
	if (tenant && (rc = kl_registry_check_name("tenant name", tenant)) < 0)
		return rc;

	/* A denied EK is refused whatever else is true of it. */
	kl_registry_ek_from_hex(ek, ekb);
	if ((rc = kl_registry_deny_check(r, ekb, &deny)) < 0)
		return rc;
	if (rc == 1)
		return verdict(res, KL_GATE_EK_DENIED, "EK %s of %s is on the deny list (%s)",
		               ek_short(ek, s1), serial, deny.reason);

	if ((rc = device_find(r, serial, &g->dev, &g->tenant_id, &g->have_device)) < 0 ||
	    (rc = prereg_find(r, serial, &g->pre)) < 0)
		return rc;

	/* The tenant: as given, else the pre-registration's, else the device's
	 * current life's. */
	if (!tenant && g->pre.found)
		tenant = g->pre.tenant;
	else if (!tenant && g->have_device && g->dev.state != KL_DEVICE_REPURPOSED)
		tenant = g->dev.tenant;
	if (!tenant)
		return kl_error_set(KL_E_INVALID, "no tenant given and %s is not pre-registered",
		                    serial);
	snprintf(res->tenant, sizeof(res->tenant), "%s", tenant);
	if ((rc = kl_reg_tenant_id(r, tenant, &g->tenant_id)) < 0)
		return rc;
	if (g->pre.found)
		snprintf(res->work_order, sizeof(res->work_order), "%s", g->pre.work_order);

	if (g->have_device) {
		kl_registry_device *d = &g->dev;
		bool same_ek = strcmp(d->ek_sha256, ek) == 0;

		switch (d->state) {
		case KL_DEVICE_PROVISIONED:
			if (same_ek)
				return verdict(res, KL_GATE_ALREADY_PROVISIONED,
				               "%s is already provisioned (tenant %s)", serial,
				               d->tenant);
			return verdict(res, KL_GATE_SERIAL_BOUND,
			               "%s is provisioned with another EK (%s), not this TPM's "
			               "(%s): swapped or cloned unit",
			               serial, ek_short(d->ek_sha256, s1), ek_short(ek, s2));
		case KL_DEVICE_REVOKED:
		case KL_DEVICE_LOST:
		case KL_DEVICE_DECOMMISSIONED:
			return verdict(res, KL_GATE_DEVICE_STATE,
			               "%s is %s (tenant %s) and cannot be provisioned again%s",
			               serial, kl_registry_state_name(d->state), d->tenant,
			               d->state == KL_DEVICE_DECOMMISSIONED
			                   ? ""
			                   : "; decommission or repurpose it first");
		case KL_DEVICE_PROVISIONING:
			if (!same_ek)
				return verdict(res, KL_GATE_SERIAL_BOUND,
				               "%s is being provisioned with another EK (%s), not "
				               "this TPM's (%s); abort that first",
				               serial, ek_short(d->ek_sha256, s1),
				               ek_short(ek, s2));
			__attribute__((fallthrough));
		case KL_DEVICE_PREREGISTERED:
			if (strcmp(d->tenant, tenant) != 0)
				return verdict(res, KL_GATE_TENANT_MISMATCH,
				               "%s belongs to tenant %s, not %s", serial, d->tenant,
				               tenant);
			res->resume = d->state == KL_DEVICE_PROVISIONING;
			break;
		case KL_DEVICE_REPURPOSED:
		case KL_DEVICE__MAX:
			break;
		}
	}

	if (!g->pre.found && require_prereg)
		return verdict(res, KL_GATE_NOT_PREREGISTERED,
		               "%s is not pre-registered, and this line requires it", serial);
	if (g->pre.found && strcmp(g->pre.tenant, tenant) != 0)
		return verdict(res, KL_GATE_TENANT_MISMATCH,
		               "%s is pre-registered to tenant %s, not %s", serial, g->pre.tenant,
		               tenant);
	if (g->pre.found && g->pre.ek[0] && strcmp(g->pre.ek, ek) != 0)
		return verdict(res, KL_GATE_EK_MISMATCH,
		               "%s was pre-registered with EK %s, but this TPM's EK is %s: "
		               "swapped or forged TPM",
		               serial, ek_short(g->pre.ek, s1), ek_short(ek, s2));

	/* The EK bound to another device (a clone, or a refurbished unit). */
	rc = kl_reg_prepare(r,
	                    "SELECT d.serial, t.name FROM reg_device d "
	                    "JOIN reg_tenant t ON t.id = d.tenant_id "
	                    "WHERE d.ek_sha256 = ?1 AND d.serial != ?2 "
	                    "AND d.state IN " KL_REG_EK_HOLDERS " LIMIT 1",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, ek);
	kl_db_bind_text(st, 2, serial);
	rc = kl_db_step(st);
	if (rc == 1) {
		kl_db_column_copy(st, 0, res->other_serial, sizeof(res->other_serial));
		return verdict(res, KL_GATE_EK_BOUND, "EK already bound to device %s (tenant %s)",
		               res->other_serial, kl_db_column_text(st, 1));
	}
	if (rc != 0)
		return kl_reg_db_error(r, "gate: EK binding");
	kl_db_stmt_free(TAKE_PTR(st));

	/* The quota: every other device of the order past preregistered. */
	if (g->pre.found && g->pre.quota >= 0) {
		int64_t used;

		rc = kl_reg_prepare(r,
		                    "SELECT count(*) FROM reg_device WHERE work_order_id = ?1 "
		                    "AND state != 'preregistered' AND serial != ?2",
		                    &st);
		if (rc < 0)
			return rc;
		kl_db_bind_int64(st, 1, g->pre.work_order_id);
		kl_db_bind_text(st, 2, serial);
		if (kl_db_step_row(st) < 0)
			return kl_reg_db_error(r, "gate: quota");
		used = kl_db_column_int64(st, 0);
		if (used >= g->pre.quota)
			return verdict(
			    res, KL_GATE_QUOTA_EXHAUSTED,
			    "work order %s of tenant %s has used its quota (%lld of %lld "
			    "devices)",
			    g->pre.work_order, g->pre.tenant, (long long)used,
			    (long long)g->pre.quota);
	}
	if (res->resume)
		return verdict(res, KL_GATE_OK, "%s resumes provisioning for tenant %s", serial,
		               tenant);
	return verdict(res, KL_GATE_OK, "%s may be provisioned for tenant %s%s%s", serial, tenant,
	               res->work_order[0] ? ", work order " : "", res->work_order);
}

int kl_registry_gate(kl_registry *r, const char *serial, const char *tenant,
                     const unsigned char ek_sha256[32], bool require_prereg, kl_gate_result *ret)
{
	kl_gate_result res;
	struct gate_ctx g;
	char ek[65];
	int rc;

	kl_registry_ek_to_hex(ek_sha256, ek);
	rc = gate(r, serial, tenant, ek, require_prereg, &res, &g);
	if (rc < 0)
		return rc;
	*ret = res;
	return 0;
}

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

static int gate_error(const kl_gate_result *res)
{
	kl_err code;

	switch (res->verdict) {
	case KL_GATE_ALREADY_PROVISIONED:
	case KL_GATE_DEVICE_STATE:
		code = KL_E_STATE;
		break;
	case KL_GATE_EK_BOUND:
	case KL_GATE_SERIAL_BOUND:
		code = KL_E_EXISTS;
		break;
	default:
		code = KL_E_PERM;
		break;
	}
	return kl_error_set(code, "%s (%s)", res->message, res->reason);
}

static int device_begin(kl_registry *r, const char *serial, const char *tenant, const char *ek,
                        const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_gate_result res;
	struct gate_ctx g;
	int64_t now = kl_reg_now(), id;
	int from = -1, rc;
	json_object *d;

	if ((rc = gate(r, serial, tenant, ek, false, &res, &g)) < 0)
		return rc;
	if (res.verdict != KL_GATE_OK)
		return gate_error(&res);

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

	if ((rc = device_find(r, serial, &dev, &tenant_id, &found)) < 0)
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

	if ((rc = device_find(r, serial, &dev, &tenant_id, &found)) < 0)
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
