package pkcs11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // for the self-test's digests
	_ "crypto/sha512"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// Signer is a private key inside a PKCS#11 token. It implements
// [hsm.Signer] and so [crypto.Signer]: Sign runs inside the token, on the
// Signer's own session, one call at a time. It is safe for concurrent use.
//
// Sign accepts what rootkeeper's TUF signing schemes need:
//
//   - ECDSA keys: a digest and its hash in opts (CKM_ECDSA); the signature
//     is ASN.1 DER, as ecdsa.VerifyASN1 expects.
//   - Ed25519 keys: the whole message, with opts.HashFunc() == 0
//     (CKM_EDDSA, pure Ed25519).
//   - RSA keys: a digest and *rsa.PSSOptions whose salt length is
//     rsa.PSSSaltLengthEqualsHash or the hash's size (CKM_RSA_PKCS_PSS,
//     MGF1 with the same hash). PKCS #1 v1.5 is refused.
type Signer struct {
	drv  driver
	tok  *token
	opts hsm.Options
	uri  *hsm.URI
	info hsm.KeyInfo

	key         pkcs11.ObjectHandle
	keyType     uint
	alwaysAuthn bool // CKA_ALWAYS_AUTHENTICATE: each signature needs the PIN
	// ctx is the context the key was opened with. crypto.Signer's Sign
	// takes none, and the PIN prompt before each signature of an
	// alwaysAuthn key must still stop when the officer presses Ctrl-C.
	ctx context.Context

	mu      sync.Mutex // serializes the session
	session pkcs11.SessionHandle
	closed  bool
}

var _ hsm.Signer = (*Signer)(nil)

// Public returns the public key read from the token's public key object.
func (s *Signer) Public() crypto.PublicKey { return s.info.Public }

// Info describes the key: its canonical URI, algorithm, public key, label,
// id and evidence.
func (s *Signer) Info() hsm.KeyInfo { return s.info }

// shut closes the Signer's session. The token's lock is held.
func (s *Signer) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		_ = s.drv.CloseSession(s.session)
	}
}

func (s *Signer) fail(kind error, detail string, err error, hint string) error {
	return &hsm.Error{Kind: kind, URI: s.info.URI, Detail: detail, Err: err, HintText: hint}
}

// mechanism returns the mechanism and the data to sign for digest and
// opts, or refuses them.
func (s *Signer) mechanism(digest []byte, opts crypto.SignerOpts) (*pkcs11.Mechanism, error) {
	var h crypto.Hash
	if opts != nil {
		h = opts.HashFunc()
	}
	switch s.keyType {
	case pkcs11.CKK_EC:
		if h == 0 || len(digest) != h.Size() {
			return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("ECDSA signs a digest: got %d bytes for hash %v", len(digest), h), nil,
				"pass the message's digest and its hash (crypto.SHA256 for ecdsa-p256, crypto.SHA384 for ecdsa-p384)")
		}
		return pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil), nil
	case ckkECEdwards:
		if h != 0 {
			return nil, s.fail(hsm.ErrUnsupported, "Ed25519 signs the whole message, not a "+h.String()+" digest", nil,
				"pass the message itself and crypto.Hash(0) as opts")
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return nil, s.fail(hsm.ErrUnsupported, "Ed25519ctx is not supported", nil, "sign with pure Ed25519 (no context)")
		}
		return pkcs11.NewMechanism(ckmEdDSA, nil), nil
	case pkcs11.CKK_RSA:
		pss, ok := opts.(*rsa.PSSOptions)
		if !ok {
			return nil, s.fail(hsm.ErrUnsupported, "RSA keys sign with RSA-PSS only", nil,
				"pass *rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}")
		}
		var hashMech, mgf uint
		switch h {
		case crypto.SHA256:
			hashMech, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
		case crypto.SHA384:
			hashMech, mgf = pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384
		case crypto.SHA512:
			hashMech, mgf = pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512
		default:
			return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("RSA-PSS with hash %v is not supported", h), nil,
				"use SHA-256, SHA-384 or SHA-512")
		}
		if len(digest) != h.Size() {
			return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("RSA-PSS signs a %v digest: got %d bytes", h, len(digest)), nil,
				"pass the message's digest, not the message")
		}
		if pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != h.Size() {
			return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("RSA-PSS salt length %d is not supported", pss.SaltLength), nil,
				"use a salt as long as the hash (rsa.PSSSaltLengthEqualsHash), as TUF's rsassa-pss-sha256 does")
		}
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(hashMech, mgf, uint(h.Size()))), nil
	}
	return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("key type 0x%x cannot sign", s.keyType), nil, "")
}

