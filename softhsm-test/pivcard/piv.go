package pivcard

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Instructions (NIST SP 800-73-4 and Yubico extensions).
const (
	insVerify        = 0x20
	insChangeRef     = 0x24
	insResetRetry    = 0x2c
	insGenerate      = 0x47
	insAuthenticate  = 0x87
	insSelect        = 0xa4
	insGetData       = 0xcb
	insPutData       = 0xdb
	insSetMgmtKey    = 0xff
	insImportKey     = 0xfe
	insGetVersion    = 0xfd
	insReset         = 0xfb
	insSetRetries    = 0xfa
	insAttest        = 0xf9
	insGetSerial     = 0xf8
	insGetMetadata   = 0xf7
	insOTPSerial     = 0x01 // YubiKey OTP applet, firmware < 5
	insMgmtReadConf  = 0x1d // YubiKey management applet
	keyMgmt          = 0x9b
	keyAttestation   = 0xf9
	refPIN           = 0x80
	refPUK           = 0x81
	algP256          = 0x11
	algP384          = 0x14
	algEd25519       = 0xe0
	policyDefault    = 0x00
	pinNever         = 0x01
	pinOnce          = 0x02
	pinAlways        = 0x03
	touchNever       = 0x01
	touchAlways      = 0x02
	touchCached      = 0x03
	originGenerated  = 0x01
	originImported   = 0x02
	objAttestation   = 0x5fff01
	objPrinted       = 0x5fc109
	touchCacheWindow = 15 * time.Second
)

