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

// commit writes a change through the journal: every file in place, the
// journal gone, an immutable file never rewritten with other bytes (the
// whole change refused before anything is written), and no path outside
// the files rootkeeper writes.
func TestCommitWritesAndRefusesImmutable(t *testing.T) {
	dir := t.TempDir()
	files := []File{
		{Path: "metadata/timestamp.json", Data: []byte("ts")},
		{Path: "metadata/2.snapshot.json", Data: []byte("snap"), Immutable: true},
		{Path: "targets/abc.app.tgz", Data: []byte("app"), Immutable: true},
		{Path: "rootkeeper.yaml", Data: []byte("pol")},
	}
	done, err := commitFiles(dir, &changeset{op: "test", files: files})
	if err != nil || len(done.warnings) > 0 || len(done.written) != 4 {
		t.Fatal(done, err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Path, got, err)
		}
	}
	if pendingJournal(dir) {
		t.Error("the journal was left behind")
	}
	err = commitFiles2(dir, []File{
		{Path: "metadata/timestamp.json", Data: []byte("ts2")},
		{Path: "metadata/2.snapshot.json", Data: []byte("other"), Immutable: true},
	})
	var ie *ImmutableError
	if !errors.As(err, &ie) || !strings.Contains(ie.Hint(), "rootkeeper repair --repo") {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "metadata/timestamp.json")); string(got) != "ts" {
		t.Errorf("timestamp.json changed to %q", got)
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error {
		if strings.Contains(p, ".tmp-") || strings.Contains(p, JournalFile) {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	for _, bad := range []string{"../x", "/etc/passwd", "metadata/../../x", "", ".ssh/authorized_keys", "metadata", "rootkeeper.yaml/x", "metadata/.a.json.tmp-1", LockFile} {
		if err := commitFiles2(dir, []File{{Path: bad, Data: []byte("x")}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
}

func commitFiles2(dir string, files []File) error {
	_, err := commitFiles(dir, &changeset{op: "test", files: files})
	return err
}

func TestRankPutsTimestampLast(t *testing.T) {
	order := []File{
		{Path: "metadata/3.snapshot.json", Immutable: true},
		{Path: "keys/x.json"},
		{Path: "metadata/zeta.json"},
		{Path: "metadata/snapshot.json"},
		{Path: TranscriptFile},
		{Path: "metadata/3.root.json", Immutable: true},
		{Path: "metadata/timestamp.json"},
	}
	for i := 1; i < len(order); i++ {
		if rank(order[i-1]) > rank(order[i]) || (rank(order[i-1]) == rank(order[i]) && i != 6) {
			t.Errorf("%s is not written before %s", order[i-1].Path, order[i].Path)
		}
	}
	if visible(rank(order[4])) || !visible(rank(order[5])) || !visible(rank(order[6])) {
		t.Error("the publish point is the first new root or timestamp.json, after the transcript")
	}
	reversed := []File{order[6], order[5], order[1]}
	if got := writeOrder(reversed); got[0].Path != "keys/x.json" || got[1].Path != "metadata/3.root.json" || got[2].Path != "metadata/timestamp.json" {
		t.Errorf("write order %v", got)
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
		f, err := appendTranscript(dir, timeAt(i), op, nil, []File{{Path: "targets/t.txt", Data: []byte{byte(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := commitFiles2(dir, []File{f}); err != nil {
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

// recoverRepo removes the temporary files of interrupted writes anywhere
// in the repository, and nothing else.
func TestRecoverRemovesTemps(t *testing.T) {
	dir := t.TempDir()
	stale := []string{"metadata/.1.bins-0a.json.tmp-123", "metadata/.a.tmp-b.json.tmp-9", "." + TranscriptFile + ".tmp-77",
		"." + JournalFile + ".tmp-5", "targets/deep/er/.x.tgz.tmp-1", "keys/.k.json.tmp-2", ".rootkeeper-write-test-42"}
	keep := []string{"metadata/1.bins-0a.json.tmp-1", "metadata/.1.bins-0a.json", "metadata/.a.tmp", "other/.x.json.tmp-5", "targets/.tmp-3"}
	for _, p := range append(append([]string{}, stale...), keep...) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := recoverRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.temps) != len(stale) || !strings.Contains(rec.notes()[0], "removed 7 temporary files left by an interrupted run") {
		t.Errorf("removed %v, notes %q", rec.temps, rec.notes())
	}
	for _, p := range stale {
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

// apply writes a group (here the immutable files) all or nothing as far
// as it can: when one file of the group cannot be written, no file of the
// group is renamed into place, no later group is started, and no
// temporary file is left.
func TestApplyGroupFailure(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "targets/blocker"), []byte("a file where a directory should be"), 0o644); err != nil {
		t.Fatal(err)
	}
	var files []File
	for i := range 50 {
		files = append(files, File{Path: fmt.Sprintf("metadata/1.bins-%02x.json", i), Data: []byte("bin"), Immutable: true})
	}
	files = append(files, File{Path: "targets/blocker/1.x.json", Data: []byte("x"), Immutable: true}, File{Path: "metadata/timestamp.json", Data: []byte("ts")})
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	if err := tr.apply(files); err == nil {
		t.Fatal("no error")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "metadata"))
	for _, e := range entries {
		t.Errorf("written or left behind: metadata/%s", e.Name())
	}
	// Then the same change without the obstacle: every file in place.
	files[50].Path = "targets/1.x.json"
	if err := tr.apply(files); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if got, err := os.ReadFile(filepath.Join(dir, f.Path)); err != nil || string(got) != string(f.Data) {
			t.Errorf("%s = %q, %v", f.Path, got, err)
		}
	}
}
