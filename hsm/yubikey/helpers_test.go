package yubikey

import (
	"context"
	"crypto"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
)

// The tests run on emulated YubiKeys (softhsm-test/pivcard) behind the real
// pcscd: rootkeeper → piv-go → libpcsclite → pcscd → vpcd → emulator.

const testPIN = "246810"

// startCard inserts a card into vpcd slot 0 and holds slot 1's lock too:
// finding a card by serial looks into every reader, which must not disturb
// a test in another process.
func startCard(t *testing.T, cfg pivcard.Config) *pivcard.Card {
	t.Helper()
	c := pivcard.StartCard(t, cfg, 0)
	ctx, cancel := context.WithTimeout(context.Background(), pivcard.SlotWait)
	defer cancel()
	unlock, err := pivcard.LockSlot(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	return c
}

// notes records what the backend tells the officer.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) add(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, s)
}

func (n *notes) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.lines, "\n")
}

// secretFile writes a secret to a 0600 file and returns its path.
func secretFile(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testOptions are backend options trusting the card's test CA explicitly,
// as an officer passing --attestation-roots would.
func testOptions(c *pivcard.Card, n *notes) hsm.Options {
	o := hsm.Options{
		AttestationRoots:     c.CA().CertPool(),
		AttestationRootsName: Fingerprint(c.CA().Certificate()),
		Getenv:               func(string) string { return "" },
	}
	if n != nil {
		o.Notify = n.add
	}
	return o
}

func openBackend(t *testing.T, o hsm.Options) *Backend {
	t.Helper()
	b, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*Backend)
}

func mustURI(t *testing.T, s string) *hsm.URI {
	t.Helper()
	u, err := hsm.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// setUp runs Setup on the card with testPIN.
func setUp(t *testing.T, c *pivcard.Card) *SetupResult {
	t.Helper()
	res, err := Setup(context.Background(), testOptions(c, nil), SetupOptions{
		Serial:  c.Serial(),
		NewPIN:  func(context.Context, *DeviceInfo) ([]byte, error) { return []byte(testPIN), nil },
		Confirm: func(string) (bool, error) { return true, nil },
	})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	return res
}

// factoryKeyFile is a management-key-source holding the factory default,
// given explicitly (as an officer could for a throwaway device).
func factoryKeyFile(t *testing.T) string {
	return secretFile(t, "mgmt", hex.EncodeToString(piv.DefaultManagementKey))
}

func digest(h crypto.Hash, msg string) []byte {
	w := h.New()
	w.Write([]byte(msg))
	return w.Sum(nil)
}
