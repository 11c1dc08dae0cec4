/* Shared by the registry's source files (registry*.c) only: the database
 * handles and json-c types stay behind this header. */
#ifndef KL_STATION_REGISTRY_INTERNAL_H
#define KL_STATION_REGISTRY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "kl_db.h"
#include "kl_error.h"
#include "registry.h"

/* The registry's tables live in the CA store's database and its writes run
 * in the store's transactions, so that a device and its certificates
 * commit together. */
struct kl_registry {
	kl_store *store;
	kl_db *db; /* kl_store_db(store) */
};

static inline void json_object_putp(json_object **p)
{
	if (*p)
		json_object_put(*p);
}

/* States as the SQL lists them: devices whose EK binding counts (every state
 * but decommissioned and repurposed; the partial unique index says the same). */
#define KL_REG_EK_HOLDERS "('preregistered','provisioning','provisioned','revoked','lost')"

/* Puts "registry: what" in front of the database error just recorded and
 * returns its code: -KL_E_EXISTS for a UNIQUE or PRIMARY KEY violation,
 * -KL_E_DB otherwise (kl_db.h). */
int kl_reg_db_error(kl_registry *r, const char *what) KL_MUST_CHECK;
int kl_reg_prepare(kl_registry *r, const char *sql, kl_db_stmt **ret) KL_MUST_CHECK;
/* Steps a statement that returns no rows and resets it; returns the number of
 * changed rows or a negative error. */
int kl_reg_step_done(kl_registry *r, kl_db_stmt *st, const char *what) KL_MUST_CHECK;
int64_t kl_reg_now(void);

/* Ends the transaction a public function began: rolls back when rc < 0,
 * else commits. Returns rc, or the commit's error. */
int kl_reg_finish(kl_registry *r, int rc) KL_MUST_CHECK;

/* -KL_E_INVALID unless actor is a non-empty string. */
int kl_reg_check_actor(const char *actor) KL_MUST_CHECK;

/* Writes an audit entry whose detail is the JSON object (consumed). */
int kl_reg_audit(kl_registry *r, const char *actor, const char *action,
                 json_object *detail) KL_MUST_CHECK;
/* json_object_new_string, or null for NULL and "". */
json_object *kl_reg_json_str(const char *s);

/* A device's columns, for kl_reg_device_from_row; append a WHERE clause.
 * Columns 16 and 17 are the tenant and work order ids. */
#define KL_REG_DEVICE_SELECT                                                        \
	"SELECT d.id, d.serial, t.name, w.name, d.state, d.ek_sha256, p.ek_sha256," \
	"  d.created, d.state_time, d.preregistered_at, d.provisioning_at,"         \
	"  d.provisioned_at, d.revoked_at, d.decommissioned_at, d.lost_at,"         \
	"  d.repurposed_at, d.tenant_id, d.work_order_id "                          \
	"FROM reg_device d JOIN reg_tenant t ON t.id = d.tenant_id "                \
	"LEFT JOIN reg_work_order w ON w.id = d.work_order_id "                     \
	"LEFT JOIN reg_prereg p ON p.serial = d.serial "

void kl_reg_device_from_row(kl_db_stmt *st, kl_registry_device *d);

/* Looks up ids; -KL_E_NOTFOUND with a sentence when there is none. */
int kl_reg_tenant_id(kl_registry *r, const char *tenant, int64_t *ret) KL_MUST_CHECK;
int kl_reg_work_order_id(kl_registry *r, int64_t tenant_id, const char *tenant, const char *name,
                         int64_t *ret) KL_MUST_CHECK;

/* Looks a device up, with its tenant's id; 0 and *found = false when there
 * is none. */
int kl_reg_device_find(kl_registry *r, const char *serial, kl_registry_device *d,
                       int64_t *tenant_id, bool *found) KL_MUST_CHECK;

/* A pre-registration entry with its work order and tenant. */
struct kl_reg_prereg {
	bool found;
	int64_t work_order_id, tenant_id;
	int64_t quota; /* -1: none */
	char work_order[KL_REGISTRY_NAME_MAX + 1];
	char tenant[KL_REGISTRY_NAME_MAX + 1];
	char ek[65];
};

/* What the gates found, for begin. */
struct kl_reg_gate_ctx {
	bool have_device;
	kl_registry_device dev;
	struct kl_reg_prereg pre;
	int64_t tenant_id;
};

/* Runs the provisioning gates for serial with EK ek (hex); tenant NULL:
 * the pre-registration's, else the device's; work_order NULL: any. The
 * verdict is in *res; a negative return is an error, not a refusal. */
int kl_reg_gate(kl_registry *r, const char *serial, const char *tenant, const char *work_order,
                const char *ek, bool require_prereg, kl_gate_result *res,
                struct kl_reg_gate_ctx *g) KL_MUST_CHECK;
/* The error for a refusing verdict: -KL_E_STATE, -KL_E_EXISTS or
 * -KL_E_PERM, with the verdict's sentence and reason. */
int kl_reg_gate_error(const kl_gate_result *res) KL_MUST_CHECK;

/* Appends a state-history row. from < 0 for the first. */
int kl_reg_history(kl_registry *r, int64_t device_id, int from, kl_device_state to,
                   int64_t tenant_id, const char *ek_hex, const char *reason, const char *actor,
                   int64_t when) KL_MUST_CHECK;

/* Sets the device's state, state_time and the state's timestamp column. */
int kl_reg_set_state_row(kl_registry *r, int64_t device_id, kl_device_state to,
                         int64_t when) KL_MUST_CHECK;

/* Puts an EK (hex) on the deny list; with keep_existing an EK that is listed
 * already is left as it is (returns 0), else that is -KL_E_EXISTS. Returns 1
 * when a row was added. */
int kl_reg_deny_insert(kl_registry *r, const char *ek_hex, const char *reason, const char *actor,
                       bool keep_existing) KL_MUST_CHECK;

/* Pre-registers a batch (kl_registry_preregister); source, when not NULL,
 * is the file the items came from, for messages and the audit entry. */
int kl_reg_preregister(kl_registry *r, const char *tenant, const char *work_order,
                       const kl_registry_item *items, size_t n, const char *actor,
                       const char *source) KL_MUST_CHECK;

/* A valid lowercase copy of an EK hex string into out[65]; -KL_E_INVALID. */
int kl_reg_ek_hex_norm(const char *hex, char out[65]) KL_MUST_CHECK;

#endif
