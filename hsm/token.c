/* Token initialisation for the key ceremony, and where the embedded default's
 * module lives. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kl_error.h"
#include "hsm_internal.h"

const char *kl_hsm_default_module(void)
{
	static const char *const paths[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	};
	const char *env = getenv("KEYLINE_PKCS11_MODULE");

	if (env && *env)
		return env;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], R_OK) == 0)
			return paths[i];
	return NULL;
}

/* PKCS#11 v2.40 §5.6: C_InitToken on a slot whose token is not initialised,
 * then the SO logs in once to C_InitPIN the user PIN. */
int kl_hsm_token_init(const char *module_path, const char *label, const kl_secret *so_pin,
                      const kl_secret *user_pin)
{
	CK_UTF8CHAR padded[32];
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	PKCS11_SLOT *free_slot = NULL;
	p11_module *m;
	CK_SLOT_ID id;
	CK_RV rv;
	int r;

	if (!label || !*label || strlen(label) > 32)
		return kl_error_set(KL_E_INVALID, "token label must be 1..32 characters");
	if (!so_pin || !so_pin->len || !user_pin || !user_pin->len)
		return kl_error_set(KL_E_PIN, "token '%s': SO and user PINs are required", label);
	r = p11_module_get(module_path, &m);
	if (r < 0)
		return r;
	if (m->refs > 1) {
		/* libp11's slot list would not show the new token to the others. */
		p11_module_put(m);
		return kl_error_set(KL_E_STATE, "initialise tokens before opening any other on %s",
		                    module_path);
	}
	for (unsigned i = 0; i < m->n_slots; i++) {
		PKCS11_TOKEN *t = m->slots[i].token;

		if (!t)
			continue;
		if (t->initialized && t->label && strcmp(t->label, label) == 0) {
			p11_module_put(m);
			return kl_error_set(KL_E_EXISTS, "a token labelled '%s' exists already",
			                    label);
		}
		if (!t->initialized && !free_slot)
			free_slot = &m->slots[i];
	}
	if (!free_slot) {
		p11_module_put(m);
		return kl_error_set(KL_E_NOTFOUND, "%s has no slot with an uninitialised token",
		                    module_path);
	}
	id = PKCS11_get_slotid_from_slot(free_slot);
	memset(padded, ' ', sizeof(padded));
	memcpy(padded, label, strlen(label));

	rv = m->fl->C_InitToken(id, so_pin->data, so_pin->len, padded);
	if (rv != CKR_OK) {
		r = p11_error(rv, "C_InitToken('%s')", label);
		goto out;
	}
	rv = m->fl->C_OpenSession(id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK) {
		r = p11_error(rv, "C_OpenSession('%s')", label);
		goto out;
	}
	rv = m->fl->C_Login(s, CKU_SO, so_pin->data, so_pin->len);
	if (rv != CKR_OK) {
		r = p11_error(rv, "SO login to new token '%s'", label);
		goto out;
	}
	rv = m->fl->C_InitPIN(s, user_pin->data, user_pin->len);
	/* Best effort, and the C_InitPIN result is what counts: the SO's
	 * session is closed below in any case. */
	(void)m->fl->C_Logout(s);
	if (rv != CKR_OK) {
		r = p11_error(rv, "C_InitPIN('%s')", label);
		goto out;
	}
	r = 0;
out:
	if (s != CK_INVALID_HANDLE)
		(void)m->fl->C_CloseSession(s); /* nothing to undo if it fails */
	p11_module_put(m);
	return r;
}
