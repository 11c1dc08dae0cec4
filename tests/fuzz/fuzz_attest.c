/* libFuzzer harness for what a DUT answers in provisioning steps 8 and 9:
 * the TPMS_ATTEST of a TPM2_CertifyCreation, the creation data it covers,
 * and the public areas of the identity keys
 * (station/tpm/tpm_mu.c unmarshals them, station/proof/attest.c checks
 * them).
 *
 * The input is six parts (fuzz_util.h): the TPMS_ATTEST bytes, the DER
 * ECDSA signature over them, the IAK's public area (TPMT_PUBLIC), the
 * IDevID's, the station's nonce, and the IDevID's TPMS_CREATION_DATA (an
 * endorsement primary's when the part is empty). The names the station
 * would compute are SHA-256 names of the two areas; the IAK's key is the one
 * of its area (a fixed P-256 key when the area holds none). The seeds from
 * the swtpm floor are real CertifyCreation answers, which verify.
 *
 * A mutated TPMS_ATTEST no longer matches its signature, so the harness
 * also signs the bytes with a key of its own and verifies them again: the
 * checks after the signature see every input. Invariants (abort when
 * broken):
 *   - a check returns 0 exactly when its verdict is OK, else -KL_E_CRYPTO,
 *     and the verdict is a known one;
 *   - an area that passes as an IAK fails as an IDevID on its attributes,
 *     and the other way round (restricted is the difference);
 *   - unmarshalling reports no more bytes used than it was given;
 *   - a verified CertifyCreation names the IDevID it was checked against;
 *   - with the harness's own signature the verdict is never bad-signature,
 *     and it is the verdict of the given signature whenever that one
 *     verified: no check after the signature depends on the key. */
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "attest.h"
#include "fuzz_util.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "tpm_mu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_attest"

static EVP_PKEY *own; /* signs what the DUT sent, to get past the signature */

static void check_area(const fuzz_part *a, kl_attest_key_kind kind)
{
	kl_attest_verdict v = KL_ATTEST__MAX, other = KL_ATTEST__MAX;
	int r;

	r = kl_attest_check_public(a->p, a->n, kind, &v);
	fuzz_check(v < KL_ATTEST__MAX, H, "public area: known verdict");
	fuzz_check((r == 0) == (v == KL_ATTEST_OK), H, "public area: 0 iff ok");
	fuzz_check(r == 0 || r == -KL_E_CRYPTO, H, "public area: -KL_E_CRYPTO");
	fuzz_check(strcmp(kl_attest_verdict_name(v), "?") != 0, H, "verdict name");
	if (r < 0)
		return;
	kind = kind == KL_ATTEST_KEY_IAK ? KL_ATTEST_KEY_IDEVID : KL_ATTEST_KEY_IAK;
	r = kl_attest_check_public(a->p, a->n, kind, &other);
	fuzz_check(r == -KL_E_CRYPTO && other == KL_ATTEST_PUB_ATTRIBUTES, H,
	           "an IAK is not an IDevID, nor the other way round");
}

/* The station's name of an object: nameAlg SHA-256 || SHA-256(area). */
static void area_name(const fuzz_part *a, kl_tpm_name *n)
{
	unsigned int len = 0;

	n->buf[0] = 0x00;
	n->buf[1] = 0x0b;
	fuzz_check(EVP_Digest(a->p, a->n, n->buf + 2, &len, EVP_sha256(), NULL) == 1, H, "SHA-256");
	n->len = 2 + len;
}

/* The IAK's key from its area, or NULL. */
static EVP_PKEY *area_key(const fuzz_part *a)
{
	kl_tpm_public p;
	EVP_PKEY *k = NULL;
	size_t used = 0;

	if (kl_tpm_public_unmarshal(a->p, a->n, &p, &used, NULL) < 0)
		return NULL;
	fuzz_check(used <= a->n, H, "TPMT_PUBLIC: used <= len");
	if (kl_tpm_public_key(&p, &k) < 0)
		return NULL;
	return k;
}

static int verify(const fuzz_part *att, const unsigned char *sig, size_t sig_len, EVP_PKEY *key,
                  const kl_tpm_name *iak, const kl_tpm_name *idevid, const fuzz_part *nonce,
                  const fuzz_part *cd, kl_attest_report *rep)
{
	int r = kl_attest_verify_creation(att->p, att->n, sig, sig_len, key, iak, idevid, cd->p,
	                                  cd->n, nonce->p, nonce->n, rep);

	fuzz_check(rep->verdict < KL_ATTEST__MAX, H, "CertifyCreation: known verdict");
	fuzz_check((r == 0) == (rep->verdict == KL_ATTEST_OK), H, "CertifyCreation: 0 iff ok");
	fuzz_check(r == 0 || r == -KL_E_CRYPTO, H, "CertifyCreation: -KL_E_CRYPTO");
	if (r == 0)
		fuzz_check(rep->certified_name.len == idevid->len &&
		               memcmp(rep->certified_name.buf, idevid->buf, idevid->len) == 0,
		           H, "CertifyCreation: names the IDevID");
	return r;
}

