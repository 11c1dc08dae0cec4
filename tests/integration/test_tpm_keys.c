/* Provisioning steps 7, 9, 10 and 12 against a real swtpm DUT from the
 * floor (station/tpm/), verified in software (station/proof/attest.c) and
 * from the outside with tpm2-tools.
 *
 *   1. IAK and IDevID made from the TCG templates pass
 *      kl_attest_check_public with the TPM's own bytes; the same templates
 *      give the same keys again; TPM2_CertifyCreation(IDevID by IAK) with a
 *      fresh nonce verifies with kl_attest_verify_creation, and the same
 *      attestation checked against another nonce (a replay) fails with
 *      bad-nonce, against swapped keys with bad-signer / bad-signature,
 *      against another key's creation data with bad-creation;
 *   2. the IDevID signs the SHA-256 of a proof-of-possession message and
 *      OpenSSL verifies the signature with the IDevID's public key; the
 *      restricted IAK is refused before anything reaches the TPM;
 *   3. both keys persisted at KL_TPM_HANDLE_IAK / _IDEVID: a second persist
 *      is -KL_E_EXISTS; loaded back they have the same names and certify
 *      again (the persisted IAK certifies a new key's creation; the loaded
 *      IDevID, which has no creation ticket any more, cannot be);
 *      tpm2_getcap handles-persistent lists them; tpm2_certify of the
 *      IDevID by the IAK is refused by the TPM (the ADMIN role of a key
 *      made from the DevID template is behind the spec's policy, so a
 *      password does not give it); tpm2_readpublic
 *      shows their attributes (its public area passes
 *      kl_attest_check_public); evicted, they are gone for tpm2_getcap too;
 *      An IAK persisted with the templates from before the DevID spec's
 *      still loads, marked legacy; one with a foreign policy does not;
 *   4. a certificate DER written to KL_TPM_NV_IDEVID_CERT in 64-byte chunks
 *      and write-locked: tpm2_nvread gives the same bytes, tpm2_nvreadpublic
 *      says writelocked, a second write (ours: -KL_E_EXISTS; tpm2_nvwrite)
 *      fails; undefined, tpm2_nvreadpublic finds nothing;
 *   5. bad arguments are refused before anything reaches the TPM.
 * After each test no transient object is left (kl_tpm_transient_count). */
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
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "attest.h"
#include "floor.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm.h"
#include "tpm_certify.h"
#include "tpm_nv.h"
#include "tpm_object.h"
#include "tpm_persist.h"

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **duts; /* one DUT */
} fx;

