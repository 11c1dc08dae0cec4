/* kl_error: codes, details, wrapping, the OpenSSL queue, the name tables,
 * and that each thread has its own last error. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kl_error.h"

static void test_set_returns_negative(void **state)
{
	kl_error_clear();
	assert_int_equal(kl_error_code(), KL_OK);
	assert_string_equal(kl_error_detail(), "");

	assert_int_equal(
	    kl_error_set(KL_E_TPM, "Esys_CreatePrimary: %s (0x%x)", "TPM_RC_HIERARCHY", 0x285),
	    -KL_E_TPM);
	assert_int_equal(kl_error_code(), KL_E_TPM);
	assert_string_equal(kl_error_detail(), "Esys_CreatePrimary: TPM_RC_HIERARCHY (0x285)");

	/* the last one wins */
	assert_int_equal(kl_error_set(KL_E_IO, "second"), -KL_E_IO);
	assert_int_equal(kl_error_code(), KL_E_IO);
	assert_string_equal(kl_error_detail(), "second");

	kl_error_clear();
	assert_int_equal(kl_error_code(), KL_OK);
	assert_string_equal(kl_error_detail(), "");
}

/* %m reports the caller's errno, as in `kl_error_set(KL_E_IO, "open %s: %m", p)`. */
static void test_set_errno(void **state)
{
	errno = ENOENT;
	assert_int_equal(kl_error_set(KL_E_IO, "open /x: %m"), -KL_E_IO);
	assert_non_null(strstr(kl_error_detail(), strerror(ENOENT)));
}

static void test_set_truncates(void **state)
{
	char big[3 * KL_ERROR_DETAIL_MAX];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(kl_error_set(KL_E_INVALID, "%s", big), -KL_E_INVALID);
	assert_int_equal(strlen(kl_error_detail()), KL_ERROR_DETAIL_MAX - 1);
}

static void test_wrap(void **state)
{
	assert_int_equal(kl_error_set(KL_E_HSM, "C_Sign: CKR_DEVICE_ERROR (0x30)"), -KL_E_HSM);
	assert_int_equal(kl_error_wrap("sign CRL %d", 7), -KL_E_HSM);
	assert_int_equal(kl_error_code(), KL_E_HSM); /* code unchanged */
	assert_string_equal(kl_error_detail(), "sign CRL 7: C_Sign: CKR_DEVICE_ERROR (0x30)");
	assert_int_equal(kl_error_wrap("issue"), -KL_E_HSM);
	assert_string_equal(kl_error_detail(),
	                    "issue: sign CRL 7: C_Sign: CKR_DEVICE_ERROR (0x30)");

	/* `return kl_error_wrap(...)` must never turn into success. */
	kl_error_clear();
	assert_true(kl_error_wrap("nothing before") < 0);
	assert_int_not_equal(kl_error_code(), KL_OK);
}

static void test_wrap_long(void **state)
{
	char big[2 * KL_ERROR_DETAIL_MAX];

	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	kl_error_set(KL_E_DB, "%s", big);
	assert_int_equal(kl_error_wrap("prefix"), -KL_E_DB);
	assert_int_equal(strncmp(kl_error_detail(), "prefix: bbb", 11), 0);
	assert_int_equal(strlen(kl_error_detail()), KL_ERROR_DETAIL_MAX - 1);
}

/* Puts two real errors on OpenSSL's queue: a PEM parse of junk. */
static void make_ssl_errors(void)
{
	BIO *b = BIO_new_mem_buf("junk, not PEM", -1);

	assert_non_null(b);
	ERR_clear_error();
	assert_null(PEM_read_bio_X509(b, NULL, NULL, NULL));
	BIO_free(b);
	ERR_raise_data(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE, "second reason");
	assert_int_not_equal(ERR_peek_error(), 0);
}

static void test_set_ssl_drains_queue(void **state)
{
	make_ssl_errors();
	assert_int_equal(kl_error_set_ssl(KL_E_CRYPTO, "parse %s", "ek.pem"), -KL_E_CRYPTO);
	assert_int_equal(kl_error_code(), KL_E_CRYPTO);
	assert_int_equal(strncmp(kl_error_detail(), "parse ek.pem: error:", 20), 0);
	assert_non_null(strstr(kl_error_detail(), "no start line")); /* oldest first */
	assert_non_null(strstr(kl_error_detail(), "cert already in hash table"));
	assert_true(strstr(kl_error_detail(), "no start line") <
	            strstr(kl_error_detail(), "cert already in hash table"));
	assert_int_equal(ERR_peek_error(), 0);

	/* with an empty queue it is just kl_error_set */
	assert_int_equal(kl_error_set_ssl(KL_E_CRYPTO, "plain"), -KL_E_CRYPTO);
	assert_string_equal(kl_error_detail(), "plain");
}

