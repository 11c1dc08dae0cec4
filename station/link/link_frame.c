/* The keyline-agent link protocol's frame and text codec: libc only, no
 * allocation (link_frame.h, docs/link.md). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_frame.h"

static int fail(kl_link_err *e, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(kl_link_err *e, const char *reason, const char *fmt, ...)
{
	va_list ap;

	if (e) {
		e->reason = reason;
		va_start(ap, fmt);
		vsnprintf(e->message, sizeof(e->message), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

const char *kl_link_type_name(int type)
{
	switch (type) {
	case KL_LINK_HELLO:
		return "HELLO";
	case KL_LINK_WELCOME:
		return "WELCOME";
	case KL_LINK_TPM_COMMAND:
		return "TPM_COMMAND";
	case KL_LINK_TPM_RESPONSE:
		return "TPM_RESPONSE";
	case KL_LINK_VERDICT:
		return "VERDICT";
	case KL_LINK_ERROR:
		return "ERROR";
	case KL_LINK_PING:
		return "PING";
	case KL_LINK_PONG:
		return "PONG";
	default:
		return "unknown";
	}
}

void kl_link_header_encode(uint8_t out[KL_LINK_HEADER_SIZE], kl_link_type type, uint32_t len)
{
	memcpy(out, KL_LINK_MAGIC, 4);
	out[4] = KL_LINK_FORMAT;
	out[5] = (uint8_t)type;
	out[6] = 0;
	out[7] = 0;
	out[8] = (uint8_t)(len >> 24);
	out[9] = (uint8_t)(len >> 16);
	out[10] = (uint8_t)(len >> 8);
	out[11] = (uint8_t)len;
}

/* The payload bounds of each type: [min, max]. */
static void type_bounds(kl_link_type t, uint32_t *min, uint32_t *max)
{
	switch (t) {
	case KL_LINK_TPM_COMMAND:
	case KL_LINK_TPM_RESPONSE:
		*min = KL_LINK_TPM_MIN;
		*max = KL_LINK_TPM_MAX;
		break;
	case KL_LINK_PING:
	case KL_LINK_PONG:
		*min = 0;
		*max = KL_LINK_PING_MAX;
		break;
	default:
		*min = 1;
		*max = KL_LINK_PAYLOAD_MAX;
		break;
	}
}

int kl_link_header_decode(const uint8_t in[KL_LINK_HEADER_SIZE], kl_link_type *type, uint32_t *len,
                          kl_link_err *e)
{
	uint32_t n = be32(in + 8), min, max;

	if (memcmp(in, KL_LINK_MAGIC, 4) != 0)
		return fail(e, "link_garbage",
		            "the frame does not start with \"KLNK\" (got %02x %02x %02x %02x)",
		            in[0], in[1], in[2], in[3]);
	if (in[4] != KL_LINK_FORMAT)
		return fail(e, "link_garbage",
		            "frame format %u is not the format %u this side reads", in[4],
		            KL_LINK_FORMAT);
	if (in[5] < KL_LINK_HELLO || in[5] > KL_LINK_PONG)
		return fail(e, "link_garbage", "frame type %u is not a type of the protocol",
		            in[5]);
	if (in[6] || in[7])
		return fail(e, "link_garbage",
		            "the reserved bytes of a %s frame are %02x %02x, not 0",
		            kl_link_type_name(in[5]), in[6], in[7]);
	type_bounds((kl_link_type)in[5], &min, &max);
	if (n > KL_LINK_PAYLOAD_MAX || n > max)
		return fail(e, "link_oversize",
		            "a %s frame of %u bytes is larger than its limit of %u bytes",
		            kl_link_type_name(in[5]), n, max);
	if (n < min)
		return fail(e, "link_garbage", "a %s frame of %u bytes is shorter than %u bytes",
		            kl_link_type_name(in[5]), n, min);
	*type = (kl_link_type)in[5];
	*len = n;
	return 0;
}

void kl_link_decoder_init(kl_link_decoder *d)
{
	d->hdr_got = 0;
	d->len = 0;
	d->got = 0;
	d->ready = false;
	d->failed = false;
	d->type = 0;
}

