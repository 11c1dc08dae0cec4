/* RFC 7512 PKCS#11 URIs, decoded by p11-kit. See uri.h.
 *
 * p11-kit (p11_kit_uri_parse) does the percent-decoding and maps the
 * attributes onto CK_TOKEN_INFO and CK_ATTRIBUTEs. A first pass of ours
 * comes before it, for what p11-kit cannot tell us or does otherwise:
 *
 *   - it says "bad encoding" or "bad syntax" without naming the attribute,
 *     and silently drops a token label longer than 32 bytes or keeps a NUL
 *     byte inside an object label; we check syntax, escapes, lengths and
 *     NUL bytes per attribute and name the offending one;
 *   - pin-value is refused before p11-kit sees it, so the PIN is never
 *     copied into p11-kit's (unwiped) heap;
 *   - p11-kit removes white space anywhere in the URI, reads pin-source and
 *     pin-value in the path too, knows "objecttype" and "pinfile" as
 *     aliases, and refuses a malformed slot-id or library-version that we
 *     accept and ignore. So p11-kit is given a copy of the URI that holds
 *     only the six attributes we use, with white space percent-encoded and
 *     empty components left out: each of the others has been checked here
 *     and is ignored, as before. */
#include "uri.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <p11-kit/uri.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

KL_DEFINE_CLEANUP(P11KitUri, p11_kit_uri_free)

#define FIELD_SIZE(f) sizeof(((kl_pkcs11_uri *)0)->f)

/* The characters p11_kit_uri_parse strips from a URI (its
 * P11_URL_WHITESPACE); RFC 3986 Appendix C allows that, our URIs have
 * always kept them. */
static const char p11kit_white[] = " \n\r\v";

/* One name=value component, as it stands in the URI (not decoded). */
struct comp {
	const char *name, *value, *end;
	size_t name_len;
	bool query;
};

static bool comp_is(const struct comp *c, bool query, const char *name)
{
	return c->query == query && c->name_len == strlen(name) &&
	       strncmp(c->name, name, c->name_len) == 0;
}

/* The decoded length of [v, end) without decoding it. Returns false for a
 * '%' not followed by two hex digits. *nul tells whether %00 occurs. */
static bool scan_value(const char *v, const char *end, size_t *len, bool *nul)
{
	*len = 0;
	*nul = false;
	while (v < end) {
		if (*v == '%') {
			if (end - v < 3 || kl_hex_digit((unsigned char)v[1]) < 0 ||
			    kl_hex_digit((unsigned char)v[2]) < 0)
				return false;
			if (v[1] == '0' && v[2] == '0')
				*nul = true;
			v += 3;
		} else {
			v++;
		}
		(*len)++;
	}
	return true;
}

/* The copy of the URI for p11-kit, being written. */
struct copy {
	char *o;                     /* where the next byte goes */
	bool any;                    /* a component has been written in this list */
	const char *type, *type_end; /* the last type= value, NULL for none */
};

/* Checks one component. Returns 1 when p11-kit is to be given it, 0 when it
 * is legal and ignored (manufacturer, model, serial, slot-*, library-*,
 * module-name, vendor queries, and type, written last), or a negative
 * error. */
static int check_comp(const struct comp *c, struct copy *cp)
{
	int nlen = (int)c->name_len;
	size_t n;
	bool ok, nul;

	ok = scan_value(c->value, c->end, &n, &nul);
	if (comp_is(c, false, "id")) {
		if (!ok || n >= FIELD_SIZE(id))
			return kl_error_set(
			    KL_E_INVALID,
			    "PKCS#11 URI: bad id (percent-encoded bytes, at most 63)");
		return 1;
	}
	if (!ok || n >= PATH_MAX)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad value for '%.*s'", nlen,
		                    c->name);
	if (nul)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: NUL byte in '%.*s'", nlen, c->name);
	if (comp_is(c, false, "token")) {
		if (n > 32)
			return kl_error_set(KL_E_INVALID,
			                    "PKCS#11 URI: token label longer than 32");
		return 1;
	}
	if (comp_is(c, false, "object")) {
		if (n >= FIELD_SIZE(object))
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: object label too long");
		return 1;
	}
	if (comp_is(c, false, "type")) {
		if (n >= FIELD_SIZE(type))
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad type");
		/* The last one counts, an empty one included. p11-kit keeps
		 * the class of an earlier type when a later one is unknown,
		 * so only the last goes into the copy. */
		cp->type = c->value;
		cp->type_end = c->end;
		return 0;
	}
	if (comp_is(c, true, "pin-value"))
		return kl_error_set(KL_E_INVALID,
		                    "PKCS#11 URI: pin-value is refused; give the PIN with "
		                    "pin-source=file:PATH or in the configuration");
	return comp_is(c, true, "module-path") || comp_is(c, true, "pin-source");
}

