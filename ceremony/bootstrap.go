package ceremony

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// Init runs the bootstrap ceremony of plan into dir: it opens every key,
// checks its hardware evidence, builds version 1 of every role, shows the
// officer what will be signed, signs (root with every root key, one device
// after another), verifies the result as a TUF client would, and only then
// writes the repository.
//
// dir must not exist or be empty; missing parent directories are made
// (0755), as mkdir -p does. The repository gets an empty targets/
// directory, so that a web server serving it answers for targets/ from
// the start. On any error nothing is left behind: not the directories
// Init made either.
func (s *Session) Init(ctx context.Context, plan *Plan, dir string) (res *Result, err error) {
	return s.InitWith(ctx, plan, dir, nil)
}

// InitWith is Init with initial targets (initial.go; nil for none), as an
// import from Notary gives them.
func (s *Session) InitWith(ctx context.Context, plan *Plan, dir string, initial *Initial) (res *Result, err error) {
	if err := initial.check(plan); err != nil {
		return nil, err
	}
	created, err := s.makeRepoDir(dir)
	if err != nil {
		return nil, err
	}
	removeCreated := func() {
		for _, d := range created { // deepest first
			os.Remove(d)
		}
	}
	lock, err := LockRepo(dir)
	if err != nil {
		removeCreated()
		return nil, err
	}
	madeTargets := false
	defer func() {
		lock.Unlock(err != nil)
		if err != nil {
			if madeTargets {
				os.Remove(filepath.Join(dir, roles.TargetsDir))
			}
			removeCreated()
		}
	}()
	rec, err := recoverRepo(dir) // an init a crash interrupted: finished, or its temporaries removed
	if err != nil {
		return nil, err
	}
	s.recovered(rec)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &IOError{Op: "read", Path: dir, Err: err}
	}
	for _, e := range entries {
		if e.Name() != LockFile && !leftoverTargetsDir(dir, e) {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("is not empty (it has %s)", e.Name()),
				HintText: "init writes only into a new or empty directory; choose another --repo"}
		}
	}
	if err := checkWritable(dir); err != nil {
		return nil, err
	}

	now := s.now()
	require := plan.Require
	if require == "" {
		require = RequireHardwareBorn
	}

	// Open every key and check it before anything is signed.
	keyRoles := map[string][]string{} // key id → roles
	opened := map[string]*Key{}
	var order []string
	roleKeys := func(role string, uris, pinned []string) (roles.RoleKeys, error) {
		var rk roles.RoleKeys
		seen := map[string]string{}
		for i, uri := range uris {
			k, err := s.Open(ctx, uri)
			if err != nil {
				return rk, err
			}
			if i < len(pinned) && pinned[i] != k.ID() {
				return rk, &MismatchError{URI: uri, KeyID: k.ID(), Role: "the plan (" + role + ")", Trusted: []string{pinned[i]}}
			}
			if err := s.checkEvidence(k, role, require); err != nil {
				return rk, err
			}
			if rp := plan.Role(role); rp != nil {
				if err := checkKeyPolicy(k, role, rp.KeyPolicy); err != nil {
					return rk, err
				}
			}
			if other, dup := seen[k.ID()]; dup {
				return rk, &RepoError{Dir: dir, Detail: fmt.Sprintf("%s: %s and %s are the same key (%s)", role, objectOf(other), objectOf(uri), short(k.ID())),
					HintText: "each key of a role must be a different key; fix the plan"}
			}
			seen[k.ID()] = uri
			if _, ok := opened[k.ID()]; !ok {
				order = append(order, k.ID())
			}
			opened[k.ID()] = k
			keyRoles[k.ID()] = append(keyRoles[k.ID()], role)
			rk.Keys = append(rk.Keys, k.TUF.Key())
		}
		return rk, nil
	}
	b := roles.Bootstrap{ConsistentSnapshot: plan.Consistent(), Expires: map[string]time.Time{}}
	for _, name := range TopLevelRoles {
		rp := plan.Role(name)
		rk, err := roleKeys(name, rp.Keys, rp.KeyIDs)
		if err != nil {
			return nil, err
		}
		rk.Threshold = rp.Threshold
		if name == RoleRoot {
			var rootKeys []*Key
			for _, tk := range rk.Keys {
				id, _ := roles.KeyID(tk)
				rootKeys = append(rootKeys, opened[id])
			}
			if err := distinctDevices(rootKeys); err != nil {
				return nil, err
			}
		}
		switch name {
		case RoleRoot:
			b.Root = rk
		case RoleTargets:
			b.Targets = rk
		case RoleSnapshot:
			b.Snapshot = rk
		case RoleTimestamp:
			b.Timestamp = rk
		}
		b.Expires[name] = now.Add(rp.Expires.D())
	}
	for _, d := range plan.Delegations {
		rk, err := roleKeys(d.Name, d.Keys, d.KeyIDs)
		if err != nil {
			return nil, err
		}
		exp := d.Expires
		if exp == 0 {
			exp = plan.Roles.Targets.Expires
		}
		b.Expires[d.Name] = now.Add(exp.D())
		b.Delegations = append(b.Delegations, roles.Delegation{Name: d.Name, Keys: rk.Keys, Threshold: d.Threshold, Paths: d.Paths, Terminating: d.Terminating})
	}
	b.Now = now
	b.Anchor = headAnchor(0, "") // the first change: made on an empty transcript
	repo, err := roles.New(b)
	if err != nil {
		return nil, err
	}
	initialFiles, err := initial.apply(repo, plan.Consistent())
	if err != nil {
		return nil, err
	}

	// The policy: lifetimes, windows, signing keys (root keys too, for the
	// next ceremony).
	pol := &Policy{Version: 1, Repository: plan.Repository, ConsistentSnapshot: plan.Consistent(), Require: require, Roles: map[string]RolePolicy{}}
	for _, name := range TopLevelRoles {
		rp := plan.Role(name)
		pol.Roles[name] = RolePolicy{Expires: rp.Expires, Window: rp.Window, Keys: rp.Keys, KeyPolicy: rp.KeyPolicy}
	}
	for _, d := range plan.Delegations {
		exp := d.Expires
		if exp == 0 {
			exp = plan.Roles.Targets.Expires
		}
		pol.Roles[d.Name] = RolePolicy{Expires: exp, Window: d.Window, Keys: d.Keys}
	}

	summary := s.bootstrapSummary(plan, dir, now, b, opened, keyRoles, order) + initial.summary()
	if err := s.confirm(summary); err != nil {
		return nil, err
	}

	// Sign: root one device after another, then the others.
	root := repo.Root()
	if err := signWith(ctx, s, root, RoleRoot, plan.Roles.Root.Keys, root.Signed.Roles[RoleRoot].KeyIDs, plan.Roles.Root.Threshold); err != nil {
		return nil, err
	}
	if err := signWith(ctx, s, repo.Targets, RoleTargets, plan.Roles.Targets.Keys, root.Signed.Roles[RoleTargets].KeyIDs, plan.Roles.Targets.Threshold); err != nil {
		return nil, err
	}
	for _, d := range plan.Delegations {
		trusted := delegatedKeyIDs(repo.Targets, d.Name)
		if err := signWith(ctx, s, repo.Delegated[d.Name], d.Name, d.Keys, trusted, d.Threshold); err != nil {
			return nil, err
		}
	}
	if err := signWith(ctx, s, repo.Snapshot, RoleSnapshot, plan.Roles.Snapshot.Keys, root.Signed.Roles[RoleSnapshot].KeyIDs, plan.Roles.Snapshot.Threshold); err != nil {
		return nil, err
	}
	if err := signWith(ctx, s, repo.Timestamp, RoleTimestamp, plan.Roles.Timestamp.Keys, root.Signed.Roles[RoleTimestamp].KeyIDs, plan.Roles.Timestamp.Threshold); err != nil {
		return nil, err
	}

	extra := initialFiles
	for _, id := range order {
		rec, err := keyRecord(opened[id], keyRoles[id], now)
		if err != nil {
			return nil, err
		}
		data, err := marshalJSON(rec)
		if err != nil {
			return nil, err
		}
		extra = append(extra, File{Path: "keys/" + id + ".json", Data: data})
	}
	changed := append([]string{}, TopLevelRoles...)
	for _, d := range plan.Delegations {
		changed = append(changed, d.Name)
	}
	details := map[string]any{"plan_repository": plan.Repository, "root_threshold": plan.Roles.Root.Threshold, "root_keys": keyIDsOf(root.Signed.Roles[RoleRoot].KeyIDs), "require": require}
	if plan.Digest != "" {
		details["plan_sha256"] = plan.Digest
	}
	initial.addDetails(details)
	if err := os.Mkdir(filepath.Join(dir, roles.TargetsDir), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, &IOError{Op: "create", Path: filepath.Join(dir, roles.TargetsDir), Err: err}
	}
	madeTargets = true
	return s.commit(&change{op: "init", dir: dir, repo: repo, policy: pol, now: now, changed: changed, extra: extra, details: details})
}

