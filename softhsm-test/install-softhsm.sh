#!/bin/sh
# Installs what the PKCS#11 tests need: SoftHSM2 (the module and
# softhsm2-util) and OpenSC (pkcs11-tool). As root it runs apt-get; as
# anyone else it prints the command to run.
set -eu
need=
[ -x "$(command -v softhsm2-util || true)" ] || need=1
[ -x "$(command -v pkcs11-tool || true)" ] || need=1
found=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
         /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
	[ -e "$m" ] && found=1
done
[ -n "$found" ] || need=1
if [ -z "$need" ]; then
	echo "softhsm2 and pkcs11-tool are installed"
	exit 0
fi
cmd="apt-get update && apt-get install -y softhsm2 opensc"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "SoftHSM2 or OpenSC is missing; run as root: $cmd" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y softhsm2 opensc
