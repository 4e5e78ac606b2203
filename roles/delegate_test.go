package roles

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// bumpSign gives role a new version, lets change edit it, and signs it.
func (tr *testRepo) bumpSign(t *testing.T, role string, s *Signer, change func()) {
	t.Helper()
	must(t, tr.BumpRole(role, time.Now().Add(90*day)))
	if change != nil {
		change()
	}
	md, err := tr.targetsRole(role)
	must(t, err)
	must(t, Sign(md, s))
}

func TestNestedDelegationAddListRemove(t *testing.T) {
	tr := newTestRepo(t, true)
	before := fsOf(t, tr.Repo, testTargets)
	team := newSigner(t, "p256")
	tr.bumpSign(t, "releases", tr.releases, func() {
		must(t, tr.AddDelegation("releases", Delegation{Name: "team-a", Keys: []*metadata.Key{team.Key()}, Threshold: 1,
			Paths: []string{"releases/team-a-*"}, Terminating: true}, time.Now().Add(30*day)))
	})
	must(t, tr.AddTarget("team-a", "releases/team-a-1.0", []byte("a")))
	must(t, Sign(tr.Delegated["team-a"], team))
	tr.signAll(t)
	after := fsOf(t, tr.Repo, testTargets)
	tf := tr.Delegated["team-a"].Signed.Targets["releases/team-a-1.0"]
	for _, p := range TargetFilePaths("releases/team-a-1.0", tf, true) {
		after[p] = &fstest.MapFile{Data: []byte("a")}
	}
	verifyOK(t, after, VerifyOptions{CheckTargets: true})
	if probs := CheckVersions(before, after, nil); len(probs) > 0 {
		t.Fatalf("versions: %v", probs)
	}
	probs, err := CheckClients(after, ClientCheckOptions{Before: before})
	must(t, err)
	if len(probs) > 0 {
		t.Fatalf("clients: %v", probs)
	}

	list := tr.Delegations()
	if len(list) != 2 || list[0].Name != "releases" || list[1].Name != "team-a" || list[1].Depth != 2 || list[1].Delegator != "releases" || list[1].Targets != 1 {
		t.Fatalf("delegations: %+v", list)
	}
	if got := tr.Trusting(team.KeyID()); len(got) != 1 || got[0].Role != "team-a" || got[0].From != "releases v2" {
		t.Fatalf("trusting: %+v", got)
	}

	// Outside the parent's paths, a taken name, a top-level name.
	must(t, tr.BumpRole("releases", time.Now().Add(90*day)))
	mustErr(t, tr.AddDelegation("releases", Delegation{Name: "x", Keys: []*metadata.Key{team.Key()}, Threshold: 1, Paths: []string{"docs/*"}}, time.Now().Add(day)),
		`lies outside releases's own paths`)
	mustErr(t, tr.AddDelegation("releases", Delegation{Name: "Team-A", Keys: []*metadata.Key{team.Key()}, Threshold: 1, Paths: []string{"releases/*"}}, time.Now().Add(day)),
		"exists already")
	mustErr(t, tr.AddDelegation("releases", Delegation{Name: "snapshot", Keys: []*metadata.Key{team.Key()}, Threshold: 1, Paths: []string{"releases/*"}}, time.Now().Add(day)),
		"top-level")

	// Removing releases removes team-a with it; snapshot keeps both entries.
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	from, removed, err := tr.RemoveDelegation("releases")
	must(t, err)
	if from != "targets" || !slices.Equal(removed, []string{"releases", "team-a"}) {
		t.Fatalf("removed %v from %s", removed, from)
	}
	must(t, Sign(tr.Targets, tr.targets))
	tr.signAll(t)
	if tr.Snapshot.Signed.Meta["team-a.json"] == nil {
		t.Fatal("snapshot dropped team-a.json")
	}
	final := fsOf(t, tr.Repo, map[string][]byte{"readme.txt": []byte("hello")})
	for p, f := range after {
		if _, ok := final[p]; !ok {
			final[p] = f // files of removed roles stay on disk
		}
	}
	verifyOK(t, final, VerifyOptions{CheckTargets: true})
	if probs := CheckVersions(after, final, nil); len(probs) > 0 {
		t.Fatalf("versions: %v", probs)
	}

	// A role of the same name later starts above the version snapshot lists.
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	must(t, tr.AddDelegation("targets", Delegation{Name: "team-a", Keys: []*metadata.Key{team.Key()}, Threshold: 1, Paths: []string{"a/*"}}, time.Now().Add(day)))
	if v := tr.Delegated["team-a"].Signed.Version; v != 2 {
		t.Fatalf("re-added team-a starts at v%d, want 2", v)
	}
}

