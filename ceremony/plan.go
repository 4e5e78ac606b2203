package ceremony

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// Top-level role names.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// TopLevelRoles lists the four top-level roles in signing order.
var TopLevelRoles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// What a plan may require of every key's hardware evidence.
const (
	RequireHardwareBorn     = "hardware-born"     // PKCS#11 attributes or a PIV attestation show the key was generated inside the device
	RequireHardwareAttested = "hardware-attested" // a verified attestation certificate chain (PIV)
	RequireNone             = "none"              // no check (only for test tokens; recorded in the transcript)
)

// Plan is one bootstrap ceremony, read from a strict YAML file: unknown
// fields are refused, and Validate names the field path of every mistake.
type Plan struct {
	// Version of the plan format; 1.
	Version int `yaml:"version"`
	// Ceremony is "bootstrap".
	Ceremony string `yaml:"ceremony"`
	// Repository is a name for people (shown in summaries and transcripts).
	Repository string `yaml:"repository"`
	// ConsistentSnapshot turns on versioned metadata and hash-named targets
	// (default true).
	ConsistentSnapshot *bool `yaml:"consistent_snapshot"`
	// Require is what every key's hardware evidence must show
	// (default hardware-born).
	Require string `yaml:"require"`
	// Roles are the four top-level roles.
	Roles struct {
		Root      RolePlan `yaml:"root"`
		Targets   RolePlan `yaml:"targets"`
		Snapshot  RolePlan `yaml:"snapshot"`
		Timestamp RolePlan `yaml:"timestamp"`
	} `yaml:"roles"`
	// Delegations from targets to tagging keys.
	Delegations []DelegationPlan `yaml:"delegations"`
	// Digest is "sha256:HEX" of the plan file's bytes (ParsePlan), recorded
	// in the transcript's init entry as plan_sha256.
	Digest string `yaml:"-"`

	// exported are the keys the plan names by export file (file:PATH),
	// read and checked by themselves by LoadPlan; by the plan's entry.
	exported map[string]*ExportedKey
}

// ExportPrefix starts a plan's key entry that names a key by the file
// rootkeeper key export wrote (file:PATH, relative to the plan's
// directory): a key on another machine, which signs through a signing
// bundle (remote bootstrap, init --out).
const ExportPrefix = "file:"

// Exported returns the exported key a plan entry names (file:PATH), if it
// is one.
func (p *Plan) Exported(entry string) (*ExportedKey, bool) {
	e, ok := p.exported[entry]
	return e, ok
}

// readExports reads every key export file the plan names, relative to
// dir: each parsed strictly and its key id recomputed (ReadExportedKey);
// a problem is reported with the entry's field path.
func (p *Plan) readExports(dir string) []string {
	var probs []string
	p.exported = map[string]*ExportedKey{}
	read := func(path string, keys []string) {
		for i, k := range keys {
			name, ok := strings.CutPrefix(k, ExportPrefix)
			if !ok || name == "" {
				continue
			}
			if !filepath.IsAbs(name) {
				name = filepath.Join(dir, name)
			}
			e, err := ReadExportedKey(name)
			if err != nil {
				probs = append(probs, fmt.Sprintf("%s.keys[%d]: %v", path, i, err))
				continue
			}
			e.file = name
			p.exported[k] = e
		}
	}
	for _, name := range []string{RoleRoot, RoleTargets} {
		read("roles."+name, p.Role(name).Keys)
	}
	for i, d := range p.Delegations {
		read(fmt.Sprintf("delegations[%d]", i), d.Keys)
	}
	return probs
}

// RolePlan is one role: its keys, threshold and lifetime.
type RolePlan struct {
	Threshold int      `yaml:"threshold"`
	Keys      []string `yaml:"keys"`
	// KeyIDs, when given, pins each key: KeyIDs[i] is the TUF key id the
	// officers recorded for Keys[i] when it was generated. The ceremony
	// refuses a device whose key has another id.
	KeyIDs []string `yaml:"keyids"`
	// Expires is how long each version is valid ("365d").
	Expires Duration `yaml:"expires"`
	// Window is how long before expiry re-signing is due ("30d").
	Window Duration `yaml:"window"`
	// KeyPolicy is the minimum PIN and touch policy the role's YubiKey
	// keys must be attested with (pin_policy, touch_policy; see attest.go).
	KeyPolicy `yaml:",inline"`
}

// DelegationPlan is a delegation from targets to tagging keys.
type DelegationPlan struct {
	Name        string   `yaml:"name"`
	Threshold   int      `yaml:"threshold"`
	Keys        []string `yaml:"keys"`
	KeyIDs      []string `yaml:"keyids"`
	Paths       []string `yaml:"paths"`
	Terminating bool     `yaml:"terminating"`
	Expires     Duration `yaml:"expires"`
	Window      Duration `yaml:"window"`
}

