package yubikey

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

func init() { hsm.Register("yubikey", Open) }

// Backend is the YubiKey PIV [hsm.Backend]. It opens each YubiKey once,
// exclusively, on first use, and keeps it until Close. It is safe for
// concurrent use; commands to one device are serialized.
type Backend struct {
	opts hsm.Options

	mu      sync.Mutex
	devices map[uint32]*device
	closed  bool

	fullProbe bool // read everything about devices (Setup, Devices)
}

var _ hsm.Backend = (*Backend)(nil)

// Open returns a YubiKey backend that reads PINs, tells the officer what
// the device waits for and chooses attestation roots through opts. It
// touches no device until a URI names one.
func Open(opts hsm.Options) (hsm.Backend, error) {
	return &Backend{opts: opts, devices: map[uint32]*device{}}, nil
}

func (b *Backend) verifier() verifier {
	return verifier{roots: b.opts.AttestationRoots, rootsName: b.opts.AttestationRootsName}
}

// Algorithms a YubiKey generates for rootkeeper.
var pivAlgorithms = map[hsm.Algorithm]piv.Algorithm{
	hsm.ECDSAP256: piv.AlgorithmEC256,
	hsm.ECDSAP384: piv.AlgorithmEC384,
	hsm.Ed25519:   piv.AlgorithmEd25519,
}

// parsePolicies reads GenerateOptions' policies: PIN always (default) or
// once, touch always (default), cached or never.
func parsePolicies(opts hsm.GenerateOptions) (piv.PINPolicy, piv.TouchPolicy, error) {
	var pp piv.PINPolicy
	switch opts.PINPolicy {
	case "", "always":
		pp = piv.PINPolicyAlways
	case "once":
		pp = piv.PINPolicyOnce
	default:
		return 0, 0, &hsm.Error{Kind: hsm.ErrUnsupported, Detail: fmt.Sprintf("PIN policy %q is not allowed for rootkeeper keys", opts.PINPolicy),
			HintText: "use --pin-policy always (the default: the PIN for every signature) or once (the PIN once per session)"}
	}
	var tp piv.TouchPolicy
	switch opts.TouchPolicy {
	case "", "always":
		tp = piv.TouchPolicyAlways
	case "cached":
		tp = piv.TouchPolicyCached
	case "never":
		tp = piv.TouchPolicyNever
	default:
		return 0, 0, &hsm.Error{Kind: hsm.ErrUnsupported, Detail: fmt.Sprintf("touch policy %q is unknown", opts.TouchPolicy),
			HintText: "use --touch-policy always (the default), cached (one touch covers 15 seconds) or never"}
	}
	return pp, tp, nil
}

