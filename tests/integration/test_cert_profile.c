/* The device certificates field by field against the profile table of
 * docs/ca.md ("Device certificate fields"), and judged by the tools other
 * software uses: GnuTLS certtool --verify-profile=high, openssl verify
 * -x509_strict, Go's crypto/x509 (verify_x509.go) and python3-cryptography
 * (verify_x509.py, which derives the TPM's identifiers from the EK
 * certificate on its own).
 *
 * The IAK and IDevID are the ones the real engine issued for a swtpm DUT
 * (RSA-2048 EK certificate from the floor's vendor CA, CA key in SoftHSM)
 * and engraved in its NV; the LDevID is issued after by the same CA with the
 * IDevID's subject and TPM identifiers. A missing verifier fails the test:
 * CI installs them (scripts/deps.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "ceremony.h"
#include "devid.h"
#include "engine.h"
#include "floor.h"
#include "hsm.h"
#include "kl_error.h"
#include "profile.h"
#include "registry.h"
#include "store.h"
#include "trust.h"

#include "pki_fixture.h"

#if !defined(KL_TESTS_DIR) || !defined(KL_DOCS_DIR)
#error "KL_TESTS_DIR and KL_DOCS_DIR must be defined by the build"
#endif

#define SERIAL      "SN-TCG-0001"
#define CPS_URL     "http://pki.test/cps.html"
#define CA_ISSUERS  "http://pki.test/issuing.der"
#define CRL_URL     "http://pki.test/issuing.crl"
#define FOREVER     "99991231235959Z"
#define TCG_RESID   "2.23.133.11.1.1" /* tcg-cap-verifiedTPMResidency */
#define TCG_FIXED   "2.23.133.11.1.2" /* tcg-cap-verifiedTPMFixed */
#define TCG_RESTR   "2.23.133.11.1.3" /* tcg-cap-verifiedTPMRestricted */
#define TCG_AIK_EKU "2.23.133.8.3"    /* tcg-kp-AIKCertificate */
#define CLIENT_AUTH "1.3.6.1.5.5.7.3.2"

/* The table of docs/ca.md, one row per certificate kind. */
static const struct profile_row {
	const char *profile;
	const char *not_after; /* or NULL with days */
	int days;
	unsigned key_usage;      /* X509v3_KU_* */
	const char *eku[2];      /* exactly these */
	const char *policies[2]; /* exactly these, each with the CPS qualifier */
	bool hwmn, perm_id;      /* the TPM's identifiers from the EK certificate */
} table[] = {
	{ "iak",
	  FOREVER,
	  0,
	  X509v3_KU_DIGITAL_SIGNATURE,
	  { TCG_AIK_EKU },
	  { TCG_RESID, TCG_RESTR },
	  true,
	  true },
	{ "idevid",
	  FOREVER,
	  0,
	  X509v3_KU_DIGITAL_SIGNATURE,
	  { NULL },
	  { TCG_RESID, TCG_FIXED },
	  true,
	  true },
	{ "ldevid", NULL, 825, X509v3_KU_DIGITAL_SIGNATURE, { CLIENT_AUTH }, { NULL }, true, true },
};
enum { IAK, IDEVID, LDEVID, N_KINDS };

static struct {
	kl_floor *floor;
	kl_vendor *acme;
	kl_dut **duts;
	struct test_pki pki;
	char dir[PATH_MAX];
	kl_store *store;
	kl_ca *ca;
	kl_registry *reg;
	kl_engine_config cfg;
	X509 *certs[N_KINDS];
	char pem[N_KINDS][PATH_MAX];
	char ek_path[PATH_MAX];
	char want_hw[256], want_perm[65];
} g;

static X509 *read_der(const char *path)
{
	size_t len = 0;
	unsigned char *p = kl_floor_read_file(path, &len);
	const unsigned char *q = p;
	X509 *x = p ? d2i_X509(NULL, &q, (long)len) : NULL;

	free(p);
	return x;
}

/* What the TCG rule (v1.00 r12 §8) gives for this EK certificate, worked out
 * here without ca/devid.c: the vendor's manufacturer code is known
 * (fixtures/certtool.sh writes id:49424D00), the rest comes from OpenSSL's
 * accessors and a digest of the file as the TPM holds it. */
