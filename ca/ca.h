/* The issuing CA: builds certificates from profiles, lints them, signs them
 * with a key that lives in the HSM (any EVP_PKEY), and records every step.
 *
 * Issuance order (crash-safe):
 *   1. build the TBSCertificate with a fresh random serial
 *   2. store it as PENDING and commit (the serial is now burned forever)
 *   3. lint it against RFC 5280 and the profile; on failure mark it REJECTED:
 *      it is never signed
 *   4. sign it in the HSM
 *   5. verify the signature with the CA certificate's public key and check
 *      that the signed TBSCertificate is byte for byte the stored one
 *   6. mark it ISSUED with the certificate and an audit entry, one commit
 * A process killed between 2 and 6 leaves a PENDING row; kl_ca_open marks
 * such rows abandoned (possibly issued) and they go on the CRL. */
#ifndef KL_CA_CA_H
#define KL_CA_CA_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kl_error.h"
#include "profile.h"
#include "store.h"

typedef struct kl_ca kl_ca;

typedef struct kl_ca_config {
	const char *issuer_name;    /* row in ca_issuer, e.g. "issuing" */
	const char *profiles_dir;   /* directory of NAME.json profiles */
	const char *crl_url;        /* CRL distribution point URI, or NULL */
	const char *cps_url;        /* CPS URI qualifier of the certificate policies, or NULL */
	const char *ca_issuers_url; /* AIA caIssuers URI (the issuing CA's certificate), or NULL */
	const char *ocsp_url;       /* AIA OCSP responder URI; written only when set */
	const char *actor;          /* who runs this CA, for the audit log */
} kl_ca_config;

/* Opens the issuer named in cfg. sign_key signs (an HSM key through libp11
 * or any EVP_PKEY); a reference is taken. Reconciles PENDING rows. */
int kl_ca_open(kl_store *store, const kl_ca_config *cfg, EVP_PKEY *sign_key,
               kl_ca **ret) KL_MUST_CHECK;
void kl_ca_free(kl_ca *ca);

const X509 *kl_ca_cert(const kl_ca *ca);
int64_t kl_ca_issuer_id(const kl_ca *ca);
/* How many PENDING rows kl_ca_open found and abandoned. */
int kl_ca_reconciled(const kl_ca *ca) KL_MUST_CHECK;

typedef struct kl_cert_request {
	const char *profile;       /* profile name */
	EVP_PKEY *pubkey;          /* the subject's public key */
	const char *serial_number; /* subject serialNumber: the device serial */
	const char *cn, *o, *ou, *c;
	/* HardwareModuleName hwSerialNum: for a profile whose hw_serial is
	 * "tpm", the TPM's (kl_devid_tpm_ids, devid.h), else by default
	 * serial_number. */
	const char *hw_serial;
	const char *permanent_id; /* permanentIdentifier identifierValue (devid.h), or NULL */
	const char *actor;        /* who asked; default the CA's actor */
	bool der_only;            /* batch: return only the DER, no X509 object */
} kl_cert_request;

/* Runs the whole issuance order above. On success *ret is the certificate and
 * serial_hex (if not NULL, 41 bytes) its serial. A lint failure returns
 * -KL_E_INVALID with the rule in the error detail. */
int kl_ca_issue(kl_ca *ca, const kl_cert_request *req, X509 **ret, char *serial_hex) KL_MUST_CHECK;

/* Issues up to KL_CA_BATCH_MAX certificates with one PENDING commit and one
 * ISSUED commit for the lot (the order above holds for each). Each result
 * says how its request went; the certificates belong to the caller. Returns
 * 0 when the batch ran (look at each rc), negative when it failed as a whole
 * (then every rc says so and no certificate was returned). */
#define KL_CA_BATCH_MAX 1024
typedef struct kl_issue_result {
	X509 *cert;         /* the issued certificate, or NULL (always NULL with der_only) */
	unsigned char *der; /* its DER (OPENSSL_free it), or NULL */
	size_t der_len;
	char serial[48]; /* the serial reserved for it ("" when none was) */
	int rc;          /* 0, or a negative kl_err */
	char error[256]; /* what went wrong, when rc < 0 */
} kl_issue_result;
int kl_ca_issue_batch(kl_ca *ca, const kl_cert_request *reqs, size_t n,
                      kl_issue_result *res) KL_MUST_CHECK;

/* Issues from a PKCS#10 request: its self-signature must verify; the subject
 * attributes are taken from it (CN, O, OU, C, serialNumber). */
int kl_ca_issue_csr(kl_ca *ca, X509_REQ *csr, const char *profile, const char *actor, X509 **ret,
                    char *serial_hex) KL_MUST_CHECK;

/* RFC 5280 §5.3.1 reason names ("keyCompromise", "superseded", ...) <-> codes. */
int kl_crl_reason_from_name(const char *name) KL_MUST_CHECK;
const char *kl_crl_reason_name(int code);

/* Revokes by serial (hex, any case, leading zeros allowed) with an RFC 5280
 * reason code; audited. */
int kl_ca_revoke(kl_ca *ca, const char *serial_hex, int reason, const char *actor) KL_MUST_CHECK;

/* Builds and signs a full CRL (RFC 5280 §5) of every revoked, unexpired
 * certificate, with a new CRL number, thisUpdate now and nextUpdate after
 * next_update_s seconds; returns its DER. Audited. */
int kl_ca_crl(kl_ca *ca, int64_t next_update_s, const char *actor, unsigned char **der,
              size_t *len) KL_MUST_CHECK;

/* Lints a certificate (signed or not) against RFC 5280 essentials and a
 * profile. Returns 0, or -KL_E_INVALID with "rule-name: explanation". */
int kl_lint_cert(const X509 *x, const kl_profile *p, const X509 *issuer) KL_MUST_CHECK;

/* Lowercase hex of a serial without leading zeros. */
int kl_serial_hex(const ASN1_INTEGER *serial, char *out, size_t size) KL_MUST_CHECK;

#endif
