#!/bin/sh
# bootstrap.sh REPO — for the rehearsal of the runbooks that start from a
# repository: the repository docs/runbook-bootstrap.md makes, quickly (every
# key ecdsa-p256, no plan key ids, no checks), on the tokens root-a, root-b,
# root-c, tagging and online:
#
#   root 2-of-3 (root-a, root-b, root-c; object root), targets (tagging;
#   object targets), snapshot and timestamp (online; objects snapshot and
#   timestamp), consistent snapshots, the lifetimes of the bootstrap plan.
#
# It runs on the runbook test's terminal, which types the PINs.
set -eu
repo=$1
for k in root-a:root root-b:root root-c:root tagging:targets online:snapshot online:timestamp; do
	rootkeeper -q key generate "pkcs11:token=${k%%:*};object=${k#*:}" >/dev/null
done
plan=$(mktemp)
cat >"$plan" <<PLAN
version: 1
ceremony: bootstrap
repository: example.org/app
roles:
  root:
    threshold: 2
    expires: 365d
    keys: [ "pkcs11:token=root-a;object=root", "pkcs11:token=root-b;object=root", "pkcs11:token=root-c;object=root" ]
  targets:
    threshold: 1
    expires: 90d
    keys: [ "pkcs11:token=tagging;object=targets" ]
  snapshot:
    threshold: 1
    expires: 21d
    keys: [ "pkcs11:token=online;object=snapshot" ]
  timestamp:
    threshold: 1
    expires: 7d
    keys: [ "pkcs11:token=online;object=timestamp" ]
PLAN
mkdir -p "$(dirname "$repo")"
rootkeeper -q init --plan "$plan" --repo "$repo" --yes >/dev/null
rm -f "$plan"
