/* Seeds for the fuzz harnesses of what a DUT sends, taken from real swtpm
 * DUTs of the floor (fixtures/floor.h), and checked to be what they claim:
 *
 *   corpus/ek/floor-*          the NV bytes of the RSA 2048, P-256 and P-384
 *                              EK certificates and of the platform
 *                              certificate of a DUT from vendor acme-tpm,
 *                              and the P-256 EK certificate of a DUT from
 *                              rogue-tpm, which the bundle does not trust;
 *   data/trust/                acme-tpm's EK root and issuing CA (the bundle
 *                              fuzz_ek checks against);
 *   corpus/attest/floor-*      TPM2_CertifyCreation answers (TPMS_ATTEST,
 *                              signature) with the IAK's and IDevID's public
 *                              areas, the nonce and the creation data, for
 *                              nonces of 32, 1 and 64 bytes;
 *                              a rekeyed IDevID; the IAK certifying itself;
 *                              the public areas of the attestation and
 *                              storage keys and of the EK templates;
 *   corpus/credential/floor-*  TPM2_MakeCredential by the DUT's TPM for the
 *                              test EK keys of data/ (ek-*.pem) and the IAK's
 *                              name, which fuzz_credential can open, and the
 *                              station's credentials for the DUT's own EKs,
 *                              which the DUT's TPM opens.
 *
 * The part format of the attest and credential files is fuzz_util.h's.
 *
 * As a ctest case (label swtpm) it writes into the floor's directory and
 * checks everything, so the recipe keeps working. To regenerate the
 * committed files (the floor makes new vendor CAs each time, so the EK seeds
 * and data/trust change together):
 *
 *   KL_FUZZ_SEED_DIR=$PWD/tests/fuzz build/tests/fuzz/test_fuzz_seed_from_floor
 *
 * which replaces corpus/{attest,ek,credential}/floor-* and data/trust/, and
 * makes data/ek-*.pem only when they are missing. */
#include <dirent.h>
#include <errno.h>
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
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "attest.h"
#include "credential.h"
#include "floor.h"
#include "fuzz_util.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "tpm.h"
#include "../ek_public_file.h"
#include "tpm_activate.h"
#include "tpm_certify.h"
#include "tpm_nv.h"
#include "tpm_object.h"
#include "trust.h"

#define IBM 0x49424d00u

KL_DEFINE_CLEANUP(kl_trust, kl_trust_free)

static const kl_ek_type all_types[] = { KL_EK_RSA2048, KL_EK_P256, KL_EK_P384 };

static struct {
	kl_floor *floor;
	kl_vendor *acme, *rogue;
	kl_dut **duts;   /* one acme-tpm DUT */
	kl_dut **rogues; /* one rogue-tpm DUT */
	char out[PATH_MAX];
	bool regen;
	EVP_PKEY *test_ek[KL_EK__MAX]; /* the keys of data/ek-*.pem */
} fx;

static void path_of(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void path_of(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < size);
}

static void make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		fail_msg("mkdir %s: %s", path, strerror(errno));
}

/* Removes DIR/PREFIX* (the seeds of an earlier run). */
static void remove_prefixed(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[PATH_MAX];

		if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0)
			continue;
		path_of(path, sizeof(path), "%s/%s", dir, e->d_name);
		assert_int_equal(unlink(path), 0);
	}
	closedir(d);
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
	size_t len = 0;
	unsigned char *d = kl_floor_read_file(from, &len);

	assert_non_null(d);
	write_file(to, d, len);
	free(d);
}

/* Writes corpus/HARNESS/floor-NAME as parts (fuzz_util.h). */
static void write_parts(const char *harness, const char *name, const fuzz_part *parts, size_t n)
{
	unsigned char buf[8192];
	char path[PATH_MAX];
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		assert_true(parts[i].n <= 0xffff && len + 2 + parts[i].n <= sizeof(buf));
		buf[len++] = (unsigned char)(parts[i].n >> 8);
		buf[len++] = (unsigned char)parts[i].n;
		if (parts[i].n)
			memcpy(buf + len, parts[i].p, parts[i].n);
		len += parts[i].n;
	}
	path_of(path, sizeof(path), "%s/corpus/%s/floor-%s", fx.out, harness, name);
	write_file(path, buf, len);
}

