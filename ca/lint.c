/* The certificate linter: RFC 5280 essentials and the profile's rules.
 * Runs on the unsigned certificate; a failure means it is never signed.
 * Each failure names its rule so that an officer can look it up in
 * docs/ca.md. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "devid.h"
#include "kl_error.h"

__attribute__((format(printf, 2, 3))) static int fail(const char *rule, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kl_error_set(KL_E_INVALID, "lint %s: %s", rule, msg);
}

static int lint_serial(const X509 *x)
{
	const ASN1_INTEGER *s = X509_get0_serialNumber(x);
	BIGNUM *bn = ASN1_INTEGER_to_BN(s, NULL);
	int r = 0;

	/* RFC 5280 §4.1.2.2: positive, at most 20 octets. */
	if (!bn)
		return fail("serial.present", "no serial number");
	if (BN_is_negative(bn) || BN_is_zero(bn))
		r = fail("serial.positive", "serial number must be positive");
	else if (BN_num_bytes(bn) > 20 || (BN_num_bytes(bn) == 20 && BN_is_bit_set(bn, 159)))
		r = fail("serial.length", "serial number longer than 20 octets");
	else if (BN_num_bits(bn) < 64)
		r = fail("serial.entropy", "serial number has fewer than 64 bits");
	BN_free(bn);
	return r;
}

/* RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
static int lint_time(const ASN1_TIME *t, const char *which)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return fail("validity.encoding", "%s is missing or malformed", which);
	if (tm.tm_year + 1900 < 2050 && ASN1_STRING_type(t) != V_ASN1_UTCTIME)
		return fail("validity.encoding", "%s before 2050 must be UTCTime", which);
	if (tm.tm_year + 1900 >= 2050 && ASN1_STRING_type(t) != V_ASN1_GENERALIZEDTIME)
		return fail("validity.encoding", "%s from 2050 must be GeneralizedTime", which);
	return 0;
}

static int lint_validity(const X509 *x, const kl_profile *p)
{
	const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
	int days, secs, r;

	if ((r = lint_time(nb, "notBefore")) < 0 || (r = lint_time(na, "notAfter")) < 0)
		return r;
	if (!ASN1_TIME_diff(&days, &secs, nb, na) || days < 0 || (days == 0 && secs <= 0))
		return fail("validity.order", "notAfter must be after notBefore");
	if (p->validity_days > 0 &&
	    (days > p->validity_days || (days == p->validity_days && secs > 0)))
		return fail("validity.profile", "validity exceeds the profile's %s days", p->name);
	if (p->not_after[0]) {
		struct tm tm;

		ASN1_TIME_to_tm(na, &tm);
		if (tm.tm_year + 1900 != 9999)
			return fail("validity.profile", "profile %s wants notAfter 99991231235959Z",
			            p->name);
	}
	return 0;
}

static bool name_has(const X509_NAME *n, int nid)
{
	return X509_NAME_get_index_by_NID(n, nid, -1) >= 0;
}

static int attr_nid(const char *a)
{
	if (strcmp(a, "CN") == 0)
		return NID_commonName;
	if (strcmp(a, "O") == 0)
		return NID_organizationName;
	if (strcmp(a, "OU") == 0)
		return NID_organizationalUnitName;
	if (strcmp(a, "C") == 0)
		return NID_countryName;
	if (strcmp(a, "serialNumber") == 0)
		return NID_serialNumber;
	return NID_undef;
}

static int lint_subject(const X509 *x, const kl_profile *p)
{
	const X509_NAME *n = X509_get_subject_name(x);

	for (int i = 0; i < p->n_subj_required; i++)
		if (!name_has(n, attr_nid(p->subj_required[i])))
			return fail("subject.required", "subject lacks %s", p->subj_required[i]);
	for (int i = 0; i < X509_NAME_entry_count(n); i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
		int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
		bool ok = false;

		for (int k = 0; k < p->n_subj_allowed; k++)
			ok |= attr_nid(p->subj_allowed[k]) == nid;
		if (!ok)
			return fail("subject.allowed", "subject attribute %s is not allowed",
			            OBJ_nid2sn(nid));
		const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
		if (ASN1_STRING_length(v) <= 0 || ASN1_STRING_length(v) > 64)
			return fail("subject.length", "subject %s must be 1..64 characters",
			            OBJ_nid2sn(nid));
		/* X.520: serialNumber and countryName are PrintableString. */
		if ((nid == NID_serialNumber || nid == NID_countryName) &&
		    ASN1_STRING_type(v) != V_ASN1_PRINTABLESTRING)
			return fail("subject.encoding", "%s must be a PrintableString",
			            OBJ_nid2sn(nid));
	}
	return 0;
}