static void tcg_rule(const char *ek_path)
{
	size_t len = 0;
	unsigned char *der = kl_floor_read_file(ek_path, &len), md[32];
	const unsigned char *q = der;
	X509 *ek = d2i_X509(NULL, &q, (long)len);
	const ASN1_OCTET_STRING *aki;
	BIGNUM *bn;
	char *sn;
	size_t n;

	assert_non_null(ek);
	aki = X509_get0_authority_key_id(ek);
	assert_non_null(aki);
	n = (size_t)snprintf(g.want_hw, sizeof(g.want_hw), "49424D00:");
	for (int i = 0; i < ASN1_STRING_length(aki); i++)
		n += (size_t)snprintf(g.want_hw + n, sizeof(g.want_hw) - n, "%02X",
		                      ASN1_STRING_get0_data(aki)[i]);
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ek), NULL);
	sn = BN_bn2hex(bn); /* uppercase, whole octets */
	snprintf(g.want_hw + n, sizeof(g.want_hw) - n, ":%s", sn);
	/* The certificate's DER is all of the file (q stopped at its end). */
	assert_int_equal(EVP_Digest(der, (size_t)(q - der), md, NULL, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		snprintf(g.want_perm + 2 * i, 3, "%02X", md[i]);
	OPENSSL_free(sn);
	BN_free(bn);
	X509_free(ek);
	free(der);
}

static int setup(void **state)
{
	kl_registry_item items[1] = { { .serial = SERIAL, .line = 1 } };
	kl_job_result res;
	kl_job job = { .serial = SERIAL, .ek_type = KL_EK_RSA2048, .actor = "operator:test" };
	const char *idx[2] = { "0x01c90010", "0x01c90000" }; /* IAK, IDevID */
	char der[PATH_MAX];

	(void)state;
	if (kl_floor_new(&g.floor) < 0 || kl_floor_vendor(g.floor, "Acme TPM", &g.acme) < 0 ||
	    kl_floor_manufacture(g.floor, g.acme, "tcg", 1, &g.duts) < 0 ||
	    kl_dut_start(g.floor, g.duts[0]) < 0) {
		fprintf(stderr, "floor: %s\n", kl_error_detail());
		return -1;
	}
	snprintf(g.dir, sizeof(g.dir), "%s", kl_floor_dir(g.floor));
	if (test_pki_make(g.floor, g.acme, &g.pki) < 0 ||
	    test_pki_open(&g.pki, &g.store, &g.ca, &g.reg, &g.cfg) < 0 ||
	    kl_registry_tenant_add(g.reg, "acme", "test") < 0 ||
	    kl_registry_work_order_add(g.reg, "acme", "WO-1", -1, "test") < 0 ||
	    kl_registry_preregister(g.reg, "acme", "WO-1", items, 1, "test") < 0) {
		fprintf(stderr, "pki: %s\n", kl_error_detail());
		return -1;
	}
	/* The real flow issues and engraves the IAK and the IDevID. */
	job.link = g.duts[0]->tcti;
	if (kl_engine_provision(&g.cfg, &job, &res) < 0 || res.rc < 0) {
		fprintf(stderr, "provision: %s: %s\n", res.reason, res.message);
		return -1;
	}
	/* What the DUT holds: the two certificates and its EK certificate. */
	for (int i = 0; i < 2; i++) {
		snprintf(der, sizeof(der), "%s/%s.der", g.dir, table[i].profile);
		const char *nvread[] = { "tpm2_nvread", idx[i], "-C", "o", "-o", der, NULL };
		if (kl_dut_tool(g.floor, g.duts[0], NULL, nvread) != 0 ||
		    !(g.certs[i] = read_der(der)))
			return -1;
	}
	snprintf(g.ek_path, sizeof(g.ek_path), "%s/ek-rsa2048.der", g.dir);
	const char *ekread[] = { "tpm2_nvread", "0x01c00002", "-C", "o", "-o", g.ek_path, NULL };
	if (kl_dut_tool(g.floor, g.duts[0], NULL, ekread) != 0)
		return -1;

	/* The LDevID: the IDevID's subject and TPM identifiers (TCG §8: an
	 * LDevID SHOULD carry the IDevID's subject and subjectAltName). */
	kl_devid_tpm_ids ids;
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key || kl_devid_tpm_ids_from_cert(g.certs[IDEVID], &ids) < 0)
		return -1;
	kl_cert_request req = { .profile = "ldevid",
		                .pubkey = key,
		                .serial_number = SERIAL,
		                .hw_serial = ids.hw_serial,
		                .permanent_id = ids.permanent_id };
	int r = kl_ca_issue(g.ca, &req, &g.certs[LDEVID], NULL);
	EVP_PKEY_free(key);
	if (r < 0) {
		fprintf(stderr, "ldevid: %s\n", kl_error_detail());
		return -1;
	}
	for (int i = 0; i < N_KINDS; i++) {
		snprintf(g.pem[i], sizeof(g.pem[i]), "%s/%s.pem", g.dir, table[i].profile);
		if (test_pki_write_pem(g.pem[i], g.certs[i]) < 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < N_KINDS; i++)
		X509_free(g.certs[i]);
	test_pki_close(&g.store, &g.ca, &g.reg);
	test_pki_free(&g.pki);
	kl_floor_free(g.floor);
	return 0;
}

static char *slurp(const char *path)
{
	size_t len = 0;

	return (char *)kl_floor_read_file(path, &len);
}

static void assert_in(const char *path, const char *needle)
{
	char *text = slurp(path);

	assert_non_null(text);
	if (!strstr(text, needle))
		fail_msg("'%s' not in %s:\n%s", needle, path, text);
	free(text);
}

/* The hardwareModuleName and permanentIdentifier of x, checked byte for byte. */
static void check_san(X509 *x, const struct profile_row *row)
{
	int crit = -1, hwmn = 0, perm = 0;
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);

	assert_non_null(gens);
	assert_int_equal(crit, 0); /* the subject is not empty (RFC 5280 §4.2.1.6) */
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
		const ASN1_STRING *seq;
		char oid[64];

		assert_int_equal(gn->type, GEN_OTHERNAME);
		OBJ_obj2txt(oid, sizeof(oid), gn->d.otherName->type_id, 1);
		assert_int_equal(gn->d.otherName->value->type, V_ASN1_SEQUENCE);
		seq = gn->d.otherName->value->value.sequence;
		if (strcmp(oid, "1.3.6.1.5.5.7.8.4") == 0) {
			/* SEQUENCE { OID 2.23.133.1.2, OCTET STRING hwSerialNum } */
			static const unsigned char tpm20[] = { 0x06, 0x05, 0x67, 0x81,
				                               0x05, 0x01, 0x02 };
			const unsigned char *p = ASN1_STRING_get0_data(seq);
			size_t hl = strlen(g.want_hw), off = 2 + sizeof(tpm20);

			assert_int_equal(p[0], 0x30);
			assert_int_equal(p[1], sizeof(tpm20) + 2 + hl);
			assert_memory_equal(p + 2, tpm20, sizeof(tpm20));
			assert_int_equal(p[off], 0x04);
			assert_int_equal(p[off + 1], hl);
			assert_memory_equal(p + off + 2, g.want_hw, hl);
			hwmn++;
		} else if (strcmp(oid, "1.3.6.1.5.5.7.8.3") == 0) {
			/* SEQUENCE { UTF8String hex, OID 2.23.133.12.1 } */
			static const unsigned char assigner[] = { 0x06, 0x05, 0x67, 0x81,
				                                  0x05, 0x0c, 0x01 };
			const unsigned char *p = ASN1_STRING_get0_data(seq);

			assert_int_equal(ASN1_STRING_length(seq), 2 + 2 + 64 + sizeof(assigner));
			assert_int_equal(p[2], 0x0c);
			assert_int_equal(p[3], 64);
			assert_memory_equal(p + 4, g.want_perm, 64);
			assert_memory_equal(p + 68, assigner, sizeof(assigner));
			perm++;
		} else {
			fail_msg("%s: unexpected otherName %s", row->profile, oid);
		}
	}
	assert_int_equal(hwmn, row->hwmn ? 1 : 0);
	assert_int_equal(perm, row->perm_id ? 1 : 0);
	GENERAL_NAMES_free(gens);
}

