/* The station's home directory. See home.h. */
#include "home.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsm.h"
#include "kl_error.h"
#include "kl_secret.h"

int kl_home_resolve(const char *opt, char *out, size_t size)
{
	const char *env = getenv("KEYLINE_HOME");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (opt && *opt)
		snprintf(out, size, "%s", opt);
	else if (env && *env)
		snprintf(out, size, "%s", env);
	else if (geteuid() == 0)
		snprintf(out, size, "/var/lib/keyline");
	else if (xdg && *xdg)
		snprintf(out, size, "%s/keyline", xdg);
	else if (home && *home)
		snprintf(out, size, "%s/.local/share/keyline", home);
	else
		return kl_error_set(KL_E_INVALID, "no home directory: give --home DIR");
	/* Relative homes are made absolute: SoftHSM and swtpm change directory. */
	if (out[0] != '/') {
		char cwd[PATH_MAX], rel[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd)))
			return kl_error_set(KL_E_IO, "getcwd: %s", strerror(errno));
		snprintf(rel, sizeof(rel), "%s", out);
		snprintf(out, size, "%s/%s", cwd, rel);
	}
	return 0;
}

void kl_home_path(const kl_home *h, const char *rel, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", h->dir, rel);
}

int kl_home_open(const char *dir, kl_home **ret)
{
	char conf[PATH_MAX];
	kl_home *h;
	int r;

	h = calloc(1, sizeof(*h));
	if (!h)
		return kl_error_set(KL_E_NOMEM, "home: out of memory");
	snprintf(h->dir, sizeof(h->dir), "%s", dir);
	kl_home_path(h, "keyline.conf", conf, sizeof(conf));
	r = kl_config_load(conf, &h->conf);
	if (r == -KL_E_NOTFOUND) {
		free(h);
		return kl_error_set(KL_E_NOTFOUND,
		                    "%s is not a Keyline home (no keyline.conf); create one with "
		                    "'keyline ca init --home %s'",
		                    dir, dir);
	}
	if (r < 0) {
		free(h);
		return r;
	}
	/* The embedded default keeps its SoftHSM tokens in the home. */
	const char *softhsm = kl_config_get(h->conf, "hsm.softhsm_conf", NULL);
	if (softhsm)
		setenv("SOFTHSM2_CONF", softhsm, 1);
	*ret = h;
	return 0;
}

int kl_home_ca_reopen(kl_home *h, const char *actor, kl_ca **ret)
{
	kl_home_key key;
	int r;

	if ((r = kl_home_key_ref(h, &key)) < 0)
		return r;
	if (strcmp(key.pin_source, "prompt") == 0)
		return kl_error_set(KL_E_PIN,
		                    "the issuing CA token's PIN comes from 'prompt': the station "
		                    "cannot ask for it again by itself; restart it to log in");
	kl_ca_free(h->ca);
	h->ca = NULL;
	EVP_PKEY_free(h->ca_key);
	h->ca_key = NULL;
	kl_hsm_free(h->hsm);
	h->hsm = NULL;
	return kl_home_ca(h, actor, ret);
}

void kl_home_free(kl_home *h)
{
	if (!h)
		return;
	kl_ca_free(h->ca);
	EVP_PKEY_free(h->ca_key);
	kl_hsm_free(h->hsm);
	kl_store_free(h->store);
	kl_config_free(h->conf);
	kl_secret_free(h->env_pin);
	free(h);
}

int kl_home_store(kl_home *h, kl_store **ret)
{
	char def[PATH_MAX];
	int r;

	if (!h->store) {
		kl_home_path(h, "registry.db", def, sizeof(def));
		r = kl_store_open(kl_config_get(h->conf, "registry.path", def), &h->store);
		if (r < 0)
			return r;
	}
	*ret = h->store;
	return 0;
}

