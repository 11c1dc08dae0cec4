/* The HSM lost mid-issuance, on a running station.
 *
 * `keyline demo --keep-running` builds a real line (SoftHSM CA, swtpm DUTs,
 * a station with a slot per DUT) whose hsm.module is the PKCS#11 shim of
 * test_hsm_keygen over SoftHSM. With KL_SHIM_DROP_AT_SIGN=3 the station's
 * third signature finds every session of the process gone, as when a
 * network HSM restarts: signature 1 is the station's sanitization-record
 * certificate at start, 2 and 3 are the first provisioning job's IAK and
 * IDevID certificates (one batch under the backend lock). So exactly one
 * job fails at issue. The test proves: that job fails cleanly (reason
 * issue_failed, the device back to preregistered with no valid
 * certificate: the failed serial recorded as rejected, the one signed
 * before the loss revoked, none pending);
 * the other job passes; the station reconnects by itself (one login; an
 * audit entry station.hsm.reconnected) and provisions the spare DUT
 * afterwards; station.status says the HSM is logged in; the daemon and the
 * demo stop cleanly with nothing left running.
 *
 * Then: a refused DUT makes the CA key sign nothing (the health probe is
 * for HSM failures, and never signs), and an env: PIN survives to the
 * reconnect. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include <openssl/crypto.h>

#include "json_test.h"
#include "cli_test.h"
#include "client.h"
#include "home.h"
#include "kl_error.h"

#ifndef KL_P11_SHIM_PATH
#error "KL_P11_SHIM_PATH must be defined by the build"
#endif

static json_object *call(kl_client *c, const char *method, json_object *params)
{
	json_object *res = NULL;

	if (kl_client_call_timeout(c, method, params, &res, 60000) < 0)
		fail_msg("%s: %s", method, kl_error_detail());
	return res;
}

static json_object *show(kl_client *c, const char *serial)
{
	json_object *p = json_object_new_object();

	json_object_object_add(p, "serial", json_object_new_string(serial));
	return call(c, "devices.show", p);
}

/* Rewrites keyline.conf's "module = ..." line. */
static void use_shim(const char *conf)
{
	char *text = slurp(conf), *line = strstr(text, "\nmodule = ");
	FILE *f;

	assert_non_null(line);
	f = fopen(conf, "w");
	assert_non_null(f);
	fwrite(text, 1, (size_t)(line - text) + 1, f);
	fprintf(f, "module = %s%s", KL_P11_SHIM_PATH, strchr(line + 1, '\n'));
	fclose(f);
	free(text);
}

