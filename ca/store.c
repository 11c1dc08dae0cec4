/* The CA store: its database, transactions and issuers. Certificates are
 * in store_cert.c, revocations in store_revoke.c, the audit log in
 * store_audit.c; the SQL runs through kl_db. See store.h. */
#include "store.h"
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kl_error.h"

/* Versioned migrations for the CA's tables. A migration runs once, in a
 * transaction with the version bump. Never edit a released one: add more. */
static const char *const ca_migrations[] = {
	/* 1 */
	"CREATE TABLE ca_issuer("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  key_uri TEXT NOT NULL,"
	"  cert BLOB NOT NULL,"
	"  crl_number INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL);"
	"CREATE TABLE ca_cert("
	"  issuer_id INTEGER NOT NULL REFERENCES ca_issuer(id),"
	"  serial TEXT NOT NULL,"
	"  state TEXT NOT NULL CHECK(state IN ('pending','issued','rejected','abandoned')),"
	"  profile TEXT NOT NULL,"
	"  subject TEXT NOT NULL,"
	"  device_serial TEXT,"
	"  tbs BLOB NOT NULL,"
	"  cert BLOB,"
	"  not_after INTEGER NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  issued INTEGER,"
	"  revoked INTEGER,"
	"  reason INTEGER,"
	"  note TEXT,"
	"  UNIQUE(issuer_id, serial));"
	"CREATE INDEX ca_cert_revoked ON ca_cert(issuer_id, revoked) WHERE revoked IS NOT NULL;"
	"CREATE INDEX ca_cert_device ON ca_cert(device_serial);"
	"CREATE TABLE audit("
	"  seq INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  actor TEXT NOT NULL,"
	"  action TEXT NOT NULL,"
	"  detail TEXT NOT NULL,"
	"  prev BLOB NOT NULL,"
	"  hash BLOB NOT NULL);"
	"CREATE TABLE audit_head(id INTEGER PRIMARY KEY CHECK(id = 1), seq INTEGER NOT NULL,"
	"  hash BLOB NOT NULL);",
	/* 2: which process reserved a pending row ("host:pid"), so that a
	 * start-up abandons only the rows of processes that are gone. */
	"ALTER TABLE ca_cert ADD COLUMN owner TEXT;",
	/* 3: the devices each audit entry is about, so that a device's
	 * entries are found by an index, not by reading the log. The chained
	 * rows are not touched: the links are derived from their details by
	 * the rule of store_audit.c (detail_devices), which this backfill of
	 * the entries written so far repeats in SQL. */
	"CREATE TABLE audit_device("
	"  serial TEXT NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  PRIMARY KEY(serial, seq)) WITHOUT ROWID;"
	"INSERT OR IGNORE INTO audit_device(serial, seq)"
	"  SELECT s, seq FROM (SELECT seq,"
	"    CASE WHEN json_valid(detail) THEN CASE WHEN json_type(detail, '$.serial') = 'text'"
	"      THEN json_extract(detail, '$.serial') END END AS s"
	"    FROM audit WHERE substr(action, 1, 3) <> 'ca.')"
	"  WHERE s IS NOT NULL;"
	"INSERT OR IGNORE INTO audit_device(serial, seq)"
	"  SELECT s, seq FROM (SELECT a.seq AS seq,"
	"    CASE WHEN i.type = 'object' THEN CASE WHEN json_type(i.value, '$.serial') = 'text'"
	"      THEN json_extract(i.value, '$.serial') END END AS s"
	"    FROM audit a, json_each(CASE WHEN json_valid(a.detail) THEN a.detail ELSE '{}' END,"
	"      '$.items') i"
	"    WHERE substr(a.action, 1, 3) <> 'ca.')"
	"  WHERE s IS NOT NULL;",
};

int64_t kl_store_now(void)
{
	return (int64_t)time(NULL);
}

int kl_store_step_done(kl_db_stmt *st, const char *what)
{
	int r = kl_db_step_done(st);

	return r < 0 ? kl_error_wrap("%s", what) : r;
}

kl_db *kl_store_db(kl_store *s)
{
	return s->db;
}