static int ext_index(const X509 *x, int nid, bool *critical)
{
	int idx = X509_get_ext_by_NID(x, nid, -1);

	if (idx >= 0 && critical)
		*critical = X509_EXTENSION_get_critical(X509_get_ext(x, idx)) != 0;
	return idx;
}

static int lint_no_duplicates(const X509 *x)
{
	int n = X509_get_ext_count(x);

	/* RFC 5280 §4.2: a certificate must not include more than one instance
	 * of a particular extension. */
	for (int i = 0; i < n; i++) {
		const ASN1_OBJECT *a = X509_EXTENSION_get_object(X509_get_ext(x, i));

		for (int k = i + 1; k < n; k++)
			if (OBJ_cmp(a, X509_EXTENSION_get_object(X509_get_ext(x, k))) == 0)
				return fail("extensions.unique", "extension %s appears twice",
				            OBJ_nid2sn(OBJ_obj2nid(a)));
	}
	return 0;
}

/* The linter reads extensions afresh: OpenSSL caches decoded extensions in
 * the X509 object the first time it is asked, and a certificate under
 * construction may have changed since. */
static uint32_t key_usage_bits(const X509 *x)
{
	ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, NULL, NULL);
	uint32_t bits = 0;

	if (!ku)
		return 0;
	if (ku->length > 0)
		bits = ku->data[0];
	if (ku->length > 1)
		bits |= (uint32_t)ku->data[1] << 8;
	ASN1_BIT_STRING_free(ku);
	return bits;
}

/* The key type from the SubjectPublicKeyInfo itself (RFC 5480, RFC 3279),
 * without OpenSSL 3.0's slow key decoders: algorithm, curve and point
 * length for EC, the modulus length for RSA. 0 when unsupported. */
static unsigned spki_key_type(const X509 *x)
{
	const ASN1_OBJECT *alg = NULL;
	const unsigned char *pk = NULL;
	const void *param = NULL;
	X509_ALGOR *a = NULL;
	int pklen = 0, ptype = 0;

	if (!X509_PUBKEY_get0_param((ASN1_OBJECT **)&alg, &pk, &pklen, &a,
	                            X509_get_X509_PUBKEY(x)) ||
	    !pk)
		return 0;
	X509_ALGOR_get0(NULL, &ptype, &param, a);
	switch (OBJ_obj2nid(alg)) {
	case NID_X9_62_id_ecPublicKey:
		if (ptype != V_ASN1_OBJECT || pklen < 1 || pk[0] != 0x04)
			return 0;
		switch (OBJ_obj2nid(param)) {
		case NID_X9_62_prime256v1:
			return pklen == 65 ? KL_KEY_EC_P256 : 0;
		case NID_secp384r1:
			return pklen == 97 ? KL_KEY_EC_P384 : 0;
		default:
			return 0;
		}
	case NID_rsaEncryption: {
		/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, ... } */
		const unsigned char *q = pk;
		long seq_len;
		int tag, cls;
		ASN1_INTEGER *n;
		BIGNUM *bn;
		int bits;

		if (ASN1_get_object(&q, &seq_len, &tag, &cls, pklen) & 0x80 ||
		    tag != V_ASN1_SEQUENCE)
			return 0;
		n = d2i_ASN1_INTEGER(NULL, &q, seq_len);
		bn = n ? ASN1_INTEGER_to_BN(n, NULL) : NULL;
		bits = bn ? BN_num_bits(bn) : 0;
		BN_free(bn);
		ASN1_INTEGER_free(n);
		return bits == 2048   ? KL_KEY_RSA_2048
		       : bits == 3072 ? KL_KEY_RSA_3072
		       : bits == 4096 ? KL_KEY_RSA_4096
		                      : 0;
	}
	default:
		return 0;
	}
}

