/* keyline ca: the security officer's commands. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "ceremony.h"
#include "cli.h"
#include "home.h"
#include "hsm.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "kl_secret.h"

#define ROOT_TOKEN "keyline-root"
#define CA_TOKEN   "keyline-ca"
#define ROOT_KEY   "root-ca"
#define CA_KEY     "issuing-ca"

static const char ca_usage[] =
    "usage: keyline [--home DIR] ca COMMAND [OPTIONS]\n"
    "\n"
    "The security officer's CA commands. The CA's keys live in an HSM (PKCS#11);\n"
    "the embedded default is a SoftHSM2 token store inside the home.\n"
    "\n"
    "commands:\n"
    "  init [OPTIONS]            key ceremony: root and issuing CA keys in the HSM\n"
    "      --org NAME            organisation in the CA names (default: Keyline)\n"
    "      --country CC          country in the CA names (default: none)\n"
    "      --crl-url URL         CRL distribution point put in certificates\n"
    "                            (default: file://HOME/crl/issuing.crl)\n"
    "      --external-root       make only the issuing CA key and a CSR (HOME/ca/issuing.csr)\n"
    "                            for an enterprise root; then run 'ca import'\n"
    "      --pin-file FILE       issuing token user PIN (default: generated into HOME/secrets)\n"
    "      --so-pin-file FILE    token SO PIN (default: generated into HOME/secrets)\n"
    "  import CERT --root ROOT   install the issuing CA certificate signed by an external root\n"
    "  status [--json]           keys, certificates, expiry, counts\n"
    "  issue --csr FILE --profile NAME [--out FILE]\n"
    "                            issue from a PKCS#10 request; PEM to stdout or FILE\n"
    "  revoke --serial HEX --reason NAME\n"
    "                            RFC 5280 reasons: unspecified, keyCompromise, cACompromise,\n"
    "                            affiliationChanged, superseded, cessationOfOperation,\n"
    "                            certificateHold, privilegeWithdrawn, aACompromise\n"
    "  crl [--days N]            build, sign and publish a full CRL (nextUpdate N days,\n"
    "                            default from the configuration, else 7); prints its path\n"
    "  export                    the CA chain (issuing, root) as PEM on stdout\n";

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "keyline ca: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see 'keyline ca --help')\n");
	return 2;
}

static int fail(const char *what)
{
	fprintf(stderr, "keyline ca %s: %s\n", what, kl_error_detail());
	return 1;
}

static int pem_string(X509 *x, X509_REQ *req, char **out, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	if (!b || (x && !PEM_write_bio_X509(b, x)) || (req && !PEM_write_bio_X509_REQ(b, req))) {
		BIO_free(b);
		return kl_error_set_ssl(KL_E_CRYPTO, "PEM");
	}
	n = BIO_get_mem_data(b, &p);
	*out = malloc((size_t)n + 1);
	if (!*out) {
		BIO_free(b);
		return kl_error_set(KL_E_NOMEM, "out of memory");
	}
	memcpy(*out, p, (size_t)n);
	(*out)[n] = '\0';
	*len = (size_t)n;
	BIO_free(b);
	return 0;
}

static int write_pem(const char *path, X509 *x, X509_REQ *req)
{
	char *s = NULL;
	size_t len = 0;
	int r = pem_string(x, req, &s, &len);

	if (r == 0)
		r = kl_write_file(path, s, len, 0644);
	free(s);
	return r;
}

static X509 *read_cert(const char *path)
{
	FILE *f = fopen(path, "re");
	X509 *x;

	if (!f) {
		kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "%s: %s", path,
		             strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	if (!x) {
		rewind(f);
		x = d2i_X509_fp(f, NULL);
	}
	fclose(f);
	if (!x)
		kl_error_set_ssl(KL_E_INVALID, "%s: not an X.509 certificate (PEM or DER)", path);
	return x;
}

/* A fresh PIN of 16 digits-and-letters from the CSPRNG, stored 0600. */
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

