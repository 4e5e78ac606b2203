package yubikey

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// WaitEnv names the environment variable that bounds how long rootkeeper
// waits for a YubiKey that is not connected ("90s", "2m"; "0" does not
// wait). The default is DefaultWait.
const WaitEnv = "ROOTKEEPER_YUBIKEY_WAIT"

// DefaultWait is how long rootkeeper waits, by default, for the officer to
// insert a YubiKey a URI names.
const DefaultWait = 2 * time.Minute

// pollInterval is how often the readers are scanned while waiting.
const pollInterval = 300 * time.Millisecond

// DeviceInfo describes a connected YubiKey as rootkeeper reads it without
// a PIN.
type DeviceInfo struct {
	// Serial is the device's serial number, as printed on it.
	Serial uint32 `json:"serial"`
	// Firmware is the firmware version ("5.7.1").
	Firmware string `json:"firmware"`
	// FormFactor is the device's shape ("USB-A Keychain"), when it says.
	FormFactor string `json:"form_factor,omitempty"`
	// Reader is the PC/SC reader the device is in.
	Reader string `json:"reader"`
	// PINRetries and PUKRetries are the tries left, -1 when unknown.
	PINRetries int `json:"pin_retries"`
	PUKRetries int `json:"puk_retries"`
	// PINRetriesMax and PUKRetriesMax are the counters' full values, -1
	// when unknown (firmware before 5.3).
	PINRetriesMax int `json:"pin_retries_max"`
	PUKRetriesMax int `json:"puk_retries_max"`
	// DefaultPIN, DefaultPUK and DefaultManagementKey report credentials
	// still at their factory values (firmware 5.3 and later say so).
	DefaultPIN           bool `json:"default_pin"`
	DefaultPUK           bool `json:"default_puk"`
	DefaultManagementKey bool `json:"default_management_key"`
	// ManagementKeyAlgorithm is "aes192", "3des", … when the device says.
	ManagementKeyAlgorithm string `json:"management_key_algorithm,omitempty"`
	// Metadata reports whether the device answered the metadata queries
	// above (firmware 5.3 and later).
	Metadata bool `json:"metadata"`

	// Version is Firmware as numbers.
	Version [3]byte `json:"-"`
}

// Name names the device for people: "YubiKey serial 12345678".
func (i *DeviceInfo) Name() string { return deviceName(i.Serial) }

func deviceName(serial uint32) string { return fmt.Sprintf("YubiKey serial %d", serial) }

// device is one YubiKey the backend uses. Its mutex serializes every
// command sent to the card: one operation at a time, on one exclusive
// connection kept open until the backend is closed.
type device struct {
	b      *Backend
	serial uint32

	mu     sync.Mutex
	info   *DeviceInfo
	reader string
	card   card // nil until opened, and again once the card stopped answering
	pinOK  bool // the PIN was verified in the card's current session
	// refused is the device's refusal of a PIN in this backend's life: no
	// PIN is sent to the device again (one wrong PIN costs one try per
	// run, whatever the number of keys or signatures on the device).
	refused *hsm.PINError
}

func (d *device) name() string { return deviceName(d.serial) }

// scan probes every reader the backend does not hold. It returns the
// devices found and the readers another program holds.
func (b *Backend) scan(full bool) ([]*DeviceInfo, []string, error) {
	readers, err := listReaders()
	if err != nil {
		return nil, nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, Detail: "cannot list smart card readers", Err: err,
			HintText: "check that the PC/SC daemon runs (systemctl start pcscd.socket, or pcscd -f) and that libpcsclite is installed"}
	}
	b.mu.Lock()
	held := map[string]*DeviceInfo{}
	for _, d := range b.devices {
		if d.reader != "" && d.info != nil && d.card != nil {
			held[d.reader] = d.info
		}
	}
	b.mu.Unlock()
	var found []*DeviceInfo
	var busy []string
	for _, r := range readers {
		if info, ok := held[r]; ok {
			found = append(found, info)
			continue
		}
		info, err := probeReader(r, full)
		switch {
		case err == nil:
			found = append(found, info)
		case errors.Is(err, errBusy):
			busy = append(busy, r)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Serial < found[j].Serial })
	return found, busy, nil
}

// waitLimit is how long to wait for a device that is not connected.
func (b *Backend) waitLimit() time.Duration {
	getenv := b.opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv(WaitEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d
		}
	}
	return DefaultWait
}

