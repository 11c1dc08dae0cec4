/* Building a certificate from a profile and a request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca_internal.h"
#include "der.h"
#include "devid.h"
#include "kl_cleanup.h"
#include "kl_error.h"

#define SERIAL_BYTES 16 /* 127 random bits once the top bit is cleared */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return kl_error_set_ssl(KL_E_CRYPTO, "extension %s = %s", OBJ_nid2sn(nid), value);
	if (!X509_add_ext(x, ext, -1)) {
		X509_EXTENSION_free(ext);
		return kl_error_set_ssl(KL_E_CRYPTO, "add extension %s", OBJ_nid2sn(nid));
	}
	X509_EXTENSION_free(ext);
	return 0;
}

/* An otherName GeneralName of type type_oid whose value is the SEQUENCE
 * d holds (its complete DER). */
static int other_name(const char *type_oid, const kl_der *d, GENERAL_NAME **ret)
{
	ASN1_STRING *seq = ASN1_STRING_type_new(V_ASN1_SEQUENCE);
	ASN1_TYPE *val = ASN1_TYPE_new();
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_OBJECT *type = OBJ_txt2obj(type_oid, 1);
	int r;

	if (d->failed || !seq || !val || !g || !type || !ASN1_STRING_set(seq, d->p, (int)d->len)) {
		r = kl_error_set(KL_E_NOMEM, "otherName %s: out of memory", type_oid);
		goto out;
	}
	ASN1_TYPE_set(val, V_ASN1_SEQUENCE, seq);
	seq = NULL; /* transferred */
	if (!GENERAL_NAME_set0_othername(g, type, val)) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "otherName %s", type_oid);
		goto out;
	}
	type = NULL; /* transferred */
	val = NULL;
	*ret = g;
	g = NULL;
	r = 0;
out:
	ASN1_OBJECT_free(type);
	GENERAL_NAME_free(g);
	ASN1_TYPE_free(val);
	ASN1_STRING_free(seq);
	return r;
}

/* An OID's DER (tag, length, value) in *der (OPENSSL_free it). */
static int oid_der(const char *text, unsigned char **der, int *len)
{
	ASN1_OBJECT *o = OBJ_txt2obj(text, 1);

	*der = NULL;
	*len = o ? i2d_ASN1_OBJECT(o, der) : 0;
	ASN1_OBJECT_free(o);
	if (*len <= 0)
		return kl_error_set_ssl(KL_E_INVALID, "'%s' is not an OID", text);
	return 0;
}

/* HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER,
 *                                    hwSerialNum OCTET STRING }  (RFC 4108 §5)
 * as an otherName (id-on-hardwareModuleName, 1.3.6.1.5.5.7.8.4). */
static int hwmn_name(const char *hw_type, const char *hw_serial, GENERAL_NAME **ret)
{
	unsigned char *oid = NULL;
	size_t slen = strlen(hw_serial);
	kl_der d = { 0 };
	int olen, r;

	if ((r = oid_der(hw_type, &oid, &olen)) < 0)
		return r;
	kl_der_put_hdr(&d, KL_DER_SEQUENCE, (size_t)olen + kl_der_hdr_size(slen) + slen);
	kl_der_put(&d, oid, (size_t)olen);
	kl_der_put_tlv(&d, KL_DER_OCTET_STRING, hw_serial, slen);
	r = other_name(KL_DEVID_OID_HWMN, &d, ret);
	OPENSSL_free(oid);
	kl_der_free(&d);
	return r;
}

/* PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL,
 *                                    assigner OBJECT IDENTIFIER OPTIONAL }
 * (RFC 4043) as an otherName (id-on-permanentIdentifier, 1.3.6.1.5.5.7.8.3). */
static int perm_id_name(const char *value, const char *assigner, GENERAL_NAME **ret)
{
	unsigned char *oid = NULL;
	size_t vlen = strlen(value);
	kl_der d = { 0 };
	int olen, r;

	if ((r = oid_der(assigner, &oid, &olen)) < 0)
		return r;
	kl_der_put_hdr(&d, KL_DER_SEQUENCE, kl_der_hdr_size(vlen) + vlen + (size_t)olen);
	kl_der_put_tlv(&d, V_ASN1_UTF8STRING, value, vlen);
	kl_der_put(&d, oid, (size_t)olen);
	r = other_name(KL_DEVID_OID_PERM_ID, &d, ret);
	OPENSSL_free(oid);
	kl_der_free(&d);
	return r;
}

