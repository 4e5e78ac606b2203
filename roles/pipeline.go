package roles

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The lookups and the signature handling of the change pipeline
// (ceremony/change.go): what a role's signatures cover, who may sign it,
// attaching a signature made elsewhere.

// Payload returns the canonical JSON of role's signed part: the bytes a
// signature covers. For root, the newest root.
func (r *Repo) Payload(role string) ([]byte, error) {
	var signed any
	switch role {
	case metadata.ROOT:
		signed = r.Root().Signed
	case metadata.SNAPSHOT:
		signed = r.Snapshot.Signed
	case metadata.TIMESTAMP:
		signed = r.Timestamp.Signed
	default:
		md, err := r.TargetsRole(role)
		if err != nil {
			return nil, err
		}
		signed = md.Signed
	}
	b, err := cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot encode as canonical JSON: %w", role, err)
	}
	return b, nil
}

// Signatures returns the signatures role's metadata carries now.
func (r *Repo) Signatures(role string) []metadata.Signature {
	switch role {
	case metadata.ROOT:
		return r.Root().Signatures
	case metadata.SNAPSHOT:
		return r.Snapshot.Signatures
	case metadata.TIMESTAMP:
		return r.Timestamp.Signatures
	}
	if md, err := r.TargetsRole(role); err == nil {
		return md.Signatures
	}
	return nil
}

// Attach adds a signature by keyID to role's metadata, replacing an
// older one by the same key. The caller has verified it.
func (r *Repo) Attach(role, keyID string, sig []byte) error {
	s := metadata.Signature{KeyID: keyID, Signature: sig}
	put := func(sigs []metadata.Signature) []metadata.Signature {
		sigs = slices.DeleteFunc(sigs, func(o metadata.Signature) bool { return o.KeyID == keyID })
		return append(sigs, s)
	}
	switch role {
	case metadata.ROOT:
		r.Root().Signatures = put(r.Root().Signatures)
	case metadata.SNAPSHOT:
		r.Snapshot.Signatures = put(r.Snapshot.Signatures)
	case metadata.TIMESTAMP:
		r.Timestamp.Signatures = put(r.Timestamp.Signatures)
	default:
		md, err := r.TargetsRole(role)
		if err != nil {
			return err
		}
		md.Signatures = put(md.Signatures)
	}
	return nil
}

// TargetsRole returns the metadata of a targets role: top-level targets,
// a delegated role or a hashed bin.
func (r *Repo) TargetsRole(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	return r.targetsRole(role)
}

// RoleKeyIDs returns the key ids role's delegator trusts for it and the
// threshold (RoleKeysOf, as ids).
func (r *Repo) RoleKeyIDs(role string) ([]string, int, error) {
	rk, err := r.RoleKeysOf(role)
	if err != nil {
		return nil, 0, err
	}
	ids := make([]string, 0, len(rk.Keys))
	for _, k := range rk.Keys {
		id, err := KeyID(k)
		if err != nil {
			return nil, 0, err
		}
		ids = append(ids, id)
	}
	return ids, rk.Threshold, nil
}

// PreviousRootKeys returns the root keys and threshold of the root before
// the newest, and false for a repository with one root version.
func (r *Repo) PreviousRootKeys() (RoleKeys, bool) {
	if len(r.Roots) < 2 {
		return RoleKeys{}, false
	}
	prev := r.Roots[len(r.Roots)-2].Signed
	rl := prev.Roles[metadata.ROOT]
	rk := RoleKeys{Threshold: rl.Threshold}
	for _, id := range rl.KeyIDs {
		if k, ok := prev.Keys[id]; ok {
			rk.Keys = append(rk.Keys, copyKey(k))
		}
	}
	return rk, true
}

// PathError reports a target path a delegated role is not trusted for.
type PathError struct {
	Role, Target string
	Paths        []string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("role %s is not trusted for %q (its paths are %s)", e.Role, e.Target, strings.Join(e.Paths, ", "))
}

// Covers checks that clients would look for targetPath in role: top-level
// targets covers everything, a delegated role its delegation's paths (a
// *PathError otherwise), a hashed bin the paths whose hash falls in it.
func (r *Repo) Covers(role, targetPath string) error {
	if role == metadata.TARGETS {
		return nil
	}
	d := r.delegator(role)
	if d == nil {
		return r.unknownRole(role)
	}
	if d.covers(role, targetPath) {
		return nil
	}
	if d.role == nil {
		return fmt.Errorf("target %q does not belong in hashed bin %s", targetPath, role)
	}
	return &PathError{Role: role, Target: targetPath, Paths: slices.Clone(d.role.Paths)}
}

// Fingerprint identifies a key's material whatever its keytype and scheme
// strings: the same public key under two key ids has one fingerprint.
func Fingerprint(k *metadata.Key) (string, error) {
	pub, err := CryptoPublicKey(k)
	if err != nil {
		return "", err
	}
	return fingerprint(pub)
}

// Loaded returns the SHA-256 (hex) of each metadata file Load read, by
// path: the state a change is planned on.
func (r *Repo) Loaded() map[string]string {
	out := make(map[string]string, len(r.raw))
	for _, p := range slices.Sorted(maps.Keys(r.raw)) {
		sum := sha256.Sum256(r.raw[p].data)
		out[p] = hex.EncodeToString(sum[:])
	}
	return out
}

// Assemble is a new repository made elsewhere (a bootstrap through a
// signing bundle): version 1 of root, targets and the delegated roles as
// given, unsigned, and snapshot and timestamp v1 made for them, unsigned
// (UpdateSnapshot and UpdateTimestamp then set them in place).
func Assemble(root metadata.RootType, targets metadata.TargetsType, delegated map[string]metadata.TargetsType, snapshotExpires, timestampExpires time.Time) (*Repo, error) {
	if root.Version != 1 || targets.Version != 1 {
		return nil, fmt.Errorf("a new repository starts at version 1 (root v%d, targets v%d)", root.Version, targets.Version)
	}
	r := &Repo{
		Roots:     []*metadata.Metadata[metadata.RootType]{{Signed: root, Signatures: []metadata.Signature{}}},
		Targets:   &metadata.Metadata[metadata.TargetsType]{Signed: targets, Signatures: []metadata.Signature{}},
		Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		raw:       map[string]rawFile{},
	}
	meta := map[string]*metadata.MetaFiles{"targets.json": {Version: 1}}
	for name, d := range delegated {
		if d.Version != 1 {
			return nil, fmt.Errorf("a new repository starts at version 1 (%s v%d)", name, d.Version)
		}
		r.Delegated[name] = &metadata.Metadata[metadata.TargetsType]{Signed: d, Signatures: []metadata.Signature{}}
		meta[name+".json"] = &metadata.MetaFiles{Version: 1}
	}
	r.Snapshot = &metadata.Metadata[metadata.SnapshotType]{Signed: metadata.SnapshotType{Type: metadata.SNAPSHOT, SpecVersion: metadata.SPECIFICATION_VERSION,
		Version: 1, Expires: normTime(snapshotExpires), Meta: meta}, Signatures: []metadata.Signature{}}
	r.Timestamp = &metadata.Metadata[metadata.TimestampType]{Signed: metadata.TimestampType{Type: metadata.TIMESTAMP, SpecVersion: metadata.SPECIFICATION_VERSION,
		Version: 1, Expires: normTime(timestampExpires), Meta: map[string]*metadata.MetaFiles{"snapshot.json": {Version: 1}}}, Signatures: []metadata.Signature{}}
	return r, r.check()
}
