package hsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadPINOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	prompted := 0
	o := Options{
		Getenv: func(k string) string { return env[k] },
		Prompt: func(context.Context, PINRequest) ([]byte, error) { prompted++; return []byte("typed"), nil },
	}
	withSource, _ := ParseURI("pkcs11:token=a?pin-source=file:" + pinFile)
	plain, _ := ParseURI("pkcs11:token=a")

	env[PINEnv] = "from-env"
	if pin, err := o.ReadPIN(ctx, withSource, PINRequest{}); err != nil || string(pin) != "from-file" {
		t.Errorf("pin-source first: %q, %v", pin, err)
	}
	if pin, err := o.ReadPIN(ctx, plain, PINRequest{}); err != nil || string(pin) != "from-env" {
		t.Errorf("env second: %q, %v", pin, err)
	}
	delete(env, PINEnv)
	if pin, err := o.ReadPIN(ctx, plain, PINRequest{}); err != nil || string(pin) != "typed" || prompted != 1 {
		t.Errorf("prompt last: %q, %v, prompted %d", pin, err, prompted)
	}
	o.Prompt = nil
	if _, err := o.ReadPIN(ctx, plain, PINRequest{}); !errors.Is(err, ErrNoPIN) || HintOf(err) == "" {
		t.Errorf("no source: %v (hint %q)", err, HintOf(err))
	}
}

func TestReadSecretFileRefusesWorldReadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte("123456"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(p, "pin-source"); err == nil || HintOf(err) != "chmod 600 "+p {
		t.Fatalf("world-readable pin file accepted: %v", err)
	}
}

func TestCheckRetries(t *testing.T) {
	var o Options
	if err := o.CheckRetries(PINRequest{Device: "t", Retries: 3}); err != nil {
		t.Errorf("3 left: %v", err)
	}
	var last *LastTryError
	if err := o.CheckRetries(PINRequest{Device: "t", Retries: 1}); !errors.As(err, &last) {
		t.Errorf("1 left: %v", err)
	}
	if err := o.CheckRetries(PINRequest{Device: "t", Retries: -1, Final: true}); !errors.As(err, &last) {
		t.Errorf("final flag: %v", err)
	}
	if err := o.CheckRetries(PINRequest{Device: "t", Retries: 0}); !errors.Is(err, ErrPINLocked) {
		t.Errorf("0 left: %v", err)
	}
	o.ForceLastPINTry = true
	if err := o.CheckRetries(PINRequest{Device: "t", Retries: 1}); err != nil {
		t.Errorf("forced: %v", err)
	}
}
