/* The HSM: a PKCS#11 token holding the CA's keys.
 *
 * This is the only module that speaks PKCS#11 (through libp11 and the module's
 * own function list); no CK_* or PKCS11_* type leaves hsm/. A kl_hsm is one
 * token of one PKCS#11 module, found by its label (slot ids change when
 * tokens are added). Keys are generated inside the token, sensitive and never
 * extractable; what leaves the token is public keys, random bytes and
 * signatures.
 *
 * Functions return 0 or a negative kl_err with a detail (kl_error.h) that
 * keeps the PKCS#11 return value by name and number, e.g.
 * "C_GenerateKeyPair: CKR_MECHANISM_INVALID (0x70)".
 *
 * Threads: a kl_hsm may be used by one thread at a time. Several kl_hsm may be
 * open at once in one process, on the same module or on different ones. */
#ifndef KL_HSM_H
#define KL_HSM_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "kl_error.h"
#include "kl_secret.h"
#include "uri.h"

typedef struct kl_hsm kl_hsm;
typedef struct kl_hsm_key kl_hsm_key;

typedef enum kl_hsm_key_type {
	KL_HSM_KEY_EC_P256 = 1,
	KL_HSM_KEY_EC_P384 = 2,
	KL_HSM_KEY_RSA_3072 = 3,
} kl_hsm_key_type;

/* What the token says about a private key (read back, not what we asked).
 * A struct tag without a typedef, like `struct stat` and stat(): the function
 * that fills it has the same name. */
struct kl_hsm_key_attrs {
	bool sensitive;         /* CKA_SENSITIVE */
	bool extractable;       /* CKA_EXTRACTABLE */
	bool always_sensitive;  /* CKA_ALWAYS_SENSITIVE */
	bool never_extractable; /* CKA_NEVER_EXTRACTABLE */
	bool is_private;        /* CKA_PRIVATE: only visible after login */
	bool local;             /* CKA_LOCAL: generated on the token */
};

/* Loads the PKCS#11 module at module_path (once per process, shared by every
 * kl_hsm on it) and finds the token labelled token_label. A missing token is
 * -KL_E_NOTFOUND, naming the label and listing the labels present. Opens a
 * read/write session; no login yet. */
int kl_hsm_open(const char *module_path, const char *token_label, kl_hsm **ret) KL_MUST_CHECK;

/* Closes the session (logging the application out of the token when it was
 * the last one) and releases the module. Accepts NULL. Keys of h must be
 * freed before or after, but not used after. */
void kl_hsm_free(kl_hsm *h);

/* The token's label. */
const char *kl_hsm_label(const kl_hsm *h);

/* Logs the user in with pin, exactly once: a rejected PIN is reported and
 * never retried (a retry loop locks tokens). CKR_PIN_INCORRECT is -KL_E_PIN
 * "PIN incorrect for token 'X'" plus what the token says about the tries
 * left; CKR_PIN_LOCKED is -KL_E_PIN "... locked". The PIN is not kept. */
int kl_hsm_login(kl_hsm *h, const kl_secret *pin) KL_MUST_CHECK;

/* Generates a key pair on the token: private key CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only; public key CKA_VERIFY;
 * both labelled label and sharing a random 16-byte CKA_ID. Needs a login.
 * A private key with that label already on the token is -KL_E_EXISTS; a
 * mechanism or curve the token lacks is -KL_E_UNSUPPORTED. */
int kl_hsm_key_generate(kl_hsm *h, kl_hsm_key_type type, const char *label,
                        kl_hsm_key **ret) KL_MUST_CHECK;

/* Finds the private key labelled label (and its public key, by CKA_ID).
 * -KL_E_NOTFOUND when there is none, -KL_E_EXISTS when the label is
 * ambiguous. Needs a login. */
int kl_hsm_key_find(kl_hsm *h, const char *label, kl_hsm_key **ret) KL_MUST_CHECK;

