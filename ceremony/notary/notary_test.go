package notary

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The collections these tests read are made by Notary's own Go library
// (v0.7.0) through softhsm-test/notary's fixture generator, built once per
// test run in its own module.

var fixtureBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "notary-fixture-")
	if err != nil {
		panic(err)
	}
	fixtureBin = filepath.Join(dir, "notary-fixture")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var built error

func generator(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(fixtureBin); err != nil && built == nil {
		goBin, lerr := exec.LookPath("go")
		if lerr != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goBin, "build", "-C", "../../softhsm-test/notary", "-o", fixtureBin, "./cmd/notary-fixture").CombinedOutput()
		if err != nil {
			built = errors.New(string(out))
		}
	}
	if built != nil {
		t.Fatalf("building the fixture generator: %v", built)
	}
	return fixtureBin
}

type fixture struct {
	GUN         string   `json:"gun"`
	RootCertIDs []string `json:"root_cert_ids"`
	RootKeyIDs  []string `json:"root_canonical_ids"`
	RootCert    string   `json:"root_cert_file"`
	Targets     map[string]map[string]struct {
		Length int64  `json:"length"`
		SHA256 string `json:"sha256"`
	} `json:"targets"`
	dir string
}

func makeFixture(t *testing.T, args ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(generator(t), append([]string{"make", "-trust-dir", dir}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("notary-fixture %v: %v\n%s", args, err, err.(*exec.ExitError).Stderr)
	}
	f := &fixture{dir: dir}
	if err := json.Unmarshal(out, f); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) cert(t *testing.T) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(f.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) read(pin Pin) (*Collection, error) {
	return Read(context.Background(), Options{GUN: f.GUN, Source: &TrustDir{Dir: f.dir, GUN: f.GUN}, Pin: pin})
}

func TestReadEveryKeyType(t *testing.T) {
	for _, algs := range [][3]string{{"ecdsa", "ecdsa", "ed25519"}, {"rsa", "rsa", "ecdsa"}, {"ecdsa", "ed25519", "rsa"}} {
		t.Run(strings.Join(algs[:], "-"), func(t *testing.T) {
			f := makeFixture(t, "-gun", "registry.example.org/library/app", "-root-alg", algs[0], "-targets-alg", algs[1], "-releases-alg", algs[2],
				"-target", "latest="+strings.Repeat("ab", 32)+":1234", "-release", "v1.2="+strings.Repeat("cd", 32)+":2345",
				"-release", "v1.3="+strings.Repeat("ef", 32)+":3456")
			c, err := f.read(Pin{Certs: []*x509.Certificate{f.cert(t)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Roles) != 2 || c.Roles[0].Name != "targets" || c.Roles[1].Name != "targets/releases" {
				t.Fatalf("roles %+v", c.Roles)
			}
			rel := c.Roles[1].Targets
			if len(rel) != 2 || rel["v1.2"].Length != 2345 || rel["v1.2"].Hashes["sha256"][0] != 0xcd {
				t.Errorf("targets/releases targets %+v", rel)
			}
			if c.Roles[0].Targets["latest"].Length != 1234 {
				t.Errorf("targets %+v", c.Roles[0].Targets)
			}
			if c.RootVersion != 1 || c.ChainFrom != 1 || len(c.PinnedCertIDs) != 1 || c.PinnedCertIDs[0] != f.RootCertIDs[0] {
				t.Errorf("root v%d from v%d, pinned %v, want %v", c.RootVersion, c.ChainFrom, c.PinnedCertIDs, f.RootCertIDs)
			}
			// The same by certificate id.
			if _, err := f.read(Pin{CertIDs: f.RootCertIDs}); err != nil {
				t.Errorf("pinned by certificate id: %v", err)
			}
		})
	}
}

// TestKeyIDs recomputes every key id of a collection Notary wrote: the ids
// in root.json are Notary's own.
func TestKeyIDs(t *testing.T) {
	f := makeFixture(t, "-gun", "example.com/app", "-root-alg", "rsa", "-targets-alg", "rsa")
	raw, err := os.ReadFile(filepath.Join(f.dir, "tuf", "example.com/app", "metadata", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := parseEnvelope("root", raw)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := parseRoot(e.Signed)
	if err != nil {
		t.Fatal(err)
	}
	for id, k := range rt.Keys {
		if k.id() != id {
			t.Errorf("%s key %s: recomputed %s", k.Type, id, k.id())
		}
	}
	ck, err := parseCertKey(rt.Keys[f.RootCertIDs[0]])
	if err != nil {
		t.Fatal(err)
	}
	if got := canonicalID(ck.leaf); got != f.RootKeyIDs[0] {
		t.Errorf("canonical root key id %s, notary says %s", got, f.RootKeyIDs[0])
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct{ variant, want string }{
		{"bad-signature", "targets/releases: 0 of 1 required valid signatures"},
		{"wrong-cn", `root v1: no valid root certificate for example.com/app: `},
		{"expired-cert", "is expired or not yet valid"},
		{"expired", "targets: expired at "},
		{"threshold", "targets: 1 of 2 required valid signatures"},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			f := makeFixture(t, "-gun", "example.com/app", "-variant", tc.variant)
			_, err := f.read(Pin{Certs: []*x509.Certificate{f.cert(t)}})
			var ne *Error
			if !errors.As(err, &ne) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a *notary.Error with %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "the Notary collection example.com/app does not verify: ") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestRefusedTampered(t *testing.T) {
	f := makeFixture(t, "-gun", "example.com/app")
	pin := Pin{Certs: []*x509.Certificate{f.cert(t)}}
	meta := filepath.Join(f.dir, "tuf", "example.com/app", "metadata")
	for _, tc := range []struct{ file, old, new, want string }{
		{"targets/releases.json", `"length":2345`, `"length":2346`, "targets/releases: its sha256 checksum is not the one the parent metadata lists"},
		{"root.json", `"Root"`, `"root"`, `root: expected type Root, not "root"`},
		{"snapshot.json", `"version":1`, `"version":2`, "snapshot: its sha256 checksum"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p := filepath.Join(meta, tc.file)
			orig, _ := os.ReadFile(p)
			defer os.WriteFile(p, orig, 0o644)
			if !strings.Contains(string(orig), tc.old) {
				t.Fatalf("%s has no %s", tc.file, tc.old)
			}
			os.WriteFile(p, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o644)
			if _, err := f.read(pin); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := f.read(pin); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

func TestPins(t *testing.T) {
	f := makeFixture(t, "-gun", "example.com/app")
	other := makeFixture(t, "-gun", "example.com/app")
	_, err := f.read(Pin{Certs: []*x509.Certificate{other.cert(t)}})
	if err == nil || !strings.Contains(err.Error(), "the pinned root certificate is in no root version (the trust directory holds only the current root, v1); its root certificates are "+f.RootCertIDs[0]) {
		t.Fatalf("another certificate: %v", err)
	}
	_, err = f.read(Pin{CertIDs: f.RootKeyIDs})
	var ne *Error
	if !errors.As(err, &ne) || !strings.Contains(ne.Hint(), "is the root key's canonical id (notary key list); Notary pins the certificate id: --root-cert-id "+f.RootCertIDs[0]) {
		t.Fatalf("canonical id: %v (hint %q)", err, ne.Hint())
	}
	wild, err := Read(context.Background(), Options{GUN: "example.com/app", Source: &TrustDir{Dir: f.dir, GUN: "example.com/app"}, Pin: Pin{CertIDs: f.RootCertIDs}, At: time.Now().Add(400 * 24 * time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a year and more later: %v %v", wild, err)
	}
}

func TestMatchCN(t *testing.T) {
	for _, tc := range []struct {
		cn, gun string
		ok      bool
	}{
		{"example.com/app", "example.com/app", true},
		{"example.com/*", "example.com/app", true},
		{"example.com/app", "example.com/app2", false},
		{"example.org/*", "example.com/app", false},
	} {
		if got := matchCN(tc.cn, tc.gun); got != tc.ok {
			t.Errorf("matchCN(%q, %q) = %t", tc.cn, tc.gun, got)
		}
	}
	for _, gun := range []string{"../x", "a/../b", "/abs", "a//b", "a b", ""} {
		if CheckGUN(gun) == nil {
			t.Errorf("CheckGUN(%q) accepted", gun)
		}
	}
}
