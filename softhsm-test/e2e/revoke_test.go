package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TestRevokeTaggingKey: targets delegates team-a/* to alice's key,
// team-b/* to bob's. alice's key is compromised and revoked (with a
// replacement key for team-a). Clients that keep their state then refuse
// the target only alice had signed, still accept bob's, refuse metadata
// alice signs after the revocation, and refuse to roll back to the
// metadata from before it. Revoking bob's key with --resign-targets keeps
// his target, re-signed by his replacement key.
func TestRevokeTaggingKey(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "tagging", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	for _, u := range []string{env.URI("root", "root"), env.URI("tagging", "targets"), env.URI("tagging", "alice"),
		env.URI("tagging", "alice-2"), env.URI("tagging", "bob"), env.URI("tagging", "bob-2"),
		env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
		generate(t, s, u, hsm.ECDSAP256)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "revoke"}
	plan.Roles.Root = role(1, "365d", env.URI("root", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	plan.Delegations = []ceremony.DelegationPlan{
		{Name: "team-a", Threshold: 1, Keys: []string{env.URI("tagging", "alice")}, Paths: []string{"team-a/*"}, Terminating: true},
		{Name: "team-b", Threshold: 1, Keys: []string{env.URI("tagging", "bob")}, Paths: []string{"team-b/*"}, Terminating: true},
	}
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	appA, appB := []byte("team a's app, tagged by alice\n"), []byte("team b's app, tagged by bob\n")
	if _, err := s.AddTargets(ctx, dir, "team-a", []ceremony.TargetInput{{Name: "team-a/app", Data: appA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTargets(ctx, dir, "team-b", []ceremony.TargetInput{{Name: "team-b/app", Data: appB}}); err != nil {
		t.Fatal(err)
	}
	v1 := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	cs := clients.All(t, clients.Config{TrustedRoot: v1, CacheDir: t.TempDir(), MetadataURL: mdURL, TargetsURL: tgURL})
	updateAll(t, "before the revocation", cs, map[string][]byte{"team-a/app": appA, "team-b/app": appB}, 1)
	before := snapshotDir(t, filepath.Join(dir, "metadata"))

	res, err := s.Revoke(ctx, dir, ceremony.RevokeOptions{Key: env.URI("tagging", "alice"), Reason: "laptop stolen",
		Add: map[string][]string{"team-a": {env.URI("tagging", "alice-2")}}})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*ceremony.Revocation)
	if rev.RootVersion != 0 || rev.TargetsDropped != 1 || len(rev.Roles) != 1 || rev.Roles[0].Role != "team-a" {
		t.Fatalf("revocation %+v", rev)
	}

	// The clients' next update: bob's target stays, alice's is gone.
	updateAll(t, "after the revocation", cs, map[string][]byte{"team-b/app": appB}, 1)
	logRejections(t, "revoked target, clients with state", clients.RejectedBy(t, cs, "team-a/app"))
	fresh := clients.All(t, clients.Config{TrustedRoot: v1, MetadataURL: mdURL, TargetsURL: tgURL})
	logRejections(t, "revoked target, fresh clients", clients.RejectedBy(t, fresh, "team-a/app"))
	updateAll(t, "fresh clients", fresh, map[string][]byte{"team-b/app": appB}, 1)

	// alice's key signs team-a metadata with a new target after the
	// revocation (the attacker holds it): clients refuse it.
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	alice, err := s.Open(ctx, env.URI("tagging", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	md := repo.Delegated["team-a"]
	md.Signatures = nil // same version: the one snapshot lists
	if err := repo.AddTarget("team-a", "team-a/evil", []byte("evil")); err != nil {
		t.Fatal(err)
	}
	if err := roles.Sign(md, alice.TUF); err != nil {
		t.Fatal(err)
	}
	files, err := repo.Files()
	if err != nil {
		t.Fatal(err)
	}
	p := roles.MetadataDir + "/" + strings.TrimPrefix(fileFor(t, files, "team-a"), roles.MetadataDir+"/")
	good := readFile(t, filepath.Join(dir, p))
	writeRepoFile(t, dir, files, p)
	os.MkdirAll(filepath.Join(dir, "targets/team-a"), 0o755)
	for _, tp := range roles.TargetFilePaths("team-a/evil", md.Signed.Targets["team-a/evil"], true) {
		os.WriteFile(filepath.Join(dir, tp), []byte("evil"), 0o644)
	}
	logRejections(t, "metadata signed by the revoked key", clients.RejectedBy(t, clients.All(t, clients.Config{TrustedRoot: v1, MetadataURL: mdURL, TargetsURL: tgURL}), "team-a/evil"))
	if err := os.WriteFile(filepath.Join(dir, p), good, 0o644); err != nil {
		t.Fatal(err)
	}

	// A mirror serving the metadata from before the revocation: clients
	// that saw the revocation do not roll back.
	after := snapshotDir(t, filepath.Join(dir, "metadata"))
	restoreDir(t, filepath.Join(dir, "metadata"), before)
	logRejections(t, "rollback to before the revocation", clients.RejectedBy(t, cs, "team-a/app"))
	restoreDir(t, filepath.Join(dir, "metadata"), after)
	updateAll(t, "the real repository again", cs, map[string][]byte{"team-b/app": appB}, 1)

	// bob's key, with --resign-targets: his replacement key re-signs his
	// target, which clients keep accepting.
	res, err = s.Revoke(ctx, dir, ceremony.RevokeOptions{Key: env.URI("tagging", "bob"), Reason: "rotated out", ResignTargets: true,
		Add: map[string][]string{"team-b": {env.URI("tagging", "bob-2")}}})
	if err != nil {
		t.Fatal(err)
	}
	if rev := res.Details["revocation"].(*ceremony.Revocation); rev.TargetsResigned != 1 || rev.TargetsDropped != 0 {
		t.Fatalf("revocation %+v", rev)
	}
	updateAll(t, "after revoking bob's key", cs, map[string][]byte{"team-b/app": appB}, 1)
	clients.CheckRepository(t, dir, v1, map[string][]byte{"team-b/app": appB})
	if rep, err := ceremony.Verify(dir, nil, time.Now()); err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func fileFor(t *testing.T, files []roles.File, role string) string {
	t.Helper()
	for _, f := range files {
		base := filepath.Base(f.Path)
		if base == role+".json" || strings.HasSuffix(base, "."+role+".json") {
			return f.Path
		}
	}
	t.Fatalf("no metadata file for %s", role)
	return ""
}

// snapshotDir reads every file of a directory (not recursive).
func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.IsDir() {
			out[e.Name()] = readFile(t, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// restoreDir makes dir hold exactly the files of snap.
func restoreDir(t *testing.T, dir string, snap map[string][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := snap[e.Name()]; !ok && !e.IsDir() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, data := range snap {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func logRejections(t *testing.T, what string, errs map[string]error) {
	t.Helper()
	for name, err := range errs {
		t.Logf("%s: %s refused: %v", what, name, err)
	}
}

// TestRevokeKeepsNothingOnlyTheKeyVouchedFor: releases (alice's key)
// delegates team/* to team (carol's key); releases' published version is
// signed by alice alone. Revoking alice's key (with a replacement for
// releases) drops what only her key vouched for — releases' target and the
// delegation to team — so go-tuf and tuf-js, with their state from before
// and fresh, no longer find team's target although carol's key signed it:
// it was reachable only through a delegation the attacker could have put
// there. The same revocation with --keep-delegation team keeps it,
// re-signed by the replacement key, and both clients find team's target.
func TestRevokeKeepsNothingOnlyTheKeyVouchedFor(t *testing.T) {
	env := softhsm.NewTokens(t, "root", "tagging", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	for _, u := range []string{env.URI("root", "root"), env.URI("tagging", "targets"), env.URI("tagging", "alice"),
		env.URI("tagging", "alice-2"), env.URI("tagging", "carol"), env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
		generate(t, s, u, hsm.ECDSAP256)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "revoke-nested"}
	plan.Roles.Root = role(1, "365d", env.URI("root", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	plan.Delegations = []ceremony.DelegationPlan{{Name: "releases", Threshold: 1, Keys: []string{env.URI("tagging", "alice")},
		Paths: []string{"releases/*", "team/*"}}}
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DelegateAdd(ctx, dir, ceremony.DelegateOptions{Role: "team", From: "releases", Keys: []string{env.URI("tagging", "carol")}, Paths: []string{"team/*"}}); err != nil {
		t.Fatal(err)
	}
	rel, team := []byte("release, tagged by alice\n"), []byte("team app, tagged by carol\n")
	if _, err := s.AddTargets(ctx, dir, "releases", []ceremony.TargetInput{{Name: "releases/app", Data: rel}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTargets(ctx, dir, "team", []ceremony.TargetInput{{Name: "team/app", Data: team}}); err != nil {
		t.Fatal(err)
	}
	keepDir := filepath.Join(t.TempDir(), "keep")
	if out, err := exec.Command("cp", "-a", dir, keepDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	v1 := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	cs := clients.All(t, clients.Config{TrustedRoot: v1, CacheDir: t.TempDir(), MetadataURL: mdURL, TargetsURL: tgURL})
	updateAll(t, "before the revocation", cs, map[string][]byte{"releases/app": rel, "team/app": team}, 1)

	add := map[string][]string{"releases": {env.URI("tagging", "alice-2")}}
	res, err := s.Revoke(ctx, dir, ceremony.RevokeOptions{Key: env.URI("tagging", "alice"), Reason: "laptop stolen", Add: add})
	if err != nil {
		t.Fatal(err)
	}
	rev := res.Details["revocation"].(*ceremony.Revocation)
	if rev.DelegationsDropped != 1 || rev.TargetsDropped != 1 || len(rev.Unvouched) != 1 || rev.Unvouched[0].Role != "releases" ||
		len(rev.Unvouched[0].Delegations) != 1 || d0(rev).Role != "team" || d0(rev).Targets != 1 || d0(rev).Kept {
		t.Fatalf("revocation %+v", rev)
	}
	logRejections(t, "team's target, clients with state", clients.RejectedBy(t, cs, "team/app"))
	fresh := clients.All(t, clients.Config{TrustedRoot: v1, MetadataURL: mdURL, TargetsURL: tgURL})
	errs := clients.RejectedBy(t, fresh, "team/app")
	logRejections(t, "team's target, fresh clients", errs)
	if len(errs) != 2 {
		t.Errorf("%d clients refused team's target, want both", len(errs))
	}
	updateAll(t, "after the revocation", fresh, nil, 1)
	if rep, err := ceremony.Verify(dir, nil, time.Now()); err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}

	// The officer checked the delegation and keeps it.
	res, err = s.Revoke(ctx, keepDir, ceremony.RevokeOptions{Key: env.URI("tagging", "alice"), Reason: "laptop stolen", Add: add, KeepDelegations: []string{"team"}})
	if err != nil {
		t.Fatal(err)
	}
	if rev := res.Details["revocation"].(*ceremony.Revocation); rev.DelegationsKept != 1 || rev.DelegationsDropped != 0 || !d0(rev).Kept {
		t.Fatalf("revocation with --keep-delegation %+v", rev)
	}
	clients.CheckRepository(t, keepDir, v1, map[string][]byte{"team/app": team})
	logRejections(t, "releases' own target, kept delegation", clients.ExpectRejected(t, keepDir, v1, "releases/app"))
}

func d0(rev *ceremony.Revocation) ceremony.UnvouchedDelegation {
	return rev.Unvouched[0].Delegations[0]
}
