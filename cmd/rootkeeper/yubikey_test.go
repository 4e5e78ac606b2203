package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
)

// Virtual YubiKeys for the golden scripts (testdata/script/yubikey*.txtar).
// The cards run in the test process, behind the real pcscd, and the
// rootkeeper subprocesses reach them through piv-go as they would a real
// YubiKey.
//
//	vcard start NAME SLOT SERIAL [FIRMWARE]  insert a fresh card into vpcd slot 0 or 1;
//	                                         sets $CA to its attestation CA (PEM)
//	vcard retries NAME N                     the card has N PIN tries left
//	vcard mark NAME                          remember the card's count of PIN VERIFYs
//	vcard noverify NAME                      fail if a PIN was sent since vcard mark
//	vcard ops NAME VERIFIES SIGNS TOUCHES    fail unless the card received that many PIN
//	                                         VERIFYs, made that many signatures and was
//	                                         touched that many times since the last vcard
//	                                         ops (or start), or signed one input twice;
//	vcard ops NAME                           only starts counting
//
// The first vcard start takes both vpcd slots' locks for the whole script:
// finding a YubiKey by serial looks into every reader. Scripts begin with
// [!pcscd] skip, which starts pcscd where it can run.

type vcardScript struct {
	ca    *pivcard.CA
	cards map[string]*pivcard.Card
	marks map[string]int
	ops   map[string]opsMark
}

var (
	vcardMu      sync.Mutex
	vcardScripts = map[*testscript.TestScript]*vcardScript{}
)

func vcardCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("vcard does not support !")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: vcard start|retries|mark|noverify NAME ...")
	}
	vcardMu.Lock()
	vs := vcardScripts[ts]
	vcardMu.Unlock()
	card := func() *pivcard.Card {
		if vs == nil || vs.cards[args[1]] == nil {
			ts.Fatalf("vcard: no card %q", args[1])
		}
		return vs.cards[args[1]]
	}
	switch args[0] {
	case "start":
		if len(args) < 4 {
			ts.Fatalf("usage: vcard start NAME SLOT SERIAL [FIRMWARE]")
		}
		if vs == nil {
			vs = vcardSetup(ts)
		}
		slot, err := strconv.Atoi(args[2])
		ts.Check(err)
		serial, err := strconv.ParseUint(args[3], 10, 32)
		ts.Check(err)
		cfg := pivcard.Config{Serial: uint32(serial), CA: vs.ca}
		if len(args) > 4 {
			var v [3]int
			if _, err := fmt.Sscanf(args[4], "%d.%d.%d", &v[0], &v[1], &v[2]); err != nil {
				ts.Fatalf("vcard: firmware %q: %v", args[4], err)
			}
			cfg.Version = [3]byte{byte(v[0]), byte(v[1]), byte(v[2])}
		}
		c, err := pivcard.New(cfg)
		ts.Check(err)
		ts.Defer(c.Close)
		deadline := time.Now().Add(20 * time.Second)
		for {
			err = c.Insert(pivcard.VPCDAddr(slot))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		ts.Check(err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = pivcard.WaitVisible(ctx, slot, c.Serial())
		ts.Check(err)
		vs.cards[args[1]] = c
	case "retries":
		want, err := strconv.Atoi(args[2])
		ts.Check(err)
		if got := card().PINRetries(); got != want {
			ts.Fatalf("card %s has %d PIN tries left, want %d", args[1], got, want)
		}
	case "mark":
		vs.marks[args[1]] = card().Stats().PINVerifies
	case "ops":
		vcardOps(ts, vs, card(), args)
	case "noverify":
		if n := card().Stats().PINVerifies - vs.marks[args[1]]; n != 0 {
			ts.Fatalf("card %s received %d PIN VERIFY since vcard mark", args[1], n)
		}
	default:
		ts.Fatalf("vcard: unknown subcommand %q", args[0])
	}
}

// pcscdRuns is the [pcscd] condition: it starts pcscd with the vpcd
// readers if needed (softhsm-test/pcscd.sh) and reports whether it runs.
// Scripts skip with [!pcscd] only where pcscd cannot run at all; with
// CI=true that is an error.
func pcscdRuns() (bool, error) {
	pcscdOnce.Do(func() {
		out, err := exec.Command("sh", pivcard.ScriptPath(), "start").CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			pcscdOK = true
		case errors.As(err, &ee) && ee.ExitCode() == 2 && os.Getenv("CI") != "true":
			pcscdOK = false
		default:
			pcscdErr = fmt.Errorf("%s start: %v\n%s", pivcard.ScriptPath(), err, out)
		}
	})
	return pcscdOK, pcscdErr
}

var (
	pcscdOnce sync.Once
	pcscdOK   bool
	pcscdErr  error
)

// vcardSetup takes both vpcd slots for the script and makes the script's
// attestation CA. pcscd runs: the script checked [pcscd].
func vcardSetup(ts *testscript.TestScript) *vcardScript {
	for slot := 0; slot < 2; slot++ {
		ctx, cancel := context.WithTimeout(context.Background(), pivcard.SlotWait)
		unlock, err := pivcard.LockSlot(ctx, slot)
		cancel()
		ts.Check(err)
		ts.Defer(unlock)
	}
	ca, err := pivcard.NewCA()
	ts.Check(err)
	caFile := filepath.Join(ts.Getenv("WORK"), ".attestation-ca.pem")
	ts.Check(os.WriteFile(caFile, ca.PEM(), 0o644))
	ts.Setenv("CA", caFile)
	ts.Setenv("ROOTKEEPER_YUBIKEY_WAIT", "0")
	vs := &vcardScript{ca: ca, cards: map[string]*pivcard.Card{}, marks: map[string]int{}, ops: map[string]opsMark{}}
	vcardMu.Lock()
	vcardScripts[ts] = vs
	vcardMu.Unlock()
	ts.Defer(func() {
		vcardMu.Lock()
		delete(vcardScripts, ts)
		vcardMu.Unlock()
	})
	return vs
}
