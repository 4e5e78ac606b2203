package ceremony

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// RotateOptions say how a top-level role's keys change.
type RotateOptions struct {
	// Role is root, targets, snapshot or timestamp.
	Role string
	// Add are key URIs of new keys for the role (generated beforehand).
	Add []string
	// Remove names keys the role stops trusting: key ids, unique key id
	// prefixes of at least 8 hex digits, or key URIs.
	Remove []string
	// Threshold is the role's new threshold; 0 keeps the current one.
	Threshold int
}

// Rotate changes the keys or threshold of a top-level role in a new root
// version. The new root is signed by every root key plugged in, old and
// new: clients accept it only with a threshold of the previous root's
// keys and a threshold of its own (TUF 5.3.4), and the officers are told
// which keys are still missing. A rotated targets, snapshot or timestamp
// role is re-signed at once with its new keys, and snapshot and timestamp
// are published with versions above every one before, so that clients
// that keep their old timestamp and snapshot accept them as well as
// clients that drop them because their keys rotated (TUF 5.3.11).
// rootkeeper.yaml follows: removed keys' URIs are dropped, added ones
// listed.
func (s *Session) Rotate(ctx context.Context, dir string, opts RotateOptions) (*Result, error) {
	if err := checkRotateOptions(dir, opts); err != nil {
		return nil, err
	}
	return s.change(ctx, dir, func(st *state) (*Change, error) {
		p, err := s.rotateKeys(ctx, st, opts) // a key URI without a record: its device says which key it is
		if err != nil {
			return nil, err
		}
		added, err := s.openNewKeys(ctx, dir, st.pol, opts.Role, opts.Add, p.curIDs, p.removed)
		if err != nil {
			return nil, err
		}
		return planRotate(st, opts, p, added, s.knownKey(st.records))
	})
}

// planRotate plans a rotation: root's new version with the role's new
// keys and threshold, signed by both roots' thresholds; a rotated targets
// re-signed by its new keys; snapshot and timestamp after any role but
// root. rootkeeper.yaml follows: removed keys' URIs are dropped, added
// ones listed. known tells the key id of a URI without a device.
func planRotate(st *state, opts RotateOptions, p *rotatePlan, added []*Key, known func(string) (string, bool)) (*Change, error) {
	role := opts.Role
	c := st.newChange("rotate")
	trustedBefore := c.Repo.KeyIDs()
	next := p.next
	for i, k := range p.cur.Keys {
		if !p.removed[p.curIDs[i]] {
			next.Keys = append(next.Keys, k)
		}
	}
	for _, k := range added {
		next.Keys = append(next.Keys, k.TUF.Key())
	}
	oldRoot := c.Repo.Root()
	rootURIs := slices.Clone(c.Policy.Role(RoleRoot).Keys)
	if err := c.Repo.BumpRole(RoleRoot, c.At.Add(c.Policy.Role(RoleRoot).Expires.D())); err != nil {
		return nil, err
	}
	if err := c.Repo.SetRoleKeys(role, next); err != nil {
		return nil, err
	}
	rp := c.Policy.Roles[role]
	rp.Keys = dropURIs(rp.Keys, p.removed, known)
	for _, k := range added {
		rp.Keys = append(rp.Keys, k.URI)
		if role == RoleRoot && k.Export == "" { // an exported key is not here: it signs through the bundle
			rootURIs = append(rootURIs, k.URI)
		}
	}
	c.Policy.Roles[role] = rp
	c.Summary.Text = rotateSummary(st.dir, role, oldRoot, c.Repo.Root(), p.cur, next, p.curIDs, p.removed, added, st.records)
	if err := c.rotateSteps(role, rootURIs); err != nil {
		return nil, err
	}
	var err error
	if c.Extra, err = keyRecordFiles(st.records, added, role, c.At); err != nil {
		return nil, err
	}
	c.Details = map[string]any{
		"role": role, "root_version": c.Repo.Root().Signed.Version,
		"removed": sortedKeys(p.removed), "added": keyIDsOfOpened(added),
		"threshold_before": p.cur.Threshold, "threshold": next.Threshold,
	}
	c.retire(trustedBefore)
	return c, nil
}

