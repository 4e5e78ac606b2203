package ceremony

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A journal reads back as written; any change to its bytes, a blob that
// does not match its hash, an unknown field or a path rootkeeper does not
// write is refused.
func TestJournalEncodeDecode(t *testing.T) {
	j := &journal{Operation: "publish", PlannedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Changed: []string{"timestamp"}, data: map[string][]byte{}}
	for _, f := range []File{{Path: "metadata/2.snapshot.json", Data: []byte("snap"), Immutable: true}, {Path: "metadata/timestamp.json", Data: []byte("ts")}, {Path: "targets/a.txt", Data: []byte("snap")}} {
		sum := sha256hex(f.Data)
		if _, ok := j.data[sum]; !ok {
			j.data[sum] = f.Data
			j.Blobs = append(j.Blobs, journalBlob{SHA256: sum, Size: len(f.Data)})
		}
		j.Files = append(j.Files, journalEntry{Path: f.Path, After: sum, Immutable: f.Immutable})
	}
	j.Files = append(j.Files, journalEntry{Path: "keys/old.json", Before: sha256hex([]byte("old")), Remove: true})
	data, err := j.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeJournal(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Blobs) != 2 || len(got.Files) != 4 || string(got.files()[2].Data) != "snap" || !got.files()[3].Remove || !got.PlannedAt.Equal(j.PlannedAt) {
		t.Fatalf("read back %+v", got)
	}
	reseal := func(body []byte) []byte { // a valid checksum over body
		return append([]byte(journalMagic+sha256hex(body)+"\n"), body...)
	}
	_, body, _ := bytes.Cut(data, []byte("\n"))
	for name, bad := range map[string][]byte{
		"a flipped byte":   bytes.Replace(data, []byte("snap"), []byte("snip"), 1),
		"truncated":        data[:len(data)-1],
		"no header":        body,
		"a forged blob":    reseal(bytes.Replace(body, []byte("snapts"), []byte("snipts"), 1)),
		"an extra field":   reseal(bytes.Replace(body, []byte(`{"operation"`), []byte(`{"x":1,"operation"`), 1)),
		"outside":          reseal(bytes.Replace(body, []byte("targets/a.txt"), []byte("../a.txtxxxxx"), 1)),
		"not rootkeeper's": reseal(bytes.Replace(body, []byte("targets/a.txt"), []byte(".ssh/id_ed255"), 1)),
		"a lock file":      reseal(bytes.Replace(body, []byte("targets/a.txt"), []byte(".rootkeeper.l"), 1)),
		"twice":            reseal(bytes.Replace(body, []byte("targets/a.txt"), []byte("metadata/timestamp.json"), 1)),
	} {
		if _, err := decodeJournal(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// simulateCrash makes the change the next publish would make (on a copy),
// then writes it into dir as an interrupted run leaves it: the journal
// committed and the files of ranks below upTo in place.
func simulateCrash(t *testing.T, f *fixture, dir string, upTo int) string {
	t.Helper()
	done := filepath.Join(t.TempDir(), "done")
	copyTree(t, dir, done)
	if _, err := f.s.Publish(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	var files []File
	filepath.WalkDir(done, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(done, p)
		if err != nil || d.IsDir() || rel == LockFile {
			return err
		}
		data, _ := os.ReadFile(p)
		if old, err := os.ReadFile(filepath.Join(dir, rel)); err != nil || !bytes.Equal(old, data) {
			files = append(files, File{Path: filepath.ToSlash(rel), Data: data, Immutable: immutableMeta(rel)})
		}
		return nil
	})
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	j, err := planJournal(tr, &changeset{op: "publish", at: f.s.now(), changed: []string{RoleSnapshot, RoleTimestamp}, files: files})
	if err != nil {
		t.Fatal(err)
	}
	if journaled, err := writeJournal(tr, j); err != nil || !journaled {
		t.Fatal(err)
	}
	var some []File
	for _, f := range files {
		if rank(f) < upTo {
			some = append(some, f)
		}
	}
	if err := tr.apply(some); err != nil {
		t.Fatal(err)
	}
	return treeHash(t, done)
}

// A change interrupted at each publish point is finished by the next
// command that writes, before it does its own work; the repository is
// then exactly as the uninterrupted change left it.
func TestJournalFinishesInterruptedChange(t *testing.T) {
	f := newFixture(t)
	for _, upTo := range []int{rankImmutable, rankSnapshot, rankTranscript, rankPublish, rankPublish + 1} {
		dir := filepath.Join(t.TempDir(), "repo")
		copyTree(t, f.dir, dir)
		want := simulateCrash(t, f, dir, upTo)
		lock, err := LockRepo(dir)
		if err != nil {
			t.Fatal(err)
		}
		notes, err := RecoverJournal(dir)
		lock.Unlock(false)
		if err != nil {
			t.Fatalf("upTo %d: %v", upTo, err)
		}
		if len(notes) != 1 || !strings.HasPrefix(notes[0], "finished the publish that was interrupted (planned 2030-01-01T00:00:00Z; ") {
			t.Errorf("upTo %d: notes %q", upTo, notes)
		}
		if got := treeHash(t, dir); got != want {
			t.Errorf("upTo %d: not the state of the uninterrupted change", upTo)
		}
		mustVerify(t, dir, t0)
	}
}

// A journal whose files are neither before nor after, or whose result
// the preflight refuses, is refused with the repository untouched; one
// that was never committed is rolled back.
func TestJournalRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// The repository changed after the interruption.
	dir := filepath.Join(t.TempDir(), "neither")
	copyTree(t, f.dir, dir)
	simulateCrash(t, f, dir, rankImmutable)
	os.WriteFile(filepath.Join(dir, TranscriptFile), []byte("edited\n"), 0o644)
	before := treeHash(t, dir)
	opened := f.ui.count("opening")
	_, err := f.s.Publish(ctx, dir)
	var je *JournalError
	if !errors.As(err, &je) || !strings.Contains(err.Error(), "names transcript.jsonl, which is neither the file the change was planned on nor its result") {
		t.Fatalf("err = %v", err)
	}
	if treeHash(t, dir) != before || f.ui.count("opening") != opened {
		t.Error("a refused journal changed the repository or a device was opened")
	}

	// A planted journal of this version (a valid checksum) naming
	// timestamp.json with other bytes.
	dir = filepath.Join(t.TempDir(), "planted")
	copyTree(t, f.dir, dir)
	cur, _ := os.ReadFile(filepath.Join(dir, "metadata/timestamp.json"))
	bogus := []byte(`{"signed":{"_type":"timestamp","version":99},"signatures":[]}`)
	j := &journal{Operation: "publish", PlannedAt: t0, data: map[string][]byte{sha256hex(bogus): bogus},
		Blobs: []journalBlob{{SHA256: sha256hex(bogus), Size: len(bogus)}},
		Files: []journalEntry{{Path: "metadata/timestamp.json", Before: sha256hex(cur), After: sha256hex(bogus)}}}
	data, _ := j.encode()
	os.WriteFile(filepath.Join(dir, JournalFile), data, 0o644)
	before = treeHash(t, dir)
	_, err = f.s.Publish(ctx, dir)
	if !errors.As(err, &je) || !strings.Contains(err.Error(), "would give a repository that the preflight refuses: timestamp") {
		t.Fatalf("err = %v", err)
	}
	if treeHash(t, dir) != before {
		t.Error("the planted journal changed the repository")
	}

	// ... removing a published file.
	j.Files = []journalEntry{{Path: "metadata/1.snapshot.json", Before: sha256hex(readBytes(t, dir, "metadata/1.snapshot.json")), Remove: true}}
	j.Operation = "repair"
	data, _ = j.encode()
	os.WriteFile(filepath.Join(dir, JournalFile), data, 0o644)
	before = treeHash(t, dir)
	if _, err = f.s.Publish(ctx, dir); err == nil || !strings.Contains(err.Error(), "would remove metadata/1.snapshot.json") {
		t.Fatalf("err = %v", err)
	}
	if treeHash(t, dir) != before {
		t.Error("the planted journal changed the repository")
	}

	// A journal that was never committed: its temporary file is removed,
	// nothing else was touched, and the command goes on.
	os.Remove(filepath.Join(dir, JournalFile))
	os.WriteFile(filepath.Join(dir, "."+JournalFile+".tmp-1"), data[:20], 0o644)
	if _, err := f.s.Publish(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "."+JournalFile+".tmp-1")); err == nil {
		t.Error("the uncommitted journal was left")
	}
	mustVerify(t, dir, t0)
}

func readBytes(t *testing.T, dir, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A write never goes through a link: a link anywhere in metadata/ or
// keys/, a linked directory in targets/, or a linked file the change
// would write is refused before anything is written.
func TestWritesRefuseLinks(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	outside := t.TempDir()
	for name, setup := range map[string]func(dir string){
		"targets dir": func(dir string) {
			os.MkdirAll(filepath.Join(dir, "targets"), 0o755)
			os.Symlink(outside, filepath.Join(dir, "targets/misc"))
		},
		"keys file": func(dir string) {
			os.Symlink("/etc/hostname", filepath.Join(dir, "keys/extra.json"))
		},
		"transcript": func(dir string) {
			os.Rename(filepath.Join(dir, TranscriptFile), filepath.Join(outside, "t"))
			os.Symlink(filepath.Join(outside, "t"), filepath.Join(dir, TranscriptFile))
		},
	} {
		dir := filepath.Join(t.TempDir(), "repo")
		copyTree(t, f.dir, dir)
		setup(dir)
		before := treeHash(t, dir)
		_, err := f.s.AddTargets(ctx, dir, RoleTargets, []TargetInput{{Name: "misc/app.txt", Data: []byte("app")}})
		var le *LinkError
		if !errors.As(err, &le) {
			t.Errorf("%s: err = %v", name, err)
		}
		if treeHash(t, dir) != before {
			t.Errorf("%s: the repository changed", name)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 1 {
		t.Errorf("written outside the repository: %v", entries)
	}
	// A link to a file inside targets/ that the change would overwrite
	// (plain targets without consistent snapshots are rewritten in place)
	// is refused by the write itself.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "targets"), 0o755)
	os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dir, "targets/app.txt"))
	err := commitFiles2(dir, []File{{Path: "targets/app.txt", Data: []byte("x")}, {Path: "metadata/timestamp.json", Data: []byte("ts")}})
	var le *LinkError
	if !errors.As(err, &le) || le.Path != "targets/app.txt" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "victim")); err == nil {
		t.Error("written through the link")
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata/timestamp.json")); err == nil {
		t.Error("part of the change was written")
	}
}

// copyTree copies the repository src to dst (the keys are the same: fine
// for a batch).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, fi.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
