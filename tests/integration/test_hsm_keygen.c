/* hsm/ against a real SoftHSM2 token from the floor, checked with our own
 * reads and from the outside with pkcs11-tool.
 *
 * Built twice (tests/integration/hsm.cmake):
 *   - as the test program;
 *   - with KL_P11_SHIM as a tiny PKCS#11 module that forwards to SoftHSM,
 *     counts C_Login calls and keeps a user-PIN retry counter (SoftHSM has
 *     none: it never locks). With it the test proves that one kl_hsm_login is
 *     exactly one C_Login, and sees CKR_PIN_LOCKED and the FINAL_TRY hint.
 *     It can also hide RSA key generation, for the "unsupported" path. */

#ifdef KL_P11_SHIM

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include <p11-kit/pkcs11.h>

/* Read and set by the test through dlsym. */
unsigned kl_shim_login_calls;
unsigned kl_shim_max_tries = 3;
int kl_shim_hide_rsa;
unsigned kl_shim_open_calls;
unsigned kl_shim_fail_opens; /* the next N C_OpenSession fail: token not present */
int kl_shim_forget_login;    /* kl_shim_drop also logs the application out */
void kl_shim_reset(void);
void kl_shim_drop(void); /* every session open so far becomes invalid */

static CK_SESSION_HANDLE last_open, dropped_upto;

static unsigned wrong_in_a_row;
static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST *real;

void kl_shim_reset(void)
{
	kl_shim_login_calls = 0;
	kl_shim_max_tries = 3;
	kl_shim_hide_rsa = 0;
	kl_shim_open_calls = 0;
	kl_shim_fail_opens = 0;
	kl_shim_forget_login = 0;
	wrong_in_a_row = 0;
	dropped_upto = 0;
}

/* Plays a token that was restarted: the sessions we knew are gone. */
void kl_shim_drop(void)
{
	if (kl_shim_forget_login && last_open)
		real->C_Logout(last_open);
	dropped_upto = last_open;
}

static int dropped(CK_SESSION_HANDLE s)
{
	return s <= dropped_upto;
}

static CK_RV shim_open(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                       CK_SESSION_HANDLE_PTR s)
{
	CK_RV rv;

	kl_shim_open_calls++;
	if (kl_shim_fail_opens) {
		kl_shim_fail_opens--;
		return CKR_TOKEN_NOT_PRESENT;
	}
	rv = real->C_OpenSession(slot, flags, app, notify, s);
	if (rv == CKR_OK && *s > last_open)
		last_open = *s;
	return rv;
}

static CK_RV shim_random(CK_SESSION_HANDLE s, CK_BYTE_PTR buf, CK_ULONG len)
{
	return dropped(s) ? CKR_SESSION_HANDLE_INVALID : real->C_GenerateRandom(s, buf, len);
}

/* KL_SHIM_DROP_AT_SIGN=N in the environment of a process that loads the
 * shim (the station, in test_station): the Nth C_SignInit finds every
 * session of the process gone, as when a network HSM restarts mid-issuance.
 * Later sessions work. */
static unsigned sign_calls;

/* KL_SHIM_SIGN_LOG=FILE: one line "sign LABEL" per C_SignInit, LABEL the
 * key's CKA_LABEL, appended to FILE, so that a test counts which keys of
 * another process signed. */
static void log_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
	const char *path = getenv("KL_SHIM_SIGN_LOG");
	char label[128] = "?";
	CK_ATTRIBUTE a = { CKA_LABEL, label, sizeof(label) - 1 };
	FILE *f;

	if (!path)
		return;
	if (real->C_GetAttributeValue(s, key, &a, 1) == CKR_OK && a.ulValueLen < sizeof(label))
		label[a.ulValueLen] = '\0';
	else
		snprintf(label, sizeof(label), "?");
	f = fopen(path, "a");
	if (f) {
		fprintf(f, "sign %s\n", label);
		fclose(f);
	}
}