// Role returns the plan of a top-level role.
func (p *Plan) Role(name string) *RolePlan {
	switch name {
	case RoleRoot:
		return &p.Roles.Root
	case RoleTargets:
		return &p.Roles.Targets
	case RoleSnapshot:
		return &p.Roles.Snapshot
	case RoleTimestamp:
		return &p.Roles.Timestamp
	}
	return nil
}

// Consistent reports whether the repository uses consistent snapshots.
func (p *Plan) Consistent() bool { return p.ConsistentSnapshot == nil || *p.ConsistentSnapshot }

// PlanError lists every mistake in a plan, each with its field path.
type PlanError struct {
	File     string
	Problems []string
}

func (e *PlanError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("plan %s: %s", e.File, e.Problems[0])
	}
	return fmt.Sprintf("plan %s has %d problems:\n  %s", e.File, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Hint points to the reference.
func (e *PlanError) Hint() string {
	return "fix the plan and run again; every field is described in docs/plan-reference.md"
}

// LoadPlan reads and validates a plan file.
func LoadPlan(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &PlanError{File: path, Problems: []string{err.Error()}}
	}
	p, err := ParsePlan(path, data)
	if err != nil {
		return nil, err
	}
	if probs := p.readExports(filepath.Dir(path)); len(probs) > 0 {
		return nil, &PlanError{File: path, Problems: probs}
	}
	return p, nil
}

var (
	yamlLine     = regexp.MustCompile(`^\s*line (\d+): `)
	unknownField = regexp.MustCompile(`field (\S+) not found in type .*$`)
)

// ParsePlan parses and validates plan text; name is used in errors.
func ParsePlan(name string, data []byte) (*Plan, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Plan
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &PlanError{File: name, Problems: []string{"the file is empty"}}
		}
		return nil, &PlanError{File: name, Problems: yamlProblems(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &PlanError{File: name, Problems: []string{"more than one YAML document; a plan is one document"}}
	}
	if problems := p.Validate(); len(problems) > 0 {
		return nil, &PlanError{File: name, Problems: problems}
	}
	p.Digest = "sha256:" + sha256hex(data)
	return &p, nil
}

// yamlProblems turns yaml.v3's messages into "file:line: message" lines.
func yamlProblems(name string, err error) []string {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if loc := yamlLine.FindStringSubmatch(m); loc != nil {
			m = fmt.Sprintf("line %s: %s", loc[1], m[len(loc[0]):])
		}
		if f := unknownField.FindStringSubmatch(m); f != nil {
			m = m[:len(m)-len(f[0])] + fmt.Sprintf("unknown field %q", f[1])
		}
		out = append(out, m)
	}
	return out
}