var (
	aidPIV        = []byte{0xa0, 0x00, 0x00, 0x03, 0x08}
	aidPIVFull    = []byte{0xa0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00}
	aidOTP        = []byte{0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01}
	aidManagement = []byte{0xa0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

// validKeySlot reports whether slot can hold a generated or imported key.
func validKeySlot(slot byte) bool {
	switch {
	case slot == 0x9a, slot == 0x9c, slot == 0x9d, slot == 0x9e:
		return true
	case slot >= 0x82 && slot <= 0x95:
		return true
	}
	return false
}

func (c *Card) dispatch(cmd command, justVerified bool, removed <-chan struct{}) ([]byte, uint16, error) {
	if cmd.ins == insSelect {
		return c.cmdSelect(cmd)
	}
	switch c.sess.app {
	case appOTP:
		if cmd.ins == insOTPSerial && cmd.p1 == 0x10 {
			return binary.BigEndian.AppendUint32(nil, c.serial), swOK, nil
		}
		return nil, swInsNotSupported, nil
	case appManagement:
		if cmd.ins == insMgmtReadConf {
			info := concat(
				encodeTLV(0x02, binary.BigEndian.AppendUint32(nil, c.serial)),
				encodeTLV(0x04, []byte{c.formFactor}),
				encodeTLV(0x05, c.version[:]),
			)
			return append([]byte{byte(len(info))}, info...), swOK, nil
		}
		return nil, swInsNotSupported, nil
	case appPIV:
	default:
		return nil, swInsNotSupported, nil
	}

	switch cmd.ins {
	case insGetVersion:
		return c.version[:], swOK, nil
	case insGetSerial:
		if c.version[0] < 5 {
			return nil, swInsNotSupported, nil
		}
		return binary.BigEndian.AppendUint32(nil, c.serial), swOK, nil
	case insVerify:
		d, sw := c.cmdVerify(cmd)
		return d, sw, nil
	case insChangeRef:
		d, sw := c.cmdChangeReference(cmd)
		return d, sw, nil
	case insResetRetry:
		d, sw := c.cmdUnblock(cmd)
		return d, sw, nil
	case insSetRetries:
		d, sw := c.cmdSetRetries(cmd)
		return d, sw, nil
	case insReset:
		d, sw := c.cmdReset()
		return d, sw, nil
	case insAuthenticate:
		if cmd.p2 == keyMgmt {
			return c.cmdMgmtAuth(cmd, removed)
		}
		return c.cmdPrivateKeyOp(cmd, justVerified, removed)
	case insSetMgmtKey:
		d, sw := c.cmdSetMgmtKey(cmd)
		return d, sw, nil
	case insGenerate:
		d, sw := c.cmdGenerate(cmd)
		return d, sw, nil
	case insImportKey:
		d, sw := c.cmdImport(cmd)
		return d, sw, nil
	case insGetMetadata:
		d, sw := c.cmdMetadata(cmd)
		return d, sw, nil
	case insAttest:
		d, sw := c.cmdAttest(cmd)
		return d, sw, nil
	case insGetData:
		d, sw := c.cmdGetData(cmd)
		return d, sw, nil
	case insPutData:
		d, sw := c.cmdPutData(cmd)
		return d, sw, nil
	}
	return nil, swInsNotSupported, nil
}

func (c *Card) cmdSelect(cmd command) ([]byte, uint16, error) {
	if cmd.p1 != 0x04 {
		return nil, swIncorrectP1P2, nil
	}
	aid := cmd.data
	switch {
	case len(aid) >= len(aidPIV) && bytes.HasPrefix(aidPIVFull, aid):
		c.sess.app = appPIV
		// Application property template, as a YubiKey answers.
		apt := concat(
			encodeTLV(0x4f, []byte{0x00, 0x00, 0x10, 0x00, 0x01, 0x00}),
			encodeTLV(0x79, encodeTLV(0x4f, aidPIV)),
		)
		return encodeTLV(0x61, apt), swOK, nil
	case len(aid) >= len(aidOTP) && bytes.HasPrefix(aid, aidOTP):
		c.sess.app = appOTP
		return nil, swOK, nil
	case bytes.Equal(aid, aidManagement):
		c.sess.app = appManagement
		return []byte("Virtual mgmt applet"), swOK, nil
	}
	return nil, swFileNotFound, nil
}

// retriesSW is the 63Cx status for n retries left (capped at 15).
func retriesSW(n int) uint16 {
	if n > 15 {
		n = 15
	}
	return swVerifyFail | uint16(n)
}

// unpad strips the 0xFF padding of an 8-byte PIN or PUK block.
func unpad(b []byte) []byte {
	return bytes.TrimRight(b, "\xff")
}

func (c *Card) cmdVerify(cmd command) ([]byte, uint16) {
	if cmd.p2 != refPIN {
		return nil, swReferenceNotFound
	}
	s := &c.sess
	if cmd.p1 == 0xff { // reset the verification status
		s.pinVerified = false
		return nil, swOK
	}
	if cmd.p1 != 0x00 {
		return nil, swIncorrectP1P2
	}
	if len(cmd.data) == 0 {
		c.stats.EmptyVerifies++
		if s.pinVerified && c.pinLeft > 0 {
			return nil, swOK
		}
		return nil, retriesSW(c.pinLeft)
	}
	c.stats.PINVerifies++
	if len(cmd.data) != 8 {
		return nil, swIncorrectData
	}
	if c.pinLeft == 0 {
		return nil, swAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(cmd.data), c.pin) != 1 {
		c.stats.PINFailures++
		c.pinLeft--
		s.pinVerified = false
		return nil, retriesSW(c.pinLeft)
	}
	c.pinLeft = c.pinMax
	s.pinVerified = true
	s.pinJustVerified = true
	return nil, swOK
}

// checkNew validates a new PIN or PUK block: 6 to 8 bytes after padding.
func checkNew(b []byte) bool {
	n := len(unpad(b))
	return n >= 6 && n <= 8 && !bytes.Contains(b[:n], []byte{0xff})
}

func (c *Card) cmdChangeReference(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 || (cmd.p2 != refPIN && cmd.p2 != refPUK) {
		return nil, swIncorrectP1P2
	}
	if len(cmd.data) != 16 {
		return nil, swIncorrectData
	}
	old, next := cmd.data[:8], cmd.data[8:]
	ref, left, max := &c.pin, &c.pinLeft, c.pinMax
	if cmd.p2 == refPUK {
		ref, left, max = &c.puk, &c.pukLeft, c.pukMax
	}
	if *left == 0 {
		return nil, swAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(old), *ref) != 1 {
		*left--
		if cmd.p2 == refPIN {
			c.stats.PINFailures++
			c.sess.pinVerified = false
		} else {
			c.stats.PUKFailures++
		}
		return nil, retriesSW(*left)
	}
	if !checkNew(next) {
		return nil, swIncorrectData
	}
	*ref = bytes.Clone(unpad(next))
	*left = max
	return nil, swOK
}

func (c *Card) cmdUnblock(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 || cmd.p2 != refPIN {
		return nil, swIncorrectP1P2
	}
	if len(cmd.data) != 16 {
		return nil, swIncorrectData
	}
	if c.pukLeft == 0 {
		return nil, swAuthBlocked
	}
	if subtle.ConstantTimeCompare(unpad(cmd.data[:8]), c.puk) != 1 {
		c.pukLeft--
		c.stats.PUKFailures++
		return nil, retriesSW(c.pukLeft)
	}
	if !checkNew(cmd.data[8:]) {
		return nil, swIncorrectData
	}
	c.pukLeft = c.pukMax
	c.pin = bytes.Clone(unpad(cmd.data[8:]))
	c.pinLeft = c.pinMax
	return nil, swOK
}

func (c *Card) cmdSetRetries(cmd command) ([]byte, uint16) {
	if !c.sess.mgmtAuthed || !c.sess.pinVerified {
		return nil, swSecurityStatus
	}
	if cmd.p1 == 0 || cmd.p2 == 0 {
		return nil, swIncorrectP1P2
	}
	// As on a YubiKey, this also resets PIN and PUK to their defaults.
	c.pinMax, c.pukMax = int(cmd.p1), int(cmd.p2)
	c.pinLeft, c.pukLeft = c.pinMax, c.pukMax
	c.pin, c.puk = []byte(DefaultPIN), []byte(DefaultPUK)
	c.sess.pinVerified = false
	return nil, swOK
}

func (c *Card) cmdReset() ([]byte, uint16) {
	if c.pinLeft != 0 || c.pukLeft != 0 {
		return nil, swConditionsNotMet
	}
	c.pin, c.puk = []byte(DefaultPIN), []byte(DefaultPUK)
	c.pinMax, c.pukMax, c.pinLeft, c.pukLeft = 3, 3, 3, 3
	c.mgmtAlg = defaultMgmtAlg(c.version)
	c.mgmtKey = bytes.Clone(DefaultManagementKey)
	c.mgmtTouch = false
	c.keys = map[byte]*slotKey{}
	c.objects = map[uint32][]byte{objAttestation: certObject(c.attCert.Raw)}
	c.sess = session{app: appPIV}
	return nil, swOK
}

// mgmtCipher returns the block cipher of the current management key.
func (c *Card) mgmtCipher() cipher.Block {
	var (
		b   cipher.Block
		err error
	)
	if c.mgmtAlg == MgmtAlg3DES {
		b, err = des.NewTripleDESCipher(c.mgmtKey)
	} else {
		b, err = aes.NewCipher(c.mgmtKey)
	}
	if err != nil {
		panic(err) // key lengths are checked when set
	}
	return b
}

// cmdMgmtAuth runs the mutual challenge-response of GENERAL AUTHENTICATE
// with the management key, exactly as piv-go drives it.
func (c *Card) cmdMgmtAuth(cmd command, removed <-chan struct{}) ([]byte, uint16, error) {
	s := &c.sess
	if MgmtKeyAlg(cmd.p1) != c.mgmtAlg {
		s.witness = nil
		return nil, swIncorrectData, nil
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData, nil
	}
	dyn, ok := findTLV(outer, 0x7c)
	if !ok {
		return nil, swIncorrectData, nil
	}
	ts, err := parseTLVs(dyn)
	if err != nil {
		return nil, swIncorrectData, nil
	}
	block := c.mgmtCipher()
	n := block.BlockSize()
	witness, hasW := findTLV(ts, 0x80)
	challenge, hasC := findTLV(ts, 0x81)
	switch {
	case hasW && len(witness) == 0 && !hasC:
		// Step 1: send an encrypted random witness.
		s.mgmtAuthed = false
		s.witness = make([]byte, n)
		if _, err := io.ReadFull(rand.Reader, s.witness); err != nil {
			return nil, 0, err
		}
		enc := make([]byte, n)
		block.Encrypt(enc, s.witness)
		return encodeTLV(0x7c, encodeTLV(0x80, enc)), swOK, nil
	case hasW && hasC && len(witness) == n && len(challenge) == n:
		// Step 2: check the decrypted witness, answer the host's challenge.
		expected := s.witness
		s.witness = nil
		if expected == nil || subtle.ConstantTimeCompare(expected, witness) != 1 {
			c.stats.MgmtAuthFailures++
			return nil, swSecurityStatus, nil
		}
		if c.mgmtTouch {
			if err := c.touch(removed); err != nil {
				return nil, 0, err
			}
		}
		resp := make([]byte, n)
		block.Encrypt(resp, challenge)
		s.mgmtAuthed = true
		c.stats.MgmtAuths++
		return encodeTLV(0x7c, encodeTLV(0x82, resp)), swOK, nil
	}
	s.witness = nil
	return nil, swIncorrectData, nil
}

// touch simulates the user touching the card, without holding c.mu.
func (c *Card) touch(removed <-chan struct{}) error {
	c.stats.Touches++
	d := c.touchDelay
	if d <= 0 {
		return nil
	}
	c.mu.Unlock()
	defer c.mu.Lock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-removed:
		return errRemoved
	}
}

// cmdPrivateKeyOp signs (tag 81) or does ECDH (tag 85) with a slot's key,
// enforcing its PIN and touch policies.
func (c *Card) cmdPrivateKeyOp(cmd command, justVerified bool, removed <-chan struct{}) ([]byte, uint16, error) {
	k := c.keys[cmd.p2]
	if k == nil || (cmd.p2 == keyAttestation) {
		return nil, swIncorrectData, nil
	}
	if cmd.p1 != k.alg {
		return nil, swIncorrectData, nil
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData, nil
	}
	dyn, ok := findTLV(outer, 0x7c)
	if !ok {
		return nil, swIncorrectData, nil
	}
	ts, err := parseTLVs(dyn)
	if err != nil {
		return nil, swIncorrectData, nil
	}
	if r, ok := findTLV(ts, 0x82); !ok || len(r) != 0 {
		return nil, swIncorrectData, nil
	}
	input, isSign := findTLV(ts, 0x81)
	peer, isECDH := findTLV(ts, 0x85)
	if isSign == isECDH {
		return nil, swIncorrectData, nil
	}
	if isECDH && k.alg == algEd25519 {
		return nil, swIncorrectData, nil
	}
	switch k.pinPolicy {
	case pinOnce:
		if !c.sess.pinVerified {
			return nil, swSecurityStatus, nil
		}
	case pinAlways:
		if !c.sess.pinVerified || !justVerified {
			return nil, swSecurityStatus, nil
		}
	}
	if k.touchPolicy == touchAlways || (k.touchPolicy == touchCached && time.Since(c.sess.lastTouch) > touchCacheWindow) {
		if err := c.touch(removed); err != nil {
			return nil, 0, err
		}
		c.sess.lastTouch = time.Now()
		// The key may have been replaced while the lock was released.
		if c.keys[cmd.p2] != k {
			return nil, swIncorrectData, nil
		}
	}
	var out []byte
	if isECDH {
		out, err = ecdhShared(k.priv.(*ecdsa.PrivateKey), peer)
		if err != nil {
			return nil, swIncorrectData, nil
		}
	} else {
		switch priv := k.priv.(type) {
		case *ecdsa.PrivateKey:
			if len(input) > (priv.Curve.Params().BitSize+7)/8 {
				return nil, swIncorrectData, nil
			}
			out, err = ecdsa.SignASN1(rand.Reader, priv, input)
		case ed25519.PrivateKey:
			out, err = priv.Sign(nil, input, crypto.Hash(0))
		}
		if err != nil {
			return nil, 0, err
		}
		c.stats.Signs++
		sum := sha256.Sum256(input)
		c.signed = append(c.signed, fmt.Sprintf("slot=%02x input=%x", cmd.p2, sum[:8]))
	}
	return encodeTLV(0x7c, encodeTLV(0x82, out)), swOK, nil
}

func ecdhShared(priv *ecdsa.PrivateKey, peer []byte) ([]byte, error) {
	p, err := priv.ECDH()
	if err != nil {
		return nil, err
	}
	pub, err := p.Curve().NewPublicKey(peer)
	if err != nil {
		return nil, err
	}
	return p.ECDH(pub)
}

func (c *Card) cmdSetMgmtKey(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0xff || (cmd.p2 != 0xff && cmd.p2 != 0xfe) {
		return nil, swIncorrectP1P2
	}
	if !c.sess.mgmtAuthed {
		return nil, swSecurityStatus
	}
	d := cmd.data
	if len(d) < 3 || d[1] != keyMgmt || int(d[2]) != len(d)-3 {
		return nil, swIncorrectData
	}
	alg := MgmtKeyAlg(d[0])
	if alg.keyLen() == 0 || alg.keyLen() != int(d[2]) {
		return nil, swIncorrectData
	}
	if alg != MgmtAlg3DES && !versionAtLeast(c.version, 5, 4, 0) {
		return nil, swIncorrectData
	}
	c.mgmtAlg = alg
	c.mgmtKey = bytes.Clone(d[3:])
	c.mgmtTouch = cmd.p2 == 0xfe
	return nil, swOK
}

// parsePolicies reads the PIN (AA) and touch (AB) policy tags, applying the
// YubiKey defaults (PIN always for 9C, once otherwise; touch never).
func parsePolicies(ts []tlv, slot byte) (pin, touch byte, ok bool) {
	pin, touch = pinOnce, touchNever
	if slot == 0x9c {
		pin = pinAlways
	}
	if v, found := findTLV(ts, 0xaa); found {
		if len(v) != 1 || v[0] > pinAlways {
			return 0, 0, false
		}
		if v[0] != policyDefault {
			pin = v[0]
		}
	}
	if v, found := findTLV(ts, 0xab); found {
		if len(v) != 1 || v[0] > touchCached {
			return 0, 0, false
		}
		if v[0] != policyDefault {
			touch = v[0]
		}
	}
	return pin, touch, true
}

// supportedAlg reports whether the firmware generates and uses keys of alg.
func (c *Card) supportedAlg(alg byte) bool {
	switch alg {
	case algP256, algP384:
		return true
	case algEd25519:
		return versionAtLeast(c.version, 5, 7, 0)
	}
	return false
}

// publicPoint encodes a public key as the card does inside tag 86.
func publicPoint(pub crypto.PublicKey) []byte {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		e, err := p.ECDH()
		if err != nil {
			panic(err)
		}
		return e.Bytes() // 04 || X || Y
	case ed25519.PublicKey:
		return p
	}
	panic("pivcard: unexpected public key type")
}

