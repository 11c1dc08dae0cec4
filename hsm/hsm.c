/* A token: open by label, log in once, random bytes. */
#include "hsm_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "kl_error.h"

/* Lists the labels of the tokens present, for a "not found" message. */
static void list_labels(const p11_module *m, char *buf, size_t size)
{
	size_t used = 0;
	int n;

	buf[0] = '\0';
	for (unsigned i = 0; i < m->n_slots && used < size; i++) {
		const PKCS11_TOKEN *t = m->slots[i].token;

		if (!t || !t->initialized)
			continue;
		n = snprintf(buf + used, size - used, "%s'%s'", used ? ", " : "",
		             t->label ? t->label : "");
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (!buf[0])
		snprintf(buf, size, "none");
}

int kl_hsm_open(const char *module_path, const char *token_label, kl_hsm **ret)
{
	char labels[512];
	PKCS11_SLOT *slot = NULL;
	p11_module *m = NULL;
	kl_hsm *h;
	CK_RV rv;
	int r;

	if (!module_path || !token_label || !*token_label || strlen(token_label) > 32)
		return kl_error_set(
		    KL_E_INVALID,
		    "hsm: a module path and a token label of 1..32 characters are needed");
	r = p11_module_get(module_path, &m);
	if (r < 0)
		return r;

	/* By label, never by slot number: SoftHSM and real HSMs renumber slots
	 * when tokens are added. libp11 strips the label's blank padding. */
	for (unsigned i = 0; i < m->n_slots; i++) {
		const PKCS11_TOKEN *t = m->slots[i].token;

		if (t && t->initialized && t->label && strcmp(t->label, token_label) == 0) {
			if (slot) {
				p11_module_put(m);
				return kl_error_set(
				    KL_E_EXISTS,
				    "two tokens are labelled '%s' in %s; labels must be unique",
				    token_label, module_path);
			}
			slot = &m->slots[i];
		}
	}
	if (!slot) {
		list_labels(m, labels, sizeof(labels));
		p11_module_put(m);
		return kl_error_set(KL_E_NOTFOUND,
		                    "no token labelled '%s' in %s (tokens present: %s)",
		                    token_label, module_path, labels);
	}

	h = OPENSSL_zalloc(sizeof(*h));
	if (!h) {
		p11_module_put(m);
		return kl_error_set(KL_E_NOMEM, "hsm: out of memory");
	}
	h->mod = m;
	h->slot = slot;
	h->slot_id = PKCS11_get_slotid_from_slot(slot);
	snprintf(h->label, sizeof(h->label), "%s", token_label);
	/* R/W: key generation creates token objects (PKCS#11 v2.40 §5.6). */
	rv = m->fl->C_OpenSession(h->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                          &h->session);
	if (rv != CKR_OK) {
		r = p11_error(rv, "C_OpenSession(token '%s')", token_label);
		OPENSSL_free(h);
		p11_module_put(m);
		return r;
	}
	p11_module_attach(m, h);
	*ret = h;
	return 0;
}

void kl_hsm_free(kl_hsm *h)
{
	unsigned others;

	if (!h)
		return;
	others = p11_module_detach(h->mod, h);
	/* The login belongs to the application, not to a session (PKCS#11
	 * v2.40 §5.6). libp11's pooled sessions keep it alive after ours is
	 * closed, so log out explicitly when we were the last user of the
	 * token; then the token is locked again even while another token of
	 * the same module stays open. Whoever of ours logged in, the last one
	 * out logs out (CKR_USER_NOT_LOGGED_IN is harmless). */
	if (others == 0)
		(void)h->mod->fl->C_Logout(h->session);
	(void)h->mod->fl->C_CloseSession(h->session);
	p11_module_put(h->mod);
	OPENSSL_free(h);
}

const char *kl_hsm_label(const kl_hsm *h)
{
	return h->label;
}

/* What the token says about the remaining tries, read after a rejected PIN
 * (CKF_USER_PIN_* token flags, PKCS#11 v2.40 §3.2 CK_TOKEN_INFO). Modules
 * that do not count leave them clear. */
static const char *pin_hint(kl_hsm *h)
{
	CK_TOKEN_INFO info;

	if (h->mod->fl->C_GetTokenInfo(h->slot_id, &info) != CKR_OK)
		return "";
	if (info.flags & CKF_USER_PIN_LOCKED)
		return "; the user PIN is now locked (CKF_USER_PIN_LOCKED)";
	if (info.flags & CKF_USER_PIN_FINAL_TRY)
		return "; one more wrong PIN locks the token (CKF_USER_PIN_FINAL_TRY)";
	if (info.flags & CKF_USER_PIN_COUNT_LOW)
		return "; the token has seen a wrong PIN since the last good login "
		       "(CKF_USER_PIN_COUNT_LOW)";
	return "";
}

/* The PIN goes straight from the caller's wiped buffer to C_Login, on our
 * own session. We do not use PKCS11_login: libp11 keeps a copy of the last
 * PIN (prev_pin) and logs in again with it by itself after a fork
 * (pkcs11_reload_slot), which is both a stored secret and a retry we do not
 * control. The PKCS#11 login state is shared by every session of the
 * application, so libp11's sessions (signing) are logged in too. */
int kl_hsm_login(kl_hsm *h, const kl_secret *pin)
{
	CK_RV rv;

	if (!pin || !pin->data || pin->len == 0)
		return kl_error_set(KL_E_PIN, "no PIN given for token '%s'", h->label);
	rv = h->mod->fl->C_Login(h->session, CKU_USER, (CK_UTF8CHAR_PTR)pin->data,
	                         (CK_ULONG)pin->len);
	switch (rv) {
	case CKR_OK:
	case CKR_USER_ALREADY_LOGGED_IN: /* another kl_hsm of ours on this token */
		h->logged_in = true;
		return 0;
	case CKR_PIN_INCORRECT:
		/* Reported once, never retried: each try counts towards the lock. */
		return p11_error(rv, "C_Login: PIN incorrect for token '%s'%s", h->label,
		                 pin_hint(h));
	case CKR_PIN_LOCKED:
		return p11_error(rv,
		                 "C_Login: the user PIN of token '%s' is locked; the security "
		                 "officer must reset it",
		                 h->label);
	case CKR_PIN_LEN_RANGE:
		return p11_error(rv, "C_Login: PIN length out of range for token '%s'", h->label);
	default:
		return p11_error(rv, "C_Login(token '%s')", h->label);
	}
}

static bool transient_loss(CK_RV rv)
{
	return rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_REMOVED || rv == CKR_DEVICE_ERROR ||
	       rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_SLOT_ID_INVALID || rv == CKR_SESSION_COUNT;
}

int kl_hsm_recover(kl_hsm *h)
{
	/* Back-off between tries; the total (~4.3 s) bounds how long a
	 * station job waits for a token that was briefly gone. */
	static const unsigned delay_ms[] = { 0, 100, 400, 1200, 2600 };
	CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
	CK_SESSION_INFO info;
	CK_RV rv = CKR_OK;

	for (size_t i = 0; i < sizeof(delay_ms) / sizeof(delay_ms[0]); i++) {
		struct timespec ts = { delay_ms[i] / 1000, (long)(delay_ms[i] % 1000) * 1000000L };

		if (delay_ms[i])
			nanosleep(&ts, NULL);
		/* Open the new session before closing the old one: closing an
		 * application's last session logs it out (PKCS#11 v2.40 §5.6). */
		rv = h->mod->fl->C_OpenSession(h->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION,
		                               NULL, NULL, &fresh);
		if (rv != CKR_OK) {
			if (transient_loss(rv))
				continue;
			return p11_error(rv, "reopen a session on token '%s'", h->label);
		}
		if (h->session != CK_INVALID_HANDLE)
			(void)h->mod->fl->C_CloseSession(h->session);
		h->session = fresh;
		/* libp11's sessions, which sign with our keys, died with ours. */
		h->sessions_lost = true;
		rv = h->mod->fl->C_GetSessionInfo(h->session, &info);
		if (rv != CKR_OK) {
			if (transient_loss(rv))
				continue;
			return p11_error(rv, "C_GetSessionInfo(token '%s')", h->label);
		}
		if (!h->logged_in || info.state == CKS_RW_USER_FUNCTIONS ||
		    info.state == CKS_RO_USER_FUNCTIONS)
			return 0;
		/* The token came back without our login. The PIN is not kept,
		 * so nothing here logs in again: whoever holds the PIN must. */
		h->logged_in = false;
		return kl_error_set(KL_E_PIN,
		                    "the session on token '%s' was reopened but the token has "
		                    "forgotten the login; log in again (the PIN is not kept and "
		                    "not retried)",
		                    h->label);
	}
	return p11_error(rv, "token '%s' still unreachable after %zu tries over 4.3 s", h->label,
	                 sizeof(delay_ms) / sizeof(delay_ms[0]));
}

int kl_hsm_random(kl_hsm *h, unsigned char *buf, size_t len)
{
	/* Some HSMs cap one C_GenerateRandom; ask in modest chunks. */
	const size_t chunk = 1024;
	CK_RV rv;

	for (size_t done = 0; done < len;) {
		size_t n = len - done < chunk ? len - done : chunk;

		rv = h->mod->fl->C_GenerateRandom(h->session, buf + done, (CK_ULONG)n);
		if (rv != CKR_OK) {
			OPENSSL_cleanse(buf, len);
			return p11_error(rv, "C_GenerateRandom(token '%s', %zu bytes)", h->label,
			                 n);
		}
		done += n;
	}
	return 0;
}

int kl_hsm_check(kl_hsm *h)
{
	CK_SESSION_INFO info;
	CK_RV rv;

	if (h->sessions_lost)
		return kl_error_set(KL_E_UNAVAILABLE,
		                    "token '%s' lost its sessions (ours was reopened): keys opened "
		                    "before need the token opened again",
		                    h->label);
	rv = h->mod->fl->C_GetSessionInfo(h->session, &info);
	if (rv != CKR_OK)
		return p11_error(rv, "C_GetSessionInfo(token '%s')", h->label);
	if (h->logged_in && info.state != CKS_RW_USER_FUNCTIONS &&
	    info.state != CKS_RO_USER_FUNCTIONS)
		return kl_error_set(KL_E_UNAVAILABLE, "token '%s' no longer has our login",
		                    h->label);
	return 0;
}
