package yubikey

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// uriHint is how to write a YubiKey URI.
const uriHint = "write YubiKey keys as yubikey:serial=N;slot=9c (slot 9c or a retired slot 82 to 95), " +
	"optionally ?pin-source=FILE&management-key-source=FILE; rootkeeper yubikey list shows the serials"

// target is what a yubikey: URI names.
type target struct {
	uri    *hsm.URI
	serial uint32
	slot   piv.Slot
	hasKey bool // the URI names a slot, not only a device
}

// object is the URI without its query, for messages.
func (t *target) object() string { return t.uri.Object() }

// parseTarget reads a yubikey: URI. needSlot says whether it must name a
// slot (a key) or may name only the device.
func parseTarget(uri *hsm.URI, needSlot bool) (*target, error) {
	fail := func(detail string) error {
		s := "<nil>"
		if uri != nil {
			s = uri.Object()
		}
		return &hsm.Error{Kind: hsm.ErrUnsupported, URI: s, Detail: detail, HintText: uriHint}
	}
	if uri == nil || uri.Scheme != "yubikey" {
		return nil, fail("not a yubikey: URI")
	}
	for _, name := range uri.PathNames() {
		if name != "serial" && name != "slot" {
			return nil, fail(fmt.Sprintf("unknown attribute %q (a YubiKey URI has serial and slot)", name))
		}
	}
	for _, name := range uri.QueryNames() {
		if name != "pin-source" && name != "management-key-source" {
			return nil, fail(fmt.Sprintf("unknown query attribute %q (known: pin-source, management-key-source)", name))
		}
	}
	t := &target{uri: uri}
	s, ok := uri.Path("serial")
	if !ok {
		return nil, fail("the URI names no serial: with several YubiKeys attached rootkeeper must know which one")
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return nil, fail(fmt.Sprintf("serial %q is not a YubiKey serial number (decimal, as printed on the device)", s))
	}
	t.serial = uint32(n)
	slot, ok := uri.Path("slot")
	if !ok {
		if needSlot {
			return nil, fail("the URI names no slot")
		}
		return t, nil
	}
	if t.slot, err = ParseSlot(slot); err != nil {
		return nil, fail(err.Error())
	}
	t.hasKey = true
	return t, nil
}

// ParseSlot reads a PIV slot in which rootkeeper keeps keys: "9c" (digital
// signature) or a retired key management slot "82" to "95". Slots 9a, 9d
// and 9e are refused: their PIN and usage semantics are meant for other
// purposes (authentication, decryption, card authentication without PIN).
func ParseSlot(s string) (piv.Slot, error) {
	n, err := strconv.ParseUint(strings.ToLower(s), 16, 8)
	if err != nil {
		return piv.Slot{}, fmt.Errorf("slot %q is not a PIV slot (use 9c or 82 to 95)", s)
	}
	if n == 0x9c {
		return piv.SlotSignature, nil
	}
	if slot, ok := piv.RetiredKeyManagementSlot(uint32(n)); ok {
		return slot, nil
	}
	return piv.Slot{}, fmt.Errorf("slot %s cannot hold a rootkeeper key (use 9c, the signature slot, or a retired slot 82 to 95)", s)
}

// slotName formats a slot as URIs write it ("9c", "82").
func slotName(s piv.Slot) string { return fmt.Sprintf("%02x", s.Key) }

// keyURI is the canonical URI of a key.
func keyURI(serial uint32, slot piv.Slot) string {
	return fmt.Sprintf("yubikey:serial=%d;slot=%s", serial, slotName(slot))
}

// parseManagementKey reads a management key written as hex (spaces and
// colons allowed): 16, 24 or 32 bytes.
func parseManagementKey(text []byte) ([]byte, error) {
	s := strings.Map(func(r rune) rune {
		if r == ' ' || r == ':' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, string(text))
	key, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("the management key must be written in hex")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("a management key has 16, 24 or 32 bytes (32, 48 or 64 hex digits), not %d", len(key))
}
