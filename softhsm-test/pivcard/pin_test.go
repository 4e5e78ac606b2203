package pivcard

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-piv/piv-go/v2/piv"
)

func wantAuthErr(t *testing.T, err error, retries int) {
	t.Helper()
	var ae piv.AuthErr
	if !errors.As(err, &ae) || ae.Retries != retries {
		t.Fatalf("error = %v, want piv.AuthErr{Retries: %d}", err, retries)
	}
}

func TestWrongPINBlockUnblock(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000010}, 0)
	yk := c.Open(t)
	if n, err := yk.Retries(); err != nil || n != 3 {
		t.Fatalf("Retries() = %d, %v; want 3", n, err)
	}
	wantAuthErr(t, yk.VerifyPIN("000000"), 2)
	if n := c.PINRetries(); n != 2 {
		t.Fatalf("card PIN retries = %d, want 2", n)
	}
	if n, err := yk.Retries(); err != nil || n != 2 {
		t.Fatalf("Retries() = %d, %v; want 2", n, err)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("VerifyPIN(right): %v", err)
	}
	if n := c.PINRetries(); n != 3 {
		t.Fatalf("card PIN retries after a good PIN = %d, want 3", n)
	}
	// Like a YubiKey, an empty VERIFY answers 9000 once the PIN is verified,
	// which piv-go's Retries reports as an error.
	if n, err := yk.Retries(); err == nil {
		t.Fatalf("Retries() after a good VERIFY = %d, nil; want piv-go's error", n)
	}

	wantAuthErr(t, yk.VerifyPIN("000000"), 2)
	wantAuthErr(t, yk.VerifyPIN("000000"), 1)
	wantAuthErr(t, yk.VerifyPIN("000000"), 0)
	err := yk.VerifyPIN(piv.DefaultPIN)
	wantAuthErr(t, err, 0)
	if !strings.Contains(err.Error(), "6983") {
		t.Fatalf("VerifyPIN on a blocked PIN = %v, want 6983", err)
	}
	if s := c.Stats(); s.PINVerifies != 6 || s.PINFailures != 4 {
		t.Errorf("PINVerifies %d, PINFailures %d; want 6 and 4", s.PINVerifies, s.PINFailures)
	}

	wantAuthErr(t, yk.Unblock("00000000", "654321"), 2)
	if n := c.PUKRetries(); n != 2 {
		t.Fatalf("card PUK retries = %d, want 2", n)
	}
	if err := yk.Unblock(piv.DefaultPUK, "654321"); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if c.PINRetries() != 3 || c.PUKRetries() != 3 {
		t.Fatalf("retries after unblock: PIN %d PUK %d, want 3 and 3", c.PINRetries(), c.PUKRetries())
	}
	wantAuthErr(t, yk.VerifyPIN(piv.DefaultPIN), 2)
	if err := yk.VerifyPIN("654321"); err != nil {
		t.Fatalf("VerifyPIN(new): %v", err)
	}

	// Change PIN and PUK; a malformed new PIN costs no retry.
	if err := yk.SetPIN("654321", "123"); err == nil {
		t.Fatal("SetPIN accepted a 3-digit PIN")
	}
	if n := c.PINRetries(); n != 3 {
		t.Fatalf("PIN retries after a refused new PIN = %d, want 3", n)
	}
	if err := yk.SetPIN("654321", "11112222"); err != nil {
		t.Fatalf("SetPIN: %v", err)
	}
	wantAuthErr(t, yk.SetPUK("87654321", "11223344"), 2)
	if err := yk.SetPUK(piv.DefaultPUK, "11223344"); err != nil {
		t.Fatalf("SetPUK: %v", err)
	}
	if err := yk.VerifyPIN("11112222"); err != nil {
		t.Fatalf("VerifyPIN after SetPIN: %v", err)
	}
	wantAuthErr(t, yk.Unblock(piv.DefaultPUK, "222333"), 2)
}

