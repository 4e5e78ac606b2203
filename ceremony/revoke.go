package ceremony

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// RevokeOptions say which key to revoke and how to keep the roles it
// signed alive.
type RevokeOptions struct {
	// Key is the revoked key: a key id, a unique prefix of at least 8 hex
	// digits, or its URI.
	Key string
	// Reason is recorded in the transcript (required).
	Reason string
	// Add gives replacement key URIs by role, for roles the revocation
	// would leave with fewer keys than their threshold: a device URI, or
	// file:PATH of a key export (a key on another machine, which signs
	// through a signing bundle).
	Add map[string][]string
	// Drop lists delegated roles to remove instead of re-keying them.
	Drop []string
	// ResignTargets keeps the targets of a role whose metadata only the
	// revoked key vouched for (see Unvouched), re-signed by its remaining
	// keys; by default they are dropped.
	ResignTargets bool
	// KeepDelegations keeps these delegations although only the revoked
	// key vouched for them, re-signed by the delegating role's remaining
	// keys; by default they are removed, and with them every role below
	// them that clients reach only through them.
	KeepDelegations []string
	// KeepUnvouched keeps everything only the revoked key vouched for:
	// targets and delegations.
	KeepUnvouched bool
}

// Revocation is what a revocation changed.
type Revocation struct {
	KeyID  string `json:"keyid"`
	URI    string `json:"uri,omitempty"`
	Reason string `json:"reason"`
	// RootVersion is the new root version, 0 when root did not trust the key.
	RootVersion     int64         `json:"root_version,omitempty"`
	Roles           []RevokedRole `json:"roles"`
	TargetsDropped  int           `json:"targets_dropped"`
	TargetsResigned int           `json:"targets_resigned"`
	// Unvouched is what only the revoked key vouched for, role by role,
	// and whether it was dropped or kept.
	Unvouched          []Unvouched `json:"unvouched,omitempty"`
	DelegationsDropped int         `json:"delegations_dropped"`
	DelegationsKept    int         `json:"delegations_kept"`
}

// RevokedRole is one role that trusted the revoked key.
type RevokedRole struct {
	Role      string `json:"role"`
	Delegator string `json:"delegator"`
	// Action is "key removed" or "delegation removed".
	Action    string   `json:"action"`
	KeysLeft  int      `json:"keys_left"`
	Threshold int      `json:"threshold"`
	Added     []string `json:"added,omitempty"`
	// Metadata says what happened to the role's own metadata.
	Metadata string `json:"metadata"`
	Dropped  int    `json:"targets_dropped"`
	Resigned int    `json:"targets_resigned"`
	Bins     int    `json:"bins,omitempty"`
}

// KeysNeededError reports roles a revocation would leave below their
// threshold; nothing was written.
type KeysNeededError struct {
	Dir, KeyID string
	Roles      []KeysNeeded
}

// KeysNeeded is one role that needs new keys.
type KeysNeeded struct {
	Role      string
	Left      int
	Threshold int
	Delegated bool
}

// Error names the roles left below their threshold.
func (e *KeysNeededError) Error() string {
	var parts []string
	for _, r := range e.Roles {
		parts = append(parts, fmt.Sprintf("%s would have %d key(s) left for its threshold of %d", r.Role, r.Left, r.Threshold))
	}
	return fmt.Sprintf("revoking key %s leaves too few keys, nothing was written: %s", short(e.KeyID), strings.Join(parts, "; "))
}

// Hint says exactly what to add.
func (e *KeysNeededError) Hint() string {
	var adds, drops []string
	for _, r := range e.Roles {
		n := r.Threshold - r.Left
		for i := 0; i < n; i++ {
			adds = append(adds, fmt.Sprintf("--add %s=pkcs11:token=NEW;object=%s", r.Role, r.Role))
		}
		if r.Delegated {
			drops = append(drops, "--drop "+r.Role)
		}
	}
	msg := "generate a replacement key (rootkeeper key generate URI) and run the same command with " + strings.Join(adds, " ")
	if len(drops) > 0 {
		msg += ", or stop trusting the role altogether with " + strings.Join(drops, " ")
	}
	return msg
}

