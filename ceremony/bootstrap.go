package ceremony

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	if err := s.checkInitDir(dir); err != nil {
		return nil, err
	}
	keys, err := s.openPlanKeys(ctx, plan, dir) // every key opened and checked before anything is signed
	if err != nil {
		return nil, err
	}
	c, err := planInit(plan, dir, initial, keys, s.now())
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, roles.TargetsDir), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, &IOError{Op: "create", Path: filepath.Join(dir, roles.TargetsDir), Err: err}
	}
	madeTargets = true
	return s.run(ctx, c)
}

// checkInitDir finishes an init a crash interrupted (or removes its
// temporaries) and checks that dir is empty and writable.
func (s *Session) checkInitDir(dir string) error {
	rec, err := recoverRepo(dir)
	if err != nil {
		return err
	}
	s.recovered(rec)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &IOError{Op: "read", Path: dir, Err: err}
	}
	for _, e := range entries {
		if e.Name() != LockFile && !leftoverTargetsDir(dir, e) && !pendingBootstrap(dir, e) {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("is not empty (it has %s)", e.Name()),
				HintText: "init writes only into a new or empty directory; choose another --repo"}
		}
	}
	return checkWritable(dir)
}

// planKeys are the keys of a plan, opened and checked: by key id, the
// roles of each, in the order first met, and each role's keys.
type planKeys struct {
	opened   map[string]*Key
	keyRoles map[string][]string
	order    []string
	role     map[string]roles.RoleKeys
}

// openPlanKeys opens every key of the plan (the backends wait for a
// YubiKey by serial) and checks it: the key id the plan pins, the
// evidence the plan requires, the YubiKey policies, no key twice in a
// role, the root keys on distinct devices.
func (s *Session) openPlanKeys(ctx context.Context, plan *Plan, dir string) (*planKeys, error) {
	pk := &planKeys{opened: map[string]*Key{}, keyRoles: map[string][]string{}, role: map[string]roles.RoleKeys{}}
	for _, name := range TopLevelRoles {
		rp := plan.Role(name)
		if err := s.openRoleKeys(ctx, pk, plan, dir, name, rp.Keys, rp.KeyIDs, rp.Threshold); err != nil {
			return nil, err
		}
	}
	var rootKeys []*Key
	for _, tk := range pk.role[RoleRoot].Keys {
		id, _ := roles.KeyID(tk)
		rootKeys = append(rootKeys, pk.opened[id])
	}
	if err := distinctDevices(rootKeys); err != nil {
		return nil, err
	}
	for _, d := range plan.Delegations {
		if err := s.openRoleKeys(ctx, pk, plan, dir, d.Name, d.Keys, d.KeyIDs, d.Threshold); err != nil {
			return nil, err
		}
	}
	return pk, nil
}

// openPlanKey opens one key of the plan and checks its evidence: a
// device key (uri), or a key export (file:PATH), whose evidence is checked
// without the device (CheckExportedKey: the key id recomputed, a YubiKey
// attestation verified again against the roots).
func (s *Session) openPlanKey(ctx context.Context, plan *Plan, uri, role string) (*Key, error) {
	e, ok := plan.Exported(uri)
	if !ok {
		k, err := s.Open(ctx, uri)
		if err != nil {
			return nil, err
		}
		return k, s.checkEvidence(k, role, requireOf(plan))
	}
	bs, _ := s.Keys.(backendSource)
	if err := CheckExportedKey(e.file, e, role, requireOf(plan), bs); err != nil {
		return nil, err
	}
	s.progress("read exported key %s (%s) from %s", short(e.KeyID), e.URI, e.file)
	return openExported(e)
}

