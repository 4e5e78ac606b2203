#!/bin/sh
# Signing speed against the hardware floor (make bench). Runs, in one go:
#   hsm/pkcs11   BenchmarkSign/ALG/raw         a bare miekg/pkcs11 C_SignInit+C_Sign loop (the floor)
#   hsm/pkcs11   BenchmarkSign/ALG/rootkeeper  one signature through rootkeeper's PKCS#11 Signer
#   e2e          BenchmarkSignRoot/ALG         rootkeeper's whole TUF path: canonical JSON, adapter,
#                                              sign in the token, DER, verify at once
# and prints each as a ratio to the floor. Figures go in docs/performance.md.
set -eu
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench '^BenchmarkSign$' -benchtime "$BENCHTIME" -count "$COUNT" ./hsm/pkcs11 >>"$out"
go test -run '^$' -bench '^BenchmarkSignRoot$' -benchtime "$BENCHTIME" -count "$COUNT" ./softhsm-test/e2e >>"$out"
grep -E '^(goos|goarch|cpu|Benchmark)' "$out" | sort -u -k1,1 | grep -E '^(goos|goarch|cpu)' || true
awk '
/^BenchmarkSign\/|^BenchmarkSignRoot\// {
	name=$1; sub(/-[0-9]+$/, "", name); ns=$3
	n=split(name, p, "/")
	if (p[1] == "BenchmarkSign") { alg=p[2]; kind=p[3] } else { alg=p[2]; kind="tuf-path" }
	sum[alg SUBSEP kind] += ns; cnt[alg SUBSEP kind]++; algs[alg]=1
}
END {
	printf "\n%-9s %14s %14s %7s %14s %7s\n", "algorithm", "raw C_Sign", "Signer", "ratio", "TUF path", "ratio"
	for (a in algs) {
		r = sum[a SUBSEP "raw"]/cnt[a SUBSEP "raw"]
		s = sum[a SUBSEP "rootkeeper"]/cnt[a SUBSEP "rootkeeper"]
		t = sum[a SUBSEP "tuf-path"]/cnt[a SUBSEP "tuf-path"]
		printf "%-9s %11.1f µs %11.1f µs %6.2fx %11.1f µs %6.2fx\n", a, r/1000, s/1000, s/r, t/1000, t/r
	}
}' "$out"
