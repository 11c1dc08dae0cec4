/* The CA store's revocations: marking a certificate revoked, and the
 * revoked entries a CRL is built from. See store.h. */
#include "store.h"
#include "store_internal.h"

#include "kl_error.h"

int kl_store_revoked_count(kl_store *s, int64_t issuer_id, int64_t *ret)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(
	    s->db, "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1 AND revoked IS NOT NULL",
	    &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	r = kl_db_step_row(st);
	if (r == 0)
		*ret = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("count revoked") : 0;
}

int kl_store_cert_revoke(kl_store *s, int64_t issuer_id, const char *serial, int reason,
                         int64_t when)
{
	kl_cert_row row;
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "UPDATE ca_cert SET revoked = ?3, reason = ?4 "
	                         "WHERE issuer_id = ?1 AND serial = ?2 AND revoked IS NULL "
	                         "AND state IN ('issued', 'abandoned')",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	kl_db_bind_text(st, 2, serial);
	kl_db_bind_int64(st, 3, when);
	kl_db_bind_int64(st, 4, reason);
	r = kl_store_step_done(st, "revoke");
	kl_db_stmt_free(st);
	if (r < 0)
		return r;
	if (r == 1)
		return 0;
	/* Nothing changed: say why. */
	r = kl_store_cert_get(s, issuer_id, serial, &row);
	if (r < 0)
		return r;
	if (row.revoked)
		r = kl_error_set(KL_E_STATE, "certificate %s is already revoked", serial);
	else
		r = kl_error_set(KL_E_STATE, "certificate %s was never issued (state %s)", serial,
		                 row.state);
	kl_cert_row_clear(&row);
	return r;
}

int kl_store_revoked_each(kl_store *s, int64_t issuer_id, int64_t after, kl_revoked_fn fn,
                          void *ctx)
{
	kl_db_stmt *st;
	int r, rc;

	r = kl_db_prepare_cached(s->db,
	                         "SELECT serial, revoked, reason FROM ca_cert "
	                         "WHERE issuer_id = ?1 AND revoked IS NOT NULL AND not_after >= ?2",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	kl_db_bind_int64(st, 2, after);
	r = 0;
	while ((rc = kl_db_step(st)) == 1) {
		r = fn(ctx, kl_db_column_text(st, 0), kl_db_column_int64(st, 1),
		       kl_db_column_int(st, 2));
		if (r < 0)
			break;
	}
	if (r == 0 && rc < 0)
		r = kl_error_wrap("list revoked");
	kl_db_stmt_free(st);
	return r;
}
