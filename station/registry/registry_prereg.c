/* Pre-registration: batches of serials (with optional expected EK hashes)
 * for a tenant's work order, checked whole and written in one transaction.
 * The batches come from the API or from files (registry_import.c). See
 * registry.h for the rules. */
#include "registry.h"
#include "registry_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl_cleanup.h"
#include "kl_error.h"

/* One validated entry. */
struct entry {
	const char *serial;
	char ek[65]; /* "" when none */
	unsigned line;
};

/* "FILE:LINE" or "line LINE", for messages. */
static const char *where(const char *source, unsigned line, char *buf, size_t size)
{
	if (source)
		snprintf(buf, size, "%s:%u", source, line);
	else
		snprintf(buf, size, "line %u", line);
	return buf;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a;
	const struct entry *y = *(const struct entry *const *)b;
	int c = strcmp(x->serial, y->serial);

	if (c)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Finds a serial given twice; reports the earliest second occurrence. */
static int find_duplicates(struct entry *e, size_t n, const char *source)
{
	_cleanup_(freep) struct entry **idx = NULL;
	const struct entry *dup = NULL, *first = NULL;
	char at[PATH_MAX + 32];

	if (n < 2)
		return 0;
	idx = calloc(n, sizeof(*idx));
	if (!idx)
		return kl_error_set(KL_E_NOMEM, "pre-registration: out of memory");
	for (size_t i = 0; i < n; i++)
		idx[i] = &e[i];
	qsort(idx, n, sizeof(*idx), cmp_entry);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(idx[i]->serial, idx[i - 1]->serial) != 0)
			continue;
		if (!dup || idx[i]->line < dup->line) {
			dup = idx[i];
			/* The first of this serial's run is the earliest line. */
			for (size_t j = i; j > 0 && strcmp(idx[j - 1]->serial, dup->serial) == 0;
			     j--)
				first = idx[j - 1];
		}
	}
	if (!dup)
		return 0;
	return kl_error_set(KL_E_EXISTS, "%s: serial %s appears twice (first on line %u)",
	                    where(source, dup->line, at, sizeof(at)), dup->serial, first->line);
}

/* The statements a batch runs per entry, prepared once. */
struct batch {
	kl_registry *r;
	const char *source;
	int64_t tenant_id, work_order_id, now;
	const char *tenant, *work_order, *actor;
	kl_db_stmt *find, *prereg_put, *dev_new, *dev_move;
	int added, changed;
	json_object *items;
};

static void batch_clear(struct batch *b)
{
	kl_db_stmt_free(b->find);
	kl_db_stmt_free(b->prereg_put);
	kl_db_stmt_free(b->dev_new);
	kl_db_stmt_free(b->dev_move);
	json_object_put(b->items);
}

static int batch_prepare(struct batch *b)
{
	kl_registry *r = b->r;
	int rc;

	if ((rc = kl_reg_prepare(r,
	                         /* The serial's device and pre-registration, if any. */
	                         "SELECT d.id, d.state, d.tenant_id, td.name, p.id, "
	                         "  p.work_order_id, p.ek_sha256, tp.name "
	                         "FROM (SELECT ?1 AS serial) s "
	                         "LEFT JOIN reg_device d ON d.serial = s.serial "
	                         "LEFT JOIN reg_tenant td ON td.id = d.tenant_id "
	                         "LEFT JOIN reg_prereg p ON p.serial = s.serial "
	                         "LEFT JOIN reg_work_order wp ON wp.id = p.work_order_id "
	                         "LEFT JOIN reg_tenant tp ON tp.id = wp.tenant_id",
	                         &b->find)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "INSERT INTO reg_prereg(serial, work_order_id, ek_sha256, "
	                         "created, updated) VALUES(?1, ?2, ?3, ?4, ?4) "
	                         "ON CONFLICT(serial) DO UPDATE SET work_order_id = ?2, "
	                         "ek_sha256 = ?3, updated = ?4",
	                         &b->prereg_put)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "INSERT INTO reg_device(serial, tenant_id, work_order_id, state, "
	                         "created, state_time, preregistered_at) "
	                         "VALUES(?1, ?2, ?3, 'preregistered', ?4, ?4, ?4)",
	                         &b->dev_new)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "UPDATE reg_device SET tenant_id = ?2, work_order_id = ?3, "
	                         "ek_sha256 = NULL WHERE id = ?1",
	                         &b->dev_move)) < 0)
		return rc;
	b->items = json_object_new_array();
	return b->items ? 0 : kl_error_set(KL_E_NOMEM, "pre-registration: out of memory");
}

