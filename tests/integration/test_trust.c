/* The station's EK checks (flow steps 3 and 4) against real swtpm DUTs,
 * including lying ones: a DUT from a vendor the station does not trust, a
 * DUT whose EK certificate belongs to another TPM, a DUT that lost its
 * certificate, and DUTs whose answers are altered on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "ek_check.h"
#include "floor.h"
#include "kl_error.h"
#include "mitm.h"
#include "tpm.h"
#include "trust.h"

static struct {
	kl_floor *floor;
	kl_vendor *acme, *rogue;
	kl_dut **good;   /* 3 acme DUTs */
	kl_dut **forged; /* 1 rogue DUT */
	kl_trust *trust;
	char trust_dir[PATH_MAX];
} g;

static int copy(const char *from, const char *to)
{
	const char *argv[] = { "cp", from, to, NULL };

	return kl_floor_run(g.floor, NULL, NULL, argv);
}

static int setup(void **state)
{
	char p[PATH_MAX];

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_vendor(g.floor, "Rogue TPM", &g.rogue) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "good", 3, &g.good) < 0 ||
	    kl_floor_manufacture(g.floor, g.rogue, "forged", 1, &g.forged) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.trust_dir, sizeof(g.trust_dir), "%s/trust", kl_floor_dir(g.floor));
	mkdir(g.trust_dir, 0755);
	snprintf(p, sizeof(p), "%s/acme-root.pem", g.trust_dir);
	if (copy(g.acme->root_pem, p) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/acme-issuing.pem", g.trust_dir);
	if (copy(g.acme->intermediate_pem, p) != 0 || kl_trust_load(g.trust_dir, &g.trust) < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (kl_dut_start(g.floor, g.good[i]) < 0)
			return -1;
	return kl_dut_start(g.floor, g.forged[0]) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	kl_trust_free(g.trust);
	kl_floor_free(g.floor);
	return 0;
}

/* Runs the check over tcti. Afterwards no transient object may be left,
 * except when a lying link hid one the TPM really made (leftover_ok). */
static kl_ek_verdict check_on(const char *tcti, kl_ek_type type, kl_ek_report *rep,
                              bool leftover_ok)
{
	kl_tpm *t = NULL;
	size_t transients = 99;

	if (kl_tpm_open(tcti, &t) < 0)
		fail_msg("open %s: %s", tcti, kl_error_detail());
	assert_int_equal(kl_ek_check(t, g.trust, type, rep), 0);
	assert_int_equal(kl_tpm_transient_count(t, &transients), 0);
	if (!leftover_ok)
		assert_int_equal(transients, 0);
	kl_tpm_free(t);
	return rep->verdict;
}

static kl_ek_verdict check(const char *tcti, kl_ek_type type, kl_ek_report *rep)
{
	return check_on(tcti, type, rep, false);
}

static void test_genuine(void **state)
{
	kl_ek_report rep;
	static const unsigned char zero[32];

	(void)state;
	assert_int_equal(kl_trust_roots(g.trust), 1);
	assert_int_equal(strlen(kl_trust_version(g.trust)), 16);
	for (int i = 0; i < 3; i++) {
		kl_ek_type type = (kl_ek_type)i;

		if (check(g.good[i]->tcti, type, &rep) != KL_EK_OK)
			fail_msg("%s: %s", kl_ek_type_name(type), rep.reason);
		assert_string_equal(rep.manufacturer, "id:49424D00");
		assert_non_null(strstr(rep.issuer, "Acme TPM EK Issuing CA"));
		assert_memory_not_equal(rep.ek_sha256, zero, 32);
		assert_non_null(rep.cert_der);
		kl_ek_report_clear(&rep);
	}
}

static void test_untrusted_vendor(void **state)
{
	kl_ek_report rep;

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(check(g.forged[0]->tcti, (kl_ek_type)i, &rep), KL_EK_UNTRUSTED);
		assert_non_null(strstr(rep.reason, "not issued by a trusted TPM vendor"));
		assert_non_null(strstr(rep.reason, "Rogue TPM"));
		assert_string_equal(kl_ek_verdict_name(rep.verdict), "ek_cert_untrusted");
		kl_ek_report_clear(&rep);
	}
}

/* good-1's RSA EK certificate replaced by good-0's: it chains, but it is not
 * this TPM's key. A swapped or cloned certificate. */
