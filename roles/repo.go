package roles

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Repo is a TUF repository in memory: every root version ever published
// and the current targets, delegated targets, snapshot and timestamp.
//
// Versioning rule for BumpRole, UpdateSnapshot and UpdateTimestamp: metadata
// that carries at least one signature is finished, so a change makes a new
// version; metadata without signatures has never been published and is
// changed in place, keeping its version.
type Repo struct {
	Roots     []*metadata.Metadata[metadata.RootType]             // Roots[i] is version i+1
	Targets   *metadata.Metadata[metadata.TargetsType]            // top-level targets
	Delegated map[string]*metadata.Metadata[metadata.TargetsType] // delegated targets roles by name
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]

	// Now returns the current time for expiry checks; nil means time.Now.
	Now func() time.Time
	// Anchor is the ceremony transcript's head this change is made on
	// (anchor.go): every version made (New, BumpRole, UpdateSnapshot,
	// UpdateTimestamp, AddDelegation, AddHashedBins) carries it in its
	// signed object; nil makes versions without one.
	Anchor *Anchor

	raw map[string]rawFile // bytes read by Load, reused while unchanged

	cache *Cache // the change's cache (Cache): see Cache()
}

// Cache returns the cache of the change this Repo is loaded for, made on
// first use: Needed, the verification of each new signature
// (Signer.SignPayloadIn, Cache.VerifySignature) and the preflight
// (VerifyOptions.Cache) share it, so that a signature is checked once for
// the same key, payload and signature. It remembers only results that
// depend on those bytes alone; a Repo is loaded for one change of one
// repository, and its cache goes with it.
func (r *Repo) Cache() *Cache {
	if r == nil || uncached {
		return nil
	}
	if r.cache == nil {
		r.cache = NewCache()
	}
	return r.cache
}

type rawFile struct {
	data []byte
	fp   []byte // json.Marshal of the metadata as loaded
}

// File is a metadata file to write, with its path relative to the
// repository directory.
type File struct {
	Path string
	Data []byte
}

// RoleKeys are the keys of a role and how many of them must sign.
type RoleKeys struct {
	Keys      []*metadata.Key
	Threshold int
}

// Bootstrap describes a new repository.
type Bootstrap struct {
	Root, Targets, Snapshot, Timestamp RoleKeys
	// Expires holds the expiry of "root", "targets", "snapshot" and
	// "timestamp"; a delegated role expires at Expires[name] if set, else
	// with targets.
	Expires            map[string]time.Time
	ConsistentSnapshot bool
	Delegations        []Delegation // initial delegations from top-level targets
	// Now is the reference time for the expiry checks; zero means time.Now().
	Now time.Time
	// Anchor is the transcript head every version 1 carries (Repo.Anchor).
	Anchor *Anchor
}

// Delegation is a delegated targets role.
type Delegation struct {
	Name        string
	Keys        []*metadata.Key
	Threshold   int
	Paths       []string
	Terminating bool
}

// Requirement is one threshold of signatures a role needs.
type Requirement struct {
	From      string   // who sets the rule: "root v2", "targets v5", …
	KeyIDs    []string // keys that may sign
	Threshold int      // how many of them must
	Have      int      // how many valid signatures by them the metadata has
}

// Met reports whether the requirement is satisfied. A threshold below 1
// is never met: clients reject such a role.
func (q Requirement) Met() bool { return q.Threshold >= 1 && q.Have >= q.Threshold }

// Root returns the newest root, or nil.
func (r *Repo) Root() *metadata.Metadata[metadata.RootType] {
	if len(r.Roots) == 0 {
		return nil
	}
	return r.Roots[len(r.Roots)-1]
}

func (r *Repo) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Repo) remember(path string, data []byte, md any) {
	fp, err := json.Marshal(md)
	if err != nil {
		return
	}
	if r.raw == nil {
		r.raw = map[string]rawFile{}
	}
	r.raw[path] = rawFile{data: data, fp: fp}
}

