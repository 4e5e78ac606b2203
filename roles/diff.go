package roles

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// What a Diff line says changed.
const (
	DiffVersion           = "version"
	DiffExpires           = "expires"
	DiffConsistent        = "consistent-snapshot"
	DiffKeyAdded          = "key-added"
	DiffKeyRemoved        = "key-removed"
	DiffThreshold         = "threshold"
	DiffDelegationAdded   = "delegation-added"
	DiffDelegationRemoved = "delegation-removed"
	DiffDelegationPaths   = "delegation-paths"
	DiffDelegationTerm    = "delegation-terminating"
	DiffBins              = "hashed-bins"
	DiffTargetAdded       = "target-added"
	DiffTargetRemoved     = "target-removed"
	DiffTargetChanged     = "target-changed"
	DiffMeta              = "meta"

	diffTimeLayout = time.RFC3339
	diffNewRole    = "(new)"
)

// DiffLine is one change between two versions of a role, in plain words.
type DiffLine struct {
	Kind string `json:"kind"`
	// Role is the role whose keys or threshold changed (root lists the
	// four top-level roles; targets its delegations), or empty.
	Role   string            `json:"role,omitempty"`
	KeyID  string            `json:"keyid,omitempty"`
	Scheme string            `json:"scheme,omitempty"`
	Target string            `json:"target,omitempty"`
	Length int64             `json:"length,omitempty"`
	Hashes map[string]string `json:"hashes,omitempty"`
	Paths  []string          `json:"paths,omitempty"`
	Old    string            `json:"old,omitempty"`
	New    string            `json:"new,omitempty"`
}

// Diff is what a new version of a role changes against the previous one.
type Diff struct {
	Role       string     `json:"role"`
	OldVersion int64      `json:"old_version,omitempty"` // 0: a new role
	NewVersion int64      `json:"new_version"`
	Lines      []DiffLine `json:"changes"`
}

func (d *Diff) add(l DiffLine) { d.Lines = append(d.Lines, l) }

func (d *Diff) common(oldV, newV int64, oldE, newE time.Time) {
	d.OldVersion, d.NewVersion = oldV, newV
	if oldV != newV {
		d.add(DiffLine{Kind: DiffVersion, Old: versionText(oldV), New: fmt.Sprint(newV)})
	}
	if !oldE.Equal(newE) {
		d.add(DiffLine{Kind: DiffExpires, Old: timeText(oldE), New: timeText(newE)})
	}
}

func versionText(v int64) string {
	if v == 0 {
		return diffNewRole
	}
	return fmt.Sprint(v)
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(diffTimeLayout)
}

// DiffRoot compares two root versions; old nil means a new repository.
func DiffRoot(old, cur *metadata.RootType) Diff {
	d := Diff{Role: metadata.ROOT}
	if old == nil {
		old = &metadata.RootType{}
	}
	d.common(old.Version, cur.Version, old.Expires, cur.Expires)
	if old.ConsistentSnapshot != cur.ConsistentSnapshot && old.Version != 0 {
		d.add(DiffLine{Kind: DiffConsistent, Old: fmt.Sprint(old.ConsistentSnapshot), New: fmt.Sprint(cur.ConsistentSnapshot)})
	}
	for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
		var o, n *metadata.Role
		if old.Roles != nil {
			o = old.Roles[name]
		}
		n = cur.Roles[name]
		d.keySet(name, roleIDs(o), roleIDs(n), old.Keys, cur.Keys)
		d.threshold(name, o, n)
	}
	return d
}

func roleIDs(r *metadata.Role) []string {
	if r == nil {
		return nil
	}
	return r.KeyIDs
}

func (d *Diff) threshold(name string, o, n *metadata.Role) {
	ot, nt := 0, 0
	if o != nil {
		ot = o.Threshold
	}
	if n != nil {
		nt = n.Threshold
	}
	if ot != nt || len(roleIDs(o)) != len(roleIDs(n)) {
		d.add(DiffLine{Kind: DiffThreshold, Role: name, Old: thresholdText(ot, len(roleIDs(o))), New: thresholdText(nt, len(roleIDs(n)))})
	}
}

func thresholdText(t, n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d of %d", t, n)
}

// keySet adds a line for every key id added to or removed from role.
func (d *Diff) keySet(role string, oldIDs, newIDs []string, oldKeys, newKeys map[string]*metadata.Key) {
	for _, id := range newIDs {
		if !slices.Contains(oldIDs, id) {
			d.add(DiffLine{Kind: DiffKeyAdded, Role: role, KeyID: id, Scheme: schemeOf(newKeys[id])})
		}
	}
	for _, id := range oldIDs {
		if !slices.Contains(newIDs, id) {
			d.add(DiffLine{Kind: DiffKeyRemoved, Role: role, KeyID: id, Scheme: schemeOf(oldKeys[id])})
		}
	}
}

func schemeOf(k *metadata.Key) string {
	if k == nil {
		return ""
	}
	return k.Scheme
}