// Revoke stops every client from trusting key at its next update: it
// removes the key from every role and delegation that trusts it (a new
// root version, signed by the offline root keys, only if root trusted
// it), re-signs each changed role with the keys that may sign it, and
// publishes snapshot and timestamp. A role whose published metadata has
// no threshold of valid signatures without the key gets a new version
// without what only the revoked key vouched for (planRevoke): its targets
// and its delegations, and with them every role below; the officer keeps
// them with opts.ResignTargets, opts.KeepDelegations or
// opts.KeepUnvouched after the summary has named them. The reason goes
// into the transcript.
//
// Every check that needs no device comes first (the lock, the journal,
// the transcript, the policy, the URIs of --add, the plan); only then are
// replacement keys opened, and keys sign after the officer confirmed.
func (s *Session) Revoke(ctx context.Context, dir string, opts RevokeOptions) (*Result, error) {
	if err := checkRevokeOptions(dir, opts); err != nil {
		return nil, err
	}
	return s.change(ctx, dir, func(st *state) (*Change, error) {
		id, err := s.resolveKey(ctx, dir, st.repo, st.records, opts.Key)
		if err != nil {
			return nil, err
		}
		p, err := planRevoke(dir, st.repo, id, opts) // revoke_plan.go: no device
		if err != nil {
			return nil, err
		}
		adds := map[string][]*Key{}
		for _, t := range p.trusts {
			if slices.Contains(opts.Drop, t.Role) || p.isGone(t) {
				continue
			}
			if adds[t.Role], err = s.openNewKeys(ctx, dir, st.pol, t.Role, opts.Add[t.Role], t.KeyIDs, map[string]bool{id: true}); err != nil {
				return nil, err
			}
		}
		c, err := revokeChange(st, p, opts, adds, s.knownKey(st.records))
		if err != nil {
			return nil, err
		}
		for _, keys := range adds {
			c.skipExportedKeys(keys) // they sign through the bundle (--out)
		}
		return c, nil
	})
}

// revokeChange makes the planned revocation a change: the metadata and
// the policy as planned (applyRevoke), root signed by the offline root
// keys (the revoked key only if the others cannot), each changed targets
// role by its keys, then snapshot and timestamp.
func revokeChange(st *state, p *revokePlan, opts RevokeOptions, adds map[string][]*Key, known func(string) (string, bool)) (*Change, error) {
	c := st.newChange("revoke")
	trustedBefore := c.Repo.KeyIDs()
	rootURIs := slices.Clone(c.Policy.Role(RoleRoot).Keys)
	for _, k := range adds[RoleRoot] {
		rootURIs = append(rootURIs, k.URI)
	}
	rev := &Revocation{KeyID: p.id, URI: uriFor(p.id, st.records), Reason: opts.Reason, Unvouched: p.unvouched}
	bumped, dropRoles, err := applyRevoke(c.Repo, c.Policy, p, opts, adds, known, c.At, rev)
	if err != nil {
		return nil, err
	}
	c.Summary.Text = revokeSummary(st.dir, rev, p.needRoot)
	if p.needRoot {
		root, err := c.rootStep(rootURIs, rootURIs)
		if err != nil {
			return nil, err
		}
		root.Last = []string{p.id}
		c.Steps = append(c.Steps, root)
		c.Changed = append(c.Changed, RoleRoot)
	}
	if err := c.changedSteps(bumped); err != nil {
		return nil, err
	}
	for role, keys := range adds {
		files, err := keyRecordFiles(st.records, keys, role, c.At)
		if err != nil {
			return nil, err
		}
		c.Extra = append(c.Extra, files...)
	}
	c.Details = map[string]any{"keyid": p.id, "reason": rev.Reason, "revocation": rev}
	if len(dropRoles) > 0 {
		c.Details["roles_removed"] = dropRoles
	}
	c.retire(trustedBefore)
	return c, nil
}

