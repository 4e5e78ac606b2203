// Command rootkeeper keeps a TUF repository's offline root key in hardware
// and runs its key ceremonies.
//
// See README.md and docs/ for the runbooks.
package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
	_ "github.com/rootkeeper/rootkeeper/hsm/pkcs11" // registers pkcs11: URIs
	"github.com/rootkeeper/rootkeeper/hsm/yubikey"  // registers yubikey: URIs
)

// Exit codes. status and verify use the last three so that cron jobs and
// monitoring can act on them (docs/exit-codes.md).
const (
	exitOK      = 0
	exitError   = 1 // the command could not do its work
	exitUsage   = 2 // bad flags or arguments
	exitDue     = 3 // valid, but a role is inside its re-signing window
	exitInvalid = 4 // a client would refuse the repository (expired, tampered, below threshold)
)

// exitError carries a non-error exit status (status/verify verdicts).
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks bad command-line input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
func (e usageError) Hint() string {
	if h := hsm.HintOf(e.err); h != "" {
		return h
	}
	return "see rootkeeper --help"
}

// hinted adds a hint to an error that has none.
type hinted struct {
	err  error
	hint string
}

func (e hinted) Error() string { return e.err.Error() }
func (e hinted) Unwrap() error { return e.err }
func (e hinted) Hint() string  { return e.hint }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// clock is the time every command acts at: the sessions' clock (every
// write) and what --at counts from (reads). Writes use the real clock,
// always: the command has no flag or environment variable that moves it.
// Only the golden tests replace it, in main_test.go (rootkeeper-at), to
// run a command in-process as if time had passed.
var clock = time.Now

