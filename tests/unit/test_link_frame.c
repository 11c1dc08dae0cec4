/* The link protocol's frame and text codec (station/link/link_frame.c):
 * round trips, every refusal by its reason, truncation at every byte,
 * oversize and reserved bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "link_frame.h"

static kl_link_decoder dec;

/* A TPM buffer of n bytes whose size field says n. */
static void tpm_buf(uint8_t *p, size_t n)
{
	memset(p, 0xa5, n);
	p[0] = 0x80;
	p[1] = 0x01;
	p[2] = (uint8_t)(n >> 24);
	p[3] = (uint8_t)(n >> 16);
	p[4] = (uint8_t)(n >> 8);
	p[5] = (uint8_t)n;
}

static size_t frame(uint8_t *out, kl_link_type t, const uint8_t *p, uint32_t n)
{
	kl_link_header_encode(out, t, n);
	if (n)
		memcpy(out + KL_LINK_HEADER_SIZE, p, n);
	return KL_LINK_HEADER_SIZE + n;
}

/* Feeds all of buf at once; returns the result and the error. */
static int feed_all(const uint8_t *buf, size_t n, kl_link_err *e)
{
	size_t used = 0;

	kl_link_decoder_init(&dec);
	return kl_link_decoder_feed(&dec, buf, n, &used, e);
}

static void test_round_trip_every_type(void **state)
{
	static uint8_t buf[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];
	uint8_t tpm[KL_LINK_TPM_MAX];
	const char *text = "reason=x\n";
	kl_link_err e = { 0 };

	(void)state;
	for (int t = KL_LINK_HELLO; t <= KL_LINK_PONG; t++) {
		size_t n, used = 0;
		const uint8_t *p = (const uint8_t *)text;
		uint32_t len = (uint32_t)strlen(text);

		if (t == KL_LINK_TPM_COMMAND || t == KL_LINK_TPM_RESPONSE) {
			tpm_buf(tpm, 300);
			p = tpm;
			len = 300;
		} else if (t == KL_LINK_PING || t == KL_LINK_PONG) {
			len = 0;
		}
		n = frame(buf, (kl_link_type)t, p, len);
		kl_link_decoder_init(&dec);
		assert_int_equal(kl_link_decoder_feed(&dec, buf, n, &used, &e), KL_LINK_FRAME);
		assert_int_equal(used, n);
		assert_int_equal(dec.type, t);
		assert_int_equal(dec.len, len);
		if (len)
			assert_memory_equal(dec.payload, p, len);
	}
}

/* Two frames back to back, fed one byte at a time: both come out, and the
 * decoder takes exactly one frame's bytes per result. */
static void test_byte_by_byte_and_back_to_back(void **state)
{
	uint8_t buf[2 * (KL_LINK_HEADER_SIZE + 64)], tpm[40];
	size_t n = 0, at = 0, frames = 0;
	kl_link_err e = { 0 };

	(void)state;
	tpm_buf(tpm, sizeof(tpm));
	n += frame(buf, KL_LINK_TPM_RESPONSE, tpm, sizeof(tpm));
	n += frame(buf + n, KL_LINK_PING, (const uint8_t *)"abc", 3);
	kl_link_decoder_init(&dec);
	while (at < n) {
		size_t used = 0;
		int r = kl_link_decoder_feed(&dec, buf + at, 1, &used, &e);

		assert_true(r >= 0);
		assert_int_equal(used, 1);
		at += used;
		if (r == KL_LINK_FRAME) {
			frames++;
			assert_int_equal(dec.type,
			                 frames == 1 ? KL_LINK_TPM_RESPONSE : KL_LINK_PING);
		}
	}
	assert_int_equal(frames, 2);

	/* All at once: the first feed stops at the end of the first frame. */
	{
		size_t used = 0;

		kl_link_decoder_init(&dec);
		assert_int_equal(kl_link_decoder_feed(&dec, buf, n, &used, &e), KL_LINK_FRAME);
		assert_int_equal(used, KL_LINK_HEADER_SIZE + sizeof(tpm));
		assert_int_equal(kl_link_decoder_feed(&dec, buf + used, n - used, &used, &e),
		                 KL_LINK_FRAME);
		assert_int_equal(dec.type, KL_LINK_PING);
		assert_memory_equal(dec.payload, "abc", 3);
	}
}

/* A stream cut after every byte of a frame: link_truncated inside it,
 * link_lost before its first byte or after its last. */