// changedSteps appends a step for every targets role given a new version
// (hashed bins: one step for each set), then snapshot and timestamp.
func (c *Change) changedSteps(bumped map[string]bool) error {
	sets := map[string][]string{}
	var order []string
	for _, role := range sortedKeys(bumped) {
		if _, bin := binPolicy(c.Policy, role); !bin || len(bumped) < 64 {
			c.Changed = append(c.Changed, role)
		}
		if prefix, ok := binPolicy(c.Policy, role); ok {
			if sets[prefix] == nil {
				order = append(order, prefix)
			}
			sets[prefix] = append(sets[prefix], role)
			continue
		}
		st, err := c.roleStep(role)
		if err != nil {
			return err
		}
		c.Steps = append(c.Steps, st)
	}
	for _, prefix := range order {
		st, err := c.roleStep(sets[prefix][0])
		if err != nil {
			return err
		}
		st.Role, st.Bins, st.All = prefix, sets[prefix], false
		c.Steps = append(c.Steps, st)
	}
	c.Changed = append(c.Changed, RoleSnapshot, RoleTimestamp)
	return c.stepsFor()
}

// checkRevokeOptions checks what needs no repository: the key and the
// reason are given, every --add URI parses.
func checkRevokeOptions(dir string, opts RevokeOptions) error {
	if strings.TrimSpace(opts.Key) == "" {
		return &RepoError{Detail: "--key is required: the key id or URI of the key to revoke",
			HintText: "rootkeeper status --repo " + dir + " lists every key id"}
	}
	if strings.TrimSpace(opts.Reason) == "" {
		return &RepoError{Detail: "--reason is required: it goes into the ceremony transcript",
			HintText: `for example --reason "tagging laptop stolen, incident 1234"`}
	}
	if isURI(opts.Key) {
		if err := checkURIs(opts.Key); err != nil {
			return err
		}
	}
	for _, uris := range opts.Add {
		if err := checkURIs(deviceURIs(uris)...); err != nil { // a key export (file:PATH) is read when the keys are opened
			return err
		}
	}
	return nil
}

// applyRevoke changes the metadata and the policy as planned: root and
// the delegators lose the key (and gain the replacements), unvouched
// delegations are removed, and each role whose version only the key
// vouched for gets a new one. It returns the roles given a new version
// and the delegated roles no longer trusted.
func applyRevoke(repo *roles.Repo, pol *Policy, p *revokePlan, opts RevokeOptions, adds map[string][]*Key, known func(string) (string, bool), now time.Time, rev *Revocation) (map[string]bool, []string, error) {
	if p.needRoot {
		if err := repo.BumpRole(RoleRoot, now.Add(pol.Role(RoleRoot).Expires.D())); err != nil {
			return nil, nil, err
		}
		rev.RootVersion = repo.Root().Signed.Version
	}
	bumped := map[string]bool{}
	bump := func(role string) error {
		if bumped[role] || role == RoleRoot {
			return nil
		}
		bumped[role] = true
		return bumpRole(repo, pol, role, now)
	}
	dropRoles, err := removeUnvouched(repo, p, rev, bump)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range p.trusts {
		rr, removed, err := rekey(repo, p, t, opts, adds[t.Role], bump)
		if err != nil {
			return nil, nil, err
		}
		dropRoles = append(dropRoles, removed...)
		rev.Roles = append(rev.Roles, rr)
	}
	revokePolicy(pol, p, opts, adds, known, dropRoles)
	for i := range rev.Roles {
		if err := roleMetadata(repo, p, opts, &rev.Roles[i], rev.RootVersion, bump); err != nil {
			return nil, nil, err
		}
		rev.TargetsDropped += rev.Roles[i].Dropped
		rev.TargetsResigned += rev.Roles[i].Resigned
	}
	return bumped, dropRoles, nil
}

