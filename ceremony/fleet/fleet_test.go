package fleet

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// binStatus is a status report with n hashed bins "bins-…" of which the
// first `due` are due and bins-001 (when there is one) has version 2.
func binStatus(n, due int) *ceremony.StatusReport {
	at := day(0)
	st := &ceremony.StatusReport{Repository: "repo", At: at}
	for _, r := range []string{ceremony.RoleRoot, ceremony.RoleTimestamp, ceremony.RoleSnapshot, ceremony.RoleTargets} {
		st.Roles = append(st.Roles, ceremony.RoleStatus{Role: r, Version: 1, Expires: day(7), Threshold: 1, ValidSignatures: 1, Window: ceremony.Seconds(24 * time.Hour)})
	}
	width := len(fmt.Sprintf("%x", n-1))
	for i := range n {
		r := ceremony.RoleStatus{Role: fmt.Sprintf("bins-%0*x", width, i), Delegator: ceremony.RoleTargets, Version: 1, Expires: day(90),
			Threshold: 1, ValidSignatures: 1, Bins: "bins", Window: ceremony.Seconds(30 * 24 * time.Hour)}
		if i < due {
			r.Health, r.Expires = ceremony.Due, day(20)
		}
		if i == 1 {
			r.Version = 2
		}
		st.Roles = append(st.Roles, r)
	}
	return st
}

// TestPrometheusBinsConstant: the metrics of a repository with 16,384
// bins have as many series as with 2, and say how many bins are due.
func TestPrometheusBinsConstant(t *testing.T) {
	count := func(n, due int) (int, map[string]float64) {
		var b bytes.Buffer
		if err := FormatPrometheus(&b, day(0), []RepoStatus{{Repository: "repo", Status: binStatus(n, due)}}); err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("%v\n%s", err, b.Bytes())
		}
		series, values := 0, map[string]float64{}
		for name, f := range fams {
			series += len(f.Metric)
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "role" && l.GetValue() == "bins-*" {
						values[name] = m.GetGauge().GetValue()
					}
				}
			}
		}
		return series, values
	}
	small, _ := count(2, 1)
	big, v := count(16384, 5)
	if small != big || big > 48 {
		t.Fatalf("%d series with 2 bins, %d with 16384", small, big)
	}
	if v["rootkeeper_role_bins"] != 16384 || v["rootkeeper_role_bins_due"] != 5 || v["rootkeeper_role_health"] != float64(ceremony.Due) ||
		v["rootkeeper_role_expiry_timestamp_seconds"] != float64(day(20).Unix()) || v["rootkeeper_role_version"] != 1 {
		t.Errorf("bins series: %v", v)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"fleet/a": "fleet/a", "/srv/tuf/*": "'/srv/tuf/*'", "it's": `'it'\''s'`, "": "''", "a b": "'a b'"} {
		if got := ShellQuote(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

// TestICalendarReplan: the file written again keeps each event's UID and
// raises its SEQUENCE when it changed; an event that vanished is written
// once as cancelled; a file rootkeeper did not write is not read.
func TestICalendarReplan(t *testing.T) {
	entry := func(repo, role string, due time.Time, version int64) CalendarEntry {
		return CalendarEntry{Repository: repo, Role: role, Version: version, Due: due, Expires: due.Add(30 * 24 * time.Hour),
			Window: ceremony.Seconds(30 * 24 * time.Hour), Threshold: 1, identity: "/abs/" + repo, maxVersion: version}
	}
	parse := func(ics []byte) map[string][]string { // UID → SEQUENCE, DTSTART, STATUS
		out := map[string][]string{}
		_, evs := previousEvents(ics)
		for uid, e := range evs {
			var start string
			for _, l := range e.lines {
				if v, ok := strings.CutPrefix(l, "DTSTART;VALUE=DATE:"); ok {
					start = v
				}
			}
			out[uid] = []string{fmt.Sprint(e.sequence), start, fmt.Sprint(e.cancelled)}
		}
		return out
	}
	g1 := GroupCeremonies([]CalendarEntry{entry("a", "targets", day(60), 1), entry("b", "targets", day(60), 1)}, "--repos-from LIST")
	if len(g1) != 1 || g1[0].Command != "rootkeeper resign --repos-from LIST --role targets" {
		t.Fatalf("groups %+v", g1)
	}
	ics1 := ICalendar(g1, day(0), nil)
	// b re-signed early: a stays (a new group of one: new UID), b moves.
	g2 := GroupCeremonies([]CalendarEntry{entry("a", "targets", day(60), 1), entry("b", "targets", day(90), 2)}, "--repos-from LIST")
	ics2 := ICalendar(g2, day(10), ics1)
	e1, e2 := parse(ics1), parse(ics2)
	if len(e1) != 1 || len(e2) != 3 {
		t.Fatalf("events: %v then %v", e1, e2)
	}
	old := g1[0].UID
	if e2[old][2] != "true" || e2[old][0] != "2" {
		t.Errorf("the vanished event: %v (before %v)", e2[old], e1[old])
	}
	// The same calendar again: nothing changed, nothing cancelled twice.
	g3 := GroupCeremonies([]CalendarEntry{entry("a", "targets", day(60), 1), entry("b", "targets", day(90), 2)}, "--repos-from LIST")
	e3 := parse(ICalendar(g3, day(11), ics2))
	if len(e3) != 2 || e3[g2[0].UID][0] != e2[g2[0].UID][0] {
		t.Errorf("unchanged calendar: %v, before %v", e3, e2)
	}
	// b's window changes (same version): same UID, higher SEQUENCE.
	g4 := GroupCeremonies([]CalendarEntry{entry("a", "targets", day(60), 1), entry("b", "targets", day(80), 2)}, "--repos-from LIST")
	e4 := parse(ICalendar(g4, day(12), ICalendar(g3, day(11), ics2)))
	ub := g4[1].UID
	if ub != g3[1].UID || e4[ub][0] != "3" || e4[ub][1] != day(80).Format("20060102") {
		t.Errorf("re-planned: %v, before %v", e4[ub], e3[ub])
	}
	if _, evs := previousEvents(bytes.ReplaceAll(ics1, []byte("rootkeeper calendar"), []byte("other"))); len(evs) != 0 {
		t.Error("read another program's calendar")
	}
}
