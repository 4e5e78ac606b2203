package ceremony

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	_ "github.com/rootkeeper/rootkeeper/hsm/pkcs11"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// rotFixture is a repository made by Init on SoftHSM: root 2-of-3,
// targets, snapshot and timestamp, a delegation "releases" and spare keys
// for rotations (root-*/new, online/timestamp-2, tagging/spare).
type rotFixture struct {
	env *softhsm.Env
	s   *Session
	dir string
	ui  *rotUI
}

type rotUI struct{ lines []string }

func (u *rotUI) Confirm(string) (bool, error) { return true, nil }
func (u *rotUI) Progress(msg string)          { u.lines = append(u.lines, msg) }

func newRotFixture(t *testing.T) *rotFixture {
	t.Helper()
	env := softhsm.NewTokens(t, "root-a", "root-b", "root-c", "tagging", "online")
	ui := &rotUI{}
	s := &Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: ui}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for _, u := range []string{
		env.URI("root-a", "root"), env.URI("root-b", "root"), env.URI("root-c", "root"),
		env.URI("root-a", "new"), env.URI("root-b", "new"), env.URI("root-c", "new"),
		env.URI("tagging", "targets"), env.URI("tagging", "releases"), env.URI("tagging", "spare"),
		env.URI("online", "snapshot"), env.URI("online", "timestamp"), env.URI("online", "timestamp-2"),
	} {
		if _, err := s.Keys.(*hsm.Keyring).Generate(ctx, u, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256}); err != nil {
			t.Fatal(err)
		}
	}
	rp := func(th int, exp string, keys ...string) RolePlan {
		d, _ := ParseDuration(exp)
		return RolePlan{Threshold: th, Keys: keys, Expires: d}
	}
	plan := &Plan{Version: 1, Ceremony: "bootstrap"}
	plan.Roles.Root = rp(2, "365d", env.URI("root-a", "root"), env.URI("root-b", "root"), env.URI("root-c", "root"))
	plan.Roles.Targets = rp(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = rp(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = rp(1, "7d", env.URI("online", "timestamp"))
	plan.Delegations = []DelegationPlan{{Name: "releases", Threshold: 1, Keys: []string{env.URI("tagging", "releases")}, Paths: []string{"releases/*"}}}
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	return &rotFixture{env: env, s: s, dir: dir, ui: ui}
}

func (f *rotFixture) keyID(t *testing.T, token, object string) string {
	t.Helper()
	k, err := f.s.Open(context.Background(), f.env.URI(token, object))
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

func rotTreeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		lines = append(lines, p+" "+hex.EncodeToString(h[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func rotVerifyOK(t *testing.T, dir string) {
	t.Helper()
	rep, err := Verify(dir, nil, time.Now())
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func TestRotateRootSameOfficersNewKeysAndTimestamp(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	var add, remove []string
	for _, tok := range []string{"root-a", "root-b", "root-c"} {
		add = append(add, f.env.URI(tok, "new"))
		remove = append(remove, f.env.URI(tok, "root"))
	}
	res, err := f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleRoot, Add: add, Remove: remove})
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions[RoleRoot] != 2 || !slices.Equal(res.Changed, []string{RoleRoot}) {
		t.Fatalf("result %+v", res)
	}
	rotVerifyOK(t, f.dir)
	pol, err := LoadPolicy(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pol.Roles[RoleRoot].Keys, add) {
		t.Fatalf("policy root keys %v, want %v", pol.Roles[RoleRoot].Keys, add)
	}
	// The old keys' records moved to keys/retired/.
	old := f.keyID(t, "root-a", "root")
	if _, err := os.Stat(filepath.Join(f.dir, "keys/retired", old+".json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "keys", old+".json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old record still in keys/: %v", err)
	}

	// Timestamp by key id prefix; the threshold may not exceed the keys.
	tsOld := f.keyID(t, "online", "timestamp")
	_, err = f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleTimestamp, Remove: []string{tsOld[:10]}, Threshold: 2, Add: []string{f.env.URI("online", "timestamp-2")}})
	if err == nil || !strings.Contains(err.Error(), "1 key(s) for a threshold of 2") {
		t.Fatalf("threshold above the keys: %v", err)
	}
	res, err = f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleTimestamp, Remove: []string{tsOld[:10]}, Add: []string{f.env.URI("online", "timestamp-2")}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions[RoleRoot] != 3 || res.Versions[RoleTimestamp] != 2 || res.Versions[RoleSnapshot] != 2 {
		t.Fatalf("versions %+v", res.Versions)
	}
	rotVerifyOK(t, f.dir)
	entries, err := ParseTranscript(mustRead(t, filepath.Join(f.dir, TranscriptFile)))
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Operation != "rotate" || last.Details["role"] != RoleTimestamp {
		t.Fatalf("transcript %+v", last)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The officers are told which root keys are missing; nothing is written.
func TestRotateNamesMissingRootKeys(t *testing.T) {
	f := newRotFixture(t)
	before := rotTreeHash(t, f.dir)
	// Two of the three root tokens are "unplugged": their URIs name tokens
	// that are not there.
	polPath := filepath.Join(f.dir, PolicyFile)
	pol := mustRead(t, polPath)
	gone := strings.ReplaceAll(strings.ReplaceAll(string(pol), "token=root-b;object=root", "token=gone-b;object=root"), "token=root-c;object=root", "token=gone-c;object=root")
	if err := os.WriteFile(polPath, []byte(gone), 0o644); err != nil {
		t.Fatal(err)
	}
	before = rotTreeHash(t, f.dir)
	_, err := f.s.Rotate(context.Background(), f.dir, RotateOptions{Role: RoleTimestamp, Add: []string{f.env.URI("online", "timestamp-2")}})
	var rse *RootSignaturesError
	if !errors.As(err, &rse) {
		t.Fatalf("got %v, want RootSignaturesError", err)
	}
	if !strings.Contains(err.Error(), "root v2 is not signed by enough keys, nothing was written: it has 1 of the 2 signatures root v2 requires and 1 of the 2 signatures root v1 requires") {
		t.Errorf("message: %v", err)
	}
	hint := rse.Hint()
	for _, want := range []string{f.keyID(t, "root-b", "root")[:12] + " (pkcs11:token=root-b;object=root)", "not plugged in this time: pkcs11:token=gone-b;object=root"} {
		if !strings.Contains(hint, want) {
			t.Errorf("hint %q lacks %q", hint, want)
		}
	}
	if after := rotTreeHash(t, f.dir); after != before {
		t.Fatal("the repository changed")
	}
}

// The preflight refuses a root that the clients would refuse, whoever
// built it, and names the role, the rule and the fix.
func TestPreflightRefusesBadRootRotation(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	before := rotTreeHash(t, f.dir)
	newKeys := []string{f.env.URI("root-a", "new"), f.env.URI("root-b", "new"), f.env.URI("root-c", "new")}
	oldKeys := []string{f.env.URI("root-a", "root"), f.env.URI("root-b", "root"), f.env.URI("root-c", "root")}
	cases := []struct {
		name  string
		sign  []string
		rules []string
	}{
		{"only new keys", newKeys, []string{roles.RuleRootChain}},
		{"only old keys", oldKeys, []string{roles.RuleThreshold}},
		{"one old, all new", append([]string{oldKeys[0]}, newKeys...), []string{roles.RuleRootChain}},
		{"all old, one new", append(slices.Clone(oldKeys), newKeys[0]), []string{roles.RuleThreshold}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := f.s.withLock(f.dir, func(repo *roles.Repo, pol *Policy) error {
				now := f.s.now()
				if err := repo.BumpRole(RoleRoot, now.Add(365*24*time.Hour)); err != nil {
					return err
				}
				rk := roles.RoleKeys{Threshold: 2}
				for _, u := range newKeys {
					k, err := f.s.Open(ctx, u)
					if err != nil {
						return err
					}
					rk.Keys = append(rk.Keys, k.TUF.Key())
				}
				if err := repo.SetRoleKeys(RoleRoot, rk); err != nil {
					return err
				}
				for _, u := range tc.sign {
					k, err := f.s.Open(ctx, u)
					if err != nil {
						return err
					}
					if err := roles.Sign(repo.Root(), k.TUF); err != nil {
						return err
					}
				}
				_, err := f.s.commit(&Change{Op: "test", Dir: f.dir, Repo: repo, Policy: pol, At: now, Changed: []string{RoleRoot}, NoPolicy: true})
				return err
			})
			var pe *PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want a PreflightError", err)
			}
			if pe.Problems[0].Role != RoleRoot || !slices.Contains(tc.rules, pe.Problems[0].Rule) || pe.Hint() == "" {
				t.Fatalf("problems %+v", pe.Problems)
			}
			if !strings.Contains(err.Error(), "preflight refused the change, nothing was written: root (") {
				t.Fatalf("message %v", err)
			}
			if rotTreeHash(t, f.dir) != before {
				t.Fatal("the repository changed")
			}
		})
	}
}

// A timestamp that goes back in version is refused by the version check
// and by the client that had the newer one.
func TestPreflightRefusesRollback(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	if _, err := f.s.Publish(ctx, f.dir); err != nil {
		t.Fatal(err)
	}
	before := rotTreeHash(t, f.dir)
	err := f.s.withLock(f.dir, func(repo *roles.Repo, pol *Policy) error {
		now := f.s.now()
		repo.Timestamp.Signed.Version = 1
		repo.Timestamp.Signatures = nil
		if err := repo.UpdateTimestamp(now.Add(7 * 24 * time.Hour)); err != nil {
			return err
		}
		k, err := f.s.Open(ctx, f.env.URI("online", "timestamp"))
		if err != nil {
			return err
		}
		if err := roles.Sign(repo.Timestamp, k.TUF); err != nil {
			return err
		}
		_, err = f.s.commit(&Change{Op: "test", Dir: f.dir, Repo: repo, Policy: pol, At: now, Changed: []string{RoleTimestamp}, NoPolicy: true})
		return err
	})
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	var rules []string
	for _, p := range pe.Problems {
		rules = append(rules, p.Role+"/"+p.Rule)
	}
	if !slices.Contains(rules, "timestamp/version") {
		t.Fatalf("problems %+v", pe.Problems)
	}
	if rotTreeHash(t, f.dir) != before {
		t.Fatal("the repository changed")
	}
}

func TestRevokeDelegatedKey(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	if _, err := f.s.AddTargets(ctx, f.dir, "releases", []TargetInput{{Name: "releases/app", Data: []byte("app")}}); err != nil {
		t.Fatal(err)
	}
	rel := f.keyID(t, "tagging", "releases")
	before := rotTreeHash(t, f.dir)
	_, err := f.s.Revoke(ctx, f.dir, RevokeOptions{Key: rel, Reason: "test"})
	var kn *KeysNeededError
	if !errors.As(err, &kn) || len(kn.Roles) != 1 || kn.Roles[0].Role != "releases" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(kn.Hint(), "--add releases=pkcs11:token=NEW;object=releases") || !strings.Contains(kn.Hint(), "--drop releases") {
		t.Errorf("hint %q", kn.Hint())
	}
	if _, err := f.s.Revoke(ctx, f.dir, RevokeOptions{Key: rel}); err == nil || !strings.Contains(err.Error(), "--reason is required") {
		t.Errorf("no reason: %v", err)
	}
	if rotTreeHash(t, f.dir) != before {
		t.Fatal("the repository changed")
	}
	res, err := f.s.Revoke(ctx, f.dir, RevokeOptions{Key: f.env.URI("tagging", "releases"), Reason: "laptop stolen",
		Add: map[string][]string{"releases": {f.env.URI("tagging", "spare")}}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*Revocation)
	if rev.RootVersion != 0 || rev.TargetsDropped != 1 || len(rev.Roles) != 1 || rev.Roles[0].KeysLeft != 1 {
		t.Fatalf("revocation %+v", rev)
	}
	rotVerifyOK(t, f.dir)
	for _, l := range f.ui.lines {
		if strings.Contains(l, "signing root") && strings.Contains(l, "v2") {
			t.Fatalf("root was signed for a delegated key: %s", l)
		}
	}
	use, err := KeyRoles(f.dir, f.env.URI("tagging", "spare"))
	if err != nil || len(use.Roles) != 1 || use.Roles[0].Role != "releases" {
		t.Fatalf("key roles %+v %v", use, err)
	}
	entries, _ := ParseTranscript(mustRead(t, filepath.Join(f.dir, TranscriptFile)))
	if last := entries[len(entries)-1]; last.Operation != "revoke" || last.Details["reason"] != "laptop stolen" {
		t.Fatalf("transcript %+v", last)
	}
}

func TestDelegateNestedAndRemove(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	_, err := f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "team-a", From: "releases", Keys: []string{f.env.URI("tagging", "spare")}, Paths: []string{"docs/*"}})
	if err == nil || !strings.Contains(err.Error(), "lies outside releases's own paths") {
		t.Fatalf("outside the parent's paths: %v", err)
	}
	res, err := f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "team-a", From: "releases", Keys: []string{f.env.URI("tagging", "spare")}, Paths: []string{"releases/team-a-*"}, Terminating: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions["team-a"] != 1 || res.Versions["releases"] != 2 {
		t.Fatalf("versions %+v", res.Versions)
	}
	if _, err := f.s.AddTargets(ctx, f.dir, "team-a", []TargetInput{{Name: "releases/team-a-1", Data: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	list, err := ListDelegations(f.dir)
	if err != nil || len(list.Delegations) != 2 || list.Delegations[1].Depth != 2 || len(list.Delegations[1].URIs) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}
	res, err = f.s.DelegateRemove(ctx, f.dir, "releases")
	if err != nil {
		t.Fatal(err)
	}
	if res.Details["targets_dropped"] != 1 || res.Details["removed_roles"] != 2 {
		t.Fatalf("details %+v", res.Details)
	}
	rotVerifyOK(t, f.dir)
	pol, _ := LoadPolicy(f.dir)
	if _, ok := pol.Roles["team-a"]; ok {
		t.Fatal("policy keeps team-a")
	}
	if _, err := f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "bins", Keys: []string{f.env.URI("tagging", "spare")}, Bins: 100}); err == nil {
		t.Fatal("100 bins accepted")
	}
	res, err = f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "bins", Keys: []string{f.env.URI("tagging", "spare")}, Bins: 64})
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions["bins"] != 1 || res.Versions["bins-00"] != 0 {
		t.Fatalf("versions %+v", res.Versions)
	}
	bin, err := BinFor(f.dir, "bins", "pkgs/x.tgz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.AddTargets(ctx, f.dir, bin, []TargetInput{{Name: "pkgs/x.tgz", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	// Revoking the bins' only key needs a replacement; with one, all 64
	// bins are re-keyed and the one with a target drops it.
	res, err = f.s.Revoke(ctx, f.dir, RevokeOptions{Key: f.env.URI("tagging", "spare"), Reason: "test",
		Add: map[string][]string{"bins": {f.env.URI("tagging", "releases")}}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*Revocation)
	if rev.TargetsDropped != 1 || rev.Roles[0].Bins != 64 || !strings.HasPrefix(rev.Roles[0].Metadata, "64 of 64 bins") {
		t.Fatalf("revocation %+v", rev.Roles)
	}
	rotVerifyOK(t, f.dir)
}

// A key that signs targets and a role targets delegates to: targets, also
// signed by its other key, keeps its targets although it is re-signed as
// the delegator.
func TestRevokeKeepsRolesOtherKeysSigned(t *testing.T) {
	f := newRotFixture(t)
	ctx := context.Background()
	k := f.env.URI("tagging", "targets")
	if _, err := f.s.Rotate(ctx, f.dir, RotateOptions{Role: RoleTargets, Add: []string{f.env.URI("tagging", "spare")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.DelegateAdd(ctx, f.dir, DelegateOptions{Role: "docs", Keys: []string{k}, Paths: []string{"docs/*"}}); err != nil {
		t.Fatal(err)
	}
	// targets add signs with every key the policy lists: both.
	if _, err := f.s.AddTargets(ctx, f.dir, RoleTargets, []TargetInput{{Name: "readme.txt", Data: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	res, err := f.s.Revoke(ctx, f.dir, RevokeOptions{Key: k, Reason: "test", Add: map[string][]string{"docs": {f.env.URI("tagging", "releases")}}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*Revocation)
	if rev.RootVersion != 3 || rev.TargetsDropped != 0 || len(rev.Roles) != 2 {
		t.Fatalf("revocation %+v", rev)
	}
	if rev.Roles[0].Role != RoleTargets || rev.Roles[0].Metadata != "still valid: signed by enough of its other keys" {
		t.Fatalf("targets: %+v", rev.Roles[0])
	}
	rotVerifyOK(t, f.dir)
	repo, err := roles.Load(os.DirFS(f.dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := repo.Targets.Signed.Targets["readme.txt"]; !ok {
		t.Fatal("targets lost readme.txt")
	}
}