static int add_san(X509 *x, const kl_profile *p, const kl_cert_request *req)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	const char *hw_serial = req->hw_serial;
	bool empty_subject;
	int r = 0;

	if (!gens)
		return kl_error_set(KL_E_NOMEM, "SAN: out of memory");
	/* The TCG rule names the TPM, never the device: no fallback. */
	if (!hw_serial && !p->hw_serial_tpm && p->hwmn_required)
		hw_serial = req->serial_number;
	if (hw_serial) {
		GENERAL_NAME *g = NULL;

		r = hwmn_name(p->hw_type, hw_serial, &g);
		if (r == 0)
			sk_GENERAL_NAME_push(gens, g);
	}
	if (r == 0 && req->permanent_id && req->permanent_id[0]) {
		GENERAL_NAME *g = NULL;

		r = perm_id_name(req->permanent_id, p->perm_id_assigner, &g);
		if (r == 0)
			sk_GENERAL_NAME_push(gens, g);
	}
	if (r == 0 && p->dns_from_cn && req->cn) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

		if (!g || !ia5 || !ASN1_STRING_set(ia5, req->cn, -1)) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(ia5);
			r = kl_error_set(KL_E_NOMEM, "SAN: out of memory");
		} else {
			GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
			sk_GENERAL_NAME_push(gens, g);
		}
	}
	/* RFC 5280 §4.2.1.6: critical when the subject is empty. */
	empty_subject = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;
	if (r == 0 && sk_GENERAL_NAME_num(gens) > 0 &&
	    !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, empty_subject ? 1 : 0,
	                       X509V3_ADD_DEFAULT))
		r = kl_error_set_ssl(KL_E_CRYPTO, "add subjectAltName");
	GENERAL_NAMES_free(gens);
	return r;
}

/* certificatePolicies (RFC 5280 §4.2.1.4): the profile's policy OIDs, each
 * with the CA's CPS URI qualifier (id-qt-cps) when one is configured. */
static int add_policies(X509 *x, const kl_profile *p, const char *cps)
{
	CERTIFICATEPOLICIES *cp = sk_POLICYINFO_new_null();
	int r = 0;

	if (!cp)
		return kl_error_set(KL_E_NOMEM, "policies: out of memory");
	for (int i = 0; r == 0 && i < p->n_policies; i++) {
		POLICYINFO *pi = POLICYINFO_new();
		POLICYQUALINFO *q = NULL;

		if (!pi || !(pi->policyid = OBJ_txt2obj(p->policies[i], 1)) ||
		    !sk_POLICYINFO_push(cp, pi)) {
			POLICYINFO_free(pi);
			r = kl_error_set_ssl(KL_E_CRYPTO, "policy %s", p->policies[i]);
			break;
		}
		if (!cps || !cps[0])
			continue;
		if (!(pi->qualifiers = sk_POLICYQUALINFO_new_null()) ||
		    !(q = POLICYQUALINFO_new()) || !(q->pqualid = OBJ_nid2obj(NID_id_qt_cps)) ||
		    !(q->d.cpsuri = ASN1_IA5STRING_new()) ||
		    !ASN1_STRING_set(q->d.cpsuri, cps, -1) ||
		    !sk_POLICYQUALINFO_push(pi->qualifiers, q)) {
			POLICYQUALINFO_free(q);
			r = kl_error_set_ssl(KL_E_CRYPTO, "policy %s: CPS qualifier",
			                     p->policies[i]);
		}
	}
	if (r == 0 && !X509_add1_ext_i2d(x, NID_certificate_policies, cp, 0, X509V3_ADD_DEFAULT))
		r = kl_error_set_ssl(KL_E_CRYPTO, "add certificatePolicies");
	sk_POLICYINFO_pop_free(cp, POLICYINFO_free);
	return r;
}

/* authorityInfoAccess (RFC 5280 §4.2.2.1, non-critical): caIssuers, then
 * OCSP when a responder is configured. */
