/* Keys on the token: generate, find, read back, public half, signing handle. */
#include "hsm_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>

#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_hex.h"

KL_DEFINE_CLEANUP(OSSL_PARAM_BLD, OSSL_PARAM_BLD_free)
KL_DEFINE_CLEANUP(OSSL_PARAM, OSSL_PARAM_free)
KL_DEFINE_CLEANUP(ASN1_OCTET_STRING, ASN1_OCTET_STRING_free)

static inline void openssl_freep(void *p)
{
	OPENSSL_free(*(void **)p);
}

#define KL_HSM_ID_LEN 16

/* DER OBJECT IDENTIFIERs for CKA_EC_PARAMS (RFC 5480 §2.1.1.1 namedCurve). */
static const unsigned char oid_p256[] = {
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
};
static const unsigned char oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

static const struct key_spec {
	kl_hsm_key_type type;
	const char *name;
	const char *mech_name;
	CK_MECHANISM_TYPE mech;
	CK_KEY_TYPE key_type;
	const unsigned char *ec_params;
	size_t ec_params_len;
	const char *group; /* OpenSSL group name */
	CK_ULONG bits;
} specs[] = {
	{ KL_HSM_KEY_EC_P256, "EC P-256", "CKM_EC_KEY_PAIR_GEN", CKM_EC_KEY_PAIR_GEN, CKK_EC,
	  oid_p256, sizeof(oid_p256), "prime256v1", 256 },
	{ KL_HSM_KEY_EC_P384, "EC P-384", "CKM_EC_KEY_PAIR_GEN", CKM_EC_KEY_PAIR_GEN, CKK_EC,
	  oid_p384, sizeof(oid_p384), "secp384r1", 384 },
	{ KL_HSM_KEY_RSA_3072, "RSA-3072", "CKM_RSA_PKCS_KEY_PAIR_GEN", CKM_RSA_PKCS_KEY_PAIR_GEN,
	  CKK_RSA, NULL, 0, NULL, 3072 },
};

static const struct key_spec *spec_for(kl_hsm_key_type type)
{
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		if (specs[i].type == type)
			return &specs[i];
	return NULL;
}

/* Key objects are private (CKA_PRIVATE): without a login the token neither
 * shows nor makes them. Say so plainly instead of "not found". */
static int need_login(kl_hsm *h, const char *what)
{
	CK_SESSION_INFO info;
	CK_RV rv;

	rv = h->mod->fl->C_GetSessionInfo(h->session, &info);
	if (rv != CKR_OK)
		return p11_error(rv, "C_GetSessionInfo(token '%s')", h->label);
	if (info.state != CKS_RW_USER_FUNCTIONS && info.state != CKS_RO_USER_FUNCTIONS)
		return kl_error_set(KL_E_STATE, "%s: not logged in to token '%s'", what, h->label);
	return 0;
}

static int check_label(const char *label)
{
	if (!label || !*label || strlen(label) > 128)
		return kl_error_set(KL_E_INVALID,
		                    "hsm: a key label of 1..128 characters is needed");
	return 0;
}

static int key_new(const struct key_spec *s, const char *label, const unsigned char *id,
                   size_t id_len, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, kl_hsm_key **ret)
{
	kl_hsm_key *k;

	if (id_len > sizeof(k->id))
		return kl_error_set(KL_E_UNSUPPORTED, "key '%s': CKA_ID of %zu bytes is too long",
		                    label, id_len);
	k = OPENSSL_zalloc(sizeof(*k));
	if (!k || !(k->label = OPENSSL_strdup(label))) {
		OPENSSL_free(k);
		return kl_error_set(KL_E_NOMEM, "hsm: out of memory");
	}
	k->type = s->type;
	k->priv = priv;
	k->pub = pub;
	memcpy(k->id, id, id_len);
	k->id_len = id_len;
	kl_hex_encode(id, id_len, k->id_hex);
	*ret = k;
	return 0;
}

void kl_hsm_key_free(kl_hsm_key *k)
{
	if (!k)
		return;
	OPENSSL_free(k->label);
	OPENSSL_free(k);
}

kl_hsm_key_type kl_hsm_key_get_type(const kl_hsm_key *k)
{
	return k->type;
}

const char *kl_hsm_key_label(const kl_hsm_key *k)
{
	return k->label;
}

