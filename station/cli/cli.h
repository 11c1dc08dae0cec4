/* The keyline command line: one program, a command table (keyline.c) that
 * dispatches and lists, and one file per command (cmd_*.c). To add a
 * command: write its handler in its own file, declare it here, and give it
 * a row in the table. Helpers the commands share are in cli_internal.h. */
#ifndef KL_STATION_CLI_H
#define KL_STATION_CLI_H

/* As before the table: the command files may rely on these. */
#include <stdbool.h>
#include <stddef.h>

#include "home.h"

/* A command's handler. home_dir is the station home (see 'keyline --help';
 * NULL for a row marked CMD_FRESH_HOME when no home was named), argv[0] the
 * command's own name (for a row with a sub-command, the sub-command's).
 * Returns the process exit status: 0 ok, 1 failed, 2 usage error. */
typedef int kl_cli_handler(const char *home_dir, int argc, char **argv);

/* On the line */
kl_cli_handler kl_cmd_demo;    /* cmd_demo.c */
kl_cli_handler kl_cmd_station; /* cmd_station.c */

/* Through the running station */
kl_cli_handler kl_cmd_status;            /* cmd_status.c */
kl_cli_handler kl_cmd_provision_station; /* cmd_provision.c: on a slot */
kl_cli_handler kl_cmd_jobs;              /* cmd_jobs.c */
kl_cli_handler kl_cmd_events;            /* cmd_events.c */
kl_cli_handler kl_cmd_lifecycle;         /* cmd_lifecycle.c: renew, decommission, repurpose */
kl_cli_handler kl_cmd_record;            /* cmd_lifecycle.c */
kl_cli_handler kl_cmd_revoke;            /* cmd_revoke.c: revoke, lost */
kl_cli_handler kl_cmd_crl;               /* cmd_revoke.c */
kl_cli_handler kl_cmd_audit_list;        /* cmd_audit.c */

/* On the home (some through the station when it runs) */
kl_cli_handler kl_cmd_provision;   /* cmd_provision.c: --link, in this process */
kl_cli_handler kl_cmd_ca;          /* cmd_ca.c */
kl_cli_handler kl_cmd_audit;       /* cmd_audit.c: verify */
kl_cli_handler kl_cmd_preregister; /* cmd_preregister.c */
kl_cli_handler kl_cmd_devices;     /* cmd_devices.c */

#endif
