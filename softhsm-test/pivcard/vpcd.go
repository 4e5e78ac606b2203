package pivcard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Ports on which pcscd's vpcd driver listens for virtual cards, one per
// virtual reader slot ("Virtual PCD 00 00" and "Virtual PCD 00 01").
const (
	VPCDPort0 = 35963
	VPCDPort1 = 35964
)

// VPCDAddr returns the address of vpcd's virtual reader slot 0 or 1.
func VPCDAddr(slot int) string {
	return fmt.Sprintf("127.0.0.1:%d", VPCDPort0+slot)
}

// ATR is the answer-to-reset the card presents, a YubiKey 5's.
var ATR = []byte{
	0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0,
	0x21, 0xc0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
}

// ErrClosed is returned when inserting a card that was closed.
var ErrClosed = errors.New("pivcard: card closed")

// errRemoved aborts a command when the card is removed while it runs.
var errRemoved = errors.New("pivcard: card removed")

// vpcd control messages (one-byte payloads).
const (
	ctrlPowerOff = 0x00
	ctrlPowerOn  = 0x01
	ctrlReset    = 0x02
	ctrlATR      = 0x04
)

// Insert connects the card to vpcd at addr (see VPCDAddr) and serves it in
// the background until Remove or Close is called or vpcd drops the
// connection. It fails if the card is already inserted.
func (c *Card) Insert(addr string) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.conn != nil {
		return errors.New("pivcard: card already inserted")
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return fmt.Errorf("pivcard: connecting to vpcd: %w", err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c.conn = conn
	c.removed = make(chan struct{})
	c.done = make(chan struct{})
	c.connErr = nil
	go c.serve(conn, c.removed, c.done)
	return nil
}

// Connect inserts the card into vpcd at addr and serves it until ctx is
// done (then the card is removed and Connect returns nil), Remove or Close
// is called (nil), or vpcd drops the connection (an error).
func (c *Card) Connect(ctx context.Context, addr string) error {
	if err := c.Insert(addr); err != nil {
		return err
	}
	return c.Wait(ctx)
}

// Wait blocks while the card is inserted: until ctx is done (then it
// removes the card and returns nil), Remove or Close is called (nil), or
// vpcd drops the connection (an error). It returns nil at once if the card
// is not inserted.
func (c *Card) Wait(ctx context.Context) error {
	c.connMu.Lock()
	done := c.done
	c.connMu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		c.Remove()
		return nil
	case <-done:
		c.connMu.Lock()
		defer c.connMu.Unlock()
		return c.connErr
	}
}

// Connected reports whether the card is inserted in a reader.
func (c *Card) Connected() bool {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn != nil
}

// Reader returns the PC/SC reader name the card was last seen in by
// StartCard, or "" if unknown.
func (c *Card) Reader() string {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.reader
}

// Remove pulls the card out of its reader: the connection to vpcd is closed,
// a command in progress (e.g. one waiting for touch) gets no reply, and the
// session state (PIN verified, management key authenticated) is lost. Keys,
// PIN, PUK and objects are kept; Insert puts the card back. Remove returns
// once the card has stopped serving; it is a no-op if not inserted.
func (c *Card) Remove() {
	c.connMu.Lock()
	conn, removed, done := c.conn, c.removed, c.done
	if conn != nil {
		close(removed)
		conn.Close()
	}
	c.connMu.Unlock()
	if done != nil {
		<-done
	}
}

// Close removes the card for good; it cannot be inserted again.
func (c *Card) Close() {
	c.connMu.Lock()
	c.closed = true
	c.connMu.Unlock()
	c.Remove()
}

// serve runs the vpcd protocol on conn until it fails or is closed.
func (c *Card) serve(conn net.Conn, removed chan struct{}, done chan struct{}) {
	err := c.serveLoop(conn, removed)
	select {
	case <-removed:
		err = nil
	default:
		if errors.Is(err, io.EOF) {
			err = errors.New("pivcard: vpcd closed the connection")
		}
	}
	c.connMu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	conn.Close()
	c.connErr = err
	c.connMu.Unlock()
	c.powerCycle()
	close(done)
}

func (c *Card) serveLoop(conn net.Conn, removed chan struct{}) error {
	for {
		msg, err := readMsg(conn)
		if err != nil {
			return err
		}
		if len(msg) == 1 {
			switch msg[0] {
			case ctrlPowerOff, ctrlPowerOn, ctrlReset:
				c.powerCycle()
			case ctrlATR:
				if err := writeMsg(conn, ATR); err != nil {
					return err
				}
			}
			continue
		}
		resp, err := c.handleAPDU(msg, removed)
		if err != nil {
			return err
		}
		if err := writeMsg(conn, resp); err != nil {
			return err
		}
	}
}

func readMsg(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

func writeMsg(w io.Writer, msg []byte) error {
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}
