/* The PKI the engine and lifecycle tests stand on, in a floor's directory:
 * a SoftHSM token "ca" (PINs so-1 / user-1, logged in) holding the issuing
 * key "issuing"; a software P-384 root; both certificates from the CA
 * ceremony code, written as root.pem and issuing.pem; a registry database
 * with the issuer row; and a trust bundle holding one TPM vendor's roots.
 * Include after the headers of the libraries it calls. */
#ifndef KL_PKI_FIXTURE_H
#define KL_PKI_FIXTURE_H

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "ceremony.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "registry.h"
#include "store.h"
#include "trust.h"

struct test_pki {
	kl_token tok;
	kl_hsm *hsm;
	EVP_PKEY *ca_key, *root_key;
	X509 *root, *issuing;
	char db[PATH_MAX], root_pem[PATH_MAX], issuing_pem[PATH_MAX], trust_dir[PATH_MAX];
	kl_trust *trust;
};

static inline int test_pki_write_pem(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");
	int ok = f && PEM_write_X509(f, x) == 1;

	if (f && fclose(f) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

static inline int test_pki_copy(kl_floor *f, const char *from, const char *to)
{
	const char *argv[] = { "cp", from, to, NULL };

	return kl_floor_run(f, NULL, NULL, argv);
}

static inline int test_pki_make(kl_floor *f, const kl_vendor *trusted, struct test_pki *p)
{
	const char *dir = kl_floor_dir(f);
	kl_secret *pin = NULL;
	kl_hsm_key *k = NULL;
	X509_NAME *rn = NULL, *in = NULL;
	unsigned char *der = NULL;
	kl_store *store = NULL;
	char dst[PATH_MAX];
	int len, r = -1;

	if (kl_floor_token(f, "ca", "so-1", "user-1", &p->tok) < 0 ||
	    kl_secret_from_bytes("user-1", 6, &pin) < 0 ||
	    kl_hsm_open(p->tok.module, "ca", &p->hsm) < 0 || kl_hsm_login(p->hsm, pin) < 0 ||
	    kl_hsm_key_generate(p->hsm, KL_HSM_KEY_EC_P256, "issuing", &k) < 0 ||
	    kl_hsm_key_private(p->hsm, k, &p->ca_key) < 0)
		goto out;
	p->root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (!p->root_key || kl_ceremony_name("Test Root", "Keyline", "DE", &rn) < 0 ||
	    kl_ceremony_name("Test Issuing", "Keyline", "DE", &in) < 0 ||
	    kl_ceremony_root(p->root_key, rn, 3650, &p->root) < 0 ||
	    kl_ceremony_issuing(p->root, p->root_key, in, p->ca_key, 1825, &p->issuing) < 0)
		goto out;
	snprintf(p->root_pem, sizeof(p->root_pem), "%s/root.pem", dir);
	snprintf(p->issuing_pem, sizeof(p->issuing_pem), "%s/issuing.pem", dir);
	if (test_pki_write_pem(p->root_pem, p->root) < 0 ||
	    test_pki_write_pem(p->issuing_pem, p->issuing) < 0)
		goto out;
	snprintf(p->db, sizeof(p->db), "%s/registry.db", dir);
	len = i2d_X509(p->issuing, &der);
	if (len <= 0 || kl_store_open(p->db, &store) < 0 ||
	    kl_store_issuer_add(store, "issuing", "pkcs11:token=ca;object=issuing", der,
	                        (size_t)len, NULL) < 0)
		goto out;
	/* The trust bundle: that vendor only. */
	snprintf(p->trust_dir, sizeof(p->trust_dir), "%s/trust", dir);
	mkdir(p->trust_dir, 0755);
	snprintf(dst, sizeof(dst), "%s/vendor.pem", p->trust_dir);
	if (test_pki_copy(f, trusted->root_pem, dst) != 0)
		goto out;
	snprintf(dst, sizeof(dst), "%s/vendor-issuing.pem", p->trust_dir);
	if (test_pki_copy(f, trusted->intermediate_pem, dst) != 0 ||
	    kl_trust_load(p->trust_dir, &p->trust) < 0)
		goto out;
	r = 0;
out:
	if (r < 0)
		fprintf(stderr, "test PKI: %s\n", kl_error_detail());
	kl_store_free(store);
	OPENSSL_free(der);
	X509_NAME_free(rn);
	X509_NAME_free(in);
	kl_hsm_key_free(k);
	kl_secret_free(pin);
	return r;
}

static inline void test_pki_free(struct test_pki *p)
{
	kl_trust_free(p->trust);
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->root_key);
	X509_free(p->root);
	X509_free(p->issuing);
	kl_hsm_free(p->hsm);
}

#ifndef KL_PROFILES_DIR
#error "KL_PROFILES_DIR must be defined by the build"
#endif

/* Opens the registry database, the CA over it (profiles from the source
 * tree) and the registry, and an engine configuration on the PKI's trust
 * bundle and HSM (pre-registration required, every EK type). */
static inline int test_pki_open(const struct test_pki *p, kl_store **store, kl_ca **ca,
                                kl_registry **reg, kl_engine_config *cfg)
{
	kl_ca_config cc = { .issuer_name = "issuing",
		            .profiles_dir = KL_PROFILES_DIR,
		            .crl_url = "http://pki.test/issuing.crl",
		            .cps_url = "http://pki.test/cps.html",
		            .ca_issuers_url = "http://pki.test/issuing.der",
		            .actor = "test" };

	if (kl_store_open(p->db, store) < 0 || kl_ca_open(*store, &cc, p->ca_key, ca) < 0 ||
	    kl_registry_open(*store, reg) < 0)
		return -1;
	*cfg = (kl_engine_config){ .store = *store,
		                   .reg = *reg,
		                   .ca = *ca,
		                   .trust = p->trust,
		                   .entropy = p->hsm,
		                   .require_prereg = true,
		                   .ek_types = 7,
		                   .station_id = "test-station" };
	return 0;
}

static inline void test_pki_close(kl_store **store, kl_ca **ca, kl_registry **reg)
{
	kl_registry_free(*reg);
	kl_ca_free(*ca);
	kl_store_free(*store);
	*reg = NULL;
	*ca = NULL;
	*store = NULL;
}

#endif
