package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	_ "github.com/rootkeeper/rootkeeper/hsm/pkcs11"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// The fixture of ceremony's resign tests (ceremony/resign_test.go), for
// the fleet's: repositories on SoftHSM made by a session whose clock the
// tests move.

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
	s    *ceremony.Session
	ui   *recUI
	dir  string
	plan *ceremony.Plan
	// clock is the sessions' clock (Session.Now): tests move it with
	// setNow, as the command cannot.
	clock *time.Time
}

// setNow moves the sessions' clock to at.
func (f *fixture) setNow(at time.Time) { *f.clock = at }

func mustDur(s string) ceremony.Duration {
	d, err := ceremony.ParseDuration(s)
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
	return newFixtureWith(t, map[string]string{ceremony.RoleRoot: "365d", ceremony.RoleTargets: "90d", ceremony.RoleSnapshot: "21d", ceremony.RoleTimestamp: "7d"})
}

// newFixtureWith is newFixture with other lifetimes.
func newFixtureWith(t testing.TB, lifetimes map[string]string) *fixture {
	t.Helper()
	env := softhsm.NewTokens(t, "root", "online")
	ui := &recUI{}
	clock := t0
	s := &ceremony.Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: ui, Yes: true, Now: func() time.Time { return clock }}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	uris := map[string]string{
		ceremony.RoleRoot: env.URI("root", "root"), ceremony.RoleTargets: env.URI("online", "targets"),
		ceremony.RoleSnapshot: env.URI("online", "snapshot"), ceremony.RoleTimestamp: env.URI("online", "timestamp"),
	}
	for _, r := range ceremony.TopLevelRoles {
		if _, err := s.Keys.(*hsm.Keyring).Generate(ctx, uris[r], hsm.GenerateOptions{Algorithm: hsm.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	p := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "fixture"}
	for _, r := range ceremony.TopLevelRoles {
		*p.Role(r) = ceremony.RolePlan{Threshold: 1, Keys: []string{uris[r]}, Expires: mustDur(lifetimes[r])}
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
	f.s = &ceremony.Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: f.ui, Yes: true, Now: now}
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
		if d.IsDir() || rel == ceremony.LockFile {
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
	rep, err := ceremony.Verify(dir, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("%s at %s: a client would refuse it: %+v", dir, at.Format(time.RFC3339), rep.Problems)
	}
}
