package pkcs11

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// tokenAttrs are the URI path attributes that select a token, with the
// CK_TOKEN_INFO field each one matches.
var tokenAttrs = []struct {
	name  string
	field func(pkcs11.TokenInfo) string
}{
	{"token", func(ti pkcs11.TokenInfo) string { return ti.Label }},
	{"serial", func(ti pkcs11.TokenInfo) string { return ti.SerialNumber }},
	{"manufacturer", func(ti pkcs11.TokenInfo) string { return ti.ManufacturerID }},
	{"model", func(ti pkcs11.TokenInfo) string { return ti.Model }},
}

// token is an open token: one read-write session that holds the login
// state and serves searches and key generation, and the sessions of the
// Signers opened on it.
type token struct {
	mod  *module
	slot uint
	info pkcs11.TokenInfo // as read when the token was opened

	mu       sync.Mutex // serializes the session and login
	session  pkcs11.SessionHandle
	loggedIn bool
	closed   bool
	signers  []*Signer

	// refused is the token's refusal of a PIN in this run. Once a token
	// has refused a PIN, no PIN is sent to it again until the process's
	// backends are closed: one wrong PIN costs one try, whatever the
	// number of keys on the token.
	refusedMu sync.Mutex
	refused   *hsm.PINError
}

// clean trims the blank (and NUL) padding of CK_TOKEN_INFO strings.
func clean(s string) string { return strings.TrimRight(s, " \x00") }

// device names the token for people.
func (t *token) device() string {
	return fmt.Sprintf("token %q (serial %s)", clean(t.info.Label), clean(t.info.SerialNumber))
}

// findToken returns the one initialized token that the URI's token,
// serial, manufacturer and model attributes select, opening it if needed.
func (m *module) findToken(uri *hsm.URI) (*token, error) {
	_, hasLabel := uri.Path("token")
	_, hasSerial := uri.Path("serial")
	slots, err := m.drv.GetSlotList(true)
	if err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_GetSlotList failed", Err: err,
			HintText: "check that the device is connected and its module (" + m.path + ") is configured"}
	}
	var present []string
	var matches []uint
	var infos []pkcs11.TokenInfo
	for _, slot := range slots {
		ti, err := m.drv.GetTokenInfo(slot)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		present = append(present, fmt.Sprintf("token=%s (serial=%s)", clean(ti.Label), clean(ti.SerialNumber)))
		ok := true
		for _, a := range tokenAttrs {
			if want, set := uri.Path(a.name); set && clean(a.field(ti)) != want {
				ok = false
			}
		}
		if ok {
			matches = append(matches, slot)
			infos = append(infos, ti)
		}
	}
	sort.Strings(present)
	have := "no initialized token is present"
	if len(present) > 0 {
		have = "tokens present: " + strings.Join(present, ", ")
	}
	if !hasLabel && !hasSerial {
		return nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri.Object(), Detail: "the URI names no token",
			HintText: "add token=LABEL (and serial=SERIAL if labels repeat) to the URI; " + have}
	}
	switch len(matches) {
	case 0:
		return nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri.Object(), Detail: "no token matches the URI in " + m.path,
			HintText: "check token= and serial= and that the token is plugged in; " + have}
	case 1:
	default:
		var which []string
		for _, ti := range infos {
			which = append(which, "serial="+clean(ti.SerialNumber))
		}
		return nil, &hsm.Error{Kind: hsm.ErrAmbiguousKey, URI: uri.Object(),
			Detail:   fmt.Sprintf("%d tokens match the URI", len(matches)),
			HintText: "add serial= to the URI to choose one: " + strings.Join(which, ", ")}
	}
	slot, ti := matches[0], infos[0]

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		return nil, errClosed(uri)
	}
	key := fmt.Sprintf("%d/%s/%s", slot, clean(ti.SerialNumber), clean(ti.Label))
	if t := m.tokens[key]; t != nil {
		return t, nil
	}
	sh, err := m.drv.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_OpenSession failed", Err: err,
			HintText: "check that the token is writable and not opened by too many programs"}
	}
	t := &token{mod: m, slot: slot, info: ti, session: sh}
	m.tokens[key] = t
	return t, nil
}

