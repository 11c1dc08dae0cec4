/* The README's main job: `keyline demo` on the embedded default succeeds,
 * says what it did, leaves a home that verifies, and no process behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "floor.h"

#ifndef KEYLINE_BIN
#error "KEYLINE_BIN must be defined by the build"
#endif

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

static void test_demo(void **state)
{
	kl_floor *f;
	char home[PATH_MAX], out[PATH_MAX], root[PATH_MAX], issuing[PATH_MAX], crl[PATH_MAX];
	char *text;
	char tmp[PATH_MAX], tmp_env[PATH_MAX + 8];

	(void)state;
	assert_int_equal(kl_floor_new(&f), 0);
	snprintf(home, sizeof(home), "%s/demo-home", kl_floor_dir(f));
	snprintf(out, sizeof(out), "%s/demo.out", kl_floor_dir(f));
	/* The demo's own floor (its swtpm state) goes under our directory, so
	 * that we can tell its processes from those of tests running beside. */
	snprintf(tmp, sizeof(tmp), "%s/tmp", kl_floor_dir(f));
	snprintf(tmp_env, sizeof(tmp_env), "TMPDIR=%s", tmp);
	assert_int_equal(mkdir(tmp, 0700), 0);
	const char *env[] = { tmp_env, NULL };

	const char *demo[] = { KEYLINE_BIN, "--home", home, "demo", "--devices", "3", NULL };
	assert_int_equal(kl_floor_run(f, out, env, demo), 0);
	text = slurp(out);
	assert_non_null(strstr(text, "Summary: 3 provisioned, 1 refused"));
	assert_non_null(strstr(text, "REFUSED at ek_cert [ek_cert_untrusted]"));
	assert_non_null(strstr(text, "6 certificates verify, 0 do not"));
	assert_non_null(strstr(text, home));
	free(text);

	/* Nothing left running: every swtpm it started is gone, and so is its
	 * floor directory. */
	assert_int_equal(kl_procs_mentioning(tmp, false), 0);
	const char *ls[] = { "sh", "-c", "ls -A \"$0\" | wc -l", tmp, NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, ls), 0);
	text = slurp(out);
	assert_int_equal(atoi(text), 0);
	free(text);

	/* The home it leaves is real: the CA chain and CRL verify with openssl,
	 * and the audit log verifies. */
	snprintf(root, sizeof(root), "%s/ca/root.pem", home);
	snprintf(issuing, sizeof(issuing), "%s/ca/issuing.pem", home);
	snprintf(crl, sizeof(crl), "%s/crl/issuing.crl", home);
	const char *chain[] = {
		"openssl", "verify", "-x509_strict", "-CAfile", root, issuing, NULL
	};
	assert_int_equal(kl_floor_run(f, NULL, NULL, chain), 0);
	const char *crlv[] = { "openssl", "crl",     "-inform", "DER",   "-in", crl,
		               "-noout",  "-verify", "-CAfile", issuing, NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, crlv), 0);
	const char *audit[] = { KEYLINE_BIN, "--home", home, "audit", "verify", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, audit), 0);
	/* The registry says the same as the demo. */
	const char *list[] = { KEYLINE_BIN, "--home",      home,     "devices", "list",
		               "--state",   "provisioned", "--json", NULL };
	assert_int_equal(kl_floor_run(f, out, NULL, list), 0);
	text = slurp(out);
	assert_non_null(strstr(text, "DEMO-0001"));
	assert_non_null(strstr(text, "DEMO-0003"));
	assert_null(strstr(text, "DEMO-0004")); /* the forged one */
	free(text);

	/* A bad option is a usage error, not a half-built line. */
	const char *bad[] = { KEYLINE_BIN, "--home", home, "demo", "--devices", "0", NULL };
	assert_int_equal(kl_floor_run(f, NULL, NULL, bad), 2);
	kl_floor_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_demo),
	};

	return cmocka_run_group_tests_name("demo", tests, NULL, NULL);
}
