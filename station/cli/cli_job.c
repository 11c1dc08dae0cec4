/* A job of the running station from the command line: submitted, followed
 * through its step events with a progress bar, and printed. provision on a
 * slot, renew, decommission and repurpose run through here; jobs prints. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli_internal.h"
#include "client.h"
#include "kl_error.h"

void kl_cli_print_job(json_object *j)
{
	json_object *res = kl_cli_jget(j, "result");

	printf("job %lld: %s %s on slot %s: %s", (long long)kl_cli_jint(j, "job"),
	       kl_cli_jstr(j, "kind"), kl_cli_jstr(j, "serial"), kl_cli_jstr(j, "slot"),
	       kl_cli_jstr(j, "state"));
	if (res && !kl_cli_jbool(res, "ok"))
		printf(" at %s [%s]: %s", kl_cli_jstr(res, "failed_step"),
		       kl_cli_jstr(res, "reason"), kl_cli_jstr(res, "message"));
	if (res)
		printf(" (%.0f ms)", kl_cli_jdbl(res, "total_ms"));
	if (res && *kl_cli_jstr(res, "idevid_serial"))
		printf("\n  IDevID %s, IAK %s, EK %s%s", kl_cli_jstr(res, "idevid_serial"),
		       kl_cli_jstr(res, "iak_serial"), kl_cli_jstr(res, "ek_type"),
		       kl_cli_jbool(res, "already_provisioned") ? ", already provisioned" : "");
	if (res && *kl_cli_jstr(res, "new_serial"))
		printf("\n  new IDevID certificate %s", kl_cli_jstr(res, "new_serial"));
	if (res && kl_cli_jint(res, "record_id"))
		printf("\n  sanitization record %lld ('keyline record %s')",
		       (long long)kl_cli_jint(res, "record_id"), kl_cli_jstr(j, "serial"));
	printf("\n");
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void bar(const char *serial, const char *step, int idx, int of, double secs)
{
	char b[21];
	int fill = of > 0 ? idx * 20 / of : 0;

	for (int i = 0; i < 20; i++)
		b[i] = i < fill ? '#' : '.';
	b[20] = 0;
	if (of > 0)
		fprintf(stderr, "\r  %-16s [%s] %2d/%-2d %-14s %5.1fs", serial, b, idx, of, step,
		        secs);
	else
		fprintf(stderr, "\r  %-16s %-20s %5.1fs", serial, step, secs);
	fflush(stderr);
}

int kl_cli_run_job(const char *home, const char *cmd, const char *method, json_object *params,
                   const struct kl_cli_opts *o)
{
	json_object *job = NULL, *ev = NULL, *final = NULL;
	bool tty = isatty(STDERR_FILENO) && !o->json;
	int64_t id;
	kl_client *c;
	struct timespec t0, t1;
	int r, rc = 1;

	if (kl_cli_connect(home, &c) < 0) {
		json_object_put(params);
		return kl_cli_fail(cmd);
	}
	/* Subscribe first so that no event of the job is missed. */
	if (o->wait) {
		json_object *sp = NULL, *sr = NULL;

		if (o->slot) {
			sp = json_object_new_object();
			json_object_object_add(sp, "slot", json_object_new_string(o->slot));
		}
		if (kl_client_call(c, "events.subscribe", sp, &sr) < 0) {
			kl_client_free(c);
			json_object_put(params);
			return kl_cli_fail(cmd);
		}
		json_object_put(sr);
	}
	if (kl_client_call(c, method, params, &job) < 0) {
		kl_client_free(c);
		return kl_cli_fail(cmd);
	}
	id = kl_cli_jint(job, "job");
	if (!o->wait) {
		if (o->json)
			kl_cli_print_json(job, JSON_C_TO_STRING_PRETTY);
		else
			printf("job %lld queued on slot %s ('keyline jobs show --id %lld')\n",
			       (long long)id, kl_cli_jstr(job, "slot"), (long long)id);
		json_object_put(job);
		kl_client_free(c);
		return 0;
	}
	if (!o->json)
		fprintf(stderr, "%s %s on slot %s (job %lld)\n", kl_cli_jstr(job, "kind"),
		        kl_cli_jstr(job, "serial"), kl_cli_jstr(job, "slot"), (long long)id);
	json_object_put(job);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	signal(SIGINT, on_sigint);
	for (;;) {
		if (interrupted) {
			json_object *ap = json_object_new_object(), *ar = NULL;

			interrupted = 0;
			json_object_object_add(ap, "job", json_object_new_int64(id));
			fprintf(stderr,
			        "\n  interrupt: asking the station to stop job %lld at its "
			        "next step\n",
			        (long long)id);
			if (kl_client_call(c, "job.abort", ap, &ar) == 0)
				json_object_put(ar);
		}
		r = kl_client_next_event(c, 250, &ev);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (r == -KL_E_TIMEOUT)
			continue;
		if (r < 0) {
			fprintf(stderr, "\nkeyline %s: %s\n", cmd, kl_error_detail());
			break;
		}
		if (kl_cli_jint(ev, "job") == id) {
			const char *type = kl_cli_jstr(ev, "type");
			double secs = (double)(t1.tv_sec - t0.tv_sec) +
			              (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

			if (tty && strcmp(type, "step.started") == 0)
				bar(kl_cli_jstr(ev, "serial"), kl_cli_jstr(ev, "step"),
				    (int)kl_cli_jint(ev, "index") - 1, (int)kl_cli_jint(ev, "of"),
				    secs);
			else if (tty && strcmp(type, "step.finished") == 0)
				bar(kl_cli_jstr(ev, "serial"), kl_cli_jstr(ev, "step"),
				    (int)kl_cli_jint(ev, "index"), (int)kl_cli_jint(ev, "of"),
				    secs);
			if (strcmp(type, "job.finished") == 0) {
				json_object *gp = json_object_new_object();

				if (tty)
					fprintf(stderr, "\n");
				json_object_object_add(gp, "job", json_object_new_int64(id));
				if (kl_client_call(c, "job.get", gp, &final) < 0) {
					rc = kl_cli_fail(cmd);
				} else {
					if (o->json)
						kl_cli_print_json(final, JSON_C_TO_STRING_PRETTY);
					else
						kl_cli_print_job(final);
					rc = strcmp(kl_cli_jstr(final, "state"), "passed") == 0 ? 0
					                                                        : 1;
				}
				json_object_put(ev);
				break;
			}
		}
		json_object_put(ev);
	}
	signal(SIGINT, SIG_DFL);
	json_object_put(final);
	kl_client_free(c);
	return rc;
}