static void test_hsm_lost_mid_issuance(void **state)
{
	struct env e = { 0 };
	char conf[PATH_MAX], out[PATH_MAX], sock[PATH_MAX], tmp[PATH_MAX];
	json_object *res, *p, *devs, *ev;
	const char *failed = NULL, *passed = NULL;
	kl_client *c = NULL;
	pid_t demo;
	int n_failed = 0, n_passed = 0;

	(void)state;
	assert_int_equal(kl_floor_new(&e.floor), 0);
	env_paths(&e, e.floor);
	assert_int_equal(keyline(&e, "ca", "init", "--org", "HSM loss", NULL), 0);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", e.home);
	use_shim(conf);

	/* The line, left running; its swtpm state under our directory. */
	static const char *const shim_env[] = { "KL_SHIM_DROP_AT_SIGN=3", NULL };
	demo = demo_line_start(&e, 2, 1, shim_env);
	snprintf(out, sizeof(out), "%s/demo.out", e.dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", e.dir);
	assert_in(out, "READY");
	assert_in(out, "REFUSED at issue [issue_failed]");
	assert_in(out, "Session handle invalid");

	assert_int_equal(kl_client_socket_path(e.home, sock, sizeof(sock)), 0);
	assert_int_equal(kl_client_connect(sock, &c), 0);

	/* Of the two trusted DUTs, the one whose batch met the loss failed
	 * cleanly; the other passed, unless it reached the CA before the
	 * station had reconnected (then it failed as cleanly). */
	p = json_object_new_object();
	json_object_object_add(p, "search", json_object_new_string("DEMO-"));
	res = call(c, "devices.list", p);
	devs = jget(res, "devices");
	size_t rejected = 0;
	for (size_t k = 0; k < 2; k++) {
		json_object *d = json_object_array_get_idx(devs, k);

		if (strcmp(jstr(d, "state"), "provisioned") == 0) {
			passed = jstr(d, "serial");
			n_passed++;
			continue;
		}
		assert_string_equal(jstr(d, "state"), "preregistered");
		failed = jstr(d, "serial");
		n_failed++;

		json_object *f = show(c, failed), *certs = jget(f, "certificates");

		for (size_t i = 0; i < json_object_array_length(certs); i++) {
			json_object *x = json_object_array_get_idx(certs, i);

			/* Nothing left pending or valid: the serial whose
			 * signature failed is recorded as rejected, and the
			 * batch's other certificate, signed before the loss,
			 * is revoked with the refusal. */
			assert_string_not_equal(jstr(x, "state"), "pending");
			if (strcmp(jstr(x, "state"), "issued") == 0)
				assert_true(json_object_get_boolean(jget(x, "revoked")));
			rejected += strcmp(jstr(x, "state"), "rejected") == 0;
		}
		json_object_put(f);
	}
	assert_int_equal(n_failed + n_passed, 2);
	assert_true(n_failed >= 1);
	assert_true(rejected >= 1);
	if (passed) {
		json_object *ok = show(c, passed);

		assert_int_equal(json_object_array_length(jget(ok, "certificates")), 2);
		json_object_put(ok);
	}
	json_object_put(res);

	/* The station reconnected by itself and says so. */
	res = call(c, "station.status", NULL);
	assert_true(json_object_get_boolean(jget(res, "hsm_logged_in")));
	json_object_put(res);
	p = json_object_new_object();
	json_object_object_add(p, "action", json_object_new_string("station.hsm"));
	res = call(c, "audit.list", p);
	assert_int_equal(json_object_array_length(jget(res, "entries")), 1);
	assert_string_equal(jstr(json_object_array_get_idx(jget(res, "entries"), 0), "action"),
	                    "station.hsm.reconnected");
	json_object_put(res);

	/* And provisions again: the spare DUT on slot-04 (DEMO-0004). */
	json_object_put(call(c, "events.subscribe", NULL));
	p = json_object_new_object();
	json_object_object_add(p, "slot", json_object_new_string("slot-04"));
	json_object_object_add(p, "serial", json_object_new_string("DEMO-0004"));
	res = call(c, "job.provision", p);
	json_object_put(res);
	for (;;) {
		assert_int_equal(kl_client_next_event(c, 60000, &ev), 0);
		if (strcmp(jstr(ev, "type"), "job.finished") == 0 &&
		    strcmp(jstr(ev, "serial"), "DEMO-0004") == 0) {
			assert_string_equal(jstr(ev, "result"), "passed");
			json_object_put(ev);
			break;
		}
		json_object_put(ev);
	}
	res = show(c, "DEMO-0004");
	assert_string_equal(jstr(jget(res, "device"), "state"), "provisioned");
	json_object_put(res);
	kl_client_free(c);

	/* Ctrl-C: the demo stops the station and the DUTs. */
	demo_line_stop(&e, demo);
	assert_int_equal(kl_procs_left(tmp, 10000), 0);
	assert_int_equal(kl_procs_left(e.home, 10000), 0);
	assert_int_not_equal(access(sock, F_OK), 0);
	kl_floor_free(e.floor);
}

/* Lines "sign LABEL" in the shim's log (KL_SHIM_SIGN_LOG). */
static int signs_by(const char *log, const char *label)
{
	char want[128], line[256];
	int n = 0;
	FILE *f = fopen(log, "r");

	snprintf(want, sizeof(want), "sign %s\n", label);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strcmp(line, want) == 0;
	fclose(f);
	return n;
}

/* The label of the issuing CA key: keyline.conf's ca.key, a bare label or
 * an RFC 7512 URI's object=. */
static void ca_key_label(const char *conf, char *out, size_t size)
{
	char *text = slurp(conf), *at = strstr(text, "\nkey = "), *obj;

	assert_non_null(at);
	at += strlen("\nkey = ");
	obj = strstr(at, "object=");
	if (strncmp(at, "pkcs11:", 7) == 0 && obj && obj < strchr(at, '\n'))
		at = obj + strlen("object=");
	snprintf(out, size, "%.*s", (int)strcspn(at, ";\n"), at);
	free(text);
}

/* A DUT refused for a reason that is not the HSM's (a serial nobody
 * pre-registered) makes no HSM probe: the CA key signs nothing for it (the
 * shim logs every C_SignInit of the station process by key label). */
static void test_refused_dut_no_ca_signature(void **state)
{
	struct env e = { 0 };
	char conf[PATH_MAX], sock[PATH_MAX], log[PATH_MAX], env_log[PATH_MAX + 32], label[128];
	json_object *res, *p, *ev;
	kl_client *c = NULL;
	int before;
	pid_t demo;

	(void)state;
	assert_int_equal(kl_floor_new(&e.floor), 0);
	env_paths(&e, e.floor);
	assert_int_equal(keyline(&e, "ca", "init", "--org", "HSM probe", NULL), 0);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", e.home);
	use_shim(conf);
	ca_key_label(conf, label, sizeof(label));
	snprintf(log, sizeof(log), "%s/signs.log", e.dir);
	snprintf(env_log, sizeof(env_log), "KL_SHIM_SIGN_LOG=%s", log);
	const char *const sign_env[] = { env_log, NULL };
	demo = demo_line_start(&e, 1, 1, sign_env);
	/* The line issued certificates: the log sees the CA key. */
	assert_true(signs_by(log, label) > 0);

	assert_int_equal(kl_client_socket_path(e.home, sock, sizeof(sock)), 0);
	assert_int_equal(kl_client_connect(sock, &c), 0);
	json_object_put(call(c, "events.subscribe", NULL));
	before = signs_by(log, label);
	p = json_object_new_object();
	json_object_object_add(p, "serial", json_object_new_string("NOBODY-0001"));
	res = call(c, "job.provision", p);
	json_object_put(res);
	for (;;) {
		assert_int_equal(kl_client_next_event(c, 60000, &ev), 0);
		if (strcmp(jstr(ev, "type"), "job.finished") == 0 &&
		    strcmp(jstr(ev, "serial"), "NOBODY-0001") == 0) {
			assert_string_equal(jstr(ev, "result"), "failed");
			assert_string_equal(jstr(ev, "reason"), "not_preregistered");
			json_object_put(ev);
			break;
		}
		json_object_put(ev);
	}
	/* job.finished comes after the worker's HSM check, if any. */
	assert_int_equal(signs_by(log, label), before);
	res = call(c, "station.status", NULL);
	assert_true(json_object_get_boolean(jget(res, "hsm_logged_in")));
	json_object_put(res);
	kl_client_free(c);
	demo_line_stop(&e, demo);
	kl_floor_free(e.floor);
}

/* pin = env:NAME: read once, at the first login, and the variable unset;
 * a reopen (the station's reconnect) logs in again with the kept PIN
 * instead of finding the variable gone. pin = prompt: a reopen refuses,
 * without asking, since a daemon cannot. */
static void test_env_pin_reconnect(void **state)
{
	struct env e = { 0 };
	char conf[PATH_MAX], pin_file[PATH_MAX], *text, *pin, *line;
	kl_home *h = NULL;
	kl_ca *ca = NULL;
	FILE *f;

	(void)state;
	assert_int_equal(kl_floor_new(&e.floor), 0);
	env_paths(&e, e.floor);
	assert_int_equal(keyline(&e, "ca", "init", "--org", "env PIN", NULL), 0);
	snprintf(conf, sizeof(conf), "%s/keyline.conf", e.home);
	snprintf(pin_file, sizeof(pin_file), "%s/secrets/keyline-ca.pin", e.home);
	pin = slurp(pin_file);
	pin[strcspn(pin, "\r\n")] = '\0';
	assert_true(pin[0] != '\0');

	text = slurp(conf);
	line = strstr(text, "\npin = file:");
	assert_non_null(line);
	f = fopen(conf, "w");
	assert_non_null(f);
	fwrite(text, 1, (size_t)(line - text) + 1, f);
	fprintf(f, "pin = env:KL_TEST_CA_PIN%s", strchr(line + 1, '\n'));
	fclose(f);
	assert_int_equal(setenv("KL_TEST_CA_PIN", pin, 1), 0);
	OPENSSL_cleanse(pin, strlen(pin));
	free(pin);

	assert_int_equal(kl_home_open(e.home, &h), 0);
	if (kl_home_ca(h, "test", &ca) < 0)
		fail_msg("first login: %s", kl_error_detail());
	assert_null(getenv("KL_TEST_CA_PIN"));
	if (kl_home_ca_reopen(h, "test", &ca) < 0)
		fail_msg("reconnect with pin = env: %s", kl_error_detail());
	assert_non_null(h->ca_key);
	kl_home_free(h);
	h = NULL;

	/* prompt: refused at once, nothing asked. */
	f = fopen(conf, "w");
	assert_non_null(f);
	fwrite(text, 1, (size_t)(line - text) + 1, f);
	fprintf(f, "pin = prompt%s", strchr(line + 1, '\n'));
	fclose(f);
	free(text);
	assert_int_equal(kl_home_open(e.home, &h), 0);
	assert_int_equal(kl_home_ca_reopen(h, "test", &ca), -KL_E_PIN);
	if (!strstr(kl_error_detail(), "restart it"))
		fail_msg("prompt reopen: %s", kl_error_detail());
	kl_home_free(h);
	kl_floor_free(e.floor);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hsm_lost_mid_issuance),
		cmocka_unit_test(test_refused_dut_no_ca_signature),
		cmocka_unit_test(test_env_pin_reconnect),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