static void note(struct batch *b, const struct entry *e, const char *change)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "serial", json_object_new_string(e->serial));
	json_object_object_add(o, "ek_sha256", kl_reg_json_str(e->ek));
	json_object_object_add(o, "change", json_object_new_string(change));
	json_object_array_add(b->items, o);
}

static int put_prereg(struct batch *b, const struct entry *e)
{
	kl_db_stmt *st = b->prereg_put;

	kl_db_reset(st);
	kl_db_bind_text(st, 1, e->serial);
	kl_db_bind_int64(st, 2, b->work_order_id);
	if (e->ek[0])
		kl_db_bind_text(st, 3, e->ek);
	kl_db_bind_int64(st, 4, b->now);
	return kl_reg_step_done(b->r, st, "pre-register");
}

static int one(struct batch *b, const struct entry *e)
{
	kl_registry *r = b->r;
	kl_db_stmt *st = b->find;
	char at[PATH_MAX + 32], dev_tenant[KL_REGISTRY_NAME_MAX + 1],
	    pre_tenant[KL_REGISTRY_NAME_MAX + 1], pre_ek[65];
	int64_t dev_id = 0, dev_tenant_id = 0, pre_wo = 0;
	bool have_dev, have_pre;
	int state = -1, rc;

	where(b->source, e->line, at, sizeof(at));
	kl_db_reset(st);
	kl_db_bind_text(st, 1, e->serial);
	if (kl_db_step_row(st) < 0)
		return kl_reg_db_error(r, "pre-register: look up serial");
	have_dev = !kl_db_column_null(st, 0);
	have_pre = !kl_db_column_null(st, 4);
	if (have_dev) {
		dev_id = kl_db_column_int64(st, 0);
		state = kl_registry_state_from_name(kl_db_column_text(st, 1));
		dev_tenant_id = kl_db_column_int64(st, 2);
		kl_db_column_copy(st, 3, dev_tenant, sizeof(dev_tenant));
	}
	pre_wo = kl_db_column_int64(st, 5);
	kl_db_column_copy(st, 6, pre_ek, sizeof(pre_ek));
	kl_db_column_copy(st, 7, pre_tenant, sizeof(pre_tenant));
	kl_db_reset(st);
	if (state < 0 && have_dev)
		return state;

	if (have_dev && state == KL_DEVICE_REPURPOSED) {
		/* Reuse-life: the device starts over for this tenant. */
		if ((rc = put_prereg(b, e)) < 0)
			return rc;
		st = b->dev_move;
		kl_db_reset(st);
		kl_db_bind_int64(st, 1, dev_id);
		kl_db_bind_int64(st, 2, b->tenant_id);
		kl_db_bind_int64(st, 3, b->work_order_id);
		if ((rc = kl_reg_step_done(r, st, "pre-register repurposed device")) < 0 ||
		    (rc = kl_reg_set_state_row(r, dev_id, KL_DEVICE_PREREGISTERED, b->now)) < 0 ||
		    (rc = kl_reg_history(r, dev_id, KL_DEVICE_REPURPOSED, KL_DEVICE_PREREGISTERED,
		                         b->tenant_id, NULL, "pre-registered for its next life",
		                         b->actor, b->now)) < 0)
			return rc;
		b->changed++;
		note(b, e, "new life");
		return 0;
	}
	if (have_dev && dev_tenant_id != b->tenant_id)
		return kl_error_set(KL_E_EXISTS, "%s: serial %s is already registered to tenant %s",
		                    at, e->serial, dev_tenant);
	if (!have_dev && have_pre && strcmp(pre_tenant, b->tenant) != 0)
		return kl_error_set(KL_E_EXISTS, "%s: serial %s is already registered to tenant %s",
		                    at, e->serial, pre_tenant);
	if (have_pre && pre_wo == b->work_order_id && strcmp(pre_ek, e->ek) == 0)
		return 0; /* the same entry again */
	if (have_dev && state != KL_DEVICE_PREREGISTERED)
		return kl_error_set(
		    KL_E_STATE, "%s: serial %s is %s already; its pre-registration cannot change",
		    at, e->serial, kl_registry_state_name((kl_device_state)state));
	if ((rc = put_prereg(b, e)) < 0)
		return rc;
	if (have_dev) {
		/* Still preregistered: it moves with its entry. */
		st = b->dev_move;
		kl_db_reset(st);
		kl_db_bind_int64(st, 1, dev_id);
		kl_db_bind_int64(st, 2, b->tenant_id);
		kl_db_bind_int64(st, 3, b->work_order_id);
		if ((rc = kl_reg_step_done(r, st, "pre-register: move device")) < 0)
			return rc;
		b->changed++;
		note(b, e, "updated");
		return 0;
	}
	st = b->dev_new;
	kl_db_reset(st);
	kl_db_bind_text(st, 1, e->serial);
	kl_db_bind_int64(st, 2, b->tenant_id);
	kl_db_bind_int64(st, 3, b->work_order_id);
	kl_db_bind_int64(st, 4, b->now);
	if ((rc = kl_reg_step_done(r, st, "pre-register: add device")) < 0)
		return rc;
	dev_id = kl_db_last_id(r->db);
	if ((rc = kl_reg_history(r, dev_id, -1, KL_DEVICE_PREREGISTERED, b->tenant_id, NULL, NULL,
	                         b->actor, b->now)) < 0)
		return rc;
	b->added++;
	note(b, e, "added");
	return 0;
}

