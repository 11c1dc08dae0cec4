/* keyline ca init and ca import: the CA key ceremony on the embedded
 * default (SoftHSM2 tokens inside the home). init makes the tokens, the
 * keys, the certificates, keyline.conf and the registry with the first
 * audit entries; with --external-root it stops at a CSR, and import
 * installs the certificate the enterprise root signed. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "ca.h"
#include "ceremony.h"
#include "cli_internal.h"
#include "home.h"
#include "hsm.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_file.h"
#include "kl_hex.h"
#include "kl_secret.h"

#define ROOT_TOKEN "keyline-root"
#define CA_TOKEN   "keyline-ca"
#define ROOT_KEY   "root-ca"
#define CA_KEY     "issuing-ca"

/* ---- helpers ---- */

/* A fresh PIN of 16 digits-and-letters from the CSPRNG, stored 0600; an
 * existing file is read instead. */
static int new_pin_file(const char *path, kl_secret **ret)
{
	static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
	unsigned char rnd[16];
	kl_secret *pin;
	int r;

	if (access(path, F_OK) == 0)
		return kl_secret_from_file(path, ret);
	r = kl_secret_new(sizeof(rnd), &pin);
	if (r < 0)
		return r;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		kl_secret_free(pin);
		return kl_error_set_ssl(KL_E_CRYPTO, "random PIN");
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		pin->data[i] = (unsigned char)alphabet[rnd[i] % (sizeof(alphabet) - 1)];
	OPENSSL_cleanse(rnd, sizeof(rnd));
	r = kl_write_file(path, pin->data, pin->len, 0600);
	if (r < 0) {
		kl_secret_free(pin);
		return r;
	}
	*ret = pin;
	return 0;
}

static int make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return kl_error_set(KL_E_IO, "mkdir %s: %s", path, strerror(errno));
	return 0;
}

static int copy_profiles(const char *to)
{
	const char *const names[] = { "idevid", "iak", "ldevid", "tls", "records", NULL };
	char src[PATH_MAX], dst[PATH_MAX];
	const char *from = kl_home_data_dir("profiles");

	for (size_t i = 0; names[i]; i++) {
		int r;

		snprintf(src, sizeof(src), "%s/%s.json", from, names[i]);
		snprintf(dst, sizeof(dst), "%s/%s.json", to, names[i]);
		if (access(dst, F_OK) == 0)
			continue; /* an officer's edited profile stays */
		if ((r = kl_copy_file(src, dst)) < 0)
			return r;
	}
	return 0;
}

/* An audit entry whose detail is {k1: v1, k2: v2}, built with json-c. Out
 * of memory is an error: the ceremony never records a "null" detail. */
