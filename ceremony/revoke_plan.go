package ceremony

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/roles"
)

// Unvouched is what only the revoked key vouched for in one targets
// role: the role's published version is valid only through the revoked
// key's signature (its other keys did not sign it, or too few did), so
// nothing in it — targets and delegations, and through a delegation
// every role below it — was vouched for by any other key.
type Unvouched struct {
	// Role is the targets role (or hashed bin) and Version its published
	// version, which Signers signed (the revoked key among them).
	Role    string   `json:"role"`
	Version int64    `json:"version"`
	Signers []string `json:"signed_by"`
	// Targets is how many targets the version lists; TargetsKept says
	// whether they are kept (--resign-targets, --keep-unvouched).
	Targets     int  `json:"targets"`
	TargetsKept bool `json:"targets_kept"`
	// Delegations are the delegations the version makes.
	Delegations []UnvouchedDelegation `json:"delegations,omitempty"`
}

// UnvouchedDelegation is a delegation only the revoked key vouched for.
type UnvouchedDelegation struct {
	// Role is the delegated role, or the name prefix of hashed bins.
	Role      string   `json:"role"`
	Paths     []string `json:"paths,omitempty"`
	Bins      int      `json:"bins,omitempty"`
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
	// Below lists the delegated roles under it that go (or stay) with it:
	// those clients reach only through it.
	Below []string `json:"below,omitempty"`
	// Targets counts the targets of the role and of those below it.
	Targets int `json:"targets"`
	// Kept says the officer kept it (--keep-delegation, --keep-unvouched):
	// it is re-signed by the delegating role's remaining keys.
	Kept bool `json:"kept"`
}

// revokePlan is what a revocation will change, decided from the
// repository and the officer's options alone: no device is opened.
type revokePlan struct {
	id         string
	trusts     []roles.Trust // roles that trust the key, in Trusting order
	byRole     map[string]roles.Trust
	stillValid map[string]bool // role or bin → its version is valid without the key
	unvouched  []Unvouched
	cut        map[string]bool // delegator+"\x00"+role: delegations removed as unvouched
	gone       map[string]bool // delegated roles clients no longer reach
	needRoot   bool
}

func edge(from, to string) string { return from + "\x00" + to }

// isGone reports whether a trusting role goes with a removed delegation.
func (p *revokePlan) isGone(t roles.Trust) bool {
	if len(t.Bins) > 0 {
		return p.gone[t.Bins[0]]
	}
	return p.gone[t.Role]
}

// planRevoke decides what revoking key id changes. A role's metadata is
// judged by the signatures on its published version, as a client judges
// it: if the version has fewer valid signatures than the role's threshold
// without the revoked key's, only that key vouched for everything in it.
// Its targets are then dropped (kept with ResignTargets or KeepUnvouched)
// and its delegations removed — with every role below them that clients
// reach only through them — unless KeepDelegations names them or
// KeepUnvouched is set. Roles below a removed delegation are not re-keyed.
func planRevoke(dir string, repo *roles.Repo, id string, opts RevokeOptions) (*revokePlan, error) {
	p := &revokePlan{id: id, trusts: repo.Trusting(id), byRole: map[string]roles.Trust{}, stillValid: map[string]bool{}}
	if len(p.trusts) == 0 {
		return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("no role trusts key %s: there is nothing to revoke", short(id)),
			HintText: "rootkeeper status --repo " + dir + " --key " + short(id) + " shows what a key can sign"}
	}
	for _, t := range p.trusts {
		p.byRole[t.Role] = t
		p.needRoot = p.needRoot || t.Delegator == RoleRoot
	}
	if err := p.checkAddDrop(dir, opts); err != nil {
		return nil, err
	}
	if err := p.judge(repo, opts); err != nil {
		return nil, err
	}
	if err := p.checkKeep(dir, opts); err != nil {
		return nil, err
	}
	for role := range opts.Add {
		if t := p.byRole[role]; p.isGone(t) && !slices.Contains(opts.Drop, role) {
			return nil, &RepoError{Dir: dir, Detail: fmt.Sprintf("--add %s=…: %s is no longer trusted after the revocation: it is below a delegation only key %s vouched for", role, role, short(id)),
				HintText: "keep that delegation with --keep-delegation NAME (the summary names it), or leave out --add " + role}
		}
	}
	need := &KeysNeededError{Dir: dir, KeyID: id}
	for _, t := range p.trusts {
		if slices.Contains(opts.Drop, t.Role) || p.isGone(t) {
			continue
		}
		if left := len(t.KeyIDs) - 1 + len(opts.Add[t.Role]); left < t.Threshold {
			need.Roles = append(need.Roles, KeysNeeded{Role: t.Role, Left: left, Threshold: t.Threshold, Delegated: t.Delegator != RoleRoot})
		}
	}
	if len(need.Roles) > 0 {
		return nil, need
	}
	return p, nil
}