/* The audit entries of a batch: the batch's totals in each, and the
 * entries added or changed, PREREG_AUDIT_ITEMS to an entry, so that no
 * entry grows with the batch (a device's entries are shown with it, and
 * one of 100,000 items would be megabytes). */
#define PREREG_AUDIT_ITEMS 250

static int audit_batch(struct batch *b, size_t n)
{
	size_t total = json_object_array_length(b->items);
	size_t parts = total ? (total + PREREG_AUDIT_ITEMS - 1) / PREREG_AUDIT_ITEMS : 1;
	int rc = 0;

	for (size_t k = 0; rc == 0 && k < parts; k++) {
		json_object *d = json_object_new_object(), *part = json_object_new_array();
		size_t end =
		    (k + 1) * PREREG_AUDIT_ITEMS < total ? (k + 1) * PREREG_AUDIT_ITEMS : total;

		for (size_t i = k * PREREG_AUDIT_ITEMS; part && i < end; i++) {
			json_object *it = json_object_get(json_object_array_get_idx(b->items, i));

			if (json_object_array_add(part, it) < 0) {
				json_object_put(it);
				json_object_put(part);
				part = NULL;
			}
		}
		if (!d || !part) {
			json_object_put(d);
			json_object_put(part);
			return kl_error_set(KL_E_NOMEM, "pre-registration: out of memory");
		}
		json_object_object_add(d, "tenant", json_object_new_string(b->tenant));
		json_object_object_add(d, "work_order", json_object_new_string(b->work_order));
		json_object_object_add(d, "source", kl_reg_json_str(b->source));
		json_object_object_add(d, "entries", json_object_new_int64((int64_t)n));
		json_object_object_add(d, "added", json_object_new_int(b->added));
		json_object_object_add(d, "changed", json_object_new_int(b->changed));
		json_object_object_add(d, "part", json_object_new_int64((int64_t)k + 1));
		json_object_object_add(d, "parts", json_object_new_int64((int64_t)parts));
		json_object_object_add(d, "items", part);
		rc = kl_reg_audit(b->r, b->actor, "registry.preregister", d);
	}
	return rc;
}

