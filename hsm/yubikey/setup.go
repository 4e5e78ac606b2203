package yubikey

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// Devices lists the YubiKeys connected now, read without a PIN, sorted by
// serial, and the readers whose card another program holds (they could
// not be read).
func Devices(ctx context.Context, opts hsm.Options) ([]DeviceInfo, []string, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	b := &Backend{opts: opts, devices: map[uint32]*device{}, fullProbe: true}
	found, busy, err := b.scan(true)
	if err != nil {
		return nil, nil, err
	}
	out := make([]DeviceInfo, len(found))
	for i, f := range found {
		out[i] = *f
	}
	return out, busy, nil
}

// SetupOptions says how to set up a new YubiKey.
type SetupOptions struct {
	// Serial chooses the YubiKey; 0 means the only one connected.
	Serial uint32
	// NewPIN reads the officer's new PIN (on a terminal: twice, without
	// echo). It is called only once the officer confirmed.
	NewPIN func(ctx context.Context, dev *DeviceInfo) ([]byte, error)
	// Confirm shows what will change and asks to go on. Nil refuses.
	Confirm func(summary string) (bool, error)
}

// SetupResult is what Setup changed and what the officer must write down.
type SetupResult struct {
	Device DeviceInfo `json:"device"`
	// ChangedPIN, ChangedPUK and ChangedManagementKey say which factory
	// defaults were replaced.
	ChangedPIN           bool `json:"changed_pin"`
	ChangedPUK           bool `json:"changed_puk"`
	ChangedManagementKey bool `json:"changed_management_key"`
	// PUK is the new, random PUK (8 digits), when it was changed: the
	// officer writes it down and keeps it apart from the device. It is the
	// only way to unblock a blocked PIN.
	PUK string `json:"-"`
}

// Setup moves a new YubiKey off its factory credentials: the PIN becomes
// the one the officer chooses, the PUK a random 8-digit number returned
// for the officer to write down, and the management key a random AES-192
// key (3DES before firmware 5.4) stored on the device protected by the PIN,
// where rootkeeper key generate finds it. Only credentials that the device
// reports as still at their factory values are changed, and only after the
// officer confirmed: this is the one place where rootkeeper uses the
// factory PIN, PUK and management key, and it does so only because the
// device says they are in place (firmware 5.3 and later), never by trying
// them.
func Setup(ctx context.Context, opts hsm.Options, so SetupOptions) (*SetupResult, error) {
	b := &Backend{opts: opts, devices: map[uint32]*device{}, fullProbe: true}
	defer b.Close()
	info, err := b.pick(ctx, so.Serial)
	if err != nil {
		return nil, err
	}
	res := &SetupResult{Device: *info}
	if err := setupRefusal(info, opts); err != nil {
		return nil, err
	}
	if !info.DefaultPIN && !info.DefaultPUK && !info.DefaultManagementKey {
		return res, nil
	}
	if err := confirmSetup(info, so); err != nil {
		return nil, err
	}
	var newPIN []byte
	if info.DefaultPIN {
		if so.NewPIN == nil {
			return nil, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "no way to read the new PIN"}
		}
		if newPIN, err = so.NewPIN(ctx, info); err != nil {
			return nil, err
		}
		defer hsm.Wipe(newPIN)
		if err := checkNewPIN(newPIN); err != nil {
			return nil, err
		}
	}
	uri, err := hsm.ParseURI(fmt.Sprintf("yubikey:serial=%d", info.Serial))
	if err != nil {
		return nil, err
	}
	t := &target{uri: uri, serial: info.Serial}
	d, err := b.device(ctx, t)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	return res, d.replaceFactory(t.object(), info, newPIN, res)
}

// setupRefusal refuses, before anything is sent to the device, a device
// that cannot say whether its credentials are the factory ones, a blocked
// PIN or PUK, and the last PIN try unless forced.
func setupRefusal(info *DeviceInfo, opts hsm.Options) error {
	name := info.Name()
	if !info.Metadata {
		return &hsm.Error{Kind: hsm.ErrUnsupported, Detail: fmt.Sprintf("%s has firmware %s, which cannot say whether its PIN, PUK and management key are the factory defaults", name, info.Firmware),
			HintText: "rootkeeper never tries default credentials blindly (each wrong try burns a retry): set this device up with ykman piv access, or use a YubiKey with firmware 5.3 or later (5.7 or later for root keys)"}
	}
	if info.DefaultPIN && info.PINRetries == 0 {
		return pinError{&hsm.PINError{Device: name, Retries: 0, Locked: true}, info.Serial}
	}
	if info.DefaultPIN && info.PINRetries == 1 && !opts.ForceLastPINTry {
		return &hsm.LastTryError{Device: name}
	}
	if info.DefaultPUK && info.PUKRetries == 0 {
		return &hsm.Error{Kind: hsm.ErrPINLocked, Detail: name + ": the PUK is blocked",
			HintText: "only a reset (ykman piv reset, which destroys every PIV key) makes this device usable again"}
	}
	return nil
}