static int mkdirs(const char *dir, const char *const subdirs[])
{
	char p[PATH_MAX];

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return kl_error_set(KL_E_IO, "mkdir %s: %s", dir, strerror(errno));
	for (size_t i = 0; subdirs[i]; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, subdirs[i]);
		if (mkdir(p, strcmp(subdirs[i], "secrets") == 0 ? 0700 : 0755) < 0 &&
		    errno != EEXIST)
			return kl_error_set(KL_E_IO, "mkdir %s: %s", p, strerror(errno));
	}
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

/* The trust bundle of TPM vendors starts empty: the officer adds vendor EK
 * roots (PEM or DER) before the line provisions. */
static void mkdir_trust(const char *home_dir)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/trust", home_dir);
	(void)mkdir(p, 0755);
}

static int audit_cert(kl_store *s, const char *actor, const char *action, const char *uri,
                      const X509 *x)
{
	char fp[72], detail[512];

	kl_x509_fingerprint(x, fp);
	snprintf(detail, sizeof(detail), "{\"key\":\"%s\",\"sha256\":\"%s\"}", uri, fp);
	return kl_store_audit(s, actor, action, detail);
}

static int signer(kl_hsm *h, const char *token, const char *label, EVP_PKEY **ret)
{
	kl_pkcs11_uri u = { 0 };

	snprintf(u.token, sizeof(u.token), "%s", token);
	snprintf(u.object, sizeof(u.object), "%s", label);
	return kl_home_hsm_signer(h, &u, ret);
}

static int generate(kl_hsm *h, kl_hsm_key_type type, const char *label)
{
	kl_hsm_key *k = NULL;
	int r = kl_hsm_key_generate(h, type, label, &k);

	kl_hsm_key_free(k);
	return r;
}

struct init_opts {
	const char *org, *country, *crl_url, *pin_file, *so_pin_file;
	int external_root;
};

