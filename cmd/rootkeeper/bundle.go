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
FILE. A plan on another machine names the key by "file:FILE" instead of a URI;
the evidence is checked again when the plan is read and when the bundle is
applied. No private key material is exported.`,
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