static int group_setup(void **state)
{
	(void)state;
	if (kl_floor_new(&fx.floor) < 0 || kl_floor_vendor(fx.floor, "acme-tpm", &fx.acme) < 0 ||
	    kl_floor_manufacture(fx.floor, fx.acme, "keys", 1, &fx.duts) < 0 ||
	    kl_dut_start(fx.floor, fx.duts[0]) < 0) {
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

static kl_tpm *open_dut(void)
{
	const kl_dut *d = fx.duts[0];
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

/* Runs a tpm2-tools command on the DUT (no kl_tpm may be open on it: swtpm
 * serves one connection at a time); returns its stdout (free() it) or NULL
 * when it failed. */
static char *tool(const char *const argv[], size_t *len)
{
	char out[PATH_MAX];
	size_t n = 0;

	floor_path(out, sizeof(out), "tool.out");
	unlink(out);
	if (kl_dut_tool(fx.floor, fx.duts[0], out, argv) != 0)
		return NULL;
	char *text = (char *)kl_floor_read_file(out, &n);
	assert_non_null(text);
	if (len)
		*len = n;
	return text;
}

static kl_tpm_object *create_key(kl_tpm *t, kl_tpm_key_type type)
{
	kl_tpm_object *o = NULL;

	if (kl_tpm_object_create(t, NULL, type, &o) < 0)
		fail_msg("create key %d: %s", (int)type, kl_error_detail());
	return o;
}

static void fresh_nonce(unsigned char *n, size_t len)
{
	assert_int_equal(RAND_bytes(n, (int)len), 1);
}

static void assert_public_ok(const kl_tpm_object *o, kl_attest_key_kind kind)
{
	unsigned char *area = NULL;
	size_t len = 0;
	kl_attest_verdict v = KL_ATTEST__MAX;

	assert_int_equal(kl_tpm_object_public_area(o, &area, &len), 0);
	if (kl_attest_check_public(area, len, kind, &v) < 0)
		fail_msg("public area: %s", kl_error_detail());
	assert_int_equal(v, KL_ATTEST_OK);
	/* and it is not the other kind */
	assert_int_equal(kl_attest_check_public(area, len,
	                                        kind == KL_ATTEST_KEY_IAK ? KL_ATTEST_KEY_IDEVID
	                                                                  : KL_ATTEST_KEY_IAK,
	                                        &v),
	                 -KL_E_CRYPTO);
	assert_int_equal(v, KL_ATTEST_PUB_ATTRIBUTES);
	free(area);
}

/* CertifyCreation(key by signer, fresh nonce): the attestation, signature
 * and creation data; fails the test when the TPM refuses. */
struct cc {
	unsigned char *att, *sig, *cd;
	size_t att_len, sig_len, cd_len;
	unsigned char nonce[32];
};

static void cc_free(struct cc *c)
{
	free(c->att);
	free(c->sig);
	free(c->cd);
}

static struct cc certify_creation(kl_tpm *t, const kl_tpm_object *key, const kl_tpm_object *signer)
{
	struct cc c = { 0 };

	fresh_nonce(c.nonce, sizeof(c.nonce));
	if (kl_tpm_certify_creation(t, key, signer, c.nonce, sizeof(c.nonce), &c.att, &c.att_len,
	                            &c.sig, &c.sig_len) < 0)
		fail_msg("CertifyCreation: %s", kl_error_detail());
	assert_int_equal(kl_tpm_object_creation_data(key, &c.cd, &c.cd_len), 0);
	return c;
}

/* The verdict of c checked as the station checks it. */
static kl_attest_verdict cc_verify(const struct cc *c, EVP_PKEY *pub, const kl_tpm_name *signer,
                                   const kl_tpm_name *key, const unsigned char *cd, size_t cd_len,
                                   const unsigned char *nonce)
{
	kl_attest_report rep;
	int r = kl_attest_verify_creation(c->att, c->att_len, c->sig, c->sig_len, pub, signer, key,
	                                  cd, cd_len, nonce, 32, &rep);

	assert_int_equal(r == 0, rep.verdict == KL_ATTEST_OK);
	if (r == 0) {
		assert_int_equal(rep.certified_name.len, key->len);
		assert_memory_equal(rep.certified_name.buf, key->buf, key->len);
	}
	return rep.verdict;
}

/* CertifyCreation(key by signer, fresh nonce) verifies. */
static void certify_ok(kl_tpm *t, const kl_tpm_object *signer, const kl_tpm_object *key)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
	kl_tpm_name signer_name, key_name;
	struct cc c = certify_creation(t, key, signer);

	kl_tpm_object_name(signer, &signer_name);
	kl_tpm_object_name(key, &key_name);
	assert_int_equal(kl_tpm_object_public(signer, &pub), 0);
	if (cc_verify(&c, pub, &signer_name, &key_name, c.cd, c.cd_len, c.nonce) != KL_ATTEST_OK)
		fail_msg("verify CertifyCreation: %s", kl_error_detail());
	cc_free(&c);
}

/* 1. */
static void test_certify(void **state)
{
	kl_tpm *t = open_dut();
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_IAK_P256);
	kl_tpm_object *idevid = create_key(t, KL_TPM_KEY_IDEVID_P256);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *iak_pub = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *idevid_pub = NULL;
	unsigned char nonce2[32];
	kl_tpm_name iak_name, idevid_name, name2;
	struct cc c, self;

	(void)state;
	assert_public_ok(iak, KL_ATTEST_KEY_IAK);
	assert_public_ok(idevid, KL_ATTEST_KEY_IDEVID);
	kl_tpm_object_name(iak, &iak_name);
	kl_tpm_object_name(idevid, &idevid_name);
	assert_false(iak_name.len == idevid_name.len &&
	             memcmp(iak_name.buf, idevid_name.buf, iak_name.len) == 0);
	assert_int_equal(kl_tpm_object_public(iak, &iak_pub), 0);
	assert_int_equal(kl_tpm_object_public(idevid, &idevid_pub), 0);
	assert_transients(t, 2);

	/* the same template and unique give the same IDevID again */
	kl_tpm_object_free(idevid);
	idevid = create_key(t, KL_TPM_KEY_IDEVID_P256);
	kl_tpm_object_name(idevid, &name2);
	assert_int_equal(name2.len, idevid_name.len);
	assert_memory_equal(name2.buf, idevid_name.buf, name2.len);

	c = certify_creation(t, idevid, iak);
	assert_int_equal(cc_verify(&c, iak_pub, &iak_name, &idevid_name, c.cd, c.cd_len, c.nonce),
	                 KL_ATTEST_OK);
	/* replay: the station's next challenge has another nonce */
	fresh_nonce(nonce2, sizeof(nonce2));
	assert_int_equal(cc_verify(&c, iak_pub, &iak_name, &idevid_name, c.cd, c.cd_len, nonce2),
	                 KL_ATTEST_BAD_NONCE);
	/* the keys swapped: another signer's name, another key's signature */
	assert_int_equal(
	    cc_verify(&c, iak_pub, &idevid_name, &idevid_name, c.cd, c.cd_len, c.nonce),
	    KL_ATTEST_BAD_SIGNER);
	assert_int_equal(
	    cc_verify(&c, idevid_pub, &iak_name, &idevid_name, c.cd, c.cd_len, c.nonce),
	    KL_ATTEST_BAD_SIGNATURE);
	/* the IAK certifying its own creation is not the IDevID's; its creation
	 * data is an endorsement primary's too, but not the bytes the IDevID's
	 * certification hashed when one byte differs */
	self = certify_creation(t, iak, iak);
	assert_int_equal(
	    cc_verify(&self, iak_pub, &iak_name, &idevid_name, self.cd, self.cd_len, self.nonce),
	    KL_ATTEST_BAD_NAME);
	assert_int_equal(
	    cc_verify(&self, iak_pub, &iak_name, &iak_name, self.cd, self.cd_len, self.nonce),
	    KL_ATTEST_OK);
	self.cd[self.cd_len - 1] ^= 1;
	assert_int_equal(
	    cc_verify(&c, iak_pub, &iak_name, &idevid_name, self.cd, self.cd_len, c.nonce),
	    KL_ATTEST_BAD_CREATION);
	cc_free(&self);
	cc_free(&c);

	kl_tpm_object_free(idevid);
	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
}

/* 2. */
static void test_sign(void **state)
{
	static const char msg_fmt[] = "keyline-pop-v1|serial=%s|nonce=%s";
	kl_tpm *t = open_dut();
	kl_tpm_object *idevid = create_key(t, KL_TPM_KEY_IDEVID_P256);
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_IAK_P256);
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *vctx = NULL;
	_cleanup_(freep) unsigned char *sig = NULL;
	unsigned char nonce[16], digest[32];
	char hex[33], msg[128];
	unsigned int dlen = 0;
	size_t sig_len = 0;
	unsigned char *dummy = (unsigned char *)&dummy;
	size_t dummy_len = 7;

	(void)state;
	fresh_nonce(nonce, sizeof(nonce));
	for (size_t i = 0; i < sizeof(nonce); i++)
		snprintf(hex + 2 * i, 3, "%02x", nonce[i]);
	snprintf(msg, sizeof(msg), msg_fmt, "WS-0001", hex);
	assert_int_equal(EVP_Digest(msg, strlen(msg), digest, &dlen, EVP_sha256(), NULL), 1);

	if (kl_tpm_sign(t, idevid, digest, sizeof(digest), &sig, &sig_len) < 0)
		fail_msg("Sign: %s", kl_error_detail());
	assert_int_equal(kl_tpm_object_public(idevid, &pub), 0);
	/* OpenSSL, over the message itself */
	{
		_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();

		assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
		assert_int_equal(
		    EVP_DigestVerify(ctx, sig, sig_len, (unsigned char *)msg, strlen(msg)), 1);
		/* and not over another message */
		msg[0] ^= 1;
		assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub), 1);
		assert_int_not_equal(
		    EVP_DigestVerify(ctx, sig, sig_len, (unsigned char *)msg, strlen(msg)), 1);
	}
	/* nor with the IAK's key */
	{
		_cleanup_(EVP_PKEY_freep) EVP_PKEY *iak_pub = NULL;

		assert_int_equal(kl_tpm_object_public(iak, &iak_pub), 0);
		vctx = EVP_PKEY_CTX_new(iak_pub, NULL);
		assert_int_equal(EVP_PKEY_verify_init(vctx), 1);
		assert_int_not_equal(EVP_PKEY_verify(vctx, sig, sig_len, digest, sizeof(digest)),
		                     1);
	}

	/* the IAK is restricted: refused here, outputs untouched */
	assert_int_equal(kl_tpm_sign(t, iak, digest, sizeof(digest), &dummy, &dummy_len),
	                 -KL_E_UNSUPPORTED);
	assert_ptr_equal(dummy, (unsigned char *)&dummy);
	assert_int_equal(dummy_len, 7);
	/* a digest that is not SHA-256 sized */
	assert_int_equal(kl_tpm_sign(t, idevid, digest, 20, &dummy, &dummy_len), -KL_E_INVALID);

	kl_tpm_object_free(iak);
	kl_tpm_object_free(idevid);
	assert_transients(t, 0);
	kl_tpm_free(t);
}