static void test_truncation_at_every_byte(void **state)
{
	uint8_t buf[KL_LINK_HEADER_SIZE + 100], tpm[100];
	size_t n;

	(void)state;
	tpm_buf(tpm, sizeof(tpm));
	n = frame(buf, KL_LINK_TPM_COMMAND, tpm, sizeof(tpm));
	for (size_t cut = 0; cut <= n; cut++) {
		kl_link_err e = { 0 };
		int r = cut ? feed_all(buf, cut, &e) : KL_LINK_NEED_MORE;

		if (!cut)
			kl_link_decoder_init(&dec);
		assert_int_equal(r, cut == n ? KL_LINK_FRAME : KL_LINK_NEED_MORE);
		assert_int_equal(kl_link_decoder_eof(&dec, &e), -1);
		assert_string_equal(e.reason,
		                    cut == 0 || cut == n ? "link_lost" : "link_truncated");
		assert_true(strlen(e.message) > 0);
	}
}

static void expect_refused(const uint8_t *buf, size_t n, const char *reason)
{
	kl_link_err e = { 0 };
	size_t used = 0;

	assert_int_equal(feed_all(buf, n, &e), -1);
	assert_string_equal(e.reason, reason);
	assert_true(strlen(e.message) > 0);
	/* A failed decoder stays failed. */
	assert_int_equal(kl_link_decoder_feed(&dec, buf, n, &used, &e), -1);
}

static void test_header_refusals(void **state)
{
	uint8_t buf[KL_LINK_HEADER_SIZE + 16], bad[KL_LINK_HEADER_SIZE + 16];
	size_t n;

	(void)state;
	n = frame(buf, KL_LINK_HELLO, (const uint8_t *)"serial=a\n", 9);

	/* Each magic byte, and refused at that byte: the rest never needed. */
	for (int i = 0; i < 4; i++) {
		kl_link_err e = { 0 };

		memcpy(bad, buf, n);
		bad[i] ^= 0x20;
		expect_refused(bad, n, "link_garbage");
		assert_int_equal(feed_all(bad, (size_t)i + 1, &e), -1);
	}
	/* HTTP, TLS and zero bytes are garbage from the first byte on. */
	expect_refused((const uint8_t *)"GET / HTTP/1.1\r\n", 16, "link_garbage");
	memset(bad, 0, sizeof(bad));
	expect_refused(bad, sizeof(bad), "link_garbage");

	/* Frame format, every reserved bit, unknown types. */
	memcpy(bad, buf, n);
	bad[4] = 2;
	expect_refused(bad, n, "link_garbage");
	for (int byte = 6; byte <= 7; byte++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, buf, n);
			bad[byte] = (uint8_t)(1u << bit);
			expect_refused(bad, n, "link_garbage");
		}
	for (int t = 0; t < 256; t++) {
		kl_link_err e = { 0 };

		if (t >= KL_LINK_HELLO && t <= KL_LINK_PONG)
			continue;
		memcpy(bad, buf, n);
		bad[5] = (uint8_t)t;
		expect_refused(bad, n, "link_garbage");
		assert_non_null(strstr((feed_all(bad, n, &e), e.message), "type"));
	}
	/* An empty text payload. */
	kl_link_header_encode(bad, KL_LINK_HELLO, 0);
	expect_refused(bad, KL_LINK_HEADER_SIZE, "link_garbage");
}

/* Oversize is refused from the header alone, before any payload byte. */
static void test_oversize(void **state)
{
	uint8_t hdr[KL_LINK_HEADER_SIZE];
	static uint8_t big[KL_LINK_HEADER_SIZE + KL_LINK_PAYLOAD_MAX];
	const uint32_t lens[] = { KL_LINK_PAYLOAD_MAX + 1, 0x10000, 0x7fffffff, 0xffffffff };
	kl_link_err e = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		kl_link_header_encode(hdr, KL_LINK_HELLO, lens[i]);
		expect_refused(hdr, sizeof(hdr), "link_oversize");
	}
	/* TPM frames: at most 4096. */
	kl_link_header_encode(hdr, KL_LINK_TPM_RESPONSE, KL_LINK_TPM_MAX + 1);
	expect_refused(hdr, sizeof(hdr), "link_oversize");
	kl_link_header_encode(hdr, KL_LINK_PING, KL_LINK_PING_MAX + 1);
	expect_refused(hdr, sizeof(hdr), "link_oversize");
	/* Exactly the limit is taken. */
	memset(big + KL_LINK_HEADER_SIZE, 'a', KL_LINK_PAYLOAD_MAX);
	kl_link_header_encode(big, KL_LINK_ERROR, KL_LINK_PAYLOAD_MAX);
	assert_int_equal(feed_all(big, sizeof(big), &e), KL_LINK_FRAME);
	tpm_buf(big + KL_LINK_HEADER_SIZE, KL_LINK_TPM_MAX);
	kl_link_header_encode(big, KL_LINK_TPM_COMMAND, KL_LINK_TPM_MAX);
	assert_int_equal(feed_all(big, KL_LINK_HEADER_SIZE + KL_LINK_TPM_MAX, &e), KL_LINK_FRAME);
}

