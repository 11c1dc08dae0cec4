/* Credential protection in software (TPM 2.0 Part 1 §24, Part 3 §12.6).
 *
 * MakeCredential, as the TPM computes it with the EK's nameAlg and
 * symmetric algorithm:
 *   seed         RSA: random, encrypted with RSA-OAEP(nameAlg, "IDENTITY\0")
 *                ECC: KDFe(nameAlg, Z, "IDENTITY", QeU.x, QsV.x, digest bits),
 *                     the ephemeral point QeU is the encrypted secret
 *   symKey       KDFa(nameAlg, seed, "STORAGE", name, -, symmetric key bits)
 *   encIdentity  AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
 *   HMACkey      KDFa(nameAlg, seed, "INTEGRITY", -, -, digest bits)
 *   outerHMAC    HMAC(HMACkey, encIdentity || name)
 *   blob         TPM2B(TPM2B_DIGEST(outerHMAC) || encIdentity)
 * and ActivateCredential, its reverse, for tests (Part 1 §24.5).
 *
 * Everything is marshalled by hand, big-endian (Part 2 §5); nothing here
 * uses tpm2-tss. Seeds, keys and plaintexts stay in struct id_keys or
 * stack buffers that are wiped before every return. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "credential.h"
#include "credential_kdf.h"
#include "kl_cleanup.h"
#include "kl_error.h"

KL_DEFINE_CLEANUP(EVP_MAC, EVP_MAC_free)
KL_DEFINE_CLEANUP(EVP_MAC_CTX, EVP_MAC_CTX_free)
KL_DEFINE_CLEANUP(EVP_CIPHER, EVP_CIPHER_free)
KL_DEFINE_CLEANUP(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)

#define DIGEST_MAX 64 /* SHA-512 */
#define FIELD_MAX  48 /* P-384 */
#define SYMKEY_MAX 32 /* AES-256 */

/* TPM2B_DIGEST(credential) and the most a blob or secret can hold. */
#define PLAIN_MAX  (2 + DIGEST_MAX)
#define BLOB_MAX   (2 + 2 + DIGEST_MAX + PLAIN_MAX)
#define SECRET_MAX (2 + 512) /* RSA-4096 ciphertext; an ECC point is smaller */

/* Labels of Part 1 §24.4 and §C.6.4, with their terminating NUL, which
 * KDFa, KDFe and OAEP all include (Part 1 §11.4.10.2). */
static const char label_identity[] = "IDENTITY";
static const char label_storage[] = "STORAGE";
static const char label_integrity[] = "INTEGRITY";

/* The parts of the TCG default EK templates (EK Credential Profile Annex B)
 * that credential protection uses: nameAlg, the symmetric algorithm, and
 * the asymmetric key. */
static const struct ek_params {
	const char *md;     /* nameAlg */
	size_t digest_len;  /* its digest size */
	const char *cipher; /* symmetric algorithm, CFB-128 */
	size_t sym_len;     /* its key size, bytes */
	int curve_nid;      /* NID_undef for RSA */
	const char *curve;  /* OpenSSL group name */
	size_t field;       /* ECC coordinate size, bytes */
} ek_params[KL_EK__MAX] = {
	[KL_EK_RSA2048] = { "SHA256", 32, "AES-128-CFB", 16, NID_undef, NULL, 0 },
	[KL_EK_P256] = { "SHA256", 32, "AES-128-CFB", 16, NID_X9_62_prime256v1, "P-256", 32 },
	[KL_EK_P384] = { "SHA384", 48, "AES-256-CFB", 32, NID_secp384r1, "P-384", 48 },
};

/* Keys derived from the seed. Wiped by id_keys_wipe. */
struct id_keys {
	unsigned char seed[DIGEST_MAX];
	size_t seed_len;
	unsigned char sym[SYMKEY_MAX];
	unsigned char hmac[DIGEST_MAX];
};

