package yubikey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
)

// TestSetupGenerateSign: a fresh YubiKey is set up, keys of every algorithm
// and policy are generated with the PIN-protected management key, attested
// under the explicitly trusted test root, and sign; an occupied slot is
// refused unless replacing it is confirmed.
func TestSetupGenerateSign(t *testing.T) {
	c := startCard(t, pivcard.Config{Serial: 41000001})
	ctx := context.Background()

	devs, _, err := Devices(ctx, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var dev *DeviceInfo
	for i := range devs {
		if devs[i].Serial == c.Serial() {
			dev = &devs[i]
		}
	}
	if dev == nil || !dev.DefaultPIN || !dev.DefaultPUK || !dev.DefaultManagementKey || dev.PINRetries != 3 || dev.Firmware != "5.7.1" || dev.FormFactor != "USB-A Keychain" {
		t.Fatalf("Devices() = %+v, want the fresh card", devs)
	}

	// Setup needs a confirmation, and changes nothing without it.
	_, err = Setup(ctx, hsm.Options{}, SetupOptions{Serial: c.Serial(), NewPIN: func(context.Context, *DeviceInfo) ([]byte, error) { return []byte(testPIN), nil },
		Confirm: func(string) (bool, error) { return false, nil }})
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("setup without confirmation: %v", err)
	}
	if mk, _ := c.ManagementKey(); !bytes.Equal(mk, piv.DefaultManagementKey) || c.Stats().PINVerifies != 0 {
		t.Fatal("setup changed the card without confirmation")
	}
	res := setUp(t, c)
	if !res.ChangedPIN || !res.ChangedPUK || !res.ChangedManagementKey || len(res.PUK) != 8 {
		t.Fatalf("setup result %+v", res)
	}
	if mk, alg := c.ManagementKey(); bytes.Equal(mk, piv.DefaultManagementKey) || alg != pivcard.MgmtAlgAES192 {
		t.Fatalf("management key after setup: %x (alg %x)", mk, alg)
	}
	if again := setUp(t, c); again.ChangedPIN || again.ChangedPUK || again.ChangedManagementKey {
		t.Fatalf("second setup changed %+v", again)
	}

	n := &notes{}
	b := openBackend(t, testOptions(c, n))
	pin := secretFile(t, "pin", testPIN)
	base := fmt.Sprintf("yubikey:serial=%d;slot=", c.Serial())
	for _, tc := range []struct {
		slot  string
		alg   hsm.Algorithm
		pin   string
		touch string
		hash  crypto.Hash
	}{
		{"9c", hsm.ECDSAP256, "", "", crypto.SHA256},
		{"82", hsm.ECDSAP384, "once", "never", crypto.SHA384},
		{"83", hsm.Ed25519, "always", "cached", 0},
	} {
		uri := mustURI(t, base+tc.slot+"?pin-source="+pin)
		info, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: tc.alg, PINPolicy: tc.pin, TouchPolicy: tc.touch})
		if err != nil {
			t.Fatalf("generate %s: %v", tc.slot, err)
		}
		ev := info.Evidence
		wantPIN, wantTouch := tc.pin, tc.touch
		if wantPIN == "" {
			wantPIN, wantTouch = "always", "always"
		}
		if info.Algorithm != tc.alg || !ev.HardwareBorn() || ev.Serial != c.Serial() || ev.Slot != tc.slot || ev.PINPolicy != wantPIN ||
			ev.TouchPolicy != wantTouch || ev.Roots != Fingerprint(c.CA().Certificate()) || ev.Firmware != "5.7.1" {
			t.Fatalf("generate %s: %+v, evidence %s", tc.slot, info, ev.Summary())
		}
		if info.URI != base+tc.slot {
			t.Errorf("key URI %q", info.URI)
		}
		hs, err := b.Signer(ctx, uri)
		if err != nil {
			t.Fatalf("signer %s: %v", tc.slot, err)
		}
		if !samePublic(hs.Public(), info.Public) {
			t.Fatalf("signer %s: another public key", tc.slot)
		}
		before := c.Stats()
		for i := 0; i < 2; i++ {
			msg := fmt.Sprintf("message %d for %s", i, tc.slot)
			d := []byte(msg)
			if tc.hash != 0 {
				d = digest(tc.hash, msg)
			}
			sig, err := hs.Sign(nil, d, tc.hash)
			if err != nil {
				t.Fatalf("sign %s: %v", tc.slot, err)
			}
			switch pub := info.Public.(type) {
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, d, sig) {
					t.Fatalf("%s: bad signature", tc.slot)
				}
			case ed25519.PublicKey:
				if !ed25519.Verify(pub, d, sig) {
					t.Fatalf("%s: bad signature", tc.slot)
				}
			}
		}
		after := c.Stats()
		wantVerifies := 2
		if wantPIN == "once" {
			wantVerifies = 0 // verified when the management key was read, in this session
		}
		if got := after.PINVerifies - before.PINVerifies; got != wantVerifies {
			t.Errorf("%s: %d PIN verifies for two signatures, want %d", tc.slot, got, wantVerifies)
		}
		if after.Signs-before.Signs != 2 {
			t.Errorf("%s: %d signatures", tc.slot, after.Signs-before.Signs)
		}
	}
	if !strings.Contains(n.String(), "touch YubiKey serial 41000001 now to sign with slot 9c") {
		t.Errorf("the officer was not told to touch:\n%s", n)
	}

	// An occupied slot.
	uri := mustURI(t, base+"9c?pin-source="+pin)
	old, err := b.Signer(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256})
	if !errors.Is(err, hsm.ErrKeyExists) || !strings.Contains(hsm.HintOf(err), "--overwrite") {
		t.Fatalf("occupied slot: %v", err)
	}
	_, err = b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, Overwrite: true})
	if !errors.Is(err, hsm.ErrKeyExists) || !strings.Contains(err.Error(), "confirmation") {
		t.Fatalf("overwrite without a way to confirm: %v", err)
	}
	asked := ""
	b.opts.Confirm = func(q string) (bool, error) { asked = q; return true, nil }
	info, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, Overwrite: true})
	if err != nil || !strings.Contains(asked, "Slot 9c of YubiKey serial 41000001 holds a key") {
		t.Fatalf("confirmed overwrite: %v (asked %q)", err, asked)
	}
	if samePublic(info.Public, old.Public()) {
		t.Fatal("overwrite kept the old key")
	}
	// A Signer of the replaced key refuses to return a signature by the new one.
	if _, err := old.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256); !errors.Is(err, hsm.ErrKeyMismatch) {
		t.Fatalf("signing with a replaced key: %v", err)
	}

	// List shows the three keys with their evidence.
	keys, err := b.List(ctx, mustURI(t, fmt.Sprintf("yubikey:serial=%d", c.Serial())))
	if err != nil || len(keys) != 3 {
		t.Fatalf("list: %v %+v", err, keys)
	}
	for _, k := range keys {
		if !k.Evidence.HardwareBorn() {
			t.Errorf("list %s: %s", k.URI, k.Evidence.Summary())
		}
	}
}