static void check_policies(X509 *x, const struct profile_row *row)
{
	CERTIFICATEPOLICIES *cp = X509_get_ext_d2i(x, NID_certificate_policies, NULL, NULL);
	int n = 0;

	while (n < 2 && row->policies[n])
		n++;
	if (n == 0) {
		assert_null(cp);
		return;
	}
	assert_non_null(cp);
	assert_int_equal(sk_POLICYINFO_num(cp), n);
	for (int i = 0; i < n; i++) {
		POLICYINFO *pi = sk_POLICYINFO_value(cp, i);
		POLICYQUALINFO *q;
		char oid[64];

		OBJ_obj2txt(oid, sizeof(oid), pi->policyid, 1);
		assert_string_equal(oid, row->policies[i]);
		assert_int_equal(sk_POLICYQUALINFO_num(pi->qualifiers), 1);
		q = sk_POLICYQUALINFO_value(pi->qualifiers, 0);
		assert_int_equal(OBJ_obj2nid(q->pqualid), NID_id_qt_cps);
		assert_int_equal(ASN1_STRING_length(q->d.cpsuri), strlen(CPS_URL));
		assert_memory_equal(ASN1_STRING_get0_data(q->d.cpsuri), CPS_URL, strlen(CPS_URL));
	}
	CERTIFICATEPOLICIES_free(cp);
}

