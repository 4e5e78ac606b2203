package ceremony

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// TranscriptFile is the repository's ceremony transcript: one JSON object a
// line, each naming the hash of the line before it, so that removing,
// reordering or editing an entry breaks the chain.
const TranscriptFile = "transcript.jsonl"

// Entry is one ceremony in the transcript.
type Entry struct {
	Seq       int               `json:"seq"`
	Time      time.Time         `json:"time"`
	Operation string            `json:"operation"`
	Operator  string            `json:"operator,omitempty"`
	Host      string            `json:"host,omitempty"`
	Details   map[string]any    `json:"details,omitempty"`
	Files     map[string]string `json:"files"` // path → SHA-256 of what was written
	Prev      string            `json:"prev"`  // SHA-256 of the previous line, "" for the first
}

// appendTranscript returns the transcript file with an entry for this
// change appended.
func appendTranscript(dir string, now time.Time, op string, details map[string]any, written []File) (File, error) {
	old, err := os.ReadFile(filepath.Join(dir, TranscriptFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return File{}, &IOError{Op: "read", Path: TranscriptFile, Err: err}
	}
	entries, err := ParseTranscript(old)
	if err != nil {
		return File{}, &RepoError{Dir: dir, Detail: "the ceremony transcript is damaged", Err: err,
			HintText: "the transcript is tamper-evident: find out who changed " + TranscriptFile + " before going on"}
	}
	e := Entry{Seq: len(entries) + 1, Time: now, Operation: op, Details: details, Files: map[string]string{}}
	if u, err := user.Current(); err == nil {
		e.Operator = u.Username
	}
	e.Host, _ = os.Hostname()
	for _, f := range written {
		e.Files[f.Path] = sha256hex(f.Data)
	}
	if len(old) > 0 {
		lines := bytes.Split(bytes.TrimSuffix(old, []byte("\n")), []byte("\n"))
		e.Prev = sha256hex(lines[len(lines)-1])
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
	var out []Entry
	prev := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, min(len(data)+1, 64<<10)), 64<<20) // grows as needed: a 1 MB start cost batches 1 MB a repository, 64 kB still 5 % of their allocations
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("line %d: not a transcript entry: %v", n, err)
		}
		if e.Seq != n {
			return nil, fmt.Errorf("line %d: entry number %d, expected %d (an entry was removed or moved)", n, e.Seq, n)
		}
		if e.Prev != prev {
			return nil, fmt.Errorf("line %d: the chain is broken (the entry before it was changed or removed)", n)
		}
		prev = sha256hex(line)
		out = append(out, e)
	}
	return out, sc.Err()
}
