package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"
)

// PolicyFile is the repository's policy, beside metadata/ and targets/.
const PolicyFile = "rootkeeper.yaml"

// Policy is what rootkeeper keeps about a repository besides its metadata:
// each role's lifetime and re-signing window, and the URIs of the keys that
// sign it. It holds no secret: PINs come from pin-source files, the
// environment or the terminal.
type Policy struct {
	Version            int                   `yaml:"version"`
	Repository         string                `yaml:"repository,omitempty"`
	ConsistentSnapshot bool                  `yaml:"consistent_snapshot"`
	Require            string                `yaml:"require"`
	Roles              map[string]RolePolicy `yaml:"roles"`
}

// RolePolicy is one role's lifetime and signing keys.
type RolePolicy struct {
	Expires Duration `yaml:"expires"`
	Window  Duration `yaml:"window"`
	Keys    []string `yaml:"keys,omitempty"`
	// KeyPolicy is the minimum attested PIN and touch policy of the role's
	// YubiKey keys, kept from the bootstrap plan so that every later
	// ceremony that adds a key holds it to the same bar.
	KeyPolicy `yaml:",inline"`
}

// Default lifetimes and re-signing windows. Timestamps expire after a week
// and are re-signed daily, snapshots keep two weeks of margin: an outage of
// the scheduled job then leaves days, not hours, to notice (the lesson of
// sigstore's root-signing and tuf-on-ci). See docs/expiry.md.
var defaultWindows = map[string]Duration{
	RoleRoot:      Duration(90 * 24 * 3600e9),
	RoleTargets:   Duration(30 * 24 * 3600e9),
	RoleSnapshot:  Duration(14 * 24 * 3600e9),
	RoleTimestamp: Duration(6 * 24 * 3600e9),
}

// Role returns the policy of role, filling in the window default.
func (p *Policy) Role(name string) RolePolicy {
	rp := p.Roles[name]
	if rp.Window == 0 {
		if w, ok := defaultWindows[name]; ok && w < rp.Expires {
			rp.Window = w
		} else {
			rp.Window = rp.Expires / 3
		}
	}
	return rp
}

// RoleNames lists the roles in the policy, top-level roles first.
func (p *Policy) RoleNames() []string {
	var out []string
	for _, r := range TopLevelRoles {
		if _, ok := p.Roles[r]; ok {
			out = append(out, r)
		}
	}
	var rest []string
	for r := range p.Roles {
		if r != RoleRoot && r != RoleTargets && r != RoleSnapshot && r != RoleTimestamp {
			rest = append(rest, r)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// LoadPolicy reads DIR/rootkeeper.yaml.
func LoadPolicy(dir string) (*Policy, error) {
	path := filepath.Join(dir, PolicyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &RepoError{Dir: dir, Detail: "no " + PolicyFile + " here: this is not a rootkeeper repository",
				HintText: "check --repo, or create the repository with rootkeeper init --plan PLAN.yaml --repo DIR"}
		}
		return nil, &IOError{Op: "read", Path: path, Err: err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, &RepoError{Dir: dir, Detail: PolicyFile + ": " + parseProblem(err), HintText: "restore " + PolicyFile + " from the repository's backup"}
	}
	if p.Version != 1 || p.Roles == nil {
		return nil, &RepoError{Dir: dir, Detail: PolicyFile + ": version must be 1 and roles must be listed"}
	}
	if err := p.checkLifetimes(dir); err != nil {
		return nil, err
	}
	return &p, nil
}

// checkLifetimes refuses a role whose re-signing window is not shorter
// than its lifetime: it would be due again the moment it is re-signed.
func (p *Policy) checkLifetimes(dir string) error {
	for _, name := range p.RoleNames() {
		rp := p.Roles[name]
		switch {
		case rp.Expires <= 0:
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("%s: roles.%s.expires is missing", PolicyFile, name),
				HintText: "give every role a lifetime such as expires: 365d (docs/expiry.md lists the defaults and why)"}
		case rp.Window >= rp.Expires:
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("%s: roles.%s: the re-signing window (%s) is not shorter than the lifetime (%s), so the role would be due again right after every re-signing", PolicyFile, name, rp.Window, rp.Expires),
				HintText: "make window shorter than expires in " + PolicyFile + " (docs/expiry.md lists the defaults and why)"}
		}
	}
	return nil
}

// Marshal returns the policy file's bytes.
func (p *Policy) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# rootkeeper repository policy: lifetimes, re-signing windows and signing key URIs.\n# No secrets here. Reference: docs/plan-reference.md#policy\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RepoError is a problem with a repository as a whole.
type RepoError struct {
	Dir      string
	Detail   string
	HintText string
	Err      error
}

func (e *RepoError) Error() string {
	msg := e.Detail
	if e.Dir != "" {
		msg = fmt.Sprintf("repository %s: %s", e.Dir, e.Detail)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Hint says what to do.
func (e *RepoError) Hint() string { return e.HintText }

// Unwrap returns the cause.
func (e *RepoError) Unwrap() error { return e.Err }
