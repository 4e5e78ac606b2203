package roles

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// External targets: content that lives elsewhere — in Docker Content Trust,
// an image manifest in a registry — signed by its length and hashes only.
// The repository holds no file for them under targets/; clients fetch the
// content from where it lives and check it against the signed metadata, so
// only the metadata of such a target is verified here.
//
// A target is external when its custom metadata carries
//
//	"custom": {"rootkeeper": {"external": true}, …}
//
// The marker is signed like the rest of the target, so it cannot be added
// to a file target without the role's keys.

// CustomKey is the key of rootkeeper's own entry in a target's custom
// metadata.
const CustomKey = "rootkeeper"

// IsExternal reports whether a target is marked as having no file in the
// repository.
func IsExternal(tf *metadata.TargetFiles) bool {
	if tf == nil || tf.Custom == nil {
		return false
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(*tf.Custom, &c) != nil {
		return false
	}
	var rk struct {
		External bool `json:"external"`
	}
	return c[CustomKey] != nil && json.Unmarshal(c[CustomKey], &rk) == nil && rk.External
}

// ExternalCustom returns custom metadata for an external target: the
// marker beside the given entries, which must not use CustomKey.
func ExternalCustom(custom map[string]any) (json.RawMessage, error) {
	if _, taken := custom[CustomKey]; taken {
		return nil, fmt.Errorf("custom metadata must not have a %q entry: rootkeeper writes it", CustomKey)
	}
	c := maps.Clone(custom)
	if c == nil {
		c = map[string]any{}
	}
	c[CustomKey] = map[string]any{"external": true}
	return json.Marshal(c)
}

// CheckExternalHashes checks that an external target names content a
// client can check: a length, and a sha256 or sha512 hash of the right size.
func CheckExternalHashes(length int64, hashes metadata.Hashes) error {
	if length < 0 {
		return fmt.Errorf("length %d is negative", length)
	}
	known := 0
	for _, alg := range slices.Sorted(maps.Keys(hashes)) {
		want := map[string]int{"sha256": sha256.Size, "sha512": sha512.Size}[alg]
		if want == 0 {
			continue
		}
		if len(hashes[alg]) != want {
			return fmt.Errorf("%s hash has %d bytes, not %d", alg, len(hashes[alg]), want)
		}
		known++
	}
	if known == 0 {
		return errors.New("no sha256 or sha512 hash: clients could not check the content")
	}
	return nil
}

// AddExternalTarget records an external target in role ("targets" or a
// delegated role): its length, hashes and custom metadata (marked by
// ExternalCustom). Like AddTarget, the role must not be signed yet, and the
// path must lie inside the role's delegation.
func (r *Repo) AddExternalTarget(role, targetPath string, length int64, hashes metadata.Hashes, custom map[string]any) error {
	md, err := r.targetsRole(role)
	if err != nil {
		return err
	}
	if len(md.Signatures) > 0 {
		return signedErr(role, md.Signed.Version)
	}
	if err := checkTargetPath(targetPath); err != nil {
		return err
	}
	if err := CheckExternalHashes(length, hashes); err != nil {
		return fmt.Errorf("target %q: %w", targetPath, err)
	}
	if role != metadata.TARGETS {
		if del := r.delegator(role); del != nil && !del.covers(role, targetPath) {
			return fmt.Errorf("target %q is outside the paths that %s delegates to %s: clients would never trust it there", targetPath, del.name, role)
		}
	}
	raw, err := ExternalCustom(custom)
	if err != nil {
		return fmt.Errorf("target %q: %w", targetPath, err)
	}
	if md.Signed.Targets == nil {
		md.Signed.Targets = map[string]*metadata.TargetFiles{}
	}
	rm := json.RawMessage(raw)
	md.Signed.Targets[targetPath] = &metadata.TargetFiles{Length: length, Hashes: maps.Clone(hashes), Path: targetPath, Custom: &rm}
	return nil
}
