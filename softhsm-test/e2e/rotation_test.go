package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// updateAll runs Update and fetches every target with each client, and
// checks that each now trusts root version wantRoot.
func updateAll(t *testing.T, step string, cs []clients.Client, targets map[string][]byte, wantRoot int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range cs {
		if err := clients.Verify(ctx, c, targets); err != nil {
			t.Fatalf("%s: %s refused the repository: %v", step, c.Name(), err)
		}
		if got := c.TrustedVersions()["root"]; got != wantRoot {
			t.Fatalf("%s: %s trusts root v%d, want v%d", step, c.Name(), got, wantRoot)
		}
	}
}

// TestRotationsFollowedByClients: clients that trusted root v1 and keep
// their state follow three rotations, v1 → v2 → v3 → v4: every root key
// replaced at once by other officers' keys, the timestamp key (after an
// attacker fast-forwarded the clients' timestamp with the old key), and
// the same officers with new keys (each officer's old and new key sign).
func TestRotationsFollowedByClients(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "root-b", "root-c", "root-x", "root-y", "tagging", "online")
	s, ui := newSession(t)
	ctx := context.Background()
	for _, k := range []struct {
		tok, obj string
		alg      hsm.Algorithm
	}{
		{"root-a", "root", hsm.ECDSAP256}, {"root-b", "root", hsm.Ed25519}, {"root-c", "root", hsm.ECDSAP256},
		{"root-x", "root", hsm.ECDSAP256}, {"root-y", "root", hsm.Ed25519},
		{"root-x", "root-2026", hsm.Ed25519}, {"root-y", "root-2026", hsm.ECDSAP256},
		{"tagging", "targets", hsm.ECDSAP256},
		{"online", "snapshot", hsm.ECDSAP256}, {"online", "timestamp", hsm.ECDSAP256}, {"online", "timestamp-2", hsm.Ed25519},
	} {
		generate(t, s, env.URI(k.tok, k.obj), k.alg)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "rotation"}
	plan.Roles.Root = role(2, "365d", env.URI("root-a", "root"), env.URI("root-b", "root"), env.URI("root-c", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	hello := []byte("hello through every rotation\n")
	if _, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "hello.txt", Data: hello}}); err != nil {
		t.Fatal(err)
	}
	targets := map[string][]byte{"hello.txt": hello}
	v1 := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	cache := t.TempDir()
	cs := clients.All(t, clients.Config{TrustedRoot: v1, CacheDir: cache, MetadataURL: mdURL, TargetsURL: tgURL})
	updateAll(t, "before any rotation", cs, targets, 1)

	// 1. Every root key replaced: root v2 trusts 2 of x, y; a, b, c sign
	// for root v1's threshold, x and y for v2's own.
	res, err := s.Rotate(ctx, dir, ceremony.RotateOptions{Role: ceremony.RoleRoot,
		Add:    []string{env.URI("root-x", "root"), env.URI("root-y", "root")},
		Remove: []string{env.URI("root-a", "root"), env.URI("root-b", "root"), env.URI("root-c", "root")}})
	if err != nil {
		t.Fatalf("rotation 1: %v", err)
	}
	if res.Versions["root"] != 2 {
		t.Fatalf("rotation 1 made root v%d", res.Versions["root"])
	}
	updateAll(t, "after rotation 1 (all root keys replaced)", cs, targets, 2)

	// An attacker with the old timestamp key fast-forwards the clients'
	// timestamp to a huge version.
	tsPath := filepath.Join(dir, "metadata/timestamp.json")
	good := readFile(t, tsPath)
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	oldTS, err := s.Open(ctx, env.URI("online", "timestamp"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Timestamp.Signed.Version = 1 << 30
	repo.Timestamp.Signatures = nil
	if err := roles.Sign(repo.Timestamp, oldTS.TUF); err != nil {
		t.Fatal(err)
	}
	files, err := repo.Files()
	if err != nil {
		t.Fatal(err)
	}
	writeRepoFile(t, dir, files, "metadata/timestamp.json")
	updateAll(t, "fast-forward attack", cs, targets, 2)
	for _, c := range cs {
		if v := c.TrustedVersions()["timestamp"]; v != 1<<30 {
			t.Fatalf("%s did not take the fast-forwarded timestamp (v%d): the attack was not simulated", c.Name(), v)
		}
	}
	if err := os.WriteFile(tsPath, good, 0o644); err != nil {
		t.Fatal(err)
	}

	// 2. The timestamp key rotates: root v3. The clients drop the
	// fast-forwarded timestamp, which the new root no longer trusts (TUF
	// 5.3.11), and accept the new one at a normal version.
	res, err = s.Rotate(ctx, dir, ceremony.RotateOptions{Role: ceremony.RoleTimestamp,
		Add: []string{env.URI("online", "timestamp-2")}, Remove: []string{env.URI("online", "timestamp")}})
	if err != nil {
		t.Fatalf("rotation 2: %v", err)
	}
	updateAll(t, "after rotation 2 (timestamp key)", cs, targets, 3)
	for _, c := range cs {
		if v := c.TrustedVersions()["timestamp"]; v != res.Versions["timestamp"] {
			t.Fatalf("%s trusts timestamp v%d, want v%d: it did not recover from the fast-forward", c.Name(), v, res.Versions["timestamp"])
		}
	}

	// 3. Same officers, new keys: x and y each sign with the old and the
	// new key.
	ui.lines = nil
	res, err = s.Rotate(ctx, dir, ceremony.RotateOptions{Role: ceremony.RoleRoot,
		Add:    []string{env.URI("root-x", "root-2026"), env.URI("root-y", "root-2026")},
		Remove: []string{env.URI("root-x", "root"), env.URI("root-y", "root")}})
	if err != nil {
		t.Fatalf("rotation 3: %v", err)
	}
	signed := 0
	for _, l := range ui.lines {
		if strings.HasPrefix(l, "signing root v4 with ") {
			signed++
		}
	}
	if signed != 4 {
		t.Fatalf("root v4 was signed by %d keys, want the old and the new key of both officers:\n%s", signed, strings.Join(ui.lines, "\n"))
	}
	updateAll(t, "after rotation 3 (same officers, new keys)", cs, targets, 4)

	// Fresh clients shipped with v1 and with v2 follow too.
	clients.CheckRepository(t, dir, v1, targets)
	clients.CheckRepository(t, dir, readFile(t, filepath.Join(dir, "metadata/2.root.json")), targets)
}

// writeRepoFile writes the file with path p from files into dir.
func writeRepoFile(t *testing.T, dir string, files []roles.File, p string) {
	t.Helper()
	for _, f := range files {
		if f.Path == p {
			if err := os.WriteFile(filepath.Join(dir, p), f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no file %s", p)
}

// TestBadRootRotationRefused: a root v2 signed only by the new keys, only
// by the old keys, or below either threshold is refused by the preflight,
// and, written by hand, by go-tuf and tuf-js, fresh and with state.
func TestBadRootRotationRefused(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "root-b", "root-c", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	var oldKeys, newKeys []string
	for _, tok := range []string{"root-a", "root-b", "root-c"} {
		oldKeys = append(oldKeys, env.URI(tok, "root"))
		newKeys = append(newKeys, env.URI(tok, "new"))
	}
	for _, u := range append(append([]string{}, oldKeys...), newKeys...) {
		generate(t, s, u, hsm.ECDSAP256)
	}
	for _, o := range []string{"targets", "snapshot", "timestamp"} {
		generate(t, s, env.URI("online", o), hsm.ECDSAP256)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap"}
	plan.Roles.Root = role(2, "365d", oldKeys...)
	plan.Roles.Targets = role(1, "90d", env.URI("online", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := s.Init(ctx, plan, dir); err != nil {
		t.Fatal(err)
	}
	v1 := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
	mdURL, tgURL := clients.Serve(t, dir)
	stateful := clients.All(t, clients.Config{TrustedRoot: v1, CacheDir: t.TempDir(), MetadataURL: mdURL, TargetsURL: tgURL})
	updateAll(t, "before", stateful, nil, 1)

	cases := []struct {
		name string
		sign []string
		rule string
	}{
		{"only the new keys", newKeys, roles.RuleRootChain},
		{"only the old keys", oldKeys, roles.RuleThreshold},
		{"below the old threshold", append([]string{oldKeys[0]}, newKeys...), roles.RuleRootChain},
		{"below the new threshold", append(append([]string{}, oldKeys...), newKeys[0]), roles.RuleThreshold},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			repo, err := roles.Load(os.DirFS(dir))
			if err != nil {
				t.Fatal(err)
			}
			if err := repo.BumpRole("root", time.Now().Add(365*24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			rk := roles.RoleKeys{Threshold: 2}
			for _, u := range newKeys {
				k, err := s.Open(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				rk.Keys = append(rk.Keys, k.TUF.Key())
			}
			if err := repo.SetRoleKeys("root", rk); err != nil {
				t.Fatal(err)
			}
			for _, u := range tc.sign {
				k, err := s.Open(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				if err := roles.Sign(repo.Root(), k.TUF); err != nil {
					t.Fatal(err)
				}
			}
			files, err := repo.Files()
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ceremony.Preflight(dir, files, ceremony.PreflightOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.Problems[0].Role != "root" || rep.Problems[0].Rule != tc.rule || rep.Problems[0].Hint == "" {
				t.Fatalf("preflight: %+v", rep.Problems)
			}
			// Written by hand, behind rootkeeper's back.
			p := filepath.Join(dir, "metadata/2.root.json")
			writeRepoFile(t, dir, files, "metadata/2.root.json")
			defer os.Remove(p)
			errs := clients.ExpectRejected(t, dir, v1, "")
			for name, err := range errs {
				var unsigned *metadata.ErrUnsignedMetadata
				if name == clients.GoTUFName && !errors.As(err, &unsigned) {
					t.Errorf("%s refused for another reason: %v", name, err)
				}
			}
			clients.RejectedBy(t, stateful, "")
		})
	}
	// The repository itself is still fine for everyone.
	os.Remove(filepath.Join(dir, "metadata/2.root.json"))
	updateAll(t, "after", stateful, nil, 1)
}
