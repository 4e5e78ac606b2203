package roles

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// MaxBins is the largest number of hashed bins AddHashedBins makes
// (2^14, the PEP 458 figure; TAP 15 allows more, but every bin is a file
// that snapshot lists and the officer signs).
const MaxBins = 1 << 14

// DelegationInfo describes one delegation as clients follow it.
type DelegationInfo struct {
	// Name is the delegated role, or for hashed bins their name prefix.
	Name string `json:"name"`
	// Delegator is the role that delegates: "targets" or a delegated role.
	Delegator string `json:"delegator"`
	// Depth is 1 for a delegation from targets, 2 for one from a role
	// targets delegates to, and so on.
	Depth       int      `json:"depth"`
	KeyIDs      []string `json:"keyids"`
	Threshold   int      `json:"threshold"`
	Paths       []string `json:"paths,omitempty"`
	Terminating bool     `json:"terminating"`
	// Bins is the number of hashed bins (TAP 15 succinct roles), 0 for a
	// delegation by path.
	Bins int `json:"bins,omitempty"`
	// FirstBin and LastBin name the first and last bin role.
	FirstBin string `json:"first_bin,omitempty"`
	LastBin  string `json:"last_bin,omitempty"`
	// Version is the delegated role's metadata version (0 for bins, or if
	// the role has no metadata).
	Version int64 `json:"version,omitempty"`
	// Targets counts the targets the role lists (for bins: all bins).
	Targets int `json:"targets"`
}

// Delegations lists every delegation reachable from targets, depth
// first in the order clients search them.
func (r *Repo) Delegations() []DelegationInfo {
	if r == nil || r.Targets == nil {
		return nil
	}
	var out []DelegationInfo
	seen := map[string]bool{metadata.TARGETS: true}
	var walk func(name string, md *metadata.Metadata[metadata.TargetsType], depth int)
	walk = func(name string, md *metadata.Metadata[metadata.TargetsType], depth int) {
		if md == nil || md.Signed.Delegations == nil {
			return
		}
		dl := md.Signed.Delegations
		if dl.Roles != nil {
			for _, d := range dl.Roles {
				info := DelegationInfo{Name: d.Name, Delegator: name, Depth: depth, KeyIDs: slices.Clone(d.KeyIDs),
					Threshold: d.Threshold, Paths: slices.Clone(d.Paths), Terminating: d.Terminating}
				child := r.Delegated[d.Name]
				if child != nil {
					info.Version = child.Signed.Version
					info.Targets = len(child.Signed.Targets)
				}
				out = append(out, info)
				if child != nil && !seen[d.Name] {
					seen[d.Name] = true
					walk(d.Name, child, depth+1)
				}
			}
			return
		}
		if sr := dl.SuccinctRoles; sr != nil {
			names := sr.GetRoles()
			info := DelegationInfo{Name: sr.NamePrefix, Delegator: name, Depth: depth, KeyIDs: slices.Clone(sr.KeyIDs),
				Threshold: sr.Threshold, Terminating: true, Bins: len(names)}
			if len(names) > 0 {
				info.FirstBin, info.LastBin = names[0], names[len(names)-1]
			}
			for _, b := range names {
				if child := r.Delegated[b]; child != nil {
					info.Targets += len(child.Signed.Targets)
				}
			}
			out = append(out, info)
		}
	}
	walk(metadata.TARGETS, r.Targets, 1)
	return out
}

// roleNameTaken reports whether name (in any letter case) is a top-level
// role, a delegated role with metadata, a role some targets role
// delegates to, or a hashed bin.
func (r *Repo) roleNameTaken(name string) string {
	if isTopLevel(name) {
		return fmt.Sprintf("%q is a top-level role name", name)
	}
	lower := strings.ToLower(name)
	for _, md := range r.targetsRoles() {
		dl := md.Signed.Delegations
		if dl == nil {
			continue
		}
		for _, d := range dl.Roles {
			if strings.ToLower(d.Name) == lower {
				return fmt.Sprintf("a delegation to %q exists already", d.Name)
			}
		}
		if sr := dl.SuccinctRoles; sr != nil && (sr.IsDelegatedRole(name) || strings.EqualFold(sr.NamePrefix, name)) {
			return fmt.Sprintf("%q is taken by the hashed bins %s-*", name, sr.NamePrefix)
		}
	}
	for n := range r.Delegated {
		if strings.ToLower(n) == lower {
			return fmt.Sprintf("a delegated role %q exists already", n)
		}
	}
	return ""
}