static void write_raw(const char *harness, const char *name, const void *p, size_t n)
{
	char path[PATH_MAX];

	path_of(path, sizeof(path), "%s/corpus/%s/floor-%s", fx.out, harness, name);
	write_file(path, p, n);
}

/* The credential harness's EK keys: data/ek-<type>.pem. Made (and written)
 * only when regenerating and missing. */
static void load_test_eks(void)
{
	char dir[PATH_MAX];

	if (fx.regen)
		path_of(dir, sizeof(dir), "%s/data", fx.out);
	else
		path_of(dir, sizeof(dir), "%s", fuzz_data_dir());
	for (size_t i = 0; i < 3; i++) {
		kl_ek_type t = all_types[i];
		char path[PATH_MAX];
		FILE *f;

		path_of(path, sizeof(path), "%s/ek-%s.pem", dir, kl_ek_type_name(t));
		f = fopen(path, "re");
		if (f) {
			fx.test_ek[t] = PEM_read_PrivateKey(f, NULL, NULL, NULL);
			fclose(f);
			assert_non_null(fx.test_ek[t]);
			continue;
		}
		if (!fx.regen)
			fail_msg("%s: %s (the committed test EK keys)", path, strerror(errno));
		fx.test_ek[t] = t == KL_EK_RSA2048
		                    ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
		                : t == KL_EK_P256 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
		                                  : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		assert_non_null(fx.test_ek[t]);
		f = fopen(path, "we");
		assert_non_null(f);
		assert_int_equal(PEM_write_PrivateKey(f, fx.test_ek[t], NULL, NULL, 0, NULL, NULL),
		                 1);
		assert_int_equal(fclose(f), 0);
	}
}

static int group_setup(void **state)
{
	const char *regen = getenv("KL_FUZZ_SEED_DIR");

	(void)state;
	if (kl_floor_new(&fx.floor) < 0 || kl_floor_vendor(fx.floor, "acme-tpm", &fx.acme) < 0 ||
	    kl_floor_vendor(fx.floor, "rogue-tpm", &fx.rogue) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.acme, "seed", 1, &fx.duts) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.rogue, "rogue", 1, &fx.rogues) < 0 ||
	    kl_dut_start(fx.floor, fx.duts[0]) < 0) {
		fprintf(stderr, "floor setup: %s\n", kl_error_detail());
		kl_floor_free(fx.floor);
		fx.floor = NULL;
		return -1;
	}
	fx.regen = regen && *regen;
	if (fx.regen)
		snprintf(fx.out, sizeof(fx.out), "%s", regen);
	else
		snprintf(fx.out, sizeof(fx.out), "%s/fuzz", kl_floor_dir(fx.floor));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < KL_EK__MAX; i++)
		EVP_PKEY_free(fx.test_ek[i]);
	kl_floor_free(fx.floor);
	fx.floor = NULL;
	return 0;
}

/* The output directories, emptied of an earlier run's seeds. */
static void test_directories(void **state)
{
	static const char *const harnesses[] = { "attest", "ek", "credential" };
	char p[PATH_MAX];

	(void)state;
	make_dir(fx.out);
	path_of(p, sizeof(p), "%s/corpus", fx.out);
	make_dir(p);
	for (size_t i = 0; i < 3; i++) {
		path_of(p, sizeof(p), "%s/corpus/%s", fx.out, harnesses[i]);
		make_dir(p);
		remove_prefixed(p, "floor-");
	}
	path_of(p, sizeof(p), "%s/data", fx.out);
	make_dir(p);
	path_of(p, sizeof(p), "%s/data/trust", fx.out);
	make_dir(p);
	remove_prefixed(p, "");
	load_test_eks();
}