// TestPINSafety: the retry counter is read before any PIN is sent; a wrong
// PIN is reported with the tries left; the final try is refused without a
// VERIFY unless forced; a blocked PIN says to use the PUK.
func TestPINSafety(t *testing.T) {
	c := startCard(t, pivcard.Config{Serial: 41000002})
	ctx := context.Background()
	o := testOptions(c, nil)
	b := openBackend(t, o)
	base := fmt.Sprintf("yubikey:serial=%d;slot=9c", c.Serial())
	// No setup: the factory management key, given explicitly.
	if _, err := b.Generate(ctx, mustURI(t, base+"?management-key-source="+factoryKeyFile(t)), hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, TouchPolicy: "never"}); err != nil {
		t.Fatal(err)
	}
	b.Close() // each attempt below opens the card anew, as a new rootkeeper process would
	if s := c.Stats(); s.PINVerifies != 0 {
		t.Fatalf("generating with a management-key-source sent %d PINs", s.PINVerifies)
	}
	good := secretFile(t, "good", pivcard.DefaultPIN)
	bad := secretFile(t, "bad", "999999")
	short := secretFile(t, "short", "1234")
	d := digest(crypto.SHA256, "root")
	sign := func(pinFile string, force bool) error {
		o := o
		o.ForceLastPINTry = force
		b := openBackend(t, o)
		s, err := b.Signer(ctx, mustURI(t, base+"?pin-source="+pinFile))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Sign(nil, d, crypto.SHA256)
		b.Close()
		return err
	}
	wantPINErr := func(err error, retries int) {
		t.Helper()
		var pe *hsm.PINError
		if !errors.As(err, &pe) || pe.Retries != retries {
			t.Fatalf("error %v, want a PINError with %d retries", err, retries)
		}
		if c.PINRetries() != retries {
			t.Fatalf("card has %d retries, want %d", c.PINRetries(), retries)
		}
	}
	// A PIN a YubiKey cannot have is not sent.
	if err := sign(short, false); err == nil || !strings.Contains(err.Error(), "6 to 8 characters") || c.Stats().PINVerifies != 0 {
		t.Fatalf("short PIN: %v (%d verifies)", err, c.Stats().PINVerifies)
	}
	err := sign(bad, false)
	wantPINErr(err, 2)
	if !strings.Contains(err.Error(), "wrong PIN, 2 tries left") {
		t.Errorf("message: %v", err)
	}
	wantPINErr(sign(bad, false), 1)

	// At one try left: refused, nothing sent.
	before := c.Stats()
	err = sign(good, false)
	var last *hsm.LastTryError
	if !errors.As(err, &last) || !strings.Contains(hsm.HintOf(err), "--force-last-pin-try") {
		t.Fatalf("final try: %v", err)
	}
	if after := c.Stats(); after.PINVerifies != before.PINVerifies || c.PINRetries() != 1 {
		t.Fatalf("the refusal sent %d VERIFY", after.PINVerifies-before.PINVerifies)
	}
	// Forced, with the right PIN: the counter is reset.
	if err := sign(good, true); err != nil {
		t.Fatalf("forced final try: %v", err)
	}
	if c.PINRetries() != 3 {
		t.Fatalf("retries after a good PIN: %d", c.PINRetries())
	}

	// Block the PIN, then every attempt is refused at once with the PUK hint.
	sign(bad, false)
	sign(bad, false)
	err = sign(bad, true)
	wantPINErr(err, 0)
	before = c.Stats()
	err = sign(good, true)
	if !errors.Is(err, hsm.ErrPINLocked) || !strings.Contains(hsm.HintOf(err), "PUK") {
		t.Fatalf("blocked PIN: %v (hint %q)", err, hsm.HintOf(err))
	}
	if c.Stats().PINVerifies != before.PINVerifies {
		t.Fatal("a PIN was sent to a blocked device")
	}

	// Unblock with the PUK: a wrong one is counted and reported, the right
	// one sets the new PIN.
	unblock := func(puk string) error {
		_, err := Unblock(ctx, o, UnblockOptions{Serial: c.Serial(),
			PUK:    func(_ context.Context, req hsm.PINRequest) ([]byte, error) { return []byte(puk), nil },
			NewPIN: func(context.Context, *DeviceInfo) ([]byte, error) { return []byte("112233"), nil }})
		return err
	}
	err = unblock("87654321")
	var pe *hsm.PINError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "wrong PUK, 2 tries left") || c.PUKRetries() != 2 {
		t.Fatalf("wrong PUK: %v (card: %d PUK tries)", err, c.PUKRetries())
	}
	if err := unblock(pivcard.DefaultPUK); err != nil {
		t.Fatalf("unblock: %v", err)
	}
	if err := sign(secretFile(t, "new", "112233"), false); err != nil || c.PINRetries() != 3 {
		t.Fatalf("sign after unblock: %v", err)
	}

	refusedOncePerRun(t, c, o, bad)
}

