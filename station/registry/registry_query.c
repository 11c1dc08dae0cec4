/* The registry's read side: devices, their history, evidence and
 * certificates. See registry.h. */
#include "registry.h"
#include "registry_internal.h"

#include <stdio.h>
#include <string.h>

#include "kl_cleanup.h"
#include "kl_error.h"

void kl_reg_device_from_row(kl_db_stmt *st, kl_registry_device *d)
{
	const char *state = kl_db_column_text(st, 4);

	memset(d, 0, sizeof(*d));
	d->id = kl_db_column_int64(st, 0);
	kl_db_column_copy(st, 1, d->serial, sizeof(d->serial));
	kl_db_column_copy(st, 2, d->tenant, sizeof(d->tenant));
	kl_db_column_copy(st, 3, d->work_order, sizeof(d->work_order));
	/* The CHECK constraint keeps the column to known names. */
	for (int i = 0; i < KL_DEVICE__MAX; i++)
		if (state && strcmp(state, kl_registry_state_name((kl_device_state)i)) == 0)
			d->state = (kl_device_state)i;
	kl_db_column_copy(st, 5, d->ek_sha256, sizeof(d->ek_sha256));
	kl_db_column_copy(st, 6, d->expected_ek, sizeof(d->expected_ek));
	d->created = kl_db_column_int64(st, 7);
	d->state_time = kl_db_column_int64(st, 8);
	for (int i = 0; i < KL_DEVICE__MAX; i++)
		d->at[i] = kl_db_column_int64(st, 9 + i);
}

int kl_registry_device_get(kl_registry *r, const char *serial, kl_registry_device *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_device d;
	int rc = kl_reg_prepare(r, KL_REG_DEVICE_SELECT "WHERE d.serial = ?1", &st);

	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial ? serial : "");
	rc = kl_db_step(st);
	if (rc == 0)
		return kl_error_set(KL_E_NOTFOUND, "no device with serial '%s'",
		                    serial ? serial : "");
	if (rc != 1)
		return kl_reg_db_error(r, "get device");
	kl_reg_device_from_row(st, &d);
	*ret = d;
	return 0;
}

static int filter_bind(kl_registry *r, kl_db_stmt *st, const kl_registry_filter *f)
{
	int64_t tid;
	int rc;

	if (f && f->state >= 0) {
		if (f->state >= KL_DEVICE__MAX)
			return kl_error_set(KL_E_INVALID, "device state %d out of range", f->state);
		kl_db_bind_text(st, 1, kl_registry_state_name((kl_device_state)f->state));
	}
	if (f && f->tenant) {
		/* An unknown tenant is a mistake worth saying, not an empty list. */
		if ((rc = kl_reg_tenant_id(r, f->tenant, &tid)) < 0)
			return rc;
		kl_db_bind_int64(st, 2, tid);
	}
	if (f && f->search && *f->search)
		kl_db_bind_text(st, 5, f->search);
	return 0;
}

/* The keyset cursor of kl_registry_device_list: ?6 the last serial seen
 * (NULL: none), ?7 its state_time. */
#define AFTER_SERIAL "AND (?6 IS NULL OR d.serial > ?6) "
#define AFTER_NEWEST \
	"AND (?6 IS NULL OR d.state_time < ?7 OR (d.state_time = ?7 AND d.serial > ?6)) "

/* instr(), not LIKE: the search text is taken literally. */
#define FILTER_WHERE                                                               \
	"WHERE (?1 IS NULL OR d.state = ?1) AND (?2 IS NULL OR d.tenant_id = ?2) " \
	"AND (?5 IS NULL OR instr(d.serial, ?5) > 0) "

int kl_registry_device_list(kl_registry *r, const kl_registry_filter *f, kl_registry_device_fn fn,
                            void *ctx)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	kl_registry_device d;
	int n = 0, rc;

	rc = kl_reg_prepare(r,
	                    f && f->newest_first ? KL_REG_DEVICE_SELECT FILTER_WHERE AFTER_NEWEST
	                        "ORDER BY d.state_time DESC, d.serial LIMIT ?3 OFFSET ?4"
	                                         : KL_REG_DEVICE_SELECT FILTER_WHERE AFTER_SERIAL
	                        "ORDER BY d.serial LIMIT ?3 OFFSET ?4",
	                    &st);
	if (rc < 0 || (rc = filter_bind(r, st, f)) < 0)
		return rc;
	if (f && f->after) {
		kl_db_bind_text(st, 6, f->after);
		if (f->newest_first)
			kl_db_bind_int64(st, 7, f->after_time);
	}
	kl_db_bind_int64(st, 3, f && f->limit > 0 ? f->limit : -1);
	kl_db_bind_int64(st, 4, f && f->offset > 0 ? f->offset : 0);
	while ((rc = kl_db_step(st)) == 1) {
		kl_reg_device_from_row(st, &d);
		n++;
		if ((rc = fn(ctx, &d)) < 0)
			return rc;
	}
	if (rc != 0)
		return kl_reg_db_error(r, "list devices");
	return n;
}

