package pkcs11

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/softhsm-test/softhsm"
)

// TestShimPINFlags runs the backend against the PKCS#11 shim module
// (softhsm-test/pkcs11shim), which wraps the real SoftHSM2 and reports the
// PIN flags SoftHSM never sets. The shim counts C_Login calls itself.
func TestShimPINFlags(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a", "root-b")
	shim := env.NewShim(t)
	b := open(t, hsm.Options{})
	generate(t, b, shim.URI(env, "root-a", "k"), hsm.ECDSAP256)
	b.Close()
	if n := len(shim.Logins(t)); n != 1 {
		t.Fatalf("%d logins through the shim, want 1", n)
	}
	logins := func(want int, label string) {
		t.Helper()
		got := 0
		for _, l := range shim.Logins(t) {
			if strings.Contains(l, "token="+label+" ") {
				got++
			}
		}
		if got != want {
			t.Fatalf("%d C_Login calls to %s, want %d: %q", got, label, want, shim.Logins(t))
		}
	}
	try := func(o hsm.Options, label string) error {
		b := open(t, o)
		defer b.Close()
		_, err := b.Signer(bg, parse(t, shim.URI(env, label, "k")))
		return err
	}
	shim.Set(t, "root-a final-try low")
	var last *hsm.LastTryError
	if err := try(hsm.Options{}, "root-a"); !errors.As(err, &last) {
		t.Fatalf("final try: %v", err)
	}
	logins(1, "root-a")
	shim.Set(t, "* locked")
	if err := try(hsm.Options{ForceLastPINTry: true}, "root-a"); !errors.Is(err, hsm.ErrPINLocked) {
		t.Fatalf("locked: %v", err)
	}
	logins(1, "root-a")
	// Another token is not affected by a line for root-a.
	shim.Set(t, "root-a final-try")
	b = open(t, hsm.Options{})
	if _, err := b.List(bg, parse(t, shim.URI(env, "root-b", ""))); err != nil {
		t.Fatal(err)
	}
	b.Close()
	logins(1, "root-b")
	// Forced: exactly one PIN is sent, and the officer is told.
	var told []string
	if err := try(hsm.Options{ForceLastPINTry: true, Notify: func(m string) { told = append(told, m) }}, "root-a"); err != nil {
		t.Fatal(err)
	}
	logins(2, "root-a")
	if len(told) == 0 || !strings.Contains(told[0], "final PIN try") {
		t.Errorf("told %q", told)
	}
	// COUNT_LOW: the PIN is sent, and the officer is told.
	shim.Set(t, "root-a low")
	told = nil
	if err := try(hsm.Options{Notify: func(m string) { told = append(told, m) }}, "root-a"); err != nil {
		t.Fatal(err)
	}
	if len(told) == 0 || !strings.Contains(told[0], "few PIN tries are left") {
		t.Errorf("told %q", told)
	}
	logins(3, "root-a")
}

// TestPINLength: a PIN the token's ulMinPinLen and ulMaxPinLen rule out is
// never sent.
func TestPINLength(t *testing.T) {
	env := softhsm.NewTokens(t, "root-a")
	shim := env.NewShim(t)
	for _, limits := range []string{"maxpin=8", "minpin=20 maxpin=64"} {
		shim.Set(t, "root-a "+limits)
		_, err := open(t, hsm.Options{}).List(bg, parse(t, shim.URI(env, "root-a", "")))
		if !errors.Is(err, hsm.ErrNoPIN) || !strings.Contains(err.Error(), "was not sent") || strings.Contains(err.Error(), softhsm.PIN) {
			t.Fatalf("%s: %v", limits, err)
		}
		if n := len(shim.Logins(t)); n != 0 {
			t.Fatalf("%s: %d logins", limits, n)
		}
	}
	// SoftHSM's own limits (4 to 255) let the test PIN through.
	shim.Set(t, "# nothing")
	var req hsm.PINRequest
	_, err := open(t, hsm.Options{Prompt: func(_ context.Context, r hsm.PINRequest) ([]byte, error) {
		req = r
		return []byte(softhsm.PIN), nil
	}}).List(bg, parse(t, "pkcs11:token=root-a?module-path="+shim.Path))
	if err != nil || req.MinLen != 4 || req.MaxLen != 255 {
		t.Fatalf("limits %d to %d: %v", req.MinLen, req.MaxLen, err)
	}
}
