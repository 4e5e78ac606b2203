// Command virtual-piv runs one emulated YubiKey 5 PIV card (package
// pivcard) in a vpcd virtual reader of a running pcscd, for manual use and
// scripts. It prints "ready" once the card is connected and serves until
// interrupted, reconnecting if pcscd restarts.
//
//	softhsm-test/pcscd.sh start
//	go run ./softhsm-test/cmd/virtual-piv -serial 12345678 -slot 0 -ca-out /tmp/ca.pem
//	ykman --reader "Virtual PCD 00 00" piv info   # or opensc-tool, or rootkeeper
//
// The slot's lock file (/tmp/rootkeeper-vpcd-slotN.lock) is held while the
// card runs, so tests wait for it instead of colliding.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rootkeeper/rootkeeper/softhsm-test/pivcard"
)

func main() {
	serial := flag.Uint("serial", 0, "card serial number (0: random)")
	slot := flag.Int("slot", 0, "vpcd slot: 0 (port 35963) or 1 (port 35964)")
	port := flag.Int("port", 0, "vpcd TCP port, overriding -slot (no slot lock is taken)")
	firmware := flag.String("firmware", "5.7.1", "firmware version to report, e.g. 5.4.3")
	touch := flag.Duration("touch-delay", 0, "time a simulated touch takes")
	pin := flag.String("pin", pivcard.DefaultPIN, "initial PIN")
	puk := flag.String("puk", pivcard.DefaultPUK, "initial PUK")
	caOut := flag.String("ca-out", "", "write the test attestation CA certificate (PEM) to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("virtual-piv: ")

	version, err := parseVersion(*firmware)
	if err != nil {
		log.Fatal(err)
	}
	card, err := pivcard.New(pivcard.Config{
		Serial:     uint32(*serial),
		Version:    version,
		PIN:        *pin,
		PUK:        *puk,
		TouchDelay: *touch,
	})
	if err != nil {
		log.Fatal(err)
	}
	if *caOut != "" {
		if err := os.WriteFile(*caOut, card.CA().PEM(), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr := pivcard.VPCDAddr(*slot)
	if *port != 0 {
		addr = fmt.Sprintf("127.0.0.1:%d", *port)
	} else {
		unlock, err := pivcard.LockSlot(ctx, *slot)
		if err != nil {
			log.Fatal(err)
		}
		defer unlock()
	}

	first := true
	for ctx.Err() == nil {
		if err := card.Insert(addr); err != nil {
			if first {
				log.Printf("%v (is pcscd running? softhsm-test/pcscd.sh start); retrying", err)
				first = false
			}
			sleep(ctx, time.Second)
			continue
		}
		first = true
		reader := "?"
		if *port == 0 {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			r, err := pivcard.WaitVisible(wctx, *slot, card.Serial())
			cancel()
			if err != nil {
				log.Printf("warning: %v", err)
			} else {
				reader = r
			}
		}
		v := card.Version()
		fmt.Printf("ready serial=%d firmware=%d.%d.%d addr=%s reader=%q\n", card.Serial(), v[0], v[1], v[2], addr, reader)
		if err := card.Wait(ctx); err != nil {
			log.Printf("%v; reconnecting", err)
			sleep(ctx, time.Second)
		}
	}
	card.Close()
}

func parseVersion(s string) ([3]byte, error) {
	var v [3]byte
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("firmware %q: want MAJOR.MINOR.PATCH", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return v, fmt.Errorf("firmware %q: %v", s, err)
		}
		v[i] = byte(n)
	}
	return v, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
