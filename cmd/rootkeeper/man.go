package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCommand is the hidden `rootkeeper __man DIR`: a man page (section 1)
// for every command, made from the commands themselves (make man, make
// install). The pages' date is SOURCE_DATE_EPOCH when set (the Makefile
// sets the last commit's), else the build's VCS time, else today.
func (a *app) manCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "__man DIR",
		Short:  "Write a man page for every command into DIR",
		Hidden: true,
		Args:   exactArgs(1, "one directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			date := manDate()
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Section: "1", Date: &date, Source: "rootkeeper " + moduleVersion(), Manual: "rootkeeper manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("writing the man pages: %w", err)
			}
			return nil
		},
	}
}

func manDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Now().UTC()
}

// moduleVersion is the main module's version ("v1.2.0", "(devel)").
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