// encode returns the bytes of md as they go on disk: the bytes Load read if
// md is unchanged, otherwise indented JSON.
func encode[T metadata.Roles](r *Repo, path string, md *metadata.Metadata[T]) ([]byte, error) {
	fp, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot encode: %w", path, err)
	}
	if raw, ok := r.raw[path]; ok && bytes.Equal(raw.fp, fp) {
		return raw.data, nil
	}
	if md.Signatures == nil { // write [] rather than null
		c := *md
		c.Signatures = []metadata.Signature{}
		if fp, err = json.Marshal(&c); err != nil {
			return nil, fmt.Errorf("%s: cannot encode: %w", path, err)
		}
	}
	var out bytes.Buffer
	if err := json.Indent(&out, fp, "", "  "); err != nil {
		return nil, fmt.Errorf("%s: cannot encode: %w", path, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func (r *Repo) check() error {
	if err := r.checkTop(); err != nil {
		return err
	}
	for name, d := range r.Delegated {
		if d == nil {
			return fmt.Errorf("delegated role %q is empty", name)
		}
	}
	return nil
}

// checkTop is check without the look at every delegated role, for
// operations on one role that run once per role (BumpRole of each of
// 16,384 bins made the full check quadratic): they check their own role.
// Files, UpdateSnapshot and UpdateTimestamp still check every role before
// anything is encoded.
func (r *Repo) checkTop() error {
	if r == nil || len(r.Roots) == 0 || r.Targets == nil || r.Snapshot == nil || r.Timestamp == nil {
		return errors.New("incomplete repository: it needs root, targets, snapshot and timestamp (use New or Load)")
	}
	for i, root := range r.Roots {
		if root == nil {
			return fmt.Errorf("Roots[%d] is empty", i)
		}
		if root.Signed.Version != int64(i+1) {
			return fmt.Errorf("Roots[%d] is root v%d: Roots[i] must be version i+1", i, root.Signed.Version)
		}
	}
	return nil
}

func (r *Repo) consistent() bool { return r.Root().Signed.ConsistentSnapshot }

// Files returns the metadata files of the current state, with paths
// relative to the repository directory and bytes as they go on disk.
// Immutable versioned files come first (every N.root.json, then, with
// consistent snapshots, N.<delegated>.json, N.targets.json and
// N.snapshot.json); the mutable files follow, timestamp.json last. A writer
// must write them in this order. Unchanged files loaded by Load keep their
// exact bytes.
func (r *Repo) Files() ([]File, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var files []File
	for i, root := range r.Roots {
		p := rootPath(int64(i + 1))
		data, err := encode(r, p, root)
		if err != nil {
			return nil, err
		}
		files = append(files, File{p, data})
	}
	cs := r.consistent()
	names := slices.Sorted(maps.Keys(r.Delegated))
	for _, name := range names {
		d := r.Delegated[name]
		p := rolePath(name, d.Signed.Version, cs)
		data, err := encode(r, p, d)
		if err != nil {
			return nil, err
		}
		files = append(files, File{p, data})
	}
	p := rolePath(metadata.TARGETS, r.Targets.Signed.Version, cs)
	data, err := encode(r, p, r.Targets)
	if err != nil {
		return nil, err
	}
	files = append(files, File{p, data})
	p = rolePath(metadata.SNAPSHOT, r.Snapshot.Signed.Version, cs)
	if data, err = encode(r, p, r.Snapshot); err != nil {
		return nil, err
	}
	files = append(files, File{p, data})
	if data, err = encode(r, timestampPath(), r.Timestamp); err != nil {
		return nil, err
	}
	files = append(files, File{timestampPath(), data})
	return files, nil
}

// TargetFilePaths returns where a target file must be stored, relative to
// the repository directory: targets/<path>, or with consistent snapshots
// targets/<dir>/<hex hash>.<name> for each of its hashes.
func TargetFilePaths(targetPath string, tf *metadata.TargetFiles, consistent bool) []string {
	if !consistent || tf == nil {
		return []string{TargetsDir + "/" + targetPath}
	}
	dir, base := path.Split(targetPath)
	var out []string
	for _, alg := range slices.Sorted(maps.Keys(tf.Hashes)) {
		out = append(out, TargetsDir+"/"+dir+tf.Hashes[alg].String()+"."+base)
	}
	return out
}

// New makes version 1 of every role, unsigned: officers then add
// signatures with Sign. It checks thresholds, duplicate keys, role names
// and that every expiry lies after b.Now.
func New(b Bootstrap) (*Repo, error) {
	now := b.Now
	if now.IsZero() {
		now = time.Now()
	}
	exp, errs := bootstrapExpiries(b, now)
	root, rootErrs := newRoot(b, exp[metadata.ROOT])
	errs = append(errs, rootErrs...)
	r := newRepoOf(root, exp)
	errs = append(errs, r.addBootstrapDelegations(b, exp[metadata.TARGETS], now)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("cannot create the repository:\n%w", errors.Join(errs...))
	}
	r.Anchor = b.Anchor
	r.stamp(&root.Signed.UnrecognizedFields)
	r.stamp(&r.Targets.Signed.UnrecognizedFields)
	r.stamp(&r.Snapshot.Signed.UnrecognizedFields)
	r.stamp(&r.Timestamp.Signed.UnrecognizedFields)
	for _, d := range r.Delegated {
		r.stamp(&d.Signed.UnrecognizedFields)
	}
	return r, nil
}

// bootstrapExpiries checks that each top-level role has an expiry in the
// future and returns them normalized.
func bootstrapExpiries(b Bootstrap, now time.Time) (map[string]time.Time, []error) {
	var errs []error
	exp := map[string]time.Time{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		e, ok := b.Expires[role]
		if !ok || e.IsZero() {
			errs = append(errs, fmt.Errorf("%s: no expiry given (Expires[%q])", role, role))
			continue
		}
		e = normTime(e)
		if !e.After(now) {
			errs = append(errs, fmt.Errorf("%s: expiry %s is not in the future (now %s)", role, e.Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		}
		exp[role] = e
	}
	return exp, errs
}

// newRoot is root v1 with the four top-level roles' keys and thresholds.
func newRoot(b Bootstrap, expires time.Time) (*metadata.Metadata[metadata.RootType], []error) {
	root := &metadata.Metadata[metadata.RootType]{
		Signed: metadata.RootType{
			Type:               metadata.ROOT,
			SpecVersion:        metadata.SPECIFICATION_VERSION,
			ConsistentSnapshot: b.ConsistentSnapshot,
			Version:            1,
			Expires:            expires,
			Keys:               map[string]*metadata.Key{},
			Roles:              map[string]*metadata.Role{},
		},
		Signatures: []metadata.Signature{},
	}
	var errs []error
	for _, rk := range []struct {
		name string
		keys RoleKeys
	}{{metadata.ROOT, b.Root}, {metadata.TARGETS, b.Targets}, {metadata.SNAPSHOT, b.Snapshot}, {metadata.TIMESTAMP, b.Timestamp}} {
		ids, keys, err := checkRoleKeys(rk.name, rk.keys.Keys, rk.keys.Threshold)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		root.Signed.Roles[rk.name] = &metadata.Role{KeyIDs: ids, Threshold: rk.keys.Threshold}
		maps.Copy(root.Signed.Keys, keys)
	}
	return root, errs
}

// newRepoOf is a repository of root v1 and empty targets, snapshot and
// timestamp v1.
func newRepoOf(root *metadata.Metadata[metadata.RootType], exp map[string]time.Time) *Repo {
	return &Repo{
		Roots:     []*metadata.Metadata[metadata.RootType]{root},
		Targets:   newTargets(exp[metadata.TARGETS]),
		Delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		Snapshot: &metadata.Metadata[metadata.SnapshotType]{
			Signed: metadata.SnapshotType{
				Type: metadata.SNAPSHOT, SpecVersion: metadata.SPECIFICATION_VERSION, Version: 1,
				Expires: exp[metadata.SNAPSHOT],
				Meta:    map[string]*metadata.MetaFiles{"targets.json": {Version: 1}},
			},
			Signatures: []metadata.Signature{},
		},
		Timestamp: &metadata.Metadata[metadata.TimestampType]{
			Signed: metadata.TimestampType{
				Type: metadata.TIMESTAMP, SpecVersion: metadata.SPECIFICATION_VERSION, Version: 1,
				Expires: exp[metadata.TIMESTAMP],
				Meta:    map[string]*metadata.MetaFiles{"snapshot.json": {Version: 1}},
			},
			Signatures: []metadata.Signature{},
		},
		raw: map[string]rawFile{},
	}
}

// addBootstrapDelegations adds the bootstrap's delegations from targets,
// each checked (name, paths, keys, expiry), with their v1 and snapshot
// entries.
func (r *Repo) addBootstrapDelegations(b Bootstrap, targetsExpires, now time.Time) []error {
	if len(b.Delegations) == 0 {
		return nil
	}
	targets := r.Targets
	targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}, Roles: []metadata.DelegatedRole{}}
	var errs []error
	seen := map[string]bool{}
	for i, d := range b.Delegations {
		label := fmt.Sprintf("delegation %q", d.Name)
		if err := CheckRoleName(d.Name); err != nil {
			errs = append(errs, fmt.Errorf("delegation %d: %w", i+1, err))
			continue
		}
		if seen[strings.ToLower(d.Name)] {
			errs = append(errs, fmt.Errorf("%s: the name is used twice (names must differ in more than letter case)", label))
			continue
		}
		seen[strings.ToLower(d.Name)] = true
		if err := checkPaths(d.Paths); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		ids, keys, err := checkRoleKeys(label, d.Keys, d.Threshold)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		maps.Copy(targets.Signed.Delegations.Keys, keys)
		targets.Signed.Delegations.Roles = append(targets.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: d.Name, KeyIDs: ids, Threshold: d.Threshold, Terminating: d.Terminating, Paths: slices.Clone(d.Paths),
		})
		e := targetsExpires
		if de, ok := b.Expires[d.Name]; ok {
			e = normTime(de)
			if !e.After(now) {
				errs = append(errs, fmt.Errorf("%s: expiry %s is not in the future", label, e.Format(time.RFC3339)))
			}
		}
		r.Delegated[d.Name] = newTargets(e)
		r.Snapshot.Signed.Meta[d.Name+".json"] = &metadata.MetaFiles{Version: 1}
	}
	return errs
}

func newTargets(expires time.Time) *metadata.Metadata[metadata.TargetsType] {
	return &metadata.Metadata[metadata.TargetsType]{
		Signed: metadata.TargetsType{
			Type: metadata.TARGETS, SpecVersion: metadata.SPECIFICATION_VERSION, Version: 1,
			Expires: expires, Targets: map[string]*metadata.TargetFiles{},
		},
		Signatures: []metadata.Signature{},
	}
}

// normTime gives the TUF form of a time: UTC, whole seconds.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func checkPaths(paths []string) error {
	if len(paths) == 0 {
		return errors.New("no paths: the role would be trusted for nothing")
	}
	for _, p := range paths {
		if err := checkPathPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// checkRoleKeys validates a role's keys and threshold and returns the key
// ids in order and the keys by id (copies).
func checkRoleKeys(label string, keys []*metadata.Key, threshold int) ([]string, map[string]*metadata.Key, error) {
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("%s: no keys: a role needs at least one key", label)
	}
	if threshold < 1 || threshold > len(keys) {
		return nil, nil, fmt.Errorf("%s: threshold %d is impossible with %d key(s): use 1 to %d", label, threshold, len(keys), len(keys))
	}
	ids := make([]string, 0, len(keys))
	byID := map[string]*metadata.Key{}
	prints := map[string]string{}
	for i, k := range keys {
		if k == nil {
			return nil, nil, fmt.Errorf("%s: key %d is empty", label, i+1)
		}
		pub, err := CryptoPublicKey(k)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: key %d: %w", label, i+1, err)
		}
		kc := copyKey(k)
		id, err := KeyID(kc)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: key %d: %w", label, i+1, err)
		}
		fp, err := fingerprint(pub)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: key %d: %w", label, i+1, err)
		}
		if other, dup := prints[fp]; dup {
			return nil, nil, fmt.Errorf("%s: key %s is listed twice (also as %s): one key must not count twice toward the threshold", label, short(id), short(other))
		}
		prints[fp] = id
		ids = append(ids, id)
		byID[id] = kc
	}
	return ids, byID, nil
}

