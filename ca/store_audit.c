/* The CA store's audit log: entries chained by SHA-256, listing, and the
 * check of the chain. See store.h. */
#include "store.h"
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "kl_error.h"
#include "kl_log.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* hash = SHA-256(prev || seq || time_ms || actor || 0 || action || 0 || detail),
 * with seq and time as 8-byte big-endian. */
static int audit_hash(int64_t seq, int64_t t, const char *actor, const char *action,
                      const char *detail, const unsigned char prev[32], unsigned char out[32])
{
	unsigned char be[16];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	for (int i = 0; i < 8; i++) {
		be[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
		be[8 + i] = (unsigned char)((uint64_t)t >> (56 - 8 * i));
	}
	ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, prev, 32) &&
	     EVP_DigestUpdate(md, be, sizeof(be)) &&
	     EVP_DigestUpdate(md, actor, strlen(actor) + 1) &&
	     EVP_DigestUpdate(md, action, strlen(action) + 1) &&
	     EVP_DigestUpdate(md, detail, strlen(detail)) && EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
	return ok ? 0 : kl_error_set_ssl(KL_E_CRYPTO, "audit hash");
}

/* The last entry's seq and hash (0 and zeros for an empty log). */
static int audit_head(kl_store *s, int64_t *seq, unsigned char hash[32])
{
	kl_db_stmt *st;
	const void *h;
	size_t n = 0;
	int r;

	r = kl_db_prepare_cached(s->db, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
	                         &st);
	if (r < 0)
		return r;
	*seq = 0;
	memset(hash, 0, 32);
	r = kl_db_step(st);
	if (r == 1) {
		*seq = kl_db_column_int64(st, 0);
		h = kl_db_column_blob(st, 1, &n);
		if (n == 32)
			memcpy(hash, h, 32);
	}
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("audit head") : 0;
}

/* Links entry seq to one device. */
static int link_device(kl_store *s, int64_t seq, const char *serial)
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(
	    s->db, "INSERT OR IGNORE INTO audit_device(serial, seq) VALUES(?1, ?2)", &st);
	if (r < 0)
		return r;
	kl_db_bind_text(st, 1, serial);
	kl_db_bind_int64(st, 2, seq);
	r = kl_store_step_done(st, "audit device link");
	kl_db_stmt_free(st);
	return r < 0 ? r : 0;
}

static const char *json_str_member(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* The rule that says which devices an entry is about (store.h), the same
 * one migration 3 in store.c applied to the entries before it: outside the
 * CA's own actions (ca.*, whose "serial" is a certificate's), the
 * detail's top-level "serial" and the "serial" of each object in its
 * "items" array. The links are derived from the chained detail, so they
 * can always be rebuilt from the log and are not part of the hash. */
static int detail_devices(kl_store *s, int64_t seq, const char *action, const char *detail)
{
	json_object *d, *items;
	const char *serial;
	int r = 0;

	if (strncmp(action, "ca.", 3) == 0)
		return 0;
	d = json_tokener_parse(detail);
	if (!d)
		return 0; /* not JSON: about nothing we can name */
	if ((serial = json_str_member(d, "serial")))
		r = link_device(s, seq, serial);
	if (r == 0 && json_object_object_get_ex(d, "items", &items) &&
	    json_object_is_type(items, json_type_array)) {
		size_t n = json_object_array_length(items);

		for (size_t i = 0; r == 0 && i < n; i++)
			if ((serial =
			         json_str_member(json_object_array_get_idx(items, i), "serial")))
				r = link_device(s, seq, serial);
	}
	json_object_put(d);
	return r;
}