int kl_store_open(const char *path, kl_store **ret)
{
	kl_store *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return kl_error_set(KL_E_NOMEM, "store: out of memory");
	r = kl_db_open(path, &s->db);
	if (r < 0) {
		free(s);
		return r;
	}
	r = kl_db_migrate(s->db, "ca", ca_migrations,
	                  sizeof(ca_migrations) / sizeof(ca_migrations[0]));
	if (r < 0) {
		kl_store_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void kl_store_free(kl_store *s)
{
	if (!s)
		return;
	kl_db_free(s->db);
	free(s);
}

int kl_store_begin(kl_store *s)
{
	return kl_db_begin(s->db);
}

int kl_store_commit(kl_store *s)
{
	return kl_db_commit(s->db);
}

void kl_store_rollback(kl_store *s)
{
	kl_db_rollback(s->db);
}

/* Issuers. */

static int issuer_add(kl_store *s, const char *name, const char *key_uri,
                      const unsigned char *cert_der, size_t cert_len, int64_t *ret_id)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(
	    s->db, "INSERT INTO ca_issuer(name, key_uri, cert, created) VALUES(?1, ?2, ?3, ?4)",
	    &st);
	if (r < 0)
		return r;
	kl_db_bind_text(st, 1, name);
	kl_db_bind_text(st, 2, key_uri);
	kl_db_bind_blob(st, 3, cert_der, cert_len);
	kl_db_bind_int64(st, 4, kl_store_now());
	r = kl_store_step_done(st, "add issuer");
	kl_db_stmt_free(st);
	if (r < 0)
		return r == -KL_E_EXISTS
		           ? kl_error_set(KL_E_EXISTS, "issuer '%s' exists already", name)
		           : r;
	if (ret_id)
		*ret_id = kl_db_last_id(s->db);
	return 0;
}

int kl_store_issuer_add(kl_store *s, const char *name, const char *key_uri,
                        const unsigned char *cert_der, size_t cert_len, int64_t *ret_id)
{
	return IN_TXN(s, issuer_add(s, name, key_uri, cert_der, cert_len, ret_id));
}

static int issuer_set_cert(kl_store *s, int64_t id, const unsigned char *cert_der, size_t cert_len)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db, "UPDATE ca_issuer SET cert = ?2 WHERE id = ?1", &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, id);
	kl_db_bind_blob(st, 2, cert_der, cert_len);
	r = kl_store_step_done(st, "set issuer certificate");
	kl_db_stmt_free(st);
	return r;
}

int kl_store_issuer_set_cert(kl_store *s, int64_t id, const unsigned char *cert_der,
                             size_t cert_len)
{
	int r = IN_TXN(s, issuer_set_cert(s, id, cert_der, cert_len));

	return r < 0 ? r : 0;
}

int kl_store_issuer_get(kl_store *s, const char *name, kl_issuer_row *ret)
{
	kl_issuer_row row = { 0 };
	kl_db_stmt *st;
	const void *cert;
	int r;

	r = kl_db_prepare_cached(
	    s->db, "SELECT id, name, key_uri, cert, crl_number FROM ca_issuer WHERE name = ?1",
	    &st);
	if (r < 0)
		return r;
	kl_db_bind_text(st, 1, name);
	r = kl_db_step(st);
	if (r == 0) {
		kl_db_stmt_free(st);
		return kl_error_set(KL_E_NOTFOUND, "no issuer named '%s' (run 'keyline ca init')",
		                    name);
	}
	if (r < 0) {
		kl_db_stmt_free(st);
		return kl_error_wrap("get issuer");
	}
	row.id = kl_db_column_int64(st, 0);
	kl_db_column_copy(st, 1, row.name, sizeof(row.name));
	kl_db_column_copy(st, 2, row.key_uri, sizeof(row.key_uri));
	cert = kl_db_column_blob(st, 3, &row.cert_len);
	row.cert_der = row.cert_len ? malloc(row.cert_len) : NULL;
	if (row.cert_der)
		memcpy(row.cert_der, cert, row.cert_len);
	row.crl_number = kl_db_column_int64(st, 4);
	kl_db_stmt_free(st);
	if (!row.cert_der)
		return kl_error_set(KL_E_NOMEM, "get issuer: out of memory");
	*ret = row;
	return 0;
}

void kl_issuer_row_clear(kl_issuer_row *row)
{
	free(row->cert_der);
	memset(row, 0, sizeof(*row));
}

static int issuer_next_crl_number(kl_store *s, int64_t id, int64_t *ret)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(
	    s->db, "UPDATE ca_issuer SET crl_number = crl_number + 1 WHERE id = ?1", &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, id);
	r = kl_store_step_done(st, "bump CRL number");
	kl_db_stmt_free(st);
	if (r < 0)
		return r;
	r = kl_db_prepare_cached(s->db, "SELECT crl_number FROM ca_issuer WHERE id = ?1", &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, id);
	r = kl_db_step(st);
	if (r == 1)
		*ret = kl_db_column_int64(st, 0);
	kl_db_stmt_free(st);
	if (r == 0)
		return kl_error_set(KL_E_NOTFOUND, "issuer %lld not found", (long long)id);
	return r < 0 ? kl_error_wrap("get CRL number") : 0;
}

int kl_store_issuer_next_crl_number(kl_store *s, int64_t id, int64_t *ret)
{
	int64_t n = 0;
	int r = IN_TXN(s, issuer_next_crl_number(s, id, &n));

	if (r == 0)
		*ret = n;
	return r;
}
