/* Credential protection in software (station/proof/credential.c), no TPM.
 *
 * Software EK key pairs of the three TCG default types (RSA 2048, P-256,
 * P-384). For each:
 *   1. kl_make_credential → kl_activate_credential_soft recovers the secret,
 *      for 1 byte, 16 bytes and the nameAlg's digest size; blobs have the
 *      sizes Part 1 §24 gives them and differ from one call to the next;
 *   2. any flipped byte of credentialBlob or secret fails: a flipped size is
 *      malformed input (-KL_E_INVALID), anything else fails the seed
 *      recovery or the HMAC check (-KL_E_CRYPTO);
 *   3. the wrong object name or another EK fails the HMAC check;
 *   4. bad inputs are refused and leave the outputs untouched;
 *   5. blobs made by tpm2_makecredential --tcti none (an independent
 *      implementation, run as a process) from the EK as PEM (-G rsa|ecc,
 *      which tpm2-tools supports for the L-1 and L-2 templates only) and as a
 *      TPM2B_PUBLIC of the exact template (all three) are accepted and give
 *      the same secret; for another name they fail;
 *   6. KDFa and KDFe match the spec's loops written out in the test.
 * Recovered secrets are compared with kl_secret_equal (constant time). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "credential.h"
#include "credential_kdf.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "tpm.h"
#include "../ek_public_file.h"

static const kl_ek_type all_types[] = { KL_EK_RSA2048, KL_EK_P256, KL_EK_P384 };
#define N_TYPES 3

static struct {
	EVP_PKEY *ek[N_TYPES];    /* private keys, index as all_types */
	EVP_PKEY *other[N_TYPES]; /* another EK of the same type */
	char dir[PATH_MAX];       /* scratch directory for tpm2-tools */
} fx;

/* The one EC key parameter that matters to tpm2-tools' PEM path: it takes
 * the EK's x without leading zeros, where a TPM uses the field-size value
 * (see test 5), so the PEM EKs get an x whose first byte is not zero. */
static bool x_has_leading_zero(EVP_PKEY *k)
{
	_cleanup_(BN_freep) BIGNUM *x = NULL;
	int bits;

	assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
	bits = EVP_PKEY_get_bits(k);
	return BN_num_bytes(x) < (bits + 7) / 8;
}

static EVP_PKEY *new_ek(kl_ek_type type)
{
	EVP_PKEY *k = NULL;

	for (;;) {
		switch (type) {
		case KL_EK_RSA2048:
			return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		case KL_EK_P256:
			k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
			break;
		case KL_EK_P384:
			k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
			break;
		default:
			return NULL;
		}
		if (!k || !x_has_leading_zero(k))
			return k;
		EVP_PKEY_free(k);
	}
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		fx.ek[i] = new_ek(all_types[i]);
		fx.other[i] = new_ek(all_types[i]);
		if (!fx.ek[i] || !fx.other[i])
			return -1;
	}
	snprintf(fx.dir, sizeof(fx.dir), "%s/kl-test-credential-XXXXXX",
	         tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(fx.dir) ? 0 : -1;
}

static const char *scratch_files[] = { "ek.pem", "ek.pub", "secret", "out" };

static int group_teardown(void **state)
{
	char p[PATH_MAX];

	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		EVP_PKEY_free(fx.ek[i]);
		EVP_PKEY_free(fx.other[i]);
	}
	for (size_t i = 0; i < sizeof(scratch_files) / sizeof(scratch_files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", fx.dir, scratch_files[i]);
		(void)unlink(p);
	}
	(void)rmdir(fx.dir);
	return 0;
}

/* A SHA-256 TPM name (0x000b || digest) of some text: any object's name
 * looks like this to MakeCredential. */
static kl_tpm_name name_of(const char *text)
{
	kl_tpm_name n;
	unsigned int len = 0;

	memset(&n, 0, sizeof(n));
	n.buf[0] = 0x00;
	n.buf[1] = 0x0b;
	assert_int_equal(EVP_Digest(text, strlen(text), n.buf + 2, &len, EVP_sha256(), NULL), 1);
	n.len = 2 + len;
	return n;
}

static void random_bytes(unsigned char *p, size_t n)
{
	assert_int_equal(RAND_bytes(p, (int)n), 1);
}

