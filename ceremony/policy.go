package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rootkeeper/rootkeeper/hsm"
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

// LoadPolicy reads DIR/rootkeeper.yaml as strictly as a plan: unknown
// fields, values of the wrong type, bad enum values, lifetimes out of
// bounds and key URIs that do not parse are refused, every problem with
// its field path (see Validate).
func LoadPolicy(dir string) (*Policy, error) {
	root := dir
	if root == "" {
		root = "." // os.DirFS("") would be rooted at /
	}
	return loadPolicyFS(dir, os.DirFS(root))
}

// loadPolicyFS is LoadPolicy reading through fsys, rooted at dir.
func loadPolicyFS(dir string, fsys fs.FS) (*Policy, error) {
	path := filepath.Join(dir, PolicyFile)
	data, err := fs.ReadFile(fsys, PolicyFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &RepoError{Dir: dir, Detail: "no " + PolicyFile + " here: this is not a rootkeeper repository",
				HintText: "check --repo, or create the repository with rootkeeper init --plan PLAN.yaml --repo DIR"}
		}
		return nil, &IOError{Op: "read", Path: path, Err: err}
	}
	p, problems := ParsePolicy(data)
	if len(problems) > 0 {
		return nil, policyError(dir, problems)
	}
	return p, nil
}

// ParsePolicy parses and validates the text of a rootkeeper.yaml; the
// problems start with their field path (or "line N:" for YAML errors).
func ParsePolicy(data []byte) (*Policy, []string) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, []string{"the file is empty"}
		}
		return nil, []string{parseProblem(err)} // repair.go: never more than a short excerpt of the file
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, []string{"more than one YAML document; " + PolicyFile + " is one document"}
	}
	if problems := p.Validate(); len(problems) > 0 {
		return nil, problems
	}
	return &p, nil
}

func policyError(dir string, problems []string) error {
	detail := PolicyFile + ": " + problems[0]
	if len(problems) > 1 {
		detail = fmt.Sprintf("%s has %d problems:\n  %s", PolicyFile, len(problems), strings.Join(problems, "\n  "))
	}
	return &RepoError{Dir: dir, Detail: detail,
		HintText: "fix " + PolicyFile + " (every field: docs/plan-reference.md#policy) or restore it from the repository's backup; nothing was opened or written"}
}

var policyRoleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// Validate checks the policy the way Plan.Validate checks a plan and
// returns one line per problem, each starting with the field path: the
// version, require, every role's name, lifetime and re-signing window
// (LifetimeBounds), its key URIs (hardware URIs that parse, each key
// once) and its pin_policy and touch_policy requirements.
func (p *Policy) Validate() []string {
	var probs []string
	add := func(path, format string, a ...any) {
		probs = append(probs, path+": "+fmt.Sprintf(format, a...))
	}
	if p.Version != 1 {
		add("version", "must be 1 (got %d)", p.Version)
	}
	switch p.Require {
	case RequireHardwareBorn, RequireHardwareAttested, RequireNone:
	default:
		add("require", "must be %s, %s or %s (got %q)", RequireHardwareBorn, RequireHardwareAttested, RequireNone, p.Require)
	}
	if len(p.Roles) == 0 {
		add("roles", "no role is listed")
	}
	for _, name := range p.RoleNames() {
		rp, path := p.Roles[name], "roles."+name
		if !policyRoleName.MatchString(name) {
			add(path, "%q is not a role name (letters, digits, . _ -)", name)
			continue
		}
		validateLifetime(path, name, rp.Expires, rp.Window, add) // plan.go
		validateKeyPolicy(path, rp.KeyPolicy, add)               // attest.go
		validateKeyURIs(path, rp.Keys, false, add)
	}
	return probs
}

// validateKeyURIs checks the key URIs of one role: hardware URIs that
// parse, each key once.
func validateKeyURIs(path string, keys []string, files bool, add func(string, string, ...any)) {
	seen := map[string]int{}
	for i, k := range keys {
		kp := fmt.Sprintf("%s.keys[%d]", path, i)
		if name, ok := strings.CutPrefix(k, ExportPrefix); ok && files {
			if name == "" {
				add(kp, "%q names no file (file:PATH, the file rootkeeper key export wrote)", k)
			} else if j, dup := seen[k]; dup {
				add(kp, "the same key as %s.keys[%d]", path, j)
			}
			seen[k] = i
			continue
		}
		if scheme, _, _ := strings.Cut(k, ":"); scheme != "pkcs11" && scheme != "yubikey" {
			add(kp, "%q is not a hardware key URI (use pkcs11: or yubikey:; rootkeeper has no file-based keys)", hsm.Redact(k))
			continue
		}
		u, err := hsm.ParseURI(k)
		if err != nil {
			var ue *hsm.URIError
			if errors.As(err, &ue) {
				add(kp, "%s", ue.Reason)
			} else {
				add(kp, "%v", err)
			}
			continue
		}
		if j, dup := seen[u.Object()]; dup {
			add(kp, "the same key as %s.keys[%d]", path, j)
		}
		seen[u.Object()] = i
	}
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

// KeyObjects lists the objects of the signing key URIs of role (hashed
// bins: their prefix's), without query attributes.
func (p *Policy) KeyObjects(role string) []string {
	var out []string
	for _, k := range p.Role(policyRole(p, role)).Keys {
		out = append(out, objectOf(k))
	}
	return out
}