static CK_RV shim_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
	const char *at = getenv("KL_SHIM_DROP_AT_SIGN");

	log_sign(s, key);

	if (at && ++sign_calls == (unsigned)atoi(at)) {
		kl_shim_drop();
		/* Once per process, even when the module is unloaded and loaded
		 * again by a station that reconnects. */
		setenv("KL_SHIM_DROP_AT_SIGN", "0", 1);
	}
	return dropped(s) ? CKR_SESSION_HANDLE_INVALID : real->C_SignInit(s, m, key);
}

static CK_RV shim_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                       CK_ULONG_PTR sig_len)
{
	return dropped(s) ? CKR_SESSION_HANDLE_INVALID : real->C_Sign(s, data, len, sig, sig_len);
}

static CK_RV shim_session_info(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	return dropped(s) ? CKR_SESSION_HANDLE_INVALID : real->C_GetSessionInfo(s, info);
}

static CK_RV shim_login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	CK_RV rv;

	kl_shim_login_calls++;
	if (user != CKU_USER)
		return real->C_Login(s, user, pin, len);
	if (wrong_in_a_row >= kl_shim_max_tries)
		return CKR_PIN_LOCKED;
	rv = real->C_Login(s, user, pin, len);
	if (rv == CKR_PIN_INCORRECT)
		wrong_in_a_row++;
	else if (rv == CKR_OK)
		wrong_in_a_row = 0;
	return rv;
}

static CK_RV shim_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_RV rv = real->C_GetTokenInfo(slot, info);

	if (rv != CKR_OK)
		return rv;
	info->flags &=
	    ~(CK_FLAGS)(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
	if (wrong_in_a_row >= kl_shim_max_tries)
		info->flags |= CKF_USER_PIN_LOCKED;
	else if (wrong_in_a_row + 1 == kl_shim_max_tries)
		info->flags |= CKF_USER_PIN_FINAL_TRY;
	else if (wrong_in_a_row > 0)
		info->flags |= CKF_USER_PIN_COUNT_LOW;
	return CKR_OK;
}

static CK_RV shim_mech_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	if (kl_shim_hide_rsa && type == CKM_RSA_PKCS_KEY_PAIR_GEN)
		return CKR_MECHANISM_INVALID;
	return real->C_GetMechanismInfo(slot, type, info);
}