func copyKey(k *metadata.Key) *metadata.Key {
	c := &metadata.Key{Type: k.Type, Scheme: k.Scheme, Value: metadata.KeyVal{PublicKey: k.Value.PublicKey}}
	if len(k.Value.UnrecognizedFields) > 0 {
		c.Value.UnrecognizedFields = maps.Clone(k.Value.UnrecognizedFields)
	}
	if len(k.UnrecognizedFields) > 0 {
		c.UnrecognizedFields = maps.Clone(k.UnrecognizedFields)
	}
	return c
}

func (r *Repo) checkExpiry(role string, expires time.Time) (time.Time, error) {
	e := normTime(expires)
	if now := r.now(); !e.After(now) {
		return e, fmt.Errorf("%s: expiry %s is not in the future (now %s)", role, e.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return e, nil
}

// targetsRole returns "targets" or a delegated role's metadata.
func (r *Repo) targetsRole(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	if role == metadata.TARGETS {
		if r.Targets == nil {
			return nil, errors.New("the repository has no targets role")
		}
		return r.Targets, nil
	}
	if md, ok := r.Delegated[role]; ok && md != nil {
		return md, nil
	}
	return nil, r.unknownRole(role)
}

func (r *Repo) unknownRole(role string) error {
	known := "root, targets, snapshot, timestamp"
	if len(r.Delegated) > 0 {
		known += "; delegated: " + strings.Join(slices.Sorted(maps.Keys(r.Delegated)), ", ")
	}
	return fmt.Errorf("no role named %q (roles: %s)", role, known)
}

func signedErr(role string, version int64) error {
	return fmt.Errorf("%s v%d is already signed: call BumpRole(%q, expires) first so that the change goes into a new version", role, version, role)
}

// AddTarget records a target file (length, sha256 and sha512) in role
// ("targets" or a delegated role). The role must not be signed yet: call
// BumpRole first. The file bytes themselves go to TargetFilePaths.
func (r *Repo) AddTarget(role, targetPath string, data []byte) error {
	md, err := r.targetsRole(role)
	if err != nil {
		return err
	}
	if len(md.Signatures) > 0 {
		return signedErr(role, md.Signed.Version)
	}
	if err := checkTargetPath(targetPath); err != nil {
		return err
	}
	if role != metadata.TARGETS {
		if del := r.delegator(role); del != nil && !del.covers(role, targetPath) {
			if del.role == nil {
				bin := del.md.Signed.Delegations.SuccinctRoles.GetRolesForTarget(targetPath)[0].Name
				return fmt.Errorf("target %q belongs in hashed bin %s, not %s: clients look for it only there", targetPath, bin, role)
			}
			return fmt.Errorf("target %q is outside the paths that %s delegates to %s: clients would never trust it there", targetPath, del.name, role)
		}
	}
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	if md.Signed.Targets == nil {
		md.Signed.Targets = map[string]*metadata.TargetFiles{}
	}
	md.Signed.Targets[targetPath] = &metadata.TargetFiles{
		Length: int64(len(data)),
		Hashes: metadata.Hashes{"sha256": s256[:], "sha512": s512[:]},
		Path:   targetPath,
	}
	return nil
}

// RemoveTarget removes a target from role. The role must not be signed yet.
func (r *Repo) RemoveTarget(role, targetPath string) error {
	md, err := r.targetsRole(role)
	if err != nil {
		return err
	}
	if len(md.Signatures) > 0 {
		return signedErr(role, md.Signed.Version)
	}
	if _, ok := md.Signed.Targets[targetPath]; !ok {
		return fmt.Errorf("%s v%d lists no target %q", role, md.Signed.Version, targetPath)
	}
	delete(md.Signed.Targets, targetPath)
	return nil
}

// delegation is where a delegated role is defined.
type delegation struct {
	name string // delegator
	md   *metadata.Metadata[metadata.TargetsType]
	role *metadata.DelegatedRole // nil for a succinct (hashed bin) delegation
}

func (d *delegation) keys() (map[string]*metadata.Key, []string, int) {
	dl := d.md.Signed.Delegations
	if d.role != nil {
		return dl.Keys, d.role.KeyIDs, d.role.Threshold
	}
	return dl.Keys, dl.SuccinctRoles.KeyIDs, dl.SuccinctRoles.Threshold
}

func (d *delegation) covers(role, targetPath string) bool {
	if d.role != nil {
		ok, err := d.role.IsDelegatedPath(targetPath)
		return err == nil && ok
	}
	res := d.md.Signed.Delegations.SuccinctRoles.GetRolesForTarget(targetPath)
	return len(res) == 1 && res[0].Name == role
}

// delegator finds the role that delegates to name: top-level targets
// first, then delegated roles in name order.
func (r *Repo) delegator(name string) *delegation {
	try := func(dname string, md *metadata.Metadata[metadata.TargetsType]) *delegation {
		if md == nil || md.Signed.Delegations == nil {
			return nil
		}
		dl := md.Signed.Delegations
		if dl.Roles != nil {
			for i := range dl.Roles {
				if dl.Roles[i].Name == name {
					return &delegation{name: dname, md: md, role: &dl.Roles[i]}
				}
			}
		} else if dl.SuccinctRoles != nil && dl.SuccinctRoles.IsDelegatedRole(name) {
			return &delegation{name: dname, md: md}
		}
		return nil
	}
	if d := try(metadata.TARGETS, r.Targets); d != nil {
		return d
	}
	for _, n := range slices.Sorted(maps.Keys(r.Delegated)) {
		if n == name {
			continue
		}
		if d := try(n, r.Delegated[n]); d != nil {
			return d
		}
	}
	return nil
}

// BumpRole starts the next version of role with a new expiry and no
// signatures. For root it appends a copy of the newest root as a new
// version (the newest root must be fully signed first). Unsigned metadata
// keeps its version and only gets the new expiry.
func (r *Repo) BumpRole(role string, expires time.Time) error {
	if err := r.checkTop(); err != nil {
		return err
	}
	if d, ok := r.Delegated[role]; ok && d == nil {
		return fmt.Errorf("delegated role %q is empty", role)
	}
	exp, err := r.checkExpiry(role, expires)
	if err != nil {
		return err
	}
	switch role {
	case metadata.ROOT:
		cur := r.Root()
		if len(cur.Signatures) == 0 {
			cur.Signed.Expires = exp
			return nil
		}
		reqs, err := r.Needed(metadata.ROOT)
		if err != nil {
			return err
		}
		for _, q := range reqs {
			if !q.Met() {
				return fmt.Errorf("root v%d is only partly signed (%d of %d required keys of %s): finish signing it, or drop it from Roots, before starting root v%d",
					cur.Signed.Version, q.Have, q.Threshold, q.From, cur.Signed.Version+1)
			}
		}
		data, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		next := &metadata.Metadata[metadata.RootType]{}
		if err := json.Unmarshal(data, next); err != nil {
			return err
		}
		next.Signed.Version++
		next.Signed.Expires = exp
		next.Signatures = []metadata.Signature{}
		r.stamp(&next.Signed.UnrecognizedFields)
		r.Roots = append(r.Roots, next)
	case metadata.SNAPSHOT:
		r.stamp(&r.Snapshot.Signed.UnrecognizedFields)
		return bumpChecked(role, &r.Snapshot.Signed.Version, &r.Snapshot.Signed.Expires, &r.Snapshot.Signatures, exp)
	case metadata.TIMESTAMP:
		r.stamp(&r.Timestamp.Signed.UnrecognizedFields)
		return bumpChecked(role, &r.Timestamp.Signed.Version, &r.Timestamp.Signed.Expires, &r.Timestamp.Signatures, exp)
	default:
		md, err := r.targetsRole(role)
		if err != nil {
			return err
		}
		r.stamp(&md.Signed.UnrecognizedFields)
		return bumpChecked(role, &md.Signed.Version, &md.Signed.Expires, &md.Signatures, exp)
	}
	return nil
}

// bumpChecked is bump, refused when the next version would be out of the
// range tuf-js reads (rule RuleNumber; the preflight refuses it too).
func bumpChecked(role string, version *int64, expires *time.Time, sigs *[]metadata.Signature, exp time.Time) error {
	if len(*sigs) > 0 && *version >= MaxSafeInteger {
		return fmt.Errorf("%s is at version %d: the next version would be 2^53 or more, which tuf-js clients cannot read exactly (%s): this role cannot take a new version", role, *version, RuleNumber)
	}
	bump(version, expires, sigs, exp)
	return nil
}

func bump(version *int64, expires *time.Time, sigs *[]metadata.Signature, exp time.Time) {
	if len(*sigs) > 0 {
		*version++
	}
	*expires = exp
	*sigs = []metadata.Signature{}
}

// UpdateSnapshot makes the next snapshot: it lists the current versions of
// targets and every delegated role (versions only), keeps entries of roles
// no longer delegated (clients reject a snapshot that drops one), and
// refuses to list a version older than the previous snapshot did.
func (r *Repo) UpdateSnapshot(expires time.Time) error {
	if err := r.check(); err != nil {
		return err
	}
	exp, err := r.checkExpiry(metadata.SNAPSHOT, expires)
	if err != nil {
		return err
	}
	sn := r.Snapshot
	meta := map[string]*metadata.MetaFiles{}
	for name, m := range sn.Signed.Meta {
		if m != nil {
			c := *m
			meta[name] = &c
		}
	}
	set := func(role string, version int64) error {
		key := role + ".json"
		if old, ok := meta[key]; ok && version < old.Version {
			return fmt.Errorf("%s v%d is older than v%d listed in snapshot v%d: clients would reject it as a rollback", role, version, old.Version, sn.Signed.Version)
		}
		meta[key] = &metadata.MetaFiles{Version: version}
		return nil
	}
	if err := set(metadata.TARGETS, r.Targets.Signed.Version); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(r.Delegated)) {
		if err := set(name, r.Delegated[name].Signed.Version); err != nil {
			return err
		}
	}
	if err := bumpChecked(metadata.SNAPSHOT, &sn.Signed.Version, &sn.Signed.Expires, &sn.Signatures, exp); err != nil {
		return err
	}
	r.stamp(&sn.Signed.UnrecognizedFields)
	sn.Signed.Meta = meta
	return nil
}

// UpdateTimestamp makes the next timestamp, naming the current snapshot
// with its length and sha256 hash. The snapshot must be fully signed first:
// the timestamp records the hash of the signed snapshot file.
func (r *Repo) UpdateTimestamp(expires time.Time) error {
	if err := r.check(); err != nil {
		return err
	}
	exp, err := r.checkExpiry(metadata.TIMESTAMP, expires)
	if err != nil {
		return err
	}
	reqs, err := r.Needed(metadata.SNAPSHOT)
	if err != nil {
		return err
	}
	sn := r.Snapshot
	for _, q := range reqs {
		if !q.Met() {
			return fmt.Errorf("snapshot v%d has %d of %d required signatures: sign it before updating the timestamp (the timestamp records the hash of the signed snapshot)",
				sn.Signed.Version, q.Have, q.Threshold)
		}
	}
	data, err := encode(r, rolePath(metadata.SNAPSHOT, sn.Signed.Version, r.consistent()), sn)
	if err != nil {
		return err
	}
	ts := r.Timestamp
	if old := ts.Signed.Meta["snapshot.json"]; old != nil && sn.Signed.Version < old.Version {
		return fmt.Errorf("snapshot v%d is older than v%d named by timestamp v%d: clients would reject it as a rollback", sn.Signed.Version, old.Version, ts.Signed.Version)
	}
	sum := sha256.Sum256(data)
	if err := bumpChecked(metadata.TIMESTAMP, &ts.Signed.Version, &ts.Signed.Expires, &ts.Signatures, exp); err != nil {
		return err
	}
	r.stamp(&ts.Signed.UnrecognizedFields)
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": {
		Version: sn.Signed.Version,
		Length:  int64(len(data)),
		Hashes:  metadata.Hashes{"sha256": sum[:]},
	}}
	return nil
}

