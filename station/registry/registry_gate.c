/* The provisioning gates: what the registry says about a DUT before the
 * station provisions it (deny list, pre-registration, tenant, EK binding,
 * quota), as a verdict with a sentence. See registry.h. */
#include "registry.h"
#include "registry_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kl_cleanup.h"
#include "kl_error.h"

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
	[KL_GATE_UNKNOWN_TENANT] = "unknown_tenant",
	[KL_GATE_UNKNOWN_WORK_ORDER] = "unknown_work_order",
	[KL_GATE_WORK_ORDER_MISMATCH] = "work_order_mismatch",
};

const char *kl_registry_verdict_name(kl_gate_verdict v)
{
	return (unsigned)v < KL_GATE__MAX ? verdict_names[v] : "unknown";
}

int kl_reg_device_find(kl_registry *r, const char *serial, kl_registry_device *d,
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

static int prereg_find(kl_registry *r, const char *serial, struct kl_reg_prereg *p)
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

int kl_reg_gate(kl_registry *r, const char *serial, const char *tenant, const char *work_order,
                const char *ek, bool require_prereg, kl_gate_result *res, struct kl_reg_gate_ctx *g)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_deny deny;
	unsigned char ekb[32];
	char s1[24], s2[24];
	int64_t want_wo = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	memset(g, 0, sizeof(*g));
	if ((rc = kl_registry_check_name("serial", serial)) < 0)
		return rc;
	if (tenant && (rc = kl_registry_check_name("tenant name", tenant)) < 0)
		return rc;
	if (work_order && (rc = kl_registry_check_name("work-order name", work_order)) < 0)
		return rc;

	/* A denied EK is refused whatever else is true of it. */
	if ((rc = kl_registry_ek_from_hex(ek, ekb)) < 0 ||
	    (rc = kl_registry_deny_check(r, ekb, &deny)) < 0)
		return rc;
	if (rc == 1)
		return verdict(res, KL_GATE_EK_DENIED, "EK %s of %s is on the deny list (%s)",
		               ek_short(ek, s1), serial, deny.reason);

	if ((rc = kl_reg_device_find(r, serial, &g->dev, &g->tenant_id, &g->have_device)) < 0 ||
	    (rc = prereg_find(r, serial, &g->pre)) < 0)
		return rc;

	/* The tenant: as given, else the pre-registration's, else the device's
	 * current life's. */
	if (!tenant && g->pre.found)
		tenant = g->pre.tenant;
	else if (!tenant && g->have_device && g->dev.state != KL_DEVICE_REPURPOSED)
		tenant = g->dev.tenant;
	if (!tenant)
		return verdict(res, KL_GATE_NOT_PREREGISTERED,
		               "no tenant given and %s is not pre-registered", serial);
	snprintf(res->tenant, sizeof(res->tenant), "%s", tenant);
	rc = kl_reg_tenant_id(r, tenant, &g->tenant_id);
	if (rc == -KL_E_NOTFOUND)
		return verdict(res, KL_GATE_UNKNOWN_TENANT,
		               "the registry has no tenant '%s' to provision %s for: add the "
		               "tenant (and its work order) first",
		               tenant, serial);
	if (rc < 0)
		return rc;
	if (work_order) {
		int64_t wo_id;

		rc = kl_reg_work_order_id(r, g->tenant_id, tenant, work_order, &wo_id);
		if (rc == -KL_E_NOTFOUND)
			return verdict(res, KL_GATE_UNKNOWN_WORK_ORDER,
			               "tenant %s has no work order '%s' (for %s)", tenant,
			               work_order, serial);
		if (rc < 0)
			return rc;
		want_wo = wo_id;
	}
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
	/* A line that builds one work order takes only its serials. */
	if (work_order && !g->pre.found)
		return verdict(res, KL_GATE_NOT_PREREGISTERED,
		               "%s is not pre-registered in work order %s of tenant %s", serial,
		               work_order, tenant);
	if (work_order && g->pre.tenant_id == g->tenant_id && g->pre.work_order_id != want_wo)
		return verdict(res, KL_GATE_WORK_ORDER_MISMATCH,
		               "%s is pre-registered in work order %s, not %s (tenant %s)", serial,
		               g->pre.work_order, work_order, tenant);
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

int kl_registry_gate_order(kl_registry *r, const char *serial, const char *tenant,
                           const char *work_order, const unsigned char ek_sha256[32],
                           bool require_prereg, kl_gate_result *ret)
{
	kl_gate_result res;
	struct kl_reg_gate_ctx g;
	char ek[65];
	int rc;

	kl_registry_ek_to_hex(ek_sha256, ek);
	rc = kl_reg_gate(r, serial, tenant, work_order, ek, require_prereg, &res, &g);
	if (rc < 0)
		return rc;
	*ret = res;
	return 0;
}

int kl_registry_gate(kl_registry *r, const char *serial, const char *tenant,
                     const unsigned char ek_sha256[32], bool require_prereg, kl_gate_result *ret)
{
	return kl_registry_gate_order(r, serial, tenant, NULL, ek_sha256, require_prereg, ret);
}

int kl_reg_gate_error(const kl_gate_result *res)
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
	case KL_GATE_UNKNOWN_TENANT:
	case KL_GATE_UNKNOWN_WORK_ORDER:
		code = KL_E_NOTFOUND;
		break;
	case KL_GATE_NOT_PREREGISTERED:
		/* begin never requires pre-registration: this is "no tenant
		 * given and none known", a call without what it needs. */
		code = KL_E_INVALID;
		break;
	default:
		code = KL_E_PERM;
		break;
	}
	return kl_error_set(code, "%s (%s)", res->message, res->reason);
}
