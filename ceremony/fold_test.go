package ceremony

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// binStatus is a status report with n hashed bins "bins-…" of which the
// first `due` are due and bins-001 (when there is one) has version 2.
func binStatus(n, due int) *StatusReport {
	at := day(0)
	st := &StatusReport{Repository: "repo", At: at}
	for _, r := range []string{RoleRoot, RoleTimestamp, RoleSnapshot, RoleTargets} {
		st.Roles = append(st.Roles, RoleStatus{Role: r, Version: 1, Expires: day(7), Threshold: 1, ValidSignatures: 1, Window: Seconds(24 * time.Hour)})
	}
	width := len(fmt.Sprintf("%x", n-1))
	for i := range n {
		r := RoleStatus{Role: fmt.Sprintf("bins-%0*x", width, i), Delegator: RoleTargets, Version: 1, Expires: day(90),
			Threshold: 1, ValidSignatures: 1, Bins: "bins", Window: Seconds(30 * 24 * time.Hour)}
		if i < due {
			r.Health, r.Expires = Due, day(20)
		}
		if i == 1 {
			r.Version = 2
		}
		st.Roles = append(st.Roles, r)
	}
	return st
}

func TestFoldBins(t *testing.T) {
	st := binStatus(1024, 3)
	rows := st.FoldRoles()
	if len(rows) != 5 {
		t.Fatalf("%d rows", len(rows))
	}
	f := rows[4].Set
	if f == nil || f.Name != "bins-*" || f.Bins != 1024 || f.Due != 3 || f.Invalid != 0 || f.Health != Due ||
		f.First != "bins-000" || f.Last != "bins-3ff" || f.MinVersion != 1 || f.MaxVersion != 2 || !f.Expires.Equal(day(20)) {
		t.Fatalf("fold: %+v", f)
	}
	if rows[4].Item.Role != "bins-000" { // the worst bin: due, then the earliest, then by name
		t.Errorf("worst bin %s", rows[4].Item.Role)
	}
	// The typical bin is healthy, v1, expiring on day 90; the three due
	// bins and bins-001 (v2) differ, worst first.
	if f.Typical.Version != 1 || f.Typical.Health != Healthy || !f.Typical.Expires.Equal(day(90)) || f.DifferCount != 3 {
		t.Fatalf("typical %+v, %d differ: %+v", f.Typical, f.DifferCount, f.Differ)
	}
	var names []string
	for _, m := range f.Differ {
		names = append(names, m.Role)
	}
	if strings.Join(names, " ") != "bins-000 bins-001 bins-002" {
		t.Errorf("differ %v", names)
	}

	// A set with one bin among the rows stays that bin.
	one := FoldBins(st.Roles[:5], BinsOfStatus(st), RoleStatus.Member)
	if one[4].Set != nil || one[4].Item.Role != "bins-000" {
		t.Errorf("a single bin folded: %+v", one[4])
	}
	// More bins differ than a fold names: it counts them all. The 39 due
	// v1 bins are typical; the 24 healthy ones and bins-01 (v2) differ,
	// worst first.
	wide := binStatus(64, 40).FoldRoles()[4].Set
	if wide.Typical.Health != Due || wide.DifferCount != 25 || len(wide.Differ) != MaxDiffer ||
		wide.Differ[0].Role != "bins-01" || wide.Differ[1].Role != "bins-28" {
		t.Errorf("typical %+v, %d differ: %+v", wide.Typical, wide.DifferCount, wide.Differ)
	}
}

func TestFoldMessages(t *testing.T) {
	idx := BinIndex{"bins-0": "bins", "bins-1": "bins", "bins-2": "bins"}
	type msg struct{ role, text, kind string }
	msgs := []msg{
		{"targets", "targets: expired at T0", "expiry"},
		{"bins-0", "bins-0: expired at T1", "expiry"},
		{"bins-1", "bins-1: expired at T1", "expiry"},
		{"bins-2", "bins-2: expired at T2", "expiry"},
		{"bins-2", "bins-2: bad signature", "signature"},
	}
	role := func(m msg) string { return m.role }
	text := func(m msg) string { return m.text }
	byKind := FoldMessages(msgs, idx, role, text, func(m msg) string { return m.kind })
	if len(byKind) != 3 || byKind[1].Same || byKind[1].Text != "bins-0: expired at T1" || len(byKind[1].Bins) != 3 || byKind[1].Set != "bins-*" {
		t.Fatalf("by kind: %+v", byKind)
	}
	byText := FoldMessages(msgs, idx, role, text, nil)
	if len(byText) != 4 || !byText[1].Same || byText[1].Text != "bins-*: expired at T1" || len(byText[1].Bins) != 2 || byText[2].Text != "bins-2: expired at T2" {
		t.Fatalf("by text: %+v", byText)
	}
}

func TestSecondsJSON(t *testing.T) {
	for d, want := range map[time.Duration]string{30 * 24 * time.Hour: "2592000", -90 * time.Second: "-90", 1500 * time.Millisecond: "1.5", 0: "0"} {
		b, err := json.Marshal(Seconds(d))
		if err != nil || string(b) != want {
			t.Errorf("%v: %s %v, want %s", d, b, err, want)
		}
		var back Seconds
		if err := json.Unmarshal(b, &back); err != nil || back.D() != d {
			t.Errorf("%s read back as %v", b, back.D())
		}
	}
	if Seconds(-2*24*time.Hour).Remaining() != "expired 2d ago" || Seconds(36*time.Hour).String() != "1d12h" {
		t.Error("Seconds for people")
	}
}

func TestBinProgress(t *testing.T) {
	var said []string
	p := newBinProgress(func(m string) { said = append(said, m) }, BinIndex{"bins-0": "bins", "bins-1": "bins", "bins-2": "bins"})
	for _, l := range []string{"targets v1 due", "signing bins-0 with k", "signing bins-1 with k", "signing bins-2 with k", "bins-2 v3 due", "snapshot"} {
		p.line(l)
	}
	p.flush()
	want := "targets v1 due|signing bins-0 with k|… the same for 2 more bins of bins-* (bins-1 … bins-2)|bins-2 v3 due|snapshot"
	if got := strings.Join(said, "|"); got != want {
		t.Errorf("said\n%s\nwant\n%s", got, want)
	}
}