static kl_tpm *open_dut(const kl_dut *d)
{
	kl_tpm *t = NULL;

	if (kl_tpm_open(d->tcti, &t) < 0)
		fail_msg("open %s (%s): %s", d->name, d->tcti, kl_error_detail());
	return t;
}

static void nv_seed(kl_tpm *t, uint32_t index, const char *name, const kl_trust *trust,
                    kl_ek_verdict want)
{
	kl_ek_report rep = { .type = KL_EK_P256, .verdict = KL_EK_TPM_ERROR };

	if (kl_tpm_nv_read(t, index, &rep.cert_der, &rep.cert_len) < 0)
		fail_msg("NV 0x%08x: %s", index, kl_error_detail());
	write_raw("ek", name, rep.cert_der, rep.cert_len);
	assert_int_equal(kl_ek_cert_verify(trust, IBM, "IBM", &rep), 0);
	if (rep.verdict != want)
		fail_msg("%s: %s (%s), expected %s", name, kl_ek_verdict_name(rep.verdict),
		         rep.reason, kl_ek_verdict_name(want));
	kl_ek_report_clear(&rep);
}

/* Steps 3 and 4 on the real certificates; the bundle is acme-tpm's. */
static void test_ek(void **state)
{
	_cleanup_(kl_trust_freep) kl_trust *trust = NULL;
	char p[PATH_MAX];
	kl_tpm *t;

	(void)state;
	path_of(p, sizeof(p), "%s/data/trust/root.pem", fx.out);
	copy_file(fx.acme->root_pem, p);
	path_of(p, sizeof(p), "%s/data/trust/intermediate.pem", fx.out);
	copy_file(fx.acme->intermediate_pem, p);
	path_of(p, sizeof(p), "%s/data/trust", fx.out);
	if (kl_trust_load(p, &trust) < 0)
		fail_msg("trust bundle: %s", kl_error_detail());

	t = open_dut(fx.duts[0]);
	for (size_t i = 0; i < 3; i++) {
		kl_ek_type type = all_types[i];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL;
		_cleanup_(X509_freep) X509 *cert = NULL;
		kl_ek_report rep = { .type = type, .verdict = KL_EK_TPM_ERROR };
		char name[32];

		snprintf(name, sizeof(name), "acme-%s", kl_ek_type_name(type));
		nv_seed(t, kl_ek_type_nv_index(type), name, trust, KL_EK_OK);
		/* step 4: the TPM's EK is the certificate's key */
		assert_int_equal(
		    kl_tpm_nv_read(t, kl_ek_type_nv_index(type), &rep.cert_der, &rep.cert_len), 0);
		assert_int_equal(kl_ek_report_cert(&rep, &cert), 0);
		assert_int_equal(kl_tpm_ek_public(t, type, &ek), 0);
		assert_int_equal(kl_ek_key_verify(&rep, cert, ek), 0);
		assert_int_equal(rep.verdict, KL_EK_OK);
		kl_ek_report_clear(&rep);
	}
	/* the platform certificate chains to the vendor but is no EK's */
	nv_seed(t, KL_NV_PLATFORM, "acme-platform", trust, KL_EK_NOT_EK_CERT);
	kl_tpm_free(t);

	assert_int_equal(kl_dut_start(fx.floor, fx.rogues[0]), 0);
	t = open_dut(fx.rogues[0]);
	nv_seed(t, KL_NV_EK_P256, "rogue-p256", trust, KL_EK_UNTRUSTED);
	kl_tpm_free(t);
	assert_int_equal(kl_dut_stop(fx.floor, fx.rogues[0]), 0);
}

static kl_tpm_object *create_key(kl_tpm *t, kl_tpm_key_type type)
{
	kl_tpm_object *o = NULL;

	if (kl_tpm_object_create(t, NULL, type, &o) < 0)
		fail_msg("create key %d: %s", (int)type, kl_error_detail());
	return o;
}

struct area {
	unsigned char *p;
	size_t n;
};

static struct area area_of(const kl_tpm_object *o)
{
	struct area a = { NULL, 0 };

