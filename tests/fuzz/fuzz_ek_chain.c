/* libFuzzer harness for the EK chain a DUT keeps in its EK chain indices
 * (0x01C00100..., station/proof/trust.c): the input is parts (fuzz_util.h),
 * the EK certificate's NV bytes and then up to four chain indices' bytes,
 * checked for a TPM that reports manufacturer IBM against two bundles made
 * at start-up from tests/fuzz/data/trust:
 *
 *   - the floor vendor's root only (its issuing CA must come from the
 *     input), with a quirk table that accepts id:00001014 for that root;
 *   - a root of the harness's own, whose key signs nothing.
 *
 * The seeds are a floor DUT's EK certificates with the vendor's issuing CA
 * as one or two chain indices, padded, concatenated, next to junk.
 *
 * Invariants (abort when broken):
 *   - the check runs (0) and records a known verdict, with a reason when it
 *     refuses, and terminates (the replay driver and libFuzzer time out);
 *   - an accepted chain runs from the EK certificate to the vendor root,
 *     which came from the bundle, and every link said to come from NV names
 *     an index of the input;
 *   - an accepted certificate names IBM, or id:00001014 with the quirk;
 *   - nothing is accepted under the harness's own root: what the TPM
 *     stores is never an anchor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fuzz_util.h"
#include "kl_error.h"
#include "kl_hex.h"
#include "quirks.h"
#include "trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_ek_chain"

#define IBM       0x49424d00u
#define N_NV      4
#define UNDECIDED KL_EK_TPM_ERROR

static kl_trust *vendor; /* the floor vendor's root, and a quirk */
static kl_trust *own;    /* a root whose key signs nothing */
static unsigned char vendor_root[32];

/* A bundle in a scratch directory: the PEM text of root, and a quirk table
 * for it when quirk. */
static kl_trust *bundle(X509 *root, int quirk)
{
	char dir[] = "/tmp/kl-fuzz-ekchain.XXXXXX", path[64], fp[65];
	kl_trust *t = NULL;
	FILE *f;

	fuzz_check(mkdtemp(dir) != NULL, H, "scratch directory");
	snprintf(path, sizeof(path), "%s/root.pem", dir);
	f = fopen(path, "we");
	fuzz_check(f && PEM_write_X509(f, root) == 1 && fclose(f) == 0, H, "root.pem");
	if (quirk) {
		fuzz_check(kl_x509_fingerprint(root, fp) == 0, H, "fingerprint");
		snprintf(path, sizeof(path), "%s/quirks.json", dir);
		f = fopen(path, "we");
		fuzz_check(f != NULL, H, "quirks.json");
		fprintf(f,
		        "{\"version\": 1, \"quirks\": [{\"id\": \"q\", \"kind\": \"manufacturer\", "
		        "\"root_sha256\": \"%s\", \"cert_manufacturer\": \"id:00001014\", "
		        "\"tpm_manufacturer\": \"id:49424D00\", \"meaning\": \"m\", "
		        "\"source\": \"s\"}]}\n",
		        fp);
		fuzz_check(fclose(f) == 0, H, "quirks.json");
	}
	fuzz_check(kl_trust_load(dir, &t) == 0, H, "bundle");
	remove(path);
	snprintf(path, sizeof(path), "%s/root.pem", dir);
	remove(path);
	remove(dir);
	return t;
}

static void setup(void)
{
	char path[4096];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *root, *mine = X509_new();
	X509_NAME *name = X509_NAME_new();
	FILE *f;

	snprintf(path, sizeof(path), "%s/trust/root.pem", fuzz_data_dir());
	f = fopen(path, "re");
	root = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	fuzz_check(root != NULL, H, "data/trust/root.pem (set KL_FUZZ_DATA)");
	fuzz_check(X509_digest(root, EVP_sha256(), vendor_root, NULL) == 1, H, "digest");
	vendor = bundle(root, 1);
	X509_free(root);

	fuzz_check(key && mine && name &&
	               X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                          (const unsigned char *)"fuzz chain root", -1, -1,
	                                          0) == 1 &&
	               X509_set_version(mine, X509_VERSION_3) == 1 &&
	               X509_set_subject_name(mine, name) == 1 &&
	               X509_set_issuer_name(mine, name) == 1 &&
	               ASN1_TIME_set_string(X509_getm_notBefore(mine), "20000101000000Z") == 1 &&
	               ASN1_TIME_set_string(X509_getm_notAfter(mine), "99991231235959Z") == 1 &&
	               X509_set_pubkey(mine, key) == 1 && X509_sign(mine, key, EVP_sha256()) > 0,
	           H, "own root");
	own = bundle(mine, 0);
	X509_NAME_free(name);
	X509_free(mine);
	EVP_PKEY_free(key);
}