static CK_RV shim_generate_pair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub,
                                CK_ULONG n_pub, CK_ATTRIBUTE_PTR priv, CK_ULONG n_priv,
                                CK_OBJECT_HANDLE_PTR h_pub, CK_OBJECT_HANDLE_PTR h_priv)
{
	if (kl_shim_hide_rsa && m && m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN)
		return CKR_MECHANISM_INVALID;
	return real->C_GenerateKeyPair(s, m, pub, n_pub, priv, n_priv, h_pub, h_priv);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (!real) {
		const char *path = getenv("KL_SHIM_REAL_MODULE");
		CK_C_GetFunctionList get;
		void *dl;

		dl = dlopen(path ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
		if (!dl)
			return CKR_GENERAL_ERROR;
		get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
		if (!get || get(&real) != CKR_OK || !real)
			return CKR_GENERAL_ERROR;
		shim = *real;
		shim.C_GetFunctionList = C_GetFunctionList;
		shim.C_Login = shim_login;
		shim.C_GetTokenInfo = shim_token_info;
		shim.C_GetMechanismInfo = shim_mech_info;
		shim.C_GenerateKeyPair = shim_generate_pair;
		shim.C_OpenSession = shim_open;
		shim.C_GenerateRandom = shim_random;
		shim.C_GetSessionInfo = shim_session_info;
		shim.C_SignInit = shim_sign_init;
		shim.C_Sign = shim_sign;
	}
	*list = &shim;
	return CKR_OK;
}

#else /* the test program */

#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "kl_secret.h"

#ifndef KL_P11_SHIM_PATH
#error "KL_P11_SHIM_PATH must be defined by the build"
#endif

#define WRONG_PIN "31337-not-the-pin"

static struct {
	kl_floor *floor;
	kl_token tok;   /* "kl-ca" */
	kl_token other; /* "kl-other", same module */
	/* per test, freed by the teardown even when an assertion fails */
	kl_hsm *h;
	kl_hsm *h2;
	kl_hsm_key *k;
	EVP_PKEY *pub;
	EVP_PKEY *priv;
	void *shim;
} g;

static int group_setup(void **state)
{
	if (kl_floor_new(&g.floor) < 0 ||
	    kl_floor_token(g.floor, "kl-ca", "so-1111", "user-2222", &g.tok) < 0 ||
	    kl_floor_token(g.floor, "kl-other", "so-3333", "user-4444", &g.other) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		kl_floor_free(g.floor);
		g.floor = NULL;
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	kl_floor_free(g.floor);
	return 0;
}

static int test_teardown(void **state)
{
	EVP_PKEY_free(g.priv); /* libp11 objects go before the module */
	EVP_PKEY_free(g.pub);
	kl_hsm_key_free(g.k);
	kl_hsm_free(g.h2);
	kl_hsm_free(g.h);
	if (g.shim)
		dlclose(g.shim);
	g.priv = g.pub = NULL;
	g.k = NULL;
	g.h = g.h2 = NULL;
	g.shim = NULL;
	return 0;
}

static int login(kl_hsm *h, const char *pin)
{
	kl_secret *s = NULL;
	int r;

	assert_int_equal(kl_secret_from_bytes(pin, strlen(pin), &s), 0);
	r = kl_hsm_login(h, s);
	kl_secret_free(s);
	return r;
}

static kl_hsm *open_login(const char *module, const kl_token *t)
{
	kl_hsm *h = NULL;

	if (kl_hsm_open(module, t->label, &h) < 0)
		fail_msg("open %s: %s", t->label, kl_error_detail());
	if (login(h, t->user_pin) < 0) {
		kl_hsm_free(h);
		fail_msg("login %s: %s", t->label, kl_error_detail());
	}
	return h;
}

static void assert_detail_has(const char *needle)
{
	if (!strstr(kl_error_detail(), needle))
		fail_msg("error detail \"%s\" lacks \"%s\"", kl_error_detail(), needle);
}

/* Reads a whole small file into a static buffer. */
static const char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* pkcs11-tool's view of the private key labelled label: its "Access:" line
 * must list sensitive, always sensitive, never extractable and local, and
 * not "extractable"; its "ID:" must be ours. */
static void outside_check(const char *label, const char *id_hex)
{
	char out[PATH_MAX], want_label[256], access[512] = "", id[256] = "";
	const char *argv[] = { "pkcs11-tool",    "--module", g.tok.module, "--token-label",
		               g.tok.label,      "--login",  "--pin",      g.tok.user_pin,
		               "--list-objects", "--type",   "privkey",    NULL };
	const char *text, *line, *end;
	bool mine = false, seen = false;
	char *item, *save = NULL;
	bool sensitive = false, always = false, never = false, local = false;

	snprintf(out, sizeof(out), "%s/privkeys-%s.txt", kl_floor_dir(g.floor), label);
	assert_int_equal(kl_floor_run(g.floor, out, NULL, argv), 0);
	text = slurp(out);
	snprintf(want_label, sizeof(want_label), "label:      %s", label);

	for (line = text; *line; line = *end ? end + 1 : end) {
		end = strchr(line, '\n');
		if (!end)
			end = line + strlen(line);
		int len = (int)(end - line);

		if (len > 0 && line[0] != ' ') { /* "Private Key Object; EC" */
			mine = false;
			continue;
		}
		while (len > 0 && *line == ' ') {
			line++;
			len--;
		}
		if (len == (int)strlen(want_label) && strncmp(line, want_label, (size_t)len) == 0) {
			mine = seen = true;
		} else if (mine && strncmp(line, "Access:", 7) == 0) {
			snprintf(access, sizeof(access), "%.*s", len - 7, line + 7);
		} else if (mine && strncmp(line, "ID:", 3) == 0) {
			snprintf(id, sizeof(id), "%.*s", len - 3, line + 3);
		}
	}
	if (!seen)
		fail_msg("pkcs11-tool does not list private key '%s':\n%s", label, text);
	/* "sensitive, always sensitive, never extractable, local" */
	for (item = strtok_r(access, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		if (strcmp(item, "sensitive") == 0)
			sensitive = true;
		else if (strcmp(item, "always sensitive") == 0)
			always = true;
		else if (strcmp(item, "never extractable") == 0)
			never = true;
		else if (strcmp(item, "local") == 0)
			local = true;
		else if (strcmp(item, "extractable") == 0)
			fail_msg("pkcs11-tool says key '%s' is extractable", label);
	}
	assert_true(sensitive);
	assert_true(always);
	assert_true(never);
	assert_true(local);
	item = id;
	while (*item == ' ')
		item++;
	assert_int_equal(strcasecmp(item, id_hex), 0);
}

/* Signs with the token key (through libp11, on our login) and verifies with
 * the public key we built from the token's attributes. */
static void sign_verify(EVP_PKEY *priv, EVP_PKEY *pub)
{
	static const unsigned char msg[] = "keyline: serial KL-0001, nonce 42";
	unsigned char sig[1024];
	size_t sig_len = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	assert_non_null(md);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, priv), 1);
	assert_int_equal(EVP_DigestSign(md, sig, &sig_len, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(md);

	md = EVP_MD_CTX_new();
	assert_non_null(md);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg)), 1);
	/* and a different message does not verify */
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
	assert_int_not_equal(EVP_DigestVerify(md, sig, sig_len, msg, sizeof(msg) - 2), 1);
	EVP_MD_CTX_free(md);
}