func (p *revokePlan) checkAddDrop(dir string, opts RevokeOptions) error {
	for role := range opts.Add {
		if _, ok := p.byRole[role]; !ok {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("--add %s=…: %s does not trust key %s", role, role, short(p.id)),
				HintText: "add keys only to roles that trusted the revoked key: " + trustNames(p.trusts)}
		}
	}
	for _, role := range opts.Drop {
		if t, ok := p.byRole[role]; !ok || t.Delegator == RoleRoot {
			return &RepoError{Dir: dir, Detail: fmt.Sprintf("--drop %s: only a delegated role that trusts key %s can be dropped", role, short(p.id)),
				HintText: "roles that trust the key: " + trustNames(p.trusts)}
		}
	}
	return nil
}

// metaNames lists the metadata of a trusting role: its bins, or itself
// when it is a targets role.
func metaNames(repo *roles.Repo, t roles.Trust) []string {
	names := []string{t.Role}
	if len(t.Bins) > 0 {
		names = t.Bins
	}
	return slices.DeleteFunc(names, func(n string) bool {
		_, ok := repo.Delegated[n]
		return !ok && n != RoleTargets
	})
}

// judge decides, on the metadata as published, which roles stay valid
// without the key and what only the key vouched for.
func (p *revokePlan) judge(repo *roles.Repo, opts RevokeOptions) error {
	p.cut = map[string]bool{}
	for _, t := range p.trusts {
		for _, name := range metaNames(repo, t) {
			signers, err := repo.ValidSigners(name)
			if err != nil {
				return err
			}
			others := slices.DeleteFunc(slices.Clone(signers), func(s string) bool { return s == p.id })
			p.stillValid[name] = len(others) >= t.Threshold
			if p.stillValid[name] || slices.Contains(opts.Drop, t.Role) {
				continue
			}
			md, _ := targetsRole(repo, name)
			u := Unvouched{Role: name, Version: md.Signed.Version, Signers: signers, Targets: len(md.Signed.Targets),
				TargetsKept: opts.ResignTargets || opts.KeepUnvouched}
			for _, d := range delegationsOf(md) {
				d.Kept = opts.KeepUnvouched || slices.Contains(opts.KeepDelegations, d.Role)
				if !d.Kept {
					p.cut[edge(name, d.Role)] = true
				}
				u.Delegations = append(u.Delegations, d)
			}
			p.unvouched = append(p.unvouched, u)
		}
	}
	for _, name := range opts.Drop {
		p.cut[edge(p.byRole[name].Delegator, name)] = true
	}
	p.gone = unreachable(repo, p.cut)
	for n := range unreachable(repo, nil) { // already out of reach: not this revocation's doing
		delete(p.gone, n)
	}
	// What goes with a removed delegation is not judged on its own.
	p.unvouched = slices.DeleteFunc(p.unvouched, func(u Unvouched) bool { return p.gone[u.Role] })
	for i := range p.unvouched {
		for j := range p.unvouched[i].Delegations {
			d := &p.unvouched[i].Delegations[j]
			for _, n := range descendants(repo, d.start(repo)) {
				if p.gone[n] || d.Kept {
					d.Below = append(d.Below, n)
				}
			}
			d.Below = slices.DeleteFunc(d.Below, func(n string) bool { return n == d.Role || (d.Bins > 0 && strings.HasPrefix(n, d.Role+"-")) })
			for _, n := range append(d.start(repo), d.Below...) {
				if md := repo.Delegated[n]; md != nil {
					d.Targets += len(md.Signed.Targets)
				}
			}
		}
	}
	return nil
}