type app struct {
	stdout io.Writer
	ui     *tui

	forceLastTry bool
	quiet        bool

	// --attestation-roots: attestation roots other than Yubico's, chosen
	// explicitly by the officer.
	rootsFile string
	roots     *x509.CertPool
	rootsName string

	// --out and --bundle-expires of the change commands (bundle.go).
	bundleOut, bundleExpires string
	bundleLifetime           time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, ui: &tui{stderr: stderr}}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var st exitStatus
	if errors.As(err, &st) {
		return st.code
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		err = usageError{err} // from cobra, for the top level
	}
	a.ui.errorf(err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// groupCommand is a command that only holds subcommands: without one, or
// with an unknown one, it is a usage error (exit 2), not help and exit 0.
func groupCommand(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())}
		}
		return usageError{fmt.Errorf("%s needs a subcommand", c.CommandPath())}
	}
	return cmd
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rootkeeper",
		Short: "Keep a TUF repository's offline root key in hardware and run its key ceremonies",
		Long: `rootkeeper keeps the offline root key of a TUF repository inside a YubiKey or a
PKCS#11 HSM, runs ceremonies from a plan file, signs delegations to tagging keys,
and refuses to publish metadata that would strand clients.

Keys are named by URI:
  pkcs11:token=LABEL;object=LABEL?module-path=PATH&pin-source=FILE
  yubikey:serial=N;slot=9c?pin-source=FILE

PINs come from the URI's pin-source file, the ROOTKEEPER_PIN environment
variable, or a prompt on the terminal — never from the command line.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       ceremony.Version(),
	}
	root.SetVersionTemplate("rootkeeper {{.Version}}\n")
	root.Flags().Bool("version", false, "print rootkeeper's version (module version and VCS revision) and exit")
	root.PersistentFlags().BoolVar(&a.forceLastTry, "force-last-pin-try", false, "send a PIN even when the device is at its final try")
	root.PersistentFlags().BoolVarP(&a.quiet, "quiet", "q", false, "print no progress messages")
	root.PersistentFlags().StringVar(&a.rootsFile, "attestation-roots", "", "trust these PEM root certificates for YubiKey attestations instead of Yubico's (test devices, an own CA); the choice is recorded")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		a.ui.quiet = a.quiet
		if err := a.parseBundleFlags(); err != nil { // bundle.go
			return err
		}
		if a.rootsFile != "" {
			var err error
			if a.roots, a.rootsName, err = yubikey.ReadAttestationRoots(a.rootsFile); err != nil {
				return usageError{fmt.Errorf("--attestation-roots: %w", err)}
			}
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.yubikeyCommand())
	root.AddCommand(a.rotateCommand(), a.delegateCommand(), a.revokeCommand()) // rotate.go, delegate.go, revoke.go
	root.AddCommand(a.keyCommand(), a.initCommand(), a.targetsCommand(), a.publishCommand(), a.statusCommand(), a.verifyCommand(),
		a.resignCommand(), a.calendarCommand(), a.repairCommand()) // repair.go
	root.AddCommand(a.checkImageCommand(), a.importCommand())           // images.go, notary.go
	root.AddCommand(a.manCommand())                                     // man.go
	root.AddCommand(a.transcriptCommand(), a.auditCommand())            // transcript.go, audit.go
	root.AddCommand(a.showCommand(), a.signCommand(), a.applyCommand()) // bundle.go
	a.addBundleFlags(root)                                              // bundle.go
	registerCompletions(root)                                           // complete.go
	return root
}

// session opens a ceremony session whose devices ask for PINs on the
// terminal and tell the officer when they wait.
func (a *app) session() *ceremony.Session {
	kr := hsm.NewKeyring(a.hsmOptions())
	s := &ceremony.Session{Keys: kr, UI: a.ui, Now: clock}
	if a.bundleOut != "" {
		s.Bundle = &ceremony.BundleOut{Path: a.bundleOut, Lifetime: a.bundleLifetime}
	}
	return s
}

// hsmOptions are the backends' options: PIN prompt, final-try choice,
// device messages, confirmations and attestation roots.
func (a *app) hsmOptions() hsm.Options {
	return hsm.Options{Prompt: readPIN, ForceLastPINTry: a.forceLastTry, Notify: a.ui.Notify, Progress: a.ui.Progress, Confirm: a.ui.ask,
		AttestationRoots: a.roots, AttestationRootsName: a.rootsName}
}

// printJSON prints v, an object, as JSON with "schema_version" as its
// first member (docs/json.md).
func (a *app) printJSON(v any) error {
	obj, err := jsonObject(v)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, obj, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = a.stdout.Write(out.Bytes())
	return err
}

// printJSONLine is printJSON on one line (a stream of objects, one a line:
// status --every --json).
func (a *app) printJSONLine(v any) error {
	obj, err := jsonObject(v)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(append(obj, '\n'))
	return err
}

// jsonObject encodes v, an object, with schema_version first.
func jsonObject(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(data) < 2 || data[0] != '{' {
		return nil, fmt.Errorf("internal error: the JSON output %T is not an object", v)
	}
	obj := fmt.Appendf(nil, `{"schema_version":%d`, ceremony.SchemaVersion)
	if data[1] != '}' {
		obj = append(obj, ',')
	}
	return append(obj, data[1:]...), nil
}

// parseAt reads --at, for commands that only read: RFC 3339, a date, or
// a duration from now ("+30d", "-2d"), at most 100 years away. An empty
// value is now.
func parseAt(s string) (time.Time, error) {
	now := clock().UTC().Truncate(time.Second) // JSON times are in whole seconds
	if s == "" {
		return now, nil
	}
	var t time.Time
	if s[0] == '+' || s[0] == '-' {
		d, err := ceremony.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, usageError{fmt.Errorf("--at %s: %v", s, err)}
		}
		if s[0] == '-' {
			d = -d
		}
		t = now.Add(d.D())
	} else {
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
			if p, err := time.Parse(layout, s); err == nil {
				t = p.UTC()
				break
			}
		}
		if t.IsZero() {
			return time.Time{}, usageError{fmt.Errorf("--at %q: write a time as 2027-01-31, 2027-01-31T12:00:00Z or +30d", s)}
		}
	}
	if d := t.Sub(now); d > ceremony.MaxDuration || d < -ceremony.MaxDuration {
		return time.Time{}, usageError{fmt.Errorf("--at %s: more than 100 years from now", s)}
	}
	return t, nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("expected %s, got %d %s", what, len(args), plural(len(args), "argument", "arguments"))}
		}
		return nil
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func requireFlag(name, value string) error {
	if value == "" {
		return usageError{fmt.Errorf("--%s is required", name)}
	}
	return nil
}
