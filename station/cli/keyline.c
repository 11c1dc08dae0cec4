/* keyline: the station's command-line program. main() reads the global
 * options, resolves the home and hands the rest to a command from the table
 * below, which also makes the command list of 'keyline --help'. */
#include <getopt.h>
#include <stdbool.h>
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

/* The headings of 'keyline --help', in their order. */
enum group {
	G_HIDDEN, /* not listed */
	G_LINE,
	G_STATION,
	G_HOME,
	G__MAX,
};

static const char *const group_heading[G__MAX] = {
	[G_LINE] = "commands:\n",
	[G_STATION] = "\n  through the running station:\n",
	[G_HOME] =
	    "\n  on the home (devices, preregister and audit go through the station when it\n"
	    "  runs; the others work on the home's files):\n",
};

/* Without --home or KEYLINE_HOME the handler gets NULL (and makes its own). */
#define CMD_FRESH_HOME 1u

struct command {
	const char *name; /* the word after the global options */
	const char *sub;  /* if set, the row is for 'NAME SUB' only, and run gets argv + 1 */
	const char *flag; /* if set, the row is for NAME with this option only */
	enum group group;
	unsigned flags; /* CMD_* */
	const char *synopsis;
	const char *summary; /* one line, or more separated by '\n' */
	kl_cli_handler *run;
};

static kl_cli_handler cmd_help;

/* The commands. A row with .sub or .flag is chosen over the plain row of
 * the same name; rows are listed in this order under their group. */
static const struct command commands[] = {
	{ "demo", NULL, NULL, G_LINE, CMD_FRESH_HOME, "demo [--devices N]",
	  "a complete simulated line on the embedded default:\n"
	  "SoftHSM CA ceremony, swtpm DUTs from a simulated TPM vendor,\n"
	  "a station with one slot per DUT, all provisioned in parallel",
	  kl_cmd_demo },
	{ "station", NULL, NULL, G_LINE, 0, "station",
	  "run the station daemon (slots, socket API) in the foreground", kl_cmd_station },

	{ "status", NULL, NULL, G_STATION, 0, "status", "the station and its slots",
	  kl_cmd_status },
	{ "provision", NULL, NULL, G_STATION, 0, "provision --serial S [--slot NAME]",
	  "provision the DUT on a slot, with progress", kl_cmd_provision_station },
	{ "jobs", NULL, NULL, G_STATION, 0, "jobs [list|show|abort]",
	  "recent jobs and their results", kl_cmd_jobs },
	{ "events", NULL, NULL, G_STATION, 0, "events [--slot NAME]",
	  "stream step, job, link and CRL events", kl_cmd_events },
	{ "renew", NULL, NULL, G_STATION, 0, "renew --slot NAME --serial S",
	  "rekey: new IDevID, old one superseded", kl_cmd_lifecycle },
	{ "decommission", NULL, NULL, G_STATION, 0,
	  "decommission --slot NAME --serial S [--repurpose]",
	  "revoke, cryptographic erase, signed sanitization record", kl_cmd_lifecycle },
	{ "repurpose", NULL, NULL, G_STATION, 0, "repurpose --slot NAME --serial S",
	  "decommission for reuse by another tenant", kl_cmd_lifecycle },
	{ "revoke", NULL, NULL, G_STATION, 0,
	  "revoke (--serial S | --certificate HEX) [--reason R]", "and publish the CRL",
	  kl_cmd_revoke },
	{ "lost", NULL, NULL, G_STATION, 0, "lost --serial S",
	  "revoke, mark lost, deny-list the EK", kl_cmd_revoke },
	{ "record", NULL, NULL, G_STATION, 0, "record --serial S",
	  "a device's signed sanitization record", kl_cmd_record },
	{ "crl", NULL, NULL, G_STATION, 0, "crl", "sign and publish a fresh CRL", kl_cmd_crl },
	{ "audit", "list", NULL, G_STATION, 0, "audit list", "audit entries, newest first",
	  kl_cmd_audit_list },

	/* --link: this process drives the DUT; else the station does. */
	{ "provision", NULL, "--link", G_HOME, 0, "provision --link TCTI --serial S",
	  "drive one DUT from this process", kl_cmd_provision },
	{ "provision", NULL, "--agent-listen", G_HOME, 0, "provision --agent-listen ADDR:PORT",
	  "accept one keyline-agent and provision its DUT", kl_cmd_provision },
	{ "ca", NULL, NULL, G_HOME, 0, "ca COMMAND",
	  "the CA: init, status, issue, revoke, crl, export, import", kl_cmd_ca },
	{ "audit", NULL, NULL, G_HOME, 0, "audit verify", "verify the hash-chained audit log",
	  kl_cmd_audit },
	{ "preregister", NULL, NULL, G_HOME, 0,
	  "preregister FILE --tenant T [--work-order W] [--quota N]",
	  "pre-register device serials (CSV or JSON), all or nothing", kl_cmd_preregister },
	{ "devices", NULL, NULL, G_HOME, 0, "devices list|show",
	  "the device registry: states, tenants, EKs, certificates", kl_cmd_devices },

	{ "help", NULL, NULL, G_HIDDEN, 0, "help", "this text", cmd_help },
};