func TestHashedBins(t *testing.T) {
	tr := newTestRepo(t, true)
	binKey := newSigner(t, "ed25519")
	// targets already delegates to releases: bins must be alone.
	must(t, tr.BumpRole("targets", time.Now().Add(90*day)))
	_, err := tr.AddHashedBins("targets", "bins", 16, RoleKeys{Keys: []*metadata.Key{binKey.Key()}, Threshold: 1}, time.Now().Add(day))
	mustErr(t, err, "hashed bins must be its only delegation")
	for _, n := range []int{0, 1, 3, 100, MaxBins * 2} {
		if _, err := BinBits(n); err == nil {
			t.Errorf("BinBits(%d) accepted", n)
		}
	}
	if b, err := BinBits(MaxBins); err != nil || b != 14 {
		t.Fatalf("BinBits(%d) = %d, %v", MaxBins, b, err)
	}
	_, _, err = tr.RemoveDelegation("releases")
	must(t, err)
	names, err := tr.AddHashedBins("targets", "bins", 16, RoleKeys{Keys: []*metadata.Key{binKey.Key()}, Threshold: 1}, time.Now().Add(day))
	must(t, err)
	if len(names) != 16 || names[0] != "bins-0" || names[15] != "bins-f" {
		t.Fatalf("bins %v", names)
	}
	bin, err := tr.BinFor("bins", "pkgs/app-1.0.tgz")
	must(t, err)
	other := names[0]
	if other == bin {
		other = names[1]
	}
	mustErr(t, tr.AddTarget(other, "pkgs/app-1.0.tgz", []byte("app")), "belongs in hashed bin "+bin)
	must(t, tr.AddTarget(bin, "pkgs/app-1.0.tgz", []byte("app")))
	must(t, Sign(tr.Targets, tr.targets))
	for _, n := range names {
		must(t, Sign(tr.Delegated[n], binKey))
	}
	tr.signAll(t)
	fsys := fsOf(t, tr.Repo, map[string][]byte{"readme.txt": []byte("hello")})
	md := tr.Delegated[bin]
	for _, p := range TargetFilePaths("pkgs/app-1.0.tgz", md.Signed.Targets["pkgs/app-1.0.tgz"], true) {
		fsys[p] = &fstest.MapFile{Data: []byte("app")}
	}
	verifyOK(t, fsys, VerifyOptions{CheckTargets: true})
	list := tr.Delegations()
	if len(list) != 1 || list[0].Bins != 16 || list[0].Targets != 1 || list[0].FirstBin != "bins-0" {
		t.Fatalf("delegations %+v", list)
	}
	if got := tr.Trusting(binKey.KeyID()); len(got) != 1 || len(got[0].Bins) != 16 {
		t.Fatalf("trusting %+v", got)
	}
	probs, err := CheckClients(fsys, ClientCheckOptions{})
	must(t, err)
	if len(probs) > 0 {
		t.Fatal(probs)
	}
}

// A root rotation is refused by the clients unless both thresholds are met.
func TestRootRotationThresholds(t *testing.T) {
	tr := newTestRepo(t, true)
	before := fsOf(t, tr.Repo, testTargets)
	newRoot := []*Signer{newSigner(t, "p256"), newSigner(t, "ed25519")}
	cases := []struct {
		name    string
		signers []*Signer
		rule    string
	}{
		{"only new keys", newRoot, RuleRootChain},
		{"only old keys", tr.root, RuleThreshold},
		{"one old one new", []*Signer{tr.root[0], newRoot[0]}, RuleRootChain},
		{"both", append(append([]*Signer{}, tr.root...), newRoot...), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t, true)
			r.root = tr.root
			r.Repo = cloneRepo(t, before)
			must(t, r.BumpRole("root", time.Now().Add(365*day)))
			must(t, r.SetRoleKeys("root", RoleKeys{Keys: []*metadata.Key{newRoot[0].Key(), newRoot[1].Key()}, Threshold: 2}))
			for _, s := range tc.signers {
				must(t, Sign(r.Root(), s))
			}
			fsys := fsOf(t, r.Repo, testTargets)
			rep, err := Verify(fsys, VerifyOptions{})
			must(t, err)
			probs, err := CheckClients(fsys, ClientCheckOptions{Before: before})
			must(t, err)
			if tc.rule == "" {
				if !rep.OK || len(probs) > 0 {
					t.Fatalf("refused: %v %v", rep.Problems, probs)
				}
				return
			}
			wantProblem(t, rep, tc.rule, "root v2")
			if len(probs) != 2 { // a fresh client shipped with v1 and the client that updated to v1
				t.Fatalf("clients: %v", probs)
			}
			for _, p := range probs {
				if p.Role != "root" || !strings.Contains(p.Detail, "go-tuf") {
					t.Errorf("client problem %+v", p)
				}
			}
		})
	}
}

