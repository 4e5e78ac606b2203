package pivcard

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// MgmtKeyAlg is the algorithm of a card's management key, with the values of
// the PIV algorithm identifiers.
type MgmtKeyAlg byte

// Management key algorithms supported by the emulator.
const (
	MgmtAlg3DES   MgmtKeyAlg = 0x03
	MgmtAlgAES128 MgmtKeyAlg = 0x08
	MgmtAlgAES192 MgmtKeyAlg = 0x0a
	MgmtAlgAES256 MgmtKeyAlg = 0x0c
)

// keyLen returns the key length of the algorithm in bytes, or 0 if unknown.
func (a MgmtKeyAlg) keyLen() int {
	switch a {
	case MgmtAlg3DES, MgmtAlgAES192:
		return 24
	case MgmtAlgAES128:
		return 16
	case MgmtAlgAES256:
		return 32
	}
	return 0
}

// Factory values of the emulated card, identical to a new YubiKey's.
const (
	DefaultPIN = "123456"
	DefaultPUK = "12345678"
)

// DefaultManagementKey is the factory management key of YubiKeys (and of
// the emulator unless Config.ManagementKey is set).
var DefaultManagementKey = []byte{
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
}

// DefaultVersion is the firmware version the emulator reports by default.
var DefaultVersion = [3]byte{5, 7, 1}

// Config describes an emulated card. The zero value is a factory-new
// YubiKey 5.7.1 with a random serial number.
type Config struct {
	// Serial is the card's serial number. If zero, a random 8-digit
	// serial number is used.
	Serial uint32
	// Version is the firmware version. If zero, DefaultVersion (5.7.1).
	// Firmware below 5.7 refuses Ed25519, below 5.4 AES management keys,
	// below 5.3 key metadata (piv-go then assumes a 3DES management key).
	Version [3]byte
	// PIN and PUK are the initial PIN and PUK, 6 to 8 bytes. If empty,
	// DefaultPIN and DefaultPUK.
	PIN, PUK string
	// PINRetries and PUKRetries are the retry counters. If zero, 3.
	PINRetries, PUKRetries int
	// ManagementKey is the initial management key. If nil,
	// DefaultManagementKey.
	ManagementKey []byte
	// MgmtAlg is the management key's algorithm. If zero, AES-192 on
	// firmware 5.7 and later, 3DES before, as on real YubiKeys.
	MgmtAlg MgmtKeyAlg
	// FormFactor is reported in attestations (extension .9). If zero,
	// 0x01 (USB-A keychain).
	FormFactor byte
	// TouchDelay is how long a simulated touch takes for keys with a touch
	// policy of always or cached. Zero means an immediate touch.
	TouchDelay time.Duration
	// CA issues the card's attestation certificate. If nil, a new CA is
	// made; get it with Card.CA.
	CA *CA
}

// Stats counts what the card has been asked to do since it was made.
// Tests assert on them, e.g. that a refused operation burned no PIN retry.
type Stats struct {
	// APDUs is the number of command APDUs received, chained parts and
	// GET RESPONSE included.
	APDUs int
	// PINVerifies is the number of VERIFY commands carrying a PIN
	// (right or wrong); PINFailures the number of wrong ones.
	PINVerifies, PINFailures int
	// EmptyVerifies is the number of VERIFY commands without data
	// (retry-counter and "is the PIN verified" queries).
	EmptyVerifies int
	// PUKFailures counts wrong PUKs (change PUK, unblock PIN).
	PUKFailures int
	// MgmtAuths and MgmtAuthFailures count management-key authentications.
	MgmtAuths, MgmtAuthFailures int
	// Generates, Imports, Signs, Attests count successful operations.
	Generates, Imports, Signs, Attests int
	// Touches counts simulated touches.
	Touches int
	// PowerCycles counts power-off and reset messages from vpcd and
	// removals.
	PowerCycles int
}

// slotKey is a private key held in a slot, in memory only.
type slotKey struct {
	alg         byte
	pinPolicy   byte
	touchPolicy byte
	origin      byte // 1 generated, 2 imported
	priv        crypto.Signer
}

// session is the volatile state lost on power off, reset and removal.
type session struct {
	app         int
	pinVerified bool
	// pinJustVerified is set by a successful VERIFY and consumed by the
	// next command (PIN policy "always").
	pinJustVerified bool
	mgmtAuthed      bool
	witness         []byte
	chainINS        byte
	chain           []byte
	chaining        bool
	pending         []byte
	lastTouch       time.Time
}

// Card is an emulated YubiKey 5 PIV applet. Connect it to pcscd's vpcd
// reader with Insert or Connect; piv-go then sees it like a real YubiKey.
// All methods are safe for concurrent use.
type Card struct {
	serial     uint32
	version    [3]byte
	formFactor byte
	ca         *CA
	attKey     *ecdsa.PrivateKey
	attCert    *x509.Certificate

	mu         sync.Mutex
	pin, puk   []byte
	pinMax     int
	pukMax     int
	pinLeft    int
	pukLeft    int
	mgmtAlg    MgmtKeyAlg
	mgmtKey    []byte
	mgmtTouch  bool
	keys       map[byte]*slotKey
	objects    map[uint32][]byte
	touchDelay time.Duration
	stats      Stats
	signed     []string // one line per signature: slot and hash of the input
	sess       session

	connMu  sync.Mutex
	conn    net.Conn
	removed chan struct{}
	done    chan struct{}
	connErr error
	closed  bool
	reader  string // set by StartCard
	slot    int    // set by StartCard
}

