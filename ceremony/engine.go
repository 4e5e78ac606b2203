package ceremony

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/rootkeeper/rootkeeper/hsm"
	"github.com/rootkeeper/rootkeeper/roles"
)

// UI is how a ceremony talks to the officer.
type UI interface {
	// Confirm shows what is about to be signed and asks to go on.
	Confirm(summary string) (bool, error)
	// Progress tells the officer what is happening ("signing root with …").
	Progress(msg string)
}

// Session runs ceremonies with keys from hardware. It opens each key once
// and keeps it open (and its token logged in to) until Close.
type Session struct {
	Keys Keystore
	UI   UI
	// Now is the clock every change is made at; nil means time.Now. Only
	// code that runs a session in-process sets it (tests that need time to
	// pass); the command has no flag or variable that moves it. Writes use
	// the real clock, always.
	Now func() time.Time
	// Yes skips the confirmation (for scripts; the summary is still shown).
	Yes bool
	// Bundle, when set, makes a change go into a signing bundle instead
	// of the repository (--out; bundlemake.go).
	Bundle *BundleOut

	keys map[string]*Key
}

// Keystore is where a session gets its keys: *hsm.Keyring (the devices),
// or an in-memory fake in unit tests of planning and threshold logic.
type Keystore interface {
	// Signer opens the key a URI names.
	Signer(ctx context.Context, uri string) (hsm.Signer, error)
	// Attest reads the device's evidence for the key, when the signer's
	// Info carries none.
	Attest(ctx context.Context, uri string) (*hsm.Evidence, error)
	// Close closes every device opened.
	Close() error
}

var _ Keystore = (*hsm.Keyring)(nil)

// Key is an open hardware key and its TUF identity.
type Key struct {
	URI      string
	HW       hsm.Signer
	TUF      *roles.Signer
	Evidence *hsm.Evidence
	// Export is the key export file the key was read from (a plan's
	// file:PATH): it has no device here and signs through a bundle.
	Export string
}

// ID is the key's TUF key id.
func (k *Key) ID() string { return k.TUF.KeyID() }

func (s *Session) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Clock is the time the session makes changes at (Now, or the real clock).
func (s *Session) Clock() time.Time { return s.now() }

func (s *Session) progress(format string, a ...any) {
	if s.UI != nil {
		s.UI.Progress(fmt.Sprintf(format, a...))
	}
}

// Close closes every device the session opened.
func (s *Session) Close() error {
	s.keys = nil
	if s.Keys != nil {
		return s.Keys.Close()
	}
	return nil
}

// Open opens the key named by uri (once per session) and reads its
// hardware evidence.
func (s *Session) Open(ctx context.Context, uri string) (*Key, error) {
	u, err := hsm.ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if k, ok := s.keys[u.Object()]; ok {
		return k, nil
	}
	s.progress("opening %s", u.Object())
	hw, err := s.Keys.Signer(ctx, uri)
	if err != nil {
		return nil, err
	}
	tuf, err := roles.NewSigner(hw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Object(), err)
	}
	ev := hw.Info().Evidence
	if ev == nil {
		if ev, err = s.Keys.Attest(ctx, uri); err != nil {
			return nil, err
		}
	}
	k := &Key{URI: uri, HW: hw, TUF: tuf, Evidence: ev}
	if s.keys == nil {
		s.keys = map[string]*Key{}
	}
	s.keys[u.Object()] = k
	return k, nil
}

// EvidenceError reports a key whose hardware evidence does not meet the
// plan's requirement.
type EvidenceError struct {
	URI, Require, Summary string
}

func (e *EvidenceError) Error() string {
	return fmt.Sprintf("%s: the key does not meet require: %s (%s)", e.URI, e.Require, e.Summary)
}

// Hint says what to do.
func (e *EvidenceError) Hint() string {
	return "generate the key inside the device with rootkeeper key generate, or set require: none in the plan for test tokens only"
}

// checkEvidence checks a key's evidence against the requirement. A root
// key whose private object may also decrypt, unwrap or derive is refused
// under require: hardware-born and warned about otherwise.
func (s *Session) checkEvidence(k *Key, role, require string) error {
	if uses := k.Evidence.OtherUses(); role == RoleRoot && len(uses) > 0 {
		why := fmt.Sprintf("the private key also allows %s: a root key should only sign", strings.Join(uses, ", "))
		if require == RequireHardwareBorn || require == "" {
			return &EvidenceError{URI: objectOf(k.URI), Require: RequireHardwareBorn, Summary: why}
		}
		s.warn(fmt.Sprintf("%s: %s (generate root keys with rootkeeper key generate)", objectOf(k.URI), why)) // even with --quiet
	}
	switch require {
	case RequireNone:
		return nil
	case RequireHardwareAttested:
		if k.Evidence == nil || k.Evidence.Kind != hsm.EvidencePIV || !k.Evidence.HardwareBorn() {
			return &EvidenceError{URI: objectOf(k.URI), Require: require, Summary: k.Evidence.Summary()}
		}
	default:
		if !k.Evidence.HardwareBorn() {
			return &EvidenceError{URI: objectOf(k.URI), Require: RequireHardwareBorn, Summary: k.Evidence.Summary()}
		}
	}
	return nil
}

