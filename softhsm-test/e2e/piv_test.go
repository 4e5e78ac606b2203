package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/hsm/yubikey"
	"github.com/rootkeeper/rootkeeper/softhsm-test/clients"
	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// The YubiKey ceremonies run on two emulated YubiKeys (softhsm-test/pivcard)
// in the two vpcd slots, behind the real pcscd, with one attestation test CA
// that the officer trusts explicitly, as --attestation-roots does.

const ykPIN = "135790"

// pivUI records what a ceremony tells the officer; onProgress, when set,
// sees every progress line first (to pull a card out at the right moment).
type pivUI struct {
	mu         sync.Mutex
	lines      []string
	onProgress func(string)
}

func (u *pivUI) Confirm(summary string) (bool, error) {
	u.add(summary)
	return true, nil
}

func (u *pivUI) Progress(msg string) {
	if u.onProgress != nil {
		u.onProgress(msg)
	}
	u.add(msg)
}

func (u *pivUI) add(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lines = append(u.lines, s)
}

func (u *pivUI) text() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.lines, "\n")
}

// pivSession is a ceremony session whose keyring trusts roots (nil:
// Yubico's only) and whose device messages go to the UI.
func pivSession(t *testing.T, ca *pivcard.CA) (*ceremony.Session, *pivUI) {
	ui := &pivUI{}
	o := hsm.Options{Notify: ui.add, Getenv: func(k string) string {
		if k == yubikey.WaitEnv {
			return "0"
		}
		return os.Getenv(k)
	}}
	if ca != nil {
		o.AttestationRoots, o.AttestationRootsName = ca.CertPool(), yubikey.Fingerprint(ca.Certificate())
	}
	s := &ceremony.Session{Keys: hsm.NewKeyring(o), UI: ui}
	t.Cleanup(func() { s.Close() })
	return s, ui
}

// treeHash hashes every file under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		h := sha256.Sum256(data)
		lines = append(lines, p+" "+hex.EncodeToString(h[:]))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(h[:])
}

