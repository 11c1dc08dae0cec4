/* libFuzzer harness for the keyline-agent link (docs/link.md), both sides:
 *
 *   agent side (and any user of the codec): the input as a byte stream
 *   through kl_link_decoder in chunks whose sizes come from the input's
 *   first byte, each frame's text through kl_link_text_parse, HELLO
 *   through kl_link_hello_read;
 *   station side: the same stream on a socketpair through kl_link_conn and
 *   kl_link_handshake, as an agent's bytes reach the station.
 *
 * Invariants (abort when broken):
 *   - a frame that comes out has a known type, a length within its type's
 *     bounds, and, for TPM frames, a size field equal to its length;
 *   - a refusal names one of the protocol's reasons and a message;
 *   - a parsed text has unique [a-z_] keys and values without control
 *     characters, and re-encoding it with kl_link_text_add parses back to
 *     the same pairs;
 *   - an accepted HELLO has a valid serial and proto_min <= proto_max;
 *   - the handshake either succeeds (a HELLO of version 1 with a valid
 *     serial) or names one of the station's link refusals. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "kl_error.h"
#include "link_conn.h"
#include "link_frame.h"
#include "link_listen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_link_frame"

static bool known_reason(const char *r)
{
	static const char *const reasons[] = { "link_garbage",   "link_oversize",
		                               "link_truncated", "link_lost",
		                               "link_timeout",   "version_mismatch",
		                               "serial_invalid", "serial_mismatch" };

	for (size_t i = 0; r && i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (strcmp(r, reasons[i]) == 0)
			return true;
	return false;
}

static void check_text(const uint8_t *p, size_t n)
{
	static kl_link_text t, back;
	static char out[KL_LINK_PAYLOAD_MAX + 64];
	size_t len = 0;
	kl_link_err e;
	kl_link_hello h;

	if (kl_link_text_parse(p, n, &t, &e) < 0) {
		fuzz_check(known_reason(e.reason) && e.message[0], H, "text refusal named");
		return;
	}
	for (size_t i = 0; i < t.n; i++) {
		fuzz_check(strlen(t.key[i]) >= 1 && strlen(t.key[i]) <= KL_LINK_TEXT_KEY_MAX &&
		               strspn(t.key[i], "abcdefghijklmnopqrstuvwxyz_") == strlen(t.key[i]),
		           H, "key [a-z_]");
		for (const unsigned char *v = (const unsigned char *)t.value[i]; *v; v++)
			fuzz_check(*v >= 0x20 && *v != 0x7f, H, "no control character");
		for (size_t j = 0; j < i; j++)
			fuzz_check(strcmp(t.key[i], t.key[j]) != 0, H, "keys unique");
		fuzz_check(kl_link_text_add(out, sizeof(out), &len, t.key[i], t.value[i], &e) == 0,
		           H, "what parsed encodes");
	}
	fuzz_check(len == n && memcmp(out, p, n) == 0, H, "re-encoding is byte-identical");
	fuzz_check(kl_link_text_parse((const uint8_t *)out, len, &back, &e) == 0 && back.n == t.n,
	           H, "re-encoded text parses");
	if (kl_link_hello_read(&t, &h, &e) == 0)
		fuzz_check(kl_link_serial_valid(h.serial) && h.proto_min <= h.proto_max &&
		               h.proto_min >= 1,
		           H, "accepted HELLO is sane");
	else
		fuzz_check(known_reason(e.reason), H, "HELLO refusal named");
}

static void agent_side(const uint8_t *data, size_t size)
{
	static kl_link_decoder d;
	size_t chunk = size ? (size_t)(data[0] % 17) + 1 : 1, off = 0;
	kl_link_err e;

	kl_link_decoder_init(&d);
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk, used = 0;
		int r = kl_link_decoder_feed(&d, data + off, n, &used, &e);

		if (r < 0) {
			fuzz_check(known_reason(e.reason) && e.message[0], H,
			           "frame refusal named");
			return;
		}
		fuzz_check(used <= n && (r == KL_LINK_FRAME || used == n), H,
		           "decoder takes bytes");
		off += used;
		if (r != KL_LINK_FRAME)
			continue;
		fuzz_check(d.type >= KL_LINK_HELLO && d.type <= KL_LINK_PONG, H, "known type");
		fuzz_check(d.len <= KL_LINK_PAYLOAD_MAX, H, "within the limit");
		if (d.type == KL_LINK_TPM_COMMAND || d.type == KL_LINK_TPM_RESPONSE) {
			uint32_t sz = (uint32_t)d.payload[2] << 24 | (uint32_t)d.payload[3] << 16 |
			              (uint32_t)d.payload[4] << 8 | d.payload[5];

			fuzz_check(d.len >= KL_LINK_TPM_MIN && d.len <= KL_LINK_TPM_MAX &&
			               sz == d.len,
			           H, "TPM frame sized");
		} else if (d.type == KL_LINK_PING || d.type == KL_LINK_PONG) {
			fuzz_check(d.len <= KL_LINK_PING_MAX, H, "PING sized");
		} else {
			check_text(d.payload, d.len);
		}
	}
	(void)kl_link_decoder_eof(&d, &e);
	fuzz_check(strcmp(e.reason, "link_lost") == 0 || strcmp(e.reason, "link_truncated") == 0, H,
	           "eof named");
}

static void station_side(const uint8_t *data, size_t size)
{
	kl_link_conn *c = NULL;
	kl_link_agent_info info;
	kl_link_wait w;
	int sv[2], r;

	if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return;
	for (size_t off = 0; off < size;) {
		ssize_t n = write(sv[0], data + off, size - off);

		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(sv[0], SHUT_WR);
	fuzz_check(kl_link_conn_wrap(sv[1], "fuzz", &c) == 0, H, "wrap");
	w.deadline_ms = kl_link_now_ms() + 200;
	w.cancelled = NULL;
	w.cancel_ctx = NULL;
	r = kl_link_handshake(c, &w, "fuzz-station", size && data[0] & 1 ? "FUZZ-1" : NULL, &info);
	if (r == 0)
		fuzz_check(kl_link_serial_valid(info.serial) && info.proto == 1, H,
		           "accepted handshake is sane");
	else
		fuzz_check(known_reason(kl_link_conn_reason(c)) && kl_error_detail()[0], H,
		           "handshake refusal named");
	kl_link_conn_free(c);
	close(sv[0]);
	kl_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	agent_side(data, size);
	station_side(data, size);
	return 0;
}
