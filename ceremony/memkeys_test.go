package ceremony

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// memKeys is an in-memory Keystore for quick unit tests of planning and
// threshold logic: real ECDSA and Ed25519 keys, held in memory, beside
// the SoftHSM path (which the end-to-end and golden tests run). A key
// whose object is in absent is "not plugged in".
type memKeys struct {
	mu     sync.Mutex
	keys   map[string]*memKey // by URI object
	absent map[string]bool
	signs  map[string]int // signatures made, by object
}

type memKey struct {
	crypto.Signer
	uri string
	ks  *memKeys
}

func (k *memKey) Info() hsm.KeyInfo {
	alg, _ := hsm.AlgorithmOf(k.Public())
	return hsm.KeyInfo{URI: k.uri, Algorithm: alg, Public: k.Public(),
		Evidence: &hsm.Evidence{Kind: hsm.EvidencePKCS11, Local: true, NeverExtractable: true, AlwaysSensitive: true, Sensitive: true, TokenLabel: "mem"}}
}

func (k *memKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k.ks.mu.Lock()
	k.ks.signs[objectOf(k.uri)]++
	k.ks.mu.Unlock()
	return k.Signer.Sign(r, digest, opts)
}

func newMemKeys() *memKeys {
	return &memKeys{keys: map[string]*memKey{}, absent: map[string]bool{}, signs: map[string]int{}}
}

// add makes a key for uri (ECDSA P-256, or Ed25519 with ed).
func (m *memKeys) add(t testing.TB, uri string, ed bool) *memKey {
	t.Helper()
	var s crypto.Signer
	var err error
	if ed {
		_, s, err = ed25519.GenerateKey(rand.Reader)
	} else {
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	k := &memKey{Signer: s, uri: uri, ks: m}
	m.keys[objectOf(uri)] = k
	return k
}

func (m *memKeys) Signer(_ context.Context, uri string) (hsm.Signer, error) {
	obj := objectOf(uri)
	if m.absent[obj] {
		return nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: obj, Detail: "no token matches the URI"}
	}
	k, ok := m.keys[obj]
	if !ok {
		return nil, &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: obj, Detail: "no such key"}
	}
	return k, nil
}

func (m *memKeys) Attest(context.Context, string) (*hsm.Evidence, error) { return nil, nil }
func (m *memKeys) Close() error                                          { return nil }

var _ Keystore = (*memKeys)(nil)
