/* Issuance benchmark, one run, SoftHSM ECDSA P-256, one thread:
 *
 *   1. the raw HSM signing rate: a C_Sign loop over prepared digests
 *   2. the same key signing through libp11's EVP_PKEY (what the CA uses)
 *   3. Keyline's durable issuance: profile -> build -> PENDING committed ->
 *      lint -> HSM sign -> verify -> ISSUED committed with its audit entry,
 *      in batches (one commit per batch for each state) and one at a time
 *   4. `openssl ca -batch` issuing the same certificates from a scripted CA
 *      (software key: openssl ca cannot reach the HSM without an engine)
 *
 *   bench_issue [N]     N certificates per measurement (default 5000)
 *
 * Prints certificates per second and ratios against the raw HSM rate. Not a
 * test: no figure decides anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "bench.h"
#include "ca.h"
#include "ceremony.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "store.h"

#ifndef KL_PROFILES_DIR
#define KL_PROFILES_DIR "ca/profiles"
#endif

static void die(const char *what)
{
	bench_die("bench_issue", what);
}

static void row(const char *what, long n, double secs, double raw)
{
	double rate = (double)n / secs;

	if (raw > 0)
		printf("  %-52s %9.0f /s  %6.1f%% of raw HSM\n", what, rate, 100.0 * rate / raw);
	else
		printf("  %-52s %9.0f /s\n", what, rate);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 5000;
	kl_floor *floor;
	kl_token tok;
	kl_hsm *h;
	kl_hsm_key *key;
	kl_secret *pin;
	EVP_PKEY *priv, *pub, *root_key, *dev;
	X509 *root, *issuing;
	X509_NAME *rn, *in;
	kl_store *store;
	kl_ca *ca;
	char dir[PATH_MAX], db[PATH_MAX], path[PATH_MAX];
	unsigned char digest[32], sig[128], *der = NULL;
	size_t siglen;
	double t0, raw;
	int len;

	if (n < 100)
		n = 100;
	if (kl_floor_new(&floor) < 0 || kl_floor_token(floor, "bench", "1234", "5678", &tok) < 0)
		die("floor");
	snprintf(dir, sizeof(dir), "%s", kl_floor_dir(floor));
	if (kl_secret_from_bytes("5678", 4, &pin) < 0 || kl_hsm_open(tok.module, "bench", &h) < 0 ||
	    kl_hsm_login(h, pin) < 0 ||
	    kl_hsm_key_generate(h, KL_HSM_KEY_EC_P256, "issuing", &key) < 0 ||
	    kl_hsm_key_private(h, key, &priv) < 0 || kl_hsm_key_public(h, key, &pub) < 0)
		die("hsm");
	kl_secret_free(pin);

	printf("Issuance on SoftHSM2 (%s), ECDSA P-256, one thread, %ld per measurement\n",
	       tok.module, n);

	/* 1. raw C_Sign */
	RAND_bytes(digest, sizeof(digest));
	t0 = bench_now();
	for (long i = 0; i < n; i++) {
		siglen = sizeof(sig);
		digest[0] = (unsigned char)i;
		if (kl_hsm_sign_digest(h, key, digest, sizeof(digest), sig, &siglen) < 0)
			die("C_Sign");
	}
	raw = (double)n / (bench_now() - t0);
	row("raw HSM signing (C_Sign loop)", n, (double)n / raw, 0);

	/* 2. through libp11's EVP_PKEY */
	t0 = bench_now();
	for (long i = 0; i < n; i++) {
		EVP_MD_CTX *m = EVP_MD_CTX_new();

		siglen = sizeof(sig);
		digest[0] = (unsigned char)i;
		if (!m || EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, priv) <= 0 ||
		    EVP_DigestSign(m, sig, &siglen, digest, sizeof(digest)) <= 0)
			die("EVP_DigestSign");
		EVP_MD_CTX_free(m);
	}
	row("HSM signing through libp11 EVP_PKEY", n, bench_now() - t0, raw);

	/* 3. durable issuance: a software root, the issuing key in the HSM. */
	root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	if (kl_ceremony_name("Bench Root", "Keyline", "DE", &rn) < 0 ||
	    kl_ceremony_name("Bench Issuing", "Keyline", "DE", &in) < 0 ||
	    kl_ceremony_root(root_key, rn, 3650, &root) < 0 ||
	    kl_ceremony_issuing(root, root_key, in, pub, 1825, &issuing) < 0)
		die("ceremony");
	snprintf(db, sizeof(db), "%s/registry.db", dir);
	len = i2d_X509(issuing, &der);
	if (kl_store_open(db, &store) < 0 ||
	    kl_store_issuer_add(store, "issuing", "pkcs11:token=bench;object=issuing", der,
	                        (size_t)len, NULL) < 0)
		die("store");
	OPENSSL_free(der);
	kl_ca_config cfg = { .issuer_name = "issuing",
		             .profiles_dir = KL_PROFILES_DIR,
		             .crl_url = "http://pki.example.test/issuing.crl",
		             .cps_url = "http://pki.test/cps.html",
		             .ca_issuers_url = "http://pki.test/issuing.der",
		             .actor = "bench" };
	if (kl_ca_open(store, &cfg, priv, &ca) < 0)
		die("ca");
	dev = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");

	enum { BATCH = 256 };
	kl_cert_request reqs[BATCH];
	kl_issue_result res[BATCH];
	for (int i = 0; i < BATCH; i++)
		reqs[i] = (kl_cert_request){ .profile = "idevid",
			                     .pubkey = dev,
			                     .serial_number = "BENCH-0001",
			                     /* a TPM's identifiers (devid.h) */
			                     .hw_serial = "49424D00:0A0B0C0D:01",
			                     .permanent_id = "00112233445566778899AABBCCDDEEFF"
			                                     "00112233445566778899AABBCCDDEEFF",
			                     .der_only = true };
	t0 = bench_now();
	for (long done = 0; done < n; done += BATCH) {
		size_t k = (size_t)(n - done < BATCH ? n - done : BATCH);

		if (kl_ca_issue_batch(ca, reqs, k, res) < 0)
			die("issue batch");
		for (size_t i = 0; i < k; i++) {
			if (res[i].rc < 0) {
				fprintf(stderr, "bench_issue: %s\n", res[i].error);
				return 1;
			}
			OPENSSL_free(res[i].der);
		}
	}
	row("Keyline durable issuance, batches of 256", n, bench_now() - t0, raw);

	/* What verifying each signature costs on its own (the pipeline must),
	 * and the ceiling sign + verify leave for any durable pipeline. */
	{
		X509 *x = NULL;
		double tv, verify_rate;

		if (kl_ca_issue(ca, &reqs[0], &x, NULL) < 0)
			die("issue");
		tv = bench_now();
		for (long i = 0; i < n; i++)
			if (X509_verify(x, pub) != 1)
				die("verify");
		verify_rate = (double)n / (bench_now() - tv);
		X509_free(x);
		row("  for scale: X509_verify of one certificate", n, (double)n / verify_rate, raw);
		double ceiling = 1.0 / (1.0 / raw + 1.0 / verify_rate);
		printf("  %-52s %9.0f /s  %6.1f%% of raw HSM\n",
		       "  for scale: sign + verify, nothing else", ceiling, 100.0 * ceiling / raw);
	}

	long single = n / 10 < 200 ? 200 : n / 10;
	t0 = bench_now();
	for (long i = 0; i < single; i++) {
		X509 *x = NULL;

		if (kl_ca_issue(ca, &reqs[0], &x, NULL) < 0)
			die("issue");
		X509_free(x);
	}
	row("Keyline durable issuance, one at a time", single, bench_now() - t0, raw);

	/* 4. openssl ca -batch, scripted, software key, same profile shape. */
	char key_pem[PATH_MAX], cert_pem[PATH_MAX], cnf[PATH_MAX], csr_dir[PATH_MAX],
	    out_dir[PATH_MAX];
	EVP_PKEY *soft = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *soft_cert = NULL;
	FILE *f;
	long k = n < 2000 ? n : 2000;

	if (kl_ceremony_issuing(root, root_key, in, soft, 1825, &soft_cert) < 0)
		die("ceremony");
	snprintf(key_pem, sizeof(key_pem), "%s/ossl.key", dir);
	snprintf(cert_pem, sizeof(cert_pem), "%s/ossl.pem", dir);
	snprintf(cnf, sizeof(cnf), "%s/ossl.cnf", dir);
	snprintf(csr_dir, sizeof(csr_dir), "%s/csr", dir);
	snprintf(out_dir, sizeof(out_dir), "%s/out", dir);
	mkdir(csr_dir, 0700);
	mkdir(out_dir, 0700);
	f = fopen(key_pem, "w");
	PEM_write_PrivateKey(f, soft, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	f = fopen(cert_pem, "w");
	PEM_write_X509(f, soft_cert);
	fclose(f);
	snprintf(path, sizeof(path), "%s/index.txt", dir);
	fclose(fopen(path, "w"));
	f = fopen(cnf, "w");
	fprintf(f,
	        "[ca]\ndefault_ca = b\n[b]\ndatabase = %s/index.txt\nnew_certs_dir = %s\n"
	        "certificate = %s\nprivate_key = %s\nrand_serial = yes\ndefault_md = sha256\n"
	        "default_days = 825\npolicy = p\nunique_subject = no\nx509_extensions = e\n"
	        "preserve = yes\n[p]\nserialNumber = supplied\n[e]\n"
	        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
	        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
	        "certificatePolicies = 2.23.133.11.1.1,2.23.133.11.1.2\n"
	        "crlDistributionPoints = URI:http://pki.example.test/issuing.crl\n"
	        "subjectAltName = critical,otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hwmn\n"
	        "[hwmn]\nhwType = OID:2.23.133.1.2\nhwSerialNum = OCTETSTRING:BENCH-0001\n",
	        dir, out_dir, cert_pem, key_pem);
	fclose(f);
	/* The CSRs (made here, outside the timing). */
	const char **argv2 = calloc((size_t)k + 16, sizeof(*argv2));
	char **names = calloc((size_t)k, sizeof(*names));
	int a = 0;
	argv2[a++] = "openssl";
	argv2[a++] = "ca";
	argv2[a++] = "-batch";
	argv2[a++] = "-notext";
	argv2[a++] = "-config";
	argv2[a++] = cnf;
	argv2[a++] = "-out";
	snprintf(path, sizeof(path), "%s/all.pem", dir);
	argv2[a++] = path;
	argv2[a++] = "-infiles";
	for (long i = 0; i < k; i++) {
		X509_REQ *req = X509_REQ_new();
		X509_NAME *nm = X509_NAME_new();

		X509_NAME_add_entry_by_NID(nm, NID_serialNumber, V_ASN1_PRINTABLESTRING,
		                           (const unsigned char *)"BENCH-0001", -1, -1, 0);
		X509_REQ_set_subject_name(req, nm);
		X509_REQ_set_pubkey(req, dev);
		X509_REQ_sign(req, dev, EVP_sha256());
		names[i] = malloc(PATH_MAX);
		snprintf(names[i], PATH_MAX, "%s/%ld.csr", csr_dir, i);
		f = fopen(names[i], "w");
		PEM_write_X509_REQ(f, req);
		fclose(f);
		argv2[a++] = names[i];
		X509_REQ_free(req);
		X509_NAME_free(nm);
	}
	argv2[a] = NULL;
	t0 = bench_now();
	int st = kl_floor_run(floor, "/dev/null", NULL, argv2);
	double ossl = bench_now() - t0;
	if (st != 0) {
		fprintf(stderr, "bench_issue: openssl ca failed (%d)\n", st);
		setenv("KEYLINE_KEEP_FLOOR", "1", 1);
		kl_floor_free(floor);
		return 1;
	}
	row("openssl ca -batch (software key, one process)", k, ossl, raw);
	printf("  (openssl ca keeps index.txt in a text file and rewrites it; it has no\n"
	       "   PENDING state, no lint and no signature check)\n");

	for (long i = 0; i < k; i++)
		free(names[i]);
	free(names);
	free(argv2);
	kl_ca_free(ca);
	kl_store_free(store);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(dev);
	EVP_PKEY_free(soft);
	EVP_PKEY_free(root_key);
	X509_free(root);
	X509_free(issuing);
	X509_free(soft_cert);
	X509_NAME_free(rn);
	X509_NAME_free(in);
	kl_hsm_key_free(key);
	kl_hsm_free(h);
	kl_floor_free(floor);
	return 0;
}
