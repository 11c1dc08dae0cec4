/* The station's link to a DUT's TPM 2.0.
 *
 * This is the one place in Keyline that talks tpm2-tss (ESAPI over a TCTI).
 * Nothing of tpm2-tss leaves it: callers see an opaque kl_tpm handle, plain C
 * types, OpenSSL keys and kl_err codes whose detail string keeps the
 * Tss2_RC_Decode text and the raw TSS2_RC in hex.
 *
 *   kl_tpm *t;
 *   if (kl_tpm_open("swtpm:host=127.0.0.1,port=2321", &t) < 0)
 *           ... kl_error_detail() says why ...
 *   kl_tpm_nv_read(t, kl_ek_type_nv_index(KL_EK_P256), &der, &len);  // tpm_nv.h
 *   kl_tpm_ek_public(t, KL_EK_P256, &ek);
 *   kl_tpm_free(t);
 *
 * This header is the link and the TPM as a whole (tpm.c) and the
 * endorsement keys (ek_template.c, tpm_ek.c). The TPM's objects and all
 * their templates are in tpm_object.h, credential activation in
 * tpm_activate.h, TPM2_Certify and TPM2_Sign in tpm_certify.h, persistent
 * objects in tpm_persist.h, NV indices in tpm_nv.h, and the TPM's
 * structures as plain C, for the software checks of station/proof/, in
 * tpm_mu.h.
 *
 * A kl_tpm is not thread-safe: one thread drives one DUT. Every transient
 * object the station creates is flushed before the call that created it
 * returns, or at the latest by kl_tpm_free: swtpm has no resource manager and
 * holds only three transient objects.
 *
 * tpm2-tss logs to stderr on its own; kl_tpm_open turns that off unless the
 * user has set TSS2_LOG (e.g. TSS2_LOG=esys+debug,tcti+trace). */
#ifndef KL_STATION_TPM_H
#define KL_STATION_TPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "kl_error.h"

typedef struct kl_tpm kl_tpm;
struct kl_link_conn; /* link_conn.h: a keyline-agent link */

/* How long the station waits for the TPM's answer to one command, when the
 * caller does not say: above what a discrete TPM needs for the slowest
 * command of the flow (deriving an RSA-2048 primary from its seed takes
 * seconds on some parts), far below "forever" on a factory line. */
#define KL_TPM_TIMEOUT_MS_DEFAULT 30000
#define KL_TPM_TIMEOUT_MS_MIN     100
#define KL_TPM_TIMEOUT_MS_MAX     600000

/* How the link behaves: a deadline per TPM command (sending it, the TPM's
 * work and its whole answer) and a predicate that, when it turns true,
 * stops a command that is waiting (asked every 50 ms while waiting). */
typedef struct kl_tpm_link_opts {
	int timeout_ms;               /* 0: KL_TPM_TIMEOUT_MS_DEFAULT */
	bool (*cancelled)(void *ctx); /* may be NULL */
	void *cancel_ctx;
} kl_tpm_link_opts;

/* Connects to a TPM through a TCTI configuration string:
 * "swtpm:host=127.0.0.1,port=2321" goes through the station's own TCTI
 * (tpm_link.c), which bounds every command by opts->timeout_ms and
 * honours opts->cancelled; anything else ("device:/dev/tpmrm0") through
 * tpm2-tss's TCTI loader, whose TCTIs block without a bound.
 * No TPM2_Startup is sent; a TPM that answers TPM_RC_INITIALIZE is started
 * (Startup(CLEAR)) once, on the first command that reports it.
 * Returns 0, -KL_E_IO when the link cannot be opened, -KL_E_TIMEOUT when
 * the TPM did not answer in time, -KL_E_INVALID for a bad configuration
 * or timeout, -KL_E_TPM otherwise. opts may be NULL (the defaults). */
int kl_tpm_open_link(const char *tcti_conf, const kl_tpm_link_opts *opts,
                     kl_tpm **ret) KL_MUST_CHECK;

