/* The device registry: schema, states, tenants, work orders. See
 * registry.h; the gates are in registry_gate.c, device state changes in
 * registry_device.c, reads in registry_query.c, pre-registration in
 * registry_prereg.c (its files in registry_import.c), the deny list in
 * registry_deny.c. */
#include "registry.h"
#include "registry_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

#define STATE_CHECK                                                               \
	"CHECK(state IN ('preregistered','provisioning','provisioned','revoked'," \
	"'decommissioned','lost','repurposed'))"
#define EK_CHECK(col) \
	"CHECK(" col " IS NULL OR (length(" col ") = 64 AND " col " NOT GLOB '*[^0-9a-f]*'))"

/* Versioned migrations of the "registry" module (kl_db_migrate). Never
 * edit a released one: add more. The SQL is plain enough for PostgreSQL
 * (partial indexes included) should a shared backend come. */
static const char *const registry_migrations[] = {
	/* 1 */
	"CREATE TABLE reg_tenant("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE reg_work_order("
	"  id INTEGER PRIMARY KEY,"
	"  tenant_id INTEGER NOT NULL REFERENCES reg_tenant(id),"
	"  name TEXT NOT NULL,"
	"  quota INTEGER CHECK(quota IS NULL OR quota >= 0),"
	"  created INTEGER NOT NULL,"
	"  UNIQUE(tenant_id, name));"
	/* One pre-registration entry per serial: the current life's. */
	"CREATE TABLE reg_prereg("
	"  id INTEGER PRIMARY KEY,"
	"  serial TEXT NOT NULL UNIQUE,"
	"  work_order_id INTEGER NOT NULL REFERENCES reg_work_order(id),"
	"  ek_sha256 TEXT " EK_CHECK(
	    "ek_sha256") ","
	                 "  created INTEGER NOT NULL,"
	                 "  updated INTEGER NOT NULL);"
	                 "CREATE INDEX reg_prereg_work_order ON reg_prereg(work_order_id);"
	                 "CREATE TABLE reg_device("
	                 "  id INTEGER PRIMARY KEY,"
	                 "  serial TEXT NOT NULL UNIQUE,"
	                 "  tenant_id INTEGER NOT NULL REFERENCES reg_tenant(id),"
	                 "  work_order_id INTEGER REFERENCES reg_work_order(id),"
	                 "  state TEXT NOT NULL " STATE_CHECK ","
	                 "  ek_sha256 TEXT " EK_CHECK(
	                     "ek_sha256") ","
	                                  "  created INTEGER NOT NULL,"
	                                  "  state_time INTEGER NOT NULL,"
	                                  "  preregistered_at INTEGER,"
	                                  "  provisioning_at INTEGER,"
	                                  "  provisioned_at INTEGER,"
	                                  "  revoked_at INTEGER,"
	                                  "  decommissioned_at INTEGER,"
	                                  "  lost_at INTEGER,"
	                                  "  repurposed_at INTEGER);"
	                                  /* An EK is bound to one device at a time. Decommissioned
	                                   * and repurposed devices let go of theirs: a repurposed
	                                   * TPM may be provisioned again (reuse-life), and a
	                                   * decommissioned one is deny-listed instead. */
	                                  "CREATE UNIQUE INDEX reg_device_ek ON "
	                                  "reg_device(ek_sha256)"
	                                  "  WHERE ek_sha256 IS NOT NULL AND state NOT IN "
	                                  "('decommissioned','repurposed');"
	                                  "CREATE INDEX reg_device_state ON reg_device(state, "
	                                  "serial);"
	                                  "CREATE INDEX reg_device_tenant ON reg_device(tenant_id, "
	                                  "serial);"
	                                  "CREATE INDEX reg_device_work_order ON "
	                                  "reg_device(work_order_id, state);"
	                                  "CREATE TABLE reg_device_history("
	                                  "  id INTEGER PRIMARY KEY,"
	                                  "  device_id INTEGER NOT NULL REFERENCES reg_device(id),"
	                                  "  from_state TEXT,"
	                                  "  to_state TEXT NOT NULL,"
	                                  "  tenant_id INTEGER NOT NULL REFERENCES reg_tenant(id),"
	                                  "  ek_sha256 TEXT,"
	                                  "  reason TEXT,"
	                                  "  actor TEXT NOT NULL,"
	                                  "  time INTEGER NOT NULL);"
	                                  "CREATE INDEX reg_device_history_device ON "
	                                  "reg_device_history(device_id, id);"
	                                  "CREATE TABLE reg_deny("
	                                  "  ek_sha256 TEXT PRIMARY KEY " EK_CHECK(
	                                      "ek_sha256") ","
	                                                   "  reason TEXT NOT NULL,"
	                                                   "  actor TEXT NOT NULL,"
	                                                   "  time INTEGER NOT NULL);"
	                                                   "CREATE TABLE reg_evidence("
	                                                   "  id INTEGER PRIMARY KEY,"
	                                                   "  device_id INTEGER NOT NULL "
	                                                   "REFERENCES reg_device(id),"
	                                                   "  evidence TEXT NOT NULL,"
	                                                   "  created INTEGER NOT NULL);"
	                                                   "CREATE INDEX reg_evidence_device ON "
	                                                   "reg_evidence(device_id, id);",
};

static const char *const state_names[KL_DEVICE__MAX] = {
	[KL_DEVICE_PREREGISTERED] = "preregistered",   [KL_DEVICE_PROVISIONING] = "provisioning",
	[KL_DEVICE_PROVISIONED] = "provisioned",       [KL_DEVICE_REVOKED] = "revoked",
	[KL_DEVICE_DECOMMISSIONED] = "decommissioned", [KL_DEVICE_LOST] = "lost",
	[KL_DEVICE_REPURPOSED] = "repurposed",
};

#define BIT(s) (1u << (s))

/* The state machine: allowed[from] is the set of states it may move to.
 *   preregistered  -> provisioning; decommissioned or lost before it was built
 *   provisioning   -> provisioned; preregistered (aborted: the EK binding is
 *                     released); decommissioned, lost
 *   provisioned    -> revoked, decommissioned, lost, repurposed
 *   revoked        -> decommissioned, lost, repurposed
 *   lost           -> decommissioned (found, then destroyed)
 *   repurposed     -> preregistered, provisioning (its next life), decommissioned
 *   decommissioned -> nothing: the end */
static const unsigned allowed[KL_DEVICE__MAX] = {
	[KL_DEVICE_PREREGISTERED] =
	    BIT(KL_DEVICE_PROVISIONING) | BIT(KL_DEVICE_DECOMMISSIONED) | BIT(KL_DEVICE_LOST),
	[KL_DEVICE_PROVISIONING] = BIT(KL_DEVICE_PROVISIONED) | BIT(KL_DEVICE_PREREGISTERED) |
	                           BIT(KL_DEVICE_DECOMMISSIONED) | BIT(KL_DEVICE_LOST),
	[KL_DEVICE_PROVISIONED] = BIT(KL_DEVICE_REVOKED) | BIT(KL_DEVICE_DECOMMISSIONED) |
	                          BIT(KL_DEVICE_LOST) | BIT(KL_DEVICE_REPURPOSED),
	[KL_DEVICE_REVOKED] =
	    BIT(KL_DEVICE_DECOMMISSIONED) | BIT(KL_DEVICE_LOST) | BIT(KL_DEVICE_REPURPOSED),
	[KL_DEVICE_DECOMMISSIONED] = 0,
	[KL_DEVICE_LOST] = BIT(KL_DEVICE_DECOMMISSIONED),
	[KL_DEVICE_REPURPOSED] = BIT(KL_DEVICE_PREREGISTERED) | BIT(KL_DEVICE_PROVISIONING) |
	                         BIT(KL_DEVICE_DECOMMISSIONED),
};

const char *kl_registry_state_name(kl_device_state s)
{
	return (unsigned)s < KL_DEVICE__MAX ? state_names[s] : "unknown";
}

int kl_registry_state_from_name(const char *name)
{
	for (int i = 0; i < KL_DEVICE__MAX; i++)
		if (name && strcmp(name, state_names[i]) == 0)
			return i;
	return kl_error_set(KL_E_INVALID,
	                    "unknown device state '%s' (one of preregistered, provisioning, "
	                    "provisioned, revoked, decommissioned, lost, repurposed)",
	                    name ? name : "");
}

bool kl_registry_transition_allowed(kl_device_state from, kl_device_state to)
{
	if ((unsigned)from >= KL_DEVICE__MAX || (unsigned)to >= KL_DEVICE__MAX)
		return false;
	return (allowed[from] & BIT(to)) != 0;
}

int kl_registry_ek_hash(EVP_PKEY *ek, unsigned char out[32])
{
	unsigned char *der = NULL;
	unsigned int n = 0;
	int len, ok;

	if (!ek)
		return kl_error_set(KL_E_INVALID, "EK hash: no key");
	len = i2d_PUBKEY(ek, &der);
	if (len <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "EK hash: encode the public key");
	ok = EVP_Digest(der, (size_t)len, out, &n, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok && n == 32 ? 0 : kl_error_set_ssl(KL_E_CRYPTO, "EK hash: SHA-256");
}

int kl_reg_ek_hex_norm(const char *hex, char out[65])
{
	size_t n = hex ? strlen(hex) : 0;

	if (n != 64)
		return kl_error_set(KL_E_INVALID,
		                    "EK SHA-256 must be 64 hex digits, not %zu characters", n);
	for (size_t i = 0; i < 64; i++) {
		if (!isxdigit((unsigned char)hex[i]))
			return kl_error_set(KL_E_INVALID,
			                    "EK SHA-256 has a non-hex character at position %zu",
			                    i + 1);
		out[i] = (char)tolower((unsigned char)hex[i]);
	}
	out[64] = '\0';
	return 0;
}

int kl_registry_ek_from_hex(const char *hex, unsigned char out[32])
{
	char norm[65];
	unsigned char tmp[32];
	int r = kl_reg_ek_hex_norm(hex, norm);

	if (r < 0)
		return r;
	if (kl_hex_decode(norm, sizeof(tmp), tmp) < 0)
		return kl_error_set(KL_E_INVALID, "EK SHA-256 is not hex");
	memcpy(out, tmp, 32);
	return 0;
}

void kl_registry_ek_to_hex(const unsigned char ek[32], char out[65])
{
	kl_hex_encode(ek, 32, out);
}

int kl_registry_check_name(const char *what, const char *s)
{
	size_t n;

	if (!s || !*s)
		return kl_error_set(KL_E_INVALID, "%s is empty", what);
	n = strlen(s);
	if (n > KL_REGISTRY_NAME_MAX)
		return kl_error_set(KL_E_INVALID,
		                    "%s '%.20s...' is %zu characters long (at most %d)", what, s, n,
		                    KL_REGISTRY_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ')
			return kl_error_set(KL_E_INVALID, "%s '%s' contains a space", what, s);
		if (c == ',')
			return kl_error_set(KL_E_INVALID, "%s '%s' contains a comma", what, s);
		if (c < 0x21 || c > 0x7e)
			return kl_error_set(KL_E_INVALID,
			                    "%s contains a byte 0x%02x at position %zu (printable "
			                    "ASCII only)",
			                    what, c, i + 1);
	}
	return 0;
}

int kl_reg_check_actor(const char *actor)
{
	if (!actor || !*actor)
		return kl_error_set(KL_E_INVALID,
		                    "registry: an actor is required for the audit log");
	return 0;
}

int kl_reg_db_error(kl_registry *r, const char *what)
{
	return kl_error_wrap("registry: %s", what);
}

int kl_reg_prepare(kl_registry *r, const char *sql, kl_db_stmt **ret)
{
	*ret = NULL;
	return kl_db_prepare(r->db, sql, ret) < 0 ? kl_error_wrap("registry") : 0;
}

int kl_reg_step_done(kl_registry *r, kl_db_stmt *st, const char *what)
{
	int rc = kl_db_step_done(st);

	return rc < 0 ? kl_reg_db_error(r, what) : rc;
}

int64_t kl_reg_now(void)
{
	return (int64_t)time(NULL);
}

int kl_reg_finish(kl_registry *r, int rc)
{
	int c;

	if (rc < 0) {
		kl_store_rollback(r->store);
		return rc;
	}
	c = kl_store_commit(r->store);
	return c < 0 ? c : rc;
}

json_object *kl_reg_json_str(const char *s)
{
	return s && *s ? json_object_new_string(s) : NULL;
}

int kl_reg_audit(kl_registry *r, const char *actor, const char *action, json_object *detail)
{
	const char *text;
	int rc;

	if (!detail)
		return kl_error_set(KL_E_NOMEM, "registry: out of memory");
	text = json_object_to_json_string_ext(detail, JSON_C_TO_STRING_PLAIN |
	                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = text ? kl_store_audit(r->store, actor, action, text)
	          : kl_error_set(KL_E_NOMEM, "registry: out of memory");
	json_object_put(detail);
	return rc;
}

int kl_registry_open(kl_store *store, kl_registry **ret)
{
	kl_registry *r;
	int rc;

	if (!store)
		return kl_error_set(KL_E_INVALID, "registry: no store");
	rc = kl_db_migrate(kl_store_db(store), "registry", registry_migrations,
	                   sizeof(registry_migrations) / sizeof(registry_migrations[0]));
	if (rc < 0)
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return kl_error_set(KL_E_NOMEM, "registry: out of memory");
	r->store = store;
	r->db = kl_store_db(store);
	*ret = r;
	return 0;
}

void kl_registry_free(kl_registry *r)
{
	free(r);
}

kl_store *kl_registry_store(kl_registry *r)
{
	return r->store;
}

/* Tenants. */

int kl_reg_tenant_id(kl_registry *r, const char *tenant, int64_t *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, "SELECT id FROM reg_tenant WHERE name = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, tenant);
	rc = kl_db_step(st);
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "no tenant named '%s'", tenant);
	if (rc != 1)
		return kl_reg_db_error(r, "get tenant");
	*ret = kl_db_column_int64(st, 0);
	return 0;
}

static int tenant_add(kl_registry *r, const char *name, const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	json_object *d;
	int rc;

	rc = kl_reg_prepare(r, "INSERT INTO reg_tenant(name, created) VALUES(?1, ?2)", &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, name);
	kl_db_bind_int64(st, 2, kl_reg_now());
	rc = kl_reg_step_done(r, st, "add tenant");
	if (rc == -KL_E_EXISTS)
		return kl_error_set(KL_E_EXISTS, "tenant '%s' exists already", name);
	if (rc < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "tenant", json_object_new_string(name));
	return kl_reg_audit(r, actor, "registry.tenant.add", d);
}

int kl_registry_tenant_add(kl_registry *r, const char *name, const char *actor)
{
	int rc;

	if ((rc = kl_registry_check_name("tenant name", name)) < 0 ||
	    (rc = kl_reg_check_actor(actor)) < 0 || (rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, tenant_add(r, name, actor));
}

int kl_registry_tenant_get(kl_registry *r, const char *name, kl_registry_tenant *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_tenant t = { 0 };
	int rc = kl_reg_prepare(r, "SELECT id, name, created FROM reg_tenant WHERE name = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, name ? name : "");
	rc = kl_db_step(st);
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "no tenant named '%s'", name ? name : "");
	if (rc != 1)
		return kl_reg_db_error(r, "get tenant");
	t.id = kl_db_column_int64(st, 0);
	kl_db_column_copy(st, 1, t.name, sizeof(t.name));
	t.created = kl_db_column_int64(st, 2);
	*ret = t;
	return 0;
}

/* Work orders. */

int kl_reg_work_order_id(kl_registry *r, int64_t tenant_id, const char *tenant, const char *name,
                         int64_t *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(
	    r, "SELECT id FROM reg_work_order WHERE tenant_id = ?1 AND name = ?2", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, tenant_id);
	kl_db_bind_text(st, 2, name);
	rc = kl_db_step(st);
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "tenant '%s' has no work order '%s'", tenant,
		                    name);
	if (rc != 1)
		return kl_reg_db_error(r, "get work order");
	*ret = kl_db_column_int64(st, 0);
	return 0;
}

static json_object *quota_json(int64_t quota)
{
	return quota < 0 ? NULL : json_object_new_int64(quota);
}

static int work_order_add(kl_registry *r, const char *tenant, const char *name, int64_t quota,
                          const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t tid;
	json_object *d;
	int rc;

	if ((rc = kl_reg_tenant_id(r, tenant, &tid)) < 0)
		return rc;
	rc = kl_reg_prepare(r,
	                    "INSERT INTO reg_work_order(tenant_id, name, quota, created) "
	                    "VALUES(?1, ?2, ?3, ?4)",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_int64(st, 1, tid);
	kl_db_bind_text(st, 2, name);
	if (quota >= 0)
		kl_db_bind_int64(st, 3, quota);
	kl_db_bind_int64(st, 4, kl_reg_now());
	rc = kl_reg_step_done(r, st, "add work order");
	if (rc == -KL_E_EXISTS)
		return kl_error_set(KL_E_EXISTS, "tenant '%s' has a work order '%s' already",
		                    tenant, name);
	if (rc < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "tenant", json_object_new_string(tenant));
	json_object_object_add(d, "work_order", json_object_new_string(name));
	json_object_object_add(d, "quota", quota_json(quota));
	return kl_reg_audit(r, actor, "registry.work_order.add", d);
}

int kl_registry_work_order_add(kl_registry *r, const char *tenant, const char *name, int64_t quota,
                               const char *actor)
{
	int rc;

	if ((rc = kl_registry_check_name("work order name", name)) < 0 ||
	    (rc = kl_reg_check_actor(actor)) < 0 || (rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, work_order_add(r, tenant ? tenant : "", name, quota, actor));
}

int kl_registry_work_order_get(kl_registry *r, const char *tenant, const char *name,
                               kl_registry_work_order *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_work_order wo = { 0 };
	int rc;

	rc = kl_reg_prepare(r,
	                    "SELECT w.id, t.name, w.name, w.quota, w.created,"
	                    "  (SELECT count(*) FROM reg_device d WHERE d.work_order_id = w.id"
	                    "     AND d.state != 'preregistered'),"
	                    "  (SELECT count(*) FROM reg_prereg p WHERE p.work_order_id = w.id) "
	                    "FROM reg_work_order w JOIN reg_tenant t ON t.id = w.tenant_id "
	                    "WHERE t.name = ?1 AND w.name = ?2",
	                    &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, tenant ? tenant : "");
	kl_db_bind_text(st, 2, name ? name : "");
	rc = kl_db_step(st);
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "tenant '%s' has no work order '%s'",
		                    tenant ? tenant : "", name ? name : "");
	if (rc != 1)
		return kl_reg_db_error(r, "get work order");
	wo.id = kl_db_column_int64(st, 0);
	kl_db_column_copy(st, 1, wo.tenant, sizeof(wo.tenant));
	kl_db_column_copy(st, 2, wo.name, sizeof(wo.name));
	wo.quota = kl_db_column_null(st, 3) ? -1 : kl_db_column_int64(st, 3);
	wo.created = kl_db_column_int64(st, 4);
	wo.used = kl_db_column_int64(st, 5);
	wo.preregistered = kl_db_column_int64(st, 6);
	*ret = wo;
	return 0;
}

static int set_quota(kl_registry *r, const char *tenant, const char *name, int64_t quota,
                     const char *actor)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_work_order wo;
	json_object *d;
	int rc;

	if ((rc = kl_registry_work_order_get(r, tenant, name, &wo)) < 0)
		return rc;
	if ((rc = kl_reg_prepare(r, "UPDATE reg_work_order SET quota = ?2 WHERE id = ?1", &st)) < 0)
		return rc;
	kl_db_bind_int64(st, 1, wo.id);
	if (quota >= 0)
		kl_db_bind_int64(st, 2, quota);
	if ((rc = kl_reg_step_done(r, st, "set quota")) < 0)
		return rc;
	d = json_object_new_object();
	json_object_object_add(d, "tenant", json_object_new_string(tenant));
	json_object_object_add(d, "work_order", json_object_new_string(name));
	json_object_object_add(d, "old_quota", quota_json(wo.quota));
	json_object_object_add(d, "quota", quota_json(quota));
	json_object_object_add(d, "used", json_object_new_int64(wo.used));
	return kl_reg_audit(r, actor, "registry.work_order.quota", d);
}

int kl_registry_work_order_set_quota(kl_registry *r, const char *tenant, const char *name,
                                     int64_t quota, const char *actor)
{
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0 || (rc = kl_store_begin(r->store)) < 0)
		return rc;
	return kl_reg_finish(r, set_quota(r, tenant ? tenant : "", name ? name : "", quota, actor));
}

int kl_registry_ensure_work_order(kl_registry *r, const char *tenant, const char *name,
                                  int64_t quota, bool update_quota, const char *actor)
{
	kl_registry_tenant t;
	kl_registry_work_order w;
	int rc = kl_registry_tenant_get(r, tenant, &t);

	if (rc == -KL_E_NOTFOUND)
		rc = kl_registry_tenant_add(r, tenant, actor);
	if (rc < 0)
		return rc;
	rc = kl_registry_work_order_get(r, tenant, name, &w);
	if (rc == -KL_E_NOTFOUND)
		rc = kl_registry_work_order_add(r, tenant, name, quota, actor);
	else if (rc == 0 && update_quota && w.quota != quota)
		rc = kl_registry_work_order_set_quota(r, tenant, name, quota, actor);
	return rc < 0 ? rc : 0;
}
