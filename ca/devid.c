/* The TPM's identifiers in device identity certificates. See devid.h. */
#include "devid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "kl_error.h"

/* TCG EK Credential Profile 2.0 §3.2.9: the SAN's directoryName holds it. */
#define OID_TCG_AT_TPM_MANUFACTURER "2.23.133.2.1"

static void hex_upper(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789ABCDEF";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/* "49424D00" from the EK certificate's "id:49424D00". */
static int ek_manufacturer(X509 *ek, char *out, size_t size)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(ek, NID_subject_alt_name, NULL, NULL);
	ASN1_OBJECT *oid = OBJ_txt2obj(OID_TCG_AT_TPM_MANUFACTURER, 1);
	const ASN1_STRING *v = NULL;

	for (int i = 0; gens && oid && !v && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		int idx;

		if (g->type != GEN_DIRNAME)
			continue;
		idx = X509_NAME_get_index_by_OBJ(g->d.directoryName, oid, -1);
		if (idx >= 0)
			v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(g->d.directoryName, idx));
	}
	ASN1_OBJECT_free(oid);
	if (!v) {
		GENERAL_NAMES_free(gens);
		return kl_error_set(KL_E_INVALID, "the EK certificate names no TPM manufacturer "
		                                  "(tcg-at-tpmManufacturer in its subjectAltName)");
	}
	/* TCG EK Credential Profile: "id:" and the 4-octet vendor id in hex. */
	const unsigned char *s = ASN1_STRING_get0_data(v);
	int n = ASN1_STRING_length(v);
	bool ok = n == 11 && strncmp((const char *)s, "id:", 3) == 0 && size > 8;

	for (int k = 3; ok && k < 11; k++)
		ok = isxdigit(s[k]) != 0;
	if (!ok) {
		int r = kl_error_set(KL_E_INVALID,
		                     "the EK certificate's tcg-at-tpmManufacturer '%.*s' is not "
		                     "id: and 8 hex digits",
		                     n > 32 ? 32 : n, (const char *)s);

		GENERAL_NAMES_free(gens);
		return r;
	}
	for (int k = 0; k < 8; k++)
		out[k] = (char)toupper(s[3 + k]);
	out[8] = '\0';
	GENERAL_NAMES_free(gens);
	return 0;
}

int kl_devid_tpm_ids_from_ek(const unsigned char *der, size_t len, kl_devid_tpm_ids *ret)
{
	const unsigned char *q = der, *body = der;
	unsigned char md[32];
	unsigned int mdlen = 0;
	char man[16], aki[2 * 64 + 1], sn[2 * 20 + 1];
	const ASN1_OCTET_STRING *keyid;
	BIGNUM *bn = NULL;
	long content;
	int tag, cls, hdr;
	X509 *ek;
	int r;

	if (!der || len == 0 || len > 65536)
		return kl_error_set(KL_E_INVALID, "no EK certificate");
	/* The certificate's own DER: NV indices may hold padding after it. */
	hdr = ASN1_get_object(&body, &content, &tag, &cls, (long)len);
	if ((hdr & 0x80) || tag != V_ASN1_SEQUENCE || (size_t)(body - der) + (size_t)content > len)
		return kl_error_set(KL_E_INVALID, "the EK certificate is not DER");
	ek = d2i_X509(NULL, &q, (long)len);
	if (!ek)
		return kl_error_set_ssl(KL_E_INVALID, "the EK certificate does not parse");
	r = ek_manufacturer(ek, man, sizeof(man));
	if (r < 0)
		goto out;
	keyid = X509_get0_authority_key_id(ek);
	if (!keyid || ASN1_STRING_length(keyid) <= 0 || ASN1_STRING_length(keyid) > 64) {
		r = kl_error_set(
		    KL_E_INVALID,
		    "the EK certificate has no authority key identifier (keyIdentifier)");
		goto out;
	}
	hex_upper(ASN1_STRING_get0_data(keyid), (size_t)ASN1_STRING_length(keyid), aki);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ek), NULL);
	if (!bn || BN_is_negative(bn) || BN_num_bytes(bn) > 20) {
		r = kl_error_set(KL_E_INVALID, "the EK certificate's serial number is not usable");
		goto out;
	}
	{
		unsigned char mag[20];
		int n = BN_bn2bin(bn, mag);

		if (n == 0) {
			mag[0] = 0;
			n = 1;
		}
		hex_upper(mag, (size_t)n, sn);
	}
	if (!EVP_Digest(der, (size_t)(body - der) + (size_t)content, md, &mdlen, EVP_sha256(),
	                NULL)) {
		r = kl_error_set_ssl(KL_E_CRYPTO, "SHA-256 of the EK certificate");
		goto out;
	}
	snprintf(ret->hw_serial, sizeof(ret->hw_serial), "%s:%s:%s", man, aki, sn);
	hex_upper(md, mdlen, ret->permanent_id);
	r = 0;
out:
	BN_free(bn);
	X509_free(ek);
	return r;
}

bool kl_devid_hex_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit(s[i]) || islower(s[i]))
			return false;
	return true;
}

bool kl_devid_hw_serial_ok(const unsigned char *s, size_t len)
{
	size_t field = 0, colons = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == ':') {
			if (field == 0)
				return false;
			colons++;
			field = 0;
		} else if (!isxdigit(s[i]) || islower(s[i])) {
			return false;
		} else {
			field++;
		}
	}
	return colons == 2 && field > 0;
}

