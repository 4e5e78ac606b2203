package roles

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Trust is one role that a key may sign, in the current state.
type Trust struct {
	// Role is "root", "targets", "snapshot", "timestamp", a delegated
	// role, or the name prefix of hashed bins.
	Role string `json:"role"`
	// Delegator is "root" for the top-level roles, else the targets role
	// that delegates.
	Delegator string `json:"delegator"`
	// From names the metadata that sets the rule: "root v3", "targets v7".
	From      string   `json:"from"`
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
	// Bins lists every bin role of hashed bins.
	Bins []string `json:"bins,omitempty"`
}

// Trusting lists every role keyID may sign: the top-level roles of the
// newest root, then every delegation reachable from targets (nested
// ones and hashed bins too), in the order Delegations lists them.
func (r *Repo) Trusting(keyID string) []Trust {
	if r.check() != nil {
		return nil
	}
	var out []Trust
	root := r.Root()
	for _, name := range metadata.TOP_LEVEL_ROLE_NAMES {
		rl := root.Signed.Roles[name]
		if rl != nil && slices.Contains(rl.KeyIDs, keyID) {
			out = append(out, Trust{Role: name, Delegator: metadata.ROOT, From: rootLabel(root),
				KeyIDs: slices.Clone(rl.KeyIDs), Threshold: rl.Threshold})
		}
	}
	for _, d := range r.Delegations() {
		if !slices.Contains(d.KeyIDs, keyID) {
			continue
		}
		t := Trust{Role: d.Name, Delegator: d.Delegator, KeyIDs: d.KeyIDs, Threshold: d.Threshold}
		if md, err := r.targetsRole(d.Delegator); err == nil {
			t.From = fmt.Sprintf("%s v%d", d.Delegator, md.Signed.Version)
			if d.Bins > 0 && md.Signed.Delegations != nil && md.Signed.Delegations.SuccinctRoles != nil {
				t.Bins = md.Signed.Delegations.SuccinctRoles.GetRoles()
			}
		}
		out = append(out, t)
	}
	return out
}

// allKeys returns every key the newest root and the reachable
// delegations define, by id.
func (r *Repo) allKeys() map[string]*metadata.Key {
	keys := map[string]*metadata.Key{}
	if r.check() != nil {
		return keys
	}
	maps.Copy(keys, r.Root().Signed.Keys)
	if dl := r.Targets.Signed.Delegations; dl != nil {
		maps.Copy(keys, dl.Keys)
	}
	for name := range r.reachable() {
		if md := r.Delegated[name]; md != nil && md.Signed.Delegations != nil {
			maps.Copy(keys, md.Signed.Delegations.Keys)
		}
	}
	return keys
}

// Key returns the key with id keyID as the repository defines it.
func (r *Repo) Key(keyID string) (*metadata.Key, bool) {
	k, ok := r.allKeys()[keyID]
	if !ok {
		return nil, false
	}
	return copyKey(k), true
}

var hexRE = regexp.MustCompile(`^[0-9a-f]+$`)

// MinKeyIDPrefix is the shortest key id prefix ResolveKeyID accepts.
const MinKeyIDPrefix = 8

// ResolveKeyID finds the key id that s names: a whole key id, or a
// prefix of at least MinKeyIDPrefix hex digits that only one key of the
// repository (newest root and every delegation) has.
func (r *Repo) ResolveKeyID(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if !hexRE.MatchString(s) {
		return "", fmt.Errorf("%q is not a key id (64 hex digits, or a unique prefix of at least %d)", s, MinKeyIDPrefix)
	}
	keys := r.allKeys()
	if _, ok := keys[s]; ok {
		return s, nil
	}
	if len(s) < MinKeyIDPrefix {
		return "", fmt.Errorf("key id prefix %q is too short: give at least %d hex digits", s, MinKeyIDPrefix)
	}
	var found []string
	for id := range keys {
		if strings.HasPrefix(id, s) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no key of the repository has an id starting with %s: %w", s, ErrUnknownKey)
	case 1:
		return found[0], nil
	}
	slices.Sort(found)
	return "", fmt.Errorf("key id prefix %s names %d keys (%s): give more digits", s, len(found), shortList(found))
}

// ErrUnknownKey reports a key the repository does not define.
var ErrUnknownKey = errors.New("unknown key")

// RoleKeysOf returns the keys and threshold role has now: for a
// top-level role from the newest root, for a delegated role or a hashed
// bin from its delegator. The keys are copies.
func (r *Repo) RoleKeysOf(role string) (RoleKeys, error) {
	if err := r.check(); err != nil {
		return RoleKeys{}, err
	}
	var (
		keys      map[string]*metadata.Key
		ids       []string
		threshold int
	)
	if isTopLevel(role) {
		root := r.Root().Signed
		rl := root.Roles[role]
		if rl == nil {
			return RoleKeys{}, fmt.Errorf("root v%d defines no %s role", root.Version, role)
		}
		keys, ids, threshold = root.Keys, rl.KeyIDs, rl.Threshold
	} else {
		d := r.delegator(role)
		if d == nil {
			return RoleKeys{}, r.unknownRole(role)
		}
		keys, ids, threshold = d.keys()
	}
	rk := RoleKeys{Threshold: threshold}
	for _, id := range ids {
		k, ok := keys[id]
		if !ok {
			return RoleKeys{}, fmt.Errorf("%s lists key %s, which is not defined", role, short(id))
		}
		rk.Keys = append(rk.Keys, copyKey(k))
	}
	return rk, nil
}

// ValidSigners returns the ids of the keys role trusts whose signature on
// the role's current metadata verifies. For root, the keys of the newest
// root's own rule.
func (r *Repo) ValidSigners(role string) ([]string, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var (
		signed any
		sigs   []metadata.Signature
	)
	switch role {
	case metadata.ROOT:
		signed, sigs = r.Root().Signed, r.Root().Signatures
	case metadata.SNAPSHOT:
		signed, sigs = r.Snapshot.Signed, r.Snapshot.Signatures
	case metadata.TIMESTAMP:
		signed, sigs = r.Timestamp.Signed, r.Timestamp.Signatures
	default:
		md, err := r.targetsRole(role)
		if err != nil {
			return nil, err
		}
		signed, sigs = md.Signed, md.Signatures
	}
	rk, err := r.RoleKeysOf(role)
	if err != nil {
		return nil, err
	}
	payload, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, err
	}
	keys := map[string]*metadata.Key{}
	var ids []string
	for _, k := range rk.Keys {
		id, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		keys[id] = k
		ids = append(ids, id)
	}
	var out []string
	for _, id := range ids {
		for _, s := range sigs {
			if s.KeyID == id && verifySignature(keys[id], payload, s.Signature, false) == nil {
				out = append(out, id)
				break
			}
		}
	}
	return out, nil
}

// DropTargets removes every target a targets role lists (its
// delegations stay). The role must not be signed yet. It returns how
// many targets were dropped.
func (r *Repo) DropTargets(role string) (int, error) {
	md, err := r.targetsRole(role)
	if err != nil {
		return 0, err
	}
	if len(md.Signatures) > 0 {
		return 0, signedErr(role, md.Signed.Version)
	}
	n := len(md.Signed.Targets)
	md.Signed.Targets = map[string]*metadata.TargetFiles{}
	return n, nil
}

// KeyIDs lists every key id the newest root and the reachable
// delegations define, sorted.
func (r *Repo) KeyIDs() []string {
	return slices.Sorted(maps.Keys(r.allKeys()))
}
