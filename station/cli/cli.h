/* The keyline command line: one program, a command per file. */
#ifndef KL_STATION_CLI_H
#define KL_STATION_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "home.h"

/* Each returns the process exit status: 0 ok, 1 failed, 2 usage error.
 * argv[0] is the command's own name. */
int kl_cmd_ca(const char *home_dir, int argc, char **argv);
int kl_cmd_audit(const char *home_dir, int argc, char **argv);
int kl_cmd_demo(const char *home_dir, int argc, char **argv);
int kl_cmd_provision(const char *home_dir, int argc, char **argv);
int kl_cmd_devices(const char *home_dir, int argc, char **argv);
int kl_cmd_preregister(const char *home_dir, int argc, char **argv);
int kl_cmd_station(const char *home_dir, int argc, char **argv);
/* Clients of the running station (cmd_client.c). */
int kl_cmd_status(const char *home_dir, int argc, char **argv);
int kl_cmd_jobs(const char *home_dir, int argc, char **argv);
int kl_cmd_events(const char *home_dir, int argc, char **argv);
int kl_cmd_provision_station(const char *home_dir, int argc, char **argv);
int kl_cmd_lifecycle(const char *home_dir, int argc,
                     char **argv);                              /* renew, decommission, repurpose */
int kl_cmd_revoke(const char *home_dir, int argc, char **argv); /* revoke, lost */
int kl_cmd_record(const char *home_dir, int argc, char **argv);
int kl_cmd_crl(const char *home_dir, int argc, char **argv);
int kl_cmd_audit_list(const char *home_dir, int argc, char **argv);
/* devices list/show through the running station: returns 1 when it handled
 * the command (*status is the exit status), 0 when no station runs. */
int kl_cli_devices_via_station(const char *home_dir, const char *sub, int argc, char **argv,
                               int *status);

/* One call of the socket API: through the running station, or when none
 * runs and need_station is false, through the same method table in process
 * over the home (read-only role). params is taken; *res is the result. */
struct json_object;
int kl_cli_call(const char *home_dir, bool need_station, const char *method,
                struct json_object *params, struct json_object **res);

/* preregister through the running station (quota -2: leave it): 1 when
 * handled (*status set), 0 when no station runs. */
int kl_cli_preregister_via_station(const char *home_dir, const char *tenant, const char *wo,
                                   long long quota, const char *file, bool json, int *status);

#endif
