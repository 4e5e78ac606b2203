package roles

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// MinRSABits is the smallest RSA modulus accepted for a TUF key.
const MinRSABits = 2048

// scheme describes one TUF signature scheme and how rootkeeper writes and
// reads keys of that scheme.
type scheme struct {
	// Scheme is the TUF "scheme" string.
	Scheme string
	// KeyType is the "keytype" that PublicKey writes.
	KeyType string
	// ReadKeyTypes are the "keytype" values accepted when reading keys.
	ReadKeyTypes []string
	// Hash is the digest signed for this scheme (0 for Ed25519: the message itself).
	Hash crypto.Hash
	// Curve is the ECDSA curve, nil for other schemes.
	Curve elliptic.Curve
}

// schemes is THE one place that maps keys to TUF keytype/scheme strings.
//
// ECDSA keytype: TUF spec 1.0.x and python-tuf/securesystemslib write "ecdsa";
// older repositories wrote the scheme name as keytype. go-tuf v2.4.2 reads
// only "ecdsa" and "ecdsa-sha2-nistp256" as ECDSA keytypes (so a P-384 key
// with keytype "ecdsa-sha2-nistp384" is unusable for go-tuf clients).
// Before changing a KeyType here, check every client the repository serves
// (go-tuf, python-tuf, tuf-js): the key id is a hash over the keytype, so a
// change makes new key ids.
var schemes = []scheme{
	{
		Scheme:       metadata.KeySchemeECDSA_SHA2_P256,
		KeyType:      "ecdsa",
		ReadKeyTypes: []string{"ecdsa", "ecdsa-sha2-nistp256"},
		Hash:         crypto.SHA256,
		Curve:        elliptic.P256(),
	},
	{
		Scheme:       metadata.KeySchemeECDSA_SHA2_P384,
		KeyType:      "ecdsa",
		ReadKeyTypes: []string{"ecdsa", "ecdsa-sha2-nistp384"},
		Hash:         crypto.SHA384,
		Curve:        elliptic.P384(),
	},
	{
		Scheme:       metadata.KeySchemeEd25519,
		KeyType:      metadata.KeyTypeEd25519,
		ReadKeyTypes: []string{metadata.KeyTypeEd25519},
	},
	{
		Scheme:       metadata.KeySchemeRSASSA_PSS_SHA256,
		KeyType:      metadata.KeyTypeRSASSA_PSS_SHA256,
		ReadKeyTypes: []string{metadata.KeyTypeRSASSA_PSS_SHA256},
		Hash:         crypto.SHA256,
	},
}

func schemeByName(name string) (*scheme, bool) {
	for i := range schemes {
		if schemes[i].Scheme == name {
			return &schemes[i], true
		}
	}
	return nil, false
}

// schemeForPublic picks the scheme for a public key.
func schemeForPublic(pub crypto.PublicKey) (*scheme, error) {
	var name string
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p == nil || p.Curve == nil {
			return nil, errors.New("empty ECDSA public key")
		}
		for i := range schemes {
			if schemes[i].Curve != nil && sameCurve(schemes[i].Curve, p.Curve) {
				return &schemes[i], nil
			}
		}
		return nil, fmt.Errorf("ECDSA curve %s is not supported: use P-256 or P-384", p.Curve.Params().Name)
	case ed25519.PublicKey:
		name = metadata.KeySchemeEd25519
	case *ed25519.PublicKey:
		name = metadata.KeySchemeEd25519
	case *rsa.PublicKey:
		name = metadata.KeySchemeRSASSA_PSS_SHA256
	default:
		return nil, fmt.Errorf("public key type %T is not supported: use ECDSA P-256/P-384, Ed25519 or RSA", pub)
	}
	s, _ := schemeByName(name)
	return s, nil
}

// PublicKey converts a public key into a TUF key: ECDSA P-256 and P-384
// (PEM), Ed25519 (hex) or RSA of at least 2048 bits (PEM, RSASSA-PSS).
func PublicKey(pub crypto.PublicKey) (*metadata.Key, error) {
	s, err := schemeForPublic(pub)
	if err != nil {
		return nil, err
	}
	k := &metadata.Key{Type: s.KeyType, Scheme: s.Scheme}
	switch p := pub.(type) {
	case *ed25519.PublicKey:
		if p == nil {
			return nil, errors.New("empty Ed25519 public key")
		}
		pub = *p
	}
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key has %d bytes, want %d", len(p), ed25519.PublicKeySize)
		}
		k.Value.PublicKey = hex.EncodeToString(p)
		return k, nil
	case *rsa.PublicKey:
		if p == nil || p.N == nil {
			return nil, errors.New("empty RSA public key")
		}
		if p.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key has %d bits: TUF root keys need at least %d", p.N.BitLen(), MinRSABits)
		}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cannot encode public key: %w", err)
	}
	k.Value.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return k, nil
}

// KeyID computes a key's TUF key id, the hex SHA-256 of its canonical JSON.
// It always recomputes and never trusts an id stored with the key.
func KeyID(k *metadata.Key) (string, error) {
	if k == nil {
		return "", errors.New("no key")
	}
	data, err := cjson.EncodeCanonical(k)
	if err != nil {
		return "", fmt.Errorf("cannot encode key as canonical JSON: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// CryptoPublicKey decodes a TUF key. It is strict: keytype, scheme and the
// key material (curve, size) must agree.
func CryptoPublicKey(k *metadata.Key) (crypto.PublicKey, error) {
	if k == nil {
		return nil, errors.New("no key")
	}
	s, ok := schemeByName(k.Scheme)
	if !ok {
		return nil, fmt.Errorf("scheme %q is not supported (supported: %s)", k.Scheme, supportedSchemes())
	}
	if !slices.Contains(s.ReadKeyTypes, k.Type) {
		return nil, fmt.Errorf("keytype %q does not go with scheme %q (want %q)", k.Type, k.Scheme, s.KeyType)
	}
	if s.Scheme == metadata.KeySchemeEd25519 {
		b, err := hex.DecodeString(k.Value.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("Ed25519 key is not hex: %w", err)
		}
		if len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key has %d bytes, want %d", len(b), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(b), nil
	}
	block, rest := pem.Decode([]byte(k.Value.PublicKey))
	if block == nil {
		return nil, fmt.Errorf("%s key is not PEM", k.Scheme)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s key is a PEM %q block, want \"PUBLIC KEY\"", k.Scheme, block.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s key has data after its PEM block", k.Scheme)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", k.Scheme, err)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if s.Curve == nil {
			return nil, fmt.Errorf("scheme %q but the key is ECDSA", k.Scheme)
		}
		if !sameCurve(p.Curve, s.Curve) {
			return nil, fmt.Errorf("scheme %q but the key is on curve %s", k.Scheme, p.Curve.Params().Name)
		}
		return p, nil
	case *rsa.PublicKey:
		if s.Scheme != metadata.KeySchemeRSASSA_PSS_SHA256 {
			return nil, fmt.Errorf("scheme %q but the key is RSA", k.Scheme)
		}
		if p.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, want at least %d", p.N.BitLen(), MinRSABits)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("scheme %q but the key is %T", k.Scheme, pub)
	}
}

func supportedSchemes() string {
	var b bytes.Buffer
	for i, s := range schemes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.Scheme)
	}
	return b.String()
}

// fingerprint identifies the key material regardless of keytype spelling.
func fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// short abbreviates a key id for messages.
func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}

func sameCurve(a, b elliptic.Curve) bool {
	if a == nil || b == nil {
		return false
	}
	return a == b || a.Params().Name == b.Params().Name
}
