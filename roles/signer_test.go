package roles

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestSignCatchesBrokenDevices(t *testing.T) {
	p256 := newKey(t, "p256")
	p384 := newKey(t, "p384")
	ed := newKey(t, "ed25519")
	other := newKey(t, "p256")
	for _, tc := range []struct {
		name string
		dev  *fakeSigner
		want string
	}{
		{"device error", &fakeSigner{Signer: p256, err: errDevice}, "PIN blocked"},
		{"raw r||s P-256", &fakeSigner{Signer: p256, mangle: rawRS(32)}, "not ASN.1 DER"},
		{"raw r||s P-384", &fakeSigner{Signer: p384, mangle: rawRS(48)}, "looks like raw r||s"},
		{"garbage", &fakeSigner{Signer: p256, mangle: func([]byte) []byte { return []byte("nope") }}, "not ASN.1 DER"},
		{"flipped ed25519", &fakeSigner{Signer: ed, mangle: func(s []byte) []byte { s[5] ^= 1; return s }}, "does not verify: wrong key on the device?"},
		{"short ed25519", &fakeSigner{Signer: ed, mangle: func(s []byte) []byte { return s[:32] }}, "64"},
		{"wrong key on device", &fakeSigner{Signer: other, pub: p256.Public()}, "does not verify: wrong key on the device?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSigner(tc.dev)
			must(t, err)
			md := metadata.Targets(time.Now().Add(day))
			err = Sign(md, s)
			mustErr(t, err, tc.want)
			if len(md.Signatures) != 0 {
				t.Fatal("a failed signature was added")
			}
			_, err = s.SignMessage(bytes.NewReader([]byte("x")))
			if err == nil {
				t.Fatal("SignMessage accepted the broken signature")
			}
		})
	}
}

func TestSignReplacesOwnSignature(t *testing.T) {
	a, b := newSigner(t, "p256"), newSigner(t, "rsa")
	md := metadata.Targets(time.Now().Add(day))
	must(t, Sign(md, a))
	must(t, Sign(md, b))
	must(t, Sign(md, a))
	if len(md.Signatures) != 2 {
		t.Fatalf("%d signatures, want 2", len(md.Signatures))
	}
	if md.Signatures[1].KeyID != a.KeyID() {
		t.Fatal("the new signature was not appended last")
	}
}

// TestSignerIsSigstoreSigner checks the adapter against sigstore's own verifiers.
func TestSignerIsSigstoreSigner(t *testing.T) {
	var _ signature.Signer = newSigner(t, "ed25519")
	for _, kind := range []string{"p256", "p384", "ed25519"} {
		s := newSigner(t, kind)
		msg := []byte("payload")
		sig, err := s.SignMessage(bytes.NewReader(msg))
		must(t, err)
		pub, _ := s.PublicKey()
		var v signature.Verifier
		switch p := pub.(type) {
		case *ecdsa.PublicKey:
			v, err = signature.LoadECDSAVerifier(p, s.scheme.Hash)
		case ed25519.PublicKey:
			v, err = signature.LoadED25519Verifier(p)
		}
		must(t, err)
		must(t, v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)))
	}
}