static size_t sign_own(const fuzz_part *att, unsigned char *sig, size_t size)
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t len = size;

	fuzz_check(ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, own) == 1 &&
	               EVP_DigestSign(ctx, sig, &len, att->p, att->n) == 1,
	           H, "sign");
	return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t zero_nonce[32];
	/* TPMS_CREATION_DATA of an endorsement primary (Part 3 §24.1): no PCR,
	 * pcrDigest = SHA-256(""), locality 0, parentNameAlg NULL, parent
	 * and qualified parent TPM_RH_ENDORSEMENT, no outsideInfo */
	static const uint8_t primary_cd[] = {
		0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14,
		0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
		0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55, 0x01, 0x00, 0x10, 0x00,
		0x04, 0x40, 0x00, 0x00, 0x0b, 0x00, 0x04, 0x40, 0x00, 0x00, 0x0b, 0x00, 0x00,
	};
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *iak_pub = NULL;
	fuzz_part in[6], nonce, cd;
	kl_tpm_creation_data c;
	kl_tpm_name iak_name, idevid_name;
	kl_attest_report given, mine;
	kl_tpm_attest a;
	unsigned char sig[128];
	size_t used = 0, sig_len;
	uint32_t mu_rc = 0;

	if (!own) {
		own = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		fuzz_check(own != NULL, H, "P-256 key");
	}
	fuzz_split(data, size, in, 6);

	check_area(&in[2], KL_ATTEST_KEY_IAK);
	check_area(&in[3], KL_ATTEST_KEY_IDEVID);

	if (kl_tpm_attest_unmarshal(in[0].p, in[0].n, &a, &used, &mu_rc) == 0)
		fuzz_check(used <= in[0].n && mu_rc == 0 &&
		               a.qualified_signer.len <= KL_TPM2B_NAME_MAX &&
		               a.extra_len <= KL_TPM2B_DATA_MAX &&
		               a.certified_name.len <= KL_TPM2B_NAME_MAX &&
		               a.certified_qualified_name.len <= KL_TPM2B_NAME_MAX &&
		               a.creation_name.len <= KL_TPM2B_NAME_MAX &&
		               a.creation_hash_len <= KL_TPM2B_DIGEST_MAX,
		           H, "TPMS_ATTEST: sizes");
	else
		fuzz_check(mu_rc != 0, H, "TPMS_ATTEST: tss2-mu code on failure");
	cd = in[5].n ? in[5] : (fuzz_part){ primary_cd, sizeof(primary_cd) };
	used = 0;
	if (kl_tpm_creation_data_unmarshal(cd.p, cd.n, &c, &used, &mu_rc) == 0)
		fuzz_check(used <= cd.n && c.parent_name.len <= KL_TPM2B_NAME_MAX &&
		               c.parent_qualified_name.len <= KL_TPM2B_NAME_MAX,
		           H, "TPMS_CREATION_DATA: sizes");
	else
		fuzz_check(mu_rc != 0, H, "TPMS_CREATION_DATA: tss2-mu code on failure");

	area_name(&in[2], &iak_name);
	area_name(&in[3], &idevid_name);
	/* The station's nonce is 1..64 bytes; other lengths are a caller's
	 * bug, refused before anything is read. */
	nonce = in[4];
	if (nonce.n == 0 || nonce.n > KL_TPM2B_DATA_MAX)
		nonce = (fuzz_part){ zero_nonce, sizeof(zero_nonce) };

	iak_pub = area_key(&in[2]);
	(void)verify(&in[0], in[1].p, in[1].n, iak_pub ? iak_pub : own, &iak_name, &idevid_name,
	             &nonce, &cd, &given);

	sig_len = sign_own(&in[0], sig, sizeof(sig));
	(void)verify(&in[0], sig, sig_len, own, &iak_name, &idevid_name, &nonce, &cd, &mine);
	fuzz_check(mine.verdict != KL_ATTEST_BAD_SIGNATURE, H, "own signature verifies");
	fuzz_check(given.verdict == KL_ATTEST_BAD_SIGNATURE || given.verdict == mine.verdict, H,
	           "the verdict does not depend on the key");
	kl_error_clear();
	return 0;
}
