/* keyline-ui-demo-line: the demo line behind `keyline-ui --demo`.
 *
 * Builds what `keyline demo` builds, but leaves the line running for the UI
 * instead of provisioning it: the CA key ceremony (`keyline --home H ca
 * init`, once per home), a simulated TPM vendor the station trusts and one
 * it does not, N swtpm DUTs plus one forged DUT powered on, [slots] in
 * keyline.conf, the station daemon (`keyline --home H station`) and N + 1
 * serials pre-registered through the socket API. It talks on stdout, one
 * line each:
 *
 *   STEP <what it is doing, for people>
 *   READY <socket path> <serial> <serial> ...
 *   ERROR <why>
 *
 * and keeps everything running until stdin closes or it gets SIGTERM/SIGINT
 * (it also dies with its parent), then stops the station and the DUTs and
 * removes the floor. The home stays, like keyline demo's. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "client.h"
#include "floor.h"
#include "kl_error.h"

#define DEMO_MAX 32

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void say(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(const char *kind, const char *fmt, ...)
{
	va_list ap;

	printf("%s ", kind);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "re"), *out;
	char buf[8192];
	size_t n;

	if (!in)
		return kl_error_set(KL_E_IO, "%s: %s", from, strerror(errno));
	out = fopen(to, "we");
	if (!out) {
		fclose(in);
		return kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno));
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	return fclose(out) == 0 ? 0 : kl_error_set(KL_E_IO, "%s: %s", to, strerror(errno));
}

/* keyline.conf with this run's [slots]: an earlier [slots] is replaced. */
static int write_slots(const char *conf, kl_dut **duts, long n, kl_dut *forged)
{
	FILE *f = fopen(conf, "re"), *out;
	char line[1024], *text = NULL;
	size_t len = 0;
	int skip = 0;

	if (!f)
		return kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
	out = open_memstream(&text, &len);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '[')
			skip = strncmp(line, "[slots]", 7) == 0;
		if (!skip)
			fputs(line, out);
	}
	fclose(f);
	fprintf(out, "[slots]\n");
	for (long i = 0; i <= n; i++)
		fprintf(out, "slot-%02ld = %s\n", i + 1, i < n ? duts[i]->tcti : forged->tcti);
	fclose(out);
	f = fopen(conf, "we");
	if (!f) {
		free(text);
		return kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
	}
	fwrite(text, 1, len, f);
	free(text);
	return fclose(f) == 0 ? 0 : kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
}