// Validate checks the plan and returns one line per problem, each starting
// with the field path.
func (p *Plan) Validate() []string {
	var probs []string
	add := func(path, format string, a ...any) {
		probs = append(probs, path+": "+fmt.Sprintf(format, a...))
	}
	if p.Version != 1 {
		add("version", "must be 1 (got %d)", p.Version)
	}
	if p.Ceremony != "bootstrap" {
		add("ceremony", "must be \"bootstrap\" (got %q)", p.Ceremony)
	}
	switch p.Require {
	case "", RequireHardwareBorn, RequireHardwareAttested, RequireNone:
	default:
		add("require", "must be %s, %s or %s (got %q)", RequireHardwareBorn, RequireHardwareAttested, RequireNone, p.Require)
	}
	for _, name := range TopLevelRoles {
		r := p.Role(name)
		validateRole("roles."+name, r.Threshold, r.Keys, r.KeyIDs, name != RoleSnapshot && name != RoleTimestamp, add)
		validateLifetime("roles."+name, name, r.Expires, r.Window, add)
		validateKeyPolicy("roles."+name, r.KeyPolicy, add)
	}
	// Root keys must sit on different devices, or the threshold means nothing.
	devices := map[string]int{}
	objects := map[string]bool{}
	for i, k := range p.Roles.Root.Keys {
		u, err := hsm.ParseURI(k)
		if err != nil || objects[u.Object()] {
			continue // reported above
		}
		objects[u.Object()] = true
		d := DeviceOf(u)
		if j, dup := devices[d]; dup && d != "" {
			add(fmt.Sprintf("roles.root.keys[%d]", i), "on the same device as roles.root.keys[%d] (%s): root keys must be on different tokens", j, d)
		}
		devices[d] = i
	}
	names := map[string]bool{}
	for i, d := range p.Delegations {
		path := fmt.Sprintf("delegations[%d]", i)
		if err := roles.CheckRoleName(d.Name); err != nil {
			add(path+".name", "%v", err)
		} else if names[strings.ToLower(d.Name)] {
			add(path+".name", "%q is delegated twice (names must differ in more than letter case)", d.Name)
		}
		names[strings.ToLower(d.Name)] = true
		exp := d.Expires
		if exp == 0 {
			exp = p.Roles.Targets.Expires
		}
		validateRole(path, d.Threshold, d.Keys, d.KeyIDs, true, add)
		validateLifetime(path, d.Name, exp, d.Window, add)
		if len(d.Paths) == 0 {
			add(path+".paths", "at least one path pattern is needed (e.g. \"releases/*\")")
		}
		for j, pat := range d.Paths {
			if pat == "" || strings.HasPrefix(pat, "/") {
				add(fmt.Sprintf("%s.paths[%d]", path, j), "%q: patterns are relative paths such as \"releases/*\"", pat)
			}
		}
	}
	return probs
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// validateRole checks a role's keys and threshold; files allows keys
// named by their export file (file:PATH; not for snapshot and timestamp,
// whose keys are the custodian's online keys and sign at apply).
func validateRole(path string, threshold int, keys, keyids []string, files bool, add func(string, string, ...any)) {
	if len(keyids) > 0 && len(keyids) != len(keys) {
		add(path+".keyids", "lists %d key ids but keys lists %d keys: give one key id per key, in the same order", len(keyids), len(keys))
	}
	for i, id := range keyids {
		if !keyIDPattern.MatchString(id) {
			add(fmt.Sprintf("%s.keyids[%d]", path, i), "%q is not a key id (64 lower-case hex digits, as rootkeeper key generate prints)", id)
		}
	}
	if len(keys) == 0 {
		add(path+".keys", "at least one key URI is needed")
	}
	switch {
	case threshold < 1:
		add(path+".threshold", "must be at least 1 (got %d)", threshold)
	case threshold > len(keys) && len(keys) > 0:
		add(path+".threshold", "%d is more than the %d keys listed", threshold, len(keys))
	}
	if !files {
		for i, k := range keys {
			if strings.HasPrefix(k, ExportPrefix) {
				add(fmt.Sprintf("%s.keys[%d]", path, i), "%q: snapshot and timestamp keys are the custodian's online keys, named by URI (an exported key signs only through a signing bundle, and these roles are signed at apply)", k)
			}
		}
	}
	validateKeyURIs(path, keys, files, add) // policy.go
}

// LifetimeBounds returns the shortest and longest lifetime (expires) a
// role may have: root 1d to 10 years, targets and delegated roles 1h to 5
// years, snapshot 1h to a year, timestamp 1h to 90d. Longer lifetimes
// make a stolen online key or a withheld update useful for longer than
// any repository needs (docs/expiry.md).
func LifetimeBounds(role string) (lo, hi Duration) {
	const h, d = Duration(3600e9), Duration(24 * 3600e9)
	switch role {
	case RoleRoot:
		return d, 3650 * d
	case RoleSnapshot:
		return h, 365 * d
	case RoleTimestamp:
		return h, 90 * d
	}
	return h, 1825 * d
}

// validateLifetime checks a role's expires and window against
// LifetimeBounds.
func validateLifetime(path, role string, expires, window Duration, add func(string, string, ...any)) {
	lo, hi := LifetimeBounds(role)
	switch {
	case expires == 0:
		add(path+".expires", "missing (e.g. 365d)")
	case expires < lo:
		add(path+".expires", "%s is shorter than the minimum of %s", expires, lo)
	case expires > hi:
		add(path+".expires", "%s is longer than the maximum of %s", expires, hi)
	}
	switch {
	case window < 0:
		add(path+".window", "%s is negative", window)
	case window != 0 && expires != 0 && window >= expires:
		add(path+".window", "%s is not shorter than expires (%s): the role would always be due", window, expires)
	}
}

// DeviceOf names the device a key URI points into: the PKCS#11 token
// (serial or label) or the YubiKey serial.
func DeviceOf(u *hsm.URI) string {
	switch u.Scheme {
	case "pkcs11":
		if s, ok := u.Path("serial"); ok {
			return "pkcs11 token serial " + s
		}
		if l, ok := u.Path("token"); ok {
			return "pkcs11 token " + l
		}
	case "yubikey":
		if s, ok := u.Path("serial"); ok {
			return "YubiKey " + s
		}
	}
	return ""
}