// refusedOncePerRun: with two keys on the device and a wrong PIN, one try
// is spent; the second key (and the first again) sends nothing more in the
// same run. The card is at 3 tries.
func refusedOncePerRun(t *testing.T, c *pivcard.Card, o hsm.Options, bad string) {
	ctx := context.Background()
	d := digest(crypto.SHA256, "root")
	gen := openBackend(t, o)
	if _, err := gen.Generate(ctx, mustURI(t, fmt.Sprintf("yubikey:serial=%d;slot=82?management-key-source=%s", c.Serial(), factoryKeyFile(t))),
		hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, TouchPolicy: "never"}); err != nil {
		t.Fatal(err)
	}
	gen.Close()
	before := c.Stats()
	run := openBackend(t, o)
	var errs []error
	for _, slot := range []string{"9c", "82", "9c"} {
		s, err := run.Signer(ctx, mustURI(t, fmt.Sprintf("yubikey:serial=%d;slot=%s?pin-source=%s", c.Serial(), slot, bad)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Sign(nil, d, crypto.SHA256)
		errs = append(errs, err)
	}
	var pe *hsm.PINError
	if !errors.As(errs[0], &pe) || pe.Retries != 2 || pe.Earlier {
		t.Fatalf("first signature: %v", errs[0])
	}
	for i, err := range errs[1:] {
		if !errors.As(err, &pe) || !pe.Earlier || !strings.Contains(err.Error(), "earlier in this run") {
			t.Fatalf("signature %d after the wrong PIN: %v", i+2, err)
		}
	}
	if sent := c.Stats().PINVerifies - before.PINVerifies; sent != 1 || c.PINRetries() != 2 {
		t.Fatalf("%d PINs sent for two keys after a wrong PIN (card: %d tries left), want 1", sent, c.PINRetries())
	}
}

// TestAttestationRefusals: a chain to an unknown root, an attestation of
// another key, and attestations naming another serial or slot are refused.
func TestAttestationRefusals(t *testing.T) {
	c := startCard(t, pivcard.Config{Serial: 41000003})
	ctx := context.Background()
	o := testOptions(c, nil)
	b := openBackend(t, o)
	mgmt := factoryKeyFile(t)
	uri := mustURI(t, fmt.Sprintf("yubikey:serial=%d;slot=9c?management-key-source=%s", c.Serial(), mgmt))
	first, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	// Without --attestation-roots only Yubico's roots count.
	yubico := openBackend(t, hsm.Options{})
	_, err = yubico.Signer(ctx, uri)
	if !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "does not chain to Yubico's PIV attestation roots") ||
		!strings.Contains(hsm.HintOf(err), "--attestation-roots") {
		t.Fatalf("unknown root: %v", err)
	}
	yubico.Close()
	// Another explicit root does not do either.
	other, err := pivcard.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wrongRoot := openBackend(t, hsm.Options{AttestationRoots: other.CertPool(), AttestationRootsName: Fingerprint(other.Certificate())})
	if _, err := wrongRoot.Signer(ctx, uri); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "--attestation-roots") {
		t.Fatalf("other root: %v", err)
	}
	wrongRoot.Close()

	// The card answers with the first key's attestation after the slot was
	// regenerated: an attestation for a different key.
	stale := x509CertOf(t, first.Evidence.Certificates[0])
	b2 := openBackend(t, o)
	o.Confirm = func(string) (bool, error) { return true, nil }
	b2.opts.Confirm = o.Confirm
	if _, err := b2.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	b2.Close()
	defer func(f func(string) (card, error)) { openCard = f }(openCard)
	real := openCard
	openCard = func(reader string) (card, error) {
		c, err := real(reader)
		if err != nil {
			return nil, err
		}
		return staleCard{c, stale}, nil
	}
	b3 := openBackend(t, o)
	_, err = b3.Signer(ctx, uri)
	if !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), "is for another key than the one in use") {
		t.Fatalf("attestation of another key: %v", err)
	}
	b3.Close()

	// A response lost in the middle of its chain (GET RESPONSE answered
	// 6985) is read once more; lost twice, the status is reported.
	for _, losses := range []int{1, 2} {
		lossy := &lossyCard{losses: losses}
		openCard = func(reader string) (card, error) {
			c, err := real(reader)
			if err != nil {
				return nil, err
			}
			lossy.card = c
			return lossy, nil
		}
		b4 := openBackend(t, o)
		_, err = b4.Signer(ctx, uri)
		b4.Close()
		if losses == 1 && err != nil {
			t.Fatalf("one lost response: %v", err)
		}
		if losses == 2 && (!errors.Is(err, hsm.ErrDevice) || !strings.Contains(err.Error(), "status 6985")) {
			t.Fatalf("two lost responses: %v", err)
		}
		if lossy.reads != 2 {
			t.Fatalf("%d reads of slot f9 after %d losses, want 2", lossy.reads, losses)
		}
	}
	openCard = real

	// Another serial, another slot.
	f9 := x509CertOf(t, first.Evidence.Certificates[1])
	v := verifier{roots: c.CA().CertPool()}
	for _, tc := range []struct {
		want expectation
		msg  string
	}{
		{expectation{serial: c.Serial() + 1, slot: piv.SlotSignature, pub: stale.PublicKey}, "is for serial 41000003"},
		{expectation{serial: c.Serial(), slot: mustSlot(t, "82"), pub: stale.PublicKey}, "is for slot 9c"},
	} {
		if _, err := v.check(stale, f9, tc.want); !errors.Is(err, ErrAttestation) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("want %q, got %v", tc.msg, err)
		}
	}
	if ev, err := v.check(stale, f9, expectation{serial: c.Serial(), slot: piv.SlotSignature, pub: stale.PublicKey}); err != nil || !ev.HardwareBorn() {
		t.Fatalf("good attestation: %v", err)
	}

	// Recorded evidence is checked again; changed fields are found.
	ev := first.Evidence
	if _, err := (&Backend{}).VerifyEvidence(ev); !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(hsm.HintOf(err), "--attestation-roots") {
		t.Fatalf("re-check without the explicit root: %v", err)
	}
	withRoots := &Backend{opts: o}
	if pub, err := withRoots.VerifyEvidence(ev); err != nil || !samePublic(pub, first.Public) {
		t.Fatalf("re-check: %v", err)
	}
	for _, change := range []func(e *hsm.Evidence){
		func(e *hsm.Evidence) { e.Serial++ },
		func(e *hsm.Evidence) { e.Slot = "82" },
		func(e *hsm.Evidence) { e.PINPolicy = "never" },
		func(e *hsm.Evidence) { e.Roots = Fingerprint(other.Certificate()) },
		func(e *hsm.Evidence) { e.Roots = RootsYubico },
		func(e *hsm.Evidence) { e.Certificates = e.Certificates[:1] },
	} {
		e := *ev
		change(&e)
		if _, err := withRoots.VerifyEvidence(&e); !errors.Is(err, ErrAttestation) {
			t.Errorf("changed evidence %s accepted: %v", e.Summary(), err)
		}
	}
}