static void id_keys_wipe(struct id_keys *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

struct part {
	const unsigned char *p;
	size_t n;
};

static void put16(unsigned char *p, size_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static size_t get16(const unsigned char *p)
{
	return ((size_t)p[0] << 8) | p[1];
}

size_t kl_credential_max_len(kl_ek_type type)
{
	if ((unsigned)type >= KL_EK__MAX)
		return 0;
	return ek_params[type].digest_len;
}

/* HMAC(key, parts[0] || parts[1] || ...). out must hold DIGEST_MAX bytes. */
static int hmac_parts(const char *md, const unsigned char *key, size_t key_len,
                      const struct part *parts, size_t n_parts, unsigned char *out, size_t *out_len)
{
	_cleanup_(EVP_MAC_freep) EVP_MAC *mac = NULL;
	_cleanup_(EVP_MAC_CTX_freep) EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0),
		OSSL_PARAM_construct_end(),
	};

	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!mac)
		return kl_error_set_ssl(KL_E_CRYPTO, "HMAC-%s: not available", md);
	ctx = EVP_MAC_CTX_new(mac);
	if (!ctx || EVP_MAC_init(ctx, key, key_len, params) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "HMAC-%s: init", md);
	for (size_t i = 0; i < n_parts; i++)
		if (parts[i].n > 0 && EVP_MAC_update(ctx, parts[i].p, parts[i].n) != 1)
			return kl_error_set_ssl(KL_E_CRYPTO, "HMAC-%s: update", md);
	if (EVP_MAC_final(ctx, out, out_len, DIGEST_MAX) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "HMAC-%s: final", md);
	return 0;
}

/* symKey and HMACkey from the seed (Part 1 §24.4). */
static int derive_keys(const struct ek_params *p, const kl_tpm_name *name, struct id_keys *k)
{
	int r;

	r = kl_kdfa(p->md, k->seed, k->seed_len, label_storage, name->buf, name->len, k->sym,
	            p->sym_len);
	if (r < 0)
		return r;
	return kl_kdfa(p->md, k->seed, k->seed_len, label_integrity, NULL, 0, k->hmac,
	               p->digest_len);
}

/* AES-CFB with an all-zero IV (Part 1 §24.4: "the IV is zero"). CFB needs no
 * padding: out has len bytes. */
