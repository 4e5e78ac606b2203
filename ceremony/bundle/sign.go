package bundle

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Wants returns the roles whose thresholds name keyID.
func (c *Checked) Wants(keyID string) []*CheckedRole {
	var out []*CheckedRole
	for _, cr := range c.Roles {
		if wanted(cr.Reqs, keyID) {
			out = append(out, cr)
		}
	}
	return out
}

// HasSigned reports whether the role carries a signature by keyID.
func (cr *CheckedRole) HasSigned(keyID string) bool {
	return slices.ContainsFunc(cr.Signatures, func(s Signature) bool { return s.KeyID == keyID })
}

// WrongKeyError is a key that no role of the bundle wants.
type WrongKeyError struct {
	File, KeyID, URI string
	Wanted           []string // "5c2f… (device)" of every key a role still needs
}

func (e *WrongKeyError) Error() string {
	return fmt.Sprintf("signing bundle %s: key %s (%s) is not a key any role in the bundle wants; it wants %s",
		e.File, short(e.KeyID), e.URI, strings.Join(e.Wanted, ", "))
}

// Hint says what to do.
func (e *WrongKeyError) Hint() string {
	return "plug in the device of one of the keys the bundle wants and name that key with --key; nothing was signed"
}

// WrongKey is the error for a key no role wants.
func (c *Checked) WrongKey(keyID, uri string) error {
	var wanted []string
	seen := map[string]bool{}
	for _, cr := range c.Roles {
		for _, q := range cr.Reqs {
			for _, id := range q.KeyIDs {
				if seen[id] || cr.HasSigned(id) {
					continue
				}
				seen[id] = true
				ref := c.keyRef(id, cr.Keys[id])
				d := short(id)
				if ref.Device != "" {
					d += " (" + ref.Device + ")"
				} else if ref.URI != "" {
					d += " (" + ref.URI + ")"
				}
				wanted = append(wanted, d)
			}
		}
	}
	if len(wanted) == 0 {
		wanted = []string{"no more signatures"}
	}
	return &WrongKeyError{File: c.Name, KeyID: keyID, URI: uri, Wanted: wanted}
}

// AddSignature verifies sig by keyID over the role's payload and adds it
// (replacing an older signature by the same key); the role's counts are
// recomputed.
func (c *Checked) AddSignature(cr *CheckedRole, keyID string, sig []byte) error {
	k := cr.Keys[keyID]
	if k == nil || !wanted(cr.Reqs, keyID) {
		return &SignatureError{File: c.Name, Role: cr.Role.Role, KeyID: keyID, Detail: "is by a key that " + cr.Role.Role + " does not trust"}
	}
	if err := roles.VerifySignature(k, cr.Payload, sig); err != nil {
		return &SignatureError{File: c.Name, Role: cr.Role.Role, KeyID: keyID, Detail: "does not verify: " + err.Error()}
	}
	cr.Signatures = slices.DeleteFunc(cr.Signatures, func(s Signature) bool { return s.KeyID == keyID })
	cr.Signatures = append(cr.Signatures, Signature{KeyID: keyID, Sig: hex.EncodeToString(sig)})
	return c.requirements(cr)
}

// Merge combines copies of one bundle, each checked: the signatures of
// all (one per key and role) and their logs. Every copy must be the same
// bundle: same id, same payloads, same everything but signatures and log.
func Merge(copies []*Checked) (*Checked, error) {
	if len(copies) == 0 {
		return nil, &Error{Detail: "no bundle given"}
	}
	first := copies[0]
	merged := *first.Bundle
	merged.Roles = slices.Clone(first.Bundle.Roles)
	merged.Log = slices.Clone(first.Bundle.Log)
	for i := range merged.Roles {
		merged.Roles[i].Signatures = slices.Clone(merged.Roles[i].Signatures)
	}
	for _, c := range copies[1:] {
		if err := sameBundle(first, c); err != nil {
			return nil, err
		}
		for i, r := range c.Bundle.Roles {
			for _, s := range r.Signatures {
				if !slices.ContainsFunc(merged.Roles[i].Signatures, func(m Signature) bool { return m.KeyID == s.KeyID }) {
					merged.Roles[i].Signatures = append(merged.Roles[i].Signatures, s)
				}
			}
		}
		for _, e := range c.Bundle.Log {
			if !slices.ContainsFunc(merged.Log, func(m LogEntry) bool { return sameEntry(m, e) }) {
				merged.Log = append(merged.Log, e)
			}
		}
	}
	slices.SortStableFunc(merged.Log, func(a, b LogEntry) int { return a.Time.Compare(b.Time) })
	return Check(strings.Join(names(copies), ", "), &merged)
}

func names(cs []*Checked) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func sameEntry(a, b LogEntry) bool {
	return a.Time.Equal(b.Time) && a.Event == b.Event && a.KeyID == b.KeyID && a.Host == b.Host
}

// sameBundle says how c differs from first, if it does in more than its
// signatures and log.
func sameBundle(first, c *Checked) error {
	a, b := first.Bundle, c.Bundle
	if a.ID != b.ID {
		return &Error{File: c.Name, Detail: fmt.Sprintf("is bundle %s, not a copy of %s (%s)", short(b.ID), short(a.ID), first.Name),
			HintText: "apply the copies of one bundle together; apply another bundle on its own"}
	}
	if len(a.Roles) != len(b.Roles) {
		return &PayloadError{File: c.Name, Role: "its roles", Detail: "differ from " + first.Name}
	}
	for i := range a.Roles {
		if a.Roles[i].Role != b.Roles[i].Role || a.Roles[i].PayloadSHA256 != b.Roles[i].PayloadSHA256 {
			return &PayloadError{File: c.Name, Role: a.Roles[i].Role, Detail: "differs from the one in " + first.Name}
		}
	}
	strip := func(x Bundle) string {
		x.Log = nil
		x.Roles = slices.Clone(x.Roles)
		for i := range x.Roles {
			x.Roles[i].Signatures = nil
		}
		data, _ := x.Marshal()
		return string(data)
	}
	if strip(*a) != strip(*b) {
		return &Error{File: c.Name, Detail: "differs from " + first.Name + " in more than its signatures", HintText: hintAskCustodian}
	}
	return nil
}