static int run_batch(struct batch *b, const struct entry *e, size_t n)
{
	int rc;

	if ((rc = kl_reg_tenant_id(b->r, b->tenant, &b->tenant_id)) < 0 ||
	    (rc = kl_reg_work_order_id(b->r, b->tenant_id, b->tenant, b->work_order,
	                               &b->work_order_id)) < 0 ||
	    (rc = batch_prepare(b)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = one(b, &e[i])) < 0)
			return rc;
	rc = audit_batch(b, n);
	return rc < 0 ? rc : b->added + b->changed;
}

/* The checks that need no registry, into a fresh array of validated
 * entries (*ret, free() it; valid as long as items). */
static int check_entries(const kl_registry_item *items, size_t n, const char *source,
                         struct entry **ret)
{
	_cleanup_(freep) struct entry *e = NULL;
	char at[PATH_MAX + 32];
	int rc;

	if (n > (size_t)INT32_MAX)
		return kl_error_set(KL_E_INVALID, "pre-registration: %zu entries is too many", n);
	e = calloc(n ? n : 1, sizeof(*e));
	if (!e)
		return kl_error_set(KL_E_NOMEM, "pre-registration: out of memory");
	for (size_t i = 0; i < n; i++) {
		e[i].serial = items[i].serial;
		e[i].line = items[i].line ? items[i].line : (unsigned)(i + 1);
		where(source, e[i].line, at, sizeof(at));
		if (kl_registry_check_name("serial", items[i].serial) < 0)
			return kl_error_wrap("%s", at);
		if (items[i].ek_sha256 && items[i].ek_sha256[0] &&
		    kl_reg_ek_hex_norm(items[i].ek_sha256, e[i].ek) < 0)
			return kl_error_wrap("%s: serial %s", at, items[i].serial);
	}
	if ((rc = find_duplicates(e, n, source)) < 0)
		return rc;
	*ret = TAKE_PTR(e);
	return 0;
}

int kl_registry_check_items(const kl_registry_item *items, size_t n, const char *source)
{
	_cleanup_(freep) struct entry *e = NULL;

	return check_entries(items, n, source, &e);
}

int kl_reg_preregister(kl_registry *r, const char *tenant, const char *work_order,
                       const kl_registry_item *items, size_t n, const char *actor,
                       const char *source)
{
	_cleanup_(freep) struct entry *e = NULL;
	struct batch b = { .r = r,
		           .source = source,
		           .tenant = tenant,
		           .work_order = work_order,
		           .actor = actor,
		           .now = kl_reg_now() };
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0 ||
	    (rc = kl_registry_check_name("tenant name", tenant)) < 0 ||
	    (rc = kl_registry_check_name("work order name", work_order)) < 0 ||
	    (rc = check_entries(items, n, source, &e)) < 0)
		return rc;
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	rc = kl_reg_finish(r, run_batch(&b, e, n));
	batch_clear(&b);
	return rc;
}

int kl_registry_preregister(kl_registry *r, const char *tenant, const char *work_order,
                            const kl_registry_item *items, size_t n, const char *actor)
{
	return kl_reg_preregister(r, tenant, work_order, items, n, actor, NULL);
}

int kl_registry_preregister_from(kl_registry *r, const char *tenant, const char *work_order,
                                 const kl_registry_item *items, size_t n, const char *actor,
                                 const char *source)
{
	return kl_reg_preregister(r, tenant, work_order, items, n, actor,
	                          source && *source ? source : NULL);
}
