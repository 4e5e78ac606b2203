package clients

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestMain installs the tuf-js node_modules if they are missing, so that the
// package's tests run from a fresh checkout.
func TestMain(m *testing.M) {
	if err := EnsureNodeDeps(); err != nil {
		fmt.Fprintln(os.Stderr, "clients: cannot install tuf-js:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// fresh returns one fresh client of each implementation for r.
func fresh(t *testing.T, r *testRepo, at time.Time) []Client {
	m, tg := Serve(t, r.dir)
	return All(t, Config{TrustedRoot: r.rootBytes(1), MetadataURL: m, TargetsURL: tg, At: at})
}

func wantErrContains(t *testing.T, who string, err error, substr string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", who, substr)
	} else if !strings.Contains(err.Error(), substr) {
		t.Errorf("%s: error %q does not contain %q", who, err, substr)
	}
}

// TestKeySchemes checks which key types and schemes each client accepts.
// The rejections are findings that rootkeeper must respect: see the cases.
func TestKeySchemes(t *testing.T) {
	for _, tc := range []struct {
		kind string
		// rejected maps a client name to the expected error substring; a
		// client not listed must accept the repository.
		rejected map[string]string
	}{
		{kind: kindEd25519},
		{kind: kindP256},
		{kind: kindP256Spec},
		{kind: kindRSA},
		// Accepted by tuf-js only because package.json overrides
		// @tufjs/models to 5.0.2: the 4.1.1 that tuf-js 5.0.1 pins verifies
		// every ECDSA signature with SHA-256, whatever the scheme says.
		{kind: kindP384},
		// go-tuf only knows keytypes "ecdsa" and "ecdsa-sha2-nistp256".
		{kind: kindP384Spec, rejected: map[string]string{
			GoTUFName: "unsupported public key type",
		}},
		// A P-384 key mislabelled with scheme ecdsa-sha2-nistp256: go-tuf
		// accepts it (it never compares the curve with the scheme), tuf-js
		// refuses it. rootkeeper's roles.CryptoPublicKey refuses it too.
		{kind: kindP384AsP256, rejected: map[string]string{
			TufJSName: "root was signed by 0/1 keys",
		}},
		// Control: bad signatures are refused by both.
		{kind: kindP256WrongSig, rejected: map[string]string{
			GoTUFName: "not enough signatures",
			TufJSName: "root was signed by 0/1 keys",
		}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			r := newTestRepo(t, repoOpts{kind: tc.kind, consistent: true, delegate: true})
			if len(tc.rejected) == 0 {
				CheckRepository(t, r.dir, r.rootBytes(1), r.files)
				return
			}
			for _, c := range fresh(t, r, time.Time{}) {
				err := Verify(ctx(t), c, r.files)
				if want, ok := tc.rejected[c.Name()]; ok {
					wantErrContains(t, c.Name(), err, want)
				} else if err != nil {
					t.Errorf("%s: %v", c.Name(), err)
				}
			}
		})
	}
}

// TestConsistentSnapshot checks both layouts, with a delegated role and a
// target in a sub-directory.
func TestConsistentSnapshot(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: consistent, delegate: true})
			r.bumpAll() // version 2 of targets/snapshot/timestamp
			CheckRepository(t, r.dir, r.rootBytes(1), r.files)
			for _, c := range fresh(t, r, time.Time{}) {
				if err := c.Update(ctx(t)); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Fetch(ctx(t), delegatedTarget); err != nil {
					t.Fatal(err)
				}
				got, want := c.TrustedVersions(), map[string]int64{"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2, delegatedRole: 1}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: trusted versions %v, want %v", c.Name(), got, want)
				}
			}
		})
	}
	t.Run("consistent target without hash prefix", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
		for _, rel := range r.targetPaths(nestedTarget) {
			if err := os.Remove(filepath.Join(r.dir, "targets", rel)); err != nil {
				t.Fatal(err)
			}
		}
		r.consistent = false
		r.writeTargetFiles() // plain names: wrong for a consistent repository
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), nestedTarget)
		for name, err := range errs {
			wantErrContains(t, name, err, "404")
		}
	})
}