// Generate creates a key pair in the slot the URI names, with the PIN
// policy always (or once) and the touch policy always (or cached, never)
// of opts. It refuses an occupied slot unless opts.Overwrite is set and
// the officer confirms (hsm.Options.Confirm), refuses Ed25519 below
// firmware 5.7, authenticates with the management key from the URI's
// management-key-source or from the device's PIN-protected metadata (never
// the factory default), and returns the key with its verified attestation.
func (b *Backend) Generate(ctx context.Context, uri *hsm.URI, opts hsm.GenerateOptions) (*hsm.KeyInfo, error) {
	t, err := parseTarget(uri, true)
	if err != nil {
		return nil, err
	}
	alg, ok := pivAlgorithms[opts.Algorithm]
	if !ok {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: t.object(), Detail: fmt.Sprintf("a YubiKey cannot keep a %s key for rootkeeper", opts.Algorithm),
			HintText: "use --algorithm ecdsa-p256, ecdsa-p384 or ed25519 (firmware 5.7 and later)"}
	}
	pp, tp, err := parsePolicies(opts)
	if err != nil {
		err.(*hsm.Error).URI = t.object()
		return nil, err
	}
	d, err := b.device(ctx, t)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	obj := t.object()
	if alg == piv.AlgorithmEd25519 && !atLeast(d.info.Version, 5, 7, 0) {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: obj,
			Detail:   fmt.Sprintf("%s has firmware %s: Ed25519 keys need firmware 5.7 or later", d.name(), d.info.Firmware),
			HintText: "use --algorithm ecdsa-p256, or a YubiKey with firmware 5.7 or later (rootkeeper yubikey list shows the firmware)"}
	}
	if !atLeast(d.info.Version, FixedFirmware[0], FixedFirmware[1], FixedFirmware[2]) {
		b.opts.Tell("warning: %s has firmware %s, affected by YSA-2024-03 (ECDSA side channel): use firmware 5.7 or later for root keys", d.name(), d.info.Firmware)
	}

	// An occupied slot: refuse, or replace only after confirmation.
	old, err := d.slotPublic(t)
	if err != nil {
		return nil, err
	}
	if old != nil {
		if !opts.Overwrite {
			return nil, &hsm.Error{Kind: hsm.ErrKeyExists, URI: obj, Detail: fmt.Sprintf("slot %s of %s already holds a key", slotName(t.slot), d.name()),
				HintText: "choose a free slot (9c or 82 to 95; rootkeeper key list yubikey:serial=N shows them), or pass --overwrite to destroy that key"}
		}
		q := fmt.Sprintf("Slot %s of %s holds a key. Destroy it for good and generate a new one?", slotName(t.slot), d.name())
		if b.opts.Confirm == nil {
			return nil, &hsm.Error{Kind: hsm.ErrKeyExists, URI: obj, Detail: "replacing the key in slot " + slotName(t.slot) + " needs the officer's confirmation, and there is no terminal to ask on",
				HintText: "run rootkeeper key generate --overwrite on a terminal"}
		}
		yes, err := b.opts.Confirm(q)
		if err != nil {
			return nil, err
		}
		if !yes {
			return nil, &hsm.Error{Kind: hsm.ErrKeyExists, URI: obj, Detail: "the officer kept the key in slot " + slotName(t.slot) + "; nothing was changed"}
		}
	}
	mk, err := d.managementKey(ctx, t)
	if err != nil {
		return nil, err
	}
	defer hsm.Wipe(mk)
	b.opts.Say("generating a key (%s) in slot %s of %s (PIN policy %s, touch policy %s)",
		opts.Algorithm, slotName(t.slot), d.name(), pinPolicyName(pp), touchPolicyName(tp))
	pub, err := d.card.GenerateKey(mk, t.slot, piv.Key{Algorithm: alg, PINPolicy: pp, TouchPolicy: tp})
	if err != nil {
		return nil, d.mgmtFail(t, "key generation", err)
	}
	ev, err := d.evidence(t, pub, piv.OriginGenerated)
	if err != nil {
		var he *hsm.Error
		if errors.As(err, &he) && he.Kind == ErrAttestation {
			he.HintText = fmt.Sprintf("the key was generated in slot %s and stays there; %s; check it with rootkeeper key show %s, or replace it with --overwrite",
				slotName(t.slot), he.HintText, keyURI(t.serial, t.slot))
		}
		return nil, err
	}
	if ev.PINPolicy != pinPolicyName(pp) || ev.TouchPolicy != touchPolicyName(tp) {
		return nil, &hsm.Error{Kind: ErrAttestation, URI: obj,
			Detail:   fmt.Sprintf("%s generated the key with PIN policy %s and touch policy %s when asked for %s and %s", d.name(), ev.PINPolicy, ev.TouchPolicy, pinPolicyName(pp), touchPolicyName(tp)),
			HintText: "do not use this key; the device ignores key policies: use another YubiKey"}
	}
	a, _ := hsm.AlgorithmOf(pub)
	return &hsm.KeyInfo{URI: keyURI(t.serial, t.slot), Algorithm: a, Public: pub, Label: slotName(t.slot), ID: slotName(t.slot), Evidence: ev}, nil
}