static const char usage_head[] =
    "usage: keyline [--home DIR] COMMAND [ARGS]\n"
    "\n"
    "Keyline: factory provisioning and PKI station for TPM 2.0 devices.\n"
    "\n";

static const char usage_tail[] =
    "\n"
    "options:\n"
    "  --home DIR            the station's home (configuration, registry, CA, tokens);\n"
    "                        default $KEYLINE_HOME, else /var/lib/keyline for root,\n"
    "                        else ~/.local/share/keyline\n"
    "  --version             print the version\n"
    "  -h, --help            this text; 'keyline COMMAND --help' for a command\n"
    "\n"
    "environment: KEYLINE_HOME, KEYLINE_LOG (e.g. all+debug), TSS2_LOG\n";

/* One row of the command list. The summary starts in column 24, or 39 after
 * a longer synopsis; after a synopsis longer still, three spaces after it
 * when the line stays within 80 columns, else on the next line in column 24.
 * Its further lines start in column 24. */
static void print_command(FILE *out, const struct command *c)
{
	const char *s = c->summary, *nl = strchr(s, '\n');
	int len = (int)strlen(c->synopsis), first = nl ? (int)(nl - s) : (int)strlen(s);
	int col = len <= 20 ? 24 : len <= 34 ? 39 : 2 + len + 3;

	if (len <= 34 || col + first <= 80)
		fprintf(out, "  %-*s%.*s\n", col - 2, c->synopsis, first, s);
	else
		fprintf(out, "  %s\n%24s%.*s\n", c->synopsis, "", first, s);
	while (nl) {
		s = nl + 1;
		nl = strchr(s, '\n');
		fprintf(out, "%24s%.*s\n", "", nl ? (int)(nl - s) : (int)strlen(s), s);
	}
}

static void print_usage(FILE *out)
{
	fputs(usage_head, out);
	for (int g = G_LINE; g < G__MAX; g++) {
		fputs(group_heading[g], out);
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (commands[i].group == (enum group)g)
				print_command(out, &commands[i]);
	}
	fputs(usage_tail, out);
}

static int cmd_help(const char *home_dir, int argc, char **argv)
{
	(void)home_dir;
	(void)argc;
	(void)argv;
	print_usage(stdout);
	return 0;
}

static bool has_option(int argc, char **argv, const char *flag)
{
	size_t n = strlen(flag);

	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], flag, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '='))
			return true;
	return false;
}

/* The row for argv: one whose sub-command or option argv has, else the
 * plain row of that name; NULL for an unknown command. */
static const struct command *find_command(int argc, char **argv)
{
	const struct command *plain = NULL;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strcmp(c->name, argv[0]) != 0)
			continue;
		if (c->sub && argc > 1 && strcmp(argv[1], c->sub) == 0)
			return c;
		if (c->flag && has_option(argc, argv, c->flag))
			return c;
		if (!c->sub && !c->flag && !plain)
			plain = c;
	}
	return plain;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const struct command *cmd;
	const char *home_opt = NULL;
	char home[PATH_MAX];
	int c;

	/* A bad KEYLINE_LOG is reported by kl_log itself, once, when it is
	 * first used; the default filter stays. */
	(void)kl_log_configure(NULL);
	/* Global options come before the command; the command parses the rest. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			home_opt = optarg;
			break;
		case 'h':
			print_usage(stdout);
			return 0;
		case 'V':
			printf("keyline %s\n", KL_VERSION);
			return 0;
		default:
			print_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		print_usage(stderr);
		return 2;
	}
	if (kl_home_resolve(home_opt, home, sizeof(home)) < 0) {
		fprintf(stderr, "keyline: %s\n", kl_error_detail());
		return 2;
	}
	argc -= optind;
	argv += optind;
	cmd = find_command(argc, argv);
	if (!cmd) {
		fprintf(stderr, "keyline: unknown command '%s' (see 'keyline --help')\n", argv[0]);
		return 2;
	}
	if ((cmd->flags & CMD_FRESH_HOME) && !home_opt && !getenv("KEYLINE_HOME"))
		return cmd->run(NULL, argc, argv);
	if (cmd->sub)
		return cmd->run(home, argc - 1, argv + 1);
	return cmd->run(home, argc, argv);
}