const char *kl_hsm_key_id_hex(const kl_hsm_key *k)
{
	return k->id_hex;
}

/* Counts private keys with that label (at most 2: enough to tell). */
static int count_private(kl_hsm *h, const char *label, CK_OBJECT_HANDLE found[2], CK_ULONG *n)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};

	return p11_find(h, tmpl, 2, found, 2, n);
}

/* The token must offer the mechanism for key pair generation, and for RSA the
 * size (CK_MECHANISM_INFO, PKCS#11 v2.40 §3.5). */
static int check_mechanism(kl_hsm *h, const struct key_spec *s)
{
	CK_MECHANISM_INFO info;
	CK_RV rv;

	rv = h->mod->fl->C_GetMechanismInfo(h->slot_id, s->mech, &info);
	if (rv != CKR_OK)
		return p11_error(rv, "token '%s' cannot generate %s keys: C_GetMechanismInfo(%s)",
		                 h->label, s->name, s->mech_name);
	if (!(info.flags & CKF_GENERATE_KEY_PAIR))
		return kl_error_set(
		    KL_E_UNSUPPORTED,
		    "token '%s' cannot generate %s keys: %s lacks CKF_GENERATE_KEY_PAIR", h->label,
		    s->name, s->mech_name);
	if (s->key_type == CKK_RSA && info.ulMaxKeySize &&
	    (s->bits < info.ulMinKeySize || s->bits > info.ulMaxKeySize))
		return kl_error_set(KL_E_UNSUPPORTED,
		                    "token '%s' cannot generate %s keys: sizes %lu..%lu only",
		                    h->label, s->name, (unsigned long)info.ulMinKeySize,
		                    (unsigned long)info.ulMaxKeySize);
	return 0;
}

int kl_hsm_key_generate(kl_hsm *h, kl_hsm_key_type type, const char *label, kl_hsm_key **ret)
{
	const struct key_spec *s = spec_for(type);
	CK_FUNCTION_LIST *fl = h->mod->fl;
	CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY, priv_class = CKO_PRIVATE_KEY;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_KEY_TYPE key_type;
	CK_ULONG bits;
	CK_BYTE exponent[] = { 0x01, 0x00, 0x01 }; /* 65537 */
	unsigned char id[KL_HSM_ID_LEN];
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE, dup[2];
	CK_MECHANISM mech = { 0 };
	CK_ULONG n_dup = 0;
	CK_RV rv;
	int r;

	if (!s)
		return kl_error_set(KL_E_UNSUPPORTED, "hsm: unknown key type %d", (int)type);
	r = check_label(label);
	if (r < 0)
		return r;
	r = need_login(h, "generate key");
	if (r < 0)
		return r;
	r = check_mechanism(h, s);
	if (r < 0)
		return r;
	/* Keys are named by label (RFC 7512 "object="): two keys with one name
	 * would make every later lookup ambiguous. */
	r = count_private(h, label, dup, &n_dup);
	if (r < 0)
		return r;
	if (n_dup > 0)
		return kl_error_set(KL_E_EXISTS,
		                    "token '%s' already holds a private key labelled '%s'",
		                    h->label, label);
	r = kl_hsm_random(h, id, sizeof(id));
	if (r < 0)
		return r;

	key_type = s->key_type;
	bits = s->bits;
	mech.mechanism = s->mech;
	CK_ATTRIBUTE pub_tmpl[9] = {
		{ CKA_CLASS, &pub_class, sizeof(pub_class) },
		{ CKA_KEY_TYPE, &key_type, sizeof(key_type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, id, sizeof(id) },
	};
	CK_ULONG n_pub = 7;
	if (s->key_type == CKK_EC) {
		pub_tmpl[n_pub++] =
		    (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *)s->ec_params, s->ec_params_len };
	} else {
		pub_tmpl[n_pub++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof(bits) };
		pub_tmpl[n_pub++] =
		    (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent) };
	}
	/* The CA key: created on the token, usable only after login, never
	 * leaves it in the clear (CKA_SENSITIVE) nor wrapped (CKA_EXTRACTABLE
	 * false); the token then sets CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE
	 * and CKA_LOCAL (PKCS#11 v2.40 §4.9). Signing only. */
	CK_ATTRIBUTE priv_tmpl[] = {
		{ CKA_CLASS, &priv_class, sizeof(priv_class) },
		{ CKA_KEY_TYPE, &key_type, sizeof(key_type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, id, sizeof(id) },
	};

	rv = fl->C_GenerateKeyPair(h->session, &mech, pub_tmpl, n_pub, priv_tmpl,
	                           sizeof(priv_tmpl) / sizeof(priv_tmpl[0]), &pub, &priv);
	if (rv != CKR_OK)
		return p11_error(rv, "C_GenerateKeyPair(%s '%s' on token '%s')", s->name, label,
		                 h->label);
	r = key_new(s, label, id, sizeof(id), priv, pub, ret);
	if (r < 0) {
		/* Leave no half-made key behind. */
		(void)fl->C_DestroyObject(h->session, priv);
		(void)fl->C_DestroyObject(h->session, pub);
	}
	return r;
}