static void check_keygen(kl_hsm_key_type type, const char *label, int bits, const char *alg)
{
	struct kl_hsm_key_attrs a;

	g.h = open_login(g.tok.module, &g.tok);
	if (kl_hsm_key_generate(g.h, type, label, &g.k) < 0)
		fail_msg("generate %s: %s", label, kl_error_detail());
	assert_int_equal(kl_hsm_key_get_type(g.k), type);
	assert_string_equal(kl_hsm_key_label(g.k), label);
	assert_int_equal(strlen(kl_hsm_key_id_hex(g.k)), 32); /* 16-byte CKA_ID */

	/* what the token says, not what we asked */
	memset(&a, 0xff, sizeof(a));
	assert_int_equal(kl_hsm_key_attrs(g.h, g.k, &a), 0);
	assert_true(a.sensitive);
	assert_false(a.extractable);
	assert_true(a.always_sensitive);
	assert_true(a.never_extractable);
	assert_true(a.is_private);
	assert_true(a.local);

	outside_check(label, kl_hsm_key_id_hex(g.k));

	if (kl_hsm_key_public(g.h, g.k, &g.pub) < 0)
		fail_msg("public %s: %s", label, kl_error_detail());
	assert_int_equal(EVP_PKEY_get_bits(g.pub), bits);
	assert_true(EVP_PKEY_is_a(g.pub, alg));

	if (kl_hsm_key_private(g.h, g.k, &g.priv) < 0)
		fail_msg("private %s: %s", label, kl_error_detail());
	sign_verify(g.priv, g.pub);
}

static void test_keygen_p256(void **state)
{
	check_keygen(KL_HSM_KEY_EC_P256, "ca-p256", 256, "EC");
}

static void test_keygen_p384(void **state)
{
	check_keygen(KL_HSM_KEY_EC_P384, "ca-p384", 384, "EC");
}

static void test_keygen_rsa3072(void **state)
{
	check_keygen(KL_HSM_KEY_RSA_3072, "ca-rsa3072", 3072, "RSA");
}

