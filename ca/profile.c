/* Certificate profiles as JSON data files. See profile.h. */
#include "profile.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "kl_error.h"

static const struct {
	const char *name;
	unsigned bit;
} key_types[] = {
	{ "ec-p256", KL_KEY_EC_P256 },   { "ec-p384", KL_KEY_EC_P384 },
	{ "rsa-2048", KL_KEY_RSA_2048 }, { "rsa-3072", KL_KEY_RSA_3072 },
	{ "rsa-4096", KL_KEY_RSA_4096 },
};

static const struct {
	const char *name;
	unsigned bit;
} ku_names[] = {
	{ "digitalSignature", X509v3_KU_DIGITAL_SIGNATURE },
	{ "nonRepudiation", X509v3_KU_NON_REPUDIATION },
	{ "contentCommitment", X509v3_KU_NON_REPUDIATION },
	{ "keyEncipherment", X509v3_KU_KEY_ENCIPHERMENT },
	{ "dataEncipherment", X509v3_KU_DATA_ENCIPHERMENT },
	{ "keyAgreement", X509v3_KU_KEY_AGREEMENT },
	{ "keyCertSign", X509v3_KU_KEY_CERT_SIGN },
	{ "cRLSign", X509v3_KU_CRL_SIGN },
};

static const char *const subject_attrs[] = { "CN", "O", "OU", "C", "serialNumber" };

const char *kl_key_type_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
		if (key_types[i].bit == bit)
			return key_types[i].name;
	return "unknown";
}

unsigned kl_profile_key_type(const void *evp_pkey)
{
	const EVP_PKEY *k = evp_pkey;
	char group[32];
	int bits = EVP_PKEY_get_bits(k);

	if (EVP_PKEY_is_a(k, "RSA")) {
		switch (bits) {
		case 2048:
			return KL_KEY_RSA_2048;
		case 3072:
			return KL_KEY_RSA_3072;
		case 4096:
			return KL_KEY_RSA_4096;
		default:
			return 0;
		}
	}
	if (EVP_PKEY_is_a(k, "EC") &&
	    EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), NULL)) {
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
			return KL_KEY_EC_P256;
		if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return KL_KEY_EC_P384;
	}
	return 0;
}

static bool known_subject_attr(const char *a)
{
	for (size_t i = 0; i < sizeof(subject_attrs) / sizeof(subject_attrs[0]); i++)
		if (strcmp(a, subject_attrs[i]) == 0)
			return true;
	return false;
}

