package main

import (
	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

func (a *app) rotateCommand() *cobra.Command {
	var dir string
	var opts ceremony.RotateOptions
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate --repo DIR --role root|targets|snapshot|timestamp [--add URI]... [--remove KEYID|URI]... [--threshold N]",
		Short: "Change a top-level role's keys or threshold in a new root version",
		Long: `Change the keys or the threshold of root, targets, snapshot or timestamp in a
new root version.

The new root must be signed by a threshold of the previous root's keys AND a
threshold of its own (TUF 5.3.4): every root key plugged in signs, old and new,
one device after another, and if a threshold is still short rootkeeper names
the key ids and URIs to plug in; nothing is written until both are met.
Replacing every root key at once works, and so does "same officers, new keys":
each officer's old key and new key both sign.

A rotated targets, snapshot or timestamp role is re-signed at once with its new
keys, and snapshot and timestamp are published with versions above every one
before: clients that keep their cached timestamp and snapshot accept them, and
clients that drop them because their keys rotated (TUF 5.3.11) recover.
rootkeeper.yaml follows: URIs of removed keys are dropped, new ones listed.

Generate new keys first with rootkeeper key generate. See docs/runbook-rotation.md.`,
		Example: `  rootkeeper rotate --repo repo --role timestamp --add 'pkcs11:token=online;object=timestamp-2026' --remove 3f2a9c01
  rootkeeper rotate --repo repo --role root --add URI-A2 --add URI-B2 --remove URI-A1 --remove URI-B1`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if err := requireFlag("role", opts.Role); err != nil {
				return err
			}
			return a.change(yes, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.Rotate(cmd.Context(), dir, opts)
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&opts.Role, "role", "", "the role to rotate: root, targets, snapshot or timestamp")
	cmd.Flags().StringArrayVar(&opts.Add, "add", nil, "URI of a new key for the role, or file:PATH of a key export (signs through --out) (repeatable)")
	cmd.Flags().StringArrayVar(&opts.Remove, "remove", nil, "key id (or unique prefix of 8+ hex digits) or URI of a key the role stops trusting (repeatable)")
	cmd.Flags().IntVar(&opts.Threshold, "threshold", 0, "the role's new threshold (default: keep)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
