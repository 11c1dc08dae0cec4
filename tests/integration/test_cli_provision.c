/* `keyline provision` end to end on the built binary: a home from
 * `keyline ca init`, a trust bundle, serials pre-registered with the CLI,
 * real swtpm DUTs; exit codes, the final line, --json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "floor.h"
#include "kl_error.h"

#ifndef KEYLINE_BIN
#error "KEYLINE_BIN must be defined by the build"
#endif
#ifndef KEYLINE_AGENT_BIN
#error "KEYLINE_AGENT_BIN must be defined by the build"
#endif

static struct {
	kl_floor *f;
	kl_vendor *acme, *rogue;
	kl_dut **good, **forged;
	char home[PATH_MAX], out[PATH_MAX];
} g;

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* keyline --home HOME args... with stdout and stderr both in g.out */
static int kl(const char *first, ...)
{
	const char *argv[24] = { "sh",   "-c", "exec \"$0\" \"$@\" 2>&1", KEYLINE_BIN, "--home",
		                 g.home, first };
	va_list ap;
	int n = 7;

	va_start(ap, first);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 23;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return kl_floor_run(g.f, g.out, NULL, argv);
}

static void assert_out(const char *needle)
{
	char *t = slurp(g.out);

	if (!strstr(t, needle))
		fail_msg("'%s' not in:\n%s", needle, t);
	free(t);
}