/* The key ceremony on the embedded default (SoftHSM in HOME/hsm). */
static int ca_init(const char *home_dir, const struct init_opts *o)
{
	const char *const subdirs[] = { "ca",         "profiles", "crl", "hsm",
		                        "hsm/tokens", "secrets",  NULL };
	char p[PATH_MAX], conf[PATH_MAX], softhsm_conf[PATH_MAX], crl_url[PATH_MAX + 16];
	char root_uri[256], ca_uri[256], pin_root[PATH_MAX], pin_ca[PATH_MAX], pin_so[PATH_MAX];
	const char *module = kl_hsm_default_module();
	const char *actor = kl_home_actor();
	kl_secret *so = NULL, *upin_root = NULL, *upin_ca = NULL;
	kl_hsm *hroot = NULL, *hca = NULL;
	EVP_PKEY *kroot = NULL, *kca = NULL;
	X509 *root = NULL, *issuing = NULL;
	X509_REQ *csr = NULL;
	X509_NAME *rn = NULL, *in = NULL;
	kl_home *home = NULL;
	kl_store *store = NULL;
	unsigned char *der = NULL;
	FILE *f;
	int r, len;

	snprintf(conf, sizeof(conf), "%s/keyline.conf", home_dir);
	if (access(conf, F_OK) == 0) {
		kl_error_set(KL_E_EXISTS,
		             "%s already holds a CA (keyline.conf exists); a ceremony is done once",
		             home_dir);
		return fail("init");
	}
	if (!module) {
		kl_error_set(KL_E_NOTFOUND, "no SoftHSM2 module found (apt-get install softhsm2)");
		return fail("init");
	}
	if ((r = mkdirs(home_dir, subdirs)) < 0)
		return fail("init");
	snprintf(softhsm_conf, sizeof(softhsm_conf), "%s/hsm/softhsm2.conf", home_dir);
	f = fopen(softhsm_conf, "we");
	if (!f) {
		kl_error_set(KL_E_IO, "%s: %s", softhsm_conf, strerror(errno));
		return fail("init");
	}
	fprintf(f,
	        "# SoftHSM2 token store of this Keyline home (the embedded default HSM)\n"
	        "directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\n"
	        "log.level = ERROR\nslots.removable = false\n",
	        home_dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", softhsm_conf, 1);

	snprintf(pin_so, sizeof(pin_so), "%s/secrets/so.pin", home_dir);
	snprintf(pin_root, sizeof(pin_root), "%s/secrets/%s.pin", home_dir, ROOT_TOKEN);
	snprintf(pin_ca, sizeof(pin_ca), "%s/secrets/%s.pin", home_dir, CA_TOKEN);
	r = o->so_pin_file ? kl_secret_from_file(o->so_pin_file, &so) : new_pin_file(pin_so, &so);
	if (r == 0)
		r = o->pin_file ? kl_secret_from_file(o->pin_file, &upin_ca)
		                : new_pin_file(pin_ca, &upin_ca);
	if (r == 0 && !o->external_root)
		r = new_pin_file(pin_root, &upin_root);
	if (r < 0)
		goto out;

	fprintf(stderr, "keyline ca init: creating tokens in %s/hsm\n", home_dir);
	if ((r = kl_hsm_token_init(module, CA_TOKEN, so, upin_ca)) < 0 ||
	    (!o->external_root && (r = kl_hsm_token_init(module, ROOT_TOKEN, so, upin_root)) < 0))
		goto out;

	r = kl_ceremony_name("Keyline Issuing CA", o->org, o->country, &in);
	if (r == 0)
		r = kl_ceremony_name("Keyline Root CA", o->org, o->country, &rn);
	if (r < 0)
		goto out;

	fprintf(stderr, "keyline ca init: generating the issuing CA key (EC P-256) in '%s'\n",
	        CA_TOKEN);
	if ((r = kl_hsm_open(module, CA_TOKEN, &hca)) < 0 || (r = kl_hsm_login(hca, upin_ca)) < 0 ||
	    (r = generate(hca, KL_HSM_KEY_EC_P256, CA_KEY)) < 0 ||
	    (r = signer(hca, CA_TOKEN, CA_KEY, &kca)) < 0)
		goto out;
	snprintf(ca_uri, sizeof(ca_uri), "pkcs11:token=%s;object=%s;type=private", CA_TOKEN,
	         CA_KEY);

	if (o->external_root) {
		r = kl_ceremony_csr(kca, in, &csr);
		if (r < 0)
			goto out;
		snprintf(p, sizeof(p), "%s/ca/issuing.csr", home_dir);
		if ((r = write_pem(p, NULL, csr)) < 0)
			goto out;
	} else {
		fprintf(stderr, "keyline ca init: generating the root CA key (EC P-384) in '%s'\n",
		        ROOT_TOKEN);
		if ((r = kl_hsm_open(module, ROOT_TOKEN, &hroot)) < 0 ||
		    (r = kl_hsm_login(hroot, upin_root)) < 0 ||
		    (r = generate(hroot, KL_HSM_KEY_EC_P384, ROOT_KEY)) < 0 ||
		    (r = signer(hroot, ROOT_TOKEN, ROOT_KEY, &kroot)) < 0)
			goto out;
		snprintf(root_uri, sizeof(root_uri), "pkcs11:token=%s;object=%s;type=private",
		         ROOT_TOKEN, ROOT_KEY);
		if ((r = kl_ceremony_root(kroot, rn, 7300, &root)) < 0 ||
		    (r = kl_ceremony_issuing(root, kroot, in, kca, 3650, &issuing)) < 0)
			goto out;
	}

	/* The configuration, then the registry with its first audit entries. */
	if (o->crl_url)
		snprintf(crl_url, sizeof(crl_url), "%s", o->crl_url);
	else
		snprintf(crl_url, sizeof(crl_url), "file://%s/crl/issuing.crl", home_dir);
	char station_id[64] = "station";
	gethostname(station_id, sizeof(station_id) - 1);
	mkdir_trust(home_dir);
	/* The officer's own PIN file stays where it is: the home refers to it. */
	char pin_line[PATH_MAX + 8];
	if (o->pin_file) {
		char abs[PATH_MAX];

		if (!realpath(o->pin_file, abs)) {
			r = kl_error_set(KL_E_IO, "%s: %s", o->pin_file, strerror(errno));
			goto out;
		}
		snprintf(pin_line, sizeof(pin_line), "file:%s", abs);
	} else {
		snprintf(pin_line, sizeof(pin_line), "file:${home}/secrets/%s.pin", CA_TOKEN);
	}
	f = fopen(conf, "we");
	if (!f) {
		r = kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
		goto out;
	}
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
	        module, CA_TOKEN, CA_KEY, pin_line, ROOT_TOKEN, ROOT_KEY, ROOT_TOKEN, crl_url,
	        station_id);
	if (fclose(f) != 0) {
		r = kl_error_set(KL_E_IO, "%s: %s", conf, strerror(errno));
		goto out;
	}
	snprintf(p, sizeof(p), "%s/profiles", home_dir);
	if ((r = copy_profiles(p)) < 0)
		goto out;
	if ((r = kl_home_open(home_dir, &home)) < 0 || (r = kl_home_store(home, &store)) < 0)
		goto out;

	if (o->external_root) {
		/* The issuer row waits for the certificate ('ca import'). */
		char detail[256];

		snprintf(detail, sizeof(detail), "{\"key\":\"%s\",\"csr\":\"ca/issuing.csr\"}",
		         ca_uri);
		if ((r = kl_store_audit(store, actor, "ca.ceremony.csr", detail)) < 0)
			goto out;
		printf("Issuing CA key created in the HSM: %s\n", ca_uri);
		printf("CSR for your enterprise root: %s/ca/issuing.csr\n", home_dir);
		printf(
		    "When the root has signed it: keyline --home %s ca import CERT --root ROOT\n",
		    home_dir);
		r = 0;
		goto out;
	}
	len = i2d_X509(issuing, &der);
	if (len <= 0) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "encode issuing CA");
		goto out;
	}
	if ((r = kl_store_begin(store)) < 0)
		goto out;
	if ((r = kl_store_issuer_add(store, "issuing", ca_uri, der, (size_t)len, NULL)) < 0 ||
	    (r = audit_cert(store, actor, "ca.ceremony.root", root_uri, root)) < 0 ||
	    (r = audit_cert(store, actor, "ca.ceremony.issuing", ca_uri, issuing)) < 0) {
		kl_store_rollback(store);
		goto out;
	}
	if ((r = kl_store_commit(store)) < 0)
		goto out;
	snprintf(p, sizeof(p), "%s/ca/root.pem", home_dir);
	if ((r = write_pem(p, root, NULL)) < 0)
		goto out;
	snprintf(p, sizeof(p), "%s/ca/issuing.pem", home_dir);
	if ((r = write_pem(p, issuing, NULL)) < 0)
		goto out;
	{
		char *a = NULL, *b = NULL, *chain;
		size_t al = 0, bl = 0;

		if ((r = pem_string(issuing, NULL, &a, &al)) == 0 &&
		    (r = pem_string(root, NULL, &b, &bl)) == 0 &&
		    (chain = malloc(al + bl)) != NULL) {
			memcpy(chain, a, al);
			memcpy(chain + al, b, bl);
			snprintf(p, sizeof(p), "%s/ca/chain.pem", home_dir);
			r = kl_write_file(p, chain, al + bl, 0644);
			free(chain);
		}
		free(a);
		free(b);
		if (r < 0)
			goto out;
	}
	char fp_root[72], fp_ca[72];
	kl_x509_fingerprint(root, fp_root);
	kl_x509_fingerprint(issuing, fp_ca);
	printf("CA ceremony done in %s\n", home_dir);
	printf("  root CA     %s\n              SHA-256 %s\n", root_uri, fp_root);
	printf("  issuing CA  %s\n              SHA-256 %s\n", ca_uri, fp_ca);
	printf("  chain       %s/ca/chain.pem\n", home_dir);
	printf("  token PINs  %s/secrets/ (mode 0600; move them to your PIN custody)\n", home_dir);
	r = 0;
