package ceremony

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rootkeeper/rootkeeper/ceremony/notary"
)

// NotaryImport is a Notary v1 collection to migrate.
type NotaryImport struct {
	GUN    string
	Source notary.Source
	Pin    notary.Pin
	// Map maps Notary roles to the plan's delegations; by default
	// targets/NAME becomes NAME and targets stays targets.
	Map map[string]string
}

// ImportNotary reads and verifies a Notary collection by Notary's rules,
// then runs the bootstrap ceremony of plan into dir (keys from the plan,
// in hardware) with the collection's targets — same names, hashes and
// lengths, no files — in the roles the Notary roles map to. The init
// entry of the transcript records the GUN, the source, the root
// certificate ids and the mapping.
func (s *Session) ImportNotary(ctx context.Context, plan *Plan, dir string, imp NotaryImport) (*Result, error) {
	col, err := notary.Read(ctx, notary.Options{GUN: imp.GUN, Source: imp.Source, Pin: imp.Pin, At: s.now()})
	if err != nil {
		return nil, err
	}
	initial, err := NotaryInitial(col, plan, imp.Map)
	if err != nil {
		return nil, err
	}
	s.progress("the Notary collection %s verifies (root v%d, pinned certificate %s)", col.GUN, col.RootVersion, shortList(col.PinnedCertIDs))
	return s.InitWith(ctx, plan, dir, initial)
}

// NotaryInitial maps a verified collection to initial targets of a new
// repository: each role to its plan delegation (refusing a role the plan
// has no delegation for), each target marked as an image tag of the GUN
// (custom.notary), and one name signed with two different contents
// refused (TUF clients and Docker would disagree on which one counts).
func NotaryInitial(col *notary.Collection, plan *Plan, mapping map[string]string) (*Initial, error) {
	in := &Initial{Targets: map[string][]TargetInput{}}
	used := map[string]string{}
	seen := map[string]notaryTarget{}
	for _, r := range col.Roles {
		role, err := mapRole(r.Name, mapping, plan)
		if err != nil {
			return nil, err
		}
		used[r.Name] = role
		for _, name := range slices.Sorted(maps.Keys(r.Targets)) {
			t := r.Targets[name]
			if prev, dup := seen[name]; dup && !prev.same(t) {
				return nil, &RepoError{Detail: fmt.Sprintf("the collection signs %q differently in %s and %s", name, prev.role, r.Name),
					HintText: "remove the stale one with the notary client (notary remove GUN NAME --roles ROLE; notary publish), then import"}
			}
			seen[name] = notaryTarget{role: r.Name, t: t}
			input, err := notaryInput(col.GUN, r.Name, name, t)
			if err != nil {
				return nil, err
			}
			in.Targets[role] = append(in.Targets[role], input)
		}
	}
	for from := range mapping {
		if _, ok := used[from]; !ok {
			return nil, &RepoError{Detail: fmt.Sprintf("--map %s: the collection has no such role", from),
				HintText: "its roles are " + strings.Join(slices.Sorted(maps.Keys(used)), ", ")}
		}
	}
	in.Details = map[string]any{"notary_gun": col.GUN, "notary_source": col.Source, "notary_root_version": col.RootVersion,
		"notary_root_cert_ids": col.RootCertIDs, "notary_pinned_cert_ids": col.PinnedCertIDs, "notary_chain_from": col.ChainFrom,
		"notary_mapping": used}
	if len(col.Skipped) > 0 {
		in.Details["notary_skipped"] = col.Skipped
	}
	in.Summary = notarySummary(col, used)
	return in, nil
}

type notaryTarget struct {
	role string
	t    notary.Target
}

func (a notaryTarget) same(b notary.Target) bool {
	if a.t.Length != b.Length || len(a.t.Hashes) != len(b.Hashes) {
		return false
	}
	for alg, h := range a.t.Hashes {
		if !bytes.Equal(h, b.Hashes[alg]) {
			return false
		}
	}
	return true
}

// mapRole gives the TUF role a Notary role's targets go to.
func mapRole(name string, mapping map[string]string, plan *Plan) (string, error) {
	role, given := mapping[name]
	switch {
	case given:
	case name == notary.RoleTargets:
		return RoleTargets, nil
	case strings.Count(name, "/") == 1:
		role = strings.TrimPrefix(name, notary.RoleTargets+"/")
	default:
		return "", &RepoError{Detail: fmt.Sprintf("the collection has the nested delegation %s, which has no default mapping", name),
			HintText: fmt.Sprintf("map it to a delegation of the plan: --map %s=NAME", name)}
	}
	if role == RoleTargets {
		return role, nil
	}
	if !slices.ContainsFunc(plan.Delegations, func(d DelegationPlan) bool { return d.Name == role }) {
		return "", &RepoError{Detail: fmt.Sprintf("the collection has the delegation %s, but the plan has no delegation %q", name, role),
			HintText: fmt.Sprintf(`add it to the plan's delegations (name: %s, paths: ["*"], keys: [the tagging key's URI]), or map it to another one with --map %s=NAME`, role, name)}
	}
	return role, nil
}

func notaryInput(gun, role, name string, t notary.Target) (TargetInput, error) {
	meta := map[string]any{"gun": gun, "role": role}
	if len(t.Custom) > 0 && string(t.Custom) != "null" {
		var c any
		if err := json.Unmarshal(t.Custom, &c); err != nil {
			return TargetInput{}, fmt.Errorf("%s: target %q: custom is not JSON: %v", role, name, err)
		}
		meta["custom"] = c
	}
	return TargetInput{Name: name, Digest: &DigestInput{Length: t.Length, Hashes: t.Hashes, Custom: map[string]any{"notary": meta}}}, nil
}

func notarySummary(col *notary.Collection, used map[string]string) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Import of the Notary collection %s from %s\n", col.GUN, col.Source)
	fmt.Fprintf(&w, "  verified by Notary's rules: root v%d, pinned root certificate %s", col.RootVersion, shortList(col.PinnedCertIDs))
	if col.ChainFrom != col.RootVersion {
		fmt.Fprintf(&w, " in root v%d, rotations v%d → v%d checked", col.ChainFrom, col.ChainFrom, col.RootVersion)
	}
	for _, r := range col.Roles {
		fmt.Fprintf(&w, "\n  %-20s → %-12s %d targets", r.Name, used[r.Name], len(r.Targets))
	}
	for _, sk := range col.Skipped {
		fmt.Fprintf(&w, "\n  %-20s   not imported: never published (no snapshot entry), Notary clients ignore it", sk)
	}
	fmt.Fprintf(&w, "\n  The Notary keys are not imported: the plan's keys sign everything.")
	return w.String()
}
