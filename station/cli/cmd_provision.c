/* keyline provision, both ways: --link drives one DUT on one bench through
 * the provisioning engine in this process; without it the running station
 * provisions the DUT on one of its slots (the same engine per slot). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "engine.h"
#include "home.h"
#include "hsm.h"
#include "kl_error.h"
#include "link_listen.h"
#include "registry.h"
#include "trust.h"

static const char provision_usage[] =
    "usage: keyline [--home DIR] provision --link TCTI --serial S [OPTIONS]\n"
    "       keyline [--home DIR] provision --agent-listen ADDR:PORT [--serial S] [OPTIONS]\n"
    "\n"
    "Takes a device under test in factory-new mode through the whole flow: TPM discovery,\n"
    "EK certificate chain and EK match, registry gates, factory entropy, IAK and IDevID\n"
    "created in the TPM, credential activation, TPM2_Certify, proof of possession,\n"
    "certificates from the CA, keys persisted and certificates written to locked NV, and\n"
    "one registry commit with the evidence.\n"
    "\n"
    "options:\n"
    "  --link TCTI      the DUT's TPM: swtpm:host=127.0.0.1,port=P or device:/dev/tpmrm0\n"
    "  --agent-listen ADDR:PORT\n"
    "                   instead of --link: listen on ADDR:PORT (an address of the factory\n"
    "                   network, [IPV6]:PORT for IPv6), accept one keyline-agent, provision\n"
    "                   the DUT whose serial its hello says through its TPM, and send it the\n"
    "                   verdict (docs/link.md)\n"
    "  --serial S       the device serial (with --agent-listen: the serial the agent must\n"
    "                   say, e.g. the operator's scan; else refused as serial_mismatch)\n"
    "  --accept-timeout-s N  how long --agent-listen waits for an agent (1..86400,\n"
    "                   default 120)\n"
    "  --allow-any-address  let --agent-listen bind 0.0.0.0 or [::] (every interface)\n"
    "  --tenant T       the tenant (default: the serial's pre-registration)\n"
    "  --work-order W   only a serial pre-registered in the tenant's work order W\n"
    "  --ek TYPE        the EK that proves the TPM: rsa2048, p256 (default), p384\n"
    "  --tpm-timeout-ms N  how long one TPM command may take on the link (100..600000;\n"
    "                   default keyline.conf [station] tpm_timeout_ms, else 30000)\n"
    "  --json           the result as one JSON object on stdout\n"
    "\n"
    "exit status: 0 provisioned (or already was), 1 refused or failed (with --agent-listen\n"
    "also: no agent came, or its link failed), 2 usage error\n";

struct progress {
	bool tty;
	bool quiet;
};

static void show(void *ctx, kl_step step, bool done, double ms)
{
	struct progress *p = ctx;

	if (p->quiet)
		return;
	if (!done) {
		fprintf(stderr, "  [%2d/%d] %-20s", (int)step + 1, KL_STEP__MAX,
		        kl_step_name(step));
		fflush(stderr);
		return;
	}
	fprintf(stderr, "%8.1f ms\n", ms);
}

/* The result as one JSON object on a line: the keys scripts read since the
 * first release, reason and step "" when it passed. */
static void print_result_json(const char *serial, const kl_job_result *res)
{
	json_object *o = json_object_new_object();
	char ms[32];

	snprintf(ms, sizeof(ms), "%.1f", res->total_ms);
	json_object_object_add(o, "serial", json_object_new_string(serial));
	json_object_object_add(o, "ok", json_object_new_boolean(res->rc == 0));
	json_object_object_add(o, "already_provisioned",
	                       json_object_new_boolean(res->already_provisioned));
	json_object_object_add(o, "resumed", json_object_new_boolean(res->resumed));
	json_object_object_add(o, "reason",
	                       json_object_new_string(res->rc == 0 ? "" : res->reason));
	json_object_object_add(
	    o, "step", json_object_new_string(res->rc == 0 ? "" : kl_step_name(res->failed_step)));
	json_object_object_add(o, "iak_serial", json_object_new_string(res->iak_serial));
	json_object_object_add(o, "idevid_serial", json_object_new_string(res->idevid_serial));
	json_object_object_add(o, "idevid_sha256", json_object_new_string(res->idevid_sha256));
	/* One decimal, as before; json-c would print the double's shortest form. */
	json_object_object_add(o, "total_ms", json_object_new_double_s(res->total_ms, ms));
	kl_cli_print_json(o, JSON_C_TO_STRING_PLAIN);
	json_object_put(o);
}

/* --agent-listen: one keyline-agent on a TCP link. */
struct agent_session {
	kl_link_listener *listener;
	kl_link_conn *conn;
	kl_link_agent_info info;
	char link[128];
};

/* How long the agent has for its hello and for taking the verdict. */
#define AGENT_HELLO_MS 10000

static kl_link_wait wait_for(int ms)
{
	kl_link_wait w = { .deadline_ms = kl_link_now_ms() + ms };

	return w;
}

