/* Evidence records and audit details as json-c objects. See
 * evidence_internal.h. */
#include "evidence_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "kl_error.h"
#include "kl_hex.h"
#include "tpm_nv.h"
#include "tpm_persist.h"

/* Adds v (consumed) as o[key]. */
static int add(json_object *o, const char *key, json_object *v)
{
	if (!v)
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	if (json_object_object_add(o, key, v) != 0) {
		json_object_put(v);
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	}
	return 0;
}

int kl_ev_string(json_object *o, const char *key, const char *s)
{
	return add(o, key, json_object_new_string(s ? s : ""));
}

int kl_ev_int(json_object *o, const char *key, int64_t v)
{
	return add(o, key, json_object_new_int64(v));
}

int kl_ev_hex(json_object *o, const char *key, const unsigned char *p, size_t n)
{
	char *h = malloc(2 * n + 1);
	int r;

	if (!h)
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	kl_hex_encode(p, n, h);
	r = add(o, key, json_object_new_string(h));
	free(h);
	return r;
}

int kl_ev_handle(json_object *o, const char *key, uint32_t handle)
{
	char v[16];

	snprintf(v, sizeof(v), "0x%08x", handle);
	return add(o, key, json_object_new_string(v));
}

int kl_ev_object(json_object *o, const char *key, json_object **ret)
{
	json_object *v = json_object_new_object();
	int r = add(o, key, v);

	if (r == 0)
		*ret = v;
	return r;
}

int kl_ev_tpm(json_object *ev, const kl_tpm_info *info)
{
	json_object *t = NULL;
	char fw[32];
	int r;

	snprintf(fw, sizeof(fw), "%08x.%08x", info->firmware_version_1, info->firmware_version_2);
	r = kl_ev_object(ev, "tpm", &t);
	if (r == 0)
		r = kl_ev_string(t, "manufacturer", info->manufacturer_str);
	if (r == 0)
		r = kl_ev_string(t, "vendor", info->vendor);
	if (r == 0)
		r = kl_ev_string(t, "firmware", fw);
	return r;
}

/* Adds v (consumed) to the array a. */
static int push(json_object *a, json_object *v)
{
	if (!v)
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	if (json_object_array_add(a, v) != 0) {
		json_object_put(v);
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	}
	return 0;
}

/* o[key] = a new empty array, returned in *ret (owned by o). */
static int array(json_object *o, const char *key, json_object **ret)
{
	json_object *a = json_object_new_array();
	int r = add(o, key, a);

	if (r == 0)
		*ret = a;
	return r;
}

/* "chain_nv": the EK chain indices read, each with its bytes; "chain": the
 * chain that verified, EK certificate first, each link's subject, SHA-256
 * and origin ("ek", "bundle", or "nv:0x01c00100" for what only the TPM
 * held); "quirks": the ids of the
 * vendor quirks that explained a deviation. */
static int ev_ek_chain(json_object *o, const kl_ek_report *ek)
{
	json_object *nv = NULL, *chain = NULL, *quirks = NULL, *e;
	char from[32];
	int r = array(o, "chain_nv", &nv);

	for (size_t i = 0; r == 0 && i < ek->n_nv; i++) {
		e = json_object_new_object();
		r = push(nv, e);
		if (r == 0)
			r = kl_ev_handle(e, "index", ek->nv[i].index);
		if (r == 0)
			r = kl_ev_hex(e, "der", ek->nv[i].der, ek->nv[i].len);
	}
	if (r == 0)
		r = array(o, "chain", &chain);
	for (size_t i = 0; r == 0 && i < ek->chain_len; i++) {
		const struct kl_ek_link *l = &ek->chain[i];

		if (i == 0)
			snprintf(from, sizeof(from), "ek");
		else if (l->from_bundle)
			snprintf(from, sizeof(from), "bundle");
		else
			snprintf(from, sizeof(from), "nv:0x%08x", l->nv_index);
		e = json_object_new_object();
		r = push(chain, e);
		if (r == 0)
			r = kl_ev_string(e, "subject", l->subject);
		if (r == 0)
			r = kl_ev_hex(e, "sha256", l->sha256, sizeof(l->sha256));
		if (r == 0)
			r = kl_ev_string(e, "from", from);
	}
	if (r == 0)
		r = array(o, "quirks", &quirks);
	if (r == 0 && ek->quirk[0])
		r = push(quirks, json_object_new_string(ek->quirk));
	return r;
}