// targetsRoles returns targets and every delegated role's metadata.
func (r *Repo) targetsRoles() []*metadata.Metadata[metadata.TargetsType] {
	out := []*metadata.Metadata[metadata.TargetsType]{r.Targets}
	for _, n := range slices.Sorted(maps.Keys(r.Delegated)) {
		out = append(out, r.Delegated[n])
	}
	return out
}

// nextVersion is the version a new role called name starts at: 1, or
// one more than the version the snapshot still lists for an earlier role
// of that name (clients refuse a lower one as a rollback).
func (r *Repo) nextVersion(name string) int64 {
	if r.Snapshot != nil {
		if m := r.Snapshot.Signed.Meta[name+".json"]; m != nil {
			return m.Version + 1
		}
	}
	return 1
}

// CheckDelegationDepth reports an error if a role delegated from from
// would lie deeper than clients search: they visit at most MaxDelegations
// delegated roles for a target, so a role at depth MaxDelegations+1
// (targets' own delegations are at depth 1) is never loaded.
func (r *Repo) CheckDelegationDepth(from string) error {
	depth := 1
	if from != metadata.TARGETS {
		depth = 0
		for _, d := range r.Delegations() {
			if d.Name == from && (depth == 0 || d.Depth+1 < depth) {
				depth = d.Depth + 1
			}
		}
		if depth == 0 {
			return nil // not delegated: the caller reports it
		}
	}
	if depth > MaxDelegations {
		return fmt.Errorf("a role delegated from %s would be at depth %d: go-tuf and tuf-js clients visit at most %d delegated roles for a target and would never load it", from, depth, MaxDelegations)
	}
	return nil
}

// delegatorFor returns the metadata of from, which must be unsigned.
func (r *Repo) delegatorFor(from string) (*metadata.Metadata[metadata.TargetsType], error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	md, err := r.targetsRole(from)
	if err != nil {
		return nil, err
	}
	if len(md.Signatures) > 0 {
		return nil, signedErr(from, md.Signed.Version)
	}
	return md, nil
}

// AddDelegation makes from ("targets" or a delegated role) delegate the
// paths of d to a new role d.Name, whose metadata starts empty and
// unsigned with the given expiry. from must not be signed yet (BumpRole
// first). A nested delegation's paths must lie inside from's own paths:
// clients never ask from about other targets.
func (r *Repo) AddDelegation(from string, d Delegation, expires time.Time) error {
	md, err := r.delegatorFor(from)
	if err != nil {
		return err
	}
	if err := CheckRoleName(d.Name); err != nil {
		return err
	}
	if err := r.CheckDelegationDepth(from); err != nil {
		return err
	}
	if taken := r.roleNameTaken(d.Name); taken != "" {
		return fmt.Errorf("cannot delegate to %q: %s (names must differ in more than letter case)", d.Name, taken)
	}
	label := fmt.Sprintf("delegation %q", d.Name)
	if err := checkPaths(d.Paths); err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	if from != metadata.TARGETS {
		if parent := r.delegator(from); parent != nil && parent.role == nil {
			return fmt.Errorf("%s is a hashed bin: rootkeeper does not delegate from a single bin (its targets are chosen by hash, not by path); delegate from %s instead", from, parent.name)
		}
		if parent := r.delegator(from); parent != nil && parent.role != nil && len(parent.role.Paths) > 0 {
			for _, p := range d.Paths {
				if ok, _ := parent.role.IsDelegatedPath(p); !ok {
					return fmt.Errorf("%s: path pattern %q lies outside %s's own paths (%s): clients would never ask %s about it",
						label, p, from, strings.Join(parent.role.Paths, ", "), from)
				}
			}
		}
	}
	ids, keys, err := checkRoleKeys(label, d.Keys, d.Threshold)
	if err != nil {
		return err
	}
	exp, err := r.checkExpiry(d.Name, expires)
	if err != nil {
		return err
	}
	dl := md.Signed.Delegations
	if dl != nil && dl.SuccinctRoles != nil {
		return fmt.Errorf("%s delegates to hashed bins (%s-*): a role delegates either to bins or to named roles (TAP 15); delegate from another role", from, dl.SuccinctRoles.NamePrefix)
	}
	if dl == nil {
		dl = &metadata.Delegations{}
		md.Signed.Delegations = dl
	}
	if dl.Keys == nil {
		dl.Keys = map[string]*metadata.Key{}
	}
	maps.Copy(dl.Keys, keys)
	dl.Roles = append(dl.Roles, metadata.DelegatedRole{
		Name: d.Name, KeyIDs: ids, Threshold: d.Threshold, Terminating: d.Terminating, Paths: slices.Clone(d.Paths),
	})
	child := newTargets(exp)
	child.Signed.Version = r.nextVersion(d.Name)
	r.stamp(&child.Signed.UnrecognizedFields)
	if r.Delegated == nil {
		r.Delegated = map[string]*metadata.Metadata[metadata.TargetsType]{}
	}
	r.Delegated[d.Name] = child
	return nil
}

