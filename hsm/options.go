package hsm

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unicode/utf8"
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
	// MinLen and MaxLen are the PIN lengths the device takes, in bytes
	// (PKCS#11 ulMinPinLen and ulMaxPinLen, 6 and 8 for PIV); MaxLen 0
	// when the device does not say.
	MinLen, MaxLen int
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
// caller must have read the device's retry counter and PIN length limits
// into req first, and must call CheckRetries before ReadPIN. A PIN that
// the device cannot take (see [CheckPIN]) is refused here, before it is
// sent: a try is never spent on it.
//
// The caller should overwrite the returned slice once the PIN is sent.
func (o Options) ReadPIN(ctx context.Context, uri *URI, req PINRequest) ([]byte, error) {
	pin, from, err := o.readPIN(ctx, uri, req)
	if err != nil {
		var he *Error
		if errors.As(err, &he) && he.URI == "" {
			he.URI = uri.Object()
		}
		return nil, err
	}
	if err := CheckPIN(pin, from, req); err != nil {
		Wipe(pin)
		err.(*Error).URI = uri.Object()
		return nil, err
	}
	return pin, nil
}

func (o Options) readPIN(ctx context.Context, uri *URI, req PINRequest) ([]byte, string, error) {
	if src, ok := uri.Query("pin-source"); ok {
		pin, err := ReadSecretFile(src, "pin-source")
		return pin, "the pin-source file", err
	}
	if v := o.getenv(PINEnv); v != "" {
		pin := []byte(v)
		if err := checkLine(pin, PINEnv); err != nil {
			return nil, "", err
		}
		return pin, PINEnv, nil
	}
	if o.Prompt == nil {
		return nil, "", &Error{Kind: ErrNoPIN, URI: uri.Object(),
			Detail:   "no PIN: the URI has no pin-source, " + PINEnv + " is not set and there is no terminal to ask on",
			HintText: "add ?pin-source=FILE to the URI (a file readable only by you), set " + PINEnv + ", or run from a terminal"}
	}
	pin, err := o.Prompt(ctx, req)
	return pin, "the prompt", err
}

// CheckPIN refuses a PIN that the device described by req cannot take:
// shorter or longer than its limits, or empty. from says where the PIN
// came from, for the message; the PIN itself is never printed.
func CheckPIN(pin []byte, from string, req PINRequest) error {
	n := len(pin)
	bad := func(detail string) error {
		return &Error{Kind: ErrNoPIN, Detail: detail + "; it was not sent (a wrong PIN costs a try)",
			HintText: "check the PIN in " + from + " (pin-source file, " + PINEnv + " or the prompt)"}
	}
	switch {
	case n == 0:
		return bad("the PIN from " + from + " is empty")
	case req.MaxLen > 0 && (n < req.MinLen || n > req.MaxLen):
		return bad(fmt.Sprintf("%s takes a PIN of %d to %d characters, the one from %s has %d", req.Device, req.MinLen, req.MaxLen, from, n))
	}
	return nil
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

// MaxSecretFile is the largest pin-source style file rootkeeper reads, in
// bytes: a PIN of up to 255 bytes and its newline.
const MaxSecretFile = 256

// ReadSecretFile reads a PIN or management key from a pin-source style
// value (a path, or a file: URI: see [SourcePath]). The file must be a
// regular file (not a FIFO, a device or a directory) owned by the user
// and not accessible by others, of at most [MaxSecretFile] bytes and one
// line of printable text (one trailing newline is stripped). Symbolic
// links are followed (secret mounts such as Kubernetes' use them): the
// checks apply to the file actually opened, read from the open file (no
// race between a check and the read). A FIFO is opened without blocking
// and refused. The value is printed in messages only when it looks like an
// absolute path ([ShowSource]).
func ReadSecretFile(src, what string) ([]byte, error) {
	path, err := SourcePath(src, what)
	if err != nil {
		return nil, err
	}
	shown := ShowSource(src)
	fail := func(detail, hint string, err error) ([]byte, error) {
		return nil, &Error{Kind: ErrNoPIN, Detail: fmt.Sprintf("%s file %s %s", what, shown, detail), HintText: hint, Err: err}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail("cannot be opened", "check the path in "+what+"= (write an absolute path)", errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail("cannot be examined", "", errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Sprintf("is not a regular file (%s)", fileKind(fi.Mode())),
			"write the PIN into a regular file of one line, mode 600; rootkeeper does not read FIFOs, devices or directories", nil)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fail(fmt.Sprintf("is readable by other users (mode %v)", fi.Mode().Perm()), "chmod 600 "+shown, nil)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fail(fmt.Sprintf("belongs to another user (uid %d)", st.Uid),
			"a PIN file must belong to the user who runs rootkeeper: chown it, or make your own copy with mode 600", nil)
	}
	data := make([]byte, MaxSecretFile+1)
	n, err := io.ReadFull(f, data)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		Wipe(data)
		return fail("cannot be read", "", err)
	}
	data = data[:n]
	if n > MaxSecretFile {
		Wipe(data)
		return fail(fmt.Sprintf("is longer than %d bytes: it is not a PIN file", MaxSecretFile),
			"a pin-source file holds the PIN alone, on one line", nil)
	}
	if err := checkLine(data, what+" file "+shown); err != nil {
		Wipe(data)
		return nil, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	return bytes.TrimSuffix(data, []byte("\r")), nil
}

// checkLine refuses a secret that is not one line of printable text: more
// than one line, a NUL or another control character (such as the NULs of
// /proc/self/environ), text that is not UTF-8, blanks at either end, or
// nothing. One trailing newline ("\n" or "\r\n") is allowed.
func checkLine(b []byte, what string) error {
	fail := func(detail string) error {
		return &Error{Kind: ErrNoPIN, Detail: what + " " + detail + ": it is not a PIN, and was not sent",
			HintText: "write the PIN alone on one line (one trailing newline is allowed)"}
	}
	line := bytes.TrimSuffix(b, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	switch {
	case len(line) == 0:
		return fail("is empty")
	case bytes.ContainsAny(line, "\r\n"):
		return fail("has more than one line")
	case bytes.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fail("contains a NUL or another control character")
	case !utf8.Valid(line):
		return fail("is not UTF-8 text")
	case line[0] == ' ' || line[len(line)-1] == ' ':
		return fail("begins or ends with a space")
	}
	return nil
}

// fileKind names a file type that is not a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	}
	return "type " + m.Type().String()
}

// Wipe overwrites a secret in memory.
func Wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}