static void check_aia(X509 *x)
{
	int crit = -1;
	AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, &crit, NULL);
	ACCESS_DESCRIPTION *ad;

	assert_non_null(aia);
	assert_int_equal(crit, 0);
	/* caIssuers only: no OCSP responder is configured. */
	assert_int_equal(sk_ACCESS_DESCRIPTION_num(aia), 1);
	ad = sk_ACCESS_DESCRIPTION_value(aia, 0);
	assert_int_equal(OBJ_obj2nid(ad->method), NID_ad_ca_issuers);
	assert_int_equal(ad->location->type, GEN_URI);
	assert_string_equal(
	    (const char *)ASN1_STRING_get0_data(ad->location->d.uniformResourceIdentifier),
	    CA_ISSUERS);
	AUTHORITY_INFO_ACCESS_free(aia);
}

static void check_row(X509 *x, const struct profile_row *row)
{
	char sn[64];
	int crit = -1, n = 0;
	BASIC_CONSTRAINTS *bc;
	EXTENDED_KEY_USAGE *eku;
	ASN1_BIT_STRING *ku;
	const ASN1_TIME *na = X509_get0_notAfter(x);

	/* Subject: serialNumber = the device serial, PrintableString. */
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_serialNumber, sn,
	                                      sizeof(sn)) > 0);
	assert_string_equal(sn, SERIAL);
	assert_int_equal(
	    ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(
	        X509_get_subject_name(x),
	        X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_serialNumber, -1)))),
	    V_ASN1_PRINTABLESTRING);
	assert_int_equal(
	    X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(g.pki.issuing)), 0);
	/* Validity: 802.1AR / TCG §8.1 "no expiry" as GeneralizedTime, or days. */
	if (row->not_after) {
		assert_int_equal(ASN1_STRING_type(na), V_ASN1_GENERALIZEDTIME);
		assert_memory_equal(ASN1_STRING_get0_data(na), row->not_after, 15);
	} else {
		int days, secs;

		assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), na), 1);
		assert_int_equal(days, row->days);
	}
	/* basicConstraints CA:FALSE, critical. */
	bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
	assert_non_null(bc);
	assert_int_equal(crit, 1);
	assert_false(bc->ca);
	BASIC_CONSTRAINTS_free(bc);
	/* keyUsage exactly, critical. */
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	assert_non_null(ku);
	assert_int_equal(crit, 1);
	assert_int_equal(ku->data[0], row->key_usage);
	ASN1_BIT_STRING_free(ku);
	/* extKeyUsage exactly. */
	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	while (n < 2 && row->eku[n])
		n++;
	assert_int_equal(eku ? sk_ASN1_OBJECT_num(eku) : 0, n);
	for (int i = 0; i < n; i++) {
		char oid[64];

		OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1);
		assert_string_equal(oid, row->eku[i]);
	}
	EXTENDED_KEY_USAGE_free(eku);
	/* SKI, AKI = the issuing CA's SKI (RFC 5280 §4.2.1.1/2). */
	assert_non_null(X509_get0_subject_key_id(x));
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
	                                       X509_get0_subject_key_id(g.pki.issuing)),
	                 0);
	assert_true(X509_get_ext_by_NID(x, NID_crl_distribution_points, -1) >= 0);
	check_san(x, row);
	check_policies(x, row);
	check_aia(x);
}

