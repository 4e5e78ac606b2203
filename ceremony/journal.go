package ceremony

// The commit step: every command that changes a repository writes through
// commitFiles, and every such command begins with recoverRepo. See
// docs/architecture.md, "The write path".
//
// The redo journal (JournalFile) holds the whole change before its first
// file is put in place: each file's bytes and SHA-256, the SHA-256 of the
// file it replaces (the state the change was planned on), what to remove,
// the operation, when it was planned and which roles it changes, and a
// SHA-256 of all of that. Its rename is the commit point. Then the files
// go in place in rank order (store.go: versioned files first, snapshot,
// the transcript entry, a new root, timestamp last), and the journal is
// removed. A run that finds the journal (a crash or a failure interrupted
// the writing) checks it — its checksums, that it names only files
// rootkeeper writes, that every file is either as the change found it or
// as the change leaves it, and that the result passes the preflight — and
// then finishes the change; a journal that was never committed is rolled
// back (its temporary file removed: nothing else had been touched).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// JournalFile holds a change while it is being written (see above).
const JournalFile = ".rootkeeper-journal"

// legacyJournalFile is the journal of rootkeeper versions before the
// checksummed one: JSON, the files' bytes and nothing else. It is still
// finished, after the same path and preflight checks.
const legacyJournalFile = ".rootkeeper-journal.json"

// journalMagic starts the first line of a journal, followed by the
// SHA-256 (hex) of everything after that line.
const journalMagic = "rootkeeper-journal 2 "

// changeset is one all-or-nothing change to a repository: the commit
// step's input. The caller holds the lock and has run the preflight.
type changeset struct {
	op      string    // the operation, for the journal and messages
	at      time.Time // when it was planned: the preflight's time on replay
	changed []string  // roles given new versions (the preflight's policy check)
	files   []File    // files to write or remove
}

// journal is the manifest of a journal file: its second line (JSON); the
// blobs' bytes follow it in order.
type journal struct {
	Operation string         `json:"operation"`
	PlannedAt time.Time      `json:"planned_at"`
	Changed   []string       `json:"changed,omitempty"`
	Files     []journalEntry `json:"files"`
	Blobs     []journalBlob  `json:"blobs"`

	data   map[string][]byte // blob bytes by SHA-256
	legacy bool              // read from legacyJournalFile: no before-state, no checksum
}

type journalEntry struct {
	Path      string `json:"path"`
	Before    string `json:"before,omitempty"` // SHA-256 of the file it replaces, "" if none
	After     string `json:"after,omitempty"`  // SHA-256 of its new bytes, "" when removed
	Immutable bool   `json:"immutable,omitempty"`
	Remove    bool   `json:"remove,omitempty"`
}

func (e journalEntry) file(j *journal) File {
	return File{Path: e.Path, Data: j.data[e.After], Immutable: e.Immutable, Remove: e.Remove}
}