// Needed reports which keys may sign role, how many must, and how many
// valid signatures the current metadata has. For root it returns the newest
// root's own rule and, from root v2 on, the previous root's rule too: a new
// root must be signed by a threshold of both (TUF 5.3.4).
func (r *Repo) Needed(role string) ([]Requirement, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	root := r.Root()
	from := fmt.Sprintf("root v%d", root.Signed.Version)
	switch role {
	case metadata.ROOT:
		payload, err := cjson.EncodeCanonical(root.Signed)
		if err != nil {
			return nil, err
		}
		reqs := []Requirement{requirement(r.Cache(), from, root.Signed.Keys, root.Signed.Roles[metadata.ROOT], root.Signatures, payload)}
		if len(r.Roots) > 1 {
			prev := r.Roots[len(r.Roots)-2]
			reqs = append(reqs, requirement(r.Cache(), fmt.Sprintf("root v%d", prev.Signed.Version), prev.Signed.Keys, prev.Signed.Roles[metadata.ROOT], root.Signatures, payload))
		}
		return reqs, nil
	case metadata.TIMESTAMP:
		payload, err := cjson.EncodeCanonical(r.Timestamp.Signed)
		if err != nil {
			return nil, err
		}
		return []Requirement{requirement(r.Cache(), from, root.Signed.Keys, root.Signed.Roles[role], r.Timestamp.Signatures, payload)}, nil
	case metadata.SNAPSHOT:
		payload, err := cjson.EncodeCanonical(r.Snapshot.Signed)
		if err != nil {
			return nil, err
		}
		return []Requirement{requirement(r.Cache(), from, root.Signed.Keys, root.Signed.Roles[role], r.Snapshot.Signatures, payload)}, nil
	}
	md, err := r.targetsRole(role)
	if err != nil {
		return nil, err
	}
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return nil, err
	}
	if role == metadata.TARGETS {
		return []Requirement{requirement(r.Cache(), from, root.Signed.Keys, root.Signed.Roles[role], md.Signatures, payload)}, nil
	}
	d := r.delegator(role)
	if d == nil {
		return nil, fmt.Errorf("no role delegates to %q: it cannot be signed meaningfully", role)
	}
	keys, ids, threshold := d.keys()
	q := Requirement{From: fmt.Sprintf("%s v%d", d.name, d.md.Signed.Version), KeyIDs: slices.Clone(ids), Threshold: threshold}
	q.Have, _ = countValid(r.Cache(), md.Signatures, payload, keys, ids)
	return []Requirement{q}, nil
}

