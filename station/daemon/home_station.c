/* What a station needs from its home beyond home.c: installed data, CRL
 * publication and the engine's configuration. Shared by the CLI and the
 * daemon. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "engine.h"
#include "home.h"
#include "kl_error.h"
#include "kl_file.h"
#include "registry.h"
#include "trust.h"

#ifndef KL_SRC_DATADIR
#define KL_SRC_DATADIR "."
#endif
#ifndef KL_INSTALL_DATADIR
#define KL_INSTALL_DATADIR "/usr/local/share/keyline"
#endif

const char *kl_home_data_dir(const char *name)
{
	static char path[PATH_MAX];
	const char *env = getenv("KEYLINE_DATADIR");

	if (env && *env) {
		snprintf(path, sizeof(path), "%s/%s", env, name);
		return path;
	}
	snprintf(path, sizeof(path), "%s/%s", KL_INSTALL_DATADIR, name);
	if (access(path, R_OK) == 0)
		return path;
	/* Not installed: the source tree next to this build. */
	if (strcmp(name, "profiles") == 0)
		snprintf(path, sizeof(path), "%s/ca/profiles", KL_SRC_DATADIR);
	else
		snprintf(path, sizeof(path), "%s/%s", KL_SRC_DATADIR, name);
	return path;
}

int kl_home_publish_crl(kl_home *home, long days, const char *actor, char *path, size_t size)
{
	unsigned char *der = NULL;
	size_t len = 0;
	char pem_path[PATH_MAX];
	kl_ca *ca;
	X509_CRL *crl;
	const unsigned char *q;
	BIO *b;
	int r;

	if ((r = kl_home_ca(home, actor, &ca)) < 0 ||
	    (r = kl_ca_crl(ca, (int64_t)days * 86400, actor, &der, &len)) < 0)
		return r;
	kl_home_path(home, "crl/issuing.crl", path, size);
	r = kl_write_file(path, der, len, 0644);
	if (r == 0) {
		q = der;
		crl = d2i_X509_CRL(NULL, &q, (long)len);
		b = BIO_new(BIO_s_mem());
		if (crl && b && PEM_write_bio_X509_CRL(b, crl)) {
			char *p;
			long n = BIO_get_mem_data(b, &p);

			snprintf(pem_path, sizeof(pem_path), "%s.pem", path);
			r = kl_write_file(pem_path, p, (size_t)n, 0644);
		} else {
			r = kl_error_set_ssl(KL_E_CRYPTO, "CRL to PEM");
		}
		BIO_free(b);
		X509_CRL_free(crl);
	}
	free(der);
	return r;
}

/* [profiles] TENANT.iak / TENANT.idevid = PROFILE */
static const char *tenant_profile(void *ctx, const char *tenant, const char *kind)
{
	char key[200];

	if (!tenant || !*tenant)
		return NULL;
	snprintf(key, sizeof(key), "profiles.%s.%s", tenant, kind);
	return kl_config_get(ctx, key, NULL);
}

int kl_home_engine_config(kl_home *home, kl_engine_config *cfg, kl_registry **reg, kl_trust **trust)
{
	char p[PATH_MAX];
	const char *types;
	kl_store *store;
	kl_ca *ca;
	long timeout_ms;
	bool prereg;
	int r;

	if ((r = kl_home_store(home, &store)) < 0 ||
	    (r = kl_home_ca(home, kl_home_actor(), &ca)) < 0 ||
	    (r = kl_registry_open(store, reg)) < 0)
		return r;
	kl_home_path(home, "trust", p, sizeof(p));
	r = kl_trust_load(kl_config_get(home->conf, "station.trust", p), trust);
	if (r < 0)
		return kl_error_wrap("the station's trust bundle of TPM vendors");
	if ((r = kl_config_bool(home->conf, "policy.require_prereg", true, &prereg)) < 0)
		return r;
	if ((r = kl_config_int(home->conf, "station.tpm_timeout_ms", KL_TPM_TIMEOUT_MS_DEFAULT,
	                       KL_TPM_TIMEOUT_MS_MIN, KL_TPM_TIMEOUT_MS_MAX, &timeout_ms)) < 0)
		return r;
	*cfg = (kl_engine_config){
		.tpm_timeout_ms = (int)timeout_ms,
		.store = store,
		.reg = *reg,
		.ca = ca,
		.trust = *trust,
		.entropy = home->hsm,
		.require_prereg = prereg,
		.station_id = kl_config_get(home->conf, "station.id", "station"),
		.profile_for = tenant_profile,
		.profile_ctx = home->conf,
	};
	types = kl_config_get(home->conf, "policy.ek_types", "rsa2048,p256,p384");
	for (int t = 0; t < KL_EK__MAX; t++)
		if (strstr(types, kl_ek_type_name((kl_ek_type)t)))
			cfg->ek_types |= 1u << t;
	return 0;
}