	assert_int_equal(kl_tpm_object_public_area(o, &a.p, &a.n), 0);
	return a;
}

/* fuzz_attest names an object 0x000b || SHA-256(its area): the station's
 * name. */
static void assert_name_is_area_hash(const kl_tpm_object *o, const struct area *a)
{
	unsigned char want[34] = { 0x00, 0x0b };
	kl_tpm_name n;

	kl_tpm_object_name(o, &n);
	assert_int_equal(EVP_Digest(a->p, a->n, want + 2, NULL, EVP_sha256(), NULL), 1);
	assert_int_equal(n.len, sizeof(want));
	assert_memory_equal(n.buf, want, sizeof(want));
}

static void area_name(const struct area *a, kl_tpm_name *n)
{
	n->buf[0] = 0x00;
	n->buf[1] = 0x0b;
	assert_int_equal(EVP_Digest(a->p, a->n, n->buf + 2, NULL, EVP_sha256(), NULL), 1);
	n->len = 34;
}

/* Certifies `certified` with `signer`, writes the seed, returns the verdict
 * of the check as fuzz_attest makes it (names from the areas given). */
static kl_attest_verdict certify_seed(kl_tpm *t, const char *name, const kl_tpm_object *certified,
                                      const kl_tpm_object *signer, const struct area *iak_area,
                                      const struct area *idevid_area, size_t nonce_len)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *iak_pub = NULL;
	_cleanup_(freep) unsigned char *att = NULL;
	_cleanup_(freep) unsigned char *sig = NULL;
	_cleanup_(freep) unsigned char *cd = NULL;
	unsigned char nonce[64];
	size_t att_len = 0, sig_len = 0, cd_len = 0;
	kl_tpm_name iak_name, idevid_name;
	kl_attest_report rep;
	int rc;

	assert_int_equal(RAND_bytes(nonce, (int)nonce_len), 1);
	if (kl_tpm_certify_creation(t, certified, signer, nonce, nonce_len, &att, &att_len, &sig,
	                            &sig_len) < 0 ||
	    kl_tpm_object_creation_data(certified, &cd, &cd_len) < 0)
		fail_msg("CertifyCreation: %s", kl_error_detail());
	const fuzz_part parts[] = { { att, att_len },
		                    { sig, sig_len },
		                    { iak_area->p, iak_area->n },
		                    { idevid_area->p, idevid_area->n },
		                    { nonce, nonce_len },
		                    { cd, cd_len } };
	write_parts("attest", name, parts, 6);
	/* the names the harness computes: those of the areas it is given */
	area_name(iak_area, &iak_name);
	area_name(idevid_area, &idevid_name);
	assert_int_equal(kl_tpm_object_public(signer, &iak_pub), 0);
	rc = kl_attest_verify_creation(att, att_len, sig, sig_len, iak_pub, &iak_name, &idevid_name,
	                               cd, cd_len, nonce, nonce_len, &rep);
	/* The result and the verdict agree: 0 exactly when the verdict is OK. */
	assert_int_equal(rc == 0, rep.verdict == KL_ATTEST_OK);
	return rep.verdict;
}

