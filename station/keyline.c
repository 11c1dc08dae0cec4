/* keyline: the station's command-line program. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kl_error.h"
#include "kl_log.h"

#ifndef KL_VERSION
#define KL_VERSION "0.0.0"
#endif
#ifndef KL_SRC_DATADIR
#define KL_SRC_DATADIR "."
#endif
#ifndef KL_INSTALL_DATADIR
#define KL_INSTALL_DATADIR "/usr/local/share/keyline"
#endif

static const char usage[] =
    "usage: keyline [--home DIR] COMMAND [ARGS]\n"
    "\n"
    "Keyline: factory provisioning and PKI station for TPM 2.0 devices.\n"
    "\n"
    "commands:\n"
    "  demo [--devices N]    a complete simulated line on the embedded default:\n"
    "                        SoftHSM CA ceremony, swtpm DUTs from a simulated TPM vendor,\n"
    "                        and the checks the station makes on each DUT's TPM\n"
    "  ca COMMAND            the CA: init, status, issue, revoke, crl, export, import\n"
    "  audit verify          verify the hash-chained audit log\n"
    "  preregister FILE --tenant T [--work-order W] [--quota N]\n"
    "                        pre-register device serials (CSV or JSON), all or nothing\n"
    "  devices list|show     the device registry: states, tenants, EKs, certificates\n"
    "\n"
    "options:\n"
    "  --home DIR            the station's home (configuration, registry, CA, tokens);\n"
    "                        default $KEYLINE_HOME, else /var/lib/keyline for root,\n"
    "                        else ~/.local/share/keyline\n"
    "  --version             print the version\n"
    "  -h, --help            this text; 'keyline COMMAND --help' for a command\n"
    "\n"
    "environment: KEYLINE_HOME, KEYLINE_LOG (e.g. all+debug), TSS2_LOG\n";

const char *kl_cli_data_dir(const char *name)
{
	static char path[PATH_MAX];
	const char *env = getenv("KEYLINE_DATADIR");

	if (env && *env) {
		snprintf(path, sizeof(path), "%s/%s", env, name);
		return path;
	}
	snprintf(path, sizeof(path), "%s/%s", KL_INSTALL_DATADIR, name);
	if (access(path, R_OK) == 0)
		return path;
	/* Not installed: the source tree next to this build. */
	if (strcmp(name, "profiles") == 0)
		snprintf(path, sizeof(path), "%s/ca/profiles", KL_SRC_DATADIR);
	else
		snprintf(path, sizeof(path), "%s/%s", KL_SRC_DATADIR, name);
	return path;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *home_opt = NULL;
	char home[PATH_MAX];
	int c;

	kl_log_configure(NULL);
	/* Global options come before the command; the command parses the rest. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			home_opt = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		case 'V':
			printf("keyline %s\n", KL_VERSION);
			return 0;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	if (kl_home_resolve(home_opt, home, sizeof(home)) < 0) {
		fprintf(stderr, "keyline: %s\n", kl_error_detail());
		return 2;
	}
	argc -= optind;
	argv += optind;
	if (strcmp(argv[0], "ca") == 0)
		return kl_cmd_ca(home, argc, argv);
	if (strcmp(argv[0], "provision") == 0)
		return kl_cmd_provision(home, argc, argv);
	if (strcmp(argv[0], "audit") == 0)
		return kl_cmd_audit(home, argc, argv);
	if (strcmp(argv[0], "preregister") == 0)
		return kl_cmd_preregister(home, argc, argv);
	if (strcmp(argv[0], "devices") == 0)
		return kl_cmd_devices(home, argc, argv);
	if (strcmp(argv[0], "demo") == 0)
		/* Without an explicit home the demo makes a fresh one. */
		return kl_cmd_demo(home_opt || getenv("KEYLINE_HOME") ? home : NULL, argc, argv);
	if (strcmp(argv[0], "help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	fprintf(stderr, "keyline: unknown command '%s' (see 'keyline --help')\n", argv[0]);
	return 2;
}