static void test_tpm_payloads(void **state)
{
	uint8_t buf[KL_LINK_HEADER_SIZE + 64], tpm[64];
	kl_link_err e = { 0 };

	(void)state;
	/* Shorter than a TPM header. */
	tpm_buf(tpm, 9);
	expect_refused(buf, frame(buf, KL_LINK_TPM_RESPONSE, tpm, 9), "link_garbage");
	/* The TPM's size field must equal the payload length. */
	tpm_buf(tpm, 64);
	tpm[5] = 63;
	expect_refused(buf, frame(buf, KL_LINK_TPM_RESPONSE, tpm, 64), "link_garbage");
	tpm[5] = 65;
	expect_refused(buf, frame(buf, KL_LINK_TPM_COMMAND, tpm, 64), "link_garbage");
	tpm_buf(tpm, 64);
	assert_int_equal(kl_link_tpm_check(KL_LINK_TPM_RESPONSE, tpm, 64, &e), 0);
	assert_int_equal(kl_link_tpm_check(KL_LINK_TPM_RESPONSE, tpm, 5000, &e), -1);
	assert_string_equal(e.reason, "link_oversize");
}

static void test_text_round_trip(void **state)
{
	char out[256];
	size_t len = 0;
	static kl_link_text t;
	kl_link_err e = { 0 };

	(void)state;
	assert_int_equal(kl_link_text_add(out, sizeof(out), &len, "result", "PASS", &e), 0);
	assert_int_equal(kl_link_text_add(out, sizeof(out), &len, "message", "Grüße, 1 = 1", &e),
	                 0);
	assert_int_equal(kl_link_text_add(out, sizeof(out), &len, "empty", "", &e), 0);
	assert_int_equal(kl_link_text_parse((const uint8_t *)out, len, &t, &e), 0);
	assert_int_equal(t.n, 3);
	assert_string_equal(kl_link_text_get(&t, "result"), "PASS");
	assert_string_equal(kl_link_text_get(&t, "message"), "Grüße, 1 = 1");
	assert_string_equal(kl_link_text_get(&t, "empty"), "");
	assert_null(kl_link_text_get(&t, "absent"));
	/* The empty text parses to nothing. */
	assert_int_equal(kl_link_text_parse((const uint8_t *)"", 0, &t, &e), 0);
	assert_int_equal(t.n, 0);
}

static void expect_text_refused(const char *s, size_t n, const char *needle)
{
	static kl_link_text t;
	kl_link_err e = { 0 };

	assert_int_equal(kl_link_text_parse((const uint8_t *)s, n, &t, &e), -1);
	assert_string_equal(e.reason, "link_garbage");
	if (!strstr(e.message, needle))
		fail_msg("\"%s\" does not say \"%s\"", e.message, needle);
}

static void test_text_refusals(void **state)
{
	char many[1024] = "", longv[700];
	size_t n = 0;

	(void)state;
	expect_text_refused("a=b", 3, "newline");
	expect_text_refused("novalue\n", 8, "key=value");
	expect_text_refused("=x\n", 3, "key");
	expect_text_refused("Upper=x\n", 8, "key");
	expect_text_refused("k1=x\n", 5, "key");
	expect_text_refused("a=x\na=y\n", 8, "twice");
	expect_text_refused("a=x\tb\n", 6, "control");
	expect_text_refused("a=x\rb\n", 6, "control");
	expect_text_refused("a=x\x7f\n", 5, "control");
	expect_text_refused("a=\xc3\n", 4, "UTF-8");         /* cut sequence */
	expect_text_refused("a=\xc0\xaf\n", 5, "UTF-8");     /* overlong */
	expect_text_refused("a=\xed\xa0\x80\n", 6, "UTF-8"); /* surrogate */
	expect_text_refused("a=\xc2\x85\n", 5, "UTF-8");     /* C1 control */
	expect_text_refused("a=\xff\n", 4, "UTF-8");
	expect_text_refused("a=x\0y\n", 6, "control");
	expect_text_refused("\n", 1, "key=value");
	for (int i = 0; i < KL_LINK_TEXT_MAX_PAIRS + 1; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "%c%c=v\n", 'a' + i / 26,
		                      'a' + i % 26);
	expect_text_refused(many, n, "more than");
	memset(longv, 'x', sizeof(longv));
	memcpy(longv, "a=", 2);
	longv[sizeof(longv) - 1] = '\n';
	expect_text_refused(longv, sizeof(longv), "longer");
}