func objectOf(uri string) string {
	if u, err := hsm.ParseURI(uri); err == nil {
		return u.Object()
	}
	return hsm.Redact(uri) // a URI that does not parse may hold a PIN
}

// MismatchError reports a device key that is not the key a role trusts.
type MismatchError struct {
	URI, KeyID, Role string
	Trusted          []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s holds key %s, which %s does not trust (it trusts %s)", objectOf(e.URI), short(e.KeyID), e.Role, shortList(e.Trusted))
}

// Hint says what to do.
func (e *MismatchError) Hint() string {
	return "check that the right token is plugged in and that the key URI in rootkeeper.yaml or the plan names the right object"
}

// Is makes errors.Is(err, hsm.ErrKeyMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == hsm.ErrKeyMismatch }

// ThresholdError reports a role that could not get enough signatures.
type ThresholdError struct {
	Role       string
	Have, Need int
	Missing    []MissingKey // the keys that did not sign
	Absent     []string     // URIs of devices that were not there
}

func (e *ThresholdError) Error() string {
	return fmt.Sprintf("%s: only %d of the %d required signatures could be made", e.Role, e.Have, e.Need)
}

// Hint names the keys still needed.
func (e *ThresholdError) Hint() string {
	if len(e.Missing) == 0 {
		return "add signing key URIs for " + e.Role + " to rootkeeper.yaml"
	}
	var keys []string
	for _, m := range e.Missing {
		keys = append(keys, m.String())
	}
	msg := "plug in the token of one of these keys and run again: " + strings.Join(keys, ", ")
	if len(e.Absent) > 0 {
		msg += "; not plugged in this time: " + strings.Join(e.Absent, ", ")
	}
	return msg + "; or, for keys on other machines, make a signing bundle with --out FILE and have their holders sign it (rootkeeper sign)"
}

// missingKeys names the keys of ids that are not in done.
func missingKeys(ids []string, done func(string) bool, records map[string]*KeyRecord) []MissingKey {
	var out []MissingKey
	for _, id := range ids {
		if !done(id) {
			out = append(out, MissingKey{KeyID: id, URI: uriFor(id, records)})
		}
	}
	return out
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func shortList(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ", ")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// KeyRecord is what the repository keeps about each key it trusts, in
// keys/KEYID.json: where it lives and the hardware's evidence for it.
type KeyRecord struct {
	KeyID      string        `json:"keyid"`
	URI        string        `json:"uri"`
	Algorithm  string        `json:"algorithm"`
	PublicKey  string        `json:"public_key"`
	Roles      []string      `json:"roles"`
	Evidence   *hsm.Evidence `json:"evidence"`
	RecordedAt time.Time     `json:"recorded_at"`
}

func keyRecord(k *Key, roleNames []string, now time.Time) (*KeyRecord, error) {
	der, err := x509.MarshalPKIXPublicKey(k.HW.Public())
	if err != nil {
		return nil, err
	}
	alg, _ := hsm.AlgorithmOf(k.HW.Public())
	return &KeyRecord{
		KeyID:      k.ID(),
		URI:        objectOf(k.URI),
		Algorithm:  string(alg),
		PublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Roles:      roleNames,
		Evidence:   k.Evidence,
		RecordedAt: now,
	}, nil
}

// PreflightError reports a change that a TUF client would not accept; it
// was not written.
type PreflightError struct {
	Problems []roles.Problem
}

func (e *PreflightError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, problemLine(p))
	}
	return "preflight refused the change, nothing was written: " + strings.Join(lines, "; ")
}

// Hint returns the first problem's fix.
func (e *PreflightError) Hint() string {
	for _, p := range e.Problems {
		if p.Hint != "" {
			return p.Hint
		}
	}
	return ""
}

func problemLine(p roles.Problem) string {
	s := p.Role
	if p.Rule != "" {
		s += " (" + p.Rule + ")"
	}
	return s + ": " + p.Detail
}