// confirmSetup shows the officer what setup will change and asks.
func confirmSetup(info *DeviceInfo, so SetupOptions) error {
	var w strings.Builder
	fmt.Fprintf(&w, "%s (firmware %s%s) in %s still has factory credentials.\n", info.Name(), info.Firmware, formFactorSuffix(info.FormFactor), info.Reader)
	fmt.Fprintf(&w, "rootkeeper will, using the factory values this once:\n")
	if info.DefaultManagementKey {
		fmt.Fprintf(&w, "  - replace the management key with a random %s key, stored on the device and protected by the PIN\n", newMgmtAlgName(info.Version))
	}
	if info.DefaultPIN {
		fmt.Fprintf(&w, "  - set the PIN you choose now (6 to 8 characters)\n")
	}
	if info.DefaultPUK {
		fmt.Fprintf(&w, "  - set a random 8-digit PUK, printed once: write it down and keep it apart from the device\n")
	}
	if !atLeast(info.Version, FixedFirmware[0], FixedFirmware[1], FixedFirmware[2]) {
		fmt.Fprintf(&w, "warning: firmware %s is affected by YSA-2024-03; use a YubiKey with firmware 5.7 or later for root keys\n", info.Firmware)
	}
	if so.Confirm == nil {
		return &hsm.Error{Kind: hsm.ErrUnsupported, Detail: "setting up a YubiKey needs the officer's confirmation",
			HintText: "run rootkeeper yubikey setup on a terminal, or pass --yes after reading what it does"}
	}
	ok, err := so.Confirm(strings.TrimRight(w.String(), "\n"))
	if err != nil {
		return err
	}
	if !ok {
		return &hsm.Error{Kind: hsm.ErrUnsupported, Detail: "cancelled by the officer: the YubiKey was not changed"}
	}
	return nil
}

// replaceFactory replaces the factory credentials the device reported
// (management key, PIN, PUK) and, with a new PIN, reads the stored
// management key back. res records what changed. d.mu is held.
func (d *device) replaceFactory(obj string, info *DeviceInfo, newPIN []byte, res *SetupResult) error {
	if info.DefaultManagementKey {
		key := make([]byte, 24) // AES-192 from firmware 5.4; piv-go stores only 24-byte keys PIN-protected
		if _, err := rand.Read(key); err != nil {
			return err
		}
		defer hsm.Wipe(key)
		// Store the new key first (the factory key still authenticates the
		// write), then switch to it: a failure in between leaves a device
		// whose factory key still works.
		if err := d.card.SetMetadata(piv.DefaultManagementKey, &piv.Metadata{ManagementKey: &key}); err != nil {
			return d.fail(obj, "storing the new management key (PIN-protected)", err)
		}
		if err := d.card.SetManagementKey(piv.DefaultManagementKey, key); err != nil {
			return d.fail(obj, "setting the new management key", err)
		}
		res.ChangedManagementKey = true
	}
	if info.DefaultPIN {
		if err := d.card.SetPIN(piv.DefaultPIN, pinString(newPIN)); err != nil {
			return d.fail(obj, "changing the PIN", err)
		}
		res.ChangedPIN = true
	}
	if info.DefaultPUK {
		puk, err := randomDigits(8)
		if err != nil {
			return err
		}
		if err := d.card.SetPUK(piv.DefaultPUK, puk); err != nil {
			return d.fail(obj, "changing the PUK", err)
		}
		res.ChangedPUK, res.PUK = true, puk
	}
	// Check the result with the new PIN, when the officer gave one: the
	// stored management key must be readable.
	if info.DefaultPIN && res.ChangedManagementKey {
		md, err := d.card.Metadata(pinString(newPIN))
		if err != nil {
			return d.fail(obj, "reading back the stored management key", err)
		}
		if md.ManagementKey == nil {
			return &hsm.Error{Kind: hsm.ErrDevice, URI: obj, Detail: "the management key stored on the device cannot be read back",
				HintText: "reset the device's PIV application (ykman piv reset) and run setup again"}
		}
		d.pinOK = true
	}
	return nil
}

// checkNewPIN refuses a PIN a YubiKey would refuse, or one that is no
// better than the default.
func checkNewPIN(pin []byte) error {
	if len(pin) < 6 || len(pin) > 8 {
		return &hsm.Error{Kind: hsm.ErrNoPIN, Detail: fmt.Sprintf("the new PIN has %d characters; a YubiKey PIN has 6 to 8", len(pin))}
	}
	for _, c := range pin {
		if c < 0x20 || c > 0x7e {
			return &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "the new PIN must be printable ASCII (digits are the safest)"}
		}
	}
	if bytes.Equal(pin, []byte(piv.DefaultPIN)) || bytes.Equal(pin, []byte(piv.DefaultPUK)) {
		return &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "the new PIN is a factory default", HintText: "choose another PIN"}
	}
	return nil
}

func randomDigits(n int) (string, error) {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(rand.Reader, max)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", n, v), nil
}

func newMgmtAlgName(v [3]byte) string {
	if atLeast(v, 5, 4, 0) {
		return "AES-192"
	}
	return "3DES"
}

