package yubikey

// Finding a YubiKey by serial number means looking into every reader, and
// piv-go opens cards exclusively (and leaks the handle when an open fails
// half-way). So rootkeeper first looks at each reader over a short, shared
// PC/SC connection that it always releases: it reads the serial number,
// the firmware version, the form factor and the PIN, PUK and management
// key metadata (retry counters and whether each is still the factory
// default) without sending a PIN. Only the reader holding the wanted serial
// is then opened with piv-go.

// #cgo linux pkg-config: libpcsclite
// #include <stdlib.h>
// #include <string.h>
// #include <PCSC/winscard.h>
// #include <PCSC/wintypes.h>
//
// static LONG rk_state(SCARDCONTEXT ctx, const char *reader, DWORD *event) {
// 	SCARD_READERSTATE rs;
// 	memset(&rs, 0, sizeof rs);
// 	rs.szReader = reader;
// 	rs.dwCurrentState = SCARD_STATE_UNAWARE;
// 	LONG rc = SCardGetStatusChange(ctx, 0, &rs, 1);
// 	*event = rs.dwEventState;
// 	return rc;
// }
//
// static LONG rk_transmit(SCARDHANDLE h, const BYTE *in, DWORD inLen, BYTE *out, DWORD *outLen) {
// 	return SCardTransmit(h, SCARD_PCI_T1, in, inLen, NULL, out, outLen);
// }
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// PC/SC return codes the probe tells apart.
const (
	scardESharingViolation = 0x8010000B
	scardENoSmartcard      = 0x8010000C
	scardENoService        = 0x8010001D
	scardWRemovedCard      = 0x80100069
)

// pcscError is a PC/SC call that failed.
type pcscError struct {
	op string
	rc uint32
}

func (e *pcscError) Error() string {
	switch e.rc {
	case scardESharingViolation:
		return e.op + ": the card is in use by another program"
	case scardENoSmartcard, scardWRemovedCard:
		return e.op + ": no card in the reader"
	case scardENoService:
		return e.op + ": the PC/SC daemon (pcscd) is not running"
	}
	return fmt.Sprintf("%s: PC/SC error 0x%08X", e.op, e.rc)
}

func check(op string, rc C.LONG) error {
	if rc == C.SCARD_S_SUCCESS {
		return nil
	}
	return &pcscError{op: op, rc: uint32(rc)}
}

// errBusy reports a reader whose card another program holds.
var errBusy = errors.New("in use by another program (another rootkeeper, gpg-agent's scdaemon, ykman…)")

