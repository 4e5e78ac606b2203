#!/bin/sh
# The scheduled job at scale (docs/performance.md, "Re-signing many
# repositories"). Runs, in one process:
#   ceremony/fleet BenchmarkResignBatch  REPOS repositories whose root is due, re-signed
#                                  with one SoftHSM P-256 root key in one session,
#                                  and the raw C_SignInit+C_Sign floor for as many
#                                  signatures and a bare go-tuf v2 loop over copies
#                                  of the same repositories with the same key (load,
#                                  bump, sign through crypto.Signer, write; no
#                                  checks), measured in the same run; then go-tuf's
#                                  own client over the batch's outputs
#   ceremony/fleet BenchmarkStatusMany   status (and Prometheus metrics) of REPOS repositories,
#                                  and go-tuf's own client alone over the same ones
#   ceremony/fleet BenchmarkStatusEvery  a later pass of the long-running status --every over
#                                  the same, unchanged repositories
# and prints the time per repository, the ratios to the floor and to the loop, the live heap
# at 10% and 100% of the batch, and the allocations per repository.
#
#   REPOS=10000     number of repositories
#   DIR=/dev/shm    where to make them: tmpfs measures the CPU path; a disk
#                   directory (DIR=/var/tmp) adds the fsyncs of durable writes
#   JOBS=           repositories worked on at once (default: 4 or the CPU count)
#   HISTORY=0       re-signs of the timestamp each repository has had before (its
#                   transcript's length: 365 is a year of daily re-signing)
#   PROFILE=FILE    also write a CPU profile (go tool pprof -top FILE)
set -eu
cd "$(dirname "$0")/.."
REPOS=${REPOS:-10000}
if [ -z "${DIR:-}" ]; then
	DIR=/dev/shm
	[ -d "$DIR" ] && [ -w "$DIR" ] || DIR=${TMPDIR:-/tmp}
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/ceremony.test" ./ceremony/fleet
set -- -test.run '^$' -test.bench '^(BenchmarkResignBatch|BenchmarkStatusMany|BenchmarkStatusEvery)$' -test.benchtime 1x -test.benchmem
[ -n "${PROFILE:-}" ] && set -- "$@" -test.cpuprofile "$PROFILE"
ROOTKEEPER_BENCH_REPOS=$REPOS ROOTKEEPER_BENCH_DIR=$DIR ROOTKEEPER_BENCH_JOBS=${JOBS:-} ROOTKEEPER_BENCH_HISTORY=${HISTORY:-0} \
	"$tmp/ceremony.test" "$@" | tee "$tmp/out"
if ! grep -q '^BenchmarkResignBatch' "$tmp/out"; then
	echo "rootkeeper: error: the benchmarks did not run (SoftHSM2 missing?)" >&2
	echo "rootkeeper: hint: make deps installs what they need" >&2
	exit 1
fi
echo
echo "repositories: $REPOS in $DIR (transcripts of $((${HISTORY:-0} + 1)) entries), $(nproc) CPUs, jobs ${JOBS:-default}"
awk -v cores="$(nproc)" '
/^BenchmarkResignBatch/ {
	for (i = 3; i < NF; i++) v[$(i+1)] = $i
	n = v["repos"]
	printf "resign batch:  %.1f s, %.0f µs per repository; raw C_Sign floor %.1f µs per signature (%.2f s for %d)\n", v["ns/op"]/1e9, v["µs/repo"], v["floor-µs/sig"], v["floor-µs/sig"]*n/1e6, n
	printf "bare go-tuf loop: %.1f s, %.0f µs per repository\n", v["loop-µs/repo"]*n/1e6, v["loop-µs/repo"]
	printf "ratio to the floor: %.1fx (wall time); CPU time %.0f µs per repository\n", v["x-floor"], v["cpu-µs/repo"]
	printf "ratio to the go-tuf loop: %.2fx (wall time), %.2fx (CPU time)\n", v["x-loop"], v["x-loop-cpu"]
	lc = v["loop-cpu-µs/repo"]; cc = v["client-cpu-µs/repo"]
	printf "go-tuf client over the batch'"'"'s outputs: %.0f µs CPU per repository (%.0f µs wall, as many at a time as the batch)\n", cc, v["client-µs/repo"]
	printf "  the loop plus that client: %.0f µs CPU per repository; on %d cores at least %.0f µs wall, %.2fx the loop (goal: 3x)\n", lc + cc, cores, (lc + cc) / cores, (lc + cc) / cores / v["loop-µs/repo"]
	printf "live heap: %.1f MB at 10%% of the batch, %.1f MB at 100%%; %.0f allocations and %.0f kB allocated per repository\n", v["heapMB@10%"], v["heapMB@100%"], v["allocs/op"]/n, v["B/op"]/n/1024
}
/^BenchmarkStatusMany/ {
	for (i = 3; i < NF; i++) w[$(i+1)] = $i
	printf "status of %d repositories (with Prometheus metrics): %.1f s, CPU time %.0f µs per repository\n", w["repos"], w["ns/op"]/1e9, w["cpu-µs/repo"]
	printf "go-tuf client alone over the same repositories: %.1f s, CPU time %.0f µs per repository; status is %.2fx it (wall), %.2fx (CPU time)\n", w["client-µs/repo"]*w["repos"]/1e6, w["client-cpu-µs/repo"], w["x-client"], w["x-client-cpu"]
}
/^BenchmarkStatusEvery/ {
	for (i = 3; i < NF; i++) e[$(i+1)] = $i
	printf "status --every, a later pass over the same %d unchanged repositories (each file read and compared): %.2f s, CPU time %.0f µs per repository; the memory it keeps: %.1f kB a repository\n", e["repos"], e["ns/op"]/1e9, e["cpu-µs/repo"], e["memory-kB/repo"]
}' "$tmp/out"
