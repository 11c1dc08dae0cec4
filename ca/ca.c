/* The issuing CA and its issuance pipeline. See ca.h for the order. */
#include "ca.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca_internal.h"
#include "der.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_failpoint.h"

#define CA_MAX_PROFILES 16
#define SERIAL_BYTES    16 /* 127 random bits once the top bit is cleared */

struct kl_ca {
	kl_store *store;
	int64_t issuer_id;
	X509 *cert;
	EVP_PKEY *key;
	char issuer_name[64];
	char profiles_dir[1024];
	char crl_url[512];
	char actor[128];
	kl_profile profiles[CA_MAX_PROFILES];
	int n_profiles;
	int reconciled;
};

static const char *const reason_names[] = {
	[0] = "unspecified",     [1] = "keyCompromise",
	[2] = "cACompromise",    [3] = "affiliationChanged",
	[4] = "superseded",      [5] = "cessationOfOperation",
	[6] = "certificateHold", [7] = NULL, /* unused, RFC 5280 §5.3.1 */
	[8] = "removeFromCRL",   [9] = "privilegeWithdrawn",
	[10] = "aACompromise",
};

int kl_crl_reason_from_name(const char *name)
{
	for (int i = 0; i < (int)(sizeof(reason_names) / sizeof(reason_names[0])); i++)
		if (reason_names[i] && strcasecmp(name, reason_names[i]) == 0)
			return i;
	return kl_error_set(KL_E_INVALID,
	                    "unknown revocation reason '%s' (unspecified, keyCompromise, "
	                    "cACompromise, affiliationChanged, superseded, cessationOfOperation, "
	                    "certificateHold, privilegeWithdrawn, aACompromise)",
	                    name);
}

const char *kl_crl_reason_name(int code)
{
	if (code < 0 || code >= (int)(sizeof(reason_names) / sizeof(reason_names[0])) ||
	    !reason_names[code])
		return "unknown";
	return reason_names[code];
}

int kl_serial_hex(const ASN1_INTEGER *serial, char *out, size_t size)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
	char *hex;
	size_t n;

	if (!bn)
		return kl_error_set_ssl(KL_E_CRYPTO, "serial");
	hex = BN_bn2hex(bn);
	BN_free(bn);
	if (!hex)
		return kl_error_set_ssl(KL_E_NOMEM, "serial");
	/* Canonical form: no leading zeros (BN_bn2hex pads to whole bytes). */
	const char *h = hex;
	while (h[0] == '0' && h[1])
		h++;
	n = strlen(h);
	if (n + 1 > size) {
		OPENSSL_free(hex);
		return kl_error_set(KL_E_INVALID, "serial too long");
	}
	for (size_t i = 0; i <= n; i++)
		out[i] = (char)tolower((unsigned char)h[i]);
	OPENSSL_free(hex);
	return 0;
}

/* Normalises user input: hex digits only, lowercase, no leading zeros. */
static int normalise_serial(const char *in, char *out, size_t size)
{
	size_t n = 0;

	if (strncmp(in, "0x", 2) == 0 || strncmp(in, "0X", 2) == 0)
		in += 2;
	while (*in == '0' && in[1])
		in++;
	for (; *in; in++) {
		if (*in == ':')
			continue;
		if (!isxdigit((unsigned char)*in) || n + 1 >= size)
			return kl_error_set(KL_E_INVALID, "bad serial number: want hex digits");
		out[n++] = (char)tolower((unsigned char)*in);
	}
	if (n == 0)
		return kl_error_set(KL_E_INVALID, "bad serial number: empty");
	out[n] = '\0';
	return 0;
}

static const kl_profile *profile_get(kl_ca *ca, const char *name)
{
	for (int i = 0; i < ca->n_profiles; i++)
		if (strcmp(ca->profiles[i].name, name) == 0)
			return &ca->profiles[i];
	if (ca->n_profiles == CA_MAX_PROFILES) {
		kl_error_set(KL_E_INVALID, "too many profiles in use");
		return NULL;
	}
	if (kl_profile_load(ca->profiles_dir, name, &ca->profiles[ca->n_profiles]) < 0)
		return NULL;
	return &ca->profiles[ca->n_profiles++];
}