// makeRepoDir makes dir and its missing parents, and returns the
// directories it made, deepest first. An existing dir must be a directory.
func (s *Session) makeRepoDir(dir string) ([]string, error) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return nil, &RepoError{Dir: dir, Detail: "is a file, not a directory", HintText: "choose a new directory for --repo"}
	case err == nil:
		return nil, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, &IOError{Op: "read", Path: dir, Err: err}
	}
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, &IOError{Op: "read", Path: d, Err: err}
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) > 1 {
		s.progress("creating %s and its missing parent directories (%s)", dir, strings.Join(missing[1:], ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		for _, d := range missing {
			os.Remove(d)
		}
		return nil, &IOError{Op: "create", Path: dir, Err: err}
	}
	return missing, nil
}

func keyIDsOf(ids []string) []string { return append([]string(nil), ids...) }

func delegatedKeyIDs(t *metadata.Metadata[metadata.TargetsType], name string) []string {
	if t.Signed.Delegations == nil {
		return nil
	}
	for _, r := range t.Signed.Delegations.Roles {
		if r.Name == name {
			return r.KeyIDs
		}
	}
	return nil
}

func (s *Session) confirm(summary string) error {
	if s.UI == nil {
		if s.Yes {
			return nil
		}
		return errCancelled
	}
	if s.Yes {
		if sh, ok := s.UI.(interface{ Show(string) }); ok {
			sh.Show(summary) // even when quiet: the record of what was signed
		} else {
			s.UI.Progress(summary)
		}
		return nil
	}
	ok, err := s.UI.Confirm(summary)
	if err != nil {
		return err
	}
	if !ok {
		return errCancelled
	}
	return nil
}

func (s *Session) bootstrapSummary(plan *Plan, dir string, now time.Time, b roles.Bootstrap, opened map[string]*Key, keyRoles map[string][]string, order []string) string {
	var w strings.Builder
	name := plan.Repository
	if name == "" {
		name = dir
	}
	fmt.Fprintf(&w, "Bootstrap ceremony for %s\n", name)
	fmt.Fprintf(&w, "  directory:            %s\n", dir)
	fmt.Fprintf(&w, "  consistent snapshots: %t\n", plan.Consistent())
	fmt.Fprintf(&w, "  key evidence:         %s\n\n", requireOf(plan))
	line := func(role string, rk roles.RoleKeys, exp time.Time) {
		fmt.Fprintf(&w, "  %-10s %d of %d keys, expires %s (in %s)\n", role, rk.Threshold, len(rk.Keys), exp.Format(time.RFC3339), Human(exp.Sub(now)))
		for _, k := range rk.Keys {
			id, _ := roles.KeyID(k)
			ok := opened[id]
			alg, _ := hsm.AlgorithmOf(ok.HW.Public())
			fmt.Fprintf(&w, "    %s  %-10s %s\n      %s\n", short(id), alg, objectOf(ok.URI), ok.Evidence.Summary())
		}
	}
	line(RoleRoot, b.Root, b.Expires[RoleRoot])
	line(RoleTargets, b.Targets, b.Expires[RoleTargets])
	line(RoleSnapshot, b.Snapshot, b.Expires[RoleSnapshot])
	line(RoleTimestamp, b.Timestamp, b.Expires[RoleTimestamp])
	for _, d := range b.Delegations {
		fmt.Fprintf(&w, "  delegation %q for %s (terminating %t):\n", d.Name, strings.Join(d.Paths, ", "), d.Terminating)
		line(d.Name, roles.RoleKeys{Keys: d.Keys, Threshold: d.Threshold}, b.Expires[d.Name])
	}
	fmt.Fprintf(&w, "\nEvery key listed will sign; root keys one device after another.")
	return w.String()
}

func requireOf(p *Plan) string {
	if p.Require == "" {
		return RequireHardwareBorn
	}
	return p.Require
}

// leftoverTargetsDir reports whether e is the empty targets/ directory an
// init that was interrupted before its journal was committed left behind:
// the next init may use it (it holds nothing), so that a crashed init can
// be run again.
func leftoverTargetsDir(dir string, e fs.DirEntry) bool {
	if e.Name() != roles.TargetsDir || e.Type() != fs.ModeDir {
		return false
	}
	sub, err := os.ReadDir(filepath.Join(dir, e.Name()))
	return err == nil && len(sub) == 0
}
