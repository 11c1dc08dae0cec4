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

#include <json-c/json.h>

#include "ca_internal.h"
#include "der.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_failpoint.h"
#include "store_internal.h"

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

const kl_profile *kl_ca_profile(kl_ca *ca, const char *name)
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
	snprintf(ca->cps_url, sizeof(ca->cps_url), "%s", cfg->cps_url ? cfg->cps_url : "");
	snprintf(ca->ca_issuers_url, sizeof(ca->ca_issuers_url), "%s",
	         cfg->ca_issuers_url ? cfg->ca_issuers_url : "");
	snprintf(ca->ocsp_url, sizeof(ca->ocsp_url), "%s", cfg->ocsp_url ? cfg->ocsp_url : "");
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

int kl_ca_revoke(kl_ca *ca, const char *serial_in, int reason, const char *actor)
{
	char serial[48];
	json_object *d;
	int r;

	if (reason < 0 || reason > 10 || reason == 7 || reason == 8)
		return kl_error_set(KL_E_INVALID, "revocation reason %d is not usable", reason);
	r = normalise_serial(serial_in, serial, sizeof(serial));
	if (r < 0)
		return r;
	r = kl_store_begin(ca->store);
	if (r < 0)
		return r;
	r = kl_store_cert_revoke(ca->store, ca->issuer_id, serial, reason, (int64_t)time(NULL));
	if (r == 0) {
		d = kl_store_detail_add(json_object_new_object(), "serial",
		                        json_object_new_string(serial));
		d = kl_store_detail_add(d, "reason",
		                        json_object_new_string(kl_crl_reason_name(reason)));
		r = kl_store_audit_json(ca->store, actor ? actor : ca->actor, "ca.revoke", d);
	}
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
	json_object *d;
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
	d = kl_store_detail_add(json_object_new_object(), "crl_number",
	                        json_object_new_int64(number));
	d = kl_store_detail_add(d, "entries", json_object_new_int64(count));
	d = kl_store_detail_add(d, "bytes", json_object_new_int64((int64_t)*len));
	r = kl_store_audit_json(ca->store, actor ? actor : ca->actor, "ca.crl", d);
	if (r < 0) {
		free(*der);
		*der = NULL;
		return r;
	}
	return 0;
}