out:
	kl_home_free(home);
	OPENSSL_free(der);
	X509_NAME_free(rn);
	X509_NAME_free(in);
	X509_free(root);
	X509_free(issuing);
	X509_REQ_free(csr);
	EVP_PKEY_free(kroot);
	EVP_PKEY_free(kca);
	kl_hsm_free(hroot);
	kl_hsm_free(hca);
	kl_secret_free(so);
	kl_secret_free(upin_root);
	kl_secret_free(upin_ca);
	return r < 0 ? fail("init") : 0;
}

/* External root: install the issuing certificate once the root signed the CSR. */
static int ca_import(kl_home *home, const char *cert_path, const char *root_path)
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

	if (!(cert = read_cert(cert_path)) || !(root = read_cert(root_path)))
		return fail("import");
	if ((r = kl_home_key_ref(home, &kr)) < 0 || (r = kl_home_store(home, &store)) < 0)
		return fail("import");
	if (kl_store_issuer_get(store, "issuing", &row) == 0) {
		kl_issuer_row_clear(&row);
		kl_error_set(KL_E_EXISTS, "this home already has an issuing CA certificate");
		return fail("import");
	}
	if ((r = kl_hsm_open(kr.module, kr.token, &h)) < 0 ||
	    (r = kl_secret_from_spec(kr.pin_source, "issuing CA token PIN", &pin)) < 0 ||
	    (r = kl_hsm_login(h, pin)) < 0 || (r = kl_home_hsm_signer(h, &kr.uri, &key)) < 0 ||
	    (r = kl_ceremony_check_issuing(cert, key, root)) < 0)
		goto out;
	len = i2d_X509(cert, &der);
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
	if ((r = write_pem(p, cert, NULL)) < 0)
		goto out;
	kl_home_path(home, "ca/root.pem", p, sizeof(p));
	if ((r = write_pem(p, root, NULL)) < 0)
		goto out;
	printf("Issuing CA certificate installed; it chains to %s\n", root_path);
