package ceremony

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// ResignBundle is resign --out (s.Bundle set): what is due is planned as
// resign plans it, but every due offline role — root, targets and
// delegated roles — goes into a signing bundle, whoever can sign it:
// the keys plugged in here sign what they can (none is fine), the officers
// sign their copies elsewhere (rootkeeper sign), and apply makes snapshot
// and timestamp with the online keys. The typical case is the yearly
// re-signing of root by officers in other places.
func (s *Session) ResignBundle(ctx context.Context, dir string, opts ResignOptions) (*Result, error) {
	switch {
	case s.Bundle == nil:
		return nil, fmt.Errorf("ResignBundle needs Session.Bundle (--out)")
	case opts.DryRun || !opts.At.IsZero():
		return nil, &ResignError{Detail: "--out writes a signing bundle: it does not go with --dry-run or --at",
			HintText: "rehearse with rootkeeper resign --dry-run, then run resign --out without it"}
	}
	var res *Result
	err := s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
		c, err := resignBundleChange(dir, repo, pol, s.now().UTC().Truncate(time.Second), opts, func(format string, a ...any) { s.progress(format, a...) })
		if err != nil {
			return err
		}
		res, err = s.makeBundle(ctx, c) // bundlemake.go
		return err
	})
	return res, err
}

// resignBundleChange plans the re-signing of every due offline role,
// snapshot and timestamp following (made at apply).
func resignBundleChange(dir string, repo *roles.Repo, pol *Policy, at time.Time, opts ResignOptions, say func(string, ...any)) (*Change, error) {
	due, err := planResign(repo, pol, at, opts)
	if err != nil {
		return nil, err
	}
	r := &resignRun{dir: dir, repo: repo, pol: pol, at: at, opts: opts, res: &ResignResult{Repository: dir, At: at, Due: due}, due: map[string]RoleDue{},
		ready: map[string][]*Key{}, waits: map[string]*Wait{}, say: say}
	r.announce(due)
	offline := slices.Clone(r.targets)
	if _, ok := r.due[RoleRoot]; ok {
		offline = append(offline, RoleRoot)
	}
	if len(offline) == 0 {
		return nil, &ResignError{Detail: fmt.Sprintf("%s: no offline role (root, targets, a delegated role) is due: there is nothing for officers to sign", dir),
			HintText: "snapshot and timestamp are re-signed by the online keys: run rootkeeper resign without --out; or name a role with --role"}
	}
	for _, role := range append(offline, RoleSnapshot, RoleTimestamp) {
		r.ready[role] = []*Key{} // signed through the bundle, or at apply
	}
	return r.change()
}
