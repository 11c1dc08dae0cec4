/* Private to hsm/ (the _internal suffix lets tests/layout check that): the
 * loaded PKCS#11 modules, the kl_hsm and key structs, the CK_RV → kl_error
 * mapping and attribute helpers (p11.c). Never included outside hsm/. */
#ifndef KL_HSM_INTERNAL_H
#define KL_HSM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <libp11.h>
#include <p11-kit/pkcs11.h>

#include "hsm.h"

/* One PKCS#11 module loaded in this process, shared by every kl_hsm on it.
 *
 * libp11 (ctx) loads and initialises the module and enumerates its slots; it
 * is also what turns a token key into a signing EVP_PKEY. libp11 0.4.12 cannot
 * generate EC keys nor read arbitrary attributes, so for those we call the
 * module's own function list (fl), got from the same shared object: dlopen of
 * the same path returns the same handle, hence the same module instance and
 * the same login state. We never C_Finalize while libp11 holds the module. */
typedef struct p11_module {
	struct p11_module *next;
	char *path;
	unsigned refs;
	PKCS11_CTX *ctx;
	PKCS11_SLOT *slots;
	unsigned int n_slots;
	void *dl;
	CK_FUNCTION_LIST *fl;
	bool we_initialized;    /* our C_Initialize returned CKR_OK: a separate instance */
	struct kl_hsm *handles; /* open kl_hsm on this module */
} p11_module;

struct kl_hsm {
	struct kl_hsm *next_in_module;
	p11_module *mod;
	PKCS11_SLOT *slot; /* libp11's view of the slot, owned by mod */
	CK_SLOT_ID slot_id;
	CK_SESSION_HANDLE session; /* our own R/W session */
	bool logged_in;
	bool sessions_lost; /* kl_hsm_recover reopened ours: the token had lost them all */
	char label[33];
};

struct kl_hsm_key {
	kl_hsm_key_type type;
	CK_OBJECT_HANDLE priv;
	CK_OBJECT_HANDLE pub; /* CK_INVALID_HANDLE when the token has none */
	unsigned char id[64];
	size_t id_len;
	char id_hex[129];
	char *label;
};

/* Loads (or takes another reference to) the module at path. */
int p11_module_get(const char *path, p11_module **ret);
/* Drops a reference; the last one closes libp11's sessions, finalises the
 * module (through libp11) and unloads it. */
void p11_module_put(p11_module *m);
/* Links / unlinks an open kl_hsm (under the module lock). */
void p11_module_attach(p11_module *m, struct kl_hsm *h);
/* Unlinks h; returns how many other open kl_hsm use the same slot. */
unsigned p11_module_detach(p11_module *m, struct kl_hsm *h);

/* THE mapping from a PKCS#11 return value to a Keyline error: records
 * "<context>: CKR_NAME (0xhex)" with the matching kl_err and returns it
 * negative. Every CK_RV failure in hsm/ goes through here. */
int p11_error(CK_RV rv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "CKR_PIN_INCORRECT", or "CKR_VENDOR_DEFINED" / "CKR_UNKNOWN". */
const char *p11_rv_name(CK_RV rv);

/* Reads one attribute of any length. *val is OPENSSL_malloc'ed (the caller
 * frees it); a missing or unreadable attribute is an error naming it. */
int p11_attr_read(kl_hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, const char *name,
                  unsigned char **val, size_t *len);

/* Finds at most max objects matching tmpl; *n is how many were found. */
int p11_find(kl_hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE *found, CK_ULONG max,
             CK_ULONG *n);

#endif