/* Copies a JSON array of strings into a fixed table; each item checked. */
static int string_list(json_object *obj, const char *origin, const char *field, char (*out)[64],
                       size_t item, int max, int *n)
{
	json_object *arr;

	*n = 0;
	if (!json_object_object_get_ex(obj, field, &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return kl_error_set(KL_E_INVALID, "%s: \"%s\" must be a list of strings", origin,
		                    field);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *it = json_object_array_get_idx(arr, i);
		const char *s = json_object_get_string(it);

		if (!json_object_is_type(it, json_type_string) || strlen(s) >= item)
			return kl_error_set(KL_E_INVALID, "%s: \"%s\"[%zu] must be a short string",
			                    origin, field, i);
		if (*n == max)
			return kl_error_set(KL_E_INVALID, "%s: \"%s\" has more than %d items",
			                    origin, field, max);
		memcpy(((char *)out) + (size_t)*n * item, s, strlen(s) + 1);
		(*n)++;
	}
	return 0;
}

/* A list of subject attribute names ("required" or "allowed"). */
static int subject_list(json_object *obj, const char *origin, const char *field, char (*out)[16],
                        int *n)
{
	char list[KL_PROFILE_MAX_LIST][64];
	int r;

	r = string_list(obj, origin, field, list, sizeof(list[0]), KL_PROFILE_MAX_LIST, n);
	if (r < 0)
		return r;
	for (int i = 0; i < *n; i++) {
		if (!known_subject_attr(list[i]))
			return kl_error_set(KL_E_INVALID, "%s: unknown subject attribute '%s'",
			                    origin, list[i]);
		snprintf(out[i], 16, "%s", list[i]);
	}
	return 0;
}

/* The text of a JSON value, "" for null: json-c has no string for null,
 * and a profile's "digest": null is to be refused, not dereferenced. */
static const char *text_of(json_object *o)
{
	const char *s = json_object_get_string(o);

	return s ? s : "";
}

static int oid_ok(const char *origin, const char *field, const char *text)
{
	ASN1_OBJECT *o = OBJ_txt2obj(text, 0);

	if (!o)
		return kl_error_set(KL_E_INVALID, "%s: \"%s\": '%s' is not an OID or a known name",
		                    origin, field, text);
	ASN1_OBJECT_free(o);
	return 0;
}

int kl_profile_parse(const char *json, const char *origin, kl_profile *ret)
{
	enum json_tokener_error jerr = json_tokener_success;
	json_object *root, *o, *sub;
	kl_profile p = { 0 };
	char list[KL_PROFILE_MAX_LIST][64];
	int n, r = 0;

	root = json_tokener_parse_verbose(json, &jerr);
	if (!root)
		return kl_error_set(KL_E_INVALID, "%s: not JSON: %s", origin,
		                    json_tokener_error_desc(jerr));
	if (!json_object_is_type(root, json_type_object)) {
		r = kl_error_set(KL_E_INVALID, "%s: a profile is a JSON object", origin);
		goto out;
	}

	if (!json_object_object_get_ex(root, "name", &o) ||
	    !json_object_is_type(o, json_type_string) || strlen(json_object_get_string(o)) == 0 ||
	    strlen(json_object_get_string(o)) >= sizeof(p.name)) {
		r = kl_error_set(KL_E_INVALID, "%s: \"name\" is required (a short string)", origin);
		goto out;
	}
	snprintf(p.name, sizeof(p.name), "%s", json_object_get_string(o));
	if (json_object_object_get_ex(root, "description", &o))
		snprintf(p.description, sizeof(p.description), "%s", text_of(o));

	/* validity */
	if (!json_object_object_get_ex(root, "validity", &o) ||
	    !json_object_is_type(o, json_type_object)) {
		r = kl_error_set(KL_E_INVALID, "%s: \"validity\" is required", origin);
		goto out;
	}
	if (json_object_object_get_ex(o, "days", &sub)) {
		p.validity_days = json_object_get_int(sub);
		if (!json_object_is_type(sub, json_type_int) || p.validity_days <= 0 ||
		    p.validity_days > 36500) {
			r = kl_error_set(KL_E_INVALID, "%s: \"validity.days\" must be 1..36500",
			                 origin);
			goto out;
		}
	} else if (json_object_object_get_ex(o, "not_after", &sub)) {
		const char *na = text_of(sub);

		if (strcmp(na, "99991231235959Z") != 0) {
			r = kl_error_set(
			    KL_E_INVALID,
			    "%s: \"validity.not_after\" may only be 99991231235959Z "
			    "(no well-defined expiration, RFC 5280 §4.1.2.5); use days",
			    origin);
			goto out;
		}
		snprintf(p.not_after, sizeof(p.not_after), "%s", na);
	} else {
		r = kl_error_set(KL_E_INVALID, "%s: \"validity\" needs \"days\" or \"not_after\"",
		                 origin);
		goto out;
	}

	/* key types */
	r = string_list(root, origin, "key_types", list, sizeof(list[0]), KL_PROFILE_MAX_LIST, &n);
	if (r < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		unsigned bit = 0;

		for (size_t k = 0; k < sizeof(key_types) / sizeof(key_types[0]); k++)
			if (strcmp(list[i], key_types[k].name) == 0)
				bit = key_types[k].bit;
		if (!bit) {
			r = kl_error_set(KL_E_INVALID,
			                 "%s: unknown key type '%s' (ec-p256, ec-p384, rsa-2048, "
			                 "rsa-3072, rsa-4096)",
			                 origin, list[i]);
			goto out;
		}
		p.key_types |= bit;
	}
	if (!p.key_types) {
		r = kl_error_set(KL_E_INVALID, "%s: \"key_types\" must name at least one", origin);
		goto out;
	}

	snprintf(p.digest, sizeof(p.digest), "sha256");
	if (json_object_object_get_ex(root, "digest", &o)) {
		const char *d = text_of(o);

		if (strcmp(d, "sha256") && strcmp(d, "sha384") && strcmp(d, "sha512")) {
			r = kl_error_set(KL_E_INVALID,
			                 "%s: \"digest\" must be sha256, sha384 or sha512", origin);
			goto out;
		}
		snprintf(p.digest, sizeof(p.digest), "%s", d);
	}

	/* subject */
	if (json_object_object_get_ex(root, "subject", &o)) {
		if ((r = subject_list(o, origin, "required", p.subj_required, &p.n_subj_required)) <
		        0 ||
		    (r = subject_list(o, origin, "allowed", p.subj_allowed, &p.n_subj_allowed)) < 0)
			goto out;
	}

	/* hardware module name */
	snprintf(p.hw_type, sizeof(p.hw_type), "2.23.133.1.2");
	if (json_object_object_get_ex(root, "hardware_module_name", &o)) {
		if (json_object_object_get_ex(o, "required", &sub))
			p.hwmn_required = json_object_get_boolean(sub);
		if (json_object_object_get_ex(o, "hw_type", &sub)) {
			snprintf(p.hw_type, sizeof(p.hw_type), "%s", text_of(sub));
			r = oid_ok(origin, "hardware_module_name.hw_type", p.hw_type);
			if (r < 0)
				goto out;
		}
	}
	if (json_object_object_get_ex(root, "hardware_module_name", &o) &&
	    json_object_object_get_ex(o, "hw_serial", &sub)) {
		const char *src = text_of(sub);

		if (strcmp(src, "tpm") && strcmp(src, "device")) {
			r = kl_error_set(KL_E_INVALID,
			                 "%s: \"hardware_module_name.hw_serial\" must be \"tpm\" "
			                 "(from the EK certificate) or \"device\"",
			                 origin);
			goto out;
		}
		p.hw_serial_tpm = strcmp(src, "tpm") == 0;
	}

	/* permanent identifier (RFC 4043) */
	snprintf(p.perm_id_assigner, sizeof(p.perm_id_assigner), "2.23.133.12.1");
	if (json_object_object_get_ex(root, "permanent_identifier", &o)) {
		if (json_object_object_get_ex(o, "required", &sub))
			p.perm_id_required = json_object_get_boolean(sub);
		if (json_object_object_get_ex(o, "assigner", &sub)) {
			snprintf(p.perm_id_assigner, sizeof(p.perm_id_assigner), "%s",
			         text_of(sub));
			r = oid_ok(origin, "permanent_identifier.assigner", p.perm_id_assigner);
			if (r < 0)
				goto out;
		}
	}
	if (json_object_object_get_ex(root, "dns_from_cn", &o))
		p.dns_from_cn = json_object_get_boolean(o);

	/* key usage */
	r = string_list(root, origin, "key_usage", list, sizeof(list[0]), KL_PROFILE_MAX_LIST, &n);
	if (r < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		unsigned bit = 0;

		for (size_t k = 0; k < sizeof(ku_names) / sizeof(ku_names[0]); k++)
			if (strcmp(list[i], ku_names[k].name) == 0)
				bit = ku_names[k].bit;
		if (!bit) {
			r = kl_error_set(KL_E_INVALID, "%s: unknown key usage '%s'", origin,
			                 list[i]);
			goto out;
		}
		p.key_usage |= bit;
	}
	if (!p.key_usage) {
		r = kl_error_set(KL_E_INVALID, "%s: \"key_usage\" must name at least one", origin);
		goto out;
	}
	if (p.key_usage & (X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN)) {
		r = kl_error_set(KL_E_INVALID,
		                 "%s: end-entity profiles may not have keyCertSign or cRLSign",
		                 origin);
		goto out;
	}

	r = string_list(root, origin, "extended_key_usage", p.eku, sizeof(p.eku[0]),
	                KL_PROFILE_MAX_LIST, &p.n_eku);
	if (r < 0)
		goto out;
	for (int i = 0; i < p.n_eku; i++)
		if ((r = oid_ok(origin, "extended_key_usage", p.eku[i])) < 0)
			goto out;
	r = string_list(root, origin, "policies", p.policies, sizeof(p.policies[0]),
	                KL_PROFILE_MAX_LIST, &p.n_policies);
	if (r < 0)
		goto out;
	for (int i = 0; i < p.n_policies; i++)
		if ((r = oid_ok(origin, "policies", p.policies[i])) < 0)
			goto out;
	if (json_object_object_get_ex(root, "policy_cps", &o))
		p.cps_required = json_object_get_boolean(o);
	if (p.cps_required && p.n_policies == 0) {
		r = kl_error_set(KL_E_INVALID, "%s: \"policy_cps\" needs at least one policy",
		                 origin);
		goto out;
	}
	if (json_object_object_get_ex(root, "authority_info_access", &o))
		p.aia_required = json_object_get_boolean(o);
	if (json_object_object_get_ex(root, "crl_distribution_point", &o))
		p.crl_dp = json_object_get_boolean(o);

	*ret = p;
	r = 0;
out:
	json_object_put(root);
	return r;
}

static void list_profiles(const char *dir, char *buf, size_t size)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t len = 0;

	buf[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);

		if (n > 5 && strcmp(e->d_name + n - 5, ".json") == 0 && len + n < size) {
			len += (size_t)snprintf(buf + len, size - len, "%s%.*s", len ? ", " : "",
			                        (int)(n - 5), e->d_name);
		}
	}
	closedir(d);
}

