/* Private to station/tpm/: what a kl_tpm_object is, for the files that drive
 * TPM commands with one (tpm_object.c creates them, tpm_activate.c activates
 * a credential for one, tpm_certify.c certifies and signs, tpm_persist.c
 * persists and loads them back). tpm2-tss types stay in station/tpm/. */
#ifndef KL_STATION_TPM_OBJECT_INTERNAL_H
#define KL_STATION_TPM_OBJECT_INTERNAL_H

#include <stdbool.h>

#include <openssl/evp.h>
#include <tss2/tss2_esys.h>

#include "kl_error.h"
#include "tpm.h"
#include "tpm_object.h"

/* What the TPM returned when it created an object (Part 3 §24.1, §12.1):
 * the input of TPM2_CertifyCreation. */
struct kl_tpm_creation {
	bool present; /* false for an object loaded back, not created */
	TPM2B_DIGEST hash;
	TPMT_TK_CREATION ticket;
	unsigned char data[sizeof(TPMS_CREATION_DATA)]; /* marshalled TPMS_CREATION_DATA */
	size_t data_len;
};

struct kl_tpm_object {
	kl_tpm *tpm;
	unsigned generation; /* the ESAPI context of tpm it belongs to */
	ESYS_TR handle;
	kl_tpm_key_type type;
	TPMT_PUBLIC pub; /* as the TPM returned it, checked against the template */
	kl_tpm_name name;
	EVP_PKEY *key;
	/* A persistent object loaded back by kl_tpm_persistent_load: its
	 * ESYS_TR is closed, not flushed, and it is not a transient slot. */
	bool persistent;
	struct kl_tpm_creation creation;
	/* Loaded back with the station's template from before the TCG ones
	 * (kl_tpm_key_template_legacy). */
	bool legacy;
};

/* Whether o is an object of t. */
static inline bool tpm_object_of(const kl_tpm *t, const kl_tpm_object *o)
{
	return t && o && o->tpm == t;
}

/* The template of a key type (tpm_object.c). Returns 0 or -KL_E_INVALID. */
int kl_tpm_key_template(kl_tpm_key_type type, TPMT_PUBLIC *ret) KL_MUST_CHECK;

/* The identity key templates the station made before it followed the DevID
 * spec's (no adminWithPolicy, no authPolicy): accepted when a persisted key
 * is loaded back, never used to create one (tpm_object.c). */
int kl_tpm_key_template_legacy(kl_tpm_key_type type, TPMT_PUBLIC *ret) KL_MUST_CHECK;

/* Checks a public area the TPM returned against the template it was made
 * from: everything but `unique` equal, `unique` a P-256 point (tpm_object.c).
 * Returns 0 or -KL_E_TPM. */
int kl_tpm_key_check_public(kl_tpm_key_type type, const TPMT_PUBLIC *want,
                            const TPMT_PUBLIC *got) KL_MUST_CHECK;

#endif