type journalBlob struct {
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

// files returns the change as files to write.
func (j *journal) files() []File {
	out := make([]File, 0, len(j.Files))
	for _, e := range j.Files {
		out = append(out, e.file(j))
	}
	return out
}

func (j *journal) encode() ([]byte, error) {
	manifest, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	body.Write(manifest)
	body.WriteByte('\n')
	for _, b := range j.Blobs {
		body.Write(j.data[b.SHA256])
	}
	sum := sha256.Sum256(body.Bytes())
	out := make([]byte, 0, len(journalMagic)+65+body.Len())
	out = append(out, journalMagic...)
	out = append(out, hex.EncodeToString(sum[:])...)
	out = append(out, '\n')
	return append(out, body.Bytes()...), nil
}

// decodeJournal parses and checks a journal: the checksum of the whole,
// the size and SHA-256 of every blob, and every entry (paths rootkeeper
// writes, each named once, hashes well formed).
func decodeJournal(data []byte) (*journal, error) {
	head, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(head, []byte(journalMagic)) {
		return nil, errors.New("is not a rootkeeper journal (no header line)")
	}
	sum := sha256.Sum256(body)
	if string(head[len(journalMagic):]) != hex.EncodeToString(sum[:]) {
		return nil, errors.New("fails its checksum (it was damaged, or not written by rootkeeper)")
	}
	manifest, rest, _ := bytes.Cut(body, []byte("\n"))
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	var j journal
	if err := dec.Decode(&j); err != nil {
		return nil, errors.New("has a manifest that does not parse")
	}
	j.data = map[string][]byte{}
	for _, b := range j.Blobs {
		if b.Size < 0 || b.Size > len(rest) {
			return nil, errors.New("is shorter than its manifest says")
		}
		blob := rest[:b.Size]
		rest = rest[b.Size:]
		if sha256hex(blob) != b.SHA256 {
			return nil, fmt.Errorf("holds bytes that do not match their SHA-256 %s", short(b.SHA256))
		}
		j.data[b.SHA256] = blob
	}
	if len(rest) != 0 {
		return nil, errors.New("is longer than its manifest says")
	}
	return &j, j.check()
}

// check refuses entries rootkeeper would not have written.
func (j *journal) check() error {
	seen := map[string]bool{}
	for _, e := range j.Files {
		if err := checkRepoPath(e.Path); err != nil {
			return fmt.Errorf("names %q, which rootkeeper never writes", e.Path)
		}
		if seen[e.Path] {
			return fmt.Errorf("names %s twice", e.Path)
		}
		seen[e.Path] = true
		if _, ok := j.data[e.After]; (e.Remove && e.After != "") || (!e.Remove && !ok) {
			return fmt.Errorf("has no bytes for %s", e.Path)
		}
		if e.Before != "" && !isSHA256(e.Before) {
			return fmt.Errorf("has a malformed hash for %s", e.Path)
		}
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && strings.ToLower(s) == s
}

// committed is what commitFiles did when the change was published.
type committed struct {
	written  []string
	warnings []string // a failure after the publish point (the next run completes it)
}

// CommitError is a change that could not be written. Published is never
// true here: a failure after the publish point is a warning instead.
type CommitError struct {
	Dir       string
	Err       error
	Journaled bool // the journal was committed: the next run finishes the change
}

func (e *CommitError) Error() string {
	if !e.Journaled {
		return e.Err.Error() + "; nothing was written"
	}
	return e.Err.Error() + "; not published: clients still see the previous state, and the change is kept in " + JournalFile + " for the next rootkeeper command on this repository to finish"
}

// Unwrap returns the cause.
func (e *CommitError) Unwrap() error { return e.Err }

// Hint says what to do.
func (e *CommitError) Hint() string {
	h := ""
	var ie *IOError
	if errors.As(e.Err, &ie) {
		h = ie.Hint()
	}
	if !e.Journaled {
		return h
	}
	next := "then run any rootkeeper command that writes to the repository (rootkeeper repair --repo " + e.Dir + " needs no device) to finish the change"
	if h == "" {
		return "fix the cause; " + next
	}
	return h + "; " + next
}

// commitFiles writes cs into the repository in dir through the journal:
// all of it, or (before the journal is committed) nothing. The caller
// holds the lock and has run the preflight. A failure after the publish
// point (a new root or timestamp.json in place) is reported as a warning:
// the change is visible, and the journal left behind lets the next run
// complete it.
func commitFiles(dir string, cs *changeset) (*committed, error) {
	t, err := openTree(dir)
	if err != nil {
		return nil, err
	}
	defer t.close()
	j, err := planJournal(t, cs)
	if err != nil {
		return nil, err
	}
	done := &committed{}
	for _, e := range j.Files {
		done.written = append(done.written, e.Path)
	}
	if len(j.Files) == 0 {
		return done, nil
	}
	if journaled, err := writeJournal(t, j); err != nil {
		return nil, &CommitError{Dir: dir, Err: err, Journaled: journaled}
	}
	if err := t.apply(j.files()); err != nil {
		var ae *applyError
		if errors.As(err, &ae) && ae.published {
			done.warnings = append(done.warnings, fmt.Sprintf("the %s is published, but %v; the journal is kept and the next rootkeeper command on this repository completes it", cs.op, ae.err))
			return done, nil
		}
		return nil, &CommitError{Dir: dir, Err: err, Journaled: true}
	}
	if err := clearJournal(t); err != nil {
		done.warnings = append(done.warnings, fmt.Sprintf("the %s is complete, but %v; the next rootkeeper command on this repository removes the journal", cs.op, err))
	}
	return done, nil
}

// planJournal records, for each file, what it replaces; files already as
// the change leaves them are left out. A file in the way (a link, an
// immutable file with other bytes) stops it before anything is written.
func planJournal(t *tree, cs *changeset) (*journal, error) {
	j := &journal{Operation: cs.op, PlannedAt: cs.at.UTC(), Changed: cs.changed, data: map[string][]byte{}}
	seen := map[string]bool{}
	for _, f := range cs.files {
		if err := checkRepoPath(f.Path); err != nil {
			return nil, err
		}
		if seen[f.Path] {
			return nil, &IOError{Op: "write", Path: f.Path, Err: errors.New("named twice in one change")}
		}
		seen[f.Path] = true
		e := journalEntry{Path: f.Path, Immutable: f.Immutable, Remove: f.Remove, Before: f.before}
		exists, same := f.before != "", false
		if !f.beforeKnown {
			cur, found, err := t.read(f.Path)
			if err != nil {
				return nil, err
			}
			if exists = found; found {
				e.Before, same = sha256hex(cur), bytes.Equal(cur, f.Data)
			}
		}
		switch {
		case f.Remove && !exists, !f.Remove && same:
			continue
		case f.Immutable && exists && !f.orphan:
			return nil, &ImmutableError{Dir: t.dir, Path: f.Path}
		case !f.Remove:
			e.After = sha256hex(f.Data)
			if _, dup := j.data[e.After]; !dup {
				j.data[e.After] = f.Data
				j.Blobs = append(j.Blobs, journalBlob{SHA256: e.After, Size: len(f.Data)})
			}
		}
		j.Files = append(j.Files, e)
	}
	if err := checkRemovals(t.dir, j); err != nil {
		return nil, &IOError{Op: "remove", Path: t.dir, Err: err}
	}
	return j, nil
}

// ImmutableError is an immutable file (a published version, a hash-named
// target) that exists with other bytes than the change would write.
type ImmutableError struct{ Dir, Path string }

func (e *ImmutableError) Error() string {
	return fmt.Sprintf("cannot write %s: an immutable file already exists with other contents (was the repository changed behind rootkeeper's back?)", e.Path)
}

// Hint says what to do.
func (e *ImmutableError) Hint() string {
	return "rootkeeper repair --repo " + e.Dir + " --dry-run shows whether an interrupted run left it (it removes only what no published timestamp reaches)"
}

// writeJournal writes the journal durably: the commit point. When its
// directory cannot be synced, the journal is taken back, so that an error
// with journaled false always means nothing was written.
func writeJournal(t *tree, j *journal) (journaled bool, err error) {
	data, err := j.encode()
	if err != nil {
		return false, err
	}
	tmp, err := t.writeTemp(JournalFile, data)
	if err != nil {
		return false, err
	}
	if err := t.put(tmp, JournalFile); err != nil {
		return false, err
	}
	if err := t.syncDir("."); err != nil {
		// Take it back; if even that fails, the next run finishes it.
		return t.remove(JournalFile) != nil, err
	}
	return true, nil
}

// clearJournal removes the journal durably: a journal that came back
// after a crash would be applied over a later change (its before-state
// check would then refuse it).
func clearJournal(t *tree) error {
	if err := t.remove(JournalFile); err != nil {
		return err
	}
	return t.syncDir(".")
}

// JournalError is a journal that recovery refuses to apply. Nothing was
// written.
type JournalError struct {
	Dir, File, Detail string
}

func (e *JournalError) Error() string {
	return fmt.Sprintf("repository %s: the journal of an interrupted change (%s) %s; nothing was written", e.Dir, e.File, e.Detail)
}

// Hint says what to do.
func (e *JournalError) Hint() string {
	return "rootkeeper did not write it as it is now (or the repository changed since): check the repository with rootkeeper verify --repo " + e.Dir +
		", then move " + e.File + " out of the repository (keep it for the investigation) and run again"
}

// readJournal reads the pending journal, if any, and checks it.
func readJournal(t *tree) (*journal, string, error) {
	data, exists, err := t.read(JournalFile)
	if err != nil {
		return nil, JournalFile, err
	}
	if exists {
		if _, legacy, _ := t.read(legacyJournalFile); legacy {
			return nil, JournalFile, &JournalError{Dir: t.dir, File: JournalFile, Detail: "is there together with " + legacyJournalFile}
		}
		j, err := decodeJournal(data)
		if err != nil {
			return nil, JournalFile, &JournalError{Dir: t.dir, File: JournalFile, Detail: err.Error()}
		}
		return j, JournalFile, nil
	}
	data, exists, err = t.read(legacyJournalFile)
	if err != nil || !exists {
		return nil, legacyJournalFile, err
	}
	j, err := decodeLegacy(data)
	if err != nil {
		return nil, legacyJournalFile, &JournalError{Dir: t.dir, File: legacyJournalFile, Detail: err.Error()}
	}
	if fi, err := t.root.Lstat(legacyJournalFile); err == nil {
		j.PlannedAt = fi.ModTime().UTC()
	}
	return j, legacyJournalFile, nil
}

// decodeLegacy reads the journal of older versions (no checksum, no
// before-state, no time): it gets the same path checks and preflight.
func decodeLegacy(data []byte) (*journal, error) {
	var doc struct {
		Version int `json:"version"`
		Files   []struct {
			Path      string `json:"path"`
			Data      []byte `json:"data"`
			Immutable bool   `json:"immutable,omitempty"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Version != 1 {
		return nil, errors.New("is damaged: it is neither a journal of this version nor of an older one")
	}
	j := &journal{Operation: "change", legacy: true, data: map[string][]byte{}}
	for _, f := range doc.Files {
		sum := sha256hex(f.Data)
		j.data[sum] = f.Data
		j.Files = append(j.Files, journalEntry{Path: f.Path, After: sum, Immutable: f.Immutable})
	}
	return j, j.check()
}

// pending is a journal that recovery found and checked.
type pending struct {
	j    *journal
	name string // JournalFile or legacyJournalFile
	todo []File // files not yet as the change leaves them
}

func (p *pending) String() string {
	return fmt.Sprintf("the %s that was interrupted (planned %s; %d of its %d files still to write)",
		p.j.Operation, p.j.PlannedAt.Format(time.RFC3339), len(p.todo), len(p.j.Files))
}

// inspectJournal reads the pending journal, if any (nil if none), and
// checks that every file it names is either as the change found it or as
// it leaves it, and that the result passes the preflight (as of when the
// change was planned).
func inspectJournal(t *tree) (*pending, error) {
	j, name, err := readJournal(t)
	if err != nil || j == nil {
		return nil, err
	}
	refuse := func(format string, a ...any) error {
		return &JournalError{Dir: t.dir, File: name, Detail: fmt.Sprintf(format, a...)}
	}
	p := &pending{j: j, name: name}
	for _, e := range j.Files {
		state, err := fileState(t, j, e)
		if err != nil {
			return nil, err
		}
		switch state {
		case "neither":
			return nil, refuse("names %s, which is neither the file the change was planned on nor its result (the repository changed after the interruption)", e.Path)
		case "before":
			p.todo = append(p.todo, e.file(j))
		}
	}
	if len(p.todo) > 0 {
		if err := checkRemovals(t.dir, j); err != nil {
			return nil, refuse("%v", err)
		}
		if err := checkJournalResult(t, j); err != nil {
			return nil, refuse("%v", err)
		}
	}
	return p, nil
}

// checkRemovals refuses a removal rootkeeper would not make: it removes a
// key record only with its copy under keys/retired/ in the same change,
// and (repair) versioned metadata and hash-named targets only when no
// published timestamp reaches them.
func checkRemovals(dir string, j *journal) error {
	writes := map[string]string{}
	for _, e := range j.Files {
		if !e.Remove {
			writes[e.Path] = e.After
		}
	}
	o := &orphanCheck{dir: dir}
	for _, e := range j.Files {
		if !e.Remove {
			continue
		}
		if path.Dir(e.Path) == "keys" && e.Before != "" && retiredCopy(dir, writes, path.Base(e.Path)) == e.Before {
			continue // a retired key record, copied with the change (or before it)
		}
		if j.Operation == "repair" && o.unreachable(e.Path) {
			continue
		}
		return fmt.Errorf("would remove %s, which rootkeeper removes only when it is a key record moved to keys/retired/ or a file no published timestamp reaches", e.Path)
	}
	return nil
}

// retiredCopy is the SHA-256 of keys/retired/NAME as the change leaves it.
func retiredCopy(dir string, writes map[string]string, name string) string {
	if h, ok := writes["keys/retired/"+name]; ok {
		return h
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keys", "retired", name)); err == nil {
		return sha256hex(b)
	}
	return ""
}

// recoverJournal finishes the change of a pending journal once
// inspectJournal has passed it, and removes the journal. It returns what
// it did ("" when there was no journal).
func recoverJournal(t *tree) (string, error) {
	p, err := inspectJournal(t)
	if err != nil || p == nil {
		return "", err
	}
	if len(p.todo) > 0 {
		if err := t.apply(p.todo); err != nil {
			return "", &RepoError{Dir: t.dir, Detail: "cannot finish the " + p.j.Operation + " a crash interrupted", Err: err,
				HintText: "fix the cause and run again; the change is kept in " + p.name}
		}
	}
	if err := t.remove(p.name); err != nil {
		return "", err
	}
	if err := t.syncDir("."); err != nil {
		return "", err
	}
	return "finished " + p.String(), nil
}

// fileState says whether the file of e is as the change found it
// ("before"), as it leaves it ("after"), or "neither". A legacy journal
// has no before-state: any file not yet at its result counts as before,
// but an immutable file with other bytes is never overwritten.
func fileState(t *tree, j *journal, e journalEntry) (string, error) {
	cur, exists, err := t.read(e.Path)
	if err != nil {
		return "", err
	}
	h := ""
	if exists {
		h = sha256hex(cur)
	}
	switch {
	case e.Remove && !exists, !e.Remove && exists && h == e.After:
		return "after", nil
	case j.legacy && !(e.Immutable && exists):
		return "before", nil
	case !j.legacy && (h == e.Before):
		return "before", nil
	}
	return "neither", nil
}

// checkJournalResult runs the preflight on the journal's result, as of
// when it was planned, and checks that its transcript continues the one
// on disk.
func checkJournalResult(t *tree, j *journal) error {
	var overlay []roles.File
	for _, f := range j.files() {
		if f.Remove {
			continue
		}
		if f.Path == TranscriptFile {
			if err := checkTranscriptContinues(t, f.Data); err != nil {
				return err
			}
		}
		overlay = append(overlay, roles.File{Path: f.Path, Data: f.Data})
	}
	if len(overlay) == 0 || (len(overlay) == 1 && overlay[0].Path == TranscriptFile) {
		return nil // only removals (checkRemovals) and the transcript: clients see no change
	}
	at := j.PlannedAt
	if at.IsZero() {
		at = time.Now()
	}
	rep, err := preflightFiles(t.dir, overlay, roles.VerifyOptions{At: at, CheckTargets: true}, j.Changed)
	if err != nil {
		return fmt.Errorf("would give a repository that cannot be checked: %v", err)
	}
	if !rep.OK {
		lines := make([]string, 0, len(rep.Problems))
		for _, p := range rep.Problems {
			lines = append(lines, problemLine(p))
		}
		return fmt.Errorf("would give a repository that the preflight refuses: %s", strings.Join(lines, "; "))
	}
	return nil
}

// checkTranscriptContinues refuses a transcript that is not the one on
// disk with entries appended, or whose chain is broken.
func checkTranscriptContinues(t *tree, data []byte) error {
	cur, _, err := t.read(TranscriptFile)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(data, cur) {
		return errors.New("would rewrite the transcript instead of appending to it")
	}
	if _, err := ParseTranscript(data); err != nil {
		return fmt.Errorf("would give a damaged transcript: %v", err)
	}
	return nil
}

// pendingJournal reports whether dir has a journal to finish.
func pendingJournal(dir string) bool {
	for _, name := range []string{JournalFile, legacyJournalFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// recovery is what recoverRepo did.
type recovery struct {
	temps   []string // temporary files removed
	journal string   // what was done with a pending journal, "" if none
}

// notes says what recovery did, for the officer.
func (r *recovery) notes() []string {
	var out []string
	if len(r.temps) > 0 {
		out = append(out, fmt.Sprintf("removed %d temporary %s left by an interrupted run: %s", len(r.temps), map[bool]string{true: "file", false: "files"}[len(r.temps) == 1], listSome(r.temps, 5)))
	}
	if r.journal != "" {
		out = append(out, r.journal)
	}
	return out
}

// listSome lists the first n names and how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// recoverRepo runs before every change, under the lock and before any
// device is opened: it refuses a repository with a link where rootkeeper
// writes, or whose directory or metadata/ it cannot write, removes the temporary files of interrupted writes anywhere in
// it, and finishes (or, if it was never committed, rolls back) the change
// a crash interrupted.
func recoverRepo(dir string) (*recovery, error) {
	temps, err := scanRepo(dir)
	if err != nil {
		return nil, err
	}
	// Every change writes into the repository's directory (the journal,
	// the transcript) and into metadata/: fail now, before any device.
	for _, d := range []string{".", "metadata"} {
		if fi, err := os.Lstat(filepath.Join(dir, d)); err == nil && fi.IsDir() {
			if err := checkWritable(filepath.Join(dir, d)); err != nil {
				return nil, &CommitError{Dir: dir, Err: err}
			}
		}
	}
	t, err := openTree(dir)
	if err != nil {
		return nil, err
	}
	defer t.close()
	rec := &recovery{}
	synced := map[string]bool{}
	for _, p := range temps {
		if err := t.remove(p); err != nil {
			return nil, err
		}
		rec.temps = append(rec.temps, p)
		if d := filepath.Dir(p); !synced[d] {
			synced[d] = true
			if err := t.syncDir(d); err != nil {
				return nil, err
			}
		}
	}
	if rec.journal, err = recoverJournal(t); err != nil {
		return nil, err
	}
	return rec, nil
}

// RecoverJournal runs the recovery every writing command runs first (see
// recoverRepo) on dir, whose lock the caller holds, and returns what it
// did.
func RecoverJournal(dir string) ([]string, error) {
	rec, err := recoverRepo(dir)
	if err != nil {
		return nil, err
	}
	return rec.notes(), nil
}

// scanRepo checks the parts of dir rootkeeper writes for links and
// special files (refused) and lists the temporary files of interrupted
// writes: at the top level and anywhere under metadata/, targets/ and
// keys/. Links to files inside targets/ are left to the write, which
// refuses one it would write through.
func scanRepo(dir string) ([]string, error) {
	for _, name := range []string{"metadata", "targets", "keys", PolicyFile, TranscriptFile, JournalFile, legacyJournalFile} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, &IOError{Op: "read", Path: name, Err: err}
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, &LinkError{Dir: dir, Path: name, What: "a symbolic link"}
		case fi.IsDir() != (name == "metadata" || name == "targets" || name == "keys"):
			return nil, &LinkError{Dir: dir, Path: name, What: "not a regular file or directory as expected"}
		case !fi.IsDir() && !fi.Mode().IsRegular():
			return nil, &LinkError{Dir: dir, Path: name, What: "not a regular file"}
		}
	}
	var temps []string
	top, err := os.ReadDir(dir)
	if err != nil {
		return nil, &IOError{Op: "read", Path: dir, Err: err}
	}
	for _, e := range top {
		if isTemp(e.Name()) && e.Type().IsRegular() {
			temps = append(temps, e.Name())
		}
	}
	for _, sub := range []string{"metadata", "keys", "targets"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == filepath.Join(dir, sub) {
				return fs.SkipDir
			}
			if err != nil {
				return &IOError{Op: "read", Path: p, Err: err}
			}
			rel, _ := filepath.Rel(dir, p)
			rel = filepath.ToSlash(rel)
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				if fi, err := os.Stat(p); sub != "targets" || (err == nil && fi.IsDir()) {
					return &LinkError{Dir: dir, Path: rel, What: "a symbolic link"}
				}
			case d.Type().IsRegular() && isTemp(d.Name()):
				temps = append(temps, rel)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return temps, nil
}
