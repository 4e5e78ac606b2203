package roles

import (
	"bytes"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestNewValidation(t *testing.T) {
	a, kb := newSigner(t, "p256").Key(), newSigner(t, "ed25519").Key()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	good := func() Bootstrap {
		return Bootstrap{
			Root:      RoleKeys{Keys: []*metadata.Key{a, kb}, Threshold: 2},
			Targets:   RoleKeys{Keys: []*metadata.Key{a}, Threshold: 1},
			Snapshot:  RoleKeys{Keys: []*metadata.Key{kb}, Threshold: 1},
			Timestamp: RoleKeys{Keys: []*metadata.Key{kb}, Threshold: 1},
			Expires: map[string]time.Time{
				"root": now.Add(365 * day), "targets": now.Add(90 * day), "snapshot": now.Add(7 * day), "timestamp": now.Add(day),
			},
			Delegations: []Delegation{{Name: "releases", Keys: []*metadata.Key{a}, Threshold: 1, Paths: []string{"releases/*"}}},
			Now:         now,
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatal(err)
	}
	badKey := copyKey(a)
	badKey.Scheme = "ecdsa-sha2-nistp384"
	for _, tc := range []struct {
		name string
		mod  func(*Bootstrap)
		want string
	}{
		{"threshold 0", func(b *Bootstrap) { b.Root.Threshold = 0 }, "root: threshold 0 is impossible with 2 key(s)"},
		{"threshold above keys", func(b *Bootstrap) { b.Targets.Threshold = 2 }, "targets: threshold 2 is impossible"},
		{"no keys", func(b *Bootstrap) { b.Snapshot.Keys = nil }, "snapshot: no keys"},
		{"duplicate key", func(b *Bootstrap) { b.Root.Keys = []*metadata.Key{a, copyKey(a)} }, "listed twice"},
		{"same key other keytype", func(b *Bootstrap) {
			legacy := copyKey(a)
			legacy.Type = "ecdsa-sha2-nistp256"
			b.Root.Keys = []*metadata.Key{a, legacy}
		}, "listed twice"},
		{"inconsistent key", func(b *Bootstrap) { b.Timestamp.Keys = []*metadata.Key{badKey} }, "curve P-256"},
		{"nil key", func(b *Bootstrap) { b.Timestamp.Keys = []*metadata.Key{nil} }, "key 1 is empty"},
		{"expired", func(b *Bootstrap) { b.Expires["timestamp"] = now.Add(-time.Hour) }, "timestamp: expiry 2029-12-31T23:00:00Z is not in the future"},
		{"missing expiry", func(b *Bootstrap) { delete(b.Expires, "snapshot") }, "snapshot: no expiry"},
		{"role name top-level", func(b *Bootstrap) { b.Delegations[0].Name = "Targets" }, "top-level role name"},
		{"role name path", func(b *Bootstrap) { b.Delegations[0].Name = "../evil" }, "not allowed"},
		{"role name digit", func(b *Bootstrap) { b.Delegations[0].Name = "1.root" }, "not allowed"},
		{"role twice", func(b *Bootstrap) {
			b.Delegations = append(b.Delegations, Delegation{Name: "Releases", Keys: []*metadata.Key{a}, Threshold: 1, Paths: []string{"x"}})
		}, "used twice"},
		{"no paths", func(b *Bootstrap) { b.Delegations[0].Paths = nil }, "no paths"},
		{"delegation threshold", func(b *Bootstrap) { b.Delegations[0].Threshold = 3 }, "threshold 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := good()
			tc.mod(&b)
			_, err := New(b)
			mustErr(t, err, tc.want)
		})
	}
	// All problems are reported at once.
	b := good()
	b.Root.Threshold, b.Targets.Threshold = 0, 0
	_, err := New(b)
	mustErr(t, err, "root: threshold")
	mustErr(t, err, "targets: threshold")
}

func TestLoadFilesRoundTrip(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "consistent"}[consistent]
		t.Run(name, func(t *testing.T) {
			tr := newTestRepo(t, consistent)
			files, err := tr.Files()
			must(t, err)
			var paths []string
			for _, f := range files {
				paths = append(paths, f.Path)
			}
			want := []string{"metadata/1.root.json", "metadata/releases.json", "metadata/targets.json", "metadata/snapshot.json", "metadata/timestamp.json"}
			if consistent {
				want = []string{"metadata/1.root.json", "metadata/1.releases.json", "metadata/1.targets.json", "metadata/1.snapshot.json", "metadata/timestamp.json"}
			}
			if !slices.Equal(paths, want) {
				t.Fatalf("Files paths = %v, want %v", paths, want)
			}
			fsys := fsOf(t, tr.Repo, testTargets)
			verifyOK(t, fsys, VerifyOptions{CheckTargets: true})

			loaded, err := Load(fsys)
			must(t, err)
			again, err := loaded.Files()
			must(t, err)
			if len(again) != len(files) {
				t.Fatalf("%d files after round trip, want %d", len(again), len(files))
			}
			for i := range files {
				if again[i].Path != files[i].Path || !bytes.Equal(again[i].Data, files[i].Data) {
					t.Fatalf("%s changed in the round trip", files[i].Path)
				}
			}

			// A full change cycle on the loaded repository.
			tr.Repo = loaded
			must(t, loaded.BumpRole("targets", time.Now().Add(90*day)))
			mustErr(t, loaded.BumpRole("nosuch", time.Now().Add(day)), `no role named "nosuch"`)
			must(t, loaded.AddTarget("targets", "docs/guide.txt", []byte("guide")))
			must(t, loaded.RemoveTarget("targets", "readme.txt"))
			tr.signAll(t)
			if v := loaded.Targets.Signed.Version; v != 2 {
				t.Fatalf("targets v%d, want 2", v)
			}
			if v := loaded.Snapshot.Signed.Version; v != 2 {
				t.Fatalf("snapshot v%d, want 2", v)
			}
			next, err := loaded.Files()
			must(t, err)
			pre := Overlay(fsys, next)
			rep, err := Verify(pre, VerifyOptions{})
			must(t, err)
			if !rep.OK {
				t.Fatalf("preflight failed: %v", rep.Problems)
			}
		})
	}
}