/* Reads a CK_ULONG-sized attribute. */
static int attr_ulong(kl_hsm *h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, const char *name,
                      CK_ULONG *ret)
{
	_cleanup_(openssl_freep) unsigned char *v = NULL;
	size_t len;
	int r;

	r = p11_attr_read(h, o, t, name, &v, &len);
	if (r < 0)
		return r;
	if (len != sizeof(CK_ULONG))
		return kl_error_set(KL_E_HSM, "%s: %zu bytes, want %zu", name, len,
		                    sizeof(CK_ULONG));
	memcpy(ret, v, sizeof(*ret));
	return 0;
}

/* Which of our key types a token key is, from its own attributes. */
static int key_spec_of(kl_hsm *h, CK_OBJECT_HANDLE o, const char *label,
                       const struct key_spec **ret)
{
	_cleanup_(openssl_freep) unsigned char *v = NULL;
	_cleanup_(BN_freep) BIGNUM *n = NULL;
	CK_ULONG kt = 0;
	size_t len;
	int r;

	r = attr_ulong(h, o, CKA_KEY_TYPE, "CKA_KEY_TYPE", &kt);
	if (r < 0)
		return kl_error_wrap("key '%s'", label);
	if (kt == CKK_EC) {
		r = p11_attr_read(h, o, CKA_EC_PARAMS, "CKA_EC_PARAMS", &v, &len);
		if (r < 0)
			return kl_error_wrap("key '%s'", label);
		for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
			if (specs[i].ec_params && specs[i].ec_params_len == len &&
			    memcmp(specs[i].ec_params, v, len) == 0) {
				*ret = &specs[i];
				return 0;
			}
		}
		return kl_error_set(KL_E_UNSUPPORTED, "key '%s': EC curve other than P-256/P-384",
		                    label);
	}
	if (kt == CKK_RSA) {
		r = p11_attr_read(h, o, CKA_MODULUS, "CKA_MODULUS", &v, &len);
		if (r < 0)
			return kl_error_wrap("key '%s'", label);
		n = BN_bin2bn(v, (int)len, NULL);
		if (!n)
			return kl_error_set_ssl(KL_E_NOMEM, "key '%s': modulus", label);
		if (BN_num_bits(n) == 3072) {
			*ret = spec_for(KL_HSM_KEY_RSA_3072);
			return 0;
		}
		return kl_error_set(KL_E_UNSUPPORTED, "key '%s': RSA-%d, only RSA-3072 is used",
		                    label, BN_num_bits(n));
	}
	return kl_error_set(KL_E_UNSUPPORTED, "key '%s': key type 0x%lx is neither EC nor RSA",
	                    label, (unsigned long)kt);
}