func cloneRepo(t *testing.T, fsys fstest.MapFS) *Repo {
	t.Helper()
	r, err := Load(fsys)
	must(t, err)
	return r
}

// Rotating the timestamp key: a client that holds the old timestamp (even
// one an attacker fast-forwarded to a huge version with the old key)
// recovers, because the new root no longer trusts the old key (TUF 5.3.11).
func TestTimestampRotationFastForwardRecovery(t *testing.T) {
	tr := newTestRepo(t, false)
	// The attacker's fast-forwarded timestamp, signed with the old key.
	must(t, tr.BumpRole("timestamp", time.Now().Add(day)))
	tr.Timestamp.Signed.Version = 1 << 40
	must(t, Sign(tr.Timestamp, tr.timestamp))
	attacked := fsOf(t, tr.Repo, testTargets)

	r := cloneRepo(t, attacked)
	r.Timestamp.Signed.Version = 1 // the officers' repository never had the attacker's version
	r.Timestamp.Signatures = nil
	must(t, Sign(r.Timestamp, tr.timestamp))
	newTS := newSigner(t, "ed25519")
	must(t, r.BumpRole("root", time.Now().Add(365*day)))
	must(t, r.SetRoleKeys("timestamp", RoleKeys{Keys: []*metadata.Key{newTS.Key()}, Threshold: 1}))
	for _, s := range tr.root {
		must(t, Sign(r.Root(), s))
	}
	must(t, r.UpdateTimestamp(time.Now().Add(day)))
	must(t, Sign(r.Timestamp, newTS))
	rotated := fsOf(t, r, testTargets)
	verifyOK(t, rotated, VerifyOptions{})
	probs, err := CheckClients(rotated, ClientCheckOptions{Before: attacked})
	must(t, err)
	if len(probs) > 0 {
		t.Fatalf("a client holding the fast-forwarded timestamp did not recover: %v", probs)
	}
	// Without the rotation the same client is stuck.
	r2 := cloneRepo(t, attacked)
	r2.Timestamp.Signed.Version = 1
	r2.Timestamp.Signatures = nil
	must(t, r2.UpdateTimestamp(time.Now().Add(day)))
	must(t, Sign(r2.Timestamp, tr.timestamp))
	stuck := fsOf(t, r2, testTargets)
	probs, err = CheckClients(stuck, ClientCheckOptions{Before: attacked})
	must(t, err)
	if len(probs) != 1 || probs[0].Rule != RuleVersion || probs[0].Role != "timestamp" {
		t.Fatalf("stateful client: %+v", probs)
	}
	if vp := CheckVersions(attacked, stuck, nil); len(vp) == 0 || vp[0].Rule != RuleVersion {
		t.Fatalf("versions: %+v", vp)
	}
}

func TestResolveKeyID(t *testing.T) {
	tr := newTestRepo(t, true)
	id := tr.releases.KeyID()
	for _, s := range []string{id, id[:8], strings.ToUpper(id[:12])} {
		got, err := tr.ResolveKeyID(s)
		if err != nil || got != id {
			t.Errorf("ResolveKeyID(%q) = %q, %v", s, got, err)
		}
	}
	_, err := tr.ResolveKeyID(id[:4])
	mustErr(t, err, "too short")
	_, err = tr.ResolveKeyID("zz")
	mustErr(t, err, "not a key id")
	_, err = tr.ResolveKeyID(strings.Repeat("0", 64))
	mustErr(t, err, "no key of the repository")
	signers, err := tr.ValidSigners("releases")
	must(t, err)
	if !slices.Equal(signers, []string{id}) {
		t.Fatalf("valid signers %v", signers)
	}
	n, err := tr.DropTargets("releases")
	mustErr(t, err, "already signed")
	must(t, tr.BumpRole("releases", time.Now().Add(day)))
	n, err = tr.DropTargets("releases")
	must(t, err)
	if n != 1 {
		t.Fatalf("dropped %d", n)
	}
}
