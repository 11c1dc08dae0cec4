/* The TPM's identifiers in a device identity certificate, after TCG "TPM
 * 2.0 Keys for Device Identity and Attestation" v1.00 r12 §8 (IDevID/IAK
 * subjectAltName), for a TPM that has an EK certificate:
 *
 *   hardwareModuleName (RFC 4108) hwSerialNum: three ASCII values joined by
 *   ':' in this order: the TCG TPM manufacturer code, the EK certificate's
 *   authority key identifier and the EK certificate's serial number. Keyline
 *   writes the manufacturer as the 8 hex digits of the EK certificate's
 *   tcg-at-tpmManufacturer ("id:49424D00" -> "49424D00") and the other two
 *   as uppercase hex of their octets: "49424D00:1A2B...:05F3...".
 *
 *   permanentIdentifier (RFC 4043) identifierValue: the SHA-256 of the EK
 *   certificate's DER in (uppercase) hex, with assigner tcg-on-ekPermIdSha256
 *   (2.23.133.12.1).
 *
 * The same values can be read back from a certificate issued that way, so
 * that a renewed identity names the same TPM as the one it supersedes. */
#ifndef KL_CA_DEVID_H
#define KL_CA_DEVID_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "kl_error.h"

#define KL_DEVID_OID_TPM20      "2.23.133.1.2"  /* tcg-tpm20 (hwType) */
#define KL_DEVID_OID_EK_PERM_ID "2.23.133.12.1" /* tcg-on-ekPermIdSha256 */
#define KL_DEVID_OID_HWMN       "1.3.6.1.5.5.7.8.4"
#define KL_DEVID_OID_PERM_ID    "1.3.6.1.5.5.7.8.3"
#define KL_DEVID_HW_SERIAL_MAX  160
#define KL_DEVID_PERM_ID_MAX    65

typedef struct kl_devid_tpm_ids {
	char hw_serial[KL_DEVID_HW_SERIAL_MAX];  /* hwSerialNum */
	char permanent_id[KL_DEVID_PERM_ID_MAX]; /* permanentIdentifier identifierValue */
} kl_devid_tpm_ids;

/* From the EK certificate as the TPM holds it (der, len: NV bytes; anything
 * after the certificate's own DER is ignored). -KL_E_INVALID names what the
 * certificate lacks (tcg-at-tpmManufacturer, authority key identifier). */
int kl_devid_tpm_ids_from_ek(const unsigned char *der, size_t len,
                             kl_devid_tpm_ids *ret) KL_MUST_CHECK;

/* From a certificate that carries them (an IDevID or IAK Keyline issued).
 * -KL_E_NOTFOUND when it has no hardwareModuleName. The permanent
 * identifier is "" when the certificate has none. */
int kl_devid_tpm_ids_from_cert(const X509 *x, kl_devid_tpm_ids *ret) KL_MUST_CHECK;

/* Whether s is n uppercase hex digits. */
bool kl_devid_hex_ok(const unsigned char *s, size_t n);
/* Whether s has the hwSerialNum form above (hex digits, two colons). */
bool kl_devid_hw_serial_ok(const unsigned char *s, size_t len);

/* The fields of an otherName value of each kind; the outputs are the
 * caller's to free. -KL_E_INVALID when the value is malformed. */
int kl_devid_parse_hwmn(const ASN1_TYPE *v, ASN1_OBJECT **hw_type,
                        ASN1_OCTET_STRING **hw_serial) KL_MUST_CHECK;
int kl_devid_parse_perm_id(const ASN1_TYPE *v, ASN1_UTF8STRING **value,
                           ASN1_OBJECT **assigner) KL_MUST_CHECK;

#endif
