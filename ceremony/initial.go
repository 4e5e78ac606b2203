package ceremony

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Initial is what a new repository starts with besides its keys: targets
// for its roles (imported from another system), and what the init entry
// of the transcript records about where they came from. Session.InitWith
// takes it as an input to the bootstrap ceremony; everything in it is
// checked against the plan before any device is opened.
type Initial struct {
	// Targets by role: "targets" or the name of a delegation in the plan.
	Targets map[string][]TargetInput
	// Details are added to the init entry's details in the transcript.
	Details map[string]any
	// Summary is added to what the officer confirms.
	Summary string
}

// check refuses targets the plan cannot hold: an unknown role, a bad
// name, a path the plan's delegation does not cover (clients would never
// look for it there).
func (in *Initial) check(plan *Plan) error {
	if in == nil {
		return nil
	}
	for _, role := range slices.Sorted(maps.Keys(in.Targets)) {
		var paths []string
		if role != RoleTargets {
			i := slices.IndexFunc(plan.Delegations, func(d DelegationPlan) bool { return d.Name == role })
			if i < 0 {
				return &RepoError{Detail: fmt.Sprintf("the plan has no delegation %q for the imported targets", role),
					HintText: "add a delegation named " + role + " to the plan (docs/runbook-notary-migration.md)"}
			}
			paths = plan.Delegations[i].Paths
		}
		dr := metadata.DelegatedRole{Name: role, Paths: paths}
		for _, t := range in.Targets[role] {
			if err := TargetName(t.Name); err != nil {
				return &RepoError{Detail: err.Error(), HintText: "the imported target cannot keep its name in a TUF repository"}
			}
			if t.Digest == nil {
				return fmt.Errorf("initial target %q: only targets without a file can be imported", t.Name)
			}
			if ok, _ := dr.IsDelegatedPath(t.Name); role != RoleTargets && !ok {
				return &RepoError{Detail: fmt.Sprintf("the plan's delegation %s (paths %s) does not cover the imported target %q", role, strings.Join(paths, ", "), t.Name),
					HintText: `widen the delegation's paths in the plan (image tags: paths: ["*"])`}
			}
		}
	}
	return nil
}

// apply adds the targets to version 1 of their roles; they need no files.
func (in *Initial) apply(repo *roles.Repo, consistent bool) ([]File, error) {
	if in == nil {
		return nil, nil
	}
	var files []File
	for _, role := range slices.Sorted(maps.Keys(in.Targets)) {
		for _, t := range in.Targets[role] {
			f, err := addTargetInput(repo, consistent, role, t)
			if err != nil {
				return nil, err
			}
			files = append(files, f...)
		}
	}
	return files, nil
}

func (in *Initial) summary() string {
	if in == nil || in.Summary == "" {
		return ""
	}
	return "\n\n" + in.Summary
}

func (in *Initial) addDetails(details map[string]any) {
	if in == nil {
		return
	}
	maps.Copy(details, in.Details)
}
