// Package e2e runs rootkeeper's ceremonies end to end on the real path:
// keys generated inside SoftHSM2 tokens through PKCS#11, the repository
// written to disk, and then served over loopback HTTP to two independent
// TUF clients, go-tuf's updater and tuf-js, which must accept it and fetch
// its targets.
package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	_ "github.com/rootkeeper/rootkeeper/hsm/pkcs11"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

func TestMain(m *testing.M) {
	if err := clients.EnsureNodeDeps(); err != nil {
		// NewTufJS reports this again, with the command to run, in every
		// test that needs it.
		os.Stderr.WriteString("e2e: " + err.Error() + "\n")
	}
	code := m.Run()
	if notaryBin != "" { // dct_test.go
		os.RemoveAll(notaryBin)
	}
	if rkBin.path != "" { // remote_test.go
		os.RemoveAll(filepath.Dir(rkBin.path))
	}
	os.Exit(code)
}

// recordingUI collects what a ceremony tells the officer.
type recordingUI struct{ lines []string }

func (u *recordingUI) Confirm(summary string) (bool, error) {
	u.lines = append(u.lines, summary)
	return true, nil
}
func (u *recordingUI) Progress(msg string) { u.lines = append(u.lines, msg) }

func newSession(t *testing.T) (*ceremony.Session, *recordingUI) {
	ui := &recordingUI{}
	s := &ceremony.Session{Keys: hsm.NewKeyring(hsm.Options{}), UI: ui}
	t.Cleanup(func() { s.Close() })
	return s, ui
}

// generate makes a key inside a token, through the same keyring the CLI uses.
func generate(t *testing.T, s *ceremony.Session, uri string, alg hsm.Algorithm) *hsm.KeyInfo {
	t.Helper()
	info, err := s.Keys.(*hsm.Keyring).Generate(context.Background(), uri, hsm.GenerateOptions{Algorithm: alg})
	if err != nil {
		t.Fatalf("generate %s %s: %v", alg, uri, err)
	}
	if !info.Evidence.HardwareBorn() {
		t.Fatalf("%s: evidence does not show a hardware-born key: %s", uri, info.Evidence.Summary())
	}
	return info
}

func role(threshold int, expires string, keys ...string) ceremony.RolePlan {
	d, err := ceremony.ParseDuration(expires)
	if err != nil {
		panic(err)
	}
	return ceremony.RolePlan{Threshold: threshold, Keys: keys, Expires: d}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBootstrapAcceptedByClients is the foundation scenario: root 2-of-3 on
// three tokens with three algorithms, a tagging key, online keys, a
// delegation to a second tagging key; targets added to targets and to the
// delegated role; both clients fetch both targets.
func TestBootstrapAcceptedByClients(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		name := "consistent"
		if !consistent {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) {
			env := softhsm.NewTokens(t, "root-a", "root-b", "root-c", "tagging", "online")
			s, ui := newSession(t)
			ctx := context.Background()
			generate(t, s, env.URI("root-a", "root"), hsm.ECDSAP256)
			generate(t, s, env.URI("root-b", "root"), hsm.Ed25519)
			generate(t, s, env.URI("root-c", "root"), hsm.RSA3072)
			generate(t, s, env.URI("tagging", "targets"), hsm.ECDSAP256)
			generate(t, s, env.URI("tagging", "releases"), hsm.Ed25519)
			generate(t, s, env.URI("online", "snapshot"), hsm.ECDSAP256)
			generate(t, s, env.URI("online", "timestamp"), hsm.ECDSAP256)

			plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "e2e", ConsistentSnapshot: &consistent}
			plan.Roles.Root = role(2, "365d", env.URI("root-a", "root"), env.URI("root-b", "root"), env.URI("root-c", "root"))
			plan.Roles.Targets = role(1, "90d", env.URI("tagging", "targets"))
			plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
			plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
			plan.Delegations = []ceremony.DelegationPlan{{Name: "releases", Threshold: 1, Keys: []string{env.URI("tagging", "releases")}, Paths: []string{"releases/*"}, Terminating: true}}
			if probs := plan.Validate(); len(probs) > 0 {
				t.Fatal(probs)
			}
			dir := filepath.Join(t.TempDir(), "repo")
			if _, err := s.Init(ctx, plan, dir); err != nil {
				t.Fatalf("init: %v", err)
			}
			if !strings.Contains(strings.Join(ui.lines, "\n"), "root       2 of 3 keys") {
				t.Errorf("the officer was not shown the root threshold:\n%s", strings.Join(ui.lines, "\n"))
			}
			hello := []byte("hello, clients\n")
			app := []byte("release 1.0 bytes\n")
			if _, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "hello.txt", Data: hello}}); err != nil {
				t.Fatalf("targets add: %v", err)
			}
			if _, err := s.AddTargets(ctx, dir, "releases", []ceremony.TargetInput{{Name: "releases/app-1.0.tgz", Data: app}}); err != nil {
				t.Fatalf("targets add --role releases: %v", err)
			}
			// A delegated role is not trusted outside its paths.
			if _, err := s.AddTargets(ctx, dir, "releases", []ceremony.TargetInput{{Name: "other/x", Data: app}}); err == nil || !strings.Contains(err.Error(), "not trusted for") {
				t.Errorf("target outside the delegation's paths: %v", err)
			}
			res, err := s.Publish(ctx, dir)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			if res.Versions["timestamp"] != 4 {
				t.Errorf("timestamp version %d after init, two adds and a publish, want 4", res.Versions["timestamp"])
			}
			clients.CheckRepository(t, dir, readFile(t, filepath.Join(dir, "metadata/1.root.json")),
				map[string][]byte{"hello.txt": hello, "releases/app-1.0.tgz": app})

			// rootkeeper's own verify agrees, and so does status.
			rep, err := ceremony.Verify(dir, nil, time.Now())
			if err != nil || !rep.OK {
				t.Fatalf("verify: %v %+v", err, rep)
			}
		})
	}
}

