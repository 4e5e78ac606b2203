package hsm

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// PINEnv is the environment variable a PIN may come from, for scheduled
// jobs that have no terminal and no pin-source file.
const PINEnv = "ROOTKEEPER_PIN"

// PINRequest tells a prompt what the device says before a PIN is sent.
type PINRequest struct {
	Device  string // token label and serial, or "YubiKey serial N"
	Purpose string // "user PIN", "PUK", …
	Retries int    // tries left, -1 when the device does not say
	Low     bool   // the device says tries are low
	Final   bool   // one try is left (only asked when forced)
}

// PINFunc reads a PIN from the officer, typically from the terminal with
// echo off. It must not log or keep the PIN.
type PINFunc func(ctx context.Context, req PINRequest) ([]byte, error)

// Options are the caller's choices a backend needs.
type Options struct {
	// Prompt reads a PIN from the officer. When nil, a PIN must come from a
	// pin-source or from ROOTKEEPER_PIN.
	Prompt PINFunc
	// ForceLastPINTry allows sending a PIN when one try is left.
	ForceLastPINTry bool
	// Notify shows the officer what the device waits for ("touch the
	// YubiKey", "insert YubiKey serial N"). It may be nil.
	Notify func(msg string)
	// Progress shows what the backend is doing ("generating key …"), which
	// the officer need not act on: a quiet run leaves it out. Nil means
	// Notify.
	Progress func(msg string)
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// AttestationRoots, when set, replaces Yubico's PIV attestation roots:
	// an attestation chain must then lead to one of these. It is set only
	// when the officer passes a root explicitly (--attestation-roots), never
	// from a default location.
	AttestationRoots *x509.CertPool
	// AttestationRootsName names AttestationRoots for people and records,
	// e.g. "sha256:<fingerprint of the root certificate>".
	AttestationRootsName string
	// Confirm asks the officer a yes/no question before a destructive step,
	// such as replacing the key in an occupied YubiKey slot. When nil, such
	// steps are refused.
	Confirm func(question string) (bool, error)
}

// Say passes a progress message to Progress (or Notify).
func (o Options) Say(format string, a ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, a...))
		return
	}
	o.Tell(format, a...)
}

// Tell passes msg to Notify, if there is one.
func (o Options) Tell(format string, a ...any) {
	if o.Notify != nil {
		o.Notify(fmt.Sprintf(format, a...))
	}
}

func (o Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

// ReadPIN returns the PIN for the device named by uri: from the URI's
// pin-source file, else from ROOTKEEPER_PIN, else from the prompt. The
// caller must have read the device's retry counter into req first, and
// must call CheckRetries before ReadPIN.
//
// The caller should overwrite the returned slice once the PIN is sent.
func (o Options) ReadPIN(ctx context.Context, uri *URI, req PINRequest) ([]byte, error) {
	if src, ok := uri.Query("pin-source"); ok {
		return ReadSecretFile(src, "pin-source")
	}
	if v := o.getenv(PINEnv); v != "" {
		return []byte(v), nil
	}
	if o.Prompt == nil {
		return nil, &Error{Kind: ErrNoPIN, URI: uri.Object(),
			Detail:   "no PIN: the URI has no pin-source, " + PINEnv + " is not set and there is no terminal to ask on",
			HintText: "add ?pin-source=FILE to the URI (a file readable only by you), set " + PINEnv + ", or run from a terminal"}
	}
	return o.Prompt(ctx, req)
}

// CheckRetries refuses to send a PIN at the device's final try unless the
// officer forced it, and refuses outright when the PIN is locked.
func (o Options) CheckRetries(req PINRequest) error {
	final := req.Final || req.Retries == 1
	if req.Retries == 0 {
		return &PINError{Device: req.Device, Retries: 0, Locked: true}
	}
	if final && !o.ForceLastPINTry {
		return &LastTryError{Device: req.Device}
	}
	return nil
}

// ReadSecretFile reads a PIN or management key from a pin-source style
// file ("file:/path" or "/path"). It refuses a file that others can read
// and strips one trailing newline.
func ReadSecretFile(src, what string) ([]byte, error) {
	path := strings.TrimPrefix(src, "file:")
	path = strings.TrimPrefix(path, "//") // file:///path
	if path == "" {
		return nil, &Error{Kind: ErrNoPIN, Detail: what + " is empty", HintText: "write " + what + "=/path/to/file"}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("cannot read %s file %s", what, path), Err: err,
			HintText: "check the path in " + what + "="}
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("%s file %s is readable by other users (mode %v)", what, path, fi.Mode().Perm()),
			HintText: "chmod 600 " + path}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("%s file %s belongs to another user (uid %d)", what, path, st.Uid),
			HintText: "a PIN file must belong to the user who runs rootkeeper: chown it, or make your own copy with mode 600"}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("cannot read %s file %s", what, path), Err: err}
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("%s file %s is empty", what, path)}
	}
	return data, nil
}

// Wipe overwrites a secret in memory.
func Wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
