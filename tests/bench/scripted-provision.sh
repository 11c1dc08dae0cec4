#!/usr/bin/env bash
# The provisioning flow done the way a factory script would: tpm2-tools and
# openssl, one process per step. The baseline of bench_provision.
#
#   scripted-provision.sh --init-ca CA_DIR VENDOR_ROOT VENDOR_INTERMEDIATE
#       makes a software CA (P-256 key and self-signed certificate) in CA_DIR
#       and copies the TPM vendor's EK root and intermediate next to it.
#   scripted-provision.sh TCTI SERIAL CA_DIR OUT_DIR [EK_TYPE]
#       provisions the TPM behind TCTI (e.g. swtpm:host=127.0.0.1,port=P) as
#       SERIAL; EK_TYPE is rsa2048, p256 (default) or p384. Work files and the
#       two certificates go to OUT_DIR.
#
# Steps (cf. the provisioning flow in ARCHITECTURE.md and docs/provisioning.md):
# EK from its template and its certificate from NV, chain verified and public
# key compared; IAK and IDevID from the DevID spec's templates as endorsement
# primaries; MakeCredential in software + ActivateCredential under
# PolicySecret(EH) for an attestation key, which certifies the IAK's
# creation; the IAK certifies the IDevID's (TPM2_CertifyCreation with a
# fresh nonce, signature and creation hash checked); the IDevID signs a
# challenge, checked; two certificates from the software CA
# (no HSM); both keys persisted, both certificates in write-locked NV and
# read back.
#
# swtpm has no resource manager and three transient object slots: every
# tool that loads a context leaves it loaded, hence the flushes.
set -euo pipefail

if [ "${1:-}" = "--init-ca" ]; then
	[ $# -eq 4 ] || {
		echo "usage: $0 --init-ca CA_DIR VENDOR_ROOT VENDOR_INTERMEDIATE" >&2
		exit 2
	}
	ca=$2
	mkdir -p "$ca"
	cp "$3" "$ca/vendor-root.pem"
	cp "$4" "$ca/vendor-intermediate.pem"
	openssl ecparam -name prime256v1 -genkey -noout -out "$ca/ca.key"
	openssl req -new -x509 -key "$ca/ca.key" -sha256 -days 1825 \
		-subj "/CN=Scripted Issuing/O=Keyline bench/C=DE" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$ca/ca.pem"
	# openssl x509 -req wants a CSR; the device key is forced in with
	# -force_pubkey (the TPM key cannot sign a CSR without a provider).
	openssl ecparam -name prime256v1 -genkey -noout -out "$ca/placeholder.key"
	openssl req -new -key "$ca/placeholder.key" -subj "/CN=placeholder" -out "$ca/placeholder.csr"
	exit 0
fi

[ $# -ge 4 ] && [ $# -le 5 ] || {
	echo "usage: $0 TCTI SERIAL CA_DIR OUT_DIR [rsa2048|p256|p384]" >&2
	exit 2
}
export TPM2TOOLS_TCTI=$1
serial=$2
ca=$3
out=$4
ek_type=${5:-p256}
mkdir -p "$out"
cd "$out"

case $ek_type in
rsa2048) ek_args=(-G rsa) ek_index=0x01c00002 ;;
p256) ek_args=(-G ecc) ek_index=0x01c0000a ;;
p384) ek_args=(-G ecc384) ek_index=0x01c00016 ;;
*)
	echo "$0: unknown EK type $ek_type" >&2
	exit 2
	;;
esac

flush() { tpm2_flushcontext -t; }

# 3/4: the EK from its TCG template, its certificate, the chain, the match.
tpm2_createek "${ek_args[@]}" -c ek.ctx -u ek.pub >/dev/null
flush
tpm2_nvread -C o "$ek_index" -o ek.der
openssl x509 -inform DER -in ek.der -out ek.pem
openssl verify -CAfile "$ca/vendor-root.pem" -untrusted "$ca/vendor-intermediate.pem" ek.pem >/dev/null
tpm2_print -t TPM2B_PUBLIC -f pem ek.pub >ek-tpm.pub.pem
openssl x509 -in ek.pem -noout -pubkey >ek-cert.pub.pem
cmp -s ek-tpm.pub.pem ek-cert.pub.pem || {
	echo "$0: the TPM's EK is not the certified key" >&2
	exit 1
}

# 7: the IAK from the DevID spec's template (Table 3 attributes, Table 19
# policy, unique "IAK" in both ECC coordinates), an endorsement primary; its
# creation data and ticket kept for TPM2_CertifyCreation.
id_attrs="fixedtpm|fixedparent|sensitivedataorigin|userwithauth|adminwithpolicy|sign"
echo 5437182326e414fca797d5f174615a1641f61255797c3a2b22c21d120b2d1e07 | xxd -r -p >iak.policy
echo ad6b3a2284fd698a0710bf5cc1b9bdf15e2532e3f601fa4b93a6a8fa8de579ea | xxd -r -p >idevid.policy
printf IAKIAK | tpm2_createprimary -C e -G ecc256:ecdsa-sha256:null -g sha256 \
	-a "$id_attrs|restricted" -L iak.policy -u - -c iak.ctx \
	--creation-data iak.cd -d iak.ch -t iak.tk -f pem -o iak.pub.pem >/dev/null
tpm2_readpublic -c iak.ctx -n iak.name >/dev/null
flush

