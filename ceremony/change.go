package ceremony

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Change is a planned change of one repository: the new metadata, not yet
// signed, and the signatures it needs (step 1 of the pipeline, doc.go). A
// plan function (planTargets, planRotate, …) makes it without touching a
// device; Session.Sign signs it from signature sources; Session.commit
// runs the preflight and writes it.
type Change struct {
	Op  string    // the transcript's operation: "rotate", "targets-add", …
	Dir string    // the repository
	At  time.Time // the real clock (Session.now): expiries and the transcript
	// Base is the SHA-256 (hex) of each metadata file the plan read, by
	// path: the state the change was planned on (empty for init).
	Base map[string]string
	// Repo is the new state: the roles in Steps are bumped and unsigned
	// (snapshot and timestamp are made by their Step's Follow).
	Repo   *roles.Repo
	Policy *Policy
	// Steps are the roles to sign, in signing order.
	Steps   []*Step
	Summary Summary
	// Changed lists the roles given a new version (journal, result).
	Changed []string
	// Extra are files written with the metadata (targets, key records).
	Extra []File
	// Remove are files removed with the change (retired key records).
	Remove []string
	// Details is what the transcript records of the change.
	Details map[string]any
	// NoPolicy keeps rootkeeper.yaml as it is.
	NoPolicy bool
	// Records are the key records the plan read (keys/KEYID.json): where
	// each key lives.
	Records map[string]*KeyRecord
	// Partial makes Sign sign what it can and return the unmet needs in
	// the Tally instead of a *ThresholdError (a signing bundle).
	Partial bool

	bundle   *appliedBundle // the signing bundle this change applies, if any (bundleapply.go)
	progress func(string)   // nil: the session's
}

// Summary is what the officer is shown before signing.
type Summary struct {
	Text string // the lines shown and confirmed
}

// Step is one role's new version (or one set of hashed bins) and the
// thresholds its signatures must meet.
type Step struct {
	// Role is the role signed, or the name prefix of hashed bins.
	Role string
	// Bins are hashed bins signed with the same keys (nil: Role itself).
	Bins []string
	// Needs are the thresholds to meet: one, or for a new root two (the
	// previous root's keys and threshold, and its own).
	Needs []Need
	// All has every key that can sign sign, not just a threshold (the
	// rule for every role; hashed bins stop at their threshold).
	All bool
	// Last are key ids that sign only if the needs cannot be met without
	// them (a revoked key signs the transition away from itself, no more).
	Last []string
	// Note is said before the step is signed (why it is signed as it is).
	Note string
	// Follow makes the role from the roles signed before it (snapshot,
	// timestamp: their bytes depend on those signatures); nil for others.
	Follow func() error
}

// Names lists the metadata the step signs: its bins, or its role.
func (st *Step) Names() []string {
	if len(st.Bins) > 0 {
		return st.Bins
	}
	return []string{st.Role}
}

// Need is one threshold of signatures a step needs.
type Need struct {
	Of        string   // who sets the rule: "root v4", "root v3 (previous)", "targets v7", …
	Threshold int      // how many distinct keys of KeyIDs must sign
	KeyIDs    []string // the keys that count
	// Keys are the TUF keys of KeyIDs, to verify signatures with.
	Keys map[string]*metadata.Key
	// URIs are the devices to try for it, in order (rootkeeper.yaml, keys
	// being added); the local source opens them.
	URIs []string
	// Where says where each key lives, from its key record.
	Where map[string]KeyLocation
}

// KeyLocation is where a key lives: its URI (no PIN) and its device.
type KeyLocation struct {
	URI    string `json:"uri,omitempty"`
	Device string `json:"device,omitempty"` // "token root-a (serial 1a2b)", "YubiKey 12345678"
}

// Absent is a key that could not sign: its device is not plugged in, or
// (unattended runs) it cannot be used without an officer.
type Absent struct {
	KeyID  string `json:"keyid,omitempty"` // "" when the URI's key is not known
	URI    string `json:"uri"`
	Reason string `json:"reason"`
	Hint   string `json:"hint,omitempty"`
}

// Tally is what Sign got: for each role signed, who signed, who could
// not, and whether every need is met.
type Tally struct {
	Roles []RoleTally `json:"roles"`
}

// RoleTally is one role (or hashed bin) of a Tally.
type RoleTally struct {
	Role   string      `json:"role"`
	Signed []string    `json:"signed_by"` // key ids whose signature was added
	Needs  []NeedTally `json:"needs"`
	Absent []Absent    `json:"absent,omitempty"`
}

// NeedTally is one need and how far it got.
type NeedTally struct {
	Of        string       `json:"of"`
	Threshold int          `json:"threshold"`
	Have      int          `json:"have"` // distinct keys with a valid signature
	Missing   []MissingKey `json:"missing,omitempty"`
}