// Result says what a ceremony wrote.
type Result struct {
	Dir       string            `json:"repository"`
	Operation string            `json:"operation"`
	Changed   []string          `json:"changed_roles"`
	Versions  map[string]int64  `json:"versions"`
	Expires   map[string]string `json:"expires"`
	Written   []string          `json:"written"`
	Details   map[string]any    `json:"details,omitempty"`
	// Bundle is the signing bundle written instead of the repository (--out).
	Bundle *BundleResult `json:"bundle,omitempty"`
	// Warnings: what recovery did first, an orphan file replaced, or a
	// failure after the change became visible (the change is done; the
	// next run completes its journal).
	Warnings []string `json:"warnings,omitempty"`
}

// commit is the last two steps of every change: the preflight (what
// every client would see once the files are in place) and the one write
// path, commitFiles (journal.go: journaled, all or nothing). A failure
// after the change became visible is a warning in the result, not an
// error: the change is done, and the next run completes its journal.
func (s *Session) commit(c *Change) (*Result, error) {
	files, err := c.files()
	if err != nil {
		return nil, err
	}
	report, err := preflightChange(c, files)
	if err != nil {
		return nil, err
	}
	write, notes, err := plannedWrites(c.Dir, files)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Remove {
		write = append(write, File{Path: p, Remove: true})
	}
	entry, err := appendTranscript(c.Dir, c.At, c.Op, c.Details, write, c.entryOptions()...) // records the removals too
	if err != nil {
		return nil, err
	}
	write = append(write, entry)
	done, err := commitFiles(c.Dir, &changeset{op: c.Op, at: c.At, changed: c.Changed, files: write})
	if err != nil {
		return nil, err
	}
	res := &Result{Dir: c.Dir, Operation: c.Op, Changed: c.Changed, Versions: map[string]int64{}, Expires: map[string]string{}, Details: c.Details}
	for _, rr := range report.Roles {
		res.Versions[rr.Role] = rr.Version
		res.Expires[rr.Role] = rr.Expires.UTC().Format(time.RFC3339)
	}
	for _, f := range write {
		if !f.Remove {
			res.Written = append(res.Written, f.Path)
		}
	}
	res.Warnings = append(notes, done.warnings...)
	for _, w := range res.Warnings {
		s.warn(w)
	}
	return res, nil
}

// files lists every file the change writes: the metadata, the extra
// files and (unless noPolicy) the policy.
func (c *Change) files() ([]File, error) {
	metaFiles, err := c.Repo.Files()
	if err != nil {
		return nil, err
	}
	var files []File
	for _, f := range metaFiles {
		files = append(files, File{Path: f.Path, Data: f.Data, Immutable: immutableMeta(f.Path)})
	}
	files = append(files, c.Extra...)
	if !c.NoPolicy {
		pol, err := c.Policy.Marshal()
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: PolicyFile, Data: pol})
	}
	return files, nil
}

// preflightChange runs the preflight on files laid over the repository:
// a change that any client would refuse is refused.
func preflightChange(c *Change, files []File) (*roles.Report, error) {
	overlay := make([]roles.File, len(files))
	for i, f := range files {
		overlay[i] = roles.File{Path: f.Path, Data: f.Data}
	}
	margins := map[string]time.Duration{}
	for _, r := range c.Changed {
		margins[r] = c.Policy.Role(policyRole(c.Policy, r)).Window.D()
	}
	report, err := preflight(c, overlay, roles.VerifyOptions{At: c.At, Margins: margins, CheckTargets: true}) // preflight.go
	if err != nil {
		return nil, err
	}
	if !report.OK {
		return nil, &PreflightError{Problems: report.Problems}
	}
	return report, nil
}

// plannedWrites keeps the files that differ from the disk, sorted by
// path. An immutable file in the way is refused, unless an interrupted
// run of an older version left it and no published timestamp reaches it
// (repair.go): then it is replaced, and a note says so.
func plannedWrites(dir string, files []File) ([]File, []string, error) {
	t, err := openTree(dir)
	if err != nil {
		return nil, nil, err
	}
	defer t.close()
	var write []File
	var notes []string
	var pub *publishedState
	for _, f := range files {
		if err := checkRepoPath(f.Path); err != nil {
			return nil, nil, err
		}
		old, exists, err := t.read(f.Path)
		if err != nil {
			return nil, nil, err
		}
		if exists && bytes.Equal(old, f.Data) {
			continue
		}
		f.beforeKnown = true
		if exists {
			f.before = sha256hex(old)
		}
		if exists && f.Immutable {
			if pub == nil {
				pub = readPublished(dir)
			}
			reason, orphan := pub.orphan(f.Path)
			if !orphan {
				return nil, nil, &ImmutableError{Dir: dir, Path: f.Path}
			}
			f.orphan = true
			notes = append(notes, fmt.Sprintf("replaced %s, left by an interrupted run of an older rootkeeper: %s", f.Path, reason))
		}
		write = append(write, f)
	}
	sort.SliceStable(write, func(i, j int) bool { return write[i].Path < write[j].Path })
	return write, notes, nil
}

