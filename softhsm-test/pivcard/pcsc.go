package pivcard

// A minimal PC/SC client for the helpers: probing a reader must never leave
// a handle behind. piv.Open leaks its exclusive handle (and PC/SC context)
// when it fails after connecting, e.g. on a card pcscd has not yet seen
// removed, and every later piv.Open of that reader in the process then fails
// with a sharing violation.

// #cgo linux pkg-config: libpcsclite
// #include <stdlib.h>
// #include <string.h>
// #include <PCSC/winscard.h>
// #include <PCSC/wintypes.h>
//
// static LONG rk_get_state(SCARDCONTEXT ctx, const char *reader, DWORD timeout, DWORD current, DWORD *event) {
// 	SCARD_READERSTATE rs;
// 	memset(&rs, 0, sizeof rs);
// 	rs.szReader = reader;
// 	rs.dwCurrentState = current;
// 	LONG rc = SCardGetStatusChange(ctx, timeout, &rs, 1);
// 	*event = rs.dwEventState;
// 	return rc;
// }
import "C"

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"
)

type pcscError struct {
	op string
	rc C.LONG
}

func (e *pcscError) Error() string {
	return fmt.Sprintf("pivcard: %s: PC/SC error 0x%08x", e.op, uint32(e.rc))
}

func pcscCheck(op string, rc C.LONG) error {
	if rc == C.SCARD_S_SUCCESS {
		return nil
	}
	return &pcscError{op, rc}
}

func withContext(f func(ctx C.SCARDCONTEXT) error) error {
	var ctx C.SCARDCONTEXT
	if err := pcscCheck("SCardEstablishContext", C.SCardEstablishContext(C.SCARD_SCOPE_SYSTEM, nil, nil, &ctx)); err != nil {
		return err
	}
	defer C.SCardReleaseContext(ctx)
	return f(ctx)
}

// cardPresent reports whether pcscd sees a card in reader.
func cardPresent(reader string) (bool, error) {
	var present bool
	err := withContext(func(ctx C.SCARDCONTEXT) error {
		cr := C.CString(reader)
		defer C.free(unsafe.Pointer(cr))
		var ev C.DWORD
		if err := pcscCheck("SCardGetStatusChange", C.rk_get_state(ctx, cr, 0, C.SCARD_STATE_UNAWARE, &ev)); err != nil {
			return err
		}
		present = ev&C.SCARD_STATE_PRESENT != 0
		return nil
	})
	return present, err
}

// WaitAbsent waits until pcscd reports no card in reader, so that the
// next piv.Open of it cannot reach a removed card.
func WaitAbsent(ctx context.Context, reader string) error {
	for {
		present, err := cardPresent(reader)
		if err == nil && !present {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pivcard: card still present in %s: %v", reader, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probeSerial reads the serial number of the card in reader over a shared
// connection, which it always releases.
func probeSerial(reader string) (uint32, error) {
	var serial uint32
	err := withContext(func(ctx C.SCARDCONTEXT) error {
		cr := C.CString(reader)
		defer C.free(unsafe.Pointer(cr))
		var h C.SCARDHANDLE
		var proto C.DWORD
		if err := pcscCheck("SCardConnect", C.SCardConnect(ctx, cr, C.SCARD_SHARE_SHARED, C.SCARD_PROTOCOL_T1, &h, &proto)); err != nil {
			return err
		}
		defer C.SCardDisconnect(h, C.SCARD_LEAVE_CARD)
		transmit := func(apdu []byte) ([]byte, error) {
			var resp [C.MAX_BUFFER_SIZE_EXTENDED]byte
			n := C.DWORD(len(resp))
			rc := C.SCardTransmit(h, C.SCARD_PCI_T1, (*C.BYTE)(&apdu[0]), C.DWORD(len(apdu)), nil, (*C.BYTE)(&resp[0]), &n)
			if err := pcscCheck("SCardTransmit", rc); err != nil {
				return nil, err
			}
			if n < 2 || resp[n-2] != 0x90 || resp[n-1] != 0x00 {
				return nil, fmt.Errorf("pivcard: APDU %x: status %x", apdu, resp[:n])
			}
			return append([]byte(nil), resp[:n-2]...), nil
		}
		if _, err := transmit(concat([]byte{0x00, insSelect, 0x04, 0x00, byte(len(aidPIV))}, aidPIV)); err != nil {
			return err
		}
		v, err := transmit([]byte{0x00, insGetVersion, 0x00, 0x00, 0x00})
		if err != nil {
			return err
		}
		var s []byte
		if len(v) == 3 && v[0] < 5 {
			if _, err := transmit(concat([]byte{0x00, insSelect, 0x04, 0x00, byte(len(aidOTP))}, aidOTP)); err != nil {
				return err
			}
			s, err = transmit([]byte{0x00, insOTPSerial, 0x10, 0x00, 0x00})
		} else {
			s, err = transmit([]byte{0x00, insGetSerial, 0x00, 0x00, 0x00})
		}
		if err != nil {
			return err
		}
		if len(s) != 4 {
			return fmt.Errorf("pivcard: serial of %d bytes", len(s))
		}
		serial = binary.BigEndian.Uint32(s)
		return nil
	})
	return serial, err
}