func TestChangesNeedBump(t *testing.T) {
	tr := newTestRepo(t, true)
	mustErr(t, tr.AddTarget("targets", "x.txt", []byte("x")), `call BumpRole("targets", expires) first`)
	must(t, tr.BumpRole("releases", time.Now().Add(day)))
	mustErr(t, tr.AddTarget("releases", "other/x.txt", []byte("x")), "outside the paths")
	for _, p := range []string{"../x", "/abs", "a//b", "a/./b", `a\b`, "", "dir/"} {
		if err := tr.AddTarget("releases", p, nil); err == nil {
			t.Errorf("target path %q accepted", p)
		}
	}
	must(t, tr.AddTarget("releases", "releases/app-2.0.tar.gz", []byte("app 2.0")))
	mustErr(t, tr.BumpRole("timestamp", time.Now().Add(-time.Minute)), "not in the future")
	// A second bump of unsigned metadata keeps the version.
	v := tr.Delegated["releases"].Signed.Version
	must(t, tr.BumpRole("releases", time.Now().Add(2*day)))
	if tr.Delegated["releases"].Signed.Version != v {
		t.Fatal("bumping unsigned metadata changed its version")
	}
	// The timestamp needs a signed snapshot.
	must(t, tr.UpdateSnapshot(time.Now().Add(day)))
	mustErr(t, tr.UpdateTimestamp(time.Now().Add(day)), "sign it before updating the timestamp")
}

