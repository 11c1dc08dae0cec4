/* RFC 7512 PKCS#11 URIs. See uri.h. */
#include "uri.h"

#include <ctype.h>
#include <stdbool.h>
#include <strings.h>
#include <stdio.h>
#include <string.h>

#include "kl_error.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes [p, end) into out (size bytes). Returns the length, or -1
 * for a bad escape or too long a value. */
static long decode(const char *p, const char *end, unsigned char *out, size_t size)
{
	size_t n = 0;

	while (p < end) {
		int c = (unsigned char)*p++;

		if (c == '%') {
			int hi, lo;

			if (end - p < 2 || (hi = hexval(p[0])) < 0 || (lo = hexval(p[1])) < 0)
				return -1;
			c = hi << 4 | lo;
			p += 2;
		}
		if (n + 1 >= size)
			return -1;
		out[n++] = (unsigned char)c;
	}
	out[n] = '\0';
	return (long)n;
}

static int attr(const char *name, size_t nlen, const char *v, const char *vend, kl_pkcs11_uri *u,
                bool query)
{
	char tmp[PATH_MAX];
	long n;

#define IS(s) (nlen == strlen(s) && strncmp(name, s, nlen) == 0)
	if (!query && IS("id")) {
		n = decode(v, vend, u->id, sizeof(u->id));
		if (n < 0)
			return kl_error_set(
			    KL_E_INVALID,
			    "PKCS#11 URI: bad id (percent-encoded bytes, at most 63)");
		u->id_len = (size_t)n;
		return 0;
	}
	n = decode(v, vend, (unsigned char *)tmp, sizeof(tmp));
	if (n < 0)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad value for '%.*s'", (int)nlen,
		                    name);
	if (strlen(tmp) != (size_t)n)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI: NUL byte in '%.*s'", (int)nlen,
		                    name);
	if (!query && IS("token")) {
		if (n > 32)
			return kl_error_set(KL_E_INVALID,
			                    "PKCS#11 URI: token label longer than 32");
		memcpy(u->token, tmp, (size_t)n + 1);
	} else if (!query && IS("object")) {
		if ((size_t)n >= sizeof(u->object))
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: object label too long");
		memcpy(u->object, tmp, (size_t)n + 1);
	} else if (!query && IS("type")) {
		if ((size_t)n >= sizeof(u->type))
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: bad type");
		memcpy(u->type, tmp, (size_t)n + 1);
	} else if (query && IS("module-path")) {
		memcpy(u->module_path, tmp, (size_t)n + 1);
	} else if (query && IS("pin-source")) {
		memcpy(u->pin_source, tmp, (size_t)n + 1);
	} else if (query && IS("pin-value")) {
		return kl_error_set(KL_E_INVALID,
		                    "PKCS#11 URI: pin-value is refused; give the PIN with "
		                    "pin-source=file:PATH or in the configuration");
	}
	/* Other attributes (manufacturer, model, serial, slot-*, library-*,
	 * module-name) are legal and not used. */
#undef IS
	return 0;
}

static int parse_list(const char *p, const char *end, char sep, kl_pkcs11_uri *u, bool query)
{
	while (p < end) {
		const char *next = memchr(p, sep, (size_t)(end - p));
		const char *stop = next ? next : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		int r;

		if (stop == p) { /* empty component */
			p = stop + 1;
			continue;
		}
		if (!eq || eq == p)
			return kl_error_set(KL_E_INVALID, "PKCS#11 URI: '%.*s' is not name=value",
			                    (int)(stop - p), p);
		r = attr(p, (size_t)(eq - p), eq + 1, stop, u, query);
		if (r < 0)
			return r;
		p = stop + 1;
	}
	return 0;
}

int kl_pkcs11_uri_parse(const char *uri, kl_pkcs11_uri *ret)
{
	kl_pkcs11_uri u = { 0 };
	const char *path, *q, *end;
	int r;

	if (!uri || strncasecmp(uri, "pkcs11:", 7) != 0)
		return kl_error_set(KL_E_INVALID, "not a PKCS#11 URI (want pkcs11:...): '%s'",
		                    uri ? uri : "");
	path = uri + 7;
	end = path + strlen(path);
	q = strchr(path, '?');
	r = parse_list(path, q ? q : end, ';', &u, false);
	if (r == 0 && q)
		r = parse_list(q + 1, end, '&', &u, true);
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
	id[0] = '\0';
	for (size_t i = 0; i < u->id_len; i++)
		snprintf(id + 3 * i, 4, "%%%02x", u->id[i]);
	n = snprintf(out, size, "pkcs11:%s%s%s%s%s%s%s%s", u->token[0] ? "token=" : "", tok,
	             u->object[0] ? ";object=" : "", obj, u->id_len ? ";id=" : "", id,
	             u->type[0] ? ";type=" : "", u->type);
	if (n < 0 || (size_t)n >= size)
		return kl_error_set(KL_E_INVALID, "PKCS#11 URI too long");
	return 0;
}
