package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// statusWith runs a pass through mem and, at the same time, a pass without
// any memory, and fails unless both say exactly the same; it returns how
// many repositories the pass drew from memory and how many it verified.
func statusWith(t *testing.T, mem *Memory, dirs []string, at time.Time) (sts []RepoStatus, reused, checked int64) {
	t.Helper()
	r0, c0 := mem.Counts()
	got := StatusManyWith(context.Background(), mem, dirs, at, 0)
	r1, c1 := mem.Counts()
	want := StatusMany(context.Background(), dirs, at, 0)
	gj, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	wj, err := json.MarshalIndent(want, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gj, wj) {
		t.Fatalf("at %s the pass through memory says\n%s\na pass without it says\n%s", at, gj, wj)
	}
	return got, r1 - r0, c1 - c0
}

func healthOf(sts []RepoStatus) []string {
	var out []string
	for _, s := range sts {
		if s.Status == nil {
			out = append(out, "error")
			continue
		}
		out = append(out, s.Status.Health.String())
	}
	return out
}

// A long-running status (status --every) verifies a repository again
// only when one of its files changed or a role expired, and says at every
// pass exactly what a status without memory says.
func TestMemoryStatus(t *testing.T) {
	f := newFixture(t)
	base := t.TempDir()
	var dirs []string
	for i := range 5 {
		d := filepath.Join(base, fmt.Sprintf("repo-%d", i))
		copyTree(t, f.dir, d)
		dirs = append(dirs, d)
	}
	mem := NewMemory()
	pass := func(at time.Time, wantReused, wantChecked int64, wantHealth ...string) {
		t.Helper()
		sts, reused, checked := statusWith(t, mem, dirs, at)
		if reused != wantReused || checked != wantChecked {
			t.Errorf("at %s: %d drawn from memory and %d verified, want %d and %d", at, reused, checked, wantReused, wantChecked)
		}
		if got := fmt.Sprint(healthOf(sts)); got != fmt.Sprint(wantHealth) {
			t.Errorf("at %s: health %s, want %s", at, got, wantHealth)
		}
	}
	pass(t0.Add(time.Hour), 0, 5, "healthy", "healthy", "healthy", "healthy", "healthy")
	pass(t0.Add(2*time.Hour), 5, 0, "healthy", "healthy", "healthy", "healthy", "healthy")
	// Day 2: the timestamp (7d, window 6d) is due; nothing expired, nothing changed.
	pass(day(2), 5, 0, "due", "due", "due", "due", "due")

	// Each of these changes is found at the next pass, and only the changed
	// repositories are verified again.
	ts := filepath.Join(dirs[0], "metadata", "timestamp.json")
	data, err := os.ReadFile(ts)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(`"sig": "`)) + len(`"sig": "`) + 10 // same size, one character of the signature
	if data[i] == 'a' {
		data[i] = 'b'
	} else {
		data[i] = 'a'
	}
	writeFile(t, ts, data)
	writeFile(t, filepath.Join(dirs[1], "metadata", "2.root.json"), []byte("{}")) // a new file in a listed directory
	if err := os.Remove(filepath.Join(dirs[2], "metadata", "1.root.json")); err != nil {
		t.Fatal(err)
	}
	pass(day(2), 2, 3, "invalid", "invalid", "invalid", "due", "due")
	// A repository with a problem is verified at every pass.
	pass(day(2).Add(time.Hour), 2, 3, "invalid", "invalid", "invalid", "due", "due")
	// Put back, byte for byte: verified once more, then remembered again.
	copyTree(t, f.dir, dirs[0])
	pass(day(2).Add(2*time.Hour), 2, 3, "due", "invalid", "invalid", "due", "due")
	pass(day(2).Add(3*time.Hour), 3, 2, "due", "invalid", "invalid", "due", "due")
	// Day 8: the timestamp expired: every repository is verified again.
	pass(day(8), 0, 5, "invalid", "invalid", "invalid", "invalid", "invalid")
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// An input that is found to be two different things within one check (a
// file replaced while it was read) is never remembered as either.
func TestInputsUnstable(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	writeFile(t, name, []byte("one"))
	in := recordInputs(os.DirFS(dir))
	if _, err := in.ReadFile("f"); err != nil {
		t.Fatal(err)
	}
	if !in.same() {
		t.Fatal("an unchanged file is not the same")
	}
	writeFile(t, name, []byte("two"))
	if in.same() {
		t.Fatal("a changed file (same size) is the same")
	}
	if _, err := in.ReadFile("f"); err != nil {
		t.Fatal(err)
	}
	if in.same() {
		t.Fatal("a file read as two different contents in one check is the same")
	}
	// A prefix read up to a limit is the input it was as long as the
	// prefix and the size are.
	writeFile(t, name, []byte("0123456789"))
	in = recordInputs(os.DirFS(dir))
	fh, err := in.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := fh.Read(buf); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if !in.same() {
		t.Fatal("an unchanged prefix is not the same")
	}
	writeFile(t, name, []byte("0123xxxxxx"))
	if !in.same() {
		t.Fatal("a change after the prefix read (same size) is not the same input to the reader")
	}
	writeFile(t, name, []byte("0123456789a"))
	if in.same() {
		t.Fatal("a file of another size is the same")
	}
	// A file still open: what was read of it is not known yet.
	in = recordInputs(os.DirFS(dir))
	if fh, err = in.Open("f"); err != nil {
		t.Fatal(err)
	}
	if in.same() {
		t.Fatal("a recording with a file still open is the same")
	}
	fh.Close()
	if !in.same() {
		t.Fatal("once closed, the unchanged file is not the same")
	}
}