// New makes a card from cfg. It is not connected to any reader yet.
func New(cfg Config) (*Card, error) {
	if cfg.Serial == 0 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		cfg.Serial = 10_000_000 + binary.BigEndian.Uint32(b[:])%80_000_000
	}
	if cfg.Version == ([3]byte{}) {
		cfg.Version = DefaultVersion
	}
	if cfg.PIN == "" {
		cfg.PIN = DefaultPIN
	}
	if cfg.PUK == "" {
		cfg.PUK = DefaultPUK
	}
	for _, p := range []string{cfg.PIN, cfg.PUK} {
		if len(p) < 6 || len(p) > 8 {
			return nil, fmt.Errorf("pivcard: PIN and PUK must be 6 to 8 bytes, got %d", len(p))
		}
	}
	if cfg.PINRetries == 0 {
		cfg.PINRetries = 3
	}
	if cfg.PUKRetries == 0 {
		cfg.PUKRetries = 3
	}
	if cfg.PINRetries < 1 || cfg.PINRetries > 255 || cfg.PUKRetries < 1 || cfg.PUKRetries > 255 {
		return nil, errors.New("pivcard: retries must be 1 to 255")
	}
	if cfg.MgmtAlg == 0 {
		cfg.MgmtAlg = defaultMgmtAlg(cfg.Version)
	}
	if cfg.ManagementKey == nil {
		cfg.ManagementKey = DefaultManagementKey
	}
	if n := cfg.MgmtAlg.keyLen(); n == 0 || n != len(cfg.ManagementKey) {
		return nil, fmt.Errorf("pivcard: management key of %d bytes does not fit algorithm 0x%02x", len(cfg.ManagementKey), byte(cfg.MgmtAlg))
	}
	if cfg.FormFactor == 0 {
		cfg.FormFactor = 0x01
	}
	if cfg.CA == nil {
		ca, err := NewCA()
		if err != nil {
			return nil, err
		}
		cfg.CA = ca
	}
	attKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	attCert, err := cfg.CA.issueAttestationKey(attKey, cfg.Serial)
	if err != nil {
		return nil, err
	}
	c := &Card{
		serial:     cfg.Serial,
		version:    cfg.Version,
		formFactor: cfg.FormFactor,
		ca:         cfg.CA,
		attKey:     attKey,
		attCert:    attCert,
		pin:        []byte(cfg.PIN),
		puk:        []byte(cfg.PUK),
		pinMax:     cfg.PINRetries,
		pukMax:     cfg.PUKRetries,
		pinLeft:    cfg.PINRetries,
		pukLeft:    cfg.PUKRetries,
		mgmtAlg:    cfg.MgmtAlg,
		mgmtKey:    bytes.Clone(cfg.ManagementKey),
		keys:       map[byte]*slotKey{},
		objects:    map[uint32][]byte{},
		touchDelay: cfg.TouchDelay,
	}
	c.objects[objAttestation] = certObject(attCert.Raw)
	return c, nil
}

func defaultMgmtAlg(v [3]byte) MgmtKeyAlg {
	if versionAtLeast(v, 5, 7, 0) {
		return MgmtAlgAES192
	}
	return MgmtAlg3DES
}

func versionAtLeast(v [3]byte, major, minor, patch byte) bool {
	if v[0] != major {
		return v[0] > major
	}
	if v[1] != minor {
		return v[1] > minor
	}
	return v[2] >= patch
}

// certObject is the content of a certificate data object (inside tag 53).
func certObject(der []byte) []byte {
	return concat(encodeTLV(0x70, der), encodeTLV(0x71, []byte{0}), encodeTLV(0xfe, nil))
}

// Serial returns the card's serial number.
func (c *Card) Serial() uint32 { return c.serial }

// Version returns the card's firmware version.
func (c *Card) Version() [3]byte { return c.version }

// CA returns the CA that issued the card's attestation certificate.
func (c *Card) CA() *CA { return c.ca }

// AttestationCertificate returns the certificate of the card's slot-F9
// attestation key, as stored in object 5FFF01.
func (c *Card) AttestationCertificate() *x509.Certificate { return c.attCert }

// PINRetries returns the number of PIN attempts left.
func (c *Card) PINRetries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pinLeft
}

// PUKRetries returns the number of PUK attempts left.
func (c *Card) PUKRetries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pukLeft
}

// PINVerified reports whether the PIN is verified in the current session.
func (c *Card) PINVerified() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.pinVerified
}

// ManagementKey returns a copy of the current management key and its
// algorithm.
func (c *Card) ManagementKey() ([]byte, MgmtKeyAlg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.mgmtKey), c.mgmtAlg
}

// SetTouchDelay sets how long the next simulated touches take.
func (c *Card) SetTouchDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touchDelay = d
}

// Stats returns a snapshot of the card's counters.
func (c *Card) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Signed returns one line per signature the card has made, in order:
// "slot=9c input=HEX" (the first 8 bytes of the SHA-256 of what it signed),
// so that a test can find a payload signed twice.
func (c *Card) Signed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.signed...)
}

// HasKey reports whether a key is present in the slot (e.g. 0x9c).
func (c *Card) HasKey(slot byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[slot] != nil
}

// powerCycle drops the session state, as a card losing power does.
func (c *Card) powerCycle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = session{}
	c.stats.PowerCycles++
}