int kl_hsm_key_find(kl_hsm *h, const char *label, kl_hsm_key **ret)
{
	_cleanup_(openssl_freep) unsigned char *id = NULL;
	const struct key_spec *s = NULL;
	CK_OBJECT_CLASS pub_class = CKO_PUBLIC_KEY;
	CK_OBJECT_HANDLE found[2], pub = CK_INVALID_HANDLE;
	CK_ULONG n = 0;
	size_t id_len;
	int r;

	r = check_label(label);
	if (r < 0)
		return r;
	r = need_login(h, "find key");
	if (r < 0)
		return r;
	r = count_private(h, label, found, &n);
	if (r < 0)
		return r;
	if (n == 0)
		return kl_error_set(KL_E_NOTFOUND, "no private key labelled '%s' on token '%s'",
		                    label, h->label);
	if (n > 1)
		return kl_error_set(KL_E_EXISTS,
		                    "several private keys are labelled '%s' on token '%s'", label,
		                    h->label);
	r = key_spec_of(h, found[0], label, &s);
	if (r < 0)
		return r;
	r = p11_attr_read(h, found[0], CKA_ID, "CKA_ID", &id, &id_len);
	if (r < 0)
		return kl_error_wrap("key '%s'", label);

	/* The public half is the public key object with the same CKA_ID. */
	if (id_len > 0) {
		CK_ATTRIBUTE tmpl[] = {
			{ CKA_CLASS, &pub_class, sizeof(pub_class) },
			{ CKA_ID, id, id_len },
		};
		CK_OBJECT_HANDLE pubs[2];
		CK_ULONG n_pub = 0;

		r = p11_find(h, tmpl, 2, pubs, 2, &n_pub);
		if (r < 0)
			return r;
		if (n_pub == 1)
			pub = pubs[0];
	}
	return key_new(s, label, id, id_len, found[0], pub, ret);
}

int kl_hsm_key_attrs(kl_hsm *h, const kl_hsm_key *k, struct kl_hsm_key_attrs *ret)
{
	static const char *const names[] = {
		"CKA_SENSITIVE",         "CKA_EXTRACTABLE", "CKA_ALWAYS_SENSITIVE",
		"CKA_NEVER_EXTRACTABLE", "CKA_PRIVATE",     "CKA_LOCAL",
	};
	CK_BBOOL v[6] = { 0 };
	CK_ATTRIBUTE a[6] = {
		{ CKA_SENSITIVE, &v[0], sizeof(CK_BBOOL) },
		{ CKA_EXTRACTABLE, &v[1], sizeof(CK_BBOOL) },
		{ CKA_ALWAYS_SENSITIVE, &v[2], sizeof(CK_BBOOL) },
		{ CKA_NEVER_EXTRACTABLE, &v[3], sizeof(CK_BBOOL) },
		{ CKA_PRIVATE, &v[4], sizeof(CK_BBOOL) },
		{ CKA_LOCAL, &v[5], sizeof(CK_BBOOL) },
	};
	CK_RV rv;

	rv = h->mod->fl->C_GetAttributeValue(h->session, k->priv, a, 6);
	/* With these two, the other attributes are still returned and the
	 * unreadable ones say CK_UNAVAILABLE_INFORMATION (PKCS#11 v2.40 §5.7). */
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
		return p11_error(rv, "C_GetAttributeValue(key '%s')", k->label);
	for (size_t i = 0; i < 6; i++) {
		if (a[i].ulValueLen != sizeof(CK_BBOOL))
			return kl_error_set(KL_E_HSM, "key '%s': token gave no %s", k->label,
			                    names[i]);
	}
	*ret = (struct kl_hsm_key_attrs){
		.sensitive = v[0] == CK_TRUE,
		.extractable = v[1] == CK_TRUE,
		.always_sensitive = v[2] == CK_TRUE,
		.never_extractable = v[3] == CK_TRUE,
		.is_private = v[4] == CK_TRUE,
		.local = v[5] == CK_TRUE,
	};
	return 0;
}

/* CKA_EC_POINT is DER: an OCTET STRING around the X9.62 point (PKCS#11 v2.40
 * §2.3.3). Some modules give the bare point; accept both, exactly. */
static int ec_point_bytes(const unsigned char *v, size_t len, const unsigned char **pt,
                          size_t *pt_len, ASN1_OCTET_STRING **holder)
{
	const unsigned char *p = v;
	ASN1_OCTET_STRING *os;

	os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)len);
	if (os && p == v + len) {
		*pt = ASN1_STRING_get0_data(os);
		*pt_len = (size_t)ASN1_STRING_length(os);
		*holder = os;
		return 0;
	}
	ASN1_OCTET_STRING_free(os);
	ERR_clear_error();
	if (len > 0 && v[0] == 0x04) {
		*pt = v;
		*pt_len = len;
		*holder = NULL;
		return 0;
	}
	return kl_error_set(KL_E_HSM, "CKA_EC_POINT: neither DER nor an uncompressed point");
}