// staleCard answers Attest with a fixed certificate.
type staleCard struct {
	card
	cert *x509.Certificate
}

func (s staleCard) Attest(piv.Slot) (*x509.Certificate, error) { return s.cert, nil }

// lossyCard loses the response to its first losses reads of slot f9.
type lossyCard struct {
	card
	losses, reads int
}

type lostResponse struct{}

func (lostResponse) Error() string  { return "smart card error 6985" }
func (lostResponse) Status() uint16 { return 0x6985 }

func (l *lossyCard) AttestationCertificate() (*x509.Certificate, error) {
	l.reads++
	if l.reads <= l.losses {
		return nil, fmt.Errorf("reading further response: %w", lostResponse{})
	}
	return l.card.AttestationCertificate()
}

func x509CertOf(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSlot(t *testing.T, s string) piv.Slot {
	t.Helper()
	slot, err := ParseSlot(s)
	if err != nil {
		t.Fatal(err)
	}
	return slot
}

// TestOldFirmwareAndAbsentCard: Ed25519 is refused below firmware 5.7; a
// YubiKey that is not connected is asked for, waited for (bounded and
// cancellable), and reported with the serials that are there.
func TestOldFirmwareAndAbsentCard(t *testing.T) {
	c := startCard(t, pivcard.Config{Serial: 41000004, Version: [3]byte{5, 4, 3}})
	ctx := context.Background()
	n := &notes{}
	o := testOptions(c, n)
	b := openBackend(t, o)
	uri := mustURI(t, fmt.Sprintf("yubikey:serial=%d;slot=9c?management-key-source=%s", c.Serial(), factoryKeyFile(t)))
	_, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.Ed25519})
	if !errors.Is(err, hsm.ErrUnsupported) || !strings.Contains(err.Error(), "firmware 5.4.3: Ed25519 keys need firmware 5.7 or later") {
		t.Fatalf("ed25519 on 5.4.3: %v", err)
	}
	info, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256})
	if err != nil || info.Evidence.Firmware != "5.4.3" {
		t.Fatalf("p256 on 5.4.3: %v", err)
	}
	if !strings.Contains(n.String(), "YSA-2024-03") {
		t.Errorf("no firmware warning:\n%s", n)
	}
	b.Close()

	o.Getenv = func(k string) string {
		if k == WaitEnv {
			return "700ms"
		}
		return ""
	}
	absent := openBackend(t, o)
	start := time.Now()
	_, err = absent.Signer(ctx, mustURI(t, "yubikey:serial=99999999;slot=9c"))
	if !errors.Is(err, hsm.ErrTokenNotPresent) || !strings.Contains(err.Error(), "YubiKey serial 99999999 is not connected") ||
		!strings.Contains(hsm.HintOf(err), "serial 41000004") {
		t.Fatalf("absent card: %v (hint %q)", err, hsm.HintOf(err))
	}
	if !strings.Contains(n.String(), "insert YubiKey serial 99999999 (waiting up to 700ms") {
		t.Errorf("the officer was not asked to insert the card:\n%s", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waited %s", d)
	}
	o.Getenv = func(string) string { return "" } // the default wait: cancel it
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = openBackend(t, o).Signer(cctx, mustURI(t, "yubikey:serial=99999999;slot=9c"))
	if err == nil || !strings.Contains(err.Error(), "cancelled while waiting for YubiKey serial 99999999") {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// TestRemovedWhileSigning: a card pulled out while it waits for a touch
// gives a clear error, and the card is asked for again afterwards.
func TestRemovedWhileSigning(t *testing.T) {
	c := startCard(t, pivcard.Config{Serial: 41000005})
	ctx := context.Background()
	o := testOptions(c, nil)
	o.Getenv = func(k string) string {
		if k == WaitEnv {
			return "0"
		}
		return ""
	}
	b := openBackend(t, o)
	uri := mustURI(t, fmt.Sprintf("yubikey:serial=%d;slot=9c?management-key-source=%s&pin-source=%s", c.Serial(), factoryKeyFile(t), secretFile(t, "pin", pivcard.DefaultPIN)))
	if _, err := b.Generate(ctx, uri, hsm.GenerateOptions{Algorithm: hsm.ECDSAP256}); err != nil {
		t.Fatal(err)
	}
	s, err := b.Signer(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTouchDelay(3 * time.Second)
	go func() {
		time.Sleep(500 * time.Millisecond)
		c.Remove()
	}()
	_, err = s.Sign(nil, digest(crypto.SHA256, "root"), crypto.SHA256)
	if !errors.Is(err, hsm.ErrTokenNotPresent) || !strings.Contains(err.Error(), "YubiKey serial 41000005 stopped answering during signing: was it removed?") {
		t.Fatalf("removed card: %v", err)
	}
	_, err = s.Sign(nil, digest(crypto.SHA256, "root"), crypto.SHA256)
	if !errors.Is(err, hsm.ErrTokenNotPresent) || !strings.Contains(err.Error(), "is not connected") {
		t.Fatalf("after removal: %v", err)
	}
	c.SetTouchDelay(0)
	c.Reinsert(t)
	if _, err := s.Sign(nil, digest(crypto.SHA256, "root"), crypto.SHA256); err != nil {
		t.Fatalf("after reinsertion: %v", err)
	}
}