// find returns the device with serial, asking the officer to insert it
// and waiting (bounded by waitLimit, cancelled with ctx) when it is not
// connected.
func (b *Backend) find(ctx context.Context, serial uint32, uri string) (*DeviceInfo, error) {
	limit := b.waitLimit()
	deadline := time.Now().Add(limit)
	told := false
	for {
		found, busy, err := b.scan(b.fullProbe)
		if err != nil {
			err.(*hsm.Error).URI = uri
			return nil, err
		}
		for _, info := range found {
			if info.Serial == serial {
				if told {
					b.opts.Say("found %s in %s", info.Name(), info.Reader)
				}
				return info, nil
			}
		}
		if !told && limit > 0 {
			msg := fmt.Sprintf("insert %s (waiting up to %s; Ctrl-C stops)", deviceName(serial), limit)
			if len(found) > 0 {
				msg += "; connected now: " + serials(found)
			}
			b.opts.Tell("%s", msg)
			told = true
		}
		if time.Now().After(deadline) {
			return nil, notPresent(serial, uri, found, busy, limit)
		}
		select {
		case <-ctx.Done():
			return nil, &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri,
				Detail: fmt.Sprintf("cancelled while waiting for %s", deviceName(serial)), Err: ctx.Err()}
		case <-time.After(pollInterval):
		}
	}
}

func serials(found []*DeviceInfo) string {
	s := make([]string, len(found))
	for i, f := range found {
		s[i] = fmt.Sprintf("serial %d", f.Serial)
	}
	return strings.Join(s, ", ")
}

func notPresent(serial uint32, uri string, found []*DeviceInfo, busy []string, waited time.Duration) error {
	have := "no YubiKey is connected"
	if len(found) > 0 {
		have = "connected: " + serials(found)
	}
	if len(busy) > 0 {
		have += fmt.Sprintf("; readers in use by another program (close it and retry): %s", strings.Join(busy, ", "))
	}
	detail := deviceName(serial) + " is not connected"
	if waited > 0 {
		detail += fmt.Sprintf(" (waited %s)", waited)
	}
	return &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri, Detail: detail,
		HintText: "insert the YubiKey with that serial, or fix serial= in the URI; " + have}
}

// device returns the backend's device for serial, locked, with its card
// open. The caller unlocks d.mu.
func (b *Backend) device(ctx context.Context, t *target) (*device, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, &hsm.Error{Kind: hsm.ErrDevice, URI: t.object(), Detail: "the YubiKey backend is closed",
			HintText: "this is a bug in the caller: open a new backend (hsm.Keyring) after closing one"}
	}
	d := b.devices[t.serial]
	if d == nil {
		d = &device{b: b, serial: t.serial}
		b.devices[t.serial] = d
	}
	b.mu.Unlock()
	d.mu.Lock()
	if err := d.open(ctx, t.object()); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	return d, nil
}

// open connects to the card, unless it is connected. d.mu is held.
func (d *device) open(ctx context.Context, uri string) error {
	if d.card != nil {
		return nil
	}
	info, err := d.b.find(ctx, d.serial, uri)
	if err != nil {
		return err
	}
	// pcscd may not yet have released a connection that just closed (ours
	// or another program's): retry a sharing violation for a moment.
	var c card
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err = openCard(info.Reader)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri, Detail: fmt.Sprintf("cannot open %s in %s", d.name(), info.Reader), Err: err,
			HintText: "another program may hold the YubiKey (gpg-agent's scdaemon, ykman, another rootkeeper): close it and retry"}
	}
	serial, err := c.Serial()
	if err != nil || serial != d.serial {
		c.Close()
		return &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri,
			Detail:   fmt.Sprintf("the YubiKey in %s is no longer serial %d (was it swapped?)", info.Reader, d.serial),
			Err:      err,
			HintText: "leave the YubiKeys in place during a ceremony, and run the command again"}
	}
	d.card, d.info, d.reader, d.pinOK = rereading{c}, info, info.Reader, false
	return nil
}

// drop forgets a card that stopped answering. d.mu is held.
func (d *device) drop() {
	if d.card != nil {
		d.card.Close()
	}
	d.card, d.pinOK = nil, false
}

// close closes the card. It takes d.mu.
func (d *device) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.card == nil {
		return nil
	}
	err := d.card.Close()
	d.card = nil
	return err
}

// statusError is piv-go's error for a status word from the card.
type statusError interface{ Status() uint16 }

