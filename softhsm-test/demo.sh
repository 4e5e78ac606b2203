#!/bin/sh
# make demo: a complete bootstrap ceremony on throwaway SoftHSM2 tokens, in a
# temporary directory, ending with the repository verified by two TUF
# clients (go-tuf and tuf-js) over loopback HTTP.
#
#   DEMO_DIR=PATH make demo   keeps the repository and the tokens in PATH
#                             (SOFTHSM2_CONF in it) so you can keep going
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

if [ -n "${DEMO_DIR:-}" ]; then
	mkdir -p "$DEMO_DIR"
	W=$(cd "$DEMO_DIR" && pwd)
	if [ -n "$(ls -A "$W")" ]; then
		echo "rootkeeper demo: error: DEMO_DIR $W is not empty" >&2
		echo "rootkeeper demo: hint: choose a new directory, or remove $W" >&2
		exit 1
	fi
else
	W=$(mktemp -d "${TMPDIR:-/tmp}/rootkeeper-demo.XXXXXX")
	trap 'rm -rf "$W"' EXIT
fi
if [ -t 1 ]; then
	step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	step() { printf '\n== %s\n' "$*"; }
fi
run() { printf '$ %s\n' "$*"; "$@"; }

step "build"
mkdir -p "$W/bin"
go build -o "$W/bin/rootkeeper" ./cmd/rootkeeper
go build -o "$W/bin/tuf-check" ./softhsm-test/cmd/tuf-check
PATH="$W/bin:$PATH"

step "throwaway SoftHSM2 tokens in $W/tokens"
mkdir -p "$W/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$W/tokens" >"$W/softhsm2.conf"
export SOFTHSM2_CONF="$W/softhsm2.conf"
# A random PIN for these demo tokens, in a pin-source file only its owner
# can read. (softhsm2-util takes the PIN it sets on its command line: that
# is the demo's throwaway token set-up, not rootkeeper, which never reads a
# PIN from argv.)
umask 077
PIN=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
printf '%s\n' "$PIN" >"$W/pin"
umask 022
for t in root-a root-b root-c tagging online; do
	softhsm2-util --init-token --free --label "$t" --so-pin "$PIN$PIN" --pin "$PIN" >/dev/null
	echo "token $t"
done

step "keys generated inside the tokens (non-extractable)"
keyid() { sed -n 's/.*"keyid": "\([0-9a-f]*\)".*/\1/p'; }
gen() { # URI-object ALGORITHM
	rootkeeper key generate "pkcs11:token=$1;object=$2?pin-source=$W/pin" --algorithm "$3" --json >"$W/$1-$2.json"
	printf '%-8s %-10s %-11s %s\n' "$1" "$2" "$3" "$(keyid <"$W/$1-$2.json")"
}
gen root-a root ecdsa-p256
gen root-b root ed25519
gen root-c root rsa-3072
gen tagging targets ecdsa-p256
gen online snapshot ed25519
gen online timestamp ed25519

step "the ceremony plan (key ids pinned as printed above)"
uri() { echo "pkcs11:token=$1;object=$2?pin-source=$W/pin"; }
cat >"$W/plan.yaml" <<PLAN
version: 1
ceremony: bootstrap
repository: demo.example/app
consistent_snapshot: true
require: hardware-born
roles:
  root:
    threshold: 2
    expires: 365d
    keys:
      - $(uri root-a root)
      - $(uri root-b root)
      - $(uri root-c root)
    keyids:
      - $(keyid <"$W/root-a-root.json")
      - $(keyid <"$W/root-b-root.json")
      - $(keyid <"$W/root-c-root.json")
  targets:
    threshold: 1
    expires: 90d
    keys: [ "$(uri tagging targets)" ]
  snapshot:
    threshold: 1
    expires: 21d
    keys: [ "$(uri online snapshot)" ]
  timestamp:
    threshold: 1
    expires: 7d
    keys: [ "$(uri online timestamp)" ]
PLAN
cat "$W/plan.yaml"

step "bootstrap ceremony"
run rootkeeper init --plan "$W/plan.yaml" --repo "$W/repo" --yes

step "a tagging key signs a target; the online keys publish"
printf 'hello from the rootkeeper demo\n' >"$W/hello.txt"
run rootkeeper targets add --repo "$W/repo" --prefix releases "$W/hello.txt"
run rootkeeper publish --repo "$W/repo"

step "status"
run rootkeeper status --repo "$W/repo"

step "verify, as a TUF client would"
run rootkeeper verify --repo "$W/repo"

step "the ceremony transcript: every change anchored in the signed metadata"
run rootkeeper transcript verify --repo "$W/repo"

step "independent TUF clients (go-tuf and tuf-js) over loopback HTTP"
run tuf-check --repo "$W/repo" "releases/hello.txt=$W/hello.txt"

step "done"
if [ -n "${DEMO_DIR:-}" ]; then
	cat <<MSG
The repository is in $W/repo and the tokens in $W/tokens. To keep going:
  export SOFTHSM2_CONF=$W/softhsm2.conf PATH=$W/bin:\$PATH
  rootkeeper status --repo $W/repo
  rootkeeper targets add --repo $W/repo --prefix releases FILE
Key URIs look like: $(uri tagging targets)
MSG
else
	echo "A complete ceremony, accepted by go-tuf and tuf-js. (DEMO_DIR=PATH make demo keeps it.)"
fi