/* Listens, accepts one agent and shakes hands; the job then runs on the
 * link with the hello's serial. A refusal is printed like the engine's. */
static int agent_begin(struct agent_session *as, const kl_engine_config *cfg, const char *addr,
                       bool allow_any, int accept_s, kl_job *job, bool json)
{
	kl_link_wait w;
	int hello_ms = cfg->tpm_timeout_ms > 0 && cfg->tpm_timeout_ms < AGENT_HELLO_MS
	                   ? cfg->tpm_timeout_ms
	                   : AGENT_HELLO_MS;

	if (kl_link_listen(addr, allow_any, &as->listener) < 0) {
		fprintf(stderr, "keyline provision: %s\n", kl_error_detail());
		return -1;
	}
	if (!json)
		fprintf(stderr, "Waiting for keyline-agent on %s (port %d, %d s)\n", addr,
		        kl_link_listener_port(as->listener), accept_s);
	w = wait_for(accept_s * 1000);
	if (kl_link_accept(as->listener, &w, &as->conn) < 0) {
		fprintf(stderr, "keyline provision: %s\n", kl_error_detail());
		return -1;
	}
	w = wait_for(hello_ms);
	if (kl_link_handshake(as->conn, &w, cfg->station_id, job->serial, &as->info) < 0) {
		const char *reason = kl_link_conn_reason(as->conn);

		if (json) {
			kl_job_result res = { .rc = -1 };

			snprintf(res.reason, sizeof(res.reason), "%s",
			         reason ? reason : "link_lost");
			print_result_json(job->serial ? job->serial : "", &res);
		} else {
			printf("REFUSED %s at hello [%s]: %s\n", job->serial ? job->serial : "-",
			       reason ? reason : "link_lost", kl_error_detail());
		}
		return -1;
	}
	snprintf(as->link, sizeof(as->link), "agent:%s", kl_link_conn_peer(as->conn));
	job->serial = as->info.serial;
	job->link = as->link;
	job->agent = as->conn;
	if (!json)
		fprintf(stderr, "Agent %s: serial %s, model %s, firmware %s (protocol %u)\n",
		        as->info.agent[0] ? as->info.agent : "?", as->info.serial,
		        as->info.model[0] ? as->info.model : "?",
		        as->info.firmware[0] ? as->info.firmware : "?", as->info.proto);
	return 0;
}

/* The verdict to the agent, best effort: the job's result stands either way. */
static void agent_verdict(struct agent_session *as, const kl_engine_config *cfg, const kl_job *job,
                          const kl_job_result *res, bool json)
{
	kl_link_wait w = wait_for(cfg->tpm_timeout_ms > 0 && cfg->tpm_timeout_ms < AGENT_HELLO_MS
	                              ? cfg->tpm_timeout_ms
	                              : AGENT_HELLO_MS);

	if (kl_link_conn_dead(as->conn))
		return;
	if (kl_link_send_verdict(as->conn, &w, job->serial, res->rc == 0, res->idevid_sha256,
	                         res->reason, res->message) < 0 &&
	    !json)
		fprintf(stderr, "keyline provision: the verdict did not reach the agent: %s\n",
		        kl_error_detail());
}