/* Opens the TPM of a DUT whose keyline-agent is on the link c (after the
 * handshake, link_listen.h): the station's in-process TCTI (tpm_agent.c)
 * sends each TPM command as a TPM_COMMAND frame and takes its
 * TPM_RESPONSE, with the same guarantees as kl_tpm_open_link's swtpm:
 * links (a deadline per command, the cancel predicate asked every 50 ms,
 * a TCTI I/O error and a dead link on timeout or garbage). A link that
 * closes leaves the state KL_TPM_LINK_LOST. c stays the caller's (it sends
 * the verdict afterwards) and must outlive the kl_tpm. */
int kl_tpm_open_agent(struct kl_link_conn *c, const kl_tpm_link_opts *opts,
                      kl_tpm **ret) KL_MUST_CHECK;

/* kl_tpm_open_link with the default options. */
int kl_tpm_open(const char *tcti_conf, kl_tpm **ret) KL_MUST_CHECK;

/* What became of the link: a command that timed out or was cancelled, or
 * an answer that was not a TPM response, leaves it dead (every later
 * command fails at once without I/O). */
typedef enum kl_tpm_link_state {
	KL_TPM_LINK_OK,
	KL_TPM_LINK_TIMEOUT,   /* the TPM did not answer in time */
	KL_TPM_LINK_CANCELLED, /* the cancel predicate stopped a command */
	KL_TPM_LINK_BROKEN,    /* the answer was not a TPM response */
	KL_TPM_LINK_LOST,      /* an agent link closed, reset or ended with ERROR */
} kl_tpm_link_state;

kl_tpm_link_state kl_tpm_link_state_of(const kl_tpm *t);

/* For the clean-up after an abort: drops the cancel predicate and bounds
 * every later command by timeout_ms. A link whose command was cancelled
 * works again (a new ESAPI context on it; the objects loaded through the
 * old one are flushed from the TPM, and kl_tpm_objects made before are
 * inert). -KL_E_STATE when the link timed out or broke: nothing more is
 * sent on it. */
int kl_tpm_link_rearm(kl_tpm *t, int timeout_ms) KL_MUST_CHECK;

/* Milliseconds spent inside TPM commands through t so far (the link's
 * transfer included): the part of a job that waits on the TPM. */
double kl_tpm_busy_ms(const kl_tpm *t);

/* Flushes every transient object still loaded through t, closes the ESAPI
 * context and the TCTI. Accepts NULL. */
void kl_tpm_free(kl_tpm *t);

/* What the TPM says about itself (TPM 2.0 Part 2 §6.13, TPM_PT_* fixed
 * properties). Strings come from the device: non-printable bytes are replaced
 * by '?', NULs are dropped, trailing spaces trimmed. */
typedef struct kl_tpm_info {
	uint32_t manufacturer;       /* TPM_PT_MANUFACTURER, e.g. 0x49424d00 */
	char manufacturer_str[5];    /* the same as text, e.g. "IBM" */
	char vendor[17];             /* TPM_PT_VENDOR_STRING_1..4 concatenated */
	uint32_t firmware_version_1; /* TPM_PT_FIRMWARE_VERSION_1 */
	uint32_t firmware_version_2; /* TPM_PT_FIRMWARE_VERSION_2 */
	char family[5];              /* TPM_PT_FAMILY_INDICATOR, "2.0" */
	uint32_t spec_level;         /* TPM_PT_LEVEL */
	uint32_t spec_revision;      /* TPM_PT_REVISION, e.g. 164 for 1.64 */
	uint32_t spec_year;          /* TPM_PT_YEAR */
	uint32_t spec_day_of_year;   /* TPM_PT_DAY_OF_YEAR */
	uint32_t nv_buffer_max;      /* TPM_PT_NV_BUFFER_MAX */
} kl_tpm_info;

int kl_tpm_get_info(kl_tpm *t, kl_tpm_info *ret) KL_MUST_CHECK;

/* Counts the transient objects loaded in the TPM (TPM2_GetCapability,
 * TPM_CAP_HANDLES, transient range), whoever loaded them. Without a resource
 * manager each one holds one of the TPM's few object slots, so the engine
 * can check that a step left none behind. */
int kl_tpm_transient_count(kl_tpm *t, size_t *ret) KL_MUST_CHECK;

/* The endorsement keys of the TCG EK Credential Profile for TPM Family 2.0,
 * with the default templates of its Annex B: L-1 (RSA 2048), L-2 (NIST P-256)
 * and H-3 (NIST P-384). */