func (c *Card) cmdGenerate(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0 || !validKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	if !c.sess.mgmtAuthed {
		return nil, swSecurityStatus
	}
	outer, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData
	}
	tmpl, ok := findTLV(outer, 0xac)
	if !ok {
		return nil, swIncorrectData
	}
	ts, err := parseTLVs(tmpl)
	if err != nil {
		return nil, swIncorrectData
	}
	algB, ok := findTLV(ts, 0x80)
	if !ok || len(algB) != 1 || !c.supportedAlg(algB[0]) {
		return nil, swIncorrectData
	}
	pin, touch, ok := parsePolicies(ts, cmd.p2)
	if !ok {
		return nil, swIncorrectData
	}
	var priv crypto.Signer
	switch algB[0] {
	case algP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case algP384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case algEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, swConditionsNotMet
	}
	c.keys[cmd.p2] = &slotKey{alg: algB[0], pinPolicy: pin, touchPolicy: touch, origin: originGenerated, priv: priv}
	c.stats.Generates++
	return encodeTLV(0x7f49, encodeTLV(0x86, publicPoint(priv.Public()))), swOK
}

func (c *Card) cmdImport(cmd command) ([]byte, uint16) {
	if !validKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	if !c.sess.mgmtAuthed {
		return nil, swSecurityStatus
	}
	if !c.supportedAlg(cmd.p1) {
		return nil, swIncorrectData
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData
	}
	pin, touch, ok := parsePolicies(ts, cmd.p2)
	if !ok {
		return nil, swIncorrectData
	}
	var priv crypto.Signer
	switch cmd.p1 {
	case algP256, algP384:
		curve := elliptic.P256()
		if cmd.p1 == algP384 {
			curve = elliptic.P384()
		}
		d, ok := findTLV(ts, 0x06)
		if !ok || len(d) != (curve.Params().BitSize+7)/8 {
			return nil, swIncorrectData
		}
		k, err := ecdsaFromScalar(curve, d)
		if err != nil {
			return nil, swIncorrectData
		}
		priv = k
	case algEd25519:
		seed, ok := findTLV(ts, 0x07)
		if !ok || len(seed) != ed25519.SeedSize {
			return nil, swIncorrectData
		}
		priv = ed25519.NewKeyFromSeed(seed)
	}
	c.keys[cmd.p2] = &slotKey{alg: cmd.p1, pinPolicy: pin, touchPolicy: touch, origin: originImported, priv: priv}
	c.stats.Imports++
	return nil, swOK
}

