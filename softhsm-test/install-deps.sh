#!/bin/sh
# Installs what rootkeeper's tests and demo need on Debian 12:
#   softhsm2, opensc (pkcs11-tool)           the PKCS#11 path
#   pcscd, libpcsclite-dev, vsmartcard-vpcd  the virtual PIV card path (piv-go needs cgo + libpcsclite)
#   pkg-config, gcc                          cgo
#   nodejs, npm + softhsm-test/clients/tufjs the tuf-js client (npm ci from the committed lock)
#   jq, openssl                              the Notary migration runbook's certificate check
#   strace                                   the slow disk of the kill -9 campaign (fsyncs delayed)
#   prometheus (promtool), python3-icalendar the metrics file and the calendar checked by their own tools
#   bash-completion                          the completion script run by bash
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -eu
cd "$(dirname "$0")/.."

pkgs=
have() { command -v "$1" >/dev/null 2>&1; }
lib() { for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
have softhsm2-util || pkgs="$pkgs softhsm2"
lib /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so || pkgs="$pkgs softhsm2"
have pkcs11-tool || pkgs="$pkgs opensc"
have pcscd || pkgs="$pkgs pcscd"
lib /usr/include/PCSC/winscard.h || pkgs="$pkgs libpcsclite-dev"
lib /etc/reader.conf.d/vpcd /usr/lib/pcsc/drivers/serial/libifdvpcd.so || pkgs="$pkgs vsmartcard-vpcd"
have pkg-config || pkgs="$pkgs pkg-config"
have gcc || pkgs="$pkgs gcc"
have node || pkgs="$pkgs nodejs"
have npm || pkgs="$pkgs npm"
have jq || pkgs="$pkgs jq"
have openssl || pkgs="$pkgs openssl"
have strace || pkgs="$pkgs strace"
have promtool || pkgs="$pkgs prometheus"
/usr/bin/python3 -c 'import icalendar' 2>/dev/null || pkgs="$pkgs python3-icalendar"
lib /usr/share/bash-completion/bash_completion || pkgs="$pkgs bash-completion"
pkgs=$(echo $pkgs | tr ' ' '\n' | sort -u | xargs)

if [ -n "$pkgs" ]; then
	cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs"
	if [ "$(id -u)" != 0 ] || ! have apt-get; then
		echo "rootkeeper: missing packages:$pkgs" >&2
		echo "rootkeeper: hint: run as root: $cmd" >&2
		exit 1
	fi
	echo "rootkeeper: installing $pkgs"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi

# The tuf-js client, pinned by its lock file.
if [ ! -d softhsm-test/clients/tufjs/node_modules/tuf-js ]; then
	echo "rootkeeper: installing the tuf-js test client (npm ci)"
	npm ci --prefix softhsm-test/clients/tufjs --no-audit --no-fund --loglevel=error
fi