static bool text_has(const char *text, const char *what)
{
	return text && strstr(text, what) != NULL;
}

/* 3. */
static void test_persist(void **state)
{
	kl_tpm *t = open_dut();
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_IAK_P256);
	kl_tpm_object *idevid = create_key(t, KL_TPM_KEY_IDEVID_P256);
	kl_tpm_name iak_name, idevid_name, n;
	bool exists = true;
	char *text;

	(void)state;
	kl_tpm_object_name(iak, &iak_name);
	kl_tpm_object_name(idevid, &idevid_name);
	assert_int_equal(kl_tpm_persistent_exists(t, KL_TPM_HANDLE_IAK, &exists), 0);
	assert_false(exists);
	if (kl_tpm_object_persist(t, iak, KL_TPM_HANDLE_IAK) < 0)
		fail_msg("persist IAK: %s", kl_error_detail());
	assert_int_equal(kl_tpm_object_persist(t, idevid, KL_TPM_HANDLE_IDEVID), 0);
	assert_int_equal(kl_tpm_object_persist(t, idevid, KL_TPM_HANDLE_IAK), -KL_E_EXISTS);
	assert_int_equal(kl_tpm_persistent_exists(t, KL_TPM_HANDLE_IAK, &exists), 0);
	assert_true(exists);
	assert_int_equal(kl_tpm_persistent_exists(t, KL_TPM_HANDLE_IDEVID, &exists), 0);
	assert_true(exists);
	kl_tpm_object_free(idevid);
	kl_tpm_object_free(iak);
	assert_transients(t, 0);

	/* a resumed flow: load them back */
	assert_int_equal(kl_tpm_persistent_load(t, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IAK_P256, &iak),
	                 0);
	assert_int_equal(
	    kl_tpm_persistent_load(t, KL_TPM_HANDLE_IDEVID, KL_TPM_KEY_IDEVID_P256, &idevid), 0);
	kl_tpm_object_name(iak, &n);
	assert_int_equal(n.len, iak_name.len);
	assert_memory_equal(n.buf, iak_name.buf, n.len);
	kl_tpm_object_name(idevid, &n);
	assert_int_equal(n.len, idevid_name.len);
	assert_memory_equal(n.buf, idevid_name.buf, n.len);
	assert_transients(t, 0);
	/* a loaded-back key has no creation ticket; the loaded IAK still
	 * certifies a key made now */
	{
		unsigned char nonce[32] = { 1 }, *a = NULL, *sg = NULL;
		size_t al = 0, sl = 0;
		kl_tpm_object *fresh;

		assert_int_equal(kl_tpm_certify_creation(t, idevid, iak, nonce, sizeof(nonce), &a,
		                                         &al, &sg, &sl),
		                 -KL_E_STATE);
		assert_null(a);
		kl_tpm_object_free(idevid);
		fresh = create_key(t, KL_TPM_KEY_IDEVID_P256);
		certify_ok(t, iak, fresh);
		kl_tpm_object_free(fresh);
	}
	assert_public_ok(iak, KL_ATTEST_KEY_IAK);
	kl_tpm_object_free(iak);
	/* the wrong type there is refused */
	{
		kl_tpm_object *o = (kl_tpm_object *)&o;

		assert_int_equal(
		    kl_tpm_persistent_load(t, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IDEVID_P256, &o),
		    -KL_E_TPM);
		assert_ptr_equal(o, (kl_tpm_object *)&o);
		assert_int_equal(kl_tpm_persistent_load(t, 0x81020100u, KL_TPM_KEY_IAK_P256, &o),
		                 -KL_E_NOTFOUND);
	}
	assert_transients(t, 0);
	kl_tpm_free(t);

	/* from the outside */
	{
		const char *argv[] = { "tpm2_getcap", "handles-persistent", NULL };

		text = tool(argv, NULL);
		assert_non_null(text);
		if (!text_has(text, "0x81020000") || !text_has(text, "0x81020001"))
			fail_msg("handles-persistent: %s", text);
		free(text);
	}
	{
		char att[PATH_MAX], sig[PATH_MAX];

		floor_path(att, sizeof(att), "certify.att");
		floor_path(sig, sizeof(sig), "certify.sig");
		const char *argv[] = {
			"tpm2_certify", "-c", "0x81020000", "-C", "0x81020001", "-g",
			"sha256",       "-o", att,          "-s", sig,          NULL
		};
		text = tool(argv, NULL);
		if (text)
			fail_msg("TPM2_Certify of the IDevID with a password worked: %s", text);
		assert_int_equal(access(att, F_OK), -1);
	}
	{
		char pub_path[PATH_MAX];
		const char *argv[] = {
			"tpm2_readpublic", "-c", "0x81020001", "-o", pub_path, NULL
		};
		unsigned char *pub;
		size_t len = 0;
		kl_attest_verdict v;

		floor_path(pub_path, sizeof(pub_path), "iak.pub");
		text = tool(argv, NULL);
		if (!text_has(text, "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|"
		                    "adminwithpolicy|restricted|sign") ||
		    !text_has(text, "ecdsa") || text_has(text, "noda") ||
		    !text_has(text,
		              "5437182326e414fca797d5f174615a1641f61255797c3a2b22c21d120b2d1e07"))
			fail_msg("readpublic IAK: %s", text ? text : "(failed)");
		free(text);
		/* -o writes a TPM2B_PUBLIC: our check on the TPMT_PUBLIC in it */
		pub = kl_floor_read_file(pub_path, &len);
		assert_non_null(pub);
		assert_true(len > 2);
		assert_int_equal(kl_attest_check_public(pub + 2, len - 2, KL_ATTEST_KEY_IAK, &v),
		                 0);
		free(pub);
	}
	{
		const char *argv[] = { "tpm2_readpublic", "-c", "0x81020000", NULL };

		text = tool(argv, NULL);
		if (!text_has(text, "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|"
		                    "adminwithpolicy|sign") ||
		    text_has(text, "restricted") || text_has(text, "decrypt") ||
		    !text_has(text,
		              "ad6b3a2284fd698a0710bf5cc1b9bdf15e2532e3f601fa4b93a6a8fa8de579ea"))
			fail_msg("readpublic IDevID: %s", text ? text : "(failed)");
		free(text);
	}

	/* evict; nothing left */
	t = open_dut();
	assert_int_equal(kl_tpm_persistent_evict(t, KL_TPM_HANDLE_IAK), 0);
	assert_int_equal(kl_tpm_persistent_evict(t, KL_TPM_HANDLE_IDEVID), 0);
	assert_int_equal(kl_tpm_persistent_evict(t, KL_TPM_HANDLE_IAK), -KL_E_NOTFOUND);
	assert_int_equal(kl_tpm_persistent_exists(t, KL_TPM_HANDLE_IAK, &exists), 0);
	assert_false(exists);
	assert_transients(t, 0);
	kl_tpm_free(t);
	{
		const char *argv[] = { "tpm2_getcap", "handles-persistent", NULL };

		text = tool(argv, NULL);
		assert_non_null(text);
		if (text_has(text, "0x81020000") || text_has(text, "0x81020001"))
			fail_msg("handles-persistent after evict: %s", text);
		free(text);
	}
}

