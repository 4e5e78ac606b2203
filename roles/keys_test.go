package roles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// TestSchemes signs root metadata with every supported scheme and checks
// that go-tuf's client rules accept it and that the key ids recompute.
func TestSchemes(t *testing.T) {
	for _, tc := range []struct{ kind, keytype, scheme string }{
		{"p256", "ecdsa", "ecdsa-sha2-nistp256"},
		{"p384", "ecdsa", "ecdsa-sha2-nistp384"},
		{"ed25519", "ed25519", "ed25519"},
		{"rsa", "rsa", "rsassa-pss-sha256"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			s := newSigner(t, tc.kind)
			k := s.Key()
			if k.Type != tc.keytype || k.Scheme != tc.scheme {
				t.Fatalf("keytype/scheme = %s/%s, want %s/%s", k.Type, k.Scheme, tc.keytype, tc.scheme)
			}
			canon, err := cjson.EncodeCanonical(k)
			must(t, err)
			sum := sha256.Sum256(canon)
			if want := hex.EncodeToString(sum[:]); s.KeyID() != want {
				t.Fatalf("KeyID = %s, want sha256 of canonical key %s", s.KeyID(), want)
			}
			pub, err := CryptoPublicKey(k)
			must(t, err)
			if fp1, _ := fingerprint(pub); fp1 != mustFP(t, s) {
				t.Fatal("CryptoPublicKey does not give back the signer's key")
			}

			root := metadata.Root(time.Now().Add(day))
			for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
				root.Signed.Roles[role] = &metadata.Role{KeyIDs: []string{s.KeyID()}, Threshold: 1}
			}
			root.Signed.Keys[s.KeyID()] = k
			must(t, Sign(root, s))
			data, err := json.Marshal(root)
			must(t, err)
			tm, err := trustedmetadata.New(data)
			if err != nil {
				t.Fatalf("go-tuf rejects a root signed with %s: %v", tc.scheme, err)
			}
			// go-tuf parses the key back: its id must still recompute.
			for id, key := range tm.Root.Signed.Keys {
				if got, _ := KeyID(key); got != id {
					t.Fatalf("key id %s recomputes as %s after go-tuf parsing", id, got)
				}
			}
			if err := VerifySignature(k, mustCanon(t, root.Signed), root.Signatures[0].Signature); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mustFP(t *testing.T, s *Signer) string {
	pub, _ := s.PublicKey()
	fp, err := fingerprint(pub)
	must(t, err)
	return fp
}

func mustCanon(t testing.TB, v any) []byte {
	data, err := cjson.EncodeCanonical(v)
	must(t, err)
	return data
}

// TestP384NotMislabelled guards against go-tuf's KeyFromPublicKey, which
// calls every ECDSA key nistp256.
func TestP384NotMislabelled(t *testing.T) {
	priv := newKey(t, "p384").(*ecdsa.PrivateKey)
	theirs, err := metadata.KeyFromPublicKey(priv.Public())
	must(t, err)
	ours, err := PublicKey(priv.Public())
	must(t, err)
	if ours.Scheme != "ecdsa-sha2-nistp384" {
		t.Fatalf("scheme %s", ours.Scheme)
	}
	if theirs.Scheme == ours.Scheme {
		t.Skip("go-tuf fixed its P-384 labelling; the trap is gone")
	}
	if _, err := CryptoPublicKey(theirs); err == nil {
		t.Fatal("a P-384 key labelled ecdsa-sha2-nistp256 was accepted")
	}
}

func TestCryptoPublicKeyStrict(t *testing.T) {
	p256, _ := PublicKey(newKey(t, "p256").Public())
	p384, _ := PublicKey(newKey(t, "p384").Public())
	ed, _ := PublicKey(newKey(t, "ed25519").Public())
	rsaK, _ := PublicKey(newKey(t, "rsa").Public())
	mod := func(k *metadata.Key, f func(*metadata.Key)) *metadata.Key {
		c := copyKey(k)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name string
		key  *metadata.Key
		want string
	}{
		{"nistp256 scheme on P-384 key", mod(p384, func(k *metadata.Key) { k.Scheme = "ecdsa-sha2-nistp256" }), "curve P-384"},
		{"nistp384 scheme on P-256 key", mod(p256, func(k *metadata.Key) { k.Scheme = "ecdsa-sha2-nistp384" }), "curve P-256"},
		{"ecdsa scheme on RSA key", mod(rsaK, func(k *metadata.Key) { k.Scheme = "ecdsa-sha2-nistp256"; k.Type = "ecdsa" }), "RSA"},
		{"keytype mismatch", mod(p256, func(k *metadata.Key) { k.Type = "rsa" }), "keytype"},
		{"unknown scheme", mod(ed, func(k *metadata.Key) { k.Scheme = "ed448" }), "not supported"},
		{"short ed25519", mod(ed, func(k *metadata.Key) { k.Value.PublicKey = k.Value.PublicKey[:40] }), "bytes"},
		{"ed25519 not hex", mod(ed, func(k *metadata.Key) { k.Value.PublicKey = "zz" + k.Value.PublicKey[2:] }), "hex"},
		{"not PEM", mod(p256, func(k *metadata.Key) { k.Value.PublicKey = "hello" }), "PEM"},
		{"trailing data", mod(p256, func(k *metadata.Key) { k.Value.PublicKey += "junk" }), "after"},
		{"nil", nil, "no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CryptoPublicKey(tc.key)
			mustErr(t, err, tc.want)
		})
	}
	// The legacy keytype spelling is still readable.
	legacy := mod(p256, func(k *metadata.Key) { k.Type = "ecdsa-sha2-nistp256" })
	if _, err := CryptoPublicKey(legacy); err != nil {
		t.Fatal(err)
	}
}

func TestPublicKeyRejects(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	must(t, err)
	_, err = PublicKey(p521.Public())
	mustErr(t, err, "P-521 is not supported")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	must(t, err)
	_, err = PublicKey(small.Public())
	mustErr(t, err, "at least 2048")
	_, err = PublicKey("a string")
	mustErr(t, err, "not supported")
	_, err = NewSigner(p521)
	mustErr(t, err, "cannot be used for TUF")
}

func TestKeyIDIgnoresCachedID(t *testing.T) {
	k, err := metadata.KeyFromPublicKey(newKey(t, "p256").Public())
	must(t, err)
	cached, _ := k.ID() // go-tuf caches this
	k.Value.PublicKey = strings.Replace(k.Value.PublicKey, "\n", "\n\n", 1)
	fresh, err := KeyID(k)
	must(t, err)
	if fresh == cached {
		t.Fatal("KeyID returned go-tuf's stale cached id")
	}
}
