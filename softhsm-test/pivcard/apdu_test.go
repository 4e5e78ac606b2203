package pivcard

import (
	"bytes"
	"testing"
)

// These tests drive the card's APDU handler directly, for status words
// piv-go cannot be made to send through pcscd.

func transmit(t *testing.T, c *Card, apdu []byte) ([]byte, uint16) {
	t.Helper()
	resp, err := c.handleAPDU(apdu, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := len(resp)
	return resp[:n-2], uint16(resp[n-2])<<8 | uint16(resp[n-1])
}

func selectPIV(t *testing.T, c *Card) {
	t.Helper()
	if _, sw := transmit(t, c, concat([]byte{0, 0xa4, 4, 0, 5}, aidPIV)); sw != swOK {
		t.Fatalf("SELECT: %04x", sw)
	}
}

func TestResetNeedsBlockedPINAndPUK(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, sw := transmit(t, c, []byte{0, 0xfd, 0, 0}); sw != swInsNotSupported {
		t.Fatalf("GET VERSION before SELECT: %04x, want 6d00", sw)
	}
	selectPIV(t, c)
	if _, sw := transmit(t, c, []byte{0, 0xfb, 0, 0}); sw != swConditionsNotMet {
		t.Fatalf("RESET with PIN and PUK unblocked: %04x, want 6985", sw)
	}
	wrong := []byte{0, 0x20, 0, 0x80, 8, '9', '9', '9', '9', '9', '9', 0xff, 0xff}
	for i := 2; i >= 0; i-- {
		if _, sw := transmit(t, c, wrong); sw != swVerifyFail|uint16(i) {
			t.Fatalf("wrong PIN: %04x, want 63c%d", sw, i)
		}
	}
	if _, sw := transmit(t, c, []byte{0, 0x20, 0, 0x80}); sw != 0x63c0 {
		t.Fatalf("empty VERIFY when blocked: %04x, want 63c0", sw)
	}
	if _, sw := transmit(t, c, []byte{0, 0xfb, 0, 0}); sw != swConditionsNotMet {
		t.Fatalf("RESET with only the PIN blocked: %04x, want 6985", sw)
	}
	c.mu.Lock()
	c.pukLeft = 0
	c.mu.Unlock()
	if _, sw := transmit(t, c, []byte{0, 0xfb, 0, 0}); sw != swOK {
		t.Fatalf("RESET with PIN and PUK blocked: %04x, want 9000", sw)
	}
	if c.PINRetries() != 3 {
		t.Fatalf("PIN retries after reset = %d", c.PINRetries())
	}
}

func TestChainingAndGetResponse(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	selectPIV(t, c)
	c.mu.Lock()
	c.sess.mgmtAuthed = true
	c.mu.Unlock()
	content := bytes.Repeat([]byte{0xab}, 600)
	body := concat([]byte{0x5c, 0x03, 0x5f, 0xc1, 0x0a}, encodeTLV(0x53, content))
	for len(body) > 255 {
		apdu := concat([]byte{0x10, 0xdb, 0x3f, 0xff, 0xff}, body[:255])
		if _, sw := transmit(t, c, apdu); sw != swOK {
			t.Fatalf("chained part: %04x", sw)
		}
		body = body[255:]
	}
	if _, sw := transmit(t, c, concat([]byte{0, 0xdb, 0x3f, 0xff, byte(len(body))}, body)); sw != swOK {
		t.Fatalf("last part: %04x", sw)
	}
	var got []byte
	data, sw := transmit(t, c, []byte{0, 0xcb, 0x3f, 0xff, 5, 0x5c, 0x03, 0x5f, 0xc1, 0x0a})
	got = append(got, data...)
	for sw&0xff00 == swBytesRemaining {
		if len(data) != maxResponseChunk {
			t.Fatalf("chunk of %d bytes before 61xx", len(data))
		}
		data, sw = transmit(t, c, []byte{0, 0xc0, 0, 0, 0})
		got = append(got, data...)
	}
	if sw != swOK || !bytes.Equal(got, encodeTLV(0x53, content)) {
		t.Fatalf("GET DATA: %04x, %d bytes; want 9000 and the stored object", sw, len(got))
	}
}

func TestTLV(t *testing.T) {
	in := concat(encodeTLV(0x7f49, encodeTLV(0x86, make([]byte, 97))), encodeTLV(0x53, make([]byte, 300)), encodeTLV(0x80, nil))
	ts, err := parseTLVs(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[0].tag != 0x7f49 || len(ts[0].value) != 99 || ts[1].tag != 0x53 ||
		len(ts[1].value) != 300 || ts[2].tag != 0x80 || len(ts[2].value) != 0 {
		t.Fatalf("parsed %+v", ts)
	}
	for _, bad := range [][]byte{{0x53}, {0x53, 0x05, 1}, {0x7f}, {0x53, 0x83, 0, 0, 1}} {
		if _, err := parseTLVs(bad); err == nil {
			t.Errorf("parseTLVs(%x) succeeded", bad)
		}
	}
}