// policyRole maps a role to its policy entry (hashed bins share one).
func policyRole(p *Policy, role string) string {
	if _, ok := p.Roles[role]; ok {
		return role
	}
	if prefix, ok := binPolicy(p, role); ok { // delegate.go
		return prefix
	}
	return RoleTargets
}

var versioned = regexp.MustCompile(`^metadata/[0-9]+\.[^/]+\.json$`)

func immutableMeta(p string) bool { return versioned.MatchString(p) }

// targetFiles returns the files a target needs under targets/: with
// consistent snapshots one hash-named copy per listed hash, else the plain
// path.
func targetFiles(consistent bool, name string, tf *metadata.TargetFiles, data []byte) []File {
	if !consistent {
		return []File{{Path: "targets/" + name, Data: data}}
	}
	dir, base := path.Split(name)
	var out []File
	algs := make([]string, 0, len(tf.Hashes))
	for alg := range tf.Hashes {
		algs = append(algs, alg)
	}
	sort.Strings(algs)
	for _, alg := range algs {
		out = append(out, File{Path: "targets/" + dir + hex.EncodeToString(tf.Hashes[alg]) + "." + base, Data: data, Immutable: true})
	}
	return out
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// withLock runs fn with the repository locked, recovered from any
// interrupted change (recoverRepo, which says what it did), the
// transcript checked (its chain, and that the clock is not behind its last
// entry), and its policy and metadata loaded and checked. fn plans the
// change before it opens any device.
func (s *Session) withLock(dir string, fn func(repo *roles.Repo, pol *Policy) error) error {
	return lockAndLoad(dir, s.recovered, s.now, fn)
}

// recovered tells the officer what recovery did.
func (s *Session) recovered(rec *recovery) {
	for _, n := range rec.notes() {
		s.warn(n)
	}
}

// Warner is a UI that shows warnings even when it shows no progress.
type Warner interface{ Warn(msg string) }

func (s *Session) warn(msg string) {
	if w, ok := s.UI.(Warner); ok {
		w.Warn(msg)
		return
	}
	s.progress("warning: %s", msg)
}

// lockAndLoad runs every check that needs no device, in this order, and
// then fn: the lock; for a write (recovered not nil; dry runs write
// nothing) the recovery every change begins with; the transcript's chain
// (and, with a clock, that the clock is not behind its last entry); the
// policy (rootkeeper.yaml, strictly, with every key URI parsed); the
// metadata, whose expiry checks then use the clock. A damaged transcript
// is thus found before any key is opened, not after every key has signed.
func lockAndLoad(dir string, recovered func(*recovery), clock func() time.Time, fn func(repo *roles.Repo, pol *Policy) error) error {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	lock, err := LockRepo(dir)
	if err != nil {
		return err
	}
	defer lock.Unlock(false)
	defer memoTranscripts(dir)() // the transcript parsed once while the lock is held (transcript_memo.go)
	if recovered != nil {
		rec, err := recoverRepo(dir) // journal.go
		if err != nil {
			return err
		}
		recovered(rec)
	}
	var now time.Time
	if clock != nil {
		now = clock()
	}
	old, entries, err := readTranscript(dir, now) // transcript.go
	if err != nil {
		return err
	}
	pol, err := LoadPolicy(dir)
	if err != nil {
		return err
	}
	repo, err := roles.Load(os.DirFS(dir))
	if err != nil {
		return &RepoError{Dir: dir, Detail: "cannot load metadata", Err: err,
			HintText: "run rootkeeper verify --repo " + dir + " to see what is wrong"}
	}
	if err := checkTranscript(dir, recovered != nil); err != nil { // transcript_files.go: anchors, files
		return err
	}
	repo.Now = clock
	repo.Anchor = headAnchor(len(entries), lastLineHash(old)) // every version made carries it (roles/anchor.go)
	return fn(repo, pol)
}

// checkURIs parses every key URI a command was given (--add, --key …)
// before any device is opened: a typo is refused before a PIN is asked.
func checkURIs(uris ...string) error {
	for _, u := range uris {
		if _, err := hsm.ParseURI(u); err != nil {
			return err
		}
	}
	return nil
}

var errCancelled = errors.New("cancelled by the officer: nothing was written")
