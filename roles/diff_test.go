package roles

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func cloneSigned[T any](t *testing.T, v *T) *T {
	t.Helper()
	data, err := json.Marshal(v)
	must(t, err)
	out := new(T)
	must(t, json.Unmarshal(data, out))
	return out
}

func lineKinds(d Diff) []string {
	var out []string
	for _, l := range d.Lines {
		out = append(out, l.Kind+":"+l.Role)
	}
	return out
}

func findLine(t *testing.T, d Diff, kind, role string) DiffLine {
	t.Helper()
	for _, l := range d.Lines {
		if l.Kind == kind && l.Role == role {
			return l
		}
	}
	t.Fatalf("no %s line for %q in %v", kind, role, lineKinds(d))
	return DiffLine{}
}

func TestDiffRootKeysAndThreshold(t *testing.T) {
	tr := newTestRepo(t, true)
	old := cloneSigned(t, &tr.Root().Signed)
	added := newSigner(t, "p384")
	must(t, tr.BumpRole("root", time.Now().Add(200*day)))
	must(t, tr.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{tr.root[1].Key(), added.Key()}, Threshold: 1}))
	d := DiffRoot(old, &tr.Root().Signed)

	if d.OldVersion != 1 || d.NewVersion != 2 {
		t.Fatalf("versions %d → %d, want 1 → 2", d.OldVersion, d.NewVersion)
	}
	add := findLine(t, d, DiffKeyAdded, "root")
	if add.KeyID != added.KeyID() || add.Scheme != metadata.KeySchemeECDSA_SHA2_P384 {
		t.Errorf("added %s %s, want %s ecdsa p384", add.KeyID, add.Scheme, added.KeyID())
	}
	rm := findLine(t, d, DiffKeyRemoved, "root")
	if rm.KeyID != tr.root[0].KeyID() || rm.Scheme != metadata.KeySchemeECDSA_SHA2_P256 {
		t.Errorf("removed %s %s, want %s", rm.KeyID, rm.Scheme, tr.root[0].KeyID())
	}
	th := findLine(t, d, DiffThreshold, "root")
	if th.Old != "2 of 2" || th.New != "1 of 2" {
		t.Errorf("threshold %q → %q", th.Old, th.New)
	}
	findLine(t, d, DiffExpires, "")
	for _, l := range d.Lines {
		if l.Role == "targets" || l.Role == "snapshot" || l.Role == "timestamp" {
			t.Errorf("unchanged role %s reported: %s", l.Role, l)
		}
	}
	if s := add.String(); !strings.Contains(s, "key added") || !strings.Contains(s, added.KeyID()[:12]) {
		t.Errorf("line %q", s)
	}
}

func TestDiffNewRoot(t *testing.T) {
	tr := newTestRepo(t, false)
	d := DiffRoot(nil, &tr.Root().Signed)
	if d.OldVersion != 0 || d.NewVersion != 1 {
		t.Fatalf("versions %d → %d", d.OldVersion, d.NewVersion)
	}
	n := 0
	for _, l := range d.Lines {
		if l.Kind == DiffKeyAdded {
			n++
		}
	}
	if n != 5 { // 2 root keys, targets, snapshot, timestamp
		t.Errorf("%d keys added, want 5: %v", n, lineKinds(d))
	}
	if th := findLine(t, d, DiffThreshold, "root"); th.New != "2 of 2" || th.String() != "root: threshold 2 of 2 (was none)" {
		t.Errorf("threshold line %q", th.String())
	}
}

func TestDiffTargetsAndDelegations(t *testing.T) {
	tr := newTestRepo(t, true)
	old := cloneSigned(t, &tr.Targets.Signed)
	team := newSigner(t, "p256")
	must(t, tr.BumpRole("targets", time.Now().Add(60*day)))
	must(t, tr.AddTarget("targets", "new.txt", []byte("new")))
	must(t, tr.RemoveTarget("targets", "readme.txt"))
	must(t, tr.AddDelegation("targets", Delegation{Name: "team", Keys: []*metadata.Key{team.Key()}, Threshold: 1, Paths: []string{"team/*"}}, time.Now().Add(60*day)))
	dl := tr.Targets.Signed.Delegations
	for i := range dl.Roles {
		if dl.Roles[i].Name == "releases" {
			dl.Roles[i].Paths = []string{"releases/*", "rc/*"}
			dl.Roles[i].Terminating = true
		}
	}
	d := DiffTargets("targets", old, &tr.Targets.Signed)

	want := []string{"version:", "expires:", "delegation-paths:releases", "delegation-terminating:releases",
		"delegation-added:team", "key-added:team", "target-added:", "target-removed:"}
	if got := lineKinds(d); !slices.Equal(got, want) {
		t.Fatalf("lines\n got %v\nwant %v", got, want)
	}
	for _, l := range d.Lines {
		switch l.Kind {
		case DiffTargetAdded:
			if l.Target != "new.txt" || l.Length != 3 || len(l.Hashes["sha256"]) != 64 || len(l.Hashes["sha512"]) != 128 {
				t.Errorf("added %+v", l)
			}
			if !strings.Contains(l.String(), "sha256 "+l.Hashes["sha256"]) {
				t.Errorf("the line does not show the hash: %s", l)
			}
		case DiffTargetRemoved:
			if l.Target != "readme.txt" || l.Length != 5 {
				t.Errorf("removed %+v", l)
			}
		case DiffDelegationPaths:
			if l.Old != "releases/*" || l.New != "releases/*, rc/*" {
				t.Errorf("paths %q → %q", l.Old, l.New)
			}
		case DiffKeyAdded:
			if l.KeyID != team.KeyID() {
				t.Errorf("key %s, want %s", l.KeyID, team.KeyID())
			}
		}
	}
}