// TestTampered checks that altered targets and metadata are refused.
func TestTampered(t *testing.T) {
	t.Run("target", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindP256, consistent: true})
		evil := []byte(strings.ToUpper(defaultContent)) // same length
		for _, rel := range r.targetPaths(topTarget) {
			r.writeFile(filepath.Join("targets", rel), evil)
		}
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), topTarget)
		wantErrContains(t, GoTUFName, errs[GoTUFName], "hash verification failed")
		wantErrContains(t, TufJSName, errs[TufJSName], "hash")
		// The untouched target still verifies.
		CheckRepository(t, r.dir, r.rootBytes(1), map[string][]byte{nestedTarget: r.files[nestedTarget]})
	})
	t.Run("targets metadata", func(t *testing.T) {
		r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: false})
		p := filepath.Join(r.dir, "metadata", "targets.json")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), fmt.Sprintf(`"length": %d`, len(defaultContent)), fmt.Sprintf(`"length": %d`, len(defaultContent)+1), 1))
		r.writeFile(filepath.Join("metadata", "targets.json"), b)
		errs := ExpectRejected(t, r.dir, r.rootBytes(1), "")
		wantErrContains(t, GoTUFName, errs[GoTUFName], "not enough signatures")
		wantErrContains(t, TufJSName, errs[TufJSName], "targets was signed by 0/1 keys")
	})
}

// TestExpiredTimestamp checks that an expired timestamp is refused, and that
// Config.At moves the clients' clock.
func TestExpiredTimestamp(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	r.timestamp.Signed.Expires = time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	r.timestamp.Signed.Version++
	r.writeTimestamp()
	errs := ExpectRejected(t, r.dir, r.rootBytes(1), "")
	for _, name := range []string{GoTUFName, TufJSName} {
		wantErrContains(t, name, errs[name], "timestamp.json is expired")
	}
	// Two hours ago, the timestamp was valid.
	for _, c := range fresh(t, r, time.Now().Add(-2*time.Hour)) {
		if err := Verify(ctx(t), c, r.files); err != nil {
			t.Errorf("%s with At = 2h ago: %v", c.Name(), err)
		}
	}
	// And in two years, everything has expired.
	RejectedBy(t, fresh(t, newTestRepo(t, repoOpts{kind: kindEd25519}), time.Now().Add(2*testExpiry)), "")
}

// TestRootRotation checks that clients with state follow root v1 → v2 → v3
// (new keys each time, each root signed by the old and the new keys), that a
// root signed by the new keys only is refused, and that a new client on the
// same cache directory resumes from the latest trusted root.
func TestRootRotation(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true, delegate: true})
	m, tg := Serve(t, r.dir)
	cfg := Config{TrustedRoot: r.rootBytes(1), MetadataURL: m, TargetsURL: tg, CacheDir: t.TempDir()}
	cs := All(t, cfg)
	for _, c := range cs {
		if err := Verify(ctx(t), c, r.files); err != nil {
			t.Fatalf("%s at root v1: %v", c.Name(), err)
		}
	}

	// newRootVersion replaces the root and timestamp keys by fresh keys of
	// kind and increments the root version; it returns the previous and the
	// new root keys. The caller signs and writes the root.
	newRootVersion := func(kind string) (prev, next *testKey) {
		t.Helper()
		prev, next = r.keys[metadata.ROOT], newKey(t, kind)
		for role, k := range map[string]*testKey{metadata.ROOT: next, metadata.TIMESTAMP: newKey(t, kind)} {
			if err := r.root.Signed.RevokeKey(r.keys[role].id, role); err != nil {
				t.Fatal(err)
			}
			if err := r.root.Signed.AddKey(k.pub, role); err != nil {
				t.Fatal(err)
			}
			r.keys[role] = k
		}
		r.root.Signed.Version++
		return prev, next
	}
	wantVersions := func(cs []Client, root, ts int64) {
		t.Helper()
		for _, c := range cs {
			v := c.TrustedVersions()
			if v["root"] != root || v["timestamp"] != ts {
				t.Errorf("%s: trusts root v%d, timestamp v%d; want root v%d, timestamp v%d", c.Name(), v["root"], v["timestamp"], root, ts)
			}
		}
	}
	wantVersions(cs, 1, 1)

	// v2 (P-256 keys) signed by the new key only: v1's threshold is not met.
	k1, k2 := newRootVersion(kindP256)
	r.writeRoot(k2)
	r.bumpAll()
	errs := RejectedBy(t, cs, "")
	wantErrContains(t, GoTUFName, errs[GoTUFName], "not enough signatures")
	wantErrContains(t, TufJSName, errs[TufJSName], "root was signed by 0/1 keys")
	wantVersions(cs, 1, 1)

	// The same v2 signed by the old and the new key is followed.
	r.writeRoot(k1, k2)
	for _, c := range cs {
		if err := Verify(ctx(t), c, r.files); err != nil {
			t.Errorf("%s at root v2: %v", c.Name(), err)
		}
	}
	wantVersions(cs, 2, 2)

	// v3 (ed25519 again), signed by v2's and v3's keys.
	_, k3 := newRootVersion(kindEd25519)
	r.writeRoot(k2, k3)
	r.bumpAll()
	for _, c := range cs {
		if err := Verify(ctx(t), c, r.files); err != nil {
			t.Errorf("%s at root v3: %v", c.Name(), err)
		}
	}
	wantVersions(cs, 3, 3)

	// New clients on the same cache directories resume from root v3 (the
	// bootstrap root v1 is ignored) ...
	restarted := All(t, cfg)
	wantVersions(restarted, 3, 3)
	for _, c := range restarted {
		if err := c.Update(ctx(t)); err != nil {
			t.Errorf("%s restarted: %v", c.Name(), err)
		}
	}
	// ... and fresh clients walk v1 → v2 → v3.
	CheckRepository(t, r.dir, r.rootBytes(1), r.files)
}

