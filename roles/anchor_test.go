package roles

import (
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestAnchorOnEveryVersion: every function that gives a role a new
// version stamps Repo.Anchor into its signed object, the signature covers
// it, go-tuf reads it back in UnrecognizedFields, and a version made
// without an anchor drops the one it copied.
func TestAnchorOnEveryVersion(t *testing.T) {
	tr := newTestRepo(t, true)
	a1 := &Anchor{Seq: 4, Head: "sha256:" + strings.Repeat("ab", 32)}
	tr.Anchor = a1
	exp := time.Now().Add(60 * day)
	must(t, tr.BumpRole(metadata.ROOT, time.Now().Add(300*day)))
	must(t, tr.BumpRole(metadata.TARGETS, exp))
	must(t, tr.BumpRole("releases", exp))
	must(t, tr.AddDelegation(metadata.TARGETS, Delegation{Name: "docs", Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"docs/*"}}, exp))
	for _, s := range tr.root {
		must(t, Sign(tr.Root(), s))
	}
	must(t, Sign(tr.Targets, tr.targets))
	must(t, Sign(tr.Delegated["releases"], tr.releases))
	must(t, Sign(tr.Delegated["docs"], tr.releases))
	tr.signAll(t) // UpdateSnapshot, UpdateTimestamp
	files, err := tr.Files()
	if err != nil {
		t.Fatal(err)
	}
	stamped := map[string]bool{}
	for _, f := range files {
		info, err := ReadSigned(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		if info.Anchor != nil && *info.Anchor == *a1 {
			stamped[f.Path] = true
		}
	}
	for _, p := range []string{"metadata/2.root.json", "metadata/2.targets.json", "metadata/2.releases.json", "metadata/1.docs.json", "metadata/2.snapshot.json", "metadata/timestamp.json"} {
		if !stamped[p] {
			t.Errorf("%s does not carry the anchor (stamped: %v)", p, stamped)
		}
	}
	if stamped["metadata/1.root.json"] || stamped["metadata/1.targets.json"] {
		t.Error("a version made before the anchor was set carries it")
	}
	fsys := fsOf(t, tr.Repo, map[string][]byte{"readme.txt": []byte("hello"), "releases/app-1.0.tar.gz": []byte("app 1.0")})
	verifyOK(t, fsys, VerifyOptions{CheckTargets: true})
	loaded, err := Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Targets.Signed.UnrecognizedFields[AnchorField]; got == nil {
		t.Fatal("go-tuf did not keep the anchor")
	}
	// Changing the anchor breaks the signature: it is signed.
	forged := strings.Replace(string(fsys["metadata/timestamp.json"].Data), a1.Head, "sha256:"+strings.Repeat("cd", 32), 1)
	fsys["metadata/timestamp.json"].Data = []byte(forged)
	if rep, err := Verify(fsys, VerifyOptions{}); err != nil || rep.OK {
		t.Fatalf("a changed anchor verified: %v", err)
	}
	// Without an anchor, the next version drops the copied one.
	loaded.Anchor = nil
	must(t, loaded.BumpRole(metadata.ROOT, time.Now().Add(300*day)))
	if _, ok := loaded.Root().Signed.UnrecognizedFields[AnchorField]; ok {
		t.Error("root v3 kept root v2's anchor")
	}
}