typedef enum kl_ek_type { KL_EK_RSA2048, KL_EK_P256, KL_EK_P384, KL_EK__MAX } kl_ek_type;

/* "rsa2048", "p256", "p384"; NULL for an unknown type. */
const char *kl_ek_type_name(kl_ek_type type);

/* The reverse of kl_ek_type_name. Returns 0 or -KL_E_INVALID. */
int kl_ek_type_from_name(const char *name, kl_ek_type *ret) KL_MUST_CHECK;

/* NV index of the EK certificate (EK Credential Profile §2.2.1.4):
 * 0x01c00002, 0x01c0000a, 0x01c00016; 0 for an unknown type. */
uint32_t kl_ek_type_nv_index(kl_ek_type type);

/* The EK template as a marshalled TPMT_PUBLIC (the bytes that TPM2_CreatePrimary
 * receives as inPublic.publicArea). *ret (free() it) holds *len bytes. */
int kl_tpm_ek_template(kl_ek_type type, unsigned char **ret, size_t *len) KL_MUST_CHECK;

/* A TPM object name (TPM 2.0 Part 1 §16): nameAlg (2 bytes, big-endian)
 * followed by the nameAlg digest of the object's public area. */
#define KL_TPM_NAME_MAX 66
typedef struct kl_tpm_name {
	size_t len;
	unsigned char buf[KL_TPM_NAME_MAX];
} kl_tpm_name;

/* Recreates the EK of that type in the endorsement hierarchy
 * (TPM2_CreatePrimary with the default template), flushes it, and returns its
 * public key as an OpenSSL key. The public area the TPM returns is checked
 * against the template (only `unique` may differ) and its name recomputed.
 * Returns -KL_E_TPM when the TPM refuses or answers something that is not the
 * EK of that template. */
int kl_tpm_ek_public(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret) KL_MUST_CHECK;

/* The same, also giving the EK's TPM name (what TPM2_MakeCredential binds a
 * credential to). ret_name may be NULL. */
int kl_tpm_ek_public_name(kl_tpm *t, kl_ek_type type, EVP_PKEY **ret_key,
                          kl_tpm_name *ret_name) KL_MUST_CHECK;

/* Flushes every transient object and loaded session in the TPM, whoever
 * left them: a DUT driven directly (no resource manager) keeps what a
 * killed run loaded until it is power-cycled. The station is the DUT's only
 * user during provisioning. *flushed (may be NULL) receives the count. */
int kl_tpm_flush_leftovers(kl_tpm *t, size_t *flushed) KL_MUST_CHECK;

/* Mixes data into the TPM's RNG state (TPM2_StirRandom, in chunks of 128
 * bytes): the factory entropy of UC007-1 step 3, from the HSM's RNG. */
int kl_tpm_stir_random(kl_tpm *t, const unsigned char *data, size_t len) KL_MUST_CHECK;

/* TPM2_Clear (TPM 2.0 Part 3 §24.6) with the lockout hierarchy's empty
 * password, only after TPM_PT_PERMANENT says lockoutAuthSet is clear (Part 2
 * §8.6): a wrong lockout authorisation counts against the lockout
 * hierarchy's own lockout (one failure locks it for lockoutRecovery), so
 * the station never guesses: the owner hierarchy's persistent objects and NV indices go, the
 * storage primary seed is replaced, and the owner, endorsement and lockout
 * authorisations become empty. The endorsement primary seed is NOT changed
 * (Part 1 §14.4.2): endorsement primaries (the EK, and the identity keys of
 * tpm_object.h) can be derived again. Platform-created NV indices (the EK
 * certificates) stay.
 * Returns 0; -KL_E_PERM without sending TPM2_Clear when the lockout
 * authorisation is set (the detail says so), and when the TPM refuses the authorisation or has
 * TPM2_Clear disabled (TPM_RC_DISABLED, TPM_RC_AUTH_FAIL, TPM_RC_BAD_AUTH,
 * TPM_RC_LOCKOUT, TPM_RC_HIERARCHY), the TPM's code in the detail;
 * -KL_E_INVALID; -KL_E_TPM otherwise. */
int kl_tpm_clear(kl_tpm *t) KL_MUST_CHECK;

#endif
