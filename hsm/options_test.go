package hsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// secret writes content to a file of mode perm in dir.
func secret(t *testing.T, dir, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadSecretFileRefusals(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	f, err := os.OpenFile(big, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // 1 GB, sparse
		t.Fatal(err)
	}
	f.Close()
	good := secret(t, dir, "good", "4321\n", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	open := secret(t, dir, "open", "4321\n", 0o644)
	openLink := filepath.Join(dir, "open-link")
	if err := os.Symlink(open, openLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, want string }{
		{fifo, "is not a regular file (a FIFO)"},
		{dir, "is not a regular file (a directory)"},
		{"/dev/null", "is not a regular file (a character device)"},
		{big, "is longer than 256 bytes"},
		{"/proc/self/environ", "it is not a PIN"},
		{secret(t, dir, "environ", "PIN=4321\x00HOME=/root\x00", 0o600), "contains a NUL or another control character"},
		{secret(t, dir, "two", "4321\n1234\n", 0o600), "has more than one line"},
		{secret(t, dir, "crlf2", "4321\r\n\r\n", 0o600), "has more than one line"},
		{secret(t, dir, "empty", "", 0o600), "is empty"},
		{secret(t, dir, "nl", "\n", 0o600), "is empty"},
		{secret(t, dir, "tab", "43\t21", 0o600), "control character"},
		{secret(t, dir, "space", "4321 \n", 0o600), "begins or ends with a space"},
		{secret(t, dir, "latin1", "\xe94321", 0o600), "is not UTF-8"},
		{openLink, "readable by other users"},
		{filepath.Join(dir, "missing"), "cannot be opened"},
		{"file://otherhost" + good, `names the host "otherhost"`},
		{"file:relative/pin", "needs an absolute path"},
		{"file://localhost", "has no path"},
		{"", "the value is empty"},
	} {
		done := make(chan error, 1)
		go func() { _, err := ReadSecretFile(tc.src, "pin-source"); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrNoPIN) {
				t.Errorf("ReadSecretFile(%q) = %v, want %q", tc.src, err, tc.want)
			} else if strings.Contains(err.Error(), "4321") {
				t.Errorf("ReadSecretFile(%q): the error repeats the PIN: %v", tc.src, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadSecretFile(%q) hangs", tc.src)
		}
	}
	// Accepted: the path, a symlink to it, and the file: URI forms of RFC 8089.
	for _, src := range []string{good, link, "file:" + good, "file://" + good, "file://localhost" + good, "FILE://LocalHost" + good,
		secret(t, dir, "crlf", "4321\r\n", 0o600), secret(t, dir, "bare", "4321", 0o600)} {
		pin, err := ReadSecretFile(src, "pin-source")
		if err != nil || string(pin) != "4321" {
			t.Errorf("ReadSecretFile(%q) = %q, %v", src, pin, err)
		}
	}
	spaced := secret(t, dir, "a b", "4321\n", 0o600)
	if pin, err := ReadSecretFile("file://"+strings.ReplaceAll(spaced, " ", "%20"), "pin-source"); err != nil || string(pin) != "4321" {
		t.Errorf("percent-encoded file: URI: %q, %v", pin, err)
	}
}

// TestSecretValuesNotShown: a PIN typed where a pin-source path was
// expected is never printed.
func TestSecretValuesNotShown(t *testing.T) {
	for _, src := range []string{"4321", "file:4321", "pin 4321", "file://4321/x"} {
		_, err := ReadSecretFile(src, "pin-source")
		if err == nil || strings.Contains(err.Error(), "4321") || strings.Contains(HintOf(err), "4321") {
			t.Errorf("ReadSecretFile(%q) = %v (hint %q)", src, err, HintOf(err))
		}
	}
	if got := ShowSource("/run/pin"); got != "/run/pin" {
		t.Errorf("ShowSource(/run/pin) = %q", got)
	}
	if got := ShowSource("4321"); strings.Contains(got, "4321") {
		t.Errorf("ShowSource(4321) = %q", got)
	}
}

func TestReadPINChecks(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{}
	typed := "12345"
	o := Options{Getenv: func(k string) string { return env[k] },
		Prompt: func(context.Context, PINRequest) ([]byte, error) { return []byte(typed), nil }}
	plain, _ := ParseURI("pkcs11:token=a")
	piv := PINRequest{Device: "YubiKey serial 1", Retries: 3, MinLen: 6, MaxLen: 8}
	for _, v := range []string{"4321\n1234", "4321\x00", " 4321"} {
		env[PINEnv] = v
		if _, err := o.ReadPIN(ctx, plain, PINRequest{}); err == nil || !strings.Contains(err.Error(), PINEnv) || strings.Contains(err.Error(), "4321") {
			t.Errorf("%s=%q: %v", PINEnv, v, err)
		}
	}
	env[PINEnv] = "4321"
	_, err := o.ReadPIN(ctx, plain, piv)
	if err == nil || !strings.Contains(err.Error(), "6 to 8 characters") || !strings.Contains(err.Error(), "was not sent") || strings.Contains(err.Error(), "4321") {
		t.Errorf("short PIN from the environment: %v", err)
	}
	delete(env, PINEnv)
	if _, err := o.ReadPIN(ctx, plain, piv); err == nil || !strings.Contains(err.Error(), "the prompt has 5") {
		t.Errorf("short PIN from the prompt: %v", err)
	}
	typed = "123456789"
	if _, err := o.ReadPIN(ctx, plain, piv); err == nil {
		t.Error("a 9-character PIV PIN was accepted")
	}
	typed = "123456"
	if pin, err := o.ReadPIN(ctx, plain, piv); err != nil || string(pin) != "123456" {
		t.Errorf("good PIN: %q, %v", pin, err)
	}
}
