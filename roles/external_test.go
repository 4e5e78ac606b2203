package roles

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestExternalTargets: image tags signed by digest have no file; verify
// checks their metadata only, a file that is there all the same must match,
// and an unmarked target without a file is still a problem.
func TestExternalTargets(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2}`)
	sum := sha256.Sum256(manifest)
	for _, consistent := range []bool{false, true} {
		tr := newTestRepo(t, consistent)
		must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
		must(t, tr.AddExternalTarget("releases", "releases/app:v1.2", int64(len(manifest)), metadata.Hashes{"sha256": sum[:]},
			map[string]any{"oci": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json"}}))
		must(t, Sign(tr.Delegated["releases"], tr.releases))
		tr.signAll(t)
		tf := tr.Delegated["releases"].Signed.Targets["releases/app:v1.2"]
		if !IsExternal(tf) || IsExternal(tr.Targets.Signed.Targets["readme.txt"]) {
			t.Fatalf("IsExternal: %+v", tf)
		}
		var c map[string]any
		must(t, json.Unmarshal(*tf.Custom, &c))
		if c["oci"] == nil || c[CustomKey].(map[string]any)["external"] != true {
			t.Fatalf("custom %s", *tf.Custom)
		}
		fsys := fsOf(t, tr.Repo, testTargets)
		verifyOK(t, fsys, VerifyOptions{CheckTargets: true})

		// A file at its place that differs is reported.
		p := TargetFilePaths("releases/app:v1.2", tf, consistent)[0]
		fsys[p] = fsys["metadata/1.root.json"]
		rep, err := Verify(fsys, VerifyOptions{CheckTargets: true})
		must(t, err)
		wantProblem(t, rep, RuleTargetFile, `target "releases/app:v1.2"`)
		delete(fsys, p)

		// Without the marker the missing file is a problem again: change
		// the custom and re-sign, as a careless tool would.
		plain := json.RawMessage(`{"oci":{}}`)
		must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
		tr.Delegated["releases"].Signed.Targets["releases/app:v1.2"].Custom = &plain
		must(t, Sign(tr.Delegated["releases"], tr.releases))
		tr.signAll(t)
		rep, err = Verify(fsOf(t, tr.Repo, testTargets), VerifyOptions{CheckTargets: true})
		must(t, err)
		wantProblem(t, rep, RuleTargetFile, "is missing")
	}
}

func TestAddExternalTargetRefuses(t *testing.T) {
	tr := newTestRepo(t, true)
	sum := sha256.Sum256([]byte("x"))
	good := metadata.Hashes{"sha256": sum[:]}
	mustErr(t, tr.AddExternalTarget("releases", "releases/a:1", 1, good, nil), "releases v1 is already signed")
	must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
	mustErr(t, tr.AddExternalTarget("releases", "other/a:1", 1, good, nil), "outside the paths that targets delegates to releases")
	mustErr(t, tr.AddExternalTarget("releases", "releases/a:1", 1, metadata.Hashes{"md5": sum[:16]}, nil), "no sha256 or sha512 hash")
	mustErr(t, tr.AddExternalTarget("releases", "releases/a:1", 1, metadata.Hashes{"sha256": sum[:16]}, nil), "sha256 hash has 16 bytes, not 32")
	mustErr(t, tr.AddExternalTarget("releases", "releases/a:1", -1, good, nil), "length -1 is negative")
	mustErr(t, tr.AddExternalTarget("releases", "releases/a:1", 1, good, map[string]any{CustomKey: 1}), `must not have a "rootkeeper" entry`)
	mustErr(t, tr.AddExternalTarget("releases", "../a", 1, good, nil), "not a clean relative path")
}

// TestLookup: the go-tuf client reads a repository directory through the
// file fetcher, finds targets through delegations, reports a name nobody
// signs, and refuses tampered metadata.
func TestLookup(t *testing.T) {
	tr := newTestRepo(t, true)
	dir := t.TempDir()
	for name, f := range fsOf(t, tr.Repo, testTargets) {
		must(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, name), f.Data, 0o644))
	}
	root, err := os.ReadFile(filepath.Join(dir, "metadata/1.root.json"))
	must(t, err)
	l, err := NewLookup(LookupOptions{Dir: dir, TrustedRoot: root})
	must(t, err)
	defer l.Close()
	tf, err := l.Target("releases/app-1.0.tar.gz")
	must(t, err)
	if tf.Length != int64(len("app 1.0")) {
		t.Errorf("length %d", tf.Length)
	}
	if _, err := l.Target("releases/nope"); err == nil || !strings.Contains(err.Error(), ErrTargetNotFound.Error()) {
		t.Errorf("unknown target: %v", err)
	}
	ts := filepath.Join(dir, "metadata/timestamp.json")
	data, _ := os.ReadFile(ts)
	must(t, os.WriteFile(ts, bytes.Replace(data, []byte(`"version": `), []byte(`"version": 7`), 1), 0o644))
	if _, err := NewLookup(LookupOptions{Dir: dir, TrustedRoot: root}); err == nil {
		t.Error("tampered timestamp accepted")
	}
	// The fetcher stays inside the directory.
	f := &dirFetcher{dir: filepath.Join(dir, "metadata")}
	if _, err := f.DownloadFile("file://"+filepath.Join(dir, "metadata", "..", "metadata", "..", "..", "etc", "passwd"), 1<<20, 0); err == nil {
		t.Error("the file fetcher left the directory")
	}
}