static int aes_cfb(const struct ek_params *p, const unsigned char *key, int encrypt,
                   const unsigned char *in, size_t len, unsigned char *out)
{
	_cleanup_(EVP_CIPHER_freep) EVP_CIPHER *cipher = NULL;
	_cleanup_(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
	static const unsigned char iv[16];
	int n = 0, m = 0;

	cipher = EVP_CIPHER_fetch(NULL, p->cipher, NULL);
	ctx = EVP_CIPHER_CTX_new();
	if (!cipher || !ctx || EVP_CipherInit_ex2(ctx, cipher, key, iv, encrypt, NULL) != 1 ||
	    EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1 ||
	    EVP_CipherFinal_ex(ctx, out + n, &m) != 1 || (size_t)(n + m) != len)
		return kl_error_set_ssl(KL_E_CRYPTO, "%s", p->cipher);
	return 0;
}

/* outerHMAC = HMAC(HMACkey, encIdentity || name). */
static int outer_hmac(const struct ek_params *p, const struct id_keys *k, const unsigned char *enc,
                      size_t enc_len, const kl_tpm_name *name, unsigned char *out)
{
	const struct part parts[] = { { enc, enc_len }, { name->buf, name->len } };
	size_t n = 0;
	int r;

	r = hmac_parts(p->md, k->hmac, p->digest_len, parts, 2, out, &n);
	if (r == 0 && n != p->digest_len)
		r = kl_error_set(KL_E_CRYPTO, "HMAC-%s: %zu bytes", p->md, n);
	return r;
}

/* A TPM name: nameAlg (one we know) followed by a digest of its size. */
static int check_name(const kl_tpm_name *name)
{
	size_t want;

	if (!name || name->len < 2 || name->len > KL_TPM_NAME_MAX)
		return kl_error_set(KL_E_INVALID, "credential: no TPM name");
	switch (get16(name->buf)) {
	case 0x0004: /* TPM_ALG_SHA1 */
		want = 20;
		break;
	case 0x000b: /* TPM_ALG_SHA256 */
	case 0x0012: /* TPM_ALG_SM3_256 */
		want = 32;
		break;
	case 0x000c: /* TPM_ALG_SHA384 */
		want = 48;
		break;
	case 0x000d: /* TPM_ALG_SHA512 */
		want = 64;
		break;
	default:
		return kl_error_set(KL_E_INVALID, "credential: TPM name with nameAlg 0x%04zx",
		                    get16(name->buf));
	}
	if (name->len != 2 + want)
		return kl_error_set(KL_E_INVALID,
		                    "credential: TPM name of %zu bytes for nameAlg 0x%04zx",
		                    name->len, get16(name->buf));
	return 0;
}

/* The EK must be the key of its template: RSA 2048, or ECC on the template's
 * curve. Anything else would make blobs that no TPM can open. */
static int check_ek(EVP_PKEY *ek, kl_ek_type type, const struct ek_params **ret)
{
	const struct ek_params *p;

	if (!ek || (unsigned)type >= KL_EK__MAX)
		return kl_error_set(KL_E_INVALID, "credential: no EK or unknown EK type %d",
		                    (int)type);
	p = &ek_params[type];
	if (p->curve_nid == NID_undef) {
		if (!EVP_PKEY_is_a(ek, "RSA") || EVP_PKEY_get_bits(ek) != 2048)
			return kl_error_set(KL_E_INVALID, "credential: EK %s needs an RSA-2048 key",
			                    kl_ek_type_name(type));
	} else {
		char group[64];
		size_t len = 0;

		if (!EVP_PKEY_is_a(ek, "EC") ||
		    EVP_PKEY_get_utf8_string_param(ek, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof(group), &len) != 1 ||
		    OBJ_sn2nid(group) != p->curve_nid)
			return kl_error_set(KL_E_INVALID, "credential: EK %s needs an EC %s key",
			                    kl_ek_type_name(type), p->curve);
	}
	*ret = p;
	return 0;
}

/* The public point of an EC key, each coordinate left-padded to the field
 * size (Part 2 §11.2.5.2: the TPM's own unique.ecc.x is that size). */
static int ec_point(EVP_PKEY *key, const struct ek_params *p, unsigned char *x, unsigned char *y)
{
	_cleanup_(BN_freep) BIGNUM *bx = NULL;
	_cleanup_(BN_freep) BIGNUM *by = NULL;

	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
	    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1 ||
	    BN_bn2binpad(bx, x, (int)p->field) != (int)p->field ||
	    BN_bn2binpad(by, y, (int)p->field) != (int)p->field)
		return kl_error_set_ssl(KL_E_CRYPTO, "EC %s key: public point", p->curve);
	return 0;
}

/* Z = x coordinate of priv * peer (SP 800-56A ECC CDH), field-size bytes.
 * OpenSSL checks that the peer point is on the curve. */
static int ecdh(EVP_PKEY *priv, EVP_PKEY *peer, const struct ek_params *p, unsigned char *z)
{
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	size_t len = FIELD_MAX;

	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
	if (!ctx || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, z, &len) != 1 || len != p->field)
		return kl_error_set_ssl(KL_E_CRYPTO, "ECDH on %s", p->curve);
	return 0;
}

/* RSA EK (Part 1 §B.10.3): a random seed of the nameAlg's digest size,
 * encrypted with OAEP (hash and MGF1 = nameAlg, label "IDENTITY\0"). The
 * secret is the TPM2B of the ciphertext. */
static int seed_rsa(EVP_PKEY *ek, const struct ek_params *p, struct id_keys *k,
                    unsigned char *secret, size_t *secret_len)
{
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
		                                 (char *)OSSL_PKEY_RSA_PAD_MODE_OAEP, 0),
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, (char *)p->md,
		                                 0),
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, (char *)p->md,
		                                 0),
		OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL,
		                                  (void *)label_identity, sizeof(label_identity)),
		OSSL_PARAM_construct_end(),
	};
	size_t n = SECRET_MAX - 2;

	k->seed_len = p->digest_len;
	if (RAND_priv_bytes(k->seed, (int)k->seed_len) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "credential: random seed");
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek, NULL);
	if (!ctx || EVP_PKEY_encrypt_init_ex(ctx, params) != 1 ||
	    EVP_PKEY_encrypt(ctx, secret + 2, &n, k->seed, k->seed_len) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "credential: RSA-OAEP to the EK");
	put16(secret, n);
	*secret_len = 2 + n;
	return 0;
}

