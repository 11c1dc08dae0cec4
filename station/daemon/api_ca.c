/* The socket API's CA area: publishing the CRL, the CA's certificates and
 * counts, and the hash-chained audit log (docs/api.md). */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "api_internal.h"

int api_audit_one(void *ctx, const kl_audit_entry *a)
{
	struct api_audit_ctx *c = ctx;
	kl_rpc_obj *e;
	int r;

	if ((r = kl_rpc_obj_put_object(c->arr, NULL, &e)) < 0)
		return r;
	kl_rpc_obj_put_int(e, "seq", a->seq);
	kl_rpc_obj_put_int(e, "time_ms", a->time_ms);
	kl_rpc_obj_put_str(e, "actor", a->actor);
	kl_rpc_obj_put_str(e, "action", a->action);
	if (kl_rpc_obj_put_json(e, "detail", a->detail) < 0)
		kl_rpc_obj_put_str(e, "detail", a->detail);
	return 0;
}

/* On the backend worker (st_api_defer): signing a CRL of every revoked
 * certificate takes seconds on a large CA. */
static int crl_publish(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	kl_rpc_obj *o;
	char path[PATH_MAX];
	int64_t number = 0;
	int r;

	if (api_need_online(call) < 0)
		return -KL_E_UNAVAILABLE;
	st_lock_backend(s);
	r = st_publish_crl(s, api_caller(call)->actor, path, sizeof(path), &number);
	st_unlock_backend(s);
	if (r < 0)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_str(o, "path", path);
	kl_rpc_obj_put_int(o, "crl_number", number);
	return 0;
}

static int m_crl_publish(kl_rpc_call *call)
{
	return st_api_defer(call, crl_publish);
}

static void cert_file_put(kl_station *s, kl_rpc_obj *o, const char *key, const char *rel)
{
	char path[PATH_MAX], buf[512], serial[64];
	kl_rpc_obj *e;
	X509 *x = NULL;
	FILE *f;

	kl_home_path(s->home, rel, path, sizeof(path));
	f = fopen(path, "r");
	if (f) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (!x) {
		kl_rpc_obj_put_str(o, key, NULL);
		return;
	}
	kl_rpc_obj_put_object(o, key, &e);
	X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof(buf));
	kl_rpc_obj_put_str(e, "subject", buf);
	if (kl_serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial)) < 0)
		serial[0] = '\0'; /* a CA certificate's serial always fits: say nothing */
	kl_rpc_obj_put_str(e, "serial", serial);
	{
		struct tm tm;

		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
			kl_rpc_obj_put_int(e, "not_after", (int64_t)timegm(&tm));
	}
	kl_rpc_obj_put_str(e, "file", path);
	X509_free(x);
}

static int m_ca_status(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	kl_issuer_row row;
	kl_rpc_obj *o, *c;
	int64_t n;
	static const char *const states[] = { "issued", "pending", "rejected", "abandoned" };

	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	cert_file_put(s, o, "root", "ca/root.pem");
	cert_file_put(s, o, "issuing", "ca/issuing.pem");
	cert_file_put(s, o, "records", "ca/records.pem");
	kl_rpc_obj_put_str(o, "key", kl_config_get(s->home->conf, "ca.key", NULL));
	pthread_mutex_lock(&s->mu);
	kl_rpc_obj_put_bool(o, "hsm_logged_in", !s->offline && s->hsm_ok);
	pthread_mutex_unlock(&s->mu);
	if (kl_store_issuer_get(s->rstore, kl_config_get(s->home->conf, "ca.issuer", "issuing"),
	                        &row) == 0) {
		kl_rpc_obj_put_object(o, "certificates", &c);
		for (size_t i = 0; i < 4; i++)
			if (kl_store_cert_count(s->rstore, row.id, states[i], &n) == 0)
				kl_rpc_obj_put_int(c, states[i], n);
		if (kl_store_revoked_count(s->rstore, row.id, &n) == 0)
			kl_rpc_obj_put_int(c, "revoked", n);
		kl_rpc_obj_put_int(o, "crl_number", row.crl_number);
		kl_issuer_row_clear(&row);
	}
	{
		char p[PATH_MAX];

		kl_home_path(s->home, "crl/issuing.crl", p, sizeof(p));
		kl_rpc_obj_put_str(o, "crl", p);
	}
	return 0;
}