static int add_aia(X509 *x, const char *ca_issuers, const char *ocsp)
{
	AUTHORITY_INFO_ACCESS *aia = sk_ACCESS_DESCRIPTION_new_null();
	const struct {
		int nid;
		const char *uri;
	} items[] = { { NID_ad_ca_issuers, ca_issuers }, { NID_ad_OCSP, ocsp } };
	int r = 0;

	if (!aia)
		return kl_error_set(KL_E_NOMEM, "authorityInfoAccess: out of memory");
	for (size_t i = 0; r == 0 && i < sizeof(items) / sizeof(items[0]); i++) {
		ACCESS_DESCRIPTION *ad;
		ASN1_IA5STRING *ia5;

		if (!items[i].uri || !items[i].uri[0])
			continue;
		ad = ACCESS_DESCRIPTION_new();
		ia5 = ASN1_IA5STRING_new();
		if (!ad || !ia5 || !ASN1_STRING_set(ia5, items[i].uri, -1)) {
			ACCESS_DESCRIPTION_free(ad);
			ASN1_IA5STRING_free(ia5);
			r = kl_error_set(KL_E_NOMEM, "authorityInfoAccess: out of memory");
			break;
		}
		ASN1_OBJECT_free(ad->method);
		ad->method = OBJ_nid2obj(items[i].nid);
		GENERAL_NAME_set0_value(ad->location, GEN_URI, ia5);
		if (!sk_ACCESS_DESCRIPTION_push(aia, ad)) {
			ACCESS_DESCRIPTION_free(ad);
			r = kl_error_set(KL_E_NOMEM, "authorityInfoAccess: out of memory");
		}
	}
	if (r == 0 && sk_ACCESS_DESCRIPTION_num(aia) > 0 &&
	    !X509_add1_ext_i2d(x, NID_info_access, aia, 0, X509V3_ADD_DEFAULT))
		r = kl_error_set_ssl(KL_E_CRYPTO, "add authorityInfoAccess");
	AUTHORITY_INFO_ACCESS_free(aia);
	return r;
}

static int set_name(X509_NAME *n, int nid, int type, const char *v)
{
	if (!v)
		return 0;
	if (!X509_NAME_add_entry_by_NID(n, nid, type, (const unsigned char *)v, -1, -1, 0))
		return kl_error_set_ssl(KL_E_INVALID, "subject %s '%s'", OBJ_nid2sn(nid), v);
	return 0;
}

static int random_serial(ASN1_INTEGER **ret)
{
	unsigned char buf[SERIAL_BYTES];
	BIGNUM *bn;

	/* RFC 5280 §4.1.2.2 positive and ≤ 20 octets; CA/B BR §7.1 at least 64
	 * bits from a CSPRNG. The top bit is cleared so that the DER encoding
	 * needs no leading zero, and the first byte made non-zero so the length
	 * is constant. */
	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "random serial");
	buf[0] &= 0x7f;
	buf[0] |= 0x01;
	bn = BN_bin2bn(buf, sizeof(buf), NULL);
	*ret = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
	BN_free(bn);
	return *ret ? 0 : kl_error_set_ssl(KL_E_CRYPTO, "random serial");
}

/* Puts the subject's SubjectPublicKeyInfo into the certificate from the key's
 * raw parameters. X509_set_pubkey would do the same through OpenSSL 3.0's
 * encoder and decoder frameworks, which cost more than the HSM signature. */
