/* The keyline-agent link protocol's frame and text codec (docs/link.md).
 *
 * libc only, no allocation, no I/O: the station and keyline-agent (which
 * links nothing of ours but this file) compile the same code, and the USB
 * transport reuses it. Every refusal carries a snake_case reason (the one
 * the station's job reports) and a sentence naming the problem.
 *
 * Frame = 12-byte header + payload:
 *   0..3  magic "KLNK"
 *   4     frame-format version (1)
 *   5     type (kl_link_type)
 *   6..7  reserved, 0
 *   8..11 payload length, u32 big-endian, <= KL_LINK_PAYLOAD_MAX
 */
#ifndef KL_STATION_LINK_FRAME_H
#define KL_STATION_LINK_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef KL_MUST_CHECK
#define KL_MUST_CHECK __attribute__((warn_unused_result))
#endif

#define KL_LINK_MAGIC       "KLNK"
#define KL_LINK_FORMAT      1    /* byte 4 */
#define KL_LINK_HEADER_SIZE 12   /* bytes before the payload */
#define KL_LINK_PAYLOAD_MAX 8192 /* the hard limit of any payload */
#define KL_LINK_TPM_MIN     10   /* a TPM command/response header */
#define KL_LINK_TPM_MAX     4096 /* TPM2_MAX_COMMAND_SIZE of the PC Client profile */
#define KL_LINK_PING_MAX    64   /* PING/PONG carry an opaque token at most this long */
#define KL_LINK_PROTO_MIN   1    /* protocol versions this code speaks */
#define KL_LINK_PROTO_MAX   1

#define KL_LINK_TEXT_MAX_PAIRS 16  /* key=value lines in one text payload */
#define KL_LINK_TEXT_KEY_MAX   32  /* bytes of a key */
#define KL_LINK_TEXT_VALUE_MAX 512 /* bytes of a value */
#define KL_LINK_SERIAL_MAX     64

typedef enum kl_link_type {
	KL_LINK_HELLO = 1,        /* agent -> station, text */
	KL_LINK_WELCOME = 2,      /* station -> agent, text */
	KL_LINK_TPM_COMMAND = 3,  /* station -> agent, one TPM command */
	KL_LINK_TPM_RESPONSE = 4, /* agent -> station, one TPM response */
	KL_LINK_VERDICT = 5,      /* station -> agent, text */
	KL_LINK_ERROR = 6,        /* either way, text, then close */
	KL_LINK_PING = 7,
	KL_LINK_PONG = 8,
} kl_link_type;

/* Why a frame or text was refused. reason is a static snake_case string
 * (link_garbage, link_oversize, link_truncated, version_mismatch,
 * serial_invalid, ...), message a sentence for the operator. */
typedef struct kl_link_err {
	const char *reason;
	char message[200];
} kl_link_err;

/* The type's name ("HELLO"), or "unknown". */
const char *kl_link_type_name(int type);

/* Writes the header of a frame of this type and payload length. */
void kl_link_header_encode(uint8_t out[KL_LINK_HEADER_SIZE], kl_link_type type, uint32_t len);

/* Checks a received header: magic, format, reserved bytes, a known type
 * and the payload length against the type's bounds (link_garbage,
 * link_oversize). 0 and *type, *len, or -1 with *e. */
int kl_link_header_decode(const uint8_t in[KL_LINK_HEADER_SIZE], kl_link_type *type, uint32_t *len,
                          kl_link_err *e) KL_MUST_CHECK;

/* An incremental decoder: bytes go in as they arrive, whole frames come
 * out. The payload buffer is part of the struct, so a peer's length is
 * refused before anything is read into (or allocated for) it. */
typedef struct kl_link_decoder {
	uint8_t hdr[KL_LINK_HEADER_SIZE];
	size_t hdr_got;
	kl_link_type type;
	uint32_t len;
	uint32_t got;
	bool ready; /* a whole frame is in type/len/payload */
	bool failed;
	uint8_t payload[KL_LINK_PAYLOAD_MAX];
} kl_link_decoder;

enum {
	KL_LINK_NEED_MORE = 0, /* all of data taken, no whole frame yet */
	KL_LINK_FRAME = 1,     /* a frame is ready; *used bytes were taken */
};

void kl_link_decoder_init(kl_link_decoder *d);

/* Takes bytes up to the end of one frame. Returns KL_LINK_FRAME (the frame
 * is in d->type, d->payload, d->len until the next feed), KL_LINK_NEED_MORE,
 * or -1 with *e (the decoder then stays failed). TPM frames are checked
 * with kl_link_tpm_check before they are returned. */
int kl_link_decoder_feed(kl_link_decoder *d, const uint8_t *data, size_t n, size_t *used,
                         kl_link_err *e) KL_MUST_CHECK;

/* The peer closed the stream: link_truncated inside a frame, link_lost
 * between frames. Always -1. */
int kl_link_decoder_eof(const kl_link_decoder *d, kl_link_err *e);

/* A TPM_COMMAND or TPM_RESPONSE payload: 10..4096 bytes and its own size
 * field (bytes 2..5) equal to the payload length (link_garbage,
 * link_oversize). Other types pass. */
int kl_link_tpm_check(kl_link_type type, const uint8_t *p, size_t n, kl_link_err *e) KL_MUST_CHECK;

/* A text payload: "key=value\n" lines, keys [a-z_] (1..32), each at most
 * once, values printable (no control characters, well-formed UTF-8,
 * 0..512 bytes), at most 16 lines, every line ended by '\n'. */
typedef struct kl_link_text {
	size_t n;
	const char *key[KL_LINK_TEXT_MAX_PAIRS];
	const char *value[KL_LINK_TEXT_MAX_PAIRS];
	char buf[KL_LINK_PAYLOAD_MAX + 1]; /* the keys and values, NUL-ended */
} kl_link_text;

/* Parses a text payload into t (no allocation). -1 with *e: link_garbage. */
int kl_link_text_parse(const uint8_t *p, size_t n, kl_link_text *t, kl_link_err *e) KL_MUST_CHECK;

/* The value of key, or NULL. */
const char *kl_link_text_get(const kl_link_text *t, const char *key);

/* Appends "key=value\n" to out (cap bytes, *len used so far) after the same
 * checks the parser makes. -1 with *e when the pair is not valid or does
 * not fit in cap or KL_LINK_PAYLOAD_MAX. */
int kl_link_text_add(char *out, size_t cap, size_t *len, const char *key, const char *value,
                     kl_link_err *e) KL_MUST_CHECK;

/* Whether s is a serial the link accepts: 1..64 of [A-Za-z0-9._-]. */
bool kl_link_serial_valid(const char *s);

/* What HELLO says. Strings point into the kl_link_text parsed from it. */
typedef struct kl_link_hello {
	unsigned proto_min, proto_max;
	const char *serial;
	const char *model;    /* "" when left out */
	const char *firmware; /* "" when left out */
	const char *agent;    /* "" when left out */
} kl_link_hello;

/* Reads HELLO's fields: proto_min/proto_max decimal 1..65535 with
 * min <= max (link_garbage), serial valid (serial_invalid). */
int kl_link_hello_read(const kl_link_text *t, kl_link_hello *h, kl_link_err *e) KL_MUST_CHECK;

/* The highest version both sides speak, or -1 with version_mismatch. */
int kl_link_negotiate(unsigned peer_min, unsigned peer_max, unsigned our_min, unsigned our_max,
                      kl_link_err *e) KL_MUST_CHECK;

/* Whether s is a snake_case reason ([a-z][a-z0-9_]*, at most 64). */
bool kl_link_reason_valid(const char *s);

#endif