/* A key made earlier is found by label from a fresh session, same id, same
 * public key; labels are unique. */
static void test_find_and_duplicate(void **state)
{
	kl_hsm_key *again = NULL;
	EVP_PKEY *pub2 = NULL;

	g.h = open_login(g.tok.module, &g.tok);
	assert_int_equal(kl_hsm_key_generate(g.h, KL_HSM_KEY_EC_P256, "findme", &g.k), 0);
	assert_int_equal(kl_hsm_key_public(g.h, g.k, &g.pub), 0);
	kl_hsm_free(g.h);
	g.h = open_login(g.tok.module, &g.tok);

	assert_int_equal(kl_hsm_key_find(g.h, "findme", &again), 0);
	assert_string_equal(kl_hsm_key_id_hex(again), kl_hsm_key_id_hex(g.k));
	assert_int_equal(kl_hsm_key_get_type(again), KL_HSM_KEY_EC_P256);
	assert_int_equal(kl_hsm_key_public(g.h, again, &pub2), 0);
	assert_int_equal(EVP_PKEY_eq(g.pub, pub2), 1);
	EVP_PKEY_free(pub2);
	kl_hsm_key_free(again);

	assert_int_equal(kl_hsm_key_generate(g.h, KL_HSM_KEY_EC_P384, "findme", &again),
	                 -KL_E_EXISTS);
	assert_detail_has("findme");
	assert_int_equal(kl_hsm_key_find(g.h, "nobody-has-this", &again), -KL_E_NOTFOUND);
	assert_detail_has("nobody-has-this");

	/* RFC 7512 URIs: by id alone, by label and id, and mismatches. */
	char text[256];
	kl_pkcs11_uri u;
	snprintf(text, sizeof(text), "pkcs11:token=%s;type=private;id=", g.tok.label);
	for (const char *hx = kl_hsm_key_id_hex(g.k); *hx; hx += 2)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%%%.2s", hx);
	assert_int_equal(kl_pkcs11_uri_parse(text, &u), 0);
	assert_int_equal(kl_hsm_key_find_uri(g.h, &u, &again), 0);
	assert_string_equal(kl_hsm_key_label(again), "findme");
	assert_int_equal(kl_hsm_key_public(g.h, again, &pub2), 0);
	assert_int_equal(EVP_PKEY_eq(g.pub, pub2), 1);
	EVP_PKEY_free(pub2);
	kl_hsm_key_free(again);
	snprintf(u.object, sizeof(u.object), "findme");
	assert_int_equal(kl_hsm_key_find_uri(g.h, &u, &again), 0);
	kl_hsm_key_free(again);
	u.id[0] ^= 1;
	assert_int_equal(kl_hsm_key_find_uri(g.h, &u, &again), -KL_E_NOTFOUND);
	assert_detail_has("CKA_ID");
	snprintf(u.token, sizeof(u.token), "another-token");
	assert_int_equal(kl_hsm_key_find_uri(g.h, &u, &again), -KL_E_INVALID);
	assert_detail_has("another-token");
}

/* Key objects are private: without a login there is no key generation. */
static void test_generate_needs_login(void **state)
{
	assert_int_equal(kl_hsm_open(g.tok.module, g.tok.label, &g.h), 0);
	assert_int_equal(kl_hsm_key_generate(g.h, KL_HSM_KEY_EC_P256, "early", &g.k), -KL_E_STATE);
	assert_null(g.k);
	assert_detail_has("not logged in");
	assert_int_equal(kl_hsm_key_generate(g.h, (kl_hsm_key_type)99, "odd", &g.k),
	                 -KL_E_UNSUPPORTED);
}