func errClosed(uri *hsm.URI) error {
	u := ""
	if uri != nil {
		u = uri.Object()
	}
	return &hsm.Error{Kind: hsm.ErrDevice, URI: u, Detail: "the PKCS#11 backend is closed",
		HintText: "this is a bug in the caller: open a new backend (hsm.Keyring) after closing one"}
}

// shut logs out and closes every session of the token. The module's lock
// is held.
func (t *token) shut() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for _, s := range t.signers {
		s.shut()
	}
	t.signers = nil
	var first error
	if t.loggedIn {
		if err := t.mod.drv.Logout(t.session); err != nil && rv(err) != pkcs11.CKR_USER_NOT_LOGGED_IN {
			first = &hsm.Error{Kind: hsm.ErrDevice, Detail: t.device() + ": C_Logout failed", Err: err}
		}
		t.loggedIn = false
	}
	if err := t.mod.drv.CloseSession(t.session); err != nil && first == nil {
		first = &hsm.Error{Kind: hsm.ErrDevice, Detail: t.device() + ": C_CloseSession failed", Err: err}
	}
	return first
}

// pinRequest reads the token's PIN flags. It returns a PINError for a
// locked PIN: nothing is sent to such a token.
func (t *token) pinRequest(uri *hsm.URI, purpose string) (hsm.PINRequest, error) {
	req := hsm.PINRequest{Device: t.device(), Purpose: purpose, Retries: -1}
	ti, err := t.mod.drv.GetTokenInfo(t.slot)
	if err != nil {
		return req, &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_GetTokenInfo failed", Err: err,
			HintText: "check that the token is still connected"}
	}
	if ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0 {
		return req, &hsm.PINError{Device: req.Device, Retries: -1, Locked: true}
	}
	req.Low = ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0
	req.Final = ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0
	req.MinLen, req.MaxLen = pinLimits(ti)
	return req, nil
}

// pinLimits returns the token's ulMinPinLen and ulMaxPinLen, or 0, 0 when
// they make no sense (some modules report 0, or CK_UNAVAILABLE_INFORMATION).
func pinLimits(ti pkcs11.TokenInfo) (int, int) {
	lo, hi := ti.MinPinLen, ti.MaxPinLen
	if hi == 0 || lo > hi || hi > 1<<16 {
		return 0, 0
	}
	return int(lo), int(hi)
}

// refusal returns the PIN refusal the token gave earlier in this run, as
// an error that says so, or nil.
func (t *token) refusal() error {
	t.refusedMu.Lock()
	defer t.refusedMu.Unlock()
	if t.refused == nil {
		return nil
	}
	again := *t.refused
	again.Earlier = true
	return &again
}

func (t *token) refuse(pe *hsm.PINError) {
	t.refusedMu.Lock()
	defer t.refusedMu.Unlock()
	if t.refused == nil {
		t.refused = pe
	}
}

// pinError builds the PINError for a PIN the token refused, from the
// token's flags after the refusal.
func (t *token) pinError(code uint) *hsm.PINError {
	pe := &hsm.PINError{Device: t.device(), Retries: -1, Locked: code == pkcs11.CKR_PIN_LOCKED}
	if ti, err := t.mod.drv.GetTokenInfo(t.slot); err == nil {
		pe.Low = ti.Flags&pkcs11.CKF_USER_PIN_COUNT_LOW != 0
		pe.FinalTry = ti.Flags&pkcs11.CKF_USER_PIN_FINAL_TRY != 0
		pe.Locked = pe.Locked || ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0
	}
	return pe
}

