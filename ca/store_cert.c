/* The CA store's certificate rows: serial reservation, the issued and
 * rejected outcomes, look-ups and counts, and the start-up reconciliation
 * of rows left pending. See store.h. */
#include "store.h"
#include "store_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kl_error.h"

/* "host:pid" of this process, for the owner column of pending rows. */
static const char *owner_id(void)
{
	static char id[300];
	static pid_t for_pid;

	/* Recomputed after a fork: the child is another owner. */
	if (for_pid != getpid()) {
		for_pid = getpid();
		char host[256] = "";

		gethostname(host, sizeof(host) - 1);
		snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
	}
	return id;
}

static int cert_reserve(kl_store *s, const kl_cert_pending *p)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "INSERT INTO ca_cert(issuer_id, serial, state, profile, subject, "
	                         "device_serial, tbs, not_after, created, owner) "
	                         "VALUES(?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, p->issuer_id);
	kl_db_bind_text(st, 2, p->serial);
	kl_db_bind_text(st, 3, p->profile);
	kl_db_bind_text(st, 4, p->subject);
	kl_db_bind_text(st, 5, p->device_serial); /* NULL binds NULL */
	kl_db_bind_blob(st, 6, p->tbs, p->tbs_len);
	kl_db_bind_int64(st, 7, p->not_after);
	kl_db_bind_int64(st, 8, kl_store_now());
	kl_db_bind_text(st, 9, owner_id());
	r = kl_store_step_done(st, "reserve serial");
	kl_db_stmt_free(st);
	return r < 0 ? r : 0;
}

int kl_store_cert_reserve(kl_store *s, const kl_cert_pending *p)
{
	return IN_TXN(s, cert_reserve(s, p));
}

int kl_store_cert_reserve_many(kl_store *s, const kl_cert_pending *p, size_t n, size_t *collided)
{
	int r = kl_store_begin(s);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		r = cert_reserve(s, &p[i]);
		if (r < 0) {
			if (collided)
				*collided = i;
			kl_store_rollback(s);
			return r;
		}
	}
	return kl_store_commit(s);
}

int kl_store_cert_issued(kl_store *s, int64_t issuer_id, const char *serial,
                         const unsigned char *der, size_t len)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "UPDATE ca_cert SET state = 'issued', cert = ?3, issued = ?4 "
	                         "WHERE issuer_id = ?1 AND serial = ?2 AND state = 'pending'",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	kl_db_bind_text(st, 2, serial);
	kl_db_bind_blob(st, 3, der, len);
	kl_db_bind_int64(st, 4, kl_store_now());
	r = kl_store_step_done(st, "mark issued");
	kl_db_stmt_free(st);
	if (r == 0)
		return kl_error_set(KL_E_STATE, "serial %s is not pending", serial);
	return r < 0 ? r : 0;
}

int kl_store_cert_rejected(kl_store *s, int64_t issuer_id, const char *serial, const char *why)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "UPDATE ca_cert SET state = 'rejected', note = ?3 "
	                         "WHERE issuer_id = ?1 AND serial = ?2 AND state = 'pending'",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	kl_db_bind_text(st, 2, serial);
	kl_db_bind_text(st, 3, why);
	r = kl_store_step_done(st, "mark rejected");
	kl_db_stmt_free(st);
	return r < 0 ? r : 0;
}

/* A malloc'd copy of a blob column; NULL (and *len 0) for NULL, empty or
 * out of memory. */
static unsigned char *dup_blob(kl_db_stmt *st, int col, size_t *len)
{
	size_t n = 0;
	const void *p = kl_db_column_blob(st, col, &n);
	unsigned char *copy;

	*len = 0;
	if (!p || n == 0)
		return NULL;
	copy = malloc(n);
	if (copy) {
		memcpy(copy, p, n);
		*len = n;
	}
	return copy;
}

int kl_store_cert_get(kl_store *s, int64_t issuer_id, const char *serial, kl_cert_row *ret)
{
	kl_cert_row row = { 0 };
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(
	    s->db,
	    "SELECT serial, state, profile, subject, device_serial, cert, tbs, "
	    "not_after, revoked, reason FROM ca_cert WHERE issuer_id = ?1 AND serial = ?2",
	    &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	kl_db_bind_text(st, 2, serial);
	r = kl_db_step(st);
	if (r <= 0) {
		kl_db_stmt_free(st);
		return r == 0 ? kl_error_set(KL_E_NOTFOUND, "no certificate with serial %s", serial)
		              : kl_error_wrap("get certificate");
	}
	kl_db_column_copy(st, 0, row.serial, sizeof(row.serial));
	kl_db_column_copy(st, 1, row.state, sizeof(row.state));
	kl_db_column_copy(st, 2, row.profile, sizeof(row.profile));
	kl_db_column_copy(st, 3, row.subject, sizeof(row.subject));
	kl_db_column_copy(st, 4, row.device_serial, sizeof(row.device_serial));
	row.der = dup_blob(st, 5, &row.der_len);
	row.tbs = dup_blob(st, 6, &row.tbs_len);
	row.not_after = kl_db_column_int64(st, 7);
	row.revoked = kl_db_column_int64(st, 8);
	row.reason = kl_db_column_int(st, 9);
	kl_db_stmt_free(st);
	*ret = row;
	return 0;
}

void kl_cert_row_clear(kl_cert_row *row)
{
	free(row->der);
	free(row->tbs);
	memset(row, 0, sizeof(*row));
}

int kl_store_cert_count(kl_store *s, int64_t issuer_id, const char *state, int64_t *ret)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         state ? "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1 AND "
	                                 "state = ?2"
	                               : "SELECT count(*) FROM ca_cert WHERE issuer_id = ?1",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	if (state)
		kl_db_bind_text(st, 2, state);
	r = kl_db_step_row(st);
	if (r == 0)
		*ret = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("count") : 0;
}

