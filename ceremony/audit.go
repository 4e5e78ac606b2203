package ceremony

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// AuditReport is everything an auditor of a repository's ceremonies
// asks, in one report (rootkeeper audit): who signed each root version
// with which device, the keys trusted now with their evidence checked
// again, the delegations, the expiry calendar, the policy and the
// transcript's verdict. It opens no device.
type AuditReport struct {
	Repository string    `json:"repository"`
	At         time.Time `json:"at"`
	Version    string    `json:"rootkeeper_version"`
	// Identity is "sha256:HEX" of metadata/1.root.json.
	Identity string `json:"identity,omitempty"`
	// State is the repository's state for clients at At (status).
	State       Health                 `json:"state"`
	Transcript  *TranscriptReport      `json:"transcript"`
	RootChain   []AuditRoot            `json:"root_chain"`
	Keys        []AuditKey             `json:"keys"`
	Delegations []roles.DelegationInfo `json:"delegations"`
	Calendar    []RoleStatus           `json:"calendar"`
	Policy      *AuditPolicy           `json:"policy,omitempty"`
	// Problems: what a client would refuse and evidence that fails.
	Problems []roles.Problem `json:"problems"`
	Warnings []string        `json:"warnings,omitempty"`
}

// AuditKey is a key record re-checked, and the roles that trust the key
// now (a set of hashed bins as PREFIX-*).
type AuditKey struct {
	EvidenceCheck
	Roles []string `json:"roles"`
}

// AuditRoot is one root version: its keys and who signed it.
type AuditRoot struct {
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Threshold int       `json:"threshold"`
	KeyIDs    []string  `json:"keyids"`
	// Entry is the transcript entry that wrote it (0: none records it),
	// with its operation, time and operator.
	Entry      int              `json:"entry,omitempty"`
	Operation  string           `json:"operation,omitempty"`
	Time       *time.Time       `json:"time,omitempty"`
	Operator   string           `json:"operator,omitempty"`
	Host       string           `json:"host,omitempty"`
	Signatures []AuditSignature `json:"signatures"`
}

// AuditSignature is one signature on a root version and the device of its
// key, from its key record; Evidence says whether the record's evidence
// is still what the transcript recorded when the signature was made.
type AuditSignature struct {
	SignatureRecord
	URI string `json:"uri,omitempty"`
	// EvidenceNow is "matches the transcript", "differs from the
	// transcript", "not in the transcript" or "no key record".
	EvidenceNow string `json:"evidence_now"`
}

// AuditPolicy is rootkeeper.yaml without the parts that locate PIN files.
type AuditPolicy struct {
	Repository         string            `json:"name,omitempty"`
	ConsistentSnapshot bool              `json:"consistent_snapshot"`
	Require            string            `json:"require"`
	Roles              []AuditPolicyRole `json:"roles"`
}

// AuditPolicyRole is one role's policy; Keys are key objects (no PIN
// source, no module path).
type AuditPolicyRole struct {
	Role        string   `json:"role"`
	Expires     Seconds  `json:"expires_seconds"`
	Window      Seconds  `json:"window_seconds"`
	Keys        []string `json:"keys"`
	PINPolicy   string   `json:"pin_policy,omitempty"`
	TouchPolicy string   `json:"touch_policy,omitempty"`
}

// Audit reads dir and makes its audit report at time at. keys re-checks
// YubiKey attestations (CheckStoredEvidence); it opens no device.
func Audit(dir string, keys *hsm.Keyring, at time.Time) (*AuditReport, error) {
	at = at.UTC().Truncate(time.Second)
	tr, err := VerifyTranscript(dir)
	if err != nil {
		return nil, err
	}
	st, err := Status(dir, at)
	if err != nil {
		return nil, err
	}
	ev, err := CheckStoredEvidence(dir, keys)
	if err != nil {
		return nil, err
	}
	rep := &AuditReport{Repository: dir, At: at, Version: Version(), Identity: tr.Identity, State: st.Health, Transcript: tr,
		Keys: auditKeys(ev.Checks, st.Roles), Delegations: st.Delegations, Calendar: st.Roles, Problems: append(st.Problems, ev.Problems...), Warnings: ev.Warnings}
	if rep.Problems == nil {
		rep.Problems = []roles.Problem{}
	}
	if rep.Delegations == nil {
		rep.Delegations = []roles.DelegationInfo{}
	}
	if rep.Keys == nil {
		rep.Keys = []AuditKey{}
	}
	if len(ev.Problems) > 0 {
		rep.State = Invalid
	}
	sort.SliceStable(rep.Keys, func(i, j int) bool { return rep.Keys[i].URI < rep.Keys[j].URI })
	if rep.RootChain, err = auditRoots(dir); err != nil {
		return nil, err
	}
	if pol, err := LoadPolicy(dir); err == nil {
		rep.Policy = auditPolicy(pol)
	}
	return rep, nil
}