func TestPINPolicies(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000011}, 0)
	yk := c.Open(t)
	gen := func(slot piv.Slot, pp piv.PINPolicy) any {
		pub, err := yk.GenerateKey(piv.DefaultManagementKey, slot, piv.Key{
			Algorithm: piv.AlgorithmEC256, PINPolicy: pp, TouchPolicy: piv.TouchPolicyNever,
		})
		if err != nil {
			t.Fatalf("GenerateKey: %v", err)
		}
		return pub
	}
	once := gen(piv.SlotAuthentication, piv.PINPolicyOnce)
	always := gen(piv.SlotSignature, piv.PINPolicyAlways)
	never := gen(piv.SlotKeyManagement, piv.PINPolicyNever)
	noPIN := piv.KeyAuth{PINPolicy: piv.PINPolicyNever} // piv-go sends no VERIFY

	// PIN once, not yet verified: refused.
	err := trySign(yk, piv.SlotAuthentication, once, noPIN, []byte("m"))
	if err == nil || !strings.Contains(err.Error(), "6982") {
		t.Fatalf("PIN-once sign without PIN = %v, want 6982", err)
	}
	before := c.Stats()
	sign(t, yk, piv.SlotAuthentication, once, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
	sign(t, yk, piv.SlotAuthentication, once, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
	s := c.Stats()
	if s.PINVerifies-before.PINVerifies != 1 || s.EmptyVerifies-before.EmptyVerifies != 2 {
		t.Errorf("PIN-once: %d PIN VERIFYs and %d empty VERIFYs for 2 signs, want 1 and 2",
			s.PINVerifies-before.PINVerifies, s.EmptyVerifies-before.EmptyVerifies)
	}
	// PIN verified in this session: PIN-once keys sign without it now.
	sign(t, yk, piv.SlotAuthentication, once, noPIN, []byte("m"))

	// PIN always: a VERIFY right before each sign.
	before = c.Stats()
	sign(t, yk, piv.SlotSignature, always, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
	sign(t, yk, piv.SlotSignature, always, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
	if n := c.Stats().PINVerifies - before.PINVerifies; n != 2 {
		t.Errorf("PIN-always: %d PIN VERIFYs for 2 signs, want 2", n)
	}
	// ... and the session's verified PIN is not enough.
	err = trySign(yk, piv.SlotSignature, always, piv.KeyAuth{PIN: piv.DefaultPIN, PINPolicy: piv.PINPolicyOnce}, []byte("m"))
	if err == nil || !strings.Contains(err.Error(), "6982") {
		t.Fatalf("PIN-always sign without a fresh VERIFY = %v, want 6982", err)
	}

	before = c.Stats()
	sign(t, yk, piv.SlotKeyManagement, never, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
	if s := c.Stats(); s.PINVerifies != before.PINVerifies || s.EmptyVerifies != before.EmptyVerifies {
		t.Errorf("PIN-never sign sent VERIFY commands")
	}

	// Pulling the card out drops the verified PIN.
	yk.Close()
	c.Remove()
	c.Reinsert(t)
	if c.PINVerified() {
		t.Fatal("PIN still verified after removal")
	}
	yk2 := c.Open(t)
	err = trySign(yk2, piv.SlotAuthentication, once, noPIN, []byte("m"))
	if err == nil || !strings.Contains(err.Error(), "6982") {
		t.Fatalf("PIN-once sign after reinsertion without PIN = %v, want 6982", err)
	}
	sign(t, yk2, piv.SlotAuthentication, once, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("m"))
}

func TestSetRetriesAndReset(t *testing.T) {
	c := StartCard(t, Config{Serial: 31000012, PIN: "24682468", PUK: "13571357"}, 0)
	yk := c.Open(t)
	if err := yk.SetRetries(piv.DefaultManagementKey, "24682468", 5, 4); err != nil {
		t.Fatalf("SetRetries: %v", err)
	}
	if c.PINRetries() != 5 || c.PUKRetries() != 4 {
		t.Fatalf("retries = %d/%d, want 5/4", c.PINRetries(), c.PUKRetries())
	}
	// Setting retries resets PIN and PUK to the factory values.
	wantAuthErr(t, yk.VerifyPIN("24682468"), 4)
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("VerifyPIN(default) after SetRetries: %v", err)
	}

	newKey := make([]byte, 24)
	if err := yk.SetManagementKey(piv.DefaultManagementKey, newKey); err != nil {
		t.Fatal(err)
	}
	if _, err := yk.GenerateKey(newKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err != nil {
		t.Fatal(err)
	}
	attBefore := c.AttestationCertificate()

	// piv-go's Reset blocks PIN and PUK with random values, then resets.
	if err := yk.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if c.HasKey(0x9c) {
		t.Fatal("key survived Reset")
	}
	if c.PINRetries() != 3 || c.PUKRetries() != 3 {
		t.Errorf("retries after Reset = %d/%d, want 3/3", c.PINRetries(), c.PUKRetries())
	}
	if k, alg := c.ManagementKey(); alg != MgmtAlgAES192 || string(k) != string(DefaultManagementKey) {
		t.Errorf("management key after Reset = %x (%#x), want the factory key", k, alg)
	}
	if err := yk.VerifyPIN(piv.DefaultPIN); err != nil {
		t.Fatalf("VerifyPIN(default) after Reset: %v", err)
	}
	if _, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyNever,
	}); err != nil {
		t.Fatalf("GenerateKey with the factory key after Reset: %v", err)
	}
	att, err := yk.AttestationCertificate()
	if err != nil || !att.Equal(attBefore) {
		t.Fatalf("attestation certificate after Reset: %v; want it kept", err)
	}
}