/* The content of a SEQUENCE otherName value: *p and *len. */
static int seq_content(const ASN1_TYPE *v, const unsigned char **p, long *len)
{
	const unsigned char *q;
	long n;
	int tag, cls, hdr;

	if (!v || v->type != V_ASN1_SEQUENCE || !v->value.sequence)
		return kl_error_set(KL_E_INVALID, "otherName value is not a SEQUENCE");
	q = ASN1_STRING_get0_data(v->value.sequence);
	n = ASN1_STRING_length(v->value.sequence);
	hdr = ASN1_get_object(&q, len, &tag, &cls, n);
	if ((hdr & 0x80) || tag != V_ASN1_SEQUENCE ||
	    q + *len != ASN1_STRING_get0_data(v->value.sequence) + n)
		return kl_error_set(KL_E_INVALID, "otherName value is malformed");
	*p = q;
	return 0;
}

int kl_devid_parse_hwmn(const ASN1_TYPE *v, ASN1_OBJECT **hw_type, ASN1_OCTET_STRING **hw_serial)
{
	const unsigned char *p, *end;
	ASN1_OBJECT *t = NULL;
	ASN1_OCTET_STRING *s = NULL;
	long len;
	int r;

	if ((r = seq_content(v, &p, &len)) < 0)
		return r;
	end = p + len;
	/* HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING } */
	t = d2i_ASN1_OBJECT(NULL, &p, end - p);
	s = t ? d2i_ASN1_OCTET_STRING(NULL, &p, end - p) : NULL;
	if (!t || !s || p != end) {
		ASN1_OBJECT_free(t);
		ASN1_OCTET_STRING_free(s);
		return kl_error_set(KL_E_INVALID, "hardwareModuleName is malformed");
	}
	*hw_type = t;
	*hw_serial = s;
	return 0;
}

int kl_devid_parse_perm_id(const ASN1_TYPE *v, ASN1_UTF8STRING **value, ASN1_OBJECT **assigner)
{
	const unsigned char *p, *end;
	ASN1_UTF8STRING *s = NULL;
	ASN1_OBJECT *a = NULL;
	long len;
	int r;

	if ((r = seq_content(v, &p, &len)) < 0)
		return r;
	end = p + len;
	/* PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL,
	 *                                    assigner OBJECT IDENTIFIER OPTIONAL } */
	if (p < end && *p == V_ASN1_UTF8STRING && !(s = d2i_ASN1_UTF8STRING(NULL, &p, end - p)))
		return kl_error_set(KL_E_INVALID, "permanentIdentifier is malformed");
	if (p < end && *p == V_ASN1_OBJECT && !(a = d2i_ASN1_OBJECT(NULL, &p, end - p))) {
		ASN1_UTF8STRING_free(s);
		return kl_error_set(KL_E_INVALID, "permanentIdentifier is malformed");
	}
	if (p != end) {
		ASN1_UTF8STRING_free(s);
		ASN1_OBJECT_free(a);
		return kl_error_set(KL_E_INVALID, "permanentIdentifier is malformed");
	}
	*value = s;
	*assigner = a;
	return 0;
}

int kl_devid_tpm_ids_from_cert(const X509 *x, kl_devid_tpm_ids *ret)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	ASN1_OBJECT *hwmn = OBJ_txt2obj(KL_DEVID_OID_HWMN, 1);
	ASN1_OBJECT *perm = OBJ_txt2obj(KL_DEVID_OID_PERM_ID, 1);
	kl_devid_tpm_ids ids = { 0 };
	bool found = false;
	int r = 0;

	for (int i = 0; r == 0 && gens && i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		ASN1_OBJECT *t = NULL;
		ASN1_STRING *s = NULL;

		if (g->type != GEN_OTHERNAME)
			continue;
		if (OBJ_cmp(g->d.otherName->type_id, hwmn) == 0) {
			r = kl_devid_parse_hwmn(g->d.otherName->value, &t, &s);
			if (r == 0 && ASN1_STRING_length(s) < (int)sizeof(ids.hw_serial)) {
				snprintf(ids.hw_serial, sizeof(ids.hw_serial), "%.*s",
				         ASN1_STRING_length(s),
				         (const char *)ASN1_STRING_get0_data(s));
				found = true;
			}
		} else if (OBJ_cmp(g->d.otherName->type_id, perm) == 0) {
			r = kl_devid_parse_perm_id(g->d.otherName->value, &s, &t);
			if (r == 0 && s && ASN1_STRING_length(s) < (int)sizeof(ids.permanent_id))
				snprintf(ids.permanent_id, sizeof(ids.permanent_id), "%.*s",
				         ASN1_STRING_length(s),
				         (const char *)ASN1_STRING_get0_data(s));
		}
		ASN1_OBJECT_free(t);
		ASN1_STRING_free(s);
	}
	GENERAL_NAMES_free(gens);
	ASN1_OBJECT_free(hwmn);
	ASN1_OBJECT_free(perm);
	if (r < 0)
		return r;
	if (!found)
		return kl_error_set(KL_E_NOTFOUND, "the certificate has no hardwareModuleName");
	*ret = ids;
	return 0;
}
