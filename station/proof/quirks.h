/* The vendor-quirk table: known, documented deviations of real EK
 * certificates from what the station checks, as data. A trust bundle
 * directory may hold one as quirks.json (docs/provisioning.md, "Vendor
 * quirks"); kl_trust_load reads it with the certificates.
 *
 * A quirk only ever relaxes the comparison it names, and only for EK
 * certificates whose chain verified to the root it names (by SHA-256 of
 * the root certificate's DER): the chain, the signatures over the bytes as
 * read and the EK EKU are checked exactly as without it. Today there is
 * one kind, "manufacturer": the certificate's tcg-at-tpmManufacturer
 * (TCG EK Credential Profile §3.2.9) is accepted as another value for a
 * TPM whose TPM_PT_MANUFACTURER is the one named.
 *
 *   {
 *     "version": 1,
 *     "quirks": [
 *       { "id": "swtpm-localca-manufacturer",
 *         "kind": "manufacturer",
 *         "root_sha256": "<64 hex digits>",
 *         "cert_manufacturer": "id:00001014",
 *         "tpm_manufacturer": "id:49424D00",
 *         "meaning": "...", "source": "https://..." } ] }
 *
 * Every member is required, none other is accepted, ids are unique. */
#ifndef KL_STATION_QUIRKS_H
#define KL_STATION_QUIRKS_H

#include <stddef.h>
#include <stdint.h>

#include "kl_error.h"

typedef struct kl_quirks kl_quirks;

/* The limits of a table: it is the operator's file, but a typo must not
 * make the station read a gigabyte. */
#define KL_QUIRKS_MAX_BYTES   65536
#define KL_QUIRKS_MAX_ENTRIES 64
#define KL_QUIRK_ID_MAX       63

/* Parses a table from text (len bytes). Errors (-KL_E_INVALID) name the
 * entry and the member; origin names the file in them. */
int kl_quirks_parse(const char *text, size_t len, const char *origin,
                    kl_quirks **ret) KL_MUST_CHECK;

/* Reads and parses path; sha256, when not NULL, receives the SHA-256 of the
 * bytes parsed (read once: what is parsed is what is hashed).
 * -KL_E_NOTFOUND when there is no such file. */
int kl_quirks_load(const char *path, kl_quirks **ret, unsigned char sha256[32]) KL_MUST_CHECK;

void kl_quirks_free(kl_quirks *q);

size_t kl_quirks_count(const kl_quirks *q);

/* The id of the quirk that explains an EK certificate naming TPM
 * manufacturer cert_manufacturer ("id:00001014", compared without regard
 * to case) for a TPM whose TPM_PT_MANUFACTURER is tpm_manufacturer, when
 * its chain verified to the root whose certificate has that SHA-256. NULL
 * when none does (and for q NULL). */
const char *kl_quirks_explain_manufacturer(const kl_quirks *q, const unsigned char root_sha256[32],
                                           const char *cert_manufacturer,
                                           uint32_t tpm_manufacturer);

#endif