static int lint_key(const X509 *x, const kl_profile *p)
{
	unsigned t = spki_key_type(x);
	uint32_t ku = key_usage_bits(x);
	bool crit = false;

	if (!t)
		return fail("key.type", "subject key is of no supported type or size");
	if (!(p->key_types & t))
		return fail("key.profile", "key type %s is not allowed by the profile",
		            kl_key_type_name(t));
	if (ext_index(x, NID_key_usage, &crit) < 0)
		return fail("keyUsage.present", "keyUsage is required");
	if (!crit)
		return fail("keyUsage.critical", "keyUsage must be critical");
	if ((ku & 0xffff) != p->key_usage)
		return fail("keyUsage.profile", "keyUsage differs from profile %s", p->name);
	/* RFC 5480 §3 / RFC 8813: EC keys do not encipher; RSA keys do not agree. */
	if ((t & (KL_KEY_EC_P256 | KL_KEY_EC_P384)) &&
	    (ku & (X509v3_KU_KEY_ENCIPHERMENT | X509v3_KU_DATA_ENCIPHERMENT)))
		return fail("keyUsage.consistent", "an EC key cannot have keyEncipherment");
	if ((t & (KL_KEY_RSA_2048 | KL_KEY_RSA_3072 | KL_KEY_RSA_4096)) &&
	    (ku & X509v3_KU_KEY_AGREEMENT))
		return fail("keyUsage.consistent", "an RSA key cannot have keyAgreement");
	return 0;
}

static int lint_basic(const X509 *x)
{
	BASIC_CONSTRAINTS *bc;
	bool crit = false;
	int r = 0;

	if (ext_index(x, NID_basic_constraints, &crit) < 0)
		return fail("basicConstraints.present", "basicConstraints is required");
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	if (!bc)
		return fail("basicConstraints.encoding", "basicConstraints is malformed");
	if (bc->ca)
		r = fail("basicConstraints.ca", "an end-entity certificate must have CA:FALSE");
	else if (!crit)
		r = fail("basicConstraints.critical", "basicConstraints must be critical");
	BASIC_CONSTRAINTS_free(bc);
	return r;
}

static int lint_eku(const X509 *x, const kl_profile *p)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
	int n = eku ? sk_ASN1_OBJECT_num(eku) : 0, r = 0;

	if (n != p->n_eku)
		r = fail("extKeyUsage.profile", "extKeyUsage differs from profile %s", p->name);
	for (int i = 0; r == 0 && i < p->n_eku; i++) {
		ASN1_OBJECT *want = OBJ_txt2obj(p->eku[i], 0);
		bool found = false;

		for (int k = 0; want && k < n; k++)
			found |= OBJ_cmp(want, sk_ASN1_OBJECT_value(eku, k)) == 0;
		ASN1_OBJECT_free(want);
		if (!found)
			r = fail("extKeyUsage.profile", "extKeyUsage lacks %s", p->eku[i]);
	}
	EXTENDED_KEY_USAGE_free(eku);
	return r;
}

static int lint_policies(const X509 *x, const kl_profile *p)
{
	CERTIFICATEPOLICIES *cp = X509_get_ext_d2i(x, NID_certificate_policies, NULL, NULL);
	int n = cp ? sk_POLICYINFO_num(cp) : 0, r = 0;

	if (n != p->n_policies)
		r = fail("certificatePolicies.profile", "policies differ from profile %s", p->name);
	for (int i = 0; r == 0 && i < p->n_policies; i++) {
		ASN1_OBJECT *want = OBJ_txt2obj(p->policies[i], 1);
		bool found = false;

		for (int k = 0; want && k < n; k++)
			found |= OBJ_cmp(want, sk_POLICYINFO_value(cp, k)->policyid) == 0;
		ASN1_OBJECT_free(want);
		if (!found)
			r = fail("certificatePolicies.profile", "policy %s is missing",
			         p->policies[i]);
	}
	/* Every policy points at the CA's practice statement (id-qt-cps). */
	for (int i = 0; r == 0 && p->cps_required && i < n; i++) {
		POLICYINFO *pi = sk_POLICYINFO_value(cp, i);
		bool cps = false;

		for (int k = 0; k < sk_POLICYQUALINFO_num(pi->qualifiers); k++) {
			POLICYQUALINFO *q = sk_POLICYQUALINFO_value(pi->qualifiers, k);

			cps |= OBJ_obj2nid(q->pqualid) == NID_id_qt_cps && q->d.cpsuri &&
			       ASN1_STRING_length(q->d.cpsuri) > 0;
		}
		if (!cps)
			r = fail(
			    "certificatePolicies.cps",
			    "profile %s requires a CPS URI on every policy (configure cps_url)",
			    p->name);
	}
	CERTIFICATEPOLICIES_free(cp);
	return r;
}