static void test_attest(void **state)
{
	static const unsigned char rekey[] = "rekey-1";
	kl_tpm *t = open_dut(fx.duts[0]);
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_IAK_P256);
	kl_tpm_object *idevid = create_key(t, KL_TPM_KEY_IDEVID_P256);
	kl_tpm_object *o = NULL;
	struct area ia = area_of(iak), da = area_of(idevid), a1, a2;
	kl_attest_verdict v = KL_ATTEST__MAX;

	(void)state;
	assert_name_is_area_hash(iak, &ia);
	assert_name_is_area_hash(idevid, &da);
	assert_int_equal(kl_attest_check_public(ia.p, ia.n, KL_ATTEST_KEY_IAK, &v), 0);
	assert_int_equal(kl_attest_check_public(da.p, da.n, KL_ATTEST_KEY_IDEVID, &v), 0);
	assert_int_equal(certify_seed(t, "certify-n32", idevid, iak, &ia, &da, 32), KL_ATTEST_OK);
	assert_int_equal(certify_seed(t, "certify-n1", idevid, iak, &ia, &da, 1), KL_ATTEST_OK);
	assert_int_equal(certify_seed(t, "certify-n64", idevid, iak, &ia, &da, 64), KL_ATTEST_OK);
	/* the IAK certifying itself is not the IDevID */
	assert_int_equal(certify_seed(t, "certify-self", iak, iak, &ia, &da, 32),
	                 KL_ATTEST_BAD_NAME);
	kl_tpm_object_free(idevid);
	free(da.p);

	/* a renewal's IDevID: another unique, another key */
	if (kl_tpm_identity_create(t, KL_TPM_KEY_IDEVID_P256, rekey, sizeof(rekey) - 1, &o) < 0)
		fail_msg("rekeyed IDevID: %s", kl_error_detail());
	da = area_of(o);
	assert_int_equal(certify_seed(t, "certify-rekeyed", o, iak, &ia, &da, 32), KL_ATTEST_OK);
	kl_tpm_object_free(o);
	free(da.p);
	kl_tpm_object_free(iak);
	free(ia.p);

	/* public areas only: keys of other shapes, the EK templates */
	o = create_key(t, KL_TPM_KEY_ATTEST_P256);
	a1 = area_of(o);
	kl_tpm_object_free(o);
	o = create_key(t, KL_TPM_KEY_STORAGE_P256);
	a2 = area_of(o);
	kl_tpm_object_free(o);
	{
		const fuzz_part parts[] = {
			{ NULL, 0 }, { NULL, 0 }, { a1.p, a1.n }, { a2.p, a2.n }
		};
		write_parts("attest", "areas-attest-storage", parts, 4);
	}
	free(a1.p);
	free(a2.p);
	for (size_t i = 0; i < 3; i++) {
		_cleanup_(freep) unsigned char *tmpl = NULL;
		size_t len = 0;
		char name[32];

		assert_int_equal(kl_tpm_ek_template(all_types[i], &tmpl, &len), 0);
		const fuzz_part parts[] = {
			{ NULL, 0 }, { NULL, 0 }, { tmpl, len }, { tmpl, len }
		};
		snprintf(name, sizeof(name), "areas-ek-%s", kl_ek_type_name(all_types[i]));
		write_parts("attest", name, parts, 4);
	}
	kl_tpm_free(t);
}

/* tpm2-tools' file: 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
 * TPM2B_ENCRYPTED_SECRET (tools/tpm2_makecredential.c). */
static kl_credential *tpm_make(kl_ek_type type, EVP_PKEY *ek, const kl_secret *s,
                               const kl_tpm_name *name)
{
	static const unsigned char header[] = { 0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1 };
	char pub[PATH_MAX], sec[PATH_MAX], out[PATH_MAX], hex[2 * KL_TPM_NAME_MAX + 1];
	kl_credential *c = NULL;
	unsigned char *d;
	size_t len = 0, blob_len;

	path_of(pub, sizeof(pub), "%s/seed-ek.pub", kl_floor_dir(fx.floor));
	path_of(sec, sizeof(sec), "%s/seed-secret", kl_floor_dir(fx.floor));
	path_of(out, sizeof(out), "%s/seed-cred", kl_floor_dir(fx.floor));
	write_tpm2b_public(pub, type, ek);
	write_file(sec, s->data, s->len);
	for (size_t i = 0; i < name->len; i++)
		snprintf(hex + 2 * i, 3, "%02x", name->buf[i]);
	/* With the DUT's TCTI (not --tcti none): the TPM's MakeCredential. */
	const char *argv[] = {
		"tpm2_makecredential", "-u", pub, "-s", sec, "-n", hex, "-o", out, NULL
	};
	if (kl_dut_tool(fx.floor, fx.duts[0], NULL, argv) != 0)
		fail_msg("tpm2_makecredential on %s failed", fx.duts[0]->name);
	d = kl_floor_read_file(out, &len);
	assert_non_null(d);
	assert_true(len > 12);
	assert_memory_equal(d, header, sizeof(header));
	blob_len = 2 + ((size_t)d[8] << 8 | d[9]);
	assert_true(8 + blob_len + 2 <= len);
	if (kl_credential_new(d + 8, blob_len, d + 8 + blob_len, len - 8 - blob_len, &c) < 0)
		fail_msg("tpm2_makecredential output: %s", kl_error_detail());
	free(d);
	return c;
}