static int set_spki(X509 *x, EVP_PKEY *k)
{
	X509_PUBKEY *spki = X509_get_X509_PUBKEY(x);
	unsigned char *bits = NULL;
	size_t len = 0;

	if (EVP_PKEY_is_a(k, "EC")) {
		char group[32];
		int nid;

		if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                    sizeof(group), NULL))
			return kl_error_set_ssl(KL_E_INVALID, "EC key without a named curve");
		nid = OBJ_txt2nid(group);
		if (nid == NID_undef)
			nid = EC_curve_nist2nid(group);
		if (nid == NID_undef ||
		    !EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0,
		                                     &len) ||
		    !(bits = OPENSSL_malloc(len)) ||
		    !EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, bits,
		                                     len, &len)) {
			OPENSSL_free(bits);
			return kl_error_set_ssl(KL_E_INVALID, "EC public key (curve %s)", group);
		}
		if (!X509_PUBKEY_set0_param(spki, OBJ_nid2obj(NID_X9_62_id_ecPublicKey),
		                            V_ASN1_OBJECT, OBJ_nid2obj(nid), bits, (int)len)) {
			OPENSSL_free(bits);
			return kl_error_set_ssl(KL_E_CRYPTO, "subject public key");
		}
		return 0;
	}
	if (EVP_PKEY_is_a(k, "RSA")) {
		/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } */
		BIGNUM *n = NULL, *e = NULL;
		unsigned char *nb = NULL, *eb = NULL;
		kl_der d = { 0 };
		int nl = 0, el = 0, r = 0;

		if (!EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) ||
		    !(nb = OPENSSL_malloc((size_t)BN_num_bytes(n) + 1)) ||
		    !(eb = OPENSSL_malloc((size_t)BN_num_bytes(e) + 1))) {
			r = kl_error_set_ssl(KL_E_INVALID, "RSA public key");
		} else {
			kl_der inner = { 0 };

			nl = BN_bn2bin(n, nb);
			el = BN_bn2bin(e, eb);
			kl_der_put_uint(&inner, nb, (size_t)nl);
			kl_der_put_uint(&inner, eb, (size_t)el);
			kl_der_put_hdr(&d, KL_DER_SEQUENCE, inner.len);
			kl_der_put(&d, inner.p, inner.len);
			if (inner.failed || d.failed || !(bits = OPENSSL_memdup(d.p, d.len)) ||
			    !X509_PUBKEY_set0_param(spki, OBJ_nid2obj(NID_rsaEncryption),
			                            V_ASN1_NULL, NULL, bits, (int)d.len)) {
				OPENSSL_free(bits);
				r = kl_error_set_ssl(KL_E_CRYPTO, "subject public key");
			}
			kl_der_free(&inner);
		}
		kl_der_free(&d);
		BN_free(n);
		BN_free(e);
		OPENSSL_free(nb);
		OPENSSL_free(eb);
		return r;
	}
	if (!X509_set_pubkey(x, k))
		return kl_error_set_ssl(KL_E_CRYPTO, "subject public key");
	return 0;
}

const EVP_MD *kl_profile_md(const kl_profile *p)
{
	return EVP_get_digestbyname(p->digest);
}

/* Fills in the signature AlgorithmIdentifier of the TBSCertificate before
 * signing, so that the TBS bytes stored as PENDING are exactly the bytes the
 * HSM signs. X509_sign writes the same values again. */
int kl_cert_set_sigalg(X509 *x, EVP_PKEY *key, const EVP_MD *md)
{
	X509_ALGOR *alg = (X509_ALGOR *)X509_get0_tbs_sigalg(x);
	int nid = NID_undef;

	if (!OBJ_find_sigid_by_algs(&nid, EVP_MD_get_type(md), EVP_PKEY_get_base_id(key)))
		return kl_error_set(KL_E_UNSUPPORTED, "no signature algorithm for %s with %s",
		                    EVP_MD_get0_name(md), EVP_PKEY_get0_type_name(key));
	/* RSA PKCS#1 v1.5 carries NULL parameters; ECDSA none (RFC 5758 §3.2). */
	if (!X509_ALGOR_set0(alg, OBJ_nid2obj(nid),
	                     EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF,
	                     NULL))
		return kl_error_set_ssl(KL_E_CRYPTO, "signature algorithm");
	return 0;
}

