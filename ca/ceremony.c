/* CA certificates for the key ceremony: a self-signed root, an issuing CA
 * signed by a root, and a CSR for an issuing CA under an external root. The
 * keys are EVP_PKEYs; in production they are HSM keys through libp11. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ceremony.h"
#include "kl_cleanup.h"
#include "kl_error.h"

static int ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e || !X509_add_ext(x, e, -1)) {
		X509_EXTENSION_free(e);
		return kl_error_set_ssl(KL_E_CRYPTO, "extension %s", OBJ_nid2sn(nid));
	}
	X509_EXTENSION_free(e);
	return 0;
}

int kl_ceremony_name(const char *cn, const char *o, const char *c, X509_NAME **ret)
{
	X509_NAME *n = X509_NAME_new();

	if (!n)
		return kl_error_set(KL_E_NOMEM, "name: out of memory");
	if ((c && *c &&
	     !X509_NAME_add_entry_by_NID(n, NID_countryName, MBSTRING_ASC, (const unsigned char *)c,
	                                 -1, -1, 0)) ||
	    (o && *o &&
	     !X509_NAME_add_entry_by_NID(n, NID_organizationName, MBSTRING_UTF8,
	                                 (const unsigned char *)o, -1, -1, 0)) ||
	    !cn || !*cn ||
	    !X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
	                                -1, -1, 0)) {
		X509_NAME_free(n);
		return kl_error_set_ssl(KL_E_INVALID, "CA name (CN='%s', O='%s', C='%s')",
		                        cn ? cn : "", o ? o : "", c ? c : "");
	}
	*ret = n;
	return 0;
}

static const EVP_MD *md_for(EVP_PKEY *key)
{
	/* Match the digest to the key's strength (NIST SP 800-57). */
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC && EVP_PKEY_get_bits(key) > 256)
		return EVP_sha384();
	return EVP_sha256();
}

static int ca_cert(X509 *issuer_cert, EVP_PKEY *issuer_key, const X509_NAME *subject,
                   EVP_PKEY *subject_key, int days, int pathlen, X509 **ret)
{
	_cleanup_(X509_freep) X509 *x = X509_new();
	unsigned char rnd[16];
	BIGNUM *bn = NULL;
	time_t now = time(NULL);
	char bc[64];
	int r;

	if (!x)
		return kl_error_set(KL_E_NOMEM, "certificate: out of memory");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "serial");
	rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x01);
	bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_version(x, X509_VERSION_3) || !X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, issuer_cert ? X509_get_subject_name(issuer_cert) : subject) ||
	    !X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &now) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) ||
	    !X509_set_pubkey(x, subject_key)) {
		BN_free(bn);
		return kl_error_set_ssl(KL_E_CRYPTO, "CA certificate fields");
	}
	BN_free(bn);
	if (pathlen >= 0)
		snprintf(bc, sizeof(bc), "critical,CA:TRUE,pathlen:%d", pathlen);
	else
		snprintf(bc, sizeof(bc), "critical,CA:TRUE");
	if ((r = ext(x, issuer_cert, NID_basic_constraints, bc)) < 0 ||
	    (r = ext(x, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
	    (r = ext(x, issuer_cert, NID_subject_key_identifier, "hash")) < 0)
		return r;
	/* A self-signed root's AKI would name itself; RFC 5280 §4.2.1.1 allows
	 * leaving it out there, and OpenSSL's x509_strict accepts either. */
	if ((r = ext(x, issuer_cert, NID_authority_key_identifier, "keyid:always")) < 0)
		return r;
	if (X509_sign(x, issuer_key, md_for(issuer_key)) <= 0)
		return kl_error_set_ssl(KL_E_HSM, "sign CA certificate");
	if (X509_verify(x, issuer_cert ? X509_get0_pubkey(issuer_cert) : subject_key) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "CA certificate signature does not verify");
	*ret = TAKE_PTR(x);
	return 0;
}

int kl_ceremony_root(EVP_PKEY *key, const X509_NAME *subject, int days, X509 **ret)
{
	return ca_cert(NULL, key, subject, key, days, 1, ret);
}

int kl_ceremony_issuing(X509 *root, EVP_PKEY *root_key, const X509_NAME *subject,
                        EVP_PKEY *issuing_pub, int days, X509 **ret)
{
	if (X509_check_private_key(root, root_key) != 1 &&
	    EVP_PKEY_eq(X509_get0_pubkey(root), root_key) != 1)
		return kl_error_set(KL_E_CRYPTO,
		                    "the root key does not match the root certificate");
	return ca_cert(root, root_key, subject, issuing_pub, days, 0, ret);
}

int kl_ceremony_csr(EVP_PKEY *key, const X509_NAME *subject, X509_REQ **ret)
{
	X509_REQ *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *e1, *e2;
	int r = 0;

	e1 = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
	e2 = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (!req || !exts || !e1 || !e2 || !sk_X509_EXTENSION_push(exts, e1) ||
	    !sk_X509_EXTENSION_push(exts, e2)) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "CSR extensions");
		goto out;
	}
	e1 = e2 = NULL; /* transferred */
	if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
	    !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, key) ||
	    !X509_REQ_add_extensions(req, exts) || X509_REQ_sign(req, key, md_for(key)) <= 0) {
		r = kl_error_set_ssl(KL_E_HSM, "sign CSR");
		goto out;
	}
	*ret = req;
	req = NULL;
out:
	X509_EXTENSION_free(e1);
	X509_EXTENSION_free(e2);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return r;
}

int kl_ceremony_check_issuing(X509 *cert, EVP_PKEY *issuing_key, X509 *root)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	BASIC_CONSTRAINTS *bc = NULL;
	int r = 0;

	if (EVP_PKEY_eq(X509_get0_pubkey(cert), issuing_key) != 1) {
		r = kl_error_set(KL_E_CRYPTO,
		                 "the certificate is not for this CA's key (public keys differ)");
		goto out;
	}
	bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
	if (!bc || !bc->ca || !(X509_get_key_usage(cert) & X509v3_KU_KEY_CERT_SIGN)) {
		r = kl_error_set(
		    KL_E_INVALID,
		    "the certificate is not a CA certificate (basicConstraints CA:TRUE "
		    "and keyUsage keyCertSign are required)");
		goto out;
	}
	if (!store || !ctx || !X509_STORE_add_cert(store, root) ||
	    !X509_STORE_CTX_init(ctx, store, cert, NULL)) {
		r = kl_error_set_ssl(KL_E_NOMEM, "verify");
		goto out;
	}
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	if (X509_verify_cert(ctx) != 1)
		r = kl_error_set(KL_E_CRYPTO,
		                 "the certificate does not chain to the given root: %s",
		                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	BASIC_CONSTRAINTS_free(bc);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return r;
}