/* On the backend worker, through its own connection: a filtered list
 * reads through a long log, and it comes after the audit entries queued
 * before it (st_backend_audit), so that it lists them. */
static int audit_list(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	int64_t limit = api_int_or(call, "limit", 100);
	struct api_audit_ctx ac = { 0 };
	kl_rpc_obj *o;
	int r;

	if (limit < 1 || limit > 1000)
		return kl_rpc_reply_params(call, "limit must be 1..1000");
	if (kl_rpc_reply_object(call, &o) < 0 || kl_rpc_obj_put_array(o, "entries", &ac.arr) < 0)
		return -KL_E_NOMEM;
	r = kl_store_audit_list(s->bstore ? s->bstore : s->rstore, api_int_or(call, "before", 0),
	                        api_str_or(call, "action", NULL), limit, api_audit_one, &ac);
	return r < 0 ? r : 0;
}

static int m_audit_list(kl_rpc_call *call)
{
	return st_api_defer(call, audit_list);
}

/* On the backend worker, through its own connection: a walk of a long log
 * takes a while even from the checkpoint's start. */
static int audit_verify(kl_rpc_call *call)
{
	kl_station *s = api_station(call);
	kl_audit_report rep = { 0 };
	bool full = false;
	kl_rpc_obj *o;
	int r;

	kl_rpc_param_bool(call, "full", &full);
	r = kl_store_audit_verify_since(s->bstore, full, &rep);
	if (r < 0 && r != -KL_E_CRYPTO)
		return r;
	if (kl_rpc_reply_object(call, &o) < 0)
		return -KL_E_NOMEM;
	kl_rpc_obj_put_bool(o, "ok", r == 0);
	kl_rpc_obj_put_int(o, "entries", rep.entries);
	if (r < 0) {
		kl_rpc_obj_put_int(o, "first_bad", rep.first_bad);
		kl_rpc_obj_put_str(o, "problem", rep.problem);
	}
	return 0;
}

/* A full walk reads every entry again: an officer's, or in process (whoever
 * runs it reads the home's files anyway). */
static int m_audit_verify(kl_rpc_call *call)
{
	bool full = false;

	kl_rpc_param_bool(call, "full", &full);
	if (full && api_caller(call)->conn && !(kl_rpc_call_roles(call) & OFF))
		return kl_rpc_reply_error(call, KL_E_PERM,
		                          "a full walk of the audit log (full: true) needs role "
		                          "officer; without it the walk starts after the last "
		                          "verified entry");
	return st_api_defer(call, audit_verify);
}

static const kl_rpc_param p_audit[] = {
	{ "before", KL_RPC_INT, false },
	{ "action", KL_RPC_STRING, false },
	{ "limit", KL_RPC_INT, false },
	{ NULL, 0, false },
};

static const kl_rpc_param p_verify[] = {
	{ "full", KL_RPC_BOOL, false },
	{ NULL, 0, false },
};

/* crl.publish, ca.status, audit.list, audit.verify */
const kl_rpc_method st_api_ca[] = {
	{ "crl.publish", OFF, NULL, m_crl_publish, "sign and publish a fresh CRL" },
	{ "ca.status", ALL, NULL, m_ca_status, "CA certificates, counts, CRL" },
	{ "audit.list", OFF | RDR | SVC, p_audit, m_audit_list, "audit entries, newest first" },
	{ "audit.verify", OFF | RDR | SVC, p_verify, m_audit_verify,
	  "walk the hash-chained audit log (from the last verified entry unless full)" },
	{ NULL, 0, NULL, NULL, NULL },
};
