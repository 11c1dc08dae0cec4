/* The socket API's devices: the registry's devices, filtered and paged;
 * one device with its history, certificates, evidence and audit
 * (docs/api.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "api_internal.h"

static void device_put(kl_rpc_obj *e, const kl_registry_device *d)
{
	kl_rpc_obj_put_str(e, "serial", d->serial);
	kl_rpc_obj_put_str(e, "tenant", d->tenant);
	kl_rpc_obj_put_str(e, "work_order", d->work_order[0] ? d->work_order : NULL);
	kl_rpc_obj_put_str(e, "state", kl_registry_state_name(d->state));
	kl_rpc_obj_put_str(e, "ek_sha256", d->ek_sha256[0] ? d->ek_sha256 : NULL);
	kl_rpc_obj_put_int(e, "created", d->created);
	kl_rpc_obj_put_int(e, "state_time", d->state_time);
}

static int list_one(void *ctx, const kl_registry_device *d)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r == 0)
		device_put(e, d);
	return r;
}

static int m_devices_list(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	const char *state = api_str_or(call, "state", NULL);
	kl_registry_filter f = {
		.state = -1,
		.tenant = api_str_or(call, "tenant", NULL),
		.search = api_str_or(call, "search", NULL),
		.offset = api_int_or(call, "offset", 0),
		.limit = api_int_or(call, "limit", 100),
	};
	kl_rpc_obj *o, *a;
	int64_t total = 0;
	bool newest = false;
	int r;

	kl_rpc_param_bool(call, "newest_first", &newest);
	f.newest_first = newest;
	if (state && (f.state = kl_registry_state_from_name(state)) < 0)
		return kl_rpc_reply_params(call, "%s", kl_error_detail());
	if (f.offset < 0 || f.limit < 1 || f.limit > 1000)
		return kl_rpc_reply_params(call, "offset must be >= 0 and limit 1..1000");
	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "devices", &a) < 0)
		return -KL_E_NOMEM;
	r = kl_registry_device_count(s->rreg, &f, &total);
	if (r == 0)
		r = kl_registry_device_list(s->rreg, &f, list_one, a);
	if (r < 0)
		return r;
	kl_rpc_obj_put_int(o, "total", total);
	kl_rpc_obj_put_int(o, "offset", f.offset);
	kl_rpc_obj_put_int(o, "count", r);
	return 0;
}

static int history_one(void *ctx, const kl_registry_event *ev)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r < 0)
		return r;
	kl_rpc_obj_put_str(e, "from",
	                   ev->from < 0 ? NULL : kl_registry_state_name((kl_device_state)ev->from));
	kl_rpc_obj_put_str(e, "to", kl_registry_state_name(ev->to));
	kl_rpc_obj_put_str(e, "tenant", ev->tenant);
	kl_rpc_obj_put_str(e, "reason", ev->reason);
	kl_rpc_obj_put_str(e, "actor", ev->actor);
	kl_rpc_obj_put_int(e, "time", ev->time);
	return 0;
}

static int evidence_one(void *ctx, const char *json, int64_t created)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r == 0)
		r = kl_rpc_obj_put_int(e, "created", created);
	if (r == 0)
		r = kl_rpc_obj_put_json(e, "record", json);
	return r;
}

static int cert_one(void *ctx, const kl_registry_cert *c)
{
	kl_rpc_obj *e;
	int r = kl_rpc_obj_put_object(ctx, NULL, &e);

	if (r < 0)
		return r;
	kl_rpc_obj_put_str(e, "serial", c->serial);
	kl_rpc_obj_put_str(e, "profile", c->profile);
	kl_rpc_obj_put_str(e, "state", c->state);
	kl_rpc_obj_put_int(e, "not_after", c->not_after);
	kl_rpc_obj_put_bool(e, "revoked", c->revoked != 0);
	if (c->revoked) {
		kl_rpc_obj_put_int(e, "revoked_time", c->revoked);
		kl_rpc_obj_put_str(e, "revocation_reason", kl_crl_reason_name(c->reason));
	}
	if (c->der) {
		const unsigned char *p = c->der;
		X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
		BIO *b = BIO_new(BIO_s_mem());
		char *pem;
		long n;

		if (x && b && PEM_write_bio_X509(b, x)) {
			n = BIO_get_mem_data(b, &pem);
			char *z = strndup(pem, (size_t)n);

			kl_rpc_obj_put_str(e, "pem", z);
			free(z);
		}
		if (x) {
			char subj[256];

			X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
			kl_rpc_obj_put_str(e, "subject", subj);
		}
		BIO_free(b);
		X509_free(x);
	}
	return 0;
}

/* devices.show lists at most this many of a device's audit entries, the
 * newest; "audit_more" says when there are older ones. */
#define SHOW_AUDIT_MAX 1000

struct show_audit {
	struct api_audit_ctx ac;
	int64_t n;
	bool more;
};

static int show_audit_one(void *ctx, const kl_audit_entry *a)
{
	struct show_audit *sa = ctx;

	if (sa->n++ == SHOW_AUDIT_MAX) {
		sa->more = true;
		return 0;
	}
	return api_audit_one(&sa->ac, a);
}

static int m_devices_show(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	const char *serial = api_str_or(call, "serial", "");
	kl_registry_device d;
	kl_rpc_obj *o, *dev, *h, *ev, *certs, *au;
	int r;

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	r = kl_registry_device_get(s->rreg, serial, &d);
	if (r == 0) {
		kl_rpc_obj_put_object(o, "device", &dev);
		device_put(dev, &d);
		kl_rpc_obj_put_str(dev, "expected_ek", d.expected_ek[0] ? d.expected_ek : NULL);
		kl_rpc_obj_put_array(o, "history", &h);
		kl_rpc_obj_put_array(o, "certificates", &certs);
		kl_rpc_obj_put_array(o, "evidence", &ev);
		kl_rpc_obj_put_array(o, "audit", &au);
		struct show_audit sa = { .ac = { .arr = au } };

		if ((r = kl_registry_device_history(s->rreg, serial, history_one, h)) >= 0 &&
		    (r = kl_registry_device_certs(s->rreg, serial, cert_one, certs)) >= 0 &&
		    (r = kl_registry_device_evidence(s->rreg, serial, evidence_one, ev)) >= 0 &&
		    (r = kl_store_audit_device(s->rstore, serial, 0, SHOW_AUDIT_MAX + 1,
		                               show_audit_one, &sa)) >= 0)
			r = kl_rpc_obj_put_bool(o, "audit_more", sa.more);
	}
	return r < 0 ? r : 0;
}

static const kl_rpc_param p_devices[] = {
	{ "state", KL_RPC_STRING, false },
	{ "tenant", KL_RPC_STRING, false },
	{ "search", KL_RPC_STRING, false },
	{ "offset", KL_RPC_INT, false },
	{ "limit", KL_RPC_INT, false },
	{ "newest_first", KL_RPC_BOOL, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_serial[] = { { "serial", KL_RPC_STRING, true }, { NULL, 0, false } };

/* devices.list, devices.show (devices.preregister: api_prereg.c) */
const kl_rpc_method st_api_devices[] = {
	{ "devices.list", ALL, p_devices, m_devices_list,
	  "devices, filtered and paged (state, tenant, search)" },
	{ "devices.show", ALL, p_serial, m_devices_show,
	  "a device: state, history, certificates, evidence, audit" },
	{ NULL, 0, NULL, NULL, NULL },
};