static void report_new(kl_ek_report *rep, const fuzz_part *parts, size_t n)
{
	memset(rep, 0, sizeof(*rep));
	rep->type = KL_EK_RSA2048;
	rep->verdict = UNDECIDED;
	rep->cert_der = malloc(parts[0].n ? parts[0].n : 1);
	fuzz_check(rep->cert_der != NULL, H, "memory");
	memcpy(rep->cert_der, parts[0].p, parts[0].n);
	rep->cert_len = parts[0].n;
	for (size_t i = 1; i < n; i++) {
		unsigned char *d;

		if (parts[i].n == 0)
			continue;
		d = malloc(parts[i].n);
		fuzz_check(d != NULL, H, "memory");
		memcpy(d, parts[i].p, parts[i].n);
		fuzz_check(kl_ek_report_add_nv(rep, KL_EK_CHAIN_NV_FIRST + (uint32_t)(i - 1), d,
		                               parts[i].n) == 0,
		           H, "add an index");
	}
}

static void check(const kl_ek_report *rep)
{
	fuzz_check(rep->verdict != UNDECIDED, H, "a verdict is recorded");
	fuzz_check(rep->verdict <= KL_EK_CHAIN_MALFORMED, H, "known verdict");
	fuzz_check(rep->verdict == KL_EK_OK || rep->reason[0], H, "a refusal says why");
	fuzz_check(memchr(rep->reason, '\0', sizeof(rep->reason)) &&
	               memchr(rep->quirk, '\0', sizeof(rep->quirk)),
	           H, "strings terminated");
	fuzz_check(rep->verdict == KL_EK_OK || rep->quirk[0] == '\0', H,
	           "a refusal names no quirk");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_part parts[1 + N_NV];
	kl_ek_report rep;

	if (!vendor)
		setup();
	fuzz_split(data, size, parts, 1 + N_NV);

	report_new(&rep, parts, 1 + N_NV);
	fuzz_check(kl_ek_cert_verify(vendor, IBM, "IBM", &rep) == 0, H, "the check runs");
	check(&rep);
	if (rep.verdict == KL_EK_OK) {
		const struct kl_ek_link *top = &rep.chain[rep.chain_len - 1];

		fuzz_check(rep.chain_len >= 2, H, "accepted: a chain");
		fuzz_check(top->from_bundle && memcmp(top->sha256, vendor_root, 32) == 0, H,
		           "accepted: ends at the bundle's root");
		for (size_t i = 1; i < rep.chain_len; i++) {
			int named = rep.chain[i].nv_index == 0;

			for (size_t j = 0; j < rep.n_nv; j++)
				named |= rep.chain[i].nv_index == rep.nv[j].index;
			fuzz_check(named, H, "accepted: NV links name an index of the input");
		}
		fuzz_check(strcasecmp(rep.manufacturer, "id:49424D00") == 0
		               ? rep.quirk[0] == '\0'
		               : strcasecmp(rep.manufacturer, "id:00001014") == 0 &&
		                     strcmp(rep.quirk, "q") == 0,
		           H, "accepted: IBM, or the quirk's value with the quirk");
	}
	kl_ek_report_clear(&rep);

	report_new(&rep, parts, 1 + N_NV);
	fuzz_check(kl_ek_cert_verify(own, IBM, "IBM", &rep) == 0, H, "the check runs (own)");
	check(&rep);
	fuzz_check(rep.verdict != KL_EK_OK, H, "NV certificates are never anchors");
	kl_ek_report_clear(&rep);
	kl_error_clear();
	return 0;
}
