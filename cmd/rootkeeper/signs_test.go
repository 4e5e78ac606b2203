package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// signsCmd is the script command signs N [TOKEN [KEY]]: the signatures the
// PKCS#11 shim logged (softhsm-test/pkcs11shim) since the last signs N
// without TOKEN, which starts counting anew; with TOKEN (and KEY) only the
// signatures of keys on TOKEN (labelled KEY) count, and the count goes on.
// Any key that signed the same data twice fails it.
func signsCmd(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 3 {
		ts.Fatalf("usage: signs N [TOKEN [KEY]]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	log := ts.Getenv(softhsm.ShimSignLogEnv)
	data, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		ts.Fatalf("%v", err)
	}
	got := 0
	seen := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != "C_Sign" {
			continue
		}
		if f[4] != "rv=0x0" {
			ts.Fatalf("a failed signature: %s", l)
		}
		id := f[1] + " " + f[2] + " " + f[3] // token, key, data
		if seen[id] {
			ts.Fatalf("the same data signed twice by one key (%s):\n%s", id, data)
		}
		seen[id] = true
		if len(args) >= 2 && f[1] != "token="+args[1] || len(args) == 3 && f[2] != "key="+args[2] {
			continue
		}
		got++
	}
	if (got == want) == neg {
		ts.Fatalf("%d signatures, want %d:\n%s", got, want, data)
	}
	if len(args) == 1 {
		ts.Check(os.WriteFile(log, nil, 0o600))
	}
}
