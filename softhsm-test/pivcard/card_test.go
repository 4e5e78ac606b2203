package pivcard

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// sign signs msg with the key in slot through piv-go and verifies the
// signature with pub.
func sign(t *testing.T, yk *piv.YubiKey, slot piv.Slot, pub crypto.PublicKey, auth piv.KeyAuth, msg []byte) {
	t.Helper()
	if err := trySign(yk, slot, pub, auth, msg); err != nil {
		t.Fatalf("sign with slot %v: %v", slot, err)
	}
}

func trySign(yk *piv.YubiKey, slot piv.Slot, pub crypto.PublicKey, auth piv.KeyAuth, msg []byte) error {
	priv, err := yk.PrivateKey(slot, pub, auth)
	if err != nil {
		return err
	}
	signer := priv.(crypto.Signer)
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		var h crypto.Hash
		if p.Curve.Params().BitSize == 384 {
			d := sha512.Sum384(msg)
			digest, h = d[:], crypto.SHA384
		} else {
			d := sha256.Sum256(msg)
			digest, h = d[:], crypto.SHA256
		}
		sig, err := signer.Sign(rand.Reader, digest, h)
		if err != nil {
			return err
		}
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			return err
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(p, msg, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
	default:
		return errors.New("unexpected public key type")
	}
	return nil
}

func TestSerialVersionFormFactor(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000001, FormFactor: piv.FormfactorUSBCNano}, 0)
	yk := c.Open(t)
	serial, err := yk.Serial()
	if err != nil || serial != 31000001 {
		t.Fatalf("Serial() = %d, %v; want 31000001", serial, err)
	}
	if v := yk.Version(); v != (piv.Version{Major: 5, Minor: 7, Patch: 1}) {
		t.Errorf("Version() = %+v, want 5.7.1", v)
	}
	ff, err := yk.FormFactor()
	if err != nil || ff != piv.FormfactorUSBCNano {
		t.Errorf("FormFactor() = %v, %v; want USB-C Nano", ff, err)
	}
	// The PIV applet is selected again after FormFactor.
	if serial, err := yk.Serial(); err != nil || serial != 31000001 {
		t.Errorf("Serial() after FormFactor = %d, %v", serial, err)
	}
	if n := c.Stats().APDUs; n < 5 {
		t.Errorf("card saw %d APDUs, want the real chain to deliver at least 5", n)
	}
}

func TestGenerateSignAttest(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000002}, 0)
	yk := c.Open(t)
	if got := yk.AttestationCertificate; got == nil {
		t.Fatal("no AttestationCertificate method")
	}
	attCert, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatalf("AttestationCertificate: %v", err)
	}
	if !bytes.Equal(attCert.Raw, c.AttestationCertificate().Raw) {
		t.Fatal("slot F9 certificate read through piv-go differs from the card's")
	}

	cases := []struct {
		name string
		slot piv.Slot
		key  piv.Key
	}{
		{"P256", piv.SlotAuthentication, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever}},
		{"P384", piv.SlotSignature, piv.Key{Algorithm: piv.AlgorithmEC384, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyCached}},
		{"Ed25519", piv.SlotKeyManagement, piv.Key{Algorithm: piv.AlgorithmEd25519, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyAlways}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := yk.GenerateKey(piv.DefaultManagementKey, tc.slot, tc.key)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			info, err := yk.KeyInfo(tc.slot)
			if err != nil {
				t.Fatalf("KeyInfo: %v", err)
			}
			if info.Algorithm != tc.key.Algorithm || info.PINPolicy != tc.key.PINPolicy ||
				info.TouchPolicy != tc.key.TouchPolicy || info.Origin != piv.OriginGenerated {
				t.Errorf("KeyInfo = %+v, want %+v generated", info, tc.key)
			}
			if !pubEqual(info.PublicKey, pub) {
				t.Errorf("KeyInfo public key differs from the generated one")
			}

			sign(t, yk, tc.slot, pub, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("root.json "+tc.name))

			cert, err := yk.Attest(tc.slot)
			if err != nil {
				t.Fatalf("Attest: %v", err)
			}
			a, err := (&piv.Verifier{Roots: c.CA().CertPool()}).Verify(attCert, cert)
			if err != nil {
				t.Fatalf("Verifier.Verify: %v", err)
			}
			if !pubEqual(cert.PublicKey, pub) {
				t.Errorf("attested public key differs from the generated one")
			}
			if a.Serial != 31000002 || a.Version != (piv.Version{Major: 5, Minor: 7, Patch: 1}) ||
				a.PINPolicy != tc.key.PINPolicy || a.TouchPolicy != tc.key.TouchPolicy ||
				a.Slot != tc.slot || a.Formfactor != piv.FormfactorUSBAKeychain {
				t.Errorf("attestation = %+v", a)
			}
			// The test CA is not Yubico's: the default verifier refuses it.
			if _, err := piv.Verify(attCert, cert); err == nil {
				t.Error("piv.Verify accepted an attestation from the test CA")
			}
		})
	}
	if s := c.Stats(); s.Generates != 3 || s.Signs != 3 || s.Attests != 3 {
		t.Errorf("stats = %+v, want 3 generates, signs, attests", s)
	}
	// Another CA's pool must not verify this card.
	other, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := yk.Attest(piv.SlotAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&piv.Verifier{Roots: other.CertPool()}).Verify(attCert, cert); err == nil {
		t.Error("attestation verified against an unrelated CA")
	}
	// Attesting an empty slot is ErrNotFound.
	if _, err := yk.Attest(piv.SlotCardAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("Attest(empty slot) = %v, want ErrNotFound", err)
	}
	if _, err := yk.KeyInfo(piv.SlotCardAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("KeyInfo(empty slot) = %v, want ErrNotFound", err)
	}
}

func pubEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

func TestManagementKey(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000003}, 0)
	yk := c.Open(t)
	if _, alg := c.ManagementKey(); alg != MgmtAlgAES192 {
		t.Fatalf("factory management key algorithm = %#x, want AES-192 on 5.7", alg)
	}
	newKey := bytes.Repeat([]byte{0x42}, 32)
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err != nil {
		t.Fatalf("SetManagementKey: %v", err)
	}
	if k, alg := c.ManagementKey(); alg != MgmtAlgAES256 || !bytes.Equal(k, newKey) {
		t.Fatalf("card management key = %x (%#x), want the new AES-256 key", k, alg)
	}
	before := c.Stats().MgmtAuthFailures
	// piv-go learns the algorithm (AES-256, 32 bytes) from the metadata and
	// refuses a key of the wrong size itself.
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err == nil {
		t.Fatal("GenerateKey with the old management key succeeded")
	}
	wrong := bytes.Repeat([]byte{0x41}, 32)
	if _, err := yk.GenerateKey(wrong, piv.SlotAuthentication, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err == nil || !strings.Contains(err.Error(), "6982") {
		t.Fatalf("GenerateKey with a wrong management key: %v, want 6982", err)
	}
	if got := c.Stats().MgmtAuthFailures; got != before+1 {
		t.Errorf("MgmtAuthFailures = %d, want %d", got, before+1)
	}
	if c.HasKey(0x9a) {
		t.Fatal("key generated without management key authentication")
	}
	if _, err := yk.GenerateKey(newKey, piv.SlotAuthentication, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err != nil {
		t.Fatalf("GenerateKey with the new management key: %v", err)
	}

	// PIN-protected metadata (object 5FC109) holding the management key.
	// piv-go v2.6.0 encodes the stored key's length as 24 whatever its size,
	// so store an AES-192 key.
	key192 := bytes.Repeat([]byte{0x43}, 24)
	if err := yk.SetManagementKey(newKey, key192); err != nil {
		t.Fatalf("SetManagementKey(AES-192): %v", err)
	}
	if err := yk.SetMetadata(key192, &piv.Metadata{ManagementKey: &key192}); err != nil {
		t.Fatalf("SetMetadata: %v", err)
	}
	if got := c.PINVerified(); got {
		t.Fatal("PIN verified before Metadata")
	}
	m, err := yk.Metadata(piv.DefaultPIN)
	if err != nil || m.ManagementKey == nil || !bytes.Equal(*m.ManagementKey, key192) {
		t.Fatalf("Metadata = %+v, %v; want the stored management key", m, err)
	}
}

func TestManagementKey3DES(t *testing.T) {
	key := bytes.Repeat([]byte{0x17, 0x29}, 12)
	c := StartCard(t, Config{Serial: 31000004, MgmtAlg: MgmtAlg3DES, ManagementKey: key}, 0)
	yk := c.Open(t)
	if _, err := yk.GenerateKey(key, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err != nil {
		t.Fatalf("GenerateKey with a 3DES management key: %v", err)
	}
	if !c.HasKey(0x9c) || c.Stats().MgmtAuths != 1 {
		t.Errorf("key present %v, management auths %d; want true, 1", c.HasKey(0x9c), c.Stats().MgmtAuths)
	}
}

// On firmware 5.4, Ed25519 is refused as a real YubiKey refuses an unknown
// algorithm, the factory management key is 3DES, and nothing is stored.
func TestEd25519RefusedOnFirmware54(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000005, Version: [3]byte{5, 4, 3}}, 0)
	yk := c.Open(t)
	if v := yk.Version(); v != (piv.Version{Major: 5, Minor: 4, Patch: 3}) {
		t.Fatalf("Version() = %+v, want 5.4.3", v)
	}
	_, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEd25519, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever,
	})
	if err == nil || !strings.Contains(err.Error(), "6a80") {
		t.Fatalf("GenerateKey(Ed25519) on 5.4.3 = %v, want smart card error 6a80", err)
	}
	if c.HasKey(0x9c) {
		t.Fatal("Ed25519 key stored on 5.4.3")
	}
	if _, alg := c.ManagementKey(); alg != MgmtAlg3DES {
		t.Errorf("factory management key algorithm = %#x on 5.4, want 3DES", alg)
	}
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever,
	})
	if err != nil {
		t.Fatalf("GenerateKey(P-256) on 5.4.3: %v", err)
	}
	sign(t, yk, piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("x"))
	cert, err := yk.Attest(piv.SlotSignature)
	if err != nil {
		t.Fatal(err)
	}
	attCert, err := yk.AttestationCertificate()
	if err != nil {
		t.Fatal(err)
	}
	a, err := (&piv.Verifier{Roots: c.CA().CertPool()}).Verify(attCert, cert)
	if err != nil || a.Version != (piv.Version{Major: 5, Minor: 4, Patch: 3}) {
		t.Fatalf("attested version = %+v, %v; want 5.4.3", a, err)
	}
}

