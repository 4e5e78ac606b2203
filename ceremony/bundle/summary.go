package bundle

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// Summary is what a bundle changes and who has signed it, recomputed
// from its payloads and previous metadata (never from a caption).
type Summary struct {
	ID         string         `json:"id"`
	Operation  string         `json:"operation"`
	Repository string         `json:"repository,omitempty"`
	FirstRoot  string         `json:"first_root_sha256"`
	Bootstrap  bool           `json:"bootstrap"` // a new repository: FirstRoot is its root v1's payload hash
	CreatedAt  string         `json:"created_at"`
	Expires    string         `json:"expires"`
	Expired    bool           `json:"expired"`
	Inputs     map[string]any `json:"inputs,omitempty"`
	Roles      []RoleSummary  `json:"roles"`
	Complete   bool           `json:"complete"`
	Log        []LogEntry     `json:"log"`
}

// RoleSummary is one role of a bundle.
type RoleSummary struct {
	Role          string            `json:"role"`
	Version       int64             `json:"version"`
	Expires       string            `json:"expires"`
	PayloadSHA256 string            `json:"payload_sha256"`
	Changes       []Change          `json:"changes"`
	Thresholds    []ThresholdStatus `json:"thresholds"`
	Complete      bool              `json:"complete"`
}

// Change is one line of a role's diff, with the key it names.
type Change struct {
	roles.DiffLine
	Text string  `json:"text"`
	Key  *KeyRef `json:"key,omitempty"`
}

// ThresholdStatus is one threshold: who signed, who is still needed.
type ThresholdStatus struct {
	Of        string   `json:"of"`
	Threshold int      `json:"threshold"`
	Have      int      `json:"have"`
	Met       bool     `json:"met"`
	Signed    []KeyRef `json:"signed"`
	Missing   []KeyRef `json:"missing"`
}

// KeyRef is a key as the bundle knows it.
type KeyRef struct {
	KeyID     string `json:"keyid"`
	Algorithm string `json:"algorithm,omitempty"`
	URI       string `json:"uri,omitempty"`
	Device    string `json:"device,omitempty"`
	Evidence  string `json:"evidence,omitempty"`
}

// Summarize describes a checked bundle at now.
func (c *Checked) Summarize(now time.Time) *Summary {
	b := c.Bundle
	s := &Summary{ID: b.ID, Operation: b.Operation, Repository: b.Repository.Name, FirstRoot: b.Repository.FirstRoot, Bootstrap: b.Repository.Bootstrap,
		CreatedAt: b.CreatedAt.UTC().Format(time.RFC3339), Expires: b.Expires.UTC().Format(time.RFC3339),
		Expired: !now.Before(b.Expires), Inputs: b.Inputs, Complete: c.Complete(), Log: b.Log}
	for _, cr := range c.Roles {
		rs := RoleSummary{Role: cr.Role.Role, Version: cr.Version, Expires: cr.Expires.UTC().Format(time.RFC3339),
			PayloadSHA256: cr.PayloadSHA256, Complete: cr.Complete(), Changes: []Change{}}
		d := diffOf(cr)
		for _, l := range d.Lines {
			ch := Change{DiffLine: l, Text: l.String()}
			if l.KeyID != "" {
				ref := c.keyRef(l.KeyID, cr.Keys[l.KeyID])
				ch.Key = &ref
			}
			rs.Changes = append(rs.Changes, ch)
		}
		rs.Thresholds = c.thresholds(cr)
		s.Roles = append(s.Roles, rs)
	}
	return s
}

func diffOf(cr *CheckedRole) roles.Diff {
	switch v := cr.Signed.(type) {
	case *metadata.RootType:
		prev, _ := cr.Previous.(*metadata.RootType)
		return roles.DiffRoot(prev, v)
	case *metadata.TargetsType:
		prev, _ := cr.Previous.(*metadata.TargetsType)
		return roles.DiffTargets(cr.Role.Role, prev, v)
	case *metadata.SnapshotType:
		return roles.DiffSnapshot(nil, v)
	case *metadata.TimestampType:
		return roles.DiffTimestamp(nil, v)
	}
	return roles.Diff{Role: cr.Role.Role}
}

// thresholds lists each threshold of a role with the keys that signed
// and those still missing.
func (c *Checked) thresholds(cr *CheckedRole) []ThresholdStatus {
	signed := map[string]bool{}
	for _, s := range cr.Signatures {
		signed[s.KeyID] = true // every signature was verified by Check
	}
	var out []ThresholdStatus
	for _, q := range cr.Reqs {
		t := ThresholdStatus{Of: q.From, Threshold: q.Threshold, Have: q.Have, Met: q.Met(), Signed: []KeyRef{}, Missing: []KeyRef{}}
		for _, id := range q.KeyIDs {
			if signed[id] {
				t.Signed = append(t.Signed, c.keyRef(id, cr.Keys[id]))
			} else {
				t.Missing = append(t.Missing, c.keyRef(id, cr.Keys[id]))
			}
		}
		out = append(out, t)
	}
	return out
}

