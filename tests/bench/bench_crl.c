/* CRL build benchmark: Keyline's streamed CRL next to `openssl ca -gencrl`
 * on the same revoked entries, in the same run.
 *
 *   bench_crl [N ...]        (default: 100000 1000000)
 *
 * For each N it fills a registry with N revoked certificates, then builds and
 * signs a full CRL in a child process (ours), and has `openssl ca -gencrl`
 * build one from an index.txt holding the same entries. Each side runs in its
 * own process so that wall time and peak RSS (wait4) are its alone. Prints
 * seconds, peak memory and the CRL size, and ratios. Not a test: it asserts
 * only that both CRLs parse and verify. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
#include "kl_db.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "store.h"

#ifndef KL_PROFILES_DIR
#define KL_PROFILES_DIR "ca/profiles"
#endif

static void die(const char *what)
{
	bench_die("bench_crl", what);
}

struct run {
	double seconds;
	double peak_mib;
	int status;
};

/* Runs fn(arg) or argv in a child; measures wall time and the child's peak
 * RSS from wait4. */
static struct run measure(void (*fn)(void *), void *arg, const char *const argv[], const char *out)
{
	struct rusage ru;
	struct run r = { 0 };
	double t0 = bench_now();
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		if (fn) {
			fn(arg);
			_exit(0);
		}
		int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(devnull, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	wait4(pid, &st, 0, &ru);
	r.seconds = bench_now() - t0;
	r.peak_mib = (double)ru.ru_maxrss / 1024.0;
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return r;
}

struct ours_arg {
	const char *db;
	const char *crl_out;
	EVP_PKEY *key;
};

static void build_ours(void *varg)
{
	struct ours_arg *a = varg;
	kl_store *s;
	kl_ca *ca;
	unsigned char *der = NULL;
	size_t len = 0;
	kl_ca_config cfg = { .issuer_name = "issuing", .profiles_dir = KL_PROFILES_DIR };
	FILE *f;

	if (kl_store_open(a->db, &s) < 0 || kl_ca_open(s, &cfg, a->key, &ca) < 0 ||
	    kl_ca_crl(ca, 86400, "bench", &der, &len) < 0) {
		fprintf(stderr, "ours: %s\n", kl_error_detail());
		_exit(1);
	}
	f = fopen(a->crl_out, "w");
	if (!f || fwrite(der, 1, len, f) != len)
		_exit(2);
	fclose(f);
	free(der);
	kl_ca_free(ca);
	kl_store_free(s);
}

static void write_pem_file(const char *path, X509 *x, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");

	if (!f)
		die(path);
	if (x)
		PEM_write_X509(f, x);
	if (k)
		PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static const char *const reasons[] = { "unspecified", "keyCompromise", "superseded",
	                               "cessationOfOperation", "affiliationChanged" };
static const int reason_codes[] = { 0, 1, 4, 5, 3 };

/* N revoked certificates straight into the table (fake TBS: the CRL does not
 * read it), and the same entries as an `openssl ca` index.txt. */
static void fill(kl_store *s, int64_t issuer, long n, const char *index_path)
{
	kl_db *db = kl_store_db(s);
	kl_db_stmt *st = NULL;
	FILE *idx = fopen(index_path, "w");
	time_t now = time(NULL);
	char serial[41], revoked[20], expiry[20];
	unsigned char rnd[16];
	struct tm tm;

	if (!idx)
		die(index_path);
	if (kl_db_exec(db, "DELETE FROM ca_cert") < 0 || kl_db_begin(db) < 0)
		die("clear");
	if (kl_db_prepare(
	        db,
	        "INSERT INTO ca_cert(issuer_id, serial, state, profile, subject, tbs,"
	        " cert, not_after, created, issued, revoked, reason) "
	        "VALUES(?1, ?2, 'issued', 'idevid', 'x', x'00', x'00', ?3, ?4, ?4, ?5, ?6)",
	        &st) < 0)
		die("prepare");
	gmtime_r(&(time_t){ now + 365 * 86400 }, &tm);
	strftime(expiry, sizeof(expiry), "%Y%m%d%H%M%SZ", &tm); /* UTCTime: drop the century */
	for (long i = 0; i < n; i++) {
		time_t when = now - (time_t)(i % 86400);
		int ri = (int)(i % 5);

		RAND_bytes(rnd, sizeof(rnd));
		rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x10);
		kl_hex_encode(rnd, sizeof(rnd), serial);
		kl_db_bind_int64(st, 1, issuer);
		kl_db_bind_text(st, 2, serial);
		kl_db_bind_int64(st, 3, (int64_t)now + 365 * 86400);
		kl_db_bind_int64(st, 4, (int64_t)now - 86400);
		kl_db_bind_int64(st, 5, (int64_t)when);
		kl_db_bind_int64(st, 6, reason_codes[ri]);
		if (kl_db_step_done(st) != 1)
			die("insert");
		gmtime_r(&when, &tm);
		strftime(revoked, sizeof(revoked), "%Y%m%d%H%M%SZ", &tm);
		/* openssl ca wants uppercase hex serials */
		for (char *c = serial; *c; c++)
			if (*c >= 'a' && *c <= 'f')
				*c = (char)(*c - 'a' + 'A');
		fprintf(idx, "R\t%s\t%s,%s\t%s\tunknown\t/CN=dev%ld\n", expiry + 2, revoked + 2,
		        reasons[ri], serial, i);
	}
	kl_db_stmt_free(st);
	if (kl_db_commit(db) < 0)
		die("commit");
	fclose(idx);
}

int main(int argc, char **argv)
{
	long sizes[8] = { 100000, 1000000 };
	int n_sizes = 2;
	kl_floor *floor;
	char db[PATH_MAX], dir[PATH_MAX], path[PATH_MAX], cnf[PATH_MAX], key_pem[PATH_MAX],
	    cert_pem[PATH_MAX], index_path[PATH_MAX], ours_crl[PATH_MAX], their_crl[PATH_MAX];
	EVP_PKEY *root_key, *key;
	X509 *root, *issuing;
	X509_NAME *rn, *in;
	kl_store *s;
	int64_t issuer;
	unsigned char *der = NULL;
	int len;

	if (argc > 1) {
		n_sizes = 0;
		for (int i = 1; i < argc && n_sizes < 8; i++)
			sizes[n_sizes++] = atol(argv[i]);
	}
	if (kl_floor_new(&floor) < 0)
		die("floor");
	snprintf(dir, sizeof(dir), "%s", kl_floor_dir(floor));
	snprintf(db, sizeof(db), "%s/registry.db", dir);
	root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (kl_ceremony_name("Bench Root", "Keyline", "DE", &rn) < 0 ||
	    kl_ceremony_name("Bench Issuing", "Keyline", "DE", &in) < 0 ||
	    kl_ceremony_root(root_key, rn, 3650, &root) < 0 ||
	    kl_ceremony_issuing(root, root_key, in, key, 1825, &issuing) < 0)
		die("ceremony");
	if (kl_store_open(db, &s) < 0)
		die("store");
	len = i2d_X509(issuing, &der);
	if (kl_store_issuer_add(s, "issuing", "bench", der, (size_t)len, &issuer) < 0)
		die("issuer");
	OPENSSL_free(der);

	snprintf(key_pem, sizeof(key_pem), "%s/issuing.key", dir);
	snprintf(cert_pem, sizeof(cert_pem), "%s/issuing.pem", dir);
	snprintf(index_path, sizeof(index_path), "%s/index.txt", dir);
	snprintf(cnf, sizeof(cnf), "%s/openssl-ca.cnf", dir);
	snprintf(ours_crl, sizeof(ours_crl), "%s/ours.crl", dir);
	snprintf(their_crl, sizeof(their_crl), "%s/openssl.crl", dir);
	write_pem_file(key_pem, NULL, key);
	write_pem_file(cert_pem, issuing, NULL);
	FILE *f = fopen(cnf, "w");
	fprintf(f,
	        "[ca]\ndefault_ca = bench\n[bench]\ndatabase = %s\ncertificate = %s\n"
	        "private_key = %s\ncrlnumber = %s/crlnumber\ndefault_md = sha256\n"
	        "default_crl_days = 1\ncrl_extensions = crl_ext\n[crl_ext]\n"
	        "authorityKeyIdentifier = keyid:always\n",
	        index_path, cert_pem, key_pem, dir);
	fclose(f);

	printf("CRL build, ECDSA P-256 issuing CA key in software for both sides "
	       "(one signature per CRL: the HSM is not what is measured here)\n");
	printf("%10s | %9s %9s | %9s %9s | %9s | %8s %8s\n", "entries", "ours s", "ours MiB",
	       "openssl s", "ossl MiB", "CRL MiB", "speedup", "mem/CRL");
	for (int i = 0; i < n_sizes; i++) {
		struct ours_arg a = { db, ours_crl, key };
		struct stat st;

		fill(s, issuer, sizes[i], index_path);
		snprintf(path, sizeof(path), "%s/crlnumber", dir);
		f = fopen(path, "w");
		fprintf(f, "01\n");
		fclose(f);

		struct run ours = measure(build_ours, &a, NULL, NULL);
		const char *gencrl[] = { "openssl", "ca",   "-config", cnf,
			                 "-gencrl", "-out", their_crl, NULL };
		struct run theirs = measure(NULL, NULL, gencrl, NULL);
		if (ours.status != 0 || theirs.status != 0) {
			fprintf(stderr, "bench_crl: a side failed (ours %d, openssl %d)\n",
			        ours.status, theirs.status);
			return 1;
		}
		stat(ours_crl, &st);
		/* Both CRLs parse and verify with the issuing CA. */
		const char *check[] = { "openssl", "crl",     "-inform", "DER",    "-in", ours_crl,
			                "-noout",  "-verify", "-CAfile", cert_pem, NULL };
		struct run chk = measure(NULL, NULL, check, NULL);
		if (chk.status != 0) {
			fprintf(stderr, "bench_crl: our CRL does not verify with openssl\n");
			return 1;
		}
		double crl_mib = (double)st.st_size / (1024.0 * 1024.0);
		printf("%10ld | %9.3f %9.1f | %9.3f %9.1f | %9.1f | %7.1fx %7.1fx\n", sizes[i],
		       ours.seconds, ours.peak_mib, theirs.seconds, theirs.peak_mib, crl_mib,
		       theirs.seconds / ours.seconds, ours.peak_mib / crl_mib);
		fflush(stdout);
	}
	printf("speedup = openssl s / ours s; mem/CRL = our peak RSS / CRL size "
	       "(includes the process's fixed ~10 MiB)\n");
	kl_store_free(s);
	X509_free(root);
	X509_free(issuing);
	X509_NAME_free(rn);
	X509_NAME_free(in);
	EVP_PKEY_free(root_key);
	EVP_PKEY_free(key);
	kl_floor_free(floor);
	return 0;
}