// Application identifiers.
var (
	aidPIV        = []byte{0xa0, 0x00, 0x00, 0x03, 0x08}
	aidOTP        = []byte{0xa0, 0x00, 0x00, 0x05, 0x27, 0x20, 0x01}
	aidManagement = []byte{0xa0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

// probe reads what rootkeeper needs to know about the card in reader over
// a shared connection, and releases it. It returns errBusy when another
// program holds the card exclusively, and an error when there is no card
// or it has no PIV applet.
func probe(reader string, full bool) (*DeviceInfo, error) {
	var ctx C.SCARDCONTEXT
	if err := check("SCardEstablishContext", C.SCardEstablishContext(C.SCARD_SCOPE_SYSTEM, nil, nil, &ctx)); err != nil {
		return nil, err
	}
	defer C.SCardReleaseContext(ctx)
	cr := C.CString(reader)
	defer C.free(unsafe.Pointer(cr))

	var ev C.DWORD
	if err := check("SCardGetStatusChange", C.rk_state(ctx, cr, &ev)); err != nil {
		return nil, err
	}
	if ev&C.SCARD_STATE_PRESENT == 0 {
		return nil, errNoCard
	}
	if ev&C.SCARD_STATE_EXCLUSIVE != 0 {
		return nil, errBusy
	}
	var h C.SCARDHANDLE
	var proto C.DWORD
	if err := check("SCardConnect", C.SCardConnect(ctx, cr, C.SCARD_SHARE_SHARED, C.SCARD_PROTOCOL_T1, &h, &proto)); err != nil {
		var pe *pcscError
		if errors.As(err, &pe) && pe.rc == scardESharingViolation {
			return nil, errBusy
		}
		return nil, err
	}
	defer C.SCardDisconnect(h, C.SCARD_LEAVE_CARD)
	return readInfo(reader, full, func(apdu []byte) ([]byte, uint16, error) { return transmit(h, apdu) })
}

var errNoCard = errors.New("no card in the reader")

// transmit sends one APDU and follows 61xx with GET RESPONSE.
func transmit(h C.SCARDHANDLE, apdu []byte) ([]byte, uint16, error) {
	var out []byte
	for {
		var resp [C.MAX_BUFFER_SIZE_EXTENDED]C.BYTE
		n := C.DWORD(len(resp))
		rc := C.rk_transmit(h, (*C.BYTE)(unsafe.Pointer(&apdu[0])), C.DWORD(len(apdu)), &resp[0], &n)
		if err := check("SCardTransmit", rc); err != nil {
			return nil, 0, err
		}
		if n < 2 {
			return nil, 0, fmt.Errorf("response of %d bytes", n)
		}
		b := C.GoBytes(unsafe.Pointer(&resp[0]), C.int(n))
		out = append(out, b[:n-2]...)
		sw := uint16(b[n-2])<<8 | uint16(b[n-1])
		if b[n-2] != 0x61 {
			return out, sw, nil
		}
		apdu = []byte{0x00, 0xc0, 0x00, 0x00, b[n-1]}
	}
}

// readInfo runs the probe's APDUs through tx. Unless full, it skips what
// only listing and setting up devices need (PUK metadata, form factor).
func readInfo(reader string, full bool, tx func([]byte) ([]byte, uint16, error)) (*DeviceInfo, error) {
	do := func(what string, apdu []byte) ([]byte, error) {
		data, sw, err := tx(apdu)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if sw != 0x9000 {
			return nil, &swError{what: what, sw: sw}
		}
		return data, nil
	}
	selectAID := func(aid []byte) []byte {
		return append([]byte{0x00, 0xa4, 0x04, 0x00, byte(len(aid))}, aid...)
	}
	if _, err := do("select PIV", selectAID(aidPIV)); err != nil {
		return nil, err
	}
	v, err := do("get version", []byte{0x00, 0xfd, 0x00, 0x00})
	if err != nil {
		return nil, err
	}
	if len(v) != 3 {
		return nil, fmt.Errorf("get version: %d bytes", len(v))
	}
	info := &DeviceInfo{Reader: reader, Version: [3]byte{v[0], v[1], v[2]}, PINRetries: -1, PUKRetries: -1, PINRetriesMax: -1, PUKRetriesMax: -1}
	info.Firmware = fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2])
	var s []byte
	if v[0] < 5 {
		if _, err = do("select OTP", selectAID(aidOTP)); err == nil {
			s, err = do("get serial", []byte{0x00, 0x01, 0x10, 0x00})
		}
		if _, err2 := do("select PIV", selectAID(aidPIV)); err == nil {
			err = err2
		}
	} else {
		s, err = do("get serial", []byte{0x00, 0xf8, 0x00, 0x00})
	}
	if err != nil {
		return nil, err
	}
	if len(s) != 4 {
		return nil, fmt.Errorf("get serial: %d bytes", len(s))
	}
	info.Serial = binary.BigEndian.Uint32(s)

	if atLeast(info.Version, 5, 3, 0) {
		info.Metadata = true
		if m, err := do("PIN metadata", []byte{0x00, 0xf7, 0x00, 0x80}); err == nil {
			info.DefaultPIN, info.PINRetriesMax, info.PINRetries = credentialMetadata(m)
		}
		if !full {
			// not read
		} else if m, err := do("PUK metadata", []byte{0x00, 0xf7, 0x00, 0x81}); err == nil {
			info.DefaultPUK, info.PUKRetriesMax, info.PUKRetries = credentialMetadata(m)
		}
		if m, err := do("management key metadata", []byte{0x00, 0xf7, 0x00, 0x9b}); err == nil {
			for _, t := range parseTLVs(m) {
				switch {
				case t.tag == 0x01 && len(t.value) == 1:
					info.ManagementKeyAlgorithm = mgmtAlgName(t.value[0])
				case t.tag == 0x05 && len(t.value) == 1:
					info.DefaultManagementKey = t.value[0] != 0
				}
			}
		}
	}
	if info.PINRetries < 0 {
		// No metadata: an empty VERIFY tells the tries left.
		if _, sw, err := tx([]byte{0x00, 0x20, 0x00, 0x80}); err == nil && sw&0xfff0 == 0x63c0 {
			info.PINRetries = int(sw & 0x0f)
		}
	}
	// The form factor comes from the management application; a device
	// without it simply does not say.
	if !full {
		return info, nil
	}
	if _, err := do("select management", selectAID(aidManagement)); err == nil {
		if conf, err := do("read config", []byte{0x00, 0x1d, 0x00, 0x00}); err == nil && len(conf) > 1 {
			for _, t := range parseTLVs(conf[1:]) {
				if t.tag == 0x04 && len(t.value) == 1 {
					info.FormFactor = formFactorName(t.value[0])
				}
			}
		}
		do("select PIV", selectAID(aidPIV))
	}
	return info, nil
}

