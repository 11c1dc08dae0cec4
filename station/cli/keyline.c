/* keyline: the station's command-line program. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "home.h"
#include "kl_error.h"
#include "kl_log.h"

#ifndef KL_VERSION
#define KL_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: keyline [--home DIR] COMMAND [ARGS]\n"
    "\n"
    "Keyline: factory provisioning and PKI station for TPM 2.0 devices.\n"
    "\n"
    "commands:\n"
    "  demo [--devices N]    a complete simulated line on the embedded default:\n"
    "                        SoftHSM CA ceremony, swtpm DUTs from a simulated TPM vendor,\n"
    "                        a station with one slot per DUT, all provisioned in parallel\n"
    "  station               run the station daemon (slots, socket API) in the foreground\n"
    "\n"
    "  through the running station:\n"
    "  status                the station and its slots\n"
    "  provision --serial S [--slot NAME]   provision the DUT on a slot, with progress\n"
    "  jobs [list|show|abort]               recent jobs and their results\n"
    "  events [--slot NAME]  stream step, job, link and CRL events\n"
    "  renew --slot NAME --serial S         rekey: new IDevID, old one superseded\n"
    "  decommission --slot NAME --serial S [--repurpose]\n"
    "                        revoke, cryptographic erase, signed sanitization record\n"
    "  repurpose --slot NAME --serial S     decommission for reuse by another tenant\n"
    "  revoke (--serial S | --certificate HEX) [--reason R]   and publish the CRL\n"
    "  lost --serial S       revoke, mark lost, deny-list the EK\n"
    "  record --serial S     a device's signed sanitization record\n"
    "  crl                   sign and publish a fresh CRL\n"
    "  audit list            audit entries, newest first\n"
    "\n"
    "  on the home (devices, preregister and audit go through the station when it\n"
    "  runs; the others work on the home's files):\n"
    "  provision --link TCTI --serial S     drive one DUT from this process\n"
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
	if (strcmp(argv[0], "provision") == 0) {
		/* --link: this process drives the DUT; else the station does. */
		for (int i = 1; i < argc; i++)
			if (strcmp(argv[i], "--link") == 0 || strncmp(argv[i], "--link=", 7) == 0)
				return kl_cmd_provision(home, argc, argv);
		return kl_cmd_provision_station(home, argc, argv);
	}
	if (strcmp(argv[0], "station") == 0)
		return kl_cmd_station(home, argc, argv);
	if (strcmp(argv[0], "status") == 0)
		return kl_cmd_status(home, argc, argv);
	if (strcmp(argv[0], "jobs") == 0)
		return kl_cmd_jobs(home, argc, argv);
	if (strcmp(argv[0], "events") == 0)
		return kl_cmd_events(home, argc, argv);
	if (strcmp(argv[0], "renew") == 0 || strcmp(argv[0], "decommission") == 0 ||
	    strcmp(argv[0], "repurpose") == 0)
		return kl_cmd_lifecycle(home, argc, argv);
	if (strcmp(argv[0], "revoke") == 0 || strcmp(argv[0], "lost") == 0)
		return kl_cmd_revoke(home, argc, argv);
	if (strcmp(argv[0], "record") == 0)
		return kl_cmd_record(home, argc, argv);
	if (strcmp(argv[0], "crl") == 0)
		return kl_cmd_crl(home, argc, argv);
	if (argc > 1 && strcmp(argv[0], "audit") == 0 && strcmp(argv[1], "list") == 0)
		return kl_cmd_audit_list(home, argc - 1, argv + 1);
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
