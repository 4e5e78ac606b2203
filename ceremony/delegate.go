package ceremony

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// DelegateOptions describe a new delegation to tagging keys.
type DelegateOptions struct {
	// Role is the new delegated role, or with Bins the bins' name prefix.
	Role string
	// From is the delegating role: "targets" (default) or a delegated role.
	From string
	// Keys are the URIs of the role's keys (generated beforehand).
	Keys []string
	// Threshold is how many of Keys must sign (default 1).
	Threshold int
	// Paths are the target path patterns the role is trusted for
	// ("releases/*"); not with Bins.
	Paths []string
	// Terminating stops clients from asking later delegations about the
	// role's paths.
	Terminating bool
	// Bins, when not 0, makes that many hashed bins (a power of two up to
	// 16384; TAP 15 succinct roles, the PEP 458 layout) that share Keys.
	Bins int
	// Expires is the role's lifetime; 0 means From's.
	Expires Duration
}

// TufJSBinsWarn is the number of hashed bins above which DelegateAdd
// warns that tuf-js clients get slow (see docs/performance.md).
const TufJSBinsWarn = 4096

// binPolicy maps a hashed bin ("bins-0a3") to the policy entry of its
// prefix ("bins"): every bin shares its prefix's keys and lifetime.
func binPolicy(p *Policy, role string) (string, bool) {
	i := strings.LastIndex(role, "-")
	if i <= 0 || i == len(role)-1 {
		return "", false
	}
	for _, c := range role[i+1:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", false
		}
	}
	if _, ok := p.Roles[role[:i]]; ok {
		return role[:i], true
	}
	return "", false
}

// checkDelegateName checks the new role's name (or the bins' names) and
// the number of bins, before any device is opened.
func checkDelegateName(opts DelegateOptions) error {
	if err := roles.CheckRoleName(opts.Role); err != nil {
		return &RepoError{Detail: "--role: " + err.Error(),
			HintText: "name the delegated role after what it signs, like releases or team-a"}
	}
	if opts.Bins != 0 {
		if _, err := roles.BinBits(opts.Bins); err != nil {
			return &RepoError{Detail: "--bins: " + err.Error()}
		}
		if err := roles.CheckRoleName(fmt.Sprintf("%s-%x", opts.Role, opts.Bins-1)); err != nil {
			return &RepoError{Detail: "--role: the last bin's name: " + err.Error()}
		}
	}
	return nil
}