func TestDiffDelegationRemovedAndChangedTarget(t *testing.T) {
	tr := newTestRepo(t, true)
	old := cloneSigned(t, &tr.Targets.Signed)
	must(t, tr.BumpRole("targets", time.Now().Add(60*day)))
	_, _, err := tr.RemoveDelegation("releases")
	must(t, err)
	must(t, tr.AddTarget("targets", "readme.txt", []byte("hello, again")))
	d := DiffTargets("targets", old, &tr.Targets.Signed)
	rm := findLine(t, d, DiffDelegationRemoved, "releases")
	if !slices.Equal(rm.Paths, []string{"releases/*"}) || rm.Old != "1 of 1" {
		t.Errorf("removed %+v", rm)
	}
	if k := findLine(t, d, DiffKeyRemoved, "releases"); k.KeyID != tr.releases.KeyID() {
		t.Errorf("key removed %s", k.KeyID)
	}
	var changed *DiffLine
	for i := range d.Lines {
		if d.Lines[i].Kind == DiffTargetChanged {
			changed = &d.Lines[i]
		}
	}
	if changed == nil || changed.Length != 12 || !strings.Contains(changed.Old, "5 bytes") {
		t.Fatalf("changed target: %+v", changed)
	}
}

func TestDiffUnchangedIsEmptyButVersion(t *testing.T) {
	tr := newTestRepo(t, true)
	old := cloneSigned(t, &tr.Targets.Signed)
	d := DiffTargets("targets", old, &tr.Targets.Signed)
	if len(d.Lines) != 0 {
		t.Errorf("identical versions: %v", lineKinds(d))
	}
	sn := DiffSnapshot(cloneSigned(t, &tr.Snapshot.Signed), &tr.Snapshot.Signed)
	if len(sn.Lines) != 0 {
		t.Errorf("identical snapshots: %v", lineKinds(sn))
	}
}

func TestPendingNeeded(t *testing.T) {
	tr := newTestRepo(t, true)
	newKey := newSigner(t, "p256")
	must(t, tr.BumpRole("root", time.Now().Add(200*day)))
	must(t, tr.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{tr.root[0].Key(), newKey.Key()}, Threshold: 2}))
	p := &Pending{Roots: tr.Roots, Targets: tr.Targets, Delegated: tr.Delegated}
	payload, err := cjson.EncodeCanonical(tr.Root().Signed)
	must(t, err)
	reqs, keys, err := p.Needed("root", payload, nil)
	must(t, err)
	if len(reqs) != 2 || reqs[0].From != "root v2" || reqs[1].From != "root v1" || reqs[0].Threshold != 2 || reqs[1].Threshold != 2 {
		t.Fatalf("requirements %+v", reqs)
	}
	if keys[tr.root[1].KeyID()] == nil || keys[newKey.KeyID()] == nil {
		t.Errorf("keys of both roots expected, got %d", len(keys))
	}
	must(t, Sign(tr.Root(), tr.root[0]))
	must(t, Sign(tr.Root(), newKey))
	reqs, _, err = p.Needed("root", payload, tr.Root().Signatures)
	must(t, err)
	if !reqs[0].Met() || reqs[1].Met() || reqs[1].Have != 1 {
		t.Errorf("after 2 signatures: %+v", reqs)
	}
	// The same key under a second key id counts once.
	dup := tr.Root().Signatures[0]
	reqs, _, _ = p.Needed("root", payload, append(tr.Root().Signatures, dup))
	if reqs[0].Have != 2 {
		t.Errorf("a repeated signature counted: have %d", reqs[0].Have)
	}

	rel := tr.Delegated["releases"]
	relPayload, err := cjson.EncodeCanonical(rel.Signed)
	must(t, err)
	reqs, _, err = p.Needed("releases", relPayload, rel.Signatures)
	must(t, err)
	if len(reqs) != 1 || reqs[0].From != "targets v1" || !reqs[0].Met() {
		t.Errorf("releases: %+v", reqs)
	}
	must(t, p.SignedBy("releases", rel))
	if _, _, err := p.Needed("nobody", relPayload, nil); err == nil {
		t.Error("a role nobody delegates to has requirements")
	}
}

func TestRootChain(t *testing.T) {
	tr := newTestRepo(t, true)
	must(t, tr.BumpRole("root", time.Now().Add(200*day)))
	for _, s := range tr.root {
		must(t, Sign(tr.Root(), s))
	}
	files, err := tr.Files()
	must(t, err)
	var roots [][]byte
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".root.json") {
			roots = append(roots, f.Data)
		}
	}
	chain, err := RootChain(roots)
	must(t, err)
	if len(chain) != 2 || chain[1].Signed.Version != 2 {
		t.Fatalf("chain of %d", len(chain))
	}
	if _, err := RootChain([][]byte{roots[1]}); err == nil {
		t.Error("a chain that starts at root v2 was accepted")
	}
	bad := strings.Replace(string(roots[1]), `"version": 2`, `"version": 3`, 1)
	if _, err := RootChain([][]byte{roots[0], []byte(bad)}); err == nil {
		t.Error("a tampered root was accepted")
	}
}