// removeUnvouched removes the delegations only the revoked key vouched
// for that the officer did not keep, and returns the roles that went.
func removeUnvouched(repo *roles.Repo, p *revokePlan, rev *Revocation, bump func(string) error) ([]string, error) {
	var gone []string
	for _, u := range p.unvouched {
		for _, d := range u.Delegations {
			if d.Kept {
				rev.DelegationsKept++
				continue
			}
			if err := bump(u.Role); err != nil {
				return nil, err
			}
			_, removed, err := repo.RemoveDelegation(d.Role)
			if err != nil {
				return nil, err
			}
			rev.DelegationsDropped++
			gone = append(gone, removed...)
		}
	}
	return gone, nil
}

// rekey takes the key out of one trusting role: the delegation is
// removed (--drop), or the role's keys lose it and gain the replacements.
// A role below a removed unvouched delegation is gone already.
func rekey(repo *roles.Repo, p *revokePlan, t roles.Trust, opts RevokeOptions, added []*Key, bump func(string) error) (RevokedRole, []string, error) {
	rr := RevokedRole{Role: t.Role, Delegator: t.Delegator, Threshold: t.Threshold, Bins: len(t.Bins)}
	if p.isGone(t) && !slices.Contains(opts.Drop, t.Role) {
		rr.Action, rr.Metadata = "delegation removed", "no longer trusted: below a delegation only the revoked key vouched for"
		return rr, nil, nil
	}
	if t.Delegator != RoleRoot {
		if err := bump(t.Delegator); err != nil {
			return rr, nil, err
		}
	}
	if slices.Contains(opts.Drop, t.Role) {
		counts := map[string]int{}
		for name, md := range repo.Delegated {
			counts[name] = len(md.Signed.Targets)
		}
		_, removed, err := repo.RemoveDelegation(t.Role)
		if err != nil {
			return rr, nil, err
		}
		for _, r := range removed {
			rr.Dropped += counts[r]
		}
		rr.Action, rr.Metadata = "delegation removed", fmt.Sprintf("no longer trusted: %s", abbreviate(removed))
		return rr, removed, nil
	}
	rk, err := repo.RoleKeysOf(roleOrFirstBin(t))
	if err != nil {
		return rr, nil, err
	}
	next := roles.RoleKeys{Threshold: rk.Threshold}
	for _, k := range rk.Keys {
		if kid, _ := roles.KeyID(k); kid != p.id {
			next.Keys = append(next.Keys, k)
		}
	}
	for _, k := range added {
		next.Keys = append(next.Keys, k.TUF.Key())
		rr.Added = append(rr.Added, k.ID())
	}
	if err := repo.SetRoleKeys(roleOrFirstBin(t), next); err != nil {
		return rr, nil, err
	}
	rr.Action, rr.KeysLeft = "key removed", len(next.Keys)
	return rr, nil, nil
}

// revokePolicy makes rootkeeper.yaml follow: the revoked key's URI goes,
// replacements come, removed roles lose their entries.
func revokePolicy(pol *Policy, p *revokePlan, opts RevokeOptions, adds map[string][]*Key, known func(string) (string, bool), dropRoles []string) {
	revoked := map[string]bool{p.id: true}
	for name, rp := range pol.Roles {
		rp.Keys = dropURIs(rp.Keys, revoked, known)
		pol.Roles[name] = rp
	}
	for role, keys := range adds {
		entry := policyRole(pol, role)
		rp := pol.Roles[entry]
		for _, k := range keys {
			rp.Keys = append(rp.Keys, k.URI)
		}
		pol.Roles[entry] = rp
	}
	for _, r := range append(dropRoles, opts.Drop...) {
		delete(pol.Roles, r)
	}
	for _, u := range p.unvouched {
		for _, d := range u.Delegations {
			if !d.Kept {
				delete(pol.Roles, d.Role) // hashed bins: their prefix's entry
			}
		}
	}
}

// signerText says who signs a role's new version.
func signerText(left, added int) string {
	switch {
	case left == added:
		return "its replacement key(s)"
	case added == 0:
		return "its remaining keys"
	}
	return "its remaining and replacement keys"
}