static int audit_add(kl_store *s, const char *actor, const char *action, const char *detail)
{
	unsigned char prev[32], hash[32];
	kl_db_stmt *st;
	int64_t seq, t = now_ms();
	int r;

	if ((r = audit_head(s, &seq, prev)) < 0)
		return r;
	seq++;
	r = audit_hash(seq, t, actor, action, detail, prev, hash);
	if (r < 0)
		return r;
	r = kl_db_prepare_cached(s->db,
	                         "INSERT INTO audit(seq, time, actor, action, detail, prev, hash) "
	                         "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, seq);
	kl_db_bind_int64(st, 2, t);
	kl_db_bind_text(st, 3, actor);
	kl_db_bind_text(st, 4, action);
	kl_db_bind_text(st, 5, detail);
	kl_db_bind_blob(st, 6, prev, 32);
	kl_db_bind_blob(st, 7, hash, 32);
	r = kl_store_step_done(st, "audit");
	kl_db_stmt_free(st);
	if (r < 0)
		return r;
	/* The head row lets verify notice a deleted last entry. */
	r = kl_db_prepare_cached(
	    s->db, "INSERT OR REPLACE INTO audit_head(id, seq, hash) VALUES(1, ?1, ?2)", &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, seq);
	kl_db_bind_blob(st, 2, hash, 32);
	r = kl_store_step_done(st, "audit head");
	kl_db_stmt_free(st);
	if (r < 0)
		return r;
	return detail_devices(s, seq, action, detail);
}

int kl_store_audit(kl_store *s, const char *actor, const char *action, const char *detail)
{
	int r = IN_TXN(s, audit_add(s, actor, action, detail && *detail ? detail : "{}"));

	if (r < 0) {
		atomic_fetch_add(&s->audit_failures, 1);
		kl_log_error("audit", "audit entry %s by %s not written: %s", action, actor,
		             kl_error_detail());
	}
	return r;
}

void kl_store_audit_noted(kl_store *s, const char *actor, const char *action, const char *detail)
{
	kl_err code = kl_error_code();
	char *saved = code != KL_OK ? strdup(kl_error_detail()) : NULL;

	/* A failure is counted and logged by kl_store_audit; what the entry
	 * records stands, and so does the caller's own error, if it had one
	 * (a station stopping on an error reports that one). */
	if (kl_store_audit(s, actor, action, detail) < 0) {
		if (code == KL_OK)
			kl_error_clear();
		else
			kl_error_set(code, "%s", saved ? saved : "");
	}
	free(saved);
}

uint64_t kl_store_audit_failures(kl_store *s)
{
	return atomic_load(&s->audit_failures);
}

int kl_store_audit_json(kl_store *s, const char *actor, const char *action, json_object *detail)
{
	const char *text;
	int r;

	if (!detail) {
		atomic_fetch_add(&s->audit_failures, 1);
		return kl_error_set(KL_E_NOMEM, "audit %s: out of memory", action);
	}
	text = json_object_to_json_string_ext(detail, JSON_C_TO_STRING_PLAIN |
	                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text) {
		r = kl_store_audit(s, actor, action, text);
	} else {
		atomic_fetch_add(&s->audit_failures, 1);
		r = kl_error_set(KL_E_NOMEM, "audit %s: out of memory", action);
	}
	json_object_put(detail);
	return r;
}

json_object *kl_store_detail_add(json_object *d, const char *key, json_object *value)
{
	if (d && value && json_object_object_add(d, key, value) == 0)
		return d;
	json_object_put(value);
	json_object_put(d);
	return NULL;
}

/* Calls fn for each row (seq, time, actor, action, detail) of st; the
 * number of rows, or the first error: fn's as it is, the database's
 * wrapped with what. */
static int each_entry(kl_db_stmt *st, kl_audit_fn fn, void *ctx, const char *what)
{
	int n = 0, rc, r = 0;

	while (r == 0 && (rc = kl_db_step(st)) == 1) {
		kl_audit_entry e = {
			.seq = kl_db_column_int64(st, 0),
			.time_ms = kl_db_column_int64(st, 1),
			.actor = kl_db_column_text(st, 2),
			.action = kl_db_column_text(st, 3),
			.detail = kl_db_column_text(st, 4),
		};
		n++;
		r = fn(ctx, &e);
	}
	if (r == 0 && rc < 0)
		r = kl_error_wrap("%s", what);
	return r < 0 ? r : n;
}

int kl_store_audit_list(kl_store *s, int64_t before, const char *action_prefix, int64_t limit,
                        kl_audit_fn fn, void *ctx)
{
	kl_db_stmt *st = NULL;
	int r;

	r = kl_db_prepare(s->db,
	                  "SELECT seq, time, actor, action, detail FROM audit "
	                  "WHERE (?1 <= 0 OR seq < ?1) AND (?2 IS NULL OR "
	                  "substr(action, 1, length(?2)) = ?2) ORDER BY seq DESC LIMIT ?3",
	                  &st);
	if (r < 0)
		return kl_error_wrap("audit list");
	kl_db_bind_int64(st, 1, before);
	if (action_prefix && *action_prefix)
		kl_db_bind_text(st, 2, action_prefix);
	kl_db_bind_int64(st, 3, limit > 0 ? limit : 100);
	r = each_entry(st, fn, ctx, "audit list");
	kl_db_stmt_free(st);
	return r;
}

int kl_store_audit_device(kl_store *s, const char *serial, int64_t before, int64_t limit,
                          kl_audit_fn fn, void *ctx)
{
	kl_db_stmt *st = NULL;
	char what[96];
	int r;

	if (!serial || !*serial)
		return kl_error_set(KL_E_INVALID, "audit of a device: no serial");
	r = kl_db_prepare(s->db,
	                  "SELECT a.seq, a.time, a.actor, a.action, a.detail "
	                  "FROM audit_device d JOIN audit a ON a.seq = d.seq "
	                  "WHERE d.serial = ?1 AND (?2 <= 0 OR d.seq < ?2) "
	                  "ORDER BY d.seq DESC LIMIT ?3",
	                  &st);
	if (r < 0)
		return kl_error_wrap("audit of device %s", serial);
	kl_db_bind_text(st, 1, serial);
	kl_db_bind_int64(st, 2, before);
	kl_db_bind_int64(st, 3, limit > 0 ? limit : 100);
	snprintf(what, sizeof(what), "audit of device %s", serial);
	r = each_entry(st, fn, ctx, what);
	kl_db_stmt_free(st);
	return r;
}

/* Checks that the head row records the chain's last entry; fills rep
 * when it does not. */
static int audit_check_head(kl_store *s, const unsigned char last[32], kl_audit_report *rep)
{
	kl_db_stmt *st;
	const void *h;
	size_t n = 0;
	int r;

	r = kl_db_prepare_cached(s->db, "SELECT seq, hash FROM audit_head WHERE id = 1", &st);
	if (r < 0)
		return r;
	r = kl_db_step(st);
	if (r == 1) {
		int64_t head = kl_db_column_int64(st, 0);

		h = kl_db_column_blob(st, 1, &n);
		if (head != rep->entries || n != 32 || CRYPTO_memcmp(h, last, 32) != 0) {
			rep->first_bad = rep->entries + 1;
			snprintf(rep->problem, sizeof(rep->problem),
			         "the log ends at entry %lld but its head records entry %lld: "
			         "entries were deleted from the end",
			         (long long)rep->entries, (long long)head);
		}
	} else if (r == 0 && rep->entries > 0) {
		rep->first_bad = 1;
		snprintf(rep->problem, sizeof(rep->problem), "the log's head record is missing");
	}
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("audit head") : 0;
}

/* The checkpoint: seq 0 and zeros when there is none. */
static int checkpoint_get(kl_store *s, int64_t *seq, unsigned char hash[32])
{
	kl_db_stmt *st;
	const void *h;
	size_t n = 0;
	int r;

	*seq = 0;
	memset(hash, 0, 32);
	r = kl_db_prepare_cached(s->db, "SELECT seq, hash FROM audit_checkpoint WHERE id = 1", &st);
	if (r < 0)
		return r;
	r = kl_db_step(st);
	if (r == 1) {
		h = kl_db_column_blob(st, 1, &n);
		if (n == 32) {
			*seq = kl_db_column_int64(st, 0);
			memcpy(hash, h, 32);
		}
	}
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("audit checkpoint") : 0;
}

static int checkpoint_put(kl_store *s, int64_t seq, const unsigned char hash[32])
{
	kl_db_stmt *st;
	int r;

	r = kl_db_prepare_cached(s->db,
	                         "INSERT OR REPLACE INTO audit_checkpoint(id, seq, hash, time) "
	                         "VALUES(1, ?1, ?2, ?3)",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, seq);
	kl_db_bind_blob(st, 2, hash, 32);
	kl_db_bind_int64(st, 3, now_ms());
	r = kl_store_step_done(st, "audit checkpoint");
	kl_db_stmt_free(st);
	return r < 0 ? r : 0;
}

/* The checkpoint's entry is still there with the hash it had; fills rep
 * when it is not. */
static int checkpoint_check(kl_store *s, int64_t seq, const unsigned char hash[32],
                            kl_audit_report *rep)
{
	kl_db_stmt *st;
	const void *h;
	size_t n = 0;
	int r;

	r = kl_db_prepare_cached(s->db, "SELECT hash FROM audit WHERE seq = ?1", &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, seq);
	r = kl_db_step(st);
	if (r == 1) {
		h = kl_db_column_blob(st, 0, &n);
		if (n != 32 || CRYPTO_memcmp(h, hash, 32) != 0) {
			rep->first_bad = seq;
			snprintf(rep->problem, sizeof(rep->problem),
			         "entry %lld is not the one verified before (its hash changed)",
			         (long long)seq);
		}
	} else if (r == 0) {
		rep->first_bad = seq;
		snprintf(rep->problem, sizeof(rep->problem),
		         "entry %lld, verified before, is missing", (long long)seq);
	}
	kl_db_stmt_free(st);
	return r < 0 ? kl_error_wrap("audit checkpoint entry") : 0;
}

int kl_store_audit_verify_since(kl_store *s, bool full, kl_audit_report *ret)
{
	unsigned char prev[32] = { 0 }, hash[32];
	kl_audit_report rep = { 0 };
	kl_db_stmt *st;
	int64_t expect, cp_seq = 0;
	int rc, r;

	if ((r = checkpoint_get(s, &cp_seq, prev)) < 0)
		return r;
	if (full || cp_seq <= 0) {
		cp_seq = 0;
		memset(prev, 0, sizeof(prev));
	} else {
		if ((r = checkpoint_check(s, cp_seq, prev, &rep)) < 0)
			return r;
		if (rep.first_bad) {
			*ret = rep;
			return kl_error_set(KL_E_CRYPTO, "audit log does not verify: %s",
			                    rep.problem);
		}
	}
	rep.from = cp_seq;
	rep.entries = cp_seq;
	expect = cp_seq + 1;
	r = kl_db_prepare_cached(s->db,
	                         "SELECT seq, time, actor, action, detail, prev, hash FROM audit "
	                         "WHERE seq > ?1 ORDER BY seq",
	                         &st);
	if (r < 0)
		return r;
	kl_db_bind_int64(st, 1, cp_seq);
	r = 0;
	while ((rc = kl_db_step(st)) == 1) {
		int64_t seq = kl_db_column_int64(st, 0);
		const char *actor = kl_db_column_text(st, 2);
		const char *action = kl_db_column_text(st, 3);
		const char *detail = kl_db_column_text(st, 4);
		size_t prev_len = 0, hash_len = 0;
		const void *row_prev = kl_db_column_blob(st, 5, &prev_len);
		const void *row_hash = kl_db_column_blob(st, 6, &hash_len);

		if (seq != expect) {
			rep.first_bad = expect;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld is missing (next is %lld)", (long long)expect,
			         (long long)seq);
			break;
		}
		if (prev_len != 32 || hash_len != 32 || CRYPTO_memcmp(row_prev, prev, 32) != 0) {
			rep.first_bad = seq;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld does not link to its predecessor", (long long)seq);
			break;
		}
		r = audit_hash(seq, kl_db_column_int64(st, 1), actor ? actor : "",
		               action ? action : "", detail ? detail : "", prev, hash);
		if (r < 0)
			break;
		if (CRYPTO_memcmp(row_hash, hash, 32) != 0) {
			rep.first_bad = seq;
			snprintf(rep.problem, sizeof(rep.problem),
			         "entry %lld was altered (its hash does not match its content)",
			         (long long)seq);
			break;
		}
		memcpy(prev, hash, 32);
		rep.entries++;
		rep.checked++;
		expect++;
	}
	kl_db_stmt_free(st);
	if (r < 0)
		return r;
	if (rc < 0)
		return kl_error_wrap("audit verify");
	if (!rep.first_bad && (r = audit_check_head(s, prev, &rep)) < 0)
		return r;
	if (rep.first_bad) {
		*ret = rep;
		return kl_error_set(KL_E_CRYPTO, "audit log does not verify: %s", rep.problem);
	}
	/* A checkpoint that cannot be written (a read-only copy of the
	 * database, a writer holding it too long) does not change the verdict:
	 * the next walk only starts earlier. */
	rep.saved = rep.entries <= cp_seq || IN_TXN(s, checkpoint_put(s, rep.entries, prev)) == 0;
	*ret = rep;
	return 0;
}

int kl_store_audit_verify(kl_store *s, kl_audit_report *ret)
{
	return kl_store_audit_verify_since(s, true, ret);
}