// DiffTargets compares two versions of a targets role (targets or
// delegated); old nil means a new role.
func DiffTargets(role string, old, cur *metadata.TargetsType) Diff {
	d := Diff{Role: role}
	if old == nil {
		old = &metadata.TargetsType{}
	}
	d.common(old.Version, cur.Version, old.Expires, cur.Expires)
	d.delegations(old.Delegations, cur.Delegations)
	d.targets(old.Targets, cur.Targets)
	return d
}

func (d *Diff) targets(old, cur map[string]*metadata.TargetFiles) {
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		o, had := old[name]
		n := cur[name]
		switch {
		case !had:
			d.add(DiffLine{Kind: DiffTargetAdded, Target: name, Length: n.Length, Hashes: hashText(n.Hashes)})
		case !sameTarget(o, n):
			d.add(DiffLine{Kind: DiffTargetChanged, Target: name, Length: n.Length, Hashes: hashText(n.Hashes),
				Old: targetText(o), New: targetText(n)})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if _, ok := cur[name]; !ok {
			o := old[name]
			d.add(DiffLine{Kind: DiffTargetRemoved, Target: name, Length: o.Length, Hashes: hashText(o.Hashes)})
		}
	}
}

func hashText(h metadata.Hashes) map[string]string {
	out := map[string]string{}
	for alg, v := range h {
		out[alg] = v.String()
	}
	return out
}

func targetText(t *metadata.TargetFiles) string {
	h := hashText(t.Hashes)
	parts := []string{fmt.Sprintf("%d bytes", t.Length)}
	for _, alg := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, alg+" "+h[alg])
	}
	return strings.Join(parts, ", ")
}

func sameTarget(a, b *metadata.TargetFiles) bool {
	if a.Length != b.Length || len(a.Hashes) != len(b.Hashes) || rawText(a.Custom) != rawText(b.Custom) {
		return false
	}
	for alg, h := range a.Hashes {
		if b.Hashes[alg].String() != h.String() {
			return false
		}
	}
	return true
}

func rawText(m *json.RawMessage) string {
	if m == nil {
		return ""
	}
	return string(*m)
}

// delegations compares the delegations of two targets versions: roles
// added and removed with their keys, threshold and paths; keys,
// thresholds, paths and terminating of roles in both; hashed bins.
func (d *Diff) delegations(old, cur *metadata.Delegations) {
	if old == nil {
		old = &metadata.Delegations{}
	}
	if cur == nil {
		cur = &metadata.Delegations{}
	}
	oldRoles := delegatedByName(old.Roles)
	for _, r := range cur.Roles {
		o, had := oldRoles[r.Name]
		if !had {
			d.add(DiffLine{Kind: DiffDelegationAdded, Role: r.Name, Paths: delegatedPaths(r), New: thresholdText(r.Threshold, len(r.KeyIDs))})
			d.keySet(r.Name, nil, r.KeyIDs, nil, cur.Keys)
			continue
		}
		d.keySet(r.Name, o.KeyIDs, r.KeyIDs, old.Keys, cur.Keys)
		if o.Threshold != r.Threshold || len(o.KeyIDs) != len(r.KeyIDs) {
			d.add(DiffLine{Kind: DiffThreshold, Role: r.Name, Old: thresholdText(o.Threshold, len(o.KeyIDs)), New: thresholdText(r.Threshold, len(r.KeyIDs))})
		}
		if op, np := delegatedPaths(o), delegatedPaths(r); !slices.Equal(op, np) {
			d.add(DiffLine{Kind: DiffDelegationPaths, Role: r.Name, Paths: np, Old: strings.Join(op, ", "), New: strings.Join(np, ", ")})
		}
		if o.Terminating != r.Terminating {
			d.add(DiffLine{Kind: DiffDelegationTerm, Role: r.Name, Old: fmt.Sprint(o.Terminating), New: fmt.Sprint(r.Terminating)})
		}
	}
	curRoles := delegatedByName(cur.Roles)
	for _, o := range old.Roles {
		if _, ok := curRoles[o.Name]; !ok {
			d.add(DiffLine{Kind: DiffDelegationRemoved, Role: o.Name, Paths: delegatedPaths(o), Old: thresholdText(o.Threshold, len(o.KeyIDs))})
			d.keySet(o.Name, o.KeyIDs, nil, old.Keys, nil)
		}
	}
	d.bins(old, cur)
}

func (d *Diff) bins(old, cur *metadata.Delegations) {
	o, n := old.SuccinctRoles, cur.SuccinctRoles
	switch {
	case o == nil && n == nil:
		return
	case o == nil:
		d.add(DiffLine{Kind: DiffBins, Role: n.NamePrefix, New: binsText(n)})
		d.keySet(n.NamePrefix, nil, n.KeyIDs, nil, cur.Keys)
	case n == nil:
		d.add(DiffLine{Kind: DiffBins, Role: o.NamePrefix, Old: binsText(o)})
		d.keySet(o.NamePrefix, o.KeyIDs, nil, old.Keys, nil)
	default:
		if binsText(o) != binsText(n) {
			d.add(DiffLine{Kind: DiffBins, Role: n.NamePrefix, Old: binsText(o), New: binsText(n)})
		}
		d.keySet(n.NamePrefix, o.KeyIDs, n.KeyIDs, old.Keys, cur.Keys)
	}
}

