package ceremony

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// TranscriptFile is the repository's ceremony transcript: one JSON object a
// line, each naming the hash of the line before it, so that removing,
// reordering or editing an entry breaks the chain.
const TranscriptFile = "transcript.jsonl"

// Entry is one ceremony in the transcript.
type Entry struct {
	Seq       int       `json:"seq"`
	Time      time.Time `json:"time"`
	Operation string    `json:"operation"`
	Operator  string    `json:"operator,omitempty"`
	Host      string    `json:"host,omitempty"`
	// Version is the rootkeeper that wrote the entry: module version and
	// VCS revision (see Version).
	Version string `json:"rootkeeper_version,omitempty"`
	// Schema is the entry format: 0 (absent) for entries written before
	// the anchored transcript, TranscriptSchema since (transcript_entry.go).
	Schema int `json:"schema,omitempty"`
	// Repository is "sha256:HEX" of the repository's metadata/1.root.json:
	// an entry copied from another repository names another one.
	Repository string         `json:"repository,omitempty"`
	Details    map[string]any `json:"details,omitempty"`
	// Anchor is the transcript head the change's metadata carries in its
	// signed object (roles.AnchorField): the entry before this one.
	Anchor *roles.Anchor `json:"anchor,omitempty"`
	// Signed lists every metadata file the change wrote, the digest of its
	// signed payload and every signature on it.
	Signed  []SignedRecord    `json:"signed,omitempty"`
	Files   map[string]string `json:"files"`             // path → SHA-256 of what was written
	Removed []string          `json:"removed,omitempty"` // paths the change removed
	Prev    string            `json:"prev"`              // SHA-256 of the previous line, "" for the first
}

// ClockError reports a clock earlier than the transcript's last entry:
// entries are in time order, so a write at that time is refused.
type ClockError struct {
	Now, Last time.Time
	Seq       int
	Host      string
}

func (e *ClockError) Error() string {
	by := ""
	if e.Host != "" {
		by = " on " + e.Host
	}
	return fmt.Sprintf("the clock went backwards: it says %s, but transcript entry %d was written at %s%s (%s later); nothing was written",
		e.Now.UTC().Format(time.RFC3339), e.Seq, e.Last.UTC().Format(time.RFC3339), by, Human(e.Last.Sub(e.Now)))
}

// Hint says what to do.
func (e *ClockError) Hint() string {
	return "check this machine's clock (timedatectl status; is NTP on?) and the time zone, then run again; the transcript's entries must be in time order"
}

// readTranscript reads dir's transcript and checks its chain and, when
// now is not zero, that no entry is later than now (a write at now would
// put the transcript out of order). It returns the file and its entries.
func readTranscript(dir string, now time.Time) ([]byte, []Entry, error) {
	old, err := os.ReadFile(filepath.Join(dir, TranscriptFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, &IOError{Op: "read", Path: TranscriptFile, Err: err}
	}
	entries, err := parseTranscriptIn(dir, old) // once per change: transcript_memo.go
	if err != nil {
		return nil, nil, &RepoError{Dir: dir, Detail: "the ceremony transcript is damaged", Err: err,
			HintText: "the transcript is tamper-evident: run rootkeeper transcript verify --repo " + dir + " and find out who changed " + TranscriptFile + " before going on; nothing was opened or written"}
	}
	// Whole seconds: metadata times are (re-signing truncates its clock),
	// and two runs within one second are in order.
	if n := len(entries); n > 0 && !now.IsZero() && now.Truncate(time.Second).Before(entries[n-1].Time.Truncate(time.Second)) {
		last := entries[n-1]
		return nil, nil, &ClockError{Now: now, Last: last.Time, Seq: last.Seq, Host: last.Host}
	}
	return old, entries, nil
}

// appendTranscript returns the transcript file with an entry for this
// change appended.
func appendTranscript(dir string, now time.Time, op string, details map[string]any, written []File, opts ...entryOption) (File, error) {
	old, entries, err := readTranscript(dir, now)
	if err != nil {
		return File{}, err
	}
	e := Entry{Seq: len(entries) + 1, Time: now, Operation: op, Version: Version(), Schema: TranscriptSchema, Details: details, Files: map[string]string{}}
	if u, err := user.Current(); err == nil {
		e.Operator = u.Username
	}
	e.Host, _ = os.Hostname()
	for _, f := range written {
		if f.Remove {
			e.Removed = append(e.Removed, f.Path)
			continue
		}
		e.Files[f.Path] = sha256hex(f.Data)
	}
	e.Prev = lastLineHash(old)
	e.Anchor = headAnchor(len(entries), e.Prev)
	if err := recordSigned(dir, &e, written, opts...); err != nil { // transcript_entry.go
		return File{}, err
	}
	line, err := json.Marshal(e)
	if err != nil {
		return File{}, err
	}
	data := append(append([]byte{}, old...), line...)
	return File{Path: TranscriptFile, Data: append(data, '\n')}, nil
}

// ParseTranscript parses a transcript and checks its chain.
func ParseTranscript(data []byte) ([]Entry, error) {
	entries, _, err := parseTranscript(data) // transcript_memo.go
	return entries, err
}
