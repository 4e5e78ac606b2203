package ceremony

import (
	"context"
	"fmt"
	"os"
	"strings"

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
	opts, err := checkDelegateOptions(opts)
	if err != nil {
		return nil, err
	}
	var bins []string
	res, err := s.change(ctx, dir, func(st *state) (*Change, error) {
		if err := checkDelegateFrom(st, opts); err != nil {
			return nil, err
		}
		keys, err := s.openNewKeys(ctx, dir, st.pol, opts.Role, opts.Keys, nil, nil)
		if err != nil {
			return nil, err
		}
		c, err := planDelegate(st, opts, keys)
		if c != nil {
			bins = c.Steps[0].Bins
		}
		if len(bins) > TufJSBinsWarn {
			s.progress("note: tuf-js 5 clients parse the snapshot in time quadratic in its entries: with %d bins each tuf-js update takes a minute or more (16,384 bins: about 90 s measured, docs/performance.md); go-tuf and python-tuf are not affected", len(bins))
		}
		return c, err
	})
	if res != nil && len(bins) > 0 {
		foldBins(res, opts.Role, bins)
	}
	return res, err
}

// checkDelegateOptions checks a delegation's options before any
// repository or device, and fills in the defaults.
func checkDelegateOptions(opts DelegateOptions) (DelegateOptions, error) {
	if opts.From == "" {
		opts.From = RoleTargets
	}
	if opts.Threshold == 0 {
		opts.Threshold = 1
	}
	switch {
	case opts.Role == "":
		return opts, &RepoError{Detail: "--role is required: the name of the new delegated role"}
	case len(opts.Keys) == 0:
		return opts, &RepoError{Detail: "--key is required: the URI of each key of the new role",
			HintText: "make a key first with rootkeeper key generate URI"}
	case opts.Bins != 0 && len(opts.Paths) > 0:
		return opts, &RepoError{Detail: "--bins and --paths do not go together: hashed bins divide every target of the delegating role by the hash of its path"}
	case opts.Bins == 0 && len(opts.Paths) == 0:
		return opts, &RepoError{Detail: "--paths is required: the target paths the role is trusted for, like --paths 'releases/*'",
			HintText: "or --bins N to spread every target over N hashed bins"}
	case opts.Threshold < 1 || opts.Threshold > len(opts.Keys):
		return opts, &RepoError{Detail: fmt.Sprintf("--threshold %d is impossible with %d key(s): use 1 to %d", opts.Threshold, len(opts.Keys), len(opts.Keys))}
	}
	if err := checkDelegateName(opts); err != nil {
		return opts, err
	}
	if lo, hi := LifetimeBounds(opts.Role); opts.Expires != 0 && (opts.Expires < lo || opts.Expires > hi) { // plan.go
		return opts, &RepoError{Detail: fmt.Sprintf("--expires %s: a delegated role's lifetime is %s to %s", opts.Expires, lo, hi)}
	}
	return opts, checkURIs(deviceURIs(opts.Keys)...) // engine.go: before any device; a key export (file:PATH) is read when the keys are opened
}

// checkDelegateFrom checks the delegating role and the new role's name
// against the repository, before any device.
func checkDelegateFrom(st *state, opts DelegateOptions) error {
	if _, err := targetsRole(st.repo, opts.From); err != nil {
		return fromError(st.dir, opts.From)
	}
	if err := st.repo.CheckDelegationDepth(opts.From); err != nil {
		return &RepoError{Dir: st.dir, Detail: err.Error(), HintText: "delegate from a role nearer targets (rootkeeper delegate list --repo " + st.dir + " shows each role's depth)"}
	}
	if _, ok := st.pol.Roles[opts.Role]; ok {
		return &RepoError{Dir: st.dir, Detail: fmt.Sprintf("%s already has an entry for %q", PolicyFile, opts.Role),
			HintText: "choose another name, or remove the old delegation first with rootkeeper delegate remove"}
	}
	return nil
}

