package ceremony

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// RulePolicy names a preflight problem with rootkeeper.yaml: the key URIs
// it lists for a role cannot make the signatures the role needs.
const RulePolicy = "policy"

// preflight checks the files a change is about to write into c.Dir, laid
// over what is there, as every client would meet them. Nothing is written
// unless the report is OK. In order:
//
//  1. roles.Verify from 1.root.json: the whole root chain, each new root
//     against the previous root's threshold and its own, recomputed key
//     ids, keytype/scheme agreement, every role's threshold reachable with
//     the keys it lists, timestamp, snapshot, targets, every delegation,
//     target files, and the expiry margins of the changed roles;
//  2. roles.CheckVersions against the directory as it is: published roots
//     immutable, every version only grows, no content change under an
//     old version;
//  3. roles.CheckClients: go-tuf's updater from every root version
//     published so far (a client may hold any of them), and a client that
//     updated before the change and keeps its metadata (rollback rules,
//     and recovery when timestamp or snapshot keys rotated);
//  4. the policy: the key URIs rootkeeper.yaml lists for each changed role
//     can still make the signatures it needs.
//
// Each problem names the role, the rule and the fix.
func preflight(c *Change, files []roles.File, opts roles.VerifyOptions) (*roles.Report, error) {
	opts.Cache = c.Repo.Cache() // the change's: what Needed and Sign checked is not checked again
	return preflightFiles(c.Dir, files, opts, c.Changed)
}

// PreflightOptions tune Preflight.
type PreflightOptions struct {
	// At is the reference time; zero means now.
	At time.Time
	// Margins are the expiry margins by role ("*" for the others).
	Margins map[string]time.Duration
}

// Preflight runs the checks every rootkeeper write runs before it
// touches disk on files (paths relative to dir) laid over the repository
// in dir, and returns the report: OK means every client would follow.
// Tools and tests use it to check metadata built by other means.
func Preflight(dir string, files []roles.File, opts PreflightOptions) (*roles.Report, error) {
	at := opts.At
	if at.IsZero() {
		at = time.Now()
	}
	return preflightFiles(dir, files, roles.VerifyOptions{At: at, Margins: opts.Margins, CheckTargets: true}, nil)
}

func preflightFiles(dir string, files []roles.File, opts roles.VerifyOptions, changed []string) (*roles.Report, error) {
	// One reference time, one read of each file and one cache for every
	// check: each distinct file is parsed once, each signature checked once
	// by rootkeeper's rules and each step of go-tuf's client rules taken
	// once from the same state (roles.Cache): the change's cache if the
	// caller has one, else one for this preflight.
	if opts.At.IsZero() {
		opts.At = time.Now()
	}
	if opts.Cache == nil {
		opts.Cache = roles.NewCache()
	}
	base := roles.ReadOnce(os.DirFS(dir))
	after := roles.ReadOnce(roles.Overlay(base, files))
	rep, err := roles.Verify(after, opts)
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		return rep, nil
	}
	var before fs.FS
	if _, err := fs.Stat(base, "metadata/1.root.json"); err == nil {
		before = base
	}
	var probs []roles.Problem
	if before != nil {
		probs = append(probs, roles.CheckVersions(before, after, opts.Cache)...)
	}
	cp, err := roles.CheckClients(after, roles.ClientCheckOptions{At: opts.At, Before: before, Cache: opts.Cache})
	if err != nil {
		return nil, err
	}
	probs = append(probs, cp...)
	probs = append(probs, policyProblems(after, rep, changed)...)
	if len(probs) > 0 {
		rep.Problems = append(rep.Problems, probs...)
		rep.OK = false
	}
	return rep, nil
}