static void test_swapped_certificate(void **state)
{
	kl_ek_report rep;

	(void)state;
	assert_int_equal(kl_dut_copy_ek_cert(g.floor, g.good[0], g.good[1], KL_NV_EK_RSA2048), 0);

	assert_int_equal(check(g.good[1]->tcti, KL_EK_RSA2048, &rep), KL_EK_MISMATCH);
	assert_non_null(strstr(rep.reason, "forged or swapped TPM"));
	kl_ek_report_clear(&rep);
	/* Its other EKs are still its own. */
	assert_int_equal(check(g.good[1]->tcti, KL_EK_P256, &rep), KL_EK_OK);
	kl_ek_report_clear(&rep);
}

static void test_missing_certificate(void **state)
{
	kl_ek_report rep;

	(void)state;
	const char *undef[] = { "tpm2_nvundefine", "0x01c0000a", "-C", "p", NULL };
	assert_int_equal(kl_dut_tool(g.floor, g.good[2], NULL, undef), 0);
	assert_int_equal(check(g.good[2]->tcti, KL_EK_P256, &rep), KL_EK_NO_CERT);
	assert_non_null(strstr(rep.reason, "0x01c0000a"));
	kl_ek_report_clear(&rep);
}

/* Answers altered on the wire by a proxy in front of the real TPM. */
static void test_lying_link(void **state)
{
	kl_mitm *m = NULL;
	kl_ek_report rep;

	(void)state;
	/* A proxy that alters nothing is invisible. */
	kl_mitm_rule none = { .command_code = 0x00000131, .action = KL_MITM_PASS };
	assert_int_equal(kl_mitm_start(g.good[0], &none, 1, &m), 0);
	assert_int_equal(check(kl_mitm_tcti(m), KL_EK_P384, &rep), KL_EK_OK);
	kl_ek_report_clear(&rep);
	assert_int_equal(kl_mitm_altered(m), 0);
	kl_mitm_stop(m);

	/* One bit of the EK certificate flipped as it is read out of NV
	 * (TPM2_NV_Read, 0x14e): its signature no longer verifies. */
	kl_mitm_rule flip = { .command_code = 0x0000014e,
		              .action = KL_MITM_FLIP,
		              .offset = 10 + 4 + 2 + 300 };
	assert_int_equal(kl_mitm_start(g.good[0], &flip, 1, &m), 0);
	kl_ek_verdict v = check(kl_mitm_tcti(m), KL_EK_RSA2048, &rep);
	assert_true(v == KL_EK_UNTRUSTED || v == KL_EK_BAD_CERT);
	assert_true(kl_mitm_altered(m) >= 1);
	kl_ek_report_clear(&rep);
	kl_mitm_stop(m);

	/* A TPM that fails CreatePrimary (0x131) cannot prove its EK. */
	kl_mitm_rule fail = { .command_code = 0x00000131, .action = KL_MITM_FAIL };
	assert_int_equal(kl_mitm_start(g.good[0], &fail, 1, &m), 0);
	/* (The TPM did make the object; the lie hides its handle.) */
	assert_int_equal(check_on(kl_mitm_tcti(m), KL_EK_P256, &rep, true), KL_EK_TPM_ERROR);
	assert_non_null(strstr(rep.reason, "recreating the p256 EK failed"));
	kl_ek_report_clear(&rep);
	kl_mitm_stop(m);
}

static void test_bundle_errors(void **state)
{
	kl_trust *t = NULL;
	char dir[PATH_MAX], p[PATH_MAX];

	(void)state;
	assert_int_equal(kl_trust_load("/nonexistent/trust", &t), -KL_E_NOTFOUND);
	/* Intermediates alone trust nothing. */
	snprintf(dir, sizeof(dir), "%s/only-intermediate", kl_floor_dir(g.floor));
	mkdir(dir, 0755);
	snprintf(p, sizeof(p), "%s/issuing.pem", dir);
	assert_int_equal(copy(g.acme->intermediate_pem, p), 0);
	assert_int_equal(kl_trust_load(dir, &t), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "no root"));
	/* A file that is not a certificate is named. */
	snprintf(p, sizeof(p), "%s/junk.pem", dir);
	FILE *f = fopen(p, "w");
	fputs("not a certificate\n", f);
	fclose(f);
	assert_int_equal(kl_trust_load(dir, &t), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "junk.pem"));
	assert_null(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_genuine),
		cmocka_unit_test(test_untrusted_vendor),
		cmocka_unit_test(test_swapped_certificate),
		cmocka_unit_test(test_missing_certificate),
		cmocka_unit_test(test_lying_link),
		cmocka_unit_test(test_bundle_errors),
	};

	return cmocka_run_group_tests_name("trust", tests, setup, teardown);
}
