/* The security officer's CLI end to end, on a real SoftHSM token store:
 * `keyline ca init` (ceremony in the HSM), issue from a CSR, revoke, CRL,
 * export, status, audit verify; every result judged by openssl or
 * pkcs11-tool; every bad input refused with a clear message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "floor.h"

#include "cli_test.h"

static int run(struct env *e, const char *const argv[])
{
	return kl_floor_run(e->floor, e->out, NULL, argv);
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_int_equal(kl_floor_new(&e->floor), 0);
	env_paths(e, e->floor);
	if (keyline(e, "ca", "init", "--org", "Test Org", "--country", "DE", "--crl-url",
	            "http://pki.test/issuing.crl", NULL) != 0)
		fail_msg("ca init failed: %s", slurp(e->err));
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	kl_floor_free(e->floor);
	free(e);
	return 0;
}

static void path_in_home(struct env *e, const char *rel, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", e->home, rel);
}

static void test_ceremony_keys_in_hsm(void **state)
{
	struct env *e = *state;
	char conf[PATH_MAX], pin[PATH_MAX], root[PATH_MAX], issuing[PATH_MAX], chain[PATH_MAX];
	char module[] = "/usr/lib/softhsm/libsofthsm2.so";
	char *p;
	struct stat st;

	path_in_home(e, "ca/root.pem", root, sizeof(root));
	path_in_home(e, "ca/issuing.pem", issuing, sizeof(issuing));
	path_in_home(e, "ca/chain.pem", chain, sizeof(chain));
	/* The issuing CA chains to the root under x509_strict. */
	const char *verify[] = {
		"openssl", "verify", "-x509_strict", "-CAfile", root, issuing, NULL
	};
	assert_int_equal(run(e, verify), 0);

	/* The keys are inside the tokens, sensitive and never extractable,
	 * as pkcs11-tool sees them. */
	path_in_home(e, "hsm/softhsm2.conf", conf, sizeof(conf));
	path_in_home(e, "secrets/keyline-ca.pin", pin, sizeof(pin));
	assert_int_equal(stat(pin, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	p = slurp(pin);
	char softhsm_env[PATH_MAX + 16];
	snprintf(softhsm_env, sizeof(softhsm_env), "SOFTHSM2_CONF=%s", conf);
	const char *env[] = { softhsm_env, NULL };
	const char *list[] = { "pkcs11-tool",    "--module", module,    "--token-label",
		               "keyline-ca",     "--login",  "--pin",   p,
		               "--list-objects", "--type",   "privkey", NULL };
	assert_int_equal(kl_floor_run(e->floor, e->out, env, list), 0);
	free(p);
	assert_in(e->out, "issuing-ca");
	assert_in(e->out, "never extractable");
	assert_in(e->out, "sensitive");

	/* status reads the registry. */
	assert_int_equal(keyline(e, "ca", "status", "--json", NULL), 0);
	assert_in(e->out, "\"key\":\"pkcs11:token=keyline-ca;object=issuing-ca;type=private\"");
	assert_in(e->out, "\"issued\":0");
	/* export prints both certificates. */
	assert_int_equal(keyline(e, "ca", "export", NULL), 0);
	p = slurp(e->out);
	assert_non_null(strstr(p, "BEGIN CERTIFICATE"));
	assert_non_null(strstr(strstr(p, "END CERTIFICATE") + 1, "BEGIN CERTIFICATE"));
	free(p);
	/* A second ceremony on the same home is refused. */
	assert_int_equal(keyline(e, "ca", "init", NULL), 1);
	assert_in(e->err, "already holds a CA");
}

static void make_csr(struct env *e, const char *name, const char *subj, char *csr, size_t size)
{
	char key[PATH_MAX];

	snprintf(key, sizeof(key), "%s/%s.key", e->dir, name);
	snprintf(csr, size, "%s/%s.csr", e->dir, name);
	const char *req[] = { "openssl",
		              "req",
		              "-new",
		              "-newkey",
		              "ec",
		              "-pkeyopt",
		              "ec_paramgen_curve:P-256",
		              "-nodes",
		              "-keyout",
		              key,
		              "-subj",
		              subj,
		              "-out",
		              csr,
		              NULL };
	assert_int_equal(kl_floor_run(e->floor, "/dev/null", NULL, req), 0);
}

static void test_issue_revoke_crl(void **state)
{
	struct env *e = *state;
	char csr[PATH_MAX], cert[PATH_MAX], cert2[PATH_MAX], root[PATH_MAX], issuing[PATH_MAX],
	    crl[PATH_MAX], serial[64] = { 0 }, *text;

	path_in_home(e, "ca/root.pem", root, sizeof(root));
	path_in_home(e, "ca/issuing.pem", issuing, sizeof(issuing));
	make_csr(e, "dev1", "/serialNumber=SN-0001/CN=device 1", csr, sizeof(csr));
	snprintf(cert, sizeof(cert), "%s/dev1.pem", e->dir);
	assert_int_equal(
	    keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", "--out", cert, NULL), 0);
	assert_in(e->err, "issued serial ");
	text = slurp(e->err);
	sscanf(strstr(text, "issued serial ") + 14, "%63s", serial);
	free(text);
	const char *verify[] = { "openssl",    "verify", "-x509_strict", "-CAfile", root,
		                 "-untrusted", issuing,  cert,           NULL };
	assert_int_equal(run(e, verify), 0);
	const char *show[] = { "openssl", "x509", "-in", cert, "-noout", "-text", NULL };
	assert_int_equal(run(e, show), 0);
	assert_in(e->out, "serialNumber = SN-0001");
	assert_in(e->out, "http://pki.test/issuing.crl");
	/* ca init's default AIA caIssuers: the issuing CA certificate in DER. */
	assert_in(e->out, "CA Issuers - URI:file://");
	assert_in(e->out, "/ca/issuing.der");
	char der[PATH_MAX];
	path_in_home(e, "ca/issuing.der", der, sizeof(der));
	const char *der_ok[] = { "openssl", "x509", "-inform", "DER", "-in", der, "-noout", NULL };
	assert_int_equal(run(e, der_ok), 0);

	/* A second device stays valid. */
	make_csr(e, "dev2", "/serialNumber=SN-0002", csr, sizeof(csr));
	snprintf(cert2, sizeof(cert2), "%s/dev2.pem", e->dir);
	assert_int_equal(
	    keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", "--out", cert2, NULL),
	    0);

	assert_int_equal(
	    keyline(e, "ca", "revoke", "--serial", serial, "--reason", "keyCompromise", NULL), 0);
	assert_int_equal(keyline(e, "ca", "crl", NULL), 0);
	path_in_home(e, "crl/issuing.crl", crl, sizeof(crl));
	assert_in(e->out, crl);
	const char *crl_verify[] = { "openssl", "crl",     "-inform", "DER",   "-in", crl,
		                     "-noout",  "-verify", "-CAfile", issuing, NULL };
	assert_int_equal(run(e, crl_verify), 0);
	strncat(crl, ".pem", sizeof(crl) - strlen(crl) - 1);
	/* openssl names the reason on stderr: fold it into the captured output. */
	const char *revoked[] = { "sh",         "-c",       "exec \"$0\" \"$@\" 2>&1",
		                  "openssl",    "verify",   "-x509_strict",
		                  "-crl_check", "-CRLfile", crl,
		                  "-CAfile",    root,       "-untrusted",
		                  issuing,      cert,       NULL };
	assert_int_not_equal(run(e, revoked), 0);
	assert_in(e->out, "certificate revoked");
	const char *still_good[] = { "openssl",    "verify", "-x509_strict", "-crl_check",
		                     "-CRLfile",   crl,      "-CAfile",      root,
		                     "-untrusted", issuing,  cert2,          NULL };
	assert_int_equal(run(e, still_good), 0);

	/* Bad input, each with its own clear error and nothing changed. */
	assert_int_equal(
	    keyline(e, "ca", "revoke", "--serial", serial, "--reason", "keyCompromise", NULL), 1);
	assert_in(e->err, "already revoked");
	assert_int_equal(
	    keyline(e, "ca", "revoke", "--serial", "0badc0ffee", "--reason", "superseded", NULL),
	    1);
	assert_in(e->err, "no certificate with serial badc0ffee");
	assert_int_equal(
	    keyline(e, "ca", "revoke", "--serial", serial, "--reason", "boredom", NULL), 1);
	assert_in(e->err, "unknown revocation reason 'boredom'");
	assert_int_equal(
	    keyline(e, "ca", "issue", "--csr", "/nonexistent.csr", "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "/nonexistent.csr");
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "nosuch", NULL), 1);
	assert_in(e->err, "unknown profile 'nosuch'");
	assert_int_equal(keyline(e, "ca", "issue", "--csr", cert, "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "not a PKCS#10 request");
	assert_int_equal(keyline(e, "ca", "issue", "--profile", "ldevid", NULL), 2);
	assert_in(e->err, "issue needs --csr");

	/* A CSR whose signature does not match its key. */
	char bad[PATH_MAX];
	snprintf(bad, sizeof(bad), "%s/tampered.csr", e->dir);
	const char *to_der[] = {
		"openssl", "req", "-in", csr, "-outform", "DER", "-out", bad, NULL
	};
	assert_int_equal(kl_floor_run(e->floor, NULL, NULL, to_der), 0);
	{
		/* Flip a bit inside the signature value (the last bytes). */
		FILE *b = fopen(bad, "r+b");
		int ch;

		assert_non_null(b);
		fseek(b, -5, SEEK_END);
		ch = fgetc(b);
		fseek(b, -5, SEEK_END);
		fputc(ch ^ 1, b);
		fclose(b);
	}
	assert_int_equal(keyline(e, "ca", "issue", "--csr", bad, "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "CSR signature does not verify");

	/* A profile violation (no serialNumber) is refused with nothing signed. */
	make_csr(e, "noserial", "/CN=no serial", csr, sizeof(csr));
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "lint subject.required");
	/* A CSR cannot name the TPM (nothing proves its EK): the TCG profiles
	 * refuse it. */
	make_csr(e, "notpm", "/serialNumber=SN-NOTPM", csr, sizeof(csr));
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "idevid", NULL), 1);
	assert_in(e->err, "lint subjectAltName.hardwareModuleName");
	assert_int_equal(keyline(e, "ca", "status", "--json", NULL), 0);
	assert_in(e->out, "\"issued\":2");
	assert_in(e->out, "\"rejected\":2");
	assert_in(e->out, "\"revoked\":1");

	assert_int_equal(keyline(e, "audit", "verify", NULL), 0);
	assert_in(e->out, "chain intact");

	/* An edited audit entry is found and named; the exit status says so. */
	char db[PATH_MAX], copy[PATH_MAX], sql[PATH_MAX + 64];
	snprintf(db, sizeof(db), "%s/registry.db", e->home);
	snprintf(copy, sizeof(copy), "%s/registry.db.orig", e->dir);
	const char *cp[] = { "cp", db, copy, NULL };
	assert_int_equal(kl_floor_run(e->floor, NULL, NULL, cp), 0);
	snprintf(sql, sizeof(sql), "UPDATE audit SET actor = 'mallory' WHERE seq = 2;");
	const char *edit[] = { "sqlite3", db, sql, NULL };
	assert_int_equal(kl_floor_run(e->floor, NULL, NULL, edit), 0);
	assert_int_equal(keyline(e, "audit", "verify", NULL), 1);
	assert_in(e->out, "AUDIT LOG DOES NOT VERIFY");
	assert_in(e->out, "entry 2");
	assert_int_equal(keyline(e, "audit", "verify", "--json", NULL), 1);
	assert_in(e->out, "\"ok\":false");
	assert_in(e->out, "\"first_bad\":2");
	const char *back[] = { "cp", copy, db, NULL };
	assert_int_equal(kl_floor_run(e->floor, NULL, NULL, back), 0);
	assert_int_equal(keyline(e, "audit", "verify", NULL), 0);
}

static void test_wrong_pin_once(void **state)
{
	struct env *e = *state;
	char pin[PATH_MAX], good[PATH_MAX], csr[PATH_MAX];
	char *saved;
	FILE *f;

	path_in_home(e, "secrets/keyline-ca.pin", pin, sizeof(pin));
	snprintf(good, sizeof(good), "%s/good.pin", e->dir);
	saved = slurp(pin);
	f = fopen(pin, "w");
	fputs("not-the-pin", f);
	fclose(f);
	make_csr(e, "dev3", "/serialNumber=SN-0003", csr, sizeof(csr));
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "PIN incorrect for token 'keyline-ca'");
	/* Reported once: one line, no retries. */
	char *err = slurp(e->err);
	assert_null(strstr(strstr(err, "PIN incorrect") + 1, "PIN incorrect"));
	assert_null(strstr(err, "not-the-pin"));
	free(err);

	/* The token is not locked: the right PIN works at once. */
	f = fopen(pin, "w");
	fputs(saved, f);
	fclose(f);
	free(saved);
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", NULL), 0);
	assert_in(e->out, "BEGIN CERTIFICATE");

	/* A PIN file others can read is refused before the token is touched. */
	chmod(pin, 0644);
	assert_int_equal(keyline(e, "ca", "issue", "--csr", csr, "--profile", "ldevid", NULL), 1);
	assert_in(e->err, "readable by everyone");
	chmod(pin, 0600);
}

static void test_usage_errors(void **state)
{
	struct env *e = *state;

	assert_int_equal(keyline(e, "ca", "frobnicate", NULL), 2);
	assert_in(e->err, "unknown command 'frobnicate'");
	assert_int_equal(keyline(e, "ca", "--help", NULL), 0);
	assert_in(e->out, "usage: keyline");
	assert_int_equal(keyline(e, "ca", "status", "extra", NULL), 2);
	assert_in(e->err, "unexpected argument 'extra'");
	assert_int_equal(keyline(e, "nosuch", NULL), 2);
	assert_in(e->err, "unknown command 'nosuch'");
	const char *no_home[] = { KEYLINE_BIN, "--home", "/nonexistent/kl", "ca", "status", NULL };
	assert_int_equal(kl_floor_run(e->floor, e->out, NULL, no_home), 1);
}

static void write_secret(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, 0600);
}

/* An issuing CA under an enterprise root: CSR out, certificate in, with
 * the officer's own PIN files. */
static void test_external_root(void **state)
{
	struct env *e = *state;
	char home2[PATH_MAX], pin[PATH_MAX], so[PATH_MAX], csr[PATH_MAX], ent_key[PATH_MAX],
	    ent_crt[PATH_MAX], signed_crt[PATH_MAX], ext[PATH_MAX], leaf_csr[PATH_MAX],
	    leaf[PATH_MAX], conf[PATH_MAX];
	char saved_home[PATH_MAX];

	snprintf(saved_home, sizeof(saved_home), "%s", e->home);
	snprintf(home2, sizeof(home2), "%s/home-ext", e->dir);
	snprintf(pin, sizeof(pin), "%s/officer.pin", e->dir);
	snprintf(so, sizeof(so), "%s/officer-so.pin", e->dir);
	write_secret(pin, "user-pin-4711\n");
	write_secret(so, "so-pin-0815\n");
	snprintf(e->home, sizeof(e->home), "%s", home2);
	assert_int_equal(keyline(e, "ca", "init", "--external-root", "--pin-file", pin,
	                         "--so-pin-file", so, NULL),
	                 0);
	assert_in(e->out, "CSR for your enterprise root");
	snprintf(conf, sizeof(conf), "%s/keyline.conf", home2);
	assert_in(conf, pin); /* the home refers to the officer's PIN file */
	/* Before import the CA cannot issue, and says why. */
	assert_int_equal(keyline(e, "ca", "status", NULL), 1);
	assert_in(e->err, "no issuer named 'issuing'");

	/* The enterprise root signs the CSR. */
	snprintf(csr, sizeof(csr), "%s/ca/issuing.csr", home2);
	snprintf(ent_key, sizeof(ent_key), "%s/ent.key", e->dir);
	snprintf(ent_crt, sizeof(ent_crt), "%s/ent.pem", e->dir);
	snprintf(signed_crt, sizeof(signed_crt), "%s/issuing-signed.pem", e->dir);
	snprintf(ext, sizeof(ext), "%s/ext.cnf", e->dir);
	const char *mkroot[] = { "openssl",
		                 "req",
		                 "-x509",
		                 "-newkey",
		                 "ec",
		                 "-pkeyopt",
		                 "ec_paramgen_curve:P-384",
		                 "-nodes",
		                 "-keyout",
		                 ent_key,
		                 "-out",
		                 ent_crt,
		                 "-days",
		                 "3650",
		                 "-subj",
		                 "/O=Enterprise/CN=Enterprise Root",
		                 "-addext",
		                 "basicConstraints=critical,CA:TRUE",
		                 "-addext",
		                 "keyUsage=critical,keyCertSign,cRLSign",
		                 NULL };
	assert_int_equal(run(e, mkroot), 0);
	FILE *f = fopen(ext, "w");
	fputs("basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
	      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
	      f);
	fclose(f);
	const char *sign[] = { "openssl",  "x509",  "-req",     "-in",   csr,
		               "-CA",      ent_crt, "-CAkey",   ent_key, "-CAcreateserial",
		               "-days",    "1825",  "-extfile", ext,     "-out",
		               signed_crt, NULL };
	assert_int_equal(run(e, sign), 0);

	/* A certificate that does not chain to the given root is refused. */
	char other_root[PATH_MAX];
	snprintf(other_root, sizeof(other_root), "%s/ca/root.pem", saved_home);
	assert_int_equal(keyline(e, "ca", "import", signed_crt, "--root", other_root, NULL), 1);
	assert_in(e->err, "does not chain");
	/* The right one is installed, and the CA issues under it. */
	assert_int_equal(keyline(e, "ca", "import", signed_crt, "--root", ent_crt, NULL), 0);
	make_csr(e, "ext1", "/serialNumber=SN-EXT-1", leaf_csr, sizeof(leaf_csr));
	snprintf(leaf, sizeof(leaf), "%s/ext1.pem", e->dir);
	assert_int_equal(keyline(e, "ca", "issue", "--csr", leaf_csr, "--profile", "ldevid",
	                         "--out", leaf, NULL),
	                 0);
	const char *verify[] = { "openssl",    "verify",   "-x509_strict", "-CAfile", ent_crt,
		                 "-untrusted", signed_crt, leaf,           NULL };
	assert_int_equal(run(e, verify), 0);
	assert_int_equal(keyline(e, "audit", "verify", NULL), 0);
	snprintf(e->home, sizeof(e->home), "%s", saved_home);
}

/* The command table: 'keyline --help' lists every command in its group,
 * and a row for a sub-command or an option is chosen over the plain row
 * of the same name. */
static void test_command_table(void **state)
{
	struct env *e = *state;
	static const char *const rows[] = {
		"commands:\n  demo [--devices N]    a complete simulated line on the embedded "
		"default:\n                        SoftHSM CA ceremony,",
		"\n  station               run the station daemon",
		"\n  through the running station:\n  status                the station and its "
		"slots\n",
		"\n  provision --serial S [--slot NAME]   provision the DUT on a slot, with "
		"progress\n",
		"\n  jobs [list|show|abort]               recent jobs and their results\n",
		"\n  events [--slot NAME]  stream step, job, link and CRL events\n",
		"\n  decommission --slot NAME --serial S [--repurpose]\n                        "
		"revoke, "
		"cryptographic erase, signed sanitization record\n",
		"\n  revoke (--serial S | --certificate HEX) [--reason R]   and publish the CRL\n",
		"\n  audit list            audit entries, newest first\n\n  on the home",
		"\n  provision --link TCTI --serial S     drive one DUT from this process\n",
		"\n  ca COMMAND            the CA: init, status, issue, revoke, crl, export, "
		"import\n",
		"\n  audit verify          verify the hash-chained audit log\n",
		"\n  devices list|show     the device registry: states, tenants, EKs, "
		"certificates\n"
		"\noptions:\n",
	};
	char *help;

	assert_int_equal(keyline(e, "--help", NULL), 0);
	help = slurp(e->out);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		if (!strstr(help, rows[i]))
			fail_msg("'%s' not in keyline --help:\n%s", rows[i], help);
	assert_int_equal(keyline(e, "help", NULL), 0);
	assert_in(e->out, help);
	free(help);
	/* No command: the same text on stderr, a usage error. */
	assert_int_equal(keyline(e, NULL), 2);
	assert_in(e->err, "  audit list            audit entries, newest first\n");

	/* audit list and audit verify are two rows of one name. */
	assert_int_equal(keyline(e, "audit", "list", NULL), 0);
	assert_in(e->out, "ca.ceremony.issuing");
	assert_int_equal(keyline(e, "audit", "verify", NULL), 0);
	assert_in(e->out, "chain intact");
	/* provision --link (also as --link=TCTI) runs here; without it the
	 * station is asked, and none runs. */
	assert_int_equal(keyline(e, "provision", "--serial", "SN-1", "--link=x", NULL), 1);
	assert_in(e->err, "trust bundle");
	assert_int_equal(keyline(e, "provision", "--serial", "SN-1", "--linkx", NULL), 2);
	assert_int_equal(keyline(e, "provision", "--serial", "SN-1", NULL), 1);
	assert_in(e->err, "no station is running");
}

/* A command that writes its result to stdout fails when stdout cannot
 * take it, rather than exiting 0 with nothing written. */
static void test_stdout_full(void **state)
{
	struct env *e = *state;
	char csr[PATH_MAX], err[PATH_MAX + 8];

	snprintf(err, sizeof(err), "KL_ERR=%s", e->err);
	const char *env[] = { err, NULL };
	const char *export[] = {
		"sh",        "-c",     "exec \"$0\" \"$@\" >/dev/full 2>\"$KL_ERR\"",
		KEYLINE_BIN, "--home", e->home,
		"ca",        "export", NULL
	};
	assert_int_equal(kl_floor_run(e->floor, NULL, env, export), 1);
	assert_in(e->err, "keyline ca export: writing the CA chain to stdout");

	make_csr(e, "full", "/serialNumber=SN-FULL", csr, sizeof(csr));
	const char *issue[] = {
		"sh",        "-c",        "exec \"$0\" \"$@\" >/dev/full 2>\"$KL_ERR\"",
		KEYLINE_BIN, "--home",    e->home,
		"ca",        "issue",     "--csr",
		csr,         "--profile", "ldevid",
		NULL
	};
	assert_int_equal(kl_floor_run(e->floor, NULL, env, issue), 1);
	assert_in(e->err, "writing stdout");
}

/* ca status --json is JSON whatever the CA's names hold: an organisation
 * with a double quote and a backslash comes back as the same string. */
static void test_status_json_subject(void **state)
{
	struct env *e = *state;
	const char *org = "Say \"hi\" \\ bye";
	const char *subject = "/O=Say \"hi\" \\ bye/CN=Keyline Issuing CA";
	char saved_home[PATH_MAX];
	json_object *o, *v, *certs;
	char *text;

	snprintf(saved_home, sizeof(saved_home), "%s", e->home);
	snprintf(e->home, sizeof(e->home), "%s/home-quote", e->dir);
	if (keyline(e, "ca", "init", "--org", org, NULL) != 0)
		fail_msg("ca init failed: %s", slurp(e->err));
	assert_int_equal(keyline(e, "ca", "status", "--json", NULL), 0);
	text = slurp(e->out);
	o = json_tokener_parse(text);
	if (!o)
		fail_msg("ca status --json is not JSON:\n%s", text);
	free(text);
	assert_true(json_object_object_get_ex(o, "subject", &v));
	assert_string_equal(json_object_get_string(v), subject);
	assert_true(json_object_object_get_ex(o, "home", &v));
	assert_string_equal(json_object_get_string(v), e->home);
	assert_true(json_object_object_get_ex(o, "certificates", &certs));
	assert_true(json_object_object_get_ex(certs, "issued", &v));
	assert_int_equal(json_object_get_int64(v), 0);
	json_object_put(o);
	/* The text form shows the same subject. */
	assert_int_equal(keyline(e, "ca", "status", NULL), 0);
	assert_in(e->out, subject);
	snprintf(e->home, sizeof(e->home), "%s", saved_home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ceremony_keys_in_hsm),
		cmocka_unit_test(test_issue_revoke_crl),
		cmocka_unit_test(test_wrong_pin_once),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_external_root),
		cmocka_unit_test(test_status_json_subject),
		cmocka_unit_test(test_command_table),
		cmocka_unit_test(test_stdout_full),
	};

	return cmocka_run_group_tests_name("cli_ca", tests, setup, teardown);
}