/* ECC EK (Part 1 §C.6.4): an ephemeral key QeU on the EK's curve,
 * Z = ECDH(QeU, QsV), seed = KDFe(nameAlg, Z, "IDENTITY", QeU.x, QsV.x,
 * digest bits). The secret is the TPM2B of the marshalled TPMS_ECC_POINT
 * QeU, coordinates padded to the field size. */
static int seed_ecc(EVP_PKEY *ek, const struct ek_params *p, struct id_keys *k,
                    unsigned char *secret, size_t *secret_len)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *eph = NULL;
	unsigned char ex[FIELD_MAX], ey[FIELD_MAX], kx[FIELD_MAX], ky[FIELD_MAX], z[FIELD_MAX];
	const size_t f = p->field;
	int r;

	eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", p->curve);
	if (!eph)
		return kl_error_set_ssl(KL_E_CRYPTO, "credential: ephemeral %s key", p->curve);
	r = ec_point(eph, p, ex, ey);
	if (r == 0)
		r = ec_point(ek, p, kx, ky);
	if (r == 0)
		r = ecdh(eph, ek, p, z);
	if (r == 0) {
		k->seed_len = p->digest_len;
		r = kl_kdfe(p->md, z, f, label_identity, ex, f, kx, f, k->seed, k->seed_len);
	}
	OPENSSL_cleanse(z, sizeof(z));
	if (r < 0)
		return r;

	put16(secret, 4 + 2 * f);
	put16(secret + 2, f);
	memcpy(secret + 4, ex, f);
	put16(secret + 4 + f, f);
	memcpy(secret + 6 + f, ey, f);
	*secret_len = 2 + 4 + 2 * f;
	return 0;
}

static int credential_alloc(const unsigned char *blob, size_t blob_len, const unsigned char *secret,
                            size_t secret_len, kl_credential **ret)
{
	kl_credential *c = calloc(1, sizeof(*c));

	if (!c)
		return kl_error_set(KL_E_NOMEM, "credential: out of memory");
	c->blob = malloc(blob_len);
	c->secret = malloc(secret_len);
	if (!c->blob || !c->secret) {
		kl_credential_free(c);
		return kl_error_set(KL_E_NOMEM, "credential: out of memory");
	}
	memcpy(c->blob, blob, blob_len);
	c->blob_len = blob_len;
	memcpy(c->secret, secret, secret_len);
	c->secret_len = secret_len;
	*ret = c;
	return 0;
}

int kl_make_credential(EVP_PKEY *ek, kl_ek_type type, const unsigned char *cred, size_t cred_len,
                       const kl_tpm_name *name, kl_credential **ret)
{
	const struct ek_params *p = NULL;
	struct id_keys k;
	unsigned char plain[PLAIN_MAX], blob[BLOB_MAX], secret[SECRET_MAX];
	size_t secret_len = 0, enc_len, blob_len;
	unsigned char *enc;
	int r;

	r = check_ek(ek, type, &p);
	if (r < 0)
		return r;
	r = check_name(name);
	if (r < 0)
		return r;
	/* Part 3 §12.6: credential.size larger than the EK nameAlg's digest
	 * is TPM_RC_SIZE. An empty one would prove nothing. */
	if (!cred || cred_len == 0 || cred_len > p->digest_len)
		return kl_error_set(KL_E_INVALID,
		                    "credential: %zu bytes for EK %s (1 to %zu allowed)", cred_len,
		                    kl_ek_type_name(type), p->digest_len);

	memset(&k, 0, sizeof(k));
	if (p->curve_nid == NID_undef)
		r = seed_rsa(ek, p, &k, secret, &secret_len);
	else
		r = seed_ecc(ek, p, &k, secret, &secret_len);
	if (r < 0)
		goto out;
	r = derive_keys(p, name, &k);
	if (r < 0)
		goto out;

	/* blob = size || TPM2B_DIGEST(outerHMAC) || encIdentity */
	put16(plain, cred_len);
	memcpy(plain + 2, cred, cred_len);
	enc_len = 2 + cred_len;
	enc = blob + 4 + p->digest_len;
	r = aes_cfb(p, k.sym, 1, plain, enc_len, enc);
	if (r < 0)
		goto out;
	r = outer_hmac(p, &k, enc, enc_len, name, blob + 4);
	if (r < 0)
		goto out;
	put16(blob + 2, p->digest_len);
	blob_len = 4 + p->digest_len + enc_len;
	put16(blob, blob_len - 2);

	r = credential_alloc(blob, blob_len, secret, secret_len, ret);
out:
	id_keys_wipe(&k);
	OPENSSL_cleanse(plain, sizeof(plain));
	return r;
}