/* Finds the private key an RFC 7512 URI names, by object label and/or
 * CKA_ID; the URI's token (when given) must be this token. */
int kl_hsm_key_find_uri(kl_hsm *h, const kl_pkcs11_uri *u, kl_hsm_key **ret) KL_MUST_CHECK;

/* Accepts NULL. Does not touch the token. */
void kl_hsm_key_free(kl_hsm_key *k);

kl_hsm_key_type kl_hsm_key_get_type(const kl_hsm_key *k);
const char *kl_hsm_key_label(const kl_hsm_key *k);

/* The key's CKA_ID as lowercase hex (32 characters for our keys), for
 * RFC 7512 URIs and logs. */
const char *kl_hsm_key_id_hex(const kl_hsm_key *k);

/* Reads the private key's protection attributes from the token. */
int kl_hsm_key_attrs(kl_hsm *h, const kl_hsm_key *k, struct kl_hsm_key_attrs *ret) KL_MUST_CHECK;

/* The public key as an OpenSSL EVP_PKEY, built from the token's CKA_EC_PARAMS
 * and CKA_EC_POINT, or CKA_MODULUS and CKA_PUBLIC_EXPONENT. The caller owns
 * it. */
int kl_hsm_key_public(kl_hsm *h, const kl_hsm_key *k, EVP_PKEY **ret) KL_MUST_CHECK;

/* An EVP_PKEY whose private operations (sign) run inside the token, through
 * libp11. It refers to h: free it before kl_hsm_free(h). Needs a login. */
int kl_hsm_key_private(kl_hsm *h, const kl_hsm_key *k, EVP_PKEY **ret) KL_MUST_CHECK;

/* One C_Sign (CKM_ECDSA) of a prepared digest on our own session: the raw
 * signing rate the benchmarks compare against. sig has *siglen bytes of room;
 * *siglen receives the length of r||s. EC keys only. */
int kl_hsm_sign_digest(kl_hsm *h, const kl_hsm_key *k, const unsigned char *digest, size_t dlen,
                       unsigned char *sig, size_t *siglen) KL_MUST_CHECK;

/* The embedded default's module: $KEYLINE_PKCS11_MODULE, else SoftHSM2 where
 * Debian installs it; NULL when there is none. */
const char *kl_hsm_default_module(void);

/* Initialises a fresh token labelled label on a free slot of the module (the
 * key ceremony): C_InitToken with the SO PIN, then the user PIN set by the
 * SO. -KL_E_EXISTS when a token with that label exists. Call it before any
 * kl_hsm_open on the module. */
int kl_hsm_token_init(const char *module_path, const char *label, const kl_secret *so_pin,
                      const kl_secret *user_pin) KL_MUST_CHECK;

/* After an operation failed with -KL_E_UNAVAILABLE (session handle invalid,
 * token or device gone): closes our session and opens a new one on the same
 * slot, with back-off (five tries over about 4.3 s). Returns 0 when the new
 * session is usable and, if we were logged in, still logged in; -KL_E_PIN
 * when the token forgot the login (this function never logs in: the PIN is
 * not kept); -KL_E_UNAVAILABLE when the token stayed away. Signing keys from
 * kl_hsm_key_private belong to libp11's sessions: get them again after a
 * recovery. */
int kl_hsm_recover(kl_hsm *h) KL_MUST_CHECK;

/* Fills buf with len bytes from the token's RNG (C_GenerateRandom). */
int kl_hsm_random(kl_hsm *h, unsigned char *buf, size_t len) KL_MUST_CHECK;

/* Whether the token still serves h, without using a key: our session
 * answers C_GetSessionInfo, still logged in when we were, and was never
 * reopened by kl_hsm_recover (a token that lost our session lost libp11's
 * too, which sign with the keys of h). 0 when healthy; else the error
 * (-KL_E_UNAVAILABLE for a lost session or login) says what is wrong. */
int kl_hsm_check(kl_hsm *h) KL_MUST_CHECK;

#endif
