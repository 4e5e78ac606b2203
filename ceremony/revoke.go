package ceremony

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

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
	// would leave with fewer keys than their threshold.
	Add map[string][]string
	// Drop lists delegated roles to remove instead of re-keying them.
	Drop []string
	// ResignTargets keeps the targets of a role whose metadata loses its
	// last valid signatures, re-signed by its remaining keys; by default
	// they are dropped, since only the revoked key vouched for them.
	ResignTargets bool
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
// publishes snapshot and timestamp. A role whose metadata no longer has
// a threshold of valid signatures without the key gets a new version: by
// default without its targets (only the revoked key vouched for them),
// with them re-signed by its remaining keys if opts.ResignTargets. The
// reason goes into the transcript.
func (s *Session) Revoke(ctx context.Context, dir string, opts RevokeOptions) (*Result, error) {
	if strings.TrimSpace(opts.Key) == "" {
		return nil, &RepoError{Detail: "--key is required: the key id or URI of the key to revoke",
			HintText: "rootkeeper status --repo " + dir + " lists every key id"}
	}
	if strings.TrimSpace(opts.Reason) == "" {
		return nil, &RepoError{Detail: "--reason is required: it goes into the ceremony transcript",
			HintText: `for example --reason "tagging laptop stolen, incident 1234"`}
	}
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		records := loadRecords(dir)
		trustedBefore := repo.KeyIDs()
		id, err := s.resolveKey(ctx, dir, repo, records, opts.Key)
		if err != nil {
			return err
		}
		trusts := repo.Trusting(id)
		if len(trusts) == 0 {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("no role trusts key %s: there is nothing to revoke", short(id)),
				HintText: "rootkeeper status --repo " + dir + " --key " + short(id) + " shows what a key can sign"}
		}
		byRole := map[string]roles.Trust{}
		for _, t := range trusts {
			byRole[t.Role] = t
		}
		for role := range opts.Add {
			if _, ok := byRole[role]; !ok {
				return &RepoError{Dir: dir, Detail: fmt.Sprintf("--add %s=…: %s does not trust key %s", role, role, short(id)),
					HintText: "add keys only to roles that trusted the revoked key: " + trustNames(trusts)}
			}
		}
		for _, role := range opts.Drop {
			t, ok := byRole[role]
			if !ok || t.Delegator == RoleRoot {
				return &RepoError{Dir: dir, Detail: fmt.Sprintf("--drop %s: only a delegated role that trusts key %s can be dropped", role, short(id)),
					HintText: "roles that trust the key: " + trustNames(trusts)}
			}
		}
		rev := &Revocation{KeyID: id, URI: uriFor(id, records), Reason: opts.Reason}

		// Which roles' metadata stays valid without the key: decided on the
		// metadata as it is, before any role is bumped for re-signing.
		stillValid := map[string]bool{}
		for _, t := range trusts {
			names := []string{t.Role}
			if len(t.Bins) > 0 {
				names = t.Bins
			}
			for _, name := range names {
				if _, ok := repo.Delegated[name]; !ok && name != RoleTargets {
					continue
				}
				signers, err := repo.ValidSigners(name)
				if err != nil {
					return err
				}
				others := slices.DeleteFunc(signers, func(s string) bool { return s == id })
				stillValid[name] = len(others) >= t.Threshold
			}
		}

		// Replacement keys, and roles left below their threshold.
		adds := map[string][]*Key{}
		need := &KeysNeededError{Dir: dir, KeyID: id}
		for _, t := range trusts {
			if slices.Contains(opts.Drop, t.Role) {
				continue
			}
			keys, err := s.openNewKeys(ctx, dir, pol, t.Role, opts.Add[t.Role], t.KeyIDs, map[string]bool{id: true})
			if err != nil {
				return err
			}
			adds[t.Role] = keys
			if left := len(t.KeyIDs) - 1 + len(keys); left < t.Threshold {
				need.Roles = append(need.Roles, KeysNeeded{Role: t.Role, Left: left, Threshold: t.Threshold, Delegated: t.Delegator != RoleRoot})
			}
		}
		if len(need.Roles) > 0 {
			return need
		}

		now := s.now()
		needRoot := false
		for _, t := range trusts {
			needRoot = needRoot || t.Delegator == RoleRoot
		}
		oldRootURIs := slices.Clone(pol.Role(RoleRoot).Keys)
		if needRoot {
			if err := repo.BumpRole(RoleRoot, now.Add(pol.Role(RoleRoot).Expires.D())); err != nil {
				return err
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
		revoked := map[string]bool{id: true}
		var dropRoles []string
		for _, t := range trusts {
			rr := RevokedRole{Role: t.Role, Delegator: t.Delegator, Threshold: t.Threshold, Bins: len(t.Bins)}
			if t.Delegator != RoleRoot {
				if err := bump(t.Delegator); err != nil {
					return err
				}
			}
			if slices.Contains(opts.Drop, t.Role) {
				counts := map[string]int{}
				for name, md := range repo.Delegated {
					counts[name] = len(md.Signed.Targets)
				}
				_, removed, err := repo.RemoveDelegation(t.Role)
				if err != nil {
					return err
				}
				for _, r := range removed {
					rr.Dropped += counts[r]
					dropRoles = append(dropRoles, r)
				}
				rr.Action = "delegation removed"
				rr.Metadata = fmt.Sprintf("no longer trusted: %s", abbreviate(removed))
				rev.Roles = append(rev.Roles, rr)
				continue
			}
			rk, err := repo.RoleKeysOf(roleOrFirstBin(t))
			if err != nil {
				return err
			}
			next := roles.RoleKeys{Threshold: rk.Threshold}
			for _, k := range rk.Keys {
				if kid, _ := roles.KeyID(k); !revoked[kid] {
					next.Keys = append(next.Keys, k)
				}
			}
			for _, k := range adds[t.Role] {
				next.Keys = append(next.Keys, k.TUF.Key())
				rr.Added = append(rr.Added, k.ID())
			}
			if err := repo.SetRoleKeys(roleOrFirstBin(t), next); err != nil {
				return err
			}
			rr.Action, rr.KeysLeft = "key removed", len(next.Keys)
			rev.Roles = append(rev.Roles, rr)
		}

		// The policy follows: the revoked key's URI goes, replacements come.
		for name, rp := range pol.Roles {
			rp.Keys = s.dropURIs(rp.Keys, revoked, records)
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
		for _, r := range dropRoles {
			delete(pol.Roles, r)
		}
		for _, r := range opts.Drop {
			delete(pol.Roles, r)
		}

		// Each role's own metadata: still valid without the key, or a new
		// version signed by the keys that remain.
		var resign []string
		for i := range rev.Roles {
			rr := &rev.Roles[i]
			if rr.Action != "key removed" || rr.Role == RoleRoot || rr.Role == RoleSnapshot || rr.Role == RoleTimestamp {
				switch rr.Role {
				case RoleRoot:
					rr.Metadata = fmt.Sprintf("new root v%d without the key", rev.RootVersion)
				case RoleSnapshot, RoleTimestamp:
					rr.Metadata = "re-signed by its remaining keys"
				}
				continue
			}
			names := []string{rr.Role}
			if t := byRole[rr.Role]; len(t.Bins) > 0 {
				names = t.Bins
			}
			changed := 0
			for _, name := range names {
				if _, ok := repo.Delegated[name]; !ok && name != RoleTargets {
					continue
				}
				if stillValid[name] {
					continue
				}
				if err := bump(name); err != nil {
					return err
				}
				if opts.ResignTargets {
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
				resign = append(resign, name)
			}
			switch {
			case changed == 0:
				rr.Metadata = "still valid: signed by enough of its other keys"
			case rr.Dropped == 0 && rr.Resigned == 0:
				rr.Metadata = "new version signed by its remaining keys (it listed no targets)"
			case opts.ResignTargets:
				rr.Metadata = fmt.Sprintf("new version, its %d target(s) re-signed by its remaining keys", rr.Resigned)
			default:
				rr.Metadata = fmt.Sprintf("new version without the %d target(s) only the revoked key had signed", rr.Dropped)
			}
			if len(names) > 1 && changed > 0 {
				rr.Metadata = fmt.Sprintf("%d of %d bins: %s", changed, len(names), rr.Metadata)
			}
		}
		for _, rr := range rev.Roles {
			rev.TargetsDropped += rr.Dropped
			rev.TargetsResigned += rr.Resigned
		}

		if err := s.confirm(revokeSummary(dir, rev, needRoot)); err != nil {
			return err
		}
		if needRoot {
			uris := oldRootURIs
			for _, k := range adds[RoleRoot] {
				uris = append(uris, k.URI)
			}
			if err := s.signRoot(ctx, repo, uris, revoked, records); err != nil {
				return err
			}
		}
		if err := s.signChanged(ctx, repo, pol, bumped, records); err != nil {
			return err
		}
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		var extra []File
		for role, keys := range adds {
			files, err := s.keyRecords(dir, records, keys, role, now)
			if err != nil {
				return err
			}
			extra = append(extra, files...)
		}
		changed := []string{}
		if needRoot {
			changed = append(changed, RoleRoot)
		}
		for _, r := range sortedKeys(bumped) {
			if _, bin := binPolicy(pol, r); !bin || len(bumped) < 64 {
				changed = append(changed, r)
			}
		}
		changed = append(changed, RoleSnapshot, RoleTimestamp)
		details := map[string]any{"keyid": id, "reason": opts.Reason, "revocation": rev}
		retired, retiredIDs := retiredRecords(dir, repo, trustedBefore)
		if len(retiredIDs) > 0 {
			details["retired_key_records"] = retiredIDs
		}
		res, err = s.commit(&change{op: "revoke", dir: dir, repo: repo, policy: pol, now: now, changed: changed, extra: append(extra, retired...), remove: retiredPaths(retiredIDs), details: details})
		return err
	})
	return res, err
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

// signChanged signs every targets role given a new version, hashed bins
// with one opening of their keys.
func (s *Session) signChanged(ctx context.Context, repo *roles.Repo, pol *Policy, bumped map[string]bool, records map[string]*KeyRecord) error {
	bins := map[string][]string{}
	for _, role := range sortedKeys(bumped) {
		if prefix, ok := binPolicy(pol, role); ok {
			bins[prefix] = append(bins[prefix], role)
			continue
		}
		if err := s.signTargetsRole(ctx, repo, pol, role, records); err != nil {
			return err
		}
	}
	for prefix, names := range bins {
		rk, err := repo.RoleKeysOf(names[0])
		if err != nil {
			return err
		}
		trusted := keyIDsOfKeys(rk.Keys)
		var keys []*Key
		for _, uri := range pol.Role(prefix).Keys {
			k, err := s.Open(ctx, uri)
			if errAbsent(err) {
				continue
			}
			if err != nil {
				return err
			}
			if slices.Contains(trusted, k.ID()) && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		if len(keys) < rk.Threshold {
			return &ThresholdError{Role: prefix, Have: len(keys), Need: rk.Threshold, Missing: trusted}
		}
		if err := s.signBins(ctx, repo, names, keys, rk.Threshold); err != nil {
			return err
		}
	}
	return nil
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
	if needRoot {
		fmt.Fprintf(&w, "Root trusted the key: root v%d must be signed by the offline root keys.\n", rev.RootVersion)
	}
	fmt.Fprintf(&w, "Targets that lose their only signature: %d dropped, %d re-signed.\n", rev.TargetsDropped, rev.TargetsResigned)
	fmt.Fprintf(&w, "Then snapshot and timestamp are published: clients stop trusting the key at their next update.")
	return w.String()
}

// KeyUse is every role a key may sign.
type KeyUse struct {
	Repository string        `json:"repository"`
	KeyID      string        `json:"keyid"`
	URI        string        `json:"uri,omitempty"`
	Evidence   string        `json:"evidence,omitempty"`
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
		use.Evidence = rec.Evidence.Summary()
	}
	if use.Roles == nil {
		use.Roles = []roles.Trust{}
	}
	return use, nil
}

var keyIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
