/* Pre-registration: batches of serials (with optional expected EK hashes)
 * for a tenant's work order, from the API or from CSV and JSON files. See
 * registry.h for the rules and docs/registry.md for the formats. */
#include "registry.h"
#include "registry_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kl_cleanup.h"
#include "kl_error.h"

#define IMPORT_MAX_BYTES (64L * 1024 * 1024)

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

static int run_batch(struct batch *b, const struct entry *e, size_t n)
{
	json_object *d;
	int rc;

	if ((rc = kl_reg_tenant_id(b->r, b->tenant, &b->tenant_id)) < 0 ||
	    (rc = kl_reg_work_order_id(b->r, b->tenant_id, b->tenant, b->work_order,
	                               &b->work_order_id)) < 0 ||
	    (rc = batch_prepare(b)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = one(b, &e[i])) < 0)
			return rc;
	d = json_object_new_object();
	json_object_object_add(d, "tenant", json_object_new_string(b->tenant));
	json_object_object_add(d, "work_order", json_object_new_string(b->work_order));
	json_object_object_add(d, "source", kl_reg_json_str(b->source));
	json_object_object_add(d, "entries", json_object_new_int64((int64_t)n));
	json_object_object_add(d, "added", json_object_new_int(b->added));
	json_object_object_add(d, "changed", json_object_new_int(b->changed));
	json_object_object_add(d, "items", json_object_get(b->items));
	rc = kl_reg_audit(b->r, b->actor, "registry.preregister", d);
	return rc < 0 ? rc : b->added + b->changed;
}

static int preregister(kl_registry *r, const char *tenant, const char *work_order,
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
	char at[PATH_MAX + 32];
	int rc;

	if ((rc = kl_reg_check_actor(actor)) < 0 ||
	    (rc = kl_registry_check_name("tenant name", tenant)) < 0 ||
	    (rc = kl_registry_check_name("work order name", work_order)) < 0)
		return rc;
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
	if ((rc = kl_store_begin(r->store)) < 0)
		return rc;
	rc = kl_reg_finish(r, run_batch(&b, e, n));
	batch_clear(&b);
	return rc;
}

int kl_registry_preregister(kl_registry *r, const char *tenant, const char *work_order,
                            const kl_registry_item *items, size_t n, const char *actor)
{
	return preregister(r, tenant, work_order, items, n, actor, NULL);
}

/* Reading files. */

struct list {
	kl_registry_item *v;
	size_t n, cap;
};

static int list_add(struct list *l, const char *serial, const char *ek, unsigned line)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		kl_registry_item *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return kl_error_set(KL_E_NOMEM, "import: out of memory");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (kl_registry_item){ .serial = serial, .ek_sha256 = ek, .line = line };
	return 0;
}

static int read_all(const char *path, char **ret, size_t *len)
{
	_cleanup_(fclosep) FILE *f = fopen(path, "re");
	struct stat st;
	char *buf;

	if (!f)
		return kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "%s: %s", path,
		                    strerror(errno));
	if (fstat(fileno(f), &st) < 0)
		return kl_error_set(KL_E_IO, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return kl_error_set(KL_E_INVALID, "%s: not a regular file", path);
	if (st.st_size > IMPORT_MAX_BYTES)
		return kl_error_set(KL_E_INVALID,
		                    "%s: %lld bytes is more than an import may be (%ld)", path,
		                    (long long)st.st_size, IMPORT_MAX_BYTES);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return kl_error_set(KL_E_NOMEM, "%s: out of memory", path);
	if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		free(buf);
		return kl_error_set(KL_E_IO, "%s: short read", path);
	}
	buf[st.st_size] = '\0';
	if (memchr(buf, '\0', (size_t)st.st_size)) {
		free(buf);
		return kl_error_set(KL_E_INVALID, "%s: contains a NUL byte: not a text file", path);
	}
	*ret = buf;
	*len = (size_t)st.st_size;
	return 0;
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* A CSV field: trimmed, surrounding double quotes removed. */
static char *field(char *s)
{
	size_t n;

	s = trim(s);
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s[n - 1] = '\0';
		s++;
	}
	return s;
}