// policyProblems checks that rootkeeper.yaml, as it will be, lists for
// every changed role key URIs that can reach the role's threshold: a URI
// whose key record names a key the role does not trust cannot sign it.
// URIs without a key record are given the benefit of the doubt.
func policyProblems(fsys fs.FS, rep *roles.Report, changed []string) []roles.Problem {
	data, err := fs.ReadFile(fsys, PolicyFile)
	if err != nil {
		return nil
	}
	var pol Policy
	if err := yaml.Unmarshal(data, &pol); err != nil || pol.Roles == nil {
		return nil
	}
	byURI := recordsIn(fsys)
	// The newest report of each role (root: its newest version).
	last := map[string]roles.RoleReport{}
	for _, rr := range rep.Roles {
		last[rr.Role] = rr
	}
	var probs []roles.Problem
	done := map[string]bool{}
	for _, role := range changed {
		rr, ok := last[role]
		if !ok || done[role] {
			continue
		}
		done[role] = true
		entry := policyRole(&pol, role)
		uris := pol.Roles[entry].Keys
		if len(uris) == 0 {
			continue
		}
		usable := 0
		var stale []string
		for _, u := range uris {
			id, known := byURI[objectOf(u)]
			switch {
			case !known, slices.Contains(rr.KeyIDs, id):
				usable++
			default:
				stale = append(stale, objectOf(u)+" ("+short(id)+")")
			}
		}
		if usable < rr.Threshold {
			detail := fmt.Sprintf("%s lists %d key URI(s) for %s that it trusts, but %s needs %d signatures", PolicyFile, usable, role, role, rr.Threshold)
			if len(stale) > 0 {
				detail += "; not trusted any more: " + strings.Join(stale, ", ")
			}
			probs = append(probs, roles.Problem{Role: role, File: PolicyFile, Rule: RulePolicy, Detail: detail,
				Hint: "list the URIs of the role's current keys under roles." + entry + ".keys in " + PolicyFile})
		}
	}
	return probs
}

// recordsIn maps key URIs (without query) to key ids from keys/*.json.
func recordsIn(fsys fs.FS) map[string]string {
	out := map[string]string{}
	names, _ := fs.Glob(fsys, "keys/*.json")
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			continue
		}
		var rec KeyRecord
		if json.Unmarshal(data, &rec) == nil && rec.KeyID != "" && rec.URI != "" {
			out[objectOf(rec.URI)] = rec.KeyID
		}
	}
	return out
}

// loadRecords reads every key record of dir (keys/*.json), by key id.
func loadRecords(dir string) map[string]*KeyRecord { return loadRecordsGlob(dir, "keys/*.json") }

// loadRecordsGlob reads the key records matching pattern in dir.
func loadRecordsGlob(dir, pattern string) map[string]*KeyRecord {
	out := map[string]*KeyRecord{}
	fsys := os.DirFS(dir)
	names, _ := fs.Glob(fsys, pattern)
	for _, n := range names {
		f, err := fsys.Open(n)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		if err != nil {
			continue
		}
		var rec KeyRecord
		dec := json.NewDecoder(bytes.NewReader(data))
		if dec.Decode(&rec) == nil && rec.KeyID != "" {
			out[rec.KeyID] = &rec
		}
	}
	return out
}

// errAbsent reports whether err means the device or key is not there (as
// opposed to a PIN or device failure, which must stop the ceremony).
func errAbsent(err error) bool {
	return errors.Is(err, hsm.ErrTokenNotPresent) || errors.Is(err, hsm.ErrKeyNotFound)
}

// retiredRecords returns, for every key in before that the new state of
// repo no longer trusts and that has a key record, a copy of the record
// under keys/retired/ to write with the change; the change removes
// the originals (retiredPaths). Records of keys
// nobody trusts are flagged by verify (a stale or planted record), so a
// rotation or revocation moves them out of keys/ and keeps them as
// history.
func retiredRecords(dir string, repo *roles.Repo, before []string) ([]File, []string) {
	now := map[string]bool{}
	for _, id := range repo.KeyIDs() {
		now[id] = true
	}
	var files []File
	var ids []string
	for _, id := range before {
		if now[id] {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "keys", id+".json"))
		if err != nil {
			continue
		}
		files = append(files, File{Path: "keys/retired/" + id + ".json", Data: data})
		ids = append(ids, id)
	}
	return files, ids
}

// retiredPaths are the records copied to keys/retired/, which the change
// removes from keys/ (through the journal, with the rest of the change).
func retiredPaths(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, "keys/"+id+".json")
	}
	return out
}
