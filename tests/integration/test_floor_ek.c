/* Provisioning steps 1, 3 and 4 against real swtpm DUTs from the floor.
 *
 * One floor, a trusted TPM vendor ("acme-tpm") and an untrusted one
 * ("rogue-tpm"), three DUTs from the first and one from the second. For each
 * EK type (RSA 2048, P-256, P-384) and each trusted DUT:
 *   1. the EK certificate read with kl_tpm_nv_read is X.509 and chains to the
 *      vendor root under `openssl verify -x509_strict` (run as a process);
 *   2. its public key equals the one kl_tpm_ek_public recreates;
 *   3. tpm2_nvread, from the outside, reads the same bytes;
 *   4. no transient object is left behind, seen from inside and outside.
 * The rogue DUT's certificates chain to the rogue root only, a missing NV
 * index is -KL_E_NOTFOUND, reads in small chunks and reads with an owner
 * password set give the same certificates, and a dead link is -KL_E_IO.
 *
 * swtpm serves one connection at a time, so a kl_tpm is always freed before
 * tpm2-tools talk to the same DUT. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "floor.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_nv.h"

#define N_GOOD 3

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_vendor *rogue;
	kl_dut **good; /* N_GOOD DUTs from acme-tpm */
	kl_dut **bad;  /* one DUT from rogue-tpm */
} fx;

static const kl_ek_type all_types[] = { KL_EK_RSA2048, KL_EK_P256, KL_EK_P384 };

static int group_setup(void **state)
{
	(void)state;
	if (kl_floor_new(&fx.floor) < 0 || kl_floor_vendor(fx.floor, "acme-tpm", &fx.acme) < 0 ||
	    kl_floor_vendor(fx.floor, "rogue-tpm", &fx.rogue) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.acme, "acme", N_GOOD, &fx.good) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.rogue, "rogue", 1, &fx.bad) < 0)
		goto fail;
	for (size_t i = 0; i < N_GOOD; i++)
		if (kl_dut_start(fx.floor, fx.good[i]) < 0)
			goto fail;
	if (kl_dut_start(fx.floor, fx.bad[0]) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "floor setup: %s\n", kl_error_detail());
	kl_floor_free(fx.floor);
	fx.floor = NULL;
	return -1;
}

static int group_teardown(void **state)
{
	(void)state;
	kl_floor_free(fx.floor);
	fx.floor = NULL;
	return 0;
}

static kl_tpm *open_dut(const kl_dut *d)
{
	kl_tpm *t = NULL;

	if (kl_tpm_open(d->tcti, &t) < 0)
		fail_msg("open %s (%s): %s", d->name, d->tcti, kl_error_detail());
	return t;
}

static void path_for(char *buf, size_t size, const kl_dut *d, kl_ek_type type, const char *ext)
{
	int n = snprintf(buf, size, "%s/ek-%s-%s.%s", kl_floor_dir(fx.floor), d->name,
	                 kl_ek_type_name(type), ext);
	assert_true(n > 0 && (size_t)n < size);
}

/* Parses DER as X.509: the whole buffer, bar the 0x00/0xff padding some
 * vendors leave after the certificate in a fixed-size index. */
static X509 *parse_cert(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);

	assert_non_null(x);
	for (; p < der + len; p++)
		assert_true(*p == 0x00 || *p == 0xff);
	return x;
}

static void write_pem(const char *path, X509 *x)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	assert_int_equal(fclose(f), 0);
}

/* `openssl verify -x509_strict` as a separate process: its exit status. */
static int openssl_verify(const kl_vendor *v, const char *pem)
{
	const char *argv[] = { "openssl",           "verify",    "-x509_strict",
		               "-CAfile",           v->root_pem, "-untrusted",
		               v->intermediate_pem, pem,         NULL };

	return kl_floor_run(fx.floor, "/dev/null", NULL, argv);
}

/* Reads the EK certificate of type through the station and writes it as
 * PEM next to the floor's files. */
static X509 *read_ek_cert(kl_tpm *t, const kl_dut *d, kl_ek_type type, unsigned char **der,
                          size_t *len)
{
	char pem[PATH_MAX];
	X509 *x;
	int r;

	r = kl_tpm_nv_read(t, kl_ek_type_nv_index(type), der, len);
	if (r < 0)
		fail_msg("%s %s: %s", d->name, kl_ek_type_name(type), kl_error_detail());
	x = parse_cert(*der, *len);
	path_for(pem, sizeof(pem), d, type, "pem");
	write_pem(pem, x);
	return x;
}