func TestNeededRoot(t *testing.T) {
	tr := newTestRepo(t, true)
	old := tr.root
	must(t, tr.BumpRole("root", time.Now().Add(365*day)))
	if len(tr.Roots) != 2 || tr.Root().Signed.Version != 2 {
		t.Fatal("BumpRole(root) did not append root v2")
	}
	fresh := []*Signer{newSigner(t, "p384"), newSigner(t, "rsa"), newSigner(t, "ed25519")}
	must(t, tr.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{fresh[0].Key(), fresh[1].Key(), fresh[2].Key()}, Threshold: 2}))
	if _, ok := tr.Root().Signed.Keys[old[0].KeyID()]; ok {
		t.Fatal("an unused old root key was kept in root v2")
	}
	reqs, err := tr.Needed("root")
	must(t, err)
	if len(reqs) != 2 {
		t.Fatalf("%d requirements, want 2 (root v2 and root v1)", len(reqs))
	}
	own, prev := reqs[0], reqs[1]
	if own.From != "root v2" || own.Threshold != 2 || len(own.KeyIDs) != 3 || own.Have != 0 {
		t.Fatalf("own requirement %+v", own)
	}
	if prev.From != "root v1" || prev.Threshold != 2 || !slices.Contains(prev.KeyIDs, old[1].KeyID()) {
		t.Fatalf("previous requirement %+v", prev)
	}
	must(t, Sign(tr.Root(), fresh[0]))
	must(t, Sign(tr.Root(), old[0]))
	reqs, _ = tr.Needed("root")
	if reqs[0].Have != 1 || reqs[1].Have != 1 || reqs[0].Met() {
		t.Fatalf("after two signatures: %+v", reqs)
	}
	mustErr(t, tr.BumpRole("root", time.Now().Add(day)), "only partly signed")
	must(t, Sign(tr.Root(), fresh[1]))
	must(t, Sign(tr.Root(), old[1]))
	reqs, _ = tr.Needed("root")
	for _, q := range reqs {
		if !q.Met() {
			t.Fatalf("requirement not met: %+v", q)
		}
	}
	tr.root = fresh
	fsys := fsOf(t, tr.Repo, nil)
	verifyOK(t, fsys, VerifyOptions{})

	reqs, err = tr.Needed("releases")
	must(t, err)
	if len(reqs) != 1 || reqs[0].From != "targets v1" || reqs[0].Have != 1 {
		t.Fatalf("releases requirements %+v", reqs)
	}
}

func TestFilesRejectsBrokenModel(t *testing.T) {
	tr := newTestRepo(t, false)
	tr.Roots = tr.Roots[1:]
	_, err := tr.Files()
	mustErr(t, err, "incomplete")
	tr = newTestRepo(t, false)
	tr.Roots[0].Signed.Version = 2
	_, err = tr.Files()
	mustErr(t, err, "Roots[0] is root v2")
}

func TestOverlayFS(t *testing.T) {
	base := fstest.MapFS{
		"metadata/1.root.json": {Data: []byte("old")},
		"metadata/keep.json":   {Data: []byte("keep")},
		"targets/a.txt":        {Data: []byte("a")},
	}
	o := Overlay(base, []File{
		{Path: "metadata/1.root.json", Data: []byte("new")},
		{Path: "metadata/2.root.json", Data: []byte("two")},
		{Path: "extra/deep/f.json", Data: []byte("f")},
		{Path: "../bad", Data: []byte("ignored")},
	})
	if err := fstest.TestFS(o, "metadata/1.root.json", "metadata/2.root.json", "metadata/keep.json", "targets/a.txt", "extra/deep/f.json"); err != nil {
		t.Fatal(err)
	}
	data, err := o.(interface{ ReadFile(string) ([]byte, error) }).ReadFile("metadata/1.root.json")
	must(t, err)
	if string(data) != "new" {
		t.Fatalf("overlay read %q", data)
	}
}

// An empty delegated role is refused by BumpRole of that role and by
// everything that encodes the repository.
func TestEmptyDelegatedRoleRefused(t *testing.T) {
	tr := newTestRepo(t, false)
	tr.Delegated["ghost"] = nil
	mustErr(t, tr.BumpRole("ghost", time.Now().Add(day)), `delegated role "ghost" is empty`)
	_, err := tr.Files()
	mustErr(t, err, `delegated role "ghost" is empty`)
	mustErr(t, tr.UpdateSnapshot(time.Now().Add(day)), `delegated role "ghost" is empty`)
}
