package pivcard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// LockDir is where the per-slot lock files live. It is fixed (not
// $TMPDIR) so that every process on the machine agrees on it.
const LockDir = "/tmp"

// lockPath returns the lock file of vpcd slot 0 or 1.
func lockPath(slot int) string {
	return filepath.Join(LockDir, fmt.Sprintf("rootkeeper-vpcd-slot%d.lock", slot))
}

// LockSlot takes the machine-wide lock of vpcd slot 0 or 1 (an flock on
// /tmp/rootkeeper-vpcd-slotN.lock), waiting until ctx is done. Only the
// holder may insert a card into that slot. Call unlock to release it; the
// lock is also released if the process dies.
func LockSlot(ctx context.Context, slot int) (unlock func(), err error) {
	if slot != 0 && slot != 1 {
		return nil, fmt.Errorf("pivcard: vpcd slot must be 0 or 1, got %d", slot)
	}
	// Read-only is enough for flock and works on another user's lock file.
	f, err := os.OpenFile(lockPath(slot), os.O_CREATE|os.O_RDONLY, 0o666)
	if err != nil {
		return nil, err
	}
	f.Chmod(0o666) // best effort, despite the umask
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("pivcard: locking %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("pivcard: waiting for vpcd slot %d (%s held by another test process): %w", slot, f.Name(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
		})
	}, nil
}

// ScriptPath returns the path of softhsm-test/pcscd.sh: $ROOTKEEPER_PCSCD_SH
// if set, else the script next to this package's source.
func ScriptPath() string {
	if p := os.Getenv("ROOTKEEPER_PCSCD_SH"); p != "" {
		return p
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "pcscd.sh"
	}
	return filepath.Join(filepath.Dir(file), "..", "pcscd.sh")
}

var (
	pcscdMu      sync.Mutex
	pcscdStarted bool
)

// StartPCSCD makes sure pcscd runs with the vpcd virtual readers, starting
// it with pcscd.sh if needed (pcscd stays up for other tests and
// processes). If pcscd cannot run on this machine at all (not installed, or
// not root and none running) the test is skipped, or failed when the
// environment variable CI is "true". Any other failure fails the test.
func StartPCSCD(t testing.TB) {
	t.Helper()
	pcscdMu.Lock()
	defer pcscdMu.Unlock()
	if pcscdStarted {
		return
	}
	script := ScriptPath()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", script, "start")
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 2 {
			msg := fmt.Sprintf("pcscd cannot run here: %s\n(install with: sudo %s install)", strings.TrimSpace(string(out)), script)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		t.Fatalf("%s start: %v\n%s", script, err, out)
	}
	pcscdStarted = true
}

// ReaderName returns the PC/SC name of vpcd's reader for slot 0 or 1
// (normally "Virtual PCD 00 00" or "Virtual PCD 00 01").
func ReaderName(slot int) (string, error) {
	readers, err := piv.Cards()
	if err != nil {
		return "", err
	}
	suffix := fmt.Sprintf(" %02X", slot)
	for _, r := range readers {
		if strings.HasPrefix(r, "Virtual PCD") && strings.HasSuffix(r, suffix) {
			return r, nil
		}
	}
	return "", fmt.Errorf("pivcard: no Virtual PCD reader for slot %d among %q", slot, readers)
}

// WaitVisible waits until pcscd sees a card in the reader of vpcd slot 0
// or 1 and the card answers with serial. It probes over a shared PC/SC
// connection that it always releases (unlike a failed piv.Open). It
// returns the reader's name.
func WaitVisible(ctx context.Context, slot int, serial uint32) (string, error) {
	var last error
	for {
		reader, err := ReaderName(slot)
		if err == nil {
			var present bool
			present, err = cardPresent(reader)
			if err == nil && !present {
				err = errors.New("no card in the reader")
			}
			if err == nil {
				var got uint32
				got, err = probeSerial(reader)
				if err == nil && got == serial {
					return reader, nil
				}
				if err == nil {
					err = fmt.Errorf("serial %d in the reader, want %d", got, serial)
				}
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("pivcard: card %d not visible in vpcd slot %d: %v", serial, slot, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SlotWait is how long a test waits for a vpcd slot. Test packages run in
// parallel processes and share two slots, so a test may wait for several
// others' cards; the suite's own timeout (make test: 20 minutes) is the
// real bound.
const SlotWait = 10 * time.Minute

// StartCard makes a card from cfg and inserts it into vpcd slot 0 or 1 for
// the rest of the test: it starts pcscd if needed (see StartPCSCD), takes
// the slot's machine-wide lock (waiting for other test processes), connects
// the card and waits until piv-go sees it by serial number. At cleanup the
// card is closed and the lock released. Card.Reader names its reader; open
// it with piv.Open or Card.Open.
//
// Code under test that finds a card by serial opens every reader, including
// the other vpcd slot, which a test in another process may be using (piv-go
// opens cards exclusively). Such a test should also hold the other slot's
// lock (LockSlot) or tolerate failures to open readers that are not its own.
func StartCard(t testing.TB, cfg Config, slot int) *Card {
	t.Helper()
	StartPCSCD(t)
	ctx, cancel := context.WithTimeout(context.Background(), SlotWait)
	defer cancel()
	unlock, err := LockSlot(ctx, slot)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Close waits until pcscd has seen the card go: a piv.Open racing
		// the removal would leak its handle (see WaitAbsent).
		c.Close()
		unlock()
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		err = c.Insert(VPCDAddr(slot))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	reader, err := WaitVisible(wctx, slot, c.Serial())
	if err != nil {
		t.Fatal(err)
	}
	c.connMu.Lock()
	c.reader, c.slot = reader, slot
	c.connMu.Unlock()
	return c
}

// Reinsert puts a card started by StartCard, then removed with Remove, back
// into its vpcd slot and waits until piv-go can see it. Its keys, PIN and
// objects are kept; its session state was lost with the removal.
func (c *Card) Reinsert(t testing.TB) {
	t.Helper()
	c.connMu.Lock()
	reader, slot := c.reader, c.slot
	c.connMu.Unlock()
	if reader == "" {
		t.Fatal("pivcard: Reinsert needs a card started by StartCard")
	}
	if err := c.Insert(VPCDAddr(slot)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := WaitVisible(ctx, slot, c.Serial()); err != nil {
		t.Fatal(err)
	}
}

// Open opens the card's reader (see StartCard) with piv-go, retrying while
// pcscd has not caught up, and closes it at the end of the test.
func (c *Card) Open(t testing.TB) *piv.YubiKey {
	t.Helper()
	reader := c.Reader()
	if reader == "" {
		t.Fatal("pivcard: card reader unknown; use StartCard")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		yk, err := piv.Open(reader)
		if err == nil {
			t.Cleanup(func() { yk.Close() })
			return yk
		}
		if time.Now().After(deadline) {
			t.Fatalf("opening %s: %v", reader, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