// fail turns an error from the card into one the officer can act on. An
// error without a status word means the card did not answer: it is
// dropped, and the next use waits for it to be inserted again. d.mu is
// held.
func (d *device) fail(uri, what string, err error) error {
	var ae piv.AuthErr
	if errors.As(err, &ae) {
		d.pinOK = false
		return pinError{&hsm.PINError{Device: d.name(), Retries: ae.Retries, Locked: ae.Retries == 0, FinalTry: ae.Retries == 1}, d.serial}
	}
	var st statusError
	if errors.As(err, &st) {
		hint := "check that the YubiKey is a YubiKey 5 and that the slot holds the key the URI names"
		if st.Status() == 0x6982 {
			hint = "the YubiKey wants a PIN or a touch it did not get: run the command again and touch the YubiKey when asked"
		}
		return &hsm.Error{Kind: hsm.ErrDevice, URI: uri, Detail: fmt.Sprintf("%s refused %s (status %04X)", d.name(), what, st.Status()),
			Err: err, HintText: hint}
	}
	d.drop()
	return &hsm.Error{Kind: hsm.ErrTokenNotPresent, URI: uri,
		Detail: fmt.Sprintf("%s stopped answering during %s: was it removed?", d.name(), what), Err: err,
		HintText: "reinsert the YubiKey and run the command again; a ceremony writes nothing until every signature is made and checked"}
}

// pinError is hsm.PINError with the YubiKey's way out of a blocked PIN.
type pinError struct {
	*hsm.PINError
	serial uint32
}

// Hint says what to do; for a blocked PIN, to unblock it with the PUK.
func (e pinError) Hint() string {
	if e.Locked {
		return fmt.Sprintf("the PIN is blocked: unblock it with the PUK (rootkeeper yubikey unblock --serial %d), then run the command again; ", e.serial) +
			"three wrong PUKs leave only a reset, which destroys the keys (docs/runbook-yubikey.md)"
	}
	return e.PINError.Hint()
}

// Unwrap returns the hsm.PINError, for errors.As and errors.Is.
func (e pinError) Unwrap() error { return e.PINError }

// retriesVerified is piv-go's complaint when the card says the PIN is
// already verified in this session (it answers an empty VERIFY with 9000).
const retriesVerified = "expected error code from empty pin"

// withPIN reads the retry counter, refuses at a blocked PIN or (unless
// forced) at the final try, says how many tries are left, reads the PIN
// and passes it to send, which sends it to the card (VERIFY, or a command
// that verifies it). Nothing is sent when a check fails. d.mu is held.
func (d *device) withPIN(ctx context.Context, uri *hsm.URI, purpose string, send func(pin string) error) error {
	obj := uri.Object()
	if err := ctx.Err(); err != nil {
		return &hsm.Error{Kind: hsm.ErrDevice, URI: obj, Detail: "cancelled before the PIN was sent", Err: err}
	}
	if d.refused != nil {
		again := *d.refused
		again.Earlier = true
		return pinError{&again, d.serial}
	}
	// A PIV PIN has 6 to 8 characters: anything else is refused before it
	// is sent (ReadPIN checks it).
	req := hsm.PINRequest{Device: d.name(), Purpose: purpose, Retries: -1, MinLen: 6, MaxLen: 8}
	n, err := d.card.Retries()
	switch {
	case err == nil:
		req.Retries = n
	case strings.Contains(err.Error(), retriesVerified):
		// A PIN was verified in this session, which resets the counter.
	default:
		return d.fail(obj, "reading the PIN retry counter", err)
	}
	if err := d.b.opts.CheckRetries(req); err != nil {
		var pe *hsm.PINError
		if errors.As(err, &pe) {
			return pinError{pe, d.serial}
		}
		return err
	}
	switch {
	case req.Retries == 1:
		d.b.opts.Tell("%s: this is the final PIN try: a wrong PIN blocks the PIN", d.name())
	case req.Retries >= 0 && (d.info.PINRetriesMax > 0 && req.Retries < d.info.PINRetriesMax || d.info.PINRetriesMax <= 0 && req.Retries < 3):
		d.b.opts.Tell("%s: %d PIN tries left", d.name(), req.Retries)
	}
	pin, err := d.b.opts.ReadPIN(ctx, uri, req)
	if err != nil {
		return err
	}
	defer hsm.Wipe(pin)
	if err := send(pinString(pin)); err != nil {
		d.pinOK = false
		err = d.fail(obj, "PIN verification", err)
		var pe *hsm.PINError
		if errors.As(err, &pe) {
			d.refused = pe
		}
		return err
	}
	d.pinOK = true
	return nil
}