out:
	OPENSSL_free(der);
	EVP_PKEY_free(key);
	kl_hsm_free(h);
	kl_secret_free(pin);
	return r < 0 ? fail("import") : 0;
}

static void print_time(FILE *out, const char *label, const ASN1_TIME *t)
{
	BIO *b = BIO_new_fp(out, BIO_NOCLOSE);

	fprintf(out, "%s", label);
	ASN1_TIME_print(b, t);
	fprintf(out, "\n");
	BIO_free(b);
}

static int ca_status(kl_home *home, bool json)
{
	static const char *const states[] = { "issued", "pending", "rejected", "abandoned" };
	kl_store *store;
	kl_issuer_row row;
	X509 *x;
	const unsigned char *q;
	int64_t counts[4] = { 0 }, revoked = 0;
	char subject[256], fp[72], p[PATH_MAX];
	int days = 0, secs = 0;

	if (kl_home_store(home, &store) < 0)
		return fail("status");
	if (kl_store_issuer_get(store, kl_config_get(home->conf, "ca.issuer", "issuing"), &row) < 0)
		return fail("status");
	q = row.cert_der;
	x = d2i_X509(NULL, &q, (long)row.cert_len);
	if (!x) {
		kl_issuer_row_clear(&row);
		kl_error_set_ssl(KL_E_CRYPTO, "stored issuing CA certificate");
		return fail("status");
	}
	for (int i = 0; i < 4; i++)
		kl_store_cert_count(store, row.id, states[i], &counts[i]);
	kl_store_revoked_count(store, row.id, &revoked);
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	kl_x509_fingerprint(x, fp);
	ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x));
	kl_home_path(home, "crl/issuing.crl", p, sizeof(p));
	if (json) {
		printf("{\"home\":\"%s\",\"issuer\":\"%s\",\"key\":\"%s\",\"subject\":\"%s\","
		       "\"sha256\":\"%s\",\"days_left\":%d,\"certificates\":{\"issued\":%lld,"
		       "\"pending\":%lld,\"rejected\":%lld,\"abandoned\":%lld,\"revoked\":%lld},"
		       "\"crl_number\":%lld,\"crl_path\":\"%s\"}\n",
		       home->dir, row.name, row.key_uri, subject, fp, days, (long long)counts[0],
		       (long long)counts[1], (long long)counts[2], (long long)counts[3],
		       (long long)revoked, (long long)row.crl_number, p);
	} else {
		printf("home         %s\n", home->dir);
		printf("issuing CA   %s\n", subject);
		printf("key          %s\n", row.key_uri);
		printf("SHA-256      %s\n", fp);
		print_time(stdout, "expires      ", X509_get0_notAfter(x));
		printf("             (%d days left)%s\n", days,
		       days < 90 ? "  WARNING: renew the issuing CA soon" : "");
		printf("certificates %lld issued, %lld revoked, %lld rejected by lint, "
		       "%lld abandoned, %lld pending\n",
		       (long long)counts[0], (long long)revoked, (long long)counts[2],
		       (long long)counts[3], (long long)counts[1]);
		printf("last CRL     number %lld%s%s\n", (long long)row.crl_number,
		       row.crl_number ? ", " : "", row.crl_number ? p : " (none published yet)");
	}
	X509_free(x);
	kl_issuer_row_clear(&row);
	return 0;
}