int kl_ca_open(kl_store *store, const kl_ca_config *cfg, EVP_PKEY *sign_key, kl_ca **ret)
{
	kl_issuer_row row = { 0 };
	const unsigned char *p;
	kl_ca *ca;
	int r;

	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return kl_error_set(KL_E_NOMEM, "ca: out of memory");
	ca->store = store;
	snprintf(ca->issuer_name, sizeof(ca->issuer_name), "%s", cfg->issuer_name);
	snprintf(ca->profiles_dir, sizeof(ca->profiles_dir), "%s", cfg->profiles_dir);
	snprintf(ca->crl_url, sizeof(ca->crl_url), "%s", cfg->crl_url ? cfg->crl_url : "");
	snprintf(ca->actor, sizeof(ca->actor), "%s", cfg->actor ? cfg->actor : "ca");

	r = kl_store_issuer_get(store, cfg->issuer_name, &row);
	if (r < 0)
		goto fail;
	ca->issuer_id = row.id;
	p = row.cert_der;
	ca->cert = d2i_X509(NULL, &p, (long)row.cert_len);
	kl_issuer_row_clear(&row);
	if (!ca->cert) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "issuer '%s': stored certificate does not parse",
		                     cfg->issuer_name);
		goto fail;
	}
	/* The key must be the certificate's: otherwise every signature would
	 * fail verification after the HSM was used. */
	if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), sign_key) != 1) {
		r = kl_error_set(KL_E_CRYPTO,
		                 "issuer '%s': the signing key does not match the CA certificate",
		                 cfg->issuer_name);
		goto fail;
	}
	if (!EVP_PKEY_up_ref(sign_key)) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "key reference");
		goto fail;
	}
	ca->key = sign_key;
	r = kl_store_reconcile(store, ca->issuer_id, ca->actor);
	if (r < 0)
		goto fail;
	ca->reconciled = r;
	*ret = ca;
	return 0;
fail:
	kl_ca_free(ca);
	return r;
}

void kl_ca_free(kl_ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca);
}

const X509 *kl_ca_cert(const kl_ca *ca)
{
	return ca->cert;
}

int64_t kl_ca_issuer_id(const kl_ca *ca)
{
	return ca->issuer_id;
}

int kl_ca_reconciled(const kl_ca *ca)
{
	return ca->reconciled;
}

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

/* HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER,
 *                                    hwSerialNum OCTET STRING }  (RFC 4108 §5)
 * as an otherName (id-on-hardwareModuleName, 1.3.6.1.5.5.7.8.4). */
static int hwmn_name(const char *hw_type, const char *hw_serial, GENERAL_NAME **ret)
{
	ASN1_OBJECT *type = OBJ_txt2obj(hw_type, 1);
	unsigned char *oid = NULL;
	size_t slen = strlen(hw_serial);
	kl_der d = { 0 };
	ASN1_TYPE *val = NULL;
	ASN1_STRING *seq = NULL;
	GENERAL_NAME *g = NULL;
	int olen, r = -KL_E_CRYPTO;

	olen = type ? i2d_ASN1_OBJECT(type, &oid) : 0;
	if (olen <= 0) {
		r = kl_error_set_ssl(KL_E_INVALID, "hwType '%s' is not an OID", hw_type);
		goto out;
	}
	kl_der_put_hdr(&d, KL_DER_SEQUENCE, (size_t)olen + kl_der_hdr_size(slen) + slen);
	kl_der_put(&d, oid, (size_t)olen);
	kl_der_put_tlv(&d, KL_DER_OCTET_STRING, hw_serial, slen);
	seq = ASN1_STRING_type_new(V_ASN1_SEQUENCE);
	val = ASN1_TYPE_new();
	g = GENERAL_NAME_new();
	if (d.failed || !seq || !val || !g || !ASN1_STRING_set(seq, d.p, (int)d.len)) {
		r = kl_error_set(KL_E_NOMEM, "hardwareModuleName: out of memory");
		goto out;
	}
	ASN1_TYPE_set(val, V_ASN1_SEQUENCE, seq);
	seq = NULL; /* transferred */
	if (!GENERAL_NAME_set0_othername(g, OBJ_txt2obj("1.3.6.1.5.5.7.8.4", 1), val)) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "hardwareModuleName");
		goto out;
	}
	val = NULL; /* transferred */
	*ret = g;
	g = NULL;
	r = 0;
out:
	GENERAL_NAME_free(g);
	ASN1_TYPE_free(val);
	ASN1_STRING_free(seq);
	OPENSSL_free(oid);
	ASN1_OBJECT_free(type);
	kl_der_free(&d);
	return r;
}