static void test_fields_by_table(void **state)
{
	(void)state;
	tcg_rule(g.ek_path);
	for (int i = 0; i < N_KINDS; i++)
		check_row(g.certs[i], &table[i]);
	/* ca/devid.c derives the same from the EK certificate. */
	size_t len = 0;
	unsigned char *ek = kl_floor_read_file(g.ek_path, &len);
	kl_devid_tpm_ids ids;

	assert_int_equal(kl_devid_tpm_ids_from_ek(ek, len, &ids), 0);
	assert_string_equal(ids.hw_serial, g.want_hw);
	assert_string_equal(ids.permanent_id, g.want_perm);
	free(ek);
}

/* The cell of docs/ca.md's "Device certificate fields" table for a field
 * (first column, exact) and a kind (column 1 + kind); "same" is the cell to
 * its left. NULL when there is no such row. */
static char *doc_cell(const char *field, int kind)
{
	FILE *f = fopen(KL_DOCS_DIR "/ca.md", "re");
	char line[2048], cells[5][1024];
	bool in = false;
	char *found = NULL;

	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "### Device certificate fields", 29) == 0)
			in = true;
		else if (in && strncmp(line, "### ", 4) == 0)
			break;
		if (!in || line[0] != '|')
			continue;
		int n = 0;
		char *p = line + 1, *bar;
		while (n < 5 && (bar = strchr(p, '|'))) {
			while (*p == ' ')
				p++;
			size_t len = (size_t)(bar - p);
			while (len && p[len - 1] == ' ')
				len--;
			snprintf(cells[n++], sizeof(cells[0]), "%.*s", (int)len, p);
			p = bar + 1;
		}
		if (n < 5 || strcmp(cells[0], field) != 0)
			continue;
		int c = 1 + kind;
		while (c > 1 && strcmp(cells[c], "same") == 0)
			c--;
		found = strdup(cells[c]);
	}
	fclose(f);
	if (!found)
		fail_msg("docs/ca.md has no row '%s' in its device certificate table", field);
	return found;
}

static void doc_has(const char *field, int kind, const char *needle)
{
	char *cell = doc_cell(field, kind);

	if (!strstr(cell, needle))
		fail_msg("docs/ca.md, %s, %s: '%s' does not say '%s'", field, table[kind].profile,
		         cell, needle);
	free(cell);
}

/* docs/ca.md says what the table above checks, row by row. */
static void test_docs_table(void **state)
{
	(void)state;
	for (int k = 0; k < N_KINDS; k++) {
		const struct profile_row *row = &table[k];
		char days[32];
		char *cell;

		if (row->not_after) {
			doc_has("notAfter", k, row->not_after);
		} else {
			snprintf(days, sizeof(days), "%d days", row->days);
			doc_has("notAfter", k, days);
		}
		doc_has("keyUsage", k, "digitalSignature, critical");
		doc_has("basicConstraints", k, "CA:FALSE, critical");
		doc_has("subject", k, "serialNumber");
		if (!row->eku[0])
			doc_has("extKeyUsage", k, "none");
		for (int i = 0; i < 2 && row->eku[i]; i++)
			doc_has("extKeyUsage", k,
			        strcmp(row->eku[i], CLIENT_AUTH) == 0 ? "clientAuth" : row->eku[i]);
		/* Exactly the policies: each named, and no other TCG one. */
		cell = doc_cell("certificatePolicies", k);
		for (const char *tcg[] = { TCG_RESID, TCG_FIXED, TCG_RESTR, NULL }, **t = tcg; *t;
		     t++) {
			bool want = false;

			for (int i = 0; i < 2 && row->policies[i]; i++)
				want |= strcmp(row->policies[i], *t) == 0;
			if (want != (strstr(cell, *t) != NULL))
				fail_msg("docs/ca.md, certificatePolicies, %s: '%s' and %s",
				         row->profile, cell, *t);
		}
		if (!row->policies[0] && strcmp(cell, "none") != 0)
			fail_msg("docs/ca.md, certificatePolicies, %s: '%s', not none",
			         row->profile, cell);
		free(cell);
		if (row->hwmn && k != LDEVID)
			doc_has("↳ hardwareModuleName (otherName 1.3.6.1.5.5.7.8.4)", k,
			        "2.23.133.1.2");
		if (row->perm_id && k != LDEVID)
			doc_has("↳ permanentIdentifier (otherName 1.3.6.1.5.5.7.8.3)", k,
			        "2.23.133.12.1");
		doc_has("authorityInfoAccess", k, "caIssuers");
		doc_has("cRLDistributionPoints", k, "ca.crl_url");
	}
}

