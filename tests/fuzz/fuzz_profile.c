/* libFuzzer harness for certificate profiles (ca/profile.c,
 * kl_profile_parse): the input is a profile's JSON text, up to its first
 * NUL byte, as kl_profile_load reads a file. The seeds are ca/profiles/
 * and edge cases.
 *
 * Invariants (abort when broken):
 *   - a refusal is -KL_E_INVALID and names the file;
 *   - what is accepted is what profile.h promises: a non-empty name;
 *     validity either 1..36500 days or the not_after of RFC 5280 §4.1.2.5;
 *     at least one key type, none unknown; a digest of sha256, sha384,
 *     sha512; at least one key usage, and never keyCertSign or cRLSign;
 *     lists of at most KL_PROFILE_MAX_LIST items, every string
 *     terminated; a CPS qualifier only with at least one policy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "fuzz_util.h"
#include "kl_error.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_profile"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static void check_list(int n, int max)
{
	fuzz_check(n >= 0 && n <= max, H, "lists within KL_PROFILE_MAX_LIST");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned all_keys =
	    KL_KEY_EC_P256 | KL_KEY_EC_P384 | KL_KEY_RSA_2048 | KL_KEY_RSA_3072 | KL_KEY_RSA_4096;
	kl_profile p;
	char *text;
	int r;

	text = malloc(size + 1);
	fuzz_check(text != NULL, H, "memory");
	memcpy(text, data, size);
	text[size] = '\0';
	r = kl_profile_parse(text, "fuzz.json", &p);
	free(text);
	if (r < 0) {
		fuzz_check(r == -KL_E_INVALID, H, "refusal: -KL_E_INVALID");
		fuzz_check(strstr(kl_error_detail(), "fuzz.json") != NULL, H,
		           "refusal names the file");
		kl_error_clear();
		return 0;
	}
	fuzz_check(TERMINATED(p.name) && p.name[0], H, "a name");
	fuzz_check(TERMINATED(p.description) && TERMINATED(p.not_after) && TERMINATED(p.digest) &&
	               TERMINATED(p.hw_type) && TERMINATED(p.perm_id_assigner),
	           H, "strings terminated");
	fuzz_check(!p.cps_required || p.n_policies > 0, H, "policy_cps with a policy");
	fuzz_check((p.validity_days >= 1 && p.validity_days <= 36500 && !p.not_after[0]) ||
	               (p.validity_days == 0 && strcmp(p.not_after, "99991231235959Z") == 0),
	           H, "validity: days or no well-defined expiry");
	fuzz_check(p.key_types && !(p.key_types & ~all_keys), H, "known key types");
	fuzz_check(!strcmp(p.digest, "sha256") || !strcmp(p.digest, "sha384") ||
	               !strcmp(p.digest, "sha512"),
	           H, "digest");
	fuzz_check(p.key_usage && !(p.key_usage & (X509v3_KU_KEY_CERT_SIGN | X509v3_KU_CRL_SIGN)),
	           H, "end-entity key usage");
	check_list(p.n_subj_required, KL_PROFILE_MAX_LIST);
	check_list(p.n_subj_allowed, KL_PROFILE_MAX_LIST);
	check_list(p.n_eku, KL_PROFILE_MAX_LIST);
	check_list(p.n_policies, KL_PROFILE_MAX_LIST);
	for (int i = 0; i < p.n_subj_required; i++)
		fuzz_check(TERMINATED(p.subj_required[i]), H, "subject names terminated");
	for (int i = 0; i < p.n_subj_allowed; i++)
		fuzz_check(TERMINATED(p.subj_allowed[i]), H, "subject names terminated");
	for (int i = 0; i < p.n_eku; i++)
		fuzz_check(TERMINATED(p.eku[i]) && p.eku[i][0], H, "EKUs terminated");
	for (int i = 0; i < p.n_policies; i++)
		fuzz_check(TERMINATED(p.policies[i]) && p.policies[i][0], H, "policies terminated");
	kl_error_clear();
	return 0;
}
