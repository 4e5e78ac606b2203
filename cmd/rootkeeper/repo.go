package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/roles"
)

func (a *app) initCommand() *cobra.Command {
	var planPath, dir string
	var yes, asJSON bool
	cmd := &cobra.Command{
		Use:   "init --plan PLAN.yaml --repo DIR",
		Short: "Run the bootstrap ceremony: create a new TUF repository from a plan",
		Long: `Run the bootstrap ceremony described by PLAN.yaml (docs/plan-reference.md).

Every key is opened and its hardware evidence checked, a summary of what will
be signed is shown for confirmation, root is signed with every root key one
device after another, and the result is verified as a TUF client would before
anything is written. DIR must be new or empty.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("plan", planPath); err != nil {
				return err
			}
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			plan, err := ceremony.LoadPlan(planPath)
			if err != nil {
				return err
			}
			return a.change(yes, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.Init(cmd.Context(), plan, dir)
			})
		},
	}
	cmd.Flags().StringVar(&planPath, "plan", "", "the ceremony plan (YAML)")
	cmd.Flags().StringVar(&dir, "repo", "", "the new repository's directory")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (the summary is still printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) targetsCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "targets",
		Short: "Add or remove target files, signed by a tagging key",
	})
	var dir, role, prefix string
	var asJSON bool
	var digests digestFlags // images.go
	add := &cobra.Command{
		Use:   "add --repo DIR [--role NAME] [--prefix DIR] FILE... | --oci REF [--name NAME] | --name N --sha256 H --length L [--custom JSON]... | --from FILE",
		Short: "Add files or image tags as targets, sign the role and publish",
		Long: `Add files as targets of a role (targets, or a delegated role), sign the role with
its keys from rootkeeper.yaml, and publish new snapshot and timestamp versions.
Each target is named after the file's base name, under --prefix if given.

Targets without a file (Docker Content Trust's image tags): --oci REF resolves
the manifest REF names in its registry and signs REPOSITORY:TAG (or --name) with
the manifest's sha256 and length, its media type, registry and repository in
custom; --name/--sha256/--length (repeatable) and --from FILE (one JSON object a
line) sign given digests. Such targets are marked external: the repository keeps
no file for them, clients fetch the content from the registry.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if len(args) == 0 && !digests.any() {
				return usageError{fmt.Errorf("no files to add")}
			}
			inputs, err := ceremony.ReadTargetInputs(prefix, args)
			if errors.Is(err, fs.ErrNotExist) {
				wd, _ := os.Getwd()
				return hinted{err, "give the path of each file to add, relative to the current directory (" + wd + ") or absolute; " +
					"its name in the repository is --prefix and the file's base name, so the file need not be under targets/"}
			}
			if err != nil {
				return err
			}
			more, err := digests.inputs(cmd.Context())
			if err != nil {
				return err
			}
			inputs = append(inputs, more...)
			return a.change(false, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.AddTargets(cmd.Context(), dir, role, inputs)
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove --repo DIR [--role NAME] TARGET-PATH...",
		Short: "Remove targets, sign the role and publish",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if len(args) == 0 {
				return usageError{fmt.Errorf("no target paths to remove")}
			}
			return a.change(false, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.RemoveTargets(cmd.Context(), dir, role, args)
			})
		},
	}
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVar(&dir, "repo", "", "the repository's directory")
		c.Flags().StringVar(&role, "role", ceremony.RoleTargets, "the targets role to change")
		c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	}
	add.Flags().StringVar(&prefix, "prefix", "", "directory to put the targets under (e.g. releases/)")
	digests.register(add)
	cmd.AddCommand(add, remove, a.targetsListCommand()) // images.go
	return cmd
}

