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

// SignatureSource gives signatures for the payloads of a change (step 2
// of the pipeline): the local devices (LocalSource), or signatures
// brought back in a signing bundle. For each request it adds what it has
// with req.Add, reports keys that cannot sign with req.Absent, and stops
// once req.Done.
type SignatureSource interface {
	Sign(ctx context.Context, req *SignRequest) error
}

// SignRequest asks a source for signatures over one role's payload.
type SignRequest struct {
	Change  *Change
	Step    *Step
	Role    string // the metadata signed: Step.Role or one of Step.Bins
	Payload []byte // its canonical bytes
	// Quiet is set for every bin of a Bins step after the first: no
	// progress line per bin.
	Quiet bool

	last    bool            // the second pass: Step.Last may sign
	signed  map[string]bool // key ids signed
	fps     map[string]bool // fingerprints signed: one key counts once
	absent  []Absent
	session *Session
}

// Trusts reports whether any need of the step counts keyID.
func (r *SignRequest) Trusts(keyID string) bool {
	for _, n := range r.Step.Needs {
		if slices.Contains(n.KeyIDs, keyID) {
			return true
		}
	}
	return false
}

// Trusted lists the key ids the step's needs count.
func (r *SignRequest) Trusted() []string {
	var out []string
	for _, n := range r.Step.Needs {
		for _, id := range n.KeyIDs {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// Wanted reports whether a signature by keyID would be used now: the step
// trusts it, it has not signed, and it is not held back (Step.Last).
func (r *SignRequest) Wanted(keyID string) bool {
	if !r.Trusts(keyID) || r.signed[keyID] {
		return false
	}
	return r.last == slices.Contains(r.Step.Last, keyID)
}

// URIs lists the devices to try, every need's in order, each once.
func (r *SignRequest) URIs() []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range r.Step.Needs {
		for _, u := range n.URIs {
			if o := objectOf(u); !seen[o] {
				seen[o] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// Done reports whether the request needs no more signatures: every need
// is met (never before every key was tried for a Step.All).
func (r *SignRequest) Done() bool {
	if r.Step.All {
		return false
	}
	for _, n := range r.tally() {
		if !n.Met() {
			return false
		}
	}
	return true
}

// Add checks one signature over the payload by keyID and adds it: the key
// must be one the step trusts, and the signature valid. A second
// signature by the same key material (under another key id) is not
// counted and not added.
func (r *SignRequest) Add(keyID string, sig []byte) error {
	k := r.key(keyID)
	if k == nil {
		return &SignatureError{Role: r.Role, KeyID: keyID, Detail: fmt.Sprintf("%s does not trust key %s (it trusts %s)", r.Role, short(keyID), shortList(r.Trusted()))}
	}
	if err := r.Change.Repo.Cache().VerifySignature(k, r.Payload, sig); err != nil {
		return &SignatureError{Role: r.Role, KeyID: keyID, Detail: err.Error()}
	}
	return r.attach(keyID, sig)
}

func (r *SignRequest) attach(keyID string, sig []byte) error {
	fp, err := roles.Fingerprint(r.key(keyID))
	if err != nil {
		return err
	}
	if r.fps[fp] && !r.signed[keyID] {
		return nil // the same key under another id: counted once
	}
	if err := r.Change.Repo.Attach(r.Role, keyID, sig); err != nil {
		return err
	}
	r.signed[keyID], r.fps[fp] = true, true
	return nil
}

// Absent reports a key that cannot sign; the others go on.
func (r *SignRequest) Absent(a Absent) {
	if !slices.ContainsFunc(r.absent, func(o Absent) bool { return o.URI == a.URI && o.KeyID == a.KeyID }) {
		r.absent = append(r.absent, a)
	}
}

func (r *SignRequest) key(keyID string) *metadata.Key {
	for _, n := range r.Step.Needs {
		if k, ok := n.Keys[keyID]; ok {
			return k
		}
	}
	return nil
}

// tally counts, for each need, the distinct keys that signed.
func (r *SignRequest) tally() []NeedTally {
	out := make([]NeedTally, 0, len(r.Step.Needs))
	for _, n := range r.Step.Needs {
		t := NeedTally{Of: n.Of, Threshold: n.Threshold}
		seen := map[string]bool{}
		for _, id := range n.KeyIDs {
			fp, err := roles.Fingerprint(n.Keys[id])
			if err == nil && r.signed[id] && !seen[fp] {
				seen[fp] = true
				t.Have++
			}
		}
		for _, id := range n.KeyIDs {
			if !r.signed[id] {
				t.Missing = append(t.Missing, MissingKey{KeyID: id, URI: n.Where[id].URI, Device: n.Where[id].Device})
			}
		}
		out = append(out, t)
	}
	return out
}

// status says how far each need got: "root v2's keys: 1 signed, 2 needed, …".
func (r *SignRequest) status() string {
	var parts []string
	for _, n := range r.tally() {
		parts = append(parts, fmt.Sprintf("%s's keys: %d signed, %d needed", n.Of, n.Have, n.Threshold))
	}
	return strings.Join(parts, ", ")
}

// SignatureError is a signature that cannot be used.
type SignatureError struct {
	Role, KeyID, Detail string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("%s: the signature by key %s cannot be used: %s", e.Role, short(e.KeyID), e.Detail)
}

// Hint says what to do.
func (e *SignatureError) Hint() string {
	return "sign the change again with a key the role trusts (rootkeeper status lists them)"
}

// Sign is the one signing routine (step 2 of the pipeline): step by step,
// in order, it makes each Follow role, then asks the sources in turn for
// signatures over each role's payload. A key that cannot sign is
// reported and the others go on; the thresholds decide: a step whose
// needs stay unmet ends the signing with a *ThresholdError (or, for a new
// root, a *RootSignaturesError) naming every key still missing and the
// devices that were not there — unless c.Partial, which signs what it can
// and leaves the verdict to the Tally.
func (s *Session) Sign(ctx context.Context, c *Change, sources ...SignatureSource) (*Tally, error) {
	t := &Tally{}
	for _, st := range c.Steps {
		if st.Note != "" {
			c.say(s, "%s", st.Note)
		}
		if st.Follow != nil {
			if err := st.Follow(); err != nil {
				return t, err
			}
		}
		start := time.Now()
		for i, name := range st.Names() {
			rt, err := s.signOne(ctx, c, st, name, i > 0, sources)
			if err != nil {
				return t, err
			}
			t.Roles = append(t.Roles, *rt)
			if n := i + 1; len(st.Bins) > 0 && (n%1024 == 0 || n == len(st.Bins)) {
				c.say(s, "signed %d of %d bins (%s)", n, len(st.Bins), time.Since(start).Round(time.Second))
			}
			if err := unmet(c, st, rt); err != nil && !c.Partial {
				return t, err
			}
		}
	}
	return t, nil
}

// signOne gets the signatures of one role: a pass with every source, and
// a second with the keys held back (Step.Last) if the needs are unmet.
func (s *Session) signOne(ctx context.Context, c *Change, st *Step, name string, quiet bool, sources []SignatureSource) (*RoleTally, error) {
	payload, err := c.Payload(name)
	if err != nil {
		return nil, err
	}
	req := &SignRequest{Change: c, Step: st, Role: name, Payload: payload, Quiet: quiet,
		signed: map[string]bool{}, fps: map[string]bool{}, session: s}
	// Signatures already made (a bundle, an earlier pass), from a copy:
	// attach rewrites the role's list (Repo.Attach), which would make a
	// loop over the list itself skip the signature after each one.
	for _, sig := range slices.Clone(c.Repo.Signatures(name)) {
		if req.key(sig.KeyID) != nil && c.Repo.Cache().VerifySignature(req.key(sig.KeyID), payload, sig.Signature) == nil {
			if err := req.attach(sig.KeyID, sig.Signature); err != nil {
				return nil, err
			}
		}
	}
	pass := func() error {
		for _, src := range sources {
			if req.Done() {
				return nil
			}
			if err := src.Sign(ctx, req); err != nil {
				return err
			}
		}
		return nil
	}
	if err := pass(); err != nil {
		return nil, err
	}
	if len(st.Last) > 0 && !needsMet(req.tally()) {
		c.say(s, "%s v%d still needs signatures: the revoked key signs the transition away from itself", name, roleVersion(c.Repo, name))
		req.last = true
		if err := pass(); err != nil {
			return nil, err
		}
	}
	rt := &RoleTally{Role: name, Needs: req.tally(), Absent: req.absent}
	for id := range req.signed {
		rt.Signed = append(rt.Signed, id)
	}
	slices.Sort(rt.Signed)
	return rt, nil
}

func needsMet(ns []NeedTally) bool {
	for _, n := range ns {
		if !n.Met() {
			return false
		}
	}
	return true
}

func roleVersion(repo *roles.Repo, role string) int64 {
	v, _, _ := roleMeta(repo, role)
	return v
}

// unmet is the error of a role whose needs are not met, nil otherwise.
func unmet(c *Change, st *Step, rt *RoleTally) error {
	if needsMet(rt.Needs) {
		return nil
	}
	var absent []string
	for _, a := range rt.Absent {
		absent = append(absent, a.URI)
	}
	if rt.Role == RoleRoot {
		e := &RootSignaturesError{Version: c.Repo.Root().Signed.Version, Absent: absent}
		for _, n := range rt.Needs {
			e.Rules = append(e.Rules, roles.Requirement{From: n.Of, Threshold: n.Threshold, Have: n.Have})
			for _, m := range n.Missing {
				if !n.Met() && !slices.ContainsFunc(e.Missing, func(o MissingKey) bool { return o.KeyID == m.KeyID }) {
					e.Missing = append(e.Missing, m)
				}
			}
		}
		return e
	}
	n := rt.Needs[0]
	for _, x := range rt.Needs {
		if !x.Met() {
			n = x
		}
	}
	return &ThresholdError{Role: rt.Role, Have: n.Have, Need: n.Threshold, Missing: n.Missing, Absent: absent}
}

// LocalSource signs with the devices plugged into this machine, through
// the session: each key opened once (PIN retries read first, by hsm), each
// signature verified at once. A device that is not plugged in (or, with
// Unattended, any key that cannot be used without an officer) is
// reported absent and the other keys go on.
type LocalSource struct {
	S *Session
	// Unattended counts every key that cannot be opened as absent (no PIN
	// source and no terminal, …): the scheduled re-signing job.
	Unattended bool
	// Quiet says nothing of absent keys (the caller reports them).
	Quiet bool
	// Open opens a key; nil means S.Open.
	Open func(ctx context.Context, uri string) (*Key, error)
}

// Local is the local source of the session.
func (s *Session) Local() *LocalSource { return &LocalSource{S: s} }

// Sign signs req's payload with every wanted key it can open.
func (l *LocalSource) Sign(ctx context.Context, req *SignRequest) error {
	open := l.Open
	if open == nil {
		open = l.S.Open
	}
	for _, uri := range req.URIs() {
		if req.Done() {
			return nil
		}
		if id, ok := l.S.uriKeyID(uri, req.Change.Records); ok && !req.Trusts(id) {
			return &MismatchError{URI: uri, KeyID: id, Role: req.Role, Trusted: req.Trusted()}
		} else if ok && !req.Wanted(id) {
			continue
		}
		k, err := open(ctx, uri)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errAbsent(err) && !l.Unattended {
				return err
			}
			req.Absent(Absent{URI: objectOf(uri), Reason: err.Error(), Hint: hsm.HintOf(err)})
			if !req.Quiet && !l.Quiet && errAbsent(err) {
				req.Change.say(l.S, "%s is not plugged in: skipping it", objectOf(uri))
			}
			continue
		}
		if !req.Trusts(k.ID()) {
			return &MismatchError{URI: uri, KeyID: k.ID(), Role: req.Role, Trusted: req.Trusted()}
		}
		if !req.Wanted(k.ID()) {
			continue
		}
		if err := l.sign(ctx, req, k); err != nil {
			return err
		}
	}
	return nil
}

func (l *LocalSource) sign(ctx context.Context, req *SignRequest, k *Key) error {
	if !req.Quiet {
		if req.Role == RoleRoot {
			req.Change.say(l.S, "signing root v%d with %s (%s)", roleVersion(req.Change.Repo, RoleRoot), short(k.ID()), objectOf(k.URI))
		} else {
			req.Change.say(l.S, "signing %s with %s (%s)", req.Role, short(k.ID()), objectOf(k.URI))
		}
	}
	sig, err := k.TUF.SignPayloadIn(req.Change.Repo.Cache(), req.Payload) // verified at once against the key
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &SignError{Role: req.Role, Key: objectOf(k.URI), Err: err}
	}
	if err := req.attach(k.ID(), sig); err != nil {
		return err
	}
	if len(req.Step.Needs) > 1 && !req.Quiet {
		req.Change.say(l.S, "%s v%d: %s", req.Role, roleVersion(req.Change.Repo, req.Role), req.status())
	}
	return nil
}