// TestEveryAlgorithmAcceptedByClients: each algorithm signs every role of a
// repository (root included) that go-tuf and tuf-js both accept.
func TestEveryAlgorithmAcceptedByClients(t *testing.T) {
	algs := []hsm.Algorithm{hsm.ECDSAP256, hsm.ECDSAP384, hsm.Ed25519, hsm.RSA3072, hsm.RSA4096}
	if testing.Short() {
		algs = algs[:4]
	}
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			env := softhsm.NewTokens(t, "root", "online")
			s, _ := newSession(t)
			ctx := context.Background()
			for _, k := range []string{env.URI("root", "root"), env.URI("online", "targets"), env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
				generate(t, s, k, alg)
			}
			plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap"}
			plan.Roles.Root = role(1, "365d", env.URI("root", "root"))
			plan.Roles.Targets = role(1, "90d", env.URI("online", "targets"))
			plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
			plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
			dir := filepath.Join(t.TempDir(), "repo")
			if _, err := s.Init(ctx, plan, dir); err != nil {
				t.Fatalf("init: %v", err)
			}
			data := []byte("signed with " + string(alg) + "\n")
			if _, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "file.txt", Data: data}}); err != nil {
				t.Fatal(err)
			}
			root := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
			wantScheme := map[hsm.Algorithm]string{hsm.ECDSAP256: "ecdsa-sha2-nistp256", hsm.ECDSAP384: "ecdsa-sha2-nistp384", hsm.Ed25519: `"ed25519"`, hsm.RSA3072: "rsassa-pss-sha256", hsm.RSA4096: "rsassa-pss-sha256"}[alg]
			if !strings.Contains(string(root), wantScheme) {
				t.Errorf("root does not use scheme %s:\n%s", wantScheme, root)
			}
			clients.CheckRepository(t, dir, root, map[string][]byte{"file.txt": data})
		})
	}
}

// TestRootKeysOnOneDeviceRefused: naming one token by label and again by
// its serial does not get two root keys of one device past the ceremony.
func TestRootKeysOnOneDeviceRefused(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "online")
	s, _ := newSession(t)
	ctx := context.Background()
	info := generate(t, s, env.URI("root-a", "root"), hsm.ECDSAP256)
	byLabel := env.URI("root-a", "root2")
	generate(t, s, byLabel, hsm.ECDSAP256)
	for _, k := range []string{env.URI("online", "targets"), env.URI("online", "snapshot"), env.URI("online", "timestamp")} {
		generate(t, s, k, hsm.ECDSAP256)
	}
	bySerial := strings.Replace(byLabel, "token=root-a", "serial="+strings.TrimSpace(info.Evidence.TokenSerial), 1)
	plan := &ceremony.Plan{Version: 1, Ceremony: "bootstrap"}
	plan.Roles.Root = role(2, "365d", env.URI("root-a", "root"), bySerial)
	plan.Roles.Targets = role(1, "90d", env.URI("online", "targets"))
	plan.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
	plan.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
	if probs := plan.Validate(); len(probs) > 0 {
		t.Fatalf("the plan itself cannot tell (the URIs differ), so Validate must pass: %v", probs)
	}
	dir := filepath.Join(t.TempDir(), "repo")
	_, err := s.Init(ctx, plan, dir)
	var sd *ceremony.SameDeviceError
	if !errors.As(err, &sd) || !strings.Contains(err.Error(), "same device") {
		t.Fatalf("init with two root keys on one token: %v", err)
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Errorf("init left %s behind", dir)
	}
}