// auditKeys gives each re-checked key record the roles that trust its key
// now, in the order status lists them (hashed bins once, as PREFIX-*).
func auditKeys(checks []EvidenceCheck, now []RoleStatus) []AuditKey {
	trusted := map[string][]string{}
	for _, rs := range now {
		name := rs.Role
		if rs.Bins != "" {
			name = rs.Bins + "-*"
		}
		for _, id := range rs.KeyIDs {
			if !slices.Contains(trusted[id], name) {
				trusted[id] = append(trusted[id], name)
			}
		}
	}
	var out []AuditKey
	for _, c := range checks {
		k := AuditKey{EvidenceCheck: c, Roles: trusted[c.KeyID]}
		if k.Roles == nil {
			k.Roles = []string{}
		}
		out = append(out, k)
	}
	return out
}

// auditRoots lists every root version with its signatures, from the file,
// the key records and the transcript entry that wrote it.
func auditRoots(dir string) ([]AuditRoot, error) {
	data, _ := os.ReadFile(filepath.Join(dir, TranscriptFile))
	entries, _ := ParseTranscript(data) // a damaged transcript is the verdict's business
	keys := keyLookup{dir: dir, written: map[string][]byte{}, cache: map[string]SignatureRecord{}}
	out := []AuditRoot{}
	for n := int64(1); ; n++ {
		p := fmt.Sprintf("metadata/%d.root.json", n)
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			break
		}
		var md struct {
			Signed struct {
				Expires time.Time `json:"expires"`
				Roles   map[string]struct {
					KeyIDs    []string `json:"keyids"`
					Threshold int      `json:"threshold"`
				} `json:"roles"`
			} `json:"signed"`
		}
		info, err := roles.ReadSigned(raw)
		if err != nil || json.Unmarshal(raw, &md) != nil {
			return nil, &RepoError{Dir: dir, Detail: p + " cannot be read", Err: err, HintText: "run rootkeeper verify --repo " + dir + " to see what is wrong"}
		}
		r := AuditRoot{Version: n, Expires: md.Signed.Expires.UTC(), Threshold: md.Signed.Roles[RoleRoot].Threshold,
			KeyIDs: md.Signed.Roles[RoleRoot].KeyIDs, Signatures: []AuditSignature{}}
		recorded := map[string]SignatureRecord{}
		if e := writerEntry(entries, p, sha256hex(raw)); e != nil {
			t := e.Time.UTC().Truncate(time.Second)
			r.Entry, r.Operation, r.Time, r.Operator, r.Host = e.Seq, e.Operation, &t, e.Operator, e.Host
			for _, s := range e.Signed {
				if s.Path == p {
					for _, sig := range s.Signatures {
						recorded[sig.KeyID] = sig
					}
				}
			}
		}
		for _, id := range info.KeyIDs {
			r.Signatures = append(r.Signatures, auditSignature(dir, keys.record(id), recorded))
		}
		sort.SliceStable(r.Signatures, func(i, j int) bool { return r.Signatures[i].URI < r.Signatures[j].URI })
		out = append(out, r)
	}
	return out, nil
}

// writerEntry is the last entry that wrote path with hash.
func writerEntry(entries []Entry, path, hash string) *Entry {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Files[path] == hash {
			return &entries[i]
		}
	}
	return nil
}

func auditSignature(dir string, now SignatureRecord, recorded map[string]SignatureRecord) AuditSignature {
	s := AuditSignature{SignatureRecord: now}
	s.URI = keyURI(dir, now.KeyID)
	rec, inTranscript := recorded[now.KeyID]
	if inTranscript {
		s.Via = rec.Via
	}
	switch {
	case now.Device == "":
		s.EvidenceNow = "no key record"
	case !inTranscript || rec.Evidence == "":
		s.EvidenceNow = "not in the transcript"
	case rec.Evidence == now.Evidence:
		s.EvidenceNow = "matches the transcript"
	default:
		s.EvidenceNow = "differs from the transcript"
	}
	return s
}

// keyURI is the object of a key's record (keys/ or keys/retired/).
func keyURI(dir, id string) string {
	for _, p := range []string{"keys", "keys/retired"} {
		data, err := os.ReadFile(filepath.Join(dir, p, id+".json"))
		var rec KeyRecord
		if err == nil && json.Unmarshal(data, &rec) == nil {
			return objectOf(rec.URI)
		}
	}
	return ""
}

func auditPolicy(pol *Policy) *AuditPolicy {
	ap := &AuditPolicy{Repository: pol.Repository, ConsistentSnapshot: pol.ConsistentSnapshot, Require: pol.Require, Roles: []AuditPolicyRole{}}
	if ap.Require == "" {
		ap.Require = RequireHardwareBorn
	}
	names := make([]string, 0, len(pol.Roles))
	for name := range pol.Roles {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return roleOrder(names[i]) < roleOrder(names[j]) })
	for _, name := range names {
		rp := pol.Role(name)
		r := AuditPolicyRole{Role: name, Expires: Seconds(rp.Expires.D()), Window: Seconds(rp.Window.D()), Keys: []string{},
			PINPolicy: rp.PINPolicy, TouchPolicy: rp.TouchPolicy}
		for _, u := range rp.Keys {
			r.Keys = append(r.Keys, objectOf(u))
		}
		ap.Roles = append(ap.Roles, r)
	}
	return ap
}

// roleOrder sorts the top-level roles first, in TUF's order, then the
// delegations by name.
func roleOrder(name string) string {
	for i, r := range TopLevelRoles {
		if r == name {
			return fmt.Sprintf("0%d", i)
		}
	}
	return "1" + strings.ToLower(name)
}