int kl_registry_device_count(kl_registry *r, const kl_registry_filter *f, int64_t *ret)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int rc = kl_reg_prepare(r, "SELECT count(*) FROM reg_device d " FILTER_WHERE, &st);

	if (rc < 0 || (rc = filter_bind(r, st, f)) < 0)
		return rc;
	if (kl_db_step_row(st) < 0)
		return kl_reg_db_error(r, "count devices");
	*ret = kl_db_column_int64(st, 0);
	return 0;
}

static int device_id(kl_registry *r, const char *serial, int64_t *ret)
{
	kl_registry_device d;
	int rc = kl_registry_device_get(r, serial, &d);

	if (rc == 0)
		*ret = d.id;
	return rc;
}

int kl_registry_device_history(kl_registry *r, const char *serial, kl_registry_event_fn fn,
                               void *ctx)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t id = 0;
	int n = 0, rc;

	if ((rc = device_id(r, serial, &id)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "SELECT h.from_state, h.to_state, t.name, h.ek_sha256, h.reason, "
	                         "h.actor, h.time FROM reg_device_history h "
	                         "JOIN reg_tenant t ON t.id = h.tenant_id "
	                         "WHERE h.device_id = ?1 ORDER BY h.id",
	                         &st)) < 0)
		return rc;
	kl_db_bind_int64(st, 1, id);
	while ((rc = kl_db_step(st)) == 1) {
		const char *from = kl_db_column_text(st, 0);
		const char *ek = kl_db_column_text(st, 3);
		const char *reason = kl_db_column_text(st, 4);
		kl_registry_event ev = {
			.from = from ? kl_registry_state_from_name(from) : -1,
			.to =
			    (kl_device_state)kl_registry_state_from_name(kl_db_column_text(st, 1)),
			.tenant = kl_db_column_text(st, 2),
			.ek_sha256 = ek ? ek : "",
			.reason = reason ? reason : "",
			.actor = kl_db_column_text(st, 5),
			.time = kl_db_column_int64(st, 6),
		};

		n++;
		if ((rc = fn(ctx, &ev)) < 0)
			return rc;
	}
	if (rc != 0)
		return kl_reg_db_error(r, "device history");
	return n;
}

int kl_registry_device_evidence(kl_registry *r, const char *serial, kl_registry_evidence_fn fn,
                                void *ctx)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int64_t id = 0;
	int n = 0, rc;

	if ((rc = device_id(r, serial, &id)) < 0 ||
	    (rc = kl_reg_prepare(r,
	                         "SELECT evidence, created FROM reg_evidence WHERE device_id = ?1 "
	                         "ORDER BY id",
	                         &st)) < 0)
		return rc;
	kl_db_bind_int64(st, 1, id);
	while ((rc = kl_db_step(st)) == 1) {
		n++;
		if ((rc = fn(ctx, kl_db_column_text(st, 0), kl_db_column_int64(st, 1))) < 0)
			return rc;
	}
	if (rc != 0)
		return kl_reg_db_error(r, "device evidence");
	return n;
}

int kl_registry_device_certs(kl_registry *r, const char *serial, kl_registry_cert_fn fn, void *ctx)
{
	_cleanup_(kl_db_stmt_freep) kl_db_stmt *st = NULL;
	int n = 0, rc;

	/* The CA's table, read-only: the registry shares its database. */
	rc =
	    kl_reg_prepare(r,
	                   "SELECT c.serial, c.profile, c.state, i.name, c.not_after, c.revoked, "
	                   "c.reason, c.cert FROM ca_cert c JOIN ca_issuer i ON i.id = c.issuer_id "
	                   "WHERE c.device_serial = ?1 ORDER BY c.created, c.rowid",
	                   &st);
	if (rc < 0)
		return rc;
	kl_db_bind_text(st, 1, serial ? serial : "");
	while ((rc = kl_db_step(st)) == 1) {
		kl_registry_cert c = {
			.serial = kl_db_column_text(st, 0),
			.profile = kl_db_column_text(st, 1),
			.state = kl_db_column_text(st, 2),
			.issuer = kl_db_column_text(st, 3),
			.not_after = kl_db_column_int64(st, 4),
			.revoked = kl_db_column_int64(st, 5),
			.reason = kl_db_column_int(st, 6),
		};

		c.der = kl_db_column_blob(st, 7, &c.der_len);
		if (!c.der)
			c.der_len = 0;
		n++;
		if ((rc = fn(ctx, &c)) < 0)
			return rc;
	}
	if (rc != 0)
		return kl_reg_db_error(r, "device certificates");
	return n;
}