func formFactorSuffix(f string) string {
	if f == "" {
		return ""
	}
	return ", " + f
}

// UnblockOptions says how to unblock a YubiKey's PIN.
type UnblockOptions struct {
	// Serial chooses the YubiKey; 0 means the only one connected.
	Serial uint32
	// PUK reads the PUK; req carries the PUK tries left, read from the
	// device before anything is sent.
	PUK func(ctx context.Context, req hsm.PINRequest) ([]byte, error)
	// NewPIN reads the new PIN (on a terminal: twice, without echo).
	NewPIN func(ctx context.Context, dev *DeviceInfo) ([]byte, error)
}

// Unblock sets a new PIN on a YubiKey with its PUK, after a blocked PIN
// (or to replace a forgotten one). The PUK's retry counter is read first
// (firmware 5.3 and later): a blocked PUK is reported without sending
// anything, and the PUK's final try is used only with
// hsm.Options.ForceLastPINTry. A wrong PUK is reported with the tries left.
func Unblock(ctx context.Context, opts hsm.Options, uo UnblockOptions) (*DeviceInfo, error) {
	b := &Backend{opts: opts, devices: map[uint32]*device{}, fullProbe: true}
	defer b.Close()
	info, err := b.pick(ctx, uo.Serial)
	if err != nil {
		return nil, err
	}
	name := info.Name()
	req := hsm.PINRequest{Device: name, Purpose: "PUK", Retries: info.PUKRetries}
	if info.PUKRetries == 0 {
		return nil, &hsm.Error{Kind: hsm.ErrPINLocked, Detail: name + ": the PUK is blocked too",
			HintText: "only a reset (ykman piv reset) makes the device usable again, and it destroys every PIV key: replace the device's root key (docs/runbook-yubikey.md)"}
	}
	if err := opts.CheckRetries(req); err != nil {
		if _, ok := err.(*hsm.LastTryError); ok {
			return nil, &hsm.Error{Kind: hsm.ErrPINLocked, Detail: name + ": refusing to send the PUK: one PUK try is left, and a wrong PUK blocks the device for good",
				HintText: "make sure the PUK is right, then rerun with --force-last-pin-try"}
		}
		return nil, err
	}
	if uo.PUK == nil || uo.NewPIN == nil {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "no way to read the PUK and the new PIN"}
	}
	puk, err := uo.PUK(ctx, req)
	if err != nil {
		return nil, err
	}
	defer hsm.Wipe(puk)
	if len(puk) < 6 || len(puk) > 8 {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: fmt.Sprintf("a YubiKey PUK has 6 to 8 characters, this one has %d; it was not sent", len(puk))}
	}
	newPIN, err := uo.NewPIN(ctx, info)
	if err != nil {
		return nil, err
	}
	defer hsm.Wipe(newPIN)
	if err := checkNewPIN(newPIN); err != nil {
		return nil, err
	}
	uri, err := hsm.ParseURI(fmt.Sprintf("yubikey:serial=%d", info.Serial))
	if err != nil {
		return nil, err
	}
	d, err := b.device(ctx, &target{uri: uri, serial: info.Serial})
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if err := d.card.Unblock(pinString(puk), pinString(newPIN)); err != nil {
		err = d.fail(uri.Object(), "unblocking the PIN with the PUK", err)
		var pe pinError
		if errors.As(err, &pe) {
			return nil, pukError{pe.PINError}
		}
		return nil, err
	}
	info.PINRetries = info.PINRetriesMax
	return info, nil
}

// pukError is a PUK the device refused.
type pukError struct{ *hsm.PINError }

func (e pukError) Error() string {
	if e.Locked {
		return e.Device + ": wrong PUK; the PUK is now blocked"
	}
	return fmt.Sprintf("%s: wrong PUK, %d %s left", e.Device, e.Retries, map[bool]string{true: "try", false: "tries"}[e.Retries == 1])
}

// Hint says what to do.
func (e pukError) Hint() string {
	if e.Locked {
		return "only a reset (ykman piv reset) makes the device usable again, and it destroys every PIV key: replace the device's root key (docs/runbook-yubikey.md)"
	}
	return "check the PUK written down when the device was set up; a blocked PUK leaves only a reset"
}

// Unwrap returns the hsm.PINError.
func (e pukError) Unwrap() error { return e.PINError }

// pick finds the YubiKey with serial, or the only one connected.
func (b *Backend) pick(ctx context.Context, serial uint32) (*DeviceInfo, error) {
	if serial != 0 {
		return b.find(ctx, serial, fmt.Sprintf("yubikey:serial=%d", serial))
	}
	found, busy, err := b.scan(true)
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		hint := "insert the YubiKey"
		if len(busy) > 0 {
			hint += "; readers in use by another program (close it and retry): " + strings.Join(busy, ", ")
		}
		return nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, Detail: "no YubiKey is connected", HintText: hint}
	case 1:
		return found[0], nil
	}
	return nil, &hsm.Error{Kind: hsm.ErrAmbiguousKey, Detail: fmt.Sprintf("%d YubiKeys are connected", len(found)),
		HintText: "choose one with --serial: " + serials(found)}
}
