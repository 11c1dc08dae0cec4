/* The vendor-quirk table: parsed strictly, matched narrowly. See quirks.h. */
#include "quirks.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "kl_error.h"
#include "kl_hex.h"

struct quirk {
	char id[KL_QUIRK_ID_MAX + 1];
	unsigned char root_sha256[32];
	char cert_manufacturer[16];
	uint32_t tpm_manufacturer;
};

struct kl_quirks {
	size_t n;
	struct quirk q[KL_QUIRKS_MAX_ENTRIES];
};

/* "id:" and 8 hex digits: the TCG vendor ID form of the EK Credential
 * Profile (§3.2.9) and of TPM_PT_MANUFACTURER. */
static bool manufacturer_ok(const char *s, uint32_t *value)
{
	unsigned char b[4];

	if (strncasecmp(s, "id:", 3) != 0 || strlen(s) != 11 || kl_hex_decode(s + 3, 4, b) < 0)
		return false;
	if (value)
		*value = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	return true;
}

static bool id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > KL_QUIRK_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

/* The string member key of entry i, required and non-empty. */
static int member(json_object *e, const char *origin, size_t i, const char *key, const char **ret)
{
	json_object *v;

	if (!json_object_object_get_ex(e, key, &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		return kl_error_set(KL_E_INVALID,
		                    "%s: quirk %zu: \"%s\" must be a non-empty string", origin,
		                    i + 1, key);
	*ret = json_object_get_string(v);
	return 0;
}

static int parse_entry(json_object *e, const char *origin, size_t i, struct quirk *q)
{
	static const char *const known[] = {
		"id",      "kind",  "root_sha256", "cert_manufacturer", "tpm_manufacturer",
		"meaning", "source"
	};
	const char *id, *kind, *root, *cert_m, *tpm_m, *meaning, *source;
	int r;

	if (!json_object_is_type(e, json_type_object))
		return kl_error_set(KL_E_INVALID, "%s: quirk %zu is not an object", origin, i + 1);
	json_object_object_foreach(e, key, val)
	{
		bool ok = false;

		(void)val;
		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok |= strcmp(key, known[k]) == 0;
		if (!ok)
			return kl_error_set(KL_E_INVALID, "%s: quirk %zu: unknown member \"%s\"",
			                    origin, i + 1, key);
	}
	if ((r = member(e, origin, i, "id", &id)) < 0 ||
	    (r = member(e, origin, i, "kind", &kind)) < 0 ||
	    (r = member(e, origin, i, "root_sha256", &root)) < 0 ||
	    (r = member(e, origin, i, "cert_manufacturer", &cert_m)) < 0 ||
	    (r = member(e, origin, i, "tpm_manufacturer", &tpm_m)) < 0 ||
	    (r = member(e, origin, i, "meaning", &meaning)) < 0 ||
	    (r = member(e, origin, i, "source", &source)) < 0)
		return r;
	if (!id_ok(id))
		return kl_error_set(KL_E_INVALID,
		                    "%s: quirk %zu: id '%s' is not 1..%d of [a-z0-9._-]", origin,
		                    i + 1, id, KL_QUIRK_ID_MAX);
	if (strcmp(kind, "manufacturer") != 0)
		return kl_error_set(KL_E_INVALID,
		                    "%s: quirk %s: kind '%s' is not one the station knows "
		                    "(manufacturer)",
		                    origin, id, kind);
	if (strlen(root) != 64 || kl_hex_decode(root, 32, q->root_sha256) < 0)
		return kl_error_set(KL_E_INVALID,
		                    "%s: quirk %s: root_sha256 must be the 64 hex digits of the "
		                    "root certificate's SHA-256",
		                    origin, id);
	if (!manufacturer_ok(cert_m, NULL) || !manufacturer_ok(tpm_m, &q->tpm_manufacturer))
		return kl_error_set(KL_E_INVALID,
		                    "%s: quirk %s: cert_manufacturer and tpm_manufacturer must be "
		                    "\"id:\" and 8 hex digits",
		                    origin, id);
	snprintf(q->id, sizeof(q->id), "%s", id);
	snprintf(q->cert_manufacturer, sizeof(q->cert_manufacturer), "%s", cert_m);
	return 0;
}

int kl_quirks_parse(const char *text, size_t len, const char *origin, kl_quirks **ret)
{
	enum json_tokener_error jerr = json_tokener_success;
	json_tokener *tok;
	json_object *doc = NULL, *v, *list;
	kl_quirks *q = NULL;
	int r = 0;

	if (len > KL_QUIRKS_MAX_BYTES)
		return kl_error_set(KL_E_INVALID,
		                    "%s: %zu bytes, more than the %d a table may have", origin, len,
		                    KL_QUIRKS_MAX_BYTES);
	tok = json_tokener_new();
	if (!tok)
		return kl_error_set(KL_E_NOMEM, "%s: out of memory", origin);
	doc = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (doc && jerr == json_tokener_success && json_tokener_get_parse_end(tok) < len &&
	    strspn(text + json_tokener_get_parse_end(tok), " \t\r\n") !=
	        len - json_tokener_get_parse_end(tok))
		jerr = json_tokener_error_parse_unexpected;
	json_tokener_free(tok);
	if (!doc || jerr != json_tokener_success) {
		r = kl_error_set(KL_E_INVALID, "%s is not JSON: %s", origin,
		                 json_tokener_error_desc(jerr != json_tokener_success
		                                             ? jerr
		                                             : json_tokener_error_parse_eof));
		goto out;
	}
	if (!json_object_is_type(doc, json_type_object) ||
	    !json_object_object_get_ex(doc, "version", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1) {
		r = kl_error_set(KL_E_INVALID, "%s: not a quirk table of version 1", origin);
		goto out;
	}
	json_object_object_foreach(doc, key, val)
	{
		(void)val;
		if (strcmp(key, "version") != 0 && strcmp(key, "quirks") != 0) {
			r = kl_error_set(KL_E_INVALID, "%s: unknown member \"%s\"", origin, key);
			goto out;
		}
	}
	if (!json_object_object_get_ex(doc, "quirks", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		r = kl_error_set(KL_E_INVALID, "%s: \"quirks\" must be an array", origin);
		goto out;
	}
	if (json_object_array_length(list) > KL_QUIRKS_MAX_ENTRIES) {
		r = kl_error_set(KL_E_INVALID, "%s: %zu quirks, more than the %d a table may have",
		                 origin, json_object_array_length(list), KL_QUIRKS_MAX_ENTRIES);
		goto out;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		r = kl_error_set(KL_E_NOMEM, "%s: out of memory", origin);
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		r = parse_entry(json_object_array_get_idx(list, i), origin, i, &q->q[q->n]);
		if (r < 0)
			goto out;
		for (size_t j = 0; j < q->n; j++)
			if (strcmp(q->q[j].id, q->q[q->n].id) == 0) {
				r = kl_error_set(KL_E_INVALID, "%s: quirk id '%s' appears twice",
				                 origin, q->q[j].id);
				goto out;
			}
		q->n++;
	}
	*ret = q;
	q = NULL; /* transferred */
out:
	kl_quirks_free(q);
	json_object_put(doc);
	return r;
}

int kl_quirks_load(const char *path, kl_quirks **ret, unsigned char sha256[32])
{
	char *buf = NULL;
	size_t len;
	FILE *f;
	int r;

	f = fopen(path, "re");
	if (!f)
		return kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "%s: %s", path,
		                    strerror(errno));
	buf = malloc(KL_QUIRKS_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		return kl_error_set(KL_E_NOMEM, "%s: out of memory", path);
	}
	/* One byte more than a table may have tells "too large" from "full". */
	len = fread(buf, 1, KL_QUIRKS_MAX_BYTES + 1, f);
	if (ferror(f))
		r = kl_error_set(KL_E_IO, "read %s", path);
	else if (sha256 && !EVP_Digest(buf, len, sha256, NULL, EVP_sha256(), NULL))
		r = kl_error_set_ssl(KL_E_CRYPTO, "%s: SHA-256", path);
	else
		r = kl_quirks_parse(buf, len, path, ret);
	fclose(f);
	free(buf);
	return r;
}

void kl_quirks_free(kl_quirks *q)
{
	free(q);
}

size_t kl_quirks_count(const kl_quirks *q)
{
	return q ? q->n : 0;
}

const char *kl_quirks_explain_manufacturer(const kl_quirks *q, const unsigned char root_sha256[32],
                                           const char *cert_manufacturer, uint32_t tpm_manufacturer)
{
	for (size_t i = 0; q && i < q->n; i++) {
		const struct quirk *e = &q->q[i];

		if (memcmp(e->root_sha256, root_sha256, 32) == 0 &&
		    e->tpm_manufacturer == tpm_manufacturer &&
		    strcasecmp(e->cert_manufacturer, cert_manufacturer) == 0)
			return e->id;
	}
	return NULL;
}
