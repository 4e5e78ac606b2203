package roles

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Clients look a target up by a pre-order depth-first search of the
// delegations (go-tuf updater.preOrderDepthFirstWalk, tuf-js
// Updater.preorderDepthFirstWalk, the same code): from targets, each role
// that lists the target's path is asked in the order it is delegated, a
// terminating delegation ends the search below it, and the search gives up
// once 1+MaxDelegations roles were visited. A target that the search does
// not reach is one no client downloads.

// searchResult is where a client's search for one target ends.
type searchResult struct {
	found string // the role whose entry the client takes, or ""
	cut   bool   // the search stopped at MaxDelegations with roles left
}

// search looks target up as go-tuf does, or (js) as tuf-js does. roles
// maps role names to their metadata (targets included); a role without
// metadata ends the search (the client fails to load it: reported
// elsewhere).
func search(roles map[string]*metadata.Metadata[metadata.TargetsType], target string, js bool) searchResult {
	stack := []string{metadata.TARGETS}
	visited := map[string]bool{}
	for len(visited) <= MaxDelegations && len(stack) > 0 {
		name := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[name] {
			continue
		}
		md := roles[name]
		if md == nil {
			return searchResult{}
		}
		if _, ok := md.Signed.Targets[target]; ok {
			return searchResult{found: name}
		}
		visited[name] = true
		dl := md.Signed.Delegations
		if dl == nil {
			continue
		}
		var kids []string
		for _, r := range rolesForTarget(dl, target, js) {
			kids = append(kids, r.Name)
			if r.Terminating {
				stack = stack[:0]
				break
			}
		}
		slices.Reverse(kids)
		stack = append(stack, kids...)
	}
	cut := slices.ContainsFunc(stack, func(n string) bool { return !visited[n] })
	return searchResult{cut: cut}
}

// rolesForTarget is go-tuf's Delegations.GetRolesForTarget, or (js) what
// tuf-js's Delegations.rolesForTarget gives for the patterns
// checkPathPattern accepts: minimatch's '*' and '?' do not match a leading
// '.', and path_hash_prefixes are compared with the hex of the hash.
func rolesForTarget(dl *metadata.Delegations, target string, js bool) []metadata.RoleResult {
	if !js || dl.Roles == nil {
		return dl.GetRolesForTarget(target)
	}
	var out []metadata.RoleResult
	for _, r := range dl.Roles {
		if jsDelegatedPath(&r, target) {
			out = append(out, metadata.RoleResult{Name: r.Name, Terminating: r.Terminating})
		}
	}
	return out
}

func jsDelegatedPath(r *metadata.DelegatedRole, target string) bool {
	if len(r.Paths) > 0 {
		parts := strings.Split(target, "/")
		for _, pat := range r.Paths {
			pp := strings.Split(pat, "/")
			if len(pp) != len(parts) {
				continue
			}
			ok := true
			for i := range pp {
				m, _ := filepath.Match(pp[i], parts[i])
				ok = ok && m && patternMatchesJS(pp[i], parts[i])
			}
			if ok {
				return true
			}
		}
		return false
	}
	sum := sha256.Sum256([]byte(target))
	h := hex.EncodeToString(sum[:])
	return slices.ContainsFunc(r.PathHashPrefixes, func(p string) bool { return strings.HasPrefix(h, p) })
}

// checkSearch reports delegated roles deeper than clients search
// (RuleDepth), and targets of the other roles that a client's search does
// not reach: cut off after MaxDelegations roles (RuleDepth), ended by a
// terminating delegation or a parent's paths (RuleDelegation), or reached
// by go-tuf only (RuleTargetPath: minimatch's dot rule). Targets outside
// the paths their own delegator gives are reported by checkDelegated.
func (v *verifier) checkSearch() {
	if v.s.targets == nil || len(v.s.delegated) == 0 {
		return
	}
	all := map[string]*metadata.Metadata[metadata.TargetsType]{metadata.TARGETS: v.s.targets}
	depth := map[string]int{metadata.TARGETS: 0}
	parent := map[string]string{}
	for _, d := range v.s.delegated {
		all[d.name] = d.md
		depth[d.name] = depth[d.delegator] + 1
		parent[d.name] = d.delegator
	}
	for _, d := range v.s.delegated {
		if depth[d.name] > MaxDelegations {
			v.add(d.name, d.path, RuleDepth,
				fmt.Sprintf("%s is delegated at depth %d (%s): clients visit at most %d delegated roles for a target and never load it", d.name, depth[d.name], chainText(parent, d.name), MaxDelegations),
				fmt.Sprintf("delegate it from a role at most %d delegations below targets", MaxDelegations-1))
			continue
		}
		v.searchTargets(d, all)
	}
}