static int pkey_from_params(const char *alg, OSSL_PARAM_BLD *bld, const char *label, EVP_PKEY **ret)
{
	_cleanup_(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *check = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;

	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
	if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "key '%s': public key from token attributes",
		                        label);
	/* A point off the curve or a bad modulus is the token's fault: refuse
	 * it here rather than in a certificate. */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!check || EVP_PKEY_public_check(check) <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "key '%s': public key fails its check", label);
	*ret = TAKE_PTR(pkey);
	return 0;
}

int kl_hsm_key_public(kl_hsm *h, const kl_hsm_key *k, EVP_PKEY **ret)
{
	_cleanup_(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
	_cleanup_(openssl_freep) unsigned char *a = NULL;
	_cleanup_(openssl_freep) unsigned char *b = NULL;
	_cleanup_(ASN1_OCTET_STRING_freep) ASN1_OCTET_STRING *holder = NULL;
	_cleanup_(BN_freep) BIGNUM *n = NULL;
	_cleanup_(BN_freep) BIGNUM *e = NULL;
	const struct key_spec *s = spec_for(k->type);
	const unsigned char *pt = NULL;
	size_t a_len, b_len, pt_len = 0;
	int r;

	if (k->pub == CK_INVALID_HANDLE)
		return kl_error_set(KL_E_NOTFOUND, "key '%s': no public key object on token '%s'",
		                    k->label, h->label);
	bld = OSSL_PARAM_BLD_new();
	if (!bld || !s)
		return kl_error_set(KL_E_NOMEM, "hsm: out of memory");

	if (s->key_type == CKK_EC) {
		/* The curve comes from the token too, and must be the one the
		 * key is supposed to be on. */
		r = p11_attr_read(h, k->pub, CKA_EC_PARAMS, "CKA_EC_PARAMS", &a, &a_len);
		if (r < 0)
			return kl_error_wrap("key '%s'", k->label);
		if (a_len != s->ec_params_len || memcmp(a, s->ec_params, a_len) != 0)
			return kl_error_set(KL_E_HSM, "key '%s': public key is not on %s", k->label,
			                    s->name);
		r = p11_attr_read(h, k->pub, CKA_EC_POINT, "CKA_EC_POINT", &b, &b_len);
		if (r < 0)
			return kl_error_wrap("key '%s'", k->label);
		r = ec_point_bytes(b, b_len, &pt, &pt_len, &holder);
		if (r < 0)
			return kl_error_wrap("key '%s'", k->label);
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, s->group,
		                                     0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, pt_len))
			return kl_error_set_ssl(KL_E_NOMEM, "key '%s': EC parameters", k->label);
		return pkey_from_params("EC", bld, k->label, ret);
	}

	r = p11_attr_read(h, k->pub, CKA_MODULUS, "CKA_MODULUS", &a, &a_len);
	if (r < 0)
		return kl_error_wrap("key '%s'", k->label);
	r = p11_attr_read(h, k->pub, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", &b, &b_len);
	if (r < 0)
		return kl_error_wrap("key '%s'", k->label);
	n = BN_bin2bn(a, (int)a_len, NULL);
	e = BN_bin2bn(b, (int)b_len, NULL);
	if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
		return kl_error_set_ssl(KL_E_NOMEM, "key '%s': RSA parameters", k->label);
	if (BN_num_bits(n) != (int)s->bits)
		return kl_error_set(KL_E_HSM, "key '%s': modulus of %d bits, want %lu", k->label,
		                    BN_num_bits(n), (unsigned long)s->bits);
	return pkey_from_params("RSA", bld, k->label, ret);
}

/* libp11 makes the signing EVP_PKEY: its private operations call C_Sign on
 * libp11's own sessions, which share our login. */
int kl_hsm_key_private(kl_hsm *h, const kl_hsm_key *k, EVP_PKEY **ret)
{
	PKCS11_KEY *keys = NULL;
	unsigned int n = 0;
	EVP_PKEY *pkey;
	int r;

	r = need_login(h, "private key");
	if (r < 0)
		return r;
	if (!h->slot->token)
		return kl_error_set(KL_E_NOTFOUND, "token '%s' is gone", h->label);
	ERR_clear_error();
	if (PKCS11_enumerate_keys(h->slot->token, &keys, &n) < 0)
		return kl_error_set_ssl(KL_E_HSM, "PKCS11_enumerate_keys(token '%s')", h->label);
	for (unsigned i = 0; i < n; i++) {
		if (!keys[i].isPrivate || keys[i].id_len != k->id_len ||
		    memcmp(keys[i].id, k->id, k->id_len) != 0)
			continue;
		pkey = PKCS11_get_private_key(&keys[i]);
		if (!pkey)
			return kl_error_set_ssl(KL_E_HSM, "PKCS11_get_private_key('%s')", k->label);
		*ret = pkey;
		return 0;
	}
	return kl_error_set(KL_E_NOTFOUND, "libp11 does not see key '%s' (id %s) on token '%s'",
	                    k->label, k->id_hex, h->label);
}

