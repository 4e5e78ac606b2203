package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

// show, sign and key export: the officers' side of a remote ceremony
// (docs/runbook-remote-ceremony.md, docs/bundle-format.md).

func (a *app) showCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show BUNDLE...",
		Short: "Show what a signing bundle changes, who has signed it and who is still needed",
		Long: `Show a signing bundle: the change recomputed from the payloads it carries
against the previous metadata it carries (keys added and removed with their
hardware evidence, thresholds, expiries, delegations and their paths, targets
added and removed with their hashes), then, for every threshold, who has signed
and who is still needed. Several copies of one bundle are merged.

Needs nothing but the bundle: no repository, no device, no network.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("expected one or more bundle files")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ceremony.ReadBundles(args)
			if err != nil {
				return err
			}
			now := clock().UTC()
			s := c.Summarize(now)
			if asJSON {
				return a.printJSON(s)
			}
			fmt.Fprintln(a.stdout, s.Text(now))
			for _, m := range s.Missing() {
				fmt.Fprintln(a.stdout, "  still needed: "+m)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) signCommand() *cobra.Command {
	var uris []string
	var out string
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "sign BUNDLE --key URI [--key URI]... [--out NEW]",
		Short: "Sign a signing bundle with keys on this machine (offline; no repository needed)",
		Long: `Sign a signing bundle with the keys named by --key, on the officer's machine:
rootkeeper checks the bundle by itself (not expired, the previous metadata it
carries, every payload as recorded, every signature already in it), shows the
change recomputed from the payloads and what each key will sign, asks (or
--yes), signs each role whose threshold wants the key, verifies each signature
at once and adds it, with a log entry (key id, device serial, time), to the
bundle: BUNDLE is rewritten atomically, or --out NEW is written.

Refused: an expired bundle, a key that no role in the bundle wants (the
error names the keys it wants), a bundle changed after it was made.`,
		Args: exactArgs(1, "one bundle file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(uris) == 0 {
				return usageError{fmt.Errorf("--key is required: the key URI of the device that signs")}
			}
			s := a.session()
			s.Yes = yes
			defer s.Close()
			res, err := s.SignBundle(cmd.Context(), args[0], out, uris)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(res)
			}
			for _, sig := range res.Signed {
				fmt.Fprintf(a.stdout, "signed %s with %s", strings.Join(sig.Roles, ", "), sig.KeyID[:12])
				if sig.Device != "" {
					fmt.Fprintf(a.stdout, " (%s)", sig.Device)
				}
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", res.File)
			if res.Complete {
				fmt.Fprintln(a.stdout, "every threshold is met: send the bundle back to the custodian to apply")
			}
			for _, m := range res.Missing {
				fmt.Fprintln(a.stdout, "still needed: "+m)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&uris, "key", nil, "the URI of a key that signs (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "write the signed bundle here instead of rewriting BUNDLE")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) keyExportCommand() *cobra.Command {
	var out string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "export URI --out FILE",
		Short: "Write a key's public key, hardware evidence and device to a file, for a plan elsewhere",
		Long: `Write the public key of the key named by URI, its hardware evidence (PKCS#11
attributes, or the YubiKey attestation chain) and the device that holds it to
FILE, for the custodian of a remote ceremony (docs/bundle-format.md#key-export-files):
the key id is recomputed from the public key and a YubiKey attestation chain is
verified again when the file is read. No private key material is exported.`,
		Args: exactArgs(1, "one key URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("out", out); err != nil {
				return err
			}
			s := a.session()
			defer s.Close()
			e, err := s.ExportKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := e.Write(out); err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(e)
			}
			fmt.Fprintf(a.stdout, "exported key %s (%s, %s) to %s\n", e.KeyID, e.Algorithm, e.URI, out)
			if e.Device != "" {
				fmt.Fprintf(a.stdout, "device:   %s\n", e.Device)
			}
			fmt.Fprintf(a.stdout, "evidence: %s\n", e.Evidence.Summary())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the file to write")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// bundleCommands are the change commands that take --out: they plan the
// change, sign with the keys plugged in, and write a signing bundle
// instead of committing.
var bundleCommands = map[string]bool{
	"rootkeeper init": true, "rootkeeper targets add": true, "rootkeeper targets remove": true, "rootkeeper publish": true,
	"rootkeeper delegate add": true, "rootkeeper delegate remove": true, "rootkeeper rotate": true, "rootkeeper revoke": true,
	"rootkeeper resign": true,
}

func (a *app) addBundleFlags(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if !bundleCommands[c.CommandPath()] {
			return
		}
		c.Flags().StringVar(&a.bundleOut, "out", "", "write a signing bundle of the change to this file instead of the repository: keys plugged in here sign, the others sign with rootkeeper sign, rootkeeper apply writes it")
		c.Flags().StringVar(&a.bundleExpires, "bundle-expires", "", "how long the bundle collects signatures (default 7d; never beyond the earliest expiry of the metadata it carries)")
	}
	walk(root)
}

func (a *app) parseBundleFlags() error {
	if a.bundleExpires == "" {
		return nil
	}
	if a.bundleOut == "" {
		return usageError{fmt.Errorf("--bundle-expires is for --out")}
	}
	d, err := ceremony.ParseDuration(a.bundleExpires)
	if err != nil || d.D() <= 0 {
		return usageError{fmt.Errorf("--bundle-expires %q: give a duration such as 7d or 36h", a.bundleExpires)}
	}
	a.bundleLifetime = d.D()
	return nil
}

func (a *app) printBundleResult(res *ceremony.Result) {
	b := res.Bundle
	fmt.Fprintf(a.stdout, "%s: wrote signing bundle %s (id %s, expires %s)\n", res.Operation, b.File, b.ID[:12], b.Expires)
	fmt.Fprintf(a.stdout, "  roles: %s\n", strings.Join(b.Roles, ", "))
	for _, id := range b.SignedBy {
		fmt.Fprintf(a.stdout, "  signed here by %s\n", id[:12])
	}
	for _, m := range b.Missing {
		fmt.Fprintln(a.stdout, "  still needed: "+m)
	}
	if b.Complete {
		fmt.Fprintf(a.stdout, "  every threshold is met: rootkeeper apply --repo %s %s\n", res.Dir, b.File)
	}
}

func (a *app) applyCommand() *cobra.Command {
	var dir string
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "apply --repo DIR BUNDLE...",
		Short: "Write a signed bundle's change into the repository: merge the copies, check, preflight, commit",
		Long: `Apply a signing bundle made with --out: the signatures of every copy given are
merged and each is checked, the same key counting once. The bundle must be this
repository's (its first root), recorded in its transcript when it was made
(payload by payload), for the state the repository is still in, not expired,
with every threshold met. Otherwise nothing is written and the error says whose
signatures are missing (key id, device). Then the summary is shown and
confirmed (--yes), the local online keys make snapshot and timestamp, the
preflight runs and the change is written through the journal; the transcript
entry carries the bundle's log of signatures.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("expected one or more bundle files")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			return a.change(yes, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.ApplyBundles(cmd.Context(), dir, args)
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