int kl_link_decoder_feed(kl_link_decoder *d, const uint8_t *data, size_t n, size_t *used,
                         kl_link_err *e)
{
	size_t take = 0;

	*used = 0;
	if (d->failed)
		return fail(e, "link_garbage", "the link refused an earlier frame");
	if (d->ready)
		kl_link_decoder_init(d);
	if (d->hdr_got < KL_LINK_HEADER_SIZE) {
		take = KL_LINK_HEADER_SIZE - d->hdr_got;
		if (take > n)
			take = n;
		memcpy(d->hdr + d->hdr_got, data, take);
		d->hdr_got += take;
		/* Refuse bad magic as soon as its bytes are in: a peer that
		 * speaks something else is told at once, not after 12 bytes. */
		if (memcmp(d->hdr, KL_LINK_MAGIC, d->hdr_got < 4 ? d->hdr_got : 4) != 0) {
			d->failed = true;
			*used = take;
			return fail(e, "link_garbage", "the frame does not start with \"KLNK\"");
		}
		if (d->hdr_got < KL_LINK_HEADER_SIZE) {
			*used = take;
			return KL_LINK_NEED_MORE;
		}
		if (kl_link_header_decode(d->hdr, &d->type, &d->len, e) < 0) {
			d->failed = true;
			*used = take;
			return -1;
		}
		d->got = 0;
	}
	if (d->got < d->len && take < n) {
		size_t more = d->len - d->got;

		if (more > n - take)
			more = n - take;
		memcpy(d->payload + d->got, data + take, more);
		d->got += (uint32_t)more;
		take += more;
	}
	*used = take;
	if (d->got < d->len)
		return KL_LINK_NEED_MORE;
	if (kl_link_tpm_check(d->type, d->payload, d->len, e) < 0) {
		d->failed = true;
		return -1;
	}
	d->ready = true;
	return KL_LINK_FRAME;
}

int kl_link_decoder_eof(const kl_link_decoder *d, kl_link_err *e)
{
	if (!d->ready && d->hdr_got > 0 && !d->failed) {
		if (d->hdr_got < KL_LINK_HEADER_SIZE)
			return fail(e, "link_truncated",
			            "the link closed after %zu of a frame header's %d bytes",
			            d->hdr_got, KL_LINK_HEADER_SIZE);
		return fail(e, "link_truncated",
		            "the link closed after %u of a %s frame's %u payload bytes", d->got,
		            kl_link_type_name(d->type), d->len);
	}
	return fail(e, "link_lost", "the peer closed the link");
}

int kl_link_tpm_check(kl_link_type type, const uint8_t *p, size_t n, kl_link_err *e)
{
	uint32_t size;

	if (type != KL_LINK_TPM_COMMAND && type != KL_LINK_TPM_RESPONSE)
		return 0;
	if (n < KL_LINK_TPM_MIN)
		return fail(e, "link_garbage", "a %s of %zu bytes is shorter than a TPM header",
		            kl_link_type_name(type), n);
	if (n > KL_LINK_TPM_MAX)
		return fail(e, "link_oversize", "a %s of %zu bytes is larger than %d bytes",
		            kl_link_type_name(type), n, KL_LINK_TPM_MAX);
	size = be32(p + 2);
	if (size != n)
		return fail(e, "link_garbage",
		            "a %s frame of %zu bytes holds a TPM buffer whose size field says %u",
		            kl_link_type_name(type), n, size);
	return 0;
}

static bool key_valid(const char *k, size_t n)
{
	if (n == 0 || n > KL_LINK_TEXT_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || k[i] == '_'))
			return false;
	return true;
}

/* Printable and well-formed UTF-8: no C0 controls, no DEL, no C1 controls,
 * no overlong forms, no surrogates, nothing above U+10FFFF. Returns the
 * offset of the first bad byte, or n. */
static size_t value_bad_at(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return i;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (i + len > n)
			return i;
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return i;
		i += len;
	}
	return n;
}

int kl_link_text_parse(const uint8_t *p, size_t n, kl_link_text *t, kl_link_err *e)
{
	size_t at = 0, line = 0;

	t->n = 0;
	if (n > KL_LINK_PAYLOAD_MAX)
		return fail(e, "link_oversize", "a text of %zu bytes is larger than %d bytes", n,
		            KL_LINK_PAYLOAD_MAX);
	if (n > 0 && p[n - 1] != '\n')
		return fail(e, "link_garbage", "the text's last line does not end with a newline");
	memcpy(t->buf, p, n);
	t->buf[n] = '\0';
	while (at < n) {
		char *s = t->buf + at, *nl = memchr(s, '\n', n - at), *eq;
		size_t len = (size_t)(nl - s), klen, bad;

		line++;
		eq = memchr(s, '=', len);
		if (!eq)
			return fail(e, "link_garbage", "text line %zu is not key=value", line);
		klen = (size_t)(eq - s);
		if (!key_valid(s, klen))
			return fail(e, "link_garbage",
			            "text line %zu: the key is not 1..%d of [a-z_]", line,
			            KL_LINK_TEXT_KEY_MAX);
		if (len - klen - 1 > KL_LINK_TEXT_VALUE_MAX)
			return fail(e, "link_garbage",
			            "text line %zu: the value of %.*s is longer than %d bytes",
			            line, (int)klen, s, KL_LINK_TEXT_VALUE_MAX);
		bad = value_bad_at((const unsigned char *)eq + 1, len - klen - 1);
		if (bad != len - klen - 1)
			return fail(
			    e, "link_garbage",
			    "text line %zu: the value of %.*s has a control character or bad "
			    "UTF-8 at byte %zu",
			    line, (int)klen, s, bad);
		if (t->n == KL_LINK_TEXT_MAX_PAIRS)
			return fail(e, "link_garbage", "the text has more than %d lines",
			            KL_LINK_TEXT_MAX_PAIRS);
		*eq = '\0';
		*nl = '\0';
		for (size_t i = 0; i < t->n; i++)
			if (strcmp(t->key[i], s) == 0)
				return fail(e, "link_garbage", "the key %s appears twice", s);
		t->key[t->n] = s;
		t->value[t->n] = eq + 1;
		t->n++;
		at += len + 1;
	}
	return 0;
}

