/* The HSM-backed half of the station: the backend lock that serialises
 * the store, registry, CA and HSM; the HSM's health after a failed job,
 * with one reconnect; the key and certificate that sign sanitization
 * records; CRL publication. See station_internal.h. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "hsm.h"
#include "kl_error.h"
#include "kl_file.h"
#include "kl_log.h"
#include "station_internal.h"

#define LOG_MOD "station"

void st_lock_backend(kl_station *s)
{
	pthread_mutex_lock(&s->backend);
}

void st_unlock_backend(kl_station *s)
{
	pthread_mutex_unlock(&s->backend);
}

void st_lock_hook(void *ctx)
{
	st_lock_backend(ctx);
}

void st_unlock_hook(void *ctx)
{
	st_unlock_backend(ctx);
}

bool st_hsm_suspect(const char *reason)
{
	/* The reasons of the steps that use the HSM (entropy, issuance,
	 * sanitization records, the CA's store) and of a runner that failed
	 * outright. A refused DUT is none of them. */
	static const char *const hsm_reasons[] = {
		"entropy_failed", "issue_failed", "record_failed", "ca_error", "station_error",
	};

	for (size_t i = 0; i < sizeof(hsm_reasons) / sizeof(hsm_reasons[0]); i++)
		if (strcmp(reason, hsm_reasons[i]) == 0)
			return true;
	return false;
}

/* After a job that failed in a step that uses the HSM (st_hsm_suspect):
 * if the token no longer serves our session (an HSM that restarted, a
 * network HSM that dropped us), reopen everything of it once, with one
 * login. A login that
 * fails is never tried again (a wrong PIN locks tokens): the station then
 * refuses work that needs the HSM and says why in station.status. */
void st_hsm_check(kl_station *s, const char *actor)
{
	kl_ca *ca;
	int r;

	st_lock_backend(s);
	/* A token-level look: no key signs for it (the CA key's signatures
	 * are the CA's, counted and audited). */
	if (s->hsm_gave_up || (s->home->hsm && kl_hsm_check(s->home->hsm) == 0)) {
		st_unlock_backend(s);
		return;
	}
	kl_log_warn(LOG_MOD, "the HSM lost our sessions (%s): reconnecting once",
	            s->home->hsm ? kl_error_detail() : "closed");
	EVP_PKEY_free(s->record_key);
	s->record_key = NULL;
	X509_free(s->record_cert);
	s->record_cert = NULL;
	s->ecfg.ca = NULL;
	s->ecfg.entropy = NULL;
	s->lcfg.ca = NULL;
	s->lcfg.record_key = NULL;
	s->lcfg.record_cert = NULL;
	r = kl_home_ca_reopen(s->home, actor, &ca);
	if (r == 0)
		r = st_record_signer(s);
	pthread_mutex_lock(&s->mu);
	s->hsm_ok = r == 0;
	snprintf(s->hsm_error, sizeof(s->hsm_error), "%s", r < 0 ? kl_error_detail() : "");
	pthread_mutex_unlock(&s->mu);
	if (r < 0) {
		s->hsm_gave_up = r == -KL_E_PIN || r == -KL_E_INVALID;
		kl_log_error(LOG_MOD, "the HSM could not be reopened: %s", s->hsm_error);
	} else {
		s->ecfg.ca = ca;
		s->ecfg.entropy = s->home->hsm;
		s->lcfg.ca = ca;
		s->lcfg.record_key = s->record_key;
		s->lcfg.record_cert = s->record_cert;
		/* The HSM is back whether or not the entry is written. */
		kl_store_audit_noted(s->store, actor, "station.hsm.reconnected", "{}");
		kl_log_info(LOG_MOD, "the HSM is back");
	}
	st_unlock_backend(s);
	{
		json_object *o = st_event_new("hsm");

		json_object_object_add(o, "ok", json_object_new_boolean(r == 0));
		if (r < 0)
			json_object_object_add(o, "error", json_object_new_string(s->hsm_error));
		st_event(s, NULL, o);
	}
}

