package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Checked is a bundle checked against itself: its previous metadata
// against its identity and the state it names, each payload against its
// hash and the version before it, each threshold recomputed, each
// signature verified.
type Checked struct {
	Name   string
	Bundle *Bundle
	Roles  []*CheckedRole // parallel to Bundle.Roles
	// Published is the state before the change; Pending after it.
	Published, Pending *roles.Pending

	fill bool
}

// CheckedRole is one role of a checked bundle.
type CheckedRole struct {
	*Role
	// Signed is the parsed payload: *metadata.RootType, *TargetsType,
	// *SnapshotType or *TimestampType. Previous is the published version
	// (nil for a new role).
	Signed, Previous any
	Expires          time.Time
	Reqs             []roles.Requirement
	Keys             map[string]*metadata.Key
}

// Complete reports whether every threshold of every role is met.
func (c *Checked) Complete() bool {
	for _, r := range c.Roles {
		if !r.Complete() {
			return false
		}
	}
	return true
}

// Complete reports whether every threshold of the role is met.
func (r *CheckedRole) Complete() bool {
	for _, q := range r.Reqs {
		if !q.Met() {
			return false
		}
	}
	return true
}

func (c *Checked) fail(detail string) error {
	return &Error{File: c.Name, Detail: detail, HintText: hintAskCustodian}
}

// PayloadError is a payload that does not match the bundle's record of it.
type PayloadError struct {
	File, Role, Detail string
}

func (e *PayloadError) Error() string {
	return fmt.Sprintf("signing bundle %s: the payload of %s %s: the bundle was changed after it was made", e.File, e.Role, e.Detail)
}

// Hint says what to do.
func (e *PayloadError) Hint() string {
	return "do not sign or apply this copy; ask the custodian for the bundle again and compare its id and payload hashes (rootkeeper show)"
}

// SignatureError is a signature in a bundle that must not count.
type SignatureError struct {
	File, Role, KeyID, Detail string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("signing bundle %s: the signature of %s by key %s %s", e.File, e.Role, short(e.KeyID), e.Detail)
}

// Hint says what to do.
func (e *SignatureError) Hint() string {
	return "leave out the copy that carries it, or ask that officer to sign a fresh copy of the bundle; nothing was written"
}

// Check checks b (read from name) against itself; it needs nothing else.
func Check(name string, b *Bundle) (*Checked, error) { return check(name, b, false) }

// check is Check; fill sets each role's thresholds instead of comparing
// them (Build).
func check(name string, b *Bundle, fill bool) (*Checked, error) {
	c := &Checked{Name: name, Bundle: b, fill: fill}
	if err := c.previous(); err != nil {
		return nil, err
	}
	c.Pending = &roles.Pending{Roots: slices.Clone(c.Published.Roots), Targets: c.Published.Targets, Delegated: clone(c.Published.Delegated)}
	seen := map[string]bool{}
	for i := range b.Roles {
		r := &b.Roles[i]
		if seen[r.Role] {
			return nil, c.fail(fmt.Sprintf("role %s is listed twice", r.Role))
		}
		seen[r.Role] = true
		cr, err := c.parseRole(r)
		if err != nil {
			return nil, err
		}
		c.Roles = append(c.Roles, cr)
	}
	if err := c.bootstrap(); err != nil {
		return nil, err
	}
	for _, cr := range c.Roles {
		if err := c.requirements(cr); err != nil {
			return nil, err
		}
	}
	for id, k := range b.Keys {
		if k == nil || k.Key == nil {
			return nil, c.fail("key " + short(id) + " has no public key")
		}
		if got, err := roles.KeyID(k.Key); err != nil || got != id {
			return nil, c.fail(fmt.Sprintf("the key filed under %s has key id %s", short(id), short(got)))
		}
	}
	return c, nil
}

// bootstrap checks a bootstrap bundle's identity: it carries root v1,
// whose payload has the SHA-256 the bundle names as the repository's; its
// own threshold (recomputed below) is the only rule it must meet.
func (c *Checked) bootstrap() error {
	if !c.Bundle.Repository.Bootstrap {
		return nil
	}
	for _, cr := range c.Roles {
		if cr.Role.Role == metadata.ROOT {
			if cr.PayloadSHA256 != c.Bundle.Repository.FirstRoot {
				return c.fail("its root v1 is not the repository it makes (repository.first_root_sha256 is not the SHA-256 of its payload)")
			}
			return nil
		}
	}
	return c.fail("it makes a new repository (bootstrap) but carries no root v1")
}

