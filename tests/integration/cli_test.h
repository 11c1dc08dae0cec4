/* Shared by the tests that drive the built keyline program: a floor for the
 * temp directory, a home in it, the program's stdout and stderr in files.
 * Include after cmocka.h; define KEYLINE_BIN. */
#ifndef KL_CLI_TEST_H
#define KL_CLI_TEST_H

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floor.h"

#ifndef KEYLINE_BIN
#error "KEYLINE_BIN must be defined by the build"
#endif

struct env {
	kl_floor *floor;
	char dir[PATH_MAX];
	char home[PATH_MAX];
	char out[PATH_MAX];
	char err[PATH_MAX];
};

/* A whole file as a string ("" when it cannot be read); free() it. */
static inline char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		buf[0] = '\0';
	fclose(f);
	return buf;
}

/* Runs keyline --home HOME ARGS... (NULL-terminated); stdout to e->out,
 * stderr to e->err. Returns the exit status. */
static inline int keyline(struct env *e, ...)
{
	const char *argv[32] = { "sh",        "-c",     "exec \"$0\" \"$@\" 2>\"$KL_ERR\"",
		                 KEYLINE_BIN, "--home", e->home };
	char env_err[PATH_MAX + 8];
	const char *extra[] = { env_err, NULL };
	va_list ap;
	int n = 6;

	va_start(ap, e);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 31;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(env_err, sizeof(env_err), "KL_ERR=%s", e->err);
	return kl_floor_run(e->floor, e->out, extra, argv);
}

/* Fails the test unless the file holds needle. */
static inline void assert_in(const char *path, const char *needle)
{
	char *text = slurp(path);

	if (!strstr(text, needle))
		fail_msg("'%s' not found in %s:\n%s", needle, path, text);
	free(text);
}

#endif
