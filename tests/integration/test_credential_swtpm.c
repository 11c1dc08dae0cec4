/* Provisioning step 8 against real swtpm DUTs from the floor: the station's
 * software MakeCredential (station/proof/credential.c) and the TPM's
 * ActivateCredential under a PolicySecret(endorsement) session
 * (station/tpm/tpm_activate.c).
 *
 * One vendor, two DUTs. For each EK type (RSA 2048, P-256, P-384):
 *   1. a credential made for the EK that kl_tpm_ek_public_name recreates and
 *      the name of a restricted P-256 signing key (a primary of the
 *      endorsement hierarchy, the IAK's shape) comes back from the TPM
 *      unchanged, for 1 byte and for the EK nameAlg's digest size, again and
 *      again (more activations than the TPM has object slots);
 *   2. a credential made for another object's name is refused by the TPM;
 *   3. a credential made for the other DUT's EK is refused;
 *   4. a child key (TPM2_Create + Load under a storage primary) works the
 *      same, and two children have different names;
 *   5. blobs from tpm2_makecredential --tcti none (independent of our code)
 *      against the DUT's EK are activated by kl_tpm_activate_credential;
 *   6. bad arguments are refused before anything reaches the TPM.
 * After each test no transient object is left (kl_tpm_transient_count, and
 * tpm2_getcap from the outside, which also shows that no session is left). */
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

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "credential.h"
#include "floor.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_secret.h"
#include "tpm.h"
#include "../ek_public_file.h"
#include "tpm_activate.h"
#include "tpm_object.h"

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **duts; /* two DUTs */
} fx;

static const kl_ek_type all_types[] = { KL_EK_RSA2048, KL_EK_P256, KL_EK_P384 };

static int group_setup(void **state)
{
	(void)state;
	if (kl_floor_new(&fx.floor) < 0 || kl_floor_vendor(fx.floor, "acme-tpm", &fx.acme) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.acme, "cred", 2, &fx.duts) < 0 ||
	    kl_dut_start(fx.floor, fx.duts[0]) < 0 || kl_dut_start(fx.floor, fx.duts[1]) < 0) {
		fprintf(stderr, "floor setup: %s\n", kl_error_detail());
		kl_floor_free(fx.floor);
		fx.floor = NULL;
		return -1;
	}
	return 0;
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

static void assert_transients(kl_tpm *t, size_t want)
{
	size_t n = 99;

	assert_int_equal(kl_tpm_transient_count(t, &n), 0);
	assert_int_equal(n, want);
}

static void floor_path(char *buf, size_t size, const char *file)
{
	int n = snprintf(buf, size, "%s/%s", kl_floor_dir(fx.floor), file);

	assert_true(n > 0 && (size_t)n < size);
}

/* No transient object and no session left in the DUT, seen by tpm2_getcap.
 * swtpm serves one connection at a time: call with no kl_tpm open on d. */
static void assert_nothing_left_outside(const kl_dut *d)
{
	static const char *const what[] = { "handles-transient", "handles-loaded-session" };

	for (size_t i = 0; i < 2; i++) {
		char out[PATH_MAX];
		size_t len = 0;
		unsigned char *text;

		floor_path(out, sizeof(out), "getcap.txt");
		const char *argv[] = { "tpm2_getcap", what[i], NULL };
		assert_int_equal(kl_dut_tool(fx.floor, d, out, argv), 0);
		text = kl_floor_read_file(out, &len);
		assert_non_null(text);
		if (len != 0)
			fail_msg("%s: %s: %.*s", d->name, what[i], (int)len, text);
		free(text);
	}
}

static kl_tpm_object *create_key(kl_tpm *t, const kl_tpm_object *parent, kl_tpm_key_type type)
{
	kl_tpm_object *o = NULL;

	if (kl_tpm_object_create(t, parent, type, &o) < 0)
		fail_msg("create key %d: %s", (int)type, kl_error_detail());
	return o;
}

static EVP_PKEY *ek_public(kl_tpm *t, kl_ek_type type)
{
	EVP_PKEY *ek = NULL;

	if (kl_tpm_ek_public(t, type, &ek) < 0)
		fail_msg("EK %s: %s", kl_ek_type_name(type), kl_error_detail());
	return ek;
}

static kl_credential *make(EVP_PKEY *ek, kl_ek_type type, const kl_secret *s,
                           const kl_tpm_name *name)
{
	kl_credential *c = NULL;

	if (kl_make_credential(ek, type, s->data, s->len, name, &c) < 0)
		fail_msg("MakeCredential %s: %s", kl_ek_type_name(type), kl_error_detail());
	return c;
}

