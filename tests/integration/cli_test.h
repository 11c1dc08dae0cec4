/* Shared by the tests that drive the built keyline program: a floor for the
 * temp directory, a home in it, the program's stdout and stderr in files.
 * Include after cmocka.h; define KEYLINE_BIN. */
#ifndef KL_CLI_TEST_H
#define KL_CLI_TEST_H

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Points e's paths into the floor f: its directory, HOME, and the files
 * that keyline() captures stdout and stderr in. */
static inline void env_paths(struct env *e, kl_floor *f)
{
	e->floor = f;
	snprintf(e->dir, sizeof(e->dir), "%s", kl_floor_dir(f));
	snprintf(e->home, sizeof(e->home), "%s/home", e->dir);
	snprintf(e->out, sizeof(e->out), "%s/out.txt", e->dir);
	snprintf(e->err, sizeof(e->err), "%s/err.txt", e->dir);
}

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

/* Starts `keyline --home HOME station` as a child that dies with the test,
 * its stdout and stderr in log. Returns its pid. */
static inline pid_t station_spawn(const char *home, const char *log)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(KEYLINE_BIN, KEYLINE_BIN, "--home", home, "station", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Waits until the station pid accepts a connection on sock, or fails the
 * test with its log when it exits first or does not serve within 120 s (a
 * bound against hanging, not a timing). */
static inline void station_wait_serving(pid_t pid, const char *sock, const char *log)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timespec step = { 0, 100 * 1000000L };

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	for (int i = 0; i < 1200; i++) {
		int st, fd;

		if (waitpid(pid, &st, WNOHANG) == pid)
			fail_msg("keyline station exited (status 0x%x) before serving:\n%s", st,
			         slurp(log));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(fd);
			return;
		}
		if (fd >= 0)
			close(fd);
		nanosleep(&step, NULL);
	}
	fail_msg("keyline station did not serve %s:\n%s", sock, slurp(log));
}

/* Sends SIGTERM to the station pid and returns its exit status, or -1 when
 * a signal ended it or it had to be killed after wait_ms (a bound against
 * hanging). */
static inline int station_stop(pid_t pid, int wait_ms)
{
	struct timespec step = { 0, 50 * 1000000L };
	int st;

	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	for (int waited = 0; waited < wait_ms; waited += 50) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		nanosleep(&step, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Fails the test unless the file holds needle. */
static inline void assert_in(const char *path, const char *needle)
{
	char *text = slurp(path);

	if (!strstr(text, needle))
		fail_msg("'%s' not found in %s:\n%s", needle, path, text);
	free(text);
}

/* A demo line left running: `keyline demo --devices N --spare S
 * --keep-running` on e->home (made first if needed), its swtpm state under
 * e->dir/tmp, its output in e->dir/demo.out; env (may be NULL) holds
 * NAME=VALUE strings for it. Returns the demo's pid once it printed READY,
 * or fails the test. demo_line_stop() sends Ctrl-C and returns its exit
 * status. The demo dies with the test (PR_SET_PDEATHSIG). */
static inline pid_t demo_line_start(struct env *e, int devices, int spare, const char *const *env)
{
	char out[PATH_MAX], tmp[PATH_MAX], n[16], sp[16];
	pid_t demo;
	int st;

	snprintf(out, sizeof(out), "%s/demo.out", e->dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", e->dir);
	snprintf(n, sizeof(n), "%d", devices);
	snprintf(sp, sizeof(sp), "%d", spare);
	mkdir(tmp, 0700);
	demo = fork();
	assert_true(demo >= 0);
	if (demo == 0) {
		prctl(PR_SET_PDEATHSIG, SIGINT);
		if (!freopen(out, "w", stdout) || !freopen(out, "a", stderr))
			_exit(126);
		setenv("TMPDIR", tmp, 1);
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execl(KEYLINE_BIN, "keyline", "--home", e->home, "demo", "--devices", n, "--spare",
		      sp, "--keep-running", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1200; i++) {
		char *text = slurp(out);
		bool ready = strstr(text, "READY") != NULL;

		free(text);
		if (ready || waitpid(demo, &st, WNOHANG) == demo)
			break;
		usleep(100 * 1000);
	}
	assert_in(out, "READY");
	return demo;
}

static inline int demo_line_stop(struct env *e, pid_t demo)
{
	char out[PATH_MAX];
	int st = 0;

	snprintf(out, sizeof(out), "%s/demo.out", e->dir);
	kill(demo, SIGINT);
	if (waitpid(demo, &st, 0) != demo)
		return -1;
	if (!WIFEXITED(st))
		fail_msg("the demo ended by signal %d:\n%s", WIFSIGNALED(st) ? WTERMSIG(st) : -1,
		         slurp(out));
	return WEXITSTATUS(st);
}

#endif
