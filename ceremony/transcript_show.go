package ceremony

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/rootkeeper/rootkeeper/roles"
)

// EntryView is one transcript entry as transcript show prints it: the
// entry, its time in whole seconds (docs/json.md), and the hash of its
// line, which the next entry and the anchors name.
type EntryView struct {
	Seq        int               `json:"seq"`
	Time       time.Time         `json:"time"`
	Operation  string            `json:"operation"`
	Operator   string            `json:"operator,omitempty"`
	Host       string            `json:"host,omitempty"`
	Version    string            `json:"rootkeeper_version,omitempty"`
	Schema     int               `json:"schema"`
	Repository string            `json:"repository,omitempty"`
	Details    map[string]any    `json:"details,omitempty"`
	Anchor     *roles.Anchor     `json:"anchor,omitempty"`
	Signed     []SignedRecord    `json:"signed"`
	Files      map[string]string `json:"files"`
	Removed    []string          `json:"removed"`
	Prev       string            `json:"prev"`
	Hash       string            `json:"hash"` // "sha256:HEX" of the entry's line
}

// TranscriptView is the whole transcript of a repository.
type TranscriptView struct {
	Repository string      `json:"repository"`
	Entries    []EntryView `json:"entries"`
}

// ShowTranscript reads dir's transcript for transcript show. A chain that
// does not hold is an error: transcript verify says where.
func ShowTranscript(dir string) (*TranscriptView, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, &RepoError{Dir: dir, Detail: "no such directory", HintText: "check --repo"}
	}
	data, err := os.ReadFile(filepath.Join(dir, TranscriptFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, &IOError{Op: "read", Path: TranscriptFile, Err: err}
	}
	entries, err := ParseTranscript(data)
	if err != nil {
		return nil, &RepoError{Dir: dir, Detail: "the ceremony transcript is damaged", Err: err,
			HintText: "run rootkeeper transcript verify --repo " + dir + " to see what is wrong"}
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	v := &TranscriptView{Repository: dir, Entries: []EntryView{}}
	for i, e := range entries {
		ev := EntryView{Seq: e.Seq, Time: e.Time.UTC().Truncate(time.Second), Operation: e.Operation, Operator: e.Operator, Host: e.Host,
			Version: e.Version, Schema: e.Schema, Repository: e.Repository, Details: e.Details, Anchor: e.Anchor,
			Signed: e.Signed, Files: e.Files, Removed: e.Removed, Prev: e.Prev, Hash: "sha256:" + sha256hex(lines[i])}
		if ev.Signed == nil {
			ev.Signed = []SignedRecord{}
		}
		if ev.Files == nil {
			ev.Files = map[string]string{}
		}
		if ev.Removed == nil {
			ev.Removed = []string{}
		}
		v.Entries = append(v.Entries, ev)
	}
	return v, nil
}
