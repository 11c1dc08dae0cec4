/* Certificate profiles: data files (JSON) that say what a certificate of a
 * kind must contain. The builder follows them and the linter enforces them.
 *
 *   {
 *     "name": "idevid",
 *     "description": "...",
 *     "validity": { "days": N } | { "not_after": "99991231235959Z" },
 *     "key_types": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"],
 *     "digest": "sha256" | "sha384" | "sha512",
 *     "subject": { "required": ["serialNumber"], "allowed": ["serialNumber", "CN", ...] },
 *     "hardware_module_name": { "required": true, "hw_type": "2.23.133.1.2",
 *                               "hw_serial": "tpm" | "device" },
 *     "permanent_identifier": { "required": true, "assigner": "2.23.133.12.1" },
 *     "dns_from_cn": false,
 *     "key_usage": ["digitalSignature", ...],
 *     "extended_key_usage": ["clientAuth", "2.23.133.8.3", ...],
 *     "policies": ["2.23.133.11.1.1", ...],
 *     "policy_cps": true,
 *     "authority_info_access": true,
 *     "crl_distribution_point": true
 *   }
 *
 * hw_serial "tpm" (the TCG device-identity rule): hwSerialNum identifies the
 * TPM, built from its EK certificate (devid.h) and given in the request;
 * "device" (the default): the request's hw_serial, else the device serial.
 * policy_cps: every policy carries the CA's CPS URI qualifier (ca.cps_url).
 * authority_info_access: caIssuers (ca.ca_issuers_url) is required; OCSP
 * (ca.ocsp_url) is added whenever it is configured.
 *
 * Subject attribute names: CN, O, OU, C, serialNumber. Key usage names are
 * RFC 5280 §4.2.1.3's. */
#ifndef KL_CA_PROFILE_H
#define KL_CA_PROFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "kl_error.h"

#define KL_PROFILE_MAX_LIST 8

enum kl_key_type {
	KL_KEY_EC_P256 = 1 << 0,
	KL_KEY_EC_P384 = 1 << 1,
	KL_KEY_RSA_2048 = 1 << 2,
	KL_KEY_RSA_3072 = 1 << 3,
	KL_KEY_RSA_4096 = 1 << 4,
};

typedef struct kl_profile {
	char name[32];
	char description[256];
	int validity_days;  /* > 0, or 0 with not_after_generalized set */
	char not_after[16]; /* "99991231235959Z" (RFC 5280 §4.1.2.5 no well-defined expiry) */
	unsigned key_types; /* enum kl_key_type bits */
	char digest[8];
	char subj_required[KL_PROFILE_MAX_LIST][16];
	int n_subj_required;
	char subj_allowed[KL_PROFILE_MAX_LIST][16];
	int n_subj_allowed;
	bool hwmn_required;
	char hw_type[64];   /* OID of hwType in HardwareModuleName (RFC 4108) */
	bool hw_serial_tpm; /* hwSerialNum must be the TPM's (devid.h), not the device serial */
	bool perm_id_required;
	char perm_id_assigner[64]; /* OID of the permanentIdentifier's assigner (RFC 4043) */
	bool dns_from_cn;
	unsigned key_usage; /* X509v3_KU_* bits */
	char eku[KL_PROFILE_MAX_LIST][64];
	int n_eku;
	char policies[KL_PROFILE_MAX_LIST][64];
	int n_policies;
	bool cps_required; /* a CPS URI qualifier on every policy */
	bool aia_required; /* authorityInfoAccess with caIssuers */
	bool crl_dp;
} kl_profile;

/* Parses a profile from JSON text; errors name the file and the field. */
int kl_profile_parse(const char *json, const char *origin, kl_profile *ret) KL_MUST_CHECK;

/* Loads DIR/NAME.json. -KL_E_NOTFOUND names the directory and the profiles
 * that exist. */
int kl_profile_load(const char *dir, const char *name, kl_profile *ret) KL_MUST_CHECK;

/* The key-type bit for an OpenSSL key, 0 when the key is of no known type. */
unsigned kl_profile_key_type(const void *evp_pkey);
const char *kl_key_type_name(unsigned bit);

#endif