// rotateSteps are a rotation's steps: root (every root key, old and new,
// tried), then what follows the rotated role.
func (c *Change) rotateSteps(role string, rootURIs []string) error {
	root, err := c.rootStep(rootURIs, rootURIs)
	if err != nil {
		return err
	}
	c.Steps = []*Step{root}
	c.Changed = []string{RoleRoot}
	switch role {
	case RoleTargets:
		if err := bumpRole(c.Repo, c.Policy, RoleTargets, c.At); err != nil {
			return err
		}
		c.Changed = append(c.Changed, RoleTargets, RoleSnapshot, RoleTimestamp)
		return c.stepsFor(RoleTargets)
	case RoleSnapshot, RoleTimestamp:
		c.Changed = append(c.Changed, RoleSnapshot, RoleTimestamp)
		if err := c.stepsFor(); err != nil {
			return err
		}
		c.Steps[1].Note = fmt.Sprintf("clients drop a cached %s whose key the new root no longer trusts (TUF 5.3.11); the new one continues the version numbers, so clients that keep theirs accept it too", role)
	}
	return nil
}

// checkRotateOptions checks what needs no repository, before any device:
// the role, that something changes, the threshold, every URI.
func checkRotateOptions(dir string, opts RotateOptions) error {
	if !slices.Contains(TopLevelRoles, opts.Role) {
		return &RepoError{Detail: fmt.Sprintf("--role %q: rotate changes a top-level role: root, targets, snapshot or timestamp", opts.Role),
			HintText: "for a delegated role use rootkeeper delegate add/remove, or rootkeeper revoke for a compromised key"}
	}
	if len(opts.Add) == 0 && len(opts.Remove) == 0 && opts.Threshold == 0 {
		return &RepoError{Detail: "nothing to change: give --add URI, --remove KEYID|URI or --threshold N",
			HintText: "rootkeeper status --repo " + dir + " shows each role's keys"}
	}
	if opts.Threshold < 0 {
		return &RepoError{Detail: fmt.Sprintf("--threshold %d: a threshold is at least 1", opts.Threshold)}
	}
	if err := checkURIs(deviceURIs(opts.Add)...); err != nil { // a key export (file:PATH) is read when the keys are opened
		return err
	}
	for _, r := range opts.Remove {
		if isURI(r) {
			if err := checkURIs(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// rotatePlan is a rotation decided before any new key is opened.
type rotatePlan struct {
	cur     roles.RoleKeys
	curIDs  []string
	removed map[string]bool
	next    roles.RoleKeys // the new threshold; keys are filled in once opened
}

// rotateKeys resolves the keys to remove and checks the new key count
// and threshold (openNewKeys refuses a key given twice, so the count
// holds once the new keys are opened).
func (s *Session) rotateKeys(ctx context.Context, st *state, opts RotateOptions) (*rotatePlan, error) {
	role, dir, repo, records := opts.Role, st.dir, st.repo, st.records
	cur, err := repo.RoleKeysOf(role)
	if err != nil {
		return nil, err
	}
	p := &rotatePlan{cur: cur, curIDs: keyIDsOfKeys(cur.Keys), removed: map[string]bool{}, next: roles.RoleKeys{Threshold: cur.Threshold}}
	for _, r := range opts.Remove {
		id, err := s.resolveKey(ctx, dir, repo, records, r)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(p.curIDs, id) {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("--remove %s: key %s is not a %s key (%s keys: %s)", r, short(id), role, role, shortList(p.curIDs)),
				HintText: "rootkeeper status --repo " + dir + " --key " + short(id) + " shows what the key can sign"}
		}
		p.removed[id] = true
	}
	if opts.Threshold > 0 {
		p.next.Threshold = opts.Threshold
	}
	switch n := len(cur.Keys) - len(p.removed) + len(opts.Add); {
	case n == 0:
		return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("%s would have no keys left", role),
			HintText: "add its new keys in the same run with --add URI (make one with rootkeeper key generate URI)"}
	case p.next.Threshold > n:
		return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("%s would have %d key(s) for a threshold of %d", role, n, p.next.Threshold),
			HintText: fmt.Sprintf("add keys with --add URI or lower the threshold with --threshold %d", n)}
	case len(p.removed) == 0 && len(opts.Add) == 0 && p.next.Threshold == cur.Threshold:
		return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("nothing changes: %s already has threshold %d", role, cur.Threshold)}
	}
	return p, nil
}

