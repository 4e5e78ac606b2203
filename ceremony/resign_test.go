package ceremony

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	_ "github.com/rootkeeper/rootkeeper/hsm/pkcs11"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// t0 is when the test repositories are made.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

type recUI struct {
	mu    sync.Mutex
	lines []string
}

func (u *recUI) Confirm(string) (bool, error) { return true, nil }
func (u *recUI) Progress(msg string) {
	u.mu.Lock()
	u.lines = append(u.lines, msg)
	u.mu.Unlock()
}

func (u *recUI) count(prefix string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, l := range u.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

type fixture struct {
	env  *softhsm.Env
	s    *Session
	ui   *recUI
	dir  string
	plan *Plan
	// clock is the sessions' clock (Session.Now): tests move it with
	// setNow, as the command cannot.
	clock *time.Time
}

// setNow moves the sessions' clock to at.
func (f *fixture) setNow(at time.Time) { *f.clock = at }

func mustDur(s string) Duration {
	d, err := ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// newFixture makes SoftHSM tokens "root" and "online", P-256 keys in them,
// and a repository bootstrapped at t0: root 365d (window 90d), targets 90d
// (30d), snapshot 21d (14d), timestamp 7d (6d).
func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, map[string]string{RoleRoot: "365d", RoleTargets: "90d", RoleSnapshot: "21d", RoleTimestamp: "7d"})
}

// newFixtureWith is newFixture with other lifetimes.
func newFixtureWith(t testing.TB, lifetimes map[string]string) *fixture {
	t.Helper()
	env := softhsm.NewTokens(t, "root", "online")
	ui := &recUI{}
	clock := t0
	s := &Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: ui, Yes: true, Now: func() time.Time { return clock }}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	uris := map[string]string{
		RoleRoot: env.URI("root", "root"), RoleTargets: env.URI("online", "targets"),
		RoleSnapshot: env.URI("online", "snapshot"), RoleTimestamp: env.URI("online", "timestamp"),
	}
	for _, r := range TopLevelRoles {
		if _, err := s.Keys.(*hsm.Keyring).Generate(ctx, uris[r], hsm.GenerateOptions{Algorithm: hsm.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	p := &Plan{Version: 1, Ceremony: "bootstrap", Repository: "fixture"}
	for _, r := range TopLevelRoles {
		*p.Role(r) = RolePlan{Threshold: 1, Keys: []string{uris[r]}, Expires: mustDur(lifetimes[r])}
	}
	if probs := p.Validate(); len(probs) > 0 {
		t.Fatal(probs)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, p, dir); err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, s: s, ui: ui, dir: dir, plan: p, clock: &clock}
}

// reopen starts a new session, so that keys are opened (and tokens logged
// in to) again, as in a new process.
func (f *fixture) reopen(t testing.TB) {
	f.s.Close()
	now := f.s.Now
	f.ui = &recUI{}
	f.s = &Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: f.ui, Yes: true, Now: now}
	t.Cleanup(func() { f.s.Close() })
}