static kl_secret *random_secret(size_t len)
{
	kl_secret *s = NULL;

	assert_int_equal(kl_secret_new(len, &s), 0);
	assert_int_equal(RAND_bytes(s->data, (int)len), 1);
	return s;
}

static void assert_activates(kl_tpm *t, kl_ek_type type, const kl_tpm_object *o,
                             const kl_credential *c, const kl_secret *want)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;

	if (kl_tpm_activate_credential(t, type, o, c, &got) < 0)
		fail_msg("ActivateCredential %s: %s", kl_ek_type_name(type), kl_error_detail());
	assert_true(kl_secret_equal(got, want));
}

static void assert_refused(kl_tpm *t, kl_ek_type type, const kl_tpm_object *o,
                           const kl_credential *c)
{
	kl_secret *got = (kl_secret *)&got;

	assert_int_equal(kl_tpm_activate_credential(t, type, o, c, &got), -KL_E_TPM);
	assert_ptr_equal(got, (kl_secret *)&got);
	if (!strstr(kl_error_detail(), "refuses the credential"))
		fail_msg("%s: unexpected detail: %s", kl_ek_type_name(type), kl_error_detail());
}

/* 1. Round trips; the key's name is SHA-256 of its public area. */
static void test_roundtrip(void **state)
{
	const kl_dut *d = fx.duts[0];
	kl_tpm *t = open_dut(d);
	kl_tpm_object *iak = create_key(t, NULL, KL_TPM_KEY_ATTEST_P256);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
	unsigned char *area = NULL, digest[32];
	size_t area_len = 0;
	unsigned int dlen = 0;
	kl_tpm_name name;

	(void)state;
	kl_tpm_object_name(iak, &name);
	assert_int_equal(name.len, 34);
	assert_int_equal(name.buf[0] << 8 | name.buf[1], 0x000b);
	assert_int_equal(kl_tpm_object_public_area(iak, &area, &area_len), 0);
	assert_int_equal(EVP_Digest(area, area_len, digest, &dlen, EVP_sha256(), NULL), 1);
	assert_memory_equal(digest, name.buf + 2, 32);
	free(area);
	assert_int_equal(kl_tpm_object_public(iak, &pub), 0);
	assert_true(EVP_PKEY_is_a(pub, "EC"));
	assert_int_equal(EVP_PKEY_get_bits(pub), 256);
	assert_transients(t, 1);

	for (size_t k = 0; k < 3; k++) {
		kl_ek_type type = all_types[k];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = ek_public(t, type);
		const size_t lens[] = { 1, kl_credential_max_len(type) };

		for (size_t j = 0; j < 2; j++) {
			_cleanup_(kl_secret_freep) kl_secret *s = random_secret(lens[j]);
			kl_credential *c = make(ek, type, s, &name);

			/* more rounds than swtpm has object slots: a leak shows */
			for (int round = 0; round < 4; round++) {
				assert_activates(t, type, iak, c, s);
				assert_transients(t, 1);
			}
			kl_credential_free(c);
		}
	}
	/* the same template gives the same primary, so the same name */
	kl_tpm_object *again = create_key(t, NULL, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_name name2;
	kl_tpm_object_name(again, &name2);
	assert_int_equal(name2.len, name.len);
	assert_memory_equal(name2.buf, name.buf, name.len);
	kl_tpm_object_free(again);

	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
	assert_nothing_left_outside(d);
}

/* 2. A credential for another object (a storage key's name) is refused, and
 * refusals leave nothing behind either. */
static void test_wrong_object(void **state)
{
	const kl_dut *d = fx.duts[0];
	kl_tpm *t = open_dut(d);
	kl_tpm_name srk_name, iak_name;
	kl_tpm_object *srk = create_key(t, NULL, KL_TPM_KEY_STORAGE_P256);
	kl_tpm_object *iak;

	(void)state;
	kl_tpm_object_name(srk, &srk_name);
	kl_tpm_object_free(srk);
	iak = create_key(t, NULL, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_object_name(iak, &iak_name);
	assert_memory_not_equal(srk_name.buf, iak_name.buf, iak_name.len);

	for (size_t k = 0; k < 3; k++) {
		kl_ek_type type = all_types[k];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = ek_public(t, type);
		_cleanup_(kl_secret_freep) kl_secret *s = random_secret(16);
		kl_credential *c = make(ek, type, s, &srk_name);

		for (int round = 0; round < 4; round++) {
			assert_refused(t, type, iak, c);
			assert_non_null(strstr(kl_error_detail(), "rc 0x"));
			assert_transients(t, 1);
		}
		kl_credential_free(c);
		/* and the right one still works afterwards */
		c = make(ek, type, s, &iak_name);
		assert_activates(t, type, iak, c, s);
		kl_credential_free(c);
	}
	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
	assert_nothing_left_outside(d);
}

/* 3. A credential for another TPM's EK is refused. */
static void test_other_tpm(void **state)
{
	EVP_PKEY *other_ek[3];
	kl_tpm *t;
	kl_tpm_object *iak;
	kl_tpm_name name;

	(void)state;
	t = open_dut(fx.duts[1]);
	for (size_t k = 0; k < 3; k++)
		other_ek[k] = ek_public(t, all_types[k]);
	kl_tpm_free(t);

	t = open_dut(fx.duts[0]);
	iak = create_key(t, NULL, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_object_name(iak, &name);
	for (size_t k = 0; k < 3; k++) {
		kl_ek_type type = all_types[k];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = ek_public(t, type);
		_cleanup_(kl_secret_freep) kl_secret *s =
		    random_secret(kl_credential_max_len(type));
		kl_credential *c;

		assert_int_equal(EVP_PKEY_eq(ek, other_ek[k]), 0);
		c = make(other_ek[k], type, s, &name);
		assert_refused(t, type, iak, c);
		assert_transients(t, 1);
		kl_credential_free(c);
		EVP_PKEY_free(other_ek[k]);
	}
	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
	assert_nothing_left_outside(fx.duts[0]);
}

/* 4. Child keys under a storage primary: fresh keys (different names), and
 * a credential for one activates with it and not with its sibling. */
static void test_child_key(void **state)
{
	const kl_dut *d = fx.duts[1];
	kl_tpm *t = open_dut(d);
	kl_tpm_object *srk = create_key(t, NULL, KL_TPM_KEY_STORAGE_P256);
	kl_tpm_object *a = create_key(t, srk, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_object *b = create_key(t, srk, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_object *nope = (kl_tpm_object *)&nope;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = NULL;
	_cleanup_(kl_secret_freep) kl_secret *s = random_secret(32);
	kl_tpm_name na, nb;
	kl_credential *c;

	(void)state;
	/* an attestation key is no parent */
	assert_int_equal(kl_tpm_object_create(t, a, KL_TPM_KEY_ATTEST_P256, &nope), -KL_E_INVALID);
	assert_ptr_equal(nope, (kl_tpm_object *)&nope);
	kl_tpm_object_name(a, &na);
	kl_tpm_object_name(b, &nb);
	assert_memory_not_equal(na.buf, nb.buf, na.len);
	assert_transients(t, 3);
	/* the parent is not needed to use a loaded child */
	kl_tpm_object_free(srk);
	assert_transients(t, 2);
	kl_tpm_object_free(b);

	ek = ek_public(t, KL_EK_P256);
	c = make(ek, KL_EK_P256, s, &na);
	assert_activates(t, KL_EK_P256, a, c, s);
	kl_credential_free(c);
	c = make(ek, KL_EK_P256, s, &nb);
	assert_refused(t, KL_EK_P256, a, c);
	kl_credential_free(c);

	kl_tpm_object_free(a);
	assert_transients(t, 0);
	kl_tpm_free(t);
	assert_nothing_left_outside(d);
}

/* tpm2-tools' file: 0xBADCC0DE, version 1, TPM2B_ID_OBJECT,
 * TPM2B_ENCRYPTED_SECRET (tools/tpm2_makecredential.c). */
static kl_credential *tools_make(kl_ek_type type, EVP_PKEY *ek, const kl_secret *s,
                                 const kl_tpm_name *name)
{
	static const unsigned char header[] = { 0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1 };
	char pub[PATH_MAX], sec[PATH_MAX], out[PATH_MAX], hex[2 * KL_TPM_NAME_MAX + 1];
	kl_credential *c = NULL;
	unsigned char *d;
	size_t len = 0, blob_len;
	FILE *f;

	floor_path(pub, sizeof(pub), "cred-ek.pub");
	floor_path(sec, sizeof(sec), "cred-secret");
	floor_path(out, sizeof(out), "cred-out");
	write_tpm2b_public(pub, type, ek);
	f = fopen(sec, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(s->data, 1, s->len, f), s->len);
	assert_int_equal(fclose(f), 0);
	for (size_t i = 0; i < name->len; i++)
		snprintf(hex + 2 * i, 3, "%02x", name->buf[i]);

	const char *argv[] = { "tpm2_makecredential",
		               "-T",
		               "none",
		               "-u",
		               pub,
		               "-s",
		               sec,
		               "-n",
		               hex,
		               "-o",
		               out,
		               NULL };
	assert_int_equal(kl_floor_run(fx.floor, "/dev/null", NULL, argv), 0);
	(void)unlink(sec);
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

/* 5. Blobs from an independent MakeCredential, activated by the TPM. */
static void test_tools_credential(void **state)
{
	const kl_dut *d = fx.duts[1];
	kl_tpm *t = open_dut(d);
	kl_tpm_object *iak = create_key(t, NULL, KL_TPM_KEY_ATTEST_P256);
	kl_tpm_name name, other;

	(void)state;
	kl_tpm_object_name(iak, &name);
	other = name;
	other.buf[other.len - 1] ^= 0x01;
	for (size_t k = 0; k < 3; k++) {
		kl_ek_type type = all_types[k];
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = ek_public(t, type);
		_cleanup_(kl_secret_freep) kl_secret *s =
		    random_secret(kl_credential_max_len(type));
		kl_credential *c = tools_make(type, ek, s, &name);

		assert_activates(t, type, iak, c, s);
		kl_credential_free(c);
		c = tools_make(type, ek, s, &other);
		assert_refused(t, type, iak, c);
		kl_credential_free(c);
	}
	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
	assert_nothing_left_outside(d);
}

/* 6. Refused before the TPM sees anything. */
static void test_bad_args(void **state)
{
	kl_tpm *t0 = open_dut(fx.duts[0]);
	kl_tpm *t1 = open_dut(fx.duts[1]);
	kl_tpm_object *iak = create_key(t0, NULL, KL_TPM_KEY_ATTEST_P256);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *ek = ek_public(t0, KL_EK_P256);
	_cleanup_(kl_secret_freep) kl_secret *s = random_secret(32);
	kl_secret *got = (kl_secret *)&got;
	kl_tpm_object *o = (kl_tpm_object *)&o;
	kl_tpm_name name;
	kl_credential *c;

	(void)state;
	kl_tpm_object_name(iak, &name);
	c = make(ek, KL_EK_P256, s, &name);
	/* the object belongs to another TPM link */
	assert_int_equal(kl_tpm_activate_credential(t1, KL_EK_P256, iak, c, &got), -KL_E_INVALID);
	assert_int_equal(kl_tpm_activate_credential(t0, KL_EK__MAX, iak, c, &got), -KL_E_INVALID);
	assert_int_equal(kl_tpm_activate_credential(t0, KL_EK_P256, NULL, c, &got), -KL_E_INVALID);
	assert_int_equal(kl_tpm_activate_credential(t0, KL_EK_P256, iak, NULL, &got),
	                 -KL_E_INVALID);
	/* a blob whose TPM2B size lies */
	c->blob[1] ^= 0x01;
	assert_int_equal(kl_tpm_activate_credential(t0, KL_EK_P256, iak, c, &got), -KL_E_INVALID);
	c->blob[1] ^= 0x01;
	assert_ptr_equal(got, (kl_secret *)&got);
	assert_int_equal(kl_tpm_object_create(t0, NULL, KL_TPM_KEY__MAX, &o), -KL_E_INVALID);
	assert_int_equal(kl_tpm_object_create(NULL, NULL, KL_TPM_KEY_ATTEST_P256, &o),
	                 -KL_E_INVALID);
	assert_ptr_equal(o, (kl_tpm_object *)&o);
	kl_tpm_object_free(NULL);
	assert_transients(t0, 1);

	/* the untouched credential still works with the EK type it was made for,
	 * and not as another one */
	assert_activates(t0, KL_EK_P256, iak, c, s);
	assert_int_equal(kl_tpm_activate_credential(t0, KL_EK_P384, iak, c, &got), -KL_E_TPM);
	kl_credential_free(c);
	kl_tpm_object_free(iak);
	assert_transients(t0, 0);
	kl_tpm_free(t0);
	kl_tpm_free(t1);
	assert_nothing_left_outside(fx.duts[0]);
	assert_nothing_left_outside(fx.duts[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),        cmocka_unit_test(test_wrong_object),
		cmocka_unit_test(test_other_tpm),        cmocka_unit_test(test_child_key),
		cmocka_unit_test(test_tools_credential), cmocka_unit_test(test_bad_args),
	};

	return cmocka_run_group_tests_name("credential_swtpm", tests, group_setup, group_teardown);
}