// TestRollback checks that a client with state refuses an older timestamp
// than the one it trusts, which a fresh client accepts.
func TestRollback(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindP256, consistent: false})
	m, tg := Serve(t, r.dir)
	cs := All(t, Config{TrustedRoot: r.rootBytes(1), MetadataURL: m, TargetsURL: tg, CacheDir: t.TempDir()})
	ts1, err := os.ReadFile(filepath.Join(r.dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	r.timestamp.Signed.Version = 2
	r.writeTimestamp()
	for _, c := range cs {
		if err := c.Update(ctx(t)); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		if v := c.TrustedVersions()["timestamp"]; v != 2 {
			t.Fatalf("%s: trusts timestamp v%d, want v2", c.Name(), v)
		}
	}
	r.writeFile(filepath.Join("metadata", "timestamp.json"), ts1) // roll back to v1
	errs := RejectedBy(t, cs, "")
	wantErrContains(t, GoTUFName, errs[GoTUFName], "new timestamp version 1 must be >= 2")
	wantErrContains(t, TufJSName, errs[TufJSName], "New timestamp version 1 is less than current version 2")
	for _, c := range cs {
		if v := c.TrustedVersions()["timestamp"]; v != 2 {
			t.Errorf("%s: trusts timestamp v%d after the rollback, want v2", c.Name(), v)
		}
	}
	CheckRepository(t, r.dir, r.rootBytes(1), r.files) // fresh clients: fine
}

// recorder is a testing.TB that records Errorf calls instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestHelpersFail checks that CheckRepository and RejectedBy do report.
func TestHelpersFail(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: true})
	rec := &recorder{TB: t}
	CheckRepository(rec, r.dir, r.rootBytes(1), map[string][]byte{topTarget: []byte("other bytes")})
	if len(rec.errs) != 2 || !strings.Contains(rec.errs[0], GoTUFName) || !strings.Contains(rec.errs[1], TufJSName) ||
		!strings.Contains(rec.errs[1], "got 18 bytes") {
		t.Errorf("CheckRepository with wrong content reported %q, want one error per client", rec.errs)
	}
	rec.errs = nil
	CheckRepository(rec, r.dir, r.rootBytes(1), map[string][]byte{"missing.txt": nil})
	if len(rec.errs) != 2 {
		t.Errorf("CheckRepository with a missing target reported %q, want one error per client", rec.errs)
	}
	rec.errs = nil
	if errs := ExpectRejected(rec, r.dir, r.rootBytes(1), topTarget); len(errs) != 0 || len(rec.errs) != 2 {
		t.Errorf("ExpectRejected on a valid repository: errors %v, reported %q", errs, rec.errs)
	}
}

// TestServe checks the file server: files served, directories not listed.
func TestServe(t *testing.T) {
	r := newTestRepo(t, repoOpts{kind: kindEd25519, consistent: false})
	m, tg := Serve(t, r.dir)
	for url, want := range map[string]int{
		m + "1.root.json": 200, m + "timestamp.json": 200, m + "2.root.json": 404, m: 404,
		tg + nestedTarget: 200, tg + "dir/": 404,
	} {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", url, res.StatusCode, want)
		}
	}
	if !strings.HasPrefix(m, "http://127.0.0.1:") {
		t.Errorf("metadata URL %s is not on 127.0.0.1", m)
	}
}

// TestMissingNodeModules checks the message given when npm ci was not run.
func TestMissingNodeModules(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.mjs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(TufJSDirEnv, dir)
	_, err := newTufJS(t.TempDir(), t.TempDir(), Config{TrustedRoot: []byte("{}"), MetadataURL: "x", TargetsURL: "y"})
	wantErrContains(t, "newTufJS", err, "run `npm ci --prefix softhsm-test/clients/tufjs`")
}