const char *kl_link_text_get(const kl_link_text *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->key[i], key) == 0)
			return t->value[i];
	return NULL;
}

int kl_link_text_add(char *out, size_t cap, size_t *len, const char *key, const char *value,
                     kl_link_err *e)
{
	size_t klen = strlen(key), vlen = strlen(value), need = klen + vlen + 2;

	if (!key_valid(key, klen))
		return fail(e, "link_garbage", "the key \"%.40s\" is not 1..%d of [a-z_]", key,
		            KL_LINK_TEXT_KEY_MAX);
	if (vlen > KL_LINK_TEXT_VALUE_MAX)
		return fail(e, "link_oversize", "the value of %s is longer than %d bytes", key,
		            KL_LINK_TEXT_VALUE_MAX);
	if (value_bad_at((const unsigned char *)value, vlen) != vlen)
		return fail(e, "link_garbage",
		            "the value of %s has a control character or bad UTF-8", key);
	if (*len + need > cap || *len + need > KL_LINK_PAYLOAD_MAX)
		return fail(e, "link_oversize", "the text does not fit in %zu bytes",
		            cap < KL_LINK_PAYLOAD_MAX ? cap : (size_t)KL_LINK_PAYLOAD_MAX);
	memcpy(out + *len, key, klen);
	out[*len + klen] = '=';
	memcpy(out + *len + klen + 1, value, vlen);
	out[*len + need - 1] = '\n';
	*len += need;
	return 0;
}

bool kl_link_serial_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > KL_LINK_SERIAL_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int read_version(const kl_link_text *t, const char *key, unsigned *ret, kl_link_err *e)
{
	const char *v = kl_link_text_get(t, key);
	unsigned long n = 0;

	if (!v)
		return fail(e, "link_garbage", "HELLO has no %s", key);
	if (!*v || strlen(v) > 5 || strspn(v, "0123456789") != strlen(v))
		return fail(e, "link_garbage", "HELLO's %s \"%.20s\" is not a version number", key,
		            v);
	n = strtoul(v, NULL, 10);
	if (n < 1 || n > 65535)
		return fail(e, "link_garbage", "HELLO's %s %lu is not in 1..65535", key, n);
	*ret = (unsigned)n;
	return 0;
}

int kl_link_hello_read(const kl_link_text *t, kl_link_hello *h, kl_link_err *e)
{
	const char *v;

	if (read_version(t, "proto_min", &h->proto_min, e) < 0 ||
	    read_version(t, "proto_max", &h->proto_max, e) < 0)
		return -1;
	if (h->proto_min > h->proto_max)
		return fail(e, "link_garbage", "HELLO's proto_min %u is above its proto_max %u",
		            h->proto_min, h->proto_max);
	h->serial = kl_link_text_get(t, "serial");
	if (!h->serial)
		return fail(e, "serial_invalid", "HELLO has no serial");
	if (!kl_link_serial_valid(h->serial))
		return fail(e, "serial_invalid",
		            "HELLO's serial is not 1..%d of [A-Za-z0-9._-] (%zu bytes)",
		            KL_LINK_SERIAL_MAX, strlen(h->serial));
	h->model = (v = kl_link_text_get(t, "model")) ? v : "";
	h->firmware = (v = kl_link_text_get(t, "firmware")) ? v : "";
	h->agent = (v = kl_link_text_get(t, "agent")) ? v : "";
	return 0;
}

int kl_link_negotiate(unsigned peer_min, unsigned peer_max, unsigned our_min, unsigned our_max,
                      kl_link_err *e)
{
	unsigned hi = peer_max < our_max ? peer_max : our_max;
	unsigned lo = peer_min > our_min ? peer_min : our_min;

	if (lo > hi)
		return fail(e, "version_mismatch",
		            "the peer speaks protocol versions %u..%u and this side %u..%u",
		            peer_min, peer_max, our_min, our_max);
	return (int)hi;
}

bool kl_link_reason_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}
