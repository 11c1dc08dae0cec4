#!/usr/bin/env python3
"""python3-cryptography as an outside judge of Keyline's device certificates
(test_cert_profile).

    verify_x509.py ROOT.pem ISSUING.pem EK.der LEAF.pem...

Loads every certificate, reads every extension (an extension cryptography
cannot parse fails the run), checks each signature of the chain, and derives
the TPM's identifiers from the EK certificate by the TCG device-identity rule
(TPM 2.0 Keys for Device Identity and Attestation v1.00 r12 section 8):

  hwSerialNum          "<manufacturer>:<EK AKI hex>:<EK serial hex>"
  permanentIdentifier  SHA-256 of the EK certificate's DER, hex

then checks that each leaf's subjectAltName carries exactly those. Written
apart from the C code on purpose. Prints one line per finding; exit 1 on the
first failure."""

import hashlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID

TCG_AT_TPM_MANUFACTURER = x509.ObjectIdentifier("2.23.133.2.1")
HWMN = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")
PERM_ID = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.3")


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def load_pem(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def tlv(data, i):
    """(tag, value, next index) of the DER element at data[i]."""
    tag = data[i]
    n = data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, data[i:i + n], i + n


def oid_text(body):
    first = body[0]
    arcs = [first // 40 if first < 80 else 2, first % 40 if first < 80 else first - 80]
    v = 0
    for b in body[1:]:
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(v)
            v = 0
    return ".".join(str(a) for a in arcs)


def check_signature(cert, issuer):
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    else:
        fail("unexpected issuer key type")


def tpm_ids(ek):
    man = None
    for name in ek.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value:
        if isinstance(name, x509.DirectoryName):
            for attr in name.value:
                if attr.oid == TCG_AT_TPM_MANUFACTURER:
                    man = attr.value
    if not man or not man.startswith("id:"):
        fail("EK certificate names no tcg-at-tpmManufacturer")
    aki = ek.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = ek.serial_number
    serial_hex = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex().upper()
    hw = "%s:%s:%s" % (man[3:].upper(), aki.key_identifier.hex().upper(), serial_hex)
    perm = hashlib.sha256(ek.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return hw, perm


def main():
    if len(sys.argv) < 5:
        fail("usage: verify_x509.py ROOT ISSUING EK LEAF...")
    root = load_pem(sys.argv[1])
    issuing = load_pem(sys.argv[2])
    with open(sys.argv[3], "rb") as f:
        ek_bytes = f.read()
    # The certificate's own DER (an NV index may pad after it).
    _, _, end = tlv(ek_bytes, 0)
    ek = x509.load_der_x509_certificate(ek_bytes[:end])
    want_hw, want_perm = tpm_ids(ek)
    if hashlib.sha256(ek_bytes[:end]).hexdigest().upper() != want_perm:
        fail("EK DER re-encodes differently")
    print("tcg hwSerialNum " + want_hw)
    print("tcg permanentIdentifier " + want_perm)
    check_signature(root, root)
    check_signature(issuing, root)
    for path in sys.argv[4:]:
        leaf = load_pem(path)
        check_signature(leaf, issuing)
        if leaf.issuer != issuing.subject:
            fail(path + ": issuer is not the issuing CA's subject")
        for ext in leaf.extensions:  # every extension parses
            if isinstance(ext.value, x509.UnrecognizedExtension):
                fail("%s: extension %s not understood" % (path, ext.oid.dotted_string))
        print("OK " + path)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hw = perm = None
        for name in san:
            if not isinstance(name, x509.OtherName):
                continue
            tag, seq, _ = tlv(name.value, 0)
            if tag != 0x30:
                fail(path + ": otherName value is not a SEQUENCE")
            if name.type_id == HWMN:
                t1, v1, i = tlv(seq, 0)
                t2, v2, i = tlv(seq, i)
                if t1 != 0x06 or t2 != 0x04 or i != len(seq):
                    fail(path + ": hardwareModuleName is malformed")
                if oid_text(v1) != "2.23.133.1.2":
                    fail(path + ": hwType " + oid_text(v1))
                hw = v2.decode("ascii")
            elif name.type_id == PERM_ID:
                t1, v1, i = tlv(seq, 0)
                t2, v2, i = tlv(seq, i)
                if t1 != 0x0C or t2 != 0x06 or i != len(seq):
                    fail(path + ": permanentIdentifier is malformed")
                if oid_text(v2) != "2.23.133.12.1":
                    fail(path + ": assigner " + oid_text(v2))
                perm = v1.decode("utf-8")
        if hw != want_hw:
            fail("%s: hwSerialNum %r, the TCG rule gives %r" % (path, hw, want_hw))
        if perm != want_perm:
            fail("%s: permanentIdentifier %r, the TCG rule gives %r" % (path, perm, want_perm))
        print("  hwSerialNum matches; permanentIdentifier matches")
        oids = [e.oid for e in leaf.extensions]
        policies = (leaf.extensions.get_extension_for_class(x509.CertificatePolicies).value
                    if ExtensionOID.CERTIFICATE_POLICIES in oids else [])
        for p in policies:
            print("  policy %s %s" % (p.policy_identifier.dotted_string,
                                      " ".join(str(q) for q in (p.policy_qualifiers or []))))
        for ad in leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value:
            print("  aia %s %s" % (ad.access_method.dotted_string, ad.access_location.value))
    print("ALL OK")


if __name__ == "__main__":
    main()