int kl_cert_build(X509 *issuer, const kl_ca_urls *urls, const kl_profile *p,
                  const kl_cert_request *req, X509 **ret)
{
	_cleanup_(X509_freep) X509 *x = X509_new();
	ASN1_INTEGER *serial = NULL;
	X509_NAME *subj;
	time_t now = time(NULL);
	char value[700];
	int r;

	if (!x)
		return kl_error_set(KL_E_NOMEM, "certificate: out of memory");
	if (!X509_set_version(x, X509_VERSION_3))
		return kl_error_set_ssl(KL_E_CRYPTO, "version");
	r = random_serial(&serial);
	if (r < 0)
		return r;
	X509_set_serialNumber(x, serial);
	ASN1_INTEGER_free(serial);
	if (!X509_set_issuer_name(x, X509_get_subject_name(issuer)))
		return kl_error_set_ssl(KL_E_CRYPTO, "issuer name");
	if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, 0, &now))
		return kl_error_set_ssl(KL_E_CRYPTO, "notBefore");
	if (p->validity_days > 0) {
		if (!X509_time_adj_ex(X509_getm_notAfter(x), p->validity_days, 0, &now))
			return kl_error_set_ssl(KL_E_CRYPTO, "notAfter");
	} else if (!ASN1_TIME_set_string_X509(X509_getm_notAfter(x), p->not_after)) {
		return kl_error_set_ssl(KL_E_CRYPTO, "notAfter");
	}

	subj = X509_get_subject_name(x);
	if ((r = set_name(subj, NID_countryName, MBSTRING_ASC, req->c)) < 0 ||
	    (r = set_name(subj, NID_organizationName, MBSTRING_UTF8, req->o)) < 0 ||
	    (r = set_name(subj, NID_organizationalUnitName, MBSTRING_UTF8, req->ou)) < 0 ||
	    (r = set_name(subj, NID_commonName, MBSTRING_UTF8, req->cn)) < 0 ||
	    (r = set_name(subj, NID_serialNumber, V_ASN1_PRINTABLESTRING, req->serial_number)) < 0)
		return r;
	if ((r = set_spki(x, req->pubkey)) < 0)
		return r;

	if ((r = add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE")) < 0)
		return r;
	value[0] = '\0';
	static const struct {
		unsigned bit;
		const char *name;
	} kus[] = {
		{ X509v3_KU_DIGITAL_SIGNATURE, "digitalSignature" },
		{ X509v3_KU_NON_REPUDIATION, "nonRepudiation" },
		{ X509v3_KU_KEY_ENCIPHERMENT, "keyEncipherment" },
		{ X509v3_KU_DATA_ENCIPHERMENT, "dataEncipherment" },
		{ X509v3_KU_KEY_AGREEMENT, "keyAgreement" },
	};
	snprintf(value, sizeof(value), "critical");
	for (size_t i = 0; i < sizeof(kus) / sizeof(kus[0]); i++)
		if (p->key_usage & kus[i].bit)
			snprintf(value + strlen(value), sizeof(value) - strlen(value), ",%s",
			         kus[i].name);
	if ((r = add_ext(x, issuer, NID_key_usage, value)) < 0)
		return r;
	if (p->n_eku > 0) {
		value[0] = '\0';
		for (int i = 0; i < p->n_eku; i++)
			snprintf(value + strlen(value), sizeof(value) - strlen(value), "%s%s",
			         i ? "," : "", p->eku[i]);
		if ((r = add_ext(x, issuer, NID_ext_key_usage, value)) < 0)
			return r;
	}
	if ((r = add_ext(x, issuer, NID_subject_key_identifier, "hash")) < 0 ||
	    (r = add_ext(x, issuer, NID_authority_key_identifier, "keyid:always")) < 0)
		return r;
	if (p->n_policies > 0 && (r = add_policies(x, p, urls->cps)) < 0)
		return r;
	if (p->aia_required && (r = add_aia(x, urls->ca_issuers, urls->ocsp)) < 0)
		return r;
	if (p->crl_dp && urls->crl && urls->crl[0]) {
		snprintf(value, sizeof(value), "URI:%s", urls->crl);
		if ((r = add_ext(x, issuer, NID_crl_distribution_points, value)) < 0)
			return r;
	}
	if ((r = add_san(x, p, req)) < 0)
		return r;
	*ret = TAKE_PTR(x);
	return 0;
}

int kl_cert_tbs_der(X509 *x, unsigned char **der, size_t *len)
{
	unsigned char *buf = NULL;
	int n = i2d_re_X509_tbs(x, &buf);

	if (n <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode TBSCertificate");
	*der = buf;
	*len = (size_t)n;
	return 0;
}

void kl_cert_subject_line(const X509 *x, char *buf, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n;

	buf[0] = '\0';
	if (!b)
		return;
	X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
	n = BIO_read(b, buf, (int)size - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}