/* Splits buf (modified in place) into entries. */
static int parse_csv(const char *path, char *buf, struct list *l)
{
	char *line = buf, *next;
	unsigned no = 0;
	bool data_seen = false;
	int rc;

	for (; line; line = next) {
		char *f[3] = { NULL }, *s;
		int nf = 0;

		no++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		for (char *p = s; p && nf < 3;) {
			char *comma = strchr(p, ',');

			if (comma)
				*comma++ = '\0';
			f[nf++] = field(p);
			p = comma;
		}
		if (nf > 2)
			return kl_error_set(KL_E_INVALID,
			                    "%s:%u: expected serial[,ek_sha256], found more fields",
			                    path, no);
		if (!data_seen && strcasecmp(f[0], "serial") == 0) {
			data_seen = true; /* the header */
			continue;
		}
		data_seen = true;
		if (!*f[0])
			return kl_error_set(KL_E_INVALID, "%s:%u: empty serial", path, no);
		if ((rc = list_add(l, f[0], nf == 2 ? f[1] : NULL, no)) < 0)
			return rc;
	}
	return 0;
}

static unsigned line_at(const char *buf, size_t off)
{
	unsigned line = 1;

	for (size_t i = 0; i < off && buf[i]; i++)
		line += buf[i] == '\n';
	return line;
}

static size_t skip_ws(const char *buf, size_t len, size_t i)
{
	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
		i++;
	return i;
}

/* Checks one array element and adds it; its strings stay in obj. */
static int json_entry(const char *path, unsigned line, json_object *obj, struct list *l)
{
	const char *serial = NULL, *ek = NULL;

	if (!json_object_is_type(obj, json_type_object))
		return kl_error_set(KL_E_INVALID, "%s:%u: expected an object {\"serial\": ...}",
		                    path, line);
	json_object_object_foreach(obj, key, val)
	{
		if (strcmp(key, "serial") == 0) {
			if (!json_object_is_type(val, json_type_string))
				return kl_error_set(
				    KL_E_INVALID, "%s:%u: \"serial\" must be a string", path, line);
			serial = json_object_get_string(val);
		} else if (strcmp(key, "ek_sha256") == 0) {
			if (json_object_is_type(val, json_type_null))
				continue;
			if (!json_object_is_type(val, json_type_string))
				return kl_error_set(KL_E_INVALID,
				                    "%s:%u: \"ek_sha256\" must be a string or null",
				                    path, line);
			ek = json_object_get_string(val);
		} else {
			/* A misspelt "ek_sha256" must not silently drop the EK
			 * check, so unknown keys are refused. */
			return kl_error_set(KL_E_INVALID,
			                    "%s:%u: unknown key \"%s\" (expected \"serial\" and "
			                    "\"ek_sha256\")",
			                    path, line, key);
		}
	}
	if (!serial)
		return kl_error_set(KL_E_INVALID, "%s:%u: the object has no \"serial\"", path,
		                    line);
	return list_add(l, serial, ek, line);
}

/* Walks the top-level array by hand so that each element's line is known;
 * each element is parsed by json-c. The parsed elements are kept in keep. */