static void assert_no_transients_outside(const kl_dut *d)
{
	char out[PATH_MAX];
	size_t len = 0;
	unsigned char *text;
	int n = snprintf(out, sizeof(out), "%s/transient-%s.txt", kl_floor_dir(fx.floor), d->name);

	assert_true(n > 0 && (size_t)n < sizeof(out));
	const char *getcap[] = { "tpm2_getcap", "handles-transient", NULL };
	assert_int_equal(kl_dut_tool(fx.floor, d, out, getcap), 0);
	text = kl_floor_read_file(out, &len);
	assert_non_null(text);
	if (len != 0)
		fail_msg("%s: transient objects left: %.*s", d->name, (int)len, text);
	free(text);
}

/* Step 1: what the TPM says about itself. swtpm is "IBM" / "SW   TPM". */
static void test_info(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_GOOD; i++) {
		kl_tpm *t = open_dut(fx.good[i]);
		kl_tpm_info info;

		assert_int_equal(kl_tpm_get_info(t, &info), 0);
		assert_int_equal(info.manufacturer, 0x49424d00);
		assert_string_equal(info.manufacturer_str, "IBM");
		assert_string_equal(info.family, "2.0");
		assert_non_null(strstr(info.vendor, "SW"));
		assert_true(info.nv_buffer_max >= 512);
		assert_true(info.firmware_version_1 != 0);
		kl_tpm_free(t);
	}
}

/* Steps 3 and 4 for every EK type on every trusted DUT (assertions 1-4). */
static void test_ek_certs_match(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_GOOD; i++) {
		const kl_dut *d = fx.good[i];
		unsigned char *der[3] = { NULL, NULL, NULL };
		size_t len[3] = { 0, 0, 0 };
		kl_tpm *t = open_dut(d);

		for (size_t k = 0; k < 3; k++) {
			kl_ek_type type = all_types[k];
			_cleanup_(X509_freep) X509 *x = NULL;
			_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL;
			kl_tpm_name name;
			size_t n = 99;

			x = read_ek_cert(t, d, type, &der[k], &len[k]);
			if (kl_tpm_ek_public_name(t, type, &ek, &name) < 0)
				fail_msg("%s %s: %s", d->name, kl_ek_type_name(type),
				         kl_error_detail());
			/* 2. the certified key is the TPM's EK */
			assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), ek), 1);
			assert_int_equal(name.len, type == KL_EK_P384 ? 2 + 48 : 2 + 32);
			/* 4. nothing left loaded, seen from our own connection */
			assert_int_equal(kl_tpm_transient_count(t, &n), 0);
			assert_int_equal(n, 0);
		}
		/* Twice more than the TPM has object slots: a leak would show
		 * as TPM_RC_OBJECT_MEMORY. */
		for (int round = 0; round < 2; round++) {
			for (size_t k = 0; k < 3; k++) {
				_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL;
				if (kl_tpm_ek_public(t, all_types[k], &ek) < 0)
					fail_msg("%s round %d: %s", d->name, round,
					         kl_error_detail());
			}
		}
		kl_tpm_free(t);

		for (size_t k = 0; k < 3; k++) {
			kl_ek_type type = all_types[k];
			char pem[PATH_MAX], bin[PATH_MAX], index[16];
			unsigned char *outside;
			size_t outside_len = 0;

			/* 1. chains to the trusted vendor's root */
			path_for(pem, sizeof(pem), d, type, "pem");
			assert_int_equal(openssl_verify(d->vendor, pem), 0);
			assert_ptr_equal(d->vendor, fx.acme);

			/* 3. tpm2-tools reads the same bytes */
			path_for(bin, sizeof(bin), d, type, "nvread");
			snprintf(index, sizeof(index), "0x%08x", kl_ek_type_nv_index(type));
			const char *nvread[] = { "tpm2_nvread", index, "-o", bin, NULL };
			assert_int_equal(kl_dut_tool(fx.floor, d, "/dev/null", nvread), 0);
			outside = kl_floor_read_file(bin, &outside_len);
			assert_non_null(outside);
			assert_int_equal(outside_len, len[k]);
			assert_memory_equal(outside, der[k], len[k]);
			free(outside);
			free(der[k]);
		}
		/* 4. and from the outside */
		assert_no_transients_outside(d);
	}
}

/* 5. A genuine TPM from a vendor we do not trust: its EK certificates chain
 * to its own root, not to ours. */