// BinBits returns the bit length for n hashed bins: n must be a power of
// two from 2 to MaxBins.
func BinBits(n int) (int, error) {
	if n < 2 || n > MaxBins || n&(n-1) != 0 {
		return 0, fmt.Errorf("%d bins: the number of hashed bins must be a power of two from 2 to %d (TAP 15)", n, MaxBins)
	}
	return bits.TrailingZeros(uint(n)), nil
}

// AddHashedBins makes from delegate all its targets, by the SHA-256 of
// their path, to n hashed bins named prefix-0…, TAP 15's succinct
// delegation (the PEP 458 layout), all trusting the same keys. Every bin
// starts empty and unsigned with the given expiry. from must not be
// signed yet and must not delegate to anything else. It returns the bin
// names in order.
func (r *Repo) AddHashedBins(from, prefix string, n int, rk RoleKeys, expires time.Time) ([]string, error) {
	md, err := r.delegatorFor(from)
	if err != nil {
		return nil, err
	}
	bitLen, err := BinBits(n)
	if err != nil {
		return nil, err
	}
	if err := CheckRoleName(prefix); err != nil {
		return nil, err
	}
	if err := r.CheckDelegationDepth(from); err != nil {
		return nil, err
	}
	if dl := md.Signed.Delegations; dl != nil && (len(dl.Roles) > 0 || dl.SuccinctRoles != nil) {
		return nil, fmt.Errorf("%s already delegates to other roles: hashed bins must be its only delegation (TAP 15); remove those first or delegate the bins from a new role", from)
	}
	label := fmt.Sprintf("hashed bins %q", prefix)
	ids, keys, err := checkRoleKeys(label, rk.Keys, rk.Threshold)
	if err != nil {
		return nil, err
	}
	exp, err := r.checkExpiry(prefix, expires)
	if err != nil {
		return nil, err
	}
	sr := &metadata.SuccinctRoles{KeyIDs: ids, Threshold: rk.Threshold, BitLength: bitLen, NamePrefix: prefix}
	names := sr.GetRoles()
	if taken := r.roleNameTaken(prefix); taken != "" {
		return nil, fmt.Errorf("cannot make %s: %s", label, taken)
	}
	for _, b := range names {
		if err := CheckRoleName(b); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		if taken := r.roleNameTaken(b); taken != "" {
			return nil, fmt.Errorf("cannot make %s: bin %s: %s", label, b, taken)
		}
	}
	md.Signed.Delegations = &metadata.Delegations{Keys: keys, SuccinctRoles: sr}
	if r.Delegated == nil {
		r.Delegated = map[string]*metadata.Metadata[metadata.TargetsType]{}
	}
	for _, b := range names {
		child := newTargets(exp)
		child.Signed.Version = r.nextVersion(b)
		r.stamp(&child.Signed.UnrecognizedFields)
		r.Delegated[b] = child
	}
	return names, nil
}

