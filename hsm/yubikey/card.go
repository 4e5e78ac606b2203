package yubikey

import (
	"crypto"
	"crypto/x509"
	"errors"
	"unsafe"

	"github.com/go-piv/piv-go/v2/piv"
)

// card is the part of *piv.YubiKey the backend calls. It is narrow so that
// a wrapper can stand beside the real card in tests (to inject a stale
// attestation, say) and so that everything rootkeeper sends to a device is
// visible in one place.
type card interface {
	Serial() (uint32, error)
	Version() piv.Version
	Retries() (int, error)
	VerifyPIN(pin string) error
	Metadata(pin string) (*piv.Metadata, error)
	SetMetadata(key []byte, m *piv.Metadata) error
	SetManagementKey(oldKey, newKey []byte) error
	SetPIN(oldPIN, newPIN string) error
	SetPUK(oldPUK, newPUK string) error
	Unblock(puk, newPIN string) error
	KeyInfo(slot piv.Slot) (piv.KeyInfo, error)
	GenerateKey(key []byte, slot piv.Slot, opts piv.Key) (crypto.PublicKey, error)
	PrivateKey(slot piv.Slot, public crypto.PublicKey, auth piv.KeyAuth) (crypto.PrivateKey, error)
	Attest(slot piv.Slot) (*x509.Certificate, error)
	AttestationCertificate() (*x509.Certificate, error)
	Certificate(slot piv.Slot) (*x509.Certificate, error)
	Close() error
}

var _ card = (*piv.YubiKey)(nil)

// The ways to reach cards. Tests replace openCard to wrap the real card.
var (
	listReaders = piv.Cards
	probeReader = probe
	openCard    = func(reader string) (card, error) { return piv.Open(reader) }
)

// pinString views pin as a string without copying it, so that wiping pin
// afterwards leaves no copy of ours in memory (piv-go pads its own copy
// for the length of the VERIFY command).
func pinString(pin []byte) string {
	if len(pin) == 0 {
		return ""
	}
	return unsafe.String(&pin[0], len(pin))
}

// rereading is a card whose reads of public objects (attestations and
// certificates) are tried a second time when the first fails for a reason
// other than an absent object or a PIN. Such a read is idempotent and
// spends no PIN try; a response lost in the middle of a chain (GET
// RESPONSE answered 6985 because the reader or another program reset the
// card's state between two parts) is then not a failed ceremony.
type rereading struct{ card }

// againAfter reports whether a failed public read may be tried again.
func againAfter(err error) bool {
	var ae piv.AuthErr
	return err != nil && !errors.Is(err, piv.ErrNotFound) && !errors.As(err, &ae)
}

func (c rereading) Attest(slot piv.Slot) (*x509.Certificate, error) {
	cert, err := c.card.Attest(slot)
	if againAfter(err) {
		cert, err = c.card.Attest(slot)
	}
	return cert, err
}

func (c rereading) AttestationCertificate() (*x509.Certificate, error) {
	cert, err := c.card.AttestationCertificate()
	if againAfter(err) {
		cert, err = c.card.AttestationCertificate()
	}
	return cert, err
}

func (c rereading) Certificate(slot piv.Slot) (*x509.Certificate, error) {
	cert, err := c.card.Certificate(slot)
	if againAfter(err) {
		cert, err = c.card.Certificate(slot)
	}
	return cert, err
}