static int parse_json(const char *path, const char *buf, size_t len, struct list *l,
                      json_object *keep)
{
	json_tokener *tok;
	size_t i = skip_ws(buf, len, 0);
	int rc = 0;

	if (i >= len || buf[i] != '[')
		return kl_error_set(KL_E_INVALID, "%s:%u: expected a JSON array of objects", path,
		                    line_at(buf, i));
	tok = json_tokener_new();
	if (!tok)
		return kl_error_set(KL_E_NOMEM, "import: out of memory");
	i = skip_ws(buf, len, i + 1);
	if (i < len && buf[i] == ']') {
		i++;
		goto end;
	}
	for (;;) {
		enum json_tokener_error jerr;
		json_object *obj;
		unsigned line;

		i = skip_ws(buf, len, i);
		line = line_at(buf, i);
		if (i >= len) {
			rc = kl_error_set(KL_E_INVALID, "%s:%u: the array is not closed", path,
			                  line);
			break;
		}
		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, buf + i, (int)(len - i));
		jerr = json_tokener_get_error(tok);
		if (!obj || jerr != json_tokener_success) {
			size_t at = i + json_tokener_get_parse_end(tok);

			json_object_put(obj);
			rc = kl_error_set(KL_E_INVALID, "%s:%u: %s", path, line_at(buf, at),
			                  jerr == json_tokener_continue
			                      ? "the file ends inside an entry"
			                      : json_tokener_error_desc(jerr));
			break;
		}
		json_object_array_add(keep, obj);
		i += json_tokener_get_parse_end(tok);
		if ((rc = json_entry(path, line, obj, l)) < 0)
			break;
		i = skip_ws(buf, len, i);
		if (i < len && buf[i] == ',') {
			i++;
			continue;
		}
		if (i < len && buf[i] == ']') {
			i++;
			break;
		}
		if (i >= len)
			rc = kl_error_set(KL_E_INVALID, "%s:%u: the array is not closed", path,
			                  line_at(buf, i));
		else
			rc = kl_error_set(KL_E_INVALID, "%s:%u: expected ',' or ']' after an entry",
			                  path, line_at(buf, i));
		break;
	}
end:
	json_tokener_free(tok);
	if (rc < 0)
		return rc;
	i = skip_ws(buf, len, i);
	if (i < len)
		return kl_error_set(KL_E_INVALID, "%s:%u: unexpected text after the array", path,
		                    line_at(buf, i));
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

int kl_registry_read_file(const char *path, kl_registry_items_fn fn, void *ctx)
{
	_cleanup_(freep) char *buf = NULL;
	_cleanup_(json_object_putp) json_object *keep = NULL;
	struct list l = { 0 };
	size_t len = 0, start;
	bool json;
	int rc;

	if (!path)
		return kl_error_set(KL_E_INVALID, "import: no file");
	if ((rc = read_all(path, &buf, &len)) < 0)
		return rc;
	/* A UTF-8 byte order mark, as spreadsheet programs write. */
	start = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
	if (ends_with(path, ".json"))
		json = true;
	else if (ends_with(path, ".csv") || ends_with(path, ".txt"))
		json = false;
	else
		json = buf[skip_ws(buf, len, start)] == '[';
	keep = json_object_new_array();
	if (!keep)
		return kl_error_set(KL_E_NOMEM, "import: out of memory");
	if (json)
		rc = parse_json(path, buf + start, len - start, &l, keep);
	else
		rc = parse_csv(path, buf + start, &l);
	if (rc == 0 && l.n == 0)
		rc = kl_error_set(KL_E_INVALID, "%s: no entries", path);
	if (rc == 0)
		rc = fn(ctx, l.v, l.n);
	free(l.v);
	return rc;
}

struct import {
	kl_registry *r;
	const char *tenant, *work_order, *actor, *path;
	size_t count;
};

static int import_items(void *ctx, const kl_registry_item *items, size_t n)
{
	struct import *im = ctx;

	im->count = n;
	return preregister(im->r, im->tenant, im->work_order, items, n, im->actor, im->path);
}

int kl_registry_import_file(kl_registry *r, const char *tenant, const char *work_order,
                            const char *path, const char *actor, size_t *count)
{
	struct import im = { r, tenant, work_order, actor, path, 0 };
	int rc = kl_registry_read_file(path, import_items, &im);

	if (rc >= 0 && count)
		*count = im.count;
	return rc;
}