// treeHash hashes every file under dir but rootkeeper's lock file.
func treeHash(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() || rel == LockFile {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			lines = append(lines, rel+" -> "+target)
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		lines = append(lines, rel+" "+hex.EncodeToString(h[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

func mustVerify(t testing.TB, dir string, at time.Time) {
	t.Helper()
	rep, err := Verify(dir, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("%s at %s: a client would refuse it: %+v", dir, at.Format(time.RFC3339), rep.Problems)
	}
}

func resignAt(t testing.TB, f *fixture, at time.Time, opts ResignOptions) *ResignResult {
	t.Helper()
	f.setNow(at)
	res, err := f.s.Resign(context.Background(), f.dir, opts)
	if err != nil {
		t.Fatalf("resign at %s: %v (hint: %s)", at.Format("2006-01-02"), err, hsm.HintOf(err))
	}
	return res
}

func TestResignFollowsWindows(t *testing.T) {
	f := newFixture(t)
	for _, step := range []struct {
		day  int
		want string
	}{
		{1, ""},                            // timestamp has 6d left: not inside its 6d window yet
		{2, "timestamp"},                   // 5d left
		{3, ""},                            // renewed yesterday
		{8, "snapshot timestamp"},          // snapshot 13d left of 21d
		{20, "snapshot timestamp"},         // both due again
		{61, "targets snapshot timestamp"}, // targets 29d left of 90d; the others expired meanwhile
	} {
		res := resignAt(t, f, day(step.day), ResignOptions{})
		if got := strings.Join(res.Resigned, " "); got != step.want {
			t.Errorf("day %d: re-signed %q, want %q (%+v)", step.day, got, step.want, res)
		}
		mustVerify(t, f.dir, day(step.day))
	}
	// --role forces a role; --within widens every window.
	res := resignAt(t, f, day(62), ResignOptions{Roles: []string{"root"}})
	if strings.Join(res.Resigned, " ") != "root" || res.Versions["root"] != 2 {
		t.Errorf("--role root: %+v", res)
	}
	mustVerify(t, f.dir, day(62))
	res = resignAt(t, f, day(63), ResignOptions{Within: 20 * 24 * time.Hour}) // snapshot has 19d left
	if strings.Join(res.Resigned, " ") != "snapshot timestamp" {
		t.Errorf("--within 20d: %+v", res)
	}
	res = resignAt(t, f, day(64), ResignOptions{Within: 89 * 24 * time.Hour}) // targets has 87d left
	if strings.Join(res.Resigned, " ") != "targets snapshot timestamp" {
		t.Errorf("--within 89d: %+v", res)
	}
	if res.Outcome != OutcomeResigned {
		t.Errorf("outcome %s", res.Outcome)
	}
	// The transcript records every run.
	data, _ := os.ReadFile(filepath.Join(f.dir, TranscriptFile))
	entries, err := ParseTranscript(data)
	if err != nil || entries[len(entries)-1].Operation != "resign" {
		t.Fatalf("transcript: %v %+v", err, entries)
	}
	// No journal left behind.
	if _, err := os.Stat(filepath.Join(f.dir, JournalFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left: %v", err)
	}
}

func TestResignExpiredRoot(t *testing.T) {
	f := newFixture(t)
	at := day(400) // everything has expired, root too
	res := resignAt(t, f, at, ResignOptions{})
	if strings.Join(res.Resigned, " ") != "root targets snapshot timestamp" {
		t.Fatalf("re-signed %v", res.Resigned)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "re-signing an expired root still needs the old root's threshold") {
		t.Errorf("notes: %q", res.Notes)
	}
	mustVerify(t, f.dir, at)
}

func TestResignExpiredRootWithoutRootKey(t *testing.T) {
	f := newFixture(t)
	// The root key's PIN is not available unattended: no pin-source, no
	// terminal (this session has no prompt).
	pol := filepath.Join(f.dir, PolicyFile)
	data, _ := os.ReadFile(pol)
	rootURI := f.plan.Roles.Root.Keys[0]
	noPIN := strings.Replace(rootURI, "&pin-source="+f.env.PINFile, "", 1)
	os.WriteFile(pol, []byte(strings.Replace(string(data), rootURI, noPIN, 1)), 0o644)
	t.Setenv(hsm.PINEnv, "")
	f.reopen(t)
	before := treeHash(t, f.dir)

	res := resignAt(t, f, day(400), ResignOptions{})
	if res.Outcome != OutcomeWaiting || len(res.Waiting) == 0 || res.Waiting[0].Role != RoleRoot {
		t.Fatalf("%+v", res)
	}
	w := res.Waiting[0]
	if !strings.Contains(w.Detail, "old root's threshold") || len(w.Missing) != 1 || !strings.Contains(w.Missing[0].Reason, "PIN") {
		t.Errorf("wait: %+v", w)
	}
	if treeHash(t, f.dir) != before {
		t.Error("the repository changed although root could not be re-signed")
	}

	// Root due but not expired: the online roles are re-signed, root waits.
	res = resignAt(t, f, day(290), ResignOptions{})
	if res.Outcome != OutcomePartial || strings.Join(res.Resigned, " ") != "targets snapshot timestamp" || res.Waiting[0].Role != RoleRoot {
		t.Fatalf("%+v", res)
	}
	mustVerify(t, f.dir, day(290))
}

func TestResignRefusals(t *testing.T) {
	f := newFixture(t)
	before := treeHash(t, f.dir)
	ctx := context.Background()
	for _, tc := range []struct {
		opts ResignOptions
		want string
	}{
		{ResignOptions{Within: 400 * 24 * time.Hour}, "--within 400d is not shorter than the lifetime of root (365d)"},
		{ResignOptions{Roles: []string{"nope"}}, `no role "nope"`},
		// A write uses the session's clock, always: At is for dry runs.
		{ResignOptions{At: day(2)}, "--at is only for what only reads"},
	} {
		f.setNow(day(1))
		_, err := f.s.Resign(ctx, f.dir, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || hsm.HintOf(err) == "" {
			t.Errorf("%+v: err = %v", tc.opts, err)
		}
	}
	// A policy whose window is not shorter than the lifetime.
	pol := filepath.Join(f.dir, PolicyFile)
	good, _ := os.ReadFile(pol)
	p, err := LoadPolicy(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := p.Roles[RoleTimestamp]
	ts.Window = mustDur("8d")
	p.Roles[RoleTimestamp] = ts
	bad, _ := p.Marshal()
	os.WriteFile(pol, bad, 0o644)
	f.setNow(day(2))
	_, err = f.s.Resign(ctx, f.dir, ResignOptions{})
	if err == nil || !strings.Contains(err.Error(), "roles.timestamp.window: 8d is not shorter than expires (7d)") ||
		!strings.Contains(hsm.HintOf(err), "docs/plan-reference.md#policy") {
		t.Errorf("bad window: %v", err)
	}
	os.WriteFile(pol, good, 0o644)
	if treeHash(t, f.dir) != before {
		t.Error("a refused run changed the repository")
	}
}

func TestResignDryRun(t *testing.T) {
	f := newFixture(t)
	before := treeHash(t, f.dir)
	f.ui.lines = nil
	res, err := f.s.Resign(context.Background(), f.dir, ResignOptions{DryRun: true, At: day(61)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range res.Due {
		got = append(got, d.Role+":"+d.Reason)
	}
	if want := "targets:inside its window snapshot:expired timestamp:expired"; strings.Join(got, " ") != want {
		t.Errorf("dry run: %q, want %q", strings.Join(got, " "), want)
	}
	if res.Outcome != OutcomeDryRun || treeHash(t, f.dir) != before || f.ui.count("signing") != 0 {
		t.Errorf("dry run wrote or signed: %+v", res)
	}
}

// TestJournalRecovery: a crash after the journal was committed and some
// of the files were written; the next run finishes the change first.
func TestJournalRecovery(t *testing.T) {
	f := newFixture(t)
	before := treeHash(t, f.dir)
	// Make a real change, keep its files, and put the repository back.
	repo, err := roles.Load(os.DirFS(f.dir))
	if err != nil {
		t.Fatal(err)
	}
	res := resignAt(t, f, day(2), ResignOptions{})
	var files []File
	for _, p := range append([]string{TranscriptFile, "metadata/timestamp.json"}, res.Resigned[:0]...) {
		data, err := os.ReadFile(filepath.Join(f.dir, p))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: p, Data: data})
	}
	after := treeHash(t, f.dir)
	orig, _ := repo.Files()
	for _, o := range orig {
		if o.Path == "metadata/timestamp.json" {
			os.WriteFile(filepath.Join(f.dir, o.Path), o.Data, 0o644)
		}
	}
	data, _ := os.ReadFile(filepath.Join(f.dir, TranscriptFile))
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(filepath.Join(f.dir, TranscriptFile), []byte(strings.Join(lines[:len(lines)-2], "")), 0o644)
	if treeHash(t, f.dir) != before {
		t.Fatal("could not put the repository back")
	}

	// The crash: journal committed, the transcript written, not the
	// timestamp; a temporary file of the interrupted write is left over.
	doc := fmt.Sprintf(`{"version":1,"files":[{"path":%q,"data":%q},{"path":%q,"data":%q}]}`,
		files[0].Path, b64(files[0].Data), files[1].Path, b64(files[1].Data))
	os.WriteFile(filepath.Join(f.dir, legacyJournalFile), []byte(doc), 0o644)
	os.WriteFile(filepath.Join(f.dir, TranscriptFile), files[0].Data, 0o644)
	os.WriteFile(filepath.Join(f.dir, "metadata/.timestamp.json.tmp-123"), []byte("half"), 0o644)
	os.WriteFile(filepath.Join(f.dir, "."+JournalFile+".tmp-9"), []byte("half a journal"), 0o644)

	// Any writing command finishes it first; here, a run with nothing due.
	res2 := resignAt(t, f, day(2), ResignOptions{})
	if res2.Outcome != OutcomeNothingDue {
		t.Errorf("after recovery: %+v", res2)
	}
	if treeHash(t, f.dir) != after {
		t.Error("recovery did not give the fully re-signed repository")
	}
	mustVerify(t, f.dir, day(2))
}

func b64(b []byte) string {
	return base64.StdEncoding.EncodeToString(b)
}

// TestResignOnlineKeyMissing: without the snapshot key the timestamp is
// still re-signed alone; a targets role that would need a new snapshot
// waits with it, and nothing is written for it.
func TestResignOnlineKeyMissing(t *testing.T) {
	f := newFixture(t)
	pol := filepath.Join(f.dir, PolicyFile)
	data, _ := os.ReadFile(pol)
	// The snapshot key's token is not plugged in.
	os.WriteFile(pol, []byte(strings.Replace(string(data), "token=online;object=snapshot", "token=gone;object=snapshot", 1)), 0o644)
	f.reopen(t)

	res := resignAt(t, f, day(8), ResignOptions{}) // snapshot and timestamp due
	if res.Outcome != OutcomePartial || strings.Join(res.Resigned, " ") != "timestamp" || len(res.Waiting) != 1 || res.Waiting[0].Role != RoleSnapshot {
		t.Fatalf("%+v", res)
	}
	mustVerify(t, f.dir, day(8))

	before := treeHash(t, f.dir)
	res = resignAt(t, f, day(9), ResignOptions{Roles: []string{RoleTargets}})
	var waiting []string
	for _, w := range res.Waiting {
		waiting = append(waiting, w.Role)
		if w.Role == RoleTargets && !strings.Contains(w.Detail, "cannot be published without new snapshot metadata") {
			t.Errorf("targets: %q", w.Detail)
		}
	}
	if res.Outcome != OutcomeWaiting || strings.Join(waiting, " ") != "targets snapshot" || len(res.Resigned) != 0 {
		t.Fatalf("%+v", res)
	}
	if treeHash(t, f.dir) != before {
		t.Error("a waiting run wrote")
	}
}