func keyIDsOfKeys(keys []*metadata.Key) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		id, _ := roles.KeyID(k)
		out = append(out, id)
	}
	return out
}

func keyIDsOfOpened(keys []*Key) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.ID())
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// isURI tells a key URI from a key id.
func isURI(s string) bool { return strings.Contains(s, ":") }

// resolveKey turns a key id, unique prefix or key URI into a key id of
// the repository. A URI is looked up in the key records first; only if
// no record names it is its device opened.
func (s *Session) resolveKey(ctx context.Context, dir string, repo *roles.Repo, records map[string]*KeyRecord, ref string) (string, error) {
	if !isURI(ref) {
		id, err := repo.ResolveKeyID(ref)
		if err != nil {
			if rerr := retiredKeyError(dir, ref); rerr != nil {
				return "", rerr
			}
			return "", &RepoError{Dir: dir, Detail: err.Error(),
				HintText: "rootkeeper status --repo " + dir + " lists every key id; a key URI works too"}
		}
		return id, nil
	}
	u, err := hsm.ParseURI(ref)
	if err != nil {
		return "", err
	}
	for id, rec := range records {
		if objectOf(rec.URI) == u.Object() {
			if _, ok := repo.Key(id); ok {
				return id, nil
			}
		}
	}
	if rerr := retiredKeyError(dir, ref); rerr != nil { // before opening its device
		return "", rerr
	}
	k, err := s.Open(ctx, ref)
	if err != nil {
		return "", &RepoError{Dir: dir, Detail: fmt.Sprintf("no key record names %s and its device cannot be opened", u.Object()), Err: err,
			HintText: "name the key by its key id instead (rootkeeper status --repo " + dir + " lists them)"}
	}
	if _, ok := repo.Key(k.ID()); !ok {
		return "", &RepoError{Dir: dir, Detail: fmt.Sprintf("%s holds key %s, which no role of the repository trusts", u.Object(), short(k.ID())),
			HintText: "check the URI; rootkeeper status --repo " + dir + " lists every key id"}
	}
	return k.ID(), nil
}

// retiredKeyError explains a key the repository trusted once and no
// longer does (its record is under keys/retired/): when, by which
// ceremony and why, from the transcript. It returns nil if ref (a key id,
// a prefix or a URI) names no retired key.
func retiredKeyError(dir, ref string) error {
	var rec *KeyRecord
	for _, r := range loadRecordsGlob(dir, "keys/retired/*.json") {
		l := strings.ToLower(strings.TrimSpace(ref))
		if (isURI(ref) && objectOf(r.URI) == objectOf(ref)) || (!isURI(ref) && (r.KeyID == l || (len(l) >= roles.MinKeyIDPrefix && strings.HasPrefix(r.KeyID, l)))) {
			if rec == nil || r.KeyID < rec.KeyID {
				rec = r
			}
		}
	}
	if rec == nil {
		return nil
	}
	what := fmt.Sprintf("key %s (%s) is retired", short(rec.KeyID), objectOf(rec.URI))
	if e := retiringEntry(dir, rec.KeyID); e != nil {
		what += fmt.Sprintf(": the %s of %s removed it (transcript entry %d", e.Operation, e.Time.UTC().Format(time.RFC3339), e.Seq)
		if reason, _ := e.Details["reason"].(string); reason != "" {
			what += fmt.Sprintf(", reason: %q", reason)
		}
		what += ")"
	}
	return &RepoError{Dir: dir, Detail: what + "; no role trusts it any more",
		HintText: "there is nothing to remove or revoke; rootkeeper status --repo " + dir + " lists the keys the repository trusts now, keys/retired/" + rec.KeyID + ".json is the retired key's record"}
}

