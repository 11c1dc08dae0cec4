/* Shared by the tests that drive a running `keyline station` over its
 * socket with real agents attached (test_station_agent, test_station_usb):
 * the floor and CA they start from, calls, events waited for with the
 * ones that came first kept, the registry and audit answers they check,
 * the daemon's stop. Include after cmocka.h, json_test.h and cli_test.h. */
#ifndef KL_STATION_TEST_H
#define KL_STATION_TEST_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "client.h"
#include "kl_error.h"

/* The events that came while another was waited for, in order. */
struct st_events {
	json_object *kept[1024];
	size_t nkept;
};

static inline json_object *st_call_ok(kl_client *c, const char *method, const char *params)
{
	json_object *p = params ? json_tokener_parse(params) : NULL, *res = NULL;

	if (params && !p)
		fail_msg("test bug: params are not JSON: %s", params);
	if (kl_client_call_timeout(c, method, p, &res, 60000) < 0)
		fail_msg("%s %s: %s", method, params ? params : "", kl_error_detail());
	return res;
}

/* An event of type whose key is value (key NULL: any). */
static inline bool st_matches(json_object *ev, const char *type, const char *key, const char *value)
{
	return strcmp(jstr(ev, "type"), type) == 0 && (!key || strcmp(jstr(ev, key), value) == 0);
}

/* The next event of type whose key is value (key NULL: any): a kept one
 * first, then from c within liveness_ms, keeping the others; log is the
 * station's, shown when none comes. */
static inline json_object *st_wait_event(kl_client *c, struct st_events *k, const char *log,
                                         int liveness_ms, const char *type, const char *key,
                                         const char *value)
{
	int64_t until = mono_ms() + liveness_ms;

	for (size_t i = 0; i < k->nkept; i++)
		if (st_matches(k->kept[i], type, key, value)) {
			json_object *ev = k->kept[i];

			memmove(&k->kept[i], &k->kept[i + 1],
			        (k->nkept - i - 1) * sizeof(k->kept[0]));
			k->nkept--;
			return ev;
		}
	while (mono_ms() < until) {
		json_object *ev = NULL;
		int r = kl_client_next_event(c, 1000, &ev);

		if (r == -KL_E_TIMEOUT)
			continue;
		if (r < 0)
			fail_msg("waiting for %s: %s", type, kl_error_detail());
		if (st_matches(ev, type, key, value))
			return ev;
		if (k->nkept < sizeof(k->kept) / sizeof(k->kept[0]))
			k->kept[k->nkept++] = ev;
		else
			json_object_put(ev);
	}
	fail_msg("no %s event (%s=%s) within %d s\n%s", type, key ? key : "-", value ? value : "-",
	         liveness_ms / 1000, slurp(log));
	return NULL;
}

static inline void st_forget_events(struct st_events *k)
{
	for (size_t i = 0; i < k->nkept; i++)
		json_object_put(k->kept[i]);
	k->nkept = 0;
}

/* Closes *c, drops the kept events and stops the daemon *daemon (its log
 * shown when it did not exit 0). */
static inline void st_daemon_stop(kl_client **c, struct st_events *k, pid_t *daemon,
                                  const char *log)
{
	kl_client_free(*c);
	*c = NULL;
	st_forget_events(k);
	if (*daemon > 0) {
		int rc = station_stop(*daemon, 60000);

		*daemon = 0;
		if (rc != 0)
			fprintf(stderr, "station exit %d, log:\n%s\n", rc, slurp(log));
	}
}

/* pid's exit status, or 128 + signal, waited for within liveness_ms; -1
 * when it did not exit by then. */
static inline int st_wait_exit(pid_t pid, int liveness_ms)
{
	int64_t until = mono_ms() + liveness_ms;
	int st = 0;

	while (mono_ms() < until) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		sleep_ms(20);
	}
	return -1;
}

static inline void st_preregister(kl_client *c, const char *serial)
{
	char p[256];

	snprintf(p, sizeof(p), "{\"tenant\":\"acme\",\"work_order\":\"wo-1\",\"items\":[\"%s\"]}",
	         serial);
	json_object_put(st_call_ok(c, "devices.preregister", p));
}

/* devices.show serial; put it. */
static inline json_object *st_device_show(kl_client *c, const char *serial)
{
	char p[128];

	snprintf(p, sizeof(p), "{\"serial\":\"%s\"}", serial);
	return st_call_ok(c, "devices.show", p);
}

/* The SHA-256 (hex) of the device's valid IDevID certificate, and how
 * many valid (issued, not revoked) certificates it has. */