static int setup(void **state)
{
	char p[PATH_MAX], csv[PATH_MAX];
	FILE *f;

	(void)state;
	if (kl_floor_new(&g.f) < 0 || kl_floor_vendor(g.f, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_vendor(g.f, "Rogue TPM", &g.rogue) < 0 ||
	    kl_floor_manufacture(g.f, g.acme, "acme", 3, &g.good) < 0 ||
	    kl_floor_manufacture(g.f, g.rogue, "rogue", 1, &g.forged) < 0 ||
	    kl_dut_start(g.f, g.good[0]) < 0 || kl_dut_start(g.f, g.good[1]) < 0 ||
	    kl_dut_start(g.f, g.good[2]) < 0 || kl_dut_start(g.f, g.forged[0]) < 0)
		return -1;
	snprintf(g.home, sizeof(g.home), "%s/home", kl_floor_dir(g.f));
	snprintf(g.out, sizeof(g.out), "%s/out.txt", kl_floor_dir(g.f));
	if (kl("ca", "init", NULL) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/trust", g.home);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/trust/acme.pem", g.home);
	const char *cp1[] = { "cp", g.acme->root_pem, p, NULL };
	snprintf(csv, sizeof(csv), "%s/trust/acme-issuing.pem", g.home);
	const char *cp2[] = { "cp", g.acme->intermediate_pem, csv, NULL };
	if (kl_floor_run(g.f, NULL, NULL, cp1) != 0 || kl_floor_run(g.f, NULL, NULL, cp2) != 0)
		return -1;
	snprintf(csv, sizeof(csv), "%s/serials.csv", kl_floor_dir(g.f));
	f = fopen(csv, "w");
	fputs("serial\nSN-A\nSN-B\nSN-C\n", f);
	fclose(f);
	return kl("preregister", csv, "--tenant", "acme", NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	kl_floor_free(g.f);
	return 0;
}

static void test_provision_cli(void **state)
{
	(void)state;
	assert_int_equal(
	    kl("provision", "--link", g.good[0]->tcti, "--serial", "SN-A", "--ek", "p384", NULL),
	    0);
	assert_out("[13/13] commit");
	assert_out("PROVISIONED SN-A: IDevID ");
	/* Again: recognised, nothing issued. */
	assert_int_equal(
	    kl("provision", "--link", g.good[0]->tcti, "--serial", "SN-A", "--ek", "p384", NULL),
	    0);
	assert_out("ALREADY PROVISIONED SN-A");
	/* The registry has it, with both certificates. */
	assert_int_equal(kl("devices", "show", "SN-A", "--json", NULL), 0);
	assert_out("\"provisioned\"");
	assert_out("BEGIN CERTIFICATE");
}

static void test_refusals_cli(void **state)
{
	(void)state;
	/* The forged DUT, as JSON for a script. */
	assert_int_equal(
	    kl("provision", "--link", g.forged[0]->tcti, "--serial", "SN-B", "--json", NULL, NULL),
	    1);
	assert_out("\"ok\":false");
	assert_out("\"reason\":\"ek_cert_untrusted\"");
	assert_out("\"step\":\"ek_cert\"");
	/* Not pre-registered. */
	assert_int_equal(
	    kl("provision", "--link", g.good[0]->tcti, "--serial", "SN-Z", NULL, NULL, NULL, NULL),
	    1);
	assert_out("REFUSED SN-Z at gates [not_preregistered]");
	/* A line that builds a work order the tenant does not have. */
	assert_int_equal(kl("provision", "--link", g.good[0]->tcti, "--serial", "SN-B",
	                    "--work-order", "WO-9", "--json", NULL),
	                 1);
	assert_out("\"reason\":\"unknown_work_order\"");
	assert_out("\"step\":\"gates\"");
	/* Usage errors. */
	/* Without --link the station's slots do the work: none runs here. */
	assert_int_equal(kl("provision", "--serial", "SN-B", NULL), 1);
	assert_out("no station is running");
	assert_int_equal(kl("provision", "--link", "x", NULL), 2);
	assert_out("--link and --serial are required");
	assert_int_equal(kl("provision", "--link", "x", "--serial", "SN-B", "--ek", "dsa", NULL),
	                 2);
	assert_out("--ek must be rsa2048, p256 or p384");
	assert_int_equal(
	    kl("provision", "--link", "x", "--serial", "SN-B", "--tpm-timeout-ms", "5", NULL), 2);
	assert_out("--tpm-timeout-ms '5' is not a number of milliseconds from 100 to 600000");
	assert_int_equal(
	    kl("provision", "--link", "x", "--serial", "SN-B", "--tpm-timeout-ms", "1s", NULL), 2);
	assert_out("--tpm-timeout-ms '1s'");
	/* A link that leads nowhere is a clear failure, not a crash. */
	assert_int_equal(kl("provision", "--link", "swtpm:host=127.0.0.1,port=1", "--serial",
	                    "SN-B", NULL, NULL),
	                 1);
	assert_out("REFUSED SN-B at discover [link_failed]");
	assert_int_equal(kl("audit", "verify", NULL), 0);
}

/* A free port on 127.0.0.1 (bound and released: the listener takes it). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* keyline-agent for DUT d, retrying until the station listens; its stdout
 * in out. */
static pid_t agent(int port, kl_dut *d, const char *serial, const char *out)
{
	char station[32];
	pid_t pid;

	snprintf(station, sizeof(station), "127.0.0.1:%d", port);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		execl(KEYLINE_AGENT_BIN, KEYLINE_AGENT_BIN, "--station", station, "--tcti", d->tcti,
		      "--serial", serial, "--retry", "20", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int agent_exit(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* keyline provision --agent-listen: one keyline-agent over TCP. */
static void test_provision_agent_cli(void **state)
{
	char addr[32], aout[PATH_MAX], *t;
	int port;
	pid_t pid;

	(void)state;
	snprintf(aout, sizeof(aout), "%s/agent.out", kl_floor_dir(g.f));
	/* The operator scanned SN-B, the DUT says SN-C: refused, nothing done. */
	port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pid = agent(port, g.good[2], "SN-C", aout);
	assert_int_equal(kl("provision", "--agent-listen", addr, "--serial", "SN-B",
	                    "--accept-timeout-s", "30", NULL),
	                 1);
	assert_out("REFUSED SN-B at hello [serial_mismatch]");
	assert_int_equal(agent_exit(pid), 1);
	t = slurp(aout);
	assert_non_null(strstr(t, "FAIL serial=SN-C reason=serial_mismatch"));
	free(t);

	/* The scan matches: provisioned through the agent, PASS with the
	 * fingerprint the --json result names. */
	port = free_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	pid = agent(port, g.good[2], "SN-C", aout);
	assert_int_equal(
	    kl("provision", "--agent-listen", addr, "--serial", "SN-C", "--json", NULL), 0);
	assert_out("\"ok\":true");
	assert_out("\"serial\":\"SN-C\"");
	assert_int_equal(agent_exit(pid), 0);
	t = slurp(aout);
	assert_non_null(strstr(t, "PASS serial=SN-C fingerprint="));
	char fp[80];
	snprintf(fp, sizeof(fp), "\"idevid_sha256\":\"%.64s\"", strstr(t, "fingerprint=") + 12);
	free(t);
	assert_out(fp);
	assert_int_equal(kl("devices", "show", "SN-C", "--json", NULL), 0);
	assert_out("\"provisioned\"");

	/* No agent: a clear failure within the accept timeout. */
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
	assert_int_equal(kl("provision", "--agent-listen", addr, "--accept-timeout-s", "1", NULL),
	                 1);
	assert_out("no agent connected");
	/* Every interface only when asked for; usage errors. */
	assert_int_equal(kl("provision", "--agent-listen", "0.0.0.0:0", NULL), 1);
	assert_out("every interface");
	assert_int_equal(kl("provision", "--agent-listen", addr, "--link", "x", NULL), 2);
	assert_out("--agent-listen and --link exclude each other");
	assert_int_equal(kl("provision", "--agent-listen", addr, "--accept-timeout-s", "0", NULL),
	                 2);
	assert_int_equal(kl("provision", "--agent-listen", "x", "--help", NULL), 0);
	assert_out("--agent-listen ADDR:PORT");
}

/* A tenant with its own IDevID profile: [profiles] acme.idevid = NAME. */
static void test_profile_per_tenant(void **state)
{
	char src[PATH_MAX], dst[PATH_MAX], conf[PATH_MAX];
	FILE *f;

	(void)state;
	snprintf(src, sizeof(src), "%s/profiles/idevid.json", g.home);
	snprintf(dst, sizeof(dst), "%s/profiles/idevid-acme.json", g.home);
	const char *sed[] = {
		"sh",
		"-c",
		"sed -e 's/\"name\": \"idevid\"/\"name\": \"idevid-acme\"/' "
		"-e 's/\"not_after\": \"99991231235959Z\"/\"days\": 3650/' \"$0\" > \"$1\"",
		src,
		dst,
		NULL
	};
	assert_int_equal(kl_floor_run(g.f, NULL, NULL, sed), 0);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", g.home);
	f = fopen(conf, "a");
	fputs("\n[profiles]\nacme.idevid = idevid-acme\n", f);
	fclose(f);
	assert_int_equal(kl("provision", "--link", g.good[1]->tcti, "--serial", "SN-B", NULL), 0);
	assert_int_equal(kl("devices", "show", "SN-B", "--json", NULL), 0);
	assert_out("idevid-acme");
	assert_out("\"iak\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_provision_cli),
		cmocka_unit_test(test_refusals_cli),
		cmocka_unit_test(test_provision_agent_cli),
		cmocka_unit_test(test_profile_per_tenant),
	};

	return cmocka_run_group_tests_name("cli_provision", tests, setup, teardown);
}