// retiringEntry finds the transcript entry that retired key id.
func retiringEntry(dir, id string) *Entry {
	_, entries, err := readTranscript(dir, time.Time{})
	if err != nil {
		return nil
	}
	for i := len(entries) - 1; i >= 0; i-- {
		ids, _ := entries[i].Details["retired_key_records"].([]any)
		for _, v := range ids {
			if v == id {
				return &entries[i]
			}
		}
	}
	return nil
}

// openNewKeys opens the keys to add to role and checks their evidence
// against the policy's requirement.
func (s *Session) openNewKeys(ctx context.Context, dir string, pol *Policy, role string, uris, curIDs []string, removed map[string]bool) ([]*Key, error) {
	require := pol.Require
	if require == "" {
		require = RequireHardwareBorn
	}
	var out []*Key
	seen := map[string]string{}
	for _, uri := range uris {
		k, err := s.openAdded(ctx, uri, role, require)
		if err != nil {
			return nil, err
		}
		if err := checkKeyPolicy(k, role, pol.Roles[policyRole(pol, role)].KeyPolicy); err != nil {
			return nil, err
		}
		if other, dup := seen[k.ID()]; dup {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("--add %s and %s are the same key (%s)", objectOf(other), objectOf(uri), short(k.ID()))}
		}
		if slices.Contains(curIDs, k.ID()) && !removed[k.ID()] {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("--add %s: key %s is already a %s key", objectOf(uri), short(k.ID()), role),
				HintText: "generate a new key with rootkeeper key generate URI and add that one"}
		}
		seen[k.ID()] = uri
		out = append(out, k)
	}
	return out, nil
}

// openAdded opens a key being added and checks its evidence: a device
// (uri), or a key export (file:PATH, relative to the working directory)
// whose evidence is checked without the device; an exported key signs
// through a signing bundle (--out).
func (s *Session) openAdded(ctx context.Context, uri, role, require string) (*Key, error) {
	path, ok := strings.CutPrefix(uri, ExportPrefix)
	if !ok {
		k, err := s.Open(ctx, uri)
		if err != nil {
			return nil, err
		}
		return k, s.checkEvidence(k, role, require)
	}
	e, err := ReadExportedKey(path)
	if err != nil {
		return nil, err
	}
	e.file = path
	bs, _ := s.Keys.(backendSource)
	if err := CheckExportedKey(path, e, role, require, bs); err != nil {
		return nil, err
	}
	s.progress("read exported key %s (%s) from %s", short(e.KeyID), e.URI, path)
	return openExported(e)
}

// dropURIs removes from uris those whose key (known: by key record or by
// a key the session opened) is in removed.
func dropURIs(uris []string, removed map[string]bool, known func(string) (string, bool)) []string {
	var out []string
	for _, u := range uris {
		if id, ok := known(u); ok && removed[id] {
			continue
		}
		out = append(out, u)
	}
	return out
}

// knownKey tells which key a URI names without opening a device.
func (s *Session) knownKey(records map[string]*KeyRecord) func(string) (string, bool) {
	return func(uri string) (string, bool) { return s.uriKeyID(uri, records) }
}

// uriKeyID tells which key a URI names without opening a device.
func (s *Session) uriKeyID(uri string, records map[string]*KeyRecord) (string, bool) {
	obj := objectOf(uri)
	if k, ok := s.keys[obj]; ok {
		return k.ID(), true
	}
	for id, rec := range records {
		if objectOf(rec.URI) == obj {
			return id, true
		}
	}
	return "", false
}

// uriFor names the URI of a key for messages: its record, or "".
func uriFor(id string, records map[string]*KeyRecord) string {
	if rec, ok := records[id]; ok {
		return objectOf(rec.URI)
	}
	return ""
}

