/* libFuzzer harness for the credential blob of provisioning step 8
 * (station/proof/credential.c): kl_credential_new, which takes marshalled
 * bytes made elsewhere, and the software ActivateCredential that tests and
 * tools use to open them, with the EK private keys of tests/fuzz/data
 * (ek-rsa2048.pem, ek-p256.pem, ek-p384.pem: test keys, no TPM's).
 *
 * The input is five parts (fuzz_util.h): one byte whose value mod 3 is the
 * EK type (RSA 2048, P-256, P-384), the credentialBlob (TPM2B_ID_OBJECT),
 * the secret (TPM2B_ENCRYPTED_SECRET), the TPM name of the object the
 * credential is for, and a plaintext credential. The floor's seeds are
 * real TPM2_MakeCredential answers of a swtpm DUT for these keys and the
 * DUT's IAK name (they open), and what the station sends for the DUT's own
 * EKs (they do not open here: integrity failure).
 *
 * Invariants (abort when broken):
 *   - kl_credential_new accepts exactly one whole TPM2B each (size field =
 *     the bytes that follow) and keeps the bytes as given; otherwise
 *     -KL_E_INVALID;
 *   - activation gives 1..kl_credential_max_len(type) bytes, or
 *     -KL_E_INVALID / -KL_E_CRYPTO;
 *   - a credential the station makes from the plaintext and the name (when
 *     both are acceptable) opens to that plaintext; a plaintext longer than
 *     the EK's digest, or a malformed name, is refused with -KL_E_INVALID. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "credential.h"
#include "fuzz_util.h"
#include "kl_cleanup.h"
#include "kl_error.h"
#include "kl_secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H "fuzz_credential"

static EVP_PKEY *ek[KL_EK__MAX];

static void setup(void)
{
	for (int t = 0; t < KL_EK__MAX; t++) {
		char path[4096];
		FILE *f;

		snprintf(path, sizeof(path), "%s/ek-%s.pem", fuzz_data_dir(),
		         kl_ek_type_name((kl_ek_type)t));
		f = fopen(path, "re");
		if (f)
			ek[t] = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		if (!ek[t]) {
			fprintf(stderr, H ": cannot read %s (set KL_FUZZ_DATA)\n", path);
			abort();
		}
		fclose(f);
	}
}

static size_t get16(const uint8_t *p)
{
	return (size_t)p[0] << 8 | p[1];
}

static bool whole_tpm2b(const fuzz_part *b)
{
	return b->n >= 2 && get16(b->p) == b->n - 2;
}

static void check_activated(int r, const kl_secret *s, kl_ek_type type)
{
	if (r == 0)
		fuzz_check(s && s->len >= 1 && s->len <= kl_credential_max_len(type), H,
		           "activation: 1..digest bytes");
	else
		fuzz_check(r == -KL_E_INVALID || r == -KL_E_CRYPTO, H,
		           "activation: -KL_E_INVALID or -KL_E_CRYPTO");
}

/* The station's MakeCredential of the plaintext for the name opens again. */
static void round_trip(kl_ek_type type, const fuzz_part *plain, const kl_tpm_name *name,
                       bool name_ok)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;
	kl_credential *c = NULL;
	int r;

	if (plain->n == 0)
		return;
	r = kl_make_credential(ek[type], type, plain->p, plain->n, name, &c);
	if (plain->n > kl_credential_max_len(type) || !name_ok) {
		fuzz_check(r == -KL_E_INVALID, H, "make: refuses a bad plaintext or name");
		return;
	}
	fuzz_check(r == 0, H, "make: a good plaintext and name");
	r = kl_activate_credential_soft(ek[type], type, name, c, &got);
	fuzz_check(r == 0 && got->len == plain->n && memcmp(got->data, plain->p, plain->n) == 0, H,
	           "make then activate gives the plaintext back");
	kl_credential_free(c);
}

/* What check_name in credential.c accepts: a nameAlg it knows followed by
 * a digest of that size. */
static bool name_valid(const kl_tpm_name *n)
{
	if (n->len < 2)
		return false;
	switch (get16(n->buf)) {
	case 0x0004:
		return n->len == 22;
	case 0x000b:
	case 0x0012:
		return n->len == 34;
	case 0x000c:
		return n->len == 50;
	case 0x000d:
		return n->len == 66;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(kl_secret_freep) kl_secret *got = NULL;
	kl_credential *c = NULL;
	fuzz_part in[5];
	kl_tpm_name name = { 0 };
	kl_ek_type type;
	int r;

	if (!ek[0])
		setup();
	fuzz_split(data, size, in, 5);
	type = (kl_ek_type)(in[0].n ? in[0].p[0] % KL_EK__MAX : 0);
	name.len = in[3].n < KL_TPM_NAME_MAX ? in[3].n : KL_TPM_NAME_MAX;
	memcpy(name.buf, in[3].p, name.len);

	r = kl_credential_new(in[1].p, in[1].n, in[2].p, in[2].n, &c);
	if (r == 0) {
		fuzz_check(whole_tpm2b(&in[1]) && whole_tpm2b(&in[2]), H, "new: whole TPM2Bs");
		fuzz_check(c->blob_len == in[1].n && memcmp(c->blob, in[1].p, in[1].n) == 0 &&
		               c->secret_len == in[2].n && memcmp(c->secret, in[2].p, in[2].n) == 0,
		           H, "new: the bytes as given");
		r = kl_activate_credential_soft(ek[type], type, &name, c, &got);
		check_activated(r, got, type);
		kl_credential_free(c);
	} else {
		fuzz_check(r == -KL_E_INVALID, H, "new: -KL_E_INVALID");
	}
	round_trip(type, &in[4], &name, name_valid(&name));
	kl_error_clear();
	return 0;
}