static int ca_issue(kl_home *home, const char *csr_path, const char *profile, const char *out)
{
	X509_REQ *csr = NULL;
	X509 *x = NULL;
	kl_ca *ca;
	char serial[48], *pem = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	f = fopen(csr_path, "re");
	if (!f) {
		kl_error_set(errno == ENOENT ? KL_E_NOTFOUND : KL_E_IO, "CSR %s: %s", csr_path,
		             strerror(errno));
		return fail("issue");
	}
	csr = PEM_read_X509_REQ(f, NULL, NULL, NULL);
	if (!csr) {
		rewind(f);
		csr = d2i_X509_REQ_fp(f, NULL);
	}
	fclose(f);
	if (!csr) {
		kl_error_set_ssl(KL_E_INVALID, "%s is not a PKCS#10 request (PEM or DER)",
		                 csr_path);
		return fail("issue");
	}
	r = kl_home_ca(home, kl_home_actor(), &ca);
	if (r == 0)
		r = kl_ca_issue_csr(ca, csr, profile, kl_home_actor(), &x, serial);
	X509_REQ_free(csr);
	if (r < 0)
		return fail("issue");
	r = pem_string(x, NULL, &pem, &len);
	X509_free(x);
	if (r == 0 && out)
		r = kl_write_file(out, pem, len, 0644);
	else if (r == 0)
		fwrite(pem, 1, len, stdout);
	free(pem);
	if (r < 0)
		return fail("issue");
	fprintf(stderr, "issued serial %s (profile %s)\n", serial, profile);
	return 0;
}

static int ca_revoke(kl_home *home, const char *serial, const char *reason_name)
{
	kl_ca *ca;
	int reason = kl_crl_reason_from_name(reason_name);

	if (reason < 0)
		return fail("revoke");
	if (kl_home_ca(home, kl_home_actor(), &ca) < 0 ||
	    kl_ca_revoke(ca, serial, reason, kl_home_actor()) < 0)
		return fail("revoke");
	printf("revoked %s (%s); publish with 'keyline ca crl'\n", serial, reason_name);
	return 0;
}

/* Builds, signs and writes HOME/crl/issuing.crl (DER) and .pem. */

static int ca_crl(kl_home *home, long days)
{
	char path[PATH_MAX];

	if (days <= 0 && kl_config_int(home->conf, "ca.crl_days", 7, 1, 366, &days) < 0)
		return fail("crl");
	if (kl_home_publish_crl(home, days, kl_home_actor(), path, sizeof(path)) < 0)
		return fail("crl");
	printf("%s\n", path);
	return 0;
}