// credentialMetadata reads the PIN or PUK metadata: whether it is the
// factory default, and its retry counters.
func credentialMetadata(m []byte) (isDefault bool, max, left int) {
	max, left = -1, -1
	for _, t := range parseTLVs(m) {
		switch {
		case t.tag == 0x05 && len(t.value) == 1:
			isDefault = t.value[0] != 0
		case t.tag == 0x06 && len(t.value) == 2:
			max, left = int(t.value[0]), int(t.value[1])
		}
	}
	return isDefault, max, left
}

// swError is a status word other than 9000.
type swError struct {
	what string
	sw   uint16
}

func (e *swError) Error() string { return fmt.Sprintf("%s: status %04X", e.what, e.sw) }

type tlv struct {
	tag   byte
	value []byte
}

// parseTLVs reads simple one-byte-tag BER-TLVs, stopping at the first
// malformed one.
func parseTLVs(b []byte) []tlv {
	var out []tlv
	for len(b) >= 2 {
		tag := b[0]
		n := int(b[1])
		b = b[2:]
		switch {
		case n == 0x81 && len(b) >= 1:
			n, b = int(b[0]), b[1:]
		case n == 0x82 && len(b) >= 2:
			n, b = int(b[0])<<8|int(b[1]), b[2:]
		case n >= 0x80:
			return out
		}
		if n > len(b) {
			return out
		}
		out = append(out, tlv{tag, b[:n]})
		b = b[n:]
	}
	return out
}

func atLeast(v [3]byte, major, minor, patch byte) bool {
	if v[0] != major {
		return v[0] > major
	}
	if v[1] != minor {
		return v[1] > minor
	}
	return v[2] >= patch
}

func mgmtAlgName(alg byte) string {
	switch alg {
	case 0x03:
		return "3des"
	case 0x08:
		return "aes128"
	case 0x0a:
		return "aes192"
	case 0x0c:
		return "aes256"
	}
	return fmt.Sprintf("0x%02x", alg)
}

func formFactorName(f byte) string {
	names := map[byte]string{
		0x01: "USB-A Keychain", 0x02: "USB-A Nano", 0x03: "USB-C Keychain", 0x04: "USB-C Nano",
		0x05: "USB-C/Lightning Keychain",
	}
	fips := ""
	if f&0x80 != 0 {
		fips = " FIPS"
	}
	if n, ok := names[f&0x7f]; ok {
		return n + fips
	}
	if f == 0 {
		return ""
	}
	return fmt.Sprintf("unknown (0x%02x)", f)
}