/* One whole TPM2B: a size field equal to the bytes that follow. */
static int check_tpm2b(const char *what, const unsigned char *b, size_t len, size_t max)
{
	if (!b || len < 2 || len > max || get16(b) != len - 2)
		return kl_error_set(KL_E_INVALID, "credential: %s of %zu bytes is not one TPM2B",
		                    what, b ? len : 0);
	return 0;
}

int kl_credential_new(const unsigned char *blob, size_t blob_len, const unsigned char *secret,
                      size_t secret_len, kl_credential **ret)
{
	int r;

	r = check_tpm2b("credentialBlob", blob, blob_len, BLOB_MAX);
	if (r < 0)
		return r;
	r = check_tpm2b("secret", secret, secret_len, SECRET_MAX);
	if (r < 0)
		return r;
	return credential_alloc(blob, blob_len, secret, secret_len, ret);
}

void kl_credential_free(kl_credential *c)
{
	if (!c)
		return;
	free(c->blob);
	free(c->secret);
	free(c);
}

/* ---- ActivateCredential in software: for tests and tools only. ---- */

static int unseed_rsa(EVP_PKEY *ek, const struct ek_params *p, const kl_credential *c,
                      struct id_keys *k)
{
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
		                                 (char *)OSSL_PKEY_RSA_PAD_MODE_OAEP, 0),
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, (char *)p->md,
		                                 0),
		OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, (char *)p->md,
		                                 0),
		OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL,
		                                  (void *)label_identity, sizeof(label_identity)),
		OSSL_PARAM_construct_end(),
	};
	unsigned char out[512];
	size_t n = sizeof(out);
	int r = 0;

	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek, NULL);
	if (!ctx || EVP_PKEY_decrypt_init_ex(ctx, params) != 1 ||
	    EVP_PKEY_decrypt(ctx, out, &n, c->secret + 2, c->secret_len - 2) != 1) {
		/* A TPM answers TPM_RC_VALUE here (Part 3 §12.5). */
		r = kl_error_set_ssl(KL_E_CRYPTO,
		                     "credential: the secret does not decrypt with this EK");
	} else if (n == 0 || n > p->digest_len) {
		r = kl_error_set(KL_E_CRYPTO, "credential: seed of %zu bytes", n);
	} else {
		memcpy(k->seed, out, n);
		k->seed_len = n;
	}
	OPENSSL_cleanse(out, sizeof(out));
	return r;
}

/* An EC public key from a TPMS_ECC_POINT's coordinates. */
static int ec_pub_from_point(const struct ek_params *p, const unsigned char *x, size_t x_len,
                             const unsigned char *y, size_t y_len, EVP_PKEY **ret)
{
	_cleanup_(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
	unsigned char point[1 + 2 * FIELD_MAX];
	const size_t f = p->field;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)p->curve, 0),
		OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * f),
		OSSL_PARAM_construct_end(),
	};

	memset(point, 0, sizeof(point));
	point[0] = 0x04;
	memcpy(point + 1 + f - x_len, x, x_len);
	memcpy(point + 1 + 2 * f - y_len, y, y_len);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, ret, EVP_PKEY_PUBLIC_KEY, params) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "credential: the secret is not a point on %s",
		                        p->curve);
	return 0;
}

/* The TPM's side of §C.6.4: partyUInfo is QeU.x exactly as it came in the
 * secret (tpm2-tools sends it without leading zeros), partyVInfo the EK's
 * own x, padded to the field size as in the EK's public area. */
