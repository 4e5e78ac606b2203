package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/roles"
)

func (a *app) delegateCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "delegate",
		Short: "Delegate target paths to tagging keys, nested delegations and hashed bins",
		Long: `Delegate target paths from targets (or, nested, from a delegated role) to a
role whose tagging keys sign them; spread every target over hashed bins
(--bins N, TAP 15 / PEP 458); remove a delegation; list them.

See docs/runbook-tagging-keys.md.`,
	})
	cmd.AddCommand(a.delegateAddCommand(), a.delegateRemoveCommand(), a.delegateListCommand(), a.delegateBinCommand())
	return cmd
}

func (a *app) delegateAddCommand() *cobra.Command {
	var dir, expires string
	var opts ceremony.DelegateOptions
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "add --repo DIR --role NAME --key URI... [--threshold N] (--paths GLOB... [--terminating] | --bins N) [--from ROLE]",
		Short: "Delegate target paths (or hashed bins) to a new role with its own keys",
		Long: `Delegate the target paths matching --paths from --from (default targets) to a
new role NAME trusting the keys --key (--threshold of them must sign). The new
role is signed by its keys, the delegating role gets a new version signed by
its own keys, and snapshot and timestamp are published.

A nested delegation (--from a delegated role) must stay inside the paths its
delegator is trusted for. With --bins N (a power of two up to 16384), every
target of --from is instead assigned by the hash of its path to one of N bins
NAME-0…, all trusting --key: the layout of TAP 15 and PEP 458 for many
targets. Bins must be the only delegation of their delegator.`,
		Example: `  rootkeeper delegate add --repo repo --role releases --key 'pkcs11:token=tagging;object=releases' --paths 'releases/*' --terminating
  rootkeeper delegate add --repo repo --role team-a --from releases --key URI --paths 'releases/team-a-*'
  rootkeeper delegate add --repo repo --role bins --from packages --key URI --bins 1024`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if err := requireFlag("role", opts.Role); err != nil {
				return err
			}
			if len(opts.Keys) == 0 {
				return usageError{fmt.Errorf("--key is required: the URI of each key of the new role")}
			}
			if expires != "" {
				d, err := ceremony.ParseDuration(expires)
				if err != nil {
					return usageError{fmt.Errorf("--expires %s: %v", expires, err)}
				}
				opts.Expires = d
			}
			return a.change(yes, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.DelegateAdd(cmd.Context(), dir, opts)
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&opts.Role, "role", "", "the new delegated role (with --bins: the bins' name prefix)")
	cmd.Flags().StringVar(&opts.From, "from", ceremony.RoleTargets, "the delegating role: targets or a delegated role")
	cmd.Flags().StringArrayVar(&opts.Keys, "key", nil, "URI of a key of the new role, or file:PATH of a key export (signs through --out) (repeatable)")
	cmd.Flags().IntVar(&opts.Threshold, "threshold", 1, "how many of the keys must sign")
	cmd.Flags().StringArrayVar(&opts.Paths, "paths", nil, "target path pattern the role is trusted for, like 'releases/*' (repeatable)")
	cmd.Flags().BoolVar(&opts.Terminating, "terminating", false, "clients do not look further for the role's paths")
	cmd.Flags().IntVar(&opts.Bins, "bins", 0, "make N hashed bins instead (a power of two, 2 to 16384)")
	cmd.Flags().StringVar(&expires, "expires", "", "the role's lifetime, like 90d (default: the delegating role's)")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) delegateRemoveCommand() *cobra.Command {
	var dir, role string
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "remove --repo DIR --role NAME",
		Short: "Remove a delegation (and the roles only it delegated to)",
		Long: `Remove the delegation to NAME (a delegated role, or the name prefix of hashed
bins) and every role only it delegated to. The delegating role gets a new
version signed by its keys and snapshot and timestamp are published: at their
next update clients stop accepting the targets of the removed roles.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if err := requireFlag("role", role); err != nil {
				return err
			}
			return a.change(yes, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.DelegateRemove(cmd.Context(), dir, role)
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&role, "role", "", "the delegated role (or hashed bins' prefix) to remove")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) delegateListCommand() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --repo DIR [--json]",
		Short: "List every delegation, nested ones and hashed bins",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			list, err := ceremony.ListDelegations(dir)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(list)
			}
			if len(list.Delegations) == 0 {
				fmt.Fprintf(a.stdout, "%s: targets delegates to no role\n", dir)
				return nil
			}
			infos := make([]roles.DelegationInfo, len(list.Delegations))
			for i, d := range list.Delegations {
				infos[i] = d.DelegationInfo
			}
			a.printDelegations(infos)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) delegateBinCommand() *cobra.Command {
	var dir, prefix string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bin --repo DIR --role PREFIX TARGET-PATH",
		Short: "Print the hashed bin a target path belongs in",
		Long: `Print the name of the hashed bin (of the bins named PREFIX) that clients look
TARGET-PATH up in: the role to give targets add --role.`,
		Example: `  rootkeeper targets add --repo repo --role "$(rootkeeper delegate bin --repo repo --role bins pkgs/app-1.0.tgz)" --prefix pkgs app-1.0.tgz`,
		Args:    exactArgs(1, "one target path"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if err := requireFlag("role", prefix); err != nil {
				return err
			}
			bin, err := ceremony.BinFor(dir, prefix, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(map[string]string{"target": args[0], "bin": bin})
			}
			fmt.Fprintln(a.stdout, bin)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&prefix, "role", "", "the hashed bins' name prefix")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printDelegations prints the delegation tree as a table (status and
// delegate list).
func (a *app) printDelegations(ds []roles.DelegationInfo) {
	if len(ds) == 0 {
		return
	}
	fmt.Fprintln(a.stdout, "\nDELEGATIONS")
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tFROM\tKEYS\tTHRESHOLD\tPATHS\tTARGETS")
	for _, d := range ds {
		name := strings.Repeat("  ", d.Depth-1) + d.Name
		paths := strings.Join(d.Paths, " ")
		if d.Bins > 0 {
			paths = fmt.Sprintf("%d hashed bins %s … %s", d.Bins, d.FirstBin, d.LastBin)
		} else if d.Terminating {
			paths += " (terminating)"
		}
		ids := make([]string, len(d.KeyIDs))
		for i, id := range d.KeyIDs {
			ids[i] = id[:min(12, len(id))]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\n", name, d.Delegator, strings.Join(ids, " "), d.Threshold, paths, d.Targets)
	}
	tw.Flush()
}

// statusKey prints which roles a key may sign (status --key).
func (a *app) statusKey(dir, key string, asJSON bool) error {
	use, err := ceremony.KeyRoles(dir, key)
	if err != nil {
		return err
	}
	if asJSON {
		return a.printJSON(use)
	}
	fmt.Fprintf(a.stdout, "key %s", use.KeyID)
	if use.URI != "" {
		fmt.Fprintf(a.stdout, " (%s)", use.URI)
	}
	fmt.Fprintln(a.stdout)
	if use.Evidence != nil {
		fmt.Fprintf(a.stdout, "evidence: %s\n", use.Evidence.Summary())
	}
	if len(use.Roles) == 0 {
		fmt.Fprintln(a.stdout, "can sign: nothing (no role of the repository trusts it)")
		return nil
	}
	fmt.Fprintln(a.stdout, "can sign:")
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, t := range use.Roles {
		what := t.Role
		if len(t.Bins) > 0 {
			what = fmt.Sprintf("%s (%d hashed bins)", t.Role, len(t.Bins))
		}
		fmt.Fprintf(tw, "  %s\ttrusted by %s\t%d of %d keys\n", what, t.From, t.Threshold, len(t.KeyIDs))
	}
	return tw.Flush()
}