int kl_hsm_sign_digest(kl_hsm *h, const kl_hsm_key *k, const unsigned char *digest, size_t dlen,
                       unsigned char *sig, size_t *siglen)
{
	CK_MECHANISM mech = { .mechanism = CKM_ECDSA };
	CK_ULONG out = *siglen;
	CK_RV rv;
	int r;

	r = need_login(h, "sign");
	if (r < 0)
		return r;
	if (k->type != KL_HSM_KEY_EC_P256 && k->type != KL_HSM_KEY_EC_P384)
		return kl_error_set(KL_E_UNSUPPORTED, "raw digest signing is for EC keys");
	rv = h->mod->fl->C_SignInit(h->session, &mech, k->priv);
	if (rv != CKR_OK)
		return p11_error(rv, "C_SignInit('%s')", k->label);
	rv = h->mod->fl->C_Sign(h->session, (CK_BYTE_PTR)digest, dlen, sig, &out);
	if (rv != CKR_OK)
		return p11_error(rv, "C_Sign('%s')", k->label);
	*siglen = out;
	return 0;
}

int kl_hsm_key_find_uri(kl_hsm *h, const kl_pkcs11_uri *u, kl_hsm_key **ret)
{
	CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
	_cleanup_(openssl_freep) unsigned char *label = NULL;
	const struct key_spec *s = NULL;
	CK_OBJECT_HANDLE found[2], pubs[2], pub = CK_INVALID_HANDLE;
	CK_ULONG n = 0, n_pub = 0;
	kl_hsm_key *k = NULL;
	size_t label_len = 0;
	char name[129];
	int r;

	if (u->token[0] && strcmp(u->token, h->label) != 0)
		return kl_error_set(KL_E_INVALID, "the URI names token '%s', this is token '%s'",
		                    u->token, h->label);
	if (u->type[0] && strcmp(u->type, "private") != 0)
		return kl_error_set(KL_E_INVALID,
		                    "the URI names a %s object; a signing key is private", u->type);
	if (u->object[0]) {
		r = kl_hsm_key_find(h, u->object, &k);
		if (r < 0)
			return r;
		if (u->id_len && (k->id_len != u->id_len || memcmp(k->id, u->id, u->id_len) != 0)) {
			kl_hsm_key_free(k);
			return kl_error_set(
			    KL_E_NOTFOUND, "key '%s' on token '%s' has another CKA_ID than the URI",
			    u->object, h->label);
		}
		*ret = k;
		return 0;
	}
	if (!u->id_len)
		return kl_error_set(KL_E_INVALID, "the URI names no key (object= or id=)");
	r = need_login(h, "find key");
	if (r < 0)
		return r;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &priv_class, sizeof(priv_class) },
		{ CKA_ID, (void *)u->id, u->id_len },
	};
	r = p11_find(h, tmpl, 2, found, 2, &n);
	if (r < 0)
		return r;
	if (n != 1)
		return kl_error_set(n ? KL_E_EXISTS : KL_E_NOTFOUND,
		                    "%s private key with that CKA_ID on token '%s'",
		                    n ? "more than one" : "no", h->label);
	r = p11_attr_read(h, found[0], CKA_LABEL, "CKA_LABEL", &label, &label_len);
	snprintf(name, sizeof(name), "%.*s", r == 0 ? (int)label_len : 0,
	         r == 0 ? (const char *)label : "");
	r = key_spec_of(h, found[0], name, &s);
	if (r < 0)
		return r;
	tmpl[0].pValue = &pub_class;
	r = p11_find(h, tmpl, 2, pubs, 2, &n_pub);
	if (r < 0)
		return r;
	if (n_pub == 1)
		pub = pubs[0];
	return key_new(s, name, u->id, u->id_len, found[0], pub, ret);
}
