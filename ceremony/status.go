package ceremony

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// Health is a repository's or role's state, worst first when compared.
type Health int

// Health states. Their order matters: the repository's health is its worst
// role's.
const (
	Healthy Health = iota // valid and outside its re-signing window
	Due                   // valid, but inside its re-signing window
	Invalid               // expired, below threshold, tampered: clients refuse it
)

func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Due:
		return "due"
	}
	return "invalid"
}

// MarshalJSON writes the state's name.
func (h Health) MarshalJSON() ([]byte, error) { return json.Marshal(h.String()) }

// RoleStatus is one role's state at a point in time.
type RoleStatus struct {
	Role            string    `json:"role"`
	Delegator       string    `json:"delegator,omitempty"`
	Version         int64     `json:"version"`
	Expires         time.Time `json:"expires"`
	Left            Seconds   `json:"time_left_seconds"` // negative once expired
	Window          Seconds   `json:"window_seconds"`    // its re-signing window
	Threshold       int       `json:"threshold"`
	ValidSignatures int       `json:"valid_signatures"`
	KeyIDs          []string  `json:"keyids"`
	Health          Health    `json:"state"`
	Problem         string    `json:"problem,omitempty"`
	// Bins is the name prefix of the hashed bins the role is one of.
	Bins string `json:"bins,omitempty"`
}

// StatusReport is a repository's state.
type StatusReport struct {
	Repository string          `json:"repository"`
	At         time.Time       `json:"at"`
	Health     Health          `json:"state"`
	Roles      []RoleStatus    `json:"roles"`
	Problems   []roles.Problem `json:"problems,omitempty"`
	// Delegations lists every delegation, nested ones and hashed bins
	// too (delegate.go).
	Delegations []roles.DelegationInfo `json:"delegations,omitempty"`
	// BinSets folds each set of hashed bins of Roles (which lists every
	// bin): how many are due or invalid, the earliest expiry, the worst
	// state, the bins that differ from the rest.
	BinSets []*BinFold `json:"bin_sets,omitempty"`
	// Evidence is the hardware evidence recorded for the keys the roles
	// trust (keys/KEYID.json), by key id.
	Evidence map[string]*hsm.Evidence `json:"evidence,omitempty"`
}

// Status reports every role's version, expiry, signatures and health at
// time at, using the repository's policy for the re-signing windows.
func Status(dir string, at time.Time) (*StatusReport, error) {
	root := dir
	if root == "" {
		root = "." // os.DirFS("") would be rooted at /
	}
	f, err := CheckStatus(dir, os.DirFS(root), at)
	if err != nil {
		return nil, err
	}
	return f.At(at), nil
}

// StatusFacts is what a status check found in a repository — the
// verification report at its reference time, the re-signing windows, the
// delegations and the keys' evidence — from which StatusReport is drawn at
// a point in time.
type StatusFacts struct {
	dir         string
	at          time.Time
	report      *roles.Report
	windows     []time.Duration          // each of report.Roles' re-signing window
	evidence    map[string]*hsm.Evidence // of the keys the roles trust
	delegations []roles.DelegationInfo
}

// CheckStatus verifies the repository dir, read through fsys (rooted at
// dir), as a client would at time at (every role, every target file), and
// reads its policy and its keys' evidence: everything Status reports.
func CheckStatus(dir string, fsys fs.FS, at time.Time) (*StatusFacts, error) {
	at = at.UTC().Truncate(time.Second) // the JSON's times and durations are in whole seconds
	if fi, err := fs.Stat(fsys, "metadata"); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no metadata/ directory: not a TUF repository", HintText: "check --repo"}
	}
	pol, err := loadPolicyFS(dir, fsys)
	if err != nil {
		var re *RepoError
		if !errors.As(err, &re) {
			return nil, err
		}
		pol = &Policy{Version: 1, Roles: map[string]RolePolicy{}} // a repository rootkeeper did not write
	}
	// Verify and the delegation listing read and parse each file once.
	cache := roles.NewCache()
	files := roles.ReadOnce(fsys)
	report, err := roles.Verify(files, roles.VerifyOptions{At: at, CheckTargets: true, Cache: cache})
	if err != nil {
		return nil, err
	}
	f := &StatusFacts{dir: dir, at: at, report: report, evidence: map[string]*hsm.Evidence{}}
	evidence := loadEvidence(fsys)
	for _, rr := range report.Roles {
		window := pol.Role(policyRole(pol, rr.Role)).Window.D()
		if window == 0 {
			window = defaultWindows[rr.Role].D()
		}
		f.windows = append(f.windows, window)
		for _, id := range rr.KeyIDs {
			if ev, ok := evidence[id]; ok {
				f.evidence[id] = ev
			}
		}
	}
	if repo, err := roles.LoadShared(files, cache); err == nil {
		f.delegations = repo.Delegations()
	}
	return f, nil
}

