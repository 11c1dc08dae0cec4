/* The PKCS#11 plumbing shared by hsm/: loaded modules, CK_RV mapping,
 * attribute and search helpers. */
#include "hsm_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "kl_error.h"

/* ---- CK_RV → kl_error -------------------------------------------------- */

#define RV(x)         \
	{             \
		x, #x \
	}
static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
	RV(CKR_OK),
	RV(CKR_CANCEL),
	RV(CKR_HOST_MEMORY),
	RV(CKR_SLOT_ID_INVALID),
	RV(CKR_GENERAL_ERROR),
	RV(CKR_FUNCTION_FAILED),
	RV(CKR_ARGUMENTS_BAD),
	RV(CKR_NO_EVENT),
	RV(CKR_NEED_TO_CREATE_THREADS),
	RV(CKR_CANT_LOCK),
	RV(CKR_ATTRIBUTE_READ_ONLY),
	RV(CKR_ATTRIBUTE_SENSITIVE),
	RV(CKR_ATTRIBUTE_TYPE_INVALID),
	RV(CKR_ATTRIBUTE_VALUE_INVALID),
	RV(CKR_ACTION_PROHIBITED),
	RV(CKR_DATA_INVALID),
	RV(CKR_DATA_LEN_RANGE),
	RV(CKR_DEVICE_ERROR),
	RV(CKR_DEVICE_MEMORY),
	RV(CKR_DEVICE_REMOVED),
	RV(CKR_ENCRYPTED_DATA_INVALID),
	RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
	RV(CKR_FUNCTION_CANCELED),
	RV(CKR_FUNCTION_NOT_PARALLEL),
	RV(CKR_FUNCTION_NOT_SUPPORTED),
	RV(CKR_KEY_HANDLE_INVALID),
	RV(CKR_KEY_SIZE_RANGE),
	RV(CKR_KEY_TYPE_INCONSISTENT),
	RV(CKR_KEY_NOT_NEEDED),
	RV(CKR_KEY_CHANGED),
	RV(CKR_KEY_NEEDED),
	RV(CKR_KEY_INDIGESTIBLE),
	RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
	RV(CKR_KEY_NOT_WRAPPABLE),
	RV(CKR_KEY_UNEXTRACTABLE),
	RV(CKR_MECHANISM_INVALID),
	RV(CKR_MECHANISM_PARAM_INVALID),
	RV(CKR_OBJECT_HANDLE_INVALID),
	RV(CKR_OPERATION_ACTIVE),
	RV(CKR_OPERATION_NOT_INITIALIZED),
	RV(CKR_PIN_INCORRECT),
	RV(CKR_PIN_INVALID),
	RV(CKR_PIN_LEN_RANGE),
	RV(CKR_PIN_EXPIRED),
	RV(CKR_PIN_LOCKED),
	RV(CKR_SESSION_CLOSED),
	RV(CKR_SESSION_COUNT),
	RV(CKR_SESSION_HANDLE_INVALID),
	RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
	RV(CKR_SESSION_READ_ONLY),
	RV(CKR_SESSION_EXISTS),
	RV(CKR_SESSION_READ_ONLY_EXISTS),
	RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
	RV(CKR_SIGNATURE_INVALID),
	RV(CKR_SIGNATURE_LEN_RANGE),
	RV(CKR_TEMPLATE_INCOMPLETE),
	RV(CKR_TEMPLATE_INCONSISTENT),
	RV(CKR_TOKEN_NOT_PRESENT),
	RV(CKR_TOKEN_NOT_RECOGNIZED),
	RV(CKR_TOKEN_WRITE_PROTECTED),
	RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
	RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
	RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
	RV(CKR_USER_ALREADY_LOGGED_IN),
	RV(CKR_USER_NOT_LOGGED_IN),
	RV(CKR_USER_PIN_NOT_INITIALIZED),
	RV(CKR_USER_TYPE_INVALID),
	RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	RV(CKR_USER_TOO_MANY_TYPES),
	RV(CKR_WRAPPED_KEY_INVALID),
	RV(CKR_WRAPPED_KEY_LEN_RANGE),
	RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
	RV(CKR_WRAPPING_KEY_SIZE_RANGE),
	RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
	RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
	RV(CKR_RANDOM_NO_RNG),
	RV(CKR_DOMAIN_PARAMS_INVALID),
	RV(CKR_CURVE_NOT_SUPPORTED),
	RV(CKR_BUFFER_TOO_SMALL),
	RV(CKR_SAVED_STATE_INVALID),
	RV(CKR_INFORMATION_SENSITIVE),
	RV(CKR_STATE_UNSAVEABLE),
	RV(CKR_CRYPTOKI_NOT_INITIALIZED),
	RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	RV(CKR_MUTEX_BAD),
	RV(CKR_MUTEX_NOT_LOCKED),
	RV(CKR_NEW_PIN_MODE),
	RV(CKR_NEXT_OTP),
	RV(CKR_EXCEEDED_MAX_ITERATIONS),
	RV(CKR_FIPS_SELF_TEST_FAILED),
	RV(CKR_LIBRARY_LOAD_FAILED),
	RV(CKR_PIN_TOO_WEAK),
	RV(CKR_PUBLIC_KEY_INVALID),
	RV(CKR_FUNCTION_REJECTED),
};
#undef RV

