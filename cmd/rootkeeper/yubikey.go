package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/hsm/yubikey"
	"github.com/rootkeeper/rootkeeper/roles"
)

func (a *app) yubikeyCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "yubikey",
		Short: "List YubiKeys and set up new ones",
		Long: `List the YubiKeys connected, and move a new YubiKey off its factory PIN, PUK and
management key before it holds a root key. See docs/runbook-yubikey.md.`,
	})
	cmd.AddCommand(a.yubikeyListCommand(), a.yubikeySetupCommand(), a.yubikeyUnblockCommand())
	return cmd
}

func (a *app) yubikeyListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the connected YubiKeys: serial, firmware, form factor, PIN tries left",
		Long: `List the connected YubiKeys without asking for a PIN: serial number, firmware,
form factor, PIN and PUK tries left, and whether the factory PIN, PUK or
management key is still in place (then run rootkeeper yubikey setup).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, busy, err := yubikey.Devices(cmd.Context(), a.hsmOptions())
			if err != nil {
				return err
			}
			for _, r := range busy {
				a.ui.printf("warning: reader %q is in use by another program (gpg-agent's scdaemon, ykman, another rootkeeper?): its YubiKey is not listed", r)
			}
			if asJSON {
				if devs == nil {
					devs = []yubikey.DeviceInfo{}
				}
				if busy == nil {
					busy = []string{}
				}
				return a.printJSON(struct {
					Devices []yubikey.DeviceInfo `json:"devices"`
					Busy    []string             `json:"busy_readers"`
				}{devs, busy})
			}
			if len(devs) == 0 {
				fmt.Fprintln(a.stdout, "no YubiKey connected")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tFIRMWARE\tFORM FACTOR\tPIN TRIES\tPUK TRIES\tFACTORY CREDENTIALS")
			for _, d := range devs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Serial, d.Firmware, orDash(d.FormFactor),
					tries(d.PINRetries, d.PINRetriesMax), tries(d.PUKRetries, d.PUKRetriesMax), factory(d))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, d := range devs {
				if d.DefaultPIN || d.DefaultPUK || d.DefaultManagementKey {
					a.ui.printf("YubiKey serial %d still has factory credentials: run rootkeeper yubikey setup --serial %d", d.Serial, d.Serial)
				}
				if yubikey.VulnerableFirmware(d.Firmware) {
					a.ui.printf("warning: YubiKey serial %d has firmware %s, affected by YSA-2024-03: use firmware 5.7 or later for root keys", d.Serial, d.Firmware)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tries(left, max int) string {
	switch {
	case left < 0:
		return "?"
	case max > 0:
		return fmt.Sprintf("%d of %d", left, max)
	}
	return fmt.Sprint(left)
}

func factory(d yubikey.DeviceInfo) string {
	if !d.Metadata {
		return "unknown (firmware before 5.3)"
	}
	var f []string
	if d.DefaultPIN {
		f = append(f, "PIN")
	}
	if d.DefaultPUK {
		f = append(f, "PUK")
	}
	if d.DefaultManagementKey {
		f = append(f, "management key")
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, ", ")
}

func (a *app) yubikeySetupCommand() *cobra.Command {
	var serial uint32
	var pinSource string
	var yes bool
	cmd := &cobra.Command{
		Use:   "setup [--serial N]",
		Short: "Move a new YubiKey off its factory PIN, PUK and management key",
		Long: `Prepare a new YubiKey for root keys. Using the factory credentials this once,
and only those the device reports as still in place, rootkeeper:

  - sets the PIN you type (twice, without echo; 6 to 8 characters),
  - sets a random 8-digit PUK, printed once for you to write down,
  - sets a random AES-192 management key, stored on the YubiKey and protected
    by the PIN, where rootkeeper key generate finds it.

