package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"strings"
)

// Algorithm is a key algorithm rootkeeper generates and signs with.
type Algorithm string

// The algorithms rootkeeper supports. Each maps to exactly one TUF signing
// scheme (see package roles).
const (
	ECDSAP256 Algorithm = "ecdsa-p256" // ecdsa-sha2-nistp256
	ECDSAP384 Algorithm = "ecdsa-p384" // ecdsa-sha2-nistp384
	Ed25519   Algorithm = "ed25519"    // ed25519
	RSA3072   Algorithm = "rsa-3072"   // rsassa-pss-sha256
	RSA4096   Algorithm = "rsa-4096"   // rsassa-pss-sha256
)

// Algorithms lists every supported algorithm, in the order help text shows them.
var Algorithms = []Algorithm{ECDSAP256, ECDSAP384, Ed25519, RSA3072, RSA4096}

// ParseAlgorithm returns the Algorithm named s.
func ParseAlgorithm(s string) (Algorithm, error) {
	for _, a := range Algorithms {
		if string(a) == strings.ToLower(s) {
			return a, nil
		}
	}
	names := make([]string, len(Algorithms))
	for i, a := range Algorithms {
		names[i] = string(a)
	}
	return "", &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("unknown algorithm %q", s),
		HintText: "use one of " + strings.Join(names, ", ")}
}

// AlgorithmOf returns the Algorithm of a public key.
func AlgorithmOf(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", &Error{Kind: ErrUnsupported, Detail: "ECDSA curve " + k.Curve.Params().Name + " is not supported"}
	case ed25519.PublicKey:
		return Ed25519, nil
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 3072:
			return RSA3072, nil
		case 4096:
			return RSA4096, nil
		}
		return "", &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("RSA-%d is not supported (use 3072 or 4096 bits)", k.N.BitLen())}
	}
	return "", &Error{Kind: ErrUnsupported, Detail: fmt.Sprintf("public key type %T is not supported", pub)}
}

// Backend is what a hardware backend implements. One Backend serves every
// device of its scheme in the process, so that each token is opened and
// logged in to once.
//
// Every method takes the key's or token's URI. Backends must select tokens
// by label or serial, never by slot number, and must compare any key they
// find with the public key the caller expects.
type Backend interface {
	// Generate creates a new key pair inside the device named by uri. It
	// refuses when the key's label, id or slot is taken (unless
	// opts.Overwrite allows it) and reads back the hardware evidence.
	Generate(ctx context.Context, uri *URI, opts GenerateOptions) (*KeyInfo, error)
	// Signer opens the private key named by uri. The returned Signer signs
	// inside the device.
	Signer(ctx context.Context, uri *URI) (Signer, error)
	// List returns the keys in the token or device named by uri.
	List(ctx context.Context, uri *URI) ([]KeyInfo, error)
	// Attest returns the device's evidence that the key named by uri was
	// generated inside it and cannot leave it.
	Attest(ctx context.Context, uri *URI) (*Evidence, error)
	// Close logs out and releases every device the backend opened.
	Close() error
}

// Signer is a private key inside a device.
type Signer interface {
	crypto.Signer
	// Info describes the key: its canonical URI, algorithm and public key.
	Info() KeyInfo
}

// GenerateOptions says how to generate a key.
type GenerateOptions struct {
	Algorithm Algorithm
	// PINPolicy and TouchPolicy apply to PIV devices: "always", "once",
	// "never" and "always", "cached", "never". Empty means the backend's
	// safe default (always, always).
	PINPolicy   string
	TouchPolicy string
	// Overwrite allows replacing a key in an occupied PIV slot.
	Overwrite bool
}

// KeyInfo describes a key in a device.
type KeyInfo struct {
	// URI names exactly this key (object label and id, or serial and slot),
	// without the query attributes of the URI it was found by.
	URI       string
	Algorithm Algorithm
	Public    crypto.PublicKey
	// Label and ID are the PKCS#11 CKA_LABEL and CKA_ID (hex), or the PIV
	// slot for both.
	Label string
	ID    string
	// Evidence is the hardware's account of where the key was born, when
	// the backend read it.
	Evidence *Evidence
}

// Evidence kinds.
const (
	EvidencePKCS11 = "pkcs11-attributes" // CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE
	EvidencePIV    = "piv-attestation"   // a YubiKey attestation certificate chain
)