static int add_san(X509 *x, const kl_profile *p, const kl_cert_request *req)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	const char *hw_serial = req->hw_serial ? req->hw_serial : req->serial_number;
	bool empty_subject;
	int r = 0;

	if (!gens)
		return kl_error_set(KL_E_NOMEM, "SAN: out of memory");
	if (hw_serial && (p->hwmn_required || req->hw_serial)) {
		GENERAL_NAME *g = NULL;

		r = hwmn_name(p->hw_type, hw_serial, &g);
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

/* certificatePolicies with bare policy OIDs (RFC 5280 §4.2.1.4). */
static int add_policies(X509 *x, const kl_profile *p)
{
	CERTIFICATEPOLICIES *cp = sk_POLICYINFO_new_null();
	int r = 0;

	if (!cp)
		return kl_error_set(KL_E_NOMEM, "policies: out of memory");
	for (int i = 0; r == 0 && i < p->n_policies; i++) {
		POLICYINFO *pi = POLICYINFO_new();

		if (!pi || !(pi->policyid = OBJ_txt2obj(p->policies[i], 1)) ||
		    !sk_POLICYINFO_push(cp, pi)) {
			POLICYINFO_free(pi);
			r = kl_error_set_ssl(KL_E_CRYPTO, "policy %s", p->policies[i]);
		}
	}
	if (r == 0 && !X509_add1_ext_i2d(x, NID_certificate_policies, cp, 0, X509V3_ADD_DEFAULT))
		r = kl_error_set_ssl(KL_E_CRYPTO, "add certificatePolicies");
	sk_POLICYINFO_pop_free(cp, POLICYINFO_free);
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

static const EVP_MD *profile_md(const kl_profile *p)
{
	return EVP_get_digestbyname(p->digest);
}

/* Fills in the signature AlgorithmIdentifier of the TBSCertificate before
 * signing, so that the TBS bytes stored as PENDING are exactly the bytes the
 * HSM signs. X509_sign writes the same values again. */
static int set_tbs_sigalg(X509 *x, EVP_PKEY *key, const EVP_MD *md)
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

static int build_cert(kl_ca *ca, const kl_profile *p, const kl_cert_request *req, X509 **ret)
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
	if (!X509_set_issuer_name(x, X509_get_subject_name(ca->cert)))
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
	if (!X509_set_pubkey(x, req->pubkey))
		return kl_error_set_ssl(KL_E_CRYPTO, "subject public key");

	if ((r = add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE")) < 0)
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
	if ((r = add_ext(x, ca->cert, NID_key_usage, value)) < 0)
		return r;
	if (p->n_eku > 0) {
		value[0] = '\0';
		for (int i = 0; i < p->n_eku; i++)
			snprintf(value + strlen(value), sizeof(value) - strlen(value), "%s%s",
			         i ? "," : "", p->eku[i]);
		if ((r = add_ext(x, ca->cert, NID_ext_key_usage, value)) < 0)
			return r;
	}
	if ((r = add_ext(x, ca->cert, NID_subject_key_identifier, "hash")) < 0 ||
	    (r = add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always")) < 0)
		return r;
	if (p->n_policies > 0 && (r = add_policies(x, p)) < 0)
		return r;
	if (p->crl_dp && ca->crl_url[0]) {
		snprintf(value, sizeof(value), "URI:%s", ca->crl_url);
		if ((r = add_ext(x, ca->cert, NID_crl_distribution_points, value)) < 0)
			return r;
	}
	if ((r = add_san(x, p, req)) < 0)
		return r;
	*ret = TAKE_PTR(x);
	return 0;
}

static int tbs_der(X509 *x, unsigned char **der, size_t *len)
{
	unsigned char *buf = NULL;
	int n = i2d_re_X509_tbs(x, &buf);

	if (n <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode TBSCertificate");
	*der = buf;
	*len = (size_t)n;
	return 0;
}

static void subject_line(const X509 *x, char *buf, size_t size)
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

static void fingerprint(const X509 *x, char *out, size_t size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (!X509_digest(x, EVP_sha256(), md, &n))
		return;
	for (unsigned i = 0; i < n && 2 * i + 2 < size; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Escapes a string for a JSON audit detail. */
static void json_str(char *out, size_t size, const char *in)
{
	size_t n = 0;

	for (; in && *in && n + 7 < size; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)c;
		} else if (c < 0x20) {
			n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
		} else {
			out[n++] = (char)c;
		}
	}
	out[n] = '\0';
}

int kl_ca_issue(kl_ca *ca, const kl_cert_request *req, X509 **ret, char *serial_hex)
{
	_cleanup_(X509_freep) X509 *x = NULL;
	_cleanup_(freep) unsigned char *tbs = NULL;
	unsigned char *signed_tbs = NULL, *der = NULL;
	size_t tbs_len = 0, signed_len = 0;
	const kl_profile *p;
	const EVP_MD *md;
	char serial[48], subject[512], esc_subject[600], detail[1400], fp[72], esc_why[600];
	const char *actor = req->actor ? req->actor : ca->actor;
	int r, der_len;

	if (!req->profile || !req->pubkey)
		return kl_error_set(KL_E_INVALID, "issue: a profile and a public key are required");
	p = profile_get(ca, req->profile);
	if (!p)
		return -(int)kl_error_code();
	md = profile_md(p);
	if (!md)
		return kl_error_set(KL_E_UNSUPPORTED, "digest %s", p->digest);

	/* 1-2: build, then reserve the serial with the intended TBS. A serial
	 * collision (2^-127 per pair) just draws again. */
	for (int attempt = 0;; attempt++) {
		X509_free(x);
		x = NULL;
		free(tbs);
		tbs = NULL;
		if ((r = build_cert(ca, p, req, &x)) < 0 ||
		    (r = set_tbs_sigalg(x, ca->key, md)) < 0 ||
		    (r = tbs_der(x, &tbs, &tbs_len)) < 0 ||
		    (r = kl_serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial))) < 0)
			return r;
		subject_line(x, subject, sizeof(subject));
		kl_cert_pending pend = {
			.issuer_id = ca->issuer_id,
			.serial = serial,
			.profile = p->name,
			.subject = subject,
			.device_serial = req->serial_number,
			.tbs = tbs,
			.tbs_len = tbs_len,
		};
		struct tm tm;
		ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
		pend.not_after = (int64_t)timegm(&tm);
		r = kl_store_cert_reserve(ca->store, &pend);
		if (r == -KL_E_EXISTS && attempt < 3)
			continue;
		if (r < 0)
			return kl_error_wrap("reserve serial");
		break;
	}
	json_str(esc_subject, sizeof(esc_subject), subject);
	kl_failpoint("ca.after_pending");

	/* 3: lint. */
	r = kl_lint_cert(x, p, ca->cert);
	if (r < 0) {
		char why[KL_ERROR_DETAIL_MAX];

		snprintf(why, sizeof(why), "%s", kl_error_detail());
		json_str(esc_why, sizeof(esc_why), why);
		snprintf(
		    detail, sizeof(detail),
		    "{\"serial\":\"%s\",\"profile\":\"%s\",\"subject\":\"%s\",\"reason\":\"%s\"}",
		    serial, p->name, esc_subject, esc_why);
		if (kl_store_begin(ca->store) == 0) {
			if (kl_store_cert_rejected(ca->store, ca->issuer_id, serial, why) < 0 ||
			    kl_store_audit(ca->store, actor, "ca.reject", detail) < 0)
				kl_store_rollback(ca->store);
			else
				kl_store_commit(ca->store);
		}
		return kl_error_set(KL_E_INVALID, "certificate refused, nothing signed: %s", why);
	}

	/* 4: sign in the HSM. */
	if (X509_sign(x, ca->key, md) <= 0)
		return kl_error_set_ssl(KL_E_HSM, "sign certificate %s", serial);

	/* 5: the signature verifies with the CA certificate's key, and the
	 * signed TBS is exactly what was stored as pending. */
	if (X509_verify(x, X509_get0_pubkey(ca->cert)) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO,
		                        "certificate %s: signature does not verify with the CA "
		                        "certificate (HSM key mismatch or fault); not issued",
		                        serial);
	r = tbs_der(x, &signed_tbs, &signed_len);
	if (r < 0)
		return r;
	if (signed_len != tbs_len || CRYPTO_memcmp(signed_tbs, tbs, tbs_len) != 0) {
		OPENSSL_free(signed_tbs);
		return kl_error_set(
		    KL_E_CRYPTO,
		    "certificate %s: signed TBSCertificate differs from the pending one", serial);
	}
	OPENSSL_free(signed_tbs);
	kl_failpoint("ca.after_sign");

	/* 6: ISSUED with the certificate and its audit entry, one commit. */
	der_len = i2d_X509(x, &der);
	if (der_len <= 0)
		return kl_error_set_ssl(KL_E_CRYPTO, "encode certificate");
	fingerprint(x, fp, sizeof(fp));
	snprintf(detail, sizeof(detail),
	         "{\"serial\":\"%s\",\"profile\":\"%s\",\"subject\":\"%s\",\"sha256\":\"%s\"}",
	         serial, p->name, esc_subject, fp);
	r = kl_store_begin(ca->store);
	if (r == 0) {
		r = kl_store_cert_issued(ca->store, ca->issuer_id, serial, der, (size_t)der_len);
		if (r == 0)
			r = kl_store_audit(ca->store, actor, "ca.issue", detail);
		if (r < 0)
			kl_store_rollback(ca->store);
		else
			r = kl_store_commit(ca->store);
	}
	if (r < 0) {
		OPENSSL_free(der);
		return kl_error_wrap("record certificate %s", serial);
	}
	/* Hand back the certificate as stored, freshly decoded: the object we
	 * built carries OpenSSL's extension cache from before it was complete. */
	const unsigned char *q = der;
	X509 *out = d2i_X509(NULL, &q, der_len);
	OPENSSL_free(der);
	if (!out)
		return kl_error_set_ssl(KL_E_NOMEM, "decode issued certificate %s", serial);
	if (serial_hex)
		memcpy(serial_hex, serial, strlen(serial) + 1);
	*ret = out;
	return 0;
}

static const char *name_text(const X509_NAME *n, int nid, char *buf, size_t size)
{
	int len = X509_NAME_get_text_by_NID(n, nid, buf, (int)size);

	return len > 0 ? buf : NULL;
}

int kl_ca_issue_csr(kl_ca *ca, X509_REQ *csr, const char *profile, const char *actor, X509 **ret,
                    char *serial_hex)
{
	char cn[128], o[128], ou[128], c[8], sn[128];
	const X509_NAME *n;
	EVP_PKEY *pub;

	pub = X509_REQ_get0_pubkey(csr);
	if (!pub)
		return kl_error_set_ssl(KL_E_INVALID, "CSR has no usable public key");
	/* Proof of possession: the request is signed by its own key. */
	if (X509_REQ_verify(csr, pub) != 1)
		return kl_error_set_ssl(KL_E_CRYPTO, "CSR signature does not verify");
	n = X509_REQ_get_subject_name(csr);
	kl_cert_request req = {
		.profile = profile,
		.pubkey = pub,
		.serial_number = name_text(n, NID_serialNumber, sn, sizeof(sn)),
		.cn = name_text(n, NID_commonName, cn, sizeof(cn)),
		.o = name_text(n, NID_organizationName, o, sizeof(o)),
		.ou = name_text(n, NID_organizationalUnitName, ou, sizeof(ou)),
		.c = name_text(n, NID_countryName, c, sizeof(c)),
		.actor = actor,
	};
	return kl_ca_issue(ca, &req, ret, serial_hex);
}

int kl_ca_revoke(kl_ca *ca, const char *serial_in, int reason, const char *actor)
{
	char serial[48], detail[256];
	int r;

	if (reason < 0 || reason > 10 || reason == 7 || reason == 8)
		return kl_error_set(KL_E_INVALID, "revocation reason %d is not usable", reason);
	r = normalise_serial(serial_in, serial, sizeof(serial));
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "{\"serial\":\"%s\",\"reason\":\"%s\"}", serial,
	         kl_crl_reason_name(reason));
	r = kl_store_begin(ca->store);
	if (r < 0)
		return r;
	r = kl_store_cert_revoke(ca->store, ca->issuer_id, serial, reason, (int64_t)time(NULL));
	if (r == 0)
		r = kl_store_audit(ca->store, actor ? actor : ca->actor, "ca.revoke", detail);
	if (r < 0) {
		kl_store_rollback(ca->store);
		return r;
	}
	return kl_store_commit(ca->store);
}

int kl_ca_crl(kl_ca *ca, int64_t next_update_s, const char *actor, unsigned char **der, size_t *len)
{
	const EVP_MD *md =
	    EVP_PKEY_get_base_id(ca->key) == EVP_PKEY_EC && EVP_PKEY_get_bits(ca->key) > 256
	        ? EVP_sha384()
	        : EVP_sha256();
	int64_t number = 0, count = 0;
	char detail[160];
	int r;

	if (next_update_s <= 0 || next_update_s > 366LL * 86400)
		return kl_error_set(KL_E_INVALID, "nextUpdate must be 1 second to 366 days ahead");
	/* The CRL number is burned before signing: numbers only grow, even if
	 * this CRL is never published (RFC 5280 §5.2.3). */
	r = kl_store_issuer_next_crl_number(ca->store, ca->issuer_id, &number);
	if (r < 0)
		return r;
	r = kl_crl_build(ca->store, ca->issuer_id, ca->cert, ca->key, md, number, time(NULL),
	                 next_update_s, der, len, &count);
	if (r < 0)
		return r;
	snprintf(detail, sizeof(detail), "{\"crl_number\":%lld,\"entries\":%lld,\"bytes\":%zu}",
	         (long long)number, (long long)count, *len);
	r = kl_store_audit(ca->store, actor ? actor : ca->actor, "ca.crl", detail);
	if (r < 0) {
		free(*der);
		*der = NULL;
		return r;
	}
	return 0;
}