It shows what it will do and asks before changing anything. With several
YubiKeys connected, choose one with --serial.`,
		Example: `  rootkeeper yubikey setup --serial 12345678`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := a.hsmOptions()
			so := yubikey.SetupOptions{Serial: serial, NewPIN: readNewPIN}
			ask := func(q string) (bool, error) { return a.ui.askContext(cmd.Context(), q) }
			if pinSource != "" {
				so.NewPIN = func(context.Context, *yubikey.DeviceInfo) ([]byte, error) {
					return hsm.ReadSecretFile(pinSource, "--new-pin-source")
				}
			}
			so.Confirm = func(summary string) (bool, error) {
				if yes {
					a.ui.Show(summary) // even with --quiet: what is changed
					return true, nil
				}
				return ask(summary + "\nChange these credentials now?")
			}
			res, err := yubikey.Setup(cmd.Context(), opts, so)
			if err != nil {
				return err
			}
			d := res.Device
			if !res.ChangedPIN && !res.ChangedPUK && !res.ChangedManagementKey {
				fmt.Fprintf(a.stdout, "YubiKey serial %d has no factory credentials left: nothing to do\n", d.Serial)
				return nil
			}
			fmt.Fprintf(a.stdout, "YubiKey serial %d (firmware %s) is set up.\n", d.Serial, d.Firmware)
			fmt.Fprintln(a.stdout, "Write down, and keep apart from the device (the ceremony's sealed envelope):")
			fmt.Fprintf(a.stdout, "  serial: %d\n", d.Serial)
			if res.ChangedPUK {
				fmt.Fprintf(a.stdout, "  PUK:    %s   (unblocks the PIN after 3 wrong tries; 3 wrong PUKs leave only a reset, which destroys the keys)\n", res.PUK)
			}
			if res.ChangedPIN {
				fmt.Fprintln(a.stdout, "  PIN:    the one you chose (never write it next to the PUK)")
			}
			if res.ChangedManagementKey {
				fmt.Fprintln(a.stdout, "The management key is random and stored on the YubiKey, protected by the PIN: nothing to write down.")
			}
			fmt.Fprintf(a.stdout, "Next: rootkeeper key generate 'yubikey:serial=%d;slot=9c' --algorithm ecdsa-p256\n", d.Serial)
			return nil
		},
	}
	cmd.Flags().Uint32Var(&serial, "serial", 0, "the YubiKey to set up (default: the only one connected)")
	cmd.Flags().StringVar(&pinSource, "new-pin-source", "", "read the new PIN from this file (mode 0600) instead of the terminal, for scripted provisioning")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (what will change is still printed)")
	return cmd
}

// readNewPIN asks for the new PIN twice on the terminal, with echo off.
func readNewPIN(ctx context.Context, dev *yubikey.DeviceInfo) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "the new PIN must be typed on a terminal, and there is none",
			HintText: "run the command on a terminal, or pass --new-pin-source FILE"}
	}
	defer tty.Close()
	first, err := readSecretTTY(ctx, tty, fmt.Sprintf("New PIN for %s (6 to 8 characters): ", dev.Name()))
	if err != nil {
		return nil, err
	}
	second, err := readSecretTTY(ctx, tty, "Repeat the new PIN: ")
	if err != nil {
		hsm.Wipe(first)
		return nil, err
	}
	defer hsm.Wipe(second)
	if !bytes.Equal(first, second) {
		hsm.Wipe(first)
		return nil, &hsm.Error{Kind: hsm.ErrNoPIN, Detail: "the two PINs differ; nothing was changed", HintText: "run the command again"}
	}
	return first, nil
}

// readSecretTTY reads a line from tty with echo off. Ctrl-C (which cancels
// ctx) stops it at once: nothing typed afterwards is used.
func readSecretTTY(ctx context.Context, tty *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(tty, prompt)
	fd := int(tty.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("reading from the terminal: %w", err)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		done <- result{b, err}
	}()
	select {
	case <-ctx.Done():
		term.Restore(fd, state)
		fmt.Fprintln(tty)
		return nil, errInterrupted
	case r := <-done:
		fmt.Fprintln(tty)
		if r.err != nil {
			return nil, fmt.Errorf("reading from the terminal: %w", r.err)
		}
		return r.b, nil
	}
}

// ask asks a yes/no question on the terminal (hsm.Options.Confirm).
func (t *tui) ask(question string) (bool, error) { return t.askContext(context.Background(), question) }

// askContext asks a yes/no question on the terminal; without one it shows
// the question and answers no, with an error that says so.
func (t *tui) askContext(ctx context.Context, question string) (bool, error) {
	ok, err := t.askTTY(ctx, question, "run the command on a terminal")
	var he *hsm.Error
	if errors.As(err, &he) && he.Kind == hsm.ErrNoPIN {
		fmt.Fprintln(t.stderr, question)
	}
	return ok, err
}

func (a *app) yubikeyUnblockCommand() *cobra.Command {
	var serial uint32
	var pukSource, pinSource string
	cmd := &cobra.Command{
		Use:   "unblock [--serial N]",
		Short: "Set a new PIN with the PUK, after the PIN was blocked",
		Long: `Set a new PIN on a YubiKey with its PUK (written down at rootkeeper yubikey
setup). The PUK tries left are read first and shown; the PUK's final try is
used only with --force-last-pin-try, because a blocked PUK leaves only a reset,
which destroys the device's keys. The new PIN is read twice, without echo.`,
		Example: `  rootkeeper yubikey unblock --serial 12345678`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			uo := yubikey.UnblockOptions{Serial: serial, NewPIN: readNewPIN, PUK: readPIN}
			if pukSource != "" {
				uo.PUK = func(context.Context, hsm.PINRequest) ([]byte, error) {
					return hsm.ReadSecretFile(pukSource, "--puk-source")
				}
			}
			if pinSource != "" {
				uo.NewPIN = func(context.Context, *yubikey.DeviceInfo) ([]byte, error) {
					return hsm.ReadSecretFile(pinSource, "--new-pin-source")
				}
			}
			info, err := yubikey.Unblock(cmd.Context(), a.hsmOptions(), uo)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "YubiKey serial %d: the PIN is unblocked and set to the new PIN\n", info.Serial)
			return nil
		},
	}
	cmd.Flags().Uint32Var(&serial, "serial", 0, "the YubiKey (default: the only one connected)")
	cmd.Flags().StringVar(&pukSource, "puk-source", "", "read the PUK from this file (mode 0600) instead of the terminal")
	cmd.Flags().StringVar(&pinSource, "new-pin-source", "", "read the new PIN from this file (mode 0600) instead of the terminal")
	return cmd
}

// recheckEvidence re-checks the hardware evidence of the repository's key
// records (ceremony.CheckStoredEvidence), prints what could not be checked
// as warnings, and returns the problems found.
func (a *app) recheckEvidence(dir string) ([]roles.Problem, error) {
	kr := hsm.NewKeyring(a.hsmOptions())
	defer kr.Close()
	rep, err := ceremony.CheckStoredEvidence(dir, kr)
	if err != nil {
		return nil, err
	}
	for _, w := range rep.Warnings {
		a.ui.printf("warning: %s", w)
	}
	return rep.Problems, nil
}
