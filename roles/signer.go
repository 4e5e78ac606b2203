package roles

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Signer adapts a crypto.Signer (an HSM or YubiKey key) to sigstore's
// signature.Signer with the TUF scheme of its key: ECDSA P-256 over SHA-256,
// P-384 over SHA-384 (ASN.1 DER signatures), Ed25519 over the message, and
// RSASSA-PSS over SHA-256 with a salt as long as the hash.
type Signer struct {
	cs     crypto.Signer
	pub    crypto.PublicKey
	key    *metadata.Key
	id     string
	scheme *scheme
}

var _ signature.Signer = (*Signer)(nil)

// NewSigner wraps s. It fails if s's public key has no TUF scheme.
func NewSigner(s crypto.Signer) (*Signer, error) {
	if s == nil {
		return nil, errors.New("no signer")
	}
	pub := s.Public()
	key, err := PublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("signing key cannot be used for TUF: %w", err)
	}
	id, err := KeyID(key)
	if err != nil {
		return nil, err
	}
	sch, _ := schemeByName(key.Scheme)
	return &Signer{cs: s, pub: pub, key: key, id: id, scheme: sch}, nil
}

// Key returns the signer's TUF key. The caller must not modify it.
func (s *Signer) Key() *metadata.Key { return s.key }

// KeyID returns the signer's TUF key id.
func (s *Signer) KeyID() string { return s.id }

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return s.pub, nil
}

// SignMessage signs the message with the key's TUF scheme and checks the
// result against the public key before returning it. Options are ignored:
// the scheme is fixed by the key.
func (s *Signer) SignMessage(message io.Reader, _ ...signature.SignOption) ([]byte, error) {
	msg, err := io.ReadAll(message)
	if err != nil {
		return nil, fmt.Errorf("reading message to sign: %w", err)
	}
	sig, err := s.sign(msg)
	if err != nil {
		return nil, err
	}
	if err := verifySignature(s.key, msg, sig, true); err != nil {
		return nil, s.wrongKey(err)
	}
	return sig, nil
}

func (s *Signer) wrongKey(err error) error {
	return fmt.Errorf("signature by key %s does not verify: wrong key on the device? (%v)", s.id, err)
}

// sign asks the device for a signature and checks its encoding.
func (s *Signer) sign(msg []byte) ([]byte, error) {
	digest := msg
	var opts crypto.SignerOpts = crypto.Hash(0)
	if s.scheme.Hash != 0 {
		h := s.scheme.Hash.New()
		h.Write(msg)
		digest = h.Sum(nil)
		opts = s.scheme.Hash
	}
	if s.scheme.Scheme == metadata.KeySchemeRSASSA_PSS_SHA256 {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	sig, err := s.cs.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("the device refused or failed to sign with key %s: %w", s.id, err)
	}
	if err := checkEncoding(s.pub, sig); err != nil {
		return nil, fmt.Errorf("the device returned an unusable signature for key %s: %w", s.id, err)
	}
	return sig, nil
}

// checkEncoding checks the signature's format for the key, not its validity.
func checkEncoding(pub crypto.PublicKey, sig []byte) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		return checkDER(sig, p)
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("Ed25519 signature has %d bytes, want %d", len(sig), ed25519.SignatureSize)
		}
	case *rsa.PublicKey:
		if len(sig) != p.Size() {
			return fmt.Errorf("RSA signature has %d bytes, want %d", len(sig), p.Size())
		}
	}
	return nil
}

// checkDER requires a canonical ASN.1 DER ECDSA-Sig-Value. Raw r||s
// (IEEE P1363, as PKCS#11 returns it) is rejected: python-tuf and tuf-js
// accept only DER.
func checkDER(sig []byte, pub *ecdsa.PublicKey) error {
	var v struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &v)
	raw := fmt.Sprintf("%d-byte", len(sig))
	if pub != nil && pub.Curve != nil && len(sig) == 2*((pub.Curve.Params().BitSize+7)/8) {
		raw += " (looks like raw r||s)"
	}
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("ECDSA signature is not ASN.1 DER: got a %s value; the signer must return DER", raw)
	}
	if v.R.Sign() <= 0 || v.S.Sign() <= 0 {
		return errors.New("ECDSA signature has a zero or negative r or s")
	}
	if re, err := asn1.Marshal(v); err != nil || !bytes.Equal(re, sig) {
		return fmt.Errorf("ECDSA signature is not canonical ASN.1 DER (%s value)", raw)
	}
	return nil
}