static void test_wrong_pin(void **state)
{
	char out[PATH_MAX];
	const char *argv[] = { "pkcs11-tool", "--module", g.tok.module, "--list-token-slots",
		               NULL };

	assert_int_equal(kl_hsm_open(g.tok.module, g.tok.label, &g.h), 0);
	kl_error_clear();
	assert_int_equal(login(g.h, WRONG_PIN), -KL_E_PIN);
	assert_int_equal(kl_error_code(), KL_E_PIN);
	assert_detail_has("PIN incorrect for token 'kl-ca'");
	assert_detail_has("CKR_PIN_INCORRECT (0xa0)");
	assert_null(strstr(kl_error_detail(), WRONG_PIN));

	/* From the outside: the user PIN is not locked ... */
	snprintf(out, sizeof(out), "%s/slots.txt", kl_floor_dir(g.floor));
	assert_int_equal(kl_floor_run(g.floor, out, NULL, argv), 0);
	assert_non_null(strstr(slurp(out), "kl-ca"));
	assert_null(strstr(slurp(out), "user PIN locked"));
	/* ... and the right PIN, given next, works. */
	assert_int_equal(login(g.h, g.tok.user_pin), 0);

	/* An empty PIN never reaches the token. */
	kl_hsm_free(g.h);
	assert_int_equal(kl_hsm_open(g.tok.module, g.tok.label, &g.h), 0);
	assert_int_equal(login(g.h, ""), -KL_E_PIN);
}

static void test_missing_token(void **state)
{
	assert_int_equal(kl_hsm_open(g.tok.module, "no-such-token", &g.h), -KL_E_NOTFOUND);
	assert_null(g.h);
	assert_detail_has("'no-such-token'");
	assert_detail_has("'kl-ca'"); /* the labels that do exist */
	assert_detail_has("'kl-other'");

	assert_int_equal(kl_hsm_open("/nonexistent/libp11-module.so", "kl-ca", &g.h),
	                 -KL_E_NOTFOUND);
	assert_int_equal(kl_hsm_open(g.tok.module, "", &g.h), -KL_E_INVALID);
}