// searchTargets looks up every target d lists as both clients do.
func (v *verifier) searchTargets(d scannedDelegated, all map[string]*metadata.Metadata[metadata.TargetsType]) {
	del := v.delegation(d.name, d.delegator)
	var cut, ended, jsOnly []string
	for _, p := range slices.Sorted(maps.Keys(d.md.Signed.Targets)) {
		if del == nil || !del.covers(d.name, p) {
			continue // reported by checkDelegated
		}
		r := search(all, p, false)
		switch {
		case r.found != "":
			if hasDotPart(p) && search(all, p, true).found != r.found {
				jsOnly = append(jsOnly, p)
			}
			continue
		case r.cut:
			cut = append(cut, p)
		default:
			ended = append(ended, p)
		}
	}
	if len(cut) > 0 {
		v.add(d.name, d.path, RuleDepth,
			fmt.Sprintf("%s: target %q%s: clients give up before they reach %s: they visit at most %d delegated roles for a target, and more come first", d.name, cut[0], more(len(cut)-1, "target"), d.name, MaxDelegations),
			"delegate its paths to fewer roles, or from a role nearer targets")
	}
	if len(ended) > 0 {
		v.add(d.name, d.path, RuleDelegation,
			fmt.Sprintf("%s: target %q%s: no client reaches %s for it: a terminating delegation or the paths of a role above end the search first", d.name, ended[0], more(len(ended)-1, "target"), d.name),
			"rootkeeper delegate list shows the order clients search the roles in")
	}
	if len(jsOnly) > 0 {
		v.add(d.name, d.path, RuleTargetPath,
			fmt.Sprintf("%s: target %q%s: tuf-js clients do not find it here: minimatch's '*' and '?' never match a leading '.', Go's do", d.name, jsOnly[0], more(len(jsOnly)-1, "target")),
			"spell the leading '.' out in the delegation's path pattern (like \".well-known/*\")")
	}
}

func hasDotPart(p string) bool { return strings.HasPrefix(p, ".") || strings.Contains(p, "/.") }

// chainText is "targets → a → b", shortened in the middle when long.
func chainText(parent map[string]string, name string) string {
	chain := []string{name}
	for n := name; parent[n] != ""; n = parent[n] {
		chain = append(chain, parent[n])
	}
	slices.Reverse(chain)
	if len(chain) > 6 {
		chain = append(append(slices.Clone(chain[:3]), "…"), chain[len(chain)-2:]...)
	}
	return strings.Join(chain, " → ")
}

// checkRotations replays the update of a client holding the trusted root
// when more than MaxRootRotations newer roots exist: it fetches only
// MaxRootRotations of them in one update and goes on with the last one.
func (v *verifier) checkRotations() {
	s := v.s
	if len(s.roots) <= MaxRootRotations || s.timestamp == nil || s.snapshot == nil || s.targets == nil {
		return
	}
	stop := s.roots[MaxRootRotations-1]
	err := func() error {
		tm, err := newClient(v.c, v.trusted, v.at)
		if err != nil {
			return err
		}
		for _, r := range s.roots[:MaxRootRotations] {
			if err := tm.updateRoot(s.raw[r.path]); err != nil {
				return err
			}
		}
		if err := tm.updateTimestamp(s.raw[s.tsPath]); err != nil {
			return err
		}
		if err := tm.updateSnapshot(s.raw[s.snPath], false); err != nil {
			return err
		}
		return tm.updateTargets(s.raw[s.tgPath])
	}()
	if err != nil {
		v.add(metadata.ROOT, stop.path, RuleRootChain,
			fmt.Sprintf("a client holding %s fetches at most %d newer roots in one update (go-tuf and tuf-js maxRootRotations): it stops at %s and then fails: %v",
				rootLabel(v.chain[0].md), MaxRootRotations, rootLabel(stop.md), err),
			"ship clients a newer trusted root, or keep the metadata valid for the root they stop at")
	}
}
