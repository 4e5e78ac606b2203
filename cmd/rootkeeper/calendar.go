package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/ceremony/fleet"
)

func (a *app) calendarCommand() *cobra.Command {
	var repos repoFlags
	var at, ics string
	var asJSON, bins bool
	cmd := &cobra.Command{
		Use:   "calendar (--repo DIR | --repos GLOB | --repos-from FILE) [--ics FILE] [--at TIME] [--bins]",
		Short: "When the next offline ceremonies are due: a table, and an iCalendar file to import",
		Long: `List when the offline roles (root, targets and delegated targets roles) of the
repositories enter their re-signing windows: the days officers must sit a
ceremony, soonest first, one line per role and day. Each set of hashed bins is
one role, due when its first bin is (--bins lists every bin). Snapshot and
timestamp are left out: the scheduled job re-signs them (rootkeeper resign).

--ics FILE also writes the ceremonies as an iCalendar file (RFC 5545) to import
into a calendar: one all-day event per role and day, with a reminder a week
before, naming the repositories, the keys needed and the command to run (with
--repo, --repos or --repos-from as given here). An event keeps its UID when its
ceremony is re-planned and its SEQUENCE grows, so a calendar that imported the
file updates the event; write the file again in place (the previous file is
read for the SEQUENCE of each event, and events that no longer exist are
written once more as cancelled).

Exit status: 0, or 1 when a repository could not be read.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dirs, err := repos.list()
			if err != nil {
				return err
			}
			t, err := parseAt(at)
			if err != nil {
				return err
			}
			sts := fleet.StatusMany(cmd.Context(), dirs, t, 0)
			groups := fleet.GroupCeremonies(fleet.Calendar(sts, false), repos.selector())
			if ics != "" {
				prev, err := readPrevious(ics)
				if err != nil {
					return err
				}
				if err := ceremony.WriteFileAtomic(ics, fleet.ICalendar(groups, t, prev)); err != nil {
					return err
				}
			}
			entries := fleet.Calendar(sts, bins)
			if bins {
				groups = fleet.GroupCeremonies(entries, repos.selector())
			}
			var failed []fleet.RepoStatus
			for _, s := range sts {
				if s.Status == nil {
					failed = append(failed, s)
				}
			}
			if err := a.printCalendar(asJSON, t, entries, groups, failed); err != nil {
				return err
			}
			for _, s := range failed {
				a.ui.printf("error: %s", s.Error)
				if s.Hint != "" {
					a.ui.printf("hint: %s", s.Hint)
				}
			}
			if len(failed) > 0 {
				return exitStatus{exitError}
			}
			return nil
		},
	}
	repos.add(cmd)
	cmd.Flags().StringVar(&ics, "ics", "", "also write an iCalendar file (RFC 5545) to FILE")
	cmd.Flags().StringVar(&at, "at", "", "as of this time (2027-01-31, RFC 3339, or +30d)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&bins, "bins", false, "list every hashed bin on its own (the iCalendar file still has one event per set of bins)")
	return cmd
}

// readPrevious reads the calendar file that --ics replaces, if there is
// one (at most 64 MiB: it is ours).
func readPrevious(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &ceremony.IOError{Op: "read", Path: path, Err: err}
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<20))
}

// selector is how the repositories were chosen, for the command an event
// names; a list read from stdin is named LIST.
func (f *repoFlags) selector() string {
	switch {
	case f.dir != "":
		return "--repo " + fleet.ShellQuote(f.dir)
	case f.glob != "":
		return "--repos " + fleet.ShellQuote(f.glob)
	case f.from == "-":
		return "--repos-from LIST"
	}
	return "--repos-from " + fleet.ShellQuote(f.from)
}

func (a *app) printCalendar(asJSON bool, at time.Time, entries []fleet.CalendarEntry, groups []fleet.CeremonyGroup, failed []fleet.RepoStatus) error {
	if asJSON {
		if entries == nil {
			entries = []fleet.CalendarEntry{}
		}
		if groups == nil {
			groups = []fleet.CeremonyGroup{}
		}
		return a.printJSON(struct {
			At      time.Time             `json:"at"`
			Entries []fleet.CalendarEntry `json:"ceremonies"`
			Events  []fleet.CeremonyGroup `json:"events"`
			Errors  []fleet.RepoStatus    `json:"errors,omitempty"`
		}{at.UTC(), entries, groups, failed})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DUE\tEXPIRES\tROLE\tIN\tREPOSITORIES")
	for _, g := range groups {
		in := "now"
		if d := g.Day.Sub(at.UTC().Truncate(24 * time.Hour)); d > 0 {
			in = ceremony.Duration(d).String()
		}
		role := g.Role
		if f := g.Entries[0].Bins; f != nil {
			role = setLabel(f)
		}
		names := make([]string, 0, 3)
		for i, e := range g.Entries {
			if i == 3 {
				names = append(names, fmt.Sprintf("… %d more", len(g.Entries)-3))
				break
			}
			v := fmt.Sprintf("v%d", e.Version)
			if e.Bins != nil {
				v = "v" + versionText(e.Bins)
			}
			names = append(names, fmt.Sprintf("%s (%s)", e.Repository, v))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d: %s\n", g.Day.Format("2006-01-02"), g.Expires.Format("2006-01-02"), role, in, len(g.Entries), strings.Join(names, ", "))
	}
	tw.Flush()
	for _, e := range entries {
		if len(e.BinDays) > 1 {
			fmt.Fprintf(a.stdout, "%s of %s: %s\n", e.Role, e.Repository, binDaysText(e.BinDays))
		}
	}
	if len(groups) == 0 {
		fmt.Fprintln(a.stdout, "no offline ceremony is known: no repository could be read")
	}
	return nil
}

// binDaysText says when the bins of a set fall due: "1022 bins due
// 2027-01-31, 2 due 2027-03-15 (bins-01a, bins-2f0)".
func binDaysText(days []fleet.BinDay) string {
	parts := make([]string, len(days))
	for i, d := range days {
		parts[i] = fmt.Sprintf("%d due %s", d.Bins, d.Day.Format("2006-01-02"))
		if d.Bins <= 3 {
			parts[i] += " (" + strings.Join(d.First, ", ") + ")"
		}
	}
	return "bins " + strings.Join(parts, ", ")
}
