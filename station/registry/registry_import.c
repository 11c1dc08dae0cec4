/* Pre-registration files: CSV and JSON lists of serials (with optional
 * expected EK hashes), read with line numbers for every message and handed
 * to the pre-registration batch (registry_prereg.c). See docs/registry.md
 * for the formats. */
#include "registry.h"
#include "registry_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kl_cleanup.h"
#include "kl_error.h"

#define IMPORT_MAX_BYTES (64L * 1024 * 1024)

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
	return kl_reg_preregister(im->r, im->tenant, im->work_order, items, n, im->actor, im->path);
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
