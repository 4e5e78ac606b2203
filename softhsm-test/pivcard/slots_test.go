package pivcard

import (
	"context"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"
)

// openBySerial finds a card by serial number among the Virtual PCD readers,
// as rootkeeper selects YubiKeys.
func openBySerial(t *testing.T, serial uint32) (*piv.YubiKey, string) {
	t.Helper()
	readers, err := piv.Cards()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range readers {
		if !strings.HasPrefix(r, "Virtual PCD") {
			continue
		}
		yk, err := piv.Open(r)
		if err != nil {
			t.Fatalf("piv.Open(%q): %v", r, err)
		}
		s, err := yk.Serial()
		if err == nil && s == serial {
			t.Cleanup(func() { yk.Close() })
			return yk, r
		}
		yk.Close()
	}
	t.Fatalf("no card with serial %d among %q", serial, readers)
	return nil, ""
}

func TestTwoCardsBySerial(t *testing.T) {
	a := StartCard(t, Config{Serial: 32000001}, 0)
	b := StartCard(t, Config{Serial: 32000002, Version: [3]byte{5, 4, 3}}, 1)
	if a.Reader() == b.Reader() {
		t.Fatalf("both cards in reader %q", a.Reader())
	}
	ykB, readerB := openBySerial(t, 32000002)
	if readerB != b.Reader() {
		t.Fatalf("serial 32000002 found in %q, want %q", readerB, b.Reader())
	}
	if v := ykB.Version(); v.Minor != 4 {
		t.Fatalf("card B version %+v, want 5.4.x", v)
	}
	ykA, readerA := openBySerial(t, 32000001)
	if readerA != a.Reader() {
		t.Fatalf("serial 32000001 found in %q, want %q", readerA, a.Reader())
	}
	pubB, err := ykB.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC384, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever,
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.HasKey(0x9c) || !b.HasKey(0x9c) {
		t.Fatalf("key in A: %v, in B: %v; want only B", a.HasKey(0x9c), b.HasKey(0x9c))
	}
	pubA, err := ykA.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEd25519, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Both cards sign at the same time.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs[0] = trySign(ykA, piv.SlotSignature, pubA, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("a"))
	}()
	go func() {
		defer wg.Done()
		errs[1] = trySign(ykB, piv.SlotSignature, pubB, piv.KeyAuth{PIN: piv.DefaultPIN}, []byte("b"))
	}()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("card %d: %v", i, err)
		}
	}
	if a.Stats().Signs != 1 || b.Stats().Signs != 1 {
		t.Errorf("signs A %d, B %d; want 1 each", a.Stats().Signs, b.Stats().Signs)
	}
}

func TestRemoveDuringTouch(t *testing.T) {
	c := StartCard(t, Config{Serial: 32000003, TouchDelay: 5 * time.Second}, 1)
	yk, err := piv.Open(c.Reader())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := yk.GenerateKey(piv.DefaultManagementKey, piv.SlotSignature, piv.Key{
		Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyNever, TouchPolicy: piv.TouchPolicyAlways,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- trySign(yk, piv.SlotSignature, pub, piv.KeyAuth{}, []byte("m")) }()
	time.Sleep(500 * time.Millisecond)
	c.Remove()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("sign succeeded although the card was removed while waiting for touch")
		}
		t.Logf("sign with the card pulled: %v", err)
	case <-time.After(4 * time.Second):
		t.Fatal("sign still blocked 4 s after the card was removed")
	}
	if d := time.Since(start); d >= 5*time.Second {
		t.Errorf("sign returned after %v, i.e. after the touch delay", d)
	}
	if n := c.Stats().Signs; n != 0 {
		t.Errorf("Signs = %d, want 0", n)
	}
	yk.Close() // the old handle would block the reader

	c.SetTouchDelay(0)
	c.Reinsert(t)
	yk2 := c.Open(t)
	info, err := yk2.KeyInfo(piv.SlotSignature)
	if err != nil || !pubEqual(info.PublicKey, pub) {
		t.Fatalf("KeyInfo after reinsertion = %+v, %v; want the key kept", info, err)
	}
	sign(t, yk2, piv.SlotSignature, pub, piv.KeyAuth{}, []byte("m"))
}

func TestLockSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	unlock, err := LockSlot(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// Another process cannot take it ...
	if err := exec.Command("flock", "-n", lockPath(1), "true").Run(); err == nil {
		t.Fatal("flock(1) took the slot lock held by this process")
	}
	// ... nor another LockSlot of this process.
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if u, err := LockSlot(short, 1); err == nil {
		u()
		t.Fatal("second LockSlot succeeded")
	}
	unlock()
	if out, err := exec.Command("flock", "-n", lockPath(1), "true").CombinedOutput(); err != nil {
		t.Fatalf("slot lock still held after unlock: %v %s", err, out)
	}
	if _, err := LockSlot(ctx, 2); err == nil {
		t.Fatal("LockSlot(2) succeeded")
	}
}

// Connect serves until its context is cancelled, then removes the card.
func TestConnectUntilCancelled(t *testing.T) {
	StartPCSCD(t)
	lctx, lcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer lcancel()
	unlock, err := LockSlot(lctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	c, err := New(Config{Serial: 32000004})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Connect(ctx, VPCDAddr(0)) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	reader, err := WaitVisible(wctx, 0, 32000004)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if !c.Connected() {
		t.Fatal("Connected() = false while serving")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Connect returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Connect did not return after cancel")
	}
	if c.Connected() {
		t.Fatal("Connected() = true after Connect returned")
	}
	if err := WaitAbsent(wctx, reader); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Insert(VPCDAddr(0)); err != ErrClosed {
		t.Fatalf("Insert after Close = %v, want ErrClosed", err)
	}
}

func TestPCSCDScriptIdempotent(t *testing.T) {
	StartPCSCD(t)
	run := func(arg string) string {
		out, err := exec.Command("sh", ScriptPath(), arg).CombinedOutput()
		if err != nil {
			t.Fatalf("pcscd.sh %s: %v\n%s", arg, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	first := run("start")
	second := run("start")
	if first != second || !strings.HasPrefix(first, "pcscd running (pid ") {
		t.Fatalf("pcscd.sh start twice: %q then %q; want the same running pcscd", first, second)
	}
	if st := run("status"); !strings.Contains(st, "Virtual PCD readers present") {
		t.Fatalf("pcscd.sh status = %q", st)
	}
}
