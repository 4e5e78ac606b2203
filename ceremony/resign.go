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

// Resigner re-signs many repositories with one session (ceremony/fleet):
// a key that could not be opened is not tried again (no PIN prompt per
// repository), and it reports no progress of its own.
type Resigner struct {
	s  *Session
	st *resignState
}

// Resigner starts re-signing many repositories.
func (s *Session) Resigner() *Resigner { return &Resigner{s: s, st: &resignState{quiet: true}} }

// Resign is Session.Resign of one repository of many.
func (r *Resigner) Resign(ctx context.Context, dir string, opts ResignOptions) (*ResignResult, error) {
	return r.s.resign(ctx, dir, opts, r.st)
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

// resignRun is one repository's re-signing: what is due, which of it
// can be signed with the keys at hand, and what it is signed with.
type resignRun struct {
	dir     string
	repo    *roles.Repo
	pol     *Policy
	at      time.Time
	opts    ResignOptions
	res     *ResignResult
	due     map[string]RoleDue
	ready   map[string][]*Key
	waits   map[string]*Wait
	targets []string // due targets roles, in signing order
	say     func(format string, a ...any)
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
	r := &resignRun{dir: dir, repo: repo, pol: pol, at: at, opts: opts, res: res, due: map[string]RoleDue{},
		ready: map[string][]*Key{}, waits: map[string]*Wait{}, say: func(format string, a ...any) { prog.line(fmt.Sprintf(format, a...)) }}
	r.announce(due)
	if err := s.resignReady(ctx, st, r); err != nil {
		return err
	}
	if r.report() {
		return nil // a role that stays expired: nothing to publish
	}
	c, err := r.change()
	if err != nil || c == nil {
		res.Outcome = OutcomeWaiting
		return err
	}
	c.progress = prog.line
	src := &LocalSource{S: s, Unattended: true, Quiet: true, Open: func(ctx context.Context, uri string) (*Key, error) { return st.open(ctx, s, uri) }}
	if _, err := s.Sign(ctx, c, src); err != nil {
		return err
	}
	out, err := s.commit(c)
	if err != nil {
		return err
	}
	r.done(c, out)
	return nil
}

// announce says what is due, and that an expired root still needs the
// old root's threshold.
func (r *resignRun) announce(due []RoleDue) {
	for _, d := range due {
		r.due[d.Role] = d
		r.say("%s v%d %s (expires %s, window %s)", d.Role, d.Version, d.Reason, d.Expires.Format(time.RFC3339), d.Window)
	}
	for _, role := range topRoles(r.repo) {
		if _, ok := r.due[role]; ok && role != RoleRoot && role != RoleSnapshot && role != RoleTimestamp {
			r.targets = append(r.targets, role)
		}
	}
	if root := r.repo.Root(); r.rootExpired() {
		_, threshold, _ := r.repo.RoleKeyIDs(RoleRoot)
		note := fmt.Sprintf("root v%d expired on %s: re-signing an expired root still needs the old root's threshold — root v%d must be signed by %d of root v%d's keys, like any root change",
			root.Signed.Version, root.Signed.Expires.UTC().Format(time.RFC3339), root.Signed.Version+1, threshold, root.Signed.Version)
		r.res.Notes = append(r.res.Notes, note)
		r.say("%s", note)
	}
}

func (r *resignRun) rootExpired() bool { return !r.repo.Root().Signed.Expires.After(r.at) }

// resignReady opens every key needed before changing anything: a role is
// ready with a threshold of keys that can be used without an officer,
// else it waits; a targets role waits for snapshot, and snapshot for
// timestamp, as they publish it.
func (s *Session) resignReady(ctx context.Context, st *resignState, r *resignRun) error {
	try := func(role string) error {
		keys, w, err := s.gather(ctx, st, r.repo, r.pol, role)
		if err != nil {
			return err
		}
		if keys == nil {
			r.waits[role] = w
			return nil
		}
		r.ready[role] = keys
		for _, m := range w.Missing { // as rotate says it of an absent root token
			note := fmt.Sprintf("%s: %s could not be used (%s): signing with %d of its other keys", role, m.Key, m.Reason, len(keys))
			r.res.Notes = append(r.res.Notes, note)
			r.say("%s", note)
		}
		return nil
	}
	want := []string{}
	if _, ok := r.due[RoleRoot]; ok {
		want = append(want, RoleRoot)
	}
	for _, role := range append(want, r.targets...) {
		if err := try(role); err != nil {
			return err
		}
	}
	if r.needSnapshot() {
		if err := try(RoleSnapshot); err != nil {
			return err
		}
	}
	if r.needTimestamp() {
		if err := try(RoleTimestamp); err != nil {
			return err
		}
	}
	r.block()
	return nil
}

func (r *resignRun) needSnapshot() bool {
	if _, due := r.due[RoleSnapshot]; due {
		return true
	}
	for _, role := range r.targets {
		if r.ready[role] != nil {
			return true
		}
	}
	return false
}

func (r *resignRun) needTimestamp() bool {
	_, due := r.due[RoleTimestamp]
	return due || (r.needSnapshot() && r.ready[RoleSnapshot] != nil)
}

// block makes a role that could be signed wait when what publishes it
// cannot be: a role is published only through a new snapshot and
// timestamp.
func (r *resignRun) block() {
	blocked := func(role, by string) {
		if r.ready[role] == nil {
			return
		}
		_, threshold, _ := r.repo.RoleKeyIDs(role)
		r.waits[role] = &Wait{Role: role, Need: threshold, Have: len(r.ready[role]), Detail: fmt.Sprintf("%s could be signed, but cannot be published without new %s", role, by)}
		delete(r.ready, role)
	}
	if r.needTimestamp() && r.ready[RoleTimestamp] == nil {
		blocked(RoleSnapshot, "timestamp metadata: "+r.waits[RoleTimestamp].Detail)
	}
	if r.ready[RoleSnapshot] == nil {
		for _, role := range r.targets {
			reason := "snapshot metadata"
			if w := r.waits[RoleSnapshot]; w != nil {
				reason += ": " + w.Detail
			}
			blocked(role, reason)
		}
	}
}

// report records the roles that wait; it reports true when a role that
// waits stays expired: clients refuse the repository anyway, and nothing
// is written.
func (r *resignRun) report() bool {
	for _, role := range topRoles(r.repo) {
		w, ok := r.waits[role]
		if _, isDue := r.due[role]; !ok || !isDue {
			// A follower that cannot be signed makes nothing wait
			// unless something needed it; say so on what needed it.
			continue
		}
		if role == RoleRoot && r.rootExpired() {
			w.Detail += "; root has expired, and re-signing it still needs the old root's threshold"
		}
		r.res.Waiting = append(r.res.Waiting, *w)
		r.say("%s waits: %s", role, w.Detail)
		for _, m := range w.Missing {
			r.say("  %s: %s", m.Key, m.Reason)
		}
	}
	for _, w := range r.res.Waiting {
		if d := r.due[w.Role]; d.Reason == "expired" {
			r.res.Outcome = OutcomeWaiting
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("nothing was written: %s has expired and clients refuse the repository until it is re-signed", w.Role))
			return true
		}
	}
	return false
}