static int ca_export(kl_home *home)
{
	char p[PATH_MAX];
	X509 *issuing, *root;

	kl_home_path(home, "ca/issuing.pem", p, sizeof(p));
	issuing = read_cert(p);
	kl_home_path(home, "ca/root.pem", p, sizeof(p));
	root = issuing ? read_cert(p) : NULL;
	if (!issuing || !root) {
		X509_free(issuing);
		return fail("export");
	}
	PEM_write_X509(stdout, issuing);
	PEM_write_X509(stdout, root);
	X509_free(issuing);
	X509_free(root);
	return 0;
}

int kl_cmd_ca(const char *home_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ "csr", required_argument, NULL, 'c' },
		{ "profile", required_argument, NULL, 'p' },
		{ "out", required_argument, NULL, 'o' },
		{ "serial", required_argument, NULL, 's' },
		{ "reason", required_argument, NULL, 'r' },
		{ "days", required_argument, NULL, 'd' },
		{ "org", required_argument, NULL, 'O' },
		{ "country", required_argument, NULL, 'C' },
		{ "crl-url", required_argument, NULL, 'u' },
		{ "external-root", no_argument, NULL, 'x' },
		{ "pin-file", required_argument, NULL, 'P' },
		{ "so-pin-file", required_argument, NULL, 'S' },
		{ "root", required_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	const char *csr = NULL, *profile = NULL, *out = NULL, *serial = NULL, *reason = NULL,
	           *root = NULL;
	struct init_opts io = { .org = "Keyline" };
	bool json = false;
	long days = 0;
	kl_home *home = NULL;
	const char *cmd;
	int c, rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(ca_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	/* optind = 0 makes glibc start afresh: main() parsed in "+" (stop at
	 * the first non-option) mode, which would otherwise stick. */
	argc--;
	argv++;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(ca_usage, stdout);
			return 0;
		case 'j':
			json = true;
			break;
		case 'c':
			csr = optarg;
			break;
		case 'p':
			profile = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 's':
			serial = optarg;
			break;
		case 'r':
			reason = optarg;
			break;
		case 'd':
			days = strtol(optarg, NULL, 10);
			if (days < 1 || days > 366)
				return usage_error("--days must be 1..366, not '%s'", optarg);
			break;
		case 'O':
			io.org = optarg;
			break;
		case 'C':
			io.country = optarg;
			break;
		case 'u':
			io.crl_url = optarg;
			break;
		case 'x':
			io.external_root = 1;
			break;
		case 'P':
			io.pin_file = optarg;
			break;
		case 'S':
			io.so_pin_file = optarg;
			break;
		case 'R':
			root = optarg;
			break;
		default:
			return usage_error("bad option");
		}
	}

	if (strcmp(cmd, "import") != 0 && optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (strcmp(cmd, "init") == 0)
		return ca_init(home_dir, &io);

	if (strcmp(cmd, "status") && strcmp(cmd, "issue") && strcmp(cmd, "revoke") &&
	    strcmp(cmd, "crl") && strcmp(cmd, "export") && strcmp(cmd, "import"))
		return usage_error("unknown command '%s'", cmd);
	if (strcmp(cmd, "issue") == 0 && (!csr || !profile))
		return usage_error("issue needs --csr FILE and --profile NAME");
	if (strcmp(cmd, "revoke") == 0 && (!serial || !reason))
		return usage_error("revoke needs --serial HEX and --reason NAME");
	if (strcmp(cmd, "import") == 0 && (optind >= argc || !root))
		return usage_error("import needs CERT and --root ROOT");

	if (kl_home_open(home_dir, &home) < 0)
		return fail(cmd);
	if (strcmp(cmd, "status") == 0)
		rc = ca_status(home, json);
	else if (strcmp(cmd, "issue") == 0)
		rc = ca_issue(home, csr, profile, out);
	else if (strcmp(cmd, "revoke") == 0)
		rc = ca_revoke(home, serial, reason);
	else if (strcmp(cmd, "crl") == 0)
		rc = ca_crl(home, days);
	else if (strcmp(cmd, "import") == 0)
		rc = ca_import(home, argv[optind], root);
	else
		rc = ca_export(home);
	kl_home_free(home);
	return rc;
}
