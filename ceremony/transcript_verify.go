package ceremony

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// TranscriptProblem is one thing transcript verify found wrong.
type TranscriptProblem struct {
	// Check is what failed: chain, order, clock, format, repository,
	// anchor, files, accounted or journal.
	Check  string `json:"check"`
	Seq    int    `json:"seq,omitempty"`  // the entry, when one is at fault
	Path   string `json:"path,omitempty"` // the file, when one is at fault
	Detail string `json:"detail"`
	Hint   string `json:"hint,omitempty"`

	anchor *roles.Anchor // of an anchor problem: orders them
}

// TranscriptReport is the verdict of transcript verify on one repository.
type TranscriptReport struct {
	Repository string `json:"repository"`
	OK         bool   `json:"ok"`
	// Identity is "sha256:HEX" of metadata/1.root.json.
	Identity string `json:"identity,omitempty"`
	Entries  int    `json:"entries"`
	// Head is "sha256:HEX" of the last entry's line: what the officers
	// write down on paper.
	Head string `json:"head,omitempty"`
	// Legacy counts the entries written before the anchored format.
	Legacy int `json:"legacy_entries"`
	// AnchoredThrough is the highest entry a signed anchor names: the
	// signatures on that metadata vouch for entries 1 to it.
	AnchoredThrough int `json:"anchored_through"`
	// Unanchored lists the entries no signature covers yet: the last
	// change's own entry, and what came after it without new metadata.
	Unanchored []int `json:"unanchored"`
	// MetadataFiles counts the files of metadata/ checked.
	MetadataFiles int                 `json:"metadata_files"`
	Problems      []TranscriptProblem `json:"problems"`
	Warnings      []string            `json:"warnings,omitempty"`
}

// TranscriptError is a repository whose transcript does not verify: every
// change refuses it before any device is opened.
type TranscriptError struct {
	Dir     string
	Problem TranscriptProblem
}

func (e *TranscriptError) Error() string {
	return fmt.Sprintf("repository %s: the ceremony transcript does not verify: %s; nothing was opened or written", e.Dir, e.Problem.Detail)
}

// Hint says what to do.
func (e *TranscriptError) Hint() string {
	return "run rootkeeper transcript verify --repo " + e.Dir + " for the whole report, and find out who changed the repository before going on"
}

// diskFile is a file of metadata/ as it is now.
type diskFile struct {
	hash    string
	payload string // of its signed object, when it is metadata
	anchor  *roles.Anchor
	err     error // not metadata rootkeeper can read
}

// fileWrite is one entry's write of a file.
type fileWrite struct {
	seq     int
	hash    string
	payload string // of the signed object, as the entry records it ("" in old entries)
}

// matches reports whether f is what w wrote: the same bytes, or the same
// signed payload (a file reformatted, its signed content untouched).
func (w fileWrite) matches(f diskFile) bool {
	return w.hash == f.hash || (w.payload != "" && w.payload == f.payload)
}

// transcriptCheck holds what VerifyTranscript has read.
type transcriptCheck struct {
	dir      string
	rep      *TranscriptReport
	entries  []Entry
	hashes   []string // hashes[i]: SHA-256 of entry i+1's line
	disk     map[string]diskFile
	writes   map[string][]fileWrite // path → every write, in order
	removed  map[string]int         // path → the last entry that removed it
	orphans  *orphanCheck
	problems []TranscriptProblem
}

func (c *transcriptCheck) problem(p TranscriptProblem) {
	p.Hint = strings.ReplaceAll(p.Hint, "--repo DIR", "--repo "+c.dir)
	c.problems = append(c.problems, p)
}

