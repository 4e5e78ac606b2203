#!/bin/sh
# The kill -9 campaign (docs/reliability.md); a benchmark, not run in CI.
#
#   sh softhsm-test/kill-campaign.sh [KILLS_PER_DISK]     default 500: 1,000 kills
#
# Kills randomly chosen repository-changing commands (publish, targets add,
# targets remove, resign, rotate, revoke, delegate add, init) with SIGKILL
# at a random moment of their run, KILLS_PER_DISK times on a normal disk and
# as often on a slow one (strace delays every fsync by 20 ms), against the
# real binary and SoftHSM. After each kill the next command's recovery
# runs (rootkeeper repair), the repository must be byte-identical to before
# or exactly as the uninterrupted command leaves it, the next command
# (publish) must succeed and go-tuf's client must accept the result.
# Prints the counts: before / after / completed (the command finished
# before the kill) / corrupt / rerun-failed, per command and in all.
# ROOTKEEPER_KILL_SEED=N repeats a campaign; the full log goes to
# $TMPDIR/rootkeeper-kill-campaign.log.
set -eu
cd "$(dirname "$0")/.."
per=${1:-500}
log=${TMPDIR:-/tmp}/rootkeeper-kill-campaign.log
sh softhsm-test/install-deps.sh
echo "rootkeeper: $per random kills on a normal disk and $per on a slow one (log: $log)" >&2
status=0
ROOTKEEPER_KILL_CAMPAIGN=$per go test -count=1 -timeout 6h -run '^TestRandomKills$' -v ./softhsm-test/e2e >"$log" 2>&1 || status=$?
# The summary: the seed, and each disk's table.
sed -n -e 's/^ *crash_test.go:[0-9]*: //p' -e '/^ \{8\}[a-z-]\{3,\} \{1,\}[0-9 ]*$/p' -e '/^ \{8\}command /p' "$log" | sed 's/^ \{8\}/  /'
grep -E 'CORRUPT|RERUN FAILED|^(--- )?FAIL' "$log" | head -20 || true
exit $status