// DelegateAdd delegates paths (or, with Bins, every target by path hash)
// from opts.From to a new role trusting opts.Keys: the new role's
// metadata is signed by its keys, the delegating role gets a new version
// signed by its own keys, and snapshot and timestamp are published.
// rootkeeper.yaml gets an entry for the role with its key URIs.
func (s *Session) DelegateAdd(ctx context.Context, dir string, opts DelegateOptions) (*Result, error) {
	if opts.From == "" {
		opts.From = RoleTargets
	}
	if opts.Threshold == 0 {
		opts.Threshold = 1
	}
	switch {
	case opts.Role == "":
		return nil, &RepoError{Detail: "--role is required: the name of the new delegated role"}
	case len(opts.Keys) == 0:
		return nil, &RepoError{Detail: "--key is required: the URI of each key of the new role",
			HintText: "make a key first with rootkeeper key generate URI"}
	case opts.Bins != 0 && len(opts.Paths) > 0:
		return nil, &RepoError{Detail: "--bins and --paths do not go together: hashed bins divide every target of the delegating role by the hash of its path"}
	case opts.Bins == 0 && len(opts.Paths) == 0:
		return nil, &RepoError{Detail: "--paths is required: the target paths the role is trusted for, like --paths 'releases/*'",
			HintText: "or --bins N to spread every target over N hashed bins"}
	case opts.Threshold < 1 || opts.Threshold > len(opts.Keys):
		return nil, &RepoError{Detail: fmt.Sprintf("--threshold %d is impossible with %d key(s): use 1 to %d", opts.Threshold, len(opts.Keys), len(opts.Keys))}
	}
	if err := checkDelegateName(opts); err != nil {
		return nil, err
	}
	if lo, hi := LifetimeBounds(opts.Role); opts.Expires != 0 && (opts.Expires < lo || opts.Expires > hi) { // plan.go
		return nil, &RepoError{Detail: fmt.Sprintf("--expires %s: a delegated role's lifetime is %s to %s", opts.Expires, lo, hi)}
	}
	if err := checkURIs(opts.Keys...); err != nil { // engine.go: before any device
		return nil, err
	}
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		if _, err := targetsRole(repo, opts.From); err != nil {
			return fromError(dir, opts.From)
		}
		if err := repo.CheckDelegationDepth(opts.From); err != nil {
			return &RepoError{Dir: dir, Detail: err.Error(), HintText: "delegate from a role nearer targets (rootkeeper delegate list --repo " + dir + " shows each role's depth)"}
		}
		if _, ok := pol.Roles[opts.Role]; ok {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("%s already has an entry for %q", PolicyFile, opts.Role),
				HintText: "choose another name, or remove the old delegation first with rootkeeper delegate remove"}
		}
		records := loadRecords(dir)
		keys, err := s.openNewKeys(ctx, dir, pol, opts.Role, opts.Keys, nil, nil)
		if err != nil {
			return err
		}
		rk := roles.RoleKeys{Threshold: opts.Threshold}
		for _, k := range keys {
			rk.Keys = append(rk.Keys, k.TUF.Key())
		}
		lifetime := opts.Expires
		if lifetime == 0 {
			lifetime = pol.Role(policyRole(pol, opts.From)).Expires
		}
		now := s.now()
		if err := bumpRole(repo, pol, opts.From, now); err != nil {
			return err
		}
		var bins []string
		if opts.Bins != 0 {
			bins, err = repo.AddHashedBins(opts.From, opts.Role, opts.Bins, rk, now.Add(lifetime.D()))
		} else {
			err = repo.AddDelegation(opts.From, roles.Delegation{Name: opts.Role, Keys: rk.Keys, Threshold: opts.Threshold,
				Paths: opts.Paths, Terminating: opts.Terminating}, now.Add(lifetime.D()))
		}
		if err != nil {
			return &RepoError{Dir: dir, Detail: err.Error(), HintText: "rootkeeper delegate list --repo " + dir + " shows the delegations"}
		}
		pol.Roles[opts.Role] = RolePolicy{Expires: lifetime, Keys: slices.Clone(opts.Keys)}

		if len(bins) > TufJSBinsWarn {
			s.progress("note: tuf-js 5 clients parse the snapshot in time quadratic in its entries: with %d bins each tuf-js update takes a minute or more (16,384 bins: about 90 s measured, docs/performance.md); go-tuf and python-tuf are not affected", len(bins))
		}
		if err := s.confirm(delegateSummary(dir, opts, keys, bins)); err != nil {
			return err
		}
		ids := keyIDsOfOpened(keys)
		if len(bins) > 0 {
			if err := s.signBins(ctx, repo, bins, keys, opts.Threshold); err != nil {
				return err
			}
		} else if err := signUntil(ctx, s, repo.Delegated[opts.Role], opts.Role, opts.Keys, ids, opts.Threshold, records); err != nil {
			return err
		}
		if err := s.signTargetsRole(ctx, repo, pol, opts.From, records); err != nil {
			return err
		}
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		extra, err := s.keyRecords(dir, records, keys, opts.Role, now)
		if err != nil {
			return err
		}
		details := map[string]any{"role": opts.Role, "from": opts.From, "keys": ids, "threshold": opts.Threshold}
		if len(bins) > 0 {
			details["bins"] = len(bins)
		} else {
			details["paths"] = opts.Paths
			details["terminating"] = opts.Terminating
		}
		res, err = s.commit(&change{op: "delegate-add", dir: dir, repo: repo, policy: pol, now: now,
			changed: []string{opts.From, opts.Role, RoleSnapshot, RoleTimestamp}, extra: extra, details: details})
		if res != nil && len(bins) > 0 {
			foldBins(res, opts.Role, bins)
		}
		return err
	})
	return res, err
}

// foldBins reports hashed bins as one entry under their prefix.
func foldBins(res *Result, prefix string, bins []string) {
	if len(bins) == 0 {
		return
	}
	res.Versions[prefix] = res.Versions[bins[0]]
	res.Expires[prefix] = res.Expires[bins[0]]
	for _, b := range bins {
		delete(res.Versions, b)
		delete(res.Expires, b)
	}
}

func fromError(dir, from string) error {
	return &RepoError{Dir: dir, Detail: fmt.Sprintf("--from %q: no such targets role", from),
		HintText: "delegate from targets or from a delegated role; rootkeeper delegate list --repo " + dir + " shows them"}
}