func ecdsaFromScalar(curve elliptic.Curve, d []byte) (*ecdsa.PrivateKey, error) {
	var e *ecdh.PrivateKey
	var err error
	switch curve {
	case elliptic.P256():
		e, err = ecdh.P256().NewPrivateKey(d)
	default:
		e, err = ecdh.P384().NewPrivateKey(d)
	}
	if err != nil {
		return nil, err
	}
	pt := e.PublicKey().Bytes()
	size := (curve.Params().BitSize + 7) / 8
	return &ecdsa.PrivateKey{
		PublicKey: ecdsa.PublicKey{
			Curve: curve,
			X:     new(big.Int).SetBytes(pt[1 : 1+size]),
			Y:     new(big.Int).SetBytes(pt[1+size:]),
		},
		D: new(big.Int).SetBytes(d),
	}, nil
}

func (c *Card) cmdMetadata(cmd command) ([]byte, uint16) {
	if !versionAtLeast(c.version, 5, 3, 0) {
		return nil, swInsNotSupported
	}
	if cmd.p1 != 0 {
		return nil, swIncorrectP1P2
	}
	boolByte := func(b bool) []byte {
		if b {
			return []byte{1}
		}
		return []byte{0}
	}
	switch cmd.p2 {
	case keyMgmt:
		touch := byte(touchNever)
		if c.mgmtTouch {
			touch = touchAlways
		}
		isDefault := c.mgmtKey != nil && bytes.Equal(c.mgmtKey, DefaultManagementKey)
		return concat(
			encodeTLV(0x01, []byte{byte(c.mgmtAlg)}),
			encodeTLV(0x02, []byte{policyDefault, touch}),
			encodeTLV(0x05, boolByte(isDefault)),
		), swOK
	case refPIN, refPUK:
		isDefault := bytes.Equal(c.pin, []byte(DefaultPIN))
		max, left := c.pinMax, c.pinLeft
		if cmd.p2 == refPUK {
			isDefault = bytes.Equal(c.puk, []byte(DefaultPUK))
			max, left = c.pukMax, c.pukLeft
		}
		return concat(
			encodeTLV(0x01, []byte{0xff}),
			encodeTLV(0x05, boolByte(isDefault)),
			encodeTLV(0x06, []byte{byte(max), byte(left)}),
		), swOK
	case keyAttestation:
		return concat(
			encodeTLV(0x01, []byte{algP256}),
			encodeTLV(0x02, []byte{pinNever, touchNever}),
			encodeTLV(0x03, []byte{originImported}),
			encodeTLV(0x04, encodeTLV(0x86, publicPoint(c.attKey.Public()))),
		), swOK
	}
	if !validKeySlot(cmd.p2) {
		return nil, swIncorrectP1P2
	}
	k := c.keys[cmd.p2]
	if k == nil {
		return nil, swReferenceNotFound
	}
	return concat(
		encodeTLV(0x01, []byte{k.alg}),
		encodeTLV(0x02, []byte{k.pinPolicy, k.touchPolicy}),
		encodeTLV(0x03, []byte{k.origin}),
		encodeTLV(0x04, encodeTLV(0x86, publicPoint(k.priv.Public()))),
	), swOK
}