static void test_openssl_strict(void **state)
{
	(void)state;
	for (int i = 0; i < N_KINDS; i++) {
		const char *argv[] = { "openssl",      "verify",     "-x509_strict",
			               "-purpose",     "any",        "-CAfile",
			               g.pki.root_pem, "-untrusted", g.pki.issuing_pem,
			               g.pem[i],       NULL };
		assert_int_equal(kl_floor_run(g.floor, NULL, NULL, argv), 0);
	}
}

static void test_gnutls_high(void **state)
{
	char chain[PATH_MAX], out[PATH_MAX];

	(void)state;
	snprintf(out, sizeof(out), "%s/certtool.txt", g.dir);
	for (int i = 0; i < N_KINDS; i++) {
		snprintf(chain, sizeof(chain), "%s/%s-chain.pem", g.dir, table[i].profile);
		FILE *f = fopen(chain, "w");
		assert_non_null(f);
		assert_int_equal(PEM_write_X509(f, g.certs[i]), 1);
		assert_int_equal(PEM_write_X509(f, g.pki.issuing), 1);
		assert_int_equal(fclose(f), 0);
		const char *argv[] = { "certtool",     "--verify-profile=high",
			               "--verify",     "--load-ca-certificate",
			               g.pki.root_pem, "--infile",
			               chain,          NULL };
		if (kl_floor_run(g.floor, out, NULL, argv) != 0) {
			char *t = slurp(out);
			fail_msg("certtool --verify-profile=high refuses %s:\n%s", table[i].profile,
			         t ? t : "");
		}
		assert_in(out, "Chain verification output: Verified.");
	}
}

static void test_python_cryptography(void **state)
{
	char out[PATH_MAX];
	const char *argv[] = { "python3",
		               KL_TESTS_DIR "/verify_x509.py",
		               g.pki.root_pem,
		               g.pki.issuing_pem,
		               g.ek_path,
		               g.pem[IAK],
		               g.pem[IDEVID],
		               g.pem[LDEVID],
		               NULL };

	(void)state;
	snprintf(out, sizeof(out), "%s/python.txt", g.dir);
	if (kl_floor_run(g.floor, out, NULL, argv) != 0) {
		char *t = slurp(out);
		fail_msg("verify_x509.py:\n%s", t ? t : "(no output)");
	}
	assert_in(out, "ALL OK");
	char line[300];
	snprintf(line, sizeof(line), "tcg hwSerialNum %s", g.want_hw);
	assert_in(out, line);
	snprintf(line, sizeof(line), "tcg permanentIdentifier %s", g.want_perm);
	assert_in(out, line);
}

static void test_go_x509(void **state)
{
	char out[PATH_MAX], cache[PATH_MAX + 16], path[PATH_MAX + 16], home[PATH_MAX + 8],
	    line[300];
	const char *env[] = { cache, path, home, "GOFLAGS=", "GO111MODULE=off", NULL };
	const char *argv[] = { "go",
		               "run",
		               KL_TESTS_DIR "/verify_x509.go",
		               g.pki.root_pem,
		               g.pki.issuing_pem,
		               g.pem[IAK],
		               g.pem[IDEVID],
		               g.pem[LDEVID],
		               NULL };

	(void)state;
	snprintf(cache, sizeof(cache), "GOCACHE=%s/go/cache", g.dir);
	snprintf(path, sizeof(path), "GOPATH=%s/go/path", g.dir);
	snprintf(home, sizeof(home), "HOME=%s/go", g.dir);
	snprintf(out, sizeof(out), "%s/go.txt", g.dir);
	if (kl_floor_run(g.floor, out, env, argv) != 0) {
		char *t = slurp(out);
		fail_msg("go run verify_x509.go (is golang-go installed?):\n%s",
		         t ? t : "(no output)");
	}
	for (int i = 0; i < N_KINDS; i++) {
		snprintf(line, sizeof(line), "OK %s", g.pem[i]);
		assert_in(out, line);
	}
	snprintf(line, sizeof(line), "hardwareModuleName hwType=2.23.133.1.2 hwSerialNum=%s",
	         g.want_hw);
	assert_in(out, line);
	snprintf(line, sizeof(line), "permanentIdentifier value=%s assigner=2.23.133.12.1",
	         g.want_perm);
	assert_in(out, line);
	assert_in(out, "policy " TCG_RESTR);
	assert_in(out, "policy " TCG_FIXED);
	assert_in(out, "caIssuers " CA_ISSUERS);
	assert_in(out, "notAfter " FOREVER);
	assert_in(out, "eku " TCG_AIK_EKU);
}