/* Starts a component of the copy: the list's separator unless it is the
 * first of the path, '?' for the first of the query. */
static void put_sep(struct copy *cp, char sep)
{
	if (sep == '&')
		*cp->o++ = cp->any ? '&' : '?';
	else if (cp->any)
		*cp->o++ = sep;
	cp->any = true;
}

/* Appends [p, end) to the copy, percent-encoding what p11-kit would strip. */
static void put_text(struct copy *cp, const char *p, const char *end)
{
	for (; p < end; p++) {
		if (strchr(p11kit_white, *p)) {
			*cp->o++ = '%';
			kl_hex_encode(p, 1, cp->o);
			cp->o += 2;
		} else {
			*cp->o++ = *p;
		}
	}
}

/* Checks every component of [p, end), separated by sep, and copies those
 * p11-kit is to read. */
static int check_list(const char *p, const char *end, char sep, bool query, struct copy *cp)
{
	while (p < end) {
		const char *next = memchr(p, sep, (size_t)(end - p));
		const char *stop = next ? next : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		struct comp c;
		int r;

		if (stop == p) { /* empty component */
			p = stop + 1;
			continue;
		}
		if (!eq || eq == p)
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: '%.*s' is not name=value",
			                    (int)(stop - p), p);
		c = (struct comp){ p, eq + 1, stop, (size_t)(eq - p), query };
		r = check_comp(&c, cp);
		if (r < 0)
			return r;
		if (r > 0) {
			put_sep(cp, sep);
			put_text(cp, p, stop);
		}
		p = stop + 1;
	}
	return 0;
}

/* Copies a string attribute p11-kit decoded into a NUL-terminated field.
 * The first pass bounded the length; this only guards against p11-kit
 * reading the URI otherwise. */