static void test_rogue_vendor(void **state)
{
	const kl_dut *d = fx.bad[0];
	kl_tpm *t = open_dut(d);

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		_cleanup_(X509_freep) X509 *x = NULL;
		unsigned char *der = NULL;
		size_t len = 0;

		x = read_ek_cert(t, d, all_types[k], &der, &len);
		free(der);
	}
	kl_tpm_free(t);

	for (size_t k = 0; k < 3; k++) {
		char pem[PATH_MAX];

		path_for(pem, sizeof(pem), d, all_types[k], "pem");
		assert_int_not_equal(openssl_verify(fx.acme, pem), 0);
		assert_int_equal(openssl_verify(fx.rogue, pem), 0);
	}
	assert_no_transients_outside(d);
}

/* 6. A missing index is "not found", and says which. */
static void test_missing_index(void **state)
{
	static unsigned char untouched[] = "untouched";
	kl_tpm *t = open_dut(fx.good[0]);
	unsigned char *data = untouched;
	size_t len = 12345;

	(void)state;
	assert_int_equal(kl_tpm_nv_read(t, 0x01c0ffff, &data, &len), -KL_E_NOTFOUND);
	assert_int_equal(kl_error_code(), KL_E_NOTFOUND);
	assert_non_null(strstr(kl_error_detail(), "0x01c0ffff"));
	/* outputs untouched on failure */
	assert_string_equal((const char *)data, "untouched");
	assert_int_equal(len, 12345);
	/* not an NV index at all */
	assert_int_equal(kl_tpm_nv_read(t, 0x81010001, &data, &len), -KL_E_INVALID);
	kl_tpm_free(t);
}

/* NV reads in chunks smaller than TPM_PT_NV_BUFFER_MAX give the same bytes
 * (swtpm's 1024-byte buffer holds a whole EK certificate). */
static void test_chunked_read(void **state)
{
	kl_tpm *t = open_dut(fx.good[1]);

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		uint32_t index = kl_ek_type_nv_index(all_types[k]);
		unsigned char *a = NULL, *b = NULL;
		size_t alen = 0, blen = 0;

		kl_tpm_set_nv_chunk_max(t, 0);
		assert_int_equal(kl_tpm_nv_read(t, index, &a, &alen), 0);
		kl_tpm_set_nv_chunk_max(t, 97);
		assert_int_equal(kl_tpm_nv_read(t, index, &b, &blen), 0);
		assert_true(alen > 97 * 5);
		assert_int_equal(alen, blen);
		assert_memory_equal(a, b, alen);
		free(a);
		free(b);
	}
	kl_tpm_free(t);
}

/* A DUT whose owner hierarchy has a password (not factory-new, or a TPM
 * whose firmware set one): EK certificates are still read through the
 * index's own empty authValue (TPMA_NV_AUTHREAD). */
static void test_owner_password_fallback(void **state)
{
	const kl_dut *d = fx.good[2];
	const char *set[] = { "tpm2_changeauth", "-c", "o", "owner-secret", NULL };
	const char *unset[] = { "tpm2_changeauth", "-c", "o", "-p", "owner-secret", NULL };
	kl_tpm *t;

	(void)state;
	assert_int_equal(kl_dut_tool(fx.floor, d, "/dev/null", set), 0);
	t = open_dut(d);
	for (size_t k = 0; k < 3; k++) {
		unsigned char *der = NULL;
		size_t len = 0;

		if (kl_tpm_nv_read(t, kl_ek_type_nv_index(all_types[k]), &der, &len) < 0)
			fail_msg("%s: %s", kl_ek_type_name(all_types[k]), kl_error_detail());
		X509_free(parse_cert(der, len));
		free(der);
	}
	kl_tpm_free(t);
	assert_int_equal(kl_dut_tool(fx.floor, d, "/dev/null", unset), 0);
}

/* A link that does not answer is an I/O error, quickly and with a reason. */
static void test_bad_link(void **state)
{
	kl_tpm *t = NULL;

	(void)state;
	/* nothing listens on port 1 of the loopback: connection refused */
	const char *tcti = "swtpm:host=127.0.0.1,port=1";
	assert_int_equal(kl_tpm_open(tcti, &t), -KL_E_IO);
	assert_null(t);
	assert_non_null(strstr(kl_error_detail(), "rc 0x"));
	assert_true(kl_tpm_open("nosuchtcti:foo", &t) < 0);
	assert_null(t);
	assert_int_equal(kl_tpm_open("", &t), -KL_E_INVALID);
	kl_tpm_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_info),         cmocka_unit_test(test_ek_certs_match),
		cmocka_unit_test(test_rogue_vendor), cmocka_unit_test(test_missing_index),
		cmocka_unit_test(test_chunked_read), cmocka_unit_test(test_owner_password_fallback),
		cmocka_unit_test(test_bad_link),
	};

	return cmocka_run_group_tests_name("floor_ek", tests, group_setup, group_teardown);
}
