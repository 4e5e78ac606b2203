package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
)

// Shell completion (rootkeeper completion bash|zsh|fish|powershell, from
// cobra) of flag values: the algorithms, the YubiKey policies, and the
// roles of the repository that --repo names.

// completeWords completes from a fixed list.
func completeWords(words ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, w := range words {
			if strings.HasPrefix(w, toComplete) {
				out = append(out, w)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// roleSet says which roles a --role flag takes.
type roleSet int

const (
	anyRole      roleSet = iota // every role, each hashed bin too (resign)
	targetsRole                 // targets, delegated roles and bins (targets add, remove, list)
	delegation                  // delegated roles and bins' prefixes (delegate remove)
	binsPrefix                  // bins' prefixes (delegate bin)
	delegator                   // targets and delegated roles, no bins (delegate add --from)
	topLevelRole                // root, targets, snapshot, timestamp (rotate)
)

// completeRoles completes the roles of the repository --repo names. Bins
// are offered as "PREFIX-" until what is typed starts with it, then one by
// one: 16,384 of them would drown the rest.
func completeRoles(set roleSet) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if set == topLevelRole {
			return completeWords(ceremony.TopLevelRoles...)(cmd, nil, toComplete)
		}
		dir, _ := cmd.Flags().GetString("repo")
		if dir == "" {
			return cobra.AppendActiveHelp(nil, "give --repo first: the roles come from its repository"), cobra.ShellCompDirectiveNoFileComp
		}
		list, err := ceremony.ListDelegations(dir)
		if err != nil {
			return cobra.AppendActiveHelp(nil, err.Error()), cobra.ShellCompDirectiveNoFileComp
		}
		var words []string
		switch set {
		case anyRole:
			words = append(words, ceremony.TopLevelRoles...)
		case targetsRole, delegator:
			words = append(words, ceremony.RoleTargets)
		}
		var partial []string // "PREFIX-": the bins, to be completed further
		for _, d := range list.Delegations {
			switch {
			case d.Bins == 0 && set != binsPrefix:
				words = append(words, d.Name)
			case d.Bins > 0 && (set == delegation || set == binsPrefix):
				words = append(words, d.Name)
			case d.Bins > 0 && (set == anyRole || set == targetsRole):
				if !strings.HasPrefix(toComplete, d.Name+"-") {
					partial = append(partial, d.Name+"-")
					continue
				}
				width := len(d.FirstBin) - len(d.Name) - 1
				for i := range d.Bins {
					words = append(words, fmt.Sprintf("%s-%0*x", d.Name, width, i))
				}
			}
		}
		out, dir2 := completeWords(append(words, partial...)...)(cmd, nil, toComplete)
		if len(out) > 0 && allPartial(out, partial) {
			dir2 |= cobra.ShellCompDirectiveNoSpace
		}
		return out, dir2
	}
}

func allPartial(out []cobra.Completion, partial []string) bool {
	for _, o := range out {
		found := false
		for _, p := range partial {
			found = found || o == p
		}
		if !found {
			return false
		}
	}
	return true
}

// registerCompletions adds the completion of flag values to every command
// under root that has the flag.
func registerCompletions(root *cobra.Command) {
	algorithms := make([]string, len(hsm.Algorithms))
	for i, a := range hsm.Algorithms {
		algorithms[i] = string(a)
	}
	roleOf := map[string]roleSet{
		"rootkeeper resign": anyRole, "rootkeeper targets add": targetsRole, "rootkeeper targets remove": targetsRole,
		"rootkeeper targets list": targetsRole, "rootkeeper delegate remove": delegation, "rootkeeper delegate bin": binsPrefix,
		"rootkeeper rotate": topLevelRole,
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		on := func(flag string, f cobra.CompletionFunc) {
			if c.Flags().Lookup(flag) != nil {
				c.RegisterFlagCompletionFunc(flag, f)
			}
		}
		on("algorithm", completeWords(algorithms...))
		on("pin-policy", completeWords("always", "once"))
		on("touch-policy", completeWords("always", "cached", "never"))
		if set, ok := roleOf[c.CommandPath()]; ok {
			on("role", completeRoles(set))
		}
		if c.CommandPath() == "rootkeeper delegate add" {
			on("from", completeRoles(delegator))
		}
		for _, dirFlag := range []string{"repo", "state", "trust-dir"} {
			on(dirFlag, func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return nil, cobra.ShellCompDirectiveFilterDirs
			})
		}
	}
	walk(root)
}