/* When the detail is already full the queue is still emptied, so an old
 * reason never shows up in a later, unrelated error. */
static void test_set_ssl_full_detail(void **state)
{
	char big[KL_ERROR_DETAIL_MAX];

	memset(big, 'c', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	make_ssl_errors();
	for (int i = 0; i < 20; i++)
		ERR_raise_data(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE, "filler %d", i);
	assert_int_equal(kl_error_set_ssl(KL_E_CRYPTO, "%s", big), -KL_E_CRYPTO);
	assert_int_equal(ERR_peek_error(), 0);
	assert_true(strlen(kl_error_detail()) < KL_ERROR_DETAIL_MAX);
}

static void test_names(void **state)
{
	assert_string_equal(kl_err_name(KL_OK), "ok");
	assert_string_equal(kl_err_name(KL_E_TPM), "tpm");
	assert_string_equal(kl_err_name(-KL_E_TPM), "tpm");
	assert_string_equal(kl_err_name(-KL_E_PIN), "pin");
	assert_string_equal(kl_err_name(KL_E_UNSUPPORTED), "unsupported");
	assert_string_equal(kl_err_str(KL_OK), "success");
	assert_string_equal(kl_err_str(-KL_E_NOMEM), "out of memory");
	assert_string_equal(kl_err_name(KL_E__MAX), "unknown");
	assert_string_equal(kl_err_name(-KL_E__MAX), "unknown");
	assert_string_equal(kl_err_name(INT_MAX), "unknown");
	assert_string_equal(kl_err_str(12345), "unknown error");
	assert_string_equal(kl_err_str(-12345), "unknown error");

	/* every code has a name and a sentence, and names are unique (they are
	 * machine-readable reasons) */
	for (int i = 0; i < KL_E__MAX; i++) {
		assert_non_null(kl_err_name(i));
		assert_non_null(kl_err_str(i));
		assert_string_not_equal(kl_err_name(i), "unknown");
		assert_string_not_equal(kl_err_str(i), "unknown error");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(kl_err_name(i), kl_err_name(j));
	}
}

/* kl_err_name(INT_MIN): -INT_MIN overflows in normalise(), the range check
 * is skipped and err_table is read out of bounds (SEGV under ASan). Run in a
 * child so that the bug cannot take the test program down. */
static void test_names_int_min(void **state)
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* die of the signal, not inside cmocka's handler */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		_exit(strcmp(kl_err_name(INT_MIN), "unknown") == 0 &&
		              strcmp(kl_err_str(INT_MIN), "unknown error") == 0
		          ? 0
		          : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* Two threads set different errors at the same time; each sees its own, and
 * the main thread's is untouched. */
static pthread_barrier_t barrier;

static void *thread_main(void *arg)
{
	kl_err code = (kl_err)(long)arg;
	long ok = 1;

	for (int i = 0; i < 1000; i++) {
		kl_error_set(code, "thread %d round %d", (int)code, i);
		if (i == 0)
			pthread_barrier_wait(&barrier); /* both have set theirs */
		if (kl_error_code() != code)
			ok = 0;
		char want[64];
		snprintf(want, sizeof(want), "thread %d round %d", (int)code, i);
		if (strcmp(kl_error_detail(), want) != 0)
			ok = 0;
	}
	return (void *)ok;
}

static void test_thread_local(void **state)
{
	pthread_t a, b;
	void *ra, *rb;

	kl_error_set(KL_E_DB, "main thread");
	assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
	assert_int_equal(pthread_create(&a, NULL, thread_main, (void *)(long)KL_E_TPM), 0);
	assert_int_equal(pthread_create(&b, NULL, thread_main, (void *)(long)KL_E_HSM), 0);
	assert_int_equal(pthread_join(a, &ra), 0);
	assert_int_equal(pthread_join(b, &rb), 0);
	pthread_barrier_destroy(&barrier);
	assert_int_equal((long)ra, 1);
	assert_int_equal((long)rb, 1);
	assert_int_equal(kl_error_code(), KL_E_DB);
	assert_string_equal(kl_error_detail(), "main thread");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_returns_negative),
		cmocka_unit_test(test_set_errno),
		cmocka_unit_test(test_set_truncates),
		cmocka_unit_test(test_wrap),
		cmocka_unit_test(test_wrap_long),
		cmocka_unit_test(test_set_ssl_drains_queue),
		cmocka_unit_test(test_set_ssl_full_detail),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_names_int_min),
		cmocka_unit_test(test_thread_local),
	};

	return cmocka_run_group_tests_name("kl_error", tests, NULL, NULL);
}