/* A home made before the "records" profile existed gets the installed one. */
static int records_profile(kl_station *s)
{
	char def[PATH_MAX], dst[PATH_MAX], src[PATH_MAX];

	kl_home_path(s->home, "profiles", def, sizeof(def));
	snprintf(dst, sizeof(dst), "%s/records.json",
	         kl_config_get(s->home->conf, "ca.profiles", def));
	if (access(dst, R_OK) == 0)
		return 0;
	snprintf(src, sizeof(src), "%s/records.json", kl_home_data_dir("profiles"));
	return kl_copy_file(src, dst);
}

/* The key that signs sanitization records: "station-records" in the CA's
 * token, with a certificate from the CA (profile "records") kept in
 * HOME/ca/records.pem. Made on first start. */
int st_record_signer(kl_station *s)
{
	char path[PATH_MAX];
	kl_hsm_key *k = NULL;
	EVP_PKEY *pub = NULL;
	FILE *f;
	int r;

	kl_home_path(s->home, "ca/records.pem", path, sizeof(path));
	f = fopen(path, "r");
	if (f) {
		s->record_cert = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		if (!s->record_cert)
			return kl_error_set_ssl(KL_E_CRYPTO, "%s", path);
	}
	r = kl_hsm_key_find(s->home->hsm, "station-records", &k);
	if (r == -KL_E_NOTFOUND && !s->record_cert)
		r = kl_hsm_key_generate(s->home->hsm, KL_HSM_KEY_EC_P256, "station-records", &k);
	if (r == 0)
		r = kl_hsm_key_private(s->home->hsm, k, &s->record_key);
	if (r == 0)
		r = kl_hsm_key_public(s->home->hsm, k, &pub);
	kl_hsm_key_free(k);
	if (r < 0)
		return kl_error_wrap("the sanitization-record key 'station-records'");
	if (s->record_cert) {
		if (EVP_PKEY_eq(X509_get0_pubkey(s->record_cert), pub) != 1)
			r = kl_error_set(KL_E_CRYPTO,
			                 "%s does not certify the token's 'station-records' key",
			                 path);
	} else {
		char cn[200], pem_path[PATH_MAX];
		kl_cert_request req = {
			.profile = "records",
			.pubkey = pub,
			.cn = cn,
			.o = "Keyline",
			.actor = "station",
		};
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;

		snprintf(cn, sizeof(cn), "%s sanitization records", s->station_id);
		r = records_profile(s);
		if (r == 0)
			r = kl_ca_issue(s->home->ca, &req, &s->record_cert, NULL);
		if (r == 0 && b && PEM_write_bio_X509(b, s->record_cert)) {
			n = BIO_get_mem_data(b, &p);
			snprintf(pem_path, sizeof(pem_path), "%s", path);
			r = kl_write_file(pem_path, p, (size_t)n, 0644);
		} else if (r == 0) {
			r = kl_error_set_ssl(KL_E_CRYPTO, "records certificate to PEM");
		}
		BIO_free(b);
		if (r < 0)
			r = kl_error_wrap("the sanitization-record certificate");
	}
	EVP_PKEY_free(pub);
	return r;
}

int st_publish_crl(kl_station *s, const char *actor, char *path, size_t size, int64_t *number)
{
	int r = kl_home_publish_crl(s->home, s->crl_days, actor, path, size);

	if (r == 0 && number) {
		kl_issuer_row row;

		*number = 0;
		if (kl_store_issuer_get(s->store,
		                        kl_config_get(s->home->conf, "ca.issuer", "issuing"),
		                        &row) == 0) {
			*number = row.crl_number;
			kl_issuer_row_clear(&row);
		}
	}
	if (r == 0) {
		json_object *o = st_event_new("crl.published");

		json_object_object_add(o, "path", json_object_new_string(path));
		st_event(s, NULL, o);
	}
	return r;
}