static inline size_t st_device_certs(kl_client *c, const char *serial, char fp[65])
{
	json_object *r = st_device_show(c, serial), *certs = jget(r, "certificates");
	size_t n = json_object_array_length(certs), valid = 0;

	fp[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(certs, i);
		unsigned char md[32], *der = NULL;
		BIO *b;
		X509 *x;
		int len;

		if (strcmp(jstr(e, "state"), "issued") != 0 || jbool(e, "revoked"))
			continue;
		valid++;
		if (strcmp(jstr(e, "profile"), "idevid") != 0)
			continue;
		b = BIO_new_mem_buf(jstr(e, "pem"), -1);
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		assert_non_null(x);
		len = i2d_X509(x, &der);
		assert_true(len > 0);
		EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL);
		for (int j = 0; j < 32; j++)
			sprintf(fp + 2 * j, "%02x", md[j]);
		OPENSSL_free(der);
		X509_free(x);
		BIO_free(b);
	}
	json_object_put(r);
	return valid;
}

/* The device's state (a static buffer). */
static inline const char *st_device_state(kl_client *c, const char *serial)
{
	static char state[32];
	json_object *r = st_device_show(c, serial);

	snprintf(state, sizeof(state), "%s", jstr(jget(r, "device"), "state"));
	json_object_put(r);
	return state;
}

/* Waits (bounded: entries are written on the backend worker) for an audit
 * entry of action whose detail's reason is reason. */
static inline void st_expect_audit(kl_client *c, int liveness_ms, const char *action,
                                   const char *reason)
{
	int64_t until = mono_ms() + liveness_ms;
	char p[128];

	snprintf(p, sizeof(p), "{\"action\":\"%s\"}", action);
	while (mono_ms() < until) {
		json_object *r = st_call_ok(c, "audit.list", p), *a = jget(r, "entries");
		bool found = false;

		for (size_t i = 0; a && i < json_object_array_length(a) && !found; i++) {
			json_object *d = jget(json_object_array_get_idx(a, i), "detail");

			found = d && strcmp(jstr(d, "reason"), reason) == 0;
		}
		json_object_put(r);
		if (found)
			return;
		sleep_ms(50);
	}
	fail_msg("no audit entry %s with reason %s", action, reason);
}

static inline void st_expect_finished(json_object *ev, const char *result, const char *reason)
{
	if (strcmp(jstr(ev, "result"), result) != 0 ||
	    (reason && strcmp(jstr(ev, "reason"), reason) != 0))
		fail_msg("job %lld: %s [%s] %s, expected %s [%s]", (long long)jint(ev, "job"),
		         jstr(ev, "result"), jstr(ev, "reason"), jstr(ev, "message"), result,
		         reason ? reason : "");
}

/* The slot's DUT in slots.list: its serial, or "" when free (a static
 * buffer). */
static inline const char *st_slot_dut(kl_client *c, const char *slot)
{
	static char serial[80];
	json_object *r = st_call_ok(c, "slots.list", NULL), *a = jget(r, "slots");

	serial[0] = '\0';
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *e = json_object_array_get_idx(a, i), *d;

		if (strcmp(jstr(e, "name"), slot) == 0 && json_object_object_get_ex(e, "dut", &d) &&
		    d)
			snprintf(serial, sizeof(serial), "%s", jstr(d, "serial"));
	}
	json_object_put(r);
	return serial;
}

/* The floor for a station test: n DUTs of "Acme TPM" with serials from
 * prefix, started; e's paths in it, its CA (`keyline ca init`) and the
 * vendor's roots in home/trust; log and sock, the station's, in e's
 * directory; base (base_size) the keyline.conf `ca init` wrote, which ends
 * inside [station]. 0, or -1. */
static inline int st_floor_setup(struct env *e, kl_vendor **acme, kl_dut ***duts,
                                 const char *prefix, int n, char log[PATH_MAX], char sock[PATH_MAX],
                                 char *base_conf, size_t base_size)
{
	char conf[PATH_MAX], p[PATH_MAX], *base;
	const char *cp1[] = { "cp", NULL, NULL, NULL }, *cp2[] = { "cp", NULL, NULL, NULL };
	char root[PATH_MAX], inter[PATH_MAX];

	if (kl_floor_new(&e->floor) < 0 || kl_floor_vendor(e->floor, "Acme TPM", acme) < 0 ||
	    kl_floor_manufacture(e->floor, *acme, prefix, n, duts) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (kl_dut_start(e->floor, (*duts)[i]) < 0)
			return -1;
	env_paths(e, e->floor);
	snprintf(log, PATH_MAX, "%s/station.log", e->dir);
	snprintf(sock, PATH_MAX, "%s/station.sock", e->dir);
	if (keyline(e, "ca", "init", NULL) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/trust", e->home);
	mkdir(p, 0755);
	snprintf(root, sizeof(root), "%s/trust/acme.pem", e->home);
	snprintf(inter, sizeof(inter), "%s/trust/acme-issuing.pem", e->home);
	cp1[1] = (*acme)->root_pem;
	cp1[2] = root;
	cp2[1] = (*acme)->intermediate_pem;
	cp2[2] = inter;
	if (kl_floor_run(e->floor, NULL, NULL, cp1) != 0 ||
	    kl_floor_run(e->floor, NULL, NULL, cp2) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/keyline.conf", e->home);
	base = slurp(conf);
	if (strlen(base) >= base_size) {
		free(base);
		return -1;
	}
	snprintf(base_conf, base_size, "%s", base);
	free(base);
	return 0;
}

#endif
