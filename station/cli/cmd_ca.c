/* keyline ca: the security officer's commands. The key ceremony (init,
 * import) is in cmd_ca_ceremony.c; status, issue, revoke, crl and export
 * are here. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "cli.h"
#include "cli_internal.h"
#include "home.h"
#include "kl_error.h"
#include "kl_file.h"
#include "kl_hex.h"

static const char ca_usage[] =
    "usage: keyline [--home DIR] ca COMMAND [OPTIONS]\n"
    "\n"
    "The security officer's CA commands. The CA's keys live in an HSM (PKCS#11);\n"
    "the embedded default is a SoftHSM2 token store inside the home.\n"
    "\n"
    "commands:\n"
    "  init [OPTIONS]            key ceremony: root and issuing CA keys in the HSM\n"
    "      --org NAME            organisation in the CA names (default: Keyline)\n"
    "      --country CC          country in the CA names (default: none)\n"
    "      --crl-url URL         CRL distribution point put in certificates\n"
    "                            (default: file://HOME/crl/issuing.crl)\n"
    "      --cps-url URL         certification practice statement named by the device\n"
    "                            certificates' policies (default: file://HOME/ca/cps.txt)\n"
    "      --ca-issuers-url URL  where relying parties fetch the issuing CA certificate\n"
    "                            (AIA caIssuers; default: file://HOME/ca/issuing.der)\n"
    "      --external-root       make only the issuing CA key and a CSR (HOME/ca/issuing.csr)\n"
    "                            for an enterprise root; then run 'ca import'\n"
    "      --pin-file FILE       issuing token user PIN (default: generated into HOME/secrets)\n"
    "      --so-pin-file FILE    token SO PIN (default: generated into HOME/secrets)\n"
    "  import CERT --root ROOT   install the issuing CA certificate signed by an external root\n"
    "  status [--json]           keys, certificates, expiry, counts\n"
    "  issue --csr FILE --profile NAME [--out FILE]\n"
    "                            issue from a PKCS#10 request; PEM to stdout or FILE\n"
    "  revoke --serial HEX --reason NAME\n"
    "                            RFC 5280 reasons: unspecified, keyCompromise, cACompromise,\n"
    "                            affiliationChanged, superseded, cessationOfOperation,\n"
    "                            certificateHold, privilegeWithdrawn, aACompromise\n"
    "  crl [--days N]            build, sign and publish a full CRL (nextUpdate N days,\n"
    "                            default from the configuration, else 7); prints its path\n"
    "  export                    the CA chain (issuing, root) as PEM on stdout\n";

static int fail(const char *what)
{
	fprintf(stderr, "keyline ca %s: %s\n", what, kl_error_detail());
	return 1;
}

/* What 'keyline ca COMMAND' was given. */
struct ca_args {
	const char *csr, *profile, *out, *serial, *reason, *root;
	const char *cert; /* the one argument after the options, for import */
	long days;
	bool json;
};

static void print_time(FILE *out, const char *label, const ASN1_TIME *t)
{
	BIO *b = BIO_new_fp(out, BIO_NOCLOSE);

	fprintf(out, "%s", label);
	ASN1_TIME_print(b, t);
	fprintf(out, "\n");
	BIO_free(b);
}

/* ca status --json: one object on a line, built by json-c (a subject may
 * hold any character). */