// Holds reports whether the facts, found at their reference time, are
// what a check at time at would find in the same files: the verification
// found nothing wrong, and no role a client checks the expiry of (every
// role but the superseded root versions) is expired at at by the strictest
// client's rule (tuf-js: from its expiry on, to the millisecond; go-tuf
// only after it). Time enters the checks only through those expiries, so
// then every check answers at at as it did at the facts' time.
func (f *StatusFacts) Holds(at time.Time) bool {
	if !f.report.OK {
		return false
	}
	at = at.UTC().Truncate(time.Second)
	newest := f.newestRoot()
	for _, rr := range f.report.Roles {
		if rr.Role == RoleRoot && rr.Version < newest {
			continue
		}
		if !at.Before(rr.Expires.Truncate(time.Millisecond)) {
			return false
		}
	}
	return true
}

func (f *StatusFacts) newestRoot() int64 {
	var newest int64 // superseded root versions neither expire nor fall due
	for _, rr := range f.report.Roles {
		if rr.Role == RoleRoot && rr.Version > newest {
			newest = rr.Version
		}
	}
	return newest
}

// At draws the status report at time at from the facts: time left,
// re-signing windows and health are of at; the verification's findings
// are the facts' (use it at another time than theirs only where Holds).
func (f *StatusFacts) At(at time.Time) *StatusReport {
	at = at.UTC().Truncate(time.Second)
	report := f.report
	st := &StatusReport{Repository: f.dir, At: at, Problems: slices.Clone(report.Problems), Evidence: map[string]*hsm.Evidence{}}
	newestRoot := f.newestRoot()
	for i, rr := range report.Roles {
		if rr.Role == RoleRoot && rr.Version < newestRoot && rr.Err == "" {
			continue
		}
		rs := RoleStatus{Role: rr.Role, Delegator: rr.Delegator, Version: rr.Version, Expires: rr.Expires.UTC(),
			Threshold: rr.Threshold, ValidSignatures: rr.ValidSignatures, KeyIDs: slices.Clone(rr.KeyIDs), Problem: rr.Err, Bins: rr.Bins}
		left := rr.Expires.Sub(at)
		rs.Left = Seconds(left)
		window := f.windows[i]
		rs.Window = Seconds(window)
		switch {
		case rr.Err != "" || left <= 0:
			rs.Health = Invalid
		case left < window:
			rs.Health = Due
		}
		for _, id := range rr.KeyIDs {
			if ev, ok := f.evidence[id]; ok {
				st.Evidence[id] = ev
			}
		}
		if rs.Health > st.Health {
			st.Health = rs.Health
		}
		st.Roles = append(st.Roles, rs)
	}
	if !report.OK {
		st.Health = Invalid
	}
	st.Delegations = slices.Clone(f.delegations) // the report is the caller's; the facts may be drawn again
	st.BinSets = FoldSets(st.Roles, BinsOfStatus(st), RoleStatus.Member)
	return st
}

// Member is the role as FoldBins compares it.
func (r RoleStatus) Member() BinMember {
	return BinMember{Role: r.Role, Version: r.Version, Expires: r.Expires, Health: r.Health,
		Valid: r.ValidSignatures, Threshold: r.Threshold, Detail: r.Problem}
}

// FoldRoles folds the hashed bins of a status report's roles (one row per
// set; status prints these).
func (st *StatusReport) FoldRoles() []Folded[RoleStatus] {
	return FoldBins(st.Roles, BinsOfStatus(st), RoleStatus.Member)
}

func loadEvidence(fsys fs.FS) map[string]*hsm.Evidence {
	out := map[string]*hsm.Evidence{}
	files, _ := fs.Glob(fsys, "keys/*.json")
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			continue
		}
		var rec KeyRecord
		if json.Unmarshal(data, &rec) == nil && rec.KeyID != "" && rec.Evidence != nil {
			out[rec.KeyID] = rec.Evidence
		}
	}
	return out
}

// Verify checks dir exactly as a TUF client starting from trustedRoot
// (nil: metadata/1.root.json) would at time at, and every target file.
func Verify(dir string, trustedRoot []byte, at time.Time) (*roles.Report, error) {
	if fi, err := os.Stat(filepath.Join(dir, "metadata")); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no metadata/ directory: not a TUF repository", HintText: "check --repo"}
	}
	rep, err := roles.Verify(os.DirFS(dir), roles.VerifyOptions{TrustedRoot: trustedRoot, At: at, CheckTargets: true})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", dir, err)
	}
	return rep, nil
}