/* Whether the process that reserved a pending row may still be working on
 * it. On this host: its pid is alive (a reused pid errs on the safe side:
 * the row waits). Another host's process cannot be asked: its rows count as
 * gone after an hour. */
static bool owner_alive(const char *owner, int64_t created)
{
	char host[256] = "";
	const char *colon;
	long pid;

	if (!owner || !(colon = strrchr(owner, ':')))
		return false;
	gethostname(host, sizeof(host) - 1);
	if ((size_t)(colon - owner) != strlen(host) || strncmp(owner, host, strlen(host)) != 0)
		return kl_store_now() - created < 3600;
	pid = strtol(colon + 1, NULL, 10);
	if (pid <= 0)
		return false;
	if (pid == (long)getpid())
		return true;
	return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* The serials of issuer_id's pending rows whose owners are gone. */
static int pending_gone(kl_store *s, int64_t issuer_id, char (**ret)[48], size_t *ret_n)
{
	char(*gone)[48] = NULL;
	size_t n = 0, cap = 0;
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "SELECT serial, owner, created FROM ca_cert "
	                         "WHERE issuer_id = ?1 AND state = 'pending'",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, issuer_id);
	while ((r = kl_db_step(st)) == 1) {
		const char *serial = kl_db_column_text(st, 0);

		if (owner_alive(kl_db_column_text(st, 1), kl_db_column_int64(st, 2)))
			continue;
		if (n == cap) {
			void *grown = realloc(gone, (cap = cap ? 2 * cap : 16) * sizeof(*gone));

			if (!grown) {
				r = kl_error_set(KL_E_NOMEM, "list pending: out of memory");
				break;
			}
			gone = grown;
		}
		snprintf(gone[n++], sizeof(gone[0]), "%s", serial ? serial : "");
	}
	kl_db_stmt_free(st);
	if (r < 0) {
		free(gone);
		return kl_error_wrap("list pending");
	}
	*ret = gone;
	*ret_n = n;
	return 0;
}

static int reconcile(kl_store *s, int64_t issuer_id, const char *actor)
{
	char(*gone)[48] = NULL;
	size_t n_gone = 0;
	json_object *d;
	int n = 0, r;

	if ((r = pending_gone(s, issuer_id, &gone, &n_gone)) < 0)
		return r;
	for (size_t i = 0; i < n_gone && n >= 0; i++) {
		kl_db_stmt *st;

		r = kl_db_prepare_cached(
		    s->db,
		    "UPDATE ca_cert SET state = 'abandoned', revoked = ?2, reason = 0, "
		    "note = 'pending at start-up, its process gone: possibly issued' "
		    "WHERE issuer_id = ?1 AND serial = ?3 AND state = 'pending'",
		    &st);
		if (r < 0) {
			n = r;
			break;
		}
		kl_db_bind_int64(st, 1, issuer_id);
		kl_db_bind_int64(st, 2, kl_store_now());
		kl_db_bind_text(st, 3, gone[i]);
		r = kl_store_step_done(st, "reconcile pending");
		kl_db_stmt_free(st);
		n = r < 0 ? r : n + r;
	}
	free(gone);
	if (n <= 0)
		return n;
	d = kl_store_detail_add(json_object_new_object(), "issuer",
	                        json_object_new_int64(issuer_id));
	d = kl_store_detail_add(d, "abandoned", json_object_new_int(n));
	r = kl_store_audit_json(s, actor, "ca.reconcile", d);
	return r < 0 ? r : n;
}

int kl_store_reconcile(kl_store *s, int64_t issuer_id, const char *actor)
{
	int n, r = kl_store_begin(s);

	if (r < 0)
		return r;
	n = reconcile(s, issuer_id, actor);
	if (n < 0) {
		kl_store_rollback(s);
		return n;
	}
	r = kl_store_commit(s);
	return r < 0 ? r : n;
}
