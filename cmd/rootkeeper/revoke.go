package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
)

func (a *app) revokeCommand() *cobra.Command {
	var dir string
	var adds []string
	var opts ceremony.RevokeOptions
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "revoke --repo DIR --key KEYID|URI --reason TEXT [--add ROLE=URI]... [--drop ROLE]... [--resign-targets] [--keep-delegation ROLE]... [--keep-unvouched]",
		Short: "Emergency: stop every client trusting a compromised key at its next update",
		Long: `Revoke a compromised key: find every role and delegation that trusts it, remove
it, re-sign each changed role with the keys that may sign it, and publish
snapshot and timestamp, so that every client's next update stops trusting
anything signed only by that key. The offline root keys are needed only if root
itself trusted the key (it was a root, targets, snapshot or timestamp key).

A role whose published metadata no other key signed (the revoked key's
signature alone made it valid) gets a new version without what only that key
vouched for: its targets, and its delegations together with every role below
them. The summary names each one (role, paths, keys) before anything is
signed. Keep them, re-signed by the role's remaining keys, only after checking
them: --resign-targets keeps the targets, --keep-delegation ROLE a delegation,
--keep-unvouched everything. If a role would be left
with fewer keys than its threshold, rootkeeper says which, and you add a
replacement in the same run with --add ROLE=URI (or, for a delegated role,
stop trusting it altogether with --drop ROLE). The reason goes into the
transcript.

See docs/runbook-revocation.md.`,
		Example: `  rootkeeper revoke --repo repo --key 3f2a9c01 --reason "tagging laptop stolen, INC-1234"
  rootkeeper revoke --repo repo --key 3f2a9c01 --reason "..." --add releases='pkcs11:token=tagging-2;object=releases'`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if err := requireFlag("key", opts.Key); err != nil {
				return err
			}
			if err := requireFlag("reason", opts.Reason); err != nil {
				return err
			}
			opts.Add = map[string][]string{}
			for _, s := range adds {
				role, uri, ok := strings.Cut(s, "=")
				if !ok || role == "" || strings.Contains(role, ":") || uri == "" {
					return usageError{fmt.Errorf("--add %q: write ROLE=URI, like --add releases='pkcs11:token=NEW;object=releases'", hsm.Redact(s))}
				}
				opts.Add[role] = append(opts.Add[role], uri)
			}
			s := a.session()
			s.Yes = yes
			defer s.Close()
			res, err := s.Revoke(cmd.Context(), dir, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(res)
			}
			rev, _ := res.Details["revocation"].(*ceremony.Revocation)
			if rev == nil {
				return a.printResult(res, false)
			}
			fmt.Fprintf(a.stdout, "revoked key %s", rev.KeyID)
			if rev.URI != "" {
				fmt.Fprintf(a.stdout, " (%s)", rev.URI)
			}
			fmt.Fprintf(a.stdout, "\nreason: %s\n", rev.Reason)
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			for _, r := range rev.Roles {
				fmt.Fprintf(tw, "  %s\ttrusted by %s\t%s\t%s\n", r.Role, r.Delegator, r.Action, r.Metadata)
			}
			tw.Flush()
			if rev.RootVersion > 0 {
				fmt.Fprintf(a.stdout, "new root: v%d\n", rev.RootVersion)
			}
			for _, l := range rev.UnvouchedLines() {
				fmt.Fprintf(a.stdout, "only the revoked key vouched for: %s\n", l)
			}
			fmt.Fprintf(a.stdout, "targets that lost their signature: %d (dropped %d, re-signed %d)\n",
				rev.TargetsDropped+rev.TargetsResigned, rev.TargetsDropped, rev.TargetsResigned)
			if rev.DelegationsDropped+rev.DelegationsKept > 0 {
				fmt.Fprintf(a.stdout, "delegations only the revoked key vouched for: %d (removed %d, kept %d)\n",
					rev.DelegationsDropped+rev.DelegationsKept, rev.DelegationsDropped, rev.DelegationsKept)
			}
			return a.printResult(res, false)
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&opts.Key, "key", "", "the compromised key: key id (or unique prefix of 8+ hex digits) or URI")
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, for the transcript (required)")
	cmd.Flags().StringArrayVar(&adds, "add", nil, "ROLE=URI or ROLE=file:PATH (a key export; signs through --out): a replacement key for a role left below its threshold (repeatable)")
	cmd.Flags().StringArrayVar(&opts.Drop, "drop", nil, "remove this delegated role instead of re-keying it (repeatable)")
	cmd.Flags().BoolVar(&opts.ResignTargets, "resign-targets", false, "re-sign the targets only the revoked key had signed with the role's remaining keys, instead of dropping them")
	cmd.Flags().StringArrayVar(&opts.KeepDelegations, "keep-delegation", nil, "keep this delegation although only the revoked key vouched for it, re-signed by the delegating role's remaining keys (repeatable)")
	cmd.Flags().BoolVar(&opts.KeepUnvouched, "keep-unvouched", false, "keep every target and delegation only the revoked key vouched for (check the summary first)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