func (s *Session) openRoleKeys(ctx context.Context, pk *planKeys, plan *Plan, dir, role string, uris, pinned []string, threshold int) error {
	rk := roles.RoleKeys{Threshold: threshold}
	seen := map[string]string{}
	for i, uri := range uris {
		k, err := s.openPlanKey(ctx, plan, uri, role)
		if err != nil {
			return err
		}
		if i < len(pinned) && pinned[i] != k.ID() {
			return &MismatchError{URI: uri, KeyID: k.ID(), Role: "the plan (" + role + ")", Trusted: []string{pinned[i]}}
		}
		if rp := plan.Role(role); rp != nil {
			if err := checkKeyPolicy(k, role, rp.KeyPolicy); err != nil {
				return err
			}
		}
		if other, dup := seen[k.ID()]; dup {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("%s: %s and %s are the same key (%s)", role, objectOf(other), objectOf(uri), short(k.ID())),
				HintText: "each key of a role must be a different key; fix the plan"}
		}
		seen[k.ID()] = uri
		if _, ok := pk.opened[k.ID()]; !ok {
			pk.order = append(pk.order, k.ID())
		}
		pk.opened[k.ID()] = k
		pk.keyRoles[k.ID()] = append(pk.keyRoles[k.ID()], role)
		rk.Keys = append(rk.Keys, k.TUF.Key())
	}
	pk.role[role] = rk
	return nil
}

// planInit plans the bootstrap: version 1 of every role (and the initial
// targets), the policy, the key records; every key listed signs, root
// first.
func planInit(plan *Plan, dir string, initial *Initial, pk *planKeys, now time.Time) (*Change, error) {
	b := bootstrapOf(plan, pk, now)
	b.Anchor = headAnchor(0, "") // the first change: made on an empty transcript
	repo, err := roles.New(b)
	if err != nil {
		return nil, err
	}
	c := &Change{Op: "init", Dir: dir, At: now, Base: map[string]string{}, Repo: repo, Policy: initPolicy(plan), Records: map[string]*KeyRecord{}}
	if c.Extra, err = initial.apply(repo, plan.Consistent()); err != nil {
		return nil, err
	}
	root, err := c.rootStep(nil, deviceURIs(plan.Roles.Root.Keys))
	if err != nil {
		return nil, err
	}
	c.Steps = []*Step{root}
	c.Changed = slices.Clone(TopLevelRoles)
	names := []string{RoleTargets}
	for _, d := range plan.Delegations {
		names = append(names, d.Name)
		c.Changed = append(c.Changed, d.Name)
	}
	if err := c.stepsFor(names...); err != nil {
		return nil, err
	}
	for _, st := range c.Steps[len(c.Steps)-2:] {
		st.Follow = nil // roles.New made snapshot and timestamp from the unsigned roles: their bytes do not change
	}
	c.skipExported(plan)
	for _, id := range pk.order {
		rec, err := keyRecord(pk.opened[id], pk.keyRoles[id], now)
		if err != nil {
			return nil, err
		}
		data, err := marshalJSON(rec)
		if err != nil {
			return nil, err
		}
		c.Extra = append(c.Extra, File{Path: "keys/" + id + ".json", Data: data})
	}
	c.Details = map[string]any{"plan_repository": plan.Repository, "root_threshold": plan.Roles.Root.Threshold, "root_keys": keyIDsOf(repo.Root().Signed.Roles[RoleRoot].KeyIDs), "require": requireOf(plan)}
	if plan.Digest != "" {
		c.Details["plan_sha256"] = plan.Digest
	}
	initial.addDetails(c.Details)
	c.Summary.Text = bootstrapSummary(plan, dir, now, b, pk) + initial.summary()
	return c, nil
}