func binsText(s *metadata.SuccinctRoles) string {
	return fmt.Sprintf("%d bins %s-*, %s", 1<<s.BitLength, s.NamePrefix, thresholdText(s.Threshold, len(s.KeyIDs)))
}

func delegatedByName(rs []metadata.DelegatedRole) map[string]metadata.DelegatedRole {
	out := map[string]metadata.DelegatedRole{}
	for _, r := range rs {
		out[r.Name] = r
	}
	return out
}

func delegatedPaths(r metadata.DelegatedRole) []string {
	if len(r.Paths) > 0 {
		return slices.Clone(r.Paths)
	}
	out := make([]string, 0, len(r.PathHashPrefixes))
	for _, p := range r.PathHashPrefixes {
		out = append(out, "hash prefix "+p)
	}
	return out
}

// DiffSnapshot compares two snapshot versions: the versions they list.
func DiffSnapshot(old, cur *metadata.SnapshotType) Diff {
	d := Diff{Role: metadata.SNAPSHOT}
	if old == nil {
		old = &metadata.SnapshotType{}
	}
	d.common(old.Version, cur.Version, old.Expires, cur.Expires)
	d.meta(old.Meta, cur.Meta)
	return d
}

// DiffTimestamp compares two timestamp versions.
func DiffTimestamp(old, cur *metadata.TimestampType) Diff {
	d := Diff{Role: metadata.TIMESTAMP}
	if old == nil {
		old = &metadata.TimestampType{}
	}
	d.common(old.Version, cur.Version, old.Expires, cur.Expires)
	d.meta(old.Meta, cur.Meta)
	return d
}

func (d *Diff) meta(old, cur map[string]*metadata.MetaFiles) {
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		o, n := old[name], cur[name]
		if n == nil || (o != nil && o.Version == n.Version) {
			continue
		}
		ov := int64(0)
		if o != nil {
			ov = o.Version
		}
		d.add(DiffLine{Kind: DiffMeta, Target: name, Old: versionText(ov), New: fmt.Sprint(n.Version)})
	}
}

// String is the line for people, without the evidence of keys (the
// caller adds what it knows about devices).
func (l DiffLine) String() string {
	switch l.Kind {
	case DiffVersion:
		return fmt.Sprintf("version %s → %s", l.Old, l.New)
	case DiffExpires:
		if l.Old == "" {
			return "expires " + l.New
		}
		return fmt.Sprintf("expires %s (was %s)", l.New, l.Old)
	case DiffConsistent:
		return fmt.Sprintf("consistent snapshots %s (was %s)", l.New, l.Old)
	case DiffKeyAdded:
		return fmt.Sprintf("%s: key added   %s (%s)", l.Role, short(l.KeyID), l.Scheme)
	case DiffKeyRemoved:
		return fmt.Sprintf("%s: key removed %s (%s)", l.Role, short(l.KeyID), l.Scheme)
	case DiffThreshold:
		return fmt.Sprintf("%s: threshold %s (was %s)", l.Role, orNone(l.New), orNone(l.Old))
	case DiffDelegationAdded:
		return fmt.Sprintf("delegation added %s for %s, %s", l.Role, strings.Join(l.Paths, ", "), l.New)
	case DiffDelegationRemoved:
		return fmt.Sprintf("delegation removed %s (was for %s, %s)", l.Role, strings.Join(l.Paths, ", "), l.Old)
	case DiffDelegationPaths:
		return fmt.Sprintf("%s: paths %s (was %s)", l.Role, l.New, l.Old)
	case DiffDelegationTerm:
		return fmt.Sprintf("%s: terminating %s (was %s)", l.Role, l.New, l.Old)
	case DiffBins:
		return fmt.Sprintf("hashed bins %s (was %s)", orNone(l.New), orNone(l.Old))
	case DiffTargetAdded:
		return fmt.Sprintf("target added   %s (%s)", l.Target, targetLine(l))
	case DiffTargetRemoved:
		return fmt.Sprintf("target removed %s (%s)", l.Target, targetLine(l))
	case DiffTargetChanged:
		return fmt.Sprintf("target changed %s (%s; was %s)", l.Target, targetLine(l), l.Old)
	case DiffMeta:
		return fmt.Sprintf("lists %s version %s (was %s)", l.Target, l.New, l.Old)
	}
	return l.Kind
}

func targetLine(l DiffLine) string {
	parts := []string{fmt.Sprintf("%d bytes", l.Length)}
	for _, alg := range slices.Sorted(maps.Keys(l.Hashes)) {
		parts = append(parts, alg+" "+l.Hashes[alg])
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