func requirement(c *Cache, from string, keys map[string]*metadata.Key, role *metadata.Role, sigs []metadata.Signature, payload []byte) Requirement {
	q := Requirement{From: from}
	if role == nil {
		return q
	}
	q.KeyIDs = slices.Clone(role.KeyIDs)
	q.Threshold = role.Threshold
	q.Have, _ = countValid(c, sigs, payload, keys, role.KeyIDs)
	return q
}

// countValid counts distinct keys among ids with a valid signature over
// payload. It also returns the ids of keys whose signature verified only
// because of a lax encoding (ECDSA not in DER).
//
// c (nil for none) remembers keys and signatures already checked.
func countValid(c *Cache, sigs []metadata.Signature, payload []byte, keys map[string]*metadata.Key, ids []string) (int, []string) {
	seen := map[string]bool{}
	var lax []string
	n := 0
	for _, id := range ids {
		k := keys[id]
		if k == nil {
			continue
		}
		pub, fp, err := c.key(k)
		if err != nil || seen[fp] {
			continue
		}
		for _, s := range sigs {
			if s.KeyID != id {
				continue
			}
			if r := c.checkSig(k, pub, payload, s.Signature); r.valid {
				seen[fp] = true
				n++
			} else if r.lax {
				lax = append(lax, id)
			}
			break
		}
	}
	return n, lax
}