static void print_status_json(const kl_home *home, const kl_issuer_row *row, const char *subject,
                              const char *fp, int days, const int64_t counts[4], int64_t revoked,
                              const char *crl_path)
{
	json_object *o = json_object_new_object(), *certs = json_object_new_object();

	json_object_object_add(o, "home", json_object_new_string(home->dir));
	json_object_object_add(o, "issuer", json_object_new_string(row->name));
	json_object_object_add(o, "key", json_object_new_string(row->key_uri));
	json_object_object_add(o, "subject", json_object_new_string(subject));
	json_object_object_add(o, "sha256", json_object_new_string(fp));
	json_object_object_add(o, "days_left", json_object_new_int(days));
	json_object_object_add(certs, "issued", json_object_new_int64(counts[0]));
	json_object_object_add(certs, "pending", json_object_new_int64(counts[1]));
	json_object_object_add(certs, "rejected", json_object_new_int64(counts[2]));
	json_object_object_add(certs, "abandoned", json_object_new_int64(counts[3]));
	json_object_object_add(certs, "revoked", json_object_new_int64(revoked));
	json_object_object_add(o, "certificates", certs);
	json_object_object_add(o, "crl_number", json_object_new_int64(row->crl_number));
	json_object_object_add(o, "crl_path", json_object_new_string(crl_path));
	kl_cli_print_json(o, JSON_C_TO_STRING_PLAIN);
	json_object_put(o);
}