func (c *Card) cmdAttest(cmd command) ([]byte, uint16) {
	if cmd.p2 != 0 {
		return nil, swIncorrectP1P2
	}
	k := c.keys[cmd.p1]
	if !validKeySlot(cmd.p1) || k == nil || k.origin != originGenerated {
		return nil, swIncorrectData // piv-go maps 6A80 to ErrNotFound
	}
	der, err := attest(c.attCert, c.attKey, attestationInfo{
		slot:        cmd.p1,
		pub:         k.priv.Public(),
		firmware:    c.version,
		serial:      c.serial,
		pinPolicy:   k.pinPolicy,
		touchPolicy: k.touchPolicy,
		formFactor:  c.formFactor,
	})
	if err != nil {
		return nil, swConditionsNotMet
	}
	c.stats.Attests++
	return der, swOK
}

// objectID reads the tag list (5C) of GET DATA and PUT DATA.
func objectID(ts []tlv) (uint32, bool) {
	v, ok := findTLV(ts, 0x5c)
	if !ok || len(v) == 0 || len(v) > 3 {
		return 0, false
	}
	var id uint32
	for _, b := range v {
		id = id<<8 | uint32(b)
	}
	return id, true
}

func (c *Card) cmdGetData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3f || cmd.p2 != 0xff {
		return nil, swIncorrectP1P2
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData
	}
	id, ok := objectID(ts)
	if !ok {
		return nil, swIncorrectData
	}
	if id == objPrinted && !c.sess.pinVerified {
		return nil, swSecurityStatus
	}
	obj, ok := c.objects[id]
	if !ok {
		return nil, swFileNotFound
	}
	return encodeTLV(0x53, obj), swOK
}

func (c *Card) cmdPutData(cmd command) ([]byte, uint16) {
	if cmd.p1 != 0x3f || cmd.p2 != 0xff {
		return nil, swIncorrectP1P2
	}
	if !c.sess.mgmtAuthed {
		return nil, swSecurityStatus
	}
	ts, err := parseTLVs(cmd.data)
	if err != nil {
		return nil, swIncorrectData
	}
	id, ok := objectID(ts)
	if !ok {
		return nil, swIncorrectData
	}
	obj, ok := findTLV(ts, 0x53)
	if !ok {
		return nil, swIncorrectData
	}
	if len(obj) == 0 {
		delete(c.objects, id)
		return nil, swOK
	}
	c.objects[id] = bytes.Clone(obj)
	return nil, swOK
}
