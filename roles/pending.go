package roles

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Pending is the part of a repository that new, not yet published
// metadata is checked against when no repository is at hand (a signing
// bundle on an offline machine): the root chain and the targets roles that
// delegate, each in its newest state — the new version where the change
// makes one, the published one otherwise.
type Pending struct {
	// Roots is the root chain from version 1, newest last. When the change
	// makes a new root, it is last and the published root before it.
	Roots []*metadata.Metadata[metadata.RootType]
	// Targets is the top-level targets role, or nil when the change needs
	// none (a root-only change).
	Targets *metadata.Metadata[metadata.TargetsType]
	// Delegated are the delegated targets roles known, by name.
	Delegated map[string]*metadata.Metadata[metadata.TargetsType]
}

// Needed is Repo.Needed for a role of the pending state: the thresholds a
// version of role with these signatures over payload (its canonical
// signed bytes) must meet, and the keys they name. For root it is the
// newest root's own rule and the previous root's (TUF 5.3.4).
func (p *Pending) Needed(role string, payload []byte, sigs []metadata.Signature) ([]Requirement, map[string]*metadata.Key, error) {
	if len(p.Roots) == 0 {
		return nil, nil, errors.New("no root: a role cannot be checked without the root that trusts it")
	}
	root := p.Roots[len(p.Roots)-1]
	from := rootLabel(root)
	switch role {
	case metadata.ROOT:
		keys := maps.Clone(root.Signed.Keys)
		reqs := []Requirement{requirement(nil, from, root.Signed.Keys, root.Signed.Roles[metadata.ROOT], sigs, payload)}
		if len(p.Roots) > 1 {
			prev := p.Roots[len(p.Roots)-2]
			reqs = append(reqs, requirement(nil, rootLabel(prev), prev.Signed.Keys, prev.Signed.Roles[metadata.ROOT], sigs, payload))
			for id, k := range prev.Signed.Keys {
				if slices.Contains(prev.Signed.Roles[metadata.ROOT].KeyIDs, id) {
					keys[id] = k
				}
			}
		}
		return reqs, keys, nil
	case metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP:
		rl := root.Signed.Roles[role]
		if rl == nil {
			return nil, nil, fmt.Errorf("%s defines no role %s", from, role)
		}
		return []Requirement{requirement(nil, from, root.Signed.Keys, rl, sigs, payload)}, root.Signed.Keys, nil
	}
	r := &Repo{Targets: p.Targets, Delegated: p.Delegated}
	if r.Targets == nil {
		r.Targets = &metadata.Metadata[metadata.TargetsType]{}
	}
	d := r.delegator(role)
	if d == nil {
		return nil, nil, fmt.Errorf("no role the change carries delegates to %q", role)
	}
	keys, ids, threshold := d.keys()
	q := Requirement{From: fmt.Sprintf("%s v%d", d.name, d.md.Signed.Version), KeyIDs: slices.Clone(ids), Threshold: threshold}
	q.Have, _ = countValid(nil, sigs, payload, keys, ids)
	return []Requirement{q}, keys, nil
}

// SignedBy checks that md, the published version of a targets role that
// delegates, carries the signatures the pending state requires of it.
func (p *Pending) SignedBy(role string, md *metadata.Metadata[metadata.TargetsType]) error {
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return err
	}
	reqs, _, err := p.Needed(role, payload, md.Signatures)
	if err != nil {
		return err
	}
	for _, q := range reqs {
		if !q.Met() {
			return fmt.Errorf("%s v%d has %d of the %d signatures %s requires", role, md.Signed.Version, q.Have, q.Threshold, q.From)
		}
	}
	return nil
}

// RootChain parses a root chain (1.root.json first) and checks it as a
// client shipped with the first root would follow it: each root signed by
// the threshold of the one before and its own, versions in order. Expiry
// is not checked (a client walks through expired roots).
func RootChain(files [][]byte) ([]*metadata.Metadata[metadata.RootType], error) {
	if len(files) == 0 {
		return nil, errors.New("no root metadata")
	}
	if err := followRoots(NewCache(), files, 0, time.Now()); err != nil {
		return nil, fmt.Errorf("the root chain does not verify: %w", err)
	}
	out := make([]*metadata.Metadata[metadata.RootType], len(files))
	for i, data := range files {
		md, err := parse[metadata.RootType](data)
		if err != nil {
			return nil, fmt.Errorf("root v%d: %w", i+1, err)
		}
		if md.Signed.Version != int64(i+1) {
			return nil, fmt.Errorf("root file %d of the chain is root v%d", i+1, md.Signed.Version)
		}
		out[i] = md
	}
	return out, nil
}

// ParseRoot, ParseTargets, ParseSnapshot and ParseTimestamp parse one
// metadata file strictly (its type must match).
func ParseRoot(data []byte) (*metadata.Metadata[metadata.RootType], error) {
	return parse[metadata.RootType](data)
}

// ParseTargets parses targets metadata (top-level or delegated).
func ParseTargets(data []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	return parse[metadata.TargetsType](data)
}

// MetadataPath is where the metadata of role at version is written:
// N.root.json; timestamp.json; N.ROLE.json with consistent snapshots,
// ROLE.json without.
func MetadataPath(role string, version int64, consistent bool) string {
	switch role {
	case metadata.ROOT:
		return rootPath(version)
	case metadata.TIMESTAMP:
		return timestampPath()
	}
	return rolePath(role, version, consistent)
}

// KeyFingerprint identifies a key's material regardless of how its
// keytype is spelled: two key ids with one fingerprint are one key.
func KeyFingerprint(k *metadata.Key) (string, error) {
	pub, err := CryptoPublicKey(k)
	if err != nil {
		return "", err
	}
	return fingerprint(pub)
}

// DelegatorOf names the role that delegates to a delegated role ("targets"
// or another delegated role), or "" when none does.
func (r *Repo) DelegatorOf(role string) string {
	if d := r.delegator(role); d != nil {
		return d.name
	}
	return ""
}