/* Activates c with ek and checks that it gives want. */
static void assert_activates(EVP_PKEY *ek, kl_ek_type type, const kl_tpm_name *name,
                             const kl_credential *c, const unsigned char *want, size_t want_len)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;
	_cleanup_(kl_secret_freep) kl_secret *expect = NULL;

	if (kl_activate_credential_soft(ek, type, name, c, &got) < 0)
		fail_msg("%s: %s", kl_ek_type_name(type), kl_error_detail());
	assert_int_equal(kl_secret_from_bytes(want, want_len, &expect), 0);
	assert_true(kl_secret_equal(got, expect));
}

/* Activation fails with code; got stays untouched. */
static void assert_refused(EVP_PKEY *ek, kl_ek_type type, const kl_tpm_name *name,
                           const kl_credential *c, kl_err code)
{
	kl_secret *got = (kl_secret *)&got;

	assert_int_equal(kl_activate_credential_soft(ek, type, name, c, &got), -(int)code);
	assert_int_equal(kl_error_code(), code);
	assert_ptr_equal(got, (kl_secret *)&got);
}

/* 1. Round trips, and the sizes of Part 1 §24.4: blob = 2 + TPM2B_DIGEST
 * (outerHMAC) + encIdentity (2 + credential); secret = 2 + RSA-2048
 * ciphertext, or 2 + TPMS_ECC_POINT with field-size coordinates. */
static void test_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		kl_ek_type type = all_types[i];
		const size_t max = kl_credential_max_len(type);
		const size_t lens[] = { 1, 16, max };
		const kl_tpm_name name = name_of("iak");

		assert_int_equal(max, type == KL_EK_P384 ? 48 : 32);
		for (size_t j = 0; j < 3; j++) {
			unsigned char cred[64];
			kl_credential *a = NULL, *b = NULL;

			random_bytes(cred, lens[j]);
			if (kl_make_credential(fx.ek[i], type, cred, lens[j], &name, &a) < 0)
				fail_msg("%s: %s", kl_ek_type_name(type), kl_error_detail());
			assert_int_equal(a->blob_len, 2 + 2 + max + 2 + lens[j]);
			assert_int_equal(a->blob[0] << 8 | a->blob[1], a->blob_len - 2);
			assert_int_equal(a->blob[2] << 8 | a->blob[3], max);
			if (type == KL_EK_RSA2048) {
				assert_int_equal(a->secret_len, 2 + 256);
			} else {
				size_t f = type == KL_EK_P256 ? 32 : 48;
				assert_int_equal(a->secret_len, 2 + 2 + f + 2 + f);
				assert_int_equal(a->secret[2] << 8 | a->secret[3], f);
			}
			assert_int_equal(a->secret[0] << 8 | a->secret[1], a->secret_len - 2);
			assert_activates(fx.ek[i], type, &name, a, cred, lens[j]);

			/* a fresh seed (or ephemeral key) every time */
			assert_int_equal(
			    kl_make_credential(fx.ek[i], type, cred, lens[j], &name, &b), 0);
			assert_int_equal(a->secret_len, b->secret_len);
			assert_memory_not_equal(a->secret, b->secret, a->secret_len);
			assert_memory_not_equal(a->blob + 4, b->blob + 4, max);
			assert_activates(fx.ek[i], type, &name, b, cred, lens[j]);
			kl_credential_free(a);
			kl_credential_free(b);
		}
	}
}

/* 2. Every single flipped byte is caught. */
static void test_tamper(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		kl_ek_type type = all_types[i];
		const kl_tpm_name name = name_of("iak");
		unsigned char cred[48];
		kl_credential *c = NULL;
		const size_t max = kl_credential_max_len(type);

		random_bytes(cred, max);
		assert_int_equal(kl_make_credential(fx.ek[i], type, cred, max, &name, &c), 0);
		for (size_t k = 0; k < c->blob_len; k++) {
			c->blob[k] ^= 0x01;
			/* the blob's own size and the outerHMAC's size frame it */
			assert_refused(fx.ek[i], type, &name, c,
			               k < 4 ? KL_E_INVALID : KL_E_CRYPTO);
			if (k >= 4)
				assert_non_null(
				    strstr(kl_error_detail(), "integrity check failed"));
			c->blob[k] ^= 0x01;
		}
		for (size_t k = 0; k < c->secret_len; k++) {
			c->secret[k] ^= 0x80;
			/* ECC: a coordinate's size makes a point that does not
			 * parse; any other byte a point off the curve or a
			 * different seed. RSA: OAEP fails. */
			bool framing = k < 2 || (type != KL_EK_RSA2048 &&
			                         (k == 2 || k == 3 ||
			                          k == 4 + c->secret[2] * 256u + c->secret[3] ||
			                          k == 5 + c->secret[2] * 256u + c->secret[3]));
			assert_refused(fx.ek[i], type, &name, c,
			               framing ? KL_E_INVALID : KL_E_CRYPTO);
			c->secret[k] ^= 0x80;
		}
		/* and the untouched credential still activates */
		assert_activates(fx.ek[i], type, &name, c, cred, max);
		kl_credential_free(c);
	}
}