int kl_profile_load(const char *dir, const char *name, kl_profile *ret)
{
	char path[4096], names[512];
	char *text = NULL;
	FILE *f;
	long size;
	int r;

	if (!*name || strpbrk(name, "/.\\") || strlen(name) >= 32)
		return kl_error_set(KL_E_INVALID, "bad profile name '%s'", name);
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			return kl_error_set(KL_E_IO, "profile %s: %s", path, strerror(errno));
		list_profiles(dir, names, sizeof(names));
		return kl_error_set(KL_E_NOTFOUND, "unknown profile '%s' (profiles in %s: %s)",
		                    name, dir, names[0] ? names : "none");
	}
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || size > 65536 ||
	    fseek(f, 0, SEEK_SET) < 0) {
		fclose(f);
		return kl_error_set(KL_E_INVALID, "profile %s: unreadable or over 64 KiB", path);
	}
	text = calloc(1, (size_t)size + 1);
	if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		free(text);
		return kl_error_set(KL_E_IO, "profile %s: read failed", path);
	}
	fclose(f);
	r = kl_profile_parse(text, path, ret);
	free(text);
	if (r == 0 && strcmp(ret->name, name) != 0)
		return kl_error_set(KL_E_INVALID, "profile %s names itself '%s'", path, ret->name);
	return r;
}