// keyRef describes a key from what the bundle says of it; tuf is the key
// from the metadata, for the algorithm when the bundle has no record.
func (c *Checked) keyRef(id string, tuf *metadata.Key) KeyRef {
	ref := KeyRef{KeyID: id}
	k := c.Bundle.Keys[id]
	if k != nil {
		ref.URI, ref.Device, ref.Algorithm = k.URI, k.Device, k.Algorithm
		if k.Evidence != nil {
			ref.Evidence = k.Evidence.Summary()
		}
		if tuf == nil {
			tuf = k.Key
		}
	}
	if ref.Algorithm == "" && tuf != nil {
		if pub, err := roles.CryptoPublicKey(tuf); err == nil {
			if alg, err := hsm.AlgorithmOf(pub); err == nil {
				ref.Algorithm = string(alg)
			}
		}
	}
	return ref
}

// Text is the summary for people.
func (s *Summary) Text(now time.Time) string {
	var w strings.Builder
	name := s.Repository
	if name == "" {
		name = "(unnamed repository)"
	}
	fmt.Fprintf(&w, "Signing bundle %s: %s of %s\n", short(s.ID), s.Operation, name)
	if s.Bootstrap {
		fmt.Fprintf(&w, "  a new repository: root v1 payload sha256 %s\n", s.FirstRoot)
	} else {
		fmt.Fprintf(&w, "  repository identity: 1.root.json sha256 %s\n", s.FirstRoot)
	}
	if len(s.Inputs) > 0 {
		fmt.Fprintf(&w, "  inputs:  %s\n", inputsText(s.Inputs))
	}
	fmt.Fprintf(&w, "  made:    %s\n", s.CreatedAt)
	exp, _ := time.Parse(time.RFC3339, s.Expires)
	if s.Expired {
		fmt.Fprintf(&w, "  expires: %s (EXPIRED)\n", s.Expires)
	} else {
		fmt.Fprintf(&w, "  expires: %s (in %s)\n", s.Expires, human(exp.Sub(now)))
	}
	for _, r := range s.Roles {
		fmt.Fprintf(&w, "\n%s v%d, expires %s, payload sha256 %s\n", r.Role, r.Version, r.Expires, r.PayloadSHA256)
		for _, ch := range r.Changes {
			fmt.Fprintf(&w, "  %s\n", ch.Text)
			if ch.Key != nil {
				fmt.Fprintf(&w, "      %s\n", keyText(*ch.Key, ch.Kind == roles.DiffKeyAdded))
			}
		}
		for _, t := range r.Thresholds {
			state := "still needed"
			if t.Met {
				state = "met"
			}
			fmt.Fprintf(&w, "  signatures of %s's keys: %d of %d needed, %s\n", t.Of, t.Have, t.Threshold, state)
			for _, k := range t.Signed {
				fmt.Fprintf(&w, "    signed   %s\n", keyText(k, false))
			}
			for _, k := range t.Missing {
				fmt.Fprintf(&w, "    missing  %s\n", keyText(k, false))
			}
		}
	}
	if s.Complete {
		fmt.Fprintf(&w, "\nEvery threshold is met: the custodian can apply the bundle.")
	} else {
		fmt.Fprintf(&w, "\nNot every threshold is met yet.")
	}
	return w.String()
}

// human is a duration in days, hours and minutes ("6d23h", "5h10m").
func human(d time.Duration) string {
	d = d.Truncate(time.Minute)
	days, rest := int(d/(24*time.Hour)), d%(24*time.Hour)
	h, m := int(rest/time.Hour), int(rest%time.Hour/time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dm", m)
}

func keyText(k KeyRef, evidence bool) string {
	parts := []string{short(k.KeyID), k.Algorithm}
	if k.URI != "" {
		parts = append(parts, k.URI)
	}
	if k.Device != "" {
		parts = append(parts, "("+k.Device+")")
	}
	s := strings.Join(slices.DeleteFunc(parts, func(p string) bool { return p == "" }), "  ")
	if evidence && k.Evidence != "" {
		s += "\n        " + k.Evidence
	}
	return s
}

func inputsText(in map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(in)) {
		v, _ := json.Marshal(in[k])
		parts = append(parts, k+"="+string(v))
	}
	return strings.Join(parts, " ")
}

// Missing lists, role by role, the thresholds not met and the keys that
// could still meet them: "root v4: 1 more of 5c2f… (device), 7a1e…".
func (s *Summary) Missing() []string {
	var out []string
	for _, r := range s.Roles {
		for _, t := range r.Thresholds {
			if t.Met {
				continue
			}
			var ks []string
			for _, k := range t.Missing {
				d := short(k.KeyID)
				if k.Device != "" {
					d += " (" + k.Device + ")"
				} else if k.URI != "" {
					d += " (" + k.URI + ")"
				}
				ks = append(ks, d)
			}
			out = append(out, fmt.Sprintf("%s v%d needs %d more %s by %s's keys: %s", r.Role, r.Version, t.Threshold-t.Have,
				plural(t.Threshold-t.Have, "signature", "signatures"), t.Of, strings.Join(ks, ", ")))
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