// roleMetadata gives each role that lost the key what its own metadata
// needs: still valid, or a new version without (or with, if kept) what
// only the revoked key vouched for.
func roleMetadata(repo *roles.Repo, p *revokePlan, opts RevokeOptions, rr *RevokedRole, rootVersion int64, bump func(string) error) error {
	if rr.Action != "key removed" {
		return nil
	}
	switch rr.Role {
	case RoleRoot:
		rr.Metadata = fmt.Sprintf("new root v%d without the key", rootVersion)
		return nil
	case RoleSnapshot, RoleTimestamp:
		rr.Metadata = "re-signed by " + signerText(rr.KeysLeft, len(rr.Added))
		return nil
	}
	names := metaNames(repo, p.byRole[rr.Role])
	changed, removed, kept := 0, 0, 0
	for _, name := range names {
		if p.stillValid[name] {
			continue
		}
		if err := bump(name); err != nil {
			return err
		}
		for _, u := range p.unvouched {
			for _, d := range u.Delegations {
				if u.Role != name {
					continue
				} else if d.Kept {
					kept++
				} else {
					removed++
				}
			}
		}
		if opts.ResignTargets || opts.KeepUnvouched {
			md, _ := targetsRole(repo, name)
			rr.Resigned += len(md.Signed.Targets)
		} else {
			n, err := repo.DropTargets(name)
			if err != nil {
				return err
			}
			rr.Dropped += n
		}
		changed++
	}
	rr.Metadata = roleMetadataText(changed, rr, removed, kept)
	if len(names) > 1 && changed > 0 {
		rr.Metadata = fmt.Sprintf("%d of %d bins: %s", changed, len(names), rr.Metadata)
	}
	return nil
}

func roleMetadataText(changed int, rr *RevokedRole, removed, kept int) string {
	if changed == 0 {
		return "still valid: signed by enough of its other keys"
	}
	by := signerText(rr.KeysLeft, len(rr.Added))
	var gone, stay []string
	if rr.Dropped > 0 {
		gone = append(gone, fmt.Sprintf("the %d target(s)", rr.Dropped))
	}
	if removed > 0 {
		gone = append(gone, fmt.Sprintf("%d delegation(s)", removed))
	}
	if rr.Resigned > 0 {
		stay = append(stay, fmt.Sprintf("%d target(s)", rr.Resigned))
	}
	if kept > 0 {
		stay = append(stay, fmt.Sprintf("%d delegation(s)", kept))
	}
	switch {
	case len(gone) == 0 && len(stay) == 0:
		return "new version signed by " + by + " (it listed no targets)"
	case len(stay) == 0:
		return "new version without " + strings.Join(gone, " and ") + " only the revoked key had signed"
	}
	msg := "new version, its " + strings.Join(stay, " and ") + " re-signed by " + by
	if len(gone) > 0 {
		msg += ", without " + strings.Join(gone, " and ") + " only the revoked key had signed"
	}
	return msg
}

func roleOrFirstBin(t roles.Trust) string {
	if len(t.Bins) > 0 {
		return t.Bins[0]
	}
	return t.Role
}

func trustNames(ts []roles.Trust) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Role)
	}
	return strings.Join(out, ", ")
}

func revokeSummary(dir string, rev *Revocation, needRoot bool) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Revoke key %s", rev.KeyID)
	if rev.URI != "" {
		fmt.Fprintf(&w, " (%s)", rev.URI)
	}
	fmt.Fprintf(&w, " in %s\n  reason: %s\n", dir, rev.Reason)
	for _, r := range rev.Roles {
		fmt.Fprintf(&w, "  %-12s (trusted by %s): %s; %s\n", r.Role, r.Delegator, r.Action, r.Metadata)
	}
	if lines := rev.UnvouchedLines(); len(lines) > 0 {
		fmt.Fprintf(&w, "Only the revoked key vouched for (no other key signed these versions):\n")
		for _, l := range lines {
			fmt.Fprintf(&w, "  %s\n", l)
		}
	}
	if needRoot {
		fmt.Fprintf(&w, "Root trusted the key: root v%d must be signed by the offline root keys.\n", rev.RootVersion)
	}
	fmt.Fprintf(&w, "Targets that lose their only signature: %d dropped, %d re-signed.\n", rev.TargetsDropped, rev.TargetsResigned)
	fmt.Fprintf(&w, "Then snapshot and timestamp are published: clients stop trusting the key at their next update.")
	return w.String()
}

