/* keyline revoke, lost and crl: revocation through the running station,
 * each publishing the CRL. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"

static const char revoke_usage[] =
    "usage: keyline [--home DIR] revoke (--serial DEVICE | --certificate HEX) [--reason R]\n"
    "       keyline [--home DIR] lost --serial DEVICE [--reason R]\n"
    "\nrevoke  (officer) revokes every valid certificate of a device, or one certificate;\n"
    "        reason: an RFC 5280 name (unspecified, keyCompromise, superseded,\n"
    "        cessationOfOperation, ...); the CRL is rebuilt and published\n"
    "lost    (service) a device that is not present: its certificates revoked\n"
    "        (keyCompromise unless --reason), marked lost, its EK deny-listed\n";

int kl_cmd_revoke(const char *home, int argc, char **argv)
{
	const char *cmd = argv[0];
	json_object *p, *res = NULL;
	struct kl_cli_opts o;
	kl_cli_api a;
	int r;

	if ((r = kl_cli_options(argc, argv, revoke_usage, &o)) >= 0)
		return r;
	if (strcmp(cmd, "lost") == 0 && (r = kl_cli_need(cmd, "--serial", o.serial, revoke_usage)))
		return r;
	p = json_object_new_object();
	if (o.serial)
		json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.cert)
		json_object_object_add(p, "certificate", json_object_new_string(o.cert));
	if (o.reason)
		json_object_object_add(p, "reason", json_object_new_string(o.reason));
	if (kl_cli_api_open(home, true, &a) < 0) {
		json_object_put(p);
		return kl_cli_fail(cmd);
	}
	r = kl_cli_api_call(&a, strcmp(cmd, "lost") == 0 ? "device.lost" : "device.revoke", p,
	                    &res);
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail(cmd);
	if (o.json)
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	else
		printf("%lld certificate(s) revoked; CRL %s (number %lld)\n",
		       (long long)kl_cli_jint(res, "revoked"),
		       *kl_cli_jstr(res, "crl") ? kl_cli_jstr(res, "crl") : "NOT published",
		       (long long)kl_cli_jint(res, "crl_number"));
	json_object_put(res);
	return 0;
}

static const char crl_usage[] = "usage: keyline [--home DIR] crl [--json]\n"
                                "\nAsks the station to sign and publish a fresh CRL.\n";

int kl_cmd_crl(const char *home, int argc, char **argv)
{
	json_object *res = NULL;
	struct kl_cli_opts o;
	kl_cli_api a;
	int r;

	if ((r = kl_cli_options(argc, argv, crl_usage, &o)) >= 0)
		return r;
	if (kl_cli_api_open(home, true, &a) < 0)
		return kl_cli_fail("crl");
	r = kl_cli_api_call(&a, "crl.publish", NULL, &res);
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail("crl");
	if (o.json)
		kl_cli_print_json(res, JSON_C_TO_STRING_PRETTY);
	else
		printf("CRL %lld published: %s\n", (long long)kl_cli_jint(res, "crl_number"),
		       kl_cli_jstr(res, "path"));
	json_object_put(res);
	return 0;
}