// VerifyTranscript checks dir's transcript offline, with no device: its
// chain and time order; that it belongs to this repository; that every
// anchor in the metadata names the entry it was made on; that every file
// of metadata/ is accounted for by the entry that wrote it, and every
// file an entry wrote is there unless a later entry replaced or removed
// it. Problems are listed in that order; the first one is the verdict.
func VerifyTranscript(dir string) (*TranscriptReport, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	c := &transcriptCheck{dir: dir, rep: &TranscriptReport{Repository: dir, Unanchored: []int{}},
		writes: map[string][]fileWrite{}, removed: map[string]int{}, orphans: &orphanCheck{dir: dir}}
	if pendingJournal(dir) {
		c.problem(TranscriptProblem{Check: "journal", Detail: "an interrupted change is pending (" + JournalFile + "): its files are not all in place yet",
			Hint: "run rootkeeper repair --repo " + dir + " to finish it, then verify again"})
		return c.finish(), nil
	}
	data, err := os.ReadFile(filepath.Join(dir, TranscriptFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, &IOError{Op: "read", Path: TranscriptFile, Err: err}
	}
	if p := memoOf(dir, data); p != nil {
		// The change already parsed exactly these bytes, which passed the
		// same line, number and chain checks as parse's (transcript_memo.go).
		c.entries, c.hashes = p.entries, p.hashes
	} else if !c.parse(data) {
		return c.finish(), nil
	}
	c.collectWrites()
	if err := c.readMetadata(); err != nil {
		return nil, err
	}
	c.checkEntries()
	c.checkIdentity()
	c.checkAnchors()
	c.checkWritten()
	c.checkAccounted()
	return c.finish(), nil
}

func (c *transcriptCheck) finish() *TranscriptReport {
	c.rep.Problems = c.problems
	if c.rep.Problems == nil {
		c.rep.Problems = []TranscriptProblem{}
	}
	c.rep.OK = len(c.problems) == 0
	c.rep.Entries = len(c.entries)
	if n := len(c.hashes); n > 0 {
		c.rep.Head = "sha256:" + c.hashes[n-1]
	}
	return c.rep
}

var chainHint = "the transcript is tamper-evident: compare it with a copy or the paper log, and find out who changed " + TranscriptFile

// parse reads the lines and checks their numbers and chain; it stops at
// the first break (nothing after it can be trusted) and says which.
func (c *transcriptCheck) parse(data []byte) bool {
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, min(len(data)+1, 64<<10)), 64<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte{}, sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		c.problem(TranscriptProblem{Check: "chain", Detail: "cannot read " + TranscriptFile + ": " + err.Error(), Hint: chainHint})
		return false
	}
	prev := ""
	for i, line := range lines {
		n := i + 1
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			c.problem(TranscriptProblem{Check: "chain", Seq: n, Detail: fmt.Sprintf("line %d is not a transcript entry (%s)", n, excerpt(err.Error(), 80)), Hint: chainHint})
			return false
		}
		if e.Seq != n {
			c.problem(TranscriptProblem{Check: "chain", Seq: n, Detail: seqProblem(n, e.Seq, lines[i+1:]), Hint: chainHint})
			return false
		}
		if e.Prev != prev {
			c.problem(TranscriptProblem{Check: "chain", Seq: n, Detail: fmt.Sprintf("entry %d does not continue entry %d: entry %d was changed after entry %d was written (its line hashes to %s, entry %d names %s)",
				n, n-1, n-1, n, short(prev), n, short(e.Prev)), Hint: chainHint})
			return false
		}
		prev = sha256hex(line)
		c.entries = append(c.entries, e)
		c.hashes = append(c.hashes, prev)
	}
	return true
}

