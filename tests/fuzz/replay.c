/* Replays a libFuzzer corpus without libFuzzer: calls LLVMFuzzerTestOneInput
 * once per regular file in each directory (or file) named on the command
 * line, so that gcc builds (plain and ASan) run every seed. Exits 1 when a
 * path cannot be read or no input was found. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file (inputs are small; 16 MiB is plenty). */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;

	if (!f) {
		fprintf(stderr, "replay: %s: cannot open\n", path);
		return -1;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *n;
			if (cap >= (16u << 20))
				break;
			cap = cap ? cap * 2 : 4096;
			n = realloc(buf, cap);
			if (!n) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = n;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		if (got == 0)
			break;
		len += got;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf ? buf : (const uint8_t *)"", len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, failed = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		DIR *d;
		struct dirent *e;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: cannot stat\n", argv[i]);
			failed++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			failed += run_file(argv[i]) < 0;
			files++;
			continue;
		}
		if (!(d = opendir(argv[i]))) {
			failed++;
			continue;
		}
		while ((e = readdir(d))) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			failed += run_file(path) < 0;
			files++;
		}
		closedir(d);
	}
	printf("replay: %d inputs, %d unreadable\n", files, failed);
	return failed || files == 0 ? 1 : 0;
}
