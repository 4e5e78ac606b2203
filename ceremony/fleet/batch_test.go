package fleet

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// copyTree copies the repository src to dst (the keys are the same: fine
// for a batch).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fleet makes n copies of the fixture's repository under one directory.
func fleet(t testing.TB, f *fixture, n int) []string {
	t.Helper()
	base := filepath.Join(t.TempDir(), "fleet")
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("repo-%04d", i))
		copyTree(t, f.dir, dirs[i])
	}
	return dirs
}

// TestResignBatch re-signs 200 repositories with one session: each key is
// opened once, a corrupt repository is skipped and reported, the others
// are complete; a second run finds nothing due.
func TestResignBatch(t *testing.T) {
	f := newFixture(t)
	dirs := fleet(t, f, 200)
	corrupt := dirs[57]
	os.WriteFile(filepath.Join(corrupt, "metadata/timestamp.json"), []byte("{not json"), 0o644)
	corruptHash := treeHash(t, corrupt)
	f.reopen(t)

	at := day(300) // root due; the online roles long expired
	var seen atomic.Int32
	f.setNow(at)
	rep := ResignBatch(context.Background(), f.s, dirs, BatchOptions{
		Progress: func(done, total int, r *ceremony.ResignResult) {
			seen.Add(1)
			if total != 200 || done < 1 || done > total {
				t.Errorf("progress %d/%d", done, total)
			}
		}})
	if rep.Counts[ceremony.OutcomeResigned] != 199 || rep.Counts[ceremony.OutcomeFailed] != 1 || seen.Load() != 200 {
		t.Fatalf("counts %v, progress calls %d, stopped %q", rep.Counts, seen.Load(), rep.Stopped)
	}
	if len(rep.Attention) != 1 || rep.Attention[0].Repository != corrupt || !strings.Contains(rep.Attention[0].Error, "cannot load metadata") {
		t.Fatalf("attention: %+v", rep.Attention)
	}
	if rep.Signed[ceremony.RoleRoot] != 199 || rep.Worst() != ceremony.OutcomeFailed {
		t.Errorf("signed %v, worst %s", rep.Signed, rep.Worst())
	}
	// One login per token: each of the four keys was opened once.
	if n := f.ui.count("opening "); n != 4 {
		t.Errorf("keys opened %d times, want 4:\n%s", n, strings.Join(f.ui.lines, "\n"))
	}
	for _, d := range dirs {
		if d != corrupt {
			mustVerify(t, d, at)
		}
	}
	if treeHash(t, corrupt) != corruptHash {
		t.Error("the corrupt repository was changed")
	}
	f.setNow(at.Add(time.Hour))
	rep = ResignBatch(context.Background(), f.s, dirs, BatchOptions{})
	if rep.Counts[ceremony.OutcomeNothingDue] != 199 || rep.Counts[ceremony.OutcomeFailed] != 1 {
		t.Errorf("second run: %v", rep.Counts)
	}
}

// flaky is a device that is pulled out after a number of signatures.
type flaky struct {
	hsm.Signer
	left atomic.Int32
}

func (f *flaky) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if f.left.Add(-1) < 0 {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, Detail: "C_Sign failed", Err: errors.New("CKR_DEVICE_REMOVED"),
			HintText: "the token went away: reconnect it and run the command again"}
	}
	return f.Signer.Sign(r, digest, opts)
}