func clone[M ~map[K]V, K comparable, V any](m M) M {
	out := M{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

var rootFile = regexp.MustCompile(`^metadata/([0-9]+)\.root\.json$`)

// previous checks the published metadata the bundle carries: every file
// is what the state it was planned on has, the root chain starts at the
// repository's identity and verifies, and each targets role is signed as
// its delegator requires.
func (c *Checked) previous() error {
	b := c.Bundle
	var roots [][]byte
	c.Published = &roles.Pending{Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}}
	if b.Repository.Bootstrap {
		if len(b.Previous) > 0 || len(b.PlannedOn) > 0 {
			return c.fail("it makes a new repository (bootstrap) but carries previous metadata")
		}
		return nil // the chain starts at the root v1 it carries (bootstrap)
	}
	var others []File
	for _, f := range b.Previous {
		if want, ok := b.PlannedOn[f.Path]; !ok || want != sha256hex(f.Data) {
			return c.fail(fmt.Sprintf("the previous metadata %s it carries is not the file of the state it was planned on", f.Path))
		}
		if m := rootFile.FindStringSubmatch(f.Path); m != nil {
			if n, _ := strconv.Atoi(m[1]); n != len(roots)+1 || f.Role != metadata.ROOT {
				return c.fail(fmt.Sprintf("the root chain is out of order at %s", f.Path))
			}
			roots = append(roots, f.Data)
			continue
		}
		others = append(others, f)
	}
	if len(roots) == 0 {
		return c.fail("it carries no root metadata")
	}
	if sha256hex(roots[0]) != b.Repository.FirstRoot {
		return c.fail("its 1.root.json is not the repository's first root (repository.first_root_sha256)")
	}
	chain, err := roles.RootChain(roots)
	if err != nil {
		return c.fail(err.Error())
	}
	c.Published.Roots = chain
	for _, f := range others {
		md, err := roles.ParseTargets(f.Data)
		if err != nil {
			return c.fail(fmt.Sprintf("previous metadata %s: %v", f.Path, err))
		}
		if f.Role == metadata.TARGETS {
			c.Published.Targets = md
		} else {
			c.Published.Delegated[f.Role] = md
		}
	}
	for _, f := range others {
		md := c.Published.Targets
		if f.Role != metadata.TARGETS {
			md = c.Published.Delegated[f.Role]
		}
		if err := c.Published.SignedBy(f.Role, md); err != nil {
			return c.fail(fmt.Sprintf("previous metadata %s does not verify: %v", f.Path, err))
		}
	}
	return nil
}

// parseRole checks one role's payload: its hash, its canonical form, its
// type and its version after the published one; the new version joins
// the pending state.
func (c *Checked) parseRole(r *Role) (*CheckedRole, error) {
	if sha256hex(r.Payload) != r.PayloadSHA256 {
		return nil, &PayloadError{File: c.Name, Role: r.Role, Detail: fmt.Sprintf("has SHA-256 %s, not the %s recorded with it", sha256hex(r.Payload)[:12], short(r.PayloadSHA256))}
	}
	cr := &CheckedRole{Role: r}
	var prevVersion int64
	var err error
	switch r.Role {
	case metadata.ROOT:
		var s metadata.RootType
		err = c.decode(r, &s, metadata.ROOT)
		cr.Signed, cr.Expires = &s, s.Expires
		if n := len(c.Published.Roots); n > 0 {
			cr.Previous, prevVersion = &c.Published.Roots[n-1].Signed, c.Published.Roots[n-1].Signed.Version
		}
		c.Pending.Roots = append(c.Pending.Roots, &metadata.Metadata[metadata.RootType]{Signed: s})
	case metadata.SNAPSHOT:
		var s metadata.SnapshotType
		err = c.decode(r, &s, metadata.SNAPSHOT)
		cr.Signed, cr.Expires, prevVersion = &s, s.Expires, r.Version-1
	case metadata.TIMESTAMP:
		var s metadata.TimestampType
		err = c.decode(r, &s, metadata.TIMESTAMP)
		cr.Signed, cr.Expires, prevVersion = &s, s.Expires, r.Version-1
	default:
		var s metadata.TargetsType
		err = c.decode(r, &s, metadata.TARGETS)
		cr.Signed, cr.Expires = &s, s.Expires
		if prev := c.publishedTargets(r.Role); prev != nil {
			cr.Previous, prevVersion = &prev.Signed, prev.Signed.Version
		}
		md := &metadata.Metadata[metadata.TargetsType]{Signed: s}
		if r.Role == metadata.TARGETS {
			c.Pending.Targets = md
		} else {
			c.Pending.Delegated[r.Role] = md
		}
	}
	if err != nil {
		return nil, err
	}
	if r.Version != prevVersion+1 && !(prevVersion == 0 && r.Version == 1) {
		return nil, &PayloadError{File: c.Name, Role: r.Role, Detail: fmt.Sprintf("is version %d, but the published version is %d", r.Version, prevVersion)}
	}
	return cr, nil
}

func (c *Checked) publishedTargets(role string) *metadata.Metadata[metadata.TargetsType] {
	if role == metadata.TARGETS {
		return c.Published.Targets
	}
	return c.Published.Delegated[role]
}

// decode parses a payload into v and requires it to be canonical JSON of
// the right type and version.
func (c *Checked) decode(r *Role, v any, typ string) error {
	plain := jsonOfCanonical(r.Payload)
	if err := json.Unmarshal(plain, v); err != nil {
		return &PayloadError{File: c.Name, Role: r.Role, Detail: "does not parse: " + err.Error()}
	}
	again, err := cjson.EncodeCanonical(v)
	if err != nil || !bytes.Equal(again, r.Payload) {
		return &PayloadError{File: c.Name, Role: r.Role, Detail: "is not the canonical JSON of TUF metadata"}
	}
	var head struct {
		Type    string `json:"_type"`
		Version int64  `json:"version"`
	}
	json.Unmarshal(plain, &head)
	if head.Type != typ || head.Version != r.Version {
		return &PayloadError{File: c.Name, Role: r.Role, Detail: fmt.Sprintf("is %s v%d, not %s v%d", head.Type, head.Version, typ, r.Version)}
	}
	return nil
}

// requirements recomputes a role's thresholds in the pending state,
// compares them with the bundle's and verifies every signature.
func (c *Checked) requirements(cr *CheckedRole) error {
	sigs, err := c.signatures(cr.Role)
	if err != nil {
		return err
	}
	reqs, keys, err := c.Pending.Needed(cr.Role.Role, cr.Payload, sigs)
	if err != nil {
		return c.fail(fmt.Sprintf("%s: %v", cr.Role.Role, err))
	}
	cr.Reqs, cr.Keys = reqs, keys
	if c.fill {
		cr.Thresholds = nil
		for _, q := range reqs {
			cr.Thresholds = append(cr.Thresholds, Threshold{Of: q.From, Threshold: q.Threshold, KeyIDs: q.KeyIDs})
		}
	}
	if len(reqs) != len(cr.Thresholds) {
		return c.fail(fmt.Sprintf("%s: it lists %d thresholds, the metadata has %d", cr.Role.Role, len(cr.Thresholds), len(reqs)))
	}
	for i, q := range reqs {
		t := cr.Thresholds[i]
		if t.Of != q.From || t.Threshold != q.Threshold || !slices.Equal(t.KeyIDs, q.KeyIDs) {
			return c.fail(fmt.Sprintf("%s: the threshold of %s it lists is not what the metadata says", cr.Role.Role, q.From))
		}
	}
	for _, s := range sigs {
		k := keys[s.KeyID]
		if k == nil || !wanted(reqs, s.KeyID) {
			return &SignatureError{File: c.Name, Role: cr.Role.Role, KeyID: s.KeyID, Detail: "is by a key that " + cr.Role.Role + " does not trust"}
		}
		if err := roles.VerifySignature(k, cr.Payload, s.Signature); err != nil {
			return &SignatureError{File: c.Name, Role: cr.Role.Role, KeyID: s.KeyID,
				Detail: fmt.Sprintf("does not verify over the payload (%v): the payload or the signature was changed after signing", err)}
		}
	}
	return nil
}

// jsonOfCanonical makes canonical JSON (which escapes only '"' and '\\',
// so that a PEM key's newlines are raw bytes inside a string) into JSON:
// outside strings canonical JSON has no control characters at all, so
// each one is escaped as it stands.
func jsonOfCanonical(data []byte) []byte {
	var out bytes.Buffer
	for _, c := range data {
		if c < 0x20 {
			fmt.Fprintf(&out, `\u%04x`, c)
			continue
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

func wanted(reqs []roles.Requirement, id string) bool {
	for _, q := range reqs {
		if slices.Contains(q.KeyIDs, id) {
			return true
		}
	}
	return false
}

// signatures decodes a role's signatures; a key id listed twice is one
// signature (the first), so that a copy cannot count a key twice.
func (c *Checked) signatures(r *Role) ([]metadata.Signature, error) {
	var out []metadata.Signature
	seen := map[string]bool{}
	for _, s := range r.Signatures {
		sig, err := hex.DecodeString(s.Sig)
		if err != nil || len(sig) == 0 {
			return nil, &SignatureError{File: c.Name, Role: r.Role, KeyID: s.KeyID, Detail: "is not hex"}
		}
		if seen[s.KeyID] {
			continue
		}
		seen[s.KeyID] = true
		out = append(out, metadata.Signature{KeyID: s.KeyID, Signature: sig})
	}
	return out, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