int kl_cmd_provision(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "link", required_argument, NULL, 'l' },
		{ "serial", required_argument, NULL, 's' },
		{ "tenant", required_argument, NULL, 't' },
		{ "work-order", required_argument, NULL, 'w' },
		{ "ek", required_argument, NULL, 'e' },
		{ "tpm-timeout-ms", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "agent-listen", required_argument, NULL, 'A' },
		{ "accept-timeout-s", required_argument, NULL, 'a' },
		{ "allow-any-address", no_argument, NULL, 'Y' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	kl_job job = { .ek_type = KL_EK_P256, .actor = kl_home_actor() };
	struct progress prog = { .tty = isatty(STDERR_FILENO) };
	kl_engine_config cfg;
	kl_registry *reg = NULL;
	kl_trust *trust = NULL;
	kl_home *home = NULL;
	kl_job_result res;
	bool json = false, allow_any = false;
	long timeout_ms = 0, accept_s = 120;
	const char *listen_addr = NULL;
	struct agent_session as = { 0 };
	int c, rc = 1;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			job.link = optarg;
			break;
		case 's':
			job.serial = optarg;
			break;
		case 't':
			job.tenant = optarg;
			break;
		case 'w':
			job.work_order = optarg;
			break;
		case 'e':
			if (kl_ek_type_from_name(optarg, &job.ek_type) < 0) {
				fprintf(stderr,
				        "keyline provision: --ek must be rsa2048, p256 or p384\n");
				return 2;
			}
			break;
		case 'T': {
			char *end;

			errno = 0;
			timeout_ms = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || timeout_ms < KL_TPM_TIMEOUT_MS_MIN ||
			    timeout_ms > KL_TPM_TIMEOUT_MS_MAX) {
				fprintf(
				    stderr,
				    "keyline provision: --tpm-timeout-ms '%s' is not a number of "
				    "milliseconds from %d to %d\n",
				    optarg, KL_TPM_TIMEOUT_MS_MIN, KL_TPM_TIMEOUT_MS_MAX);
				return 2;
			}
			break;
		}
		case 'j':
			json = true;
			break;
		case 'A':
			listen_addr = optarg;
			break;
		case 'a': {
			char *end;

			errno = 0;
			accept_s = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || accept_s < 1 || accept_s > 86400) {
				fprintf(
				    stderr,
				    "keyline provision: --accept-timeout-s '%s' is not a number "
				    "of seconds from 1 to 86400\n",
				    optarg);
				return 2;
			}
			break;
		}
		case 'Y':
			allow_any = true;
			break;
		case 'h':
			fputs(provision_usage, stdout);
			return 0;
		default:
			fputs(provision_usage, stderr);
			return 2;
		}
	}
	if (listen_addr ? job.link != NULL || optind < argc
	                : !job.link || !job.serial || optind < argc) {
		fprintf(stderr, "keyline provision: %s\n(see 'keyline provision --help')\n",
		        optind < argc ? "unexpected argument"
		        : listen_addr ? "--agent-listen and --link exclude each other"
		                      : "--link and --serial are required");
		return 2;
	}
	prog.quiet = json;
	job.progress = show;
	job.progress_ctx = &prog;

	if (kl_home_open(home_dir, &home) < 0 ||
	    kl_home_engine_config(home, &cfg, &reg, &trust) < 0) {
		fprintf(stderr, "keyline provision: %s\n", kl_error_detail());
		goto out;
	}
	if (timeout_ms > 0)
		cfg.tpm_timeout_ms = (int)timeout_ms;
	if (listen_addr &&
	    agent_begin(&as, &cfg, listen_addr, allow_any, (int)accept_s, &job, json) < 0)
		goto out;
	if (!json)
		fprintf(stderr, "Provisioning %s on %s (EK %s)\n", job.serial, job.link,
		        kl_ek_type_name(job.ek_type));
	if (kl_engine_provision(&cfg, &job, &res) < 0) {
		fprintf(stderr, "keyline provision: %s\n", kl_error_detail());
		goto out;
	}
	if (as.conn)
		agent_verdict(&as, &cfg, &job, &res, json);
	if (res.rc < 0 && !json && res.failed_step < KL_STEP__MAX)
		fprintf(stderr, "  FAILED\n");
	if (json) {
		print_result_json(job.serial, &res);
	} else if (res.rc == 0 && res.already_provisioned) {
		printf("ALREADY PROVISIONED %s: nothing issued (%.0f ms)\n", job.serial,
		       res.total_ms);
	} else if (res.rc == 0) {
		printf("PROVISIONED %s: IDevID %s, IAK %s%s (%.0f ms)\n", job.serial,
		       res.idevid_serial, res.iak_serial, res.resumed ? ", resumed" : "",
		       res.total_ms);
	} else {
		printf("REFUSED %s at %s [%s]: %s\n", job.serial, kl_step_name(res.failed_step),
		       res.reason, res.message);
	}
	rc = res.rc == 0 ? 0 : 1;
out:
	kl_link_conn_free(as.conn);
	kl_link_listener_free(as.listener);
	kl_registry_free(reg);
	kl_trust_free(trust);
	kl_home_free(home);
	return rc;
}

/* ---- on a slot of the running station ---- */

static const char slot_usage[] =
    "usage: keyline [--home DIR] provision --serial S [--slot NAME] [--tenant T]\n"
    "                                     [--work-order W] [--ek TYPE] [--no-wait] [--json]\n"
    "       keyline [--home DIR] provision --link TCTI --serial S ...   (no station: see\n"
    "                                     'keyline provision --link x --help')\n"
    "\nProvisions the DUT on a slot of the running station (the first free slot when\n"
    "--slot is not given) and shows its progress; Ctrl-C asks the station to abort.\n"
    "--ek: auto (default: what the TPM holds), rsa2048, p256, p384.\n"
    "exit status: 0 provisioned, 1 refused or failed, 2 usage error\n";

int kl_cmd_provision_station(const char *home, int argc, char **argv)
{
	json_object *p;
	struct kl_cli_opts o;
	int r;

	if ((r = kl_cli_options(argc, argv, slot_usage, &o)) >= 0)
		return r;
	if ((r = kl_cli_need("provision", "--serial", o.serial, slot_usage)))
		return r;
	p = json_object_new_object();
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.slot)
		json_object_object_add(p, "slot", json_object_new_string(o.slot));
	if (o.tenant)
		json_object_object_add(p, "tenant", json_object_new_string(o.tenant));
	if (o.work_order)
		json_object_object_add(p, "work_order", json_object_new_string(o.work_order));
	if (o.ek)
		json_object_object_add(p, "ek_type", json_object_new_string(o.ek));
	return kl_cli_run_job(home, "provision", "job.provision", p, &o);
}
