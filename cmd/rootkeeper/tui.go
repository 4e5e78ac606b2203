package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/rootkeeper/rootkeeper/hsm"
)

// The terminal side of rootkeeper, modelled on age's cmd/age/tui.go:
// messages go to stderr, secrets are read from /dev/tty with echo off, and
// every error is one "rootkeeper: error:" line with "rootkeeper: hint:"
// lines after it when there is something to do.

type tui struct {
	stderr io.Writer
	quiet  bool
}

func (t *tui) printf(format string, a ...any) {
	fmt.Fprintf(t.stderr, "rootkeeper: "+format+"\n", a...)
}

func (t *tui) errorf(err error) {
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	fmt.Fprintf(t.stderr, "rootkeeper: error: %s\n", lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(t.stderr, "rootkeeper:   %s\n", strings.TrimSpace(l))
	}
	if hint := hsm.HintOf(err); hint != "" {
		fmt.Fprintf(t.stderr, "rootkeeper: hint: %s\n", hint)
	}
}

// Progress shows what the ceremony is doing.
func (t *tui) Progress(msg string) {
	if t.quiet {
		return
	}
	for _, l := range strings.Split(msg, "\n") {
		fmt.Fprintf(t.stderr, "rootkeeper: %s\n", l)
	}
}

// Warn shows a warning, even with --quiet: what recovery did before a
// change, or a failure after a change became visible (it is done; the
// next command completes it).
func (t *tui) Warn(msg string) {
	for i, l := range strings.Split(msg, "\n") {
		if i == 0 {
			fmt.Fprintf(t.stderr, "rootkeeper: warning: %s\n", l)
		} else {
			fmt.Fprintf(t.stderr, "rootkeeper:   %s\n", l)
		}
	}
}

// Show prints a ceremony summary, even with --quiet: it is the record of
// what was signed.
func (t *tui) Show(summary string) {
	for _, l := range strings.Split(summary, "\n") {
		fmt.Fprintf(t.stderr, "rootkeeper: %s\n", l)
	}
}

// Notify shows what a device waits for (a touch, a card).
func (t *tui) Notify(msg string) { fmt.Fprintf(t.stderr, "rootkeeper: %s\n", msg) }

// Confirm shows the summary and asks on the terminal.
func (t *tui) Confirm(summary string) (bool, error) {
	fmt.Fprintln(t.stderr, summary)
	return t.askTTY(context.Background(), "Sign and write?", "run on a terminal, or pass --yes after reviewing the plan")
}

// askTTY asks a yes/no question on /dev/tty. Without a terminal the answer
// is no, with an error carrying noTTYHint; Ctrl-C (or ctx) stops it at
// once, so a line typed afterwards is never taken for an answer.
func (t *tui) askTTY(ctx context.Context, question, noTTYHint string) (bool, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "confirmation needed but there is no terminal to ask on", HintText: noTTYHint}
	}
	defer tty.Close()
	fmt.Fprint(tty, question+" [y/N] ")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(tty).ReadString('\n')
		lines <- line
	}()
	select {
	case <-sig:
	case <-ctx.Done():
	case line := <-lines:
		ans := strings.ToLower(strings.TrimSpace(line))
		return ans == "y" || ans == "yes", nil
	}
	fmt.Fprintln(tty)
	return false, errInterrupted
}

// errInterrupted is returned when the officer presses Ctrl-C at a prompt.
var errInterrupted = &hsm.Error{Detail: "interrupted at the prompt: nothing was signed or written", HintText: "run the command again when ready"}

// readPIN asks for a PIN on the terminal with echo off. It is the last of
// the PIN sources (after pin-source and ROOTKEEPER_PIN).
func readPIN(ctx context.Context, req hsm.PINRequest) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, URI: req.Device, Detail: "a PIN is needed but there is no terminal to ask on",
			HintText: "add ?pin-source=FILE to the key URI or set " + hsm.PINEnv + " for unattended runs"}
	}
	defer tty.Close()
	what := req.Purpose
	if what == "" {
		what = "PIN"
	}
	prompt := fmt.Sprintf("Enter %s for %s", what, req.Device)
	switch {
	case req.Final:
		prompt += " (FINAL TRY: a wrong PIN locks the device)"
	case req.Retries >= 0:
		prompt += fmt.Sprintf(" (%d tries left)", req.Retries)
	case req.Low:
		prompt += " (few tries left)"
	}
	pin, err := readSecretTTY(ctx, tty, prompt+": ")
	if err != nil {
		return nil, err
	}
	if len(pin) == 0 {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, URI: req.Device, Detail: "empty PIN", HintText: "type the PIN, or press Ctrl-C to stop"}
	}
	return pin, nil
}