/* 3. Another object's name, another EK. */
static void test_wrong_name_or_ek(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		kl_ek_type type = all_types[i];
		const kl_tpm_name name = name_of("iak");
		const kl_tpm_name other = name_of("some other key");
		kl_tpm_name short_name = name;
		unsigned char cred[32];
		kl_credential *c = NULL;

		random_bytes(cred, sizeof(cred));
		assert_int_equal(kl_make_credential(fx.ek[i], type, cred, 32, &name, &c), 0);
		assert_refused(fx.ek[i], type, &other, c, KL_E_CRYPTO);
		assert_non_null(strstr(kl_error_detail(), "integrity check failed"));
		/* a name of another nameAlg is a different name */
		short_name.buf[1] = 0x04; /* SHA-1 */
		short_name.len = 2 + 20;
		assert_refused(fx.ek[i], type, &short_name, c, KL_E_CRYPTO);
		/* another TPM's EK of the same type */
		assert_refused(fx.other[i], type, &name, c, KL_E_CRYPTO);
		kl_credential_free(c);
	}
}

/* 4. Inputs that are refused before any cryptography. */
static void test_bad_input(void **state)
{
	const kl_tpm_name name = name_of("iak");
	unsigned char cred[65];
	kl_credential *c = (kl_credential *)&c;
	kl_tpm_name bad = name;

	(void)state;
	memset(cred, 0x5a, sizeof(cred));
	/* credential sizes: 1 .. digest size */
	assert_int_equal(kl_make_credential(fx.ek[0], KL_EK_RSA2048, cred, 0, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[0], KL_EK_RSA2048, cred, 33, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[2], KL_EK_P384, cred, 49, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[0], KL_EK_RSA2048, NULL, 16, &name, &c),
	                 -KL_E_INVALID);
	/* a key that is not the EK type's */
	assert_int_equal(kl_make_credential(fx.ek[0], KL_EK_P256, cred, 16, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[2], KL_EK_P256, cred, 16, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[1], KL_EK_RSA2048, cred, 16, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(fx.ek[1], KL_EK__MAX, cred, 16, &name, &c),
	                 -KL_E_INVALID);
	assert_int_equal(kl_make_credential(NULL, KL_EK_P256, cred, 16, &name, &c), -KL_E_INVALID);
	/* names: a known nameAlg and a digest of its size */
	assert_int_equal(kl_make_credential(fx.ek[1], KL_EK_P256, cred, 16, NULL, &c),
	                 -KL_E_INVALID);
	bad.len = 20;
	assert_int_equal(kl_make_credential(fx.ek[1], KL_EK_P256, cred, 16, &bad, &c),
	                 -KL_E_INVALID);
	bad = name;
	bad.buf[1] = 0x99;
	assert_int_equal(kl_make_credential(fx.ek[1], KL_EK_P256, cred, 16, &bad, &c),
	                 -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "0x0099"));
	/* outputs untouched */
	assert_ptr_equal(c, (kl_credential *)&c);

	/* kl_credential_new wants one whole TPM2B each */
	static const unsigned char blob[] = { 0x00, 0x03, 1, 2, 3 };
	static const unsigned char secret[] = { 0x00, 0x02, 1, 2 };
	assert_int_equal(kl_credential_new(blob, sizeof(blob), secret, sizeof(secret), &c), 0);
	assert_int_equal(c->blob_len, 5);
	assert_memory_equal(c->secret, secret, sizeof(secret));
	kl_credential_free(c);
	c = (kl_credential *)&c;
	assert_int_equal(kl_credential_new(blob, 4, secret, sizeof(secret), &c), -KL_E_INVALID);
	assert_int_equal(kl_credential_new(blob, sizeof(blob), secret, 3, &c), -KL_E_INVALID);
	assert_int_equal(kl_credential_new(blob, 1, secret, sizeof(secret), &c), -KL_E_INVALID);
	assert_int_equal(kl_credential_new(NULL, 0, secret, sizeof(secret), &c), -KL_E_INVALID);
	assert_ptr_equal(c, (kl_credential *)&c);
	kl_credential_free(NULL);

	/* a blob too short for the EK's outerHMAC */
	assert_int_equal(kl_credential_new(blob, sizeof(blob), secret, sizeof(secret), &c), 0);
	assert_refused(fx.ek[1], KL_EK_P256, &name, c, KL_E_INVALID);
	kl_credential_free(c);
	assert_int_equal(kl_credential_max_len(KL_EK__MAX), 0);
}

