package main

import (
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
)

// opsMark is where vcard ops last counted a card's operations.
type opsMark struct {
	stats  pivcard.Stats
	signed int
}

// vcardOps is vcard ops NAME VERIFIES SIGNS TOUCHES (device_ops_piv.txtar):
// the PIN VERIFYs (carrying a PIN), signatures and touches the card saw
// since the last vcard ops of it, and no input signed twice by one slot;
// a count written <=N may be lower (a touch cached by an earlier run);
// vcard ops NAME alone only starts counting.
func vcardOps(ts *testscript.TestScript, vs *vcardScript, c *pivcard.Card, args []string) {
	if len(args) == 2 {
		vs.ops[args[1]] = opsMark{stats: c.Stats(), signed: len(c.Signed())}
		return
	}
	if len(args) != 5 {
		ts.Fatalf("usage: vcard ops NAME [VERIFIES SIGNS TOUCHES]")
	}
	var want [3]int
	var atMost [3]bool // "<=N": a cached touch may still cover the next run
	for i := range want {
		a := args[2+i]
		atMost[i] = strings.HasPrefix(a, "<=")
		n, err := strconv.Atoi(strings.TrimPrefix(a, "<="))
		ts.Check(err)
		want[i] = n
	}
	m := vs.ops[args[1]]
	st, signed := c.Stats(), c.Signed()
	got := [3]int{st.PINVerifies - m.stats.PINVerifies, st.Signs - m.stats.Signs, st.Touches - m.stats.Touches}
	recent := signed[m.signed:]
	seen := map[string]bool{}
	for _, s := range recent {
		if seen[s] {
			ts.Fatalf("card %s signed the same input twice (%s):\n%s", args[1], s, strings.Join(recent, "\n"))
		}
		seen[s] = true
	}
	ok := true
	for i := range got {
		ok = ok && (got[i] == want[i] || atMost[i] && got[i] < want[i])
	}
	if !ok {
		ts.Fatalf("card %s: %d PIN VERIFYs, %d signatures, %d touches; want %s, %s, %s\n%s",
			args[1], got[0], got[1], got[2], args[2], args[3], args[4], strings.Join(recent, "\n"))
	}
	vs.ops[args[1]] = opsMark{stats: st, signed: len(signed)}
}