// change plans the re-signing of the ready roles: each a new version,
// signed by a threshold of its keys (an unattended job uses no more), in
// signing order. It returns nil when no role is ready.
func (r *resignRun) change() (*Change, error) {
	now := r.at
	r.repo.Now = func() time.Time { return now }
	c := &Change{Op: "resign", Dir: r.dir, At: now, Base: r.repo.Loaded(), Repo: r.repo, Policy: r.pol, NoPolicy: true, Records: loadRecords(r.dir)}
	add := func(role string, st *Step, err error) error {
		if err != nil {
			return err
		}
		st.All = false
		c.Steps = append(c.Steps, st)
		c.Changed = append(c.Changed, role)
		return nil
	}
	if r.ready[RoleRoot] != nil {
		if err := r.repo.BumpRole(RoleRoot, now.Add(r.pol.Role(RoleRoot).Expires.D())); err != nil {
			return nil, err
		}
		uris := r.pol.Role(RoleRoot).Keys
		st, err := c.rootStep(uris, uris) // both thresholds, as for any root change
		if err := add(RoleRoot, st, err); err != nil {
			return nil, err
		}
	}
	for _, role := range r.targets {
		if r.ready[role] == nil {
			continue
		}
		if err := bumpRole(r.repo, r.pol, role, now); err != nil {
			return nil, err
		}
		st, err := c.roleStep(role)
		if err := add(role, st, err); err != nil {
			return nil, err
		}
	}
	if err := r.publishSteps(c, add); err != nil {
		return nil, err
	}
	if len(c.Steps) == 0 {
		return nil, nil
	}
	c.Details = r.details(c.Changed)
	return c, nil
}

// publishSteps adds snapshot and timestamp when they are needed and ready.
func (r *resignRun) publishSteps(c *Change, add func(string, *Step, error) error) error {
	pub, err := c.publishSteps()
	if err != nil {
		return err
	}
	if r.ready[RoleSnapshot] != nil && r.needSnapshot() {
		if err := add(RoleSnapshot, pub[0], nil); err != nil {
			return err
		}
	}
	if r.ready[RoleTimestamp] != nil && r.needTimestamp() {
		return add(RoleTimestamp, pub[1], nil)
	}
	return nil
}

// details is what the transcript records of the run.
func (r *resignRun) details(resigned []string) map[string]any {
	dueNames := make([]string, 0, len(r.res.Due))
	for _, d := range r.res.Due {
		dueNames = append(dueNames, d.Role)
	}
	details := map[string]any{"due": dueNames, "resigned": resigned}
	if r.opts.Within > 0 {
		details["within"] = Duration(r.opts.Within).String()
	}
	if len(r.opts.Roles) > 0 {
		details["named"] = r.opts.Roles
	}
	if len(r.res.Waiting) > 0 {
		var w []string
		for _, x := range r.res.Waiting {
			w = append(w, x.Role)
		}
		details["waiting"] = w
	}
	return details
}

// done fills in the result of a run that wrote.
func (r *resignRun) done(c *Change, out *Result) {
	res := r.res
	res.Resigned = c.Changed
	res.Versions, res.Expires = out.Versions, out.Expires
	for _, w := range out.Warnings {
		res.Notes = append(res.Notes, "warning: "+w)
	}
	res.Outcome = OutcomeResigned
	if len(res.Waiting) > 0 {
		res.Outcome = OutcomePartial
	}
	for _, role := range c.Changed {
		r.say("%s v%d expires %s", role, out.Versions[role], out.Expires[role])
	}
}

// readLocked is withLock without the journal recovery, for runs that must
// not write (--dry-run).
func readLocked(dir string, fn func(repo *roles.Repo, pol *Policy) error) error {
	return lockAndLoad(dir, nil, nil, fn)
}