// SetRoleKeys replaces the keys and threshold of role. For a top-level role
// it changes the newest root, which must not be signed yet (BumpRole("root")
// first); for a delegated role it changes its delegator's delegation, which
// must not be signed yet either. Keys no role uses any more are dropped.
func (r *Repo) SetRoleKeys(role string, rk RoleKeys) error {
	if err := r.check(); err != nil {
		return err
	}
	ids, keys, err := checkRoleKeys(role, rk.Keys, rk.Threshold)
	if err != nil {
		return err
	}
	if isTopLevel(role) {
		root := r.Root()
		if len(root.Signatures) > 0 {
			return signedErr(metadata.ROOT, root.Signed.Version)
		}
		root.Signed.Roles[role] = &metadata.Role{KeyIDs: ids, Threshold: rk.Threshold}
		maps.Copy(root.Signed.Keys, keys)
		used := map[string]bool{}
		for _, rl := range root.Signed.Roles {
			if rl != nil {
				for _, id := range rl.KeyIDs {
					used[id] = true
				}
			}
		}
		maps.DeleteFunc(root.Signed.Keys, func(id string, _ *metadata.Key) bool { return !used[id] })
		return nil
	}
	d := r.delegator(role)
	if d == nil {
		return r.unknownRole(role)
	}
	if len(d.md.Signatures) > 0 {
		return signedErr(d.name, d.md.Signed.Version)
	}
	dl := d.md.Signed.Delegations
	if d.role != nil {
		d.role.KeyIDs, d.role.Threshold = ids, rk.Threshold
	} else {
		dl.SuccinctRoles.KeyIDs, dl.SuccinctRoles.Threshold = ids, rk.Threshold
	}
	if dl.Keys == nil {
		dl.Keys = map[string]*metadata.Key{}
	}
	maps.Copy(dl.Keys, keys)
	used := map[string]bool{}
	for _, rl := range dl.Roles {
		for _, id := range rl.KeyIDs {
			used[id] = true
		}
	}
	if dl.SuccinctRoles != nil {
		for _, id := range dl.SuccinctRoles.KeyIDs {
			used[id] = true
		}
	}
	maps.DeleteFunc(dl.Keys, func(id string, _ *metadata.Key) bool { return !used[id] })
	return nil
}