int kl_ev_ek(json_object *ev, const kl_ek_report *ek)
{
	json_object *o = NULL;
	int r;

	r = kl_ev_object(ev, "ek", &o);
	if (r == 0)
		r = kl_ev_string(o, "type", kl_ek_type_name(ek->type));
	if (r == 0)
		r = kl_ev_hex(o, "sha256", ek->ek_sha256, sizeof(ek->ek_sha256));
	if (r == 0)
		r = kl_ev_string(o, "issuer", ek->issuer);
	if (r == 0)
		r = kl_ev_string(o, "manufacturer", ek->manufacturer);
	if (r == 0)
		r = kl_ev_hex(o, "certificate", ek->cert_der, ek->cert_len);
	if (r == 0)
		r = ev_ek_chain(o, ek);
	return r;
}

int kl_ev_signature(json_object *o, const unsigned char nonce[32], const unsigned char *sig,
                    size_t sig_len)
{
	int r = kl_ev_hex(o, "nonce", nonce, 32);

	if (r == 0)
		r = kl_ev_hex(o, "signature", sig, sig_len);
	return r;
}

int kl_ev_certify(json_object *o, const unsigned char *nonce, size_t nonce_len,
                  const unsigned char *attest, size_t attest_len, const unsigned char *sig,
                  size_t sig_len)
{
	int r = kl_ev_hex(o, "nonce", nonce, nonce_len);

	if (r == 0)
		r = kl_ev_hex(o, "attest", attest, attest_len);
	if (r == 0)
		r = kl_ev_hex(o, "signature", sig, sig_len);
	return r;
}

int kl_ev_handles(json_object *ev, bool with_iak)
{
	json_object *h = NULL;
	int r = kl_ev_object(ev, "handles", &h);

	if (r == 0 && with_iak)
		r = kl_ev_handle(h, "iak", KL_TPM_HANDLE_IAK);
	if (r == 0)
		r = kl_ev_handle(h, "idevid", KL_TPM_HANDLE_IDEVID);
	if (r == 0 && with_iak)
		r = kl_ev_handle(h, "iak_cert_nv", KL_TPM_NV_IAK_CERT);
	if (r == 0)
		r = kl_ev_handle(h, "idevid_cert_nv", KL_TPM_NV_IDEVID_CERT);
	return r;
}

int kl_ev_timings(json_object *ev, const char *const *names, const double *ms, size_t n)
{
	json_object *t = NULL;
	int r = kl_ev_object(ev, "timings_ms", &t);

	for (size_t i = 0; r == 0 && i < n; i++)
		r = add(t, names[i], json_object_new_double(ms[i]));
	return r;
}

int kl_ev_station(json_object *ev, const char *station_id, const char *actor)
{
	int r = kl_ev_string(ev, "station", station_id);

	if (r == 0)
		r = kl_ev_string(ev, "operator", actor);
	return r;
}

int kl_ev_refusal(const char *serial, const char *step, const char *reason, const char *message,
                  bool after_gates, bool cleaned, bool revoked, json_object **ret)
{
	json_object *d = json_object_new_object();
	int r;

	if (!d)
		return kl_error_set(KL_E_NOMEM, "evidence: out of memory");
	r = kl_ev_string(d, "serial", serial);
	if (r == 0)
		r = kl_ev_string(d, "step", step);
	if (r == 0)
		r = kl_ev_string(d, "reason", reason);
	if (r == 0)
		r = kl_ev_string(d, "message", message);
	if (r == 0 && after_gates)
		r = add(d, "dut_cleaned", json_object_new_boolean(cleaned));
	if (r == 0 && after_gates)
		r = add(d, "certificates_revoked", json_object_new_boolean(revoked));
	if (r < 0) {
		json_object_put(d);
		return r;
	}
	*ret = d;
	return 0;
}

const char *kl_ev_text(json_object *o, bool slash_escape)
{
	return json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PLAIN | (slash_escape ? 0 : JSON_C_TO_STRING_NOSLASHESCAPE));
}
