/* The station's home directory: configuration, registry, CA certificates,
 * profiles, CRLs and (for the embedded default) the SoftHSM token store.
 *
 *   HOME/keyline.conf        configuration (docs/configuration.md)
 *   HOME/registry.db         SQLite registry: CA tables, devices, audit
 *   HOME/ca/                 root.pem, issuing.pem, chain.pem, issuing.csr
 *   HOME/profiles/           certificate profiles (*.json)
 *   HOME/crl/                issuing.crl (DER) and issuing.crl.pem
 *   HOME/hsm/                embedded default: softhsm2.conf and tokens/
 *   HOME/secrets/            embedded default: token PINs (mode 0600)
 *
 * Where it is: --home DIR, else $KEYLINE_HOME, else /var/lib/keyline for root
 * and $XDG_DATA_HOME/keyline (~/.local/share/keyline) for everyone else. */
#ifndef KL_STATION_HOME_H
#define KL_STATION_HOME_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "ca.h"
#include "kl_config.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "store.h"
#include "uri.h"

typedef struct kl_hsm kl_hsm;

typedef struct kl_home {
	char dir[PATH_MAX];
	kl_config *conf;
	kl_store *store;
	kl_hsm *hsm;      /* the issuing CA's token, once opened */
	EVP_PKEY *ca_key; /* the issuing CA's signing key in it */
	kl_ca *ca;
	/* The PIN of an env: source, read once at the first login (the
	 * variable is then unset): what a reconnect logs in with. */
	kl_secret *env_pin;
} kl_home;

/* Picks the home directory (see above) into out. */
int kl_home_resolve(const char *opt, char *out, size_t size) KL_MUST_CHECK;

/* Opens an initialised home: reads keyline.conf. -KL_E_NOTFOUND with advice
 * when there is none. */
int kl_home_open(const char *dir, kl_home **ret) KL_MUST_CHECK;
void kl_home_free(kl_home *h);

/* A path inside the home. */
void kl_home_path(const kl_home *h, const char *rel, char *out, size_t size);

/* Opens (once) the registry database. */
int kl_home_store(kl_home *h, kl_store **ret) KL_MUST_CHECK;

/* Opens (once) the issuing CA: the HSM token, one login with the configured
 * PIN source, the signing key, the CA over the registry. An env:NAME PIN is
 * read (and the variable unset) at the first login only, on the thread that
 * opens the home, and kept in h->env_pin for kl_home_ca_reopen: nothing
 * reads the environment afterwards, when other threads run. A file: PIN is
 * read each time. */
int kl_home_ca(kl_home *h, const char *actor, kl_ca **ret) KL_MUST_CHECK;

/* Closes the CA, its key and the token, then opens them again as
 * kl_home_ca does: one login with the configured PIN source (env: from the
 * kept PIN). For a token that lost its sessions (an HSM restarted); every
 * EVP_PKEY of the token must have been freed first. A `prompt` source is
 * refused (-KL_E_PIN, before anything is closed): a daemon cannot ask, and
 * waiting on a terminal would hold the station's locks. */
int kl_home_ca_reopen(kl_home *h, const char *actor, kl_ca **ret) KL_MUST_CHECK;

/* Where the issuing CA key is: ca.key (an RFC 7512 URI, or a bare label
 * with ca.token), hsm.module and ca.pin, the URI's own parts winning. */
typedef struct kl_home_key {
	kl_pkcs11_uri uri;
	char module[PATH_MAX];
	char token[33];
	char pin_source[PATH_MAX + 8];
} kl_home_key;
int kl_home_key_ref(kl_home *h, kl_home_key *ret) KL_MUST_CHECK;

/* An EVP_PKEY that signs inside the token with the private key the URI
 * names (h must be logged in). Free it before kl_hsm_free(h). */
int kl_home_hsm_signer(kl_hsm *h, const kl_pkcs11_uri *key, EVP_PKEY **ret) KL_MUST_CHECK;

/* The name of the person or process acting, for the audit log:
 * "user:NAME(uid)". */
const char *kl_home_actor(void);

/* What a station needs from its home beyond this (home_station.c). */

/* Where installed data lives ("profiles", "fixtures"): $KEYLINE_DATADIR/NAME,
 * else the install prefix's share/keyline/NAME when it exists, else the
 * source tree's copy (a build that was not installed). */
const char *kl_home_data_dir(const char *name);

/* Builds, signs and writes HOME/crl/issuing.crl (DER) and issuing.crl.pem;
 * path receives the DER file's path. */
int kl_home_publish_crl(kl_home *home, long days, const char *actor, char *path,
                        size_t size) KL_MUST_CHECK;

/* The engine's configuration from a home: its store, CA, registry, trust
 * bundle (HOME/trust or station.trust), entropy HSM and policy
 * ([policy] require_prereg, ek_types; [station] id). */
struct kl_engine_config;
struct kl_registry;
struct kl_trust;
int kl_home_engine_config(kl_home *home, struct kl_engine_config *cfg, struct kl_registry **reg,
                          struct kl_trust **trust) KL_MUST_CHECK;

#endif