// sendPIN checks the token's PIN flags, reads the PIN the officer gave and
// sends it with C_Login as userType on session sh. It never retries, and
// sends nothing to a token that refused a PIN earlier in the run.
func (t *token) sendPIN(ctx context.Context, opts hsm.Options, uri *hsm.URI, sh pkcs11.SessionHandle, userType uint, purpose string) error {
	if err := ctx.Err(); err != nil {
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "cancelled before login", Err: err}
	}
	if err := t.refusal(); err != nil {
		return err
	}
	req, err := t.pinRequest(uri, purpose)
	if err != nil {
		return err
	}
	if err := opts.CheckRetries(req); err != nil {
		return err
	}
	if req.Final {
		opts.Tell("%s: this is the final PIN try; a wrong PIN locks the token", req.Device)
	} else if req.Low {
		opts.Tell("%s: the token says few PIN tries are left", req.Device)
	}
	pin, err := opts.ReadPIN(ctx, uri, req)
	if err != nil {
		return err
	}
	err = t.mod.drv.Login(sh, userType, pinString(pin))
	hsm.Wipe(pin)
	switch code := rv(err); {
	case err == nil, code == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		return nil
	case code == pkcs11.CKR_PIN_INCORRECT, code == pkcs11.CKR_PIN_INVALID,
		code == pkcs11.CKR_PIN_LEN_RANGE, code == pkcs11.CKR_PIN_LOCKED:
		pe := t.pinError(code)
		t.refuse(pe)
		return pe
	default:
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: t.device() + ": C_Login failed", Err: err,
			HintText: "check that the token is connected and that its user PIN is initialized"}
	}
}

// loginLocked logs the process in to the token once. t.mu is held.
func (t *token) loginLocked(ctx context.Context, opts hsm.Options, uri *hsm.URI) error {
	if t.closed {
		return errClosed(uri)
	}
	if t.loggedIn {
		return nil
	}
	ti, err := t.mod.drv.GetTokenInfo(t.slot)
	if err != nil {
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri.Object(), Detail: "C_GetTokenInfo failed", Err: err,
			HintText: "check that the token is still connected"}
	}
	if ti.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
		t.loggedIn = true
		return nil
	}
	if err := t.sendPIN(ctx, opts, uri, t.session, pkcs11.CKU_USER, "user PIN"); err != nil {
		return err
	}
	t.loggedIn = true
	return nil
}

// find returns the objects that match template. t.mu is held.
func (t *token) find(template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	drv := t.mod.drv
	if err := drv.FindObjectsInit(t.session, template); err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrDevice, Detail: t.device() + ": C_FindObjectsInit failed", Err: err}
	}
	var out []pkcs11.ObjectHandle
	var ferr error
	for len(out) < 100000 {
		objs, _, err := drv.FindObjects(t.session, 100)
		if err != nil {
			ferr = &hsm.Error{Kind: hsm.ErrDevice, Detail: t.device() + ": C_FindObjects failed", Err: err}
			break
		}
		if len(objs) == 0 {
			break
		}
		out = append(out, objs...)
	}
	if err := drv.FindObjectsFinal(t.session); err != nil && ferr == nil {
		ferr = &hsm.Error{Kind: hsm.ErrDevice, Detail: t.device() + ": C_FindObjectsFinal failed", Err: err}
	}
	return out, ferr
}

// attrs reads the attributes types of o on session sh. Attributes the
// object lacks or keeps secret are left out of the result; an error is
// returned only when none could be read.
func attrs(drv driver, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, typ := range types {
		tmpl[i] = pkcs11.NewAttribute(typ, nil)
	}
	out := map[uint][]byte{}
	got, err := drv.GetAttributeValue(sh, o, tmpl)
	if err == nil {
		for _, a := range got {
			if a.Value != nil {
				out[a.Type] = a.Value
			}
		}
		return out, nil
	}
	// One attribute the object lacks fails the whole call: read them one
	// by one.
	var first error
	for _, typ := range types {
		got, err := drv.GetAttributeValue(sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if len(got) == 1 && got[0].Value != nil {
			out[typ] = got[0].Value
		}
	}
	if len(out) == 0 && first != nil {
		return nil, first
	}
	return out, nil
}
