/* keyline demo: the simulated line is a program of its own, keyline-demo
 * (fixtures/demo.c), so that keyline itself carries no test fixture. This
 * command runs it in keyline's place, with the arguments given and this very
 * keyline for it to drive (`keyline ca init`, `keyline station`). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kl_error.h"

#ifndef KL_DEMO_BUILD_PATH
#define KL_DEMO_BUILD_PATH ""
#endif
#ifndef KL_INSTALL_BINDIR
#define KL_INSTALL_BINDIR "/usr/local/bin"
#endif

#define DEMO_PROGRAM "keyline-demo"

/* The first directory of $PATH holding an executable keyline-demo. */
static bool find_in_path(char *out, size_t size)
{
	const char *path = getenv("PATH");

	while (path && *path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);

		if (len > 0 && len < PATH_MAX &&
		    (size_t)snprintf(out, size, "%.*s/" DEMO_PROGRAM, (int)len, path) < size &&
		    access(out, X_OK) == 0)
			return true;
		path = colon ? colon + 1 : NULL;
	}
	return false;
}

/* Where keyline-demo is: $KEYLINE_DEMO when set (and then only there), else
 * beside this program (an installed pair), else the build tree's, else the
 * install prefix's bindir, else $PATH. Returns 0, or -KL_E_NOTFOUND saying
 * where it looked. */
static int find_demo(const char *self, char *out, size_t size)
{
	const char *env = getenv("KEYLINE_DEMO");
	char beside[PATH_MAX];
	const char *slash = strrchr(self, '/');

	if (env && *env) {
		snprintf(out, size, "%s", env);
		if (access(out, X_OK) != 0)
			return kl_error_set(
			    KL_E_NOTFOUND,
			    "the demo program %s (from $KEYLINE_DEMO) cannot run: %s", out,
			    strerror(errno));
		return 0;
	}
	snprintf(beside, sizeof(beside), "%.*s/" DEMO_PROGRAM, slash ? (int)(slash - self) : 1,
	         slash ? self : ".");
	const char *const candidates[] = { beside, KL_DEMO_BUILD_PATH,
		                           KL_INSTALL_BINDIR "/" DEMO_PROGRAM };
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (*candidates[i] && access(candidates[i], X_OK) == 0) {
			snprintf(out, size, "%s", candidates[i]);
			return 0;
		}
	if (find_in_path(out, size))
		return 0;
	return kl_error_set(KL_E_NOTFOUND,
	                    "the demo program " DEMO_PROGRAM " is missing: not found as %s, %s%s%s"
	                    " or in $PATH (install it beside keyline, or set KEYLINE_DEMO to it)",
	                    beside, *KL_DEMO_BUILD_PATH ? KL_DEMO_BUILD_PATH : "",
	                    *KL_DEMO_BUILD_PATH ? ", " : "", KL_INSTALL_BINDIR "/" DEMO_PROGRAM);
}

int kl_cmd_demo(const char *home_dir, int argc, char **argv)
{
	char self[PATH_MAX], demo[PATH_MAX];
	char **args;
	ssize_t len;
	int n = 0;

	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0) {
		fprintf(stderr, "keyline demo: /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self[len] = 0;
	if (find_demo(self, demo, sizeof(demo)) < 0) {
		fprintf(stderr, "keyline demo: %s\n", kl_error_detail());
		return 1;
	}
	/* "keyline": the demo's usage then names `keyline demo`. Without a
	 * home it makes a fresh one. */
	args = calloc((size_t)argc + 6, sizeof(*args));
	if (!args) {
		fprintf(stderr, "keyline demo: out of memory\n");
		return 1;
	}
	args[n++] = (char *)"keyline";
	args[n++] = (char *)"--keyline";
	args[n++] = self;
	if (home_dir) {
		args[n++] = (char *)"--home";
		args[n++] = (char *)home_dir;
	}
	for (int i = 1; i < argc; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	fflush(NULL);
	execv(demo, args);
	fprintf(stderr, "keyline demo: cannot run %s: %s\n", demo, strerror(errno));
	free(args);
	return 1;
}
