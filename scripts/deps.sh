#!/bin/bash
# Installs the Debian 12 packages Keyline needs to build, test and run its
# demo. Idempotent: installs only what is missing, and does nothing (not even
# apt-get update) when everything is there. Run as root.
set -euo pipefail

packages=(
	# build
	cmake gcc make pkg-config
	libssl-dev openssl
	libtss2-dev
	libp11-dev libp11-kit-dev
	libsqlite3-dev sqlite3
	libjson-c-dev
	libcmocka-dev
	# the station's USB link (station/link/link_usb.c)
	libusb-1.0-0-dev
	# the simulated factory floor and outside checks in tests
	swtpm swtpm-tools tpm2-tools xxd
	softhsm2 opensc
	# an emulated USB bus for the USB link's test (test_usb_link): this
	# machine's kernel has no USB, libumockdev-preload answers usbfs ioctls
	umockdev libumockdev-dev
	# outside judges of the device certificates (test_cert_profile):
	# GnuTLS certtool, Go's crypto/x509, python3-cryptography
	gnutls-bin golang-go python3-cryptography
	# keyline-ui (GTK4) and its test under Xvfb with synthetic key events
	libgtk-4-dev libglib2.0-dev libglib2.0-bin xvfb xauth xdotool python3
	# sanitizer runtime and the fuzzing compiler
	clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#packages[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: run this script as root (apt-get needs it)" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
