package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

func (a *app) calendarCommand() *cobra.Command {
	var repos repoFlags
	var at, ics string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "calendar (--repo DIR | --repos GLOB | --repos-from FILE) [--ics FILE] [--at TIME]",
		Short: "When the next offline ceremonies are due: a table, and an iCalendar file to import",
		Long: `List when the offline roles (root, targets and delegated targets roles) of the
repositories enter their re-signing windows: the days officers must sit a
ceremony, soonest first, one line per role and day. Snapshot and timestamp are
left out: the scheduled job re-signs them (rootkeeper resign).

--ics FILE also writes the ceremonies as an iCalendar file (RFC 5545) to import
into a calendar: one all-day event per role and day, with a reminder a week
before, naming the repositories, the keys needed and the command to run.

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
			sts := ceremony.StatusMany(cmd.Context(), dirs, t, 0)
			entries := ceremony.Calendar(sts)
			groups := ceremony.GroupCeremonies(entries)
			if ics != "" {
				if err := ceremony.WriteFileAtomic(ics, ceremony.ICalendar(groups, t)); err != nil {
					return err
				}
			}
			var failed []ceremony.RepoStatus
			for _, s := range sts {
				if s.Status == nil {
					failed = append(failed, s)
				}
			}
			if asJSON {
				if entries == nil {
					entries = []ceremony.CalendarEntry{}
				}
				if err := a.printJSON(struct {
					At      time.Time                `json:"at"`
					Entries []ceremony.CalendarEntry `json:"ceremonies"`
					Errors  []ceremony.RepoStatus    `json:"errors,omitempty"`
				}{t.UTC(), entries, failed}); err != nil {
					return err
				}
			} else {
				a.printCalendar(groups, t)
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
	return cmd
}

func (a *app) printCalendar(groups []ceremony.CeremonyGroup, at time.Time) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DUE\tEXPIRES\tROLE\tIN\tREPOSITORIES")
	for _, g := range groups {
		in := "now"
		if d := g.Day.Sub(at.UTC().Truncate(24 * time.Hour)); d > 0 {
			in = ceremony.Duration(d).String()
		}
		names := make([]string, 0, 3)
		for i, e := range g.Entries {
			if i == 3 {
				names = append(names, fmt.Sprintf("… %d more", len(g.Entries)-3))
				break
			}
			names = append(names, fmt.Sprintf("%s (v%d)", e.Repository, e.Version))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d: %s\n", g.Day.Format("2006-01-02"), g.Expires.Format("2006-01-02"), g.Role, in, len(g.Entries), strings.Join(names, ", "))
	}
	tw.Flush()
	if len(groups) == 0 {
		fmt.Fprintln(a.stdout, "no offline ceremony is known: no repository could be read")
	}
}