// keyRecordFiles returns keys/KEYID.json for each added key, with role
// added to the roles of an existing record.
func keyRecordFiles(records map[string]*KeyRecord, added []*Key, role string, now time.Time) ([]File, error) {
	var out []File
	for _, k := range added {
		roleNames := []string{role}
		if old, ok := records[k.ID()]; ok {
			roleNames = append(slices.Clone(old.Roles), role)
			slices.Sort(roleNames)
			roleNames = slices.Compact(roleNames)
		}
		rec, err := keyRecord(k, roleNames, now)
		if err != nil {
			return nil, err
		}
		data, err := marshalJSON(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Path: "keys/" + k.ID() + ".json", Data: data})
	}
	return out, nil
}

// RootSignaturesError reports a new root that could not get a threshold
// of the previous root's keys and of its own.
type RootSignaturesError struct {
	Version int64
	Rules   []roles.Requirement
	Missing []MissingKey // keys that could still sign, with their URIs
	Absent  []string     // URIs whose devices were not plugged in
}

// MissingKey is a key that has not signed yet and where it lives.
type MissingKey struct {
	KeyID  string `json:"keyid"`
	URI    string `json:"uri,omitempty"`
	Device string `json:"device,omitempty"`
}

// String names the key for messages: its short id and URI.
func (m MissingKey) String() string {
	if m.URI != "" {
		return short(m.KeyID) + " (" + m.URI + ")"
	}
	return short(m.KeyID)
}

// Error says which thresholds are short.
func (e *RootSignaturesError) Error() string {
	var parts []string
	for _, q := range e.Rules {
		if !q.Met() {
			parts = append(parts, fmt.Sprintf("%d of the %d signatures %s requires", q.Have, q.Threshold, q.From))
		}
	}
	return fmt.Sprintf("root v%d is not signed by enough keys, nothing was written: it has %s", e.Version, strings.Join(parts, " and "))
}

// Hint names the keys to plug in.
func (e *RootSignaturesError) Hint() string {
	var keys []string
	for _, m := range e.Missing {
		if m.URI != "" {
			keys = append(keys, short(m.KeyID)+" ("+m.URI+")")
		} else {
			keys = append(keys, short(m.KeyID))
		}
	}
	msg := "plug in the tokens of these keys and run the same command again: " + strings.Join(keys, ", ")
	if len(e.Absent) > 0 {
		msg += "; not plugged in this time: " + strings.Join(e.Absent, ", ")
	}
	return msg
}

func rotateSummary(dir, role string, oldRoot, newRoot *metadata.Metadata[metadata.RootType], cur, next roles.RoleKeys, curIDs []string, removed map[string]bool, added []*Key, records map[string]*KeyRecord) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Rotate the %s keys of %s in root v%d\n", role, dir, newRoot.Signed.Version)
	for _, id := range curIDs {
		mark := "keep  "
		if removed[id] {
			mark = "remove"
		}
		fmt.Fprintf(&w, "  %s %s  %s\n", mark, short(id), uriFor(id, records))
	}
	for _, k := range added {
		alg, _ := hsm.AlgorithmOf(k.HW.Public())
		fmt.Fprintf(&w, "  add    %s  %s (%s, %s)\n", short(k.ID()), objectOf(k.URI), alg, k.Evidence.Summary())
	}
	fmt.Fprintf(&w, "  threshold %d of %d keys (was %d of %d)\n", next.Threshold, len(next.Keys), cur.Threshold, len(cur.Keys))
	old := oldRoot.Signed.Roles[RoleRoot]
	nw := newRoot.Signed.Roles[RoleRoot]
	fmt.Fprintf(&w, "\nRoot v%d must be signed by %d of root v%d's %d root keys AND %d of its own %d (TUF 5.3.4).\n",
		newRoot.Signed.Version, old.Threshold, oldRoot.Signed.Version, len(old.KeyIDs), nw.Threshold, len(nw.KeyIDs))
	if role != RoleRoot {
		fmt.Fprintf(&w, "Then %s is re-signed with its new keys and snapshot and timestamp are published.\n", role)
	}
	fmt.Fprintf(&w, "Every root key plugged in signs, one device after another.")
	return w.String()
}