// BinFor returns the hashed bin of the bins named prefix that clients
// look up targetPath in.
func (r *Repo) BinFor(prefix, targetPath string) (string, error) {
	if err := checkTargetPath(targetPath); err != nil {
		return "", err
	}
	for _, md := range r.targetsRoles() {
		if md == nil || md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
			continue
		}
		if sr := md.Signed.Delegations.SuccinctRoles; sr.NamePrefix == prefix {
			return sr.GetRolesForTarget(targetPath)[0].Name, nil
		}
	}
	return "", fmt.Errorf("no hashed bins named %q (rootkeeper delegate list shows the delegations)", prefix)
}

// RemoveDelegation removes the delegation to name (a delegated role, or
// the name prefix of hashed bins) from its delegator, which must not be
// signed yet (BumpRole it first), and forgets the metadata of every role
// no longer reachable from targets. Snapshot keeps listing them (clients
// refuse a snapshot that drops an entry). It returns the delegator and
// the roles removed, in name order.
func (r *Repo) RemoveDelegation(name string) (string, []string, error) {
	if err := r.check(); err != nil {
		return "", nil, err
	}
	var (
		from string
		md   *metadata.Metadata[metadata.TargetsType]
	)
	for _, n := range append([]string{metadata.TARGETS}, slices.Sorted(maps.Keys(r.Delegated))...) {
		cand, _ := r.targetsRole(n)
		if cand == nil || cand.Signed.Delegations == nil {
			continue
		}
		dl := cand.Signed.Delegations
		if slices.ContainsFunc(dl.Roles, func(d metadata.DelegatedRole) bool { return d.Name == name }) ||
			(dl.SuccinctRoles != nil && dl.SuccinctRoles.NamePrefix == name) {
			from, md = n, cand
			break
		}
	}
	if md == nil {
		return "", nil, fmt.Errorf("no role delegates to %q (rootkeeper delegate list shows the delegations)", name)
	}
	if len(md.Signatures) > 0 {
		return "", nil, signedErr(from, md.Signed.Version)
	}
	dl := md.Signed.Delegations
	if dl.SuccinctRoles != nil && dl.SuccinctRoles.NamePrefix == name {
		md.Signed.Delegations = nil
	} else {
		dl.Roles = slices.DeleteFunc(dl.Roles, func(d metadata.DelegatedRole) bool { return d.Name == name })
		if len(dl.Roles) == 0 {
			md.Signed.Delegations = nil
		} else {
			used := map[string]bool{}
			for _, d := range dl.Roles {
				for _, id := range d.KeyIDs {
					used[id] = true
				}
			}
			maps.DeleteFunc(dl.Keys, func(id string, _ *metadata.Key) bool { return !used[id] })
		}
	}
	reach := r.reachable()
	var removed []string
	for _, n := range slices.Sorted(maps.Keys(r.Delegated)) {
		if !reach[n] {
			removed = append(removed, n)
			delete(r.Delegated, n)
		}
	}
	return from, removed, nil
}

// reachable returns the delegated roles clients can reach from targets.
func (r *Repo) reachable() map[string]bool {
	seen := map[string]bool{}
	queue := []*metadata.Metadata[metadata.TargetsType]{r.Targets}
	for len(queue) > 0 {
		md := queue[0]
		queue = queue[1:]
		if md == nil || md.Signed.Delegations == nil {
			continue
		}
		dl := md.Signed.Delegations
		var kids []string
		if dl.Roles != nil {
			for _, d := range dl.Roles {
				kids = append(kids, d.Name)
			}
		} else if dl.SuccinctRoles != nil {
			kids = dl.SuccinctRoles.GetRoles()
		}
		for _, k := range kids {
			if child, ok := r.Delegated[k]; ok && !seen[k] {
				seen[k] = true
				queue = append(queue, child)
			}
		}
	}
	return seen
}
