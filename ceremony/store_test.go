package ceremony

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteFilesOrderAndImmutability(t *testing.T) {
	dir := t.TempDir()
	files := []File{
		{Path: "metadata/timestamp.json", Data: []byte("ts")},
		{Path: "metadata/2.snapshot.json", Data: []byte("snap"), Immutable: true},
		{Path: "targets/abc.app.tgz", Data: []byte("app"), Immutable: true},
		{Path: "rootkeeper.yaml", Data: []byte("pol")},
	}
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Path, got, err)
		}
	}
	// Rewriting an immutable file with other bytes is refused before
	// anything at all is written.
	err := WriteFiles(dir, []File{
		{Path: "metadata/timestamp.json", Data: []byte("ts2")},
		{Path: "metadata/2.snapshot.json", Data: []byte("other"), Immutable: true},
	})
	if err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "metadata/timestamp.json")); string(got) != "ts" {
		t.Errorf("timestamp.json changed to %q", got)
	}
	// No temporary files are left behind.
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if strings.Contains(p, ".tmp-") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	for _, bad := range []string{"../x", "/etc/passwd", "metadata/../../x", ""} {
		if err := WriteFiles(dir, []File{{Path: bad, Data: []byte("x")}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func TestRankPutsTimestampLast(t *testing.T) {
	if !(rank(File{Path: "metadata/3.root.json", Immutable: true}) < rank(File{Path: "metadata/targets.json"}) &&
		rank(File{Path: "metadata/zeta.json"}) < rank(File{Path: "metadata/snapshot.json"}) &&
		rank(File{Path: "metadata/snapshot.json"}) < rank(File{Path: "metadata/timestamp.json"})) {
		t.Fatal("write order: immutable files, then mutable metadata, then snapshot.json, then timestamp.json")
	}
}

func TestLockRefusesSecondRun(t *testing.T) {
	dir := t.TempDir()
	l1, err := LockRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockRepo(dir)
	var le *LockError
	if !errors.As(err, &le) || le.Hint() == "" {
		t.Fatalf("second lock: %v", err)
	}
	l1.Unlock(false)
	l3, err := LockRepo(dir)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	l3.Unlock(false)
}

func TestTranscriptChain(t *testing.T) {
	dir := t.TempDir()
	var data []byte
	for i, op := range []string{"init", "publish", "targets-add"} {
		f, err := appendTranscript(dir, timeAt(i), op, nil, []File{{Path: "metadata/timestamp.json", Data: []byte{byte(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteFiles(dir, []File{f}); err != nil {
			t.Fatal(err)
		}
		data = f.Data
	}
	entries, err := ParseTranscript(data)
	if err != nil || len(entries) != 3 || entries[2].Operation != "targets-add" || entries[1].Prev == "" {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	// Editing, dropping or reordering an entry breaks the chain.
	for name, tampered := range map[string]string{
		"edited":    lines[0] + strings.Replace(lines[1], "publish", "publiSh", 1) + lines[2],
		"dropped":   lines[0] + lines[2],
		"reordered": lines[1] + lines[0] + lines[2],
	} {
		if _, err := ParseTranscript([]byte(tampered)); err == nil {
			t.Errorf("%s transcript accepted", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, TranscriptFile), []byte(lines[0]+lines[2]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTranscript(dir, timeAt(9), "publish", nil, nil); err == nil {
		t.Error("appended to a broken transcript")
	}
}

func timeAt(i int) time.Time { return time.Date(2026, 11, 25, i, 0, 0, 0, time.UTC) }

// clearJournal removes the temporary files an interrupted write left
// beside the files of the change, and nothing else.
func TestClearJournalRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	files := []File{{Path: "metadata/1.bins-0a.json"}, {Path: "metadata/a.tmp-b.json"}, {Path: TranscriptFile}}
	stale := []string{"metadata/.1.bins-0a.json.tmp-123", "metadata/.a.tmp-b.json.tmp-9", "metadata/.a.tmp-b.json.tmp-", "." + TranscriptFile + ".tmp-77"}
	keep := []string{"metadata/.1.bins-0b.json.tmp-1", "metadata/1.bins-0a.json.tmp-1", "metadata/.1.bins-0a.json", "metadata/.a.tmp-1", "other/.1.bins-0a.json.tmp-5"}
	for _, p := range append(append([]string{JournalFile}, stale...), keep...) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := clearJournal(dir, files); err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{JournalFile}, stale...) {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s left", p)
		}
	}
	for _, p := range keep {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}

// WriteFiles writes a group (here the immutable files) all or nothing as
// far as it can: when one file of the group cannot be written, no file of
// the group is renamed into place, no later group is started, and no
// temporary file is left.
func TestWriteFilesGroupFailure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocker"), []byte("a file where a directory should be"), 0o644); err != nil {
		t.Fatal(err)
	}
	var files []File
	for i := range 50 {
		files = append(files, File{Path: fmt.Sprintf("metadata/1.bins-%02x.json", i), Data: []byte("bin"), Immutable: true})
	}
	files = append(files, File{Path: "blocker/1.x.json", Data: []byte("x"), Immutable: true}, File{Path: "metadata/timestamp.json", Data: []byte("ts")})
	if err := WriteFiles(dir, files); err == nil {
		t.Fatal("no error")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "metadata"))
	for _, e := range entries {
		t.Errorf("written or left behind: metadata/%s", e.Name())
	}
	// Then the same change without the obstacle: every file in place.
	files[50].Path = "targets/1.x.json"
	if err := WriteFiles(dir, files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if got, err := os.ReadFile(filepath.Join(dir, f.Path)); err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Path, got, err)
		}
	}
}
