package ceremony

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// TargetInput is a file to add as a target, or, without Data, content
// that lives elsewhere (an image manifest in a registry) signed by its
// length and hashes only (external.go).
type TargetInput struct {
	Name string // target path clients ask for ("releases/app-1.0.tgz", "library/app:v1.2")
	Data []byte
	// Digest is set for a target without a file: its length, hashes and
	// custom metadata.
	Digest *DigestInput
}

// TargetName checks a target path: relative, clean, no "..", and nothing a
// URL or a static web server would read differently (%, ?, #, control
// characters). ':' is fine ("library/app:v1.2").
func TargetName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || strings.Contains(name, "\\") {
		return fmt.Errorf("target path %q must be a clean relative path such as releases/app-1.0.tgz", name)
	}
	if err := urlSafeName(name); err != nil { // external.go
		return err
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." || part == "." {
			return fmt.Errorf("target path %q must not contain . or ..", name)
		}
	}
	return nil
}

// AddTargets adds files to role (targets or a delegated role), signs the
// role with its keys from the policy, and publishes new snapshot and
// timestamp versions.
func (s *Session) AddTargets(ctx context.Context, dir, role string, inputs []TargetInput) (*Result, error) {
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		if _, err := targetsRole(repo, role); err != nil {
			return err
		}
		now := s.now()
		if err := bumpRole(repo, pol, role, now); err != nil {
			return err
		}
		var extra []File
		var names []string
		for _, in := range inputs {
			if err := TargetName(in.Name); err != nil {
				return &RepoError{Dir: dir, Detail: err.Error(), HintText: "use --prefix to put files under a directory"}
			}
			if err := checkDelegatedPath(repo, role, in.Name); err != nil {
				return err
			}
			files, err := addTargetInput(repo, pol.ConsistentSnapshot, role, in) // external.go
			if err != nil {
				return err
			}
			extra = append(extra, files...)
			names = append(names, in.Name)
		}
		if err := s.signRole(ctx, repo, pol, role); err != nil {
			return err
		}
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		var err error
		res, err = s.commit(&change{op: "targets-add", dir: dir, repo: repo, policy: pol, now: now, noPolicy: true,
			changed: []string{role, RoleSnapshot, RoleTimestamp}, extra: extra,
			details: map[string]any{"role": role, "targets": names}})
		return err
	})
	return res, err
}

// RemoveTargets removes target paths from role and publishes.
func (s *Session) RemoveTargets(ctx context.Context, dir, role string, names []string) (*Result, error) {
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		if _, err := targetsRole(repo, role); err != nil {
			return err
		}
		now := s.now()
		if err := bumpRole(repo, pol, role, now); err != nil {
			return err
		}
		for _, n := range names {
			if err := repo.RemoveTarget(role, n); err != nil {
				return &RepoError{Dir: dir, Detail: err.Error(), HintText: "rootkeeper verify --repo " + dir + " --json lists the targets of each role"}
			}
		}
		if err := s.signRole(ctx, repo, pol, role); err != nil {
			return err
		}
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		var err error
		res, err = s.commit(&change{op: "targets-remove", dir: dir, repo: repo, policy: pol, now: now, noPolicy: true,
			changed: []string{role, RoleSnapshot, RoleTimestamp}, details: map[string]any{"role": role, "targets": names}})
		return err
	})
	return res, err
}

// Publish signs new snapshot and timestamp versions for the current state.
func (s *Session) Publish(ctx context.Context, dir string) (*Result, error) {
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		now := s.now()
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		var err error
		res, err = s.commit(&change{op: "publish", dir: dir, repo: repo, policy: pol, now: now, noPolicy: true,
			changed: []string{RoleSnapshot, RoleTimestamp}})
		return err
	})
	return res, err
}

func targetsRole(repo *roles.Repo, role string) (*metadata.Metadata[metadata.TargetsType], error) {
	if role == RoleTargets {
		return repo.Targets, nil
	}
	if md, ok := repo.Delegated[role]; ok {
		return md, nil
	}
	return nil, &RepoError{Dir: "", Detail: fmt.Sprintf("no targets role %q", role),
		HintText: "use --role targets or the name of a delegated role (rootkeeper status lists them)"}
}