/* A CA over the same registry with other URLs. */
static kl_ca *ca_with(const char *cps, const char *ca_issuers)
{
	kl_ca_config cc = { .issuer_name = "issuing",
		            .profiles_dir = KL_PROFILES_DIR,
		            .crl_url = CRL_URL,
		            .cps_url = cps,
		            .ca_issuers_url = ca_issuers,
		            .actor = "test" };
	kl_ca *ca = NULL;

	assert_int_equal(kl_ca_open(g.store, &cc, g.pki.ca_key, &ca), 0);
	return ca;
}

static void expect_refused(kl_ca *ca, const kl_cert_request *req, const char *rule)
{
	X509 *x = NULL;

	assert_int_equal(kl_ca_issue(ca, req, &x, NULL), -KL_E_INVALID);
	assert_null(x);
	if (!strstr(kl_error_detail(), rule))
		fail_msg("wanted %s, got: %s", rule, kl_error_detail());
}

/* The linter refuses what the profile requires and the certificate lacks;
 * nothing is signed. */
static void test_lint_requires_profile_fields(void **state)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	kl_devid_tpm_ids ids;
	kl_profile p;
	X509 *x;

	(void)state;
	assert_non_null(key);
	assert_int_equal(kl_devid_tpm_ids_from_cert(g.certs[IDEVID], &ids), 0);
	kl_cert_request ok = { .profile = "idevid",
		               .pubkey = key,
		               .serial_number = "SN-LINT",
		               .hw_serial = ids.hw_serial,
		               .permanent_id = ids.permanent_id };
	kl_cert_request r = ok;

	/* The device serial where the TPM's identity belongs. */
	r.hw_serial = "SN-LINT";
	expect_refused(g.ca, &r, "lint subjectAltName.hwSerialNum");
	r = ok;
	r.hw_serial = NULL;
	expect_refused(g.ca, &r, "lint subjectAltName.hardwareModuleName");
	r = ok;
	r.permanent_id = NULL;
	expect_refused(g.ca, &r, "lint subjectAltName.permanentIdentifier");
	r = ok;
	r.permanent_id = "not-a-digest";
	expect_refused(g.ca, &r, "lint subjectAltName.permanentIdentifier");

	/* No CPS URI configured: the policies lack their qualifier. */
	kl_ca *ca = ca_with(NULL, CA_ISSUERS);
	expect_refused(ca, &ok, "lint certificatePolicies.cps");
	kl_ca_free(ca);
	/* No caIssuers configured: no AIA. */
	ca = ca_with(CPS_URL, NULL);
	expect_refused(ca, &ok, "lint authorityInfoAccess.present");
	r = ok;
	r.profile = "iak";
	expect_refused(ca, &r, "lint authorityInfoAccess.present");
	kl_ca_free(ca);

	/* The linter on its own: the issued IDevID passes; the same TBS
	 * without its policies or AIA does not. */
	assert_int_equal(kl_profile_load(KL_PROFILES_DIR, "idevid", &p), 0);
	assert_int_equal(kl_lint_cert(g.certs[IDEVID], &p, g.pki.issuing), 0);
	x = X509_dup(g.certs[IDEVID]);
	X509_EXTENSION_free(
	    X509_delete_ext(x, X509_get_ext_by_NID(x, NID_certificate_policies, -1)));
	assert_int_equal(kl_lint_cert(x, &p, g.pki.issuing), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "lint certificatePolicies.profile"));
	X509_free(x);
	x = X509_dup(g.certs[IDEVID]);
	X509_EXTENSION_free(X509_delete_ext(x, X509_get_ext_by_NID(x, NID_info_access, -1)));
	assert_int_equal(kl_lint_cert(x, &p, g.pki.issuing), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "lint authorityInfoAccess.present"));
	X509_free(x);
	/* The IAK certificate is not an IDevID: its policies differ. */
	assert_int_equal(kl_lint_cert(g.certs[IAK], &p, g.pki.issuing), -KL_E_INVALID);
	EVP_PKEY_free(key);
}

