package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/fleet"
)

// repoFlags choose one repository (--repo) or many (--repos, --repos-from).
type repoFlags struct {
	dir, glob, from string
}

func (f *repoFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "repo", "", "the repository's directory")
	cmd.Flags().StringVar(&f.glob, "repos", "", "many repositories: a glob of their directories, quoted ('/srv/tuf/*')")
	cmd.Flags().StringVar(&f.from, "repos-from", "", "many repositories: a file listing their directories, one a line (- for stdin)")
}

func (f *repoFlags) many() bool { return f.glob != "" || f.from != "" }

// list returns the repositories chosen.
func (f *repoFlags) list() ([]string, error) {
	n := 0
	for _, v := range []string{f.dir, f.glob, f.from} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, usageError{fmt.Errorf("--repo, --repos or --repos-from is required")}
	case n > 1:
		return nil, usageError{fmt.Errorf("give only one of --repo, --repos and --repos-from")}
	case f.dir != "":
		return []string{f.dir}, nil
	case f.glob != "":
		return fleet.ExpandRepos(f.glob)
	}
	if f.from == "-" {
		return fleet.ReadRepoList(os.Stdin, "stdin")
	}
	r, err := os.Open(f.from)
	if err != nil {
		return nil, &ceremony.IOError{Op: "read", Path: f.from, Err: err}
	}
	defer r.Close()
	return fleet.ReadRepoList(r, f.from)
}

