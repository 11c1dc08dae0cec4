/* libFuzzer harness for pre-registration files (station/registry/
 * registry_import.c, the CSV and JSON readers behind `keyline preregister`
 * and devices.preregister): the input is the file's content, read by
 * kl_registry_read_file three times, as NAME.csv, NAME.json and NAME
 * (format by content), from a scratch directory. Each entry then goes
 * through the checks the batch applies to it (kl_registry_check_name,
 * kl_registry_ek_from_hex). The seeds are the examples of docs/registry.md
 * and edge cases.
 *
 * Invariants (abort when broken):
 *   - a refusal is -KL_E_INVALID and names the file;
 *   - an accepted file has at least one entry, each with a serial;
 *   - line numbers are within the file and never go back;
 *   - a CSV serial or EK holds no comma and no line break; a serial the
 *     name check accepts is at most 64 bytes, an EK hash 64 hex digits;
 *   - a file without an extension is read as one of the other two. */
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kl_error.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_prereg"

static char dir[64];

struct seen {
	bool csv;
	unsigned lines; /* lines in the input */
	size_t n;
	uint64_t hash; /* FNV-1a over the entries */
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	if (dir[0])
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void hash(uint64_t *h, const char *s)
{
	for (; s && *s; s++)
		*h = (*h ^ (uint8_t)*s) * 0x100000001b3ull;
	*h = (*h ^ 0xff) * 0x100000001b3ull;
}

/* A CSV field. Blanks inside double quotes stay (the name check refuses
 * them), so only the separators are checked. */
static void check_field(const char *s)
{
	fuzz_check(!strpbrk(s, ",\n"), H, "CSV: no comma or line break in a field");
}

static int items(void *ctx, const kl_registry_item *it, size_t n)
{
	struct seen *s = ctx;
	unsigned last = 0;

	fuzz_check(n > 0, H, "at least one entry");
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		unsigned char ek[32];

		fuzz_check(it[i].serial != NULL, H, "each entry has a serial");
		fuzz_check(it[i].line >= 1 && it[i].line <= s->lines, H, "line within the file");
		fuzz_check(it[i].line >= last, H, "lines never go back");
		last = it[i].line;
		if (s->csv) {
			fuzz_check(*it[i].serial, H, "CSV: serial not empty");
			check_field(it[i].serial);
			if (it[i].ek_sha256)
				check_field(it[i].ek_sha256);
		}
		if (kl_registry_check_name("serial", it[i].serial) == 0)
			fuzz_check(strlen(it[i].serial) <= 64, H, "a serial is at most 64 bytes");
		if (it[i].ek_sha256 && kl_registry_ek_from_hex(it[i].ek_sha256, ek) == 0)
			fuzz_check(strlen(it[i].ek_sha256) == 64, H, "an EK hash is 64 digits");
		hash(&s->hash, it[i].serial);
		hash(&s->hash, it[i].ek_sha256);
	}
	kl_error_clear();
	return 0;
}

static int read_as(const char *name, bool csv, const uint8_t *data, size_t size, unsigned lines,
                   struct seen *s)
{
	char path[128];
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	fuzz_check(f && fwrite(data, 1, size, f) == size && fclose(f) == 0, H, "scratch file");
	*s = (struct seen){ .csv = csv, .lines = lines, .hash = 0xcbf29ce484222325ull };
	r = kl_registry_read_file(path, items, s);
	if (r < 0) {
		fuzz_check(r == -KL_E_INVALID, H, "refusal: -KL_E_INVALID");
		fuzz_check(strstr(kl_error_detail(), path) != NULL, H, "refusal names the file");
		s->n = 0;
	}
	kl_error_clear();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen csv, json, sniffed;
	unsigned lines = 1;
	int rc, rj, rs;

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/kl-fuzz-prereg.XXXXXX");
		fuzz_check(mkdtemp(dir) != NULL, H, "scratch directory");
		atexit(cleanup);
	}
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	rc = read_as("serials.csv", true, data, size, lines, &csv);
	rj = read_as("serials.json", false, data, size, lines, &json);
	rs = read_as("serials", false, data, size, lines, &sniffed);
	fuzz_check((rs == rc && sniffed.n == csv.n && sniffed.hash == csv.hash) ||
	               (rs == rj && sniffed.n == json.n && sniffed.hash == json.hash),
	           H, "without an extension: CSV or JSON");
	return 0;
}