// TestYubiKeyCeremonies: root 2-of-3 on two YubiKeys and a SoftHSM token,
// accepted by go-tuf and tuf-js; every YubiKey algorithm alone signing root;
// the stored attestation re-checked; a weaker PIN policy, an unknown
// attestation root and a card pulled out mid-ceremony refused.
func TestYubiKeyCeremonies(t *testing.T) {
	ca, err := pivcard.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cardA := pivcard.StartCard(t, pivcard.Config{Serial: 42000001, CA: ca}, 0)
	cardB := pivcard.StartCard(t, pivcard.Config{Serial: 42000002, CA: ca}, 1)
	env := softhsm.NewTokens(t, "root-c", "online")
	ctx := context.Background()
	pinFile := filepath.Join(t.TempDir(), "yk.pin")
	if err := os.WriteFile(pinFile, []byte(ykPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := hsm.Options{AttestationRoots: ca.CertPool(), AttestationRootsName: yubikey.Fingerprint(ca.Certificate())}
	for _, c := range []*pivcard.Card{cardA, cardB} {
		if _, err := yubikey.Setup(ctx, opts, yubikey.SetupOptions{Serial: c.Serial(),
			NewPIN:  func(context.Context, *yubikey.DeviceInfo) ([]byte, error) { return []byte(ykPIN), nil },
			Confirm: func(string) (bool, error) { return true, nil }}); err != nil {
			t.Fatal(err)
		}
	}
	yk := func(c *pivcard.Card, slot string) string {
		return fmt.Sprintf("yubikey:serial=%d;slot=%s?pin-source=%s", c.Serial(), slot, pinFile)
	}
	// A key with PIN policy never, which rootkeeper itself would not make.
	func() {
		y := cardB.Open(t)
		defer y.Close()
		mk, _ := cardB.ManagementKey()
		slot, _ := piv.RetiredKeyManagementSlot(0x8a)
		if _, err := y.GenerateKey(mk, slot, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever}); err != nil {
			t.Fatal(err)
		}
	}()

	gen, _ := pivSession(t, ca)
	for _, k := range []struct {
		uri        string
		alg        hsm.Algorithm
		pin, touch string
	}{
		{yk(cardA, "9c"), hsm.ECDSAP256, "always", "always"},
		{yk(cardB, "9c"), hsm.Ed25519, "always", "cached"},
		{yk(cardA, "82"), hsm.ECDSAP256, "once", "never"}, // targets: the card pulled out below
		{yk(cardA, "83"), hsm.ECDSAP384, "always", "always"},
		{yk(cardA, "84"), hsm.Ed25519, "always", "always"},
	} {
		info, err := gen.Keys.(*hsm.Keyring).Generate(ctx, k.uri, hsm.GenerateOptions{Algorithm: k.alg, PINPolicy: k.pin, TouchPolicy: k.touch})
		if err != nil {
			t.Fatalf("generate %s: %v", k.uri, err)
		}
		if !info.Evidence.HardwareBorn() {
			t.Fatalf("%s: %s", k.uri, info.Evidence.Summary())
		}
	}
	generate(t, gen, env.URI("root-c", "root"), hsm.ECDSAP256)
	for _, o := range []string{"snapshot", "timestamp"} {
		generate(t, gen, env.URI("online", o), hsm.ECDSAP256)
	}
	gen.Close()

	rootPlan := func(keys ...string) *ceremony.Plan {
		p := &ceremony.Plan{Version: 1, Ceremony: "bootstrap", Repository: "yubikeys"}
		p.Roles.Root = role(1, "365d", keys...)
		p.Roles.Root.KeyPolicy = ceremony.KeyPolicy{PINPolicy: "always", TouchPolicy: "cached"}
		p.Roles.Targets = role(1, "90d", yk(cardA, "82"))
		p.Roles.Snapshot = role(1, "21d", env.URI("online", "snapshot"))
		p.Roles.Timestamp = role(1, "7d", env.URI("online", "timestamp"))
		if probs := p.Validate(); len(probs) > 0 {
			t.Fatal(probs)
		}
		return p
	}

	dir := filepath.Join(t.TempDir(), "repo")
	t.Run("root 2-of-3 on two YubiKeys and SoftHSM", func(t *testing.T) {
		s, ui := pivSession(t, ca)
		plan := rootPlan(yk(cardA, "9c"), yk(cardB, "9c"), env.URI("root-c", "root"))
		plan.Roles.Root.Threshold = 2
		before := cardA.Stats()
		if _, err := s.Init(ctx, plan, dir); err != nil {
			t.Fatalf("init: %v", err)
		}
		if !strings.Contains(ui.text(), "touch YubiKey serial 42000001 now to sign with slot 9c") {
			t.Errorf("the officer was not told to touch:\n%s", ui.text())
		}
		if n := cardA.Stats().Touches - before.Touches; n < 1 {
			t.Errorf("%d touches on card A", n)
		}
		data := []byte("released with YubiKeys\n")
		if _, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "file.txt", Data: data}}); err != nil {
			t.Fatal(err)
		}
		root := readFile(t, filepath.Join(dir, "metadata/1.root.json"))
		clients.CheckRepository(t, dir, root, map[string][]byte{"file.txt": data})
		s.Close()

		// The stored evidence, re-checked as verify and status do.
		rep, err := ceremony.CheckStoredEvidence(dir, s.Keys.(*hsm.Keyring))
		if err != nil || !rep.OK() || len(rep.Warnings) != 0 || len(rep.Checks) != 6 {
			t.Fatalf("evidence re-check: %v %+v", err, rep)
		}
		noRoots, _ := pivSession(t, nil)
		rep, _ = ceremony.CheckStoredEvidence(dir, noRoots.Keys.(*hsm.Keyring))
		if !rep.OK() || len(rep.Warnings) != 3 || !strings.Contains(rep.Warnings[0], "--attestation-roots") {
			t.Fatalf("re-check without the explicit root: %+v", rep)
		}
		// A record whose evidence belongs to another key, or was edited.
		records := map[string]*ceremony.KeyRecord{}
		files, _ := filepath.Glob(filepath.Join(dir, "keys", "*.json"))
		for _, f := range files {
			var rec ceremony.KeyRecord
			if err := json.Unmarshal(readFile(t, f), &rec); err != nil {
				t.Fatal(err)
			}
			records[rec.URI] = &rec
		}
		a9c, b9c := records[strings.Split(yk(cardA, "9c"), "?")[0]], records[strings.Split(yk(cardB, "9c"), "?")[0]]
		if a9c == nil || b9c == nil {
			t.Fatalf("no key records for the root YubiKeys: %v", files)
		}
		for name, change := range map[string]func(r *ceremony.KeyRecord){
			"the attestation certifies key":      func(r *ceremony.KeyRecord) { r.Evidence = b9c.Evidence },
			"records pin_policy \"never\"":       func(r *ceremony.KeyRecord) { r.Evidence.PINPolicy = "never" },
			"records serial \"42000009\"":        func(r *ceremony.KeyRecord) { r.Evidence.Serial = 42000009 },
			"the recorded public key has key id": func(r *ceremony.KeyRecord) { r.KeyID = strings.Repeat("ab", 32) },
		} {
			rec := *a9c
			ev := *a9c.Evidence
			rec.Evidence = &ev
			change(&rec)
			path := filepath.Join(dir, "keys", a9c.KeyID+".json")
			if rec.KeyID != a9c.KeyID {
				path = filepath.Join(dir, "keys", rec.KeyID+".json")
			}
			data, _ := json.Marshal(rec)
			orig := readFile(t, filepath.Join(dir, "keys", a9c.KeyID+".json"))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := ceremony.CheckStoredEvidence(dir, s.Keys.(*hsm.Keyring))
			if err != nil || rep.OK() || !strings.Contains(rep.Problems[0].Detail, name) {
				t.Errorf("%s: %v %+v", name, err, rep)
			}
			os.WriteFile(filepath.Join(dir, "keys", a9c.KeyID+".json"), orig, 0o644)
			if path != filepath.Join(dir, "keys", a9c.KeyID+".json") {
				os.Remove(path)
			}
		}
	})

	t.Run("card removed mid-ceremony", func(t *testing.T) {
		if _, err := os.Stat(dir); err != nil {
			t.Skip("needs the repository of the previous subtest")
		}
		s, ui := pivSession(t, ca)
		want := treeHash(t, dir)
		ui.onProgress = func(msg string) {
			if strings.HasPrefix(msg, "signing targets") {
				cardA.Remove()
			}
		}
		_, err := s.AddTargets(ctx, dir, "targets", []ceremony.TargetInput{{Name: "other.txt", Data: []byte("never published\n")}})
		if !errors.Is(err, hsm.ErrTokenNotPresent) || !strings.Contains(err.Error(), "YubiKey serial 42000001") {
			t.Fatalf("card removed: %v", err)
		}
		if !strings.Contains(hsm.HintOf(err), "reinsert") {
			t.Errorf("hint: %q", hsm.HintOf(err))
		}
		if got := treeHash(t, dir); got != want {
			t.Fatal("the repository changed")
		}
		s.Close()
		cardA.Reinsert(t)
	})

	t.Run("each YubiKey algorithm signs root", func(t *testing.T) {
		for _, slot := range []string{"9c", "83", "84"} { // P-256, P-384, Ed25519
			s, _ := pivSession(t, ca)
			d := filepath.Join(t.TempDir(), slot)
			if _, err := s.Init(ctx, rootPlan(yk(cardA, slot)), d); err != nil {
				t.Fatalf("init with slot %s: %v", slot, err)
			}
			s.Close()
			root := readFile(t, filepath.Join(d, "metadata/1.root.json"))
			clients.CheckRepository(t, d, root, nil)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// PIN policy never where the plan requires always.
		s, _ := pivSession(t, ca)
		d := filepath.Join(t.TempDir(), "never")
		_, err := s.Init(ctx, rootPlan(yk(cardB, "8a")), d)
		var pe *ceremony.PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "requires PIN policy always, but the key's attestation says PIN policy never") {
			t.Fatalf("PIN policy never: %v", err)
		}
		s.Close()
		// The test CA is not Yubico's: without --attestation-roots the key is refused.
		s, _ = pivSession(t, nil)
		_, err = s.Init(ctx, rootPlan(yk(cardA, "9c")), d)
		if !errors.Is(err, yubikey.ErrAttestation) || !strings.Contains(err.Error(), "does not chain to Yubico's PIV attestation roots") {
			t.Fatalf("unknown root: %v", err)
		}
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("a refused init left %s behind", d)
		}
	})
}