// planDelegate plans the delegation to keys: the new role (or its bins)
// signed by its keys, From's new version by From's, then snapshot and
// timestamp.
func planDelegate(st *state, opts DelegateOptions, keys []*Key) (*Change, error) {
	c := st.newChange("delegate-add")
	rk := roles.RoleKeys{Threshold: opts.Threshold}
	for _, k := range keys {
		rk.Keys = append(rk.Keys, k.TUF.Key())
	}
	lifetime := opts.Expires
	if lifetime == 0 {
		lifetime = c.Policy.Role(policyRole(c.Policy, opts.From)).Expires
	}
	if err := bumpRole(c.Repo, c.Policy, opts.From, c.At); err != nil {
		return nil, err
	}
	var bins []string
	var err error
	if opts.Bins != 0 {
		bins, err = c.Repo.AddHashedBins(opts.From, opts.Role, opts.Bins, rk, c.At.Add(lifetime.D()))
	} else {
		err = c.Repo.AddDelegation(opts.From, roles.Delegation{Name: opts.Role, Keys: rk.Keys, Threshold: opts.Threshold,
			Paths: opts.Paths, Terminating: opts.Terminating}, c.At.Add(lifetime.D()))
	}
	if err != nil {
		return nil, &RepoError{Dir: st.dir, Detail: err.Error(), HintText: "rootkeeper delegate list --repo " + st.dir + " shows the delegations"}
	}
	uris := make([]string, len(keys))
	for i, k := range keys {
		uris[i] = k.URI // an exported key: its URI on the officer's machine
	}
	c.Policy.Roles[opts.Role] = RolePolicy{Expires: lifetime, Keys: uris}
	first, err := c.roleStep(opts.Role)
	if len(bins) > 0 {
		first, err = c.roleStep(bins[0])
		first.Role, first.Bins, first.All = opts.Role, bins, false
	}
	if err != nil {
		return nil, err
	}
	c.Steps = []*Step{first}
	if err := c.stepsFor(opts.From); err != nil {
		return nil, err
	}
	c.skipExportedKeys(keys) // they sign through the bundle (--out)
	if c.Extra, err = keyRecordFiles(st.records, keys, opts.Role, c.At); err != nil {
		return nil, err
	}
	c.Summary.Text = delegateSummary(st.dir, opts, keys, bins)
	c.Changed = []string{opts.From, opts.Role, RoleSnapshot, RoleTimestamp}
	c.Details = delegateDetails(opts, keys, bins)
	return c, nil
}

func delegateDetails(opts DelegateOptions, keys []*Key, bins []string) map[string]any {
	details := map[string]any{"role": opts.Role, "from": opts.From, "keys": keyIDsOfOpened(keys), "threshold": opts.Threshold}
	if len(bins) > 0 {
		details["bins"] = len(bins)
	} else {
		details["paths"] = opts.Paths
		details["terminating"] = opts.Terminating
	}
	return details
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
	return s.change(ctx, dir, func(st *state) (*Change, error) { return planDelegateRemove(st, role) })
}

// planDelegateRemove plans removing the delegation to role: the
// delegating role's new version, then snapshot and timestamp.
func planDelegateRemove(st *state, role string) (*Change, error) {
	var from string
	for _, d := range st.repo.Delegations() {
		if d.Name == role {
			from = d.Delegator
			break
		}
	}
	if from == "" {
		return nil, &RepoError{Dir: st.dir, Detail: fmt.Sprintf("no role delegates to %q", role),
			HintText: "rootkeeper delegate list --repo " + st.dir + " shows the delegations"}
	}
	c := st.newChange("delegate-remove")
	trustedBefore := c.Repo.KeyIDs()
	if err := bumpRole(c.Repo, c.Policy, from, c.At); err != nil {
		return nil, err
	}
	counts := targetCounts(c.Repo)
	_, removed, err := c.Repo.RemoveDelegation(role)
	if err != nil {
		return nil, err
	}
	lost := 0
	for _, r := range removed {
		lost += counts[r]
		delete(c.Policy.Roles, r)
	}
	delete(c.Policy.Roles, role)
	c.Summary.Text = fmt.Sprintf("Remove the delegation from %s to %s in %s\n  roles no longer trusted: %s\n  targets clients stop accepting: %d\nThen %s is re-signed with its keys and snapshot and timestamp are published.",
		from, role, st.dir, abbreviate(removed), lost, from)
	c.Details = map[string]any{"role": role, "from": from, "removed_roles": len(removed), "targets_dropped": lost}
	if len(removed) <= 32 {
		c.Details["removed"] = removed
	}
	c.retire(trustedBefore)
	c.Changed = []string{from, RoleSnapshot, RoleTimestamp}
	return c, c.stepsFor(from)
}

// targetCounts counts the targets of each delegated role.
func targetCounts(repo *roles.Repo) map[string]int {
	counts := map[string]int{}
	for name, md := range repo.Delegated {
		counts[name] = len(md.Signed.Targets)
	}
	return counts
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