/* Runs keyline with args, its output into HOME/demo-line.log; its status. */
static int run_keyline(const char *keyline, const char *home, char *const args[])
{
	char log[PATH_MAX], *argv[16];
	int n = 0, st;
	pid_t pid;

	snprintf(log, sizeof(log), "%s/demo-line.log", home);
	argv[n++] = (char *)"keyline";
	argv[n++] = (char *)"--home";
	argv[n++] = (char *)home;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
			_exit(127);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execv(keyline, argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t start_station(const char *keyline, const char *home)
{
	char log[PATH_MAX];
	pid_t parent = getpid(), pid;

	snprintf(log, sizeof(log), "%s/station.log", home);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		if (!freopen(log, "a", stderr) || !freopen("/dev/null", "w", stdout))
			_exit(127);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		execl(keyline, "keyline", "--home", home, "station", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int preregister(kl_client *c, char serials[][32], long n)
{
	json_object *p = json_object_new_object(), *res = NULL, *items, *v;
	long long base = 1;
	int r;

	json_object_object_add(p, "search", json_object_new_string("DEMO-"));
	json_object_object_add(p, "limit", json_object_new_int(1));
	if ((r = kl_client_call(c, "devices.list", p, &res)) < 0)
		return r;
	if (json_object_object_get_ex(res, "total", &v))
		base = json_object_get_int64(v) + 1;
	json_object_put(res);
	p = json_object_new_object();
	items = json_object_new_array();
	for (long i = 0; i <= n; i++) {
		snprintf(serials[i], 32, "DEMO-%04lld", base + i);
		json_object_array_add(items, json_object_new_string(serials[i]));
	}
	json_object_object_add(p, "tenant", json_object_new_string("demo"));
	json_object_object_add(p, "work_order", json_object_new_string("demo-line"));
	json_object_object_add(p, "items", items);
	r = kl_client_call(c, "devices.preregister", p, &res);
	json_object_put(res);
	return r;
}

static const char usage[] =
    "usage: keyline-ui-demo-line --home DIR --keyline PATH [--devices N]\n"
    "Runs a demo line (CA, swtpm DUTs, station) for keyline-ui --demo until stdin\n"
    "closes or SIGTERM; see ui/demo-line.c.\n";

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "keyline", required_argument, NULL, 'k' },
		{ "devices", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *home = NULL, *keyline = NULL;
	char conf[PATH_MAX], p[PATH_MAX], sock[PATH_MAX];
	static char serials[DEMO_MAX + 1][32];
	kl_floor *floor = NULL;
	kl_vendor *acme, *rogue;
	kl_dut **duts = NULL, **forged = NULL;
	kl_client *client = NULL;
	pid_t station = 0;
	long n = 4;
	int c, rc = 1;
	struct sigaction sa = { .sa_handler = on_signal };

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			home = optarg;
			break;
		case 'k':
			keyline = optarg;
			break;
		case 'n':
			n = strtol(optarg, NULL, 10);
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (!home || !keyline || n < 1 || n > DEMO_MAX) {
		fputs(usage, stderr);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (!getenv("KEYLINE_FIXTURES") && access(kl_fixtures_dir(), R_OK) != 0)
		setenv("KEYLINE_FIXTURES", KL_INSTALL_FIXTURES, 1);
	if (mkdir(home, 0700) < 0 && errno != EEXIST) {
		say("ERROR", "cannot make the home %s: %s", home, strerror(errno));
		return 1;
	}
	snprintf(conf, sizeof(conf), "%s/keyline.conf", home);
	if (access(conf, F_OK) != 0) {
		char *args[] = { (char *)"ca", (char *)"init", (char *)"--org",
			         (char *)"Keyline Demo", NULL };

		say("STEP", "CA key ceremony in SoftHSM (keyline ca init)");
		if (run_keyline(keyline, home, args) != 0) {
			say("ERROR", "keyline ca init failed: see %s/demo-line.log", home);
			return 1;
		}
	}
	say("STEP", "A simulated TPM vendor manufactures %ld DUTs, and a rogue one 1 forged", n);
	if (kl_floor_new(&floor) < 0 || kl_floor_vendor(floor, "Acme TPM", &acme) < 0 ||
	    kl_floor_vendor(floor, "Rogue TPM", &rogue) < 0) {
		say("ERROR", "the simulated floor: %s", kl_error_detail());
		goto out;
	}
	snprintf(p, sizeof(p), "%s/trust", home);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/trust/acme-tpm-root.pem", home);
	if (copy_file(acme->root_pem, p) < 0) {
		say("ERROR", "trust bundle: %s", kl_error_detail());
		goto out;
	}
	snprintf(p, sizeof(p), "%s/trust/acme-tpm-issuing.pem", home);
	if (copy_file(acme->intermediate_pem, p) < 0) {
		say("ERROR", "trust bundle: %s", kl_error_detail());
		goto out;
	}
	if (kl_floor_manufacture(floor, acme, "acme", (size_t)n, &duts) < 0 ||
	    kl_floor_manufacture(floor, rogue, "forged", 1, &forged) < 0) {
		say("ERROR", "manufacturing: %s", kl_error_detail());
		goto out;
	}
	say("STEP", "Powering on %ld DUTs (swtpm)", n + 1);
	for (long i = 0; i <= n; i++)
		if (kl_dut_start(floor, i < n ? duts[i] : forged[0]) < 0) {
			say("ERROR", "power on: %s", kl_error_detail());
			goto out;
		}
	if (write_slots(conf, duts, n, forged[0]) < 0) {
		say("ERROR", "keyline.conf: %s", kl_error_detail());
		goto out;
	}
	say("STEP", "Starting the station (keyline station), %ld slots", n + 1);
	station = start_station(keyline, home);
	kl_client_socket_path(home, sock, sizeof(sock));
	for (int i = 0; i < 300 && !stop; i++) {
		int st;

		if (kl_client_connect(sock, &client) == 0)
			break;
		if (waitpid(station, &st, WNOHANG) == station) {
			station = 0;
			break;
		}
		usleep(100 * 1000);
	}
	if (!client) {
		say("ERROR", "the station did not start: see %s/station.log", home);
		goto out;
	}
	if (preregister(client, serials, n) < 0) {
		say("ERROR", "pre-registration: %s", kl_error_detail());
		goto out;
	}
	kl_client_free(client);
	client = NULL;
	printf("READY %s", sock);
	for (long i = 0; i <= n; i++)
		printf(" %s", serials[i]);
	printf("\n");
	fflush(stdout);
	rc = 0;
	/* Until told to stop: stdin closing means the UI went away. */
	while (!stop) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		char buf[256];

		if (poll(&pfd, 1, 1000) > 0 && read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
			break;
		if (station > 0 && waitpid(station, NULL, WNOHANG) == station) {
			station = 0;
			say("ERROR", "the station stopped: see %s/station.log", home);
			rc = 1;
			break;
		}
	}
out:
	kl_client_free(client);
	if (station > 0) {
		kill(station, SIGTERM);
		while (waitpid(station, NULL, 0) < 0 && errno == EINTR)
			;
	}
	kl_floor_free(floor);
	return rc;
}
