/* What the parser harnesses share: an invariant check that aborts (so that
 * libFuzzer and the replay driver report it), the split of an input into
 * several byte strings, and where the harnesses' fixed test material lives.
 *
 * Parts: a harness that needs several inputs at once (a TPMS_ATTEST, its
 * signature, two public areas and a nonce) reads them from one fuzz input
 * as a sequence of parts, each a 2-byte big-endian length followed by that
 * many bytes. A length that runs past the end takes what is left; parts
 * after the end are empty. seed_from_floor.c writes its files that way. */
#ifndef KL_FUZZ_UTIL_H
#define KL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fuzz_part {
	const uint8_t *p;
	size_t n;
} fuzz_part;

static inline void fuzz_check(int ok, const char *harness, const char *what)
{
	if (!ok) {
		fprintf(stderr, "%s: invariant broken: %s\n", harness, what);
		abort();
	}
}

static inline void fuzz_split(const uint8_t *data, size_t size, fuzz_part *parts, size_t n)
{
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		size_t len = 0;

		if (size - off >= 2) {
			len = (size_t)data[off] << 8 | data[off + 1];
			off += 2;
		} else {
			off = size;
		}
		if (len > size - off)
			len = size - off;
		parts[i].p = data + off;
		parts[i].n = len;
		off += len;
	}
}

/* The directory of the harnesses' fixed material (tests/fuzz/data: the
 * trust bundle of the floor's vendor, the EK keys of the credential
 * harness): $KL_FUZZ_DATA, else the source tree's, set at build time. */
static inline const char *fuzz_data_dir(void)
{
	const char *env = getenv("KL_FUZZ_DATA");

#ifdef KL_FUZZ_DATA
	return env && *env ? env : KL_FUZZ_DATA;
#else
	return env && *env ? env : "tests/fuzz/data";
#endif
}

#endif