static void test_random(void **state)
{
	unsigned char a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };
	unsigned char big[5000];

	assert_int_equal(kl_hsm_open(g.tok.module, g.tok.label, &g.h), 0);
	assert_int_equal(kl_hsm_random(g.h, a, sizeof(a)), 0);
	assert_int_equal(kl_hsm_random(g.h, b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_int_equal(kl_hsm_random(g.h, big, sizeof(big)), 0); /* several chunks */
	assert_int_equal(kl_hsm_random(g.h, big, 0), 0);
}

/* Two tokens of one module open at once share the loaded module: freeing one
 * must not finalise the module under the other. */
static void test_two_tokens(void **state)
{
	unsigned char r[16];

	g.h = open_login(g.tok.module, &g.tok);
	g.h2 = open_login(g.other.module, &g.other);
	assert_string_equal(kl_hsm_label(g.h2), "kl-other");
	kl_hsm_free(g.h);
	g.h = NULL;
	assert_int_equal(kl_hsm_random(g.h2, r, sizeof(r)), 0);
	assert_int_equal(kl_hsm_key_generate(g.h2, KL_HSM_KEY_EC_P256, "other-key", &g.k), 0);
	/* the key is on kl-other, not on kl-ca */
	g.h = open_login(g.tok.module, &g.tok);
	kl_hsm_key *k = NULL;
	assert_int_equal(kl_hsm_key_find(g.h, "other-key", &k), -KL_E_NOTFOUND);
	assert_null(k);
}

/* ---- through the counting shim ------------------------------------------ */

static unsigned *shim_calls;
static unsigned *shim_max_tries;
static int *shim_hide_rsa;

static void shim_load(void)
{
	void (*reset)(void);

	setenv("KL_SHIM_REAL_MODULE", g.tok.module, 1);
	/* Our own reference keeps the shim (and its counters) loaded while
	 * hsm/ loads and unloads it. */
	g.shim = dlopen(KL_P11_SHIM_PATH, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(g.shim);
	shim_calls = dlsym(g.shim, "kl_shim_login_calls");
	shim_max_tries = dlsym(g.shim, "kl_shim_max_tries");
	shim_hide_rsa = dlsym(g.shim, "kl_shim_hide_rsa");
	reset = (void (*)(void))dlsym(g.shim, "kl_shim_reset");
	assert_non_null(shim_calls);
	assert_non_null(shim_max_tries);
	assert_non_null(shim_hide_rsa);
	assert_non_null(reset);
	reset();
}

/* One kl_hsm_login is one C_Login: no retry, whatever the answer. */
static void test_shim_one_login_per_call(void **state)
{
	shim_load();
	assert_int_equal(kl_hsm_open(KL_P11_SHIM_PATH, g.tok.label, &g.h), 0);
	assert_int_equal(login(g.h, WRONG_PIN), -KL_E_PIN);
	assert_int_equal(*shim_calls, 1);
	assert_detail_has("PIN incorrect for token 'kl-ca'");
	assert_detail_has("CKF_USER_PIN_COUNT_LOW");
	assert_int_equal(login(g.h, g.tok.user_pin), 0);
	assert_int_equal(*shim_calls, 2);
}

/* A token that counts: the hint before the last try, then CKR_PIN_LOCKED
 * even for the right PIN, each time with one C_Login. */
static void test_shim_lockout(void **state)
{
	shim_load();
	*shim_max_tries = 3;
	assert_int_equal(kl_hsm_open(KL_P11_SHIM_PATH, g.tok.label, &g.h), 0);
	assert_int_equal(login(g.h, WRONG_PIN), -KL_E_PIN);
	assert_int_equal(login(g.h, WRONG_PIN), -KL_E_PIN);
	assert_detail_has("one more wrong PIN locks the token (CKF_USER_PIN_FINAL_TRY)");
	assert_int_equal(login(g.h, WRONG_PIN), -KL_E_PIN);
	assert_detail_has("now locked (CKF_USER_PIN_LOCKED)");
	assert_int_equal(login(g.h, g.tok.user_pin), -KL_E_PIN);
	assert_detail_has("token 'kl-ca' is locked");
	assert_detail_has("CKR_PIN_LOCKED (0xa4)");
	assert_int_equal(*shim_calls, 4);
}

static void test_shim_unsupported(void **state)
{
	shim_load();
	*shim_hide_rsa = 1;
	g.h = open_login(KL_P11_SHIM_PATH, &g.tok);
	assert_int_equal(kl_hsm_key_generate(g.h, KL_HSM_KEY_RSA_3072, "no-rsa", &g.k),
	                 -KL_E_UNSUPPORTED);
	assert_detail_has("CKR_MECHANISM_INVALID (0x70)");
	assert_detail_has("RSA-3072");
	/* EC still works through the shim */
	assert_int_equal(kl_hsm_key_generate(g.h, KL_HSM_KEY_EC_P256, "via-shim", &g.k), 0);
}

/* A token that goes away and comes back: the session is reopened with
 * back-off, never with a login; a token that forgot the login says so. */
static void test_shim_recover(void **state)
{
	unsigned *opens, *fail_opens, logins;
	int *forget;
	void (*drop)(void);
	unsigned char buf[16];

	shim_load();
	opens = dlsym(g.shim, "kl_shim_open_calls");
	fail_opens = dlsym(g.shim, "kl_shim_fail_opens");
	forget = dlsym(g.shim, "kl_shim_forget_login");
	drop = (void (*)(void))dlsym(g.shim, "kl_shim_drop");
	assert_non_null(opens);
	assert_non_null(drop);

	g.h = open_login(KL_P11_SHIM_PATH, &g.tok);
	assert_int_equal(kl_hsm_random(g.h, buf, sizeof(buf)), 0);
	logins = *shim_calls;

	drop();
	assert_int_equal(kl_hsm_random(g.h, buf, sizeof(buf)), -KL_E_UNAVAILABLE);
	assert_detail_has("CKR_SESSION_HANDLE_INVALID");
	*fail_opens = 2;
	*opens = 0;
	assert_int_equal(kl_hsm_recover(g.h), 0);
	assert_int_equal(*opens, 3); /* two refused, then back */
	assert_int_equal(*shim_calls, logins);
	assert_int_equal(kl_hsm_random(g.h, buf, sizeof(buf)), 0);

	/* Restarted token that lost the login: reported, not retried. */
	*forget = 1;
	drop();
	assert_int_equal(kl_hsm_recover(g.h), -KL_E_PIN);
	assert_detail_has("forgotten the login");
	assert_int_equal(*shim_calls, logins);
	assert_int_equal(login(g.h, g.tok.user_pin), 0);
	assert_int_equal(*shim_calls, logins + 1);
	assert_int_equal(kl_hsm_random(g.h, buf, sizeof(buf)), 0);

	/* Gone for good: a bounded number of tries, then a clear error. */
	*forget = 0;
	drop();
	*fail_opens = 100;
	*opens = 0;
	assert_int_equal(kl_hsm_recover(g.h), -KL_E_UNAVAILABLE);
	assert_detail_has("still unreachable");
	assert_int_equal(*opens, 5);
	*fail_opens = 0;
}

/* kl_hsm_check looks at the token without any key: healthy on a fresh
 * logged-in session, not after the token dropped it, nor after a
 * recovery reopened ours (libp11's sessions died with it). It signs
 * nothing. */
static void test_shim_check(void **state)
{
	void (*drop)(void);
	char log[PATH_MAX];
	FILE *f;

	shim_load();
	drop = (void (*)(void))dlsym(g.shim, "kl_shim_drop");
	assert_non_null(drop);
	snprintf(log, sizeof(log), "%s/signs.log", kl_floor_dir(g.floor));
	setenv("KL_SHIM_SIGN_LOG", log, 1);

	g.h = open_login(KL_P11_SHIM_PATH, &g.tok);
	assert_int_equal(kl_hsm_check(g.h), 0);
	assert_int_equal(kl_hsm_check(g.h), 0);
	drop();
	assert_int_equal(kl_hsm_check(g.h), -KL_E_UNAVAILABLE);
	assert_detail_has("CKR_SESSION_HANDLE_INVALID");
	assert_int_equal(kl_hsm_recover(g.h), 0);
	assert_int_equal(kl_hsm_check(g.h), -KL_E_UNAVAILABLE);
	assert_detail_has("lost its sessions");
	/* (A new kl_hsm is healthy again: test_station_hsm's reconnect; here
	 * the shim, kept loaded, would count SoftHSM's reused handles as
	 * dropped.) No signature was made for any of it. */
	f = fopen(log, "r");
	if (f) {
		char line[256];

		if (fgets(line, sizeof(line), f))
			fail_msg("kl_hsm_check signed: %s", line);
		fclose(f);
	}
	unsetenv("KL_SHIM_SIGN_LOG");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_keygen_p256, test_teardown),
		cmocka_unit_test_teardown(test_keygen_p384, test_teardown),
		cmocka_unit_test_teardown(test_keygen_rsa3072, test_teardown),
		cmocka_unit_test_teardown(test_find_and_duplicate, test_teardown),
		cmocka_unit_test_teardown(test_generate_needs_login, test_teardown),
		cmocka_unit_test_teardown(test_wrong_pin, test_teardown),
		cmocka_unit_test_teardown(test_missing_token, test_teardown),
		cmocka_unit_test_teardown(test_random, test_teardown),
		cmocka_unit_test_teardown(test_two_tokens, test_teardown),
		cmocka_unit_test_teardown(test_shim_one_login_per_call, test_teardown),
		cmocka_unit_test_teardown(test_shim_lockout, test_teardown),
		cmocka_unit_test_teardown(test_shim_unsupported, test_teardown),
		cmocka_unit_test_teardown(test_shim_recover, test_teardown),
		cmocka_unit_test_teardown(test_shim_check, test_teardown),
	};

	return cmocka_run_group_tests_name("hsm_keygen", tests, group_setup, group_teardown);
}

#endif