/* ---- 5. tpm2_makecredential as an independent implementation ---- */

static void scratch(char *buf, size_t size, const char *file)
{
	int n = snprintf(buf, size, "%s/%s", fx.dir, file);

	assert_true(n > 0 && (size_t)n < size);
}

static void write_file(const char *path, const unsigned char *p, size_t n)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	unsigned char *buf;
	struct stat st;
	FILE *f = fopen(path, "re");

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	fclose(f);
	*len = (size_t)st.st_size;
	return buf;
}

/* Runs argv (looked up in PATH) with stdout and stderr on /dev/null: its
 * exit status, or -1. */
static int run(const char *const argv[])
{
	int status = 0;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_pem(const char *path, EVP_PKEY *ek)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(PEM_write_PUBKEY(f, ek), 1);
	assert_int_equal(fclose(f), 0);
}

/* tpm2-tools' credential file (tools/tpm2_makecredential.c,
 * write_cred_and_secret): magic 0xBADCC0DE and version 1, both 32-bit
 * big-endian, then the TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET as
 * TPM2Bs, and nothing after. */
static kl_credential *parse_tools_file(const char *path)
{
	static const unsigned char header[] = { 0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1 };
	kl_credential *c = NULL;
	size_t len = 0, blob_len, secret_len;
	unsigned char *d = read_file(path, &len);

	assert_true(len > sizeof(header) + 4);
	assert_memory_equal(d, header, sizeof(header));
	blob_len = 2 + ((size_t)d[8] << 8 | d[9]);
	assert_true(8 + blob_len + 2 <= len);
	secret_len = 2 + ((size_t)d[8 + blob_len] << 8 | d[9 + blob_len]);
	assert_int_equal(8 + blob_len + secret_len, len);
	if (kl_credential_new(d + 8, blob_len, d + 8 + blob_len, secret_len, &c) < 0)
		fail_msg("%s", kl_error_detail());
	free(d);
	return c;
}

static kl_credential *tools_make(kl_ek_type type, EVP_PKEY *ek, bool pem, const unsigned char *cred,
                                 size_t cred_len, const kl_tpm_name *name)
{
	char pub[PATH_MAX], secret[PATH_MAX], out[PATH_MAX], hex[2 * KL_TPM_NAME_MAX + 1];
	const char *alg = type == KL_EK_RSA2048 ? "rsa" : "ecc";

	scratch(pub, sizeof(pub), pem ? "ek.pem" : "ek.pub");
	scratch(secret, sizeof(secret), "secret");
	scratch(out, sizeof(out), "out");
	if (pem)
		write_pem(pub, ek);
	else
		write_tpm2b_public(pub, type, ek);
	write_file(secret, cred, cred_len);
	for (size_t i = 0; i < name->len; i++)
		snprintf(hex + 2 * i, 3, "%02x", name->buf[i]);
	(void)unlink(out);

	const char *with_g[] = { "tpm2_makecredential",
		                 "-T",
		                 "none",
		                 "-u",
		                 pub,
		                 "-G",
		                 alg,
		                 "-s",
		                 secret,
		                 "-n",
		                 hex,
		                 "-o",
		                 out,
		                 NULL };
	const char *without_g[] = { "tpm2_makecredential",
		                    "-T",
		                    "none",
		                    "-u",
		                    pub,
		                    "-s",
		                    secret,
		                    "-n",
		                    hex,
		                    "-o",
		                    out,
		                    NULL };
	int st = run(pem ? with_g : without_g);
	if (st != 0)
		fail_msg("tpm2_makecredential (%s, %s) exited %d", kl_ek_type_name(type),
		         pem ? "PEM" : "TPM2B_PUBLIC", st);
	(void)unlink(secret);
	return parse_tools_file(out);
}