const char *p11_rv_name(CK_RV rv)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return (rv & CKR_VENDOR_DEFINED) ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
}

/* Which kind of Keyline failure a PKCS#11 return value is (PKCS#11 v2.40
 * §5.1). Everything not listed is the token's own failure: KL_E_HSM. */
static kl_err rv_code(CK_RV rv)
{
	switch (rv) {
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return KL_E_NOMEM;
	case CKR_ARGUMENTS_BAD:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_TEMPLATE_INCOMPLETE:
	case CKR_TEMPLATE_INCONSISTENT:
	case CKR_DATA_INVALID:
	case CKR_DATA_LEN_RANGE:
		return KL_E_INVALID;
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_TOKEN_NOT_PRESENT:
		return KL_E_UNAVAILABLE;
	case CKR_SLOT_ID_INVALID:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
		return KL_E_NOTFOUND;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_EXPIRED:
	case CKR_PIN_LOCKED:
	case CKR_USER_PIN_NOT_INITIALIZED:
		return KL_E_PIN;
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
	case CKR_SESSION_READ_ONLY:
	case CKR_TOKEN_WRITE_PROTECTED:
	case CKR_OPERATION_ACTIVE:
	case CKR_OPERATION_NOT_INITIALIZED:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return KL_E_STATE;
	case CKR_ATTRIBUTE_SENSITIVE:
	case CKR_KEY_UNEXTRACTABLE:
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
	case CKR_ACTION_PROHIBITED:
		return KL_E_PERM;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_DOMAIN_PARAMS_INVALID:
	case CKR_CURVE_NOT_SUPPORTED:
	case CKR_KEY_SIZE_RANGE:
	case CKR_FUNCTION_NOT_SUPPORTED:
	case CKR_RANDOM_NO_RNG:
		return KL_E_UNSUPPORTED;
	default:
		return KL_E_HSM;
	}
}

int p11_error(CK_RV rv, const char *fmt, ...)
{
	char context[KL_ERROR_DETAIL_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
	return kl_error_set(rv_code(rv), "%s: %s (0x%lx)", context, p11_rv_name(rv),
	                    (unsigned long)rv);
}

/* ---- loaded modules ------------------------------------------------------ */

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static p11_module *modules;

static void module_unload(p11_module *m)
{
	if (m->slots)
		PKCS11_release_all_slots(m->ctx, m->slots, m->n_slots);
	if (m->ctx) {
		/* C_Finalize happens here, inside libp11, once nobody uses the
		 * module: it closes libp11's sessions and logs the token out. */
		PKCS11_CTX_unload(m->ctx);
		PKCS11_CTX_free(m->ctx);
	}
	if (m->we_initialized && m->fl)
		(void)m->fl->C_Finalize(NULL);
	if (m->dl)
		dlclose(m->dl);
	OPENSSL_free(m->path);
	OPENSSL_free(m);
}

static int module_load(const char *path, p11_module **ret)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_C_GetFunctionList get_list;
	p11_module *m;
	CK_RV rv;
	int r;

	if (access(path, R_OK) < 0)
		return kl_error_set(KL_E_NOTFOUND, "PKCS#11 module %s: %m", path);
	m = OPENSSL_zalloc(sizeof(*m));
	if (!m || !(m->path = OPENSSL_strdup(path))) {
		OPENSSL_free(m);
		return kl_error_set(KL_E_NOMEM, "PKCS#11 module: out of memory");
	}

	m->ctx = PKCS11_CTX_new();
	if (!m->ctx) {
		r = kl_error_set_ssl(KL_E_NOMEM, "PKCS11_CTX_new");
		goto out;
	}
	ERR_clear_error();
	if (PKCS11_CTX_load(m->ctx, path) < 0) {
		r = kl_error_set_ssl(KL_E_HSM, "load PKCS#11 module %s", path);
		PKCS11_CTX_free(m->ctx);
		m->ctx = NULL; /* not loaded: nothing to unload */
		goto out;
	}
	if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->n_slots) < 0) {
		r = kl_error_set_ssl(KL_E_HSM, "PKCS#11 module %s: enumerate slots", path);
		m->slots = NULL;
		goto out;
	}

	/* The same shared object that libp11 loaded, for the calls libp11
	 * lacks (C_GenerateKeyPair, C_GetAttributeValue, C_GenerateRandom). */
	m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!m->dl) {
		r = kl_error_set(KL_E_HSM, "dlopen %s: %s", path, dlerror());
		goto out;
	}
	get_list = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
	if (!get_list) {
		r = kl_error_set(KL_E_HSM, "%s has no C_GetFunctionList", path);
		goto out;
	}
	rv = get_list(&m->fl);
	if (rv != CKR_OK || !m->fl) {
		r = p11_error(rv, "C_GetFunctionList(%s)", path);
		m->fl = NULL;
		goto out;
	}
	/* libp11 has initialised this instance already; PKCS#11 v2.40 §5.4
	 * says a second C_Initialize reports CKR_CRYPTOKI_ALREADY_INITIALIZED. */
	rv = m->fl->C_Initialize(&args);
	if (rv == CKR_OK)
		m->we_initialized = true;
	else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		r = p11_error(rv, "C_Initialize(%s)", path);
		goto out;
	}
	m->refs = 1;
	*ret = m;
	return 0;