static int audit_pair(kl_store *s, const char *actor, const char *action, const char *k1,
                      const char *v1, const char *k2, const char *v2)
{
	json_object *d = json_object_new_object(), *a = json_object_new_string(v1),
	            *b = json_object_new_string(v2);
	const char *text = NULL;
	int r;

	if (d && a && json_object_object_add(d, k1, a) == 0) {
		a = NULL; /* d holds it */
		if (b && json_object_object_add(d, k2, b) == 0) {
			b = NULL;
			text = json_object_to_json_string_ext(
			    d, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		}
	}
	r = text ? kl_store_audit(s, actor, action, text)
	         : kl_error_set(KL_E_NOMEM, "%s: audit detail", action);
	json_object_put(a);
	json_object_put(b);
	json_object_put(d);
	return r;
}

/* The audit entry for a CA certificate: its key's URI and its SHA-256. */
static int audit_cert(kl_store *s, const char *actor, const char *action, const char *uri,
                      const X509 *x)
{
	char fp[65];

	if (kl_x509_fingerprint(x, fp) < 0)
		return kl_error_wrap("%s", action);
	return audit_pair(s, actor, action, "key", uri, "sha256", fp);
}

/* ---- ca init, step by step ---- */

struct ceremony {
	const char *home_dir;
	const struct kl_cli_ca_init_opts *o;
	const char *module;
	kl_secret *so, *pin_root, *pin_ca;
	kl_hsm *hroot, *hca;
	EVP_PKEY *kroot, *kca;
	X509 *root, *issuing; /* NULL for an external root */
	X509_REQ *csr;        /* only for an external root */
	char root_uri[256], ca_uri[256];
};

static void ceremony_clear(struct ceremony *c)
{
	X509_free(c->root);
	X509_free(c->issuing);
	X509_REQ_free(c->csr);
	EVP_PKEY_free(c->kroot);
	EVP_PKEY_free(c->kca);
	kl_hsm_free(c->hroot);
	kl_hsm_free(c->hca);
	kl_secret_free(c->so);
	kl_secret_free(c->pin_root);
	kl_secret_free(c->pin_ca);
}

/* The home's folders and the SoftHSM2 configuration of its token store,
 * which this process then uses. */
static int prepare_home(const struct ceremony *c)
{
	static const char *const subdirs[] = { "ca",         "profiles", "crl", "hsm",
		                               "hsm/tokens", "secrets",  NULL };
	char p[PATH_MAX];
	FILE *f;
	int r;

	if ((r = make_dir(c->home_dir, 0700)) < 0)
		return r;
	for (size_t i = 0; subdirs[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", c->home_dir, subdirs[i]);
		if ((r = make_dir(p, strcmp(subdirs[i], "secrets") == 0 ? 0700 : 0755)) < 0)
			return r;
	}
	snprintf(p, sizeof(p), "%s/hsm/softhsm2.conf", c->home_dir);
	f = fopen(p, "we");
	if (!f)
		return kl_error_set(KL_E_IO, "%s: %s", p, strerror(errno));
	fprintf(f,
	        "# SoftHSM2 token store of this Keyline home (the embedded default HSM)\n"
	        "directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\n"
	        "log.level = ERROR\nslots.removable = false\n",
	        c->home_dir);
	if (ferror(f) | fclose(f))
		return kl_error_set(KL_E_IO, "%s: write failed", p);
	if (setenv("SOFTHSM2_CONF", p, 1) < 0)
		return kl_error_set(KL_E_IO, "setenv SOFTHSM2_CONF: %s", strerror(errno));
	return 0;
}

/* The SO PIN and the tokens' user PINs: the officer's files, or fresh ones
 * in HOME/secrets. */
static int load_pins(struct ceremony *c)
{
	char so[PATH_MAX], root[PATH_MAX], ca[PATH_MAX];
	int r;

	snprintf(so, sizeof(so), "%s/secrets/so.pin", c->home_dir);
	snprintf(root, sizeof(root), "%s/secrets/%s.pin", c->home_dir, ROOT_TOKEN);
	snprintf(ca, sizeof(ca), "%s/secrets/%s.pin", c->home_dir, CA_TOKEN);
	r = c->o->so_pin_file ? kl_secret_from_file(c->o->so_pin_file, &c->so)
	                      : new_pin_file(so, &c->so);
	if (r == 0)
		r = c->o->pin_file ? kl_secret_from_file(c->o->pin_file, &c->pin_ca)
		                   : new_pin_file(ca, &c->pin_ca);
	if (r == 0 && !c->o->external_root)
		r = new_pin_file(root, &c->pin_root);
	return r;
}

/* Generates a key in a token and opens it as an EVP_PKEY signer. */
static int make_key(const struct ceremony *c, const char *token, const kl_secret *pin,
                    kl_hsm_key_type type, const char *label, kl_hsm **hsm, EVP_PKEY **key)
{
	kl_pkcs11_uri u = { 0 };
	kl_hsm_key *k = NULL;
	int r;

	if ((r = kl_hsm_open(c->module, token, hsm)) < 0 || (r = kl_hsm_login(*hsm, pin)) < 0)
		return r;
	r = kl_hsm_key_generate(*hsm, type, label, &k);
	kl_hsm_key_free(k);
	if (r < 0)
		return r;
	snprintf(u.token, sizeof(u.token), "%s", token);
	snprintf(u.object, sizeof(u.object), "%s", label);
	return kl_home_hsm_signer(*hsm, &u, key);
}

/* The tokens, the issuing CA key, and either its CSR for an external root
 * (HOME/ca/issuing.csr) or the root key, the root certificate and the
 * issuing CA certificate. */
static int make_keys_and_certs(struct ceremony *c)
{
	const struct kl_cli_ca_init_opts *o = c->o;
	_cleanup_(X509_NAME_freep) X509_NAME *root_name = NULL;
	_cleanup_(X509_NAME_freep) X509_NAME *ca_name = NULL;
	char p[PATH_MAX];
	int r;

	fprintf(stderr, "keyline ca init: creating tokens in %s/hsm\n", c->home_dir);
	if ((r = kl_hsm_token_init(c->module, CA_TOKEN, c->so, c->pin_ca)) < 0 ||
	    (!o->external_root &&
	     (r = kl_hsm_token_init(c->module, ROOT_TOKEN, c->so, c->pin_root)) < 0))
		return r;
	if ((r = kl_ceremony_name("Keyline Issuing CA", o->org, o->country, &ca_name)) < 0 ||
	    (r = kl_ceremony_name("Keyline Root CA", o->org, o->country, &root_name)) < 0)
		return r;

	fprintf(stderr, "keyline ca init: generating the issuing CA key (EC P-256) in '%s'\n",
	        CA_TOKEN);
	if ((r = make_key(c, CA_TOKEN, c->pin_ca, KL_HSM_KEY_EC_P256, CA_KEY, &c->hca, &c->kca)) <
	    0)
		return r;
	snprintf(c->ca_uri, sizeof(c->ca_uri), "pkcs11:token=%s;object=%s;type=private", CA_TOKEN,
	         CA_KEY);
	if (o->external_root) {
		if ((r = kl_ceremony_csr(c->kca, ca_name, &c->csr)) < 0)
			return r;
		snprintf(p, sizeof(p), "%s/ca/issuing.csr", c->home_dir);
		return kl_cli_pem_write(p, NULL, c->csr);
	}

	fprintf(stderr, "keyline ca init: generating the root CA key (EC P-384) in '%s'\n",
	        ROOT_TOKEN);
	if ((r = make_key(c, ROOT_TOKEN, c->pin_root, KL_HSM_KEY_EC_P384, ROOT_KEY, &c->hroot,
	                  &c->kroot)) < 0)
		return r;
	snprintf(c->root_uri, sizeof(c->root_uri), "pkcs11:token=%s;object=%s;type=private",
	         ROOT_TOKEN, ROOT_KEY);
	if ((r = kl_ceremony_root(c->kroot, root_name, 7300, &c->root)) < 0)
		return r;
	return kl_ceremony_issuing(c->root, c->kroot, ca_name, c->kca, 3650, &c->issuing);
}

/* HOME/keyline.conf (docs/configuration.md), the empty trust bundle and the
 * certificate profiles. */
static int write_config(const struct ceremony *c)
{
	const struct kl_cli_ca_init_opts *o = c->o;
	char conf[PATH_MAX], p[PATH_MAX], crl_url[PATH_MAX + 16], pin_line[PATH_MAX + 8];
	char station_id[64] = "station";
	FILE *f;
	int r;

	char cps_url[PATH_MAX + 16], aia_url[PATH_MAX + 16];

	if (o->crl_url)
		snprintf(crl_url, sizeof(crl_url), "%s", o->crl_url);
	else
		snprintf(crl_url, sizeof(crl_url), "file://%s/crl/issuing.crl", c->home_dir);
	if (o->cps_url)
		snprintf(cps_url, sizeof(cps_url), "%s", o->cps_url);
	else
		snprintf(cps_url, sizeof(cps_url), "file://%s/ca/cps.txt", c->home_dir);
	if (o->ca_issuers_url)
		snprintf(aia_url, sizeof(aia_url), "%s", o->ca_issuers_url);
	else
		snprintf(aia_url, sizeof(aia_url), "file://%s/ca/issuing.der", c->home_dir);
	/* No host name: the id stays "station" (the buffer keeps its NUL). */
	(void)gethostname(station_id, sizeof(station_id) - 1);
	/* The trust bundle of TPM vendors starts empty: the officer adds vendor
	 * EK roots (PEM or DER) before the line provisions. */
	snprintf(p, sizeof(p), "%s/trust", c->home_dir);
	if ((r = make_dir(p, 0755)) < 0)
		return r;
	/* The officer's own PIN file stays where it is: the home refers to it. */
	if (o->pin_file) {
		char abs[PATH_MAX];

		if (!realpath(o->pin_file, abs))
			return kl_error_set(KL_E_IO, "%s: %s", o->pin_file, strerror(errno));
		snprintf(pin_line, sizeof(pin_line), "file:%s", abs);
	} else {
		snprintf(pin_line, sizeof(pin_line), "file:${home}/secrets/%s.pin", CA_TOKEN);
	}
	snprintf(conf, sizeof(conf), "%s/keyline.conf", c->home_dir);
	f = fopen(conf, "we");
	if (!f)
		return kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
	fprintf(f,
	        "# Keyline station home, created by 'keyline ca init' (docs/configuration.md).\n"
	        "# ${home} stands for the directory of this file.\n\n"
	        "[hsm]\n"
	        "module = %s\n"
	        "softhsm_conf = ${home}/hsm/softhsm2.conf\n\n"
	        "[ca]\n"
	        "issuer = issuing\n"
	        "token = %s\n"
	        "key = %s\n"
	        "pin = %s\n"
	        "root_token = %s\n"
	        "root_key = %s\n"
	        "root_pin = file:${home}/secrets/%s.pin\n"
	        "crl_url = %s\n"
	        "cps_url = %s\n"
	        "ca_issuers_url = %s\n"
	        "crl_days = 7\n"
	        "profiles = ${home}/profiles\n\n"
	        "[registry]\n"
	        "path = ${home}/registry.db\n\n"
	        "[policy]\n"
	        "require_prereg = true\n"
	        "ek_types = rsa2048,p256,p384\n\n"
	        "[station]\n"
	        "id = %s\n"
	        "trust = ${home}/trust\n",
	        c->module, CA_TOKEN, CA_KEY, pin_line, ROOT_TOKEN, ROOT_KEY, ROOT_TOKEN, crl_url,
	        cps_url, aia_url, station_id);
	if (ferror(f) | fclose(f))
		return kl_error_set(KL_E_IO, "%s: write failed", conf);
	snprintf(p, sizeof(p), "%s/profiles", c->home_dir);
	return copy_profiles(p);
}

/* The registry's first entries: for an external root the CSR's audit entry
 * (the issuer row waits for 'ca import'); else the issuing CA's row and the
 * audit entries of both certificates, in one transaction. */
static int record_ceremony(const struct ceremony *c, kl_store *store)
{
	const char *actor = kl_home_actor();
	unsigned char *der = NULL;
	int r, len;

	if (c->o->external_root)
		return audit_pair(store, actor, "ca.ceremony.csr", "key", c->ca_uri, "csr",
		                  "ca/issuing.csr");
	len = i2d_X509(c->issuing, &der);
	if (len <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode issuing CA");
	if ((r = kl_store_begin(store)) < 0) {
		OPENSSL_free(der);
		return r;
	}
	if ((r = kl_store_issuer_add(store, "issuing", c->ca_uri, der, (size_t)len, NULL)) < 0 ||
	    (r = audit_cert(store, actor, "ca.ceremony.root", c->root_uri, c->root)) < 0 ||
	    (r = audit_cert(store, actor, "ca.ceremony.issuing", c->ca_uri, c->issuing)) < 0)
		kl_store_rollback(store);
	else
		r = kl_store_commit(store);
	OPENSSL_free(der);
	return r;
}

/* HOME/ca/root.pem, issuing.pem, and chain.pem (issuing, then root). */
static int write_certs(const struct ceremony *c)
{
	char p[PATH_MAX], *a = NULL, *b = NULL, *chain = NULL;
	size_t al = 0, bl = 0;
	int r;

	snprintf(p, sizeof(p), "%s/ca/root.pem", c->home_dir);
	if ((r = kl_cli_pem_write(p, c->root, NULL)) < 0)
		return r;
	snprintf(p, sizeof(p), "%s/ca/issuing.pem", c->home_dir);
	if ((r = kl_cli_pem_write(p, c->issuing, NULL)) < 0)
		return r;
	/* The default AIA caIssuers location: DER (RFC 5280 §4.2.2.1). */
	{
		unsigned char *der = NULL;
		int len = i2d_X509(c->issuing, &der);

		snprintf(p, sizeof(p), "%s/ca/issuing.der", c->home_dir);
		r = len > 0 ? kl_write_file(p, der, (size_t)len, 0644)
		            : kl_error_set_ssl(KL_E_CRYPTO, "issuing CA certificate to DER");
		OPENSSL_free(der);
		if (r < 0)
			return r;
	}
	if ((r = kl_cli_pem_string(c->issuing, NULL, &a, &al)) == 0 &&
	    (r = kl_cli_pem_string(c->root, NULL, &b, &bl)) == 0) {
		chain = malloc(al + bl);
		if (!chain) {
			r = kl_error_set(KL_E_NOMEM, "out of memory");
		} else {
			memcpy(chain, a, al);
			memcpy(chain + al, b, bl);
			snprintf(p, sizeof(p), "%s/ca/chain.pem", c->home_dir);
			r = kl_write_file(p, chain, al + bl, 0644);
		}
	}
	free(chain);
	free(a);
	free(b);
	return r;
}

static int print_done(const struct ceremony *c)
{
	char fp_root[65], fp_ca[65];

	if (c->o->external_root) {
		printf("Issuing CA key created in the HSM: %s\n", c->ca_uri);
		printf("CSR for your enterprise root: %s/ca/issuing.csr\n", c->home_dir);
		printf(
		    "When the root has signed it: keyline --home %s ca import CERT --root ROOT\n",
		    c->home_dir);
		return 0;
	}
	/* Everything is recorded by now: a fingerprint that cannot be computed
	 * is said so, and the ceremony still succeeded. */
	if (kl_x509_fingerprint(c->root, fp_root) < 0)
		snprintf(fp_root, sizeof(fp_root), "(unavailable: %s)", kl_error_detail());
	if (kl_x509_fingerprint(c->issuing, fp_ca) < 0)
		snprintf(fp_ca, sizeof(fp_ca), "(unavailable: %s)", kl_error_detail());
	printf("CA ceremony done in %s\n", c->home_dir);
	printf("  root CA     %s\n              SHA-256 %s\n", c->root_uri, fp_root);
	printf("  issuing CA  %s\n              SHA-256 %s\n", c->ca_uri, fp_ca);
	printf("  chain       %s/ca/chain.pem\n", c->home_dir);
	printf("  token PINs  %s/secrets/ (mode 0600; move them to your PIN custody)\n",
	       c->home_dir);
	return 0;
}

int kl_cli_ca_init(const char *home_dir, const struct kl_cli_ca_init_opts *o)
{
	struct ceremony c = { .home_dir = home_dir, .o = o, .module = kl_hsm_default_module() };
	kl_home *home = NULL;
	kl_store *store = NULL;
	char conf[PATH_MAX];
	int r;

	snprintf(conf, sizeof(conf), "%s/keyline.conf", home_dir);
	if (access(conf, F_OK) == 0)
		r = kl_error_set(
		    KL_E_EXISTS,
		    "%s already holds a CA (keyline.conf exists); a ceremony is done once",
		    home_dir);
	else if (!c.module)
		r = kl_error_set(KL_E_NOTFOUND,
		                 "no SoftHSM2 module found (apt-get install softhsm2)");
	else if ((r = prepare_home(&c)) == 0 && (r = load_pins(&c)) == 0 &&
	         (r = make_keys_and_certs(&c)) == 0 && (r = write_config(&c)) == 0 &&
	         (r = kl_home_open(home_dir, &home)) == 0 &&
	         (r = kl_home_store(home, &store)) == 0 && (r = record_ceremony(&c, store)) == 0 &&
	         (o->external_root || (r = write_certs(&c)) == 0))
		r = print_done(&c);
	kl_home_free(home);
	ceremony_clear(&c);
	return r < 0 ? kl_cli_fail("ca init") : 0;
}

/* ---- ca import ---- */

int kl_cli_ca_import(kl_home *home, const char *cert_path, const char *root_path)
{
	_cleanup_(X509_freep) X509 *cert = NULL;
	_cleanup_(X509_freep) X509 *root = NULL;
	kl_home_key kr;
	kl_secret *pin = NULL;
	kl_hsm *h = NULL;
	EVP_PKEY *key = NULL;
	kl_store *store;
	kl_issuer_row row;
	unsigned char *der = NULL;
	char p[PATH_MAX], uri[256];
	int r, len;

	if (!(cert = kl_cli_cert_read(cert_path)) || !(root = kl_cli_cert_read(root_path)))
		return kl_cli_fail("ca import");
	if ((r = kl_home_key_ref(home, &kr)) < 0 || (r = kl_home_store(home, &store)) < 0)
		return kl_cli_fail("ca import");
	if (kl_store_issuer_get(store, "issuing", &row) == 0) {
		kl_issuer_row_clear(&row);
		kl_error_set(KL_E_EXISTS, "this home already has an issuing CA certificate");
		return kl_cli_fail("ca import");
	}
	if ((r = kl_hsm_open(kr.module, kr.token, &h)) < 0 ||
	    (r = kl_secret_from_spec(kr.pin_source, "issuing CA token PIN", &pin)) < 0 ||
	    (r = kl_hsm_login(h, pin)) < 0 || (r = kl_home_hsm_signer(h, &kr.uri, &key)) < 0 ||
	    (r = kl_ceremony_check_issuing(cert, key, root)) < 0)
		goto out;
	len = i2d_X509(cert, &der);
	if (len <= 0) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "encode issuing CA");
		goto out;
	}
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=%s;type=private", kr.token,
	         kr.uri.object);
	if ((r = kl_store_begin(store)) < 0)
		goto out;
	if ((r = kl_store_issuer_add(store, "issuing", uri, der, (size_t)len, NULL)) < 0 ||
	    (r = audit_cert(store, kl_home_actor(), "ca.ceremony.import", uri, cert)) < 0) {
		kl_store_rollback(store);
		goto out;
	}
	if ((r = kl_store_commit(store)) < 0)
		goto out;
	kl_home_path(home, "ca/issuing.pem", p, sizeof(p));
	if ((r = kl_cli_pem_write(p, cert, NULL)) < 0)
		goto out;
	/* What the default AIA caIssuers URL names (ca init). */
	kl_home_path(home, "ca/issuing.der", p, sizeof(p));
	if ((r = kl_write_file(p, der, (size_t)len, 0644)) < 0)
		goto out;
	kl_home_path(home, "ca/root.pem", p, sizeof(p));
	if ((r = kl_cli_pem_write(p, root, NULL)) < 0)
		goto out;
	printf("Issuing CA certificate installed; it chains to %s\n", root_path);
out:
	OPENSSL_free(der);
	EVP_PKEY_free(key);
	kl_hsm_free(h);
	kl_secret_free(pin);
	return r < 0 ? kl_cli_fail("ca import") : 0;
}