// mgmtFail reports a failure of a command that needs the management key:
// a refused management key is told apart from a card that went away.
// d.mu is held.
func (d *device) mgmtFail(t *target, what string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "authenticating with management key") || strings.Contains(msg, "management key length") {
		var st statusError
		refused := errors.As(err, &st) || strings.Contains(msg, "challenge failed") || strings.Contains(msg, "length")
		if refused {
			src := "the PIN-protected management key stored on the device"
			if _, ok := t.uri.Query("management-key-source"); ok {
				src = "the management key from management-key-source"
			}
			return &hsm.Error{Kind: hsm.ErrDevice, URI: t.object(), Detail: fmt.Sprintf("%s refused %s for %s", d.name(), src, what), Err: err,
				HintText: "give the device's management key with ?management-key-source=FILE (hex), or set the device up with rootkeeper yubikey setup"}
		}
	}
	return d.fail(t.object(), what, err)
}

// managementKey returns the management key: from the URI's
// management-key-source, or from the device's PIN-protected metadata
// (which costs a PIN verification). It never tries the factory default.
// d.mu is held.
func (d *device) managementKey(ctx context.Context, t *target) ([]byte, error) {
	obj := t.object()
	if src, ok := t.uri.Query("management-key-source"); ok {
		text, err := hsm.ReadSecretFile(src, "management-key-source")
		if err != nil {
			return nil, err
		}
		defer hsm.Wipe(text)
		key, err := parseManagementKey(text)
		if err != nil {
			return nil, &hsm.Error{Kind: hsm.ErrNoPIN, URI: obj, Detail: "management-key-source: " + err.Error(),
				HintText: "write the management key as hex in the file, e.g. 48 hex digits for AES-192"}
		}
		return key, nil
	}
	if d.info.Metadata && d.info.DefaultManagementKey {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, URI: obj,
			Detail:   d.name() + " still has the factory default management key, which rootkeeper never uses silently",
			HintText: fmt.Sprintf("set the device up first: rootkeeper yubikey setup --serial %d", d.serial)}
	}
	var md *piv.Metadata
	err := d.withPIN(ctx, t.uri, "PIN (to unlock the management key stored on the YubiKey)", func(pin string) error {
		var err error
		md, err = d.card.Metadata(pin)
		return err
	})
	if err != nil {
		return nil, err
	}
	if md == nil || md.ManagementKey == nil {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, URI: obj,
			Detail:   d.name() + " keeps no PIN-protected management key",
			HintText: fmt.Sprintf("give it with ?management-key-source=FILE (hex), or set the device up with rootkeeper yubikey setup --serial %d", d.serial)}
	}
	return append([]byte(nil), *md.ManagementKey...), nil
}

// slotPublic returns the public key in the slot, or nil when the slot is
// empty. d.mu is held.
func (d *device) slotPublic(t *target) (crypto.PublicKey, error) {
	if d.info.Metadata {
		ki, err := d.card.KeyInfo(t.slot)
		if errors.Is(err, piv.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, d.fail(t.object(), "reading the slot's metadata", err)
		}
		return ki.PublicKey, nil
	}
	cert, err := d.card.Attest(t.slot)
	if err == nil {
		return cert.PublicKey, nil
	}
	if !errors.Is(err, piv.ErrNotFound) {
		return nil, d.fail(t.object(), "attestation", err)
	}
	cert, err = d.card.Certificate(t.slot)
	if err == nil {
		return cert.PublicKey, nil
	}
	if errors.Is(err, piv.ErrNotFound) {
		return nil, nil
	}
	return nil, d.fail(t.object(), "reading the slot's certificate", err)
}

// slotKey is the key in a slot as the device describes it.
type slotKey struct {
	pub    crypto.PublicKey
	pin    piv.PINPolicy
	touch  piv.TouchPolicy
	origin piv.Origin
}