out:
	module_unload(m);
	return r;
}

int p11_module_get(const char *path, p11_module **ret)
{
	p11_module *m;
	int r = 0;

	pthread_mutex_lock(&modules_lock);
	for (m = modules; m; m = m->next)
		if (strcmp(m->path, path) == 0)
			break;
	if (m) {
		m->refs++;
	} else {
		r = module_load(path, &m);
		if (r == 0) {
			m->next = modules;
			modules = m;
		}
	}
	pthread_mutex_unlock(&modules_lock);
	if (r == 0)
		*ret = m;
	return r;
}

void p11_module_put(p11_module *m)
{
	p11_module **pp;

	if (!m)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&modules_lock);
		return;
	}
	for (pp = &modules; *pp; pp = &(*pp)->next) {
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	}
	module_unload(m);
	pthread_mutex_unlock(&modules_lock);
}

void p11_module_attach(p11_module *m, struct kl_hsm *h)
{
	pthread_mutex_lock(&modules_lock);
	h->next_in_module = m->handles;
	m->handles = h;
	pthread_mutex_unlock(&modules_lock);
}

unsigned p11_module_detach(p11_module *m, struct kl_hsm *h)
{
	struct kl_hsm **pp;
	unsigned others = 0;

	pthread_mutex_lock(&modules_lock);
	for (pp = &m->handles; *pp;) {
		if (*pp == h) {
			*pp = h->next_in_module;
			continue;
		}
		if ((*pp)->slot_id == h->slot_id)
			others++;
		pp = &(*pp)->next_in_module;
	}
	pthread_mutex_unlock(&modules_lock);
	h->next_in_module = NULL;
	return others;
}

/* ---- objects and attributes --------------------------------------------- */

int p11_attr_read(kl_hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, const char *name,
                  unsigned char **val, size_t *len)
{
	CK_FUNCTION_LIST *fl = h->mod->fl;
	CK_ATTRIBUTE a = { .type = type };
	unsigned char *buf;
	CK_RV rv;

	/* PKCS#11 v2.40 §5.7 C_GetAttributeValue: ask the length, then read. */
	rv = fl->C_GetAttributeValue(h->session, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_error(rv, "C_GetAttributeValue(%s)", name);
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536)
		return kl_error_set(KL_E_HSM, "C_GetAttributeValue(%s): no usable value", name);
	buf = OPENSSL_zalloc(a.ulValueLen ? a.ulValueLen : 1);
	if (!buf)
		return kl_error_set(KL_E_NOMEM, "C_GetAttributeValue(%s): out of memory", name);
	a.pValue = buf;
	rv = fl->C_GetAttributeValue(h->session, obj, &a, 1);
	if (rv != CKR_OK) {
		OPENSSL_free(buf);
		return p11_error(rv, "C_GetAttributeValue(%s)", name);
	}
	*val = buf;
	*len = a.ulValueLen;
	return 0;
}

int p11_find(kl_hsm *h, CK_ATTRIBUTE *tmpl, CK_ULONG n_tmpl, CK_OBJECT_HANDLE *found, CK_ULONG max,
             CK_ULONG *n)
{
	CK_FUNCTION_LIST *fl = h->mod->fl;
	CK_ULONG got = 0;
	CK_RV rv, rv2;

	rv = fl->C_FindObjectsInit(h->session, tmpl, n_tmpl);
	if (rv != CKR_OK)
		return p11_error(rv, "C_FindObjectsInit");
	rv = fl->C_FindObjects(h->session, found, max, &got);
	/* Always end the search, or the session stays busy (CKR_OPERATION_ACTIVE). */
	rv2 = fl->C_FindObjectsFinal(h->session);
	if (rv != CKR_OK)
		return p11_error(rv, "C_FindObjects");
	if (rv2 != CKR_OK)
		return p11_error(rv2, "C_FindObjectsFinal");
	*n = got;
	return 0;
}
