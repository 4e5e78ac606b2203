package roles

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RSA key generation is slow: one key per test binary.
var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func testRSAKey(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// newKey makes a software key of kind "p256", "p384", "ed25519" or "rsa".
func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	switch kind {
	case "p256", "p384":
		c := elliptic.P256()
		if kind == "p384" {
			c = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "rsa":
		return testRSAKey(t)
	}
	t.Fatalf("unknown key kind %q", kind)
	return nil
}

func newSigner(t testing.TB, kind string) *Signer {
	t.Helper()
	s, err := NewSigner(newKey(t, kind))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeSigner misbehaves like broken hardware.
type fakeSigner struct {
	crypto.Signer
	pub    crypto.PublicKey // if set, claimed instead of the real key
	err    error
	mangle func(sig []byte) []byte
}

func (f *fakeSigner) Public() crypto.PublicKey {
	if f.pub != nil {
		return f.pub
	}
	return f.Signer.Public()
}

func (f *fakeSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	sig, err := f.Signer.Sign(r, digest, opts)
	if err != nil || f.mangle == nil {
		return sig, err
	}
	return f.mangle(sig), nil
}

// rawRS re-encodes an ECDSA DER signature as raw r||s, like PKCS#11 does.
func rawRS(size int) func([]byte) []byte {
	return func(der []byte) []byte {
		var v struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &v); err != nil {
			panic(err)
		}
		out := make([]byte, 2*size)
		v.R.FillBytes(out[:size])
		v.S.FillBytes(out[size:])
		return out
	}
}

// testRepo is a repository with its officers' signers.
type testRepo struct {
	*Repo
	root      []*Signer
	targets   *Signer
	snapshot  *Signer
	timestamp *Signer
	releases  *Signer
}

var day = 24 * time.Hour

// newTestRepo makes a fully signed repository: root 2-of-2 (P-256 +
// Ed25519), targets P-384, snapshot Ed25519, timestamp P-256, and a
// delegated role "releases" (Ed25519) for releases/*.
func newTestRepo(t testing.TB, consistent bool) *testRepo {
	t.Helper()
	tr := &testRepo{
		root:      []*Signer{newSigner(t, "p256"), newSigner(t, "ed25519")},
		targets:   newSigner(t, "p384"),
		snapshot:  newSigner(t, "ed25519"),
		timestamp: newSigner(t, "p256"),
		releases:  newSigner(t, "ed25519"),
	}
	now := time.Now()
	r, err := New(Bootstrap{
		Root:      RoleKeys{Keys: []*metadata.Key{tr.root[0].Key(), tr.root[1].Key()}, Threshold: 2},
		Targets:   RoleKeys{Keys: []*metadata.Key{tr.targets.Key()}, Threshold: 1},
		Snapshot:  RoleKeys{Keys: []*metadata.Key{tr.snapshot.Key()}, Threshold: 1},
		Timestamp: RoleKeys{Keys: []*metadata.Key{tr.timestamp.Key()}, Threshold: 1},
		Expires: map[string]time.Time{
			"root": now.Add(365 * day), "targets": now.Add(90 * day),
			"snapshot": now.Add(30 * day), "timestamp": now.Add(day),
		},
		ConsistentSnapshot: consistent,
		Delegations: []Delegation{{
			Name: "releases", Keys: []*metadata.Key{tr.releases.Key()}, Threshold: 1, Paths: []string{"releases/*"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.Repo = r
	must(t, r.AddTarget("targets", "readme.txt", []byte("hello")))
	must(t, r.AddTarget("releases", "releases/app-1.0.tar.gz", []byte("app 1.0")))
	tr.signAll(t)
	return tr
}

// signAll signs whatever is unsigned, bottom-up, and refreshes snapshot
// and timestamp.
func (tr *testRepo) signAll(t testing.TB) {
	t.Helper()
	if len(tr.Root().Signatures) == 0 {
		for _, s := range tr.root {
			must(t, Sign(tr.Root(), s))
		}
	}
	if len(tr.Targets.Signatures) == 0 {
		must(t, Sign(tr.Targets, tr.targets))
	}
	if d := tr.Delegated["releases"]; d != nil && len(d.Signatures) == 0 {
		must(t, Sign(d, tr.releases))
	}
	must(t, tr.UpdateSnapshot(time.Now().Add(30*day)))
	must(t, Sign(tr.Snapshot, tr.snapshot))
	must(t, tr.UpdateTimestamp(time.Now().Add(day)))
	must(t, Sign(tr.Timestamp, tr.timestamp))
}

// fsOf lays files out in memory, with target files.
func fsOf(t testing.TB, r *Repo, targets map[string][]byte) fstest.MapFS {
	t.Helper()
	files, err := r.Files()
	if err != nil {
		t.Fatal(err)
	}
	m := fstest.MapFS{}
	for _, f := range files {
		m[f.Path] = &fstest.MapFile{Data: f.Data}
	}
	for p, data := range targets {
		role := "targets"
		if strings.HasPrefix(p, "releases/") {
			role = "releases"
		}
		md, err := r.targetsRole(role)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range TargetFilePaths(p, md.Signed.Targets[p], r.consistent()) {
			m[name] = &fstest.MapFile{Data: data}
		}
	}
	return m
}

var testTargets = map[string][]byte{
	"readme.txt":              []byte("hello"),
	"releases/app-1.0.tar.gz": []byte("app 1.0"),
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustErr(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

var errDevice = errors.New("PIN blocked")

// verifyOK fails the test if fsys does not verify cleanly.
func verifyOK(t testing.TB, fsys fstest.MapFS, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(fsys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		for _, p := range rep.Problems {
			t.Errorf("problem: %s [%s %s %s]", p, p.Role, p.File, p.Rule)
		}
		t.FailNow()
	}
	return rep
}

// problem returns the first problem with rule whose detail contains want.
func findProblem(rep *Report, rule, want string) *Problem {
	for i, p := range rep.Problems {
		if p.Rule == rule && strings.Contains(p.Detail, want) {
			return &rep.Problems[i]
		}
	}
	return nil
}

func wantProblem(t testing.TB, rep *Report, rule, want string) {
	t.Helper()
	if rep.OK {
		t.Fatalf("report OK, want a %s problem containing %q", rule, want)
	}
	if findProblem(rep, rule, want) == nil {
		for _, p := range rep.Problems {
			t.Logf("problem: %s [%s %s %s]", p, p.Role, p.File, p.Rule)
		}
		t.Fatalf("no %s problem containing %q", rule, want)
	}
}