static kl_secret *random_secret(size_t len)
{
	kl_secret *s = NULL;

	assert_int_equal(kl_secret_new(len, &s), 0);
	assert_int_equal(RAND_bytes(s->data, (int)len), 1);
	return s;
}

static void credential_seed(const char *name, kl_ek_type type, const kl_credential *c,
                            const kl_tpm_name *obj, const kl_secret *s)
{
	const unsigned char t = (unsigned char)type;
	const fuzz_part parts[] = { { &t, 1 },
		                    { c->blob, c->blob_len },
		                    { c->secret, c->secret_len },
		                    { obj->buf, obj->len },
		                    { s->data, s->len } };

	write_parts("credential", name, parts, 5);
}

static void test_credential(void **state)
{
	kl_tpm *t = open_dut(fx.duts[0]);
	/* the station activates its credentials for its attestation key: the
	 * IAK's ADMIN role is behind the DevID spec's policy */
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_name name;

	(void)state;
	kl_tpm_object_name(iak, &name);
	/* The station's credentials for the DUT's own EKs: the TPM opens them. */
	for (size_t i = 0; i < 3; i++) {
		kl_ek_type type = all_types[i];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL;
		_cleanup_(kl_secret_freep) kl_secret *s =
		    random_secret(kl_credential_max_len(type));
		_cleanup_(kl_secret_freep) kl_secret *got = NULL;
		kl_credential *c = NULL;
		char seed[32];

		assert_int_equal(kl_tpm_ek_public(t, type, &ek), 0);
		assert_int_equal(kl_make_credential(ek, type, s->data, s->len, &name, &c), 0);
		if (kl_tpm_activate_credential(t, type, iak, c, &got) < 0)
			fail_msg("ActivateCredential %s: %s", kl_ek_type_name(type),
			         kl_error_detail());
		assert_true(kl_secret_equal(got, s));
		snprintf(seed, sizeof(seed), "station-%s", kl_ek_type_name(type));
		credential_seed(seed, type, c, &name, s);
		kl_credential_free(c);
	}
	kl_tpm_object_free(iak);
	kl_tpm_free(t); /* swtpm serves one connection: tpm2-tools next */

	/* The TPM's MakeCredential for the test EKs: they open here. */
	for (size_t i = 0; i < 4; i++) {
		kl_ek_type type = all_types[i % 3];
		size_t len = i < 3 ? kl_credential_max_len(type) : 1;
		_cleanup_(kl_secret_freep) kl_secret *s = random_secret(len);
		_cleanup_(kl_secret_freep) kl_secret *got = NULL;
		kl_credential *c = tpm_make(type, fx.test_ek[type], s, &name);
		char seed[32];

		if (kl_activate_credential_soft(fx.test_ek[type], type, &name, c, &got) < 0)
			fail_msg("open the TPM's %s credential: %s", kl_ek_type_name(type),
			         kl_error_detail());
		assert_true(kl_secret_equal(got, s));
		snprintf(seed, sizeof(seed), "tpm-%s-%zu", kl_ek_type_name(type), len);
		credential_seed(seed, type, c, &name, s);
		kl_credential_free(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directories),
		cmocka_unit_test(test_ek),
		cmocka_unit_test(test_attest),
		cmocka_unit_test(test_credential),
	};

	return cmocka_run_group_tests_name("fuzz_seed_from_floor", tests, group_setup,
	                                   group_teardown);
}