// Evidence is what a device says about a key's birth.
type Evidence struct {
	Kind string `json:"kind"`

	// PKCS#11 attribute readings of the private key.
	Local            bool `json:"local,omitempty"`
	NeverExtractable bool `json:"never_extractable,omitempty"`
	AlwaysSensitive  bool `json:"always_sensitive,omitempty"`
	Extractable      bool `json:"extractable,omitempty"`
	Sensitive        bool `json:"sensitive,omitempty"`
	// What else the private key may do besides signing (CKA_DECRYPT,
	// CKA_UNWRAP, CKA_DERIVE, CKA_SIGN_RECOVER). A TUF key should only
	// sign: see [Evidence.OtherUses].
	Decrypt     bool `json:"decrypt,omitempty"`
	Unwrap      bool `json:"unwrap,omitempty"`
	Derive      bool `json:"derive,omitempty"`
	SignRecover bool `json:"sign_recover,omitempty"`

	// Token describes the PKCS#11 token.
	TokenLabel        string `json:"token_label,omitempty"`
	TokenManufacturer string `json:"token_manufacturer,omitempty"`
	TokenModel        string `json:"token_model,omitempty"`
	TokenSerial       string `json:"token_serial,omitempty"`

	// PIV attestation: the slot's attestation certificate and the device's
	// attestation (slot F9) certificate, DER, and what they say.
	Serial       uint32   `json:"serial,omitempty"`
	Slot         string   `json:"slot,omitempty"`
	Firmware     string   `json:"firmware,omitempty"`
	PINPolicy    string   `json:"pin_policy,omitempty"`
	TouchPolicy  string   `json:"touch_policy,omitempty"`
	FormFactor   string   `json:"form_factor,omitempty"`
	Certificates [][]byte `json:"certificates,omitempty"`
	// Roots names the attestation roots the chain was verified against:
	// "yubico" or the SHA-256 fingerprint of a root the officer passed.
	Roots string `json:"roots,omitempty"`
}

// HardwareBorn reports whether the evidence shows a key generated inside
// the device that can never leave it.
func (e *Evidence) HardwareBorn() bool {
	if e == nil {
		return false
	}
	switch e.Kind {
	case EvidencePKCS11:
		return e.Local && e.NeverExtractable && e.AlwaysSensitive && !e.Extractable && e.Sensitive
	case EvidencePIV:
		return len(e.Certificates) >= 2 && e.Roots != ""
	}
	return false
}

// OtherUses lists what the private key allows besides signing, among
// decrypt, unwrap and derive: a key that also decrypts or unwraps can be
// used as an oracle by whoever can ask the device, and a key that derives
// shares secrets. A root key should allow none of them.
func (e *Evidence) OtherUses() []string {
	if e == nil {
		return nil
	}
	var out []string
	for _, u := range []struct {
		on   bool
		name string
	}{{e.Decrypt, "decrypt"}, {e.Unwrap, "unwrap"}, {e.Derive, "derive"}} {
		if u.on {
			out = append(out, u.name)
		}
	}
	return out
}

// Summary is a one-line account of the evidence for people.
func (e *Evidence) Summary() string {
	if e == nil {
		return "no evidence"
	}
	switch e.Kind {
	case EvidencePKCS11:
		verdict := "hardware-born"
		if !e.HardwareBorn() {
			verdict = "NOT hardware-born"
		}
		uses := e.OtherUses()
		if e.SignRecover {
			uses = append(uses, "sign-recover")
		}
		also := ""
		if len(uses) > 0 {
			also = "; the private key also allows " + strings.Join(uses, ", ")
		}
		return fmt.Sprintf("%s (local=%t never_extractable=%t always_sensitive=%t extractable=%t%s) on %s %s serial %s",
			verdict, e.Local, e.NeverExtractable, e.AlwaysSensitive, e.Extractable, also,
			strings.TrimSpace(e.TokenManufacturer), strings.TrimSpace(e.TokenModel), strings.TrimSpace(e.TokenSerial))
	case EvidencePIV:
		return fmt.Sprintf("attested by YubiKey serial %d firmware %s slot %s (pin %s, touch %s, roots %s)",
			e.Serial, e.Firmware, e.Slot, e.PINPolicy, e.TouchPolicy, e.Roots)
	}
	return "unknown evidence kind " + e.Kind
}