// readSlot describes the key in the slot: from the key metadata (firmware
// 5.3 and later) or else from its attestation. d.mu is held.
func (d *device) readSlot(t *target) (*slotKey, error) {
	empty := func() error {
		return &hsm.Error{Kind: hsm.ErrKeyNotFound, URI: t.object(), Detail: fmt.Sprintf("slot %s of %s holds no key", slotName(t.slot), d.name()),
			HintText: "generate one with rootkeeper key generate " + t.object() + ", or check slot= (rootkeeper key list yubikey:serial=N)"}
	}
	if d.info.Metadata {
		ki, err := d.card.KeyInfo(t.slot)
		if errors.Is(err, piv.ErrNotFound) {
			return nil, empty()
		}
		if err != nil {
			return nil, d.fail(t.object(), "reading the slot's metadata", err)
		}
		return &slotKey{pub: ki.PublicKey, pin: ki.PINPolicy, touch: ki.TouchPolicy, origin: ki.Origin}, nil
	}
	cert, err := d.card.Attest(t.slot)
	if errors.Is(err, piv.ErrNotFound) {
		return nil, empty()
	}
	if err != nil {
		return nil, d.fail(t.object(), "attestation", err)
	}
	f9, err := d.card.AttestationCertificate()
	if err != nil {
		return nil, d.fail(t.object(), "reading the attestation certificate (slot f9)", err)
	}
	// Policies are read from the attestation only once it is verified.
	ev, err := d.b.verifier().check(cert, f9, expectation{serial: t.serial, slot: t.slot, pub: cert.PublicKey, uri: t.object()})
	if err != nil {
		return nil, err
	}
	return &slotKey{pub: cert.PublicKey, pin: parsePINPolicy(ev.PINPolicy), touch: parseTouchPolicy(ev.TouchPolicy), origin: piv.OriginGenerated}, nil
}

func parsePINPolicy(s string) piv.PINPolicy {
	for _, p := range []piv.PINPolicy{piv.PINPolicyNever, piv.PINPolicyOnce, piv.PINPolicyAlways, piv.PINPolicyMatchOnce, piv.PINPolicyMatchAlways} {
		if pinPolicyName(p) == s {
			return p
		}
	}
	return piv.PINPolicyAlways
}

func parseTouchPolicy(s string) piv.TouchPolicy {
	for _, p := range []piv.TouchPolicy{piv.TouchPolicyNever, piv.TouchPolicyAlways, piv.TouchPolicyCached} {
		if touchPolicyName(p) == s {
			return p
		}
	}
	return piv.TouchPolicyAlways
}

// evidence reads the slot's attestation and the device's attestation
// certificate, verifies them and checks that they are about pub in this
// slot of this device. A key imported into the slot cannot be attested:
// its evidence says so (and is not hardware-born). d.mu is held.
func (d *device) evidence(t *target, pub crypto.PublicKey, origin piv.Origin) (*hsm.Evidence, error) {
	obj := t.object()
	if origin == piv.OriginImported {
		return d.unattested(t), nil
	}
	slotCert, err := d.card.Attest(t.slot)
	if errors.Is(err, piv.ErrNotFound) {
		return d.unattested(t), nil
	}
	if err != nil {
		return nil, d.fail(obj, "attestation", err)
	}
	f9, err := d.card.AttestationCertificate()
	if err != nil {
		return nil, d.fail(obj, "reading the attestation certificate (slot f9)", err)
	}
	ev, err := d.b.verifier().check(slotCert, f9, expectation{serial: t.serial, slot: t.slot, pub: pub, uri: obj})
	if err != nil {
		return nil, err
	}
	if VulnerableFirmware(ev.Firmware) {
		d.b.opts.Tell("warning: %s has firmware %s, affected by YSA-2024-03: the key is recorded with this firmware; replace the device with one on 5.7 or later", d.name(), ev.Firmware)
	}
	return ev, nil
}

// unattested is the evidence of a key the device cannot attest (it was
// imported): the device and slot, no certificates.
func (d *device) unattested(t *target) *hsm.Evidence {
	d.b.opts.Tell("warning: slot %s of %s holds a key that was imported, not generated on the device: it has no attestation", slotName(t.slot), d.name())
	return &hsm.Evidence{Kind: hsm.EvidencePIV, Serial: t.serial, Slot: slotName(t.slot), Firmware: d.info.Firmware, FormFactor: d.info.FormFactor}
}