// Firmware before 5.3 has no metadata command: piv-go assumes a 3DES
// management key and reads PIN policies from attestations.
func TestFirmware52(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000006, Version: [3]byte{5, 2, 7}}, 0)
	yk := c.Open(t)
	if _, err := yk.KeyInfo(piv.SlotSignature); err == nil {
		t.Error("KeyInfo succeeded on 5.2.7")
	}
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC384, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever,
	})
	if err != nil {
		t.Fatalf("GenerateKey on 5.2.7: %v", err)
	}
	sign(t, yk, piv.SlotSignature, pub, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("y"))
	if s := c.Stats(); s.Attests != 1 || s.PINVerifies != 1 {
		t.Errorf("stats = %+v; want the PIN policy read from 1 attestation and 1 PIN VERIFY", s)
	}
}

func TestImportedKeyNotAttested(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000007}, 0)
	yk := c.Open(t)
	// piv-go v2.6.0 cannot import Ed25519 keys (it never sets the
	// algorithm), so import a P-256 key.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := yk.SetPrivateKeyInsecure(piv.DefaultManagementKey, piv.SlotSignature, priv, piv.Key{
		PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err != nil {
		t.Fatalf("SetPrivateKeyInsecure: %v", err)
	}
	info, err := yk.KeyInfo(piv.SlotSignature)
	if err != nil || info.Origin != piv.OriginImported || !pubEqual(info.PublicKey, priv.Public()) {
		t.Fatalf("KeyInfo = %+v, %v; want imported with the same public key", info, err)
	}
	if _, err := yk.Attest(piv.SlotSignature); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("Attest(imported) = %v, want ErrNotFound", err)
	}
	sign(t, yk, piv.SlotSignature, priv.Public(), piv.KeyAuth{}, []byte("imported"))
}

// Long objects exercise command chaining (CLA 0x10) and GET RESPONSE.
func TestCertificateObjectChaining(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000008}, 0)
	yk := c.Open(t)
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of a few hundred bytes: more than one APDU each way.
	cert := ca.Certificate()
	if len(cert.Raw) < 300 {
		t.Fatalf("test certificate only %d bytes", len(cert.Raw))
	}
	before := c.Stats().APDUs
	if err := yk.SetCertificate(piv.DefaultManagementKey, piv.SlotSignature, cert); err != nil {
		t.Fatalf("SetCertificate: %v", err)
	}
	got, err := yk.Certificate(piv.SlotSignature)
	if err != nil || !bytes.Equal(got.Raw, cert.Raw) {
		t.Fatalf("Certificate = %v; want the stored certificate back", err)
	}
	// metadata + 2 auth + 2 PUT DATA parts + GET DATA + GET RESPONSE
	if n := c.Stats().APDUs - before; n < 7 {
		t.Errorf("%d APDUs for write and read, want chaining and GET RESPONSE (>= 7)", n)
	}
	if _, err := yk.Certificate(piv.SlotAuthentication); !errors.Is(err, piv.ErrNotFound) {
		t.Errorf("Certificate(empty) = %v, want ErrNotFound", err)
	}
}

func TestTouch(t *testing.T) {
	const delay = 400 * time.Millisecond
	c := StartCard(t, Config{Serial: 31000009, TouchDelay: delay}, 0)
	yk := c.Open(t)
	pubA, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyAlways,
	})
	if err != nil {
		t.Fatal(err)
	}
	pubC, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotAuthentication, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyCached,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		start := time.Now()
		sign(t, yk, piv.SlotSignature, pubA, piv.KeyAuth{}, []byte("touch"))
		if d := time.Since(start); d < delay {
			t.Errorf("touch-always sign %d took %v, want >= %v", i, d, delay)
		}
	}
	sign(t, yk, piv.SlotAuthentication, pubC, piv.KeyAuth{}, []byte("cached"))
	start := time.Now()
	sign(t, yk, piv.SlotAuthentication, pubC, piv.KeyAuth{}, []byte("cached"))
	if d := time.Since(start); d >= delay {
		t.Errorf("cached-touch sign within 15 s took %v, want no touch", d)
	}
	// Touch-always keys ignore the cache.
	if got := c.Stats().Touches; got != 2 {
		t.Errorf("Touches = %d, want 2 (touch-always signs; cached reuses their touch)", got)
	}
	c.SetTouchDelay(0)
	start = time.Now()
	sign(t, yk, piv.SlotSignature, pubA, piv.KeyAuth{}, []byte("fast"))
	if d := time.Since(start); d >= delay {
		t.Errorf("sign after SetTouchDelay(0) took %v", d)
	}
}