# 8: credential activation, under PolicySecret(endorsement), for an
# attestation key (the IAK's ADMIN role is behind its policy); that key
# certifies the IAK's creation over a fresh nonce.
tpm2_createprimary -C e -G ecc256:ecdsa-sha256:null -g sha256 \
	-a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|restricted" \
	-c ak.ctx -f pem -o ak.pub.pem >/dev/null
tpm2_readpublic -c ak.ctx -n ak.name >/dev/null
flush
openssl rand -out secret.bin 32
# (tpm2-tools 5.4 takes the name as hex, whatever its manual says.)
tpm2_makecredential -T none -u ek.pub -s secret.bin -n "$(xxd -p -c 256 ak.name)" \
	-o cred.blob >/dev/null 2>&1
if [ "$ek_type" = p384 ]; then
	# H-3: PolicyOR(PolicyA_SHA384 = PolicySecret(EH), PolicyC_SHA384),
	# EK Credential Profile Annex B.
	tpm2_startauthsession --policy-session -g sha384 -S session.ctx
	tpm2_policysecret -S session.ctx -c e >/dev/null
	echo 8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53 |
		xxd -r -p >policy-a.bin
	echo d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165 |
		xxd -r -p >policy-c.bin
	tpm2_policyor -S session.ctx -l sha384:policy-a.bin,policy-c.bin >/dev/null
else
	tpm2_startauthsession --policy-session -S session.ctx
	tpm2_policysecret -S session.ctx -c e >/dev/null
fi
tpm2_activatecredential -c ak.ctx -C ek.ctx -i cred.blob -o activated.bin \
	-P session:session.ctx >/dev/null
tpm2_flushcontext session.ctx
flush
cmp -s secret.bin activated.bin || {
	echo "$0: credential activation returned another secret" >&2
	exit 1
}

# TPM2_CertifyCreation(key by signer): the signature checks, the attestation
# is a TPM_ST_ATTEST_CREATION naming the key, over this nonce and the
# SHA-256 of the creation data (tpm2_print 5.4 cannot decode this type,
# hence the byte search).
certify_creation() { # KEY SIGNER
	local nonce
	nonce=$(openssl rand -hex 32)
	tpm2_certifycreation -C "$2.ctx" -c "$1.ctx" -d "$1.ch" -t "$1.tk" -q "$nonce" -g sha256 \
		-o "$1.cc.sig" -f plain --attestation "$1.cc.att" >/dev/null
	flush
	openssl dgst -sha256 -verify "$2.pub.pem" -signature "$1.cc.sig" "$1.cc.att" >/dev/null
	local att cd_hash
	att=$(xxd -p -c 100000 "$1.cc.att")
	cd_hash=$(tail -c +3 "$1.cd" | openssl dgst -sha256 -r | cut -d' ' -f1)
	case $att in
	ff544347801a*"$nonce"*"$(xxd -p -c 256 "$1.name")"*"$cd_hash") ;;
	*)
		echo "$0: the attestation does not certify the creation of $1" >&2
		exit 1
		;;
	esac
}
certify_creation iak ak

# 9: the IDevID from its template; the IAK certifies its creation.
printf IDEVIDIDEVID | tpm2_createprimary -C e -G ecc256:ecdsa-sha256:null -g sha256 \
	-a "$id_attrs" -L idevid.policy -u - -c idevid.ctx \
	--creation-data idevid.cd -d idevid.ch -t idevid.tk -f pem -o idevid.pub.pem >/dev/null
tpm2_readpublic -c idevid.ctx -n idevid.name >/dev/null
flush
certify_creation idevid iak

# 10: proof of possession: the IDevID signs a challenge.
printf 'proof of possession for %s, nonce %s\n' "$serial" "$(openssl rand -hex 16)" >challenge.bin
tpm2_sign -c idevid.ctx -g sha256 -s ecdsa -f plain -o challenge.sig challenge.bin
flush
openssl dgst -sha256 -verify idevid.pub.pem -signature challenge.sig challenge.bin >/dev/null

# 11: two certificates from the software CA.
cat >ext.cnf <<EOF
[iak]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.23.133.11.1.2
subjectAltName = critical,otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hwmn
[idevid]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.23.133.11.1.1
subjectAltName = critical,otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hwmn
[hwmn]
hwType = OID:2.23.133.1.2
hwSerialNum = OCTETSTRING:$serial
EOF
for k in iak idevid; do
	openssl x509 -req -in "$ca/placeholder.csr" -force_pubkey "$k.pub.pem" \
		-subj "/serialNumber=$serial/CN=$serial $k" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 7300 -sha256 \
		-extfile ext.cnf -extensions "$k" -outform DER -out "$k.der" 2>/dev/null
done

# 12: persist both keys, engrave both certificates, read them back.
tpm2_evictcontrol -C o -c iak.ctx 0x81020001 >/dev/null
flush
tpm2_evictcontrol -C o -c idevid.ctx 0x81020000 >/dev/null
flush
nv_attrs="ownerwrite|ownerread|authread|ppread|no_da|writedefine"
for pair in "iak 0x01c90010" "idevid 0x01c90000"; do
	set -- $pair
	tpm2_nvdefine "$2" -C o -s "$(stat -c %s "$1.der")" -a "$nv_attrs" >/dev/null
	tpm2_nvwrite "$2" -C o -i "$1.der"
	tpm2_nvwritelock "$2" -C o
	tpm2_nvread "$2" -C o -o "$1.back.der"
	cmp -s "$1.der" "$1.back.der" || {
		echo "$0: NV $2 does not hold the $1 certificate" >&2
		exit 1
	}
done