/* A small self-signed certificate as test DER. */
static unsigned char *test_cert(size_t *len)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *key = EVP_EC_gen("P-256");
	_cleanup_(X509_freep) X509 *x = X509_new();
	unsigned char *der = NULL, *out;
	int n;

	assert_non_null(key);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4711), 1);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"keyline test IDevID", -1, -1, 0);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	assert_int_equal(X509_set_pubkey(x, key), 1);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	n = i2d_X509(x, &der);
	assert_true(n > 0);
	out = malloc((size_t)n);
	assert_non_null(out);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	*len = (size_t)n;
	return out;
}

/* 4. */
static void test_nv_cert(void **state)
{
	_cleanup_(freep) unsigned char *der = NULL;
	size_t der_len = 0;
	kl_tpm *t = open_dut();
	char *text;
	size_t len = 0;
	char idx[16], der_path[PATH_MAX];

	(void)state;
	der = test_cert(&der_len);
	assert_true(der_len > 200);
	snprintf(idx, sizeof(idx), "0x%08x", KL_TPM_NV_IDEVID_CERT);
	kl_tpm_set_nv_chunk_max(t, 64); /* several chunks */
	if (kl_tpm_nv_write_cert(t, KL_TPM_NV_IDEVID_CERT, der, der_len) < 0)
		fail_msg("NV write: %s", kl_error_detail());
	assert_int_equal(kl_tpm_nv_write_cert(t, KL_TPM_NV_IDEVID_CERT, der, der_len),
	                 -KL_E_EXISTS);
	{
		unsigned char *got = NULL;
		size_t got_len = 0;

		kl_tpm_set_nv_chunk_max(t, 0);
		assert_int_equal(kl_tpm_nv_read(t, KL_TPM_NV_IDEVID_CERT, &got, &got_len), 0);
		assert_int_equal(got_len, der_len);
		assert_memory_equal(got, der, der_len);
		free(got);
	}
	assert_transients(t, 0);
	kl_tpm_free(t);

	/* from the outside */
	{
		const char *argv[] = { "tpm2_nvread", idx, "-C", "o", NULL };

		text = tool(argv, &len);
		assert_non_null(text);
		assert_int_equal(len, der_len);
		assert_memory_equal(text, der, der_len);
		free(text);
	}
	{
		const char *argv[] = { "tpm2_nvreadpublic", idx, NULL };

		text = tool(argv, NULL);
		if (!text_has(text, "writelocked") || !text_has(text, "writedefine") ||
		    !text_has(text, "ownerwrite") || !text_has(text, "authread") ||
		    !text_has(text, "no_da"))
			fail_msg("nvreadpublic: %s", text ? text : "(failed)");
		free(text);
	}
	{
		FILE *f;
		floor_path(der_path, sizeof(der_path), "again.der");
		f = fopen(der_path, "wbe");
		assert_non_null(f);
		assert_int_equal(fwrite(der, 1, 16, f), 16);
		fclose(f);
		const char *argv[] = { "tpm2_nvwrite", idx, "-C", "o", "-i", der_path, NULL };

		assert_null(tool(argv, NULL)); /* write-locked */
	}

	/* undefine; nothing left */
	t = open_dut();
	assert_int_equal(kl_tpm_nv_undefine(t, KL_TPM_NV_IDEVID_CERT), 0);
	assert_int_equal(kl_tpm_nv_undefine(t, KL_TPM_NV_IDEVID_CERT), -KL_E_NOTFOUND);
	{
		unsigned char *got = NULL;
		size_t got_len = 0;

		assert_int_equal(kl_tpm_nv_read(t, KL_TPM_NV_IDEVID_CERT, &got, &got_len),
		                 -KL_E_NOTFOUND);
	}
	assert_transients(t, 0);
	kl_tpm_free(t);
	{
		const char *argv[] = { "tpm2_nvreadpublic", idx, NULL };

		assert_null(tool(argv, NULL));
	}
	{
		const char *argv[] = { "tpm2_getcap", "handles-nv-index", NULL };

		text = tool(argv, NULL);
		assert_non_null(text);
		if (text_has(text, "0x1C90000") || text_has(text, "0x1c90000") ||
		    text_has(text, "0x01c90000"))
			fail_msg("handles-nv-index after undefine: %s", text);
		free(text);
	}
}

