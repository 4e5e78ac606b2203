package ceremony

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// ResignOptions say what Resign re-signs.
type ResignOptions struct {
	// Roles are re-signed whether or not they are inside their window.
	Roles []string
	// Within, when not zero, widens every role's re-signing window to at
	// least Within: a role is re-signed when it expires less than Within
	// after At. It must be shorter than the lifetime of root and of every
	// targets role (they would be re-signed on every run).
	Within time.Duration
	// DryRun reports what would be re-signed and by which keys; it opens
	// no device and writes nothing.
	DryRun bool
	// At is the time a dry run plans as of (a rehearsal: what will be due
	// then); zero means the session's clock. Only with DryRun: a run that
	// writes uses the session's clock, always (ErrAtWrites).
	At time.Time
}

// Outcome is what a re-signing run did to one repository.
type Outcome string

// Outcomes of Resign, from best to worst.
const (
	OutcomeNothingDue Outcome = "nothing-due" // no role inside its window
	OutcomeResigned   Outcome = "resigned"    // every due role re-signed
	OutcomeDryRun     Outcome = "dry-run"     // what would be re-signed (DryRun)
	OutcomePartial    Outcome = "partial"     // some due roles re-signed, others wait for keys
	OutcomeWaiting    Outcome = "waiting"     // due roles wait for keys; nothing written
	OutcomeFailed     Outcome = "failed"      // an error: nothing written
	OutcomeNotStarted Outcome = "not-started" // a batch stopped before this repository
)

// RoleDue is a role Resign re-signs (or would), and why.
type RoleDue struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
	Left    Seconds   `json:"time_left_seconds"` // negative once expired
	Window  Seconds   `json:"window_seconds"`
	Reason  string    `json:"reason"` // "inside its window", "expired", "named", "follows targets", …
	// Bins is the name prefix of the hashed bins the role is one of.
	Bins string `json:"bins,omitempty"`
	// Threshold and Keys say which signatures the role needs: Threshold of
	// the key URIs in the policy.
	Threshold int      `json:"threshold"`
	Keys      []string `json:"keys"`
}

// KeyWait is a key that could not be used, and why.
type KeyWait struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
	Hint   string `json:"hint,omitempty"`
}

// Wait is a due role that could not be re-signed: too few of its keys
// could be used without an officer.
type Wait struct {
	Role    string    `json:"role"`
	Need    int       `json:"need"`
	Have    int       `json:"have"`
	Missing []KeyWait `json:"missing_keys,omitempty"`
	Detail  string    `json:"detail"`
}

