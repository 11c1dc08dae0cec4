// Go's crypto/x509 as an outside judge of Keyline's device certificates
// (test_cert_profile): parses the root, the issuing CA and each leaf, runs
// Verify with any key usage, and prints what it found of each leaf: its
// subject, policies, AIA, and the otherNames of its subjectAltName (which
// crypto/x509 parses past but does not expose: decoded here from the raw
// extension). Standard library only. Exits 1 on the first failure.
//
//	go run verify_x509.go ROOT.pem ISSUING.pem LEAF.pem...
package main

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
)

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

func load(path string) *x509.Certificate {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%s: %v", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		fail("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		fail("%s: %v", path, err)
	}
	return c
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

type otherName struct {
	TypeID asn1.ObjectIdentifier
	Value  asn1.RawValue `asn1:"tag:0,explicit"`
}

type hardwareModuleName struct {
	HwType      asn1.ObjectIdentifier
	HwSerialNum []byte
}

type permanentIdentifier struct {
	IdentifierValue string                `asn1:"utf8,optional"`
	Assigner        asn1.ObjectIdentifier `asn1:"optional"`
}

// The otherNames of the certificate's subjectAltName, one line each.
func otherNames(c *x509.Certificate) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSAN) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) > 0 {
			fail("SAN does not parse: %v", err)
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var on otherName
			if _, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0"); err != nil {
				fail("otherName does not parse: %v", err)
			}
			switch on.TypeID.String() {
			case "1.3.6.1.5.5.7.8.4":
				var h hardwareModuleName
				if _, err := asn1.Unmarshal(on.Value.Bytes, &h); err != nil {
					fail("hardwareModuleName does not parse: %v", err)
				}
				fmt.Printf("  hardwareModuleName hwType=%s hwSerialNum=%s (hex %s)\n",
					h.HwType, h.HwSerialNum, hex.EncodeToString(h.HwSerialNum))
			case "1.3.6.1.5.5.7.8.3":
				var p permanentIdentifier
				if _, err := asn1.Unmarshal(on.Value.Bytes, &p); err != nil {
					fail("permanentIdentifier does not parse: %v", err)
				}
				fmt.Printf("  permanentIdentifier value=%s assigner=%s\n",
					p.IdentifierValue, p.Assigner)
			default:
				fmt.Printf("  otherName %s\n", on.TypeID)
			}
		}
	}
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: verify_x509 ROOT ISSUING LEAF...")
	}
	roots := x509.NewCertPool()
	roots.AddCert(load(os.Args[1]))
	inter := x509.NewCertPool()
	inter.AddCert(load(os.Args[2]))
	for _, path := range os.Args[3:] {
		c := load(path)
		opts := x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		if _, err := c.Verify(opts); err != nil {
			fail("%s: Verify: %v", path, err)
		}
		fmt.Printf("OK %s\n", path)
		fmt.Printf("  subject %s\n", c.Subject)
		fmt.Printf("  notAfter %s\n", c.NotAfter.UTC().Format("20060102150405Z"))
		for _, p := range c.PolicyIdentifiers {
			fmt.Printf("  policy %s\n", p)
		}
		for _, u := range c.IssuingCertificateURL {
			fmt.Printf("  caIssuers %s\n", u)
		}
		for _, u := range c.OCSPServer {
			fmt.Printf("  ocsp %s\n", u)
		}
		for _, u := range c.CRLDistributionPoints {
			fmt.Printf("  crl %s\n", u)
		}
		for _, e := range c.UnknownExtKeyUsage {
			fmt.Printf("  eku %s\n", e)
		}
		otherNames(c)
	}
}
