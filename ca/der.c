/* A small DER writer. See der.h. */
#include "der.h"

#include <stdlib.h>
#include <string.h>

size_t kl_der_hdr_size(size_t len)
{
	if (len < 0x80)
		return 2;
	if (len <= 0xff)
		return 3;
	if (len <= 0xffff)
		return 4;
	if (len <= 0xffffff)
		return 5;
	return 6;
}

void kl_der_hdr_write(unsigned char *out, unsigned char tag, size_t len)
{
	size_t n = kl_der_hdr_size(len) - 2;

	*out++ = tag;
	if (n == 0) {
		*out = (unsigned char)len;
		return;
	}
	*out++ = (unsigned char)(0x80 | n);
	for (size_t i = 0; i < n; i++)
		out[i] = (unsigned char)(len >> (8 * (n - 1 - i)));
}

int kl_der_reserve(kl_der *d, size_t more)
{
	size_t cap;
	unsigned char *p;

	if (d->failed)
		return -1;
	if (d->len + more <= d->cap)
		return 0;
	cap = d->cap ? d->cap : 256;
	while (cap < d->len + more)
		cap *= 2;
	p = realloc(d->p, cap);
	if (!p) {
		d->failed = 1;
		return -1;
	}
	d->p = p;
	d->cap = cap;
	return 0;
}

void kl_der_put(kl_der *d, const void *p, size_t n)
{
	if (kl_der_reserve(d, n) < 0)
		return;
	memcpy(d->p + d->len, p, n);
	d->len += n;
}

void kl_der_put_hdr(kl_der *d, unsigned char tag, size_t len)
{
	size_t h = kl_der_hdr_size(len);

	if (kl_der_reserve(d, h) < 0)
		return;
	kl_der_hdr_write(d->p + d->len, tag, len);
	d->len += h;
}

void kl_der_put_tlv(kl_der *d, unsigned char tag, const void *p, size_t n)
{
	kl_der_put_hdr(d, tag, n);
	kl_der_put(d, p, n);
}

void kl_der_put_uint(kl_der *d, const unsigned char *mag, size_t n)
{
	unsigned char zero = 0;

	while (n > 1 && mag[0] == 0) {
		mag++;
		n--;
	}
	/* A set top bit would read as negative: prefix a zero octet. */
	if (n > 0 && (mag[0] & 0x80)) {
		kl_der_put_hdr(d, KL_DER_INTEGER, n + 1);
		kl_der_put(d, &zero, 1);
	} else {
		kl_der_put_hdr(d, KL_DER_INTEGER, n ? n : 1);
		if (n == 0)
			kl_der_put(d, &zero, 1);
	}
	kl_der_put(d, mag, n);
}

static void two(char *out, int v)
{
	out[0] = (char)('0' + v / 10 % 10);
	out[1] = (char)('0' + v % 10);
}

void kl_der_put_time(kl_der *d, time_t t)
{
	struct tm tm;
	char buf[16];
	int year;

	gmtime_r(&t, &tm);
	year = tm.tm_year + 1900;
	if (year < 2050) {
		two(buf, year % 100);
		two(buf + 2, tm.tm_mon + 1);
		two(buf + 4, tm.tm_mday);
		two(buf + 6, tm.tm_hour);
		two(buf + 8, tm.tm_min);
		two(buf + 10, tm.tm_sec);
		buf[12] = 'Z';
		kl_der_put_tlv(d, KL_DER_UTCTIME, buf, 13);
	} else {
		two(buf, year / 100);
		two(buf + 2, year % 100);
		two(buf + 4, tm.tm_mon + 1);
		two(buf + 6, tm.tm_mday);
		two(buf + 8, tm.tm_hour);
		two(buf + 10, tm.tm_min);
		two(buf + 12, tm.tm_sec);
		buf[14] = 'Z';
		kl_der_put_tlv(d, KL_DER_GENTIME, buf, 15);
	}
}

void kl_der_free(kl_der *d)
{
	free(d->p);
	memset(d, 0, sizeof(*d));
}