// ResignResult is what Resign did to one repository.
type ResignResult struct {
	Repository string            `json:"repository"`
	At         time.Time         `json:"at"`
	Outcome    Outcome           `json:"outcome"`
	Due        []RoleDue         `json:"due,omitempty"`
	Resigned   []string          `json:"resigned,omitempty"` // roles given a new version, in signing order
	Versions   map[string]int64  `json:"versions,omitempty"`
	Expires    map[string]string `json:"expires,omitempty"`
	Waiting    []Wait            `json:"waiting,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
	Error      string            `json:"error,omitempty"`
	Hint       string            `json:"hint,omitempty"`
}

// SignError is a device that failed while signing (as opposed to a key
// that could not be opened, which makes its role wait). A batch stops on
// it: the token probably went away.
type SignError struct {
	Role string
	Key  string
	Err  error
}

func (e *SignError) Error() string {
	return fmt.Sprintf("signing %s with %s failed: %v", e.Role, e.Key, e.Err)
}

// Unwrap returns the device's error.
func (e *SignError) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *SignError) Hint() string {
	if h := hsm.HintOf(e.Err); h != "" {
		return h + "; repositories already re-signed are complete, run again to continue"
	}
	return "check the device and run again: repositories already re-signed are complete, the rest is untouched"
}

// resignState is shared by the repositories of one run: keys that could
// not be opened are not tried again (no PIN prompt per repository).
type resignState struct {
	mu          sync.Mutex
	unavailable map[string]error
	quiet       bool // no per-repository progress (batches report their own)
}

func (st *resignState) open(ctx context.Context, s *Session, uri string) (*Key, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	obj := objectOf(uri)
	if err, ok := st.unavailable[obj]; ok {
		return nil, err
	}
	k, err := s.Open(ctx, uri)
	if err != nil && ctx.Err() == nil {
		if st.unavailable == nil {
			st.unavailable = map[string]error{}
		}
		st.unavailable[obj] = err
	}
	return k, err
}

// Resign re-signs every role of the repository in dir that is inside its
// re-signing window (or named in opts.Roles, or expired): each gets a new
// version expiring after its lifetime from the policy, signed by its keys
// from the policy; snapshot and timestamp follow a changed targets role.
// A new root is signed by a threshold of the root keys (they are the keys
// of the previous root too) and, like any root change, must pass the
// preflight: both thresholds, the root chain, every expiry.
//
// Keys that cannot be used without an officer (no PIN source and no
// terminal, token not present) make their roles wait: the result says
// which keys each role waits for, and the roles that could be signed are
// written. The change is all or nothing even across a crash: it goes
// through a journal that the next run on the repository completes.
func (s *Session) Resign(ctx context.Context, dir string, opts ResignOptions) (*ResignResult, error) {
	return s.resign(ctx, dir, opts, &resignState{})
}

func (s *Session) resign(ctx context.Context, dir string, opts ResignOptions, st *resignState) (*ResignResult, error) {
	at := opts.At
	if at.IsZero() {
		at = s.now()
	}
	at = at.UTC().Truncate(time.Second)
	res := &ResignResult{Repository: dir, At: at}
	var err error
	switch {
	case !opts.At.IsZero() && !opts.DryRun:
		err = ErrAtWrites
	case opts.DryRun:
		err = readLocked(dir, func(repo *roles.Repo, pol *Policy) error {
			if pendingJournal(dir) {
				res.Notes = append(res.Notes, "an interrupted change is pending: the next run completes it before anything else")
			}
			due, err := planResign(repo, pol, at, opts)
			if err != nil {
				return err
			}
			res.Due = withFollowers(repo, pol, at, due)
			res.Outcome = OutcomeDryRun
			if len(due) == 0 {
				res.Outcome = OutcomeNothingDue
			}
			return nil
		})
	default:
		err = s.withLock(dir, func(repo *roles.Repo, pol *Policy) error {
			return s.resignLocked(ctx, dir, repo, pol, at, opts, st, res)
		})
	}
	if err != nil {
		res.Outcome = OutcomeFailed
		res.Error = err.Error()
		res.Hint = hsm.HintOf(err)
		return res, err
	}
	return res, nil
}

// topRoles lists the repository's roles in signing order: root, targets,
// delegated roles by name, snapshot, timestamp.
func topRoles(repo *roles.Repo) []string {
	out := []string{RoleRoot, RoleTargets}
	var del []string
	for name := range repo.Delegated {
		del = append(del, name)
	}
	sort.Strings(del)
	return append(append(out, del...), RoleSnapshot, RoleTimestamp)
}

func roleMeta(repo *roles.Repo, role string) (version int64, expires time.Time, ok bool) {
	switch role {
	case RoleRoot:
		r := repo.Root()
		return r.Signed.Version, r.Signed.Expires, true
	case RoleTargets:
		return repo.Targets.Signed.Version, repo.Targets.Signed.Expires, true
	case RoleSnapshot:
		return repo.Snapshot.Signed.Version, repo.Snapshot.Signed.Expires, true
	case RoleTimestamp:
		return repo.Timestamp.Signed.Version, repo.Timestamp.Signed.Expires, true
	}
	if md, found := repo.Delegated[role]; found {
		return md.Signed.Version, md.Signed.Expires, true
	}
	return 0, time.Time{}, false
}

// ErrAtWrites refuses a time other than the clock for a run that writes.
var ErrAtWrites = &ResignError{
	Detail:   "--at is only for what only reads (status, calendar, verify, resign --dry-run): writes use the real clock, always",
	HintText: "rehearse with rootkeeper resign --dry-run --at TIME; to re-sign, run the same command without --at",
}

// ResignError is a re-signing request that cannot be met as asked.
type ResignError struct {
	Detail, HintText string
}

func (e *ResignError) Error() string { return e.Detail }

// Hint says what to do.
func (e *ResignError) Hint() string { return e.HintText }

// planResign lists the roles due at at, in signing order.
func planResign(repo *roles.Repo, pol *Policy, at time.Time, opts ResignOptions) ([]RoleDue, error) {
	all := topRoles(repo)
	named := map[string]bool{}
	for _, r := range opts.Roles {
		if _, _, ok := roleMeta(repo, r); !ok {
			return nil, &ResignError{Detail: fmt.Sprintf("no role %q in this repository (roles: %s)", r, strings.Join(all, ", ")),
				HintText: "name a role that rootkeeper status lists, or leave out --role to re-sign what is due"}
		}
		named[r] = true
	}
	if opts.Within > 0 {
		for _, r := range all {
			if r == RoleSnapshot || r == RoleTimestamp {
				continue // online roles: re-signed on every run then, which is harmless
			}
			if life := pol.Role(policyRole(pol, r)).Expires.D(); opts.Within >= life {
				return nil, &ResignError{
					Detail:   fmt.Sprintf("--within %s is not shorter than the lifetime of %s (%s): it would be due again right after re-signing", Duration(opts.Within), r, Duration(life)),
					HintText: fmt.Sprintf("use a --within shorter than %s, or --role %s to re-sign it once", Duration(life), r)}
			}
		}
	}
	var out []RoleDue
	bins := binIndexOf(repo)
	for _, r := range all {
		version, expires, _ := roleMeta(repo, r)
		rp := pol.Role(policyRole(pol, r))
		window := rp.Window.D()
		if opts.Within > window {
			window = opts.Within
		}
		left := expires.Sub(at)
		d := RoleDue{Role: r, Version: version, Expires: expires.UTC(), Window: Seconds(window), Left: Seconds(left), Bins: bins[r]}
		switch {
		case left <= 0:
			d.Reason = "expired"
		case named[r]:
			d.Reason = "named"
		case left < window:
			d.Reason = "inside its window"
		default:
			continue
		}
		d.Threshold, d.Keys = needFor(repo, pol, r)
		out = append(out, d)
	}
	return out, nil
}

func leftText(left time.Duration) string {
	if left < 0 {
		return "expired " + Human(-left) + " ago"
	}
	return Human(left)
}

func needFor(repo *roles.Repo, pol *Policy, role string) (int, []string) {
	_, threshold, _ := repo.RoleKeyIDs(role)
	var keys []string
	for _, u := range pol.Role(policyRole(pol, role)).Keys {
		keys = append(keys, objectOf(u))
	}
	return threshold, keys
}

// withFollowers adds snapshot and timestamp where a changed role needs
// them: a new targets version needs a new snapshot, a new snapshot a new
// timestamp.
func withFollowers(repo *roles.Repo, pol *Policy, at time.Time, due []RoleDue) []RoleDue {
	has := map[string]bool{}
	targetsChanged := false
	for _, d := range due {
		has[d.Role] = true
		if d.Role != RoleRoot && d.Role != RoleSnapshot && d.Role != RoleTimestamp {
			targetsChanged = true
		}
	}
	follow := func(role, reason string) {
		if has[role] {
			return
		}
		version, expires, _ := roleMeta(repo, role)
		d := RoleDue{Role: role, Version: version, Expires: expires.UTC(), Left: Seconds(expires.Sub(at)),
			Window: Seconds(pol.Role(role).Window), Reason: reason}
		d.Threshold, d.Keys = needFor(repo, pol, role)
		due = append(due, d)
		has[role] = true
	}
	if targetsChanged {
		follow(RoleSnapshot, "follows targets")
	}
	if has[RoleSnapshot] {
		follow(RoleTimestamp, "follows snapshot")
	}
	return due
}

// gather opens the keys to sign role with, up to its threshold. With
// enough keys it returns them and, in the Wait, the keys it skipped;
// otherwise no keys and what the role waits for.
func (s *Session) gather(ctx context.Context, st *resignState, repo *roles.Repo, pol *Policy, role string) ([]*Key, *Wait, error) {
	uris := pol.Role(policyRole(pol, role)).Keys
	trusted, threshold, _ := repo.RoleKeyIDs(role)
	var keys []*Key
	seen := map[string]bool{}
	w := &Wait{Role: role, Need: threshold}
	for _, uri := range uris {
		if len(keys) >= threshold {
			break
		}
		k, err := st.open(ctx, s, uri)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			reason := err.Error()
			if errAbsent(err) { // worded as rotate and revoke word it
				reason = "not plugged in: " + strings.TrimPrefix(reason, objectOf(uri)+": ")
			}
			w.Missing = append(w.Missing, KeyWait{Key: objectOf(uri), Reason: reason, Hint: hsm.HintOf(err)})
			continue
		}
		if !contains(trusted, k.ID()) {
			return nil, nil, &MismatchError{URI: uri, KeyID: k.ID(), Role: role, Trusted: trusted}
		}
		if !seen[k.ID()] {
			seen[k.ID()] = true
			keys = append(keys, k)
		}
	}
	if len(keys) >= threshold && threshold > 0 {
		return keys, w, nil // w.Missing: keys skipped on the way
	}
	w.Have = len(keys)
	w.Detail = fmt.Sprintf("%s needs %d signatures and only %d of its keys could be used", role, threshold, len(keys))
	if len(uris) < threshold {
		w.Detail += fmt.Sprintf(" (%s lists %d keys for it)", PolicyFile, len(uris))
	}
	return nil, w, nil
}

func (s *Session) resignLocked(ctx context.Context, dir string, repo *roles.Repo, pol *Policy, at time.Time, opts ResignOptions, st *resignState, res *ResignResult) error {
	due, err := planResign(repo, pol, at, opts)
	if err != nil {
		return err
	}
	res.Due = due
	if len(due) == 0 {
		res.Outcome = OutcomeNothingDue
		return nil
	}
	// Lines about the hashed bins, one per bin, are folded (fold.go).
	prog := newBinProgress(func(msg string) {
		if !st.quiet {
			s.progress("%s: %s", dir, msg)
		}
	}, BinsOfResign(res))
	defer prog.flush()
	say := func(format string, a ...any) { prog.line(fmt.Sprintf(format, a...)) }
	dueSet := map[string]RoleDue{}
	for _, d := range due {
		dueSet[d.Role] = d
		say("%s v%d %s (expires %s, window %s)", d.Role, d.Version, d.Reason, d.Expires.Format(time.RFC3339), d.Window)
	}
	root := repo.Root()
	rootExpired := !root.Signed.Expires.After(at)
	if rootExpired {
		_, threshold, _ := repo.RoleKeyIDs(RoleRoot)
		note := fmt.Sprintf("root v%d expired on %s: re-signing an expired root still needs the old root's threshold — root v%d must be signed by %d of root v%d's keys, like any root change",
			root.Signed.Version, root.Signed.Expires.UTC().Format(time.RFC3339), root.Signed.Version+1, threshold, root.Signed.Version)
		res.Notes = append(res.Notes, note)
		say("%s", note)
	}

	// Open every key needed before changing anything.
	ready := map[string][]*Key{}
	waits := map[string]*Wait{}
	try := func(role string) error {
		keys, w, err := s.gather(ctx, st, repo, pol, role)
		if err != nil {
			return err
		}
		if keys == nil {
			waits[role] = w
			return nil
		}
		ready[role] = keys
		for _, m := range w.Missing { // as rotate says it of an absent root token
			note := fmt.Sprintf("%s: %s could not be used (%s): signing with %d of its other keys", role, m.Key, m.Reason, len(keys))
			res.Notes = append(res.Notes, note)
			say("%s", note)
		}
		return nil
	}
	order := topRoles(repo)
	var targetsRoles []string
	for _, r := range order {
		if r != RoleRoot && r != RoleSnapshot && r != RoleTimestamp {
			if _, ok := dueSet[r]; ok {
				targetsRoles = append(targetsRoles, r)
			}
		}
	}
	if _, ok := dueSet[RoleRoot]; ok {
		if err := try(RoleRoot); err != nil {
			return err
		}
	}
	for _, r := range targetsRoles {
		if err := try(r); err != nil {
			return err
		}
	}
	targetsReady := 0
	for _, r := range targetsRoles {
		if ready[r] != nil {
			targetsReady++
		}
	}
	_, snapDue := dueSet[RoleSnapshot]
	_, tsDue := dueSet[RoleTimestamp]
	needSnap := snapDue || targetsReady > 0
	if needSnap {
		if err := try(RoleSnapshot); err != nil {
			return err
		}
	}
	needTS := tsDue || (needSnap && ready[RoleSnapshot] != nil)
	if needTS {
		if err := try(RoleTimestamp); err != nil {
			return err
		}
	}
	// A role is published only through a new snapshot and timestamp.
	blocked := func(role, by string) {
		if ready[role] == nil {
			return
		}
		_, threshold, _ := repo.RoleKeyIDs(role)
		waits[role] = &Wait{Role: role, Need: threshold, Have: len(ready[role]), Detail: fmt.Sprintf("%s could be signed, but cannot be published without new %s", role, by)}
		delete(ready, role)
	}
	if needTS && ready[RoleTimestamp] == nil {
		blocked(RoleSnapshot, "timestamp metadata: "+waits[RoleTimestamp].Detail)
	}
	if ready[RoleSnapshot] == nil {
		for _, r := range targetsRoles {
			reason := "snapshot metadata"
			if w := waits[RoleSnapshot]; w != nil {
				reason += ": " + w.Detail
			}
			blocked(r, reason)
		}
	}
	for _, r := range order {
		if w, ok := waits[r]; ok {
			if _, isDue := dueSet[r]; !isDue {
				// A follower that cannot be signed makes nothing wait
				// unless something needed it; say so on what needed it.
				continue
			}
			if r == RoleRoot && rootExpired {
				w.Detail += "; root has expired, and re-signing it still needs the old root's threshold"
			}
			res.Waiting = append(res.Waiting, *w)
			say("%s waits: %s", r, w.Detail)
			for _, m := range w.Missing {
				say("  %s: %s", m.Key, m.Reason)
			}
		}
	}
	// Nothing to publish while a role that stays expired makes clients
	// refuse the repository anyway.
	for _, w := range res.Waiting {
		if d := dueSet[w.Role]; d.Reason == "expired" {
			res.Outcome = OutcomeWaiting
			res.Notes = append(res.Notes, fmt.Sprintf("nothing was written: %s has expired and clients refuse the repository until it is re-signed", w.Role))
			return nil
		}
	}

	now := at
	repo.Now = func() time.Time { return now }
	signMD := func(role string, keys []*Key, do func(k *Key) error) error {
		for i, k := range keys {
			say("signing %s with key %d of %d: %s (%s)", role, i+1, len(keys), short(k.ID()), objectOf(k.URI))
			if err := do(k); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &SignError{Role: role, Key: objectOf(k.URI), Err: err}
			}
		}
		return nil
	}
	var resigned []string
	if keys := ready[RoleRoot]; keys != nil {
		if err := repo.BumpRole(RoleRoot, now.Add(pol.Role(RoleRoot).Expires.D())); err != nil {
			return err
		}
		md := repo.Root()
		if err := signMD(RoleRoot, keys, func(k *Key) error { return roles.Sign(md, k.TUF) }); err != nil {
			return err
		}
		// Both thresholds (the new root's and the previous root's) are
		// checked by the preflight in commit, as for any root change.
		resigned = append(resigned, RoleRoot)
	}
	for _, r := range targetsRoles {
		keys := ready[r]
		if keys == nil {
			continue
		}
		if err := bumpRole(repo, pol, r, now); err != nil {
			return err
		}
		md, err := targetsRole(repo, r)
		if err != nil {
			return err
		}
		if err := signMD(r, keys, func(k *Key) error { return roles.Sign(md, k.TUF) }); err != nil {
			return err
		}
		resigned = append(resigned, r)
	}
	if keys := ready[RoleSnapshot]; keys != nil && needSnap {
		if err := repo.UpdateSnapshot(now.Add(pol.Role(RoleSnapshot).Expires.D())); err != nil {
			return err
		}
		if err := signMD(RoleSnapshot, keys, func(k *Key) error { return roles.Sign(repo.Snapshot, k.TUF) }); err != nil {
			return err
		}
		resigned = append(resigned, RoleSnapshot)
	}
	if keys := ready[RoleTimestamp]; keys != nil && needTS {
		if err := repo.UpdateTimestamp(now.Add(pol.Role(RoleTimestamp).Expires.D())); err != nil {
			return err
		}
		if err := signMD(RoleTimestamp, keys, func(k *Key) error { return roles.Sign(repo.Timestamp, k.TUF) }); err != nil {
			return err
		}
		resigned = append(resigned, RoleTimestamp)
	}
	if len(resigned) == 0 {
		res.Outcome = OutcomeWaiting
		return nil
	}
	dueNames := make([]string, 0, len(due))
	for _, d := range due {
		dueNames = append(dueNames, d.Role)
	}
	details := map[string]any{"due": dueNames, "resigned": resigned}
	if opts.Within > 0 {
		details["within"] = Duration(opts.Within).String()
	}
	if len(opts.Roles) > 0 {
		details["named"] = opts.Roles
	}
	if len(res.Waiting) > 0 {
		var w []string
		for _, x := range res.Waiting {
			w = append(w, x.Role)
		}
		details["waiting"] = w
	}
	out, err := s.commit(&Change{Op: "resign", Dir: dir, Repo: repo, Policy: pol, At: now, Changed: resigned,
		NoPolicy: true, Details: details})
	if err != nil {
		return err
	}
	res.Resigned = resigned
	res.Versions, res.Expires = out.Versions, out.Expires
	for _, w := range out.Warnings {
		res.Notes = append(res.Notes, "warning: "+w)
	}
	res.Outcome = OutcomeResigned
	if len(res.Waiting) > 0 {
		res.Outcome = OutcomePartial
	}
	for _, r := range resigned {
		say("%s v%d expires %s", r, out.Versions[r], out.Expires[r])
	}
	return nil
}

// readLocked is withLock without the journal recovery, for runs that must
// not write (--dry-run).
func readLocked(dir string, fn func(repo *roles.Repo, pol *Policy) error) error {
	return lockAndLoad(dir, nil, nil, fn)
}
