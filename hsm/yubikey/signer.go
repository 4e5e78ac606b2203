package yubikey

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// Signer is a private key in a YubiKey PIV slot. It implements
// [hsm.Signer] and so [crypto.Signer]: Sign runs inside the YubiKey, one
// signature at a time per device, and checks every signature against the
// slot's public key before returning it. It is safe for concurrent use.
//
// Sign accepts what rootkeeper's TUF signing schemes need:
//
//   - ECDSA P-256 and P-384 keys: a digest and its hash in opts; the
//     signature is ASN.1 DER.
//   - Ed25519 keys: the whole message, with opts.HashFunc() == 0.
//
// Before each signature that needs the PIN (PIN policy always, or once
// when the PIN is not yet verified on the device) Sign reads the PIN retry
// counter, refuses at a blocked PIN and, unless the officer forced it, at
// the final try, and only then reads and sends the PIN. When the key's
// touch policy asks for a touch, the officer is told to touch the device.
type Signer struct {
	// ctx is the context the Signer was opened with: crypto.Signer's Sign
	// takes none, and a PIN prompt or a wait for the device must still stop
	// when the officer presses Ctrl-C.
	ctx   context.Context
	dev   *device
	uri   *hsm.URI
	t     *target
	info  hsm.KeyInfo
	pin   piv.PINPolicy
	touch piv.TouchPolicy
}

var _ hsm.Signer = (*Signer)(nil)

// Public returns the public key the device reports for the slot, which
// its attestation certifies.
func (s *Signer) Public() crypto.PublicKey { return s.info.Public }

// Info describes the key: its canonical URI, algorithm, public key, slot
// (as label and id) and attestation evidence.
func (s *Signer) Info() hsm.KeyInfo { return s.info }

func (s *Signer) fail(kind error, detail, hint string) error {
	return &hsm.Error{Kind: kind, URI: s.info.URI, Detail: detail, HintText: hint}
}

// checkOpts refuses a digest and options the key cannot sign.
func (s *Signer) checkOpts(digest []byte, opts crypto.SignerOpts) error {
	var h crypto.Hash
	if opts != nil {
		h = opts.HashFunc()
	}
	switch s.info.Public.(type) {
	case *ecdsa.PublicKey:
		if h == 0 || len(digest) != h.Size() {
			return s.fail(hsm.ErrUnsupported, fmt.Sprintf("ECDSA signs a digest: got %d bytes for hash %v", len(digest), h),
				"pass the message's digest and its hash (crypto.SHA256 for ecdsa-p256, crypto.SHA384 for ecdsa-p384)")
		}
	case ed25519.PublicKey:
		if h != 0 {
			return s.fail(hsm.ErrUnsupported, "Ed25519 signs the whole message, not a "+h.String()+" digest", "pass the message itself and crypto.Hash(0) as opts")
		}
		if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
			return s.fail(hsm.ErrUnsupported, "Ed25519ctx is not supported", "sign with pure Ed25519 (no context)")
		}
	}
	return nil
}

// Sign signs digest (the whole message for Ed25519) inside the YubiKey.
// The rand argument is ignored: the device draws its own randomness.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := s.checkOpts(digest, opts); err != nil {
		return nil, err
	}
	d := s.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.b.isClosed() {
		return nil, s.fail(hsm.ErrDevice, "the key's backend is closed", "open the key again from a new backend")
	}
	ctx := s.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	// A card that stopped answering is looked for again (the officer is
	// asked to insert it); the signature check below catches another key.
	if err := d.open(ctx, s.t.object()); err != nil {
		return nil, err
	}
	sig, err := s.sign(ctx, digest, opts, true)
	if err != nil {
		return nil, err
	}
	var ok bool
	switch pub := s.info.Public.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest, sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, digest, sig)
	}
	if !ok {
		return nil, s.fail(hsm.ErrKeyMismatch, fmt.Sprintf("the signature made in slot %s of %s does not verify with the slot's public key", slotName(s.t.slot), d.name()),
			"do not use this device: it did not sign with the key it reports; check that the right YubiKey is inserted")
	}
	return sig, nil
}

// sign sends the PIN if the key's policy needs it, then the signing
// command. retry allows one more try when the device lost a PIN
// verification rootkeeper counted on (PIN policy once). d.mu is held.
func (s *Signer) sign(ctx context.Context, digest []byte, opts crypto.SignerOpts, retry bool) ([]byte, error) {
	d := s.dev
	obj := s.t.object()
	purpose := fmt.Sprintf("PIN to sign with slot %s", slotName(s.t.slot))
	switch s.pin {
	case piv.PINPolicyNever:
	case piv.PINPolicyOnce:
		if !d.pinOK {
			if err := d.withPIN(ctx, s.uri, purpose, d.card.VerifyPIN); err != nil {
				return nil, err
			}
		}
	case piv.PINPolicyAlways:
		if err := d.withPIN(ctx, s.uri, purpose, d.card.VerifyPIN); err != nil {
			return nil, err
		}
	default:
		return nil, s.fail(hsm.ErrUnsupported, "the key's PIN policy "+pinPolicyName(s.pin)+" (biometric) is not supported", "use a key with PIN policy always or once")
	}
	switch s.touch {
	case piv.TouchPolicyAlways:
		d.b.opts.Tell("touch %s now to sign with slot %s (it blinks)", d.name(), slotName(s.t.slot))
	case piv.TouchPolicyCached:
		d.b.opts.Tell("touch %s if it blinks, to sign with slot %s", d.name(), slotName(s.t.slot))
	}
	// The PIN, if any, was sent just above: no other command may come
	// between it and the signature (PIN policy always).
	priv, err := d.card.PrivateKey(s.t.slot, s.info.Public, piv.KeyAuth{PINPolicy: piv.PINPolicyNever})
	if err != nil {
		return nil, d.fail(obj, "opening the slot's key", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, s.fail(hsm.ErrUnsupported, fmt.Sprintf("the slot's key (%T) cannot sign", priv), "")
	}
	sig, err := signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		var st statusError
		if retry && s.pin == piv.PINPolicyOnce && errors.As(err, &st) && st.Status() == 0x6982 {
			d.pinOK = false
			return s.sign(ctx, digest, opts, false)
		}
		return nil, d.fail(obj, "signing", err)
	}
	return sig, nil
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