int kl_home_key_ref(kl_home *h, kl_home_key *ret)
{
	kl_home_key k = { 0 };
	const char *spec, *v;
	int r;

	if ((r = kl_config_require(h->conf, "ca.key", &spec)) < 0)
		return r;
	if (strncmp(spec, "pkcs11:", 7) == 0) {
		r = kl_pkcs11_uri_parse(spec, &k.uri);
		if (r < 0)
			return kl_error_wrap("ca.key in %s/keyline.conf", h->dir);
	} else if (strlen(spec) < sizeof(k.uri.object)) {
		snprintf(k.uri.object, sizeof(k.uri.object), "%s", spec);
	} else {
		return kl_error_set(KL_E_INVALID, "ca.key: label too long");
	}
	/* The URI's own parts win over the separate settings. */
	v = k.uri.token[0] ? k.uri.token : kl_config_get(h->conf, "ca.token", NULL);
	if (!v || !*v)
		return kl_error_set(KL_E_INVALID,
		                    "%s/keyline.conf: the issuing key's token is not named (ca.key "
		                    "URI token= or ca.token)",
		                    h->dir);
	snprintf(k.token, sizeof(k.token), "%s", v);
	v = k.uri.module_path[0] ? k.uri.module_path : kl_config_get(h->conf, "hsm.module", NULL);
	if (!v || !*v)
		return kl_error_set(KL_E_INVALID, "%s/keyline.conf: hsm.module must be set",
		                    h->dir);
	snprintf(k.module, sizeof(k.module), "%s", v);
	if (k.uri.pin_source[0]) {
		/* RFC 7512 pin-source is a URI or a path. */
		snprintf(
		    k.pin_source, sizeof(k.pin_source), "%s%s",
		    strncmp(k.uri.pin_source, "file:", 5) == 0 ? "" : "file:", k.uri.pin_source);
	} else {
		v = kl_config_get(h->conf, "ca.pin", NULL);
		if (!v || !*v)
			return kl_error_set(KL_E_INVALID, "%s/keyline.conf: ca.pin must be set",
			                    h->dir);
		snprintf(k.pin_source, sizeof(k.pin_source), "%s", v);
	}
	*ret = k;
	return 0;
}

int kl_home_ca(kl_home *h, const char *actor, kl_ca **ret)
{
	char profiles[PATH_MAX];
	kl_secret *pin = NULL;
	kl_store *store;
	kl_home_key key;
	int r;

	if (h->ca) {
		*ret = h->ca;
		return 0;
	}
	if ((r = kl_home_key_ref(h, &key)) < 0 || (r = kl_home_store(h, &store)) < 0)
		return r;
	if (!h->hsm) {
		r = kl_hsm_open(key.module, key.token, &h->hsm);
		if (r < 0)
			return r;
		if (strncmp(key.pin_source, "env:", 4) == 0) {
			/* Read once: the variable is gone afterwards. */
			if (!h->env_pin &&
			    (r = kl_secret_from_spec(key.pin_source, "issuing CA token PIN",
			                             &h->env_pin)) < 0)
				return r;
		} else if ((r = kl_secret_from_spec(key.pin_source, "issuing CA token PIN", &pin)) <
		           0) {
			return r;
		}
		/* One attempt: a wrong PIN is reported, never retried. */
		r = kl_hsm_login(h->hsm, pin ? pin : h->env_pin);
		kl_secret_free(pin);
		if (r < 0)
			return r;
	}
	if (!h->ca_key) {
		r = kl_home_hsm_signer(h->hsm, &key.uri, &h->ca_key);
		if (r < 0)
			return r;
	}
	kl_home_path(h, "profiles", profiles, sizeof(profiles));
	kl_ca_config cfg = {
		.issuer_name = kl_config_get(h->conf, "ca.issuer", "issuing"),
		.profiles_dir = kl_config_get(h->conf, "ca.profiles", profiles),
		.crl_url = kl_config_get(h->conf, "ca.crl_url", NULL),
		.cps_url = kl_config_get(h->conf, "ca.cps_url", NULL),
		.ca_issuers_url = kl_config_get(h->conf, "ca.ca_issuers_url", NULL),
		.ocsp_url = kl_config_get(h->conf, "ca.ocsp_url", NULL),
		.actor = actor,
	};
	r = kl_ca_open(store, &cfg, h->ca_key, &h->ca);
	if (r < 0)
		return r;
	*ret = h->ca;
	return 0;
}

int kl_home_hsm_signer(kl_hsm *h, const kl_pkcs11_uri *key, EVP_PKEY **ret)
{
	kl_hsm_key *k = NULL;
	int r;

	r = kl_hsm_key_find_uri(h, key, &k);
	if (r == 0)
		r = kl_hsm_key_private(h, k, ret);
	kl_hsm_key_free(k);
	return r;
}

const char *kl_home_actor(void)
{
	static char actor[128];
	struct passwd *pw;

	if (!actor[0]) {
		pw = getpwuid(getuid());
		snprintf(actor, sizeof(actor), "user:%s(%u)", pw ? pw->pw_name : "?",
		         (unsigned)getuid());
	}
	return actor;
}