// Sign signs digest (the whole message for Ed25519) inside the token. The
// rand argument is ignored: the token draws its own randomness.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	mech, err := s.mechanism(digest, opts)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.fail(hsm.ErrDevice, "the key's backend is closed", nil, "open the key again from a new backend")
	}
	if err := s.drv.SignInit(s.session, []*pkcs11.Mechanism{mech}, s.key); err != nil {
		return nil, s.fail(hsm.ErrDevice, "C_SignInit failed", err, s.deviceHint(err))
	}
	if s.alwaysAuthn {
		if err := s.tok.sendPIN(s.ctx, s.opts, s.uri, s.session, pkcs11.CKU_CONTEXT_SPECIFIC, "user PIN for this signature"); err != nil {
			s.reopen()
			return nil, err
		}
	}
	sig, err := s.drv.Sign(s.session, digest)
	if err != nil {
		return nil, s.fail(hsm.ErrDevice, "C_Sign failed", err, s.deviceHint(err))
	}
	if s.keyType == pkcs11.CKK_EC {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// reopen replaces a session left with an unfinished signing operation.
// s.mu is held.
func (s *Signer) reopen() {
	_ = s.drv.CloseSession(s.session)
	sh, err := s.drv.OpenSession(s.tok.slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		s.closed = true
		return
	}
	s.session = sh
}

func (s *Signer) deviceHint(err error) string {
	switch rv(err) {
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return "the token logged rootkeeper out (was it unplugged or reset?): run the command again"
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_SESSION_CLOSED:
		return "the token went away: reconnect it and run the command again"
	case pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_MECHANISM_INVALID:
		return "the token refuses this signature mechanism for this key"
	}
	return "check that the token is connected and working (pkcs11-tool --test)"
}

// ecdsaDER converts PKCS#11's r||s to an ASN.1 ECDSA-Sig-Value.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, Detail: fmt.Sprintf("the token returned a %d-byte ECDSA signature", len(raw))}
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}

// discard forgets a Signer that failed its self-test.
func (s *Signer) discard() {
	t := s.tok
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, o := range t.signers {
		if o == s {
			t.signers = append(t.signers[:i], t.signers[i+1:]...)
			break
		}
	}
	s.shut()
}

// selfTest signs a random challenge and verifies it with the public key
// object, proving the private and public key belong together. Keys that
// need the PIN for each signature are checked by attributes only.
func (s *Signer) selfTest() error {
	if s.alwaysAuthn {
		return nil
	}
	msg := make([]byte, 64)
	if _, err := rand.Read(msg); err != nil {
		return s.fail(hsm.ErrDevice, "cannot draw a random challenge", err, "")
	}
	var ok bool
	switch pub := s.info.Public.(type) {
	case *ecdsa.PublicKey:
		h := crypto.SHA256
		if pub.Curve.Params().BitSize > 256 {
			h = crypto.SHA384
		}
		d := hashOf(h, msg)
		sig, err := s.Sign(nil, d, h)
		if err != nil {
			return err
		}
		ok = ecdsa.VerifyASN1(pub, d, sig)
	case ed25519.PublicKey:
		sig, err := s.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			return err
		}
		ok = ed25519.Verify(pub, msg, sig)
	case *rsa.PublicKey:
		d := hashOf(crypto.SHA256, msg)
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		sig, err := s.Sign(nil, d, opts)
		if err != nil {
			return err
		}
		ok = rsa.VerifyPSS(pub, crypto.SHA256, d, sig, opts) == nil
	default:
		return s.fail(hsm.ErrUnsupported, fmt.Sprintf("public key type %T is not supported", pub), nil, "")
	}
	if !ok {
		return s.fail(hsm.ErrKeyMismatch, "a test signature by the private key does not verify with the public key object", nil,
			"the token's public and private objects with this CKA_ID do not belong together: do not sign with this key; re-import the right public key or name another key")
	}
	return nil
}

func hashOf(h crypto.Hash, msg []byte) []byte {
	w := h.New()
	w.Write(msg)
	return w.Sum(nil)
}