static int unseed_ecc(EVP_PKEY *ek, const struct ek_params *p, const kl_credential *c,
                      struct id_keys *k)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *eph = NULL;
	const unsigned char *s = c->secret + 2;
	const size_t len = c->secret_len - 2, f = p->field;
	unsigned char kx[FIELD_MAX], ky[FIELD_MAX], z[FIELD_MAX];
	size_t x_len, y_len;
	int r;

	if (len < 4 || (x_len = get16(s)) == 0 || x_len > f || 2 + x_len + 2 > len ||
	    (y_len = get16(s + 2 + x_len)) == 0 || y_len > f || 4 + x_len + y_len != len)
		return kl_error_set(
		    KL_E_INVALID, "credential: the secret is not a TPMS_ECC_POINT on %s", p->curve);
	r = ec_pub_from_point(p, s + 2, x_len, s + 4 + x_len, y_len, &eph);
	if (r == 0)
		r = ec_point(ek, p, kx, ky);
	if (r == 0)
		r = ecdh(ek, eph, p, z);
	if (r == 0) {
		k->seed_len = p->digest_len;
		r = kl_kdfe(p->md, z, f, label_identity, s + 2, x_len, kx, f, k->seed, k->seed_len);
	}
	OPENSSL_cleanse(z, sizeof(z));
	return r;
}

int kl_activate_credential_soft(EVP_PKEY *ek_priv, kl_ek_type type, const kl_tpm_name *name,
                                const kl_credential *c, kl_secret **ret)
{
	const struct ek_params *p = NULL;
	struct id_keys k;
	unsigned char mac[DIGEST_MAX], plain[PLAIN_MAX];
	const unsigned char *enc;
	size_t enc_len, cred_len;
	int r;

	r = check_ek(ek_priv, type, &p);
	if (r < 0)
		return r;
	r = check_name(name);
	if (r < 0)
		return r;
	if (!c)
		return kl_error_set(KL_E_INVALID, "credential: none given");
	r = check_tpm2b("credentialBlob", c->blob, c->blob_len, BLOB_MAX);
	if (r < 0)
		return r;
	r = check_tpm2b("secret", c->secret, c->secret_len, SECRET_MAX);
	if (r < 0)
		return r;
	/* credentialBlob = TPM2B_DIGEST(outerHMAC) || encIdentity, where
	 * encIdentity holds at least a TPM2B size. */
	if (c->blob_len < 4 || get16(c->blob + 2) != p->digest_len ||
	    c->blob_len < 4 + p->digest_len + 2 || c->blob_len > 4 + p->digest_len + PLAIN_MAX)
		return kl_error_set(KL_E_INVALID,
		                    "credential: credentialBlob of %zu bytes does not fit EK %s",
		                    c->blob_len, kl_ek_type_name(type));
	enc = c->blob + 4 + p->digest_len;
	enc_len = c->blob_len - 4 - p->digest_len;

	memset(&k, 0, sizeof(k));
	if (p->curve_nid == NID_undef)
		r = unseed_rsa(ek_priv, p, c, &k);
	else
		r = unseed_ecc(ek_priv, p, c, &k);
	if (r < 0)
		goto out;
	r = derive_keys(p, name, &k);
	if (r < 0)
		goto out;

	/* Part 1 §24.5: integrity first, in constant time; only then decrypt. */
	r = outer_hmac(p, &k, enc, enc_len, name, mac);
	if (r < 0)
		goto out;
	if (CRYPTO_memcmp(mac, c->blob + 4, p->digest_len) != 0) {
		r = kl_error_set(KL_E_CRYPTO, "credential: integrity check failed (made for "
		                              "another EK or another object, or altered)");
		goto out;
	}
	r = aes_cfb(p, k.sym, 0, enc, enc_len, plain);
	if (r < 0)
		goto out;
	cred_len = get16(plain);
	if (cred_len != enc_len - 2 || cred_len > p->digest_len) {
		r = kl_error_set(KL_E_INVALID,
		                 "credential: encIdentity holds a TPM2B of %zu "
		                 "bytes in %zu",
		                 cred_len, enc_len - 2);
		goto out;
	}
	r = kl_secret_from_bytes(plain + 2, cred_len, ret);
out:
	id_keys_wipe(&k);
	OPENSSL_cleanse(plain, sizeof(plain));
	return r;
}