static void test_tpm2_tools_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_TYPES; i++) {
		kl_ek_type type = all_types[i];
		const size_t max = kl_credential_max_len(type);
		const kl_tpm_name name = name_of("iak");
		const kl_tpm_name other = name_of("not the iak");

		/* -G ecc means the L-2 template (P-256, SHA-256, AES-128),
		 * whatever the PEM's curve: no PEM for H-3. */
		for (int pem = 0; pem <= (type == KL_EK_P384 ? 0 : 1); pem++) {
			unsigned char cred[48];
			kl_credential *c;

			random_bytes(cred, max);
			c = tools_make(type, fx.ek[i], pem, cred, max, &name);
			if (type == KL_EK_RSA2048)
				assert_int_equal(c->secret_len, 2 + 256);
			assert_activates(fx.ek[i], type, &name, c, cred, max);
			assert_refused(fx.ek[i], type, &other, c, KL_E_CRYPTO);
			assert_refused(fx.other[i], type, &name, c, KL_E_CRYPTO);
			kl_credential_free(c);

			/* a short credential too */
			c = tools_make(type, fx.ek[i], pem, cred, 5, &name);
			assert_activates(fx.ek[i], type, &name, c, cred, 5);
			kl_credential_free(c);
		}
	}
}

/* 6. KDFa and KDFe (credential_kdf.h, on OpenSSL's KBKDF and SSKDF)
 * against the loops of Part 1 §11.4.10 written out here, for digests of two
 * sizes, output lengths below, at and between multiples of the digest size
 * (a wrong counter, separator or L changes every one), and with and without
 * context. */
static void be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* K(i) = HMAC(key, [i]32 || label || 00 || context || [bits]32). */
static void ref_kdfa(const char *md, const unsigned char *key, size_t key_len, const char *label,
                     const unsigned char *ctx, size_t ctx_len, unsigned char *out, size_t len)
{
	unsigned char in[4 + 32 + 128 + 4], block[EVP_MAX_MD_SIZE];
	const size_t label_len = strlen(label) + 1;
	size_t done = 0, n, in_len;

	assert_true(label_len <= 32 && ctx_len <= 128);
	for (uint32_t i = 1; done < len; i++) {
		be32(in, i);
		memcpy(in + 4, label, label_len);
		if (ctx_len) /* memcpy wants a pointer even for no bytes */
			memcpy(in + 4 + label_len, ctx, ctx_len);
		be32(in + 4 + label_len + ctx_len, (uint32_t)(8 * len));
		in_len = 4 + label_len + ctx_len + 4;
		assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, md, NULL, key, key_len, in, in_len,
		                          block, sizeof(block), &n));
		if (n > len - done)
			n = len - done;
		memcpy(out + done, block, n);
		done += n;
	}
}

/* K(i) = H([i]32 || Z || label || 00 || partyUInfo || partyVInfo). */
static void ref_kdfe(const char *md, const unsigned char *z, size_t z_len, const char *label,
                     const unsigned char *u, size_t u_len, const unsigned char *v, size_t v_len,
                     unsigned char *out, size_t len)
{
	unsigned char in[4 + 64 + 32 + 64 + 64], block[EVP_MAX_MD_SIZE];
	const size_t label_len = strlen(label) + 1;
	size_t done = 0, o;
	unsigned int n;

	assert_true(z_len <= 64 && label_len <= 32 && u_len <= 64 && v_len <= 64);
	for (uint32_t i = 1; done < len; i++) {
		be32(in, i);
		o = 4;
		memcpy(in + o, z, z_len);
		o += z_len;
		memcpy(in + o, label, label_len);
		o += label_len;
		if (u_len)
			memcpy(in + o, u, u_len);
		o += u_len;
		if (v_len)
			memcpy(in + o, v, v_len);
		o += v_len;
		assert_int_equal(EVP_Digest(in, o, block, &n, EVP_get_digestbyname(md), NULL), 1);
		if (n > len - done)
			n = (unsigned int)(len - done);
		memcpy(out + done, block, n);
		done += n;
	}
}