// checkKeep refuses --keep-delegation for a delegation that is not one
// only the revoked key vouched for.
func (p *revokePlan) checkKeep(dir string, opts RevokeOptions) error {
	var names []string
	for _, u := range p.unvouched {
		for _, d := range u.Delegations {
			names = append(names, d.Role)
		}
	}
	for _, k := range opts.KeepDelegations {
		if slices.Contains(names, k) {
			continue
		}
		hint := "no delegation depends on the revoked key alone: leave out --keep-delegation"
		if len(names) > 0 {
			hint = "delegations only the revoked key vouched for: " + strings.Join(names, ", ")
		}
		return &RepoError{Dir: dir, Detail: fmt.Sprintf("--keep-delegation %s: %s is not a delegation that only key %s vouched for", k, k, short(p.id)), HintText: hint}
	}
	return nil
}

// delegationsOf describes the delegations md makes.
func delegationsOf(md *metadata.Metadata[metadata.TargetsType]) []UnvouchedDelegation {
	dl := md.Signed.Delegations
	if dl == nil {
		return nil
	}
	var out []UnvouchedDelegation
	for _, d := range dl.Roles {
		paths := d.Paths
		if len(paths) == 0 {
			paths = d.PathHashPrefixes
		}
		out = append(out, UnvouchedDelegation{Role: d.Name, Paths: slices.Clone(paths), KeyIDs: slices.Clone(d.KeyIDs), Threshold: d.Threshold})
	}
	if sr := dl.SuccinctRoles; sr != nil {
		out = append(out, UnvouchedDelegation{Role: sr.NamePrefix, Bins: len(sr.GetRoles()), KeyIDs: slices.Clone(sr.KeyIDs), Threshold: sr.Threshold})
	}
	return out
}

// start lists the roles the delegation itself names: the role, or every
// bin.
func (d UnvouchedDelegation) start(repo *roles.Repo) []string {
	if d.Bins == 0 {
		return []string{d.Role}
	}
	var out []string
	for n := range repo.Delegated {
		if strings.HasPrefix(n, d.Role+"-") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// children lists the roles md delegates to.
func children(md *metadata.Metadata[metadata.TargetsType]) []string {
	if md == nil || md.Signed.Delegations == nil {
		return nil
	}
	dl := md.Signed.Delegations
	var out []string
	for _, d := range dl.Roles {
		out = append(out, d.Name)
	}
	if dl.SuccinctRoles != nil {
		for _, n := range dl.SuccinctRoles.GetRoles() {
			out = append(out, n)
		}
	}
	return out
}

// descendants lists every delegated role below from (from included), in
// name order.
func descendants(repo *roles.Repo, from []string) []string {
	seen := map[string]bool{}
	queue := slices.Clone(from)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n] || repo.Delegated[n] == nil {
			continue
		}
		seen[n] = true
		queue = append(queue, children(repo.Delegated[n])...)
	}
	return slices.Sorted(maps.Keys(seen))
}

// unreachable returns the delegated roles clients no longer reach from
// targets once the delegations in cut are removed.
func unreachable(repo *roles.Repo, cut map[string]bool) map[string]bool {
	seen := map[string]bool{}
	type node struct {
		name string
		md   *metadata.Metadata[metadata.TargetsType]
	}
	queue := []node{{RoleTargets, repo.Targets}}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, c := range children(n.md) {
			prefixCut := false
			if dl := n.md.Signed.Delegations; dl.SuccinctRoles != nil && strings.HasPrefix(c, dl.SuccinctRoles.NamePrefix+"-") {
				prefixCut = cut[edge(n.name, dl.SuccinctRoles.NamePrefix)]
			}
			if cut[edge(n.name, c)] || prefixCut || seen[c] || repo.Delegated[c] == nil {
				continue
			}
			seen[c] = true
			queue = append(queue, node{c, repo.Delegated[c]})
		}
	}
	gone := map[string]bool{}
	for n := range repo.Delegated {
		if !seen[n] {
			gone[n] = true
		}
	}
	return gone
}