// verifySignature checks sig over msg with a TUF key. ECDSA signatures must
// be DER. strictSalt requires an RSA-PSS salt as long as the hash (what
// Signer makes); otherwise any salt length is accepted, as clients do.
func verifySignature(k *metadata.Key, msg, sig []byte, strictSalt bool) error {
	pub, err := CryptoPublicKey(k)
	if err != nil {
		return err
	}
	sch, _ := schemeByName(k.Scheme)
	if err := checkEncoding(pub, sig); err != nil {
		return err
	}
	digest := msg
	if sch.Hash != 0 {
		h := sch.Hash.New()
		h.Write(msg)
		digest = h.Sum(nil)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("ECDSA signature is invalid")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(p, msg, sig) {
			return errors.New("Ed25519 signature is invalid")
		}
	case *rsa.PublicKey:
		salt := rsa.PSSSaltLengthAuto
		if strictSalt {
			salt = rsa.PSSSaltLengthEqualsHash
		}
		if err := rsa.VerifyPSS(p, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256}); err != nil {
			return errors.New("RSA-PSS signature is invalid")
		}
	}
	return nil
}

// VerifySignature checks one signature by key k over msg the way rootkeeper's
// Signer makes them: ECDSA in ASN.1 DER, RSA-PSS with a salt as long as the hash.
func VerifySignature(k *metadata.Key, msg, sig []byte) error {
	return verifySignature(k, msg, sig, true)
}

// SignPayload signs payload (canonical bytes of a role) and verifies the
// signature against the key at once.
func (s *Signer) SignPayload(payload []byte) ([]byte, error) { return s.SignPayloadIn(nil, payload) }

// SignPayloadIn is SignPayload whose verification of the new signature is
// remembered in c, the change's cache (Cache.VerifySignature); c may be nil.
func (s *Signer) SignPayloadIn(c *Cache, payload []byte) ([]byte, error) {
	sig, err := s.sign(payload)
	if err != nil {
		return nil, err
	}
	if err := c.VerifySignature(s.key, payload, sig); err != nil {
		return nil, s.wrongKey(err)
	}
	return sig, nil
}

// Sign signs md.Signed (canonical JSON) with s, verifies the new signature
// at once, replaces any older signature by the same key and appends it.
// Use it instead of go-tuf's Metadata.Sign, which drops the device's error
// and computes wrong key ids for P-384 keys.
func Sign[T metadata.Roles](md *metadata.Metadata[T], s *Signer) error {
	if md == nil {
		return errors.New("no metadata to sign")
	}
	if s == nil {
		return errors.New("no signer")
	}
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return fmt.Errorf("cannot encode metadata as canonical JSON: %w", err)
	}
	sig, err := s.sign(payload)
	if err != nil {
		return err
	}
	if err := verifySignature(s.key, payload, sig, true); err != nil {
		return s.wrongKey(err)
	}
	kept := make([]metadata.Signature, 0, len(md.Signatures)+1)
	for _, old := range md.Signatures {
		if old.KeyID != s.id {
			kept = append(kept, old)
		}
	}
	md.Signatures = append(kept, metadata.Signature{KeyID: s.id, Signature: sig})
	return nil
}

// laxVerify reports whether an ECDSA signature that is not DER verifies
// as raw r||s: go-tuf accepts that, python-tuf and tuf-js do not.
func laxVerify(pub any, k *metadata.Key, msg, sig []byte) bool {
	p, ok := pub.(*ecdsa.PublicKey)
	if !ok || checkDER(sig, p) == nil {
		return false
	}
	size := (p.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	sch, ok := schemeByName(k.Scheme)
	if !ok || sch.Hash == 0 {
		return false
	}
	h := sch.Hash.New()
	h.Write(msg)
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	return ecdsa.Verify(p, h.Sum(nil), r, s)
}