static void test_text_add_refusals(void **state)
{
	char out[32];
	size_t len = 0;
	kl_link_err e = { 0 };

	(void)state;
	assert_int_equal(kl_link_text_add(out, sizeof(out), &len, "Bad", "x", &e), -1);
	assert_string_equal(e.reason, "link_garbage");
	assert_int_equal(kl_link_text_add(out, sizeof(out), &len, "a", "x\ny", &e), -1);
	assert_string_equal(e.reason, "link_garbage");
	assert_int_equal(
	    kl_link_text_add(out, sizeof(out), &len, "a", "0123456789012345678901234567890123", &e),
	    -1);
	assert_string_equal(e.reason, "link_oversize");
	assert_int_equal(len, 0);
}

static int hello_of(const char *s, kl_link_hello *h, kl_link_err *e)
{
	static kl_link_text t;

	assert_int_equal(kl_link_text_parse((const uint8_t *)s, strlen(s), &t, e), 0);
	return kl_link_hello_read(&t, h, e);
}

static void test_hello_and_versions(void **state)
{
	kl_link_hello h;
	kl_link_err e = { 0 };

	(void)state;
	assert_int_equal(hello_of("proto_min=1\nproto_max=3\nserial=WS-0001.a_b\nmodel=WS2\n"
	                          "firmware=1.2\nagent=0.1.0\n",
	                          &h, &e),
	                 0);
	assert_int_equal(h.proto_min, 1);
	assert_int_equal(h.proto_max, 3);
	assert_string_equal(h.serial, "WS-0001.a_b");
	assert_string_equal(h.model, "WS2");
	assert_int_equal(kl_link_negotiate(h.proto_min, h.proto_max, 1, 1, &e), 1);
	assert_int_equal(kl_link_negotiate(2, 3, 1, 1, &e), -1);
	assert_string_equal(e.reason, "version_mismatch");
	assert_int_equal(kl_link_negotiate(1, 5, 2, 4, &e), 4);

	assert_int_equal(hello_of("proto_max=1\nserial=A\n", &h, &e), -1);
	assert_string_equal(e.reason, "link_garbage");
	assert_int_equal(hello_of("proto_min=2\nproto_max=1\nserial=A\n", &h, &e), -1);
	assert_string_equal(e.reason, "link_garbage");
	assert_int_equal(hello_of("proto_min=0\nproto_max=1\nserial=A\n", &h, &e), -1);
	assert_int_equal(hello_of("proto_min=1x\nproto_max=1\nserial=A\n", &h, &e), -1);
	assert_int_equal(hello_of("proto_min=1\nproto_max=99999999\nserial=A\n", &h, &e), -1);
	assert_int_equal(hello_of("proto_min=1\nproto_max=1\n", &h, &e), -1);
	assert_string_equal(e.reason, "serial_invalid");
	assert_int_equal(hello_of("proto_min=1\nproto_max=1\nserial=a b\n", &h, &e), -1);
	assert_string_equal(e.reason, "serial_invalid");
	assert_int_equal(hello_of("proto_min=1\nproto_max=1\nserial=../etc\n", &h, &e), -1);
	assert_string_equal(e.reason, "serial_invalid");
	assert_true(kl_link_serial_valid("x"));
	assert_false(kl_link_serial_valid(""));
	assert_false(kl_link_serial_valid("a/b"));
	assert_false(kl_link_serial_valid(
	    "01234567890123456789012345678901234567890123456789012345678901234"));
	assert_true(kl_link_reason_valid("link_lost"));
	assert_false(kl_link_reason_valid("Link"));
	assert_false(kl_link_reason_valid("_x"));
	assert_false(kl_link_reason_valid(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_byte_by_byte_and_back_to_back),
		cmocka_unit_test(test_truncation_at_every_byte),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_tpm_payloads),
		cmocka_unit_test(test_text_round_trip),
		cmocka_unit_test(test_text_refusals),
		cmocka_unit_test(test_text_add_refusals),
		cmocka_unit_test(test_hello_and_versions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