static void test_kdf_reference(void **state)
{
	static const char *const mds[] = { "SHA256", "SHA384" };
	static const size_t lens[] = { 1, 16, 20, 32, 33, 48, 49, 64, 65, 100 };
	unsigned char key[48], ctx[34], z[48], u[48], v[48];
	unsigned char got[128], want[128];

	(void)state;
	assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
	assert_int_equal(RAND_bytes(ctx, sizeof(ctx)), 1);
	assert_int_equal(RAND_bytes(z, sizeof(z)), 1);
	assert_int_equal(RAND_bytes(u, sizeof(u)), 1);
	assert_int_equal(RAND_bytes(v, sizeof(v)), 1);
	for (size_t m = 0; m < sizeof(mds) / sizeof(mds[0]); m++) {
		const char *md = mds[m];
		const size_t dl = m == 0 ? 32 : 48; /* seed, Z and x sizes of that curve */

		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			const size_t n = lens[l];

			/* symKey: "STORAGE" with the object name as context. */
			memset(got, 0xa5, sizeof(got));
			assert_int_equal(kl_kdfa(md, key, dl, "STORAGE", ctx, sizeof(ctx), got, n),
			                 0);
			ref_kdfa(md, key, dl, "STORAGE", ctx, sizeof(ctx), want, n);
			assert_memory_equal(got, want, n);
			assert_int_equal(got[n], 0xa5); /* exactly n bytes written */

			/* HMACkey: "INTEGRITY" with no context. */
			assert_int_equal(kl_kdfa(md, key, dl, "INTEGRITY", NULL, 0, got, n), 0);
			ref_kdfa(md, key, dl, "INTEGRITY", NULL, 0, want, n);
			assert_memory_equal(got, want, n);

			/* seed: "IDENTITY", QeU.x and QsV.x; and either party empty. */
			memset(got, 0xa5, sizeof(got));
			assert_int_equal(kl_kdfe(md, z, dl, "IDENTITY", u, dl, v, dl, got, n), 0);
			ref_kdfe(md, z, dl, "IDENTITY", u, dl, v, dl, want, n);
			assert_memory_equal(got, want, n);
			assert_int_equal(got[n], 0xa5);
			assert_int_equal(kl_kdfe(md, z, dl, "IDENTITY", u, dl - 1, NULL, 0, got, n),
			                 0);
			ref_kdfe(md, z, dl, "IDENTITY", u, dl - 1, NULL, 0, want, n);
			assert_memory_equal(got, want, n);
			assert_int_equal(kl_kdfe(md, z, dl, "IDENTITY", NULL, 0, v, dl, got, n), 0);
			ref_kdfe(md, z, dl, "IDENTITY", NULL, 0, v, dl, want, n);
			assert_memory_equal(got, want, n);
		}
	}

	/* L is part of KDFa's input, so a shorter output is no prefix of a
	 * longer one; KDFe has no L, so it is. */
	assert_int_equal(kl_kdfa("SHA256", key, 32, "STORAGE", ctx, sizeof(ctx), got, 16), 0);
	assert_int_equal(kl_kdfa("SHA256", key, 32, "STORAGE", ctx, sizeof(ctx), want, 32), 0);
	assert_memory_not_equal(got, want, 16);
	assert_int_equal(kl_kdfe("SHA256", z, 32, "IDENTITY", u, 32, v, 32, got, 16), 0);
	assert_int_equal(kl_kdfe("SHA256", z, 32, "IDENTITY", u, 32, v, 32, want, 32), 0);
	assert_memory_equal(got, want, 16);

	/* Refusals. */
	kl_error_clear();
	assert_int_equal(kl_kdfa("NO-SUCH-DIGEST", key, 32, "STORAGE", ctx, 4, got, 16),
	                 -KL_E_CRYPTO);
	assert_non_null(strstr(kl_error_detail(), "KDFa NO-SUCH-DIGEST"));
	assert_int_equal(kl_kdfe("NO-SUCH-DIGEST", z, 32, "IDENTITY", u, 32, v, 32, got, 16),
	                 -KL_E_CRYPTO);
	assert_non_null(strstr(kl_error_detail(), "KDFe NO-SUCH-DIGEST"));
	unsigned char big[200] = { 0 };
	assert_int_equal(kl_kdfe("SHA256", z, 32, "IDENTITY", big, sizeof(big), v, 32, got, 16),
	                 -KL_E_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_wrong_name_or_ek),   cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_tpm2_tools_vectors), cmocka_unit_test(test_kdf_reference),
	};

	return cmocka_run_group_tests_name("credential", tests, group_setup, group_teardown);
}