// UnvouchedLines describes, one line each, what only the revoked key
// vouched for and what happened to it: each role's targets and each
// delegation with its paths, keys and threshold and the roles below it.
func (r *Revocation) UnvouchedLines() []string {
	var out []string
	for _, u := range r.Unvouched {
		if u.Targets > 0 {
			what := "dropped (--resign-targets keeps them)"
			if u.TargetsKept {
				what = "kept, re-signed"
			}
			out = append(out, fmt.Sprintf("%s v%d: %d target(s): %s", u.Role, u.Version, u.Targets, what))
		}
		for _, d := range u.Delegations {
			scope := "paths " + strings.Join(d.Paths, ", ")
			if d.Bins > 0 {
				scope = fmt.Sprintf("%d hashed bins", d.Bins)
			}
			line := fmt.Sprintf("%s v%d: delegation to %s (%s; keys %s; threshold %d)", u.Role, u.Version, d.Role, scope, shortList(d.KeyIDs), d.Threshold)
			if len(d.Below) > 0 {
				line += ", and below it " + abbreviate(d.Below)
			}
			line += fmt.Sprintf(", %d target(s): ", d.Targets)
			if d.Kept {
				line += "kept, re-signed"
			} else {
				line += "removed (--keep-delegation " + d.Role + " keeps it)"
			}
			out = append(out, line)
		}
	}
	return out
}

// KeyUse is every role a key may sign.
type KeyUse struct {
	Repository string        `json:"repository"`
	KeyID      string        `json:"keyid"`
	URI        string        `json:"uri,omitempty"`
	Evidence   *hsm.Evidence `json:"evidence,omitempty"`
	Roles      []roles.Trust `json:"roles"`
}

// KeyRoles reports which roles of the repository in dir the key named by
// key (a key id, a unique prefix, or a key URI with a key record) may
// sign: top-level roles of the newest root and every delegation.
func KeyRoles(dir, key string) (*KeyUse, error) {
	repo, _, err := loadReadOnly(dir)
	if err != nil {
		return nil, err
	}
	records := loadRecords(dir)
	retired := loadRecordsGlob(dir, "keys/retired/*.json")
	for kid, rec := range retired { // keys/retired/: keys rotated or revoked away
		if _, ok := records[kid]; !ok {
			records[kid] = rec
		}
	}
	var id string
	switch {
	case isURI(key):
		obj := objectOf(key)
		for kid, rec := range records {
			if objectOf(rec.URI) == obj {
				id = kid
			}
		}
		if id == "" {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("no key record names %s", obj),
				HintText: "give the key id instead (rootkeeper key show URI prints it)"}
		}
	case keyIDRE.MatchString(strings.ToLower(key)):
		id = strings.ToLower(key) // a whole key id: reported even if nothing trusts it any more
	default:
		if id, err = repo.ResolveKeyID(key); err != nil {
			if _, ok := records[strings.ToLower(key)]; !ok {
				for kid := range records {
					if len(key) >= roles.MinKeyIDPrefix && strings.HasPrefix(kid, strings.ToLower(key)) {
						id, err = kid, nil
					}
				}
			}
			if err != nil {
				return nil, &RepoError{Dir: dir, Detail: err.Error(), HintText: "rootkeeper status --repo " + dir + " lists every key id"}
			}
		}
	}
	use := &KeyUse{Repository: dir, KeyID: id, URI: uriFor(id, records), Roles: repo.Trusting(id)}
	if rec, ok := records[id]; ok {
		use.Evidence = rec.Evidence
	}
	if use.Roles == nil {
		use.Roles = []roles.Trust{}
	}
	return use, nil
}

var keyIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