// Signer opens the key in the slot the URI names. It reads the key's
// public key and policies from the device, verifies the slot's attestation
// and checks that it is about this key, this slot and this device, and
// returns a [*Signer]. No PIN is needed until the first signature.
func (b *Backend) Signer(ctx context.Context, uri *hsm.URI) (hsm.Signer, error) {
	t, err := parseTarget(uri, true)
	if err != nil {
		return nil, err
	}
	d, err := b.device(ctx, t)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	sk, err := d.readSlot(t)
	if err != nil {
		return nil, err
	}
	alg, err := hsm.AlgorithmOf(sk.pub)
	if err != nil || pivAlgorithms[alg] == 0 {
		return nil, &hsm.Error{Kind: hsm.ErrUnsupported, URI: t.object(), Detail: fmt.Sprintf("slot %s of %s holds a %T key, which rootkeeper does not sign with", slotName(t.slot), d.name(), sk.pub),
			HintText: "rootkeeper signs with ECDSA P-256, P-384 and Ed25519 YubiKey keys"}
	}
	ev, err := d.evidence(t, sk.pub, sk.origin)
	if err != nil {
		return nil, err
	}
	if ev.PINPolicy != "" && (ev.PINPolicy != pinPolicyName(sk.pin) || ev.TouchPolicy != touchPolicyName(sk.touch)) {
		return nil, &hsm.Error{Kind: ErrAttestation, URI: t.object(),
			Detail:   fmt.Sprintf("%s reports PIN policy %s and touch policy %s for slot %s, but its attestation says %s and %s", d.name(), pinPolicyName(sk.pin), touchPolicyName(sk.touch), slotName(t.slot), ev.PINPolicy, ev.TouchPolicy),
			HintText: "do not use this device"}
	}
	info := hsm.KeyInfo{URI: keyURI(t.serial, t.slot), Algorithm: alg, Public: sk.pub, Label: slotName(t.slot), ID: slotName(t.slot), Evidence: ev}
	return &Signer{ctx: ctx, dev: d, uri: uri.Clone(), t: t, info: info, pin: sk.pin, touch: sk.touch}, nil
}

// listSlots are the slots List looks at.
func listSlots() []piv.Slot {
	slots := []piv.Slot{piv.SlotSignature}
	for k := uint32(0x82); k <= 0x95; k++ {
		s, _ := piv.RetiredKeyManagementSlot(k)
		slots = append(slots, s)
	}
	return slots
}

// List returns the keys in slot 9c and the retired slots 82 to 95 of the
// YubiKey the URI names (only the URI's slot, when it names one), with
// their attestation evidence where it verifies.
func (b *Backend) List(ctx context.Context, uri *hsm.URI) ([]hsm.KeyInfo, error) {
	t, err := parseTarget(uri, false)
	if err != nil {
		return nil, err
	}
	d, err := b.device(ctx, t)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	slots := listSlots()
	if t.hasKey {
		slots = []piv.Slot{t.slot}
	}
	var out []hsm.KeyInfo
	for _, s := range slots {
		st := &target{uri: t.uri, serial: t.serial, slot: s, hasKey: true}
		pub, err := d.slotPublic(st)
		if err != nil {
			return nil, err
		}
		if pub == nil {
			continue
		}
		info := hsm.KeyInfo{URI: keyURI(t.serial, s), Public: pub, Label: slotName(s), ID: slotName(s)}
		info.Algorithm, _ = hsm.AlgorithmOf(pub)
		if ev, err := d.evidence(st, pub, piv.OriginGenerated); err == nil {
			info.Evidence = ev
		} else if d.card == nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out, nil
}

// Attest returns the verified attestation evidence of the key in the slot
// the URI names.
func (b *Backend) Attest(ctx context.Context, uri *hsm.URI) (*hsm.Evidence, error) {
	t, err := parseTarget(uri, true)
	if err != nil {
		return nil, err
	}
	d, err := b.device(ctx, t)
	if err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	sk, err := d.readSlot(t)
	if err != nil {
		return nil, err
	}
	return d.evidence(t, sk.pub, sk.origin)
}

// Close closes every YubiKey the backend opened; the Signers opened on
// them stop working. Closing twice is harmless.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	devs := make([]*device, 0, len(b.devices))
	for _, d := range b.devices {
		devs = append(devs, d)
	}
	b.mu.Unlock()
	var errs []error
	for _, d := range devs {
		errs = append(errs, d.close())
	}
	return errors.Join(errs...)
}
