/* What the keyline commands share, private to station/cli/: messages, the
 * station's answers, the connection, the client commands' options, jobs
 * followed to their end, the registry of a stopped home, PEM files and the
 * CA ceremony. The commands themselves are declared in cli.h. */
#ifndef KL_CLI_INTERNAL_H
#define KL_CLI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/x509.h>

#include "client.h"
#include "home.h"
#include "kl_error.h"
#include "registry.h"
#include "station.h"

/* ---- messages (cli_client.c) ---- */

/* Prints "keyline CMD: <the error detail>" on stderr; returns 1, the exit
 * status of a failed command. */
int kl_cli_fail(const char *cmd) KL_MUST_CHECK;

/* Prints "keyline CMD: <message>" and "(see 'keyline CMD --help')" (the
 * "devices" of a "devices list") on stderr; returns 2, the exit status of a
 * usage error. */
__attribute__((format(printf, 2, 3))) int kl_cli_usage_error(const char *cmd, const char *fmt, ...);

/* ---- the station's answers (cli_client.c) ---- */

/* A member of an answer object: "", 0, false or NULL when it is absent
 * (or null, for a string). */
const char *kl_cli_jstr(json_object *o, const char *key);
int64_t kl_cli_jint(json_object *o, const char *key);
double kl_cli_jdbl(json_object *o, const char *key);
bool kl_cli_jbool(json_object *o, const char *key);
json_object *kl_cli_jget(json_object *o, const char *key);

/* Prints o and a newline on stdout; flags are json-c's JSON_C_TO_STRING_*,
 * slashes are never escaped. */
void kl_cli_print_json(json_object *o, int flags);

/* "2024-05-01 10:00:00Z" in buf, or "-" for no time. */
const char *kl_cli_when(int64_t t, char *buf, size_t size);

/* ---- the connection (cli_client.c) ---- */

/* Connects to the running station of home: -KL_E_UNAVAILABLE when none
 * runs (kl_client_connect). */
int kl_cli_connect(const char *home, kl_client **ret) KL_MUST_CHECK;

/* The running station, or when none runs, its method table in process over
 * the home (reader role). */
typedef struct kl_cli_api {
	kl_client *client;
	kl_station *offline;
} kl_cli_api;

/* need: the command needs the running station (it changes something). */
int kl_cli_api_open(const char *home, bool need, kl_cli_api *a) KL_MUST_CHECK;
void kl_cli_api_close(kl_cli_api *a);
/* One method call; params is taken, *res is the result (put it). */
int kl_cli_api_call(kl_cli_api *a, const char *method, json_object *params,
                    json_object **res) KL_MUST_CHECK;

/* kl_cli_api_open, one call, kl_cli_api_close. params is taken. */
int kl_cli_call(const char *home, bool need_station, const char *method, json_object *params,
                json_object **res) KL_MUST_CHECK;

/* ---- the client commands' options (cli_client.c) ---- */

struct kl_cli_opts {
	const char *slot, *serial, *tenant, *work_order, *ek, *reason, *cert, *state, *search,
	    *action;
	long limit, offset, before, id; /* limit -1 when not given */
	bool json, json_lines, wait, repurpose, newest;
};

/* Parses the options of argv (argv[0] is the command) into o. Returns the
 * index of the first argument that is not an option, -1 after --help
 * (usage printed on stdout), -2 after a bad option (usage on stderr). */
int kl_cli_parse(int argc, char **argv, const char *usage, struct kl_cli_opts *o) KL_MUST_CHECK;

/* kl_cli_parse, with no argument allowed after the options. Returns -1 to
 * go on, or the exit status to end the command with: 0 after --help, 2
 * after a usage error (printed). */
int kl_cli_options(int argc, char **argv, const char *usage, struct kl_cli_opts *o) KL_MUST_CHECK;

/* A count: decimal digits, >= 0. */
bool kl_cli_parse_count(const char *s, int64_t *ret);

/* 0 when v is set; else prints "WHAT is required" and the usage on stderr
 * and returns 2. */
int kl_cli_need(const char *cmd, const char *what, const char *v, const char *usage) KL_MUST_CHECK;

/* ---- jobs (cli_job.c) ---- */

/* One job object of the API (job.get, job.list) on a line or three. */
void kl_cli_print_job(json_object *job);

/* Submits method with params (taken) to the running station, then unless
 * o->wait is false follows the job's events to its end with a progress bar;
 * Ctrl-C asks the station to abort the job. Returns the exit status: 0 when
 * the job passed (or was queued with --no-wait), else 1. */
int kl_cli_run_job(const char *home, const char *cmd, const char *method, json_object *params,
                   const struct kl_cli_opts *o) KL_MUST_CHECK;

/* ---- the registry of a stopped home (cli_client.c) ---- */

/* The registry of a stopped home. kl_cli_reg_close() also after a failed
 * kl_cli_reg_open(). */
struct kl_cli_reg {
	kl_home *home;
	kl_store *store;
	kl_registry *reg;
};
int kl_cli_reg_open(const char *home_dir, struct kl_cli_reg *c) KL_MUST_CHECK;
void kl_cli_reg_close(struct kl_cli_reg *c);

/* devices list/show through the running station (cmd_devices_station.c):
 * returns 1 when it handled the command (*status is the exit status), 0
 * when no station runs or the arguments are for the local parser to judge. */
int kl_cli_devices_via_station(const char *home_dir, const char *sub, int argc, char **argv,
                               int *status) KL_MUST_CHECK;

/* ---- PEM files (cli_pem.c) ---- */

/* x or req as PEM text in *out (free() it), its length in *len. */
int kl_cli_pem_string(X509 *x, X509_REQ *req, char **out, size_t *len) KL_MUST_CHECK;
/* x or req as a PEM file, mode 0644. */
int kl_cli_pem_write(const char *path, X509 *x, X509_REQ *req) KL_MUST_CHECK;
/* A certificate file, PEM or DER; NULL with the error set. */
X509 *kl_cli_cert_read(const char *path);
/* A PKCS#10 request file, PEM or DER; NULL with the error set. */
X509_REQ *kl_cli_csr_read(const char *path);

/* ---- the CA key ceremony (cmd_ca_ceremony.c) ---- */

struct kl_cli_ca_init_opts {
	const char *org, *country, *crl_url, *cps_url, *ca_issuers_url, *pin_file, *so_pin_file;
	bool external_root;
};

/* keyline ca init: the key ceremony on the embedded default (SoftHSM in
 * HOME/hsm). Returns the exit status. */
int kl_cli_ca_init(const char *home_dir, const struct kl_cli_ca_init_opts *o) KL_MUST_CHECK;

/* keyline ca import: installs the issuing CA certificate an external root
 * signed. Returns the exit status. */
int kl_cli_ca_import(kl_home *home, const char *cert_path, const char *root_path) KL_MUST_CHECK;

#endif
