package hsm

import (
	"errors"
	"fmt"
)

// Kinds of error, for errors.Is. Backends wrap them in *Error with the
// details an officer needs.
var (
	ErrTokenNotPresent = errors.New("token not present")
	ErrKeyNotFound     = errors.New("key not found")
	ErrKeyExists       = errors.New("key already exists")
	ErrAmbiguousKey    = errors.New("more than one key matches")
	ErrModuleNotFound  = errors.New("PKCS#11 module not found")
	ErrUnsupported     = errors.New("not supported")
	ErrKeyMismatch     = errors.New("public key does not match")
	ErrNoPIN           = errors.New("no PIN available")
	ErrPINLocked       = errors.New("PIN locked")
	ErrDevice          = errors.New("device error")
)

// Error is an error from a backend: what kind, about which URI, and what
// the officer can do.
type Error struct {
	Kind     error  // one of the Err… values above
	URI      string // the token or key concerned, without its query
	Detail   string // what happened, in the device's terms
	HintText string // what to do about it
	Err      error  // the driver's error, if any
}

func (e *Error) Error() string {
	msg := e.Detail
	if msg == "" && e.Kind != nil {
		msg = e.Kind.Error()
	}
	if e.URI != "" {
		msg = e.URI + ": " + msg
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Hint returns what the officer can do about the error.
func (e *Error) Hint() string { return e.HintText }

// Is reports whether target is the error's kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the driver's error.
func (e *Error) Unwrap() error { return e.Err }

// PINError reports a PIN the device refused, or the device's PIN state.
// Retries is the number of tries left, or -1 when the device does not say
// (PKCS#11 tokens only report "low" and "final try").
type PINError struct {
	Device   string // token label or YubiKey serial
	Retries  int
	Low      bool // the device says retries are low (CKF_USER_PIN_COUNT_LOW)
	FinalTry bool // one try is left (CKF_USER_PIN_FINAL_TRY or Retries == 1)
	Locked   bool // no try is left (CKF_USER_PIN_LOCKED or Retries == 0)
	// Earlier reports a refusal from earlier in the run: nothing was sent
	// this time, since a device that refused a PIN is sent no other PIN in
	// the same run.
	Earlier bool
}

func (e *PINError) Error() string {
	if e.Earlier {
		return fmt.Sprintf("%s: the device refused a PIN earlier in this run; rootkeeper sends it no other PIN until the next run", e.Device)
	}
	switch {
	case e.Locked:
		return fmt.Sprintf("%s: the PIN is locked", e.Device)
	case e.Retries >= 0:
		return fmt.Sprintf("%s: wrong PIN, %d %s left", e.Device, e.Retries, plural(e.Retries, "try", "tries"))
	case e.FinalTry:
		return fmt.Sprintf("%s: wrong PIN, only the final try is left", e.Device)
	case e.Low:
		return fmt.Sprintf("%s: wrong PIN, few tries left", e.Device)
	}
	return fmt.Sprintf("%s: wrong PIN", e.Device)
}

// Hint says what to do next.
func (e *PINError) Hint() string {
	switch {
	case e.Earlier && !e.Locked:
		return "check the PIN source (pin-source file, ROOTKEEPER_PIN or the prompt), then run the command again"
	case e.Locked:
		return "only the security officer can unblock it: the PKCS#11 SO PIN sets a new user PIN (docs/runbook-bootstrap.md, \"When something goes wrong\"), a YubiKey PIN is unblocked with the PUK (docs/runbook-yubikey.md)"
	case e.FinalTry || e.Retries == 1:
		return "one try is left: a wrong PIN now locks the device; check the PIN, then rerun with --force-last-pin-try"
	}
	return "check the PIN source (pin-source file, ROOTKEEPER_PIN or the prompt) and try again"
}

// Is makes errors.Is(err, ErrPINLocked) true for a locked PIN.
func (e *PINError) Is(target error) bool { return target == ErrPINLocked && e.Locked }

// LastTryError is returned, before any PIN is sent, when the device is at
// its final PIN try and the officer did not pass --force-last-pin-try.
type LastTryError struct {
	Device string
}

func (e *LastTryError) Error() string {
	return fmt.Sprintf("%s: refusing to send a PIN: the device is at its final PIN try and a wrong PIN would lock it", e.Device)
}

// Hint says how to proceed.
func (e *LastTryError) Hint() string {
	return "make sure the PIN is right, then rerun with --force-last-pin-try"
}

// Hinter is implemented by errors that know what the officer can do.
type Hinter interface{ Hint() string }

// HintOf returns the hint of the first error in err's chain that has one.
func HintOf(err error) string {
	for err != nil {
		if h, ok := err.(Hinter); ok && h.Hint() != "" {
			return h.Hint()
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if h := HintOf(e); h != "" {
					return h
				}
			}
			return ""
		default:
			return ""
		}
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