// TestResignBatchTokenRemoved: the root token goes away after 12
// signatures. The repositories done are complete, the rest untouched, the
// batch stops with a clear reason; the next run continues.
func TestResignBatchTokenRemoved(t *testing.T) {
	f := newFixture(t)
	dirs := fleet(t, f, 30)
	before := map[string]string{}
	for _, d := range dirs {
		before[d] = treeHash(t, d)
	}
	f.reopen(t)
	ctx := context.Background()
	k, err := f.s.Open(ctx, f.plan.Roles.Root.Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	fl := &flaky{Signer: k.HW}
	fl.left.Store(12)
	k.HW = fl
	if k.TUF, err = roles.NewSigner(fl); err != nil {
		t.Fatal(err)
	}

	at := day(300)
	f.setNow(at)
	rep := ResignBatch(ctx, f.s, dirs, BatchOptions{Workers: 1})
	if rep.Counts[ceremony.OutcomeResigned] != 12 || rep.Counts[ceremony.OutcomeFailed] != 1 || rep.Counts[ceremony.OutcomeNotStarted] != 17 {
		t.Fatalf("counts %v", rep.Counts)
	}
	if !strings.Contains(rep.Stopped, "signing root with pkcs11:token=root;object=root failed") || !strings.Contains(rep.Stopped, "CKR_DEVICE_REMOVED") {
		t.Errorf("stopped: %q", rep.Stopped)
	}
	var failed *ceremony.ResignResult
	for _, r := range rep.Attention {
		if r.Outcome == ceremony.OutcomeFailed {
			failed = r
		}
	}
	if failed == nil || !strings.Contains(failed.Hint, "reconnect it") || !strings.Contains(failed.Hint, "run again to continue") {
		t.Errorf("failed: %+v", failed)
	}
	done := 0
	for _, d := range dirs {
		if treeHash(t, d) == before[d] {
			continue
		}
		done++
		mustVerify(t, d, at)
		st, err := ceremony.Status(d, at)
		if err != nil || st.Health != ceremony.Healthy {
			t.Errorf("%s: %v %+v", d, err, st)
		}
	}
	if done != 12 {
		t.Errorf("%d repositories changed, want 12", done)
	}

	// The token is back: the same command continues where it stopped.
	fl.left.Store(1 << 30)
	f.setNow(at.Add(time.Minute))
	rep = ResignBatch(ctx, f.s, dirs, BatchOptions{})
	if rep.Counts[ceremony.OutcomeResigned] != 18 || rep.Counts[ceremony.OutcomeNothingDue] != 12 {
		t.Fatalf("rerun: %v", rep.Counts)
	}
}

// TestStatusManyPrometheus: the metrics file parses with Prometheus's own
// text parser and says what status says.
func TestStatusManyPrometheus(t *testing.T) {
	f := newFixture(t)
	dirs := fleet(t, f, 3)
	os.WriteFile(filepath.Join(dirs[2], "metadata/timestamp.json"), []byte("{not json"), 0o644)
	dirs = append(dirs, filepath.Join(t.TempDir(), "missing"))
	at := day(2) // timestamp due
	sts := StatusMany(context.Background(), dirs, at, 0)
	if sum := Summarize(sts); sum != (FleetSummary{Due: 2, Invalid: 1, Errors: 1}) {
		t.Fatalf("summary %+v: %+v", sum, sts)
	}
	path := filepath.Join(t.TempDir(), "rootkeeper.prom")
	if err := WritePrometheus(path, at, sts); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	get := func(name string, labels map[string]string) float64 {
		t.Helper()
		fam, ok := fams[name]
		if !ok {
			t.Fatalf("no %s in\n%s", name, data)
		}
	next:
		for _, m := range fam.Metric {
			for _, lp := range m.Label {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
		t.Fatalf("%s%v not found in\n%s", name, labels, data)
		return 0
	}
	r0 := map[string]string{"repository": dirs[0], "role": "timestamp"}
	if v := get("rootkeeper_role_expiry_timestamp_seconds", r0); v != float64(day(7).Unix()) {
		t.Errorf("timestamp expiry %v", v)
	}
	if get("rootkeeper_role_version", map[string]string{"repository": dirs[0], "role": "root"}) != 1 ||
		get("rootkeeper_role_signatures_valid", r0) != 1 || get("rootkeeper_role_signatures_needed", r0) != 1 ||
		get("rootkeeper_role_health", r0) != float64(ceremony.Due) || get("rootkeeper_role_resign_window_seconds", r0) != 6*86400 {
		t.Error("role metrics disagree with status")
	}
	if get("rootkeeper_repository_health", map[string]string{"repository": dirs[0]}) != float64(ceremony.Due) ||
		get("rootkeeper_repository_health", map[string]string{"repository": dirs[2]}) != float64(ceremony.Invalid) ||
		get("rootkeeper_repository_up", map[string]string{"repository": dirs[3]}) != 0 ||
		get("rootkeeper_repositories", map[string]string{"state": "due"}) != 2 ||
		get("rootkeeper_status_time_seconds", nil) != float64(at.Unix()) {
		t.Error("repository metrics disagree with status")
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

// TestICalendar: RFC 5545 line endings, folding at 75 octets (never inside
// a UTF-8 sequence), escaping; unfolding gives the text back.
func TestICalendar(t *testing.T) {
	f := newFixture(t)
	dirs := fleet(t, f, 2)
	long := filepath.Join(t.TempDir(), strings.Repeat("très-long,nom;de\\dépôt-", 5))
	copyTree(t, f.dir, long)
	dirs = append(dirs, long)
	at := day(10)
	entries := Calendar(StatusMany(context.Background(), dirs, at, 0), false)
	if len(entries) != 6 || entries[0].Role != ceremony.RoleTargets || !entries[0].Due.Equal(day(60)) || entries[5].Role != ceremony.RoleRoot || !entries[5].Due.Equal(day(275)) {
		t.Fatalf("entries: %+v", entries)
	}
	groups := GroupCeremonies(entries, "--repos-from LIST")
	if len(groups) != 2 || len(groups[1].Entries) != 3 {
		t.Fatalf("groups: %+v", groups)
	}
	ics := ICalendar(groups, at, nil)
	s := string(ics)
	if !strings.HasSuffix(s, "END:VCALENDAR\r\n") || strings.Count(s, "\r\n") != strings.Count(s, "\n") {
		t.Fatal("lines must end in CRLF")
	}
	var logical []string
	for _, l := range strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n") {
		if len(l) > 75 {
			t.Errorf("line of %d octets: %q", len(l), l)
		}
		if !utf8Valid(l) {
			t.Errorf("a fold split a UTF-8 sequence: %q", l)
		}
		if strings.HasPrefix(l, " ") {
			logical[len(logical)-1] += l[1:]
			continue
		}
		logical = append(logical, l)
	}
	joined := strings.Join(logical, "\n")
	for _, want := range []string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//rootkeeper//rootkeeper calendar//EN",
		"DTSTART;VALUE=DATE:20300302", "DTSTART;VALUE=DATE:20301003", "SUMMARY:Re-sign root of 3 repositories (first expiry 2031-01-01)",
		"TRIGGER:-P7D", "DTSTAMP:20300111T000000Z", `très-long\,nom\;de\\dépôt-`} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in\n%s", want, joined)
		}
	}
	if n := strings.Count(joined, "BEGIN:VEVENT"); n != 2 {
		t.Errorf("%d events", n)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
