package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TestTranscriptAnchorAcceptedByClients: a repository through a long life
// on SoftHSM — bootstrap, targets, a delegation, a root rotation to new
// keys, a revocation, re-signing — whose every metadata file carries the
// transcript anchor in its signed part; go-tuf and tuf-js accept it (from
// 1.root.json through the rotated root) and fetch its targets, and the
// transcript verifies.
func TestTranscriptAnchorAcceptedByClients(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "root-b", "tagging", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	for _, k := range []struct {
		tok, obj string
		alg      hsm.Algorithm
	}{{"root-a", "root", hsm.ECDSAP256}, {"root-b", "root", hsm.Ed25519}, {"root-a", "new", hsm.RSA3072}, {"root-b", "new", hsm.ECDSAP384},
		{"tagging", "targets", hsm.ECDSAP256}, {"tagging", "alice", hsm.Ed25519}, {"tagging", "bob", hsm.ECDSAP256},
		{"online", "snapshot", hsm.ECDSAP256}, {"online", "timestamp", hsm.ECDSAP256}} {
		generate(t, s, env.URI(k.tok, k.obj), k.alg)
	}
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "e2e-transcript"}
	plan.Roles.Root = role(2, "365d", env.URI("root-a", "root"), env.URI("root-b", "root"))
	plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	plan.Delegations = []ceremony.DelegationPlan{{Name: "releases", Threshold: 1, Keys: []string{env.URI("tagging", "alice")}, Paths: []string{"releases/*"}}}
	dir := filepath.Join(t.TempDir(), "repo")
	app := []byte("release 1.0\n")
	docs := []byte("docs\n")
	steps := []func() error{
		func() error { _, err := s.Init(ctx, plan, dir); return err },
		func() error {
			_, err := s.AddTargets(ctx, dir, "releases", []ceremony.TargetInput{{Name: "releases/app-1.0.tgz", Data: app}})
			return err
		},
		func() error {
			_, err := s.DelegateAdd(ctx, dir, ceremony.DelegateOptions{Role: "docs", Keys: []string{env.URI("tagging", "bob")}, Paths: []string{"docs/*"}})
			return err
		},
		func() error {
			_, err := s.AddTargets(ctx, dir, "docs", []ceremony.TargetInput{{Name: "docs/guide.txt", Data: docs}})
			return err
		},
		func() error {
			_, err := s.Rotate(ctx, dir, ceremony.RotateOptions{Role: "root", Add: []string{env.URI("root-a", "new"), env.URI("root-b", "new")},
				Remove: []string{env.URI("root-a", "root"), env.URI("root-b", "root")}})
			return err
		},
		func() error {
			_, err := s.Revoke(ctx, dir, ceremony.RevokeOptions{Key: env.URI("tagging", "alice"), Reason: "laptop stolen",
				Add: map[string][]string{"releases": {env.URI("tagging", "bob")}}, ResignTargets: true})
			return err
		},
		func() error {
			_, err := s.Resign(ctx, dir, ceremony.ResignOptions{Roles: []string{"root", "targets", "releases"}})
			return err
		},
		func() error { _, err := s.Publish(ctx, dir); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v (hint: %s)", i+1, err, hsm.HintOf(err))
		}
		rep, err := ceremony.VerifyTranscript(dir)
		if err != nil || !rep.OK || rep.AnchoredThrough != i {
			t.Fatalf("step %d: transcript %v %+v", i+1, err, rep)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "metadata", "*.json"))
	for _, f := range files {
		info, err := roles.ReadSigned(readFile(t, f))
		if err != nil || info.Anchor == nil {
			t.Fatalf("%s: no anchor (%v)", f, err)
		}
		if data := string(readFile(t, f)); !strings.Contains(data, `"`+roles.AnchorField+`": {`) {
			t.Fatalf("%s: the anchor is not in signed as written", f)
		}
	}
	if len(files) < 10 {
		t.Fatalf("only %d metadata files", len(files))
	}
	clients.CheckRepository(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")),
		map[string][]byte{"releases/app-1.0.tgz": app, "docs/guide.txt": docs})
	// The anchor is covered by the signature: a timestamp whose anchor is
	// changed is refused by both clients.
	ts := filepath.Join(dir, "metadata", "timestamp.json")
	data := readFile(t, ts)
	info, _ := roles.ReadSigned(data)
	old := `"head": "` + info.Anchor.Head + `"`
	if !strings.Contains(string(data), old) {
		t.Fatalf("timestamp.json has no %s", old)
	}
	forged := strings.Replace(string(data), old, `"head": "sha256:`+strings.Repeat("0", 64)+`"`, 1)
	if err := os.WriteFile(ts, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	clients.ExpectRejected(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")), "")
}