static int take_string(const char *what, const void *p, size_t n, char *out, size_t size)
{
	if (n >= size || memchr(p, '\0', n))
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad value for '%s'", what);
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* Fills u from what p11-kit parsed; [type, type_end) is the URI's type. */
static int take(P11KitUri *p, const char *type, const char *type_end, kl_pkcs11_uri *u)
{
	const CK_TOKEN_INFO *t = p11_kit_uri_get_token_info(p);
	const CK_ATTRIBUTE *a;
	const char *s;
	size_t n;
	int r;

	/* CK_TOKEN_INFO labels are padded with blanks (PKCS#11 §3.2); an
	 * absent token is all zero bytes. */
	n = sizeof(t->label);
	while (n > 0 && (t->label[n - 1] == ' ' || t->label[n - 1] == '\0'))
		n--;
	r = take_string("token", t->label, n, u->token, sizeof(u->token));
	if (r < 0)
		return r;
	a = p11_kit_uri_get_attribute(p, CKA_LABEL);
	if (a &&
	    (r = take_string("object", a->pValue, a->ulValueLen, u->object, sizeof(u->object))) < 0)
		return r;
	a = p11_kit_uri_get_attribute(p, CKA_ID);
	if (a) {
		if (a->ulValueLen >= sizeof(u->id))
			return kl_error_set(
			    KL_E_INVALID,
			    "PKCS#11 URI: bad id (percent-encoded bytes, at most 63)");
		if (a->ulValueLen)
			memcpy(u->id, a->pValue, a->ulValueLen);
		u->id_len = a->ulValueLen;
	}
	/* p11-kit compares the type's text as it stands (RFC 7512 §2.3 names
	 * cert, data, private, public, secret-key; p11-kit adds secretkey) and
	 * sets no class for any other. When it set one, the text is that name. */
	if (type && type < type_end) {
		if (!p11_kit_uri_get_attribute(p, CKA_CLASS))
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad type");
		r = take_string("type", type, (size_t)(type_end - type), u->type, sizeof(u->type));
		if (r < 0)
			return r;
	}
	s = p11_kit_uri_get_module_path(p);
	if (s && (r = take_string("module-path", s, strlen(s), u->module_path,
	                          sizeof(u->module_path))) < 0)
		return r;
	s = p11_kit_uri_get_pin_source(p);
	if (s &&
	    (r = take_string("pin-source", s, strlen(s), u->pin_source, sizeof(u->pin_source))) < 0)
		return r;
	return 0;
}

int kl_pkcs11_uri_parse(const char *uri, kl_pkcs11_uri *ret)
{
	_cleanup_(p11_kit_uri_freep) P11KitUri *p = NULL;
	_cleanup_(freep) char *copy = NULL;
	kl_pkcs11_uri u = { 0 };
	const char *path, *q, *end;
	struct copy cp = { 0 };
	int r;

	if (!uri || strncasecmp(uri, "pkcs11:", 7) != 0)
		return kl_error_set(KL_E_INVALID, "not a PKCS#11 URI (want pkcs11:...): '%s'",
		                    uri ? uri : "");
	path = uri + 7;
	end = path + strlen(path);
	q = strchr(path, '?');

	/* Every byte may become %XX in the copy, and ";type=" may be added. */
	copy = malloc(7 + 3 * (size_t)(end - path) + 8);
	if (!copy)
		return kl_error_set(KL_E_NOMEM, "PKCS#11 URI");
	memcpy(copy, "pkcs11:", 7);
	cp.o = copy + 7;
	r = check_list(path, q ? q : end, ';', false, &cp);
	if (r < 0)
		return r;
	if (cp.type && cp.type < cp.type_end) {
		static const char name[] = "type=";

		put_sep(&cp, ';');
		put_text(&cp, name, name + sizeof(name) - 1);
		put_text(&cp, cp.type, cp.type_end);
	}
	cp.any = false;
	if (q && (r = check_list(q + 1, end, '&', true, &cp)) < 0)
		return r;
	*cp.o = '\0';

	p = p11_kit_uri_new();
	if (!p)
		return kl_error_set(KL_E_NOMEM, "PKCS#11 URI");
	r = p11_kit_uri_parse(copy, P11_KIT_URI_FOR_ANY, p);
	if (r != P11_KIT_URI_OK)
		return kl_error_set(r == P11_KIT_URI_UNEXPECTED ? KL_E_NOMEM : KL_E_INVALID,
		                    "PKCS#11 URI: %s (p11-kit %d)", p11_kit_uri_message(r), r);
	/* Refused above already; checked again so no path can let one by. */
	if (p11_kit_uri_get_pin_value(p))
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: pin-value is refused");
	r = take(p, cp.type, cp.type_end, &u);
	if (r < 0)
		return r;
	*ret = u;
	return 0;
}

/* RFC 7512 §2.3: unreserved and a few others stay, the rest is %XX. */
static size_t encode(const unsigned char *in, size_t n, char *out, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = in[i];

		if (isalnum(c) || strchr("-._~:[]@!$'()*+,=&", c)) {
			if (o + 1 < size)
				out[o++] = (char)c;
		} else if (o + 3 < size) {
			o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
		}
	}
	if (o < size)
		out[o] = '\0';
	return o;
}

int kl_pkcs11_uri_format(const kl_pkcs11_uri *u, char *out, size_t size)
{
	char tok[3 * 33], obj[3 * 129], id[3 * 64 + 1];
	int n;

	encode((const unsigned char *)u->token, strlen(u->token), tok, sizeof(tok));
	encode((const unsigned char *)u->object, strlen(u->object), obj, sizeof(obj));
	/* Ids in lowercase, labels in uppercase hex: the text the audit log
	 * has always held. p11_kit_uri_format writes id before object and
	 * uppercase ids, so it is not used here. */
	id[0] = '\0';
	for (size_t i = 0; i < u->id_len && i < sizeof(u->id); i++) {
		id[3 * i] = '%';
		kl_hex_encode(&u->id[i], 1, id + 3 * i + 1);
	}
	n = snprintf(out, size, "pkcs11:%s%s%s%s%s%s%s%s", u->token[0] ? "token=" : "", tok,
	             u->object[0] ? ";object=" : "", obj, u->id_len ? ";id=" : "", id,
	             u->type[0] ? ";type=" : "", u->type);
	if (n < 0 || (size_t)n >= size)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI too long");
	return 0;
}