// bootstrapOf is what roles.New makes version 1 of every role from.
func bootstrapOf(plan *Plan, pk *planKeys, now time.Time) roles.Bootstrap {
	b := roles.Bootstrap{ConsistentSnapshot: plan.Consistent(), Expires: map[string]time.Time{}, Now: now,
		Root: pk.role[RoleRoot], Targets: pk.role[RoleTargets], Snapshot: pk.role[RoleSnapshot], Timestamp: pk.role[RoleTimestamp]}
	for _, name := range TopLevelRoles {
		b.Expires[name] = now.Add(plan.Role(name).Expires.D())
	}
	for _, d := range plan.Delegations {
		exp := d.Expires
		if exp == 0 {
			exp = plan.Roles.Targets.Expires
		}
		b.Expires[d.Name] = now.Add(exp.D())
		rk := pk.role[d.Name]
		b.Delegations = append(b.Delegations, roles.Delegation{Name: d.Name, Keys: rk.Keys, Threshold: d.Threshold, Paths: d.Paths, Terminating: d.Terminating})
	}
	return b
}

// initPolicy is the new repository's policy: lifetimes, windows, signing
// keys (root keys too, for the next ceremony).
func initPolicy(plan *Plan) *Policy {
	pol := &Policy{Version: 1, Repository: plan.Repository, ConsistentSnapshot: plan.Consistent(), Require: requireOf(plan), Roles: map[string]RolePolicy{}}
	for _, name := range TopLevelRoles {
		rp := plan.Role(name)
		pol.Roles[name] = RolePolicy{Expires: rp.Expires, Window: rp.Window, Keys: plan.policyKeys(rp.Keys), KeyPolicy: rp.KeyPolicy}
	}
	for _, d := range plan.Delegations {
		exp := d.Expires
		if exp == 0 {
			exp = plan.Roles.Targets.Expires
		}
		pol.Roles[d.Name] = RolePolicy{Expires: exp, Window: d.Window, Keys: plan.policyKeys(d.Keys)}
	}
	return pol
}

// policyKeys are a plan role's keys as rootkeeper.yaml lists them: a key
// export by the URI of the key on its officer's machine.
func (p *Plan) policyKeys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k
		if e, ok := p.Exported(k); ok {
			out[i] = e.URI
		}
	}
	return out
}

// deviceURIs are the entries of keys that name a device, not a key export.
func deviceURIs(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, ExportPrefix) {
			out = append(out, k)
		}
	}
	return out
}

// skipExported keeps the devices of exported keys out of what the local
// source tries: they are on the officers' machines, and sign through the
// bundle.
func (c *Change) skipExported(plan *Plan) {
	remote := map[string]bool{}
	for _, e := range plan.exported {
		remote[objectOf(e.URI)] = true
	}
	c.skipRemote(remote)
}

// skipExportedKeys is skipExported for keys opened from key exports
// (Key.Export).
func (c *Change) skipExportedKeys(keys []*Key) {
	remote := map[string]bool{}
	for _, k := range keys {
		if k.Export != "" {
			remote[objectOf(k.URI)] = true
		}
	}
	c.skipRemote(remote)
}

// skipRemote drops the URIs of the objects in remote from every need.
func (c *Change) skipRemote(remote map[string]bool) {
	if len(remote) == 0 {
		return
	}
	for _, st := range c.Steps {
		for i := range st.Needs {
			st.Needs[i].URIs = slices.DeleteFunc(st.Needs[i].URIs, func(u string) bool { return remote[objectOf(u)] })
		}
	}
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

func bootstrapSummary(plan *Plan, dir string, now time.Time, b roles.Bootstrap, pk *planKeys) string {
	opened := pk.opened
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
			if ok.Export != "" {
				fmt.Fprintf(&w, "      exported key (%s): signs on its officer's machine, through the signing bundle\n", filepath.Base(ok.Export))
			}
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

// pendingBootstrap reports whether e is the transcript of a bootstrap
// whose signing bundle is out (init --out): it records bundles and
// nothing else, and init (or apply) continues it.
func pendingBootstrap(dir string, e fs.DirEntry) bool {
	if e.Name() != TranscriptFile || !e.Type().IsRegular() {
		return false
	}
	_, entries, err := readTranscript(dir, time.Time{})
	if err != nil || len(entries) == 0 {
		return false
	}
	for _, en := range entries {
		if en.Operation != OpBundle {
			return false
		}
	}
	return true
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