/* What is not an EK certificate with the TCG fields gives no identifiers. */
static void test_devid_refuses(void **state)
{
	unsigned char *der = NULL, junk[4] = { 0x30, 0x10, 0x02, 0x01 };
	int len = i2d_X509(g.pki.issuing, &der);
	kl_devid_tpm_ids ids;

	(void)state;
	assert_true(len > 0);
	/* A CA certificate: no tcg-at-tpmManufacturer. */
	assert_int_equal(kl_devid_tpm_ids_from_ek(der, (size_t)len, &ids), -KL_E_INVALID);
	assert_non_null(strstr(kl_error_detail(), "tcg-at-tpmManufacturer"));
	assert_int_equal(kl_devid_tpm_ids_from_ek(junk, sizeof(junk), &ids), -KL_E_INVALID);
	assert_int_equal(kl_devid_tpm_ids_from_ek(NULL, 0, &ids), -KL_E_INVALID);
	/* A certificate without a hardwareModuleName has none to copy. */
	assert_int_equal(kl_devid_tpm_ids_from_cert(g.pki.issuing, &ids), -KL_E_NOTFOUND);
	OPENSSL_free(der);

	static const struct {
		const char *s;
		bool ok;
	} forms[] = {
		{ "49424D00:0A0B:01", true },   { "SN-0001", false },
		{ "49424d00:0A0B:01", false },  { "49424D00::01", false },
		{ "49424D00:0A0B:01:", false }, { "49424D00:0A0B", false },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		assert_int_equal(
		    kl_devid_hw_serial_ok((const unsigned char *)forms[i].s, strlen(forms[i].s)),
		    forms[i].ok);
}

/* An OCSP responder, once configured, is the second access description. */
static void test_ocsp_only_when_configured(void **state)
{
	kl_ca_config cc = { .issuer_name = "issuing",
		            .profiles_dir = KL_PROFILES_DIR,
		            .crl_url = CRL_URL,
		            .cps_url = CPS_URL,
		            .ca_issuers_url = CA_ISSUERS,
		            .ocsp_url = "http://ocsp.test/",
		            .actor = "test" };
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	kl_devid_tpm_ids ids;
	AUTHORITY_INFO_ACCESS *aia;
	kl_ca *ca = NULL;
	X509 *x = NULL;

	(void)state;
	assert_int_equal(kl_ca_open(g.store, &cc, g.pki.ca_key, &ca), 0);
	assert_int_equal(kl_devid_tpm_ids_from_cert(g.certs[IAK], &ids), 0);
	kl_cert_request req = { .profile = "iak",
		                .pubkey = key,
		                .serial_number = "SN-OCSP",
		                .hw_serial = ids.hw_serial,
		                .permanent_id = ids.permanent_id };
	assert_int_equal(kl_ca_issue(ca, &req, &x, NULL), 0);
	aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
	assert_int_equal(sk_ACCESS_DESCRIPTION_num(aia), 2);
	assert_int_equal(OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia, 1)->method), NID_ad_OCSP);
	AUTHORITY_INFO_ACCESS_free(aia);
	X509_free(x);
	kl_ca_free(ca);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_by_table),
		cmocka_unit_test(test_docs_table),
		cmocka_unit_test(test_openssl_strict),
		cmocka_unit_test(test_gnutls_high),
		cmocka_unit_test(test_python_cryptography),
		cmocka_unit_test(test_go_x509),
		cmocka_unit_test(test_lint_requires_profile_fields),
		cmocka_unit_test(test_devid_refuses),
		cmocka_unit_test(test_ocsp_only_when_configured),
	};

	return cmocka_run_group_tests_name("cert_profile", tests, setup, teardown);
}