// checkDelegatedPath refuses a target a delegated role is not trusted for:
// clients would never look for it there.
func checkDelegatedPath(repo *roles.Repo, role, name string) error {
	if role == RoleTargets {
		return nil
	}
	for _, parent := range append([]*metadata.Metadata[metadata.TargetsType]{repo.Targets}, mapValues(repo.Delegated)...) {
		if parent.Signed.Delegations == nil {
			continue
		}
		for _, d := range parent.Signed.Delegations.Roles {
			if d.Name != role {
				continue
			}
			ok, err := d.IsDelegatedPath(name)
			if err != nil {
				return err
			}
			if !ok {
				return &RepoError{Detail: fmt.Sprintf("role %s is not trusted for %q (its paths are %s)", role, name, strings.Join(d.Paths, ", ")),
					HintText: "use --prefix so the target path matches the delegation, or add it to another role"}
			}
			return nil
		}
	}
	return nil
}

func mapValues(m map[string]*metadata.Metadata[metadata.TargetsType]) []*metadata.Metadata[metadata.TargetsType] {
	out := make([]*metadata.Metadata[metadata.TargetsType], 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// bumpRole gives a targets role a new, unsigned version that expires after
// its lifetime.
func bumpRole(repo *roles.Repo, pol *Policy, role string, now time.Time) error {
	return repo.BumpRole(role, now.Add(pol.Role(policyRole(pol, role)).Expires.D()))
}

// signRole signs a targets role with its keys from the policy.
func (s *Session) signRole(ctx context.Context, repo *roles.Repo, pol *Policy, role string) error {
	md, err := targetsRole(repo, role)
	if err != nil {
		return err
	}
	trusted, threshold := trustedFor(repo, role)
	return signWith(ctx, s, md, role, pol.Role(policyRole(pol, role)).Keys, trusted, threshold)
}

// trustedFor returns the key ids and threshold the delegator of role trusts.
func trustedFor(repo *roles.Repo, role string) ([]string, int) {
	root := repo.Root().Signed
	if r, ok := root.Roles[role]; ok {
		return r.KeyIDs, r.Threshold
	}
	for _, parent := range append([]*metadata.Metadata[metadata.TargetsType]{repo.Targets}, mapValues(repo.Delegated)...) {
		if parent.Signed.Delegations == nil {
			continue
		}
		for _, d := range parent.Signed.Delegations.Roles {
			if d.Name == role {
				return d.KeyIDs, d.Threshold
			}
		}
	}
	if rk, err := repo.RoleKeysOf(role); err == nil { // hashed bins (succinct delegations)
		return keyIDsOfKeys(rk.Keys), rk.Threshold
	}
	return nil, 1
}

// publish makes and signs new snapshot and timestamp versions.
func (s *Session) publish(ctx context.Context, repo *roles.Repo, pol *Policy, now time.Time) error {
	snap := pol.Role(RoleSnapshot)
	if err := repo.UpdateSnapshot(now.Add(snap.Expires.D())); err != nil {
		return err
	}
	trusted, threshold := trustedFor(repo, RoleSnapshot)
	if err := signWith(ctx, s, repo.Snapshot, RoleSnapshot, snap.Keys, trusted, threshold); err != nil {
		return err
	}
	ts := pol.Role(RoleTimestamp)
	if err := repo.UpdateTimestamp(now.Add(ts.Expires.D())); err != nil {
		return err
	}
	trusted, threshold = trustedFor(repo, RoleTimestamp)
	return signWith(ctx, s, repo.Timestamp, RoleTimestamp, ts.Keys, trusted, threshold)
}

// ReadTargetInputs reads files to add; each target is named prefix + the
// file's base name.
func ReadTargetInputs(prefix string, files []string) ([]TargetInput, error) {
	var out []TargetInput
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, &IOError{Op: "read", Path: f, Err: err}
		}
		name := filepath.Base(f)
		if prefix != "" {
			name = strings.TrimSuffix(prefix, "/") + "/" + name
		}
		out = append(out, TargetInput{Name: name, Data: data})
	}
	return out, nil
}