/* One otherName of the SAN against the profile: *hwmn / *perm_id say that
 * it was one of those. */
static int lint_other_name(const OTHERNAME *on, const kl_profile *p, bool *hwmn, bool *perm_id)
{
	ASN1_OBJECT *hw_oid = OBJ_txt2obj(KL_DEVID_OID_HWMN, 1);
	ASN1_OBJECT *perm_oid = OBJ_txt2obj(KL_DEVID_OID_PERM_ID, 1);
	ASN1_OBJECT *want = NULL, *t = NULL;
	ASN1_STRING *v = NULL;
	int r = 0;

	if (OBJ_cmp(on->type_id, hw_oid) == 0) {
		*hwmn = true;
		want = OBJ_txt2obj(p->hw_type, 1);
		if (kl_devid_parse_hwmn(on->value, &t, &v) < 0)
			r = fail("subjectAltName.hardwareModuleName",
			         "hardwareModuleName is malformed");
		else if (!want || OBJ_cmp(t, want) != 0)
			r = fail("subjectAltName.hwType", "hwType is not the profile's %s",
			         p->hw_type);
		else if (p->hw_serial_tpm && !kl_devid_hw_serial_ok(ASN1_STRING_get0_data(v),
		                                                    (size_t)ASN1_STRING_length(v)))
			r = fail(
			    "subjectAltName.hwSerialNum",
			    "profile %s wants the TPM's hwSerialNum (TPM manufacturer, EK "
			    "authority key id and EK serial, from the EK certificate), not '%.*s'",
			    p->name, ASN1_STRING_length(v) > 40 ? 40 : ASN1_STRING_length(v),
			    (const char *)ASN1_STRING_get0_data(v));
	} else if (OBJ_cmp(on->type_id, perm_oid) == 0) {
		*perm_id = true;
		want = OBJ_txt2obj(p->perm_id_assigner, 1);
		if (kl_devid_parse_perm_id(on->value, &v, &t) < 0 || !v)
			r = fail("subjectAltName.permanentIdentifier",
			         "permanentIdentifier is malformed or has no identifierValue");
		else if (!t || !want || OBJ_cmp(t, want) != 0)
			r = fail("subjectAltName.permanentIdentifier",
			         "permanentIdentifier's assigner is not the profile's %s",
			         p->perm_id_assigner);
		else if (strcmp(p->perm_id_assigner, KL_DEVID_OID_EK_PERM_ID) == 0 &&
		         (ASN1_STRING_length(v) != 64 ||
		          !kl_devid_hex_ok(ASN1_STRING_get0_data(v), 64)))
			r = fail("subjectAltName.permanentIdentifier",
			         "tcg-on-ekPermIdSha256 wants the EK certificate's SHA-256 in hex");
	}
	ASN1_OBJECT_free(want);
	ASN1_OBJECT_free(t);
	ASN1_STRING_free(v);
	ASN1_OBJECT_free(hw_oid);
	ASN1_OBJECT_free(perm_oid);
	return r;
}

static int lint_san(const X509 *x, const kl_profile *p)
{
	const X509_NAME *subj = X509_get_subject_name(x);
	GENERAL_NAMES *gens;
	bool crit = false, hwmn = false, perm_id = false;
	int idx = ext_index(x, NID_subject_alt_name, &crit), r = 0;

	if (idx < 0) {
		if (X509_NAME_entry_count(subj) == 0)
			return fail("subjectAltName.present", "an empty subject needs a SAN");
		if (p->hwmn_required)
			return fail("subjectAltName.hardwareModuleName",
			            "profile %s requires a hardwareModuleName", p->name);
		if (p->perm_id_required)
			return fail("subjectAltName.permanentIdentifier",
			            "profile %s requires a permanentIdentifier", p->name);
		return 0;
	}
	/* RFC 5280 §4.2.1.6: critical when the subject is empty. */
	if (X509_NAME_entry_count(subj) == 0 && !crit)
		return fail("subjectAltName.critical",
		            "SAN must be critical when the subject is empty");
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (!gens)
		return fail("subjectAltName.encoding", "SAN is malformed");
	for (int i = 0; r == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_OTHERNAME)
			r = lint_other_name(g->d.otherName, p, &hwmn, &perm_id);
	}
	GENERAL_NAMES_free(gens);
	if (r < 0)
		return r;
	if (p->hwmn_required && !hwmn)
		return fail("subjectAltName.hardwareModuleName",
		            "profile %s requires a hardwareModuleName", p->name);
	if (p->perm_id_required && !perm_id)
		return fail("subjectAltName.permanentIdentifier",
		            "profile %s requires a permanentIdentifier", p->name);
	return 0;
}