// Met reports whether the need is met.
func (n NeedTally) Met() bool { return n.Threshold >= 1 && n.Have >= n.Threshold }

// Met reports whether every need of every role is met.
func (t *Tally) Met() bool {
	for _, r := range t.Roles {
		for _, n := range r.Needs {
			if !n.Met() {
				return false
			}
		}
	}
	return true
}

// Payload returns the canonical bytes of role's new version: what a
// signature covers.
func (c *Change) Payload(role string) ([]byte, error) { return c.Repo.Payload(role) }

// say reports progress for the change.
func (c *Change) say(s *Session, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if c.progress != nil {
		c.progress(msg)
		return
	}
	s.progress("%s", msg)
}

// keyNeed builds the need of a role whose keys are rk, set by of, tried
// on uris.
func (c *Change) keyNeed(of string, rk roles.RoleKeys, uris []string) Need {
	n := Need{Of: of, Threshold: rk.Threshold, Keys: map[string]*metadata.Key{}, URIs: slices.Clone(uris), Where: map[string]KeyLocation{}}
	for _, k := range rk.Keys {
		id, err := roles.KeyID(k)
		if err != nil {
			continue
		}
		n.KeyIDs = append(n.KeyIDs, id)
		n.Keys[id] = k
		if rec, ok := c.Records[id]; ok {
			n.Where[id] = KeyLocation{URI: objectOf(rec.URI), Device: deviceOf(rec)}
		}
	}
	return n
}

// roleStep is the step of a role the repository trusts now (after the
// plan's changes), tried on the role's keys from the policy. Every key
// that can sign signs (All): a role signed by more than its threshold
// stays valid when one of its keys is revoked.
func (c *Change) roleStep(role string) (*Step, error) {
	rk, err := c.Repo.RoleKeysOf(role)
	if err != nil {
		return nil, err
	}
	return &Step{Role: role, All: true, Needs: []Need{c.keyNeed(c.delegatorOf(role), rk, c.Policy.Role(policyRole(c.Policy, role)).Keys)}}, nil
}

// delegatorOf names who sets role's rule, for messages.
func (c *Change) delegatorOf(role string) string {
	if slices.Contains(TopLevelRoles, role) {
		return fmt.Sprintf("root v%d", c.Repo.Root().Signed.Version)
	}
	for _, d := range c.Repo.Delegations() {
		if d.Name == role || strings.HasPrefix(role, d.Name+"-") {
			return d.Delegator
		}
	}
	return "its delegator"
}

// rootStep is the step of a new root: a threshold of the previous root's
// keys (tried on prevURIs) and of its own (tried on uris), every key that
// can sign signing.
func (c *Change) rootStep(prevURIs, uris []string) (*Step, error) {
	rk, err := c.Repo.RoleKeysOf(RoleRoot)
	if err != nil {
		return nil, err
	}
	v := c.Repo.Root().Signed.Version
	st := &Step{Role: RoleRoot, All: true, Needs: []Need{c.keyNeed(fmt.Sprintf("root v%d", v), rk, uris)}}
	if prev, ok := c.Repo.PreviousRootKeys(); ok {
		st.Needs = append(st.Needs, c.keyNeed(fmt.Sprintf("root v%d", v-1), prev, prevURIs))
	}
	return st, nil
}

// publishSteps are the snapshot and timestamp steps that end every
// change: each made (Follow) from what was signed before it.
func (c *Change) publishSteps() ([]*Step, error) {
	snap, err := c.roleStep(RoleSnapshot)
	if err != nil {
		return nil, err
	}
	snap.Follow = func() error {
		return c.Repo.UpdateSnapshot(c.At.Add(c.Policy.Role(RoleSnapshot).Expires.D()))
	}
	ts, err := c.roleStep(RoleTimestamp)
	if err != nil {
		return nil, err
	}
	ts.Follow = func() error {
		return c.Repo.UpdateTimestamp(c.At.Add(c.Policy.Role(RoleTimestamp).Expires.D()))
	}
	return []*Step{snap, ts}, nil
}

// deviceOf describes the device a key record's evidence names.
func deviceOf(rec *KeyRecord) string {
	ev := rec.Evidence
	switch {
	case ev == nil:
		return ""
	case ev.Serial != 0:
		return fmt.Sprintf("YubiKey %d", ev.Serial)
	case ev.TokenLabel != "" && ev.TokenSerial != "":
		return fmt.Sprintf("token %s (serial %s)", ev.TokenLabel, ev.TokenSerial)
	case ev.TokenLabel != "":
		return "token " + ev.TokenLabel
	}
	return ""
}