static int ca_status(kl_home *home, const struct ca_args *a)
{
	static const char *const states[] = { "issued", "pending", "rejected", "abandoned" };
	kl_store *store;
	kl_issuer_row row;
	X509 *x;
	const unsigned char *q;
	int64_t counts[4] = { 0 }, revoked = 0;
	char subject[256], fp[65], p[PATH_MAX];
	int days = 0, secs = 0, r = 0;

	if (kl_home_store(home, &store) < 0)
		return fail("status");
	if (kl_store_issuer_get(store, kl_config_get(home->conf, "ca.issuer", "issuing"), &row) < 0)
		return fail("status");
	q = row.cert_der;
	x = d2i_X509(NULL, &q, (long)row.cert_len);
	if (!x) {
		kl_issuer_row_clear(&row);
		kl_error_set_ssl(KL_E_CRYPTO, "stored issuing CA certificate");
		return fail("status");
	}
	for (int i = 0; i < 4 && r == 0; i++)
		r = kl_store_cert_count(store, row.id, states[i], &counts[i]);
	if (r == 0)
		r = kl_store_revoked_count(store, row.id, &revoked);
	if (r == 0)
		r = kl_x509_fingerprint(x, fp);
	if (r == 0 && !ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
		r = kl_error_set_ssl(KL_E_CRYPTO, "issuing CA notAfter");
	if (r < 0) {
		X509_free(x);
		kl_issuer_row_clear(&row);
		return fail("status");
	}
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	kl_home_path(home, "crl/issuing.crl", p, sizeof(p));
	if (a->json) {
		print_status_json(home, &row, subject, fp, days, counts, revoked, p);
	} else {
		printf("home         %s\n", home->dir);
		printf("issuing CA   %s\n", subject);
		printf("key          %s\n", row.key_uri);
		printf("SHA-256      %s\n", fp);
		print_time(stdout, "expires      ", X509_get0_notAfter(x));
		printf("             (%d days left)%s\n", days,
		       days < 90 ? "  WARNING: renew the issuing CA soon" : "");
		printf("certificates %lld issued, %lld revoked, %lld rejected by lint, "
		       "%lld abandoned, %lld pending\n",
		       (long long)counts[0], (long long)revoked, (long long)counts[2],
		       (long long)counts[3], (long long)counts[1]);
		printf("last CRL     number %lld%s%s\n", (long long)row.crl_number,
		       row.crl_number ? ", " : "", row.crl_number ? p : " (none published yet)");
	}
	X509_free(x);
	kl_issuer_row_clear(&row);
	return 0;
}

static int ca_issue(kl_home *home, const struct ca_args *a)
{
	const char *csr_path = a->csr, *profile = a->profile, *out = a->out;
	X509_REQ *csr = NULL;
	X509 *x = NULL;
	kl_ca *ca;
	char serial[48], *pem = NULL;
	size_t len = 0;
	int r;

	csr = kl_cli_csr_read(csr_path);
	if (!csr)
		return fail("issue");
	r = kl_home_ca(home, kl_home_actor(), &ca);
	if (r == 0)
		r = kl_ca_issue_csr(ca, csr, profile, kl_home_actor(), &x, serial);
	X509_REQ_free(csr);
	if (r < 0)
		return fail("issue");
	r = kl_cli_pem_string(x, NULL, &pem, &len);
	X509_free(x);
	if (r == 0 && out)
		r = kl_write_file(out, pem, len, 0644);
	else if (r == 0 && (fwrite(pem, 1, len, stdout) != len || fflush(stdout) != 0))
		r = kl_error_set(KL_E_IO, "certificate %s: writing stdout: %s", serial,
		                 strerror(errno));
	free(pem);
	if (r < 0)
		return fail("issue");
	fprintf(stderr, "issued serial %s (profile %s)\n", serial, profile);
	return 0;
}

static int ca_revoke(kl_home *home, const struct ca_args *a)
{
	const char *serial = a->serial, *reason_name = a->reason;
	int reason = kl_crl_reason_from_name(reason_name);
	kl_ca *ca;

	if (reason < 0)
		return fail("revoke");
	if (kl_home_ca(home, kl_home_actor(), &ca) < 0 ||
	    kl_ca_revoke(ca, serial, reason, kl_home_actor()) < 0)
		return fail("revoke");
	printf("revoked %s (%s); publish with 'keyline ca crl'\n", serial, reason_name);
	return 0;
}

/* Builds, signs and writes HOME/crl/issuing.crl (DER) and .pem. */
static int ca_crl(kl_home *home, const struct ca_args *a)
{
	long days = a->days;
	char path[PATH_MAX];

	if (days <= 0 && kl_config_int(home->conf, "ca.crl_days", 7, 1, 366, &days) < 0)
		return fail("crl");
	if (kl_home_publish_crl(home, days, kl_home_actor(), path, sizeof(path)) < 0)
		return fail("crl");
	printf("%s\n", path);
	return 0;
}

static int ca_export(kl_home *home, const struct ca_args *a)
{
	char p[PATH_MAX];
	X509 *issuing, *root;
	int r = 0;

	(void)a;

	kl_home_path(home, "ca/issuing.pem", p, sizeof(p));
	issuing = kl_cli_cert_read(p);
	kl_home_path(home, "ca/root.pem", p, sizeof(p));
	root = issuing ? kl_cli_cert_read(p) : NULL;
	if (!issuing || !root)
		r = -KL_E_NOTFOUND; /* the error is set */
	else if (!PEM_write_X509(stdout, issuing) || !PEM_write_X509(stdout, root) ||
	         fflush(stdout) != 0)
		r = kl_error_set_ssl(KL_E_IO, "writing the CA chain to stdout");
	X509_free(issuing);
	X509_free(root);
	return r < 0 ? fail("export") : 0;
}

static int ca_import(kl_home *home, const struct ca_args *a)
{
	return kl_cli_ca_import(home, a->cert, a->root);
}

enum {
	NEED_CSR = 1u << 0,
	NEED_PROFILE = 1u << 1,
	NEED_SERIAL = 1u << 2,
	NEED_REASON = 1u << 3,
	NEED_CERT = 1u << 4,
	NEED_ROOT = 1u << 5,
};

/* The ca commands on an existing home ('ca init' makes the home and is
 * handled before these). needs: the arguments the command cannot do
 * without; missing one is a usage error saying needs_text. */
static const struct ca_command {
	const char *name;
	unsigned needs;
	const char *needs_text;
	int (*run)(kl_home *home, const struct ca_args *a);
} ca_commands[] = {
	{ "status", 0, NULL, ca_status },
	{ "issue", NEED_CSR | NEED_PROFILE, "issue needs --csr FILE and --profile NAME", ca_issue },
	{ "revoke", NEED_SERIAL | NEED_REASON, "revoke needs --serial HEX and --reason NAME",
	  ca_revoke },
	{ "crl", 0, NULL, ca_crl },
	{ "export", 0, NULL, ca_export },
	{ "import", NEED_CERT | NEED_ROOT, "import needs CERT and --root ROOT", ca_import },
};

static bool has_needs(const struct ca_command *c, const struct ca_args *a)
{
	return (!(c->needs & NEED_CSR) || a->csr) && (!(c->needs & NEED_PROFILE) || a->profile) &&
	       (!(c->needs & NEED_SERIAL) || a->serial) &&
	       (!(c->needs & NEED_REASON) || a->reason) && (!(c->needs & NEED_CERT) || a->cert) &&
	       (!(c->needs & NEED_ROOT) || a->root);
}

int kl_cmd_ca(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "csr", required_argument, NULL, 'c' },
		{ "profile", required_argument, NULL, 'p' },
		{ "out", required_argument, NULL, 'o' },
		{ "serial", required_argument, NULL, 's' },
		{ "reason", required_argument, NULL, 'r' },
		{ "days", required_argument, NULL, 'd' },
		{ "org", required_argument, NULL, 'O' },
		{ "country", required_argument, NULL, 'C' },
		{ "crl-url", required_argument, NULL, 'u' },
		{ "cps-url", required_argument, NULL, 'W' },
		{ "ca-issuers-url", required_argument, NULL, 'I' },
		{ "external-root", no_argument, NULL, 'x' },
		{ "pin-file", required_argument, NULL, 'P' },
		{ "so-pin-file", required_argument, NULL, 'S' },
		{ "root", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	const struct ca_command *row = NULL;
	struct kl_cli_ca_init_opts io = { .org = "Keyline" };
	struct ca_args a = { 0 };
	kl_home *home = NULL;
	const char *cmd;
	int c, rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(ca_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	/* optind = 0 makes glibc start afresh: main() parsed in "+" (stop at
	 * the first non-option) mode, which would otherwise stick. */
	argc--;
	argv++;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(ca_usage, stdout);
			return 0;
		case 'j':
			a.json = true;
			break;
		case 'c':
			a.csr = optarg;
			break;
		case 'p':
			a.profile = optarg;
			break;
		case 'o':
			a.out = optarg;
			break;
		case 's':
			a.serial = optarg;
			break;
		case 'r':
			a.reason = optarg;
			break;
		case 'd':
			a.days = strtol(optarg, NULL, 10);
			if (a.days < 1 || a.days > 366)
				return kl_cli_usage_error("ca", "--days must be 1..366, not '%s'",
				                          optarg);
			break;
		case 'O':
			io.org = optarg;
			break;
		case 'C':
			io.country = optarg;
			break;
		case 'u':
			io.crl_url = optarg;
			break;
		case 'W':
			io.cps_url = optarg;
			break;
		case 'I':
			io.ca_issuers_url = optarg;
			break;
		case 'x':
			io.external_root = true;
			break;
		case 'P':
			io.pin_file = optarg;
			break;
		case 'S':
			io.so_pin_file = optarg;
			break;
		case 'R':
			a.root = optarg;
			break;
		default:
			return kl_cli_usage_error("ca", "bad option");
		}
	}

	for (size_t i = 0; i < sizeof(ca_commands) / sizeof(ca_commands[0]); i++)
		if (strcmp(cmd, ca_commands[i].name) == 0)
			row = &ca_commands[i];
	/* Only import takes an argument after the options (CERT). */
	if (row && (row->needs & NEED_CERT) && optind < argc)
		a.cert = argv[optind];
	else if (optind < argc)
		return kl_cli_usage_error("ca", "unexpected argument '%s'", argv[optind]);
	if (strcmp(cmd, "init") == 0)
		return kl_cli_ca_init(home_dir, &io);
	if (!row)
		return kl_cli_usage_error("ca", "unknown command '%s'", cmd);
	if (!has_needs(row, &a))
		return kl_cli_usage_error("ca", "%s", row->needs_text);

	if (kl_home_open(home_dir, &home) < 0)
		return fail(cmd);
	rc = row->run(home, &a);
	kl_home_free(home);
	return rc;
}