/* authorityInfoAccess (RFC 5280 §4.2.2.1): non-critical; caIssuers when the
 * profile asks for it; every location a URI. */
static int lint_aia(const X509 *x, const kl_profile *p)
{
	AUTHORITY_INFO_ACCESS *aia;
	bool crit = false, ca_issuers = false;
	int r = 0;

	if (ext_index(x, NID_info_access, &crit) < 0)
		return p->aia_required ? fail("authorityInfoAccess.present",
		                              "profile %s requires authorityInfoAccess with "
		                              "caIssuers (configure ca_issuers_url)",
		                              p->name)
		                       : 0;
	if (crit)
		return fail("authorityInfoAccess.critical",
		            "authorityInfoAccess must not be critical");
	aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
	if (!aia)
		return fail("authorityInfoAccess.encoding", "authorityInfoAccess is malformed");
	for (int i = 0; r == 0 && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
		ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);

		if (ad->location->type != GEN_URI)
			r = fail("authorityInfoAccess.encoding", "an access location is not a URI");
		ca_issuers |= OBJ_obj2nid(ad->method) == NID_ad_ca_issuers;
	}
	AUTHORITY_INFO_ACCESS_free(aia);
	if (r == 0 && p->aia_required && !ca_issuers)
		r = fail("authorityInfoAccess.present",
		         "profile %s requires a caIssuers access description (configure "
		         "ca_issuers_url)",
		         p->name);
	return r;
}

static int lint_key_ids(const X509 *x, const X509 *issuer)
{
	ASN1_OCTET_STRING *ski = X509_get_ext_d2i(x, NID_subject_key_identifier, NULL, NULL);
	AUTHORITY_KEYID *aki = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
	const ASN1_OCTET_STRING *iski = issuer ? X509_get0_subject_key_id((X509 *)issuer) : NULL;
	int r = 0;

	/* RFC 5280 §4.2.1.1 and §4.2.1.2. */
	if (!ski)
		r = fail("subjectKeyIdentifier.present", "subjectKeyIdentifier is required");
	else if (!aki || !aki->keyid)
		r = fail("authorityKeyIdentifier.present", "authorityKeyIdentifier is required");
	else if (iski && ASN1_OCTET_STRING_cmp(aki->keyid, iski) != 0)
		r = fail("authorityKeyIdentifier.match",
		         "authorityKeyIdentifier is not the issuer's key identifier");
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(aki);
	return r;
}

static int lint_issuer(const X509 *x, const X509 *issuer)
{
	if (!issuer)
		return 0;
	if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(issuer)) != 0)
		return fail("issuer.name", "issuer name is not the CA certificate's subject");
	return 0;
}

int kl_lint_cert(const X509 *x, const kl_profile *p, const X509 *issuer)
{
	int r;

	if (X509_get_version(x) != X509_VERSION_3)
		return fail("version", "certificate must be version 3");
	if ((r = lint_serial(x)) < 0 || (r = lint_validity(x, p)) < 0 ||
	    (r = lint_issuer(x, issuer)) < 0 || (r = lint_subject(x, p)) < 0 ||
	    (r = lint_no_duplicates(x)) < 0 || (r = lint_key(x, p)) < 0 ||
	    (r = lint_basic(x)) < 0 || (r = lint_eku(x, p)) < 0 || (r = lint_policies(x, p)) < 0 ||
	    (r = lint_san(x, p)) < 0 || (r = lint_aia(x, p)) < 0 ||
	    (r = lint_key_ids(x, issuer)) < 0)
		return r;
	if (p->crl_dp && X509_get_ext_by_NID(x, NID_crl_distribution_points, -1) < 0)
		return fail("cRLDistributionPoints.present",
		            "profile %s requires a CRL distribution point (configure crl_url)",
		            p->name);
	return 0;
}