// worse returns the exit status that matters more to a cron job or a
// systemd unit: invalid (4), then error (1), then due (3), then 0.
func worse(a, b int) int {
	rank := map[int]int{exitOK: 0, exitDue: 1, exitError: 2, exitInvalid: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// resignExit is the exit status for one repository's result.
func resignExit(r *ceremony.ResignResult) int {
	switch r.Outcome {
	case ceremony.OutcomeFailed, ceremony.OutcomeNotStarted:
		return exitError
	case ceremony.OutcomeWaiting, ceremony.OutcomePartial:
		for _, w := range r.Waiting {
			for _, d := range r.Due {
				if d.Role == w.Role && d.Reason == "expired" {
					return exitInvalid
				}
			}
		}
		return exitDue
	}
	return exitOK
}

func (a *app) resignCommand() *cobra.Command {
	var repos repoFlags
	var at, within string
	var roleNames []string
	var dryRun, asJSON, bins bool
	var jobs int
	cmd := &cobra.Command{
		Use:   "resign (--repo DIR | --repos GLOB | --repos-from FILE) [--role ROLE]... [--within DURATION] [--dry-run [--at TIME]]",
		Short: "Re-sign every role inside its re-signing window (scheduled job and officers)",
		Long: `Re-sign every role inside its re-signing window (rootkeeper.yaml: each role's
expires and window; docs/expiry.md): each gets a new version that expires after
its lifetime, signed by its keys from rootkeeper.yaml; snapshot and timestamp
follow a new targets version. --role re-signs a role whatever its window;
--within widens every window to at least DURATION. --dry-run says what would be
re-signed and opens nothing; with --at TIME it says what will be due then (a
rehearsal). A run that writes always uses the real clock: --at without --dry-run
is refused.

A new root is signed by a threshold of the root keys — an expired root too: a
client accepts the new root only if a threshold of the old root's keys signed
it — and goes through the same preflight as any root change.

Nothing is asked when the keys allow it (PKCS#11 URIs with a pin-source). A role
whose keys cannot be used (no PIN source and no terminal, token not present)
waits: rootkeeper says which keys it waits for, re-signs the rest, and exits 3.

Many repositories (--repos, --repos-from) share one session: each token is
logged in to once. Each repository is written all or nothing, through a journal
that the next run completes after a crash; one failing repository does not stop
the others. When a device fails while signing, the run stops: repositories done
are complete, the rest untouched; run the same command again to continue.

Exit status: 0 done, 3 a due role waits for keys, 4 an expired role waits
(clients refuse the repository), 1 a repository failed or was not reached.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dirs, err := repos.list()
			if err != nil {
				return err
			}
			opts := ceremony.ResignOptions{Roles: roleNames, DryRun: dryRun}
			if at != "" {
				if !dryRun {
					return usageError{ceremony.ErrAtWrites}
				}
				if opts.At, err = parseAt(at); err != nil {
					return err
				}
			}
			if within != "" {
				d, err := ceremony.ParseDuration(within)
				if err != nil {
					return usageError{fmt.Errorf("--within %s: %v", within, err)}
				}
				opts.Within = d.D()
			}
			if a.bundleOut != "" { // bundle.go: a signing bundle of what is due
				if repos.many() {
					return usageError{fmt.Errorf("--out is for one repository (--repo)")}
				}
				return a.change(false, asJSON, func(s *ceremony.Session) (*ceremony.Result, error) {
					return s.ResignBundle(cmd.Context(), dirs[0], opts)
				})
			}
			s := a.session()
			defer s.Close()
			if !repos.many() {
				res, err := s.Resign(cmd.Context(), dirs[0], opts)
				if err != nil {
					return err
				}
				if asJSON {
					if err := a.printJSON(res); err != nil {
						return err
					}
				} else {
					a.printResign(res, bins)
				}
				if code := resignExit(res); code != exitOK {
					return exitStatus{code}
				}
				return nil
			}
			return a.resignMany(cmd.Context(), s, dirs, fleet.BatchOptions{ResignOptions: opts, Workers: jobs}, asJSON)
		},
	}
	repos.add(cmd)
	cmd.Flags().StringArrayVar(&roleNames, "role", nil, "re-sign this role whatever its window (repeatable)")
	cmd.Flags().StringVar(&within, "within", "", "re-sign every role that expires within this (e.g. 30d)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be re-signed and by which keys; open no device, write nothing")
	cmd.Flags().StringVar(&at, "at", "", "with --dry-run only: plan as of this time (2027-01-31, RFC 3339, or +30d); a run that writes uses the real clock")
	cmd.Flags().IntVar(&jobs, "jobs", 0, "repositories worked on at once with --repos (default 4)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&bins, "bins", false, "list every hashed bin on a line of its own (by default each set of bins is one line)")
	return cmd
}

func (a *app) printResign(r *ceremony.ResignResult, bins bool) {
	w := a.stdout
	switch r.Outcome {
	case ceremony.OutcomeNothingDue:
		fmt.Fprintf(w, "%s: nothing is due at %s\n", r.Repository, r.At.Format(time.RFC3339))
		return
	case ceremony.OutcomeDryRun:
		fmt.Fprintf(w, "%s: would re-sign at %s (dry run, nothing written):\n", r.Repository, r.At.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "%s: %s\n", r.Repository, r.Outcome)
	}
	idx := ceremony.BinsOfResign(r)
	if bins {
		idx = nil // every bin on a line of its own
	}
	var differ []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if r.Outcome == ceremony.OutcomeDryRun {
		for _, row := range ceremony.FoldBins(r.Due, idx, dueMember) {
			d := row.Item
			role, version, reason, left := d.Role, "v"+fmt.Sprint(d.Version), d.Reason, d.Left.Remaining()
			if f := row.Set; f != nil {
				role, version, reason, left = setLabel(f), "v"+versionText(f), f.Typical.Detail, leftOf(f.Expires, r.At)
				if l := differLine(f); l != "" {
					differ = append(differ, "  "+l)
				}
			}
			if !strings.HasPrefix(left, "expired") {
				left += " left"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t(%s, window %s)\tneeds %d of %s\n", role, version, reason, left, d.Window, d.Threshold, strings.Join(d.Keys, ", "))
		}
	}
	for _, row := range ceremony.FoldBins(resignedRoles(r), idx, resignedMember) {
		if f := row.Set; f != nil {
			fmt.Fprintf(tw, "  %s\tversion %s\texpires %s\n", setLabel(f), versionText(f), f.Expires.Format(time.RFC3339))
			continue
		}
		fmt.Fprintf(tw, "  %s\tversion %d\texpires %s\n", row.Item.Role, row.Item.Version, row.Item.Expires.Format(time.RFC3339))
	}
	tw.Flush()
	for _, l := range differ {
		fmt.Fprintln(w, l)
	}
	for _, n := range ceremony.FoldMessages(r.Notes, idx, noteRole, func(n string) string { return n }, nil) {
		fmt.Fprintf(w, "note: %s%s\n", n.Text, binsNote(n))
	}
	for _, wt := range ceremony.FoldMessages(r.Waiting, idx, func(w ceremony.Wait) string { return w.Role }, func(w ceremony.Wait) string { return w.Detail }, nil) {
		fmt.Fprintf(w, "waiting: %s%s\n", wt.Text, binsNote(wt))
		for _, m := range wt.Item.Missing {
			fmt.Fprintf(w, "  %s: %s\n", m.Key, m.Reason)
			if m.Hint != "" {
				fmt.Fprintf(w, "    hint: %s\n", m.Hint)
			}
		}
	}
}

// dueMember is a role due for re-signing as folding compares it.
func dueMember(d ceremony.RoleDue) ceremony.BinMember {
	m := ceremony.BinMember{Role: d.Role, Version: d.Version, Expires: d.Expires, Health: ceremony.Due, Threshold: d.Threshold, Detail: d.Reason}
	if d.Reason == "expired" {
		m.Health = ceremony.Invalid
	}
	return m
}

// resignedRoles lists the roles a run re-signed, with their new version
// and expiry.
func resignedRoles(r *ceremony.ResignResult) []ceremony.BinMember {
	out := make([]ceremony.BinMember, len(r.Resigned))
	for i, role := range r.Resigned {
		exp, _ := time.Parse(time.RFC3339, r.Expires[role])
		out[i] = ceremony.BinMember{Role: role, Version: r.Versions[role], Expires: exp}
	}
	return out
}

func resignedMember(m ceremony.BinMember) ceremony.BinMember { return m }

// noteRole is the role a note is about: the text before its first colon
// or space.
func noteRole(n string) string {
	if i := strings.IndexAny(n, ": "); i > 0 {
		return n[:i]
	}
	return n
}

// progressBar shows a batch's progress: a bar redrawn in place on a
// terminal, plain lines otherwise (logs, journald).
type progressBar struct {
	w     io.Writer
	tty   bool
	quiet bool
	start time.Time
}

func (a *app) newProgress() *progressBar {
	p := &progressBar{w: a.ui.stderr, quiet: a.quiet, start: time.Now()}
	if f, ok := a.ui.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progressBar) update(done, total int, line string) {
	if p.quiet {
		return
	}
	if !p.tty {
		fmt.Fprintf(p.w, "rootkeeper: [%d/%d] %s\n", done, total, line)
		return
	}
	const width = 30
	filled := width * done / max(total, 1)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	if r := []rune(line); len(r) > 60 {
		line = string(r[:59]) + "…"
	}
	fmt.Fprintf(p.w, "\r\033[K[%s] %d/%d %s", bar, done, total, line)
	if done == total {
		fmt.Fprintln(p.w)
	}
}

func resultLine(r *ceremony.ResignResult) string {
	s := r.Repository + ": " + string(r.Outcome)
	idx := ceremony.BinsOfResign(r)
	if len(r.Resigned) > 0 {
		s += " " + strings.Join(foldNames(r.Resigned, idx), ", ")
	}
	if r.Outcome == ceremony.OutcomeDryRun {
		var roles []string
		for _, d := range r.Due {
			roles = append(roles, d.Role)
		}
		s += " " + strings.Join(foldNames(roles, idx), ", ")
	}
	var waiting []string
	for _, w := range r.Waiting {
		waiting = append(waiting, w.Role)
	}
	for _, w := range foldNames(waiting, idx) {
		s += "; " + w + " waits"
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}

func (a *app) resignMany(ctx context.Context, s *ceremony.Session, dirs []string, opts fleet.BatchOptions, asJSON bool) error {
	bar := a.newProgress()
	var all []*ceremony.ResignResult
	code := exitOK
	opts.Progress = func(done, total int, r *ceremony.ResignResult) {
		bar.update(done, total, resultLine(r))
		code = worse(code, resignExit(r))
		if asJSON {
			all = append(all, r)
		}
	}
	rep := fleet.ResignBatch(ctx, s, dirs, opts)
	if asJSON {
		sort.Slice(all, func(i, j int) bool { return all[i].Repository < all[j].Repository })
		if err := a.printJSON(struct {
			Summary      *fleet.BatchReport       `json:"summary"`
			Repositories []*ceremony.ResignResult `json:"repositories"`
		}{rep, all}); err != nil {
			return err
		}
	} else {
		a.printBatch(rep)
	}
	for _, r := range rep.Attention {
		if r.Outcome == ceremony.OutcomeFailed {
			msg := r.Error
			if !strings.Contains(msg, r.Repository) {
				msg = r.Repository + ": " + msg
			}
			a.ui.printf("error: %s", msg)
			if r.Hint != "" {
				a.ui.printf("hint: %s", r.Hint)
			}
		}
	}
	if rep.Stopped != "" {
		a.ui.printf("error: the run stopped after %d of %d repositories: %s", rep.Total-rep.Counts[ceremony.OutcomeNotStarted], rep.Total, rep.Stopped)
		a.ui.printf("hint: the repositories re-signed are complete and the others untouched; fix the cause and run the same command again to continue")
	}
	if code != exitOK {
		return exitStatus{code}
	}
	return nil
}

func (a *app) printBatch(rep *fleet.BatchReport) {
	w := a.stdout
	var parts []string
	for _, o := range []ceremony.Outcome{ceremony.OutcomeResigned, ceremony.OutcomePartial, ceremony.OutcomeNothingDue, ceremony.OutcomeDryRun,
		ceremony.OutcomeWaiting, ceremony.OutcomeFailed, ceremony.OutcomeNotStarted} {
		if n := rep.Counts[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	fmt.Fprintf(w, "resign: %d repositories in %s: %s\n", rep.Total, rep.Elapsed.D().Round(time.Millisecond), strings.Join(parts, ", "))
	if len(rep.Signed) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tRE-SIGNED IN")
		for _, role := range sortedKeys(rep.Signed) {
			fmt.Fprintf(tw, "%s\t%d\n", role, rep.Signed[role])
		}
		tw.Flush()
	}
	if len(rep.Attention) == 0 {
		return
	}
	fmt.Fprintln(w, "\nNEEDS ATTENTION")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tOUTCOME\tDETAIL")
	for _, r := range rep.Attention {
		detail := r.Error
		if r.Outcome == ceremony.OutcomeNotStarted {
			detail = "not reached: the run stopped"
		}
		for _, wt := range ceremony.FoldMessages(r.Waiting, ceremony.BinsOfResign(r), func(w ceremony.Wait) string { return w.Role }, func(w ceremony.Wait) string { return w.Detail }, nil) {
			if detail != "" {
				detail += "; "
			}
			detail += wt.Text + binsNote(wt)
			for _, m := range wt.Item.Missing {
				detail += " [" + m.Key + ": " + m.Reason + "]"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Repository, r.Outcome, detail)
	}
	tw.Flush()
}

func sortedKeys(m map[string]int) []string {
	order := map[string]int{ceremony.RoleRoot: 0, ceremony.RoleTargets: 1, ceremony.RoleSnapshot: 3, ceremony.RoleTimestamp: 4}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		oi, ok := order[out[i]]
		if !ok {
			oi = 2
		}
		oj, ok := order[out[j]]
		if !ok {
			oj = 2
		}
		if oi != oj {
			return oi < oj
		}
		return out[i] < out[j]
	})
	return out
}

// statusMany is status with --repos/--repos-from (or --prometheus).
func (a *app) statusMany(ctx context.Context, repos *repoFlags, at time.Time, prom string, asJSON, bins bool) error {
	dirs, err := repos.list()
	if err != nil {
		return err
	}
	sts := fleet.StatusMany(ctx, dirs, at, 0)
	if prom != "" {
		if err := fleet.WritePrometheus(prom, at, sts); err != nil {
			return err
		}
	}
	sum := fleet.Summarize(sts)
	code := exitOK
	if sum.Due > 0 {
		code = worse(code, exitDue)
	}
	if sum.Errors > 0 {
		code = worse(code, exitError)
	}
	if sum.Invalid > 0 {
		code = worse(code, exitInvalid)
	}
	if asJSON {
		if err := a.printJSON(struct {
			At           time.Time          `json:"at"`
			Healthy      int                `json:"healthy"`
			Due          int                `json:"due"`
			Invalid      int                `json:"invalid"`
			Errors       int                `json:"errors"`
			Repositories []fleet.RepoStatus `json:"repositories"`
		}{at.UTC(), sum.Healthy, sum.Due, sum.Invalid, sum.Errors, sts}); err != nil {
			return err
		}
	} else if !repos.many() && len(sts) == 1 && sts[0].Status != nil {
		a.printStatus(sts[0].Status, bins)
	} else {
		a.printStatusMany(sts, sum, at)
	}
	for _, s := range sts {
		if s.Status == nil {
			a.ui.printf("error: %s", s.Error)
			if s.Hint != "" {
				a.ui.printf("hint: %s", s.Hint)
			}
		}
	}
	if code != exitOK {
		return exitStatus{code}
	}
	return nil
}

func (a *app) printStatusMany(sts []fleet.RepoStatus, sum fleet.FleetSummary, at time.Time) {
	w := a.stdout
	fmt.Fprintf(w, "%d repositories at %s: %d healthy, %d due, %d invalid, %d unreadable\n",
		len(sts), at.UTC().Format(time.RFC3339), sum.Healthy, sum.Due, sum.Invalid, sum.Errors)
	if sum.Healthy == len(sts) {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tSTATE\tROLES")
	for _, s := range sts {
		if s.Status == nil {
			fmt.Fprintf(tw, "%s\tunreadable\t%s\n", s.Repository, s.Error)
			continue
		}
		if s.Status.Health == ceremony.Healthy {
			continue
		}
		var roles []string
		for _, row := range s.Status.FoldRoles() {
			r := row.Item
			switch f := row.Set; {
			case f != nil && f.Health != ceremony.Healthy:
				roles = append(roles, fmt.Sprintf("%s v%s %s (%s)", setLabel(f), versionText(f), stateText(f), leftOf(f.Expires, at)))
			case f == nil && r.Health != ceremony.Healthy:
				roles = append(roles, fmt.Sprintf("%s v%d %s (%s)", r.Role, r.Version, r.Health, r.Left.Remaining()))
			}
		}
		if len(roles) == 0 {
			for _, p := range s.Status.Problems {
				roles = append(roles, problemText(p.Role, p.Detail))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Repository, s.Status.Health, strings.Join(roles, "; "))
	}
	tw.Flush()
	if sum.Healthy > 0 {
		fmt.Fprintf(w, "(%d healthy repositories not listed; --json lists every one)\n", sum.Healthy)
	}
}
