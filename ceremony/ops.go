package ceremony

import (
	"context"
	"errors"
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
	return s.change(ctx, dir, func(st *state) (*Change, error) { return planTargets(st, role, inputs, nil) })
}

// RemoveTargets removes target paths from role and publishes.
func (s *Session) RemoveTargets(ctx context.Context, dir, role string, names []string) (*Result, error) {
	return s.change(ctx, dir, func(st *state) (*Change, error) { return planTargets(st, role, nil, names) })
}

// Publish signs new snapshot and timestamp versions for the current state.
func (s *Session) Publish(ctx context.Context, dir string) (*Result, error) {
	return s.change(ctx, dir, planPublish)
}

// planTargets plans adding inputs to role or removing names from it: a new
// version of role, then snapshot and timestamp.
func planTargets(st *state, role string, add []TargetInput, remove []string) (*Change, error) {
	if _, err := targetsRole(st.repo, role); err != nil {
		return nil, err
	}
	op, names := "targets-add", remove
	if remove != nil {
		op = "targets-remove"
	}
	c := st.newChange(op)
	if err := bumpRole(c.Repo, c.Policy, role, c.At); err != nil {
		return nil, err
	}
	for _, in := range add {
		files, err := addTarget(st, role, in)
		if err != nil {
			return nil, err
		}
		c.Extra = append(c.Extra, files...)
		names = append(names, in.Name)
	}
	for _, n := range remove {
		if err := c.Repo.RemoveTarget(role, n); err != nil {
			return nil, &RepoError{Dir: st.dir, Detail: err.Error(), HintText: "rootkeeper verify --repo " + st.dir + " --json lists the targets of each role"}
		}
	}
	c.NoPolicy = true
	c.Changed = []string{role, RoleSnapshot, RoleTimestamp}
	c.Details = map[string]any{"role": role, "targets": names}
	return c, c.stepsFor(role)
}

// addTarget checks one target's name and path and adds it to role.
func addTarget(st *state, role string, in TargetInput) ([]File, error) {
	if err := TargetName(in.Name); err != nil {
		return nil, &RepoError{Dir: st.dir, Detail: err.Error(), HintText: "use --prefix to put files under a directory"}
	}
	if err := checkDelegatedPath(st.repo, role, in.Name); err != nil {
		return nil, err
	}
	return addTargetInput(st.repo, st.pol.ConsistentSnapshot, role, in) // external.go
}

// planPublish plans new snapshot and timestamp versions.
func planPublish(st *state) (*Change, error) {
	c := st.newChange("publish")
	c.NoPolicy = true
	c.Changed = []string{RoleSnapshot, RoleTimestamp}
	return c, c.stepsFor()
}

// targetsRole is the metadata of a targets role, or an error with a hint.
func targetsRole(repo *roles.Repo, role string) (*metadata.Metadata[metadata.TargetsType], error) {
	md, err := repo.TargetsRole(role)
	if err != nil {
		return nil, &RepoError{Dir: "", Detail: fmt.Sprintf("no targets role %q", role),
			HintText: "use --role targets or the name of a delegated role (rootkeeper status lists them)"}
	}
	return md, nil
}

// checkDelegatedPath refuses a target a delegated role is not trusted for:
// clients would never look for it there.
func checkDelegatedPath(repo *roles.Repo, role, name string) error {
	err := repo.Covers(role, name)
	var pe *roles.PathError
	if errors.As(err, &pe) {
		return &RepoError{Detail: err.Error(), HintText: "use --prefix so the target path matches the delegation, or add it to another role"}
	}
	return err
}

// bumpRole gives a targets role a new, unsigned version that expires after
// its lifetime.
func bumpRole(repo *roles.Repo, pol *Policy, role string, now time.Time) error {
	return repo.BumpRole(role, now.Add(pol.Role(policyRole(pol, role)).Expires.D()))
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