// seqProblem says what a line numbered got instead of want means.
func seqProblem(want, got int, rest [][]byte) string {
	next := 0
	if len(rest) > 0 {
		var e Entry
		if json.Unmarshal(rest[0], &e) == nil {
			next = e.Seq
		}
	}
	switch {
	case got == want+1 && next == want:
		return fmt.Sprintf("entries %d and %d are swapped (line %d is entry %d)", want, want+1, want, got)
	case got > want:
		return fmt.Sprintf("entry %d is missing (line %d is entry %d): %s removed", want, want, got, plural(got-want, "an entry was", "entries were"))
	default:
		return fmt.Sprintf("line %d is entry %d again, expected entry %d: entries were moved or copied", want, got, want)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkEntries checks time order and that no old-format entry follows a
// new one (rewriting entries as legacy would dodge their checks).
func (c *transcriptCheck) checkEntries() {
	firstNew := 0
	for i, e := range c.entries {
		if e.Schema == 0 {
			c.rep.Legacy++
			if firstNew > 0 {
				c.problem(TranscriptProblem{Check: "format", Seq: e.Seq, Detail: fmt.Sprintf("entry %d is in the old format, after entry %d in the anchored one: rootkeeper never writes that, so the entry was rewritten", e.Seq, firstNew), Hint: chainHint})
			}
		} else if firstNew == 0 {
			firstNew = e.Seq
		}
		if i > 0 && e.Time.Truncate(time.Second).Before(c.entries[i-1].Time.Truncate(time.Second)) {
			c.problem(TranscriptProblem{Check: "clock", Seq: e.Seq, Detail: fmt.Sprintf("entry %d was written at %s, before entry %d (%s): entries are always in time order",
				e.Seq, e.Time.UTC().Format(time.RFC3339), e.Seq-1, c.entries[i-1].Time.UTC().Format(time.RFC3339)), Hint: chainHint})
		}
	}
}

// checkIdentity checks that the transcript is this repository's: each
// entry's repository, and what the first entry wrote as 1.root.json.
func (c *transcriptCheck) checkIdentity() {
	root1, ok := c.disk["metadata/1.root.json"]
	if !ok {
		if len(c.entries) > 0 {
			c.problem(TranscriptProblem{Check: "repository", Path: "metadata/1.root.json", Detail: "metadata/1.root.json is missing: the repository has no identity to check the transcript against"})
		}
		return
	}
	c.rep.Identity = "sha256:" + root1.hash
	hint := "a transcript belongs to the repository whose metadata/1.root.json it names: was " + TranscriptFile + " copied from another repository?"
	for _, e := range c.entries {
		if e.Repository != "" && e.Repository != c.rep.Identity {
			c.problem(TranscriptProblem{Check: "repository", Seq: e.Seq, Detail: fmt.Sprintf("entry %d belongs to another repository: it names %s, this repository's metadata/1.root.json is %s", e.Seq, short(strings.TrimPrefix(e.Repository, "sha256:")), short(root1.hash)), Hint: hint})
			return
		}
		if h, ok := e.Files["metadata/1.root.json"]; ok && h != root1.hash {
			c.problem(TranscriptProblem{Check: "repository", Seq: e.Seq, Path: "metadata/1.root.json", Detail: fmt.Sprintf("entry %d wrote another metadata/1.root.json (%s) than this repository's (%s)", e.Seq, short(h), short(root1.hash)), Hint: hint})
			return
		}
	}
}

// readMetadata hashes every file of metadata/ and reads its anchor.
func (c *transcriptCheck) readMetadata() error {
	c.disk = map[string]diskFile{}
	des, err := os.ReadDir(filepath.Join(c.dir, roles.MetadataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &IOError{Op: "read", Path: roles.MetadataDir, Err: err}
	}
	for _, d := range des {
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".json") || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		p := roles.MetadataDir + "/" + d.Name()
		f, data, err := readMetadataFile(filepath.Join(c.dir, roles.MetadataDir, d.Name()))
		if err != nil {
			return &IOError{Op: "read", Path: p, Err: err}
		}
		switch {
		case data == nil:
			f.err = fmt.Errorf("larger than any metadata a client reads")
		case c.wroteBytes(p, f.hash):
			f.anchor, f.err = roles.ReadAnchor(data)
		default: // not the bytes written: is it the payload written?
			if info, err := roles.ReadSigned(data); err != nil {
				f.err = err
			} else {
				f.anchor, f.payload = info.Anchor, info.Payload
			}
		}
		c.disk[p] = f
	}
	c.rep.MetadataFiles = len(c.disk)
	return nil
}

// maxMetadataRead is the largest metadata file read whole: 4 times the
// largest any client accepts (targets, 5 MB); a larger one is only hashed.
const maxMetadataRead = 20 << 20

// readMetadataFile hashes a file of metadata/ and returns its bytes, or
// nil bytes for a file too large to be metadata (hashed as it streams).
func readMetadataFile(path string) (diskFile, []byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return diskFile{}, nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return diskFile{}, nil, err
	}
	if fi.Size() > maxMetadataRead {
		h := sha256.New()
		if _, err := io.Copy(h, fh); err != nil {
			return diskFile{}, nil, err
		}
		return diskFile{hash: hex.EncodeToString(h.Sum(nil))}, nil, nil
	}
	data, err := io.ReadAll(fh)
	if err != nil {
		return diskFile{}, nil, err
	}
	return diskFile{hash: sha256hex(data)}, data, nil
}

// collectWrites gathers every write and removal the entries record
// (removals: the removed list, or details.removed of an old repair).
func (c *transcriptCheck) collectWrites() {
	for _, e := range c.entries {
		payloads := map[string]string{}
		for _, s := range e.Signed {
			payloads[s.Path] = s.Payload
		}
		for _, p := range sortedFiles(e.Files) {
			c.writes[p] = append(c.writes[p], fileWrite{seq: e.Seq, hash: e.Files[p], payload: payloads[p]})
		}
		for _, p := range e.Removed {
			c.removed[p] = e.Seq
		}
		if e.Schema == 0 && e.Operation == "repair" {
			if list, ok := e.Details["removed"].([]any); ok {
				for _, v := range list {
					if p, ok := v.(string); ok {
						c.removed[p] = e.Seq
					}
				}
			}
		}
	}
}

func sortedFiles(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// wroteBytes reports whether an entry wrote exactly these bytes at path.
func (c *transcriptCheck) wroteBytes(path, hash string) bool {
	for _, w := range c.writes[path] {
		if w.hash == hash {
			return true
		}
	}
	return false
}

// writer is the last entry that wrote f at path, 0 if none did.
func (c *transcriptCheck) writer(path string, f diskFile) int {
	ws := c.writes[path]
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].matches(f) {
			return ws[i].seq
		}
	}
	return 0
}
