/* keyline renew, decommission, repurpose: lifecycle jobs on a slot of the
 * running station (docs/lifecycle.md); keyline record: the signed
 * sanitization record a decommission left. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "cli_internal.h"
#include "kl_error.h"

static const char life_usage[] =
    "usage: keyline [--home DIR] renew --slot NAME --serial S [--no-wait] [--json]\n"
    "       keyline [--home DIR] decommission --slot NAME --serial S [--repurpose] ...\n"
    "       keyline [--home DIR] repurpose --slot NAME --serial S ...\n"
    "\nrenew         the device on the slot proves its identity; its IAK certifies a new\n"
    "              IDevID key; a new certificate; the old one revoked (superseded)\n"
    "decommission  the device proves its identity; all its certificates revoked\n"
    "              (cessationOfOperation); its TPM cryptographically erased and read back;\n"
    "              a signed sanitization record ('keyline record S'); the EK deny-listed\n"
    "repurpose     decommission for reuse: the EK is not deny-listed and the device may be\n"
    "              pre-registered and provisioned again for another tenant\n";

int kl_cmd_lifecycle(const char *home, int argc, char **argv)
{
	const char *cmd = argv[0];
	json_object *p;
	struct kl_cli_opts o;
	int r;

	if ((r = kl_cli_options(argc, argv, life_usage, &o)) >= 0)
		return r;
	if ((r = kl_cli_need(cmd, "--slot", o.slot, life_usage)) ||
	    (r = kl_cli_need(cmd, "--serial", o.serial, life_usage)))
		return r;
	p = json_object_new_object();
	json_object_object_add(p, "slot", json_object_new_string(o.slot));
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (strcmp(cmd, "decommission") == 0 && o.repurpose)
		json_object_object_add(p, "repurpose", json_object_new_boolean(true));
	return kl_cli_run_job(home, cmd,
	                      strcmp(cmd, "renew") == 0       ? "device.renew"
	                      : strcmp(cmd, "repurpose") == 0 ? "device.repurpose"
	                                                      : "device.decommission",
	                      p, &o);
}

static const char record_usage[] =
    "usage: keyline [--home DIR] record --serial DEVICE [--id N]\n"
    "\nPrints a device's signed sanitization record (JSON), the newest unless --id.\n";

int kl_cmd_record(const char *home, int argc, char **argv)
{
	json_object *p, *res = NULL, *record;
	struct kl_cli_opts o;
	kl_cli_api a;
	int r;

	if ((r = kl_cli_options(argc, argv, record_usage, &o)) >= 0)
		return r;
	if ((r = kl_cli_need("record", "--serial", o.serial, record_usage)))
		return r;
	p = json_object_new_object();
	json_object_object_add(p, "serial", json_object_new_string(o.serial));
	if (o.id > 0)
		json_object_object_add(p, "id", json_object_new_int64(o.id));
	if (kl_cli_api_open(home, false, &a) < 0) {
		json_object_put(p);
		return kl_cli_fail("record");
	}
	r = kl_cli_api_call(&a, "device.record", p, &res);
	kl_cli_api_close(&a);
	if (r < 0)
		return kl_cli_fail("record");
	record = kl_cli_jget(res, "record");
	if (!record) {
		json_object_put(res);
		kl_error_set(KL_E_INVALID, "the station's answer holds no record");
		return kl_cli_fail("record");
	}
	kl_cli_print_json(record, JSON_C_TO_STRING_PRETTY);
	json_object_put(res);
	return 0;
}
