/* keyline station: the station daemon in the foreground (systemd runs it as
 * Type=simple; see station/keyline-station.service). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "kl_error.h"
#include "kl_log.h"
#include "station.h"

static const char station_usage[] =
    "usage: keyline [--home DIR] station [--check]\n"
    "\n"
    "Runs the station daemon in the foreground: it owns the HSM session, the registry and\n"
    "the slots named in keyline.conf [slots], and serves the socket API (docs/api.md) on\n"
    "station.socket (default HOME/station.sock, mode 0660). SIGTERM, SIGINT or SIGHUP\n"
    "stop it: running jobs stop at their next step and clean up; queued jobs are\n"
    "aborted.\n"
    "\n"
    "It refuses to start, saying why, when the HSM, the registry, the trust bundle or the\n"
    "configuration is unusable, or when a station already serves the socket.\n"
    "\n"
    "options:\n"
    "  --check    open everything (HSM login included), report, and exit\n"
    "\n"
    "configuration: docs/configuration.md ([station], [slots], [roles])\n";

int kl_cmd_station(const char *home_dir, int argc, char **argv)
{
	bool check = false;
	kl_station *s = NULL;
	int r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--check") == 0) {
			check = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(station_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "keyline station: unknown option '%s'\n%s", argv[i],
			        station_usage);
			return 2;
		}
	}
	if (kl_station_open(home_dir, &s) < 0) {
		fprintf(stderr, "keyline station: %s\n", kl_error_detail());
		return 1;
	}
	if (check) {
		printf("station %s: HSM logged in, registry, trust bundle and %zu slot(s) usable; "
		       "socket %s\n",
		       kl_station_id(s), kl_station_slot_count(s), kl_station_socket_path(s));
		kl_station_free(s);
		return 0;
	}
	/* kl_station_run takes SIGTERM, SIGINT and SIGHUP itself. */
	fprintf(stderr, "keyline station %s: %zu slot(s), socket %s\n", kl_station_id(s),
	        kl_station_slot_count(s), kl_station_socket_path(s));
	r = kl_station_run(s);
	if (r < 0)
		fprintf(stderr, "keyline station: %s\n", kl_error_detail());
	else
		fprintf(stderr, "keyline station: stopped\n");
	kl_station_free(s);
	return r < 0 ? 1 : 0;
}