func (a *app) publishCommand() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "publish --repo DIR",
		Short: "Sign new snapshot and timestamp versions with the online keys",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			return a.change(false, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
				return s.Publish(cmd.Context(), dir)
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// change runs one repository change in a session of its own (closed
// after) and prints what it wrote.
func (a *app) change(yes, asJSON bool, fn func(*ceremony.Session) (*ceremony.Result, error)) error {
	s := a.session()
	s.Yes = yes
	defer s.Close()
	res, err := fn(s)
	if err != nil {
		return err
	}
	return a.printResult(res, asJSON)
}

func (a *app) printResult(res *ceremony.Result, asJSON bool) error {
	if asJSON {
		return a.printJSON(res)
	}
	if res.Bundle != nil {
		a.printBundleResult(res) // bundle.go
		return nil
	}
	fmt.Fprintf(a.stdout, "%s: wrote %d files to %s\n", res.Operation, len(res.Written), res.Dir)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, r := range res.Changed {
		fmt.Fprintf(tw, "  %s\tversion %d\texpires %s\n", r, res.Versions[r], res.Expires[r])
	}
	return tw.Flush()
}

func (a *app) statusCommand() *cobra.Command {
	var dir, at string
	var asJSON, bins bool
	var reposGlob, reposFrom, prom string // many repositories: resign.go
	var every string                      // status --every: every.go

	var key string // status --key: delegate.go
	cmd := &cobra.Command{
		Use:   "status (--repo DIR | --repos GLOB | --repos-from FILE) [--at TIME] [--prometheus FILE [--every DURATION]]",
		Short: "Show each role's version, expiry, signatures and health",
		Long: `Show each role's version, expiry, time left, threshold, keys and valid
signatures, and whether it is healthy, due for re-signing or invalid.

With --repos or --repos-from, one line per repository that needs attention;
--prometheus FILE writes node_exporter textfile metrics (docs/expiry.md).
With --every DURATION it keeps running, rewriting the metrics file at every
pass and printing one line a pass, until interrupted (SIGINT or SIGTERM): a
repository whose files are all as the last pass read them, and where nothing
expired since, is not verified again (docs/expiry.md).

Exit status: 0 healthy, 3 a role is inside its re-signing window,
4 expired or invalid (a client would refuse it), 1 the status could not be read
(with many repositories: 4, else 1, else 3, else 0).`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if every != "" {
				if key != "" {
					return usageError{fmt.Errorf("--every reports every repository: it cannot be used with --key")}
				}
				return a.statusEvery(cmd.Context(), &repoFlags{dir: dir, glob: reposGlob, from: reposFrom}, every, prom, at, asJSON)
			}
			if reposGlob != "" || reposFrom != "" || prom != "" {
				t, err := parseAt(at)
				if err != nil {
					return err
				}
				return a.statusMany(cmd.Context(), &repoFlags{dir: dir, glob: reposGlob, from: reposFrom}, t, prom, asJSON, bins)
			}
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			if key != "" {
				return a.statusKey(dir, key, asJSON)
			}
			t, err := parseAt(at)
			if err != nil {
				return err
			}
			st, err := ceremony.Status(dir, t)
			if err != nil {
				return err
			}
			if probs, err := a.recheckEvidence(dir); err != nil {
				return err
			} else if len(probs) > 0 {
				st.Problems, st.Health = append(st.Problems, probs...), ceremony.Invalid
			}
			if asJSON {
				if err := a.printJSON(st); err != nil {
					return err
				}
			} else {
				a.printStatus(st, bins)
			}
			switch st.Health {
			case ceremony.Due:
				return exitStatus{exitDue}
			case ceremony.Invalid:
				return exitStatus{exitInvalid}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&at, "at", "", "report as of this time (2027-01-31, RFC 3339, or +30d)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&reposGlob, "repos", "", "many repositories: a glob of their directories, quoted ('/srv/tuf/*')")
	cmd.Flags().StringVar(&reposFrom, "repos-from", "", "many repositories: a file listing their directories, one a line (- for stdin)")
	cmd.Flags().StringVar(&prom, "prometheus", "", "also write node_exporter textfile metrics to FILE, atomically")
	cmd.Flags().StringVar(&every, "every", "", "keep running: a pass every DURATION (e.g. 1m), each rewriting the --prometheus file; unchanged repositories are not verified again")
	cmd.Flags().StringVar(&key, "key", "", "show only which roles this key (key id or URI) can sign")
	cmd.Flags().BoolVar(&bins, "bins", false, "list every hashed bin on a line of its own (by default each set of bins is one line)")
	return cmd
}

// printStatus prints a repository's status: one line per role, each set
// of hashed bins on one line (every bin with bins).
func (a *app) printStatus(st *ceremony.StatusReport, bins bool) {
	fmt.Fprintf(a.stdout, "repository %s at %s: %s\n", st.Repository, st.At.Format(time.RFC3339), strings.ToUpper(st.Health.String()))
	rows := st.FoldRoles()
	if bins {
		rows = ceremony.FoldBins(st.Roles, nil, ceremony.RoleStatus.Member) // no index: nothing folds
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tLEFT\tVALID/NEEDED\tSTATE")
	var differ []string
	for _, row := range rows {
		r := row.Item
		name, version, expires, valid, state := r.Role, fmt.Sprint(r.Version), r.Expires, r.ValidSignatures, r.Health.String()
		if f := row.Set; f != nil {
			name, version, expires, valid, state = setLabel(f), versionText(f), f.Expires, f.Valid, stateText(f)
			if l := differLine(f); l != "" {
				differ = append(differ, l)
			}
		}
		if !isTopLevel(r.Role) && r.Delegator != "" {
			name = r.Delegator + " → " + name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", name, version, expires.Format("2006-01-02 15:04"), leftOf(expires, st.At), valid, r.Threshold, state)
	}
	tw.Flush()
	for _, l := range differ {
		fmt.Fprintln(a.stdout, l)
	}
	fmt.Fprintln(a.stdout, "\nKEYS")
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, row := range rows {
		r, role := row.Item, row.Item.Role
		if row.Set != nil {
			role = setLabel(row.Set)
		}
		for i, id := range r.KeyIDs {
			ev := "no evidence recorded"
			if e := st.Evidence[id]; e != nil {
				ev = e.Summary()
			}
			if i > 0 {
				role = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", role, id[:min(12, len(id))], ev)
		}
	}
	tw.Flush()
	a.printDelegations(st.Delegations)
	for _, p := range ceremony.FoldMessages(st.Problems, ceremony.BinsOfStatus(st), problemRole, problemLine, problemRule) {
		fmt.Fprintf(a.stdout, "problem: %s%s\n", p.Text, binsNote(p))
		if p.Item.Hint != "" {
			fmt.Fprintf(a.stdout, "  hint: %s\n", p.Item.Hint)
		}
	}
}

func problemRole(p roles.Problem) string { return p.Role }
func problemLine(p roles.Problem) string { return problemText(p.Role, p.Detail) }
func problemRule(p roles.Problem) string { return p.Rule }

func (a *app) verifyCommand() *cobra.Command {
	var dir, at, trusted string
	var asJSON, bins bool
	cmd := &cobra.Command{
		Use:   "verify --repo DIR [--trusted-root FILE] [--at TIME] [--bins]",
		Short: "Verify a repository exactly as a TUF client would",
		Long: `Verify a TUF 1.0 repository as a client would: replay every root version from
the trusted root (default metadata/1.root.json) to the newest, then timestamp,
snapshot, targets and every delegation, and check every target file under
targets/ against its length and hashes. Works on any repository laid out as
metadata/ and targets/, also one rootkeeper did not write.

Exit status: 0 a client would accept it, 4 a client would refuse it,
1 the repository could not be read.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			t, err := parseAt(at)
			if err != nil {
				return err
			}
			var root []byte
			if trusted != "" {
				if root, err = os.ReadFile(trusted); err != nil {
					return fmt.Errorf("--trusted-root: %w", err)
				}
			}
			rep, err := ceremony.Verify(dir, root, t)
			if err != nil {
				return err
			}
			if probs, err := a.recheckEvidence(dir); err != nil {
				return err
			} else if len(probs) > 0 {
				rep.Problems, rep.OK = append(rep.Problems, probs...), false
			}
			if asJSON {
				if rep.Problems == nil {
					rep.Problems = []roles.Problem{} // always a list
				}
				if err := a.printJSON(verifyJSON{rep, ceremony.FoldSets(rep.Roles, ceremony.BinsOfReport(rep), reportMember)}); err != nil {
					return err
				}
			} else {
				a.printVerify(rep, bins)
			}
			if !rep.OK {
				for _, p := range ceremony.FoldMessages(rep.Problems, ceremony.BinsOfReport(rep), problemRole, problemLine, problemRule) {
					a.ui.printf("error: %s%s", p.Text, binsNote(p))
					if p.Item.Hint != "" {
						a.ui.printf("hint: %s", p.Item.Hint)
					}
				}
				return exitStatus{exitInvalid}
			}
			if !asJSON {
				fmt.Fprintln(a.stdout, "OK: a TUF client would accept this repository")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&trusted, "trusted-root", "", "root metadata the client starts from (default metadata/1.root.json)")
	cmd.Flags().StringVar(&at, "at", "", "verify as of this time (2027-01-31, RFC 3339, or +30d)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&bins, "bins", false, "list every hashed bin on a line of its own (by default each set of bins is one line)")
	return cmd
}

// verifyJSON is verify's JSON: the report (every role, every bin) and
// each set of hashed bins folded.
type verifyJSON struct {
	*roles.Report
	BinSets []*ceremony.BinFold `json:"bin_sets,omitempty"`
}

// reportMember is a verified role as folding compares it.
func reportMember(r roles.RoleReport) ceremony.BinMember {
	m := ceremony.BinMember{Role: r.Role, Version: r.Version, Expires: r.Expires, Valid: r.ValidSignatures, Threshold: r.Threshold, Detail: r.Err}
	if r.Err != "" {
		m.Health = ceremony.Invalid
	}
	return m
}

// printVerify prints one line per role, each set of hashed bins on one
// line (every bin with bins), and the bins that differ from the rest.
func (a *app) printVerify(rep *roles.Report, bins bool) {
	idx := ceremony.BinsOfReport(rep)
	if bins {
		idx = nil
	}
	var differ []string
	for _, row := range ceremony.FoldBins(rep.Roles, idx, reportMember) {
		r := row.Item
		role, version, valid, expires, state := r.Role, fmt.Sprint(r.Version), r.ValidSignatures, r.Expires, "ok"
		if r.Err != "" {
			state = r.Err
		}
		if f := row.Set; f != nil {
			role, version, valid, expires = f.Name, versionText(f), f.Valid, f.Expires
			state = fmt.Sprintf("ok: %d bins %s … %s", f.Bins, f.First, f.Last)
			if f.Invalid > 0 {
				state = fmt.Sprintf("%d of %d bins: %s", f.Invalid, f.Bins, r.Err)
			}
			if l := differLine(f); l != "" {
				differ = append(differ, l)
			}
		}
		fmt.Fprintf(a.stdout, "%-12s v%-4s %d/%d signatures  expires %s  %s\n", role, version, valid, r.Threshold, expires.UTC().Format(time.RFC3339), state)
	}
	for _, l := range differ {
		fmt.Fprintln(a.stdout, l)
	}
}

func isTopLevel(role string) bool {
	for _, r := range ceremony.TopLevelRoles {
		if r == role {
			return true
		}
	}
	return false
}

// problemText prefixes a problem with its role unless it already names it.
func problemText(role, detail string) string {
	if role == "" || strings.HasPrefix(detail, role+":") || strings.HasPrefix(detail, role+" ") {
		return detail
	}
	return role + ": " + detail
}