/* 3: an IAK engraved before the station used the DevID spec's templates
 * (no adminWithPolicy, no policy) still loads, marked legacy, and passes the
 * legacy profile only; a key with a policy that is neither is refused. */
static void test_legacy_load(void **state)
{
	static const struct {
		const char *attrs, *policy;
		bool loads;
	} cases[] = {
		{ "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|restricted", NULL,
		  true },
		{ "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|sign|"
		  "restricted",
		  "zero", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ctx[PATH_MAX], pol[PATH_MAX], cmd[1024];
		kl_tpm_object *o = NULL;
		kl_tpm *t;

		floor_path(ctx, sizeof(ctx), "legacy.ctx");
		floor_path(pol, sizeof(pol), "legacy.policy");
		if (cases[i].policy) {
			/* 32 zero bytes: a policy digest, but not Table 19's */
			static const unsigned char zero[32];
			FILE *f = fopen(pol, "wb");

			assert_non_null(f);
			assert_int_equal(fwrite(zero, 1, sizeof(zero), f), sizeof(zero));
			assert_int_equal(fclose(f), 0);
			snprintf(
			    cmd, sizeof(cmd),
			    "printf IAK | tpm2_createprimary -C e -g sha256 -G "
			    "ecc256:ecdsa-sha256:null -a '%s' -L '%s' -u - -c '%s' >/dev/null && "
			    "tpm2_evictcontrol -C o -c '%s' 0x81020001 >/dev/null && "
			    "tpm2_flushcontext -t",
			    cases[i].attrs, pol, ctx, ctx);
		} else
			snprintf(cmd, sizeof(cmd),
			         "printf IAK | tpm2_createprimary -C e -g sha256 -G "
			         "ecc256:ecdsa-sha256:null -a '%s' -u - -c '%s' >/dev/null && "
			         "tpm2_evictcontrol -C o -c '%s' 0x81020001 >/dev/null && "
			         "tpm2_flushcontext -t",
			         cases[i].attrs, ctx, ctx);
		const char *argv[] = { "sh", "-c", cmd, NULL };
		assert_int_equal(kl_dut_tool(fx.floor, fx.duts[0], NULL, argv), 0);

		t = open_dut();
		if (cases[i].loads) {
			unsigned char *area = NULL;
			size_t len = 0;
			kl_attest_verdict v;

			if (kl_tpm_persistent_load(t, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IAK_P256, &o) <
			    0)
				fail_msg("legacy IAK: %s", kl_error_detail());
			assert_true(kl_tpm_object_is_legacy(o));
			assert_int_equal(kl_tpm_object_public_area(o, &area, &len), 0);
			assert_int_equal(
			    kl_attest_check_public(area, len, KL_ATTEST_KEY_IAK_LEGACY, &v), 0);
			assert_int_equal(kl_attest_check_public(area, len, KL_ATTEST_KEY_IAK, &v),
			                 -KL_E_CRYPTO);
			free(area);
			kl_tpm_object_free(o);
		} else {
			assert_int_equal(
			    kl_tpm_persistent_load(t, KL_TPM_HANDLE_IAK, KL_TPM_KEY_IAK_P256, &o),
			    -KL_E_TPM);
		}
		assert_int_equal(kl_tpm_persistent_evict(t, KL_TPM_HANDLE_IAK), 0);
		assert_transients(t, 0);
		kl_tpm_free(t);
	}
}

/* 5. */
static void test_bad_args(void **state)
{
	kl_tpm *t = open_dut();
	kl_tpm_object *iak = create_key(t, KL_TPM_KEY_IAK_P256);
	unsigned char nonce[65] = { 0 }, der[8] = { 0x30 };
	unsigned char *a = (unsigned char *)&a, *s = (unsigned char *)&s;
	size_t al = 0, sl = 0;
	bool b;

	(void)state;
	assert_int_equal(kl_tpm_certify_creation(t, iak, iak, nonce, 0, &a, &al, &s, &sl),
	                 -KL_E_INVALID);
	assert_int_equal(kl_tpm_certify_creation(t, iak, iak, nonce, 65, &a, &al, &s, &sl),
	                 -KL_E_INVALID);
	assert_int_equal(kl_tpm_certify_creation(t, NULL, iak, nonce, 32, &a, &al, &s, &sl),
	                 -KL_E_INVALID);
	assert_int_equal(kl_tpm_certify_creation(NULL, iak, iak, nonce, 32, &a, &al, &s, &sl),
	                 -KL_E_INVALID);
	assert_ptr_equal(a, (unsigned char *)&a);
	assert_int_equal(kl_tpm_object_persist(t, iak, 0x81800000u), -KL_E_INVALID);
	assert_int_equal(kl_tpm_object_persist(t, iak, 0x01c90000u), -KL_E_INVALID);
	assert_int_equal(kl_tpm_persistent_evict(t, 0x80000001u), -KL_E_INVALID);
	assert_int_equal(kl_tpm_persistent_exists(t, 0x40000001u, &b), -KL_E_INVALID);
	assert_int_equal(
	    kl_tpm_persistent_load(t, 0x81020000u, KL_TPM_KEY__MAX, (kl_tpm_object **)&a),
	    -KL_E_INVALID);
	assert_int_equal(kl_tpm_nv_write_cert(t, 0x81020000u, der, sizeof(der)), -KL_E_INVALID);
	assert_int_equal(kl_tpm_nv_write_cert(t, KL_TPM_NV_IAK_CERT, der, 0), -KL_E_INVALID);
	assert_int_equal(kl_tpm_nv_write_cert(t, KL_TPM_NV_IAK_CERT, NULL, 8), -KL_E_INVALID);
	assert_int_equal(kl_tpm_nv_undefine(t, 0x81020000u), -KL_E_INVALID);
	assert_int_equal(kl_tpm_nv_undefine(t, KL_TPM_NV_IAK_CERT), -KL_E_NOTFOUND);
	/* the vendor's EK certificate index is the platform's: refused, kept */
	assert_int_equal(kl_tpm_nv_write_cert(t, 0x01c0000au, der, sizeof(der)), -KL_E_EXISTS);
	assert_int_equal(kl_tpm_nv_undefine(t, 0x01c0000au), -KL_E_TPM);
	kl_tpm_object_free(iak);
	assert_transients(t, 0);
	kl_tpm_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_certify),     cmocka_unit_test(test_sign),
		cmocka_unit_test(test_persist),     cmocka_unit_test(test_nv_cert),
		cmocka_unit_test(test_legacy_load), cmocka_unit_test(test_bad_args),
	};

	return cmocka_run_group_tests_name("tpm_keys", tests, group_setup, group_teardown);
}
