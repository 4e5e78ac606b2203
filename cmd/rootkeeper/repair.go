package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
)

func (a *app) repairCommand() *cobra.Command {
	var dir string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "repair --repo DIR [--dry-run] [--json]",
		Short: "Finish an interrupted change and remove what interrupted runs left behind",
		Long: `Do what every command that changes the repository does first, without opening
any device: finish the change a crash interrupted (after checking its journal),
and remove the temporary files of interrupted writes. Then remove what older
versions of rootkeeper could leave behind after a crash: versioned metadata
(N.snapshot.json, N.targets.json, N.ROLE.json) and hash-named targets that no
published timestamp reaches.

Nothing the published state reaches is removed, nor any root version. Each
file removed (or, with --dry-run, that would be) is listed with the reason; the
removal is recorded in the transcript.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("repo", dir); err != nil {
				return err
			}
			rep, err := ceremony.Repair(dir, ceremony.RepairOptions{DryRun: dryRun})
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(rep)
			}
			a.printRepair(rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", "", "the repository's directory")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be done; write nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func (a *app) printRepair(rep *ceremony.RepairReport) {
	w := a.stdout
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
		fmt.Fprintf(w, "%s (dry run, nothing written):\n", rep.Repository)
	} else {
		fmt.Fprintf(w, "%s:\n", rep.Repository)
	}
	if rep.Journal != "" {
		fmt.Fprintf(w, "  %s\n", rep.Journal)
	}
	for _, it := range rep.Removed {
		fmt.Fprintf(w, "  %s %s: %s\n", verb, it.Path, it.Reason)
	}
	for _, it := range rep.Kept {
		fmt.Fprintf(w, "  kept %s: %s\n", it.Path, it.Reason)
	}
	if rep.Note != "" {
		fmt.Fprintf(w, "  %s\n", rep.Note)
		return
	}
	if rep.Journal == "" && len(rep.Removed) == 0 {
		fmt.Fprintln(w, "  nothing to repair")
	}
	fmt.Fprintf(w, "  kept %d versioned metadata %s and %d hash-named %s that the published state reaches\n",
		rep.Reachable.Metadata, plural(rep.Reachable.Metadata, "file", "files"), rep.Reachable.Targets, plural(rep.Reachable.Targets, "target", "targets"))
}