// signBins signs every bin with keys, reporting progress now and then.
func (s *Session) signBins(ctx context.Context, repo *roles.Repo, bins []string, keys []*Key, threshold int) error {
	start := time.Now()
	for i, b := range bins {
		md := repo.Delegated[b]
		for _, k := range keys[:threshold] {
			if err := roles.Sign(md, k.TUF); err != nil {
				return fmt.Errorf("%s: %w", b, err)
			}
		}
		if n := i + 1; n%1024 == 0 || n == len(bins) {
			s.progress("signed %d of %d bins (%s)", n, len(bins), time.Since(start).Round(time.Second))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

func delegateSummary(dir string, opts DelegateOptions, keys []*Key, bins []string) string {
	var w strings.Builder
	if len(bins) > 0 {
		fmt.Fprintf(&w, "Delegate every target of %s in %s to %d hashed bins %s … %s\n", opts.From, dir, len(bins), bins[0], bins[len(bins)-1])
	} else {
		fmt.Fprintf(&w, "Delegate %s from %s in %s to role %s (terminating %t)\n", strings.Join(opts.Paths, ", "), opts.From, dir, opts.Role, opts.Terminating)
	}
	fmt.Fprintf(&w, "  %d of %d keys:\n", opts.Threshold, len(keys))
	for _, k := range keys {
		alg, _ := hsm.AlgorithmOf(k.HW.Public())
		fmt.Fprintf(&w, "    %s  %-10s %s\n      %s\n", short(k.ID()), alg, objectOf(k.URI), k.Evidence.Summary())
	}
	fmt.Fprintf(&w, "Then %s is re-signed with its own keys and snapshot and timestamp are published.", opts.From)
	return w.String()
}

// DelegateRemove removes the delegation to role (or hashed bins with that
// prefix) and every role only it delegated to: the delegating role gets a
// new version signed by its keys, snapshot and timestamp are published,
// and clients stop trusting the role's targets at their next update.
// rootkeeper.yaml forgets the removed roles.
func (s *Session) DelegateRemove(ctx context.Context, dir, role string) (*Result, error) {
	if role == "" {
		return nil, &RepoError{Detail: "--role is required: the delegated role to remove"}
	}
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		var from string
		for _, d := range repo.Delegations() {
			if d.Name == role {
				from = d.Delegator
				break
			}
		}
		if from == "" {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("no role delegates to %q", role),
				HintText: "rootkeeper delegate list --repo " + dir + " shows the delegations"}
		}
		now := s.now()
		trustedBefore := repo.KeyIDs()
		if err := bumpRole(repo, pol, from, now); err != nil {
			return err
		}
		counts := map[string]int{}
		for name, md := range repo.Delegated {
			counts[name] = len(md.Signed.Targets)
		}
		_, removed, err := repo.RemoveDelegation(role)
		if err != nil {
			return err
		}
		lost := 0
		for _, r := range removed {
			lost += counts[r]
		}
		var summary strings.Builder
		fmt.Fprintf(&summary, "Remove the delegation from %s to %s in %s\n", from, role, dir)
		for _, r := range removed {
			delete(pol.Roles, r)
		}
		delete(pol.Roles, role)
		fmt.Fprintf(&summary, "  roles no longer trusted: %s\n", abbreviate(removed))
		fmt.Fprintf(&summary, "  targets clients stop accepting: %d\n", lost)
		fmt.Fprintf(&summary, "Then %s is re-signed with its keys and snapshot and timestamp are published.", from)
		if err := s.confirm(summary.String()); err != nil {
			return err
		}
		records := loadRecords(dir)
		if err := s.signTargetsRole(ctx, repo, pol, from, records); err != nil {
			return err
		}
		if err := s.publish(ctx, repo, pol, now); err != nil {
			return err
		}
		details := map[string]any{"role": role, "from": from, "removed_roles": len(removed), "targets_dropped": lost}
		if len(removed) <= 32 {
			details["removed"] = removed
		}
		retired, retiredIDs := retiredRecords(dir, repo, trustedBefore)
		if len(retiredIDs) > 0 {
			details["retired_key_records"] = retiredIDs
		}
		res, err = s.commit(&change{op: "delegate-remove", dir: dir, repo: repo, policy: pol, now: now,
			changed: []string{from, RoleSnapshot, RoleTimestamp}, extra: retired, remove: retiredPaths(retiredIDs), details: details})
		return err
	})
	return res, err
}

// abbreviate lists names, or the first and last few of a long list.
func abbreviate(names []string) string {
	if len(names) <= 8 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, … %s (%d roles)", strings.Join(names[:3], ", "), names[len(names)-1], len(names))
}

// DelegationView is a delegation and the key URIs that sign it.
type DelegationView struct {
	roles.DelegationInfo
	URIs []string `json:"uris,omitempty"`
}

// DelegationList is every delegation of a repository.
type DelegationList struct {
	Repository  string           `json:"repository"`
	Delegations []DelegationView `json:"delegations"`
}

// ListDelegations reads the delegations of the repository in dir: from
// targets and, nested, from delegated roles, hashed bins as one entry.
func ListDelegations(dir string) (*DelegationList, error) {
	repo, pol, err := loadReadOnly(dir)
	if err != nil {
		return nil, err
	}
	out := &DelegationList{Repository: dir, Delegations: []DelegationView{}}
	for _, d := range repo.Delegations() {
		v := DelegationView{DelegationInfo: d}
		if pol != nil {
			for _, u := range pol.Roles[d.Name].Keys {
				v.URIs = append(v.URIs, hsm.Redact(u)) // a pin-source that might be a PIN is not shown
			}
		}
		out.Delegations = append(out.Delegations, v)
	}
	return out, nil
}

// BinFor returns the hashed bin of the bins named prefix that clients
// look targetPath up in: the role to add the target to.
func BinFor(dir, prefix, targetPath string) (string, error) {
	repo, _, err := loadReadOnly(dir)
	if err != nil {
		return "", err
	}
	bin, err := repo.BinFor(prefix, targetPath)
	if err != nil {
		return "", &RepoError{Dir: dir, Detail: err.Error()}
	}
	return bin, nil
}

// loadReadOnly loads a repository's metadata and policy (nil if it has
// none) without locking it.
func loadReadOnly(dir string) (*roles.Repo, *Policy, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return nil, nil, &RepoError{Dir: dir, Detail: "cannot load metadata", Err: err,
			HintText: "run rootkeeper verify --repo " + dir + " to see what is wrong"}
	}
	pol, _ := LoadPolicy(dir)
	return repo, pol, nil
}
